//! Synchronization and write faults: kernel lock, uprobe and fault events
//! to `sync` and `fault` records.
//!
//! A lock in shared memory has one identity in every process,
//! `<region>+<offset>`, found with [`crate::model::locate`]. When the
//! futex word lies inside an object the inventory knows (a pthread mutex,
//! rwlock, semaphore seen at its init), the identity is the object's,
//! so a contended rwlock (whose futex words sit 4..12 bytes in) and its
//! init line agree. Elsewhere: `futex:<pid>:<addr>` (a private address),
//! `flock:<dev>:<ino>` (flock), `fcntl:<dev>:<ino>+<start>` (fcntl and OFD
//! record locks, lockf).

use std::collections::HashMap;

use compact_str::format_compact;
use ipcwatch_common::shm::{FaultEvent, LockEvent, UprobeEvent, func, sc};

use crate::decode::comm;
use crate::model::Model;
use crate::model::locate;
use crate::record::{FaultLine, Record, SyncEvent, SyncLine, Text};

/// Size in bytes of each lock object (glibc, x86_64): a futex address
/// inside [object, object + size) belongs to that object.
pub fn object_size(primitive: &str) -> u64 {
    match primitive {
        "mutex" => 40,
        "rwlock" => 56,
        "cond" => 48,
        "sem" => 32,
        "spin" => 4,
        _ => 0,
    }
}

/// Identity of the lock at `addr` in `pid`: (lock, region, offset,
/// primitive of the known object containing it).
pub fn lock_at(
    model: &Model,
    pid: u32,
    addr: u64,
) -> (Text, Option<Text>, Option<u64>, Option<Text>) {
    let Some((region, offset)) = locate(model, pid, addr) else {
        return (format_compact!("futex:{pid}:{addr:#x}"), None, None, None);
    };
    // An object of the inventory that contains this word?
    if let Some(r) = model.regions.get(&region) {
        for id in &r.locks {
            if let Some(l) = model.locks.get(id)
                && let Some(o) = l.offset
                && (o..o + object_size(&l.primitive)).contains(&offset)
            {
                return (id.clone(), Some(region), Some(o), Some(l.primitive.clone()));
            }
        }
    }
    (
        format_compact!("{region}+{offset}"),
        Some(region),
        Some(offset),
        None,
    )
}

fn errno_name(ret: i64) -> &'static str {
    match -ret as i32 {
        libc::EAGAIN => "EAGAIN",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EINTR => "EINTR",
        libc::EDEADLK => "EDEADLK",
        libc::EINVAL => "EINVAL",
        libc::ENOLCK => "ENOLCK",
        libc::EBADF => "EBADF",
        libc::EPERM => "EPERM",
        libc::ESRCH => "ESRCH",
        libc::EBUSY => "EBUSY",
        _ => "error",
    }
}

const FUTEX_CMD_MASK: u32 = 0x7f;

fn futex_cmd(op: u32) -> (&'static str, SyncEvent) {
    match op & FUTEX_CMD_MASK {
        0 => ("wait", SyncEvent::Wait),
        1 => ("wake", SyncEvent::Wake),
        3 => ("requeue", SyncEvent::Wake),
        4 => ("cmp_requeue", SyncEvent::Wake),
        5 => ("wake_op", SyncEvent::Wake),
        6 => ("lock_pi", SyncEvent::Acquire),
        7 => ("unlock_pi", SyncEvent::Release),
        8 => ("trylock_pi", SyncEvent::Acquire),
        9 => ("wait_bitset", SyncEvent::Wait),
        10 => ("wake_bitset", SyncEvent::Wake),
        11 => ("wait_requeue_pi", SyncEvent::Wait),
        12 => ("cmp_requeue_pi", SyncEvent::Wake),
        13 => ("lock_pi2", SyncEvent::Acquire),
        _ => ("other", SyncEvent::Wait),
    }
}

/// What the inventory learned from pthread_*attr_setpshared: (pid, attr
/// address) -> process-shared.
#[derive(Debug, Default)]
pub struct SyncTracker {
    attrs: HashMap<(u32, u64), bool>,
    /// tid -> (address, time) of its last pthread_spin_unlock.
    spin_unlock: HashMap<u32, (u64, u64)>,
    /// pthread_spin_init lines held back for [`SPIN_ALIAS_NS`]: (tid,
    /// address, time, line). The unlock probe of the same call may come
    /// after one (see [`SPIN_ALIAS_NS`]). Empty but for those moments.
    held_inits: Vec<(u32, u64, u64, Record)>,
}

