//! The running recording: the ring buffer read until a stop condition,
//! kernel events through the collector, collisions through the race
//! detector, losses reported as they grow.

use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::time::Sleep;

use super::args::{RecordArgs, StopReason};
use super::metrics::{LoopCounters, snapshot};
use super::notes::{is_broken_pipe, warn};
use super::spawn;
use crate::collect::Collector;
use crate::collect::totals::{self, IoTotalsReader};
use crate::decode::{RawEvent, decode};
use crate::host::give_back_heap;
use crate::host::monotonic_ns;
use crate::kernel::loader::{EventRing, Probes, aggregating};
use crate::metrics::Metrics;
use crate::otlp::Otlp;
use crate::race::detector::Detector;
use crate::record::{DetectorSummary, HeatLine, Lost, Record};
use crate::sink::Sink;

/// What ends a recording besides its command: SIGINT and SIGTERM (taken
/// over from their default action), `--duration`, a stop request.
pub struct StopOn {
    sigint: Signal,
    sigterm: Signal,
    duration: Option<Duration>,
    request: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl StopOn {
    /// Take SIGINT and SIGTERM over (call it inside `runtime`).
    pub fn new(
        duration: Option<Duration>,
        request: Option<tokio::sync::oneshot::Receiver<()>>,
    ) -> io::Result<Self> {
        Ok(StopOn {
            sigint: signal(SignalKind::interrupt())?,
            sigterm: signal(SignalKind::terminate())?,
            duration,
            request,
        })
    }
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

/// Events handled per turn of the loop at most.
const DRAIN_BUDGET: usize = 2048;

/// The loop's state between wake-ups.
/// Ticks (5 a second) between two `heat` lines.
const HEAT_TICKS: u64 = 10;
/// Ticks between two passes of `--forget-after` (10 s).
const FORGET_TICKS: u64 = 50;

struct Loop<'a> {
    probes: &'a mut Probes,
    collector: &'a mut Collector,
    sink: &'a mut dyn Sink,
    detector: Detector,
    child_pid: Option<u32>,
    wind_down: WindDown,
    lost_reported: u64,
    ticks: u64,
    decode_errors: u64,
    /// The last `heat` line written (the next one only if it differs).
    last_heat: Option<HeatLine>,
    /// Where `--metrics` scrapes read the counters.
    metrics: Option<Arc<Metrics>>,
    /// `--otlp`, for its counts.
    otlp: Option<Arc<Otlp>>,
    /// The longest wait of an event in the ring buffer since the last
    /// publication, ns.
    lag_ns: u64,
    /// `--forget-after`, ns.
    forget_ns: Option<u64>,
    /// The live TUI's in-kernel io totals, when the kernel sums them.
    totals: Option<IoTotalsReader>,
    /// When they were last read.
    totals_at: std::time::Instant,
}

/// How often the in-kernel io totals are read (the TUI draws every 100 ms).
const TOTALS_EVERY: Duration = Duration::from_millis(100);

/// How the event loop ended.
pub struct LoopEnd {
    pub reason: StopReason,
    /// The command's exit status.
    pub status: Option<i32>,
    /// What the race detector looked at.
    pub detector: Option<DetectorSummary>,
    /// For the last metrics snapshot.
    pub counters: LoopCounters,
}

impl Loop<'_> {
    /// Everything waiting in the ring buffer: kernel events through the
    /// collector, collisions through the race detector; at most `budget`
    /// events, so that a flood cannot keep the race detector from its
    /// turn. Returns whether the ring was emptied.
    fn drain(&mut self, ring: &mut EventRing, budget: usize) -> io::Result<bool> {
        let (collector, sink) = (&mut *self.collector, &mut *self.sink);
        let mut left = budget;
        let emptied = loop {
            if left == 0 {
                break false;
            }
            left -= 1;
            let Some(item) = ring.next() else {
                break true;
            };
            let decoded = decode(&item);
            // The first event of a turn waited longest (the ring is in
            // order per CPU): how far behind the collector is.
            if left + 1 == budget
                && let Ok(ev) = &decoded
            {
                let waited = monotonic_ns().saturating_sub(ev.header().ts_ns);
                self.lag_ns = self.lag_ns.max(waited);
            }
            match decoded {
                Ok(RawEvent::Collision(c)) => {
                    collector.ingest(&RawEvent::Collision(c), sink)?;
                    drop(item);
                    self.detector.on_collision(&c, self.probes);
                }
                Ok(RawEvent::WriteSample(c)) => {
                    collector.ingest(&RawEvent::WriteSample(c), sink)?;
                    drop(item);
                    if let Some(line) = self.detector.sample_line(&c) {
                        collector.push(Record::WriteSample(line), sink)?;
                    }
                }
                Ok(ev) => collector.ingest(&ev, sink)?,
                Err(e) => {
                    self.decode_errors += 1;
                    if self.decode_errors == 1 {
                        drop(item);
                        let msg = format!("undecodable kernel event: {e}");
                        warn(collector, sink, None, msg)?;
                    }
                }
            }
        };
        self.report_detector()?;
        Ok(emptied)
    }

