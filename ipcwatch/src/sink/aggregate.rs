//! Output sized for weeks (`ipcwatch agent`): a sink in front of another
//! that passes findings and lifecycle lines on as they come, and folds the
//! per-event lines (`io`, `fault`, `write_sample`, `sync` other than
//! `init`) into one `aggregate` line per channel, region and lock each
//! interval. The model upstream still sees every event (the summary and
//! the race detector are unchanged): only what is written shrinks.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io;
use std::time::Duration;

use super::Sink;
use crate::host::monotonic_ns;
use crate::record::{
    AGGREGATE_PIDS, AggregateLine, ChannelTotals, LockTotals, Op, Record, RegionTotals, SyncEvent,
    SyncLine, Text, Totals, Unwritten,
};

/// Warning messages remembered to write each once (forgotten all at once
/// when this many).
const WARNINGS_KEPT: usize = 4096;

/// What the aggregating sink is asked.
#[derive(Debug, Clone, Copy)]
pub struct AggregateOptions {
    /// How often the totals are written.
    pub interval: Duration,
    /// Also pass every per-event line on (`--events`).
    pub events: bool,
}

/// Totals of the current interval, by id (written in id order).
#[derive(Default)]
struct Interval {
    channels: BTreeMap<Text, (ChannelTotals, BTreeSet<u32>, BTreeSet<u32>)>,
    regions: BTreeMap<Text, (RegionTotals, BTreeSet<u32>)>,
    locks: BTreeMap<Text, (LockTotals, BTreeSet<u32>)>,
    unwritten: Unwritten,
}

/// The sink: per-event lines into [`Interval`], the rest to `inner`.
pub struct Aggregating<S: Sink> {
    inner: S,
    opts: AggregateOptions,
    /// CLOCK_MONOTONIC when the current interval began, ns.
    start_ns: u64,
    now: Interval,
    /// The last `heat` line of the interval (written with the totals: the
    /// detector makes one every 2 s when its counts move).
    heat: Option<Record>,
    /// Warnings already written.
    warned: HashSet<String>,
}

/// An `init` of a lock that other processes cannot use: outside shared
/// memory and not process-shared.
fn private_init(s: &SyncLine) -> bool {
    s.event == SyncEvent::Init
        && s.region.is_none()
        && !s.detail.as_deref().is_some_and(|d| d.contains("pshared"))
}

fn pids(set: BTreeSet<u32>) -> Vec<u32> {
    set.into_iter().take(AGGREGATE_PIDS).collect()
}

impl<S: Sink> Aggregating<S> {
    pub fn new(inner: S, opts: AggregateOptions) -> Self {
        Aggregating {
            inner,
            opts,
            start_ns: monotonic_ns(),
            now: Interval::default(),
            heat: None,
            warned: HashSet::new(),
        }
    }

    /// Fold a per-event line in; false for every other line.
    fn fold(&mut self, record: &Record) -> bool {
        match record {
            Record::Io(io) => {
                let (t, writers, readers) = self
                    .now
                    .channels
                    .entry(io.channel.clone())
                    .or_insert_with(|| {
                        let t = ChannelTotals {
                            channel: io.channel.clone(),
                            kind: io.kind,
                            bytes_written: 0,
                            bytes_read: 0,
                            writes: 0,
                            reads: 0,
                            writers: Vec::new(),
                            readers: Vec::new(),
                        };
                        (t, BTreeSet::new(), BTreeSet::new())
                    });
                match io.op {
                    Op::Write => {
                        t.bytes_written += io.bytes;
                        t.writes += 1;
                        writers.insert(io.pid);
                    }
                    Op::Read => {
                        t.bytes_read += io.bytes;
                        t.reads += 1;
                        readers.insert(io.pid);
                    }
                }
            }
            Record::Fault(f) => {
                let (t, writers) = self.region(&f.region);
                t.faults += 1;
                writers.insert(f.pid);
            }
            Record::WriteSample(w) => {
                let (t, writers) = self.region(&w.region);
                t.samples += 1;
                writers.insert(w.pid);
            }
            Record::Sync(s) if private_init(s) => self.now.unwritten.private_lock_inits += 1,
            Record::Warning(w) => {
                if self.warned.len() >= WARNINGS_KEPT {
                    self.warned.clear();
                }
                if self.warned.insert(w.message.clone()) {
                    return false;
                }
                self.now.unwritten.repeated_warnings += 1;
            }
            Record::Sync(s) if s.event != SyncEvent::Init => {
                let (t, users) = self.now.locks.entry(s.lock.clone()).or_insert_with(|| {
                    let t = LockTotals {
                        lock: s.lock.clone(),
                        primitive: s.primitive.clone(),
                        ..LockTotals::default()
                    };
                    (t, BTreeSet::new())
                });
                match s.event {
                    SyncEvent::Acquire => t.acquires += 1,
                    SyncEvent::Release => t.releases += 1,
                    SyncEvent::Wait => t.waits += 1,
                    SyncEvent::Wake => t.wakes += 1,
                    SyncEvent::Init => {}
                }
                t.failed += u64::from(!s.ok);
                users.insert(s.pid);
            }
            _ => return false,
        }
        true
    }

