//! Arming windows and turning collisions into findings.
//!
//! Each window arms the hottest words that are not backing off. When it
//! ends, the watchpoints' hit counts tell which processes wrote each word,
//! and the kernel's `SEEN` set which instructions did:
//! - a word written by an atomic instruction anywhere is a
//!   synchronization word (a lock, a lock-free head): collisions there are
//!   not races, even between two plain stores (the release store of a
//!   spinlock is one), and it is watched rarely after;
//! - a word written by one process only, window after window, cannot
//!   collide across processes: it gives way to other candidates;
//! - collisions wait for the end of their window so that this is known
//!   before they are judged.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use ipcwatch_common::race::{CollisionEvent, MAX_SLOTS, Slot};

use crate::decode::{comm, comm_text};
use crate::kernel::loader::{Probes, hits};
use crate::model::Model;
use crate::race::hotwords::{HotWords, SamplerOptions};
use crate::race::insn::{WriteInsn, write_before, write_before_unaligned};
use crate::race::symbols::{Frame, Symbols, read_memory};
use crate::record::{
    Access, ArmedWord, DetectorSummary, HEAT_ITEMS, HeatLine, HotPageLine, HotWordLine, RaceLine,
    Text, WriteSampleLine,
};

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
    pub sampler: SamplerOptions,
    /// Watchpoint descriptors per window at most (one per thread and word):
    /// processes with more threads are watched a part at a time.
    pub max_links: usize,
    /// The symbolizer's command (program and arguments); None: this
    /// program with `symbolize-worker` (a test binary names ipcwatch's).
    pub symbolizer: Option<Vec<std::ffi::OsString>>,
}

/// The longest a quiet word waits, in periods (250 ms -> 2 s).
pub const MAX_BACKOFF: u32 = 8;
/// Windows without a new finding before a word starts to back off.
pub const QUIET_WINDOWS: u32 = 4;
/// Windows with writes, all from one process, before a word gives way.
pub const SINGLE_WINDOWS: u32 = 3;
/// Time a word written by two processes on different CPUs of a busy
/// machine is watched before it may back off: its windows grow from
/// `window` up to x[`MAX_STRETCH`] meanwhile. There the two writers seldom
/// run at the same moment, and a collision needs them to; a synchronized
/// word pays this once. (Writers on one CPU never collide: the hold keeps
/// that CPU. A quiet machine needs no more than the first windows.)
pub const EXPLORE: Duration = Duration::from_millis(500);
/// The longest window, in base windows.
pub const MAX_STRETCH: u32 = 8;
/// Traps per base window below which two writers on different CPUs
/// explore with longer windows on an idle machine too: a rarely written
/// word (1,000 writes a second) gives a few writes a window, each with a
/// chance of one in twenty to meet the other's; a hot word collides in
/// its first window or never.
pub const SPARSE_TRAPS: u64 = 64;
/// Windows in a row, at most, in which a word's writers all ran on one CPU
/// and that are not counted as quiet: no collision is possible there (the
/// hold keeps that CPU), and the scheduler may keep two sleepy writers on
/// one CPU for seconds. After these, pinned writers back off as usual.
pub const MAX_TOGETHER: u32 = 40;
/// Writes from one process alone that make a word look single-writer
/// before [`SINGLE_WINDOWS`] windows.
pub const SINGLE_TRAPS: u64 = 16;
/// How long a synchronization word waits before it is looked at again, and
/// a single-writer word at most (unless its mappers change). A
/// single-writer word first waits [`SET_ASIDE_FIRST`], then twice as long
/// each time it is seen alone again: on a busy machine two racing writers
/// may take turns on one CPU for a while.
pub const SET_ASIDE: Duration = Duration::from_secs(30);
pub const SET_ASIDE_FIRST: Duration = Duration::from_secs(2);
/// Words listed in the summary.
const SUMMARY_WORDS: usize = 64;
/// Words remembered at most; those armed longest ago go first.
const MAX_KNOWN_WORDS: usize = 4096;

impl Default for DetectorOptions {
    fn default() -> Self {
        DetectorOptions {
            enabled: true,
            window: Duration::from_millis(5),
            period: Duration::from_millis(250),
            words: 2,
            sample_every: Duration::from_millis(50),
            backoff: true,
            sampler: SamplerOptions::default(),
            max_links: 256,
            symbolizer: None,
        }
    }
}

