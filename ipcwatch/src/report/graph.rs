//! `ipcwatch graph`: who talks to whom, as Graphviz DOT or JSON, drawn from
//! the model (fed by a live recording or by a trace file).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::BufReader;

use serde::Serialize;

use super::mappers::MapHistory;
use crate::model::Model;
use crate::record::{Access, ChannelKind, RegionKind};
use crate::text::dot_label;
use crate::trace::{Replay, TraceError};

#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Node {
    pub pid: u32,
    pub comm: String,
}

/// Data from one process to another through one channel.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Edge {
    pub from: u32,
    pub to: u32,
    pub channel: String,
    pub kind: ChannelKind,
    /// Bytes `from` wrote to the channel.
    pub bytes: u64,
    /// Its writes (messages).
    pub messages: u64,
    /// Bytes per second written, over the channel's active time.
    pub rate: f64,
    /// Last activity on the channel (ns, CLOCK_MONOTONIC).
    pub last_ts_ns: u64,
}

/// A shared region: a node of its own.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RegionNode {
    pub region: String,
    pub kind: RegionKind,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Race findings on it.
    pub races: usize,
}

/// A process mapped a region during the trace (one edge per process,
/// region and kind of access: a process that mapped it both ways has two).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MapEdge {
    pub pid: u32,
    pub region: String,
    /// Mapped with write permission.
    pub writable: bool,
    /// Its mappings of the region with this access.
    pub mappings: usize,
    /// First mapped (ns, CLOCK_MONOTONIC).
    pub mapped_ns: u64,
    /// When the last of them ended, if all did during the trace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unmapped_ns: Option<u64>,
}

/// One side of a race: who wrote, and where in the code.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RaceSide {
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    /// "function (file:line)", the function alone, or the address.
    pub at: String,
}

/// A race finding, drawn between its two writers.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RaceEdge {
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    pub len: u64,
    pub a: RaceSide,
    pub b: RaceSide,
    /// Times it was reported.
    pub count: u64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Graph {
    /// Processes.
    pub nodes: Vec<Node>,
    /// Data through channels (pipes, FIFOs, sockets, queues).
    pub edges: Vec<Edge>,
    /// Shared regions.
    pub regions: Vec<RegionNode>,
    /// Processes to the regions they mapped.
    pub mappings: Vec<MapEdge>,
    /// Race findings, between their writers.
    pub races: Vec<RaceEdge>,
}

/// Where an access's code is, for a label.
fn code_at(a: &Access) -> String {
    match (&a.function, &a.file, a.line) {
        (Some(func), Some(file), Some(line)) => {
            let file = file.rsplit('/').next().unwrap_or(file);
            format!("{func} ({file}:{line})")
        }
        (Some(func), _, _) => func.clone(),
        _ => format!("{:#x}", a.ip),
    }
}

impl Graph {
    /// Every channel that moved data: an edge from each writer to each
    /// other process that read it (a loop when one process did both).
    /// Every region, with an edge from each process that mapped it during
    /// the trace (`history`); every finding, between its two writers.
    pub fn from_model(m: &Model, history: &MapHistory) -> Graph {
        let mut g = Graph::channels(m);
        let mut nodes: BTreeMap<u32, String> = g.nodes.drain(..).map(|n| (n.pid, n.comm)).collect();
        let comm_of = |pid: u32, fallback: &str| -> String {
            history
                .comm(pid)
                .or_else(|| m.processes.get(&pid).map(|p| p.comm.as_str()))
                .unwrap_or(fallback)
                .to_string()
        };
        // Channel ends named by their latest name too.
        for (pid, comm) in nodes.iter_mut() {
            if let Some(c) = history.comm(*pid) {
                *comm = c.to_string();
            }
        }
        let mut edges: BTreeMap<(String, u32, bool), MapEdge> = BTreeMap::new();
        for s in history.spans() {
            nodes
                .entry(s.pid)
                .or_insert_with(|| comm_of(s.pid, &s.comm));
            let e = edges
                .entry((s.region.to_string(), s.pid, s.writable()))
                .or_insert(MapEdge {
                    pid: s.pid,
                    region: s.region.to_string(),
                    writable: s.writable(),
                    mappings: 0,
                    mapped_ns: s.mapped_ns,
                    unmapped_ns: Some(0),
                });
            e.mappings += 1;
            e.mapped_ns = e.mapped_ns.min(s.mapped_ns);
            e.unmapped_ns = match (e.unmapped_ns, s.unmapped_ns) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
        }
        // Order: by region, writers first, then by pid.
        g.mappings = edges.into_values().collect();
        g.mappings
            .sort_by(|a, b| (&a.region, !a.writable, a.pid).cmp(&(&b.region, !b.writable, b.pid)));
        for f in &m.findings {
            let r = &f.race;
            let [a, b] = match r.accesses.as_slice() {
                [a, b, ..] => [a, b],
                [a] => [a, a],
                [] => continue,
            };
            let side = |x: &Access| RaceSide {
                pid: x.pid,
                tid: x.tid,
                comm: comm_of(x.pid, &x.comm),
                at: code_at(x),
            };
            for x in [a, b] {
                nodes
                    .entry(x.pid)
                    .or_insert_with(|| comm_of(x.pid, &x.comm));
            }
            g.races.push(RaceEdge {
                kind: r.kind.to_string(),
                region: r.region.as_ref().map(|x| x.to_string()),
                channel: r.channel.as_ref().map(|x| x.to_string()),
                offset: r.offset,
                len: r.len,
                a: side(a),
                b: side(b),
                count: f.count,
            });
        }
        let mut regions: Vec<_> = m.regions.values().collect();
        regions.sort_by(|a, b| a.id.cmp(&b.id));
        g.regions = regions
            .into_iter()
            .map(|r| RegionNode {
                region: r.id.to_string(),
                kind: r.kind,
                size: r.size,
                name: r.name.clone(),
                races: g
                    .races
                    .iter()
                    .filter(|x| x.region.as_deref() == Some(r.id.as_str()))
                    .count(),
            })
            .collect();
        g.nodes = nodes
            .into_iter()
            .map(|(pid, comm)| Node { pid, comm })
            .collect();
        g
    }

