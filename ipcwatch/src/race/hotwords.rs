//! Hot-word discovery without trapping, for shared regions of any size.
//!
//! Two stages, both reading the region's memory through a descriptor of
//! its own (`/proc/PID/map_files/...`), never through a mapping that a
//! traced process could truncate under us (SIGBUS) and never faulting in
//! a page that nobody wrote:
//!
//! 1. **Changed pages.** A cold scan walks every region page by page,
//!    hashing each page (xxh3, 4 bytes kept per page) and comparing with
//!    the previous pass. A page whose hash moved, or that a writer just
//!    faulted in, becomes a *hot page*.
//! 2. **Changed words.** Hot pages (at most [`HOT_PAGES`]) are read again
//!    on every sample and compared word by word with their last copy.
//!    Words that keep changing gain heat; pages that stop changing cool
//!    down and give their place to newly changed ones.
//!
//! The whole sampler spends at most a fixed share of one CPU
//! ([`SamplerOptions::cpu_share`], measured with the thread's CPU clock):
//! the bigger the regions, the longer a cold pass takes, never the more
//! CPU. Memory is the page hashes (1 MiB per GiB sampled), the hot pages'
//! copies and one read buffer.
//!
//! Regular files, memfds, POSIX shm and shared anonymous memory are read
//! with `pread` (holes read as zeros without being allocated). SysV
//! segments refuse `read`; they are mapped read-only, checked with
//! `mincore` so that only pages that exist are read, and dropped from our
//! page tables after each chunk. A SysV segment cannot shrink, so that
//! mapping cannot fault.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use rustix::time::{ClockId, clock_gettime};
use xxhash_rust::xxh3::xxh3_64;

use crate::model::{Model, PAGE, Region};
use crate::record::Text;

const PAGE_BYTES: usize = PAGE as usize;

/// Hot pages compared word by word on every sample (4 KiB copy each).
pub const HOT_PAGES: usize = 128;

/// Pages read per chunk of the cold scan (one read buffer).
const CHUNK_PAGES: usize = 64;

/// Words whose heat is tracked at most; the coolest go first.
const MAX_WORDS: usize = 4096;

/// Pages found changed by the cold scan that are looked at again on the
/// next sample, at most (a uniform sample of them when more changed).
const MAX_CANDIDATES: usize = 64;

/// Samples a newly hot page keeps its place whatever its score, so that
/// it has the time to show how often it changes.
const PROBATION: u32 = 5;

/// Score of a page that changed between two samples, and again between
/// two reads made one right after the other: it changes all the time.
const FAST: f64 = 4.0;
/// Score of a page that changed between two samples only.
const SLOW: f64 = 2.0;

/// Heat added to a word that changed again between two reads made one
/// right after the other.
const FAST_WORD: f64 = 3.0;

/// Newly write-faulted pages made hot per sample, at most.
const FAULT_PAGES: usize = 32;

/// Hot pages replaced per sample, at most.
const TURNOVER: usize = HOT_PAGES / 4;

/// Page hash of a page never read (hashes are stored with bit 0 set).
const UNSEEN: u32 = 0;

#[derive(Debug, Clone)]
pub struct SamplerOptions {
    /// Share of one CPU the sampler may use (0.04 = 4%).
    pub cpu_share: f64,
}

impl Default for SamplerOptions {
    fn default() -> Self {
        SamplerOptions { cpu_share: 0.04 }
    }
}

/// How a region's bytes are read.
enum Source {
    File(File),
    /// A SysV segment: our own read-only mapping of it.
    Mapped {
        ptr: *mut u8,
        len: usize,
    },
}

// SAFETY: the mapping is read-only and owned by the Source.
unsafe impl Send for Source {}

impl Drop for Source {
    fn drop(&mut self) {
        if let Source::Mapped { ptr, len } = *self {
            // SAFETY: ptr/len come from a successful mmap that we own.
            unsafe { libc::munmap(ptr.cast(), len) };
        }
    }
}

/// Why a read could not be made.
enum ReadError {
    /// The object ends before the range asked: it was truncated.
    Short(u64),
    Io(std::io::Error),
}

