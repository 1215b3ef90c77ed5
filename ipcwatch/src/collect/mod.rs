//! Kernel events in, records out: the collector turns each decoded event
//! into records, applies them to the model, and hands them to a sink. One
//! module per family: [`fds`] (descriptors, pipes, FIFOs: stateless, what
//! a descriptor refers to is in the model), and the trackers, which keep
//! what the kernel does not repeat in each event: [`sockets`], [`queues`],
//! [`regions`] (shared memory and mappings) and [`sync`] (locks, faults).

pub mod fds;
mod lines;
pub mod queues;
pub mod regions;
pub mod sockets;
pub mod sync;
pub mod totals;

use foldhash::HashMap;
use std::io;

use ipcwatch_common::EventHeader;

use crate::decode::{Dropped, EVENT_KINDS, RawEvent, comm};
use crate::host::monotonic_ns;
use crate::model::Model;
use crate::race::Analyses;
use crate::record::{ContainerLine, Origin, ProcessEvent, ProcessLine, Record};
use crate::scan::cgroup::{Cgroups, nspid_of};
use crate::sink::Sink;
use lines::lossy;
use queues::QueueTracker;
use regions::RegionTracker;
use sockets::SocketTracker;
use sync::SyncTracker;

/// Split a wait status into (exit code, signal).
pub fn wait_status(status: u32) -> (Option<i32>, Option<i32>) {
    let sig = (status & 0x7f) as i32;
    if sig == 0 {
        (Some(((status >> 8) & 0xff) as i32), None)
    } else {
        (None, Some(sig))
    }
}

/// What the kernel sends just before an IO event, from the same program
/// run: when a large pipe write started, the bytes moved. It belongs to
/// the event with the next sequence number of its CPU (other CPUs' events
/// may come in between in the ring buffer).
#[derive(Debug)]
struct Prefix {
    tid: u32,
    /// Sequence number of its last part.
    seq: u64,
    span: Option<u64>,
    data: Option<String>,
}

#[derive(Debug, Default)]
pub struct Collector {
    pub model: Model,
    /// Events received per CPU (below `cutoff`, once it is set).
    received: HashMap<u32, u64>,
    /// Each CPU's next sequence number when recording stopped: events
    /// numbered later (traced processes go on running) are not counted.
    cutoff: Option<Vec<u64>>,
    /// The kernel's drop counters when recording stopped.
    pub dropped_at_stop: Option<Dropped>,
    /// Kernel events ingested.
    pub events: u64,
    /// Kernel events ingested, by kind (indexed like [`EVENT_KINDS`]).
    pub events_by_kind: [u64; EVENT_KINDS.len()],
    /// Events missing from the per-CPU sequences.
    pub seq_gaps: u64,
    /// Reused buffer of records made from one event.
    out: Vec<Record>,
    /// Analyses that find races in the record stream (pipe interleaving;
    /// happens-before in deep mode).
    pub analyses: Analyses,
    /// Per CPU: what came just before the next event (see [`Prefix`]).
    prefixes: Vec<Option<Prefix>>,
    /// Socket state (ids, peers, names).
    pub sockets: SocketTracker,
    /// Message-queue names and keys.
    pub queues: QueueTracker,
    /// Shared regions and mappings.
    pub regions: RegionTracker,
    /// Locks and write faults.
    pub sync: SyncTracker,
    /// Cgroup ids of fork and exec events -> cgroup, container, unit.
    pub cgroups: Cgroups,
}

impl Collector {
    pub fn new() -> Self {
        Self::default()
    }

    /// The events each CPU numbered but ipcwatch never received.
    /// `produced[cpu]` is that CPU's next sequence number: every event,
    /// written or dropped, took one (an atomic fetch-add, so numbers are
    /// unique even when tracing programs preempt each other and arrive out
    /// of order).
    pub fn close_sequences(&mut self, produced: &[u64]) {
        let produced = self.cutoff.clone().unwrap_or_else(|| produced.to_vec());
        self.seq_gaps = produced
            .iter()
            .enumerate()
            .map(|(cpu, &n)| {
                n.saturating_sub(self.received.get(&(cpu as u32)).copied().unwrap_or(0))
            })
            .sum();
    }

    /// Recording stops: `produced` is each CPU's next sequence number now,
    /// `dropped` the drop counters. Events numbered from then on are not
    /// counted as received nor as lost.
    pub fn stop_at(&mut self, produced: Vec<u64>, dropped: Dropped) {
        self.cutoff = Some(produced);
        self.dropped_at_stop = Some(dropped);
    }

