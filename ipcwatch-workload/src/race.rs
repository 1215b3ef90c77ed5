//! The race detector's acceptance workloads: two processes bump one shared
//! counter for a while, racing or correctly synchronized, over every kind
//! of shared memory; and processes writing one pipe with large or small
//! records.

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::sys::{os_err, pipe};

/// Layout of the shared page: the lock (or semaphore) at 0, the counter
/// on its own cache line.
const LOCK_OFF: usize = 0;
pub(crate) const COUNTER_OFF: usize = 128;
pub(crate) const SIZE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Memory {
    /// MAP_SHARED|MAP_ANONYMOUS, shared through fork.
    Anon,
    /// memfd_create, mapped before fork.
    Memfd,
    /// A SysV segment attached by both.
    Sysv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Sync {
    /// No synchronization: a data race.
    None,
    /// A process-shared pthread mutex.
    Mutex,
    /// A process-shared pthread rwlock, write-locked.
    Rwlock,
    /// Atomic increments (lock add).
    Atomic,
    /// A named POSIX semaphore.
    Semaphore,
    /// A token handed back and forth over two pipes.
    Token,
    /// Turns: the child bumps for the first half and exits, the parent
    /// waits for it, then bumps for the second half (exit -> wait orders
    /// them).
    Handoff,
    /// A process-shared glibc spinlock (pthread_spin_lock/unlock).
    Spin,
}

/// Map the shared page of the chosen kind.
pub(crate) fn shared_page(memory: Memory) -> Result<*mut u8> {
    // SAFETY: plain syscalls; results are checked.
    unsafe {
        let p = match memory {
            Memory::Anon => libc::mmap(
                ptr::null_mut(),
                SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            ),
            Memory::Memfd => {
                let name = CString::new("ipcwatch-counter").expect("no NUL");
                let fd = libc::memfd_create(name.as_ptr(), 0);
                if fd < 0 || libc::ftruncate(fd, SIZE as i64) != 0 {
                    bail!(os_err("memfd_create"));
                }
                let p = libc::mmap(
                    ptr::null_mut(),
                    SIZE,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    fd,
                    0,
                );
                libc::close(fd);
                p
            }
            Memory::Sysv => {
                let id = libc::shmget(libc::IPC_PRIVATE, SIZE, libc::IPC_CREAT | 0o600);
                if id < 0 {
                    bail!(os_err("shmget"));
                }
                let p = libc::shmat(id, ptr::null(), 0);
                // Removed once both have detached (at exit).
                libc::shmctl(id, libc::IPC_RMID, ptr::null_mut());
                p
            }
        };
        if p == libc::MAP_FAILED || p.is_null() {
            bail!(os_err("mapping the shared page"));
        }
        Ok(p as *mut u8)
    }
}

/// The racy increment: a plain load and a plain store.
#[inline(never)]
pub(crate) fn bump_counter_unsynchronized(counter: *mut u64) {
    // SAFETY: `counter` points into the live shared page.
    unsafe { ptr::write_volatile(counter, ptr::read_volatile(counter) + 1) };
}

/// The same increment, called with a lock held.
#[inline(never)]
pub(crate) fn bump_counter_locked(counter: *mut u64) {
    // SAFETY: `counter` points into the live shared page.
    unsafe { ptr::write_volatile(counter, ptr::read_volatile(counter) + 1) };
}

#[inline(never)]
fn bump_counter_atomic(counter: *mut u64) {
    // SAFETY: `counter` is 8-byte aligned inside the live shared page and
    // only ever accessed atomically here.
    unsafe { AtomicU64::from_ptr(counter) }.fetch_add(1, Ordering::SeqCst);
}

struct Token {
    rx: std::fs::File,
    tx: std::fs::File,
}

/// Set up `sync`'s process-shared lock at `lock` in the shared page, or
/// its semaphore (returned); nothing for the others.
fn init_sync(sync: Sync, lock: *mut u8) -> Result<*mut libc::sem_t> {
    let sem_name = CString::new(format!("/ipcwatch-sem-{}", std::process::id()))?;
    let mut sem: *mut libc::sem_t = ptr::null_mut();
    // SAFETY: initializing process-shared objects in the shared page
    // before fork; results checked.
    unsafe {
        match sync {
            Sync::Mutex => {
                let mut a: libc::pthread_mutexattr_t = std::mem::zeroed();
                libc::pthread_mutexattr_init(&mut a);
                libc::pthread_mutexattr_setpshared(&mut a, libc::PTHREAD_PROCESS_SHARED);
                if libc::pthread_mutex_init(lock as *mut libc::pthread_mutex_t, &a) != 0 {
                    bail!("pthread_mutex_init failed");
                }
            }
            Sync::Rwlock => {
                let mut a: libc::pthread_rwlockattr_t = std::mem::zeroed();
                libc::pthread_rwlockattr_init(&mut a);
                libc::pthread_rwlockattr_setpshared(&mut a, libc::PTHREAD_PROCESS_SHARED);
                if libc::pthread_rwlock_init(lock as *mut libc::pthread_rwlock_t, &a) != 0 {
                    bail!("pthread_rwlock_init failed");
                }
            }
            Sync::Spin => {
                let lock = lock as *mut libc::pthread_spinlock_t;
                if libc::pthread_spin_init(lock, libc::PTHREAD_PROCESS_SHARED) != 0 {
                    bail!("pthread_spin_init failed");
                }
            }
            Sync::Semaphore => {
                sem = libc::sem_open(sem_name.as_ptr(), libc::O_CREAT | libc::O_EXCL, 0o600, 1);
                if sem == libc::SEM_FAILED {
                    bail!(os_err("sem_open"));
                }
                libc::sem_unlink(sem_name.as_ptr());
            }
            _ => {}
        }
    }
    Ok(sem)
}

/// Token pipes, parent -> child and child -> parent, and a fork: this
/// side's ends and the child's pid (0 in the child).
fn fork_with_token() -> Result<(Token, i32)> {
    let (p2c_r, p2c_w) = pipe()?;
    let (c2p_r, c2p_w) = pipe()?;
    // SAFETY: single-threaded workload.
    let child = unsafe { libc::fork() };
    if child < 0 {
        bail!(os_err("fork"));
    }
    let token = if child == 0 {
        drop((p2c_w, c2p_r));
        Token {
            rx: p2c_r,
            tx: c2p_w,
        }
    } else {
        drop((p2c_r, c2p_w));
        Token {
            rx: c2p_r,
            tx: p2c_w,
        }
    };
    Ok((token, child))
}

/// Bump `counter` under `sync` until `deadline`; returns the increments.
///
/// # Safety
/// `lock` (or `sem`) was set up by [`init_sync`] for `sync`, and both
/// point into memory shared with the other process, as `counter` does.
unsafe fn bump_until(
    sync: Sync,
    lock: *mut u8,
    sem: *mut libc::sem_t,
    counter: *mut u64,
    token: &mut Token,
    deadline: Instant,
) -> u64 {
    let mut n: u64 = 0;
    let mut b = [0u8; 1];
    while Instant::now() < deadline {
        for _ in 0..1000 {
            // SAFETY: the lock objects were initialized in shared memory
            // both processes map (the caller's promise).
            unsafe {
                match sync {
                    Sync::None | Sync::Handoff => bump_counter_unsynchronized(counter),
                    Sync::Atomic => bump_counter_atomic(counter),
                    Sync::Mutex => {
                        libc::pthread_mutex_lock(lock as *mut libc::pthread_mutex_t);
                        bump_counter_locked(counter);
                        libc::pthread_mutex_unlock(lock as *mut libc::pthread_mutex_t);
                    }
                    Sync::Rwlock => {
                        libc::pthread_rwlock_wrlock(lock as *mut libc::pthread_rwlock_t);
                        bump_counter_locked(counter);
                        libc::pthread_rwlock_unlock(lock as *mut libc::pthread_rwlock_t);
                    }
                    Sync::Spin => {
                        libc::pthread_spin_lock(lock as *mut libc::pthread_spinlock_t);
                        bump_counter_locked(counter);
                        libc::pthread_spin_unlock(lock as *mut libc::pthread_spinlock_t);
                    }
                    Sync::Semaphore => {
                        libc::sem_wait(sem);
                        bump_counter_locked(counter);
                        libc::sem_post(sem);
                    }
                    Sync::Token => {
                        if token.rx.read_exact(&mut b).is_err() {
                            break;
                        }
                        bump_counter_locked(counter);
                        if token.tx.write_all(&b).is_err() {
                            break;
                        }
                    }
                }
            }
            n += 1;
        }
    }
    n
}

/// Two processes bump the counter at offset 128 of a shared page for
/// `secs`, each with `threads` threads. Prints "counter <parent pid>
/// <child pid> <final value> <increments>" (a racy run loses increments).
pub fn counter(memory: Memory, sync: Sync, threads: usize, secs: f64) -> Result<()> {
    if threads == 0 || (threads > 1 && matches!(sync, Sync::Token | Sync::Handoff)) {
        bail!("--threads must be at least 1, and 1 with --sync token or handoff");
    }
    let page = shared_page(memory)?;
    // SAFETY: offsets inside the 4096-byte page.
    let (lock, counter) = unsafe { (page.add(LOCK_OFF), page.add(COUNTER_OFF) as *mut u64) };
    let sem = init_sync(sync, lock)?;
    let (mut token, child) = fork_with_token()?;
    if sync == Sync::Token && child != 0 {
        token.tx.write_all(b"t")?; // the parent gives the token first
    }
    let mut deadline = Instant::now() + Duration::from_secs_f64(secs);
    if sync == Sync::Handoff {
        if child != 0 {
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(child, &mut status, 0) };
        }
        deadline = Instant::now() + Duration::from_secs_f64(secs / 2.0);
    }
    let n = if threads == 1 {
        // SAFETY: init_sync set the lock up in the shared page.
        unsafe { bump_until(sync, lock, sem, counter, &mut token, deadline) }
    } else {
        bump_in_threads(threads, sync, lock, sem, counter, deadline)?
    };
    if child == 0 {
        // SAFETY: leave without running the parent's destructors twice.
        unsafe { libc::_exit(0) };
    }
    drop(token);
    if sync != Sync::Handoff {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(child, &mut status, 0) };
    }
    // SAFETY: `counter` is still mapped.
    let value = unsafe { ptr::read_volatile(counter) };
    println!("counter {} {child} {value} {n}", std::process::id());
    Ok(())
}

