//! `ipcwatch record`: trace, and write NDJSON.

pub mod spawn;

use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{SignalKind, signal};

use crate::collect::Collector;
use crate::decode::{RawEvent, decode};
use crate::host::{hostname, monotonic_ns, release};
use crate::kernel::loader::{Filter, Options, Probes};
use crate::kernel::preflight;
use crate::race::detector::{Detector, DetectorOptions};
use crate::record::{FORMAT_NAME, FORMAT_VERSION, Header, Lost, Record, Summary, Text, Warning};
use crate::scan::procs;
use crate::sink::Sink;
use crate::sink::ndjson::NdjsonWriter;

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
            ring_bytes: crate::kernel::loader::DEFAULT_RING_BYTES,
            detector: DetectorOptions::default(),
            watch_delay_ns: 50_000,
            deep: false,
            capture_bytes: 0,
            kinds: crate::kernel::loader::Options::default().kinds,
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

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

fn is_broken_pipe(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

/// Warn on standard error as well as in the trace.
fn warn(
    collector: &mut Collector,
    sink: &mut dyn Sink,
    probe: Option<String>,
    message: String,
) -> io::Result<()> {
    eprintln!("ipcwatch: warning: {message}");
    collector.push(
        Record::Warning(Warning {
            ts_ns: monotonic_ns(),
            message,
            probe,
        }),
        sink,
    )
}

/// Everything before the event loop; then the loop; then the summary.
pub fn run(args: RecordArgs) -> anyhow::Result<Outcome> {
    run_with(
        args,
        |args| {
            NdjsonWriter::create(&args.output)
                .map_err(|e| anyhow::anyhow!("cannot write the trace to {}: {e}", args.output))
        },
        None,
    )
}

/// What ends a recording besides its command: SIGINT and SIGTERM (taken
/// over from their default action), `--duration`, a stop request.
struct StopOn {
    sigint: tokio::signal::unix::Signal,
    sigterm: tokio::signal::unix::Signal,
    duration: Option<Duration>,
    request: Option<tokio::sync::oneshot::Receiver<()>>,
}

/// Where a `record -- CMD` stopped by a signal is in letting CMD end.
#[derive(Clone, Copy, PartialEq, Eq)]
enum WindDown {
    /// No signal yet.
    Running,
    /// Signalled: waiting for the command to exit by itself.
    Waiting,
    /// The command was sent SIGTERM.
    Terminated,
}

/// [`run`] with another sink (the TUI's) and a way to ask it to stop.
/// With `-- CMD` and `output` "-", the command's standard output goes to
/// standard error, as for `record`. A stop request sends SIGTERM to the
/// command.
pub fn run_with<S: Sink>(
    args: RecordArgs,
    make_sink: impl FnOnce(&RecordArgs) -> anyhow::Result<S>,
    stop: Option<tokio::sync::oneshot::Receiver<()>>,
) -> anyhow::Result<Outcome> {
    preflight::check_privileges()?;
    let tracefs_note = preflight::ensure_tracefs()?;
    let memlock_note = preflight::raise_memlock();
    let mut sink = make_sink(&args)?;

    let opts = Options {
        filter: args.filter.clone(),
        listed_only: !args.command.is_empty(),
        ring_bytes: args.ring_bytes,
        watch_delay_ns: args.watch_delay_ns,
        deep: args.deep,
        capture_bytes: args.capture_bytes,
        kinds: args.kinds,
        lock_probes: args.lock_probes,
    };
    let mut probes = Probes::load(&opts)?;

    let start = SystemTime::now();
    let start_mono = monotonic_ns();
    let mut collector = Collector::new();
    if args.deep {
        collector.analyses.hb = Some(crate::race::hb::HappensBefore::new());
    }
    let header = Record::Header(Header {
        ts_ns: start_mono,
        format: FORMAT_NAME.into(),
        version: FORMAT_VERSION,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        kernel: release(),
        hostname: hostname(),
        start_time: rfc3339(start),
        start_unix_ns: start
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        command: (!args.command.is_empty()).then(|| args.command.clone()),
        pids: args.filter.pids.clone(),
        comms: args.filter.comms.clone(),
    });
    collector.push(header, &mut sink)?;
    if let Some(note) = tracefs_note {
        eprintln!("ipcwatch: {note}");
    }
    if let Some(note) = memlock_note {
        log_note(&note);
    }
    for s in std::mem::take(&mut probes.skipped) {
        let msg = format!("probe {} not attached: {}", s.probe, s.reason);
        warn(&mut collector, &mut sink, Some(s.probe), msg)?;
    }

    // From here on SIGINT/SIGTERM must end in a summary (and must not kill
    // ipcwatch while its command waits for it), so take them over now.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stop_on = {
        let _in_runtime = runtime.enter();
        StopOn {
            sigint: signal(SignalKind::interrupt())?,
            sigterm: signal(SignalKind::terminate())?,
            duration: args.duration,
            request: stop,
        }
    };

    // Start the command blocked, let the kernel follow it, then release it.
    let mut child = None;
    if !args.command.is_empty() {
        let blocked = spawn::spawn_blocked(
            &args.command,
            args.output == "-" || args.command_stdout_to_stderr,
        )?;
        let pid = blocked.pid;
        probes.trace_pid(pid, true)?;
        let pidfd = spawn::pidfd(pid)?;
        let mut recs = Vec::new();
        procs::scan_process(pid, monotonic_ns(), true, &mut recs);
        for r in recs {
            collector.push(r, &mut sink)?;
        }
        blocked.release(&args.command[0])?;
        child = Some((pid, pidfd));
    } else {
        let filter = args.filter.clone();
        let want = move |pid: u32, comm: &str| {
            (filter.pids.is_empty() && filter.comms.is_empty())
                || filter.pids.contains(&pid)
                || filter.comms.iter().any(|c| c.as_str() == comm)
        };
        let found = procs::scan(monotonic_ns(), &want);
        let regions = crate::scan::maps::scan_existing(&found, monotonic_ns());
        for r in found.into_iter().chain(regions) {
            if let Record::Mapping(m) = &r
                && m.prot.contains('w')
            {
                probes.mark_shared(m.pid)?;
                collector.regions.note_mapper(m.pid);
            }
            collector.push(r, &mut sink)?;
        }
        // Sockets connected before the start, with both ends (sock_diag).
        for r in collector.sockets.existing(monotonic_ns(), &want) {
            collector.push(r, &mut sink)?;
        }
    }
    sink.flush()?;

    let (reason, command_status) = runtime.block_on(event_loop(
        &mut probes,
        &mut collector,
        &mut sink,
        child,
        args.detector.clone(),
        stop_on,
    ))?;

    match collector.finish(&mut sink) {
        Err(e) if !is_broken_pipe(&e) => return Err(e.into()),
        _ => {}
    }
    // Events lost after the last one each CPU delivered leave no gap.
    let dropped = collector
        .dropped_at_stop
        .unwrap_or_else(|| probes.dropped());
    collector.close_sequences(&probes.kernel_seqs());
    let summary = Record::Summary(Summary {
        ts_ns: monotonic_ns(),
        duration_ns: monotonic_ns().saturating_sub(start_mono),
        events: collector.events,
        dropped,
        seq_gaps: collector.seq_gaps,
        reason: Text::const_new(reason.as_str()),
        command_status,
        channels: collector.model.channel_summaries(),
    });
    let written = collector
        .push(summary, &mut sink)
        .and_then(|()| sink.flush());
    match written {
        Err(e) if !is_broken_pipe(&e) => return Err(e.into()),
        _ => {}
    }
    Ok(Outcome {
        reason,
        events: collector.events,
        dropped,
        channels: collector.model.channels.len(),
        races: collector.model.findings.len(),
        command_status,
    })
}