/// glibc makes pthread_spin_init an alias of pthread_spin_unlock (same
/// code), so with `--lock-probes` one unlock hits both probes; an "init"
/// and an unlock within this many nanoseconds of each other, on the same
/// thread and address, are that same call, an unlock. Which probe reports
/// first is the kernel's choice: Linux 6.18 runs the unlock's first,
/// Debian 12's 6.1 the init's (found by `cargo xtask kernels`, where every
/// unlock also came out as an init), so an init waits that long for its
/// unlock before it is written. Generous: under QEMU's TCG the two
/// programs run tens of microseconds apart.
const SPIN_ALIAS_NS: u64 = 1_000_000;

impl SyncTracker {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn lock(&mut self, model: &Model, e: &LockEvent, out: &mut Vec<Record>) {
        let (pid, tid) = (e.hdr.pid, e.hdr.tid);
        let mut line = SyncLine {
            ts_ns: e.hdr.ts_ns,
            event: SyncEvent::Acquire,
            lock: Text::default(),
            pid,
            tid,
            comm: comm(&e.hdr),
            primitive: Text::const_new("futex"),
            ok: e.ret >= 0,
            region: None,
            offset: None,
            detail: None,
            start_ns: None,
        };
        match e.syscall {
            sc::FUTEX => futex_line(model, e, &mut line),
            sc::FLOCK => flock_line(e, &mut line),
            c if c == ipcwatch_common::sc::FCNTL => fcntl_line(e, &mut line),
            _ => return,
        }
        out.push(Record::Sync(line));
    }

    pub fn uprobe(&mut self, model: &Model, e: &UprobeEvent, out: &mut Vec<Record>) {
        let pid = e.hdr.pid;
        let (primitive, event, detail): (&str, SyncEvent, &str) = match e.func {
            func::MUTEXATTR_SETPSHARED | func::RWLOCKATTR_SETPSHARED => {
                self.attrs.insert((pid, e.addr), e.arg != 0);
                return;
            }
            func::MUTEX_INIT => ("mutex", SyncEvent::Init, "init"),
            func::RWLOCK_INIT => ("rwlock", SyncEvent::Init, "init"),
            func::SPIN_INIT => ("spin", SyncEvent::Init, "init"),
            func::SEM_INIT => ("sem", SyncEvent::Init, "init"),
            func::SEM_OPEN => ("sem", SyncEvent::Init, "sem_open"),
            func::MUTEX_LOCK => ("mutex", SyncEvent::Acquire, "lock"),
            func::MUTEX_TRYLOCK => ("mutex", SyncEvent::Acquire, "trylock"),
            func::MUTEX_TIMEDLOCK => ("mutex", SyncEvent::Acquire, "timedlock"),
            func::MUTEX_UNLOCK => ("mutex", SyncEvent::Release, "unlock"),
            func::RWLOCK_RDLOCK => ("rwlock", SyncEvent::Acquire, "rdlock"),
            func::RWLOCK_TRYRDLOCK => ("rwlock", SyncEvent::Acquire, "tryrdlock"),
            func::RWLOCK_TIMEDRDLOCK => ("rwlock", SyncEvent::Acquire, "timedrdlock"),
            func::RWLOCK_WRLOCK => ("rwlock", SyncEvent::Acquire, "wrlock"),
            func::RWLOCK_TRYWRLOCK => ("rwlock", SyncEvent::Acquire, "trywrlock"),
            func::RWLOCK_TIMEDWRLOCK => ("rwlock", SyncEvent::Acquire, "timedwrlock"),
            func::RWLOCK_UNLOCK => ("rwlock", SyncEvent::Release, "unlock"),
            func::SPIN_LOCK => ("spin", SyncEvent::Acquire, "lock"),
            func::SPIN_TRYLOCK => ("spin", SyncEvent::Acquire, "trylock"),
            func::SPIN_UNLOCK => ("spin", SyncEvent::Release, "unlock"),
            func::SEM_WAIT => ("sem", SyncEvent::Acquire, "wait"),
            func::SEM_TRYWAIT => ("sem", SyncEvent::Acquire, "trywait"),
            func::SEM_TIMEDWAIT => ("sem", SyncEvent::Acquire, "timedwait"),
            func::SEM_POST => ("sem", SyncEvent::Release, "post"),
            _ => return,
        };
        if e.func == func::SPIN_UNLOCK {
            self.spin_unlock.insert(e.hdr.tid, (e.addr, e.hdr.ts_ns));
            // An init held back was this unlock, reported first.
            self.held_inits.retain(|&(tid, addr, ts, _)| {
                !(tid == e.hdr.tid && addr == e.addr && e.hdr.ts_ns.abs_diff(ts) < SPIN_ALIAS_NS)
            });
        }
        if e.func == func::SPIN_INIT
            && let Some((addr, ts)) = self.spin_unlock.remove(&e.hdr.tid)
            && addr == e.addr
            && e.hdr.ts_ns.saturating_sub(ts) < SPIN_ALIAS_NS
        {
            return;
        }
        if e.func == func::SEM_OPEN && (e.addr == 0 || e.addr == u64::MAX) {
            return; // SEM_FAILED
        }
        let (lock, region, offset) = match locate(model, pid, e.addr) {
            Some((r, o)) => (format_compact!("{r}+{o}"), Some(r), Some(o)),
            None => (format_compact!("futex:{pid}:{:#x}", e.addr), None, None),
        };
        let mut d = Text::from(detail);
        let ok = if event == SyncEvent::Init {
            let pshared = match e.pshared {
                1 => Some(true),
                0 => Some(false),
                _ => None,
            }
            .or_else(|| self.attrs.get(&(pid, e.arg)).copied());
            match pshared {
                Some(true) => d.push_str(" pshared"),
                Some(false) => d.push_str(" private"),
                None if e.func == func::SEM_OPEN => d.push_str(" pshared"),
                None => {}
            }
            true
        } else if at_return(e.func) {
            e.arg as i32 == 0
        } else {
            true
        };
        let line = Record::Sync(SyncLine {
            ts_ns: e.hdr.ts_ns,
            event,
            lock,
            pid,
            tid: e.hdr.tid,
            comm: comm(&e.hdr),
            primitive: Text::from(primitive),
            ok,
            region,
            offset,
            detail: Some(d),
            start_ns: None,
        });
        if e.func == func::SPIN_INIT {
            self.held_inits.push((e.hdr.tid, e.addr, e.hdr.ts_ns, line));
        } else {
            out.push(line);
        }
    }

