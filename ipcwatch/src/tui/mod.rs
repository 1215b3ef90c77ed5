//! The terminal UI: five views over the model, live or from a recording.
//!
//! Inputs (keys, mouse, resize, ticks, record batches from the collector
//! or the replay, signals) arrive as one [`input::Input`] stream on one
//! channel; [`app::run_app`] applies them and draws at a steady rate. The
//! collector runs in its own thread and never waits for the UI.
//!
//! The modules form layers, each using only those below it:
//!
//! | module | uses |
//! |---|---|
//! | this file: the entry points | everything below |
//! | [`app`]: the loop, key dispatch, tabs and status line | `input`, `state`, `source`, `views`, `theme` |
//! | [`source`]: live collector, replay | `input` |
//! | [`views`]: one file per view | `state`, `rates`, `theme` |
//! | [`state`]: what the views read | `rates` |
//! | [`input`], [`rates`], [`theme`], [`terminal`] | nothing in the TUI |

pub mod app;
pub mod input;
pub mod rates;
pub mod source;
pub mod state;
pub mod terminal;
pub mod theme;
pub mod views;

use std::fs::File;
use std::io::BufReader;
use std::sync::Arc;
use std::sync::mpsc::{self, Sender};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use crate::kernel::loader::aggregating;
use crate::kernel::preflight::check_privileges;
use crate::kernel::privileges::{drop_all, spawn_unprivileged};
use crate::record::Record;
use crate::session::RecordArgs;
use crate::trace::Replay;

use app::{App, Clock, LoopStats};
use input::Input;
use source::{Live, ReplayControl};
use theme::Theme;

/// Keys, mouse and resizes from the terminal.
fn spawn_input(tx: Sender<Input>) {
    let _ = spawn_unprivileged("input", move || {
        use crossterm::event::{Event, read};
        loop {
            let input = match read() {
                Ok(Event::Key(k)) => Input::Key(k),
                Ok(Event::Mouse(m)) => Input::Mouse(m),
                Ok(Event::Resize(w, h)) => Input::Resize(w, h),
                Ok(_) => continue,
                Err(_) => Input::Signal,
            };
            if tx.send(input).is_err() {
                return;
            }
        }
    });
}

/// SIGINT, SIGTERM and SIGHUP become a quit input, so the terminal is
/// restored on the normal path.
fn spawn_signals(tx: Sender<Input>) {
    let _ = spawn_unprivileged("signals", move || {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
                signal(SignalKind::hangup()),
            ) else {
                return;
            };
            loop {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                    _ = hup.recv() => {}
                }
                if tx.send(Input::Signal).is_err() {
                    return;
                }
            }
        });
    });
}

/// Set the terminal up, start the sources (after standard error is
/// captured, so a traced command never writes over the screen), run the
/// app until it quits, restore the terminal.
fn run_on_terminal(
    mut app: App,
    start: impl FnOnce(Sender<Input>) -> anyhow::Result<Option<Live>>,
) -> anyhow::Result<App> {
    let (tx, rx) = mpsc::channel();
    let mut guard = terminal::setup().context("setting up the terminal")?;
    spawn_signals(tx.clone());
    spawn_input(tx.clone());
    let mut live = match start(tx) {
        Ok(l) => l,
        Err(e) => {
            drop(guard);
            return Err(e);
        }
    };
    // The collector thread has its own copy of the capabilities (it keeps
    // what tracing needs); this thread only draws.
    if let Err(e) = drop_all() {
        drop(guard);
        if let Some(l) = &mut live {
            l.stop();
        }
        bail!("cannot drop the capabilities of the TUI's thread: {e}");
    }
    let r = app::run_app(&mut guard.terminal, &mut app, &rx);
    drop(guard);
    // After the restore: stopping the command and draining take a moment.
    if let Some(l) = &mut live {
        l.stop();
    }
    r.context("drawing")?;
    match app.error.take() {
        Some(e) => bail!("{e}"),
        None => Ok(app),
    }
}

/// Live tracing in the TUI: `ipcwatch`, `ipcwatch tui [-- CMD]`, `demo`.
pub fn run_live(args: RecordArgs, label: &str) -> anyhow::Result<()> {
    // Fail before touching the terminal when tracing cannot work at all.
    check_privileges()?;
    let app = App::new(Theme::from_env(), Clock::Live, label);
    run_on_terminal(app, |tx| {
        Live::start(args, tx)
            .map(Some)
            .context("starting the collector")
    })?;
    Ok(())
}

