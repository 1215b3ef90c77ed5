//! Arming windows and turning collisions into findings.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use ipcwatch_common::race::{CollisionEvent, MAX_SLOTS, Slot};
use std::os::fd::OwnedFd;

use crate::decode::{comm, comm_text};
use crate::kernel::loader::Probes;
use crate::model::Model;
use crate::race::hotwords::HotWords;
use crate::race::insn::{WriteInsn, write_before, write_before_unaligned};
use crate::race::symbols::{Frame, Symbols, read_memory};
use crate::record::{Access, RaceLine, Text, WriteSampleLine};

#[derive(Debug, Clone)]
pub struct DetectorOptions {
    pub enabled: bool,
    /// How long a word stays armed.
    pub window: Duration,
    /// Time from the start of one window to the start of the next.
    pub period: Duration,
    /// Words armed at once (each costs one of 4 debug registers per thread).
    pub words: usize,
    /// How often regions are sampled for hot words.
    pub sample_every: Duration,
    /// Watch a word less often after [`QUIET_WINDOWS`] windows that found
    /// nothing new on it (then period x2 per quiet window, up to
    /// x[`MAX_BACKOFF`]); off in deep mode, which wants every sample.
    pub backoff: bool,
}

/// The longest a quiet word waits, in periods (250 ms -> 2 s).
pub const MAX_BACKOFF: u32 = 8;
/// Windows without a new finding before a word starts to back off.
pub const QUIET_WINDOWS: u32 = 4;

impl Default for DetectorOptions {
    fn default() -> Self {
        DetectorOptions {
            enabled: true,
            window: Duration::from_millis(5),
            period: Duration::from_millis(250),
            words: 2,
            sample_every: Duration::from_millis(50),
            backoff: true,
        }
    }
}

struct Armed {
    slot: u32,
    region: Text,
    offset: u64,
    /// (pid, address, links)
    sites: Vec<(u32, u64, Vec<OwnedFd>)>,
}

/// A word whose last windows found nothing new: when it may be armed
/// again, and with how many mapping processes (a new one resets it).
struct Quiet {
    windows: u32,
    until: Instant,
    mappers: usize,
}

/// Counters for the summary and the docs.
#[derive(Debug, Default, Clone, Copy)]
pub struct DetectorStats {
    pub windows: u64,
    pub words_armed: u64,
    pub collisions: u64,
    /// Collisions between atomic instructions (not races).
    pub atomic: u64,
    pub findings: u64,
}

pub struct Detector {
    opts: DetectorOptions,
    hot: HotWords,
    symbols: Symbols,
    armed: Vec<Armed>,
    /// Slot -> (region, offset), kept after disarming for late events.
    slots: HashMap<u32, (Text, u64)>,
    next_slot: u32,
    window_end: Option<Instant>,
    next_window: Instant,
    next_sample: Instant,
    /// (region, offset, code sites) already reported.
    reported: HashSet<(Text, u64, u64, u64)>,
    /// Words backing off (see [`DetectorOptions::backoff`]).
    quiet: HashMap<(Text, u64), Quiet>,
    /// Slots that gave a new finding in the current window.
    found: HashSet<u32>,
    pub stats: DetectorStats,
    loaded: bool,
}

/// The thread ids of `pid` (none once it has exited).
fn threads(pid: u32) -> Vec<u32> {
    let tasks = i32::try_from(pid)
        .ok()
        .and_then(|pid| procfs::process::Process::new(pid).ok())
        .and_then(|p| p.tasks().ok());
    tasks
        .into_iter()
        .flatten()
        .filter_map(|t| u32::try_from(t.ok()?.tid).ok())
        .collect()
}

impl Detector {
    pub fn new(opts: DetectorOptions) -> Self {
        let now = Instant::now();
        Detector {
            opts,
            hot: HotWords::new(),
            symbols: Symbols::new(),
            armed: Vec::new(),
            slots: HashMap::new(),
            next_slot: 0,
            window_end: None,
            next_window: now,
            next_sample: now,
            reported: HashSet::new(),
            quiet: HashMap::new(),
            found: HashSet::new(),
            stats: DetectorStats::default(),
            loaded: false,
        }
    }

    pub fn hot_words(&self) -> &HotWords {
        &self.hot
    }