// --- `counter --threads N`: several bumping threads per process. ---

/// The shared page's pointers, handed to the bumping threads.
#[derive(Clone, Copy)]
struct Shared {
    lock: *mut u8,
    sem: *mut libc::sem_t,
    counter: *mut u64,
}

// SAFETY: they point into shared memory mapped for the life of the
// process, and the process-shared lock objects are meant for threads.
unsafe impl Send for Shared {}

/// `threads` threads of this process bump the counter under `sync` (not
/// token or handoff) until `deadline`; returns their increments.
fn bump_in_threads(
    threads: usize,
    sync: Sync,
    lock: *mut u8,
    sem: *mut libc::sem_t,
    counter: *mut u64,
    deadline: Instant,
) -> Result<u64> {
    let shared = Shared { lock, sem, counter };
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(move || {
                    let sh = shared;
                    // Never read: only token and handoff use it.
                    let (rx, tx) = pipe().ok()?;
                    let mut token = Token { rx, tx };
                    // SAFETY: init_sync set the lock up in the shared page.
                    Some(unsafe {
                        bump_until(sync, sh.lock, sh.sem, sh.counter, &mut token, deadline)
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .try_fold(0u64, |sum, h| match h.join().ok().flatten() {
                Some(n) => Ok(sum + n),
                None => bail!("a bumping thread failed"),
            })
    })
}

/// `writers` processes each write `records` records of `size` bytes to one
/// pipe, read by the parent. Prints "pipe-writers <inode> <bytes read>".
pub fn pipe_writers(writers: usize, size: usize, records: usize) -> Result<()> {
    let (mut r, w) = pipe()?;
    let ino = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/proc/self/fd/{}", r.as_raw_fd()))?.ino()
    };
    let mut kids = Vec::new();
    for i in 0..writers {
        // SAFETY: single-threaded workload.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            bail!(os_err("fork"));
        }
        if pid == 0 {
            drop(r);
            let mut w = w;
            let rec = vec![b'a' + i as u8; size];
            for _ in 0..records {
                if w.write_all(&rec).is_err() {
                    break;
                }
            }
            // SAFETY: leave the child without unwinding.
            unsafe { libc::_exit(0) };
        }
        kids.push(pid);
    }
    drop(w);
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    for k in kids {
        let mut st = 0;
        // SAFETY: waiting for our own children.
        unsafe { libc::waitpid(k, &mut st, 0) };
    }
    println!("pipe-writers {ino} {total}");
    Ok(())
}

