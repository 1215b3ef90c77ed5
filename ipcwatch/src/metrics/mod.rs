//! Prometheus metrics (`--metrics ADDR`): what the recording counted, for
//! a Prometheus server to scrape at `/metrics` (docs/metrics.md lists each
//! metric).
//!
//! The event loop never waits for a scrape: once a second (and once more
//! after the summary) it copies its counters into a [`Snapshot`], which
//! takes a lock for as long as a copy of a few dozen numbers. A scrape
//! clones the latest snapshot under that lock and encodes the clone
//! (prometheus-client's OpenMetrics text) outside it, on the server's own
//! thread ([`serve`]). Every scrape therefore shows one consistent
//! snapshot: the values that the trace's summary line states, once
//! `ipcwatch_recording_finished` is 1.

pub mod serve;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, LabelSetEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

pub use crate::record::ExportCounts;

/// What the recording counted, at one moment. Counters only grow between
/// two snapshots of one recording.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Kernel events received and decoded, by kernel event kind (the
    /// summary's `events` is their sum).
    pub events: Vec<(&'static str, u64)>,
    /// Kernel events lost because the ring buffer was full (the summary's
    /// `dropped`).
    pub lost_ring_full: u64,
    /// `lost_ring_full` by kernel event kind (the summary's
    /// `dropped_by_kind`, with every kind).
    pub dropped_by_kind: Vec<(&'static str, u64)>,
    /// Kernel events received that could not be decoded.
    pub lost_undecodable: u64,
    /// Channels in the model (every channel seen), by kind.
    pub channels: Vec<(&'static str, u64)>,
    /// Shared-memory regions in the model.
    pub regions: u64,
    /// Processes in the model: (alive, exited).
    pub processes: (u64, u64),
    /// Race lines written, by kind ("shm-write-write", "pipe-interleave").
    pub findings: Vec<(String, u64)>,
    /// `agent --forget-after`: processes, channels and distinct findings
    /// dropped from memory (still counted above).
    pub forgotten: [u64; 3],
    /// Watchpoint windows the race detector opened.
    pub watch_windows: u64,
    /// Writes trapped by the watchpoints.
    pub watch_traps: u64,
    /// The longest time an event waited in the ring buffer before the
    /// collector took it, over the last interval, in seconds.
    pub collector_lag_seconds: f64,
    /// The summary line is written: the values are final.
    pub finished: bool,
    /// `--otlp`: what the exporter sent and lost so far.
    pub otlp: Option<ExportCounts>,
}

/// The latest [`Snapshot`], shared by the event loop and the server.
#[derive(Debug, Default)]
pub struct Metrics {
    latest: Mutex<Snapshot>,
    /// Scrapes rendered.
    scrapes: AtomicU64,
    /// Scrapes answered with a finished snapshot.
    final_scrapes: AtomicU64,
}

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Metrics::default())
    }

    /// Replace the snapshot scrapes see.
    pub fn publish(&self, snapshot: Snapshot) {
        // A panic elsewhere while the lock was held left a whole snapshot
        // (assignment is the only thing done under it).
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = snapshot;
    }

    /// A copy of the snapshot scrapes see.
    pub fn latest(&self) -> Snapshot {
        self.latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Scrapes answered with a finished snapshot.
    pub fn final_scrapes(&self) -> u64 {
        self.final_scrapes.load(Ordering::Acquire)
    }

    /// Scrapes rendered so far.
    pub fn scrapes(&self) -> u64 {
        self.scrapes.load(Ordering::Relaxed)
    }

    /// The OpenMetrics text of the latest snapshot (one scrape), and
    /// whether that snapshot was final.
    pub fn render(&self) -> (String, bool) {
        let snapshot = self.latest();
        let finished = snapshot.finished;
        let mut registry = Registry::with_prefix("ipcwatch");
        registry.register_collector(Box::new(SnapshotCollector(snapshot)));
        let mut text = String::new();
        // Writing into a String cannot fail; an encoder error would be a
        // bug in a label, and leaves what was written before it.
        if let Err(e) = encode(&mut text, &registry) {
            tracing::warn!("metrics: encoding failed: {e}");
        }
        self.scrapes.fetch_add(1, Ordering::Relaxed);
        (text, finished)
    }

    /// A scrape of a finished snapshot was answered in full.
    pub fn served_final(&self) {
        self.final_scrapes.fetch_add(1, Ordering::Release);
    }
}

