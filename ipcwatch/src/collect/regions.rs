//! Shared regions and who maps them: kernel memory events to `region` and
//! `mapping` records (the /proc scan for what existed before the start is
//! [`crate::scan::maps`]; turning a process's address into (region,
//! offset) is [`crate::model::locate`]).
//!
//! Region ids are the same in every process:
//! - `sysv:<shmid>`: a SysV segment (its shm file's inode is the shmid);
//! - `posix:/<name>`: a file under /dev/shm (shm_open, sem_open);
//! - `memfd:<name>:<inode>`: memfd_create;
//! - `file:<path>`: any other file mapped `MAP_SHARED`;
//! - `anon:<dev>:<inode>`: `MAP_SHARED|MAP_ANONYMOUS`, shared through
//!   fork (the kernel backs it with a shmem inode; `dev` is the kernel's
//!   `major << 20 | minor`).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;

use ipcwatch_common::shm::{MemEvent, PATH_PARTS, sc};

use crate::decode::{c_str, comm};
use crate::ids::{kdev, region_name};
use crate::model::{Model, mappings_of};
use crate::record::{MappingEvent, MappingLine, Record, RegionEvent, Text};
use crate::scan::maps::{DEV_SHM, read_maps, region_line, region_of_maps_line, sysv_segments};
use crate::scan::procs::fd_link;

const PAGE: u64 = 4096;
const TMPFS_MAGIC: u64 = 0x0102_1994;
const SHM_RDONLY: u32 = 0o10000;
const SHM_EXEC: u32 = 0o100000;
const IPC_CREAT: u32 = 0o1000;
const MREMAP_DONTUNMAP: u32 = 4;

/// "r", "rw", "rwx"... from PROT_* bits.
pub fn prot_text(prot: u32) -> Text {
    let mut s = Text::default();
    if prot & libc::PROT_READ as u32 != 0 {
        s.push('r');
    }
    if prot & libc::PROT_WRITE as u32 != 0 {
        s.push('w');
    }
    if prot & libc::PROT_EXEC as u32 != 0 {
        s.push('x');
    }
    s
}

fn page_up(n: u64) -> u64 {
    n.div_ceil(PAGE) * PAGE
}

/// The /dev/shm device, as the kernel encodes it.
fn dev_shm_kdev() -> Option<u32> {
    let m = fs::metadata(DEV_SHM).ok()?;
    Some(kdev(libc::major(m.dev()), libc::minor(m.dev())))
}

/// The name under /dev/shm of inode `ino`, looked for when a mapped file's
/// own name is not its /dev/shm name (sem_open maps a temporary file and
/// then links it to its final name).
fn dev_shm_name_of(ino: u64, hint: &str) -> Option<String> {
    if fs::metadata(format!("{DEV_SHM}{hint}")).is_ok_and(|m| m.ino() == ino) {
        return Some(hint.to_string());
    }
    fs::read_dir(DEV_SHM).ok()?.find_map(|e| {
        let e = e.ok()?;
        (e.metadata().ok()?.ino() == ino).then(|| e.file_name().to_string_lossy().into_owned())
    })
}

/// The path the probe walked for a mapped file, if it got all of it.
pub fn kernel_path(e: &MemEvent) -> Option<String> {
    let n = e.nparts as usize;
    if n == 0 || n > PATH_PARTS {
        return None;
    }
    let mut path = String::new();
    for part in e.parts[..n].iter().rev() {
        path.push('/');
        path.push_str(&String::from_utf8_lossy(c_str(part)));
    }
    Some(path)
}

/// State that turns memory events into records. Everything it needs about
/// mappings comes from the model, so replay and live agree.
#[derive(Debug, Default)]
pub struct RegionTracker {
    /// (kernel dev, inode) -> region id, learned from memfd_create and
    /// opens under /dev/shm.
    names: HashMap<(u32, u64), Text>,
    /// SysV segment sizes from shmget.
    sysv_size: HashMap<i64, u64>,
    dev_shm: Option<Option<u32>>,
    /// Processes seen with a shared mapping.
    mappers: HashSet<u32>,
    /// Processes whose first shared mapping just appeared (for
    /// `--lock-probes`); the recorder drains it.
    pub new_mappers: Vec<u32>,
    /// Mappers that exec'd since; the recorder drains it.
    pub gone: Vec<u32>,
}

fn header_comm(e: &MemEvent) -> Text {
    comm(&e.hdr)
}

impl RegionTracker {
    pub fn new() -> Self {
        Self::default()
    }

