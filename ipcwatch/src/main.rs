mod demo;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use ipcwatch::doctor;
use ipcwatch::loader::{ALL_KINDS, DEFAULT_RING_BYTES, Filter};
use ipcwatch::record::{self, RecordArgs};

/// See how processes talk (pipes, FIFOs...), live or recorded as NDJSON.
///
/// Needs Linux 5.8+ with BTF, and root or CAP_BPF + CAP_PERFMON.
/// Exit codes: 0 success, 1 runtime or environment error, 2 bad usage,
/// 3 races found (with --fail-on-race).
#[derive(Parser, Debug)]
#[command(name = "ipcwatch", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Trace IPC and write NDJSON (one record per line, see docs/ndjson.md).
    ///
    /// Without `-- CMD` it traces the whole system (or what --pid/--comm
    /// name) until --duration ends or SIGINT/SIGTERM arrives. With `-- CMD`
    /// it starts CMD, traces only CMD and its descendants, and stops when
    /// CMD exits. The trace always ends with a "summary" line.
    Record(RecordCli),
    /// Live terminal UI: channels, shared regions, races and processes.
    ///
    /// Without `-- CMD` it watches the whole system (or what --pid/--comm
    /// name). With `--replay FILE` it plays a recorded trace instead. Keys:
    /// Tab/1-5 views, arrows/j/k move, Enter drills down, Esc back, /
    /// filter, s sort, p pause, + and - replay speed, ? help, q quit.
    Tui(TuiCli),
    /// Start built-in workloads (pipes, a socket pair, a message queue, a
    /// racy and a locked shared counter) and open the TUI on them.
    Demo(demo::DemoCli),
    /// Draw who talks to whom (Graphviz DOT or JSON).
    ///
    /// Traces like `record` (the whole system for --duration, or `-- CMD`),
    /// or reads a trace written by `record` with --input.
    Graph(GraphCli),
    /// Show which kernel features ipcwatch can use here, by trying each.
    Doctor {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Read a recorded trace and report its channels, regions and races.
    ///
    /// Exit codes: 0 success, 1 unreadable or invalid trace (the message
    /// names the line), 3 races found with --fail-on-race.
    Analyze {
        /// The NDJSON trace; `-` reads standard input.
        file: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Exit with status 3 when the trace holds any race finding.
        #[arg(long)]
        fail_on_race: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

/// Seconds (`2.5`) or a duration with units (`10s`, `1m30s`, `500ms`).
fn parse_secs(s: &str) -> Result<Duration, String> {
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

fn parse_ring(s: &str) -> Result<u32, String> {
    let v: u32 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of bytes"))?;
    let page = 4096;
    if v < page || !v.is_power_of_two() || v > 1 << 30 {
        return Err(format!(
            "`{s}`: the ring buffer size must be a power of two between 4096 and 1073741824 bytes"
        ));
    }
    Ok(v)
}

/// A channel kind for --kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum KindArg {
    Pipe,
    Fifo,
    Unix,
    Tcp,
    Udp,
    Mq,
    Msgq,
}

fn kinds_mask(kinds: &[KindArg]) -> u32 {
    use ipcwatch_common::file_kind as fk;
    if kinds.is_empty() {
        return ALL_KINDS;
    }
    kinds
        .iter()
        .map(|k| {
            fk::bit(match k {
                KindArg::Pipe => fk::PIPE,
                KindArg::Fifo => fk::FIFO,
                KindArg::Unix => fk::UNIX,
                KindArg::Tcp => fk::TCP,
                KindArg::Udp => fk::UDP,
                KindArg::Mq => fk::MQ,
                KindArg::Msgq => fk::MSGQ,
            })
        })
        .fold(0, |a, b| a | b)
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum GraphFormat {
    Dot,
    Json,
}

#[derive(clap::Args, Debug)]
struct GraphCli {
    /// Where to write the graph; `-` is standard output.
    #[arg(short, long, value_name = "FILE", default_value = "-")]
    output: String,
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    format: GraphFormat,
    /// Stop tracing after this many seconds (fractions allowed), or a
    /// duration with units: 10s, 1m30s, 500ms.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    duration: Option<Duration>,
    /// Draw from this trace (written by `record`) instead of tracing.
    #[arg(long, value_name = "TRACE", conflicts_with_all = ["duration", "command"])]
    input: Option<std::path::PathBuf>,
    /// Only these channel kinds (repeatable). Filtered in the kernel.
    #[arg(long = "kind", value_enum, value_name = "KIND")]
    kinds: Vec<KindArg>,
    /// The command to start and trace, after `--`.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

fn graph(cli: GraphCli) -> ExitCode {
    if cli.input.is_none() && cli.command.is_empty() && cli.duration.is_none() {
        eprintln!(
            "ipcwatch: error: graph needs `-- CMD`, --duration SECS or --input TRACE (it draws what it saw)"
        );
        return ExitCode::from(2);
    }
    let result = (|| -> anyhow::Result<String> {
        let model = match &cli.input {
            Some(path) => ipcwatch::graph::model_from_trace(path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            None => {
                let dir = std::env::temp_dir();
                let trace = dir.join(format!("ipcwatch-graph-{}.ndjson", std::process::id()));
                let _ = std::fs::remove_file(&trace);
                let args = RecordArgs {
                    output: trace.to_string_lossy().into_owned(),
                    duration: cli.duration,
                    filter: Filter::default(),
                    command: cli.command.clone(),
                    ring_bytes: DEFAULT_RING_BYTES,
                    kinds: kinds_mask(&cli.kinds),
                    command_stdout_to_stderr: cli.output == "-",
                    // A graph needs no race detection.
                    detector: ipcwatch::race::detector::DetectorOptions {
                        enabled: false,
                        ..Default::default()
                    },
                    ..RecordArgs::default()
                };
                let r = record::run(args);
                let model = r.and_then(|_| {
                    ipcwatch::graph::model_from_trace(&trace).map_err(anyhow::Error::from)
                });
                let _ = std::fs::remove_file(&trace);
                model?
            }
        };
        let g = ipcwatch::graph::Graph::from_model(&model);
        Ok(match cli.format {
            GraphFormat::Dot => g.dot(),
            GraphFormat::Json => serde_json::to_string_pretty(&g)? + "\n",
        })
    })();
    let text = match result {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ipcwatch: error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let written = if cli.output == "-" {
        use std::io::Write;
        std::io::stdout().write_all(text.as_bytes())
    } else {
        std::fs::write(&cli.output, text)
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipcwatch: error: cannot write {}: {e}", cli.output);
            ExitCode::FAILURE
        }
    }
}

#[derive(clap::Args, Debug, Default)]
struct RecordCli {
    /// Where to write the trace; `-` is standard output. A file is created
    /// with mode 0600 and never through a symbolic link.
    #[arg(short, long, value_name = "FILE", default_value = "-")]
    output: String,
    /// Stop after this many seconds (fractions allowed), or a duration with
    /// units: 10s, 1m30s, 500ms.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    duration: Option<Duration>,
    /// Trace only this process (repeatable). Filtered in the kernel.
    #[arg(long = "pid", value_name = "PID")]
    pids: Vec<u32>,
    /// Trace only processes with this name (repeatable; first 15 bytes, as
    /// in /proc/PID/comm). Filtered in the kernel.
    #[arg(long = "comm", value_name = "NAME")]
    comms: Vec<String>,
    /// Trace only these channel kinds (repeatable; default: all).
    /// Filtered in the kernel.
    #[arg(long = "kind", value_enum, value_name = "KIND")]
    kinds: Vec<KindArg>,
    /// Size of the kernel ring buffer in bytes (a power of two).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_RING_BYTES, value_parser = parse_ring)]
    ring_size: u32,
    /// Exit with status 3 when a race was found.
    #[arg(long)]
    fail_on_race: bool,
    /// Copy the first N bytes (at most 256) of every read and write on a
    /// pipe, FIFO or socket into the trace (`data`, hex). Off by default:
    /// ipcwatch never records payloads unless asked.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=256))]
    capture_bytes: u32,
    /// Deep mode, for races whose writes never collide in time: every
    /// trapped write is reported and checked by a happens-before analysis
    /// (vector clocks across processes over locks, semaphores, futexes,
    /// messages and fork) with a lockset check. Costs one trap (~9 µs in a
    /// VM) plus the hold per armed write. Uncontended pthread locks are
    /// edges only with --lock-probes too (and its cost).
    #[arg(long)]
    deep: bool,
    /// Turn the race detector off (no watchpoints are ever armed).
    #[arg(long)]
    no_race: bool,
    /// Race detector: how long each hot word stays armed, in ms.
    #[arg(long, value_name = "MS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    race_window: u64,
    /// Race detector: time between the starts of two windows, in ms. A word
    /// whose windows find nothing new waits up to 8 periods (not in --deep).
    #[arg(long, value_name = "MS", default_value_t = 250, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    race_period: u64,
    /// Race detector: how long a trapped write is held, in µs. Each hold
    /// costs the writer that long; two writes in flight together are a race.
    #[arg(long, value_name = "US", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    race_delay: u32,
    /// Race detector: words armed at once (a thread has 4 debug registers).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=4))]
    race_words: u64,
    /// Also trace every pthread mutex/rwlock/spinlock and semaphore call
    /// (lock, trylock, timedlock, unlock, wait, post...) with uprobes,
    /// attached to each process when its first shared mapping appears.
    /// COSTLY: a uprobe hit costs about 8-10 us in a virtual machine, and a
    /// lock-heavy program can run tens of times slower (a two-process
    /// mutex counter: about 30x). Without it, contended locks are still
    /// seen through futex, and flock/fcntl locks always.
    #[arg(long)]
    lock_probes: bool,
    /// The command to start and trace, after `--`.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

fn record(cli: RecordCli) -> ExitCode {
    if !cli.command.is_empty() && (!cli.pids.is_empty() || !cli.comms.is_empty()) {
        eprintln!(
            "ipcwatch: error: --pid/--comm cannot be combined with `-- CMD` (the command and its descendants are traced)"
        );
        return ExitCode::from(2);
    }
    let args = RecordArgs {
        output: cli.output.clone(),
        duration: cli.duration,
        filter: Filter {
            pids: cli.pids,
            comms: cli.comms,
        },
        command: cli.command,
        ring_bytes: cli.ring_size,
        detector: ipcwatch::race::detector::DetectorOptions {
            enabled: !cli.no_race,
            window: Duration::from_millis(cli.race_window),
            period: Duration::from_millis(cli.race_period.max(cli.race_window)),
            words: cli.race_words as usize,
            backoff: !cli.deep,
            ..Default::default()
        },
        watch_delay_ns: cli.race_delay * 1000,
        deep: cli.deep,
        capture_bytes: cli.capture_bytes,
        kinds: kinds_mask(&cli.kinds),
        command_stdout_to_stderr: false,
        lock_probes: cli.lock_probes,
    };
    let fail_on_race = cli.fail_on_race;
    match record::run(args) {
        Ok(o) => {
            let lost = if o.dropped > 0 {
                format!(", {} LOST (ring buffer full; try --ring-size)", o.dropped)
            } else {
                ", 0 lost".into()
            };
            let status = o
                .command_status
                .map(|s| format!("; command exited with {s}"))
                .unwrap_or_default();
            eprintln!(
                "ipcwatch: {} events{lost}, {} channels, {} races, stopped: {}{status}",
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
            eprintln!("ipcwatch: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn analyze(file: &str, format: Format, fail_on_race: bool) -> ExitCode {
    use std::io::BufReader;
    let input: Box<dyn std::io::BufRead> = if file == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        match std::fs::File::open(file) {
            Ok(f) if f.metadata().is_ok_and(|m| m.is_dir()) => {
                eprintln!("ipcwatch: error: {file} is a directory, not a trace");
                return ExitCode::FAILURE;
            }
            Ok(f) => Box::new(BufReader::new(f)),
            Err(e) => {
                eprintln!("ipcwatch: error: cannot read {file}: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    let (analysis, error) = ipcwatch::analyze::replay(input);
    let show = error.is_none() || analysis.model.records > 0;
    if show {
        match format {
            Format::Text => print!("{}", analysis.text()),
            Format::Json => println!("{}", analysis.json()),
        }
    }
    if let Some(e) = error {
        eprintln!("ipcwatch: error: {file}: {e}");
        return ExitCode::FAILURE;
    }
    if fail_on_race && !analysis.races().is_empty() {
        return ExitCode::from(3);
    }
    ExitCode::SUCCESS
}

#[derive(clap::Args, Debug, Default)]
struct TuiCli {
    /// Play this recorded NDJSON trace instead of tracing live.
    #[arg(long, value_name = "FILE")]
    replay: Option<String>,
    /// Replay speed: 1 is real time, 10 ten times faster, 0 as fast as
    /// possible. Change it with + and - while playing.
    #[arg(long, value_name = "X", default_value_t = 1.0, value_parser = parse_speed)]
    speed: f64,
    /// Watch only this process (repeatable). Filtered in the kernel.
    #[arg(long = "pid", value_name = "PID")]
    pids: Vec<u32>,
    /// Watch only processes with this name (repeatable).
    #[arg(long = "comm", value_name = "NAME")]
    comms: Vec<String>,
    /// Size of the kernel ring buffer in bytes (a power of two).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_RING_BYTES, value_parser = parse_ring)]
    ring_size: u32,
    /// Draw on an off-screen 100x30 buffer, stop when CMD exits, and print
    /// what was measured as JSON (for `cargo xtask bench`).
    #[arg(long, hide = true)]
    headless: bool,
    /// The command to start and watch, after `--`.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

fn parse_speed(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if !v.is_finite() || !(0.0..=1024.0).contains(&v) {
        return Err(format!("`{s}`: the speed must be between 0 and 1024"));
    }
    Ok(v)
}

fn tui(cli: TuiCli) -> ExitCode {
    use ipcwatch::tui;
    let live_flags = !cli.command.is_empty() || !cli.pids.is_empty() || !cli.comms.is_empty();
    if cli.replay.is_some() && (live_flags || cli.headless) {
        eprintln!(
            "ipcwatch: error: --replay cannot be combined with --pid, --comm, --headless or `-- CMD`"
        );
        return ExitCode::from(2);
    }
    if !cli.command.is_empty() && (!cli.pids.is_empty() || !cli.comms.is_empty()) {
        eprintln!(
            "ipcwatch: error: --pid/--comm cannot be combined with `-- CMD` (the command and its descendants are traced)"
        );
        return ExitCode::from(2);
    }
    let args = RecordArgs {
        // "-": a traced command's standard output goes to standard error,
        // which the TUI captures while it runs.
        output: "-".into(),
        duration: None,
        filter: Filter {
            pids: cli.pids,
            comms: cli.comms,
        },
        command: cli.command,
        ring_bytes: cli.ring_size,
        ..RecordArgs::default()
    };
    let r = match (&cli.replay, cli.headless) {
        (Some(path), _) => tui::run_replay(path, cli.speed),
        (None, true) => tui::run_headless(args).and_then(|report| {
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }),
        (None, false) => {
            let label = if args.command.is_empty() {
                "system".to_string()
            } else {
                args.command.join(" ")
            };
            tui::run_live(args, &label)
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipcwatch: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Record(r)) => record(r),
        Some(Command::Graph(g)) => graph(g),
        Some(Command::Doctor { format }) => {
            let report = doctor::run();
            match format {
                Format::Text => print!("{}", report.text()),
                Format::Json => match serde_json::to_string_pretty(&report) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("ipcwatch: error: {e}");
                        return ExitCode::FAILURE;
                    }
                },
            }
            if report.usable() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Some(Command::Analyze {
            file,
            format,
            fail_on_race,
        }) => analyze(&file, format, fail_on_race),
        Some(Command::Tui(t)) => tui(t),
        Some(Command::Demo(d)) => demo::run(d),
        // Live monitoring of the whole system in the TUI.
        None => tui(TuiCli {
            speed: 1.0,
            ring_size: DEFAULT_RING_BYTES,
            ..TuiCli::default()
        }),
    }
}