    fn region(&mut self, id: &Text) -> &mut (RegionTotals, BTreeSet<u32>) {
        self.now.regions.entry(id.clone()).or_insert_with(|| {
            let t = RegionTotals {
                region: id.clone(),
                ..RegionTotals::default()
            };
            (t, BTreeSet::new())
        })
    }

    /// Write the interval's totals (and its last `heat` line), and begin
    /// the next interval.
    fn write_totals(&mut self) -> io::Result<()> {
        let end = monotonic_ns();
        let start_ns = std::mem::replace(&mut self.start_ns, end);
        let Interval {
            channels,
            regions,
            locks,
            unwritten,
        } = std::mem::take(&mut self.now);
        let line = |totals| {
            Record::Aggregate(AggregateLine {
                ts_ns: end,
                start_ns,
                totals,
            })
        };
        for (_, (mut t, w, r)) in channels {
            t.writers = pids(w);
            t.readers = pids(r);
            self.inner.record(&line(Totals::Channel(t)))?;
        }
        for (_, (mut t, w)) in regions {
            t.writers = pids(w);
            self.inner.record(&line(Totals::Region(t)))?;
        }
        for (_, (mut t, p)) in locks {
            t.pids = pids(p);
            self.inner.record(&line(Totals::Lock(t)))?;
        }
        if unwritten != Unwritten::default() {
            self.inner.record(&line(Totals::Unwritten(unwritten)))?;
        }
        if let Some(heat) = self.heat.take() {
            self.inner.record(&heat)?;
        }
        Ok(())
    }
}

impl<S: Sink> Sink for Aggregating<S> {
    fn record(&mut self, record: &Record) -> io::Result<()> {
        match record {
            // The summary ends the last interval.
            Record::Summary(_) => {
                self.write_totals()?;
                self.inner.record(record)
            }
            Record::Heat(_) if !self.opts.events => {
                self.heat = Some(record.clone());
                Ok(())
            }
            _ => {
                if self.fold(record) && !self.opts.events {
                    return Ok(());
                }
                self.inner.record(record)
            }
        }
    }