    /// Apply a record that did not come from the kernel (header, /proc
    /// scan, warnings) and pass it on.
    pub fn push(&mut self, mut record: Record, sink: &mut dyn Sink) -> io::Result<()> {
        match &mut record {
            Record::Race(race) => self.model.attribute(race),
            // Processes found at start: their containers are named too.
            Record::Process(p) => self.cgroups.name(&mut p.origin),
            _ => {}
        }
        self.model.apply(&record);
        sink.record(&record)?;
        self.deep(&record, sink)
    }

    /// A `container` line for each container whose runtime answered since
    /// the last call (at `ts_ns`).
    pub fn containers_named(&mut self, ts_ns: u64, sink: &mut dyn Sink) -> io::Result<()> {
        for container in self.cgroups.names.answered() {
            self.push(Record::Container(ContainerLine { ts_ns, container }), sink)?;
        }
        Ok(())
    }

    /// Run the race analyses on a record.
    fn deep(&mut self, record: &Record, sink: &mut dyn Sink) -> io::Result<()> {
        if let Some(mut race) = self.analyses.apply(record) {
            self.model.attribute(&mut race);
            let race = Record::Race(race);
            self.model.apply(&race);
            sink.record(&race)?;
        }
        Ok(())
    }

    pub fn ingest(&mut self, raw: &RawEvent, sink: &mut dyn Sink) -> io::Result<()> {
        self.events += 1;
        self.events_by_kind[raw.kind_index()] += 1;
        let hdr = raw.header();
        let counted = match &self.cutoff {
            Some(c) => c.get(hdr.cpu as usize).is_none_or(|&n| hdr.seq < n),
            None => true,
        };
        if counted {
            *self.received.entry(hdr.cpu).or_insert(0) += 1;
        }
        match raw {
            RawEvent::Span(e) => {
                self.prefix(hdr).span = Some(e.start_ns);
                return Ok(());
            }
            RawEvent::Data(e) => {
                let len = (e.len as usize).min(e.data.len());
                let hex: String = e.data[..len].iter().map(|b| format!("{b:02x}")).collect();
                self.prefix(hdr).data = Some(hex);
                return Ok(());
            }
            _ => {}
        }
        let mut out = std::mem::take(&mut self.out);
        // Lines held back whose time is past come first (they are older).
        self.sync.release(hdr.ts_ns, &mut out);
        let released = out.len();
        self.convert(raw, &mut out);
        if let Some(p) = self
            .prefixes
            .get_mut(hdr.cpu as usize)
            .and_then(Option::take)
            && p.seq + 1 == hdr.seq
            && p.tid == hdr.tid
        {
            for r in out.iter_mut().skip(released) {
                match r {
                    Record::Io(io) => {
                        io.start_ns = p.span.or(io.start_ns);
                        io.ext.data = p.data.or(io.ext.data.take());
                        break;
                    }
                    Record::Sync(s) => {
                        s.start_ns = p.span.or(s.start_ns);
                        break;
                    }
                    _ => {}
                }
            }
        }
        let mut result = Ok(());
        for r in &out {
            self.model.apply(r);
            if result.is_ok() {
                result = sink.record(r).and_then(|()| self.deep(r, sink));
            }
        }
        out.clear();
        self.out = out;
        result
    }

    /// For long runs (`agent --forget-after`): what the model, the pipe
    /// interleaving analysis and the socket tracker know of processes
    /// that exited, channels closed everywhere and sockets gone, once
    /// their last event is `keep_ns` old ([`Model::forget`]).
    pub fn forget(&mut self, now_ns: u64, keep_ns: u64) {
        let gone = self.model.forget(now_ns, keep_ns);
        self.analyses.pipes.forget(&gone);
        let channels = &self.model.channels;
        self.queues.forget(|id| channels.contains_key(id));
        let processes = &self.model.processes;
        self.sockets.forget(
            |pid| processes.get(&pid).is_some_and(|p| p.alive),
            now_ns,
            keep_ns,
        );
    }

    /// Write what is still held back (at the end of a recording).
    pub fn finish(&mut self, sink: &mut dyn Sink) -> io::Result<()> {
        self.containers_named(monotonic_ns(), sink)?;
        let mut out = Vec::new();
        self.sockets.flush(&mut out);
        self.sync.release(u64::MAX, &mut out);
        for r in out {
            self.push(r, sink)?;
        }
        Ok(())
    }

    /// The prefix `hdr` adds to: its CPU's, started afresh unless `hdr`
    /// follows it directly.
    fn prefix(&mut self, hdr: &EventHeader) -> &mut Prefix {
        let cpu = hdr.cpu as usize;
        if self.prefixes.len() <= cpu {
            self.prefixes.resize_with(cpu + 1, || None);
        }
        let slot = &mut self.prefixes[cpu];
        if slot
            .as_ref()
            .is_some_and(|p| p.seq + 1 != hdr.seq || p.tid != hdr.tid)
        {
            *slot = None;
        }
        let p = slot.get_or_insert_with(|| Prefix {
            tid: hdr.tid,
            seq: hdr.seq,
            span: None,
            data: None,
        });
        p.seq = hdr.seq;
        p
    }

