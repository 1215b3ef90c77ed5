use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use ipcwatch::doctor;
use ipcwatch::loader::{DEFAULT_RING_BYTES, Filter};
use ipcwatch::record::{self, RecordArgs};

/// See how processes talk (pipes, FIFOs...), live or recorded as NDJSON.
///
/// Needs Linux 5.8+ with BTF, and root or CAP_BPF + CAP_PERFMON.
/// Exit codes: 0 success, 1 runtime or environment error, 2 bad usage.
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
    /// Show which kernel features ipcwatch can use here, by trying each.
    Doctor {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Built-in workloads with known IPC behaviour (tests, benchmarks, demo).
    #[command(hide = true)]
    Workload {
        #[command(subcommand)]
        which: Workload,
    },
}

#[derive(Subcommand, Debug)]
enum Workload {
    /// A parent writes COUNT x SIZE bytes to a child through a pipe.
    PipeParentChild {
        #[arg(long, default_value_t = 3)]
        count: usize,
        #[arg(long, default_value_t = 1000)]
        size: usize,
    },
    /// Round trips of SIZE bytes over two pipes.
    Pingpong {
        #[arg(long, default_value_t = 1)]
        size: usize,
        #[arg(long, default_value_t = 100_000)]
        iters: u64,
    },
    /// A pipe made now, written after DELAY seconds (or a line on stdin).
    PipeDelayed {
        #[arg(long, value_parser = parse_secs)]
        delay: Option<Duration>,
        #[arg(long)]
        bytes: usize,
    },
    /// Write BYTES to the FIFO at PATH.
    FifoWrite {
        path: String,
        #[arg(long)]
        bytes: usize,
    },
    /// Read the FIFO at PATH to the end.
    FifoRead { path: String },
    /// Children bump a counter in a shared region under a process-shared lock.
    ShmCounter {
        /// sysv, posix, memfd, file or anon.
        #[arg(long, default_value = "sysv")]
        region: String,
        /// Name of a posix object or path of a file.
        #[arg(long, default_value = "ipcwatch-counter")]
        name: String,
        /// none, mutex, rwlock, spin, sem or cond.
        #[arg(long, default_value = "mutex")]
        lock: String,
        #[arg(long, default_value_t = 2)]
        children: usize,
        /// Seconds each child runs (when --iters is 0).
        #[arg(long, default_value_t = 1.0)]
        secs: f64,
        /// Increments per child (0: run for --secs).
        #[arg(long, default_value_t = 0)]
        iters: u64,
        /// One child after the other (uncontended).
        #[arg(long)]
        serial: bool,
        /// Seconds each child sleeps before it starts.
        #[arg(long, default_value_t = 0.0)]
        settle: f64,
    },
    /// One of two unrelated processes sharing a POSIX shm object.
    ShmPosixPeer {
        name: String,
        /// create or open.
        #[arg(long)]
        role: String,
    },
    /// Two processes contend for a file lock (flock, fcntl, ofd, lockf).
    FileLock { kind: String, path: String },
    /// Map a region, wait for a line on stdin, write it, remove it.
    ShmHold {
        kind: String,
        #[arg(long, default_value = "ipcwatch-hold")]
        name: String,
    },
}

fn workload(w: Workload) -> ExitCode {
    use ipcwatch::workload as wl;
    let r = match w {
        Workload::PipeParentChild { count, size } => wl::pipe_parent_child(count, size),
        Workload::Pingpong { size, iters } => wl::pingpong(size, iters),
        Workload::PipeDelayed { delay, bytes } => wl::pipe_delayed(delay, bytes),
        Workload::FifoWrite { path, bytes } => wl::fifo_write(&path, bytes),
        Workload::FifoRead { path } => wl::fifo_read(&path),
        Workload::ShmCounter {
            region,
            name,
            lock,
            children,
            secs,
            iters,
            serial,
            settle,
        } => wl::shm::LockKind::parse(&lock).and_then(|lock| {
            wl::shm::counter(&wl::shm::CounterArgs {
                region,
                name,
                lock,
                children,
                secs,
                iters,
                serial,
                settle,
            })
        }),
        Workload::ShmPosixPeer { name, role } => wl::shm::posix_peer(&name, &role),
        Workload::FileLock { kind, path } => wl::shm::filelock(&kind, &path),
        Workload::ShmHold { kind, name } => wl::shm::hold(&kind, &name),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipcwatch workload: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
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

#[derive(clap::Args, Debug, Default)]
struct RecordCli {
    /// Where to write the trace; `-` is standard output. A file is created
    /// with mode 0600 and never through a symbolic link.
    #[arg(short, long, value_name = "FILE", default_value = "-")]
    output: String,
    /// Stop after this many seconds (fractions allowed).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    duration: Option<Duration>,
    /// Trace only this process (repeatable). Filtered in the kernel.
    #[arg(long = "pid", value_name = "PID")]
    pids: Vec<u32>,
    /// Trace only processes with this name (repeatable; first 15 bytes, as
    /// in /proc/PID/comm). Filtered in the kernel.
    #[arg(long = "comm", value_name = "NAME")]
    comms: Vec<String>,
    /// Size of the kernel ring buffer in bytes (a power of two).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_RING_BYTES, value_parser = parse_ring)]
    ring_size: u32,
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
        lock_probes: cli.lock_probes,
    };
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
                "ipcwatch: {} events{lost}, {} channels, stopped: {}{status}",
                o.events,
                o.channels,
                o.reason.as_str()
            );
            ExitCode::SUCCESS
        }
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
        Some(Command::Workload { which }) => workload(which),
        // Until the TUI lands, the default is to record everything to stdout.
        None => record(RecordCli {
            output: "-".into(),
            ring_size: DEFAULT_RING_BYTES,
            ..RecordCli::default()
        }),
    }
}
