//! The live TUI's in-kernel io totals (`Options::aggregate`): the kernel
//! sums the bytes and calls of each pipe or FIFO descriptor of each
//! process, per direction, in the `IO_TOTALS` map instead of sending one
//! event per call. Each read of the map (the event loop's tick) becomes
//! one summed `io` line per entry that moved bytes since the last read
//! ([`IoExt::calls`]), which the model and the TUI's rates apply like the
//! lines they replace. Entries of closed descriptors are forgotten here
//! and removed from the map by the caller.

use foldhash::HashMap;

use ipcwatch_common::{FileId, IoKey, IoTotals};

use crate::ids::channel_id;
use crate::model::Model;
use crate::record::{ChannelKind, Io, IoExt, Record, Text};

use super::lines::op_of;

/// What one entry moved since the last read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delta {
    pub key: IoKey,
    pub bytes: u64,
    pub calls: u64,
    /// The last call's time (`bpf_ktime_get_ns`, as events' `ts_ns`).
    pub last_ns: u64,
}

/// The totals of the last read, per entry.
#[derive(Debug, Default)]
pub struct IoTotalsReader {
    last: HashMap<IoKey, IoTotals>,
}

impl IoTotalsReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Entries remembered (for tests and the map's bound).
    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }

    /// The entries of `now` (the map, summed over CPUs) that grew since
    /// the last read, by how much. An entry smaller than last time was
    /// made again after its removal: all of it is new.
    pub fn deltas(&mut self, now: &[(IoKey, IoTotals)]) -> Vec<Delta> {
        let mut out = Vec::new();
        for (key, t) in now {
            let before = self.last.insert(*key, *t).unwrap_or_default();
            let (bytes, calls) = if t.ops < before.ops || t.bytes < before.bytes {
                (t.bytes, t.ops)
            } else {
                (t.bytes - before.bytes, t.ops - before.ops)
            };
            if calls > 0 || bytes > 0 {
                out.push(Delta {
                    key: *key,
                    bytes,
                    calls,
                    last_ns: t.last_ns,
                });
            }
        }
        out
    }

    /// Entries to remove from the map: unchanged in `changed`'s read and
    /// no longer open in `model` (the process exited, or closed the
    /// descriptor or reused its number). They are forgotten here; the
    /// caller removes them from the map. Unchanged first: a descriptor the
    /// model never saw opened keeps its entry while it is in use.
    pub fn closed(&mut self, model: &Model, changed: &[Delta]) -> Vec<IoKey> {
        let mut gone = Vec::new();
        for key in self.last.keys() {
            if changed.iter().any(|d| d.key == *key) {
                continue;
            }
            let open = channel_of(key).is_some_and(|(_, channel)| {
                model.processes.get(&key.pid).is_some_and(|p| {
                    p.alive && p.fds.get(&key.fd).is_some_and(|f| f.channel == channel)
                })
            });
            if !open {
                gone.push(*key);
            }
        }
        for key in &gone {
            self.last.remove(key);
        }
        gone
    }
}

/// The channel of an entry.
fn channel_of(key: &IoKey) -> Option<(ChannelKind, Text)> {
    channel_id(&FileId {
        ino: key.ino,
        dev: key.dev,
        kind: key.kind,
        access: 0,
    })
}

