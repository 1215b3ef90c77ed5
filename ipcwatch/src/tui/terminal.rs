//! Terminal set-up and restore, in one place. The restore runs on drop,
//! from the panic hook, and on every exit path (SIGINT and SIGTERM are
//! turned into a quit input by the app, so they also end here).
//!
//! [`setup`] is public so that a test program can check the restore on
//! its own: the `tui-panic` workload of `ipcwatch-workload` sets the
//! terminal up, panics, and the end-to-end test checks that the terminal
//! came back as it was and that the panic message is on the screen.
//!
//! While the TUI is up, standard error (which the collector and a traced
//! command may write to) goes to a private temporary file, so nothing
//! scribbles over the screen; what was written there is shown after the
//! terminal is restored.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crossterm::event::{DisableMouseCapture, EnableMouseCapture};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

static ACTIVE: AtomicBool = AtomicBool::new(false);
/// The real standard error while it is redirected, and the file it went to.
static SAVED_STDERR: Mutex<Option<(OwnedFd, File)>> = Mutex::new(None);

pub type Tty = Terminal<CrosstermBackend<io::Stdout>>;

/// Owns the terminal's state: dropping it restores the terminal.
pub struct Guard {
    pub terminal: Tty,
}

/// Most of the captured standard error that is echoed after the TUI.
const ECHO_MAX: u64 = 16 * 1024;

fn redirect_stderr() {
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags_tmpfile()
    else {
        return;
    };
    // SAFETY: dup of our own standard error; the result is owned below.
    let saved = unsafe { libc::dup(2) };
    if saved < 0 {
        return;
    }
    // SAFETY: `saved` is a fresh descriptor we own.
    let saved = unsafe { OwnedFd::from_raw_fd(saved) };
    // SAFETY: both descriptors are valid; dup2 replaces fd 2 atomically.
    if unsafe { libc::dup2(file.as_raw_fd(), 2) } < 0 {
        return;
    }
    if let Ok(mut s) = SAVED_STDERR.lock() {
        *s = Some((saved, file));
    }
}

trait TmpFile {
    fn custom_flags_tmpfile(&mut self) -> io::Result<File>;
}

impl TmpFile for std::fs::OpenOptions {
    /// An unnamed file in the temporary directory (O_TMPFILE), mode 0600.
    fn custom_flags_tmpfile(&mut self) -> io::Result<File> {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
            .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
            .open(std::env::temp_dir())
    }
}

/// Put standard error back and print what was captured.
fn restore_stderr() {
    let Some((saved, mut file)) = SAVED_STDERR.lock().ok().and_then(|mut s| s.take()) else {
        return;
    };
    // SAFETY: `saved` is our copy of the original standard error.
    unsafe { libc::dup2(saved.as_raw_fd(), 2) };
    let len = file.seek(io::SeekFrom::End(0)).unwrap_or(0);
    if len == 0 {
        return;
    }
    let start = len.saturating_sub(ECHO_MAX);
    let mut text = Vec::new();
    if file.seek(io::SeekFrom::Start(start)).is_ok() && file.read_to_end(&mut text).is_ok() {
        let mut err = io::stderr();
        if start > 0 {
            let _ = writeln!(
                err,
                "ipcwatch: ({start} earlier bytes of messages not shown)"
            );
        }
        let _ = err.write_all(&text);
    }
}

/// Leave raw mode and the alternate screen; idempotent.
pub fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = disable_raw_mode();
        let _ = execute!(
            io::stdout(),
            DisableMouseCapture,
            LeaveAlternateScreen,
            crossterm::cursor::Show
        );
    }
    restore_stderr();
}

/// Set the terminal up for the full-screen UI: raw mode, the alternate
/// screen and mouse capture; install a panic hook that restores the
/// terminal before the panic message is printed (then calls the hook that
/// was there before); send standard error to a private temporary file
/// until the restore, which prints what was written there. Dropping the
/// [`Guard`] (or calling [`restore`]) undoes it all; a panic does it too.
///
/// A program that checks the restore after a panic (the `tui-panic`
/// workload) needs nothing else:
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// let mut guard = ipcwatch::tui::terminal::setup()?;
/// // Optional: draw something, as the app would.
/// guard.terminal.draw(|f| f.render_widget("tui-panic", f.area()))?;
/// panic!("tui-panic: panicking to test the terminal restore");
/// # }
/// ```
pub fn setup() -> io::Result<Guard> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
    enable_raw_mode()?;
    ACTIVE.store(true, Ordering::SeqCst);
    if let Err(e) = execute!(io::stdout(), EnterAlternateScreen, EnableMouseCapture) {
        restore();
        return Err(e);
    }
    let terminal = match Terminal::new(CrosstermBackend::new(io::stdout())) {
        Ok(t) => t,
        Err(e) => {
            restore();
            return Err(e);
        }
    };
    redirect_stderr();
    Ok(Guard { terminal })
}

impl Drop for Guard {
    fn drop(&mut self) {
        restore();
    }
}
