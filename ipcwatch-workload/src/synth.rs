//! `ipcwatch-workload collector-throughput`: a synthetic event source for
//! the collector benchmark (no kernel, no root).
//!
//! A trace of raw ring-buffer records is built first, byte for byte as the
//! eBPF programs write them: 25 two-process pipelines (a producer and the
//! consumer it forked and exec'ed) sharing 300 pipes and 100 unix
//! socketpairs, then mostly reads and writes on them, with some dups,
//! closes, fcntl(F_SETFD), short-lived pipes and helper processes that
//! fork, exec and exit. Then, on one thread and timed, every record goes
//! through the decoder, the collector and its model, and the NDJSON writer
//! of `ipcwatch record`, into a file. The result is checked against what
//! was generated, so a run that measures nothing fails.

use std::io::{self, Write};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use ipcwatch_common::{
    ADDR_LEN, COMM_LEN, CTL_LEN, EventHeader, ExecEvent, ExitEvent, FdEvent, FileId, ForkEvent,
    IoEvent, PATH_LEN, PipeEvent, SockEvent, file_kind, kind, op, sc, sock_op,
};

use ipcwatch::collect::Collector;
use ipcwatch::decode::{as_bytes, decode};
use ipcwatch::record::{FORMAT_NAME, FORMAT_VERSION, Header, Record, Summary, Text};
use ipcwatch::sink::Sink;
use ipcwatch::sink::ndjson::{NdjsonWriter, open_output};

/// Events in a run unless told otherwise.
pub const DEFAULT_EVENTS: u64 = 3_000_000;

/// CPUs the synthetic kernel numbers events on.
const CPUS: usize = 4;
/// Producer/consumer pairs.
const GROUPS: u32 = 25;
const PIPES_PER_GROUP: i32 = 12;
const PAIRS_PER_GROUP: i32 = 4;
/// pipefs and sockfs device numbers (only carried along).
const PIPE_DEV: u32 = 0xd;
const SOCK_DEV: u32 = 0x8;
const AF_UNIX: u16 = 1;
const SOCK_STREAM: u16 = 1;
const O_CLOEXEC: u32 = libc::O_CLOEXEC as u32;
/// Largest single read or write.
const MAX_IO: u64 = 4096;

/// What the collector must make of a trace.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Raw events in the trace.
    pub events: u64,
    /// NDJSON lines of each type the events must produce.
    pub io_lines: u64,
    pub channel_lines: u64,
    pub process_lines: u64,
    /// Over all channels.
    pub bytes_written: u64,
    pub bytes_read: u64,
    /// Distinct channels and processes the model must end up with.
    pub channels: u64,
    pub processes: u64,
    /// Each CPU's next sequence number at the end (no event is lost).
    pub produced: Vec<u64>,
}

impl Expected {
    /// Lines made from events (the header and summary lines not counted).
    pub fn event_lines(&self) -> u64 {
        self.io_lines + self.channel_lines + self.process_lines
    }
}

/// Raw ring-buffer records, back to back (8-byte aligned, as in the ring
/// buffer), and what they must become.
pub struct Trace {
    bytes: Vec<u8>,
    items: Vec<Range<usize>>,
    pub expected: Expected,
}

impl Trace {
    /// The records, as the ring buffer hands them over.
    pub fn items(&self) -> impl Iterator<Item = &[u8]> {
        self.items.iter().map(|r| &self.bytes[r.clone()])
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }
}

#[derive(Debug, Clone, Copy)]
struct Proc {
    pid: u32,
    comm: [u8; COMM_LEN],
}

fn comm(name: &str) -> [u8; COMM_LEN] {
    let mut c = [0u8; COMM_LEN];
    let n = name.len().min(COMM_LEN - 1);
    c[..n].copy_from_slice(&name.as_bytes()[..n]);
    c
}

fn path(name: &str) -> [u8; PATH_LEN] {
    let mut p = [0u8; PATH_LEN];
    let n = name.len().min(PATH_LEN - 1);
    p[..n].copy_from_slice(&name.as_bytes()[..n]);
    p
}

/// One end of a channel as a process holds it.
#[derive(Debug, Clone, Copy)]
struct Hold {
    proc: Proc,
    fd: i32,
}