    /// Write the pthread_spin_init lines held back that no unlock can pair
    /// with any more: `now_ns` (the time of the event being read) is
    /// [`SPIN_ALIAS_NS`] past them, or `now_ns` is `u64::MAX` (the end).
    pub fn release(&mut self, now_ns: u64, out: &mut Vec<Record>) {
        if self.held_inits.is_empty() {
            return;
        }
        let mut i = 0;
        while i < self.held_inits.len() {
            if now_ns.saturating_sub(self.held_inits[i].2) >= SPIN_ALIAS_NS {
                out.push(self.held_inits.remove(i).3);
            } else {
                i += 1;
            }
        }
    }

    /// A write fault: kept when it lands in a shared region.
    pub fn fault(&mut self, model: &Model, e: &FaultEvent, out: &mut Vec<Record>) {
        let Some((region, offset)) = locate(model, e.hdr.pid, e.addr) else {
            return;
        };
        out.push(Record::Fault(FaultLine {
            ts_ns: e.hdr.ts_ns,
            region,
            offset,
            pid: e.hdr.pid,
            tid: e.hdr.tid,
            comm: comm(&e.hdr),
            ip: e.ip,
        }));
    }
}

/// A futex operation on a shared word: the lock it belongs to, wait or
/// wake, and the result.
fn futex_line(model: &Model, e: &LockEvent, line: &mut SyncLine) {
    let pid = e.hdr.pid;
    let (name, event) = futex_cmd(e.op);
    let (lock, region, offset, object) = lock_at(model, pid, e.addr);
    line.event = event;
    line.lock = lock;
    line.region = region;
    line.offset = offset;
    line.ok = match event {
        SyncEvent::Wake => e.ret >= 0,
        _ => e.ret == 0,
    };
    let mut d = format_compact!("{name}");
    if let Some(o) = object {
        d.push_str(&format!(" {o}"));
        if let Some(base) = line.offset
            && let Some((_, off)) = locate(model, pid, e.addr)
            && off != base
        {
            d.push_str(&format!("+{}", off - base));
        }
    }
    if event == SyncEvent::Wake && e.ret >= 0 {
        d.push_str(&format!(" woke={}", e.ret));
    } else if e.ret < 0 {
        d.push_str(&format!(" {}", errno_name(e.ret)));
    }
    line.detail = Some(d);
}

/// flock(2): the file's lock, exclusive, shared or released.
fn flock_line(e: &LockEvent, line: &mut SyncLine) {
    let op = e.op as i32;
    line.primitive = Text::const_new("flock");
    line.lock = format_compact!("flock:{}:{}", e.dev, e.ino);
    line.event = if op & libc::LOCK_UN != 0 {
        SyncEvent::Release
    } else {
        SyncEvent::Acquire
    };
    line.ok = e.ret == 0;
    let mut d = Text::const_new(if op & libc::LOCK_UN != 0 {
        "un"
    } else if op & libc::LOCK_EX != 0 {
        "ex"
    } else {
        "sh"
    });
    if op & libc::LOCK_NB != 0 {
        d.push_str(" nb");
    }
    if e.ret < 0 {
        d.push_str(&format!(" {}", errno_name(e.ret)));
    }
    line.detail = Some(d);
}

