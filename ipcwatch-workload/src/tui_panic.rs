//! `ipcwatch-workload tui-panic`: set the terminal up with ipcwatch's own
//! TUI set-up (raw mode, alternate screen, mouse capture, standard error
//! captured, and the panic hook that undoes all of it), draw once, then
//! panic. tests/tui_e2e.rs runs it in tmux and checks that the terminal
//! comes back and the panic message is shown.

use std::time::Duration;

use anyhow::{Context, Result};

/// What the panic says; the test looks for it on the screen.
const MESSAGE: &str = "ipcwatch-workload tui-panic: panicking to test the terminal restore";

pub fn run() -> Result<()> {
    let mut guard = ipcwatch::tui::terminal::setup().context("setting up the terminal")?;
    guard
        .terminal
        .draw(|f| f.render_widget("ipcwatch-workload tui-panic", f.area()))
        .context("drawing")?;
    std::thread::sleep(Duration::from_millis(200));
    panic!("{MESSAGE}");
}