#[derive(Debug, Clone, Copy)]
struct PipeCh {
    ino: u64,
    writer: Hold,
    reader: Hold,
    /// Written and not yet read.
    unread: u64,
}

#[derive(Debug, Clone, Copy)]
struct SockEnd {
    hold: Hold,
    ino: u64,
    sk: u64,
}

#[derive(Debug, Clone, Copy)]
struct SockCh {
    ends: [SockEnd; 2],
    /// Sent by end i, not yet received by the other.
    unread: [u64; 2],
}

struct Group {
    producer: Proc,
    pipes: Vec<PipeCh>,
    socks: Vec<SockCh>,
}

struct Gen {
    rng: u64,
    ts: u64,
    seq: [u64; CPUS],
    bytes: Vec<u8>,
    items: Vec<Range<usize>>,
    exp: Expected,
    next_ino: u64,
    next_pid: u32,
}

impl Gen {
    fn new(events: u64) -> Self {
        let n = usize::try_from(events).unwrap_or(usize::MAX);
        Gen {
            rng: 0x9e37_79b9_7f4a_7c15,
            ts: 1_000_000_000,
            seq: [0; CPUS],
            // Mostly 80-byte IO events; socket events are 328 bytes.
            bytes: Vec::with_capacity(n.saturating_mul(112)),
            items: Vec::with_capacity(n),
            exp: Expected::default(),
            next_ino: 40_000,
            next_pid: 5_000,
        }
    }

    /// xorshift64*: deterministic, so every run measures the same trace.
    fn rand(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.rand() % n
    }

    fn ino(&mut self) -> u64 {
        self.next_ino += 1;
        self.next_ino
    }

    fn hdr(&mut self, kind: u32, p: Proc) -> EventHeader {
        let cpu = self.below(CPUS as u64) as usize;
        let seq = self.seq[cpu];
        self.seq[cpu] += 1;
        self.ts += 100 + self.below(900);
        EventHeader {
            kind,
            cpu: cpu as u32,
            seq,
            ts_ns: self.ts,
            pid: p.pid,
            tid: p.pid,
            comm: p.comm,
        }
    }

