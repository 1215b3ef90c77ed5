//! `ipcwatch-workload`: small programs with known IPC behaviour for
//! ipcwatch's integration tests and benchmarks (`ipcwatch-workload NAME
//! ...`). Every figure the tests assert comes from code in this crate.
//! Not part of the product: `ipcwatch demo` has its own workloads.

mod floor;
mod hostile;
mod load;
mod names;
mod otlp_receiver;
mod pipes;
mod precision;
mod race;
mod scale;
mod shm;
mod sock;
mod synth;
mod sys;
mod tui_panic;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};
use ipcwatch::session::parse_duration;

/// Built-in workloads with known IPC behaviour (tests, benchmarks).
#[derive(Parser, Debug)]
#[command(name = "ipcwatch-workload", version)]
struct Cli {
    #[command(subcommand)]
    which: Workload,
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
    /// `--hook` puts them elsewhere, to weigh the other kinds of hook.
    EmptyHooks {
        /// Where the empty programs go: raw-tp and tp-btf on sys_enter and
        /// sys_exit; fentry, fexit, kprobe and kretprobe on each of
        /// `--functions`.
        #[arg(long, value_enum, default_value_t = floor::Hook::RawTp)]
        hook: floor::Hook,
        /// Kernel functions for the per-function hooks.
        #[arg(long, value_delimiter = ',', default_value = "pipe_read,pipe_write")]
        functions: Vec<String>,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        cmd: Vec<String>,
    },
    /// A pipe made now, written after DELAY seconds (or a line on stdin).
    PipeDelayed {
        #[arg(long, value_parser = parse_duration)]
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
        memory: race::Memory,
        #[arg(long, value_enum)]
        sync: race::Sync,
        /// Bumping threads in each of the two processes.
        #[arg(long, default_value_t = 1)]
        threads: usize,
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
        #[arg(long, default_value_t = synth::DEFAULT_EVENTS)]
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
    ShmCounter(ShmCounterCli),
    /// One of two unrelated processes sharing a SysV segment by KEY: both
    /// bump its counter unsynchronized for SECS once both are attached.
    SysvCounter {
        #[arg(long)]
        key: i32,
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
        /// Run on this CPU only (two writers on two CPUs collide even when
        /// other work keeps the machine busy).
        #[arg(long)]
        cpu: Option<usize>,
    },
    /// Accept one connection on the unix socket at PATH and read it all.
    UnixServe { path: String },
    /// Connect to the unix socket at PATH (waiting for it) and send BYTES.
    UnixSend {
        path: String,
        #[arg(long, default_value_t = 4096)]
        bytes: usize,
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
    /// Set the terminal up as ipcwatch's TUI does, draw once, then panic:
    /// the panic hook must restore the terminal and show the message.
    TuiPanic,
    // Issue 19, recall at scale (scale.rs).
    /// PROCS processes race on one word of a SIZE-byte shared region while
    /// each sweeps all its pages writing its own slot. Prints "region
    /// <racing word's offset> <counter> <increments> <pids...>".
    Region(RegionCli),
    /// PRODUCERS processes append to a shared ring through an
    /// unsynchronized head index. Prints "ring <head offset> <head>
    /// <appends> <pids...>".
    Ring {
        #[arg(long, default_value_t = 2)]
        producers: usize,
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
    },
    // --- Race detector precision and hostile processes (issue 19) ---
    /// PROCS processes pop, bump and push nodes of a lock-free stack in
    /// shared memory; every shared write is a compare-and-swap.
    CasQueue {
        #[arg(long, default_value_t = 2)]
        procs: usize,
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
    },
    /// One writer publishes data under a sequence counter; READERS
    /// processes read it consistently.
    Seqlock {
        #[arg(long, default_value_t = 1)]
        readers: usize,
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
    },
    /// PROCS processes each bump their own 8-byte slot of one shared page.
    Slots {
        #[arg(long, default_value_t = 4)]
        procs: usize,
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
    },
    /// Two processes race on a region, then do ACTION to it after MS.
    Hostile {
        #[arg(long, value_enum)]
        action: hostile::Action,
        #[arg(long, default_value_t = 1500)]
        after_ms: u64,
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
    },
    /// Processes with hostile names (issue 20): escape sequences, another
    /// program's name, FIFOs and a queue with hostile names under DIR.
    HostileNames {
        #[arg(long)]
        dir: String,
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
    },
    /// An OTLP/HTTP receiver (tests/otlp.rs, cargo xtask soak): decodes
    /// each POST to /v1/logs and /v1/metrics with the official protobuf
    /// definitions (opentelemetry-proto) and appends one JSON line per log
    /// record and per metric data point to OUT. Answers 200 (or 400 to
    /// what does not decode). Runs until killed.
    OtlpReceiver {
        /// IP:PORT to listen on.
        #[arg(long)]
        listen: String,
        #[arg(long)]
        out: String,
    },
    /// Two processes of COUNT threads each; one thread of each races.
    Threads {
        #[arg(long, default_value_t = 1000)]
        count: usize,
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
    },
}

// Issue 19, recall at scale (scale.rs).
#[derive(clap::Args, Debug)]
struct RegionCli {
    /// Region size: bytes, or with K, M, G (16M, 256M, 1G, 4G).
    #[arg(long, value_parser = scale::parse_size)]
    size: u64,
    #[arg(long, value_enum, default_value = "anon")]
    memory: scale::RegionMemory,
    #[arg(long, default_value_t = 2)]
    procs: usize,
    /// Racing threads per process.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Seconds of racing (after --quiet-secs).
    #[arg(long, default_value_t = 3.0)]
    secs: f64,
    /// Increments per second per thread on the racing word (0: unlimited).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Pages per second each process's sweep writes (0: unlimited).
    #[arg(long, default_value_t = 0)]
    sweep_rate: u64,
    /// Seconds of sweeping only before the racing starts.
    #[arg(long, default_value_t = 0.0)]
    quiet_secs: f64,
    /// Write every byte of the region first.
    #[arg(long)]
    touch: bool,
    /// How the racing word is bumped (--racy: none, --no-racy: mutex).
    #[arg(long, value_enum, default_value = "none")]
    sync: scale::RegionSync,
    /// Same as --sync none.
    #[arg(long, conflicts_with_all = ["sync", "no_racy"])]
    racy: bool,
    /// Same as --sync mutex.
    #[arg(long, conflicts_with = "sync")]
    no_racy: bool,
}

fn region(c: RegionCli) -> Result<()> {
    scale::region(&scale::RegionArgs {
        size: c.size,
        memory: c.memory,
        procs: c.procs,
        threads: c.threads,
        secs: c.secs,
        rate: c.rate,
        sweep_rate: c.sweep_rate,
        quiet_secs: c.quiet_secs,
        touch: c.touch,
        sync: if c.no_racy {
            scale::RegionSync::Mutex
        } else {
            c.sync
        },
    })
}

#[derive(clap::Args, Debug)]
struct ShmCounterCli {
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
}

fn shm_counter(c: ShmCounterCli) -> Result<()> {
    let lock = shm::LockKind::parse(&c.lock)?;
    shm::counter(&shm::CounterArgs {
        region: c.region,
        name: c.name,
        lock,
        children: c.children,
        secs: c.secs,
        iters: c.iters,
        serial: c.serial,
        settle: c.settle,
    })
}

/// Run one workload; its exit status.
fn run(w: Workload) -> Result<ExitCode> {
    let done = match w {
        Workload::PipeParentChild { count, size } => pipes::pipe_parent_child(count, size),
        Workload::Pingpong { size, iters } => pipes::pingpong(size, iters),
        // The command's own exit status becomes ours.
        Workload::EmptyHooks {
            hook,
            functions,
            cmd,
        } => return floor::run(hook, &functions, &cmd).map(exit_code),
        Workload::PipeDelayed { delay, bytes } => pipes::pipe_delayed(delay, bytes),
        Workload::FifoWrite { path, bytes } => pipes::fifo_write(&path, bytes),
        Workload::FifoRead { path } => pipes::fifo_read(&path),
        Workload::FdReuse => pipes::fd_reuse(),
        Workload::Counter {
            memory,
            sync,
            threads,
            secs,
        } => race::counter(memory, sync, threads, secs),
        Workload::PosixCounter { name, secs } => race::posix_counter(&name, secs),
        Workload::PipeWriters {
            writers,
            size,
            records,
        } => race::pipe_writers(writers, size, records),
        Workload::ChannelsDemo => sock::channels_demo(),
        Workload::UnixTypes { dir, bytes } => sock::unix_types(&dir, bytes),
        Workload::FdPass => sock::fd_pass(),
        Workload::Udp { size } => sock::udp(size),
        Workload::Msgq { count, size } => sock::msgq(count, size),
        Workload::SockDelayed { bytes, tcp } => sock::sock_delayed(bytes, tcp),
        Workload::CollectorThroughput { events, output } => {
            synth::collector_throughput(events, &output)
        }
        Workload::UnixPingpong { size, iters } => sock::unix_pingpong(size, iters),
        Workload::MqPingpong { size, iters } => sock::mq_pingpong(size, iters),
        Workload::ShmCounter(c) => shm_counter(c),
        Workload::SysvCounter { key, secs, cpu } => race::sysv_counter(key, secs, cpu),
        Workload::UnixServe { path } => sock::unix_serve(&path),
        Workload::UnixSend { path, bytes } => sock::unix_send(&path, bytes),
        Workload::ShmPosixPeer { name, role } => shm::posix_peer(&name, &role),
        Workload::FileLock { kind, path } => shm::filelock(&kind, &path),
        Workload::ShmHold { kind, name } => shm::hold(&kind, &name),
        Workload::Paced {
            rate,
            secs,
            procs,
            size,
        } => load::paced(rate, secs, procs, size),
        Workload::ManyChannels {
            procs,
            channels,
            hold,
            rate,
        } => load::many_channels(procs, channels, hold, rate),
        Workload::TuiPanic => tui_panic::run(),
        // Issue 19, recall at scale (scale.rs).
        Workload::Region(c) => region(c),
        Workload::Ring { producers, secs } => scale::ring(producers, secs),
        // --- Race detector precision and hostile processes (issue 19) ---
        Workload::CasQueue { procs, secs } => precision::cas_queue(procs, secs),
        Workload::Seqlock { readers, secs } => precision::seqlock(readers, secs),
        Workload::Slots { procs, secs } => precision::slots(procs, secs),
        Workload::Hostile {
            action,
            after_ms,
            secs,
        } => hostile::hostile(action, after_ms, secs),
        Workload::Threads { count, secs } => hostile::threads(count, secs),
        Workload::HostileNames { dir, secs } => names::hostile_names(&dir, secs),
        Workload::OtlpReceiver { listen, out } => otlp_receiver::run(&listen, &out),
    };
    done.map(|()| ExitCode::SUCCESS)
}

fn exit_code(status: i32) -> ExitCode {
    match status {
        0 => ExitCode::SUCCESS,
        code => ExitCode::from(code.clamp(1, 255) as u8),
    }
}

fn main() -> ExitCode {
    run(Cli::parse().which).unwrap_or_else(|e| {
        eprintln!("ipcwatch-workload: error: {e:#}");
        ExitCode::FAILURE
    })
}
