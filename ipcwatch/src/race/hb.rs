//! Deep mode: a happens-before engine with vector clocks across processes,
//! plus an Eraser-style lockset, over sampled writes.
//!
//! Edges (all from records, so the same analysis runs live and offline in
//! `analyze`):
//! - fork: the child starts with the parent's clock;
//! - release -> acquire on the same lock (`sync` lines: mutex, rwlock,
//!   spin, flock, fcntl...), post -> wait on a semaphore, futex wake ->
//!   the return of a wait on the same futex;
//! - send -> receive on a channel (`io` write -> read: pipes, sockets,
//!   queues).
//!
//! Two sampled writes to the same word by different threads that no chain
//! of edges orders, and that hold no lock in common, are reported with
//! evidence "happens-before" and a lower confidence than a collision: the
//! edges are only as complete as the tracing (uncontended pthread locks
//! are seen only with --lock-probes).

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::record::{
    Access, Io, Op, ProcessEvent, ProcessLine, RaceLine, Record, SyncEvent, SyncLine, Text,
    WriteSampleLine,
};

/// A vector clock: thread id -> logical time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VClock(HashMap<u32, u64>);

impl VClock {
    fn get(&self, tid: u32) -> u64 {
        self.0.get(&tid).copied().unwrap_or(0)
    }

    fn tick(&mut self, tid: u32) {
        *self.0.entry(tid).or_insert(0) += 1;
    }

    fn join(&mut self, other: &VClock) {
        for (&t, &v) in &other.0 {
            let e = self.0.entry(t).or_insert(0);
            *e = (*e).max(v);
        }
    }

    /// Every component of `self` is <= `other`'s: self happened before
    /// (or equals) other.
    pub fn le(&self, other: &VClock) -> bool {
        self.0.iter().all(|(&t, &v)| v <= other.get(t))
    }
}

#[derive(Debug, Clone)]
struct Sample {
    pid: u32,
    tid: u32,
    comm: Text,
    ip: u64,
    ts_ns: u64,
    clock: VClock,
    locks: BTreeSet<Text>,
}

#[derive(Debug, Default)]
pub struct HappensBefore {
    threads: HashMap<u32, VClock>,
    /// Clock released into each lock / semaphore / futex.
    syncs: HashMap<Text, VClock>,
    /// Clock sent into each channel.
    channels: HashMap<Text, VClock>,
    /// Locks each thread holds now.
    held: HashMap<u32, BTreeSet<Text>>,
    /// (region, offset) -> the last sampled write of each thread.
    last: HashMap<(Text, u64), HashMap<u32, Sample>>,
    reported: HashSet<(Text, u64, u64, u64)>,
    /// The process of each thread seen.
    pids: HashMap<u32, u32>,
    /// The clock of each process that exited (all its threads'), for the
    /// parent whose wait returns it.
    exited: HashMap<u32, VClock>,
    /// Sampled writes seen.
    pub samples: u64,
}

impl HappensBefore {
    pub fn new() -> Self {
        Self::default()
    }

    fn clock(&mut self, tid: u32) -> &mut VClock {
        self.threads.entry(tid).or_insert_with(|| {
            let mut c = VClock::default();
            c.tick(tid);
            c
        })
    }

    /// Feed one record; returns a finding when a sampled write races.
    pub fn apply(&mut self, r: &Record) -> Option<RaceLine> {
        let (pid, tid) = match r {
            Record::Process(p) => (p.pid, p.tid),
            Record::Sync(s) => (s.pid, s.tid),
            Record::Io(io) => (io.pid, io.tid),
            Record::WriteSample(w) => (w.pid, w.tid),
            _ => return None,
        };
        self.pids.insert(tid, pid);
        match r {
            Record::Process(p) => self.process(p),
            Record::Sync(s) => self.sync(s),
            Record::Io(io) => self.io(io),
            Record::WriteSample(w) => return self.sample(w),
            _ => {}
        }
        None
    }

    fn process(&mut self, p: &ProcessLine) {
        match p.event {
            ProcessEvent::Fork => {
                if let Some(parent) = p.ppid {
                    let mut c = self.clock(parent).clone();
                    self.clock(parent).tick(parent);
                    c.tick(p.pid);
                    self.threads.insert(p.pid, c);
                }
            }
            // Everything the process did happened before its parent's wait
            // for it returned.
            // Its threads are gone: their clocks move into the process's.
            ProcessEvent::Exit => {
                let mut end = VClock::default();
                let pid = p.pid;
                self.pids.retain(|tid, p| {
                    if *p != pid {
                        return true;
                    }
                    if let Some(c) = self.threads.remove(tid) {
                        end.join(&c);
                    }
                    false
                });
                self.exited.insert(pid, end);
            }
            ProcessEvent::Wait => {
                if let Some(end) = p.child.and_then(|c| self.exited.remove(&c)) {
                    self.clock(p.tid).join(&end);
                }
            }
            ProcessEvent::Exec | ProcessEvent::Existing => {}
        }
    }

