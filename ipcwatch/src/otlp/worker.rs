//! The exporter's thread: batches, posts, retries, and the exit's flush.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use super::encode::{log_record, logs_request, metrics_request};
use super::http::{Endpoint, Failure, post};
use super::state::{
    BATCH, BATCH_DELAY, FIRST_BACKOFF, MAX_BACKOFF, METRICS_EVERY, REQUEST_TIMEOUT, Shared, add,
};
use crate::metrics::Metrics;
use crate::record::RaceLine;

/// The longest sleep between two looks at the queue and the flush flag.
const NAP: Duration = Duration::from_millis(100);

pub struct Worker {
    pub rx: Receiver<Box<RaceLine>>,
    pub shared: Arc<Shared>,
    pub endpoint: Endpoint,
    pub metrics: Arc<Metrics>,
    pub resource: Resource,
    /// Unix time minus the trace's monotonic time, ns.
    pub unix_offset_ns: i128,
    /// The start of the counters (the metrics' start time).
    pub start_unix_ns: u64,
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Worker {
    /// One POST, bounded by the flush's deadline when there is one.
    fn post(&self, path: &str, body: &[u8], deadline: Option<Instant>) -> Result<(), Failure> {
        let limit = match deadline {
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .min(REQUEST_TIMEOUT),
            None => REQUEST_TIMEOUT,
        };
        if limit.is_zero() {
            return Err(Failure::Retry("the flush ran out of time".into()));
        }
        post(&self.endpoint, path, body, limit)
    }

    /// The latest snapshot, with the exporter's own counts now.
    fn export_metrics(&self, deadline: Option<Instant>) -> bool {
        let mut snapshot = self.metrics.latest();
        snapshot.otlp = Some(self.shared.counts());
        let req = metrics_request(&self.resource, &snapshot, self.start_unix_ns, unix_ns());
        match self.post(&self.endpoint.metrics_path, &req.encode_to_vec(), deadline) {
            Ok(()) => {
                add(&self.shared.counters.metric_exports, 1);
                true
            }
            Err(f) => {
                self.shared.failed("metrics", &f);
                false
            }
        }
    }

    fn encode(&self, race: &RaceLine) -> LogRecord {
        log_record(race, self.unix_offset_ns, unix_ns())
    }

    pub fn run(self) {
        let mut batch: Vec<LogRecord> = Vec::new();
        let mut batch_since: Option<Instant> = None;
        let mut retry_at: Option<Instant> = None;
        let mut backoff = FIRST_BACKOFF;
        let mut next_metrics = Instant::now() + METRICS_EVERY;
        let mut disconnected = false;
        let mut closing_seen = false;
        loop {
            let now = Instant::now();
            let closing = self.shared.closing();
            if closing.is_some() && !closing_seen {
                // The end: no more waiting out a long backoff.
                closing_seen = true;
                retry_at = None;
            }
            while batch.len() < BATCH && !disconnected {
                match self.rx.try_recv() {
                    Ok(r) => {
                        batch.push(self.encode(&r));
                        batch_since.get_or_insert(now);
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => disconnected = true,
                }
            }
            let waiting = retry_at.is_some_and(|t| now < t);
            let due = !batch.is_empty()
                && (batch.len() >= BATCH
                    || closing.is_some()
                    || batch_since.is_some_and(|t| now.duration_since(t) >= BATCH_DELAY));
            let expired = closing.is_some_and(|d| now >= d);
            if due && !waiting && !expired {
                let req = logs_request(&self.resource, batch.clone());
                match self.post(&self.endpoint.logs_path, &req.encode_to_vec(), closing) {
                    Ok(()) => {
                        add(&self.shared.counters.sent, batch.len());
                        batch.clear();
                        batch_since = None;
                        retry_at = None;
                        backoff = FIRST_BACKOFF;
                        continue;
                    }
                    Err(f @ Failure::Refused(_)) => {
                        self.shared.failed("logs", &f);
                        add(&self.shared.counters.rejected, batch.len());
                        batch.clear();
                        batch_since = None;
                        continue;
                    }
                    Err(f @ Failure::Retry(_)) => {
                        self.shared.failed("logs", &f);
                        let wait = if closing.is_some() {
                            FIRST_BACKOFF
                        } else {
                            backoff
                        };
                        retry_at = Some(Instant::now() + wait);
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
            let waiting = retry_at.is_some_and(|t| Instant::now() < t);
            if closing.is_none() && Instant::now() >= next_metrics && !waiting {
                // Cumulative counters: a failed export is made good by the
                // next one, so it is not retried.
                self.export_metrics(None);
                next_metrics = Instant::now() + METRICS_EVERY;
            }
            if let Some(deadline) = closing {
                if batch.is_empty() {
                    // Everything offered has been taken (the session offers
                    // nothing after the flush began) and sent: the final
                    // metrics, retried until the deadline.
                    while Instant::now() < deadline && !self.export_metrics(Some(deadline)) {
                        std::thread::sleep(
                            FIRST_BACKOFF.min(deadline.saturating_duration_since(Instant::now())),
                        );
                    }
                    break;
                }
                if Instant::now() >= deadline {
                    let mut left = batch.len();
                    while self.rx.try_recv().is_ok() {
                        left += 1;
                    }
                    add(&self.shared.counters.undelivered, left);
                    break;
                }
            }
            // Sleep until something is due, or a finding arrives.
            let now = Instant::now();
            let mut wake = now + NAP;
            if let Some(t) = batch_since {
                wake = wake.min(t + BATCH_DELAY);
            }
            if let Some(t) = retry_at {
                wake = wake.min(t.max(now));
            }
            wake = wake.min(next_metrics.max(now));
            let nap = wake.saturating_duration_since(now);
            if batch.len() < BATCH && !disconnected {
                match self.rx.recv_timeout(nap) {
                    Ok(r) => {
                        batch.push(self.encode(&r));
                        batch_since.get_or_insert(Instant::now());
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => disconnected = true,
                }
            } else {
                std::thread::sleep(nap);
            }
        }
    }
}