    /// The channel edges alone, and the processes they join.
    fn channels(m: &Model) -> Graph {
        let mut nodes: BTreeMap<u32, String> = BTreeMap::new();
        let mut edges = Vec::new();
        let mut channels: Vec<_> = m.channels.values().collect();
        channels.sort_by(|a, b| a.id.cmp(&b.id));
        for c in channels {
            if c.bytes_written == 0 && c.bytes_read == 0 {
                continue;
            }
            let secs = c.last_ts.saturating_sub(c.first_ts) as f64 / 1e9;
            for (wpid, w) in c.endpoints.iter().filter(|(_, f)| f.bytes_written > 0) {
                let mut readers: Vec<u32> = c
                    .endpoints
                    .iter()
                    .filter(|(p, f)| f.bytes_read > 0 && *p != wpid)
                    .map(|(p, _)| *p)
                    .collect();
                if readers.is_empty() && w.bytes_read > 0 {
                    readers.push(*wpid);
                }
                for r in readers {
                    for pid in [*wpid, r] {
                        let comm = m
                            .processes
                            .get(&pid)
                            .map(|p| p.comm.to_string())
                            .or_else(|| c.endpoints.get(&pid).map(|f| f.comm.to_string()))
                            .unwrap_or_default();
                        nodes.entry(pid).or_insert(comm);
                    }
                    edges.push(Edge {
                        from: *wpid,
                        to: r,
                        channel: c.id.to_string(),
                        kind: c.kind,
                        bytes: w.bytes_written,
                        messages: w.writes,
                        rate: if secs > 0.0 {
                            w.bytes_written as f64 / secs
                        } else {
                            0.0
                        },
                        last_ts_ns: c.last_ts,
                    });
                }
            }
        }
        Graph {
            nodes: nodes
                .into_iter()
                .map(|(pid, comm)| Node { pid, comm })
                .collect(),
            edges,
            ..Graph::default()
        }
    }

    /// Names and channel ids are the traced processes' choice: each label
    /// is escaped for DOT ([`dot_label`]), so no name can close its string
    /// or break a line.
    pub fn dot(&self) -> String {
        let esc = dot_label;
        let mut s = String::from("digraph ipcwatch {\n  rankdir=LR;\n  node [shape=box];\n");
        for n in &self.nodes {
            let _ = writeln!(s, "  p{} [label=\"{} ({})\"];", n.pid, esc(&n.comm), n.pid);
        }
        for e in &self.edges {
            let _ = writeln!(
                s,
                "  p{} -> p{} [label=\"{} {}\\n{} B in {} msgs\"];",
                e.from,
                e.to,
                e.kind.as_str(),
                esc(&e.channel),
                e.bytes,
                e.messages
            );
        }
        // Regions: one node each (ellipses, named r0, r1... in order);
        // writable mappings solid, read-only ones dashed and grey.
        let index: BTreeMap<&str, usize> = self
            .regions
            .iter()
            .enumerate()
            .map(|(i, r)| (r.region.as_str(), i))
            .collect();
        for (i, r) in self.regions.iter().enumerate() {
            let _ = writeln!(
                s,
                "  r{i} [shape=ellipse, style=filled, fillcolor=\"{}\", label=\"{}\\n{} B{}\"];",
                if r.races > 0 { "#ffd0d0" } else { "#fff6d5" },
                esc(&r.region),
                r.size,
                match r.races {
                    0 => String::new(),
                    n => format!("\\n{n} race{}", if n == 1 { "" } else { "s" }),
                }
            );
        }
        for e in &self.mappings {
            let Some(i) = index.get(e.region.as_str()) else {
                continue;
            };
            let _ = writeln!(
                s,
                "  p{} -> r{i} [{}];",
                e.pid,
                if e.writable {
                    "label=\"rw\", color=\"#1f5fbf\", arrowhead=dot"
                } else {
                    "label=\"r\", style=dashed, color=grey50, fontcolor=grey50, arrowhead=odot"
                }
            );
        }
        for r in &self.races {
            let place = r.region.as_deref().or(r.channel.as_deref()).unwrap_or("?");
            let _ = writeln!(
                s,
                "  p{} -> p{} [dir=both, color=red, fontcolor=red, penwidth=2, label=\"RACE {}{}\\n{}[{}] {}\\n{}[{}] {}\"];",
                r.a.pid,
                r.b.pid,
                esc(place),
                r.offset.map(|o| format!("+{o:#x}")).unwrap_or_default(),
                esc(&r.a.comm),
                r.a.pid,
                esc(&r.a.at),
                esc(&r.b.comm),
                r.b.pid,
                esc(&r.b.at),
            );
        }
        s.push_str("}\n");
        s
    }
}

