//! What a recording publishes to `--metrics`: its counters copied into a
//! [`Snapshot`] once a second, and a last time with the summary's values.

use std::collections::BTreeMap;

use crate::collect::Collector;
use crate::decode::{Dropped, EVENT_KINDS};
use crate::metrics::{ExportCounts, Snapshot};
use crate::race::detector::DetectorStats;
use crate::record::ChannelKind;

/// Every channel kind, so that each has a series from the start.
const CHANNEL_KINDS: [ChannelKind; 7] = ChannelKind::ALL;

/// The finding kinds ipcwatch writes, so that each has a series (at 0)
/// from the start.
const FINDING_KINDS: [&str; 2] = ["shm-write-write", "pipe-interleave"];

/// Counters of the event loop that the collector does not keep.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoopCounters {
    /// Kernel events lost because the ring buffer was full.
    pub ring_full: Dropped,
    pub undecodable: u64,
    pub detector: DetectorStats,
    /// The longest wait of an event in the ring buffer over the last
    /// interval, ns.
    pub lag_ns: u64,
    /// `--otlp`'s counts.
    pub otlp: Option<ExportCounts>,
}

/// The recording's counters now. Walks the model's channels, processes
/// and findings: called once a second, not per event.
pub fn snapshot(collector: &Collector, counters: &LoopCounters, finished: bool) -> Snapshot {
    let model = &collector.model;
    let events = EVENT_KINDS
        .iter()
        .zip(collector.events_by_kind)
        .map(|(k, n)| (*k, n))
        .collect();
    // With the agent's forgetting, what was dropped counts too.
    let forgotten = &model.forgotten;
    let mut channels = CHANNEL_KINDS.map(|k| {
        forgotten
            .channels
            .get(k.as_str())
            .copied()
            .unwrap_or_default()
    });
    for c in model.channels.values() {
        if let Some(i) = CHANNEL_KINDS.iter().position(|k| *k == c.kind) {
            channels[i] += 1;
        }
    }
    let alive = model.processes.values().filter(|p| p.alive).count() as u64;
    let exited = model.processes.len() as u64 - alive + forgotten.processes;
    let mut findings: BTreeMap<String, u64> =
        FINDING_KINDS.iter().map(|k| (k.to_string(), 0)).collect();
    for (k, n) in &forgotten.findings {
        *findings.entry(k.clone()).or_default() += n;
    }
    for f in &model.findings {
        *findings.entry(f.race.kind.to_string()).or_default() += f.count;
    }
    Snapshot {
        events,
        lost_ring_full: counters.ring_full.total,
        dropped_by_kind: EVENT_KINDS
            .iter()
            .zip(counters.ring_full.by_kind)
            .map(|(k, n)| (*k, n))
            .collect(),
        lost_undecodable: counters.undecodable,
        channels: CHANNEL_KINDS
            .iter()
            .zip(channels)
            .map(|(k, n)| (k.as_str(), n))
            .collect(),
        regions: model.regions.len() as u64,
        processes: (alive, exited),
        findings: findings.into_iter().collect(),
        forgotten: [
            forgotten.processes,
            forgotten.channels_total(),
            forgotten.distinct_findings,
        ],
        watch_windows: counters.detector.windows,
        watch_traps: counters.detector.traps,
        collector_lag_seconds: counters.lag_ns as f64 / 1e9,
        finished,
        otlp: counters.otlp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Process;

    /// What the agent's forgetting dropped is still counted: processes as
    /// exited, channels and findings by kind.
    #[test]
    fn forgotten_processes_channels_and_findings_still_count() {
        let mut c = Collector::new();
        c.model.processes.insert(
            7,
            Process {
                pid: 7,
                alive: true,
                ..Process::default()
            },
        );
        let f = &mut c.model.forgotten;
        f.processes = 5;
        f.channels.insert("pipe", 3);
        f.channels.insert("unix", 1);
        f.findings.insert("pipe-interleave".into(), 4);
        let s = snapshot(&c, &LoopCounters::default(), false);
        assert_eq!(s.processes, (1, 5));
        let by = |v: &[(&'static str, u64)], k: &str| v.iter().find(|(n, _)| *n == k).unwrap().1;
        assert_eq!(by(&s.channels, "pipe"), 3);
        assert_eq!(by(&s.channels, "unix"), 1);
        assert_eq!(by(&s.channels, "tcp"), 0);
        let findings: BTreeMap<String, u64> = s.findings.into_iter().collect();
        assert_eq!(findings["pipe-interleave"], 4);
        assert_eq!(findings["shm-write-write"], 0);
        assert_eq!(s.forgotten, [5, 4, 0]);
    }
}