    /// The in-kernel io totals (`Options::aggregate`): a summed `io` line
    /// for each descriptor that moved bytes since the last read; entries
    /// of closed descriptors removed from the map.
    fn report_totals(&mut self) -> io::Result<()> {
        let Some(reader) = &mut self.totals else {
            return Ok(());
        };
        self.totals_at = std::time::Instant::now();
        let deltas = reader.deltas(&self.probes.io_totals());
        let gone = reader.closed(&self.collector.model, &deltas);
        self.probes.forget_io_totals(&gone);
        for d in &deltas {
            if let Some(line) = totals::line(d, &self.collector.model) {
                self.collector.push(line, self.sink)?;
            }
        }
        Ok(())
    }

    /// The race detector's findings and warnings, into the trace.
    fn report_detector(&mut self) -> io::Result<()> {
        for race in self.detector.take_findings() {
            self.collector.push(Record::Race(race), self.sink)?;
        }
        for message in self.detector.take_warnings() {
            warn(
                self.collector,
                self.sink,
                Some("race-detector".to_string()),
                message,
            )?;
        }
        Ok(())
    }

    /// With --lock-probes, give each new mapper of shared memory its
    /// uprobes (and take them from those that exec'd).
    fn attach_new(&mut self) -> io::Result<()> {
        for pid in std::mem::take(&mut self.collector.regions.gone) {
            self.probes.detach_lock_probes(pid);
        }
        for pid in std::mem::take(&mut self.collector.regions.new_mappers) {
            for s in self.probes.attach_lock_probes(pid) {
                let msg = s.to_string();
                warn(self.collector, self.sink, Some(s.probe), msg)?;
            }
        }
        Ok(())
    }

    /// A `lost` record for the events dropped since the last one.
    fn report_lost(&mut self, dropped: u64) -> io::Result<()> {
        if dropped > self.lost_reported {
            let lost = Record::Lost(Lost {
                ts_ns: monotonic_ns(),
                count: dropped - self.lost_reported,
                total: dropped,
            });
            self.collector.push(lost, self.sink)?;
            self.lost_reported = dropped;
        }
        Ok(())
    }

    /// Five times a second: losses, the output flushed, and every 5 s the
    /// freed heap given back (a burst, a /proc scan or thousands of new
    /// channels, leaves free memory in the middle of the heap that malloc
    /// keeps otherwise).
    fn tick(&mut self) -> io::Result<()> {
        self.ticks += 1;
        if self.ticks.is_multiple_of(25) {
            give_back_heap();
        }
        self.report_lost(self.probes.dropped())?;
        self.collector.containers_named(monotonic_ns(), self.sink)?;
        if self.ticks.is_multiple_of(HEAT_TICKS) {
            self.report_heat()?;
        }
        if self.ticks.is_multiple_of(5) {
            self.publish();
        }
        if let Some(keep) = self.forget_ns
            && self.ticks.is_multiple_of(FORGET_TICKS)
        {
            self.collector.forget(monotonic_ns(), keep);
        }
        self.sink.flush()
    }

    /// A `heat` line, when the detector's hot words or pages changed since
    /// the last one.
    fn report_heat(&mut self) -> io::Result<()> {
        let Some(line) = self.detector.heat_line(monotonic_ns()) else {
            return Ok(());
        };
        let same = self
            .last_heat
            .as_ref()
            .is_some_and(|last| last.same_counts(&line));
        if !same {
            self.collector.push(Record::Heat(line.clone()), self.sink)?;
            self.last_heat = Some(line);
        }
        Ok(())
    }