    /// Where process `pid`, in cgroup `id`, runs. Its pid inside a
    /// container is read from /proc (once per fork or exec, and only in
    /// containers).
    fn origin(&mut self, id: u64, pid: u32) -> Origin {
        let mut o = self.cgroups.resolve(id);
        if o.container.is_some() {
            o.nspid = nspid_of(pid);
        }
        o
    }

    fn convert(&mut self, raw: &RawEvent, out: &mut Vec<Record>) {
        match raw {
            RawEvent::Io(_)
            | RawEvent::Pipe(_)
            | RawEvent::Open(_)
            | RawEvent::Dup(_)
            | RawEvent::Close(_)
            | RawEvent::FdFlags(_)
            | RawEvent::CloseRange(_)
            | RawEvent::Mkfifo(_) => fds::convert(&self.model, raw, out),
            RawEvent::SockIo(e) => self.sockets.sock(e, true, out),
            RawEvent::SockLife(e) => self.sockets.sock(e, false, out),
            RawEvent::Mq(e) => self.queues.mq(e, out),
            RawEvent::Msgq(e) => self.queues.msgq(e, out),
            RawEvent::Fork(e) => {
                out.push(Record::Process(ProcessLine {
                    ts_ns: e.hdr.ts_ns,
                    event: ProcessEvent::Fork,
                    pid: e.child_pid,
                    tid: e.child_tid,
                    comm: comm(&e.hdr),
                    ppid: Some(e.hdr.pid),
                    filename: None,
                    child: None,
                    exit_code: None,
                    signal: None,
                    origin: self.origin(e.cgroup, e.child_pid),
                }));
                let c = comm(&e.hdr);
                self.regions
                    .fork(&self.model, e.hdr.pid, e.child_pid, &c, e.hdr.ts_ns, out);
            }
            RawEvent::Mem(e) => self.regions.mem(&self.model, e, out),
            RawEvent::Lock(e) => self.sync.lock(&self.model, e, out),
            RawEvent::Fault(e) => self.sync.fault(&self.model, e, out),
            RawEvent::Uprobe(e) => self.sync.uprobe(&self.model, e, out),
            RawEvent::Exec(e) => {
                self.regions.process_gone(e.hdr.pid, true);
                out.push(Record::Process(ProcessLine {
                    ts_ns: e.hdr.ts_ns,
                    event: ProcessEvent::Exec,
                    pid: e.hdr.pid,
                    tid: e.hdr.tid,
                    comm: comm(&e.hdr),
                    ppid: None,
                    filename: Some(lossy(&e.filename)),
                    child: None,
                    exit_code: None,
                    signal: None,
                    origin: self.origin(e.cgroup, e.hdr.pid),
                }));
            }
            // Turned into findings by the race detector, not here.
            RawEvent::Collision(_)
            | RawEvent::WriteSample(_)
            | RawEvent::Span(_)
            | RawEvent::Data(_) => {}
            RawEvent::Wait(e) => out.push(ended(
                &e.hdr,
                ProcessEvent::Wait,
                Some(e.child_pid),
                e.status,
            )),
            RawEvent::Exit(e) => {
                self.regions.process_gone(e.hdr.pid, false);
                out.push(ended(&e.hdr, ProcessEvent::Exit, None, e.exit_code))
            }
        }
    }
}