/// One of two unrelated processes sharing a POSIX shm object by name:
/// bumps the counter at offset 128 without synchronization for `secs`.
/// Prints "posix-counter <pid> <increments>".
pub fn posix_counter(name: &str, secs: f64) -> Result<()> {
    let cname = CString::new(name)?;
    // SAFETY: plain syscalls; results checked; the mapping stays for the
    // life of the process.
    let counter = unsafe {
        let fd = libc::shm_open(cname.as_ptr(), libc::O_CREAT | libc::O_RDWR, 0o600);
        if fd < 0 || libc::ftruncate(fd, SIZE as i64) != 0 {
            bail!(os_err("shm_open"));
        }
        let p = libc::mmap(
            ptr::null_mut(),
            SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        );
        libc::close(fd);
        if p == libc::MAP_FAILED {
            bail!(os_err("mmap"));
        }
        (p as *mut u8).add(COUNTER_OFF) as *mut u64
    };
    let n = bump_for(counter, secs);
    println!("posix-counter {} {n}", std::process::id());
    Ok(())
}

/// Bumps `counter` without synchronization for `secs`; returns how many
/// times.
fn bump_for(counter: *mut u64, secs: f64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut n = 0u64;
    while Instant::now() < deadline {
        for _ in 0..1000 {
            bump_counter_unsynchronized(counter);
            n += 1;
        }
    }
    n
}

