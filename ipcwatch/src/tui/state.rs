//! The state the views read and the small types they share with the app:
//! the model plus the rates the UI keeps ([`Data`]), a list's selection,
//! filter, sort and drill-down ([`ListState`]), what a view asks of the
//! app after a key ([`Action`]) and which view is shown ([`ViewId`]).
//! Depends only on the model, the records and [`super::rates`].

use std::collections::{BTreeMap, HashMap};

use crossterm::event::{KeyCode, KeyEvent};

use crate::model::Model;
use crate::record::{MappingEvent, Op, Record, Text};
use crate::text::Clean;

use super::rates::{Flow, Series};

/// Kinds with an event-rate sparkline, in display order.
pub const KINDS: [&str; 11] = [
    "pipe", "fifo", "unix", "tcp", "udp", "mq", "msgq", "shm", "sync", "fault", "proc",
];

fn kind_of(r: &Record) -> Option<&'static str> {
    Some(match r {
        Record::Io(io) => io.kind.as_str(),
        Record::Channel(c) => c.kind.as_str(),
        Record::Process(_) => "proc",
        Record::Region(_) | Record::Mapping(_) => "shm",
        Record::Sync(_) => "sync",
        Record::Fault(_) => "fault",
        _ => return None,
    })
}

/// What the views read: the model plus the rates the UI keeps.
#[derive(Debug, Default)]
pub struct Data {
    pub model: Model,
    pub kinds: BTreeMap<&'static str, Series>,
    pub channel_flow: HashMap<Text, Flow>,
    pub process_flow: HashMap<u32, Flow>,
    /// Time of the first and latest record (or clock), ns.
    pub first_ns: u64,
    pub now_ns: u64,
    /// Kernel events and losses as the source reports them.
    pub events: u64,
    pub dropped: u64,
    /// The process selected in view 5: every view shows only what it touches.
    pub pid_filter: Option<u32>,
    /// Latest comm of each pid (a process may rename itself after fork;
    /// the model keeps the name it was first seen with until exec).
    pub comms: HashMap<u32, Text>,
    /// Words of shared regions the race detector saw written, by region
    /// and offset (the Regions view's hot words and heat).
    pub words: BTreeMap<(Text, u64), WordHeat>,
    /// Pages of shared regions the sampler saw change (`heat` lines), by
    /// region and page index: samples in which each changed.
    pub pages: BTreeMap<(Text, u64), u64>,
    /// Every process that mapped each region, exited ones included (the
    /// model keeps the mappings of the moment).
    pub mapped_by: HashMap<Text, std::collections::BTreeSet<u32>>,
    /// `io` records of one call each, by channel (the summed lines of the
    /// live TUI's in-kernel totals are not counted): how many crossed the
    /// ring buffer one by one (`tui --headless` reports them).
    pub io_records: HashMap<Text, u64>,
}

/// What the race detector saw of one word of a shared region: from the
/// summary's armed words (`detector.words`), deep mode's write samples,
/// and the findings on it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WordHeat {
    /// Writes trapped while it was armed.
    pub traps: u64,
    /// Watch windows it was armed in.
    pub windows: u64,
    /// Write samples (deep mode).
    pub samples: u64,
    /// Samples in which the hot-word sampler saw it change (`heat` lines).
    pub sampled: u64,
    /// Findings reported on it.
    pub races: u64,
    /// Processes seen writing it.
    pub writers: std::collections::BTreeSet<u32>,
    /// The detector armed a watchpoint on it.
    pub armed: bool,
    /// Written by atomic instructions: a synchronization word.
    pub sync: bool,
}

impl WordHeat {
    /// Changes seen: trapped writes or the sampler's changes (the same
    /// writes seen two ways: the larger), samples, and findings.
    pub fn changes(&self) -> u64 {
        self.traps
            .max(self.sampled)
            .saturating_add(self.samples)
            .max(self.races.saturating_mul(2))
    }
}