/// fcntl(2) record locks (classic and OFD): the locked range's start in
/// the lock's name, type, length and whether it waits in the detail.
fn fcntl_line(e: &LockEvent, line: &mut SyncLine) {
    let cmd = e.op as i32;
    let ofd = cmd == libc::F_OFD_SETLK || cmd == libc::F_OFD_SETLKW;
    let wait = cmd == libc::F_SETLKW || cmd == libc::F_OFD_SETLKW;
    let l_type = (e.kind & 0xffff) as i16 as i32;
    let whence = (e.kind >> 16) as i32;
    line.primitive = Text::const_new(if ofd { "ofd" } else { "fcntl" });
    line.lock = format_compact!("fcntl:{}:{}+{}", e.dev, e.ino, e.start as i64);
    line.event = if l_type == libc::F_UNLCK {
        SyncEvent::Release
    } else {
        SyncEvent::Acquire
    };
    line.ok = e.ret == 0;
    let ty = match l_type {
        t if t == libc::F_RDLCK => "rdlck",
        t if t == libc::F_WRLCK => "wrlck",
        _ => "unlck",
    };
    let mut d = format_compact!("{ty} len={}", e.len as i64);
    if wait {
        d.push_str(" wait");
    }
    if whence != libc::SEEK_SET {
        d.push_str(&format!(" whence={whence}"));
    }
    if e.ret < 0 {
        d.push_str(&format!(" {}", errno_name(e.ret)));
    }
    line.detail = Some(d);
}

fn at_return(f: u32) -> bool {
    func::at_return(f) && f != func::SEM_OPEN
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipcwatch_common::{header::EventHeader, shm::kind};

    fn spin(f: u32, tid: u32, ts_ns: u64) -> UprobeEvent {
        UprobeEvent {
            hdr: EventHeader {
                kind: kind::UPROBE,
                cpu: 0,
                seq: ts_ns,
                ts_ns,
                pid: 7,
                tid,
                comm: [0; 16],
            },
            addr: 0x1000,
            arg: 1,
            pshared: 1,
            func: f,
        }
    }

    /// (event, detail) of the sync lines `events` give, read in order,
    /// each event's time its `now`, then the end.
    fn lines(events: &[UprobeEvent]) -> Vec<(SyncEvent, String)> {
        let model = Model::new();
        let mut t = SyncTracker::new();
        let mut out = Vec::new();
        for e in events {
            t.release(e.hdr.ts_ns, &mut out);
            t.uprobe(&model, e, &mut out);
        }
        t.release(u64::MAX, &mut out);
        out.iter()
            .map(|r| match r {
                Record::Sync(s) => (s.event, s.detail.as_deref().unwrap_or("").to_string()),
                _ => panic!("not a sync line"),
            })
            .collect()
    }

    /// One pthread_spin_unlock hits the unlock probe and the init probe
    /// (glibc's aliases): an unlock, whichever the kernel ran first.
    #[test]
    fn an_unlock_seen_as_init_too_is_one_unlock_in_either_order() {
        let unlock = (SyncEvent::Release, "unlock".to_string());
        let unlock_first = lines(&[
            spin(func::SPIN_UNLOCK, 9, 1_000),
            spin(func::SPIN_INIT, 9, 1_040),
        ]);
        assert_eq!(unlock_first, std::slice::from_ref(&unlock));
        let init_first = lines(&[
            spin(func::SPIN_INIT, 9, 1_000),
            spin(func::SPIN_UNLOCK, 9, 1_040),
        ]);
        assert_eq!(init_first, [unlock]);
    }

    /// A real init stays an init: alone, or when the unlock that follows
    /// is another thread's or comes later than the alias window.
    #[test]
    fn a_real_init_is_written_once_its_window_has_passed() {
        let init = (SyncEvent::Init, "init pshared".to_string());
        let unlock = (SyncEvent::Release, "unlock".to_string());
        assert_eq!(
            lines(&[spin(func::SPIN_INIT, 9, 1_000)]),
            std::slice::from_ref(&init)
        );
        assert_eq!(
            lines(&[
                spin(func::SPIN_INIT, 9, 1_000),
                spin(func::SPIN_UNLOCK, 8, 1_040)
            ]),
            [unlock.clone(), init.clone()]
        );
        let later = 1_000 + SPIN_ALIAS_NS + 1;
        assert_eq!(
            lines(&[
                spin(func::SPIN_INIT, 9, 1_000),
                spin(func::SPIN_UNLOCK, 9, later)
            ]),
            [init, unlock]
        );
    }
}
