//! Shared-memory workloads: regions of every kind, process-shared locks of
//! every kind, file locks, and a region that exists before tracing starts.
//! Each prints the facts a test asserts ("region <id> ...").

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::sys::{fork, os_err, wait};

/// Offsets in the shared page used by the counter workloads.
pub const LOCK_OFFSET: usize = 0;
pub const COND_OFFSET: usize = 64;
pub const TURN_OFFSET: usize = 128;
pub const COUNTER_OFFSET: usize = 256;
/// Where the named semaphore's address is kept for the children.
const SEM_PTR_OFFSET: usize = 192;
const SIZE: usize = 4096;

/// A shared region mapped in this process.
pub struct Region {
    pub id: String,
    pub base: *mut u8,
    cleanup: Cleanup,
}

enum Cleanup {
    Sysv(i32),
    Posix(CString),
    Unmap,
}

fn kdev_ino_of_mapping(addr: usize) -> Option<(u32, u64)> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        let start = usize::from_str_radix(w.first()?.split('-').next()?, 16).ok()?;
        if start != addr {
            return None;
        }
        let (maj, min) = w.get(3)?.split_once(':')?;
        let dev = (u32::from_str_radix(maj, 16).ok()? << 20) | u32::from_str_radix(min, 16).ok()?;
        Some((dev, w.get(4)?.parse().ok()?))
    })
}

fn mmap_shared(fd: i32, len: usize) -> Result<*mut u8> {
    let flags = if fd < 0 {
        libc::MAP_SHARED | libc::MAP_ANONYMOUS
    } else {
        libc::MAP_SHARED
    };
    // SAFETY: a fresh mapping chosen by the kernel; nothing else is there.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            fd,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(os_err("mmap"));
    }
    Ok(p.cast())
}

/// Make and map a region of `kind` ("sysv", "posix", "memfd", "file",
/// "anon"); `name` names posix objects and files.
pub fn create(kind: &str, name: &str) -> Result<Region> {
    let pid = std::process::id();
    match kind {
        "sysv" => create_sysv(),
        "posix" => create_posix(name),
        "memfd" => create_memfd(name),
        "file" => create_file(name),
        "private" => create_private(),
        "anon" => {
            let base = mmap_shared(-1, SIZE)?;
            let (dev, ino) =
                kdev_ino_of_mapping(base as usize).context("the new mapping in /proc/self/maps")?;
            Ok(Region {
                id: format!("anon:{dev}:{ino}"),
                base,
                cleanup: Cleanup::Unmap,
            })
        }
        other => bail!("unknown region kind {other:?} (pid {pid})"),
    }
}

fn create_sysv() -> Result<Region> {
    // SAFETY: plain syscalls; the segment is private to this run.
    let id = unsafe { libc::shmget(libc::IPC_PRIVATE, SIZE, libc::IPC_CREAT | 0o600) };
    if id < 0 {
        return Err(os_err("shmget"));
    }
    // SAFETY: attach the segment just made at an address of the kernel's choice.
    let p = unsafe { libc::shmat(id, std::ptr::null(), 0) };
    if p as isize == -1 {
        return Err(os_err("shmat"));
    }
    Ok(Region {
        id: format!("sysv:{id}"),
        base: p.cast(),
        cleanup: Cleanup::Sysv(id),
    })
}

fn create_posix(name: &str) -> Result<Region> {
    let cname = CString::new(format!("/{name}"))?;
    // SAFETY: valid C string.
    let fd = unsafe { libc::shm_open(cname.as_ptr(), libc::O_CREAT | libc::O_RDWR, 0o600) };
    if fd < 0 {
        return Err(os_err("shm_open"));
    }
    // SAFETY: the descriptor is ours.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: plain syscall on our descriptor.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), SIZE as i64) } != 0 {
        return Err(os_err("ftruncate"));
    }
    let base = mmap_shared(fd.as_raw_fd(), SIZE)?;
    Ok(Region {
        id: format!("posix:/{name}"),
        base,
        cleanup: Cleanup::Posix(cname),
    })
}