fn log_note(note: &str) {
    if std::env::var_os("IPCWATCH_VERBOSE").is_some() {
        eprintln!("ipcwatch: note: {note}");
    }
}

/// Read the ring buffer until a stop condition; report losses as they grow.
async fn event_loop(
    probes: &mut Probes,
    collector: &mut Collector,
    sink: &mut dyn Sink,
    child: Option<(u32, OwnedFd)>,
    detector_opts: DetectorOptions,
    stop_on: StopOn,
) -> anyhow::Result<(StopReason, Option<i32>)> {
    let ring = probes.take_ring()?;
    // SAFETY: the RingBuf owns its map descriptor, which stays open for as
    // long as the AsyncFd holds it.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE)? };
    let StopOn {
        mut sigint,
        mut sigterm,
        duration,
        request,
    } = stop_on;
    let (child_pid, pidfd) = match child {
        // SAFETY: the OwnedFd stays open for as long as the AsyncFd holds it.
        Some((pid, fd)) => (
            Some(pid),
            Some(unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE)? }),
        ),
        None => (None, None),
    };
    let deadline = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let child_exit = async {
        match &pidfd {
            Some(fd) => {
                let _ = fd.readable().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::pin!(child_exit);
    let stop_requested = async {
        match request {
            // A dropped sender counts as a request too.
            Some(rx) => {
                let _ = rx.await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stop_requested);
    // The kernel wakes us only when the ring buffer fills up to a mark, so
    // poll it often; losses and the output are checked less often.
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut lost_reported = 0u64;
    let mut ticks = 0u64;
    let mut decode_errors = 0u64;
    let mut detector = Detector::new(detector_opts);

    // Everything waiting in the ring buffer: kernel events through the
    // collector, collisions through the race detector.
    fn drain(
        ring: &mut aya::maps::RingBuf<aya::maps::MapData>,
        collector: &mut Collector,
        sink: &mut dyn Sink,
        detector: &mut Detector,
        probes: &Probes,
        decode_errors: &mut u64,
    ) -> io::Result<()> {
        while let Some(item) = ring.next() {
            match decode(&item) {
                Ok(RawEvent::Collision(c)) => {
                    collector.ingest(&RawEvent::Collision(c), sink)?;
                    drop(item);
                    if let Some(race) = detector.on_collision(&c, probes) {
                        collector.push(Record::Race(race), sink)?;
                    }
                }
                Ok(RawEvent::WriteSample(c)) => {
                    collector.ingest(&RawEvent::WriteSample(c), sink)?;
                    drop(item);
                    if let Some(line) = detector.sample_line(&c) {
                        collector.push(Record::WriteSample(line), sink)?;
                    }
                }
                Ok(ev) => collector.ingest(&ev, sink)?,
                Err(e) => {
                    *decode_errors += 1;
                    if *decode_errors == 1 {
                        drop(item);
                        warn(
                            collector,
                            sink,
                            None,
                            format!("undecodable kernel event: {e}"),
                        )?;
                    }
                }
            }
        }
        Ok(())
    }

    // With --lock-probes, give each new mapper of shared memory its uprobes.
    let attach_new =
        |probes: &mut Probes, collector: &mut Collector, sink: &mut dyn Sink| -> io::Result<()> {
            for pid in std::mem::take(&mut collector.regions.gone) {
                probes.detach_lock_probes(pid);
            }
            for pid in std::mem::take(&mut collector.regions.new_mappers) {
                for s in probes.attach_lock_probes(pid) {
                    let msg = format!("probe {} not attached: {}", s.probe, s.reason);
                    warn(collector, sink, Some(s.probe), msg)?;
                }
            }
            Ok(())
        };

    // SIGINT/SIGTERM while the command runs: a terminal's Ctrl-C reaches
    // the command too, so give it a second to exit by itself; then send it
    // SIGTERM and wait up to 2 s more. Recording goes on meanwhile (its last
    // events belong in the trace); a second signal stops at once.
    let mut wind_down = WindDown::Running;
    let wind_down_timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(wind_down_timer);
    let on_signal = |wind_down: &mut WindDown, timer: Pin<&mut tokio::time::Sleep>| {
        if child_pid.is_none() || *wind_down != WindDown::Running {
            return Some(StopReason::Signal);
        }
        *wind_down = WindDown::Waiting;
        timer.reset(tokio::time::Instant::now() + Duration::from_secs(1));
        None
    };

    let reason = loop {
        let step: io::Result<Option<StopReason>> = tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                let r = drain(guard.get_inner_mut(), collector, sink, &mut detector, probes, &mut decode_errors);
                guard.clear_ready();
                r.and_then(|()| attach_new(probes, collector, sink)).map(|()| None)
            }
            _ = poll.tick() => {
                detector.tick(&collector.model, probes, std::time::Instant::now());
                drain(ring.get_mut(), collector, sink, &mut detector, probes, &mut decode_errors)
                    .and_then(|()| attach_new(probes, collector, sink))
                    .map(|()| None)
            }
            _ = tick.tick() => {
                // Every 5 s, give freed heap pages back: a burst (a /proc
                // scan, thousands of new channels) leaves free memory in
                // the middle of the heap that malloc keeps otherwise.
                ticks += 1;
                if ticks.is_multiple_of(25) {
                    // SAFETY: malloc_trim only releases free memory.
                    unsafe { libc::malloc_trim(0) };
                }
                let dropped = probes.dropped();
                let mut r = Ok(());
                if dropped > lost_reported {
                    r = collector.push(Record::Lost(Lost {
                        ts_ns: monotonic_ns(),
                        count: dropped - lost_reported,
                        total: dropped,
                    }), sink);
                    lost_reported = dropped;
                }
                r.and_then(|()| sink.flush()).map(|()| None)
            }
            _ = sigint.recv() => Ok(on_signal(&mut wind_down, wind_down_timer.as_mut())),
            _ = sigterm.recv() => Ok(on_signal(&mut wind_down, wind_down_timer.as_mut())),
            _ = &mut wind_down_timer, if wind_down != WindDown::Running => {
                let pid = child_pid.unwrap_or_default();
                if wind_down == WindDown::Waiting {
                    // SAFETY: signalling our own child, not yet reaped (we
                    // reap it only after this loop): the pid is still its.
                    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                    wind_down = WindDown::Terminated;
                    wind_down_timer.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(2));
                    Ok(None)
                } else {
                    let msg = format!("the command (pid {pid}) is still running 2 s after SIGTERM; leaving it");
                    warn(collector, sink, None, msg).map(|()| Some(StopReason::Signal))
                }
            }
            _ = &mut deadline => Ok(Some(StopReason::Duration)),
            _ = &mut child_exit => Ok(Some(match wind_down {
                WindDown::Running => StopReason::CommandExited,
                _ => StopReason::Signal,
            })),
            _ = &mut stop_requested => Ok(Some(StopReason::Requested)),
        };
        match step {
            Ok(Some(reason)) => break reason,
            Ok(None) => {}
            Err(e) if is_broken_pipe(&e) => return Ok((StopReason::OutputClosed, None)),
            Err(e) => return Err(e.into()),
        }
    };
    // Everything the kernel wrote before the stop.
    detector.disarm(probes);
    let seqs = probes.kernel_seqs();
    collector.stop_at(seqs, probes.dropped());
    let last = drain(
        ring.get_mut(),
        collector,
        sink,
        &mut detector,
        probes,
        &mut decode_errors,
    )
    .and_then(|()| {
        let dropped = collector
            .dropped_at_stop
            .unwrap_or_else(|| probes.dropped());
        if dropped > lost_reported {
            collector.push(
                Record::Lost(Lost {
                    ts_ns: monotonic_ns(),
                    count: dropped - lost_reported,
                    total: dropped,
                }),
                sink,
            )?;
        }
        Ok(())
    });
    match last {
        Err(e) if is_broken_pipe(&e) => return Ok((StopReason::OutputClosed, None)),
        r => r?,
    }
    if reason == StopReason::Requested
        && let Some(pid) = child_pid
    {
        // SAFETY: signalling our own child, which pidfd shows is not yet
        // reaped, so the pid cannot have been reused.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    let status = child_pid.and_then(spawn::reap);
    Ok((reason, status))
}
