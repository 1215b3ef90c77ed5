//! `ipcwatch export --format perfetto`: a recorded trace in Perfetto's
//! trace format (protobuf, `perfetto.protos.Trace`), for ui.perfetto.dev
//! or any reader of Perfetto traces.
//!
//! - a track per process, and under it one per thread;
//! - a slice per read and write (`io` lines), futex wait and lock acquire
//!   (`sync` lines), on the thread's track;
//! - a flow from each write to the read that takes its first byte (pipes,
//!   FIFOs and queues in order; a socket's reader takes what the other
//!   processes wrote);
//! - an instant per write fault, and for each race an instant on each of
//!   its two writers' tracks, linked by a flow.
//!
//! Times are the trace's own (CLOCK_MONOTONIC, ns). A trace holds when a
//! call returned; when it started (`start_ns`) for pipe writes over
//! PIPE_BUF, and for every read, write, send, receive and lock call when
//! it was recorded with `record --durations`. Slices without a start have
//! no length.
//!
//! The messages below are the subset of Perfetto's
//! `protos/perfetto/trace/perfetto_trace.proto` that ipcwatch writes, with
//! its field numbers and types; the test decodes the output with the
//! official descriptors (`ipcwatch/tests/pictures.rs`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::BufRead;

use prost::Message;

use crate::record::{ChannelKind, Op, Record, SyncEvent};
use crate::trace::{Replay, TraceError};

/// `perfetto.protos.Trace`.
#[derive(Clone, PartialEq, Message)]
pub struct Trace {
    #[prost(message, repeated, tag = "1")]
    pub packet: Vec<TracePacket>,
}

/// `perfetto.protos.TracePacket` (the fields ipcwatch writes).
#[derive(Clone, PartialEq, Message)]
pub struct TracePacket {
    #[prost(uint64, optional, tag = "8")]
    pub timestamp: Option<u64>,
    #[prost(uint32, optional, tag = "10")]
    pub trusted_packet_sequence_id: Option<u32>,
    #[prost(message, optional, tag = "11")]
    pub track_event: Option<TrackEvent>,
    #[prost(uint32, optional, tag = "13")]
    pub sequence_flags: Option<u32>,
    #[prost(message, optional, tag = "60")]
    pub track_descriptor: Option<TrackDescriptor>,
}

/// `perfetto.protos.TrackDescriptor`.
#[derive(Clone, PartialEq, Message)]
pub struct TrackDescriptor {
    #[prost(uint64, optional, tag = "1")]
    pub uuid: Option<u64>,
    #[prost(string, optional, tag = "2")]
    pub name: Option<String>,
    #[prost(message, optional, tag = "3")]
    pub process: Option<ProcessDescriptor>,
    #[prost(message, optional, tag = "4")]
    pub thread: Option<ThreadDescriptor>,
    #[prost(uint64, optional, tag = "5")]
    pub parent_uuid: Option<u64>,
}

/// `perfetto.protos.ProcessDescriptor`.
#[derive(Clone, PartialEq, Message)]
pub struct ProcessDescriptor {
    #[prost(int32, optional, tag = "1")]
    pub pid: Option<i32>,
    #[prost(string, optional, tag = "6")]
    pub process_name: Option<String>,
}

/// `perfetto.protos.ThreadDescriptor`.
#[derive(Clone, PartialEq, Message)]
pub struct ThreadDescriptor {
    #[prost(int32, optional, tag = "1")]
    pub pid: Option<i32>,
    #[prost(int64, optional, tag = "2")]
    pub tid: Option<i64>,
    #[prost(string, optional, tag = "5")]
    pub thread_name: Option<String>,
}

/// `perfetto.protos.TrackEvent` (the fields ipcwatch writes).
#[derive(Clone, PartialEq, Message)]
pub struct TrackEvent {
    #[prost(message, repeated, tag = "4")]
    pub debug_annotations: Vec<DebugAnnotation>,
    /// [`SLICE_BEGIN`], [`SLICE_END`] or [`INSTANT`].
    #[prost(int32, optional, tag = "9")]
    pub r#type: Option<i32>,
    #[prost(uint64, optional, tag = "11")]
    pub track_uuid: Option<u64>,
    #[prost(string, repeated, tag = "22")]
    pub categories: Vec<String>,
    #[prost(string, optional, tag = "23")]
    pub name: Option<String>,
    #[prost(fixed64, repeated, packed = "false", tag = "47")]
    pub flow_ids: Vec<u64>,
    #[prost(fixed64, repeated, packed = "false", tag = "48")]
    pub terminating_flow_ids: Vec<u64>,
}