    /// The loop's own counters now.
    fn counters(&self) -> LoopCounters {
        LoopCounters {
            ring_full: self
                .collector
                .dropped_at_stop
                .unwrap_or_else(|| self.probes.dropped_by_kind()),
            undecodable: self.decode_errors,
            detector: self.detector.stats(),
            lag_ns: self.lag_ns,
            otlp: self.otlp.as_ref().map(|o| o.counts()),
        }
    }

    /// Once a second: the counters for `--metrics` scrapes.
    fn publish(&mut self) {
        if let Some(m) = &self.metrics {
            m.publish(snapshot(self.collector, &self.counters(), false));
            self.lag_ns = 0;
        }
    }

    /// SIGINT/SIGTERM while the command runs: a terminal's Ctrl-C reaches
    /// the command too, so give it a second to exit by itself (recording
    /// goes on meanwhile: its last events belong in the trace); a second
    /// signal, or no command, stops at once.
    fn signal(&mut self, timer: Pin<&mut Sleep>) -> Option<StopReason> {
        if self.child_pid.is_none() || self.wind_down != WindDown::Running {
            return Some(StopReason::Signal);
        }
        self.wind_down = WindDown::Waiting;
        timer.reset(tokio::time::Instant::now() + Duration::from_secs(1));
        None
    }

    /// The wind-down timer: SIGTERM to the command, then 2 s more, then
    /// stop and leave it running, with a warning.
    fn wind_down_step(&mut self, timer: Pin<&mut Sleep>) -> io::Result<Option<StopReason>> {
        let pid = self.child_pid.unwrap_or_default();
        if self.wind_down == WindDown::Waiting {
            // Our own child, not yet reaped (we reap it only after the
            // loop): the pid is still its.
            spawn::terminate(pid);
            self.wind_down = WindDown::Terminated;
            timer.reset(tokio::time::Instant::now() + Duration::from_secs(2));
            return Ok(None);
        }
        let msg = format!("the command (pid {pid}) is still running 2 s after SIGTERM; leaving it");
        warn(self.collector, self.sink, None, msg).map(|()| Some(StopReason::Signal))
    }

    /// After the stop: everything the kernel wrote before it, and the
    /// final loss count.
    fn last_drain(&mut self, ring: &mut EventRing) -> io::Result<()> {
        self.detector.stop(&self.collector.model, self.probes);
        let seqs = self.probes.kernel_seqs();
        self.collector.stop_at(seqs, self.probes.dropped_by_kind());
        while !self.drain(ring, DRAIN_BUDGET)? {}
        self.report_totals()?;
        self.report_detector()?;
        let dropped = self
            .collector
            .dropped_at_stop
            .map_or_else(|| self.probes.dropped(), |d| d.total);
        self.report_lost(dropped)
    }
}

impl Loop<'_> {
    /// What the loop hands on when it ends (without the detector's
    /// summary when the output closed).
    fn end(&self, reason: StopReason, status: Option<i32>) -> LoopEnd {
        LoopEnd {
            reason,
            status,
            detector: None,
            counters: self.counters(),
        }
    }
}

/// A future that never ends when `what` is `None`.
async fn or_never<T>(what: Option<impl Future<Output = T>>) {
    match what {
        Some(f) => {
            let _ = f.await;
        }
        None => std::future::pending().await,
    }
}

