//! Ending a recording: what is still held back, the final loss count, the
//! summary record.

use super::args::Outcome;
use super::metrics::{LoopCounters, snapshot};
use super::notes::is_broken_pipe;
use super::run::LoopEnd;
use super::start::Started;
use crate::host::monotonic_ns;
use crate::metrics::Metrics;
use crate::record::{Record, Summary, Text};
use crate::sink::Sink;

/// The summary line; then, for `--metrics`, the same values as the last
/// snapshot, marked final.
pub fn finish(
    s: Started,
    sink: &mut dyn Sink,
    end: LoopEnd,
    metrics: Option<&Metrics>,
) -> anyhow::Result<Outcome> {
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
        .unwrap_or_else(|| probes.dropped());
    collector.close_sequences(&probes.kernel_seqs());
    let summary = Record::Summary(Summary {
        ts_ns: monotonic_ns(),
        duration_ns: monotonic_ns().saturating_sub(start_ns),
        events: collector.events,
        dropped,
        seq_gaps: collector.seq_gaps,
        reason: Text::const_new(reason.as_str()),
        command_status,
        channels: collector.model.channel_summaries(),
        detector,
    });
    let written = collector.push(summary, sink).and_then(|()| sink.flush());
    match written {
        Err(e) if !is_broken_pipe(&e) => return Err(e.into()),
        _ => {}
    }
    if let Some(m) = metrics {
        let counters = LoopCounters {
            ring_full: dropped,
            ..counters
        };
        m.publish(snapshot(&collector, &counters, true));
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