/// Open a trace for replay; a bad file is a one-line error here, before
/// the terminal is touched.
pub fn open_trace(path: &str) -> anyhow::Result<(Replay<BufReader<File>>, Record)> {
    let file = File::open(path).with_context(|| format!("cannot open {path}"))?;
    let mut reader = Replay::new(BufReader::new(file));
    match reader.next_record() {
        Ok(Some(first)) => Ok((reader, first)),
        Ok(None) => bail!("{path}: the trace has no records"),
        Err(e) => bail!("{path}: {e}"),
    }
}

/// `ipcwatch tui --replay FILE`.
pub fn run_replay(path: &str, speed: f64) -> anyhow::Result<()> {
    let (reader, first) = open_trace(path)?;
    let ctl = Arc::new(ReplayControl::new(speed));
    let mut app = App::new(Theme::from_env(), Clock::Trace, format!("replay {path}"));
    app.replay = Some(ctl.clone());
    run_on_terminal(app, |tx| {
        let _ = tx.send(Input::Records(vec![first]));
        source::replay(reader, path.to_string(), ctl, tx).context("starting the replay")?;
        Ok(None)
    })?;
    Ok(())
}

/// What the headless run measured (printed as JSON by `tui --headless`).
#[derive(Debug, serde::Serialize)]
pub struct HeadlessReport {
    pub records: u64,
    pub events: u64,
    pub dropped: u64,
    pub seconds: f64,
    pub frames: u64,
    pub draw_mean_us: f64,
    pub draw_max_us: f64,
    /// Input to screen: a probe input queued behind the record batches,
    /// until the frame that followed it was drawn.
    pub input_latency_max_ms: f64,
    pub input_latency_mean_ms: f64,
    pub stopped: String,
    /// Whether the kernel was asked to sum pipe and FIFO io (`--per-event`
    /// off; the programs fall back to one event per call if that does not
    /// load, with a warning).
    pub aggregate: bool,
    /// Every channel the model knows, with its counts as the views show
    /// them.
    pub channels: Vec<HeadlessChannel>,
}

/// One channel's counts at the end of a headless run.
#[derive(Debug, serde::Serialize)]
pub struct HeadlessChannel {
    pub channel: String,
    pub kind: String,
    pub bytes_written: u64,
    pub bytes_read: u64,
    pub writes: u64,
    pub reads: u64,
    /// `io` records of one call each that reached the UI: what crossed
    /// the ring buffer one by one (0 when the kernel summed them all).
    pub io_records: u64,
}

/// The live pipeline with a 100×30 `TestBackend` instead of a terminal,
/// for the bench: ends when the source ends; a probe "key" every 100 ms
/// measures how long input waits behind the records.
pub fn run_headless(args: RecordArgs) -> anyhow::Result<HeadlessReport> {
    check_privileges()?;
    let aggregate = aggregating(&args.kernel);
    let (tx, rx) = mpsc::channel();
    let mut live = Live::start(args, tx.clone()).context("starting the collector")?;
    let probe_tx = tx.clone();
    std::thread::spawn(move || {
        while probe_tx.send(Input::Probe(Instant::now())).is_ok() {
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    drop(tx);
    let mut app = App::new(Theme::plain(), Clock::Live, "headless");
    app.exit_when_done = true;
    let mut term = Terminal::new(TestBackend::new(100, 30))?;
    let start = Instant::now();
    // Cycle through the views so every one is drawn under load.
    let stats: LoopStats = app::run_app(&mut term, &mut app, &rx)?;
    let seconds = start.elapsed().as_secs_f64();
    live.stop();
    if let Some(e) = app.error {
        bail!("{e}");
    }
    let mean = |total: Duration, n: u64| total.as_secs_f64() / n.max(1) as f64;
    Ok(HeadlessReport {
        records: stats.records,
        events: app.data.events,
        dropped: app.data.dropped(),
        seconds,
        frames: stats.frames,
        draw_mean_us: mean(stats.total_draw, stats.frames) * 1e6,
        draw_max_us: stats.max_draw.as_secs_f64() * 1e6,
        input_latency_max_ms: stats.max_latency.as_secs_f64() * 1e3,
        input_latency_mean_ms: mean(stats.total_latency, stats.latencies) * 1e3,
        stopped: match &app.source {
            app::SourceState::Ended(w) => w.clone(),
            s => format!("{s:?}"),
        },
        aggregate,
        channels: app
            .data
            .model
            .channels
            .iter()
            .map(|(id, c)| HeadlessChannel {
                channel: id.to_string(),
                kind: c.kind.as_str().to_string(),
                bytes_written: c.bytes_written,
                bytes_read: c.bytes_read,
                writes: c.writes,
                reads: c.reads,
                io_records: app.data.io_records.get(id).copied().unwrap_or(0),
            })
            .collect(),
    })
}
