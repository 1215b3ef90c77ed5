//! The `ipcwatch` command: parse the arguments, run the subcommand.

// See lib.rs: modules reach each other through `use` (ipcwatch/clippy.toml).
#![warn(clippy::absolute_paths)]

mod cli;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ipcwatch::kernel::doctor;

use cli::analyze::analyze;
use cli::args::{Format, parse_secs};
use cli::graph::{GraphCli, graph};
use cli::record::{RecordCli, record};
use cli::tui::{TuiCli, demo, tui};

#[derive(Parser, Debug)]
#[command(name = "ipcwatch", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// More diagnostics on standard error: -v info, -vv debug, -vvv trace
    /// (what ipcwatch does besides the trace: probes armed, scans, notes).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// The diagnostics level by name: error, warn (the default), info,
    /// debug, trace. Overrides -v.
    #[arg(long, value_name = "LEVEL", global = true)]
    log_level: Option<tracing::Level>,
}

/// Diagnostics go to standard error (the TUI keeps them for after it
/// closes), warnings and worse by default.
fn init_logging(cli: &Cli) {
    let level = cli.log_level.unwrap_or(match cli.verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        2 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    });
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
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
    Demo,
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
    /// Run CMD with empty programs on the raw sys_enter and sys_exit
    /// tracepoints: the cost of ipcwatch's hooks alone (benchmarks).
    EmptyHooks {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        cmd: Vec<String>,
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
    /// Two pipes, one after the other, on the same descriptor numbers.
    FdReuse,
    /// Two processes bump a shared counter, racing or synchronized.
    Counter {
        #[arg(long, value_enum)]
        memory: ipcwatch::workload::race::Memory,
        #[arg(long, value_enum)]
        sync: ipcwatch::workload::race::Sync,
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
    },
    /// Bump a counter in POSIX shm object NAME, unsynchronized.
    PosixCounter {
        #[arg(long)]
        name: String,
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
    },
    /// WRITERS processes write RECORDS records of SIZE bytes to one pipe.
    PipeWriters {
        #[arg(long, default_value_t = 3)]
        writers: usize,
        #[arg(long)]
        size: usize,
        #[arg(long, default_value_t = 64)]
        records: usize,
    },
    /// The workloads of `ipcwatch demo`, until the parent goes away.
    Demo {
        #[arg(long, value_parser = parse_secs)]
        duration: Option<Duration>,
    },
    /// Socketpair 7000 B, abstract unix 3333 B, TCP 5555 B, POSIX queue 5 x 100 B.
    ChannelsDemo,
    /// Unix stream, dgram and seqpacket sockets under DIR, BYTES each.
    UnixTypes {
        dir: String,
        #[arg(long, default_value_t = 3000)]
        bytes: usize,
    },
    /// SCM_RIGHTS and SCM_CREDENTIALS over a socketpair.
    FdPass,
    /// UDP over IPv4 and IPv6 loopback, 3 datagrams of SIZE.
    Udp {
        #[arg(long, default_value_t = 400)]
        size: usize,
    },
    /// A SysV message queue, COUNT messages of SIZE from a child.
    Msgq {
        #[arg(long, default_value_t = 4)]
        count: usize,
        #[arg(long, default_value_t = 64)]
        size: usize,
    },
    /// A socketpair (or with --tcp a TCP loopback connection) connected
    /// now, written after a line on stdin.
    SockDelayed {
        #[arg(long)]
        bytes: usize,
        #[arg(long)]
        tcp: bool,
    },
    /// Synthetic kernel events through the decoder, the collector and the
    /// NDJSON writer on one thread; prints events/s (no kernel, no root).
    CollectorThroughput {
        #[arg(long, default_value_t = ipcwatch::workload::synth::DEFAULT_EVENTS)]
        events: u64,
        /// Where the NDJSON goes.
        #[arg(long, default_value = "/dev/null")]
        output: String,
    },
    /// Round trips of SIZE bytes over a unix socketpair.
    UnixPingpong {
        #[arg(long, default_value_t = 1)]
        size: usize,
        #[arg(long, default_value_t = 100_000)]
        iters: u64,
    },
    /// Round trips of SIZE bytes over two POSIX queues.
    MqPingpong {
        #[arg(long, default_value_t = 1)]
        size: usize,
        #[arg(long, default_value_t = 100_000)]
        iters: u64,
    },
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
    /// PROCS writers, each with a pipe and a reader, at RATE traced io
    /// events per second (one write and one read per message) for SECS.
    Paced {
        #[arg(long)]
        rate: u64,
        #[arg(long, default_value_t = 2.0)]
        secs: f64,
        #[arg(long, default_value_t = 2)]
        procs: usize,
        #[arg(long, default_value_t = 8)]
        size: usize,
    },
    /// PROCS processes holding CHANNELS live pipes and socketpairs for
    /// HOLD seconds, with RATE one-byte messages per second among them.
    ManyChannels {
        #[arg(long, default_value_t = 1000)]
        procs: usize,
        #[arg(long, default_value_t = 10_000)]
        channels: usize,
        #[arg(long, default_value_t = 10.0)]
        hold: f64,
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
    },
}

