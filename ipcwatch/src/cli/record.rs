//! `ipcwatch record`: trace, and write NDJSON. Its output and tracing
//! options are shared with `ipcwatch agent` ([`OutputCli`], [`TraceCli`]).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ipcwatch::kernel::loader::{DEFAULT_RING_BYTES, Filter, Options};
use ipcwatch::metrics::Metrics;
use ipcwatch::metrics::serve::{linger, parse_addr};
use ipcwatch::race::detector::DetectorOptions;
use ipcwatch::record::ChannelKind;
use ipcwatch::session::{self, Outcome, RecordArgs};
use ipcwatch::sink::ndjson::Rotate;

use super::args::{
    filter_with_command, kinds_mask, parse_otlp, parse_ring, parse_secs, parse_size,
    select_cgroups, start_metrics, start_otlp,
};
use super::complete;
use ipcwatch::text::Clean;

/// Where a recording's lines go: the trace file and its rotation, and the
/// `--metrics` server. `record` and `agent` take the same ones (an
/// exporter added here reaches both).
#[derive(clap::Args, Debug, Default, Clone)]
pub struct OutputCli {
    /// Where to write the trace; `-` is standard output. A file is created
    /// with mode 0600 and never through a symbolic link.
    #[arg(short, long, value_name = "FILE", default_value = "-")]
    pub output: String,
    /// Rotate the trace file once it holds SIZE bytes (K, M, G: KiB, MiB,
    /// GiB): FILE becomes FILE.1, FILE.1 FILE.2 and so on, and a new FILE
    /// starts with the header line again, so that each file is a trace
    /// `analyze` reads. Needs -o FILE.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub rotate_size: Option<u64>,
    /// With --rotate-size: how many rotated files to keep (FILE.1 ...
    /// FILE.N); older ones are removed.
    #[arg(long, value_name = "N", default_value_t = 5, requires = "rotate_size", value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub rotate_keep: u32,
    /// Serve Prometheus metrics at http://ADDR/metrics while recording
    /// (ADDR is IP:PORT, for example 127.0.0.1:9464; docs/metrics.md lists
    /// the metrics).
    #[arg(long, value_name = "ADDR", value_parser = parse_addr)]
    pub metrics: Option<SocketAddr>,
    /// With --metrics: after the summary, keep serving until one scrape
    /// has read the final values, for at most this long (seconds or a
    /// duration: 30s). Without it, ipcwatch exits at once and the last
    /// second of counts may never be scraped.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, requires = "metrics")]
    pub metrics_linger: Option<Duration>,
    /// Send every finding as an OpenTelemetry log record, and the counters
    /// as OpenTelemetry metrics, to this OTLP/HTTP endpoint (protobuf):
    /// http://HOST[:PORT][/PATH], usually a Collector on the host
    /// (http://127.0.0.1:4318). Batched, with a bounded queue: a slow or
    /// dead endpoint never slows tracing; lost findings are counted
    /// (docs/otlp.md).
    #[arg(long, value_name = "URL", value_parser = parse_otlp)]
    pub otlp: Option<ipcwatch::otlp::Endpoint>,
    /// With --otlp: how long the exit may wait for the last findings and
    /// metrics to be sent (seconds or a duration).
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "5", requires = "otlp")]
    pub otlp_flush: Duration,
}

