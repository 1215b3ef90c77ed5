//! `ipcwatch analyze`: read a recorded trace back through the model and
//! report what it holds: channels, regions, locks and race findings.
//!
//! Reading a trace only ever parses it: nothing in a trace can make
//! ipcwatch run a program or open another file.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::BufRead;

use serde::Serialize;

use super::mappers::{Ended, MapHistory, MapSpan};
use crate::model::{Finding, Model};
use crate::record::Summary;
use crate::record::{ChannelSummary, Container, RaceLine, RegionKind};
use crate::text::{Clean, clean};
use crate::trace::{Replay, TraceError};

/// What a trace holds, after replay through the model.
pub struct Analysis {
    pub model: Model,
    /// The trace's own summary line, when it has one (a trace cut short
    /// by a crash has none).
    pub summary: Option<Summary>,
    /// Lines read.
    pub lines: u64,
    /// Every process that mapped each region, and when.
    pub history: MapHistory,
}

/// Replay a whole trace. On a bad line, the error names it and the
/// analysis of everything before it is returned alongside.
pub fn replay<R: BufRead>(input: R) -> (Analysis, Option<TraceError>) {
    let mut replay = Replay::new(input);
    let mut model = Model::new();
    let mut history = MapHistory::default();
    let error = loop {
        match replay.next_record() {
            Ok(Some(r)) => {
                model.apply(&r);
                history.apply(&r);
            }
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    (
        Analysis {
            model,
            lines: replay.line(),
            summary: replay.summary,
            history,
        },
        error,
    )
}

#[derive(Serialize)]
struct JsonReport<'a> {
    lines: u64,
    events_lost: u64,
    complete: bool,
    channels: Vec<ChannelSummary>,
    regions: Vec<JsonRegion<'a>>,
    races: Vec<JsonFinding<'a>>,
}

#[derive(Serialize)]
struct JsonRegion<'a> {
    region: &'a str,
    kind: RegionKind,
    size: u64,
    /// Every process that mapped it during the trace.
    mappers: Vec<u32>,
    /// Their mappings, with the times they began and ended.
    mappings: Vec<&'a MapSpan>,
    locks: Vec<&'a str>,
    pages_written: usize,
}

#[derive(Serialize)]
struct JsonFinding<'a> {
    #[serde(flatten)]
    race: &'a RaceLine,
    count: u64,
}

impl Analysis {
    pub fn races(&self) -> &[Finding] {
        &self.model.findings
    }

    fn lost(&self) -> u64 {
        self.summary
            .as_ref()
            .map_or(self.model.lost, |s| s.dropped.max(self.model.lost))
    }

