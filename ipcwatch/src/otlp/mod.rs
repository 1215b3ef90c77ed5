//! OTLP export (`--otlp URL`): findings as OpenTelemetry log records, the
//! recording's counters as OpenTelemetry metrics, sent over HTTP/protobuf
//! to a Collector (docs/otlp.md: the layout, the bounds, the Collector's
//! configuration).
//!
//! The event loop never waits for the endpoint: a finding is handed over
//! with a non-blocking `try_send` into a bounded queue ([`QUEUE`]); a full
//! queue counts a drop. A thread of its own ([`worker`], without
//! capabilities) batches the findings ([`BATCH`] at most, every
//! [`BATCH_DELAY`]), encodes and posts them, and retries a failed batch
//! with backoff (up to [`MAX_BACKOFF`]) while it holds the next ones in the
//! queue: memory stays bounded by the queue and one batch, and what was
//! queued during an outage arrives after it. Metrics are not queued: each
//! export sends the latest snapshot of cumulative counters (the one
//! `--metrics` serves), every [`METRICS_EVERY`] and once more at the end.
//! [`Otlp::flush`] ends it all within a bounded time.
//!
//! Any module may switch it on with [`Otlp::start`] and [`Tee`]: `record`
//! and `tui` do (through the session), and so can a daemon.

mod encode;
pub mod http;
mod state;
mod worker;

use std::io;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::host::{hostname, monotonic_ns};
use crate::kernel::privileges::spawn_unprivileged;
use crate::metrics::{ExportCounts, Metrics};
use crate::record::{RaceLine, Record};
use crate::sink::Sink;

pub use http::{Endpoint, UrlError};
pub use state::{
    BATCH, BATCH_DELAY, DEFAULT_FLUSH, FIRST_BACKOFF, MAX_BACKOFF, METRICS_EVERY, QUEUE,
    REQUEST_TIMEOUT,
};
use state::{Counters, Shared};
use worker::Worker;

#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error("cannot start the OTLP exporter's thread: {0}")]
    Thread(io::Error),
}

/// A running exporter.
#[derive(Debug)]
pub struct Otlp {
    tx: SyncSender<Box<RaceLine>>,
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    endpoint: Endpoint,
}

impl Otlp {
    /// Start exporting to `endpoint`: findings given to [`Otlp::offer`],
    /// and `metrics`' latest snapshot.
    pub fn start(endpoint: Endpoint, metrics: Arc<Metrics>) -> Result<Arc<Otlp>, OtlpError> {
        let (tx, rx): (SyncSender<Box<RaceLine>>, Receiver<Box<RaceLine>>) = sync_channel(QUEUE);
        let shared = Arc::new(Shared {
            counters: Counters::default(),
            closing: Mutex::new(None),
            last_failure: Mutex::new(None),
        });
        let unix_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        let w = Worker {
            rx,
            shared: Arc::clone(&shared),
            endpoint: endpoint.clone(),
            metrics,
            resource: encode::resource(&hostname()),
            unix_offset_ns: unix_now - i128::from(monotonic_ns()),
            start_unix_ns: u64::try_from(unix_now).unwrap_or(0),
        };
        let thread =
            spawn_unprivileged("ipcwatch-otlp", move || w.run()).map_err(OtlpError::Thread)?;
        Ok(Arc::new(Otlp {
            tx,
            shared,
            thread: Mutex::new(Some(thread)),
            endpoint,
        }))
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Hand a finding over, never waiting: a full queue (or a stopped
    /// exporter) counts a drop.
    pub fn offer(&self, race: &RaceLine) {
        let c = &self.shared.counters;
        c.offered.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(Box::new(race.clone())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                c.dropped_queue_full.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {
                c.undelivered.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The counts now.
    pub fn counts(&self) -> ExportCounts {
        self.shared.counts()
    }

    /// The last failure the exporter met, if any.
    pub fn last_failure(&self) -> Option<String> {
        self.shared
            .last_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Send what is queued and the latest metrics, within `limit`; what
    /// is still unsent then counts as undelivered. Call it once the last
    /// finding was offered and the final snapshot published.
    pub fn flush(&self, limit: Duration) -> ExportCounts {
        *self
            .shared
            .closing
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + limit);
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        // The worker ends by the deadline (each request is bounded by it).
        if let Some(t) = thread
            && t.join().is_err()
        {
            tracing::error!("the OTLP exporter's thread panicked");
        }
        self.counts()
    }
}

/// A sink that hands every finding to the exporter, then to `inner`.
pub struct Tee<S> {
    pub inner: S,
    otlp: Option<Arc<Otlp>>,
}

impl<S: Sink> Tee<S> {
    pub fn new(inner: S, otlp: Option<Arc<Otlp>>) -> Self {
        Tee { inner, otlp }
    }
}

impl<S: Sink> Sink for Tee<S> {
    fn record(&mut self, record: &Record) -> io::Result<()> {
        if let (Some(o), Record::Race(r)) = (&self.otlp, record) {
            o.offer(r);
        }
        self.inner.record(record)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn race() -> RaceLine {
        RaceLine {
            ts_ns: 1,
            kind: "pipe-interleave".into(),
            region: None,
            channel: Some("pipe:[1]".into()),
            offset: None,
            len: 4096,
            accesses: vec![],
            evidence: "collision".into(),
            confidence: 1.0,
            explanation: String::new(),
        }
    }

    #[test]
    fn a_dead_endpoint_costs_a_bounded_queue_then_counted_drops() {
        // A port nothing listens on: every request is refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let endpoint = Endpoint::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let otlp = Otlp::start(endpoint, Metrics::new()).unwrap();
        let offered = (QUEUE + BATCH + 100) as u64;
        let r = race();
        for _ in 0..offered {
            otlp.offer(&r);
        }
        let c = otlp.counts();
        // The queue and one batch, at most, are held.
        assert!(c.dropped_queue_full >= 100, "{c:?}");
        let c = otlp.flush(Duration::from_millis(300));
        assert_eq!(c.sent, 0);
        assert_eq!(c.queued, 0, "{c:?}");
        assert!(c.failed_requests >= 1, "{c:?}");
        assert_eq!(c.lost(), offered, "{c:?}");
        let last = otlp.last_failure().unwrap();
        assert!(last.contains("cannot connect"), "{last}");
        // After the flush, a finding is counted, not held.
        otlp.offer(&r);
        assert_eq!(otlp.counts().lost(), offered + 1);
    }
}
