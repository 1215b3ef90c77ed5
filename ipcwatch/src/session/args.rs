//! What a recording is asked to do, and how it ended.

use std::sync::Arc;
use std::time::Duration;

use crate::decode::Dropped;
use crate::kernel::loader::Options;
use crate::metrics::{ExportCounts, Metrics};
use crate::otlp::{DEFAULT_FLUSH, Otlp};
use crate::race::detector::DetectorOptions;
use crate::sink::ndjson::Rotate;

#[derive(Debug, Clone)]
pub struct RecordArgs {
    /// Output path, `-` for standard output.
    pub output: String,
    /// `--rotate-size`/`--rotate-keep`: a file output that rolls over.
    pub rotate: Option<Rotate>,
    pub duration: Option<Duration>,
    /// `-- CMD ARGS...`
    pub command: Vec<String>,
    /// What the probes are asked: who and what is traced, the ring
    /// buffer, payloads, the watchpoints' hold, deep mode, lock probes.
    /// `listed_only` is set from `command` when they load.
    pub kernel: Options,
    pub detector: DetectorOptions,
    /// Send the command's standard output to standard error even when the
    /// trace goes to a file (`graph` writes its own output to stdout).
    pub command_stdout_to_stderr: bool,
    /// Where `--metrics` scrapes read the counters (the server is started
    /// by the caller).
    pub metrics: Option<Arc<Metrics>>,
    /// `--otlp`: where findings and counters are exported (started by the
    /// caller, with `metrics` as its snapshot), and how long the exit's
    /// flush may take.
    pub otlp: Option<Arc<Otlp>>,
    pub otlp_flush: Duration,
    /// `agent --forget-after`: drop what is known of processes, channels
    /// and sockets gone this long (`Collector::forget`); `None` keeps
    /// everything until the summary (`record`, `tui`).
    pub forget_after: Option<Duration>,
}

impl Default for RecordArgs {
    fn default() -> Self {
        RecordArgs {
            output: "-".into(),
            rotate: None,
            duration: None,
            command: Vec::new(),
            kernel: Options::default(),
            detector: DetectorOptions::default(),
            command_stdout_to_stderr: false,
            metrics: None,
            otlp: None,
            otlp_flush: DEFAULT_FLUSH,
            forget_after: None,
        }
    }
}

/// How a recording ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    CommandExited,
    Duration,
    Signal,
    OutputClosed,
    /// The frontend asked to stop (the TUI quit).
    Requested,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::CommandExited => "command-exited",
            StopReason::Duration => "duration",
            StopReason::Signal => "signal",
            StopReason::OutputClosed => "output-closed",
            StopReason::Requested => "requested",
        }
    }
}

/// What a recording produced, for the caller's message and exit code.
#[derive(Debug)]
pub struct Outcome {
    pub reason: StopReason,
    pub events: u64,
    pub dropped: Dropped,
    pub channels: usize,
    pub races: usize,
    pub command_status: Option<i32>,
    /// `--otlp`: what was exported and lost.
    pub otlp: Option<ExportCounts>,
}

/// Seconds (`2.5`) or a duration with units (`10s`, `1m30s`, `500ms`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let v: f64 = match s.parse() {
        Ok(v) => v,
        Err(_) => humantime::parse_duration(s)
            .map_err(|_| {
                format!("`{s}` is neither a number of seconds nor a duration like 10s or 1m30s")
            })?
            .as_secs_f64(),
    };
    if !v.is_finite() || v <= 0.0 || v > 1e9 {
        return Err(format!(
            "`{s}`: the duration must be a positive number of seconds"
        ));
    }
    Ok(Duration::from_secs_f64(v))
}
