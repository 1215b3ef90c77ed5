//! The collector's live model: processes with their IPC descriptors, and
//! channels with who holds them and how much went through them.
//!
//! The model is fed records only (live or replayed), so the same code
//! answers for a running system and for a trace file.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::events::{
    ChannelEvent, ChannelKind, ChannelLine, ChannelSummary, End, Io, Op, ProcessEvent, ProcessLine,
    Record, Text,
};

/// One IPC descriptor of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdRef {
    pub channel: Text,
    pub end: End,
    pub cloexec: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Process {
    pub pid: u32,
    pub ppid: Option<u32>,
    pub comm: Text,
    pub alive: bool,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// IPC descriptors only.
    pub fds: BTreeMap<i32, FdRef>,
    pub bytes_written: u64,
    pub bytes_read: u64,
    pub last_ts: u64,
}

#[derive(Debug, Clone)]
pub struct Channel {
    pub id: Text,
    pub kind: ChannelKind,
    pub path: Option<String>,
    /// (pid, fd) -> end, for every descriptor open on it now.
    pub holders: BTreeMap<(u32, i32), End>,
    pub bytes_written: u64,
    pub bytes_read: u64,
    pub writes: u64,
    pub reads: u64,
    /// Processes seen writing / reading it.
    pub wrote: BTreeSet<u32>,
    pub read: BTreeSet<u32>,
    pub first_ts: u64,
    pub last_ts: u64,
}

impl Channel {
    fn new(id: Text, kind: ChannelKind, ts: u64) -> Self {
        Channel {
            id,
            kind,
            path: None,
            holders: BTreeMap::new(),
            bytes_written: 0,
            bytes_read: 0,
            writes: 0,
            reads: 0,
            wrote: BTreeSet::new(),
            read: BTreeSet::new(),
            first_ts: ts,
            last_ts: ts,
        }
    }

    /// Processes that wrote it or hold a write end now.
    pub fn writers(&self) -> BTreeSet<u32> {
        let mut s = self.wrote.clone();
        s.extend(
            self.holders
                .iter()
                .filter(|(_, e)| e.writes())
                .map(|((pid, _), _)| *pid),
        );
        s
    }

    /// Processes that read it or hold a read end now.
    pub fn readers(&self) -> BTreeSet<u32> {
        let mut s = self.read.clone();
        s.extend(
            self.holders
                .iter()
                .filter(|(_, e)| e.reads())
                .map(|((pid, _), _)| *pid),
        );
        s
    }

    pub fn summary(&self) -> ChannelSummary {
        ChannelSummary {
            channel: self.id.clone(),
            kind: self.kind,
            path: self.path.clone(),
            bytes_written: self.bytes_written,
            bytes_read: self.bytes_read,
            writes: self.writes,
            reads: self.reads,
            writers: self.writers().into_iter().collect(),
            readers: self.readers().into_iter().collect(),
        }
    }
}

#[derive(Debug, Default)]
pub struct Model {
    pub processes: HashMap<u32, Process>,
    pub channels: HashMap<Text, Channel>,
    /// Records applied.
    pub records: u64,
    /// Kernel events lost, from `lost` lines.
    pub lost: u64,
    pub warnings: Vec<String>,
}

impl Model {
    pub fn new() -> Self {
        Self::default()
    }

    fn process(&mut self, pid: u32, comm: &Text, ts: u64) -> &mut Process {
        let p = self.processes.entry(pid).or_insert_with(|| Process {
            pid,
            comm: comm.clone(),
            alive: true,
            ..Process::default()
        });
        if p.comm.is_empty() {
            p.comm = comm.clone();
        }
        p.last_ts = p.last_ts.max(ts);
        p
    }

    fn channel(&mut self, id: &Text, kind: ChannelKind, ts: u64) -> &mut Channel {
        let c = self
            .channels
            .entry(id.clone())
            .or_insert_with(|| Channel::new(id.clone(), kind, ts));
        c.last_ts = c.last_ts.max(ts);
        c
    }