    /// Called often (every few ms) from the event loop.
    pub fn tick(&mut self, model: &Model, probes: &mut Probes, now: Instant) {
        if !self.opts.enabled {
            return;
        }
        if now >= self.next_sample {
            self.hot.sample(model);
            self.next_sample = now + self.opts.sample_every;
        }
        if let Some(end) = self.window_end {
            if now < end {
                return;
            }
            self.end_window(model, now);
            self.disarm(probes);
        }
        if now < self.next_window {
            return;
        }
        self.next_window = now + self.opts.period;
        let mappers = |region: &Text| model.regions.get(region).map_or(0, |r| r.mappings.len());
        let words = self.hot.hottest(self.opts.words, &|region, offset| {
            self.quiet
                .get(&(region.clone(), offset))
                .is_some_and(|q| now < q.until && q.mappers == mappers(region))
        });
        if words.is_empty() {
            return;
        }
        if !self.loaded {
            if probes.enable_watch().is_err() {
                self.opts.enabled = false;
                return;
            }
            self.loaded = true;
        }
        for (region, offset) in words {
            let Some(r) = model.regions.get(&region) else {
                continue;
            };
            let slot = self.next_slot;
            self.next_slot = (self.next_slot + 1) % MAX_SLOTS;
            let mut sites = Vec::new();
            for m in &r.mappings {
                if offset < m.offset || offset + 8 > m.offset + (m.end - m.start) {
                    continue;
                }
                let addr = m.start + (offset - m.offset);
                match probes.watch(slot, m.pid, addr, &threads(m.pid)) {
                    Ok(links) => {
                        tracing::debug!(
                            "armed slot {slot} pid {} addr {addr:#x}: {} links",
                            m.pid,
                            links.len()
                        );
                        sites.push((m.pid, addr, links));
                    }
                    Err(e) => {
                        tracing::debug!("arming pid {} failed: {e}", m.pid);
                    }
                }
            }
            self.slots.insert(slot, (region.clone(), offset));
            self.stats.words_armed += 1;
            self.armed.push(Armed {
                slot,
                region,
                offset,
                sites,
            });
        }
        self.stats.windows += 1;
        self.window_end = Some(now + self.opts.window);
    }

    /// After a window: words that gave no new finding wait longer before
    /// they are armed again; a word with a new finding starts over.
    fn end_window(&mut self, model: &Model, now: Instant) {
        if !self.opts.backoff {
            return;
        }
        for a in &self.armed {
            let key = (a.region.clone(), a.offset);
            if self.found.contains(&a.slot) {
                self.quiet.remove(&key);
                continue;
            }
            let mappers = model.regions.get(&a.region).map_or(0, |r| r.mappings.len());
            let q = self.quiet.entry(key).or_insert(Quiet {
                windows: 0,
                until: now,
                mappers,
            });
            if q.mappers != mappers {
                q.windows = 0;
                q.mappers = mappers;
            }
            q.windows += 1;
            // The first QUIET_WINDOWS windows keep the period: a race needs
            // both writers running at once, which may take a few tries.
            let over = q.windows.saturating_sub(QUIET_WINDOWS);
            let factor = 1u32 << over.min(MAX_BACKOFF.ilog2());
            q.until = now + self.opts.period * factor - self.opts.window;
        }
        self.found.clear();
    }

    /// Disarm every watchpoint (end of a window, or of the recording).
    pub fn disarm(&mut self, probes: &mut Probes) {
        for a in self.armed.drain(..) {
            let _ = (a.slot, &a.region, a.offset);
            for (pid, addr, links) in a.sites {
                probes.unwatch(pid, addr, links);
            }
        }
        self.window_end = None;
    }

    /// The instruction that did a trapped write, from the live process.
    fn write_insn(&self, pid: u32, trap_ip: u64) -> (Option<WriteInsn>, Frame) {
        // The writing instruction ends at the trap: symbolize the byte
        // before it to find its function.
        let frame = self
            .symbols
            .frames(pid, &[trap_ip.saturating_sub(1)])
            .pop()
            .unwrap_or_default();
        let insn = match frame.function_start {
            Some(start) if trap_ip > start && trap_ip - start < 1 << 20 => {
                read_memory(pid, start, (trap_ip - start) as usize)
                    .and_then(|code| write_before(&code, start, trap_ip))
            }
            _ => None,
        }
        .or_else(|| {
            read_memory(pid, trap_ip - 15, 15).and_then(|c| write_before_unaligned(&c, trap_ip))
        });
        // Name the line of the writing instruction itself.
        let frame = match &insn {
            Some(w) => self.symbols.frames(pid, &[w.ip]).pop().unwrap_or(frame),
            None => frame,
        };
        (insn, frame)
    }