/// The pid and comm a record was made by, if it names them.
fn pid_comm(r: &Record) -> Option<(u32, &Text)> {
    Some(match r {
        Record::Io(x) => (x.pid, &x.comm),
        Record::Channel(x) => (x.pid, &x.comm),
        Record::Process(x) => (x.pid, &x.comm),
        Record::Mapping(x) => (x.pid, &x.comm),
        Record::Sync(x) => (x.pid, &x.comm),
        Record::Fault(x) => (x.pid, &x.comm),
        _ => return None,
    })
}

impl Data {
    pub fn apply(&mut self, r: &Record) {
        self.model.apply(r);
        let ts = match r.ts_ns() {
            Some(ts) if ts > 0 => ts,
            _ => self.now_ns,
        };
        if self.first_ns == 0 {
            self.first_ns = ts;
        }
        self.now_ns = self.now_ns.max(ts);
        if let Some(k) = kind_of(r) {
            let n = match r {
                Record::Io(io) => io.calls(),
                _ => 1,
            };
            self.kinds.entry(k).or_default().add(ts, n);
        }
        if let Some((pid, comm)) = pid_comm(r)
            && !comm.is_empty()
            && self.comms.get(&pid) != Some(comm)
        {
            self.comms.insert(pid, comm.clone());
        }
        match r {
            Record::Io(io) => {
                if io.ext.calls.is_none() {
                    *self.io_records.entry(io.channel.clone()).or_default() += 1;
                }
                if io.op == Op::Write {
                    self.channel_flow
                        .entry(io.channel.clone())
                        .or_default()
                        .add(ts, io.bytes);
                }
                self.process_flow
                    .entry(io.pid)
                    .or_default()
                    .add(ts, io.bytes);
            }
            Record::Lost(l) => self.dropped = self.dropped.max(l.total),
            Record::Summary(s) => {
                self.dropped = self.dropped.max(s.dropped);
                self.events = self.events.max(s.events);
                for w in s.detector.iter().flat_map(|d| &d.words) {
                    let h = self.words.entry((w.region.clone(), w.offset)).or_default();
                    h.traps = h.traps.max(w.traps);
                    h.windows = h.windows.max(w.windows);
                    h.writers.extend(&w.writers);
                    h.armed = true;
                    h.sync |= w.sync;
                }
            }
            Record::Mapping(m) if m.event != MappingEvent::Unmapped => {
                self.mapped_by
                    .entry(m.region.clone())
                    .or_default()
                    .insert(m.pid);
            }
            Record::Heat(heat) => {
                for w in &heat.words {
                    let h = self.words.entry((w.region.clone(), w.offset)).or_default();
                    h.sampled = h.sampled.max(w.changes);
                    h.traps = h.traps.max(w.traps);
                    h.windows = h.windows.max(w.windows);
                    h.writers.extend(&w.writers);
                    h.armed |= w.armed || w.windows > 0;
                    h.sync |= w.sync;
                }
                for p in &heat.pages {
                    let n = self.pages.entry((p.region.clone(), p.page)).or_default();
                    *n = (*n).max(p.changes);
                }
            }
            Record::WriteSample(w) => {
                let h = self.words.entry((w.region.clone(), w.offset)).or_default();
                h.samples = h.samples.saturating_add(1);
                h.writers.insert(w.pid);
                h.armed = true;
            }
            Record::Race(r) => {
                if let (Some(region), Some(offset)) = (&r.region, r.offset) {
                    let h = self.words.entry((region.clone(), offset)).or_default();
                    h.races = h.races.saturating_add(1);
                    h.writers.extend(r.accesses.iter().map(|a| a.pid));
                    h.armed |= r.evidence == "collision";
                }
            }
            _ => {}
        }
    }

    /// Live only: processes rename themselves (prctl PR_SET_NAME) without
    /// an event ipcwatch traces, so read the current name of the live
    /// processes the model knows from /proc (at most 512 per call).
    pub fn refresh_comms_from_proc(&mut self) {
        let pids: Vec<u32> = self
            .model
            .processes
            .values()
            .filter(|p| p.alive)
            .map(|p| p.pid)
            .take(512)
            .collect();
        for pid in pids {
            let stat = i32::try_from(pid)
                .ok()
                .and_then(|pid| procfs::process::Process::new(pid).ok())
                .and_then(|p| p.stat().ok());
            if let Some(stat) = stat {
                let name = stat.comm.as_str();
                if !name.is_empty() && self.comms.get(&pid).map(Text::as_str) != Some(name) {
                    self.comms.insert(pid, Text::from(name));
                }
            }
        }
    }