impl Source {
    /// Read `buf.len()` bytes at byte `at` of the sampled extent (region
    /// offset `base + at`). Pages that do not exist read as zeros.
    fn read(&self, base: u64, at: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        match self {
            Source::File(f) => {
                let mut done = 0;
                while done < buf.len() {
                    match f.read_at(&mut buf[done..], base + at + done as u64) {
                        Ok(0) => return Err(ReadError::Short(at + done as u64)),
                        Ok(n) => done += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(ReadError::Io(e)),
                    }
                }
                Ok(())
            }
            &Source::Mapped { ptr, len } => {
                let at = at as usize;
                if at + buf.len() > len {
                    return Err(ReadError::Short(len as u64));
                }
                let pages = buf.len().div_ceil(PAGE_BYTES);
                let mut resident = vec![0u8; pages];
                // SAFETY: the range lies inside our mapping; `resident`
                // has one byte per page.
                let r =
                    unsafe { libc::mincore(ptr.add(at).cast(), buf.len(), resident.as_mut_ptr()) };
                if r != 0 {
                    return Err(ReadError::Io(std::io::Error::last_os_error()));
                }
                for (i, page) in buf.chunks_mut(PAGE_BYTES).enumerate() {
                    if resident[i] & 1 == 0 {
                        page.fill(0);
                        continue;
                    }
                    // SAFETY: a resident page of a SysV segment we map
                    // read-only; the segment cannot shrink while mapped.
                    let src = unsafe {
                        std::slice::from_raw_parts(ptr.add(at + i * PAGE_BYTES), page.len())
                    };
                    page.copy_from_slice(src);
                }
                // SAFETY: our own mapping; only our page tables change.
                unsafe { libc::madvise(ptr.add(at).cast(), buf.len(), libc::MADV_DONTNEED) };
                Ok(())
            }
        }
    }
}

/// Open the file behind a mapping, only if it is a regular file (shared
/// memory, a memfd, a SysV segment or a file on disk). A traced process may
/// map a device it can open; opening it again as root could act on the
/// device, so the link is first opened with O_PATH (which runs no driver
/// code), checked, and only then reopened for reading through that
/// descriptor (the same inode, whatever the process maps meanwhile).
pub fn open_mapped_file(pid: u32, start: u64, end: u64) -> std::io::Result<File> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let path = format!("/proc/{pid}/map_files/{start:x}-{end:x}");
    let handle = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
        .open(path)?;
    let kind = handle.metadata()?.file_type();
    if !kind.is_file() {
        let what = if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else {
            "not a regular file"
        };
        return Err(std::io::Error::other(format!(
            "the mapping {start:x}-{end:x} of pid {pid} is {what}: not read"
        )));
    }
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(format!("/proc/self/fd/{}", handle.as_raw_fd()))
}

/// Open a region through one of its mappings.
fn open_source(pid: u32, start: u64, end: u64, file_offset: u64) -> std::io::Result<Source> {
    let file = open_mapped_file(pid, start, end)?;
    let mut probe = [0u8; 1];
    match file.read_at(&mut probe, file_offset) {
        Ok(_) => return Ok(Source::File(file)),
        // SysV segments have no read(); map them instead.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
        Err(e) => return Err(e),
    }
    let len = (end - start) as usize;
    // SAFETY: a fresh read-only shared mapping of a file we opened; it is
    // unmapped when the Source drops.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            file_offset as libc::off_t,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Source::Mapped {
        ptr: ptr.cast(),
        len,
    })
}

/// One region being sampled.
struct Sampled {
    source: Source,
    /// Region offset of the first byte sampled.
    base: u64,
    /// Bytes sampled (whole pages).
    len: u64,
    /// Hash of each page at its last read ([`UNSEEN`] before the first).
    hashes: Vec<u32>,
    /// Next page of the cold scan.
    cursor: usize,
    /// The latest write fault already turned into a hot page.
    fault_seen: u64,
    /// Processes mapping it at the last sample.
    mappers: std::collections::BTreeSet<u32>,
}

impl Sampled {
    fn pages(&self) -> usize {
        (self.len / PAGE) as usize
    }
}

