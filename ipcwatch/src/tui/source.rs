//! Where records come from: the live collector (its own thread, which
//! owns the probes and never waits for the UI) or a trace file played at
//! a chosen speed. Both send [`Input`]s down one unbounded channel.

use crate::kernel::privileges::spawn_unprivileged;
use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::record::Record;
use crate::session::{self, RecordArgs};
use crate::sink::Sink;
use crate::trace::Replay;

use super::input::{Input, SourceStatus};

/// Records are sent in batches of at most this many, or older than
/// [`BATCH_AGE`].
const BATCH: usize = 4096;
const BATCH_AGE: Duration = Duration::from_millis(50);

/// The collector's sink in TUI mode: batches records and sends them to
/// the UI thread. Sending never blocks (the channel is unbounded), so the
/// collector keeps draining the ring buffer whatever the UI is doing.
pub struct BatchSink {
    tx: Sender<Input>,
    batch: Vec<Record>,
    since: Instant,
    started: bool,
    /// Records sent (for the bench).
    pub sent: u64,
}

impl BatchSink {
    pub fn new(tx: Sender<Input>) -> Self {
        BatchSink {
            tx,
            batch: Vec::with_capacity(BATCH),
            since: Instant::now(),
            started: false,
            sent: 0,
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        self.sent += batch.len() as u64;
        self.since = Instant::now();
        self.tx
            .send(Input::Records(batch))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

impl Sink for BatchSink {
    fn record(&mut self, record: &Record) -> std::io::Result<()> {
        if !self.started {
            self.started = true;
            let _ = self.tx.send(Input::Source(SourceStatus::Started));
        }
        self.batch.push(record.clone());
        if self.batch.len() >= BATCH
            || (self.batch.len().is_multiple_of(64) && self.since.elapsed() >= BATCH_AGE)
        {
            self.send()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// Handle on the live collector thread.
pub struct Live {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Live {
    /// Start tracing in a thread; records and the outcome go to `tx`.
    pub fn start(args: RecordArgs, tx: Sender<Input>) -> std::io::Result<Live> {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("collector".into())
            .spawn(move || {
                let sink_tx = tx.clone();
                let r = session::run_with(args, |_| Ok(BatchSink::new(sink_tx)), Some(stop_rx));
                let status = match r {
                    Ok(o) => {
                        let mut why = o.reason.as_str().to_string();
                        if let Some(s) = o.command_status {
                            why.push_str(&format!(", command exited with {s}"));
                        }
                        let _ = tx.send(Input::Source(SourceStatus::Stats {
                            events: o.events,
                            dropped: o.dropped.total,
                        }));
                        SourceStatus::Ended(why)
                    }
                    Err(e) => SourceStatus::Failed(format!("{e:#}")),
                };
                let _ = tx.send(Input::Source(status));
            })?;
        Ok(Live {
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Ask the collector to stop and wait for it (it reaps the command).
    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Pause and speed of a replay, shared by the UI and the replay thread.
#[derive(Debug)]
pub struct ReplayControl {
    paused: AtomicBool,
    speed_bits: AtomicU64,
}

impl ReplayControl {
    /// `speed` 1.0 is real time; 0 (or less) means as fast as possible.
    pub fn new(speed: f64) -> Self {
        ReplayControl {
            paused: AtomicBool::new(false),
            speed_bits: AtomicU64::new(speed.max(0.0).to_bits()),
        }
    }
    pub fn paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }
    pub fn set_paused(&self, p: bool) {
        self.paused.store(p, Ordering::Relaxed);
    }
    pub fn speed(&self) -> f64 {
        f64::from_bits(self.speed_bits.load(Ordering::Relaxed))
    }
    /// Multiply the speed (between 1/64 and 1024 times real time).
    pub fn scale_speed(&self, factor: f64) {
        let s = self.speed();
        if s > 0.0 {
            let n = (s * factor).clamp(1.0 / 64.0, 1024.0);
            self.speed_bits.store(n.to_bits(), Ordering::Relaxed);
        }
    }
    pub fn speed_label(&self) -> String {
        let s = self.speed();
        if s <= 0.0 {
            "max".into()
        } else if s >= 1.0 {
            format!("{s:.0}x")
        } else {
            format!("1/{:.0}x", 1.0 / s)
        }
    }
}

/// Play `reader` into `tx`, pacing by the records' times.
pub fn replay<R: BufRead + Send + 'static>(
    reader: Replay<R>,
    name: String,
    ctl: Arc<ReplayControl>,
    tx: Sender<Input>,
) -> std::io::Result<JoinHandle<()>> {
    let speed = ctl.speed();
    let replayer = Replayer {
        reader,
        name,
        ctl,
        tx,
        batch: Vec::new(),
        pending: None,
        anchor: None,
        speed,
        trace_now: 0,
    };
    spawn_unprivileged("replay", move || replayer.run())
}

/// The replay thread's state.
struct Replayer<R> {
    reader: Replay<R>,
    name: String,
    ctl: Arc<ReplayControl>,
    tx: Sender<Input>,
    /// Records due and not sent yet.
    batch: Vec<Record>,
    /// The record read too early, held until it is due.
    pending: Option<Record>,
    /// A trace time and the instant it was played at: the pace is
    /// measured from there (moved on a pause or a change of speed).
    anchor: Option<(u64, Instant)>,
    speed: f64,
    /// Trace time played so far.
    trace_now: u64,
}

/// What to do with a record read from the trace.
enum Pace {
    /// It is due: into the batch.
    Now,
    /// Not yet: hold it and come back later.
    Later,
    /// The UI is gone.
    Stop,
}

impl<R: BufRead> Replayer<R> {
    fn run(mut self) {
        let _ = self.tx.send(Input::Source(SourceStatus::Started));
        loop {
            if self.ctl.paused() {
                if !self.flush() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(30));
                self.reanchor();
                continue;
            }
            let s = self.ctl.speed();
            if s != self.speed {
                self.speed = s;
                self.reanchor();
            }
            let Some(rec) = self.next() else {
                return;
            };
            match self.pace(&rec) {
                Pace::Now => self.batch.push(rec),
                Pace::Later => {
                    self.pending = Some(rec);
                    continue;
                }
                Pace::Stop => return,
            }
            if self.batch.len() >= BATCH && !self.flush() {
                return;
            }
        }
    }

    /// Send the batch; false when the UI is gone.
    fn flush(&mut self) -> bool {
        self.batch.is_empty()
            || self
                .tx
                .send(Input::Records(std::mem::take(&mut self.batch)))
                .is_ok()
    }

    /// Pace from the trace time reached, from now on.
    fn reanchor(&mut self) {
        self.anchor = self.anchor.map(|_| (self.trace_now, Instant::now()));
    }

    /// The held record or the next one from the file; `None` at the end
    /// of the trace or on an error, once the UI has been told.
    fn next(&mut self) -> Option<Record> {
        if let Some(r) = self.pending.take() {
            return Some(r);
        }
        let status = match self.reader.next_record() {
            Ok(Some(r)) => return Some(r),
            Ok(None) => SourceStatus::Ended("end of trace".into()),
            Err(e) => SourceStatus::Failed(format!("{}: {e}", self.name)),
        };
        self.flush();
        let _ = self.tx.send(Input::Source(status));
        None
    }

    /// Is `rec` due at this speed? If not, send what is due and the trace
    /// time, and sleep a little (at most 50 ms).
    fn pace(&mut self, rec: &Record) -> Pace {
        let Some(ts) = rec.ts_ns().filter(|t| *t > 0) else {
            return Pace::Now;
        };
        let (a_ts, a_at) = *self.anchor.get_or_insert((ts, Instant::now()));
        if self.speed > 0.0 && ts > a_ts {
            let due = a_at + Duration::from_secs_f64((ts - a_ts) as f64 / 1e9 / self.speed);
            let now = Instant::now();
            if due > now {
                if !self.flush() {
                    return Pace::Stop;
                }
                let t = a_ts + ((now - a_at).as_secs_f64() * self.speed * 1e9) as u64;
                self.trace_now = self.trace_now.max(t.min(ts));
                let _ = self
                    .tx
                    .send(Input::Source(SourceStatus::Clock(self.trace_now)));
                std::thread::sleep((due - now).min(Duration::from_millis(50)));
                return Pace::Later;
            }
        }
        self.trace_now = self.trace_now.max(ts);
        Pace::Now
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Warning;

    fn warning(i: u64) -> Record {
        Record::Warning(Warning {
            ts_ns: i,
            message: String::new(),
            probe: None,
        })
    }

    #[test]
    fn the_sink_batches_without_blocking_and_flush_sends_the_rest() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut sink = BatchSink::new(tx);
        for i in 0..(BATCH as u64 + 10) {
            sink.record(&warning(i)).unwrap();
        }
        assert!(matches!(
            rx.try_recv(),
            Ok(Input::Source(SourceStatus::Started))
        ));
        match rx.try_recv() {
            Ok(Input::Records(b)) => assert_eq!(b.len(), BATCH),
            other => panic!("expected a full batch, got {other:?}"),
        }
        assert!(rx.try_recv().is_err());
        sink.flush().unwrap();
        match rx.try_recv() {
            Ok(Input::Records(b)) => assert_eq!(b.len(), 10),
            other => panic!("expected the rest, got {other:?}"),
        }
        assert_eq!(sink.sent, BATCH as u64 + 10);
        // The UI is gone: the collector hears it as a broken pipe.
        drop(rx);
        sink.record(&warning(0)).unwrap();
        assert_eq!(
            sink.flush().unwrap_err().kind(),
            std::io::ErrorKind::BrokenPipe
        );
    }

    #[test]
    fn replay_speed_doubles_halves_and_stays_in_bounds() {
        let c = ReplayControl::new(1.0);
        assert_eq!(c.speed_label(), "1x");
        c.scale_speed(2.0);
        assert_eq!(c.speed_label(), "2x");
        for _ in 0..20 {
            c.scale_speed(0.5);
        }
        assert_eq!(c.speed_label(), "1/64x");
        let max = ReplayControl::new(0.0);
        max.scale_speed(2.0);
        assert_eq!(max.speed_label(), "max");
    }
}