    fn dev_shm(&mut self) -> Option<u32> {
        *self.dev_shm.get_or_insert_with(dev_shm_kdev)
    }

    /// Note a process that maps shared memory writable (read-only shared
    /// mappings, such as locale caches, hold no locks).
    pub fn note_mapper(&mut self, pid: u32) {
        if self.mappers.insert(pid) {
            self.new_mappers.push(pid);
        }
    }

    /// A process exec'd (`exec`) or exited: it lost its mappings. After an
    /// exec its `--lock-probes` must go, since a uprobe follows the task
    /// into the new program. After an exit they are left to ipcwatch's own
    /// exit: detaching costs tens of milliseconds per probe and would stall
    /// the event loop.
    pub fn process_gone(&mut self, pid: u32, exec: bool) {
        if self.mappers.remove(&pid) && exec {
            self.gone.push(pid);
        }
        self.new_mappers.retain(|p| *p != pid);
    }

    /// A region line the first time `id` is seen.
    fn ensure_region(
        &mut self,
        model: &Model,
        e: &MemEvent,
        id: &Text,
        event: RegionEvent,
        size: u64,
        out: &mut Vec<Record>,
    ) {
        if model.regions.contains_key(id)
            || out
                .iter()
                .any(|r| matches!(r, Record::Region(l) if l.region == *id))
        {
            return;
        }
        let mut l = region_line(e.hdr.ts_ns, event, id.clone(), size);
        l.name = region_name(id);
        l.pid = Some(e.hdr.pid);
        l.comm = Some(header_comm(e));
        out.push(Record::Region(l));
    }

    fn mapping(
        &mut self,
        e: &MemEvent,
        event: MappingEvent,
        region: Text,
        m: (u64, u64, u64, Text),
    ) -> Record {
        if event != MappingEvent::Unmapped && m.3.contains('w') {
            self.note_mapper(e.hdr.pid);
        }
        Record::Mapping(MappingLine {
            ts_ns: e.hdr.ts_ns,
            event,
            region,
            pid: e.hdr.pid,
            comm: header_comm(e),
            start: m.0,
            end: m.1,
            offset: m.2,
            prot: m.3,
        })
    }

    /// The region behind a file mapped MAP_SHARED (or opened/created).
    fn file_region(&mut self, e: &MemEvent) -> Text {
        let name = String::from_utf8_lossy(c_str(&e.name)).into_owned();
        // A /dev/shm object is named by where its inode is now: sem_open
        // maps a temporary file, links it to its final name and removes
        // the temporary one, all before userspace sees the mmap.
        let in_dev_shm = e.magic == TMPFS_MAGIC && Some(e.dev) == self.dev_shm();
        if in_dev_shm && let Some(n) = dev_shm_name_of(e.ino, &name) {
            let id = compact_str::format_compact!("posix:/{n}");
            self.names.insert((e.dev, e.ino), id.clone());
            return id;
        }
        if let Some(id) = self.names.get(&(e.dev, e.ino)) {
            return id.clone();
        }
        let id = if e.magic == TMPFS_MAGIC && name.starts_with("memfd:") {
            compact_str::format_compact!("{name}:{}", e.ino)
        } else if e.magic == TMPFS_MAGIC && name.starts_with("SYSV") {
            compact_str::format_compact!("sysv:{}", e.ino)
        } else if e.magic == TMPFS_MAGIC && Some(e.dev) == self.dev_shm() {
            let n = dev_shm_name_of(e.ino, &name).unwrap_or(name);
            compact_str::format_compact!("posix:/{n}")
        } else if let Some(p) = kernel_path(e) {
            compact_str::format_compact!("file:{p}")
        } else {
            let path = fs::read_link(format!(
                "/proc/{}/map_files/{:x}-{:x}",
                e.hdr.pid,
                e.addr,
                e.addr + page_up(e.len)
            ))
            .map(|p| p.to_string_lossy().into_owned())
            .ok()
            .or_else(|| fd_link(e.hdr.pid, i32::try_from(e.id).ok()?));
            match path {
                Some(p) => {
                    let p = p.strip_suffix(" (deleted)").unwrap_or(&p).to_string();
                    if let Some(n) = p.strip_prefix(DEV_SHM) {
                        compact_str::format_compact!("posix:/{n}")
                    } else {
                        compact_str::format_compact!("file:{p}")
                    }
                }
                None => compact_str::format_compact!("file:{name}"),
            }
        };
        self.names.insert((e.dev, e.ino), id.clone());
        id
    }