    /// The descriptor `fd` of `pid`, if it is an IPC descriptor we know.
    pub fn fd(&self, pid: u32, fd: i32) -> Option<&FdRef> {
        self.processes.get(&pid)?.fds.get(&fd)
    }

    /// IPC descriptors of `pid` in `first..=last`.
    pub fn fds_in_range(&self, pid: u32, first: u32, last: u32) -> Vec<(i32, FdRef)> {
        let Some(p) = self.processes.get(&pid) else {
            return Vec::new();
        };
        p.fds
            .iter()
            .filter(|(fd, _)| (first..=last).contains(&(**fd as u32)))
            .map(|(fd, r)| (*fd, r.clone()))
            .collect()
    }

    /// Point `pid`'s `fd` at a channel end, replacing whatever it held.
    fn install(&mut self, pid: u32, fd: i32, fdref: FdRef) {
        self.remove_fd(pid, fd);
        if let Some(c) = self.channels.get_mut(&fdref.channel) {
            c.holders.insert((pid, fd), fdref.end);
        }
        if let Some(p) = self.processes.get_mut(&pid) {
            p.fds.insert(fd, fdref);
        }
    }

    fn remove_fd(&mut self, pid: u32, fd: i32) -> Option<FdRef> {
        let old = self.processes.get_mut(&pid)?.fds.remove(&fd)?;
        if let Some(c) = self.channels.get_mut(&old.channel) {
            c.holders.remove(&(pid, fd));
        }
        Some(old)
    }

    fn close_all(&mut self, pid: u32, only_cloexec: bool) {
        let fds: Vec<i32> = match self.processes.get(&pid) {
            Some(p) => p
                .fds
                .iter()
                .filter(|(_, r)| !only_cloexec || r.cloexec)
                .map(|(fd, _)| *fd)
                .collect(),
            None => return,
        };
        for fd in fds {
            self.remove_fd(pid, fd);
        }
    }

    pub fn apply(&mut self, record: &Record) {
        self.records += 1;
        match record {
            Record::Io(io) => self.apply_io(io),
            Record::Channel(line) => self.apply_channel(line),
            Record::Process(line) => self.apply_process(line),
            Record::Lost(l) => self.lost = self.lost.max(l.total),
            Record::Warning(w) => self.warnings.push(w.message.clone()),
            Record::Header(_) | Record::Summary(_) | Record::Unknown => {}
        }
    }

    fn apply_io(&mut self, io: &Io) {
        let p = self.process(io.pid, &io.comm, io.ts_ns);
        match io.op {
            Op::Write => p.bytes_written += io.bytes,
            Op::Read => p.bytes_read += io.bytes,
        }
        let known = p.fds.contains_key(&io.fd);
        let c = self.channel(&io.channel, io.kind, io.ts_ns);
        match io.op {
            Op::Write => {
                c.bytes_written += io.bytes;
                c.writes += 1;
                c.wrote.insert(io.pid);
            }
            Op::Read => {
                c.bytes_read += io.bytes;
                c.reads += 1;
                c.read.insert(io.pid);
            }
        }
        if !known {
            // A descriptor we never saw open (missed or pre-existing).
            let end = match io.op {
                Op::Write => End::Write,
                Op::Read => End::Read,
            };
            let fdref = FdRef {
                channel: io.channel.clone(),
                end,
                cloexec: false,
            };
            self.install(io.pid, io.fd, fdref);
        }
    }