/// `perfetto.protos.DebugAnnotation` (names and the values ipcwatch uses).
#[derive(Clone, PartialEq, Message)]
pub struct DebugAnnotation {
    #[prost(uint64, optional, tag = "3")]
    pub uint_value: Option<u64>,
    #[prost(string, optional, tag = "6")]
    pub string_value: Option<String>,
    #[prost(string, optional, tag = "10")]
    pub name: Option<String>,
}

/// `TrackEvent.Type`.
pub const SLICE_BEGIN: i32 = 1;
pub const SLICE_END: i32 = 2;
pub const INSTANT: i32 = 3;
/// `TracePacket.SequenceFlags.SEQ_INCREMENTAL_STATE_CLEARED`.
const SEQ_INCREMENTAL_STATE_CLEARED: u32 = 1;
/// The one packet sequence ipcwatch writes.
const SEQUENCE: u32 = 1;

/// What an export holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    pub processes: usize,
    pub threads: usize,
    pub slices: usize,
    pub flows: usize,
    pub instants: usize,
    pub races: usize,
}

fn text(name: &str, value: impl Into<String>) -> DebugAnnotation {
    DebugAnnotation {
        name: Some(name.into()),
        string_value: Some(value.into()),
        uint_value: None,
    }
}

fn uint(name: &str, value: u64) -> DebugAnnotation {
    DebugAnnotation {
        name: Some(name.into()),
        uint_value: Some(value),
        string_value: None,
    }
}

/// Writes not read to their end, oldest first: (flow id, bytes left,
/// first byte taken).
type Queue = VecDeque<(u64, u64, bool)>;

#[derive(Default)]
struct Builder {
    /// (ts, order) -> event, sorted at the end.
    events: Vec<(u64, u64, TrackEvent)>,
    /// pid -> its track's uuid; (pid, tid) -> the thread's.
    processes: BTreeMap<u32, u64>,
    threads: BTreeMap<(u32, u32), u64>,
    /// Latest names.
    comms: HashMap<u32, String>,
    thread_comms: HashMap<(u32, u32), String>,
    next_uuid: u64,
    next_flow: u64,
    /// Pipes, FIFOs, queues: one queue per channel; sockets: per writer.
    queues: HashMap<(String, Option<u32>), Queue>,
    counts: Counts,
}

impl Builder {
    fn name(&mut self, pid: u32, tid: u32, comm: &str) {
        if comm.is_empty() {
            return;
        }
        if pid == tid {
            self.comms.insert(pid, comm.to_string());
        }
        self.thread_comms.insert((pid, tid), comm.to_string());
    }

    /// The thread's track (and its process's), made on first use.
    fn track(&mut self, pid: u32, tid: u32) -> u64 {
        if !self.processes.contains_key(&pid) {
            self.next_uuid += 1;
            self.processes.insert(pid, self.next_uuid);
        }
        *self.threads.entry((pid, tid)).or_insert_with(|| {
            self.next_uuid += 1;
            self.next_uuid
        })
    }

    fn push(&mut self, ts: u64, ev: TrackEvent) {
        let order = self.events.len() as u64;
        self.events.push((ts, order, ev));
    }

    #[allow(clippy::too_many_arguments)]
    fn slice(
        &mut self,
        track: u64,
        start: u64,
        end: u64,
        name: String,
        category: &str,
        args: Vec<DebugAnnotation>,
        flow_ids: Vec<u64>,
        terminating: Vec<u64>,
    ) {
        self.counts.slices += 1;
        self.push(
            start,
            TrackEvent {
                debug_annotations: args,
                r#type: Some(SLICE_BEGIN),
                track_uuid: Some(track),
                categories: vec![category.into()],
                name: Some(name),
                flow_ids,
                terminating_flow_ids: terminating,
            },
        );
        self.push(
            end.max(start),
            TrackEvent {
                r#type: Some(SLICE_END),
                track_uuid: Some(track),
                ..Default::default()
            },
        );
    }