fn create_memfd(name: &str) -> Result<Region> {
    let cname = CString::new(name)?;
    // SAFETY: valid C string.
    let fd = unsafe { libc::memfd_create(cname.as_ptr(), 0) };
    if fd < 0 {
        return Err(os_err("memfd_create"));
    }
    // SAFETY: the descriptor is ours.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: plain syscall on our descriptor.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), SIZE as i64) } != 0 {
        return Err(os_err("ftruncate"));
    }
    let ino = crate::sys::inode_of(&fd);
    let base = mmap_shared(fd.as_raw_fd(), SIZE)?;
    Ok(Region {
        id: format!("memfd:{name}:{ino}"),
        base,
        cleanup: Cleanup::Unmap,
    })
}

fn create_file(name: &str) -> Result<Region> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(name)
        .with_context(|| format!("creating {name}"))?;
    f.set_len(SIZE as u64)?;
    let base = mmap_shared(f.as_raw_fd(), SIZE)?;
    let path = std::fs::canonicalize(name)?;
    Ok(Region {
        id: format!("file:{}", path.display()),
        base,
        cleanup: Cleanup::Unmap,
    })
}

fn create_private() -> Result<Region> {
    // SAFETY: a fresh private mapping chosen by the kernel.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(os_err("mmap"));
    }
    Ok(Region {
        id: "private".into(),
        base: p.cast(),
        cleanup: Cleanup::Unmap,
    })
}

impl Region {
    /// Unmap (and remove what can be removed).
    pub fn finish(self) -> Result<()> {
        match self.cleanup {
            Cleanup::Sysv(id) => {
                // SAFETY: detach our own attachment, then remove the segment.
                unsafe {
                    if libc::shmdt(self.base.cast()) != 0 {
                        return Err(os_err("shmdt"));
                    }
                    if libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) != 0 {
                        return Err(os_err("shmctl"));
                    }
                }
            }
            Cleanup::Posix(name) => {
                // SAFETY: our mapping of SIZE bytes; a valid C string.
                unsafe {
                    libc::munmap(self.base.cast(), SIZE);
                    libc::shm_unlink(name.as_ptr());
                }
            }
            Cleanup::Unmap => {
                // SAFETY: our mapping of SIZE bytes.
                unsafe { libc::munmap(self.base.cast(), SIZE) };
            }
        }
        Ok(())
    }
}

/// The lock kinds of the counter workload.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LockKind {
    None,
    Mutex,
    Rwlock,
    Spin,
    Sem,
    Cond,
    /// A named semaphore (sem_open), in its own /dev/shm object.
    NamedSem,
}

impl LockKind {
    pub fn parse(s: &str) -> Result<LockKind> {
        Ok(match s {
            "none" => LockKind::None,
            "mutex" => LockKind::Mutex,
            "rwlock" => LockKind::Rwlock,
            "spin" => LockKind::Spin,
            "sem" => LockKind::Sem,
            "cond" => LockKind::Cond,
            "named-sem" => LockKind::NamedSem,
            _ => {
                bail!("unknown lock kind {s:?}: none, mutex, rwlock, spin, sem, cond or named-sem")
            }
        })
    }
}