    fn access(&self, probes: &Probes, s: &Slot, insn_frame: &Frame) -> Access {
        let stack_ips = probes.stack(s.stack);
        // The kernel's first frame is the trap address; the write itself
        // is `insn_frame`. Callers follow (frame-pointer walk).
        let mut frames = vec![insn_frame.clone()];
        frames.extend(
            self.symbols
                .frames(s.pid, stack_ips.get(1..).unwrap_or(&[])),
        );
        // Name the first frame in the program's own code, not a standard
        // library helper such as core::ptr::write_volatile.
        let own = frames
            .iter()
            .find(|f| f.function.is_some() && !is_library(f))
            .unwrap_or(insn_frame);
        Access {
            pid: s.pid,
            tid: s.tid,
            comm: comm_text(&s.comm),
            ip: insn_frame.ip,
            function: own.function.clone(),
            file: own.file.clone(),
            line: own.line,
            stack: frames.iter().map(Frame::describe).collect(),
            locks: Vec::new(),
            ts_ns: s.start_ns,
        }
    }

    /// Deep mode: a trapped write as a `write_sample` line.
    pub fn sample_line(&self, c: &CollisionEvent) -> Option<WriteSampleLine> {
        let (region, offset) = self.slots.get(&c.slot)?.clone();
        Some(WriteSampleLine {
            ts_ns: c.hdr.ts_ns,
            region,
            offset,
            pid: c.hdr.pid,
            tid: c.hdr.tid,
            comm: comm(&c.hdr),
            ip: c.ip,
        })
    }

    /// A collision from the kernel: a finding, unless both writes were...
    /// at least one was an atomic instruction (a synchronization word), or
    /// the same race was already reported.
    pub fn on_collision(&mut self, c: &CollisionEvent, probes: &Probes) -> Option<RaceLine> {
        self.stats.collisions += 1;
        let (region, offset) = self.slots.get(&c.slot)?.clone();
        let second = Slot {
            tid: c.hdr.tid,
            pid: c.hdr.pid,
            start_ns: c.hdr.ts_ns,
            ip: c.ip,
            stack: c.stack,
            comm: c.hdr.comm,
        };
        let first = c.other;
        let key = (
            region.clone(),
            offset,
            first.ip.min(second.ip),
            first.ip.max(second.ip),
        );
        if self.reported.contains(&key) {
            return None;
        }
        let (i1, f1) = self.write_insn(first.pid, first.ip);
        let (i2, f2) = self.write_insn(second.pid, second.ip);
        if i1.as_ref().is_some_and(|w| w.atomic) || i2.as_ref().is_some_and(|w| w.atomic) {
            self.stats.atomic += 1;
            self.reported.insert(key);
            return None;
        }
        self.reported.insert(key);
        self.stats.findings += 1;
        self.found.insert(c.slot);
        let a1 = self.access(probes, &first, &f1);
        let a2 = self.access(probes, &second, &f2);
        let site = |a: &Access, i: &Option<WriteInsn>| {
            let mut s = match (&a.function, &a.file, a.line) {
                (Some(f), Some(file), Some(line)) => {
                    let short = file.rsplit('/').next().unwrap_or(file);
                    format!("{f} at {short}:{line}")
                }
                (Some(f), _, _) => f.clone(),
                _ => format!("{:#x}", a.ip),
            };
            if let Some(w) = i {
                s.push_str(&format!(", `{}`", w.text));
            }
            format!("{}[{}] ({s})", a.comm, a.pid)
        };
        let explanation = format!(
            "{} and {} wrote {}+{:#x} at the same time: no lock, semaphore or message kept the two writes apart",
            site(&a1, &i1),
            site(&a2, &i2),
            region,
            offset
        );
        Some(RaceLine {
            ts_ns: c.hdr.ts_ns,
            kind: Text::const_new("shm-write-write"),
            region: Some(region),
            channel: None,
            offset: Some(offset),
            len: 8,
            accesses: vec![a1, a2],
            evidence: Text::const_new("collision"),
            confidence: if i1.is_some() && i2.is_some() {
                0.95
            } else {
                0.8
            },
            explanation,
        })
    }
}

/// A frame in a language runtime rather than in the program's own code.
fn is_library(f: &Frame) -> bool {
    let func = f.function.as_deref().unwrap_or("");
    let file = f.file.as_deref().unwrap_or("");
    [
        "core::", "std::", "alloc::", "<core::", "<std::", "<alloc::",
    ]
    .iter()
    .any(|p| func.starts_with(p))
        || file.starts_with("/rustc/")
}