    /// Turn one memory event into records.
    pub fn mem(&mut self, model: &Model, e: &MemEvent, out: &mut Vec<Record>) {
        match e.syscall {
            sc::SHMGET => self.shmget(model, e, out),
            sc::SHMAT => self.shmat(model, e, out),
            sc::SHMDT => self.shmdt(model, e, out),
            sc::SHMCTL => self.shmctl(model, e, out),
            sc::MMAP => self.mmap(model, e, out),
            sc::MUNMAP => self.unmap(model, e, e.addr, e.addr + page_up(e.len), out),
            sc::MREMAP => self.mremap(model, e, out),
            sc::MEMFD_CREATE => self.memfd_create(model, e, out),
            c if c == ipcwatch_common::sc::OPEN || c == ipcwatch_common::sc::OPENAT => {
                self.open_dev_shm(model, e, out)
            }
            sc::UNLINK | sc::UNLINKAT => self.unlink_dev_shm(model, e, out),
            _ => {}
        }
    }

    /// SysV shmget: the segment, created or found, with its key.
    fn shmget(&mut self, model: &Model, e: &MemEvent, out: &mut Vec<Record>) {
        self.sysv_size.insert(e.id, e.len);
        let id = compact_str::format_compact!("sysv:{}", e.id);
        let event = if e.flags & IPC_CREAT != 0 {
            RegionEvent::Created
        } else {
            RegionEvent::Existing
        };
        let size = sysv_segments()
            .iter()
            .find(|s| s.1 == e.id)
            .map_or(e.len, |s| s.2);
        self.ensure_region(model, e, &id, event, size, out);
        if e.arg != 0
            && let Some(Record::Region(l)) = out.last_mut()
            && l.region == id
        {
            l.name = Some(format!("key {:#x}", e.arg));
        }
    }

    /// SysV shmat: a mapping of the whole segment.
    fn shmat(&mut self, model: &Model, e: &MemEvent, out: &mut Vec<Record>) {
        let id = compact_str::format_compact!("sysv:{}", e.id);
        let size = match self.sysv_size.get(&e.id) {
            Some(s) => *s,
            None => sysv_segments()
                .iter()
                .find(|s| s.1 == e.id)
                .map_or(0, |s| s.2),
        };
        let size = if size == 0 {
            model.regions.get(&id).map_or(0, |r| r.size)
        } else {
            size
        };
        self.ensure_region(model, e, &id, RegionEvent::Existing, size, out);
        let mut prot = Text::const_new("r");
        if e.flags & SHM_RDONLY == 0 {
            prot.push('w');
        }
        if e.flags & SHM_EXEC != 0 {
            prot.push('x');
        }
        let rec = self.mapping(
            e,
            MappingEvent::Mapped,
            id,
            (e.addr, e.addr + page_up(size.max(1)), 0, prot),
        );
        out.push(rec);
    }

    /// SysV shmdt: the segment mapped at that address is unmapped.
    fn shmdt(&mut self, model: &Model, e: &MemEvent, out: &mut Vec<Record>) {
        if let Some((id, m)) = mappings_of(model, e.hdr.pid)
            .into_iter()
            .find(|(id, m)| m.start == e.addr && id.starts_with("sysv:"))
        {
            let rec = self.mapping(
                e,
                MappingEvent::Unmapped,
                id,
                (m.start, m.end, m.offset, m.prot),
            );
            out.push(rec);
        }
    }

    /// shmctl(IPC_RMID): the segment is removed once unmapped.
    fn shmctl(&mut self, model: &Model, e: &MemEvent, out: &mut Vec<Record>) {
        let ts = e.hdr.ts_ns;
        let id = compact_str::format_compact!("sysv:{}", e.id);
        let size = model.regions.get(&id).map_or(0, |r| r.size);
        let mut l = region_line(ts, RegionEvent::Removed, id, size);
        l.pid = Some(e.hdr.pid);
        l.comm = Some(header_comm(e));
        out.push(Record::Region(l));
    }