/// Who and what is traced, and how the race detector works: the same for
/// `record` and `agent`.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct TraceCli {
    /// Trace only this process (repeatable). Filtered in the kernel.
    #[arg(long = "pid", value_name = "PID", add = complete::pids())]
    pub pids: Vec<u32>,
    /// Trace only processes with this name (repeatable; first 15 bytes, as
    /// in /proc/PID/comm). Filtered in the kernel.
    #[arg(long = "comm", value_name = "NAME", add = complete::comms())]
    pub comms: Vec<String>,
    /// Trace only the processes of this container (repeatable): an id or a
    /// prefix of one (4 hex digits at least), or a name podman or docker
    /// knows. It must be running. Filtered in the kernel (its cgroup).
    #[arg(long = "container", value_name = "ID|NAME")]
    pub containers: Vec<String>,
    /// Trace only the processes in this cgroup or below it (repeatable): a
    /// path of the unified hierarchy ("/system.slice/nginx.service"), or
    /// one under its mount point. Filtered in the kernel.
    #[arg(long = "cgroup", value_name = "PATH")]
    pub cgroups: Vec<String>,
    /// Trace only these channel kinds (repeatable; default: all).
    /// Filtered in the kernel.
    #[arg(long = "kind", value_enum, value_name = "KIND")]
    pub kinds: Vec<ChannelKind>,
    /// Size of the kernel ring buffer in bytes (a power of two).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_RING_BYTES, value_parser = parse_ring)]
    pub ring_size: u32,
    /// Copy the first N bytes (at most 256) of every read and write on a
    /// pipe, FIFO or socket into the trace (`data`, hex). Off by default:
    /// ipcwatch never records payloads unless asked.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=256))]
    pub capture_bytes: u32,
    /// Record when each read, write, send, receive (pipes, FIFOs, sockets,
    /// message queues) and each futex, flock or fcntl lock call started
    /// (`start_ns`), so that `export --format perfetto` draws how long each
    /// blocked. Costs one map update per such call, whole-system, IPC or not.
    #[arg(long)]
    pub durations: bool,
    /// Deep mode, for races whose writes never collide in time: every
    /// trapped write is reported and checked by a happens-before analysis
    /// (vector clocks across processes over locks, semaphores, futexes,
    /// messages and fork) with a lockset check. Costs one trap (~9 µs in a
    /// VM) plus the hold per armed write. Uncontended pthread locks are
    /// edges only with --lock-probes too (and its cost).
    #[arg(long)]
    pub deep: bool,
    /// Turn the race detector off (no watchpoints are ever armed).
    #[arg(long)]
    pub no_race: bool,
    /// Race detector: how long each hot word stays armed, in ms.
    #[arg(long, value_name = "MS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub race_window: u64,
    /// Race detector: time between the starts of two windows, in ms. A word
    /// whose windows find nothing new waits up to 8 periods (not in --deep).
    #[arg(long, value_name = "MS", default_value_t = 250, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub race_period: u64,
    /// Race detector: how long a trapped write is held, in µs. Each hold
    /// costs the writer that long; two writes in flight together are a race.
    #[arg(long, value_name = "US", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub race_delay: u32,
    /// Race detector: words armed at once (a thread has 4 debug registers).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=4))]
    pub race_words: u64,
    /// Also trace every pthread mutex/rwlock/spinlock and semaphore call
    /// (lock, trylock, timedlock, unlock, wait, post...) with uprobes,
    /// attached to each process when its first shared mapping appears.
    /// COSTLY: a uprobe hit costs about 8-10 us in a virtual machine, and a
    /// lock-heavy program can run tens of times slower (a two-process
    /// mutex counter: about 30x). Without it, contended locks are still
    /// seen through futex, and flock/fcntl locks always.
    #[arg(long)]
    pub lock_probes: bool,
}