    fn sync(&mut self, s: &SyncLine) {
        match s.event {
            // Taking a lock, or returning from a wait: everything released
            // into it happened before.
            SyncEvent::Acquire | SyncEvent::Wait if s.ok => {
                if let Some(released) = self.syncs.get(&s.lock).cloned() {
                    self.clock(s.tid).join(&released);
                }
                if s.event == SyncEvent::Acquire {
                    self.held.entry(s.tid).or_default().insert(s.lock.clone());
                }
            }
            SyncEvent::Release | SyncEvent::Wake => {
                let c = self.clock(s.tid).clone();
                self.syncs.entry(s.lock.clone()).or_default().join(&c);
                self.clock(s.tid).tick(s.tid);
                if s.event == SyncEvent::Release
                    && let Some(h) = self.held.get_mut(&s.tid)
                {
                    h.remove(&s.lock);
                }
            }
            _ => {}
        }
    }

    fn io(&mut self, io: &Io) {
        match io.op {
            Op::Write => {
                let c = self.clock(io.tid).clone();
                self.channels
                    .entry(io.channel.clone())
                    .or_default()
                    .join(&c);
                self.clock(io.tid).tick(io.tid);
            }
            Op::Read => {
                if let Some(sent) = self.channels.get(&io.channel).cloned() {
                    self.clock(io.tid).join(&sent);
                }
            }
        }
    }