/// Initialize a process-shared lock of `kind` at `base + LOCK_OFFSET`
/// (and a condition variable at `COND_OFFSET` for `Cond`).
///
/// # Safety
/// `base` must point to at least 4096 writable bytes shared with the
/// processes that will use the lock.
unsafe fn init_lock(base: *mut u8, kind: LockKind) -> Result<()> {
    // SAFETY: the caller guarantees `base` (see above); the pthread and
    // semaphore calls get pointers into it and to local attributes.
    unsafe {
        let lock = base.add(LOCK_OFFSET);
        let rc = match kind {
            LockKind::None => 0,
            LockKind::Mutex | LockKind::Cond => {
                let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
                libc::pthread_mutexattr_init(&mut attr);
                libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
                let rc = libc::pthread_mutex_init(lock.cast(), &attr);
                if rc == 0 && kind == LockKind::Cond {
                    let mut cattr: libc::pthread_condattr_t = std::mem::zeroed();
                    libc::pthread_condattr_init(&mut cattr);
                    libc::pthread_condattr_setpshared(&mut cattr, libc::PTHREAD_PROCESS_SHARED);
                    libc::pthread_cond_init(base.add(COND_OFFSET).cast(), &cattr)
                } else {
                    rc
                }
            }
            LockKind::Rwlock => {
                let mut attr: libc::pthread_rwlockattr_t = std::mem::zeroed();
                libc::pthread_rwlockattr_init(&mut attr);
                libc::pthread_rwlockattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
                libc::pthread_rwlock_init(lock.cast(), &attr)
            }
            LockKind::Spin => libc::pthread_spin_init(lock.cast(), libc::PTHREAD_PROCESS_SHARED),
            LockKind::Sem => {
                if libc::sem_init(lock.cast(), 1, 1) != 0 {
                    return Err(os_err("sem_init"));
                }
                0
            }
            LockKind::NamedSem => {
                let name = CString::new(format!("/ipcwatch-sem-{}", std::process::id()))?;
                let sem = libc::sem_open(name.as_ptr(), libc::O_CREAT | libc::O_EXCL, 0o600, 1);
                if sem == libc::SEM_FAILED {
                    return Err(os_err("sem_open"));
                }
                // Children inherit the mapping: keep the pointer in the region.
                std::ptr::write(base.add(SEM_PTR_OFFSET).cast::<u64>(), sem as u64);
                println!("semaphore /dev/shm/sem.{}", &name.to_str()?[1..]);
                libc::sem_unlink(name.as_ptr());
                0
            }
        };
        if rc != 0 {
            bail!("initializing the {kind:?}: error {rc}");
        }
        Ok(())
    }
}

/// One locked increment by process number `me` (0 or 1 with `Cond`,
/// which hands a turn back and forth).
///
/// # Safety
/// `base` must be a region initialized by [`init_lock`] with `kind`.
unsafe fn bump(base: *mut u8, kind: LockKind, me: u32) {
    // SAFETY: the caller guarantees an initialized region (see above).
    unsafe {
        let lock = base.add(LOCK_OFFSET);
        let counter = base.add(COUNTER_OFFSET).cast::<u64>();
        let turn = base.add(TURN_OFFSET).cast::<u32>();
        let inc = || {
            let v = std::ptr::read_volatile(counter);
            std::ptr::write_volatile(counter, v + 1);
        };
        match kind {
            LockKind::None => inc(),
            LockKind::Mutex => {
                libc::pthread_mutex_lock(lock.cast());
                inc();
                libc::pthread_mutex_unlock(lock.cast());
            }
            LockKind::Rwlock => {
                libc::pthread_rwlock_wrlock(lock.cast());
                inc();
                libc::pthread_rwlock_unlock(lock.cast());
                // A reader too, so rdlock shows up.
                libc::pthread_rwlock_rdlock(lock.cast());
                libc::pthread_rwlock_unlock(lock.cast());
            }
            LockKind::Spin => {
                libc::pthread_spin_lock(lock.cast());
                inc();
                libc::pthread_spin_unlock(lock.cast());
            }
            LockKind::Sem => {
                libc::sem_wait(lock.cast());
                inc();
                libc::sem_post(lock.cast());
            }
            LockKind::NamedSem => {
                let sem =
                    std::ptr::read(base.add(SEM_PTR_OFFSET).cast::<u64>()) as *mut libc::sem_t;
                libc::sem_wait(sem);
                inc();
                libc::sem_post(sem);
            }
            LockKind::Cond => {
                let cond = base.add(COND_OFFSET).cast();
                libc::pthread_mutex_lock(lock.cast());
                let deadline = Instant::now() + Duration::from_millis(200);
                while std::ptr::read_volatile(turn) != me && Instant::now() < deadline {
                    let mut ts: libc::timespec = std::mem::zeroed();
                    libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts);
                    ts.tv_nsec += 20_000_000;
                    if ts.tv_nsec >= 1_000_000_000 {
                        ts.tv_sec += 1;
                        ts.tv_nsec -= 1_000_000_000;
                    }
                    libc::pthread_cond_timedwait(cond, lock.cast(), &ts);
                }
                inc();
                std::ptr::write_volatile(turn, 1 - me);
                libc::pthread_cond_broadcast(cond);
                libc::pthread_mutex_unlock(lock.cast());
            }
        }
    }
}