/// A counter family with a sample per `kind`.
fn kind_counters(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(&'static str, u64)],
) -> Result<(), std::fmt::Error> {
    let labels: Vec<[(&str, &str); 1]> = values.iter().map(|(k, _)| [("kind", *k)]).collect();
    let rows: Vec<(&[(&str, &str)], ConstCounter)> = labels
        .iter()
        .zip(values)
        .map(|(l, (_, n))| (&l[..], ConstCounter::new(*n)))
        .collect();
    family(encoder, name, help, None, &rows)
}

/// One snapshot, encoded as prometheus-client's metric families.
#[derive(Debug)]
struct SnapshotCollector(Snapshot);

/// One metric family: a name (before the prefix, the unit and `_total`),
/// help, an optional unit, a type, and its samples with their labels.
fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    samples: &[(&[(&str, &str)], M)],
) -> Result<(), std::fmt::Error> {
    let Some((_, first)) = samples.first() else {
        return Ok(());
    };
    let ty: MetricType = first.metric_type();
    let mut m = encoder.encode_descriptor(name, help, unit.as_ref(), ty)?;
    for (labels, metric) in samples {
        if labels.is_empty() {
            metric.encode(m.encode_family(&NoLabels)?)?;
        } else {
            metric.encode(m.encode_family(labels)?)?;
        }
    }
    Ok(())
}

/// An empty label set.
#[derive(Debug)]
struct NoLabels;

impl EncodeLabelSet for NoLabels {
    fn encode(&self, _: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        Ok(())
    }
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let counter = ConstCounter::new;
        let by =
            |label: &'static str, v: &[(&'static str, u64)]| -> Vec<(Vec<(&str, &str)>, u64)> {
                v.iter().map(|(k, n)| (vec![(label, *k)], *n)).collect()
            };
        kind_counters(
            &mut e,
            "events",
            "Kernel events received and decoded, by kernel event kind",
            &s.events,
        )?;
        family(
            &mut e,
            "events_lost",
            "Kernel events lost: ring_full (the ring buffer was full, counted in the kernel) or undecodable",
            None,
            &[
                (&[("reason", "ring_full")][..], counter(s.lost_ring_full)),
                (
                    &[("reason", "undecodable")][..],
                    counter(s.lost_undecodable),
                ),
            ],
        )?;
        kind_counters(
            &mut e,
            "events_dropped",
            "Kernel events lost because the ring buffer was full, by kernel event kind (their sum is events_lost{reason=\"ring_full\"})",
            &s.dropped_by_kind,
        )?;
        let channels = by("kind", &s.channels);
        let rows: Vec<(&[(&str, &str)], ConstGauge)> = channels
            .iter()
            .map(|(l, n)| (l.as_slice(), ConstGauge::new(gauge(*n))))
            .collect();
        family(
            &mut e,
            "channels",
            "Channels (pipes, FIFOs, sockets, queues) seen since the start, by kind",
            None,
            &rows,
        )?;
        family(
            &mut e,
            "regions",
            "Shared-memory regions seen since the start",
            None,
            &[(&[][..], ConstGauge::new(gauge(s.regions)))],
        )?;
        family(
            &mut e,
            "processes",
            "Processes seen since the start, alive or exited",
            None,
            &[
                (
                    &[("state", "alive")][..],
                    ConstGauge::new(gauge(s.processes.0)),
                ),
                (
                    &[("state", "exited")][..],
                    ConstGauge::new(gauge(s.processes.1)),
                ),
            ],
        )?;
        let rows: Vec<(Vec<(&str, &str)>, u64)> = s
            .findings
            .iter()
            .map(|(k, n)| (vec![("kind", k.as_str())], *n))
            .collect();
        let rows: Vec<(&[(&str, &str)], ConstCounter)> = rows
            .iter()
            .map(|(l, n)| (l.as_slice(), counter(*n)))
            .collect();
        family(
            &mut e,
            "findings",
            "Race findings written to the trace (race lines), by kind",
            None,
            &rows,
        )?;
        family(
            &mut e,
            "forgotten",
            "agent --forget-after: what was dropped from memory once gone (still counted in processes, channels and findings)",
            None,
            &[
                (&[("what", "processes")][..], counter(s.forgotten[0])),
                (&[("what", "channels")][..], counter(s.forgotten[1])),
                (&[("what", "findings")][..], counter(s.forgotten[2])),
            ],
        )?;
        family(
            &mut e,
            "watch_windows",
            "Watchpoint windows the race detector opened",
            None,
            &[(&[][..], counter(s.watch_windows))],
        )?;
        family(
            &mut e,
            "watch_traps",
            "Writes trapped by the race detector's watchpoints",
            None,
            &[(&[][..], counter(s.watch_traps))],
        )?;
        family(
            &mut e,
            "collector_lag",
            "The longest time an event waited in the ring buffer before the collector took it, over the last second",
            Some(Unit::Seconds),
            &[(&[][..], ConstGauge::new(s.collector_lag_seconds))],
        )?;
        if let Some(o) = &s.otlp {
            family(
                &mut e,
                "otlp_findings",
                "--otlp: findings by outcome: sent (accepted by the endpoint), dropped (queue full), rejected (refused by the endpoint), undelivered (unsent when the exit's flush timed out)",
                None,
                &[
                    (&[("outcome", "sent")][..], counter(o.sent)),
                    (&[("outcome", "dropped")][..], counter(o.dropped_queue_full)),
                    (&[("outcome", "rejected")][..], counter(o.rejected)),
                    (&[("outcome", "undelivered")][..], counter(o.undelivered)),
                ],
            )?;
            family(
                &mut e,
                "otlp_queued_findings",
                "--otlp: findings waiting in the exporter's bounded queue",
                None,
                &[(&[][..], ConstGauge::new(gauge(o.queued)))],
            )?;
            family(
                &mut e,
                "otlp_failed_requests",
                "--otlp: export requests that failed (each failed retry counts)",
                None,
                &[(&[][..], counter(o.failed_requests))],
            )?;
        }
        family(
            &mut e,
            "recording_finished",
            "1 once the summary line is written: every value is then final and equals the summary's",
            None,
            &[(&[][..], ConstGauge::new(i64::from(s.finished)))],
        )?;
        Ok(())
    }
}