/// A page compared word by word on every sample.
struct HotPage {
    copy: Box<[u8]>,
    /// Samples in which it had changed (decays like word heat).
    score: f64,
    /// Samples since it became hot.
    age: u32,
    /// The sample it was last read in.
    read_at: u64,
    /// Samples in which it had changed since it became hot.
    changes: u64,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Heat {
    /// Samples in which the word had changed (decays over time).
    pub score: f64,
    pub changes: u64,
}

/// Counters for the summary.
#[derive(Debug, Clone, Copy, Default)]
pub struct SamplerStats {
    /// Regions sampled at once, at most.
    pub regions: u64,
    pub bytes: u64,
    pub cpu_ns: u64,
    pub skipped: u64,
}

pub struct HotWords {
    opts: SamplerOptions,
    sampled: HashMap<Text, Sampled>,
    /// Regions that could not be opened or read, with the mappers they
    /// had then: tried again when those change.
    failed: HashMap<Text, Vec<(u32, u64)>>,
    /// (region, page index) -> hot page.
    hot: HashMap<(Text, u64), HotPage>,
    /// Pages whose hash moved between two cold passes, with their hash
    /// then: a page that changes again by the next sample keeps changing
    /// (a counter, a lock, a head index) and becomes hot; one that does
    /// not was written once in a while (a sweep, a slot refreshed now and
    /// then) and is left to the next pass.
    candidates: Vec<(Text, u64, u32)>,
    /// Changed pages seen since the candidates were last looked at.
    candidates_seen: u64,
    rng: u64,
    /// Samples taken.
    samples: u64,
    /// (region, word offset) -> heat.
    pub words: HashMap<(Text, u64), Heat>,
    /// Order in which regions take turns in the cold scan.
    turn: usize,
    /// CPU time the sampler may still spend (ns); grows with wall time.
    credit_ns: f64,
    last: Option<Instant>,
    buf: Vec<u8>,
    /// The same chunk, read again right after.
    again: Vec<u8>,
    /// One page, read a third time.
    page: Vec<u8>,
    /// What the sampler had to skip, for `warning` lines.
    pub warnings: Vec<String>,
    pub stats: SamplerStats,
}

/// CPU time used by this thread.
fn thread_cpu_ns() -> u64 {
    let t = clock_gettime(ClockId::ThreadCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn page_hash(page: &[u8]) -> u32 {
    xxh3_64(page) as u32 | 1
}

/// Mappings that can write the region: who could race on it.
fn writers(region: &Region) -> usize {
    let mut pids: Vec<u32> = region
        .mappings
        .iter()
        .filter(|m| m.prot.contains('w'))
        .map(|m| m.pid)
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids.len()
}

/// The part of the region that its mappings cover: [first, end) region
/// offsets, in whole pages.
fn extent(region: &Region) -> Option<(u64, u64)> {
    let first = region.mappings.iter().map(|m| m.offset).min()?;
    let end = region
        .mappings
        .iter()
        .map(|m| m.offset + (m.end - m.start))
        .max()?;
    Some((first / PAGE * PAGE, end.div_ceil(PAGE) * PAGE))
}

impl Default for HotWords {
    fn default() -> Self {
        Self::new(SamplerOptions::default())
    }
}

impl HotWords {
    pub fn new(opts: SamplerOptions) -> Self {
        HotWords {
            opts,
            sampled: HashMap::new(),
            failed: HashMap::new(),
            hot: HashMap::new(),
            candidates: Vec::new(),
            candidates_seen: 0,
            samples: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
            words: HashMap::new(),
            turn: 0,
            credit_ns: 0.0,
            last: None,
            buf: vec![0; CHUNK_PAGES * PAGE_BYTES],
            again: vec![0; CHUNK_PAGES * PAGE_BYTES],
            page: vec![0; PAGE_BYTES],
            warnings: Vec::new(),
            stats: SamplerStats::default(),
        }
    }

    /// One sample: hot pages word by word, then as much of the cold scan
    /// as the CPU budget allows.
    pub fn sample(&mut self, model: &Model, now: Instant) {
        let wall = self
            .last
            .map_or(Duration::ZERO, |l| now.saturating_duration_since(l));
        self.last = Some(now);
        // Credit for at most half a second of idle time: a quiet spell
        // cannot be spent all at once later.
        self.credit_ns = (self.credit_ns + wall.as_nanos() as f64 * self.opts.cpu_share)
            .min(500_000_000.0 * self.opts.cpu_share);
        let cpu0 = thread_cpu_ns();
        self.reconcile(model);
        // Out of credit: skip this sample (a big region filled at once, a
        // slow machine); what it would have read waits.
        if self.credit_ns > 0.0 {
            self.hot_pages(cpu0);
            self.confirm_candidates(cpu0);
            self.cold_scan(model, cpu0);
        }
        let used = thread_cpu_ns().saturating_sub(cpu0);
        self.stats.cpu_ns += used;
        self.credit_ns -= used as f64;
        // Recent changes count most.
        for h in self.words.values_mut() {
            h.score *= 0.9;
        }
        self.words.retain(|_, h| h.score > 0.01);
        if self.words.len() > MAX_WORDS {
            let mut scores: Vec<f64> = self.words.values().map(|h| h.score).collect();
            let cut = scores.len() - MAX_WORDS;
            scores.select_nth_unstable_by(cut, f64::total_cmp);
            let min = scores[cut];
            self.words.retain(|_, h| h.score >= min);
        }
    }

    /// Follow the model: sample every region that two processes can write,
    /// drop the others.
    fn reconcile(&mut self, model: &Model) {
        // A region marked for removal (IPC_RMID, shm_unlink) lives on while
        // it is mapped: what counts is who maps it.
        let keep = |id: &Text| model.regions.get(id).is_some_and(|r| writers(r) >= 2);
        // Say why a region stops being sampled, unless its mappers simply
        // exited.
        let mut stopped = Vec::new();
        for (id, s) in &mut self.sampled {
            let region = model.regions.get(id);
            let now: std::collections::BTreeSet<u32> =
                region.map(|r| r.mappers()).unwrap_or_default();
            let unmapped: Vec<u32> = s
                .mappers
                .difference(&now)
                .filter(|pid| model.processes.get(pid).is_some_and(|p| p.alive))
                .copied()
                .collect();
            s.mappers = now;
            if keep(id) {
                continue;
            }
            if !unmapped.is_empty() {
                let removed = if region.is_some_and(|r| r.removed) {
                    " (and removed)"
                } else {
                    ""
                };
                stopped.push(format!(
                    "race detector: shared region {id} was unmapped{removed} by pid {unmapped:?} while it was sampled: its words are no longer sampled or watched"
                ));
            }
        }
        for message in stopped {
            self.skip(message);
        }
        self.sampled.retain(|id, _| keep(id));
        self.hot.retain(|(id, _), _| keep(id));
        self.failed.retain(|id, _| keep(id));
        for (id, region) in &model.regions {
            if writers(region) < 2 {
                continue;
            }
            let Some((first, end)) = extent(region) else {
                continue;
            };
            if let Some(s) = self.sampled.get_mut(id) {
                // New mappings can widen the part sampled.
                if (first, end) != (s.base, s.base + s.len) && first >= s.base {
                    let mut len = end - s.base;
                    match &s.source {
                        Source::Mapped { len: mapped, .. } if len > *mapped as u64 => continue,
                        Source::Mapped { .. } => {}
                        // A mapping may reach past the end of its file (a
                        // POSIX segment that shrank): widen only up to the
                        // file's end, or every pass would read past it
                        // and say again that the region shrank.
                        Source::File(f) => {
                            if let Ok(m) = f.metadata() {
                                len = len.min(m.len().saturating_sub(s.base) / PAGE * PAGE);
                            }
                            if len == s.len {
                                continue;
                            }
                        }
                    }
                    s.len = len;
                    s.hashes.resize(s.pages(), UNSEEN);
                    s.cursor = s.cursor.min(s.pages());
                }
                continue;
            }
            let mappers: Vec<(u32, u64)> =
                region.mappings.iter().map(|m| (m.pid, m.start)).collect();
            if self.failed.get(id) == Some(&mappers) {
                continue;
            }
            // Open through the mapping that covers the most.
            let mut ms: Vec<_> = region.mappings.iter().collect();
            ms.sort_by_key(|m| std::cmp::Reverse(m.end - m.start));
            let mut last_err = None;
            let opened =
                ms.iter()
                    .find_map(|m| match open_source(m.pid, m.start, m.end, m.offset) {
                        Ok(src) => Some((src, m.offset, m.end - m.start)),
                        Err(e) => {
                            last_err = Some(e);
                            None
                        }
                    });
            match opened {
                Some((source, offset, len)) => {
                    // A SysV view covers only the mapping it came from.
                    let (base, len) = match source {
                        Source::Mapped { .. } => (offset, len),
                        Source::File(_) => (first, end - first),
                    };
                    self.sampled.insert(
                        id.clone(),
                        Sampled {
                            source,
                            base,
                            len,
                            hashes: vec![UNSEEN; (len / PAGE) as usize],
                            cursor: 0,
                            fault_seen: region.last_ts,
                            mappers: region.mappers(),
                        },
                    );
                    self.stats.regions = self.stats.regions.max(self.sampled.len() as u64);
                }
                None => {
                    self.skip(
                        format!(
                            "race detector: cannot read shared region {id} through any of its {} mappings ({}); its words are not watched",
                            region.mappings.len(),
                            last_err.map_or_else(|| "no mapping".to_string(), |e| e.to_string())
                        ),
                    );
                    self.failed.insert(id.clone(), mappers);
                }
            }
        }
        // Pages that a writer just faulted in are hot at once.
        for (id, s) in &mut self.sampled {
            let Some(region) = model.regions.get(id) else {
                continue;
            };
            // Only the latest few: a process filling a region faults every
            // page once, which says nothing about where it keeps writing.
            let fresh: Vec<(u64, u64)> = region
                .recent_faults
                .iter()
                .rev()
                .take(FAULT_PAGES)
                .filter(|(ts, _)| *ts > s.fault_seen)
                .copied()
                .collect();
            s.fault_seen = fresh.first().map_or(s.fault_seen, |f| f.0);
            let mut evictable = Evictable::new(&self.hot);
            for (_, page) in fresh {
                let at = page * PAGE;
                if at < s.base || at + PAGE > s.base + s.len {
                    continue;
                }
                let key = (id.clone(), page);
                if self.hot.contains_key(&key) {
                    continue;
                }
                let mut copy = vec![0u8; PAGE_BYTES];
                if s.source.read(s.base, at - s.base, &mut copy).is_ok()
                    && evictable.make_room(&mut self.hot, SLOW)
                {
                    self.hot.insert(key, HotPage::new(copy, SLOW));
                }
            }
        }
    }

    /// Look again at the pages that changed between two passes: those that
    /// changed again since become hot, first those that change again
    /// within the next millisecond or so.
    fn confirm_candidates(&mut self, cpu0: u64) {
        self.candidates_seen = 0;
        let mut now = vec![0u8; PAGE_BYTES];
        let mut ranked: Vec<(f64, Text, u64)> = Vec::new();
        // Up to half the credit (they are a uniform sample:
        // those left out are as likely as those looked at).
        for (n, (id, page, hash)) in std::mem::take(&mut self.candidates).into_iter().enumerate() {
            if n % 16 == 15 && thread_cpu_ns().saturating_sub(cpu0) as f64 >= self.credit_ns * 0.5 {
                break;
            }
            let Some(h) = self.read_page(&id, page, &mut now) else {
                continue;
            };
            if h == hash {
                continue;
            }
            // Changed again since the pass: read it once more at once.
            let Some(again) = self.read_page(&id, page, &mut now) else {
                continue;
            };
            ranked.push((if again != h { FAST } else { SLOW }, id, page));
        }
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
        tracing::debug!(
            "hotwords: {} pages changed again ({} fast), {} hot; hottest words {:?}",
            ranked.len(),
            ranked.iter().filter(|r| r.0 >= FAST).count(),
            self.hot.len(),
            self.hottest(3, &|_, _| false)
        );
        let mut evictable = Evictable::new(&self.hot);
        for (score, id, page) in ranked {
            let key = (id, page);
            if self.hot.contains_key(&key) || !evictable.make_room(&mut self.hot, score) {
                continue;
            }
            if self.read_page(&key.0, page, &mut now).is_some() {
                self.hot.insert(key, HotPage::new(now.clone(), score));
            }
        }
    }

    /// Read page `page` of region `id` into `buf` (one page); its hash.
    fn read_page(&mut self, id: &Text, page: u64, buf: &mut [u8]) -> Option<u32> {
        let s = self.sampled.get_mut(id)?;
        let at = page * PAGE;
        if at < s.base || at + PAGE > s.base + s.len {
            return None;
        }
        s.source.read(s.base, at - s.base, buf).ok()?;
        self.stats.bytes += PAGE;
        let h = page_hash(buf);
        if let Some(slot) = s.hashes.get_mut(((at - s.base) / PAGE) as usize) {
            *slot = h;
        }
        Some(h)
    }

    /// Compare every hot page with its last copy, word by word.
    fn hot_pages(&mut self, cpu0: u64) {
        let mut now = vec![0u8; PAGE_BYTES];
        let mut gone = Vec::new();
        // At most a quarter of the credit: the cold scan must go on, or no
        // new page would ever become hot. Those read longest ago first,
        // then the hottest: every hot page gets its turn even when the
        // budget cannot read them all.
        let mut order: Vec<(u64, f64, (Text, u64))> = self
            .hot
            .iter()
            .map(|(k, hp)| (hp.read_at, hp.score, k.clone()))
            .collect();
        order.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
        self.samples += 1;
        for (n, (_, _, key)) in order.into_iter().enumerate() {
            if n % 16 == 15 && thread_cpu_ns().saturating_sub(cpu0) as f64 >= self.credit_ns / 4.0 {
                break;
            }
            let (id, page) = (&key.0, key.1);
            let Some(s) = self.sampled.get(id) else {
                gone.push(key);
                continue;
            };
            let at = page * PAGE;
            if at + PAGE > s.base + s.len || s.source.read(s.base, at - s.base, &mut now).is_err() {
                gone.push(key);
                continue;
            }
            self.stats.bytes += PAGE;
            let Some(hp) = self.hot.get_mut(&key) else {
                continue;
            };
            hp.read_at = self.samples;
            let changed = hp.copy[..] != now[..];
            let mut fast_page = false;
            if changed {
                let words = changed_words(&hp.copy, &now);
                hp.copy.copy_from_slice(&now);
                // Read it again at once: a word that changed again within
                // these few microseconds is written all the time (a
                // counter, a head index), not now and then.
                let again = s.source.read(s.base, at - s.base, &mut now).is_ok();
                self.stats.bytes += PAGE;
                let fast = if again {
                    changed_words(&hp.copy, &now)
                } else {
                    Vec::new()
                };
                for i in words {
                    let h = self
                        .words
                        .entry((id.clone(), at + i as u64 * 8))
                        .or_default();
                    h.score += if fast.contains(&i) {
                        1.0 + FAST_WORD
                    } else {
                        1.0
                    };
                    h.changes += 1;
                }
                if again {
                    hp.copy.copy_from_slice(&now);
                }
                fast_page = !fast.is_empty();
            }
            // A page that changes in every sample settles at 10, one that
            // also changes between back-to-back reads at 40.
            hp.changes += u64::from(changed);
            hp.score = hp.score * 0.9
                + if changed { 1.0 } else { 0.0 }
                + if fast_page { FAST_WORD } else { 0.0 };
            hp.age += 1;
        }
        for k in gone {
            self.hot.remove(&k);
        }
        // Pages that stopped changing make room.
        self.hot
            .retain(|_, hp| hp.score > 0.05 || hp.age < PROBATION);
    }

    /// Hash pages in chunks, regions taking turns, until the CPU credit is
    /// spent. A page whose hash moved becomes hot.
    fn cold_scan(&mut self, model: &Model, cpu0: u64) {
        let mut ids: Vec<Text> = self.sampled.keys().cloned().collect();
        if ids.is_empty() {
            return;
        }
        ids.sort();
        // Pages read per region in this sample: a region is read at most
        // once per sample, however much credit is left.
        let mut read: HashMap<Text, usize> = HashMap::new();
        // Pages that changed between two back-to-back reads (at most a
        // turnover's worth are kept: a uniform sample would be fairer, but
        // they all change all the time).
        let mut fast: Vec<((Text, u64), Vec<u8>)> = Vec::new();
        let mut idle = 0;
        // (region, what happened, whether it is no longer sampled)
        let mut broken: Vec<(Text, String, bool)> = Vec::new();
        while idle < ids.len() {
            let spent = thread_cpu_ns().saturating_sub(cpu0) as f64;
            if spent >= self.credit_ns {
                break;
            }
            self.turn = (self.turn + 1) % ids.len();
            let id = &ids[self.turn];
            if broken.iter().any(|(b, _, _)| b == id) {
                idle += 1;
                continue;
            }
            let Some(s) = self.sampled.get_mut(id) else {
                idle += 1;
                continue;
            };
            let pages = s.pages();
            let done = read.entry(id.clone()).or_default();
            if pages == 0 || *done >= pages {
                idle += 1;
                continue;
            }
            idle = 0;
            let from = s.cursor;
            let n = CHUNK_PAGES.min(pages - from).min(pages - *done);
            *done += n;
            let buf = &mut self.buf[..n * PAGE_BYTES];
            match s.source.read(s.base, from as u64 * PAGE, buf) {
                Ok(()) => {}
                Err(ReadError::Short(at)) => {
                    // Truncated (or shrunk) under us: sample what is left.
                    let keep = at / PAGE * PAGE;
                    let size = match &s.source {
                        Source::File(f) => f.metadata().map(|m| m.len()).unwrap_or(keep),
                        Source::Mapped { len, .. } => *len as u64,
                    };
                    let len = keep.min(size.saturating_sub(s.base) / PAGE * PAGE);
                    broken.push((
                        id.clone(),
                        format!(
                            "race detector: shared region {id} shrank while sampled (now {} of {} bytes): sampling what remains",
                            s.base + len,
                            s.base + s.len
                        ),
                        len == 0,
                    ));
                    s.len = len;
                    s.hashes.truncate(s.pages());
                    s.cursor = 0;
                    continue;
                }
                Err(ReadError::Io(e)) => {
                    broken.push((
                        id.clone(),
                        format!("race detector: reading shared region {id} failed ({e}): no longer sampled"),
                        true,
                    ));
                    continue;
                }
            }
            self.stats.bytes += buf.len() as u64;
            // Read the chunk again at once: a page that differs between
            // the two reads (tens of microseconds apart) is being written
            // all the time, whatever the previous pass saw.
            let again = &mut self.again[..n * PAGE_BYTES];
            let twice = s.source.read(s.base, from as u64 * PAGE, again).is_ok();
            if twice {
                self.stats.bytes += again.len() as u64;
            }
            for (i, page) in buf.chunks_exact(PAGE_BYTES).enumerate() {
                let h = page_hash(page);
                let page_no = (s.base / PAGE) + (from + i) as u64;
                // Only pages that changed need their key (a heap copy of
                // the region id, for long ones).
                let key = || (id.clone(), page_no);
                if twice {
                    let later = &again[i * PAGE_BYTES..(i + 1) * PAGE_BYTES];
                    let h2 = page_hash(later);
                    if h2 != h {
                        s.hashes[from + i] = h2;
                        if self.hot.contains_key(&key()) {
                            continue;
                        }
                        // A sweep passing by also changes a page between
                        // two reads: a third read of this page alone, at
                        // once, tells a page that keeps changing.
                        let third = s
                            .source
                            .read(s.base, (from + i) as u64 * PAGE, &mut self.page);
                        self.stats.bytes += PAGE;
                        if third.is_ok() && page_hash(&self.page) != h2 {
                            if fast.len() < HOT_PAGES {
                                fast.push((key(), self.page.clone()));
                            }
                            continue;
                        }
                    }
                }
                let old = std::mem::replace(&mut s.hashes[from + i], h);
                if old != UNSEEN && old != h && !self.hot.contains_key(&key()) {
                    // Reservoir sampling: every changed page has the same
                    // chance to be looked at again.
                    self.candidates_seen += 1;
                    if self.candidates.len() < MAX_CANDIDATES {
                        self.candidates.push((id.clone(), page_no, h));
                    } else {
                        self.rng ^= self.rng << 13;
                        self.rng ^= self.rng >> 7;
                        self.rng ^= self.rng << 17;
                        let j = (self.rng % self.candidates_seen) as usize;
                        if j < MAX_CANDIDATES {
                            self.candidates[j] = (id.clone(), page_no, h);
                        }
                    }
                }
            }
            s.cursor = from + n;
            if s.cursor >= pages {
                s.cursor = 0;
            }
        }
        let mut evictable = Evictable::new(&self.hot).with_probation(&self.hot);
        for (key, copy) in fast {
            if !self.hot.contains_key(&key) && evictable.make_room(&mut self.hot, FAST) {
                tracing::debug!(
                    "hotwords: {}+{:#x} changes all the time: hot",
                    key.0,
                    key.1 * PAGE
                );
                self.hot.insert(key, HotPage::new(copy, FAST));
            } else {
                tracing::debug!(
                    "hotwords: {}+{:#x} changes all the time: no room",
                    key.0,
                    key.1 * PAGE
                );
            }
        }
        for (id, why, gone) in broken {
            if gone {
                self.sampled.remove(&id);
                if let Some(r) = model.regions.get(&id) {
                    self.failed.insert(
                        id.clone(),
                        r.mappings.iter().map(|m| (m.pid, m.start)).collect(),
                    );
                }
            }
            self.skip(why);
        }
    }

    /// Say what had to be skipped (a `warning` line).
    fn skip(&mut self, message: String) {
        tracing::debug!("{message}");
        self.stats.skipped += 1;
        self.warnings.push(message);
    }

    /// The `n` hottest pages that changed at least once since they became
    /// hot, hottest first: (region, page index, changes, score).
    pub fn hot_pages_now(&self, n: usize) -> Vec<(Text, u64, u64, f64)> {
        let mut v: Vec<_> = self
            .hot
            .iter()
            .filter(|(_, hp)| hp.changes > 0)
            .map(|((r, p), hp)| (r.clone(), *p, hp.changes, hp.score))
            .collect();
        v.sort_by(|a, b| b.3.total_cmp(&a.3).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
        v.truncate(n);
        v
    }

    /// The `n` hottest words, hottest first, skipping `busy` ones and
    /// those seen changing once only (a page filled once, a value set).
    pub fn hottest(&self, n: usize, busy: &dyn Fn(&Text, u64) -> bool) -> Vec<(Text, u64)> {
        let mut v: Vec<_> = self
            .words
            .iter()
            .filter(|((r, o), h)| h.changes >= 2 && !busy(r, *o))
            .map(|((r, o), h)| (h.score, r.clone(), *o))
            .collect();
        v.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        v.into_iter().take(n).map(|(_, r, o)| (r, o)).collect()
    }
}

/// Indexes of the 8-byte words that differ between two pages.
fn changed_words(a: &[u8], b: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    // Compare 64 bytes at a time first (memcmp), then the words of the
    // blocks that differ.
    for (blk, (x, y)) in a.chunks(64).zip(b.chunks(64)).enumerate() {
        if x == y {
            continue;
        }
        for (i, (p, q)) in x.chunks(8).zip(y.chunks(8)).enumerate() {
            if p != q {
                out.push(blk * 8 + i);
            }
        }
    }
    out
}

impl HotPage {
    fn new(copy: Vec<u8>, score: f64) -> Self {
        HotPage {
            copy: copy.into_boxed_slice(),
            score,
            age: 0,
            read_at: 0,
            changes: 0,
        }
    }
}

/// The hot pages past their probation, coolest last: who gives way to a
/// newly hot page when the set is full.
struct Evictable {
    pages: Vec<(f64, (Text, u64))>,
    evicted: usize,
}

impl Evictable {
    fn new(hot: &HashMap<(Text, u64), HotPage>) -> Self {
        let mut pages: Vec<(f64, (Text, u64))> = hot
            .iter()
            .filter(|(_, hp)| hp.age >= PROBATION)
            .map(|(k, hp)| (hp.score, k.clone()))
            .collect();
        pages.sort_by(|a, b| b.0.total_cmp(&a.0));
        Evictable { pages, evicted: 0 }
    }

    /// Pages still on probation may give way too (to a page that keeps
    /// changing between back-to-back reads), after every other.
    fn with_probation(mut self, hot: &HashMap<(Text, u64), HotPage>) -> Self {
        let mut young: Vec<(f64, (Text, u64))> = hot
            .iter()
            .filter(|(_, hp)| hp.age < PROBATION)
            .map(|(k, hp)| (hp.score, k.clone()))
            .collect();
        young.sort_by(|a, b| b.0.total_cmp(&a.0));
        young.append(&mut self.pages);
        self.pages = young;
        self
    }

    /// Make room for a page of `score`: true when there is room now. The
    /// coolest page gives way if it is cooler; a page that changes all the
    /// time also displaces pages up to twice its score (the set keeps
    /// turning over, and what stays is what keeps changing), a few per
    /// sample.
    fn make_room(&mut self, hot: &mut HashMap<(Text, u64), HotPage>, score: f64) -> bool {
        if hot.len() < HOT_PAGES {
            return true;
        }
        // Pages that change between back-to-back reads score 40 while they
        // keep doing so; any other settles at 10 at most.
        let bar = if score >= FAST { 20.0 } else { score };
        match self.pages.last() {
            Some((coolest, _)) if *coolest < bar && self.evicted < TURNOVER => {
                let (_, k) = self.pages.pop().expect("checked");
                hot.remove(&k);
                self.evicted += 1;
                true
            }
            _ => false,
        }
    }
}
