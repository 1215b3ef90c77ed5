//! Ending a recording: what is still held back, the final loss count, the
//! summary record.

use super::args::{Outcome, StopReason};
use super::notes::is_broken_pipe;
use super::start::Started;
use crate::host::monotonic_ns;
use crate::record::{DetectorSummary, Record, Summary, Text};
use crate::sink::Sink;

pub fn finish(
    s: Started,
    sink: &mut dyn Sink,
    reason: StopReason,
    command_status: Option<i32>,
    detector: Option<DetectorSummary>,
) -> anyhow::Result<Outcome> {
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
    Ok(Outcome {
        reason,
        events: collector.events,
        dropped,
        channels: collector.model.channels.len(),
        races: collector.model.findings.len(),
        command_status,
    })
}