    /// Called a few times a second: the totals once the interval is over.
    fn flush(&mut self) -> io::Result<()> {
        let due = self.opts.interval.as_nanos() as u64;
        if monotonic_ns().saturating_sub(self.start_ns) >= due {
            self.write_totals()?;
        }
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{ChannelKind, FaultLine, Io, IoExt, Summary, SyncLine, Warning};

    fn io(pid: u32, op: Op, bytes: u64) -> Record {
        Record::Io(Io {
            ts_ns: 1,
            kind: ChannelKind::Pipe,
            op,
            channel: "pipe:[7]".into(),
            pid,
            tid: pid,
            comm: "w".into(),
            bytes,
            fd: 3,
            syscall: "write".into(),
            start_ns: None,
            ext: IoExt::default(),
        })
    }

    fn sync(event: SyncEvent, ok: bool) -> Record {
        Record::Sync(SyncLine {
            ts_ns: 1,
            event,
            lock: "sysv:1+0".into(),
            pid: 9,
            tid: 9,
            comm: "l".into(),
            primitive: "futex".into(),
            ok,
            region: None,
            offset: None,
            detail: (event == SyncEvent::Init).then(|| "init pshared".into()),
            start_ns: None,
        })
    }

    fn summary() -> Record {
        Record::Summary(Summary {
            ts_ns: 2,
            duration_ns: 1,
            events: 0,
            dropped: 0,
            dropped_by_kind: Default::default(),
            seq_gaps: 0,
            reason: "signal".into(),
            command_status: None,
            channels: Vec::new(),
            detector: None,
            otlp: None,
        })
    }

    fn run(events: bool, input: &[Record]) -> Vec<Record> {
        let mut out = Vec::new();
        let mut sink = Aggregating::new(
            &mut out,
            AggregateOptions {
                interval: Duration::from_secs(3600),
                events,
            },
        );
        for r in input {
            sink.record(r).unwrap();
        }
        sink.flush().unwrap();
        out
    }

    #[test]
    fn io_fault_and_sync_become_one_line_each_before_the_summary() {
        let fault = Record::Fault(FaultLine {
            ts_ns: 1,
            region: "sysv:1".into(),
            offset: 0,
            pid: 5,
            tid: 5,
            comm: "f".into(),
            ip: 0,
        });
        let input = [
            io(4, Op::Write, 100),
            io(3, Op::Write, 50),
            io(6, Op::Read, 150),
            fault.clone(),
            fault,
            sync(SyncEvent::Init, true),
            sync(SyncEvent::Wait, true),
            sync(SyncEvent::Wait, false),
            sync(SyncEvent::Wake, true),
        ];
        // Within the interval, only the lifecycle line (init) is out.
        assert_eq!(run(false, &input).len(), 1);
        let mut all = input.to_vec();
        all.push(summary());
        let out = run(false, &all);
        let json: Vec<String> = out
            .iter()
            .map(|r| serde_json::to_string(r).unwrap())
            .collect();
        assert_eq!(json.len(), 5, "{json:#?}");
        assert!(json[0].contains("\"event\":\"init\""));
        let Record::Aggregate(AggregateLine {
            totals: Totals::Channel(c),
            ..
        }) = &out[1]
        else {
            panic!("{}", json[1]);
        };
        assert_eq!(
            (c.bytes_written, c.writes, c.bytes_read, c.reads),
            (150, 2, 150, 1)
        );
        assert_eq!(
            (c.writers.as_slice(), c.readers.as_slice()),
            (&[3, 4][..], &[6][..])
        );
        assert!(json[2].contains("\"region\":\"sysv:1\",\"faults\":2,\"writers\":[5]"));
        assert!(json[3].contains("\"waits\":2,\"wakes\":1,\"failed\":1,\"pids\":[9]"));
        assert!(json[4].contains("\"type\":\"summary\""));
        // Read back as the same records.
        for (line, r) in json.iter().zip(&out) {
            assert_eq!(&serde_json::from_str::<Record>(line).unwrap(), r);
        }
    }

    #[test]
    fn private_lock_inits_and_repeated_warnings_are_counted_not_written() {
        let private = Record::Sync(SyncLine {
            lock: "futex:9:0x10".into(),
            detail: Some("init private".into()),
            ..match sync(SyncEvent::Init, true) {
                Record::Sync(s) => s,
                _ => unreachable!(),
            }
        });
        let warning = Record::Warning(Warning {
            ts_ns: 1,
            message: "region shrank".into(),
            probe: None,
        });
        let input = [
            private.clone(),
            private,
            warning.clone(),
            warning.clone(),
            warning,
            summary(),
        ];
        let out: Vec<String> = run(false, &input)
            .iter()
            .map(|r| serde_json::to_string(r).unwrap())
            .collect();
        assert_eq!(out.len(), 3, "{out:#?}");
        assert!(out[0].contains("\"type\":\"warning\""));
        assert!(out[1].ends_with("\"private_lock_inits\":2,\"repeated_warnings\":2}"));
    }

    #[test]
    fn events_pass_every_line_on_as_well() {
        let input = [io(4, Op::Write, 100), summary()];
        let out = run(true, &input);
        assert_eq!(out.len(), 3);
        assert!(matches!(out[0], Record::Io(_)));
        assert!(matches!(out[1], Record::Aggregate(_)));
    }
}
