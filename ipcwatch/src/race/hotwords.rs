//! Hot-word discovery without trapping: ipcwatch maps each shared region
//! read-only itself (through /proc/PID/map_files, which works for SysV,
//! POSIX, memfd, file and shared anonymous memory alike) and diffs
//! snapshots at a steady rate. Words that keep changing are where
//! collisions can happen; the same counts feed the per-page heat.

use std::collections::HashMap;
use std::os::fd::AsRawFd;

use crate::model::Model;
use crate::model::PAGE;
use crate::record::Text;

/// Largest part of a region compared per sample; bigger regions are
/// sampled a window at a time: the window around the latest write fault
/// every other sample, otherwise round robin.
pub const MAX_SAMPLE: usize = 1 << 20;

/// Snapshots kept per region (so at most 4 MiB of copies per region).
const MAX_WINDOWS: usize = 4;

struct View {
    ptr: *const u8,
    len: usize,
    /// Region offset of `ptr`.
    base: u64,
    /// The last snapshot of each window compared (window start -> bytes);
    /// at most [`MAX_WINDOWS`] are kept.
    prev: HashMap<usize, Vec<u8>>,
    /// Next window to sample in a region larger than MAX_SAMPLE.
    cursor: usize,
    /// Alternates between the most recently write-faulted window and the
    /// round-robin cursor.
    fault_turn: bool,
}

impl Drop for View {
    fn drop(&mut self) {
        // SAFETY: ptr/len come from a successful mmap that we own.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

// SAFETY: the mapping is read-only and owned by the View.
unsafe impl Send for View {}

fn open_view(pid: u32, start: u64, end: u64, offset: u64) -> Option<View> {
    let path = format!("/proc/{pid}/map_files/{start:x}-{end:x}");
    let file = std::fs::File::open(path).ok()?;
    let len = (end - start) as usize;
    // SAFETY: a fresh read-only shared mapping of a file we opened; it is
    // unmapped in Drop.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            offset as libc::off_t,
        )
    };
    if ptr == libc::MAP_FAILED {
        return None;
    }
    Some(View {
        ptr: ptr as *const u8,
        len,
        base: offset,
        prev: HashMap::new(),
        cursor: 0,
        fault_turn: false,
    })
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Heat {
    /// Samples in which the word had changed (decays over time).
    pub score: f64,
    pub changes: u64,
}

#[derive(Default)]
pub struct HotWords {
    views: HashMap<Text, View>,
    /// (region, word offset) -> heat.
    pub words: HashMap<(Text, u64), Heat>,
}

impl HotWords {
    pub fn new() -> Self {
        Self::default()
    }

    /// One sample of every region shared by at least two processes.
    pub fn sample(&mut self, model: &Model) {
        // A region marked for removal (IPC_RMID, shm_unlink) lives on while
        // it is mapped: what counts is who maps it.
        self.views.retain(|id, _| {
            model
                .regions
                .get(id)
                .is_some_and(|r| r.mappers().len() >= 2)
        });
        for (id, region) in &model.regions {
            if region.mappers().len() < 2 {
                continue;
            }
            if !self.views.contains_key(id) {
                let view = region
                    .mappings
                    .iter()
                    .find_map(|m| open_view(m.pid, m.start, m.end, m.offset));
                match view {
                    Some(v) => {
                        self.views.insert(id.clone(), v);
                    }
                    None => {
                        tracing::debug!("hotwords: cannot map {id} ({:?})", region.mappings);
                        continue;
                    }
                }
            }
            let Some(view) = self.views.get_mut(id) else {
                continue;
            };
            let window = view.len.min(MAX_SAMPLE);
            // A region too big to compare whole: every other sample looks
            // at the window around the page with the latest write fault.
            view.fault_turn = !view.fault_turn;
            let faulted = region
                .pages
                .iter()
                .max_by_key(|(_, h)| h.last_ts)
                .map(|(page, _)| (page * PAGE).saturating_sub(view.base) as usize);
            let from = if view.len > MAX_SAMPLE {
                match faulted {
                    Some(at) if view.fault_turn => at.min(view.len - window),
                    _ => view.cursor,
                }
            } else {
                0
            };
            let to = (from + window).min(view.len);
            // SAFETY: [from, to) lies inside the live read-only mapping.
            let now = unsafe { std::slice::from_raw_parts(view.ptr.add(from), to - from) };
            if let Some(prev) = view.prev.get(&from)
                && prev.len() == now.len()
            {
                for (i, (a, b)) in prev.chunks_exact(8).zip(now.chunks_exact(8)).enumerate() {
                    if a != b {
                        let off = view.base + (from + i * 8) as u64;
                        let h = self.words.entry((id.clone(), off)).or_default();
                        h.score += 1.0;
                        h.changes += 1;
                    }
                }
            }
            if !view.prev.contains_key(&from)
                && view.prev.len() >= MAX_WINDOWS
                && let Some(&k) = view.prev.keys().find(|&&k| k != from)
            {
                view.prev.remove(&k);
            }
            let slot = view.prev.entry(from).or_default();
            slot.clear();
            slot.extend_from_slice(now);
            if view.len > MAX_SAMPLE && !(view.fault_turn && faulted.is_some()) {
                view.cursor = if to >= view.len { 0 } else { to };
            }
        }
        // Recent changes count most.
        for h in self.words.values_mut() {
            h.score *= 0.9;
        }
        self.words.retain(|_, h| h.score > 0.01);
    }

    /// The `n` hottest words, hottest first, skipping `busy` ones.
    pub fn hottest(&self, n: usize, busy: &dyn Fn(&Text, u64) -> bool) -> Vec<(Text, u64)> {
        let mut v: Vec<_> = self
            .words
            .iter()
            .filter(|((r, o), _)| !busy(r, *o))
            .map(|((r, o), h)| (h.score, r.clone(), *o))
            .collect();
        v.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        v.into_iter().take(n).map(|(_, r, o)| (r, o)).collect()
    }
}