    /// mmap(MAP_SHARED): an anonymous or file region, and the mapping.
    fn mmap(&mut self, model: &Model, e: &MemEvent, out: &mut Vec<Record>) {
        let (id, created) = if e.id < 0 {
            (self.anon_region(e), RegionEvent::Created)
        } else {
            (self.file_region(e), RegionEvent::Existing)
        };
        let size = if e.id < 0 {
            e.len
        } else {
            fs::metadata(format!(
                "/proc/{}/map_files/{:x}-{:x}",
                e.hdr.pid,
                e.addr,
                e.addr + page_up(e.len)
            ))
            .map_or(e.arg + e.len, |m| m.len())
        };
        self.ensure_region(model, e, &id, created, size, out);
        let rec = self.mapping(
            e,
            MappingEvent::Mapped,
            id,
            (e.addr, e.addr + page_up(e.len), e.arg, prot_text(e.prot)),
        );
        out.push(rec);
    }

    /// mremap: the mapping moves (or is copied, with MREMAP_DONTUNMAP).
    fn mremap(&mut self, model: &Model, e: &MemEvent, out: &mut Vec<Record>) {
        let pid = e.hdr.pid;
        let Some((id, m)) = mappings_of(model, pid)
            .into_iter()
            .find(|(_, m)| (m.start..m.end).contains(&e.addr))
        else {
            return;
        };
        let offset = m.offset + (e.addr - m.start);
        if e.flags & MREMAP_DONTUNMAP == 0 {
            self.unmap(model, e, e.addr, e.addr + page_up(e.len), out);
        }
        let rec = self.mapping(
            e,
            MappingEvent::Mapped,
            id,
            (e.new_addr, e.new_addr + page_up(e.arg), offset, m.prot),
        );
        out.push(rec);
    }

    /// memfd_create: a region named by the memfd and its inode.
    fn memfd_create(&mut self, model: &Model, e: &MemEvent, out: &mut Vec<Record>) {
        let name = String::from_utf8_lossy(c_str(&e.name)).into_owned();
        let id = compact_str::format_compact!("memfd:{name}:{}", e.ino);
        self.names.insert((e.dev, e.ino), id.clone());
        self.ensure_region(model, e, &id, RegionEvent::Created, 0, out);
    }

    /// An open under /dev/shm (shm_open, sem_open): a POSIX region.
    fn open_dev_shm(&mut self, model: &Model, e: &MemEvent, out: &mut Vec<Record>) {
        let path = String::from_utf8_lossy(c_str(&e.name)).into_owned();
        let Some(name) = path.strip_prefix(DEV_SHM) else {
            return;
        };
        let id = compact_str::format_compact!("posix:/{name}");
        self.names.insert((e.dev, e.ino), id.clone());
        let event = if e.flags & libc::O_CREAT as u32 != 0 {
            RegionEvent::Created
        } else {
            RegionEvent::Existing
        };
        let size = fs::metadata(&path).map_or(0, |m| m.len());
        self.ensure_region(model, e, &id, event, size, out);
    }

    /// An unlink under /dev/shm: the POSIX region is removed.
    fn unlink_dev_shm(&mut self, model: &Model, e: &MemEvent, out: &mut Vec<Record>) {
        let ts = e.hdr.ts_ns;
        let path = String::from_utf8_lossy(c_str(&e.name)).into_owned();
        let Some(name) = path.strip_prefix(DEV_SHM) else {
            return;
        };
        let id = compact_str::format_compact!("posix:/{name}");
        let size = model.regions.get(&id).map_or(0, |r| r.size);
        let mut l = region_line(ts, RegionEvent::Removed, id, size);
        l.pid = Some(e.hdr.pid);
        l.comm = Some(header_comm(e));
        out.push(Record::Region(l));
    }

    /// MAP_SHARED|MAP_ANONYMOUS: the shmem inode the kernel made for it,
    /// found by the probe (bpf_find_vma), else in /proc/<pid>/maps.
    fn anon_region(&mut self, e: &MemEvent) -> Text {
        if e.ino != 0 {
            return compact_str::format_compact!("anon:{}:{}", e.dev, e.ino);
        }
        read_maps(e.hdr.pid)
            .iter()
            .find(|l| l.start == e.addr)
            .and_then(region_of_maps_line)
            .unwrap_or_else(|| compact_str::format_compact!("anon:0:{}@{:x}", e.hdr.pid, e.addr))
    }