/// The summed `io` line of a delta (`comm`: the process's name in the
/// model, if it knows it).
pub fn line(d: &Delta, model: &Model) -> Option<Record> {
    let (kind, channel) = channel_of(&d.key)?;
    let comm = model
        .processes
        .get(&d.key.pid)
        .map(|p| p.comm.clone())
        .unwrap_or_default();
    Some(Record::Io(Io {
        ts_ns: d.last_ns,
        kind,
        op: op_of(d.key.op as u32),
        channel,
        pid: d.key.pid,
        tid: d.key.pid,
        comm,
        bytes: d.bytes,
        fd: d.key.fd,
        syscall: Text::default(),
        start_ns: None,
        ext: IoExt {
            calls: Some(d.calls),
            ..IoExt::default()
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{ChannelEvent, ChannelLine, End, Op};
    use ipcwatch_common::{file_kind, op};

    fn key(pid: u32, fd: i32, dir: u32) -> IoKey {
        IoKey {
            ino: 77,
            dev: 0,
            kind: file_kind::PIPE,
            op: dir as u16,
            pid,
            fd,
        }
    }

    fn totals(bytes: u64, ops: u64, last_ns: u64) -> IoTotals {
        IoTotals {
            bytes,
            ops,
            last_ns,
        }
    }

    #[test]
    fn each_read_gives_what_moved_since_the_last_one() {
        let mut r = IoTotalsReader::new();
        let w = key(10, 4, op::WRITE);
        let rd = key(11, 3, op::READ);
        let d = r.deltas(&[(w, totals(1000, 1, 5))]);
        assert_eq!(
            d,
            vec![Delta {
                key: w,
                bytes: 1000,
                calls: 1,
                last_ns: 5
            }]
        );
        // Unchanged: nothing; the reader's first bytes: all of them.
        let d = r.deltas(&[(w, totals(1000, 1, 5)), (rd, totals(700, 2, 8))]);
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].key, d[0].bytes, d[0].calls), (rd, 700, 2));
        let d = r.deltas(&[(w, totals(3000, 3, 9)), (rd, totals(3000, 3, 9))]);
        let sums: Vec<_> = d.iter().map(|d| (d.bytes, d.calls)).collect();
        assert_eq!(sums, vec![(2000, 2), (2300, 1)]);
        // Made again after a removal the reader did not see: all new.
        let d = r.deltas(&[(w, totals(10, 1, 12))]);
        assert_eq!((d[0].bytes, d[0].calls), (10, 1));
    }

    fn open_line(pid: u32, fd: i32) -> Record {
        Record::Channel(ChannelLine {
            ts_ns: 1,
            event: ChannelEvent::Create,
            kind: ChannelKind::Pipe,
            channel: "pipe:[77]".into(),
            pid,
            tid: pid,
            comm: "w".into(),
            fd: Some(fd),
            end: Some(End::Write),
            old_fd: None,
            cloexec: false,
            path: None,
            syscall: None,
            ext: Box::default(),
        })
    }

    #[test]
    fn closed_descriptors_go_once_idle_open_ones_stay() {
        let mut model = Model::default();
        model.apply(&open_line(10, 4));
        let mut r = IoTotalsReader::new();
        let w = key(10, 4, op::WRITE);
        let unknown = key(12, 9, op::READ);
        let d = r.deltas(&[(w, totals(5, 1, 1)), (unknown, totals(5, 1, 1))]);
        // Changed in this read: kept, even the one the model never saw.
        assert!(r.closed(&model, &d).is_empty());
        let d = r.deltas(&[(w, totals(5, 1, 1)), (unknown, totals(5, 1, 1))]);
        assert_eq!(r.closed(&model, &d), vec![unknown]);
        assert_eq!(r.len(), 1);
        // Closed: removed once idle.
        let mut close = open_line(10, 4);
        if let Record::Channel(c) = &mut close {
            c.event = ChannelEvent::Close;
        }
        model.apply(&close);
        let d = r.deltas(&[(w, totals(5, 1, 1))]);
        assert_eq!(r.closed(&model, &d), vec![w]);
        assert!(r.is_empty());
    }

    #[test]
    fn summed_lines_count_every_call_in_the_model() {
        let mut model = Model::default();
        model.apply(&open_line(10, 4));
        let d = Delta {
            key: key(10, 4, op::WRITE),
            bytes: 3000,
            calls: 3,
            last_ns: 40,
        };
        let line = line(&d, &model).expect("a pipe");
        let Record::Io(io) = &line else {
            panic!("not io: {line:?}")
        };
        assert_eq!((io.op, io.comm.as_str(), io.calls()), (Op::Write, "w", 3));
        model.apply(&line);
        let c = &model.channels["pipe:[77]"];
        assert_eq!((c.bytes_written, c.writes), (3000, 3));
        assert_eq!(c.endpoints[&10].writes, 3);
        // Read after the close: counted, and the descriptor stays closed
        // (a line of one call would make an unknown descriptor known).
        let mut close = open_line(10, 4);
        if let Record::Channel(c) = &mut close {
            c.event = ChannelEvent::Close;
        }
        model.apply(&close);
        model.apply(&line);
        assert_eq!(model.channels["pipe:[77]"].writes, 6);
        assert!(!model.processes[&10].fds.contains_key(&4));
    }
}