    fn apply_channel(&mut self, line: &ChannelLine) {
        self.process(line.pid, &line.comm, line.ts_ns);
        let c = self.channel(&line.channel, line.kind, line.ts_ns);
        if line.path.is_some() {
            c.path.clone_from(&line.path);
        }
        let Some(fd) = line.fd else { return };
        match line.event {
            ChannelEvent::Create | ChannelEvent::Open | ChannelEvent::Existing => {
                let end = line.end.unwrap_or(End::Both);
                let fdref = FdRef {
                    channel: line.channel.clone(),
                    end,
                    cloexec: line.cloexec,
                };
                self.install(line.pid, fd, fdref);
            }
            ChannelEvent::Dup => {
                let end = line
                    .end
                    .or_else(|| {
                        line.old_fd
                            .and_then(|old| self.fd(line.pid, old).map(|r| r.end))
                    })
                    .unwrap_or(End::Both);
                let fdref = FdRef {
                    channel: line.channel.clone(),
                    end,
                    cloexec: line.cloexec,
                };
                self.install(line.pid, fd, fdref);
            }
            ChannelEvent::Close => {
                self.remove_fd(line.pid, fd);
            }
            ChannelEvent::Setfd => {
                if let Some(p) = self.processes.get_mut(&line.pid)
                    && let Some(r) = p.fds.get_mut(&fd)
                {
                    r.cloexec = line.cloexec;
                }
            }
            ChannelEvent::Mkfifo => {}
        }
    }

    fn apply_process(&mut self, line: &ProcessLine) {
        match line.event {
            ProcessEvent::Fork => {
                let inherited = line
                    .ppid
                    .and_then(|pp| self.processes.get(&pp))
                    .map(|p| p.fds.clone())
                    .unwrap_or_default();
                let child = self.process(line.pid, &line.comm, line.ts_ns);
                child.ppid = line.ppid;
                child.alive = true;
                for (fd, r) in inherited {
                    self.install(line.pid, fd, r);
                }
            }
            ProcessEvent::Existing => {
                let p = self.process(line.pid, &line.comm, line.ts_ns);
                p.ppid = line.ppid.or(p.ppid);
            }
            ProcessEvent::Exec => {
                self.close_all(line.pid, true);
                let p = self.process(line.pid, &line.comm, line.ts_ns);
                p.comm = line.comm.clone();
            }
            ProcessEvent::Exit => {
                self.close_all(line.pid, false);
                let p = self.process(line.pid, &line.comm, line.ts_ns);
                p.alive = false;
                p.exit_code = line.exit_code;
                p.signal = line.signal;
            }
        }
    }