    fn sample(&mut self, w: &WriteSampleLine) -> Option<RaceLine> {
        self.samples += 1;
        let clock = self.clock(w.tid).clone();
        let locks = self.held.get(&w.tid).cloned().unwrap_or_default();
        let cur = Sample {
            pid: w.pid,
            tid: w.tid,
            comm: w.comm.clone(),
            ip: w.ip,
            ts_ns: w.ts_ns,
            clock,
            locks,
        };
        self.clock(w.tid).tick(w.tid);
        let key = (w.region.clone(), w.offset);
        let per_thread = self.last.entry(key).or_default();
        let mut found = None;
        for prev in per_thread.values() {
            if prev.tid == cur.tid || prev.clock.le(&cur.clock) {
                continue;
            }
            if !prev.locks.is_disjoint(&cur.locks) {
                continue;
            }
            found = Some(prev.clone());
            break;
        }
        per_thread.insert(cur.tid, cur.clone());
        let prev = found?;
        let id = (
            w.region.clone(),
            w.offset,
            prev.ip.min(cur.ip),
            prev.ip.max(cur.ip),
        );
        if !self.reported.insert(id) {
            return None;
        }
        let access = |s: &Sample| Access {
            pid: s.pid,
            tid: s.tid,
            comm: s.comm.clone(),
            ip: s.ip,
            function: None,
            file: None,
            line: None,
            stack: Vec::new(),
            locks: s.locks.iter().cloned().collect(),
            ts_ns: s.ts_ns,
            origin: Default::default(),
        };
        Some(RaceLine {
            ts_ns: w.ts_ns,
            kind: Text::const_new("shm-write-write"),
            region: Some(w.region.clone()),
            channel: None,
            offset: Some(w.offset),
            len: 8,
            accesses: vec![access(&prev), access(&cur)],
            evidence: Text::const_new("happens-before"),
            confidence: 0.6,
            explanation: format!(
                "{}[{}] and {}[{}] wrote {}+{:#x} with nothing traced ordering the two writes (no lock, semaphore, futex or message between them) and no lock held in common",
                prev.comm, prev.pid, cur.comm, cur.pid, w.region, w.offset
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::ChannelKind;

    fn sample(tid: u32, ts: u64) -> Record {
        Record::WriteSample(WriteSampleLine {
            ts_ns: ts,
            region: "anon:1:2".into(),
            offset: 64,
            pid: tid,
            tid,
            comm: "w".into(),
            ip: 0x1000 + tid as u64,
        })
    }

    fn sync(event: SyncEvent, tid: u32, lock: &str) -> Record {
        Record::Sync(SyncLine {
            ts_ns: 1,
            event,
            lock: lock.into(),
            pid: tid,
            tid,
            comm: "w".into(),
            primitive: "mutex".into(),
            ok: true,
            region: None,
            offset: None,
            detail: None,
            start_ns: None,
        })
    }

    fn io(op: Op, tid: u32) -> Record {
        Record::Io(Io {
            ts_ns: 1,
            kind: ChannelKind::Pipe,
            op,
            channel: "pipe:[9]".into(),
            pid: tid,
            tid,
            comm: "w".into(),
            bytes: 1,
            fd: 3,
            syscall: "write".into(),
            start_ns: None,
            ext: Default::default(),
        })
    }

    fn fork(child: u32, parent: u32) -> Record {
        Record::Process(ProcessLine {
            ts_ns: 0,
            event: ProcessEvent::Fork,
            pid: child,
            tid: child,
            comm: "w".into(),
            ppid: Some(parent),
            filename: None,
            child: None,
            exit_code: None,
            signal: None,
            origin: Default::default(),
        })
    }

    #[test]
    fn unordered_writes_without_a_common_lock_race() {
        let mut hb = HappensBefore::new();
        hb.apply(&fork(2, 1));
        assert!(hb.apply(&sample(1, 10)).is_none());
        let r = hb.apply(&sample(2, 11)).expect("a race");
        assert_eq!(r.evidence, "happens-before");
        assert_eq!(r.accesses.len(), 2);
        // The same pair is reported once.
        assert!(hb.apply(&sample(1, 12)).is_none());
    }

    #[test]
    fn writes_before_a_fork_are_ordered_with_the_child() {
        let mut hb = HappensBefore::new();
        hb.apply(&sample(1, 10));
        hb.apply(&fork(2, 1));
        assert!(hb.apply(&sample(2, 11)).is_none());
    }

    #[test]
    fn a_lock_orders_the_writes() {
        let mut hb = HappensBefore::new();
        hb.apply(&fork(2, 1));
        for (t, ts) in [(1, 10), (2, 20), (1, 30), (2, 40)] {
            hb.apply(&sync(SyncEvent::Acquire, t, "sysv:1+0"));
            assert!(hb.apply(&sample(t, ts)).is_none(), "tid {t} at {ts}");
            hb.apply(&sync(SyncEvent::Release, t, "sysv:1+0"));
        }
    }

    #[test]
    fn a_token_passed_over_a_pipe_orders_the_writes() {
        let mut hb = HappensBefore::new();
        hb.apply(&fork(2, 1));
        assert!(hb.apply(&sample(1, 10)).is_none());
        hb.apply(&io(Op::Write, 1));
        hb.apply(&io(Op::Read, 2));
        assert!(hb.apply(&sample(2, 20)).is_none());
        // Without a message back, the parent's next write is unordered
        // with the child's.
        assert!(hb.apply(&sample(1, 30)).is_some());
    }

    fn ended(event: ProcessEvent, pid: u32, child: Option<u32>) -> Record {
        Record::Process(ProcessLine {
            ts_ns: 0,
            event,
            pid,
            tid: pid,
            comm: "w".into(),
            ppid: None,
            filename: None,
            child,
            exit_code: Some(0),
            signal: None,
            origin: Default::default(),
        })
    }

    #[test]
    fn a_child_that_exited_and_was_waited_for_is_ordered_before_its_parent() {
        let mut hb = HappensBefore::new();
        hb.apply(&fork(2, 1));
        assert!(hb.apply(&sample(2, 10)).is_none());
        hb.apply(&ended(ProcessEvent::Exit, 2, None));
        // Before the wait returns, the parent's write is unordered...
        let mut early = HappensBefore::new();
        early.apply(&fork(2, 1));
        early.apply(&sample(2, 10));
        early.apply(&ended(ProcessEvent::Exit, 2, None));
        assert!(early.apply(&sample(1, 20)).is_some());
        // ...after it, ordered.
        hb.apply(&ended(ProcessEvent::Wait, 1, Some(2)));
        assert!(hb.apply(&sample(1, 20)).is_none());
        // A wait for another child teaches nothing.
        let mut other = HappensBefore::new();
        other.apply(&fork(2, 1));
        other.apply(&sample(2, 10));
        other.apply(&ended(ProcessEvent::Exit, 2, None));
        other.apply(&ended(ProcessEvent::Wait, 1, Some(3)));
        assert!(other.apply(&sample(1, 20)).is_some());
    }

    #[test]
    fn vector_clocks_compare_componentwise() {
        let mut a = VClock::default();
        a.tick(1);
        let mut b = a.clone();
        b.tick(2);
        assert!(a.le(&b) && !b.le(&a));
        let mut c = VClock::default();
        c.tick(3);
        assert!(!a.le(&c) && !c.le(&a));
    }
}