    fn push<T: Copy>(&mut self, event: &T) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(as_bytes(event));
        self.items.push(start..self.bytes.len());
        // The ring buffer keeps every record 8-byte aligned.
        let aligned = self.bytes.len().next_multiple_of(8);
        self.bytes.resize(aligned, 0);
        self.exp.events += 1;
    }

    fn fork(&mut self, parent: Proc) -> Proc {
        let pid = self.next_pid;
        self.next_pid += 1;
        let hdr = self.hdr(kind::FORK, parent);
        self.push(&ForkEvent {
            hdr,
            child_pid: pid,
            child_tid: pid,
            cgroup: 0,
        });
        self.exp.process_lines += 1;
        self.exp.processes += 1;
        Proc {
            pid,
            comm: parent.comm,
        }
    }

    fn exec(&mut self, p: &mut Proc, file: &str) {
        p.comm = comm(file.rsplit('/').next().unwrap_or(file));
        let hdr = self.hdr(kind::EXEC, *p);
        self.push(&ExecEvent {
            hdr,
            old_tid: p.pid,
            _pad: 0,
            cgroup: 0,
            filename: path(file),
        });
        self.exp.process_lines += 1;
    }

    fn exit(&mut self, p: Proc, code: u32) {
        let hdr = self.hdr(kind::EXIT, p);
        self.push(&ExitEvent {
            hdr,
            exit_code: code << 8,
            _pad: 0,
        });
        self.exp.process_lines += 1;
    }

    fn pipe_file(ino: u64, access: u16) -> FileId {
        FileId {
            ino,
            dev: PIPE_DEV,
            kind: file_kind::PIPE,
            access,
        }
    }

    /// pipe2(): returns the new pipe's inode.
    fn pipe(&mut self, p: Proc, fds: [i32; 2], flags: u32) -> u64 {
        let ino = self.ino();
        let hdr = self.hdr(kind::PIPE, p);
        self.push(&PipeEvent {
            hdr,
            file: Self::pipe_file(ino, 3),
            fds,
            flags,
            syscall: sc::PIPE2,
        });
        self.exp.channel_lines += 2;
        self.exp.channels += 1;
        ino
    }

    fn pipe_io(&mut self, h: Hold, ino: u64, write: bool, bytes: u64) {
        let hdr = self.hdr(kind::IO, h.proc);
        let (access, op, syscall) = if write {
            (2, op::WRITE, sc::WRITE)
        } else {
            (1, op::READ, sc::READ)
        };
        self.push(&IoEvent {
            hdr,
            file: Self::pipe_file(ino, access),
            bytes,
            fd: h.fd,
            op,
            syscall,
            _pad: 0,
        });
        self.count_io(write, bytes);
    }

    fn count_io(&mut self, write: bool, bytes: u64) {
        self.exp.io_lines += 1;
        if write {
            self.exp.bytes_written += bytes;
        } else {
            self.exp.bytes_read += bytes;
        }
    }

    /// close, dup2 or fcntl(F_SETFD) of a descriptor.
    fn fd_event(&mut self, kind: u32, h: Hold, file: FileId, arg: u32, flags: u32, syscall: u32) {
        let hdr = self.hdr(kind, h.proc);
        self.push(&FdEvent {
            hdr,
            file,
            fd: h.fd,
            arg,
            flags,
            syscall,
        });
        self.exp.channel_lines += 1;
    }

    fn close(&mut self, h: Hold, file: FileId) {
        self.fd_event(kind::CLOSE, h, file, 0, 0, sc::CLOSE);
    }

    fn sock(&mut self, kind: u32, me: SockEnd, peer: SockEnd, op: u32, syscall: u32) -> SockEvent {
        let hdr = self.hdr(kind, me.hold.proc);
        SockEvent {
            hdr,
            file: FileId {
                ino: me.ino,
                dev: SOCK_DEV,
                kind: file_kind::UNIX,
                access: 3,
            },
            bytes: 0,
            sk: me.sk,
            peer_sk: peer.sk,
            peer_ino: peer.ino,
            fd: me.hold.fd,
            op,
            syscall,
            msgs: 1,
            family: AF_UNIX,
            sotype: SOCK_STREAM,
            sport: 0,
            dport: 0,
            saddr: [0; 16],
            daddr: [0; 16],
            ctl_len: 0,
            addr_len: 0,
            ctl: [0; CTL_LEN],
            addr: [0; ADDR_LEN],
        }
    }

    /// socketpair(AF_UNIX, SOCK_STREAM): the kernel reports each end.
    fn socketpair(&mut self, p: Proc, fds: [i32; 2]) -> SockCh {
        let mut ends = [SockEnd {
            hold: Hold { proc: p, fd: 0 },
            ino: 0,
            sk: 0,
        }; 2];
        for (i, end) in ends.iter_mut().enumerate() {
            end.hold.fd = fds[i];
            end.ino = self.ino();
            end.sk = 0xffff_8880_0000_0000 + end.ino * 0x400;
        }
        for i in 0..2 {
            let e = self.sock(
                kind::SOCK_LIFE,
                ends[i],
                ends[1 - i],
                sock_op::PAIR,
                sc::SOCKETPAIR,
            );
            self.push(&e);
        }
        self.exp.channel_lines += 2;
        self.exp.channels += 1;
        SockCh {
            ends,
            unread: [0; 2],
        }
    }

    fn sock_io(&mut self, me: SockEnd, peer: SockEnd, write: bool, bytes: u64) {
        let (op, syscall) = if write {
            (op::WRITE, sc::SENDTO)
        } else {
            (op::READ, sc::RECVFROM)
        };
        let mut e = self.sock(kind::SOCK_IO, me, peer, op, syscall);
        e.bytes = bytes;
        self.push(&e);
        self.count_io(write, bytes);
    }

    fn sock_close(&mut self, end: SockEnd) {
        let file = FileId {
            ino: end.ino,
            dev: SOCK_DEV,
            kind: file_kind::SOCKET,
            access: 3,
        };
        self.close(end.hold, file);
    }

    /// A producer that forks and execs its consumer, with pipes and
    /// socketpairs between them; each keeps only its own ends.
    fn group(&mut self, supervisor: Proc) -> Group {
        let mut producer = self.fork(supervisor);
        self.exec(&mut producer, "/usr/libexec/producer");
        let mut made = Vec::new();
        for i in 0..PIPES_PER_GROUP {
            let fds = [3 + 2 * i, 4 + 2 * i];
            made.push((self.pipe(producer, fds, 0), fds));
        }
        let sock_fd = 3 + 2 * PIPES_PER_GROUP;
        let mut socks = Vec::new();
        for j in 0..PAIRS_PER_GROUP {
            socks.push(self.socketpair(producer, [sock_fd + 2 * j, sock_fd + 1 + 2 * j]));
        }
        let mut consumer = self.fork(producer);
        self.exec(&mut consumer, "/usr/libexec/consumer");
        let mut pipes = Vec::new();
        for (i, (ino, [r, w])) in made.into_iter().enumerate() {
            // Even pipes flow producer -> consumer, odd ones back.
            let (writer, reader) = if i % 2 == 0 {
                (producer, consumer)
            } else {
                (consumer, producer)
            };
            self.close(
                Hold {
                    proc: writer,
                    fd: r,
                },
                Self::pipe_file(ino, 1),
            );
            self.close(
                Hold {
                    proc: reader,
                    fd: w,
                },
                Self::pipe_file(ino, 2),
            );
            pipes.push(PipeCh {
                ino,
                writer: Hold {
                    proc: writer,
                    fd: w,
                },
                reader: Hold {
                    proc: reader,
                    fd: r,
                },
                unread: 0,
            });
        }
        for s in &mut socks {
            // The producer keeps end 0, the consumer end 1.
            let mut consumer_end = s.ends[1];
            consumer_end.hold.proc = consumer;
            let mut stale = s.ends[0];
            stale.hold.proc = consumer;
            self.sock_close(stale);
            self.sock_close(s.ends[1]);
            s.ends[1] = consumer_end;
        }
        Group {
            producer,
            pipes,
            socks,
        }
    }

    fn io_size(&mut self) -> u64 {
        // Mostly small messages, some page-sized.
        match self.below(10) {
            0..=5 => 1 + self.below(256),
            6..=8 => 1 + self.below(2048),
            _ => MAX_IO,
        }
    }

    fn step_pipe(&mut self, g: &mut Group) {
        let i = self.below(g.pipes.len() as u64) as usize;
        let p = g.pipes[i];
        if p.unread > 0 && self.below(2) == 0 {
            let n = p.unread.min(1 + self.below(MAX_IO));
            self.pipe_io(p.reader, p.ino, false, n);
            g.pipes[i].unread -= n;
        } else {
            let n = self.io_size();
            self.pipe_io(p.writer, p.ino, true, n);
            g.pipes[i].unread += n;
        }
    }

    fn step_sock(&mut self, g: &mut Group) {
        let j = self.below(g.socks.len() as u64) as usize;
        let from = self.below(2) as usize;
        let s = g.socks[j];
        let (me, peer) = (s.ends[from], s.ends[1 - from]);
        if s.unread[1 - from] > 0 && self.below(2) == 0 {
            let n = s.unread[1 - from].min(1 + self.below(MAX_IO));
            self.sock_io(me, peer, false, n);
            g.socks[j].unread[1 - from] -= n;
        } else {
            let n = self.io_size();
            self.sock_io(me, peer, true, n);
            g.socks[j].unread[from] += n;
        }
    }

    /// dup2 of one of the producer's pipe ends to a spare number, then
    /// close of the copy.
    fn step_dup(&mut self, g: &Group) {
        let p = g.pipes[self.below(g.pipes.len() as u64) as usize];
        let held = if p.writer.proc.pid == g.producer.pid {
            (p.writer, 2)
        } else {
            (p.reader, 1)
        };
        let copy = Hold {
            proc: g.producer,
            fd: 100,
        };
        let file = Self::pipe_file(p.ino, held.1);
        self.fd_event(kind::DUP, copy, file, held.0.fd as u32, 0, sc::DUP2);
        self.close(copy, file);
    }

    fn step_setfd(&mut self, g: &Group) {
        let p = g.pipes[self.below(g.pipes.len() as u64) as usize];
        let file = Self::pipe_file(p.ino, 2);
        self.fd_event(
            kind::FD_FLAGS,
            p.writer,
            file,
            0,
            libc::FD_CLOEXEC as u32,
            sc::FCNTL,
        );
    }

    /// A short-lived pipe inside the producer.
    fn step_temp_pipe(&mut self, g: &Group) {
        let fds = [60, 61];
        let ino = self.pipe(g.producer, fds, O_CLOEXEC);
        let n = self.io_size();
        let (r, w) = (
            Hold {
                proc: g.producer,
                fd: fds[0],
            },
            Hold {
                proc: g.producer,
                fd: fds[1],
            },
        );
        self.pipe_io(w, ino, true, n);
        self.pipe_io(r, ino, false, n);
        self.close(w, Self::pipe_file(ino, 2));
        self.close(r, Self::pipe_file(ino, 1));
    }

    /// The producer runs a helper: fork, exec, exit.
    fn step_helper(&mut self, g: &Group) {
        let mut helper = self.fork(g.producer);
        self.exec(&mut helper, "/bin/sh");
        self.exit(helper, 0);
    }
}