#[derive(clap::Args, Debug, Default)]
pub struct RecordCli {
    #[command(flatten)]
    pub out: OutputCli,
    /// Stop after this many seconds (fractions allowed), or a duration with
    /// units: 10s, 1m30s, 500ms.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub duration: Option<Duration>,
    #[command(flatten)]
    pub trace: TraceCli,
    /// Exit with status 3 when a race was found.
    #[arg(long)]
    pub fail_on_race: bool,
    /// The command to start and trace, after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

impl TraceCli {
    /// `--pid`, `--comm`, `--container` or `--cgroup` given.
    pub fn filtered(&self) -> bool {
        !self.pids.is_empty()
            || !self.comms.is_empty()
            || !self.containers.is_empty()
            || !self.cgroups.is_empty()
    }
}

impl OutputCli {
    /// The rotation asked for, or `default` for a file output.
    fn rotate(&self, default: Option<Rotate>) -> Option<Rotate> {
        match self.rotate_size {
            Some(size) => Some(Rotate {
                size,
                keep: self.rotate_keep,
            }),
            None if self.output != "-" => default,
            None => None,
        }
    }
}

/// A session's arguments from the shared options, with the metrics server
/// started. `None`: what was wrong is said, and the exit code to return.
pub fn session_args(
    out: &OutputCli,
    trace: TraceCli,
    duration: Option<Duration>,
    command: Vec<String>,
    default_rotate: Option<Rotate>,
) -> Result<RecordArgs, ExitCode> {
    if filter_with_command(trace.filtered(), &command) {
        return Err(ExitCode::from(2));
    }
    let Some(cgroups) = select_cgroups(&trace.containers, &trace.cgroups) else {
        return Err(ExitCode::from(2));
    };
    if out.rotate_size.is_some() && out.output == "-" {
        eprintln!(
            "ipcwatch: error: --rotate-size needs -o FILE (standard output cannot be rotated)"
        );
        return Err(ExitCode::from(2));
    }
    let Some(metrics) = start_metrics(out.metrics) else {
        return Err(ExitCode::FAILURE);
    };
    let Some((metrics, otlp)) = start_otlp(out.otlp.clone(), metrics) else {
        return Err(ExitCode::FAILURE);
    };
    Ok(RecordArgs {
        output: out.output.clone(),
        rotate: out.rotate(default_rotate),
        duration,
        command,
        kernel: Options {
            filter: Filter {
                pids: trace.pids,
                comms: trace.comms,
                cgroups,
            },
            kinds: kinds_mask(&trace.kinds),
            ring_bytes: trace.ring_size,
            watch_delay_ns: trace.race_delay * 1000,
            deep: trace.deep,
            capture_bytes: trace.capture_bytes,
            durations: trace.durations,
            lock_probes: trace.lock_probes,
            ..Options::default()
        },
        detector: DetectorOptions {
            enabled: !trace.no_race,
            window: Duration::from_millis(trace.race_window),
            period: Duration::from_millis(trace.race_period.max(trace.race_window)),
            words: trace.race_words as usize,
            backoff: !trace.deep,
            ..Default::default()
        },
        command_stdout_to_stderr: false,
        // Only --metrics' server waits for a scrape (--otlp's holder is
        // never scraped).
        metrics,
        otlp,
        otlp_flush: out.otlp_flush,
        forget_after: None,
    })
}

/// After a session: `--metrics-linger`, then the one-line summary on
/// standard error and the exit code (3 with `fail_on_race` and a race).
pub fn report(
    result: anyhow::Result<Outcome>,
    metrics: Option<&Arc<Metrics>>,
    metrics_linger: Option<Duration>,
    fail_on_race: bool,
) -> ExitCode {
    if let (Some(m), Some(wait), Ok(_)) = (metrics, metrics_linger, &result)
        && !linger(m, wait)
    {
        eprintln!(
            "ipcwatch: no scrape of --metrics read the final values within {}",
            humantime::format_duration(wait)
        );
    }
    match result {
        Ok(o) => {
            let lost = if o.dropped.total > 0 {
                let kinds: Vec<String> =
                    o.dropped.named().map(|(k, n)| format!("{k} {n}")).collect();
                format!(
                    ", {} LOST ({}; ring buffer full; try --ring-size)",
                    o.dropped.total,
                    kinds.join(", ")
                )
            } else {
                ", 0 lost".into()
            };
            let status = o
                .command_status
                .map(|s| format!("; command exited with {s}"))
                .unwrap_or_default();
            let otlp = o
                .otlp
                .map(|c| format!(", otlp: {} sent, {} lost", c.sent, c.lost()))
                .unwrap_or_default();
            eprintln!(
                "ipcwatch: {} events{lost}, {} channels, {} races{otlp}, stopped: {}{status}",
                o.events,
                o.channels,
                o.races,
                o.reason.as_str()
            );
            if fail_on_race && o.races > 0 {
                return ExitCode::from(3);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ipcwatch: error: {}", Clean(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

pub fn record(cli: RecordCli) -> ExitCode {
    let args = match session_args(&cli.out, cli.trace, cli.duration, cli.command, None) {
        Ok(args) => args,
        Err(code) => return code,
    };
    let metrics = args.metrics.clone();
    let result = session::run(args);
    report(
        result,
        metrics.as_ref(),
        cli.out.metrics_linger,
        cli.fail_on_race,
    )
}
