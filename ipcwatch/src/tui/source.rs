//! Where records come from: the live collector (its own thread, which
//! owns the probes and never waits for the UI) or a trace file played at
//! a chosen speed. Both send [`AppEvent`]s down one unbounded channel.

use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::record::Record;
use crate::session::{self, RecordArgs};
use crate::sink::Sink;
use crate::trace::TraceReader;

use super::app::{AppEvent, SourceEvent};

/// Records are sent in batches of at most this many, or older than
/// [`BATCH_AGE`].
const BATCH: usize = 4096;
const BATCH_AGE: Duration = Duration::from_millis(50);

/// The collector's sink in TUI mode: batches records and sends them to
/// the UI thread. Sending never blocks (the channel is unbounded), so the
/// collector keeps draining the ring buffer whatever the UI is doing.
pub struct ChannelSink {
    tx: Sender<AppEvent>,
    batch: Vec<Record>,
    since: Instant,
    started: bool,
    /// Records sent (for the bench).
    pub sent: u64,
}

impl ChannelSink {
    pub fn new(tx: Sender<AppEvent>) -> Self {
        ChannelSink {
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
            .send(AppEvent::Records(batch))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

impl Sink for ChannelSink {
    fn record(&mut self, record: &Record) -> std::io::Result<()> {
        if !self.started {
            self.started = true;
            let _ = self.tx.send(AppEvent::Source(SourceEvent::Started));
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
    pub fn start(args: RecordArgs, tx: Sender<AppEvent>) -> std::io::Result<Live> {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("collector".into())
            .spawn(move || {
                let sink_tx = tx.clone();
                let r = session::run_with(args, |_| Ok(ChannelSink::new(sink_tx)), Some(stop_rx));
                let ev = match r {
                    Ok(o) => {
                        let mut why = o.reason.as_str().to_string();
                        if let Some(s) = o.command_status {
                            why.push_str(&format!(", command exited with {s}"));
                        }
                        let _ = tx.send(AppEvent::Source(SourceEvent::Stats {
                            events: o.events,
                            dropped: o.dropped,
                        }));
                        SourceEvent::Ended(why)
                    }
                    Err(e) => SourceEvent::Failed(format!("{e:#}")),
                };
                let _ = tx.send(AppEvent::Source(ev));
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
    mut reader: TraceReader<R>,
    name: String,
    ctl: Arc<ReplayControl>,
    tx: Sender<AppEvent>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("replay".into())
        .spawn(move || {
            let _ = tx.send(AppEvent::Source(SourceEvent::Started));
            let mut batch: Vec<Record> = Vec::new();
            let mut pending: Option<Record> = None;
            let mut anchor: Option<(u64, Instant)> = None;
            let mut speed = ctl.speed();
            let mut trace_now = 0u64;
            let flush = |batch: &mut Vec<Record>| -> bool {
                batch.is_empty() || tx.send(AppEvent::Records(std::mem::take(batch))).is_ok()
            };
            loop {
                if ctl.paused() {
                    if !flush(&mut batch) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(30));
                    anchor = anchor.map(|_| (trace_now, Instant::now()));
                    continue;
                }
                let s = ctl.speed();
                if s != speed {
                    speed = s;
                    anchor = anchor.map(|_| (trace_now, Instant::now()));
                }
                let rec = match pending.take() {
                    Some(r) => r,
                    None => match reader.next_record() {
                        Ok(Some(r)) => r,
                        Ok(None) => {
                            flush(&mut batch);
                            let _ = tx
                                .send(AppEvent::Source(SourceEvent::Ended("end of trace".into())));
                            return;
                        }
                        Err(e) => {
                            flush(&mut batch);
                            let _ = tx.send(AppEvent::Source(SourceEvent::Failed(format!(
                                "{name}: {e}"
                            ))));
                            return;
                        }
                    },
                };
                if let Some(ts) = rec.ts_ns().filter(|t| *t > 0) {
                    let (a_ts, a_at) = *anchor.get_or_insert((ts, Instant::now()));
                    if speed > 0.0 && ts > a_ts {
                        let due = a_at + Duration::from_secs_f64((ts - a_ts) as f64 / 1e9 / speed);
                        let now = Instant::now();
                        if due > now {
                            pending = Some(rec);
                            if !flush(&mut batch) {
                                return;
                            }
                            let t = a_ts + ((now - a_at).as_secs_f64() * speed * 1e9) as u64;
                            trace_now = trace_now.max(t.min(ts));
                            let _ = tx.send(AppEvent::Source(SourceEvent::Clock(trace_now)));
                            std::thread::sleep((due - now).min(Duration::from_millis(50)));
                            continue;
                        }
                    }
                    trace_now = trace_now.max(ts);
                }
                batch.push(rec);
                if batch.len() >= BATCH && !flush(&mut batch) {
                    return;
                }
            }
        })
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
        let mut sink = ChannelSink::new(tx);
        for i in 0..(BATCH as u64 + 10) {
            sink.record(&warning(i)).unwrap();
        }
        assert!(matches!(
            rx.try_recv(),
            Ok(AppEvent::Source(SourceEvent::Started))
        ));
        match rx.try_recv() {
            Ok(AppEvent::Records(b)) => assert_eq!(b.len(), BATCH),
            other => panic!("expected a full batch, got {other:?}"),
        }
        assert!(rx.try_recv().is_err());
        sink.flush().unwrap();
        match rx.try_recv() {
            Ok(AppEvent::Records(b)) => assert_eq!(b.len(), 10),
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