/// A deterministic trace of about `events` raw events (a few more, to
/// finish the last step).
pub fn generate(events: u64) -> Trace {
    let mut g = Gen::new(events);
    let supervisor = Proc {
        pid: 1_000,
        comm: comm("supervisor"),
    };
    let mut groups: Vec<Group> = (0..GROUPS).map(|_| g.group(supervisor)).collect();
    while g.exp.events < events {
        let i = g.below(groups.len() as u64) as usize;
        let grp = &mut groups[i];
        match g.below(1000) {
            0..850 => g.step_pipe(grp),
            850..950 => g.step_sock(grp),
            950..975 => g.step_dup(grp),
            975..995 => g.step_setfd(grp),
            995..998 => g.step_temp_pipe(grp),
            _ => g.step_helper(grp),
        }
    }
    g.exp.produced = g.seq.to_vec();
    Trace {
        bytes: g.bytes,
        items: g.items,
        expected: g.exp,
    }
}

/// Bytes and lines that went through the writer.
#[derive(Debug, Default)]
struct Counts {
    bytes: AtomicU64,
    lines: AtomicU64,
}

/// The output file, counting what the NDJSON writer's buffer flushes
/// into it (once per 64 KiB, not per line).
struct Counted {
    inner: Box<dyn Write + Send>,
    counts: Arc<Counts>,
}

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let lines = newlines(&buf[..n]);
        self.counts.bytes.fetch_add(n as u64, Ordering::Relaxed);
        self.counts.lines.fetch_add(lines, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Newlines in `buf`, fast enough not to weigh on the figure (byte
/// counters in blocks of 255 vectorize).
fn newlines(buf: &[u8]) -> u64 {
    buf.chunks(255)
        .map(|c| {
            let n = c
                .iter()
                .fold(0u8, |n, &b| n.wrapping_add(u8::from(b == b'\n')));
            u64::from(n)
        })
        .sum()
}

/// CPU time this thread has used, in seconds.
fn thread_cpu_secs() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out pointer; this clock exists on every Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// What a run did.
#[derive(Debug)]
pub struct Measured {
    /// Wall-clock time of the run.
    pub secs: f64,
    /// CPU time the run took (less than `secs` when the core is shared).
    pub cpu_secs: f64,
    pub events: u64,
    pub undecodable: u64,
    pub ndjson_bytes: u64,
    pub ndjson_lines: u64,
    pub collector: Collector,
}

impl Measured {
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.secs
    }

    pub fn ns_per_event(&self) -> f64 {
        self.secs * 1e9 / self.events as f64
    }

    pub fn events_per_cpu_sec(&self) -> f64 {
        self.events as f64 / self.cpu_secs
    }
}

fn header() -> Record {
    Record::Header(Header {
        ts_ns: 1_000_000_000,
        format: FORMAT_NAME.into(),
        version: FORMAT_VERSION,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        tool_commit: "synthetic".into(),
        kernel: "synthetic".into(),
        hostname: "synthetic".into(),
        start_time: "2026-01-01T00:00:00Z".into(),
        start_unix_ns: 1_767_225_600_000_000_000,
        command: None,
        pids: Vec::new(),
        comms: Vec::new(),
    })
}

/// Push the trace through the decoder, the collector and the NDJSON
/// writer into `out`, as `ipcwatch record` does with the ring buffer
/// (header first, summary last). Only this is timed.
pub fn run(trace: &Trace, out: Box<dyn Write + Send>) -> io::Result<Measured> {
    let counts = Arc::new(Counts::default());
    let mut sink = NdjsonWriter::new(Box::new(Counted {
        inner: out,
        counts: Arc::clone(&counts),
    }));
    let start = Instant::now();
    let cpu_start = thread_cpu_secs();
    let mut collector = Collector::new();
    collector.push(header(), &mut sink)?;
    let mut undecodable = 0u64;
    for item in trace.items() {
        match decode(item) {
            Ok(ev) => collector.ingest(&ev, &mut sink)?,
            Err(_) => undecodable += 1,
        }
    }
    collector.finish(&mut sink)?;
    collector.close_sequences(&trace.expected.produced);
    let last_ts = trace
        .items()
        .last()
        .and_then(|b| decode(b).ok())
        .map_or(0, |e| e.header().ts_ns);
    let summary = Record::Summary(Summary {
        ts_ns: last_ts,
        duration_ns: last_ts.saturating_sub(1_000_000_000),
        events: collector.events,
        dropped: 0,
        dropped_by_kind: Default::default(),
        seq_gaps: collector.seq_gaps,
        reason: Text::const_new("end-of-input"),
        command_status: None,
        channels: collector.model.channel_summaries(),
        detector: None,
        otlp: None,
    });
    collector.push(summary, &mut sink)?;
    Sink::flush(&mut sink)?;
    let secs = start.elapsed().as_secs_f64();
    let cpu_secs = thread_cpu_secs() - cpu_start;
    Ok(Measured {
        secs,
        cpu_secs,
        events: trace.len() as u64,
        undecodable,
        ndjson_bytes: counts.bytes.load(Ordering::Relaxed),
        ndjson_lines: counts.lines.load(Ordering::Relaxed),
        collector,
    })
}

/// Fail unless the run produced exactly what the trace must produce.
pub fn check(trace: &Trace, m: &Measured) -> Result<()> {
    let exp = &trace.expected;
    let model = &m.collector.model;
    let sum = |f: fn(&ipcwatch::model::Channel) -> u64| model.channels.values().map(f).sum::<u64>();
    let io_seen = sum(|c| c.writes) + sum(|c| c.reads);
    let checks: [(&str, u64, u64); 10] = [
        ("events ingested", m.collector.events, exp.events),
        ("undecodable events", m.undecodable, 0),
        ("NDJSON lines", m.ndjson_lines, exp.event_lines() + 2),
        ("records in the model", model.records, exp.event_lines() + 2),
        ("io lines in the model", io_seen, exp.io_lines),
        ("bytes written", sum(|c| c.bytes_written), exp.bytes_written),
        ("bytes read", sum(|c| c.bytes_read), exp.bytes_read),
        ("channels", model.channels.len() as u64, exp.channels),
        ("processes", model.processes.len() as u64, exp.processes),
        ("sequence gaps", m.collector.seq_gaps, 0),
    ];
    let wrong: Vec<String> = checks
        .iter()
        .filter(|(_, got, want)| got != want)
        .map(|(what, got, want)| format!("{what}: {got}, expected {want}"))
        .collect();
    if !wrong.is_empty() {
        bail!("the collector's output is wrong: {}", wrong.join("; "));
    }
    if m.ndjson_bytes == 0 {
        bail!("nothing was written");
    }
    Ok(())
}

/// `ipcwatch-workload collector-throughput`.
pub fn collector_throughput(events: u64, output: &str) -> Result<()> {
    if events == 0 {
        bail!("--events must be at least 1");
    }
    let trace = generate(events);
    let out = open_output(output).with_context(|| format!("cannot write to {output}"))?;
    let m = run(&trace, out).context("writing the trace")?;
    check(&trace, &m)?;
    let mut o = io::stdout().lock();
    writeln!(o, "events {}", m.events)?;
    writeln!(o, "ndjson lines {}", m.ndjson_lines)?;
    writeln!(o, "ndjson bytes {}", m.ndjson_bytes)?;
    writeln!(o, "seconds {:.6}", m.secs)?;
    writeln!(o, "collector events/s {:.1}", m.events_per_sec())?;
    writeln!(o, "collector ns/event {:.2}", m.ns_per_event())?;
    writeln!(o, "cpu seconds {:.6}", m.cpu_secs)?;
    writeln!(o, "collector events/cpu-s {:.1}", m.events_per_cpu_sec())?;
    writeln!(o, "ndjson MB/s {:.1}", m.ndjson_bytes as f64 / 1e6 / m.secs)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipcwatch::trace::TraceReader;

    #[test]
    fn the_trace_is_deterministic_and_decodes() {
        let a = generate(5_000);
        let b = generate(5_000);
        assert_eq!(a.expected, b.expected);
        assert_eq!(a.bytes, b.bytes);
        assert!(a.len() as u64 >= 5_000);
        assert_eq!(a.len() as u64, a.expected.events);
        assert!(a.items().all(|i| decode(i).is_ok()));
    }

    #[test]
    fn every_event_reaches_the_ndjson_file() {
        let trace = generate(20_000);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("synth.ndjson");
        let out = open_output(path.to_str().unwrap()).unwrap();
        let m = run(&trace, out).unwrap();
        check(&trace, &m).unwrap();
        // Read the file back: the exact lines and bytes of the trace.
        let exp = &trace.expected;
        let text = std::fs::read_to_string(&path).unwrap();
        // Every line is exactly what serde_json writes for its record.
        for line in text.lines() {
            let r: Record = serde_json::from_str(line).unwrap();
            assert_eq!(serde_json::to_string(&r).unwrap(), line);
        }
        let mut reader = TraceReader::new(text.as_bytes());
        let (mut io_lines, mut channel_lines, mut process_lines) = (0, 0, 0);
        let (mut written, mut read) = (0, 0);
        let mut summary = None;
        while let Some(r) = reader.next_record().unwrap() {
            match r {
                Record::Io(io) => {
                    io_lines += 1;
                    match io.op {
                        ipcwatch::record::Op::Write => written += io.bytes,
                        ipcwatch::record::Op::Read => read += io.bytes,
                    }
                }
                Record::Channel(_) => channel_lines += 1,
                Record::Process(_) => process_lines += 1,
                Record::Summary(s) => summary = Some(s),
                Record::Header(_) => {}
                other => panic!("unexpected line {other:?}"),
            }
        }
        assert_eq!(io_lines, exp.io_lines);
        assert_eq!(channel_lines, exp.channel_lines);
        assert_eq!(process_lines, exp.process_lines);
        assert_eq!((written, read), (exp.bytes_written, exp.bytes_read));
        let summary = summary.expect("a summary line");
        assert_eq!(summary.events, exp.events);
        assert_eq!(summary.seq_gaps, 0);
        assert_eq!(summary.channels.len() as u64, exp.channels);
        let (w, r) = summary
            .channels
            .iter()
            .fold((0, 0), |(w, r), c| (w + c.bytes_written, r + c.bytes_read));
        assert_eq!((w, r), (exp.bytes_written, exp.bytes_read));
        assert_eq!(
            m.ndjson_bytes,
            std::fs::metadata(&path).unwrap().len(),
            "bytes counted"
        );
    }

    #[test]
    fn newlines_are_counted() {
        let mut buf = vec![b'x'; 1000];
        for i in [0, 254, 255, 510, 999] {
            buf[i] = b'\n';
        }
        assert_eq!(newlines(&buf), 5);
        assert_eq!(newlines(&[b'\n'; 600]), 600);
        assert_eq!(newlines(b""), 0);
    }

    #[test]
    fn a_wrong_result_fails_the_check() {
        let mut trace = generate(2_000);
        let m = run(&trace, Box::new(io::sink())).unwrap();
        check(&trace, &m).unwrap();
        trace.expected.bytes_written += 1;
        assert!(check(&trace, &m).is_err());
    }
}
