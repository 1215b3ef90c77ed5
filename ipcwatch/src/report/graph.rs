//! `ipcwatch graph`: who talks to whom, as Graphviz DOT or JSON, drawn from
//! the model (fed by a live recording or by a trace file).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::BufReader;

use serde::Serialize;

use crate::model::Model;
use crate::record::ChannelKind;
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

#[derive(Debug, Clone, Serialize, Default)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

impl Graph {
    /// Every channel that moved data: an edge from each writer to each
    /// other process that read it (a loop when one process did both).
    pub fn from_model(m: &Model) -> Graph {
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
        s.push_str("}\n");
        s
    }
}

/// The model rebuilt from a trace file.
pub fn model_from_trace(path: &std::path::Path) -> Result<Model, TraceError> {
    let file = std::fs::File::open(path)?;
    let mut model = Model::new();
    Replay::new(BufReader::new(file)).apply_all(&mut model)?;
    Ok(model)
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
        let g = Graph::from_model(&m);
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
        let dot = Graph::from_model(&m).dot();
        assert!(!dot.contains('\x1b'), "{dot}");
        assert!(
            dot.contains(r#"p1 [label="a\"];\\nx [label=\"\\x1b[2J\\\\ (1)"];"#),
            "{dot}"
        );
        // One statement per line: no name added a line.
        assert_eq!(dot.lines().count(), 3 + 2 + 1 + 1);
    }
}