/// A count as a gauge's value.
fn gauge(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        Snapshot {
            events: vec![("io", 7), ("fork", 2)],
            lost_ring_full: 3,
            dropped_by_kind: vec![("io", 2), ("fork", 1)],
            lost_undecodable: 0,
            channels: vec![("pipe", 2), ("unix", 1)],
            regions: 1,
            processes: (2, 1),
            findings: vec![("shm-write-write".into(), 4)],
            forgotten: [1, 2, 3],
            watch_windows: 10,
            watch_traps: 40,
            collector_lag_seconds: 0.25,
            finished: true,
            otlp: Some(ExportCounts {
                sent: 5,
                dropped_queue_full: 2,
                failed_requests: 3,
                ..ExportCounts::default()
            }),
        }
    }

    #[test]
    fn a_snapshot_renders_as_openmetrics_text() {
        let m = Metrics::new();
        m.publish(sample());
        let (text, finished) = m.render();
        assert!(finished);
        for line in [
            "# TYPE ipcwatch_events counter",
            "ipcwatch_events_total{kind=\"io\"} 7",
            "ipcwatch_events_total{kind=\"fork\"} 2",
            "ipcwatch_events_lost_total{reason=\"ring_full\"} 3",
            "ipcwatch_events_lost_total{reason=\"undecodable\"} 0",
            "ipcwatch_events_dropped_total{kind=\"io\"} 2",
            "ipcwatch_events_dropped_total{kind=\"fork\"} 1",
            "# TYPE ipcwatch_channels gauge",
            "ipcwatch_channels{kind=\"pipe\"} 2",
            "ipcwatch_regions 1",
            "ipcwatch_processes{state=\"alive\"} 2",
            "ipcwatch_processes{state=\"exited\"} 1",
            "ipcwatch_findings_total{kind=\"shm-write-write\"} 4",
            "ipcwatch_watch_windows_total 10",
            "ipcwatch_forgotten_total{what=\"channels\"} 2",
            "ipcwatch_watch_traps_total 40",
            "# UNIT ipcwatch_collector_lag_seconds seconds",
            "ipcwatch_collector_lag_seconds 0.25",
            "ipcwatch_otlp_findings_total{outcome=\"sent\"} 5",
            "ipcwatch_otlp_findings_total{outcome=\"dropped\"} 2",
            "ipcwatch_otlp_findings_total{outcome=\"rejected\"} 0",
            "ipcwatch_otlp_queued_findings 0",
            "ipcwatch_otlp_failed_requests_total 3",
            "ipcwatch_recording_finished 1",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        }
        // Counted as final once the server has sent it.
        assert_eq!((m.scrapes(), m.final_scrapes()), (1, 0));
    }

    #[test]
    fn empty_families_are_left_out_and_scrapes_before_the_end_are_not_final() {
        let m = Metrics::new();
        let (text, finished) = m.render();
        assert!(!finished);
        assert!(!text.contains("ipcwatch_events_total"), "{text}");
        assert!(!text.contains("ipcwatch_findings_total"), "{text}");
        assert!(text.contains("ipcwatch_recording_finished 0"), "{text}");
        assert_eq!((m.scrapes(), m.final_scrapes()), (1, 0));
    }
}
