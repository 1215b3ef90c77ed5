//! What a recording is asked to do, and how it ended.

use std::time::Duration;

use crate::kernel::loader::{DEFAULT_RING_BYTES, Filter, Options};
use crate::race::detector::DetectorOptions;

#[derive(Debug, Clone)]
pub struct RecordArgs {
    /// Output path, `-` for standard output.
    pub output: String,
    pub duration: Option<Duration>,
    pub filter: Filter,
    /// `-- CMD ARGS...`
    pub command: Vec<String>,
    pub ring_bytes: u32,
    pub detector: DetectorOptions,
    /// Collision sampling: how long a trapped write is held, in ns.
    pub watch_delay_ns: u32,
    /// Deep mode: happens-before analysis of every sampled write.
    pub deep: bool,
    /// Payload bytes copied per read/write (0: none, the default).
    pub capture_bytes: u32,
    /// Channel kinds to trace (`file_kind::bit`s), filtered in the kernel.
    pub kinds: u32,
    /// Send the command's standard output to standard error even when the
    /// trace goes to a file (`graph` writes its own output to stdout).
    pub command_stdout_to_stderr: bool,
    /// `--lock-probes`: uprobes on hot lock calls (costly, opt-in).
    pub lock_probes: bool,
}

impl Default for RecordArgs {
    fn default() -> Self {
        RecordArgs {
            output: "-".into(),
            duration: None,
            filter: Filter::default(),
            command: Vec::new(),
            ring_bytes: DEFAULT_RING_BYTES,
            detector: DetectorOptions::default(),
            watch_delay_ns: 50_000,
            deep: false,
            capture_bytes: 0,
            kinds: Options::default().kinds,
            command_stdout_to_stderr: false,
            lock_probes: false,
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
    pub dropped: u64,
    pub channels: usize,
    pub races: usize,
    pub command_status: Option<i32>,
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