    fn instant(
        &mut self,
        track: u64,
        ts: u64,
        name: String,
        category: &str,
        args: Vec<DebugAnnotation>,
        flow: (Vec<u64>, Vec<u64>),
    ) {
        self.counts.instants += 1;
        self.push(
            ts,
            TrackEvent {
                debug_annotations: args,
                r#type: Some(INSTANT),
                track_uuid: Some(track),
                categories: vec![category.into()],
                name: Some(name),
                flow_ids: flow.0,
                terminating_flow_ids: flow.1,
            },
        );
    }

    fn flow_id(&mut self) -> u64 {
        self.next_flow += 1;
        self.counts.flows += 1;
        self.next_flow
    }

    fn apply(&mut self, r: &Record) {
        match r {
            Record::Io(io) => {
                self.name(io.pid, io.tid, &io.comm);
                let track = self.track(io.pid, io.tid);
                let stream = matches!(
                    io.kind,
                    ChannelKind::Unix | ChannelKind::Tcp | ChannelKind::Udp
                );
                let channel = io.channel.to_string();
                let (mut flows, mut ends) = (Vec::new(), Vec::new());
                match io.op {
                    Op::Write if io.bytes > 0 => {
                        let id = self.flow_id();
                        flows.push(id);
                        let key = (channel.clone(), stream.then_some(io.pid));
                        self.queues
                            .entry(key)
                            .or_default()
                            .push_back((id, io.bytes, false));
                    }
                    Op::Read => ends = self.take(&channel, stream, io.pid, io.bytes),
                    Op::Write => {}
                }
                let op = match io.op {
                    Op::Write => "write",
                    Op::Read => "read",
                };
                self.slice(
                    track,
                    io.start_ns.unwrap_or(io.ts_ns),
                    io.ts_ns,
                    format!("{op} {channel}"),
                    io.kind.as_str(),
                    vec![
                        text("channel", channel.clone()),
                        text("syscall", io.syscall.to_string()),
                        uint("bytes", io.bytes),
                        uint("fd", io.fd.max(0) as u64),
                    ],
                    flows,
                    ends,
                );
            }
            Record::Sync(s) if matches!(s.event, SyncEvent::Wait | SyncEvent::Acquire) => {
                self.name(s.pid, s.tid, &s.comm);
                let track = self.track(s.pid, s.tid);
                let what = if s.event == SyncEvent::Wait {
                    "wait"
                } else {
                    "acquire"
                };
                let mut args = vec![
                    text("lock", s.lock.to_string()),
                    text("primitive", s.primitive.to_string()),
                    text("ok", if s.ok { "true" } else { "false" }),
                ];
                if let Some(d) = &s.detail {
                    args.push(text("detail", d.to_string()));
                }
                self.slice(
                    track,
                    s.start_ns.unwrap_or(s.ts_ns).min(s.ts_ns),
                    s.ts_ns,
                    format!("{} {what} {}", s.primitive, s.lock),
                    "lock",
                    args,
                    vec![],
                    vec![],
                );
            }
            Record::Sync(s) => self.name(s.pid, s.tid, &s.comm),
            Record::Fault(f) => {
                self.name(f.pid, f.tid, &f.comm);
                let track = self.track(f.pid, f.tid);
                self.instant(
                    track,
                    f.ts_ns,
                    format!("write fault {}+{:#x}", f.region, f.offset),
                    "fault",
                    vec![
                        text("region", f.region.to_string()),
                        uint("offset", f.offset),
                        uint("ip", f.ip),
                    ],
                    (vec![], vec![]),
                );
            }
            Record::Race(race) => {
                let [a, b] = match race.accesses.as_slice() {
                    [a, b, ..] => [a, b],
                    _ => return,
                };
                self.counts.races += 1;
                let id = self.flow_id();
                let place = race
                    .region
                    .as_deref()
                    .or(race.channel.as_deref())
                    .unwrap_or("?");
                let name = format!(
                    "race {place}{}",
                    race.offset.map(|o| format!("+{o:#x}")).unwrap_or_default()
                );
                for (x, other, flow) in [(a, b, (vec![id], vec![])), (b, a, (vec![], vec![id]))] {
                    self.name(x.pid, x.tid, &x.comm);
                    let track = self.track(x.pid, x.tid);
                    let at = match (&x.function, &x.file, x.line) {
                        (Some(f), Some(file), Some(line)) => format!("{f} ({file}:{line})"),
                        (Some(f), _, _) => f.clone(),
                        _ => format!("{:#x}", x.ip),
                    };
                    self.instant(
                        track,
                        x.ts_ns,
                        name.clone(),
                        "race",
                        vec![
                            text("kind", race.kind.to_string()),
                            text("at", at),
                            uint("ip", x.ip),
                            uint("other_pid", other.pid.into()),
                            uint("other_tid", other.tid.into()),
                            text("evidence", race.evidence.to_string()),
                            text("explanation", race.explanation.clone()),
                        ],
                        flow,
                    );
                }
            }
            Record::Channel(c) => self.name(c.pid, c.tid, &c.comm),
            Record::Process(p) => self.name(p.pid, p.tid, &p.comm),
            Record::Mapping(m) => self.name(m.pid, m.pid, &m.comm),
            _ => {}
        }
    }