/// An `exit` line, or a `wait` line for `child`: `status` is the wait
/// status (the process's own, or the child's).
fn ended(hdr: &EventHeader, event: ProcessEvent, child: Option<u32>, status: u32) -> Record {
    let (exit_code, signal) = wait_status(status);
    Record::Process(ProcessLine {
        ts_ns: hdr.ts_ns,
        event,
        pid: hdr.pid,
        tid: hdr.tid,
        comm: comm(hdr),
        ppid: None,
        filename: None,
        child,
        exit_code,
        signal,
        origin: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{as_bytes, decode};
    use crate::record::End;
    use ipcwatch_common::{FdEvent, FileId, IoEvent, PipeEvent, file_kind, kind, op, sc};

    const O_CLOEXEC: u32 = libc::O_CLOEXEC as u32;

    fn hdr(kind: u32, seq: u64, pid: u32) -> EventHeader {
        let mut comm = [0u8; 16];
        comm[..2].copy_from_slice(b"wc");
        EventHeader {
            kind,
            cpu: 0,
            seq,
            ts_ns: 10 + seq,
            pid,
            tid: pid,
            comm,
        }
    }

    const PIPE: FileId = FileId {
        ino: 777,
        dev: 0xd,
        kind: file_kind::PIPE,
        access: 1,
    };

    #[test]
    fn pipe_events_become_records_and_gaps_are_counted() {
        let mut c = Collector::new();
        let mut out: Vec<Record> = Vec::new();
        let pipe = PipeEvent {
            hdr: hdr(kind::PIPE, 0, 50),
            file: PIPE,
            fds: [3, 4],
            flags: O_CLOEXEC,
            syscall: sc::PIPE2,
        };
        c.ingest(&decode(as_bytes(&pipe)).unwrap(), &mut out)
            .unwrap();
        // seq 1 and 2 lost
        let io = IoEvent {
            hdr: hdr(kind::IO, 3, 50),
            file: PIPE,
            bytes: 100,
            fd: 3,
            op: op::READ,
            syscall: sc::READ,
            _pad: 0,
        };
        c.ingest(&decode(as_bytes(&io)).unwrap(), &mut out).unwrap();
        // CPU 0 numbered 5 events (0..=4), ipcwatch got 2.
        c.close_sequences(&[5]);
        assert_eq!(c.seq_gaps, 3);
        assert_eq!(c.events, 2);
        assert_eq!(out.len(), 3);
        let json = serde_json::to_string(&out[2]).unwrap();
        assert_eq!(
            json,
            r#"{"type":"io","ts_ns":13,"kind":"pipe","op":"read","channel":"pipe:[777]","pid":50,"tid":50,"comm":"wc","bytes":100,"fd":3,"syscall":"read"}"#
        );
        match &out[0] {
            Record::Channel(l) => {
                assert_eq!((l.fd, l.end, l.cloexec), (Some(3), Some(End::Read), true))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.model.channels["pipe:[777]"].bytes_read, 100);
    }

    #[test]
    fn payloads_pair_with_the_next_event_of_their_cpu_only() {
        use ipcwatch_common::{DataEvent, MAX_CAPTURE};
        let on = |kind, cpu: u32, seq, pid| EventHeader {
            cpu,
            ..hdr(kind, seq, pid)
        };
        let data = |cpu, seq, pid, byte| {
            let mut d = [0u8; MAX_CAPTURE];
            d[0] = byte;
            RawEvent::Data(DataEvent {
                hdr: on(kind::DATA, cpu, seq, pid),
                len: 1,
                _pad: 0,
                data: d,
            })
        };
        let io = |cpu, seq, pid| {
            RawEvent::Io(IoEvent {
                hdr: on(kind::IO, cpu, seq, pid),
                file: PIPE,
                bytes: 1,
                fd: 3,
                op: op::WRITE,
                syscall: sc::WRITE,
                _pad: 0,
            })
        };
        let mut c = Collector::new();
        let mut out: Vec<Record> = Vec::new();
        // CPU 0's payload, then an event of CPU 1 in between, then CPU 0's
        // IO event; CPU 1's payload whose IO event was lost (a gap).
        for ev in [
            data(0, 5, 50, 0xaa),
            data(1, 8, 60, 0xbb),
            io(1, 7, 61),
            io(0, 6, 50),
            io(1, 10, 60),
        ] {
            c.ingest(&ev, &mut out).unwrap();
        }
        let found: Vec<(u32, Option<String>)> = out
            .iter()
            .filter_map(|r| match r {
                Record::Io(io) => Some((io.pid, io.ext.data.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(found, vec![(61, None), (50, Some("aa".into())), (60, None)]);
    }

    #[test]
    fn close_range_closes_the_known_descriptors_in_range() {
        let mut c = Collector::new();
        let mut out: Vec<Record> = Vec::new();
        let pipe = PipeEvent {
            hdr: hdr(kind::PIPE, 0, 50),
            file: PIPE,
            fds: [3, 9],
            flags: 0,
            syscall: sc::PIPE2,
        };
        c.ingest(&RawEvent::Pipe(pipe), &mut out).unwrap();
        let cr = FdEvent {
            hdr: hdr(kind::CLOSE_RANGE, 1, 50),
            file: FileId::default(),
            fd: 3,
            arg: 5,
            flags: 0,
            syscall: sc::CLOSE_RANGE,
        };
        c.ingest(&RawEvent::CloseRange(cr), &mut out).unwrap();
        assert_eq!(out.len(), 3);
        assert!(c.model.fd(50, 3).is_none());
        assert!(c.model.fd(50, 9).is_some());
    }

    #[test]
    fn wait_status_splits_code_and_signal() {
        assert_eq!(wait_status(3 << 8), (Some(3), None));
        assert_eq!(wait_status(9), (None, Some(9)));
    }
}