    pub fn comm(&self, pid: u32) -> &str {
        if let Some(c) = self.comms.get(&pid) {
            return c;
        }
        self.model
            .processes
            .get(&pid)
            .map(|p| p.comm.as_str())
            .unwrap_or("?")
    }

    /// "1234 comm", the name with its control characters made visible.
    /// "PID COMM", and "@container" (its name or short id) for a process
    /// in a container: channels and regions between containers show both.
    pub fn who(&self, pid: u32) -> String {
        match self.model.container(pid) {
            Some(c) => format!("{pid} {}@{}", Clean(self.comm(pid)), Clean(c.short())),
            None => format!("{pid} {}", Clean(self.comm(pid))),
        }
    }

    pub fn channel_rates(&self, id: &str) -> (f64, f64) {
        self.channel_flow.get(id).map_or((0.0, 0.0), |f| {
            (
                f.bytes.rate(self.now_ns, self.first_ns),
                f.msgs.rate(self.now_ns, self.first_ns),
            )
        })
    }

    pub fn process_rates(&self, pid: u32) -> (f64, f64) {
        self.process_flow.get(&pid).map_or((0.0, 0.0), |f| {
            (
                f.bytes.rate(self.now_ns, self.first_ns),
                f.msgs.rate(self.now_ns, self.first_ns),
            )
        })
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.max(self.model.lost)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewId {
    Overview,
    Channels,
    Regions,
    Races,
    Processes,
}

impl ViewId {
    pub const ALL: [ViewId; 5] = [
        ViewId::Overview,
        ViewId::Channels,
        ViewId::Regions,
        ViewId::Races,
        ViewId::Processes,
    ];

    pub fn title(self) -> &'static str {
        match self {
            ViewId::Overview => "Overview",
            ViewId::Channels => "Channels",
            ViewId::Regions => "Regions",
            ViewId::Races => "Races",
            ViewId::Processes => "Processes",
        }
    }

    pub fn index(self) -> usize {
        ViewId::ALL.iter().position(|v| *v == self).unwrap_or(0)
    }
}

/// What a view asks of the app after a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Not for this view.
    Ignored,
    Handled,
    /// Filter every view on this process.
    SelectPid(u32),
}

/// A view's list state: selection, filter, sort and drill-down.
#[derive(Debug, Clone, Default)]
pub struct ListState {
    pub selected: usize,
    pub filter: String,
    pub sort: usize,
    /// Enter was pressed on the selection: show its detail.
    pub detail: bool,
}

impl ListState {
    /// Movement keys over `len` rows; Enter and Esc toggle the detail.
    pub fn nav(&mut self, k: KeyEvent, len: usize, sorts: usize) -> Action {
        let last = len.saturating_sub(1);
        match k.code {
            KeyCode::Down | KeyCode::Char('j') => self.selected = (self.selected + 1).min(last),
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::PageDown => self.selected = (self.selected + 10).min(last),
            KeyCode::PageUp => self.selected = self.selected.saturating_sub(10),
            KeyCode::Home | KeyCode::Char('g') => self.selected = 0,
            KeyCode::End | KeyCode::Char('G') => self.selected = last,
            KeyCode::Char('s') if sorts > 0 => {
                self.sort = (self.sort + 1) % sorts;
                self.selected = 0;
            }
            KeyCode::Enter if len > 0 => self.detail = true,
            KeyCode::Esc if self.detail => self.detail = false,
            _ => return Action::Ignored,
        }
        Action::Handled
    }

    pub fn clamp(&mut self, len: usize) {
        self.selected = self.selected.min(len.saturating_sub(1));
        if len == 0 {
            self.detail = false;
        }
    }

    /// Case-insensitive substring match of the filter on any of `fields`.
    pub fn matches(&self, fields: &[&str]) -> bool {
        if self.filter.is_empty() {
            return true;
        }
        let needle = self.filter.to_lowercase();
        fields.iter().any(|f| f.to_lowercase().contains(&needle))
    }
}