    /// The flows a read of `bytes` ends: the writes whose first byte it
    /// takes. A socket's reader takes from the other processes' writes
    /// (its own when no other wrote).
    fn take(&mut self, channel: &str, stream: bool, reader: u32, mut bytes: u64) -> Vec<u64> {
        let key = if stream {
            let others = self
                .queues
                .iter()
                .filter(|((c, w), q)| c == channel && *w != Some(reader) && !q.is_empty())
                .filter_map(|((c, w), q)| q.front().map(|f| (f.0, (c.clone(), *w))))
                .min();
            match others {
                Some((_, key)) => key,
                None => (channel.to_string(), Some(reader)),
            }
        } else {
            (channel.to_string(), None)
        };
        let Some(q) = self.queues.get_mut(&key) else {
            return vec![];
        };
        let mut ends = Vec::new();
        while bytes > 0 {
            let Some(front) = q.front_mut() else { break };
            // Only a write's first byte ends its flow: a read that takes
            // the rest of a write does not end it again.
            if !front.2 {
                front.2 = true;
                ends.push(front.0);
            }
            let n = bytes.min(front.1);
            front.1 -= n;
            bytes -= n;
            if front.1 == 0 {
                q.pop_front();
            }
        }
        ends
    }

    fn finish(mut self) -> (Trace, Counts) {
        self.counts.processes = self.processes.len();
        self.counts.threads = self.threads.len();
        let mut packets = Vec::with_capacity(self.events.len() + self.threads.len() * 2);
        for (pid, uuid) in &self.processes {
            let name = self.comms.get(pid).cloned();
            packets.push(TracePacket {
                trusted_packet_sequence_id: Some(SEQUENCE),
                track_descriptor: Some(TrackDescriptor {
                    uuid: Some(*uuid),
                    process: Some(ProcessDescriptor {
                        pid: Some(*pid as i32),
                        process_name: name,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        for ((pid, tid), uuid) in &self.threads {
            packets.push(TracePacket {
                trusted_packet_sequence_id: Some(SEQUENCE),
                track_descriptor: Some(TrackDescriptor {
                    uuid: Some(*uuid),
                    parent_uuid: self.processes.get(pid).copied(),
                    thread: Some(ThreadDescriptor {
                        pid: Some(*pid as i32),
                        tid: Some((*tid).into()),
                        thread_name: self.thread_comms.get(&(*pid, *tid)).cloned(),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        if let Some(first) = packets.first_mut() {
            first.sequence_flags = Some(SEQ_INCREMENTAL_STATE_CLEARED);
        }
        self.events.sort_by_key(|(ts, order, _)| (*ts, *order));
        for (ts, _, ev) in self.events {
            packets.push(TracePacket {
                timestamp: Some(ts),
                trusted_packet_sequence_id: Some(SEQUENCE),
                track_event: Some(ev),
                ..Default::default()
            });
        }
        (Trace { packet: packets }, self.counts)
    }
}

/// Export a whole trace (with the findings the replay recomputes). On a
/// bad line, the error names it and nothing is returned.
pub fn export<R: BufRead>(input: R) -> Result<(Vec<u8>, Counts), TraceError> {
    let mut replay = Replay::new(input);
    let mut b = Builder::default();
    while let Some(r) = replay.next_record()? {
        b.apply(&r);
    }
    let (trace, counts) = b.finish();
    Ok((trace.encode_to_vec(), counts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::test_header;

    fn io(ts: u64, kind: &str, ch: &str, op: &str, pid: u32, bytes: u64) -> String {
        format!(
            r#"{{"type":"io","ts_ns":{ts},"kind":"{kind}","op":"{op}","channel":"{ch}","pid":{pid},"tid":{pid},"comm":"p{pid}","bytes":{bytes},"fd":3,"syscall":"{op}"}}"#
        )
    }

    fn decode(lines: &[String]) -> (Trace, Counts) {
        let text = format!("{}\n{}\n", test_header(1), lines.join("\n"));
        let (bytes, counts) = export(text.as_bytes()).unwrap();
        (Trace::decode(bytes.as_slice()).unwrap(), counts)
    }

    fn begins(t: &Trace) -> Vec<&TrackEvent> {
        t.packet
            .iter()
            .filter_map(|p| p.track_event.as_ref())
            .filter(|e| e.r#type == Some(SLICE_BEGIN))
            .collect()
    }

    #[test]
    fn each_write_flows_to_the_read_that_takes_its_first_byte() {
        let (t, c) = decode(&[
            io(10, "pipe", "pipe:[1]", "write", 1, 100),
            io(11, "pipe", "pipe:[1]", "write", 1, 100),
            io(12, "pipe", "pipe:[1]", "read", 2, 150),
            io(13, "pipe", "pipe:[1]", "read", 2, 50),
            // A socket: each side reads what the other wrote.
            io(20, "unix", "unix:[5-6]", "write", 1, 10),
            io(21, "unix", "unix:[5-6]", "write", 2, 20),
            io(22, "unix", "unix:[5-6]", "read", 1, 20),
            io(23, "unix", "unix:[5-6]", "read", 2, 10),
        ]);
        assert_eq!((c.processes, c.threads, c.slices, c.flows), (2, 2, 8, 4));
        let b = begins(&t);
        assert_eq!(b[0].flow_ids, vec![1]);
        assert_eq!(b[1].flow_ids, vec![2]);
        assert_eq!(b[2].terminating_flow_ids, vec![1, 2]);
        assert!(b[3].terminating_flow_ids.is_empty());
        assert_eq!(b[6].terminating_flow_ids, vec![4]);
        assert_eq!(b[7].terminating_flow_ids, vec![3]);
        assert_eq!(b[0].name.as_deref(), Some("write pipe:[1]"));
        // Descriptors first: two processes, two threads under them.
        let tracks: Vec<&TrackDescriptor> = t
            .packet
            .iter()
            .filter_map(|p| p.track_descriptor.as_ref())
            .collect();
        assert_eq!(tracks.len(), 4);
        assert!(t.packet[..4].iter().all(|p| p.track_descriptor.is_some()));
        assert_eq!(tracks[2].parent_uuid, tracks[0].uuid);
        assert_eq!(
            tracks[2].thread.as_ref().unwrap().thread_name.as_deref(),
            Some("p1")
        );
    }

    /// Packets of slice begins and ends, as (timestamp, type).
    fn edges(t: &Trace) -> Vec<(u64, i32)> {
        t.packet
            .iter()
            .filter_map(|p| Some((p.timestamp?, p.track_event.as_ref()?.r#type?)))
            .filter(|(_, ty)| *ty == SLICE_BEGIN || *ty == SLICE_END)
            .collect()
    }

    #[test]
    fn calls_recorded_with_their_start_are_slices_that_long() {
        // A read that blocked from 100 to 400, a futex wait from 500 to
        // 900 (`record --durations`), and a lock call without a start.
        let sync = |ts: u64, start: &str| {
            format!(
                r#"{{"type":"sync","ts_ns":{ts},"event":"wait","lock":"sysv:1+0","pid":2,"tid":2,"comm":"p2","primitive":"futex","ok":true{start}}}"#
            )
        };
        let read = io(400, "pipe", "pipe:[1]", "read", 2, 10)
            .replace(r#""ts_ns":400"#, r#""ts_ns":400,"start_ns":100"#);
        let (t, c) = decode(&[read, sync(900, r#","start_ns":500"#), sync(1000, "")]);
        assert_eq!(c.slices, 3);
        assert_eq!(
            edges(&t),
            vec![
                (100, SLICE_BEGIN),
                (400, SLICE_END),
                (500, SLICE_BEGIN),
                (900, SLICE_END),
                (1000, SLICE_BEGIN),
                (1000, SLICE_END),
            ]
        );
    }

    #[test]
    fn a_bad_line_is_an_error_naming_it() {
        let text = format!("{}\n{{broken\n", test_header(1));
        let e = export(text.as_bytes()).unwrap_err();
        assert!(e.to_string().starts_with("line 2"), "{e}");
    }
}