    /// Channel totals, sorted by id, for the summary line.
    pub fn channel_summaries(&self) -> Vec<ChannelSummary> {
        let mut v: Vec<_> = self.channels.values().map(Channel::summary).collect();
        v.sort_by(|a, b| a.channel.cmp(&b.channel));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chan(event: ChannelEvent, pid: u32, fd: i32, end: Option<End>) -> Record {
        Record::Channel(ChannelLine {
            ts_ns: 1,
            event,
            kind: ChannelKind::Pipe,
            channel: "pipe:[7]".into(),
            pid,
            tid: pid,
            comm: "sh".into(),
            fd: Some(fd),
            end,
            old_fd: None,
            cloexec: false,
            path: None,
            syscall: None,
        })
    }

    fn proc_line(event: ProcessEvent, pid: u32, ppid: Option<u32>) -> Record {
        Record::Process(ProcessLine {
            ts_ns: 2,
            event,
            pid,
            tid: pid,
            comm: "sh".into(),
            ppid,
            filename: None,
            exit_code: None,
            signal: None,
        })
    }

    fn holders(m: &Model) -> Vec<(u32, i32, End)> {
        m.channels["pipe:[7]"]
            .holders
            .iter()
            .map(|((p, f), e)| (*p, *f, *e))
            .collect()
    }

    #[test]
    fn fd_table_follows_pipe_fork_dup_close_exec_exit() {
        let mut m = Model::new();
        m.apply(&chan(ChannelEvent::Create, 10, 3, Some(End::Read)));
        m.apply(&chan(ChannelEvent::Create, 10, 4, Some(End::Write)));
        m.apply(&proc_line(ProcessEvent::Fork, 11, Some(10)));
        assert_eq!(
            holders(&m),
            vec![
                (10, 3, End::Read),
                (10, 4, End::Write),
                (11, 3, End::Read),
                (11, 4, End::Write)
            ]
        );
        // Child: dup2(4, 1) then close 3 and 4.
        let mut dup = chan(ChannelEvent::Dup, 11, 1, None);
        if let Record::Channel(l) = &mut dup {
            l.old_fd = Some(4);
        }
        m.apply(&dup);
        m.apply(&chan(ChannelEvent::Close, 11, 3, None));
        m.apply(&chan(ChannelEvent::Close, 11, 4, None));
        assert_eq!(m.fd(11, 1).map(|r| r.end), Some(End::Write));
        assert_eq!(m.processes[&11].fds.len(), 1);
        // Parent closes the write end; a cloexec-free fd survives exec.
        m.apply(&chan(ChannelEvent::Close, 10, 4, None));
        m.apply(&proc_line(ProcessEvent::Exec, 11, None));
        assert_eq!(holders(&m), vec![(10, 3, End::Read), (11, 1, End::Write)]);
        let c = &m.channels["pipe:[7]"];
        assert_eq!(c.writers(), BTreeSet::from([11]));
        assert_eq!(c.readers(), BTreeSet::from([10]));
        m.apply(&proc_line(ProcessEvent::Exit, 11, None));
        assert_eq!(holders(&m), vec![(10, 3, End::Read)]);
        assert!(!m.processes[&11].alive);
    }

    #[test]
    fn exec_closes_cloexec_descriptors_only() {
        let mut m = Model::new();
        let mut a = chan(ChannelEvent::Create, 5, 3, Some(End::Read));
        if let Record::Channel(l) = &mut a {
            l.cloexec = true;
        }
        m.apply(&a);
        m.apply(&chan(ChannelEvent::Create, 5, 4, Some(End::Write)));
        m.apply(&proc_line(ProcessEvent::Exec, 5, None));
        assert_eq!(holders(&m), vec![(5, 4, End::Write)]);
        // F_SETFD then exec closes it too.
        let mut s = chan(ChannelEvent::Setfd, 5, 4, None);
        if let Record::Channel(l) = &mut s {
            l.cloexec = true;
        }
        m.apply(&s);
        m.apply(&proc_line(ProcessEvent::Exec, 5, None));
        assert!(holders(&m).is_empty());
    }

    #[test]
    fn dup_onto_an_open_fd_replaces_it() {
        let mut m = Model::new();
        m.apply(&chan(ChannelEvent::Create, 5, 3, Some(End::Read)));
        m.apply(&chan(ChannelEvent::Create, 5, 4, Some(End::Write)));
        let mut dup = chan(ChannelEvent::Dup, 5, 3, None);
        if let Record::Channel(l) = &mut dup {
            l.old_fd = Some(4);
        }
        m.apply(&dup);
        assert_eq!(holders(&m), vec![(5, 3, End::Write), (5, 4, End::Write)]);
    }

    #[test]
    fn io_counts_bytes_and_learns_unknown_descriptors() {
        let mut m = Model::new();
        for (op, bytes) in [(Op::Write, 1000), (Op::Write, 24), (Op::Read, 1024)] {
            m.apply(&Record::Io(Io {
                ts_ns: 3,
                kind: ChannelKind::Pipe,
                op,
                channel: "pipe:[7]".into(),
                pid: if op == Op::Write { 1 } else { 2 },
                tid: 1,
                comm: "x".into(),
                bytes,
                fd: 9,
                syscall: "write".into(),
            }));
        }
        let c = &m.channels["pipe:[7]"];
        assert_eq!(
            (c.bytes_written, c.bytes_read, c.writes, c.reads),
            (1024, 1024, 2, 1)
        );
        assert_eq!(holders(&m), vec![(1, 9, End::Write), (2, 9, End::Read)]);
    }
}
