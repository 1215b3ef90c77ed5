//! Ending a recording: what is still held back, the final loss count, the
//! summary record.

use super::args::{Outcome, RecordArgs};
use super::metrics::{LoopCounters, snapshot};
use super::notes::{is_broken_pipe, warn};
use super::run::LoopEnd;
use super::start::Started;
use crate::collect::Collector;
use crate::host::monotonic_ns;
use crate::metrics::ExportCounts;
use crate::otlp::Otlp;
use crate::record::{Record, Summary, Text};
use crate::sink::Sink;

/// For `--metrics` and `--otlp`, the summary's values as the last
/// snapshot, marked final; `--otlp`'s flush (bounded) and, when findings
/// were lost on the way, a warning line; then the summary line.
pub fn finish(
    s: Started,
    sink: &mut dyn Sink,
    end: LoopEnd,
    args: &RecordArgs,
) -> anyhow::Result<Outcome> {
    let metrics = args.metrics.as_deref();
    let LoopEnd {
        reason,
        status: command_status,
        detector,
        counters,
    } = end;
    let Started {
        probes,
        mut collector,
        start_ns,
    } = s;
    match collector.finish(sink) {
        Err(e) if !is_broken_pipe(&e) => return Err(e.into()),
        _ => {}
    }
    // Events lost after the last one each CPU delivered leave no gap.
    let dropped = collector
        .dropped_at_stop
        .unwrap_or_else(|| probes.dropped_by_kind());
    collector.close_sequences(&probes.kernel_seqs());
    let mut counters = LoopCounters {
        ring_full: dropped,
        ..counters
    };
    if let Some(m) = metrics {
        m.publish(snapshot(&collector, &counters, true));
    }
    // Every finding is offered by now: send them, and the final snapshot.
    let otlp = args
        .otlp
        .as_deref()
        .map(|o| flush_otlp(o, args.otlp_flush, &mut collector, sink))
        .transpose()?;
    if let (Some(m), Some(o)) = (metrics, otlp) {
        counters.otlp = Some(o);
        m.publish(snapshot(&collector, &counters, true));
    }
    let summary = Record::Summary(Summary {
        ts_ns: monotonic_ns(),
        duration_ns: monotonic_ns().saturating_sub(start_ns),
        events: collector.events,
        dropped: dropped.total,
        dropped_by_kind: dropped.named().map(|(k, n)| (k.to_string(), n)).collect(),
        seq_gaps: collector.seq_gaps,
        reason: Text::const_new(reason.as_str()),
        command_status,
        channels: collector.model.channel_summaries(),
        detector,
        otlp,
    });
    let written = collector.push(summary, sink).and_then(|()| sink.flush());
    match written {
        Err(e) if !is_broken_pipe(&e) => return Err(e.into()),
        _ => {}
    }
    Ok(Outcome {
        reason,
        events: collector.events,
        dropped,
        channels: collector.model.channels.len()
            + collector.model.forgotten.channels_total() as usize,
        races: collector.model.findings.len()
            + collector.model.forgotten.distinct_findings as usize,
        command_status,
        otlp,
    })
}

/// `--otlp`'s flush, and a warning line when findings were lost on the
/// way or requests failed.
fn flush_otlp(
    otlp: &Otlp,
    limit: std::time::Duration,
    collector: &mut Collector,
    sink: &mut dyn Sink,
) -> anyhow::Result<ExportCounts> {
    let counts = otlp.flush(limit);
    if counts.lost() > 0 || counts.failed_requests > 0 {
        let last = otlp
            .last_failure()
            .map(|f| format!("; last failure: {f}"))
            .unwrap_or_default();
        let msg = format!(
            "otlp: {} findings sent, {} LOST ({} dropped: queue full, {} rejected, {} undelivered at exit), {} requests failed{last}",
            counts.sent,
            counts.lost(),
            counts.dropped_queue_full,
            counts.rejected,
            counts.undelivered,
            counts.failed_requests,
        );
        match warn(collector, sink, Some("otlp".to_string()), msg) {
            Err(e) if !is_broken_pipe(&e) => return Err(e.into()),
            _ => {}
        }
    }
    Ok(counts)
}