    pub fn json(&self) -> String {
        let mut regions: Vec<_> = self
            .model
            .regions
            .values()
            .map(|r| JsonRegion {
                region: &r.id,
                kind: r.kind,
                size: r.size,
                mappers: self
                    .history
                    .of(&r.id)
                    .map(|s| s.pid)
                    .chain(r.mappers())
                    .collect::<BTreeSet<u32>>()
                    .into_iter()
                    .collect(),
                mappings: self.history.of(&r.id).collect(),
                locks: r.locks.iter().map(|l| l.as_str()).collect(),
                pages_written: r.pages.len() + r.untracked_faults as usize,
            })
            .collect();
        regions.sort_by(|a, b| a.region.cmp(b.region));
        let report = JsonReport {
            lines: self.lines,
            events_lost: self.lost(),
            complete: self.summary.is_some(),
            channels: self.model.channel_summaries(),
            regions,
            races: self
                .model
                .findings
                .iter()
                .map(|f| JsonFinding {
                    race: &f.race,
                    count: f.count,
                })
                .collect(),
        };
        serde_json::to_string_pretty(&report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        let m = &self.model;
        let _ = writeln!(
            s,
            "{} lines, {} processes, {} channels, {} regions, {} races{}",
            self.lines,
            m.processes.len(),
            m.channels.len(),
            m.regions.len(),
            m.findings.len(),
            match self.lost() {
                0 => String::new(),
                n => format!(", {n} EVENTS LOST while recording"),
            }
        );
        if self.summary.is_none() {
            let _ = writeln!(
                s,
                "note: the trace has no summary line (recording cut short)"
            );
        }
        if !m.channels.is_empty() {
            let _ = writeln!(s, "\nCHANNELS");
            for c in m.channel_summaries() {
                let who = |pids: &[u32]| -> String {
                    pids.iter()
                        .map(|p| {
                            let comm = self.history.comm(*p).unwrap_or_else(|| {
                                m.processes.get(p).map_or("?", |p| p.comm.as_str())
                            });
                            format!("{}[{p}]{}", Clean(comm), in_container(m.container(*p)))
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                };
                let _ = writeln!(
                    s,
                    "  {:<28} {:>12} B written {:>12} B read  {} -> {}",
                    Clean(&c.channel),
                    c.bytes_written,
                    c.bytes_read,
                    who(&c.writers),
                    who(&c.readers)
                );
            }
        }
        if !m.regions.is_empty() {
            let _ = writeln!(s, "\nREGIONS");
            let mut regions: Vec<_> = m.regions.values().collect();
            regions.sort_by(|a, b| a.id.cmp(&b.id));
            for r in regions {
                let spans: Vec<&MapSpan> = self.history.of(&r.id).collect();
                let pids: BTreeSet<u32> = spans.iter().map(|s| s.pid).chain(r.mappers()).collect();
                let _ = writeln!(
                    s,
                    "  {:<28} {:>10} B  mapped by {} process{}  {} locks  {} pages written",
                    Clean(&r.id),
                    r.size,
                    pids.len(),
                    if pids.len() == 1 { "" } else { "es" },
                    r.locks.len(),
                    r.pages.len() + r.untracked_faults as usize
                );
                let at = |ts: u64| format!("{:.3}s", self.history.since_start(ts));
                for sp in spans {
                    let comm = self.history.comm(sp.pid).unwrap_or(sp.comm.as_str());
                    let from = if sp.existing {
                        format!("mapped before the start (seen at {})", at(sp.mapped_ns))
                    } else {
                        format!("mapped at {}", at(sp.mapped_ns))
                    };
                    let to = match (sp.unmapped_ns, sp.ended) {
                        (Some(ts), Some(Ended::Unmapped)) => format!("unmapped at {}", at(ts)),
                        (Some(ts), Some(Ended::Exit)) => format!("unmapped at {} (exit)", at(ts)),
                        (Some(ts), Some(Ended::Exec)) => format!("unmapped at {} (exec)", at(ts)),
                        _ => "still mapped at the end".to_string(),
                    };
                    let _ = writeln!(
                        s,
                        "    {}[{}]{} {:<3} {from}, {to}",
                        Clean(comm),
                        sp.pid,
                        in_container(m.container(sp.pid)),
                        Clean(&sp.prot),
                    );
                }
            }
        }
        if !m.findings.is_empty() {
            let _ = writeln!(s, "\nRACES");
            for f in &m.findings {
                let r = &f.race;
                let place = r.region.as_deref().or(r.channel.as_deref()).unwrap_or("?");
                let _ = writeln!(
                    s,
                    "  {} on {}{} ({} bytes), {} evidence, confidence {:.2}, seen {}x",
                    Clean(&r.kind),
                    Clean(place),
                    r.offset.map(|o| format!("+{o:#x}")).unwrap_or_default(),
                    r.len,
                    r.evidence,
                    r.confidence,
                    f.count
                );
                let _ = writeln!(s, "    {}", Clean(&r.explanation));
                for a in &r.accesses {
                    let at = match (&a.function, &a.file, a.line) {
                        (Some(func), Some(file), Some(line)) => {
                            format!("{} ({}:{line})", clean(func), clean(file))
                        }
                        (Some(func), _, _) => clean(func).into_owned(),
                        _ => format!("{:#x}", a.ip),
                    };
                    let inside = match (&a.origin.container, a.origin.nspid) {
                        (Some(c), Some(n)) => format!(
                            " in container {} ({}, pid {n} inside)",
                            Clean(c.short()),
                            Clean(&c.runtime)
                        ),
                        (Some(c), None) => {
                            format!(" in container {} ({})", Clean(c.short()), Clean(&c.runtime))
                        }
                        (None, _) => match &a.origin.unit {
                            Some(u) => format!(" in {}", Clean(u)),
                            None => String::new(),
                        },
                    };
                    let _ = writeln!(
                        s,
                        "    - {}[{}] tid {}{inside} at {}",
                        Clean(&a.comm),
                        a.pid,
                        a.tid,
                        at
                    );
                }
            }
        }
        s
    }
}

/// "@name" or "@<12 hex digits>" after a process in a container, made
/// safe to show (names and ids come from cgroup paths and runtimes).
fn in_container(c: Option<&Container>) -> String {
    match c {
        Some(c) => format!("@{}", Clean(c.short())),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::has_control;

    const HEADER: &str = r#"{"type":"header","ts_ns":1,"format":"ipcwatch-ndjson","version":1,"tool_version":"0","kernel":"6","hostname":"h","start_time":"2026-01-01T00:00:00Z","start_unix_ns":0}"#;

    #[test]
    fn replays_channels_and_keeps_results_before_a_bad_line() {
        let io = r#"{"type":"io","ts_ns":2,"kind":"pipe","op":"write","channel":"pipe:[5]","pid":7,"tid":7,"comm":"w","bytes":10,"fd":1,"syscall":"write"}"#;
        let text = format!("{HEADER}\n{io}\n{io}\n{{broken\n{io}\n");
        let (a, err) = replay(text.as_bytes());
        assert_eq!(err.unwrap().to_string().split(':').next(), Some("line 4"));
        assert_eq!(a.model.channels["pipe:[5]"].bytes_written, 20);
        assert!(a.summary.is_none());
        assert!(a.text().contains("no summary line"));
    }

    #[test]
    fn text_escapes_names_and_json_keeps_them() {
        let io = r#"{"type":"io","ts_ns":2,"kind":"fifo","op":"write","channel":"fifo:/tmp/a\nb\u001b[2J","pid":7,"tid":7,"comm":"\u001b]0;PWNED\u0007","bytes":10,"fd":1,"syscall":"write"}"#;
        let (a, err) = replay(format!("{HEADER}\n{io}\n").as_bytes());
        assert!(err.is_none());
        let text = a.text();
        assert!(!has_control(&text.replace('\n', "")), "{text}");
        assert!(text.contains(r"fifo:/tmp/a\nb\x1b[2J"), "{text}");
        assert!(text.contains(r"\x1b]0;PWNED\x07[7]"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&a.json()).unwrap();
        assert_eq!(json["channels"][0]["channel"], "fifo:/tmp/a\nb\x1b[2J");
    }

    #[test]
    fn text_lists_every_mapper_with_its_times_after_they_exited() {
        let lines = [
            r#"{"type":"region","ts_ns":1000000000,"event":"created","region":"sysv:36","kind":"sysv","size":4096}"#,
            r#"{"type":"mapping","ts_ns":1500000000,"event":"mapped","region":"sysv:36","pid":7,"comm":"racer","start":4096,"end":8192,"offset":0,"prot":"rw"}"#,
            r#"{"type":"mapping","ts_ns":1600000000,"event":"mapped","region":"sysv:36","pid":8,"comm":"reader","start":4096,"end":8192,"offset":0,"prot":"r"}"#,
            r#"{"type":"mapping","ts_ns":2000000000,"event":"unmapped","region":"sysv:36","pid":8,"comm":"reader","start":4096,"end":8192,"offset":0,"prot":"r"}"#,
            r#"{"type":"process","ts_ns":3000000000,"event":"exit","pid":7,"tid":7,"comm":"racer","exit_code":0}"#,
        ];
        let text = format!(
            "{}\n{}\n",
            HEADER.replace("\"ts_ns\":1,", "\"ts_ns\":1000000000,"),
            lines.join("\n")
        );
        let (a, err) = replay(text.as_bytes());
        assert!(err.is_none());
        let out = a.text();
        assert!(
            out.contains("sysv:36") && out.contains("mapped by 2 processes"),
            "{out}"
        );
        assert!(
            out.contains("    racer[7] rw  mapped at 0.500s, unmapped at 2.000s (exit)"),
            "{out}"
        );
        assert!(
            out.contains("    reader[8] r   mapped at 0.600s, unmapped at 1.000s"),
            "{out}"
        );
        let json: serde_json::Value = serde_json::from_str(&a.json()).unwrap();
        assert_eq!(json["regions"][0]["mappers"], serde_json::json!([7, 8]));
        assert_eq!(json["regions"][0]["mappings"][0]["ended"], "exit");
    }
}