/// The model rebuilt from a trace file, with who mapped what over the
/// whole trace.
pub fn model_from_trace(path: &std::path::Path) -> Result<(Model, MapHistory), TraceError> {
    let file = std::fs::File::open(path)?;
    let mut model = Model::new();
    let mut history = MapHistory::default();
    let mut replay = Replay::new(BufReader::new(file));
    while let Some(r) = replay.next_record()? {
        model.apply(&r);
        history.apply(&r);
    }
    Ok((model, history))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Io, Op, Record};

    fn io(pid: u32, op: Op, bytes: u64, channel: &str) -> Record {
        Record::Io(Io {
            ts_ns: 1_000_000_000 * pid as u64,
            kind: ChannelKind::Unix,
            op,
            channel: channel.into(),
            pid,
            tid: pid,
            comm: format!("p{pid}").into(),
            bytes,
            fd: 3,
            syscall: "write".into(),
            ext: Default::default(),
            start_ns: None,
        })
    }

    #[test]
    fn edges_go_from_writers_to_readers() {
        let mut m = Model::new();
        m.apply(&io(1, Op::Write, 7000, "unix:[1-2]"));
        m.apply(&io(2, Op::Read, 7000, "unix:[1-2]"));
        m.apply(&io(3, Op::Write, 5, "unix:[9]"));
        m.apply(&io(3, Op::Read, 5, "unix:[9]"));
        let g = Graph::from_model(&m, &MapHistory::default());
        assert_eq!(g.nodes.len(), 3);
        assert_eq!(g.edges.len(), 2);
        assert_eq!(
            (g.edges[0].from, g.edges[0].to, g.edges[0].bytes),
            (1, 2, 7000)
        );
        assert_eq!((g.edges[1].from, g.edges[1].to), (3, 3));
        // The model's table: per-process flows, rates, last activity.
        let c = &m.channels["unix:[1-2]"];
        assert_eq!(c.endpoints[&1].bytes_written, 7000);
        assert_eq!(c.endpoints[&2].bytes_read, 7000);
        assert_eq!((c.first_ts, c.last_ts), (1_000_000_000, 2_000_000_000));
        assert_eq!(c.rates(), (7000.0, 7000.0));
        assert_eq!(g.edges[0].rate, 7000.0);
        let dot = g.dot();
        assert!(dot.contains("p1 -> p2 [label=\"unix unix:[1-2]\\n7000 B in 1 msgs\"]"));
        assert!(dot.starts_with("digraph ipcwatch {"));
    }

    #[test]
    fn dot_labels_cannot_close_their_string_or_break_a_line() {
        let mut m = Model::new();
        let evil = "a\"];\nx [label=\"\x1b[2J\\";
        let mut w = io(1, Op::Write, 3, "fifo:/tmp/\"q\"\n\\");
        if let Record::Io(io) = &mut w {
            io.comm = evil.into();
        }
        m.apply(&w);
        m.apply(&io(2, Op::Read, 3, "fifo:/tmp/\"q\"\n\\"));
        let dot = Graph::from_model(&m, &MapHistory::default()).dot();
        assert!(!dot.contains('\x1b'), "{dot}");
        assert!(
            dot.contains(r#"p1 [label="a\"];\\nx [label=\"\\x1b[2J\\\\ (1)"];"#),
            "{dot}"
        );
        // One statement per line: no name added a line.
        assert_eq!(dot.lines().count(), 3 + 2 + 1 + 1);
    }
}