/// One process's watchpoints on an armed word.
struct Site {
    pid: u32,
    addr: u64,
    /// (thread, its watchpoint).
    fds: Vec<(u32, OwnedFd)>,
}

struct Armed {
    slot: u32,
    /// How long this window lasts.
    window: Duration,
    region: Text,
    offset: u64,
    sites: Vec<Site>,
}

/// What the windows taught about one word.
#[derive(Default)]
struct Word {
    windows: u64,
    traps: u64,
    /// Processes seen writing it, ever (for the summary).
    writers: BTreeSet<u32>,
    /// Processes seen writing it since its mappers last changed.
    recent: BTreeSet<u32>,
    /// Writes trapped since its mappers last changed.
    recent_traps: u64,
    /// Times it was found written by one process alone.
    single: u32,
    /// Windows in which it was written.
    written: u32,
    /// Time it was armed.
    armed: Duration,
    /// Its last window saw two writers on different CPUs, on a busy
    /// machine or writing rarely.
    contended: bool,
    /// Windows in a row in which its writers all ran on one CPU.
    together: u32,
    /// A finding was made on it.
    reported: bool,
    /// Written by an atomic instruction: a synchronization word.
    sync: bool,
    /// Windows in a row without a new finding.
    quiet: u32,
    /// Not armed again before this, unless its mappers change.
    until: Option<Instant>,
    mappers: usize,
    last_armed: Option<Instant>,
    /// Collisions waiting for the end of the window.
    pending: Vec<Examined>,
}

/// A collision, decoded and symbolized when it came.
struct Examined {
    slot: u32,
    ts_ns: u64,
    /// (region, offset, lower ip, higher ip): one finding per key.
    key: (Text, u64, u64, u64),
    /// Trap addresses of the first and second write.
    ips: (u64, u64),
    insns: (Option<WriteInsn>, Option<WriteInsn>),
    /// Both writes, when both instructions were decoded.
    accesses: Option<(Access, Access)>,
}

/// Counters for the summary and the docs.
#[derive(Debug, Default, Clone, Copy)]
pub struct DetectorStats {
    pub windows: u64,
    /// Writes trapped in the windows that ended.
    pub traps: u64,
    pub words_armed: u64,
    pub collisions: u64,
    /// Collisions read after their slot was armed on another word (not
    /// judged).
    pub stale: u64,
    /// Collisions on synchronization words or between atomic instructions
    /// (not races).
    pub atomic: u64,
    /// Collisions whose writing instruction could not be read or decoded
    /// (not reported).
    pub undecoded: u64,
    pub findings: u64,
    /// Processes or threads that could not be watched.
    pub skipped: u64,
}

