//! Who mapped each region over a whole trace. The model keeps the mappings
//! of the moment (an exited process's are gone); `analyze` and `graph` want
//! every process that mapped a region during the trace, with when it
//! mapped it and when (and how) the mapping ended.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::record::{MappingEvent, ProcessEvent, Record, Text};

/// How a mapping ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ended {
    /// munmap, shmdt, or mremap moving it.
    Unmapped,
    /// The process exited.
    Exit,
    /// The process replaced its program.
    Exec,
}

/// One process's mapping of (part of) a region, from map to unmap.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MapSpan {
    pub region: Text,
    pub pid: u32,
    pub comm: Text,
    /// "rw", "r"... as in `mapping` lines.
    pub prot: Text,
    /// Address range in the process.
    pub start: u64,
    pub end: u64,
    /// When it was mapped (ns, CLOCK_MONOTONIC); for a mapping that
    /// existed before the recording, when ipcwatch found it.
    pub mapped_ns: u64,
    /// Mapped before the recording started.
    pub existing: bool,
    /// When it ended, if it did during the trace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unmapped_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended: Option<Ended>,
}

impl MapSpan {
    pub fn writable(&self) -> bool {
        self.prot.contains('w')
    }
}

/// Every mapping of the trace, in the order they appeared.
#[derive(Debug, Default, Clone)]
pub struct MapHistory {
    spans: Vec<MapSpan>,
    /// (pid, region) -> indices of its spans still mapped.
    open: BTreeMap<(u32, Text), Vec<usize>>,
    /// Time of the trace's first record (the header), ns.
    pub origin_ns: Option<u64>,
    /// The latest name of each process: a process may rename itself after
    /// fork (prctl), and the model keeps the name it had until exec.
    pub comms: BTreeMap<u32, Text>,
}

impl MapHistory {
    pub fn apply(&mut self, r: &Record) {
        if self.origin_ns.is_none() {
            self.origin_ns = r.ts_ns().filter(|&t| t > 0);
        }
        let named = match r {
            Record::Io(x) => Some((x.pid, &x.comm)),
            Record::Channel(x) => Some((x.pid, &x.comm)),
            Record::Process(x) => Some((x.pid, &x.comm)),
            Record::Mapping(x) => Some((x.pid, &x.comm)),
            Record::Sync(x) => Some((x.pid, &x.comm)),
            Record::Fault(x) => Some((x.pid, &x.comm)),
            _ => None,
        };
        if let Some((pid, comm)) = named {
            self.name(pid, comm);
        }
        // The detector reads the writers' names when it reports them: a
        // process that renamed itself and made no traced call since is
        // named right only there.
        if let Record::Race(race) = r {
            for a in &race.accesses {
                self.name(a.pid, &a.comm);
            }
        }
        match r {
            Record::Mapping(m) => {
                let key = (m.pid, m.region.clone());
                let open = self.open.entry(key).or_default();
                // Whatever the new line covers ends what was there: an
                // unmap, or a mapping replaced in place (MAP_FIXED).
                open.retain(|&i| {
                    let s = &mut self.spans[i];
                    let overlaps = s.start < m.end && m.start < s.end;
                    if overlaps {
                        s.unmapped_ns = Some(m.ts_ns);
                        s.ended = Some(Ended::Unmapped);
                    }
                    !overlaps
                });
                if m.event != MappingEvent::Unmapped {
                    open.push(self.spans.len());
                    self.spans.push(MapSpan {
                        region: m.region.clone(),
                        pid: m.pid,
                        comm: m.comm.clone(),
                        prot: m.prot.clone(),
                        start: m.start,
                        end: m.end,
                        mapped_ns: m.ts_ns,
                        existing: m.event == MappingEvent::Existing,
                        unmapped_ns: None,
                        ended: None,
                    });
                }
            }
            Record::Process(p) if matches!(p.event, ProcessEvent::Exit | ProcessEvent::Exec) => {
                let how = if p.event == ProcessEvent::Exit {
                    Ended::Exit
                } else {
                    Ended::Exec
                };
                let keys: Vec<_> = self
                    .open
                    .range((p.pid, Text::default())..)
                    .take_while(|((pid, _), _)| *pid == p.pid)
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in keys {
                    for i in self.open.remove(&k).unwrap_or_default() {
                        let s = &mut self.spans[i];
                        s.unmapped_ns = Some(p.ts_ns);
                        s.ended = Some(how);
                    }
                }
            }
            _ => {}
        }
    }

    /// Every span, in the order the mappings appeared.
    pub fn spans(&self) -> &[MapSpan] {
        &self.spans
    }

    /// The spans of one region, in the order they appeared.
    pub fn of<'a>(&'a self, region: &'a str) -> impl Iterator<Item = &'a MapSpan> + 'a {
        self.spans.iter().filter(move |s| s.region == region)
    }

    fn name(&mut self, pid: u32, comm: &Text) {
        if !comm.is_empty() && self.comms.get(&pid) != Some(comm) {
            self.comms.insert(pid, comm.clone());
        }
    }

    /// The latest name of `pid`, if the trace named it.
    pub fn comm(&self, pid: u32) -> Option<&str> {
        self.comms.get(&pid).map(Text::as_str)
    }

    /// Seconds from the trace's start to `ts`.
    pub fn since_start(&self, ts: u64) -> f64 {
        ts.saturating_sub(self.origin_ns.unwrap_or(ts)) as f64 / 1e9
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{MappingLine, ProcessLine};

    fn mapping(ts: u64, event: MappingEvent, pid: u32, start: u64, end: u64, prot: &str) -> Record {
        Record::Mapping(MappingLine {
            ts_ns: ts,
            event,
            region: "sysv:7".into(),
            pid,
            comm: format!("p{pid}").into(),
            start,
            end,
            offset: 0,
            prot: prot.into(),
        })
    }

    fn exit(ts: u64, pid: u32) -> Record {
        Record::Process(ProcessLine {
            ts_ns: ts,
            event: ProcessEvent::Exit,
            pid,
            tid: pid,
            comm: format!("p{pid}").into(),
            ppid: None,
            filename: None,
            child: None,
            exit_code: Some(0),
            signal: None,
            origin: Default::default(),
        })
    }

    #[test]
    fn spans_end_at_unmap_exit_or_remap_and_outlive_the_process() {
        let mut h = MapHistory::default();
        h.apply(&mapping(10, MappingEvent::Existing, 1, 0x1000, 0x3000, "r"));
        h.apply(&mapping(20, MappingEvent::Mapped, 2, 0x1000, 0x3000, "rw"));
        // mremap of pid 2: the whole range goes, a piece comes back.
        h.apply(&mapping(
            30,
            MappingEvent::Unmapped,
            2,
            0x1000,
            0x3000,
            "rw",
        ));
        h.apply(&mapping(30, MappingEvent::Mapped, 2, 0x8000, 0x9000, "rw"));
        h.apply(&exit(40, 2));
        let s = h.spans();
        assert_eq!(s.len(), 3);
        assert_eq!(h.origin_ns, Some(10));
        assert!(s[0].existing && !s[0].writable() && s[0].ended.is_none());
        assert_eq!(
            (s[1].unmapped_ns, s[1].ended),
            (Some(30), Some(Ended::Unmapped))
        );
        assert_eq!((s[2].mapped_ns, s[2].unmapped_ns), (30, Some(40)));
        assert_eq!(s[2].ended, Some(Ended::Exit));
        assert_eq!(h.of("sysv:7").count(), 3);
        assert!((h.since_start(40) - 30e-9).abs() < 1e-12);
    }
}