pub struct CounterArgs {
    pub region: String,
    pub name: String,
    pub lock: LockKind,
    pub children: usize,
    pub secs: f64,
    pub iters: u64,
    pub serial: bool,
    pub settle: f64,
}

/// A region of some kind with a process-shared lock at offset 0 and a
/// counter at offset 256; `children` forked children bump the counter
/// under the lock, together (contended) or one after the other
/// (`serial`), for `secs` seconds or `iters` increments each. Prints
/// "region <id> parent <pid> children <pid>,<pid> counter <n>".
pub fn counter(a: &CounterArgs) -> Result<()> {
    let region = create(&a.region, &a.name)?;
    let base = region.base;
    // SAFETY: `base` is a fresh shared mapping of 4096 bytes.
    unsafe { init_lock(base, a.lock)? };
    println!("region {} pid {}", region.id, std::process::id());
    std::io::stdout().flush()?;
    let work = |i: usize| {
        if a.settle > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(a.settle));
        }
        let end = Instant::now() + Duration::from_secs_f64(a.secs);
        let mut n = 0;
        while (a.iters > 0 && n < a.iters) || (a.iters == 0 && Instant::now() < end) {
            // SAFETY: the region was initialized before fork.
            unsafe { bump(base, a.lock, (i % 2) as u32) };
            n += 1;
        }
    };
    if a.children == 0 {
        work(0);
    }
    let mut children = Vec::new();
    for i in 0..a.children {
        let pid = fork()?;
        if pid == 0 {
            work(i);
            std::process::exit(0);
        }
        children.push(pid);
        if a.serial {
            wait(pid)?;
        }
    }
    if !a.serial {
        for pid in &children {
            if wait(*pid)? != 0 {
                bail!("child {pid} failed");
            }
        }
    }
    // SAFETY: every child is gone; the counter is ours to read.
    let total = unsafe { std::ptr::read_volatile(base.add(COUNTER_OFFSET).cast::<u64>()) };
    let list: Vec<String> = children.iter().map(|p| p.to_string()).collect();
    println!(
        "region {} parent {} children {} counter {total}",
        region.id,
        std::process::id(),
        list.join(",")
    );
    if a.iters == 0 {
        println!("increments/s {:.1}", total as f64 / a.secs);
    }
    region.finish()
}

