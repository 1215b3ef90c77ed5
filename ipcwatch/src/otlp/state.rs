//! What the exporter's handle and its thread share: the bounds, the
//! counters, the flush's deadline.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::http::Failure;
use crate::metrics::ExportCounts;

/// Findings waiting for the exporter, at most (beyond them: drops).
pub const QUEUE: usize = 4096;
/// Log records per request, at most.
pub const BATCH: usize = 512;
/// How long a finding may wait for more to join its batch.
pub const BATCH_DELAY: Duration = Duration::from_secs(1);
/// The first retry's wait after a failed request; it doubles up to
/// [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);
pub const MAX_BACKOFF: Duration = Duration::from_secs(4);
/// How long one request may take (connect, send, answer).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Time between two metric exports.
pub const METRICS_EVERY: Duration = Duration::from_secs(10);
/// How long the exit's flush may take by default.
pub const DEFAULT_FLUSH: Duration = Duration::from_secs(5);

/// What the exporter counted (see [`ExportCounts`]).
#[derive(Debug, Default)]
pub struct Counters {
    pub offered: AtomicU64,
    pub sent: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    pub rejected: AtomicU64,
    pub undelivered: AtomicU64,
    pub failed_requests: AtomicU64,
    pub metric_exports: AtomicU64,
}

/// What the worker thread shares with the handle.
#[derive(Debug)]
pub struct Shared {
    pub counters: Counters,
    /// Set by `Otlp::flush`: send what is left, until then.
    pub closing: Mutex<Option<Instant>>,
    /// The last failure, for the warning line.
    pub last_failure: Mutex<Option<String>>,
}

impl Shared {
    pub fn closing(&self) -> Option<Instant> {
        *self.closing.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The counts now.
    pub fn counts(&self) -> ExportCounts {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let sent = load(&c.sent);
        let dropped_queue_full = load(&c.dropped_queue_full);
        let rejected = load(&c.rejected);
        let undelivered = load(&c.undelivered);
        let done = sent + dropped_queue_full + rejected + undelivered;
        ExportCounts {
            sent,
            queued: load(&c.offered).saturating_sub(done),
            dropped_queue_full,
            rejected,
            undelivered,
            failed_requests: load(&c.failed_requests),
            metric_exports: load(&c.metric_exports),
        }
    }

    /// A request failed: counted, and kept for the warning line.
    pub fn failed(&self, what: &str, f: &Failure) {
        add(&self.counters.failed_requests, 1);
        let msg = format!("{what}: {f}");
        tracing::debug!("otlp: {msg}");
        *self
            .last_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(msg);
    }
}

/// Count `n` more.
pub fn add(a: &AtomicU64, n: usize) {
    a.fetch_add(n as u64, Ordering::Relaxed);
}