/// One of two unrelated processes sharing a SysV segment by `key` (two
/// containers sharing an IPC namespace): once both are attached, bumps
/// the counter at offset 128 without synchronization for `secs`. Prints
/// "sysv-counter <pid> <shmid> <increments>"; the last to detach removes
/// the segment.
pub fn sysv_counter(key: i32, secs: f64, cpu: Option<usize>) -> Result<()> {
    if let Some(cpu) = cpu {
        // SAFETY: a zeroed cpu_set_t is empty; CPU_SET stays inside it
        // for cpu < CPU_SETSIZE (checked).
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if cpu >= libc::CPU_SETSIZE as usize {
                bail!("--cpu {cpu}: out of range");
            }
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
                bail!(os_err("sched_setaffinity"));
            }
        }
    }
    // SAFETY: plain syscalls; results checked; the attachment stays until
    // the shmdt below.
    let (id, base) = unsafe {
        let id = libc::shmget(key, SIZE, libc::IPC_CREAT | 0o600);
        if id < 0 {
            bail!(os_err("shmget"));
        }
        let p = libc::shmat(id, ptr::null(), 0);
        if p as isize == -1 {
            bail!(os_err("shmat"));
        }
        (id, p as *mut u8)
    };
    let attached = || {
        // SAFETY: a zeroed shmid_ds is a valid out-parameter.
        let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
        // SAFETY: `ds` is a live out-parameter.
        let r = unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) };
        if r == 0 { ds.shm_nattch } else { 0 }
    };
    // Both start together, however long each took to start.
    let wait_until = Instant::now() + Duration::from_secs(30);
    while attached() < 2 {
        if Instant::now() > wait_until {
            bail!("the second process never attached segment {id}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    // SAFETY: offset inside the attached segment.
    let counter = unsafe { base.add(COUNTER_OFF) as *mut u64 };
    let n = bump_for(counter, secs);
    println!("sysv-counter {} {id} {n}", std::process::id());
    // SAFETY: detaching our own attachment; marking the segment for
    // removal is harmless while the other process still has it.
    unsafe {
        libc::shmdt(base as *const libc::c_void);
        libc::shmctl(id, libc::IPC_RMID, ptr::null_mut());
    }
    Ok(())
}