pub struct Detector {
    opts: DetectorOptions,
    hot: HotWords,
    symbols: Symbols,
    armed: Vec<Armed>,
    /// Slot -> (region, offset), kept after disarming for late events.
    slots: HashMap<u32, (Text, u64)>,
    /// The (process, address) pairs each slot watches now: a trap that
    /// comes late (the ring read behind) from a slot armed since on
    /// another word is not that word's.
    slot_sites: HashMap<u32, Vec<(u32, u64)>>,
    next_slot: u32,
    window_end: Option<Instant>,
    next_window: Instant,
    next_sample: Instant,
    /// (region, offset, code sites) already reported.
    reported: HashSet<(Text, u64, u64, u64)>,
    words: HashMap<(Text, u64), Word>,
    /// Slots that gave a new finding in the current window.
    found: HashSet<u32>,
    /// (pid, instruction address) -> atomic or not (None: unreadable).
    atomic_at: HashMap<(u32, u64), Option<bool>>,
    /// Where the next window starts in the thread list of a process with
    /// more threads than the descriptor budget allows at once.
    rotation: HashMap<u32, usize>,
    /// Processes already warned about (once each).
    warned: HashSet<(u32, &'static str)>,
    findings: Vec<RaceLine>,
    warnings: Vec<String>,
    pub stats: DetectorStats,
    loaded: bool,
}

/// The thread ids of `pid` (none once it has exited).
fn threads(pid: u32) -> Vec<u32> {
    // The task directory's names alone: procfs's Process found none in
    // Debian 12's 6.1 (QEMU guest), so no thread was ever armed there.
    let mut tids: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    tids
}

/// The CPU thread `tid` of `pid` last ran on.
fn last_cpu(pid: u32, tid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    // After the command name (in parentheses, which may hold anything),
    // field 39 is the processor: the 37th after the closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(36)?.parse().ok()
}

/// More tasks running now, besides ipcwatch, than the machine has CPUs
/// (/proc/loadavg).
fn machine_busy() -> bool {
    let running = std::fs::read_to_string("/proc/loadavg").ok().and_then(|s| {
        let field = s.split_whitespace().nth(3)?;
        field.split('/').next()?.parse::<usize>().ok()
    });
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // ipcwatch itself is one of them.
    running.is_some_and(|r| r > cpus + 1)
}

/// Raise the soft limit on open descriptors to the hard one: every
/// watched thread costs one.
fn raise_nofile() {
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

impl Detector {
    pub fn new(opts: DetectorOptions) -> Self {
        let now = Instant::now();
        let symbols = opts
            .symbolizer
            .clone()
            .map_or_else(Symbols::new, Symbols::with_worker);
        if opts.enabled {
            raise_nofile();
        }
        Detector {
            hot: HotWords::new(opts.sampler.clone()),
            opts,
            symbols,
            armed: Vec::new(),
            slots: HashMap::new(),
            slot_sites: HashMap::new(),
            next_slot: 0,
            window_end: None,
            next_window: now,
            next_sample: now,
            reported: HashSet::new(),
            words: HashMap::new(),
            found: HashSet::new(),
            atomic_at: HashMap::new(),
            rotation: HashMap::new(),
            warned: HashSet::new(),
            findings: Vec::new(),
            warnings: Vec::new(),
            stats: DetectorStats::default(),
            loaded: false,
        }
    }

    pub fn hot_words(&self) -> &HotWords {
        &self.hot
    }

    /// What the detector counted so far (windows, traps, findings...).
    pub fn stats(&self) -> DetectorStats {
        self.stats
    }

    /// Findings made since the last call.
    pub fn take_findings(&mut self) -> Vec<RaceLine> {
        std::mem::take(&mut self.findings)
    }

    /// What was skipped since the last call, for `warning` lines.
    pub fn take_warnings(&mut self) -> Vec<String> {
        let mut w = std::mem::take(&mut self.hot.warnings);
        w.append(&mut self.warnings);
        w
    }

    fn warn_once(&mut self, pid: u32, what: &'static str, message: String) {
        self.stats.skipped += 1;
        if self.warned.insert((pid, what)) {
            self.warnings.push(message);
        }
    }

    /// Called often (every few ms) from the event loop.
    pub fn tick(&mut self, model: &Model, probes: &mut Probes, now: Instant) {
        if !self.opts.enabled {
            return;
        }
        if now >= self.next_sample {
            self.hot.sample(model, now);
            self.next_sample = now + self.opts.sample_every;
        }
        if let Some(end) = self.window_end {
            if now < end {
                return;
            }
            self.end_window(model, probes, now);
        }
        if now < self.next_window {
            return;
        }
        self.next_window = now + self.opts.period;
        let mappers = |region: &Text| model.regions.get(region).map_or(0, |r| r.mappings.len());
        let waiting = |w: &Word, region: &Text| {
            w.until.is_some_and(|u| now < u) && w.mappers == mappers(region)
        };
        // Words already seen written by two processes, not synchronization
        // words, not found racing yet and not quiet for long, take half
        // of the window's words, those armed longest ago first: the
        // sampler reads hot pages in turns, and a racing word that changes
        // no faster than the words around it would otherwise wait for its
        // page's turn to be armed again. The other half stays the
        // sampler's, so that two-writer words guarded by a lock cannot
        // keep new candidates out.
        let mut promising: Vec<(Option<Instant>, Text, u64)> = self
            .words
            .iter()
            .filter(|((region, _), w)| {
                w.recent.len() >= 2
                    && !w.sync
                    && !w.reported
                    && w.quiet <= QUIET_WINDOWS
                    && !waiting(w, region)
                    && mappers(region) >= 2
            })
            .map(|((region, offset), w)| (w.last_armed, region.clone(), *offset))
            .collect();
        promising.sort();
        let mut words: Vec<(Text, u64)> = promising
            .into_iter()
            .take(self.opts.words.div_ceil(2))
            .map(|(_, region, offset)| (region, offset))
            .collect();
        let rest = self.opts.words - words.len();
        if rest > 0 {
            let chosen = words.clone();
            words.extend(self.hot.hottest(rest, &|region, offset| {
                chosen.iter().any(|(r, o)| r == region && *o == offset)
                    || self
                        .words
                        .get(&(region.clone(), offset))
                        .is_some_and(|w| waiting(w, region))
            }));
        }
        if words.is_empty() {
            return;
        }
        if !self.loaded {
            if let Err(e) = probes.enable_watch() {
                self.warnings.push(format!(
                    "race detector: cannot load the watchpoint program ({e}): no collision sampling"
                ));
                self.opts.enabled = false;
                return;
            }
            self.loaded = true;
        }
        // Words written by two processes that have not collided yet get
        // longer windows, until they have been watched for EXPLORE.
        let stretch = words
            .iter()
            .filter_map(|k| self.words.get(k))
            .filter(|w| !w.sync && w.contended && w.armed < EXPLORE)
            .map(|w| 1u32 << w.quiet.min(MAX_STRETCH.ilog2()))
            .max()
            .unwrap_or(1);
        let window = self.opts.window * stretch;
        // The descriptor budget, shared by every process of every word.
        let sites: usize = words
            .iter()
            .filter_map(|(r, _)| model.regions.get(r))
            .map(|r| r.mappings.len())
            .sum();
        let per_site = (self.opts.max_links / sites.max(1)).max(1);
        for (region, offset) in words {
            let Some(r) = model.regions.get(&region) else {
                continue;
            };
            let slot = self.next_slot;
            self.next_slot = (self.next_slot + 1) % MAX_SLOTS;
            probes.clear_seen(slot);
            let mut sites = Vec::new();
            for m in &r.mappings {
                if offset < m.offset || offset + 8 > m.offset + (m.end - m.start) {
                    continue;
                }
                let addr = m.start + (offset - m.offset);
                let tids = self.some_threads(m.pid, per_site);
                match probes.watch(slot, m.pid, addr, &tids) {
                    Ok(armed) => {
                        self.note_failures(m.pid, &region, offset, tids.len(), &armed.failed);
                        tracing::debug!(
                            "armed slot {slot} pid {} addr {addr:#x}: {} links",
                            m.pid,
                            armed.fds.len()
                        );
                        sites.push(Site {
                            pid: m.pid,
                            addr,
                            fds: armed.fds,
                        });
                    }
                    Err(e) => {
                        tracing::debug!("arming pid {} failed: {e}", m.pid);
                    }
                }
            }
            self.slots.insert(slot, (region.clone(), offset));
            self.slot_sites
                .insert(slot, sites.iter().map(|s| (s.pid, s.addr)).collect());
            let w = self.words.entry((region.clone(), offset)).or_default();
            w.last_armed = Some(now);
            if w.windows == 0 {
                w.mappers = r.mappings.len();
            }
            self.stats.words_armed += 1;
            self.armed.push(Armed {
                slot,
                window,
                region,
                offset,
                sites,
            });
        }
        self.stats.windows += 1;
        self.window_end = Some(now + window);
        self.forget_old_words();
    }

    /// At most `n` of `pid`'s threads, taking turns from window to window.
    fn some_threads(&mut self, pid: u32, n: usize) -> Vec<u32> {
        let all = threads(pid);
        if all.len() <= n {
            return all;
        }
        self.warn_once(
            pid,
            "threads",
            format!(
                "race detector: pid {pid} has {} threads, more than the {n} watchpoint descriptors it may use per word: its threads are watched {n} at a time, in turns",
                all.len()
            ),
        );
        let start = self.rotation.entry(pid).or_default();
        let from = *start % all.len();
        *start = from + n;
        all.iter().cycle().skip(from).take(n).copied().collect()
    }

    /// Warn when a process could not be watched at all, or ran out of
    /// descriptors.
    fn note_failures(
        &mut self,
        pid: u32,
        region: &Text,
        offset: u64,
        asked: usize,
        failed: &[(u32, std::io::Error)],
    ) {
        if failed.is_empty() {
            return;
        }
        let errno = |e: &std::io::Error| e.raw_os_error().unwrap_or(0);
        if failed
            .iter()
            .any(|(_, e)| errno(e) == libc::EMFILE || errno(e) == libc::ENFILE)
        {
            self.warn_once(
                pid,
                "descriptors",
                format!("race detector: out of file descriptors while watching pid {pid}: some of its threads go unwatched"),
            );
        }
        let busy = failed
            .iter()
            .filter(|(_, e)| matches!(errno(e), libc::ENOSPC | libc::EBUSY))
            .count();
        if busy > 0 && busy == asked {
            self.warn_once(
                pid,
                "debug registers",
                format!(
                    "race detector: the debug registers of pid {pid} are all taken (by a debugger or another perf user): its writes to {region}+{offset:#x} are not watched"
                ),
            );
        } else if busy > 0 {
            self.stats.skipped += 1;
        }
        // Anything else but a thread gone (ESRCH) is a watchpoint the
        // kernel refuses: said once per process, with the kernel's reason,
        // never silently sampled in vain.
        if let Some((tid, e)) = failed.iter().find(|(_, e)| {
            !matches!(
                errno(e),
                libc::EMFILE | libc::ENFILE | libc::ENOSPC | libc::EBUSY | libc::ESRCH
            )
        }) {
            self.warn_once(
                pid,
                "refused",
                format!(
                    "race detector: the kernel refused a write watchpoint on thread {tid} of pid {pid} ({e}): its writes to {region}+{offset:#x} are not watched"
                ),
            );
        }
    }

    /// Keep the per-word memory bounded.
    fn forget_old_words(&mut self) {
        if self.words.len() <= MAX_KNOWN_WORDS {
            return;
        }
        let mut ages: Vec<Option<Instant>> = self.words.values().map(|w| w.last_armed).collect();
        let cut = ages.len() - MAX_KNOWN_WORDS;
        ages.select_nth_unstable(cut);
        let oldest = ages[cut];
        self.words
            .retain(|_, w| w.last_armed >= oldest || !w.pending.is_empty());
    }

    /// After a window: who wrote each word and with what, then the
    /// window's collisions judged, then when each word is armed again.
    fn end_window(&mut self, model: &Model, probes: &mut Probes, now: Instant) {
        let armed = std::mem::take(&mut self.armed);
        for a in &armed {
            let mut writers = BTreeSet::new();
            let mut traps = 0;
            let mut cpus = BTreeSet::new();
            for site in &a.sites {
                let mut n = 0;
                for (tid, fd) in &site.fds {
                    let h = hits(fd);
                    if h > 0 {
                        cpus.extend(last_cpu(site.pid, *tid));
                    }
                    n += h;
                }
                if n > 0 {
                    writers.insert(site.pid);
                }
                traps += n;
            }
            // Two writers that never collided, on different CPUs of a busy
            // machine or writing rarely: they may just not have run at the
            // same moment. (On one CPU they never can: the hold keeps that
            // CPU, and such a window is not counted.)
            let stretch = (a.window.as_nanos() / self.opts.window.as_nanos().max(1)).max(1);
            let sparse = u128::from(traps) < u128::from(SPARSE_TRAPS) * stretch;
            let contended = writers.len() >= 2 && cpus.len() >= 2 && (sparse || machine_busy());
            let together = writers.len() >= 2 && cpus.len() == 1;
            tracing::debug!(
                "window over: {}+{:#x} for {:?}: {traps} traps by {writers:?} on CPUs {cpus:?}",
                a.region,
                a.offset,
                a.window
            );
            let seen = probes.seen(a.slot);
            let ips: Vec<(u32, u64)> = (0..(seen.n as usize).min(seen.ips.len()))
                .map(|i| (seen.pids[i], seen.ips[i]))
                .collect();
            let sync = ips
                .iter()
                .any(|&(pid, ip)| self.is_atomic(pid, ip) == Some(true));
            let key = (a.region.clone(), a.offset);
            let w = self.words.entry(key.clone()).or_default();
            w.windows += 1;
            w.traps += traps;
            self.stats.traps += traps;
            w.writers.extend(writers.iter().copied());
            w.recent.extend(writers.iter().copied());
            w.recent_traps += traps;
            w.sync |= sync;
            if traps > 0 {
                w.written += 1;
            }
            w.contended = contended;
            if together {
                w.together += 1;
            } else {
                w.together = 0;
                w.armed += a.window;
            }
            let pending = std::mem::take(&mut w.pending);
            for seen in pending {
                self.judge(seen);
            }
        }
        for a in &armed {
            self.back_off(model, a, now);
        }
        self.found.clear();
        for a in armed {
            for site in a.sites {
                probes.unwatch(site.pid, site.addr, site.fds);
            }
        }
        self.window_end = None;
    }

    /// When `a`'s word is armed again.
    fn back_off(&mut self, model: &Model, a: &Armed, now: Instant) {
        let mappers = model.regions.get(&a.region).map_or(0, |r| r.mappings.len());
        let found = self.found.contains(&a.slot);
        let (period, window, backoff) = (self.opts.period, self.opts.window, self.opts.backoff);
        let Some(w) = self.words.get_mut(&(a.region.clone(), a.offset)) else {
            return;
        };
        if w.mappers != mappers {
            // A new process may write it: start over.
            w.quiet = 0;
            w.written = 0;
            w.armed = Duration::ZERO;
            w.recent.clear();
            w.recent_traps = 0;
            w.single = 0;
            w.mappers = mappers;
        }
        if !backoff || found {
            w.quiet = 0;
            w.until = None;
            return;
        }
        if w.sync {
            // Nothing to find here: let other words have the registers.
            w.until = Some(now + SET_ASIDE);
            return;
        }
        // Written by one process alone, or hardly written at all while
        // armed (fewer than 2 writes a window): a word that changes now
        // and then (a slot refreshed by a sweep) cannot be where a race
        // keeps happening.
        let rare = w.windows >= 2 && w.recent_traps < 2 * w.windows.min(8);
        if (w.recent.len() == 1 && (w.written >= SINGLE_WINDOWS || w.recent_traps >= SINGLE_TRAPS))
            || (rare && w.recent.len() < 2)
        {
            w.single += 1;
            let wait = SET_ASIDE_FIRST * (1u32 << (w.single - 1).min(4));
            w.until = Some(now + wait.min(SET_ASIDE));
            w.written = 0;
            w.recent_traps = 0;
            return;
        }
        if w.together > 0 && w.together <= MAX_TOGETHER {
            // Its writers shared one CPU: this window could not find the
            // race. Watch it again at the base period.
            w.until = None;
            return;
        }
        w.quiet += 1;
        if w.contended && w.armed < EXPLORE {
            w.until = None;
            return;
        }
        // The first QUIET_WINDOWS windows keep the period: a race needs
        // both writers running at once, which may take a few tries.
        let over = w.quiet.saturating_sub(QUIET_WINDOWS);
        let factor = 1u32 << over.min(MAX_BACKOFF.ilog2());
        w.until = Some(now + period * factor - window);
    }

    /// End of the recording: close the open window (judging its
    /// collisions) and disarm everything.
    pub fn stop(&mut self, model: &Model, probes: &mut Probes) {
        if self.window_end.is_some() {
            self.end_window(model, probes, Instant::now());
        }
    }

    /// Whether the instruction that ends at `trap_ip` in `pid` is atomic
    /// (None: it cannot be read or decoded).
    fn is_atomic(&mut self, pid: u32, trap_ip: u64) -> Option<bool> {
        if let Some(&a) = self.atomic_at.get(&(pid, trap_ip)) {
            return a;
        }
        let a = self.write_insn(pid, trap_ip).0.map(|w| w.atomic);
        if self.atomic_at.len() > 65_536 {
            self.atomic_at.clear();
        }
        self.atomic_at.insert((pid, trap_ip), a);
        a
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
            origin: Default::default(),
        }
    }

    /// Whether `slot` watches `addr` in `pid` now.
    fn watched_now(&self, slot: u32, pid: u32, addr: u64) -> bool {
        self.slot_sites
            .get(&slot)
            .is_some_and(|s| s.contains(&(pid, addr)))
    }

    /// Deep mode: a trapped write as a `write_sample` line.
    pub fn sample_line(&self, c: &CollisionEvent) -> Option<WriteSampleLine> {
        if !self.watched_now(c.slot, c.hdr.pid, c.addr) {
            return None;
        }
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

    /// A collision from the kernel: its two writes are decoded and
    /// symbolized at once, while both processes are there; it is judged at
    /// the end of its window, when what wrote the word is known (at once
    /// if that window is over).
    pub fn on_collision(&mut self, c: &CollisionEvent, probes: &Probes) {
        self.stats.collisions += 1;
        // Both writes must be of what the slot watches now: the second
        // trapped at its address, the first in one of its processes.
        let first_watched = self
            .slot_sites
            .get(&c.slot)
            .is_some_and(|s| s.iter().any(|&(pid, _)| pid == c.other.pid));
        if !self.watched_now(c.slot, c.hdr.pid, c.addr) || !first_watched {
            self.stats.stale += 1;
            return;
        }
        let Some((region, offset)) = self.slots.get(&c.slot).cloned() else {
            return;
        };
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
        let word = (region.clone(), offset);
        let pending = self
            .words
            .get(&word)
            .is_some_and(|w| w.pending.iter().any(|p| p.key == key));
        if self.reported.contains(&key) || pending {
            return;
        }
        if self.words.get(&word).is_some_and(|w| w.sync) {
            self.stats.atomic += 1;
            return;
        }
        let (i1, f1) = self.write_insn(first.pid, first.ip);
        let (i2, f2) = self.write_insn(second.pid, second.ip);
        if i1.as_ref().is_some_and(|w| w.atomic) || i2.as_ref().is_some_and(|w| w.atomic) {
            self.stats.atomic += 1;
            self.words.entry(word).or_default().sync = true;
            self.reported.insert(key);
            return;
        }
        let accesses = match (&i1, &i2) {
            (Some(_), Some(_)) => Some((
                self.access(probes, &first, &f1),
                self.access(probes, &second, &f2),
            )),
            _ => None,
        };
        let seen = Examined {
            slot: c.slot,
            ts_ns: c.hdr.ts_ns,
            key,
            ips: (first.ip, second.ip),
            insns: (i1, i2),
            accesses,
        };
        if self.armed.iter().any(|a| a.slot == c.slot) {
            self.words.entry(word).or_default().pending.push(seen);
            return;
        }
        self.judge(seen);
    }

    /// A finding, unless the word turned out to be a synchronization word,
    /// or an instruction could not be decoded.
    fn judge(&mut self, seen: Examined) {
        let Examined {
            slot,
            ts_ns,
            key,
            ips,
            insns,
            accesses,
        } = seen;
        let (region, offset) = (key.0.clone(), key.1);
        if self
            .words
            .get(&(region.clone(), offset))
            .is_some_and(|w| w.sync)
        {
            self.stats.atomic += 1;
            return;
        }
        let ((Some(i1), Some(i2)), Some((a1, a2))) = (insns, accesses) else {
            // An instruction out of reach (the process is gone, or it ran
            // out of line in a uprobe's page) may have been atomic.
            self.stats.undecoded += 1;
            if self.stats.undecoded == 1 {
                self.warnings.push(format!(
                    "race detector: a collision on {region}+{offset:#x} was not reported: the instruction of one write could not be read or decoded (ips {:#x} and {:#x})",
                    ips.0, ips.1
                ));
            }
            return;
        };
        self.reported.insert(key);
        if let Some(w) = self.words.get_mut(&(region.clone(), offset)) {
            w.reported = true;
        }
        self.stats.findings += 1;
        self.found.insert(slot);
        let site = |a: &Access, i: &WriteInsn| {
            let s = match (&a.function, &a.file, a.line) {
                (Some(f), Some(file), Some(line)) => {
                    let short = file.rsplit('/').next().unwrap_or(file);
                    format!("{f} at {short}:{line}")
                }
                (Some(f), _, _) => f.clone(),
                _ => format!("{:#x}", a.ip),
            };
            format!("{}[{}] ({s}, `{}`)", a.comm, a.pid, i.text)
        };
        let explanation = format!(
            "{} and {} wrote {}+{:#x} at the same time: no lock, semaphore or message kept the two writes apart",
            site(&a1, &i1),
            site(&a2, &i2),
            region,
            offset
        );
        self.findings.push(RaceLine {
            ts_ns,
            kind: Text::const_new("shm-write-write"),
            region: Some(region),
            channel: None,
            offset: Some(offset),
            len: 8,
            accesses: vec![a1, a2],
            evidence: Text::const_new("collision"),
            confidence: 0.95,
            explanation,
        });
    }

    /// What the sampler and the watchpoints see now (a `heat` line): the
    /// words armed now first, then the hottest by the sampler's score,
    /// then those armed most; None when nothing was seen changing.
    pub fn heat_line(&self, ts_ns: u64) -> Option<HeatLine> {
        let armed_now: HashSet<(&Text, u64)> =
            self.armed.iter().map(|a| (&a.region, a.offset)).collect();
        let mut keys: Vec<&(Text, u64)> = self.hot.words.keys().collect();
        keys.extend(
            self.words
                .iter()
                .filter(|(_, w)| w.windows > 0)
                .map(|(k, _)| k),
        );
        keys.sort_unstable();
        keys.dedup();
        let mut words: Vec<HotWordLine> = keys
            .into_iter()
            .map(|key| {
                let heat = self.hot.words.get(key).copied().unwrap_or_default();
                let w = self.words.get(key);
                HotWordLine {
                    region: key.0.clone(),
                    offset: key.1,
                    changes: heat.changes,
                    score: (heat.score * 100.0).round() / 100.0,
                    windows: w.map_or(0, |w| w.windows),
                    traps: w.map_or(0, |w| w.traps),
                    writers: w
                        .map(|w| w.writers.iter().copied().collect())
                        .unwrap_or_default(),
                    armed: armed_now.contains(&(&key.0, key.1)),
                    sync: w.is_some_and(|w| w.sync),
                }
            })
            .collect();
        words.sort_by(|a, b| {
            b.armed
                .cmp(&a.armed)
                .then(b.score.total_cmp(&a.score))
                .then(b.windows.cmp(&a.windows))
                .then_with(|| a.region.cmp(&b.region))
                .then(a.offset.cmp(&b.offset))
        });
        words.truncate(HEAT_ITEMS);
        let pages: Vec<HotPageLine> = self
            .hot
            .hot_pages_now(HEAT_ITEMS)
            .into_iter()
            .map(|(region, page, changes, score)| HotPageLine {
                region,
                page,
                changes,
                score: (score * 100.0).round() / 100.0,
            })
            .collect();
        if words.is_empty() && pages.is_empty() {
            return None;
        }
        Some(HeatLine {
            ts_ns,
            words,
            pages,
        })
    }

    /// Counters and armed words for the trace's summary.
    pub fn summary(&self) -> Option<DetectorSummary> {
        if !self.opts.enabled && self.stats.windows == 0 {
            return None;
        }
        let mut words: Vec<ArmedWord> = self
            .words
            .iter()
            .filter(|(_, w)| w.windows > 0)
            .map(|((region, offset), w)| ArmedWord {
                region: region.clone(),
                offset: *offset,
                windows: w.windows,
                traps: w.traps,
                writers: w.writers.iter().copied().collect(),
                sync: w.sync,
            })
            .collect();
        words.sort_by(|a, b| {
            b.windows
                .cmp(&a.windows)
                .then_with(|| a.region.cmp(&b.region))
                .then(a.offset.cmp(&b.offset))
        });
        words.truncate(SUMMARY_WORDS);
        let h = self.hot.stats;
        Some(DetectorSummary {
            regions: h.regions,
            bytes_sampled: h.bytes,
            sampler_cpu_ns: h.cpu_ns,
            windows: self.stats.windows,
            collisions: self.stats.collisions,
            atomic: self.stats.atomic,
            undecoded: self.stats.undecoded,
            findings: self.stats.findings,
            skipped: self.stats.skipped + h.skipped,
            words,
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