    /// Unmap [start, end) in the event's process: every mapping it touches
    /// is unmapped, and what is left of it on either side mapped again.
    fn unmap(&mut self, model: &Model, e: &MemEvent, start: u64, end: u64, out: &mut Vec<Record>) {
        for (id, m) in mappings_of(model, e.hdr.pid) {
            if m.end <= start || m.start >= end {
                continue;
            }
            let rec = self.mapping(
                e,
                MappingEvent::Unmapped,
                id.clone(),
                (m.start, m.end, m.offset, m.prot.clone()),
            );
            out.push(rec);
            if m.start < start {
                let rec = self.mapping(
                    e,
                    MappingEvent::Mapped,
                    id.clone(),
                    (m.start, start, m.offset, m.prot.clone()),
                );
                out.push(rec);
            }
            if m.end > end {
                let rec = self.mapping(
                    e,
                    MappingEvent::Mapped,
                    id.clone(),
                    (end, m.end, m.offset + (end - m.start), m.prot.clone()),
                );
                out.push(rec);
            }
        }
    }

    /// A fork: the child inherits every shared mapping of its parent.
    pub fn fork(
        &mut self,
        model: &Model,
        parent: u32,
        child: u32,
        comm: &Text,
        ts: u64,
        out: &mut Vec<Record>,
    ) {
        for (id, m) in mappings_of(model, parent) {
            if m.prot.contains('w') {
                self.note_mapper(child);
            }
            out.push(Record::Mapping(MappingLine {
                ts_ns: ts,
                event: MappingEvent::Mapped,
                region: id,
                pid: child,
                comm: comm.clone(),
                start: m.start,
                end: m.end,
                offset: m.offset,
                prot: m.prot,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    use crate::collect::Collector;
    use crate::decode::RawEvent;
    use crate::model::locate;
    use crate::record::{MappingEvent, SyncEvent};
    use ipcwatch_common::shm::{LockEvent, UprobeEvent, func, kind};
    use ipcwatch_common::{EventHeader, ForkEvent, kind as base_kind};

    fn hdr(kind: u32, seq: u64, pid: u32) -> EventHeader {
        EventHeader {
            kind,
            cpu: 0,
            seq,
            ts_ns: 1000 + seq,
            pid,
            tid: pid,
            comm: *b"w\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
        }
    }

    fn mem(seq: u64, pid: u32, syscall: u32) -> MemEvent {
        MemEvent {
            hdr: hdr(kind::MEM, seq, pid),
            id: 0,
            addr: 0,
            len: 0,
            arg: 0,
            new_addr: 0,
            ino: 0,
            dev: 0,
            flags: 0,
            prot: 3,
            syscall,
            magic: 0,
            name: [0; ipcwatch_common::shm::NAME_LEN],
            nparts: 0,
            _pad: 0,
            parts: [[0; ipcwatch_common::shm::PART_LEN]; PATH_PARTS],
        }
    }

    fn mappings(out: &[Record]) -> Vec<(MappingEvent, u32, u64, u64, u64)> {
        out.iter()
            .filter_map(|r| match r {
                Record::Mapping(m) => Some((m.event, m.pid, m.start, m.end, m.offset)),
                _ => None,
            })
            .collect()
    }

    /// shmget, shmat, fork, a partial munmap, and futex words translated
    /// to the lock object they belong to: all without root.
    #[test]
    fn sysv_segment_through_fork_munmap_and_locks() {
        let mut c = Collector::new();
        let mut out: Vec<Record> = Vec::new();
        let mut get = mem(0, 10, sc::SHMGET);
        get.id = 77;
        get.len = 3 * PAGE;
        get.flags = IPC_CREAT;
        c.ingest(&RawEvent::Mem(get), &mut out).unwrap();
        let mut at = mem(1, 10, sc::SHMAT);
        at.id = 77;
        at.addr = 0x10000;
        c.ingest(&RawEvent::Mem(at), &mut out).unwrap();
        let fork = ForkEvent {
            hdr: hdr(base_kind::FORK, 2, 10),
            child_pid: 11,
            child_tid: 11,
            cgroup: 0,
        };
        c.ingest(&RawEvent::Fork(fork), &mut out).unwrap();
        assert_eq!(
            c.model.regions["sysv:77"].mappers(),
            BTreeSet::from([10, 11])
        );
        assert_eq!(c.regions.new_mappers, vec![10, 11]);
        // The child unmaps the middle page: two pieces are left.
        let mut un = mem(3, 11, sc::MUNMAP);
        un.addr = 0x11000;
        un.len = PAGE;
        out.clear();
        c.ingest(&RawEvent::Mem(un), &mut out).unwrap();
        assert_eq!(
            mappings(&out),
            vec![
                (MappingEvent::Unmapped, 11, 0x10000, 0x13000, 0),
                (MappingEvent::Mapped, 11, 0x10000, 0x11000, 0),
                (MappingEvent::Mapped, 11, 0x12000, 0x13000, 0x2000),
            ]
        );
        assert_eq!(
            locate(&c.model, 11, 0x12010),
            Some(("sysv:77".into(), 0x2010))
        );
        assert_eq!(locate(&c.model, 11, 0x11010), None);
        // An rwlock initialized at offset 0x2000 by the parent...
        let init = UprobeEvent {
            hdr: hdr(kind::UPROBE, 4, 10),
            addr: 0x12000,
            arg: 0,
            pshared: 1,
            func: func::RWLOCK_INIT,
        };
        c.ingest(&RawEvent::Uprobe(init), &mut out).unwrap();
        // ...and the child waits on its word 12 bytes in.
        let wait = LockEvent {
            hdr: hdr(kind::LOCK, 5, 11),
            addr: 0x1200c,
            ret: 0,
            op: 9, // FUTEX_WAIT_BITSET, not private
            syscall: sc::FUTEX,
            ..LockEvent::default()
        };
        out.clear();
        c.ingest(&RawEvent::Lock(wait), &mut out).unwrap();
        match &out[..] {
            [Record::Sync(s)] => {
                assert_eq!(s.lock, "sysv:77+8192");
                assert_eq!((s.event, s.ok), (SyncEvent::Wait, true));
                assert_eq!(s.offset, Some(0x2000));
                assert_eq!(s.detail.as_deref(), Some("wait_bitset rwlock+12"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.model.locks["sysv:77+8192"].pids, BTreeSet::from([10, 11]));
        // IPC_RMID removes the region; exit drops the child's mappings.
        let mut rm = mem(6, 10, sc::SHMCTL);
        rm.id = 77;
        c.ingest(&RawEvent::Mem(rm), &mut out).unwrap();
        assert!(c.model.regions["sysv:77"].removed);
    }

    /// A shared anonymous mapping (named by the inode the probe found)
    /// moved and grown by mremap, then unmapped.
    #[test]
    fn anon_mapping_through_mremap_and_munmap() {
        let mut c = Collector::new();
        let mut out: Vec<Record> = Vec::new();
        let mut m = mem(0, 20, sc::MMAP);
        m.id = -1;
        m.addr = 0x40000;
        m.len = 100; // rounded up to a page
        m.ino = 1234;
        m.dev = 1;
        c.ingest(&RawEvent::Mem(m), &mut out).unwrap();
        match &out[0] {
            Record::Region(r) => {
                assert_eq!(
                    (r.region.as_str(), r.event),
                    ("anon:1:1234", RegionEvent::Created)
                );
                assert_eq!(r.size, 100);
            }
            other => panic!("{other:?}"),
        }
        let mut r = mem(1, 20, sc::MREMAP);
        r.addr = 0x40000;
        r.len = PAGE;
        r.arg = 2 * PAGE;
        r.new_addr = 0x80000;
        out.clear();
        c.ingest(&RawEvent::Mem(r), &mut out).unwrap();
        assert_eq!(
            mappings(&out),
            vec![
                (MappingEvent::Unmapped, 20, 0x40000, 0x41000, 0),
                (MappingEvent::Mapped, 20, 0x80000, 0x82000, 0),
            ]
        );
        assert_eq!(
            locate(&c.model, 20, 0x81008),
            Some(("anon:1:1234".into(), 0x1008))
        );
        let mut un = mem(2, 20, sc::MUNMAP);
        un.addr = 0x80000;
        un.len = 2 * PAGE;
        out.clear();
        c.ingest(&RawEvent::Mem(un), &mut out).unwrap();
        assert_eq!(
            mappings(&out),
            vec![(MappingEvent::Unmapped, 20, 0x80000, 0x82000, 0)]
        );
        assert!(c.model.regions["anon:1:1234"].mappings.is_empty());
    }

    #[test]
    fn kernel_path_joins_components_innermost_first() {
        let mut e = mem(0, 1, sc::MMAP);
        for (i, p) in ["f.bin", "sub", "tmp"].iter().enumerate() {
            e.parts[i][..p.len()].copy_from_slice(p.as_bytes());
        }
        e.nparts = 3;
        assert_eq!(kernel_path(&e).as_deref(), Some("/tmp/sub/f.bin"));
        e.nparts = PATH_PARTS as u32 + 1;
        assert_eq!(kernel_path(&e), None);
    }

    #[test]
    fn prot_letters() {
        assert_eq!(prot_text(3), "rw");
        assert_eq!(prot_text(1), "r");
        assert_eq!(prot_text(7), "rwx");
    }
}