/// One of two unrelated processes sharing the POSIX shm object `name`:
/// "create" makes it, waits for the other side's mark, and removes it;
/// "open" waits for it to exist, maps it and writes its mark.
pub fn posix_peer(name: &str, role: &str) -> Result<()> {
    let cname = CString::new(format!("/{name}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let fd = loop {
        let flags = if role == "create" {
            libc::O_CREAT | libc::O_RDWR
        } else {
            libc::O_RDWR
        };
        // SAFETY: valid C string.
        let fd = unsafe { libc::shm_open(cname.as_ptr(), flags, 0o600) };
        if fd >= 0 {
            break fd;
        }
        if Instant::now() > deadline {
            return Err(os_err("shm_open"));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // SAFETY: the descriptor is ours.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if role == "create" {
        // SAFETY: plain syscall on our descriptor.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), SIZE as i64) } != 0 {
            return Err(os_err("ftruncate"));
        }
    } else {
        // Wait until the creator has sized it.
        while std::fs::metadata(format!("/dev/shm/{name}")).map_or(0, |m| m.len()) < SIZE as u64 {
            if Instant::now() > deadline {
                bail!("/dev/shm/{name} never grew");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let base = mmap_shared(fd.as_raw_fd(), SIZE)?;
    let mark = base
        .wrapping_add(if role == "create" { 0 } else { 8 })
        .cast::<u64>();
    let other = base
        .wrapping_add(if role == "create" { 8 } else { 0 })
        .cast::<u64>();
    // SAFETY: both words lie in our 4096-byte shared mapping.
    unsafe { std::ptr::write_volatile(mark, std::process::id() as u64) };
    // SAFETY: as above.
    while unsafe { std::ptr::read_volatile(other) } == 0 {
        if Instant::now() > deadline {
            bail!("the other process never wrote its mark");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    println!(
        "region posix:/{name} pid {} role {role}",
        std::process::id()
    );
    // Let the other side see our mark before the object goes.
    std::thread::sleep(Duration::from_millis(100));
    // SAFETY: our mapping.
    unsafe { libc::munmap(base.cast(), SIZE) };
    if role == "create" {
        // SAFETY: valid C string.
        unsafe { libc::shm_unlink(cname.as_ptr()) };
    }
    Ok(())
}

/// Two processes contend for a file lock on `path`: the parent takes it,
/// the child fails a non-blocking attempt, then blocks until the parent
/// lets go 200 ms later. Kinds: flock, fcntl, ofd, lockf. Prints
/// "filelock <kind> parent <pid> child <pid>".
pub fn filelock(kind: &str, path: &str) -> Result<()> {
    let open = || -> Result<std::fs::File> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("opening {path}"))
    };
    // `op`: 0 try, 1 wait, 2 unlock. Returns success.
    let lock = |f: &std::fs::File, op: u8| -> bool {
        let fd = f.as_raw_fd();
        // SAFETY: plain syscalls on our descriptor; `fl` is a valid struct.
        unsafe {
            match kind {
                "flock" => {
                    let o =
                        [libc::LOCK_EX | libc::LOCK_NB, libc::LOCK_EX, libc::LOCK_UN][op as usize];
                    libc::flock(fd, o) == 0
                }
                "lockf" => {
                    let o = [libc::F_TLOCK, libc::F_LOCK, libc::F_ULOCK][op as usize];
                    libc::lockf(fd, o, 100) == 0
                }
                _ => {
                    let mut fl: libc::flock = std::mem::zeroed();
                    fl.l_type = if op == 2 {
                        libc::F_UNLCK
                    } else {
                        libc::F_WRLCK
                    } as i16;
                    fl.l_whence = libc::SEEK_SET as i16;
                    fl.l_start = 0;
                    fl.l_len = 100;
                    let cmd = match (kind, op) {
                        ("ofd", 1) => libc::F_OFD_SETLKW,
                        ("ofd", _) => libc::F_OFD_SETLK,
                        (_, 1) => libc::F_SETLKW,
                        _ => libc::F_SETLK,
                    };
                    libc::fcntl(fd, cmd, &fl) == 0
                }
            }
        }
    };
    if !matches!(kind, "flock" | "fcntl" | "ofd" | "lockf") {
        bail!("unknown file lock kind {kind:?}: flock, fcntl, ofd or lockf");
    }
    let f = open()?;
    if !lock(&f, 1) {
        return Err(os_err("taking the lock"));
    }
    let child = fork()?;
    if child == 0 {
        let g = match open() {
            Ok(g) => g,
            Err(_) => std::process::exit(2),
        };
        if lock(&g, 0) {
            std::process::exit(3); // the parent holds it: must fail
        }
        if !lock(&g, 1) || !lock(&g, 2) {
            std::process::exit(4);
        }
        std::process::exit(0);
    }
    std::thread::sleep(Duration::from_millis(200));
    if !lock(&f, 2) {
        return Err(os_err("releasing the lock"));
    }
    let code = wait(child)?;
    if code != 0 {
        bail!("the child failed with {code}");
    }
    println!(
        "filelock {kind} parent {} child {child}",
        std::process::id()
    );
    Ok(())
}

/// Make and map a region, print "region <id> pid <pid>", wait for a line
/// on standard input, then write every page of it once and remove it.
/// For regions that exist before ipcwatch starts.
pub fn hold(kind: &str, name: &str) -> Result<()> {
    let region = create(kind, name)?;
    println!("region {} pid {}", region.id, std::process::id());
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    // SAFETY: offset 100 lies in the 4096-byte mapping.
    unsafe { std::ptr::write_volatile(region.base.add(100), 7u8) };
    std::thread::sleep(Duration::from_millis(100));
    region.finish()
}