/// Read the ring buffer until a stop condition; report losses as they grow.
/// Returns why it stopped, the command's exit status and what the race
/// detector looked at.
pub async fn event_loop(
    probes: &mut Probes,
    collector: &mut Collector,
    sink: &mut dyn Sink,
    child: Option<(u32, OwnedFd)>,
    args: &RecordArgs,
    stop_on: StopOn,
) -> anyhow::Result<LoopEnd> {
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
    let deadline = or_never(duration.map(tokio::time::sleep));
    tokio::pin!(deadline);
    let child_exit = or_never(pidfd.as_ref().map(|fd| fd.readable()));
    tokio::pin!(child_exit);
    // A dropped sender counts as a request too.
    let stop_requested = or_never(request);
    tokio::pin!(stop_requested);
    // The kernel wakes us only when the ring buffer fills up to a mark, so
    // poll it often; losses and the output are checked less often.
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let wind_down_timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(wind_down_timer);
    let mut lp = Loop {
        probes,
        collector,
        sink,
        detector: Detector::new(args.detector.clone()),
        child_pid,
        wind_down: WindDown::Running,
        lost_reported: 0,
        ticks: 0,
        decode_errors: 0,
        last_heat: None,
        metrics: args.metrics.clone(),
        otlp: args.otlp.clone(),
        lag_ns: 0,
        forget_ns: args.forget_after.map(|d| d.as_nanos() as u64),
        totals: aggregating(&args.kernel).then(IoTotalsReader::new),
        totals_at: std::time::Instant::now(),
    };
    // Series exist from the first scrape on.
    lp.publish();

    let reason = loop {
        let step: io::Result<Option<StopReason>> = tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                let r = lp.drain(guard.get_inner_mut(), DRAIN_BUDGET);
                // Left over: ready again at once, after the other branches
                // had their chance.
                if !matches!(r, Ok(false)) {
                    guard.clear_ready();
                }
                // Under a flood the ring stays ready and the timers below
                // can wait long: the race detector keeps its own clock.
                lp.detector.tick(&lp.collector.model, lp.probes, std::time::Instant::now());
                r.and_then(|_| lp.report_detector())
                    .and_then(|()| lp.attach_new())
                    .map(|()| None)
            }
            _ = poll.tick() => {
                lp.probes.flush_kernel_log();
                lp.detector.tick(&lp.collector.model, lp.probes, std::time::Instant::now());
                lp.report_detector()
                    .and_then(|()| lp.drain(ring.get_mut(), DRAIN_BUDGET))
                    .and_then(|_| lp.attach_new())
                    .and_then(|()| {
                        if lp.totals_at.elapsed() >= TOTALS_EVERY {
                            lp.report_totals()
                        } else {
                            Ok(())
                        }
                    })
                    .map(|()| None)
            }
            _ = tick.tick() => lp.tick().map(|()| None),
            _ = sigint.recv() => Ok(lp.signal(wind_down_timer.as_mut())),
            _ = sigterm.recv() => Ok(lp.signal(wind_down_timer.as_mut())),
            _ = &mut wind_down_timer, if lp.wind_down != WindDown::Running => {
                lp.wind_down_step(wind_down_timer.as_mut())
            }
            _ = &mut deadline => Ok(Some(StopReason::Duration)),
            _ = &mut child_exit => Ok(Some(
                if lp.wind_down == WindDown::Running && !signalled(&mut sigint, &mut sigterm) {
                    StopReason::CommandExited
                } else {
                    StopReason::Signal
                },
            )),
            _ = &mut stop_requested => Ok(Some(StopReason::Requested)),
        };
        match step {
            Ok(Some(reason)) => break reason,
            Ok(None) => {}
            Err(e) if is_broken_pipe(&e) => return Ok(lp.end(StopReason::OutputClosed, None)),
            Err(e) => return Err(e.into()),
        }
    };
    match lp.last_drain(ring.get_mut()) {
        Err(e) if is_broken_pipe(&e) => return Ok(lp.end(StopReason::OutputClosed, None)),
        r => r?,
    }
    if reason == StopReason::Requested
        && let Some(pid) = child_pid
    {
        // Our own child, which the pidfd shows is not yet reaped, so the
        // pid cannot have been reused.
        spawn::terminate(pid);
    }
    let status = child_pid.and_then(spawn::reap);
    Ok(LoopEnd {
        detector: lp.detector.summary(),
        ..lp.end(reason, status)
    })
}

/// Whether SIGINT or SIGTERM has come and not been taken yet. Ctrl-C
/// reaches the whole job: a command that ends of it can be seen exiting
/// in the same turn as the signal, and `select!` takes ready branches in
/// random order. The user asked to stop: that is the reason, whichever
/// came first to this loop (a slow machine, or a busy loop, makes both
/// ready at once).
fn signalled(sigint: &mut Signal, sigterm: &mut Signal) -> bool {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    sigint.poll_recv(&mut cx).is_ready() || sigterm.poll_recv(&mut cx).is_ready()
}