fn workload(w: Workload) -> ExitCode {
    use ipcwatch::workload as wl;
    let r = match w {
        Workload::PipeParentChild { count, size } => wl::pipe_parent_child(count, size),
        Workload::Pingpong { size, iters } => wl::pingpong(size, iters),
        Workload::EmptyHooks { cmd } => {
            return match ipcwatch::floor::run(&cmd) {
                Ok(0) => ExitCode::SUCCESS,
                Ok(code) => ExitCode::from(code.clamp(1, 255) as u8),
                Err(e) => {
                    eprintln!("ipcwatch: {e}");
                    ExitCode::from(1)
                }
            };
        }
        Workload::PipeDelayed { delay, bytes } => wl::pipe_delayed(delay, bytes),
        Workload::FifoWrite { path, bytes } => wl::fifo_write(&path, bytes),
        Workload::FifoRead { path } => wl::fifo_read(&path),
        Workload::FdReuse => wl::fd_reuse(),
        Workload::Counter { memory, sync, secs } => wl::race::counter(memory, sync, secs),
        Workload::PosixCounter { name, secs } => wl::race::posix_counter(&name, secs),
        Workload::PipeWriters {
            writers,
            size,
            records,
        } => wl::race::pipe_writers(writers, size, records),
        Workload::Demo { duration } => wl::demo::run(duration),
        Workload::ChannelsDemo => wl::channels_demo(),
        Workload::UnixTypes { dir, bytes } => wl::unix_types(&dir, bytes),
        Workload::FdPass => wl::fd_pass(),
        Workload::Udp { size } => wl::udp(size),
        Workload::Msgq { count, size } => wl::msgq(count, size),
        Workload::SockDelayed { bytes, tcp } => wl::sock_delayed(bytes, tcp),
        Workload::CollectorThroughput { events, output } => {
            wl::synth::collector_throughput(events, &output)
        }
        Workload::UnixPingpong { size, iters } => wl::unix_pingpong(size, iters),
        Workload::MqPingpong { size, iters } => wl::mq_pingpong(size, iters),
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
        Workload::Paced {
            rate,
            secs,
            procs,
            size,
        } => wl::load::paced(rate, secs, procs, size),
        Workload::ManyChannels {
            procs,
            channels,
            hold,
            rate,
        } => wl::load::many_channels(procs, channels, hold, rate),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipcwatch workload: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
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
        Some(Command::Workload { which }) => workload(which),
        Some(Command::Analyze {
            file,
            format,
            fail_on_race,
        }) => analyze(&file, format, fail_on_race),
        Some(Command::Tui(t)) => tui(t),
        Some(Command::Demo) => demo(),
        // Live monitoring of the whole system in the TUI.
        None => tui(TuiCli::whole_system()),
    }
}
