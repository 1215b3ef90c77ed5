//! Pipe interleaving: writes of at most PIPE_BUF bytes to a pipe are
//! atomic; larger ones are not. When two processes write the same pipe
//! with writes larger than PIPE_BUF whose syscalls overlap in time, the
//! reader can get their data interleaved.

use std::collections::{HashMap, HashSet};

use ipcwatch_common::PIPE_BUF;

use crate::record::{Access, ChannelKind, Io, Op, RaceLine, Record, Text};

#[derive(Debug, Clone)]
struct Span {
    pid: u32,
    tid: u32,
    comm: Text,
    start: u64,
    end: u64,
    bytes: u64,
}

#[derive(Debug, Default)]
pub struct PipeInterleave {
    /// Recent large writes per channel.
    recent: HashMap<Text, Vec<Span>>,
    /// (channel, pid, pid) already reported.
    reported: HashSet<(Text, u32, u32)>,
}

/// How long finished writes are remembered.
const KEEP_NS: u64 = 2_000_000_000;

impl PipeInterleave {
    /// Channels the model forgot (closed everywhere, idle): their writes
    /// and reported pairs go (used again, they start over).
    pub fn forget(&mut self, channels: &[Text]) {
        let gone: std::collections::HashSet<&Text> = channels.iter().collect();
        self.recent.retain(|c, _| !gone.contains(c));
        self.reported.retain(|(c, _, _)| !gone.contains(c));
        self.recent.shrink_to(self.recent.len() * 2);
        self.reported.shrink_to(self.reported.len() * 2);
    }

    pub fn apply(&mut self, r: &Record) -> Option<RaceLine> {
        let Record::Io(io) = r else { return None };
        self.io(io)
    }

    fn io(&mut self, io: &Io) -> Option<RaceLine> {
        if io.op != Op::Write
            || io.bytes <= PIPE_BUF
            || !matches!(io.kind, ChannelKind::Pipe | ChannelKind::Fifo)
        {
            return None;
        }
        let start = io.start_ns?;
        let cur = Span {
            pid: io.pid,
            tid: io.tid,
            comm: io.comm.clone(),
            start,
            end: io.ts_ns,
            bytes: io.bytes,
        };
        let spans = self.recent.entry(io.channel.clone()).or_default();
        spans.retain(|s| s.end.saturating_add(KEEP_NS) >= cur.start);
        let other = spans
            .iter()
            .find(|s| s.pid != cur.pid && s.start < cur.end && cur.start < s.end)
            .cloned();
        spans.push(cur.clone());
        if spans.len() > 64 {
            spans.remove(0);
        }
        let other = other?;
        let pair = (
            io.channel.clone(),
            other.pid.min(cur.pid),
            other.pid.max(cur.pid),
        );
        if !self.reported.insert(pair) {
            return None;
        }
        let access = |s: &Span| Access {
            pid: s.pid,
            tid: s.tid,
            comm: s.comm.clone(),
            ip: 0,
            function: None,
            file: None,
            line: None,
            stack: Vec::new(),
            locks: Vec::new(),
            ts_ns: s.start,
            origin: Default::default(),
        };
        Some(RaceLine {
            ts_ns: io.ts_ns,
            kind: Text::const_new("pipe-interleave"),
            region: None,
            channel: Some(io.channel.clone()),
            offset: None,
            len: other.bytes.max(cur.bytes),
            accesses: vec![access(&other), access(&cur)],
            evidence: Text::const_new("collision"),
            confidence: 0.9,
            explanation: format!(
                "{}[{}] wrote {} bytes and {}[{}] wrote {} bytes to {} in writes that overlapped in time; writes over PIPE_BUF ({PIPE_BUF} bytes) are not atomic, so the reader can get their data interleaved",
                other.comm, other.pid, other.bytes, cur.comm, cur.pid, cur.bytes, io.channel
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(pid: u32, start: u64, end: u64, bytes: u64) -> Record {
        Record::Io(Io {
            ts_ns: end,
            kind: ChannelKind::Pipe,
            op: Op::Write,
            channel: "pipe:[3]".into(),
            pid,
            tid: pid,
            comm: "w".into(),
            bytes,
            fd: 1,
            syscall: "write".into(),
            start_ns: Some(start),
            ext: Default::default(),
        })
    }

    #[test]
    fn overlapping_large_writes_of_two_processes_interleave() {
        let mut p = PipeInterleave::default();
        assert!(p.apply(&write(1, 100, 200, 65536)).is_none());
        let r = p.apply(&write(2, 150, 300, 65536)).expect("a finding");
        assert_eq!(r.kind, "pipe-interleave");
        assert_eq!(r.channel.as_deref(), Some("pipe:[3]"));
        // Reported once per pair.
        assert!(p.apply(&write(1, 250, 400, 65536)).is_none());
    }

    #[test]
    fn small_or_sequential_writes_do_not() {
        let mut p = PipeInterleave::default();
        assert!(p.apply(&write(1, 100, 200, 4096)).is_none());
        assert!(p.apply(&write(2, 150, 300, 4096)).is_none());
        assert!(p.apply(&write(1, 400, 500, 65536)).is_none());
        assert!(p.apply(&write(2, 600, 700, 65536)).is_none());
        // The same process twice is not a finding either.
        assert!(p.apply(&write(2, 650, 800, 65536)).is_none());
    }
}
