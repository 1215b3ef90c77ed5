//! Recall at scale (issue 19): one racing word inside a large shared
//! region that other, legitimate writes keep changing all over; and two
//! producers appending to a shared ring through an unsynchronized head.
//!
//! `region`: one MAP_SHARED region of SIZE bytes (anonymous, memfd, SysV
//! or POSIX shm), shared through fork by PROCS processes.
//! - The racing word (the counter) sits at [`racy_offset`]: half the size
//!   rounded down to a page, plus 128. With `--sync none` every thread of
//!   every process bumps it with `race::bump_counter_unsynchronized` (a
//!   plain load and a plain store); with `--sync mutex` under a
//!   process-shared mutex at the start of the counter's page.
//! - Legitimate writes: each process sweeps over all pages of the region
//!   without end, writing its own 8-byte slot on every page it visits
//!   (process i the word at offset `1024 + 8 * i` of each page). Those
//!   words change all the time, and each has one writer.
//! - `--touch` writes every byte of the region first (resident in full).
//! - `--quiet-secs Q` sweeps only, for Q seconds, before the racing
//!   starts; the racing then lasts `--secs`.
//! - `--rate R` paces each racing thread to R increments a second.
//! - `--sweep-rate P` paces each process's sweep to P pages a second
//!   (0: as fast as it can, the default).
//!
//! stdout: one line at the end, `region <offset> <counter value>
//! <increments> <pid>...` (the racing word's offset in the region, the
//! counter's final value, the increments made, and the pids of the
//! processes that raced, the parent first). Nothing else.
//!
//! `ring`: PRODUCERS processes append 64-byte records to a ring of
//! [`RING_SLOTS`] slots in a shared anonymous region through an
//! unsynchronized head index at [`RING_HEAD_OFF`]
//! (`ring_append_unsynchronized`); nobody consumes. stdout: `ring <head
//! offset> <final head> <appends> <pid>...`.

use std::ffi::CString;
use std::ptr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::race::{bump_counter_locked, bump_counter_unsynchronized};
use crate::sys::os_err;

pub const PAGE: u64 = 4096;
/// Process i's legitimate slot on every page: `SLOT_BASE + 8 * i`.
pub const SLOT_BASE: u64 = 1024;
/// The racing word's offset in its page.
pub const COUNTER_IN_PAGE: u64 = 128;
/// At most this many processes (their slots must fit in a page).
pub const MAX_PROCS: usize = ((PAGE - SLOT_BASE) / 8) as usize;

/// The region's kind of shared memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RegionMemory {
    /// MAP_SHARED|MAP_ANONYMOUS, shared through fork.
    Anon,
    /// memfd_create, mapped before fork.
    Memfd,
    /// A SysV segment (shmget + shmat).
    Sysv,
    /// A POSIX shm object in /dev/shm (shm_open), mapped before fork.
    Posix,
}

/// How the racing word is bumped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RegionSync {
    /// No synchronization: a data race.
    None,
    /// A process-shared pthread mutex.
    Mutex,
}

pub struct RegionArgs {
    pub size: u64,
    pub memory: RegionMemory,
    pub procs: usize,
    pub threads: usize,
    pub secs: f64,
    pub rate: u64,
    /// Pages a second each process's sweep writes (0: unlimited).
    pub sweep_rate: u64,
    pub quiet_secs: f64,
    pub touch: bool,
    pub sync: RegionSync,
}

/// Parse a size: bytes, or a number with K, M, G (binary units, an
/// optional trailing `iB` or `B`): `16M`, `256MiB`, `1G`, `4G`, `65536`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, shift) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 30),
        Some('T' | 't') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (bytes, or a number with K, M, G or T)"))?;
    n.checked_mul(1u64 << shift)
        .filter(|&b| b > 0)
        .ok_or_else(|| format!("{s:?}: size out of range"))
}

/// The racing word's offset in a region of `size` bytes: half the size
/// rounded down to a page, plus 128.
pub fn racy_offset(size: u64) -> u64 {
    (size / 2) / PAGE * PAGE + COUNTER_IN_PAGE
}

/// Process `i`'s legitimate slot in the page at `page_off`.
pub fn slot_offset(page_off: u64, i: usize) -> u64 {
    page_off + SLOT_BASE + 8 * i as u64
}

/// What is wrong with these arguments, if anything.
pub fn check_region_args(a: &RegionArgs) -> Result<()> {
    if a.size < PAGE || !a.size.is_multiple_of(PAGE) {
        bail!(
            "--size {}: a region is a whole number of 4096-byte pages",
            a.size
        );
    }
    if a.procs < 2 || a.procs > MAX_PROCS {
        bail!("--procs {}: between 2 and {MAX_PROCS}", a.procs);
    }
    if a.threads == 0 || a.threads > 1024 {
        bail!("--threads {}: between 1 and 1024", a.threads);
    }
    if !(a.secs.is_finite() && a.secs >= 0.0 && a.quiet_secs.is_finite() && a.quiet_secs >= 0.0) {
        bail!("--secs and --quiet-secs are seconds (0 or more)");
    }
    if usize::try_from(a.size).is_err() {
        bail!("--size {}: larger than the address space", a.size);
    }
    Ok(())
}

/// A kernel tunable as a number.
fn read_sysctl(path: &str) -> Result<u64> {
    let s = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    s.trim()
        .parse()
        .with_context(|| format!("{path} holds {s:?}, not a number"))
}

/// Raise the SysV limits (`shmmax`, `shmall`) to allow a segment of
/// `size` bytes, or say why it cannot be made.
fn ensure_sysv_limits(size: u64) -> Result<()> {
    let limits = [
        ("/proc/sys/kernel/shmmax", size),
        ("/proc/sys/kernel/shmall", size.div_ceil(PAGE)),
    ];
    for (path, need) in limits {
        let have = read_sysctl(path)?;
        if have >= need {
            continue;
        }
        std::fs::write(path, need.to_string()).with_context(|| {
            format!(
                "a SysV segment of {size} bytes needs {path} >= {need} (it is {have}) and raising it failed: run as root, or raise it by hand"
            )
        })?;
    }
    Ok(())
}

/// The free bytes of the file system at `path`.
fn free_bytes(path: &str) -> Result<u64> {
    let c = CString::new(path)?;
    // SAFETY: valid path and out struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        bail!(os_err(&format!("statvfs {path}")));
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// A mapped region; a POSIX object keeps its name until [`Region::remove`].
struct Region {
    base: *mut u8,
    posix_name: Option<CString>,
}

impl Region {
    fn remove(&self) {
        if let Some(n) = &self.posix_name {
            // SAFETY: a valid name.
            unsafe { libc::shm_unlink(n.as_ptr()) };
        }
    }
}

fn mmap_shared(size: usize, fd: i32, flags: i32) -> *mut libc::c_void {
    // SAFETY: a fresh mapping; the caller checks the result.
    unsafe {
        libc::mmap(
            ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | flags,
            fd,
            0,
        )
    }
}

/// Map a shared region of `size` bytes of `memory`.
fn map_region(memory: RegionMemory, size: u64) -> Result<Region> {
    let len = size as usize;
    let mut posix_name = None;
    // SAFETY: plain syscalls; results checked.
    let p = unsafe {
        match memory {
            RegionMemory::Anon => mmap_shared(len, -1, libc::MAP_ANONYMOUS),
            RegionMemory::Memfd => {
                let name = CString::new("ipcwatch-region").expect("no NUL");
                let fd = libc::memfd_create(name.as_ptr(), 0);
                if fd < 0 || libc::ftruncate(fd, size as i64) != 0 {
                    bail!(os_err("memfd_create"));
                }
                let p = mmap_shared(len, fd, 0);
                libc::close(fd);
                p
            }
            RegionMemory::Posix => {
                let free = free_bytes("/dev/shm")?;
                if free < size {
                    bail!(
                        "/dev/shm has {free} bytes free, a POSIX region of {size} needs more: remount it bigger (mount -o remount,size=... /dev/shm)"
                    );
                }
                let name = CString::new(format!("/ipcwatch-region-{}", std::process::id()))?;
                let fd = libc::shm_open(
                    name.as_ptr(),
                    libc::O_CREAT | libc::O_EXCL | libc::O_RDWR,
                    0o600,
                );
                if fd < 0 {
                    bail!(os_err("shm_open"));
                }
                if libc::ftruncate(fd, size as i64) != 0 {
                    let e = os_err("ftruncate of the POSIX shm object");
                    libc::shm_unlink(name.as_ptr());
                    bail!(e);
                }
                let p = mmap_shared(len, fd, 0);
                libc::close(fd);
                if p == libc::MAP_FAILED {
                    libc::shm_unlink(name.as_ptr());
                }
                posix_name = Some(name);
                p
            }
            RegionMemory::Sysv => {
                ensure_sysv_limits(size)?;
                let id = libc::shmget(libc::IPC_PRIVATE, len, libc::IPC_CREAT | 0o600);
                if id < 0 {
                    bail!(os_err(&format!("shmget of {size} bytes")));
                }
                let p = libc::shmat(id, ptr::null(), 0);
                // Removed once every process has detached (at exit).
                libc::shmctl(id, libc::IPC_RMID, ptr::null_mut());
                p
            }
        }
    };
    if p == libc::MAP_FAILED || p.is_null() {
        bail!(os_err(&format!("mapping a region of {size} bytes")));
    }
    Ok(Region {
        base: p as *mut u8,
        posix_name,
    })
}

/// A raw pointer that threads may share (the region outlives them).
#[derive(Clone, Copy)]
struct Shared(*mut u8);
// SAFETY: the pointee is shared memory that lives until the process
// exits; the racing on it is the point of the workload.
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl std::marker::Sync for Shared {}

/// What one racing thread does.
#[derive(Clone, Copy)]
struct Racer {
    base: Shared,
    size: u64,
    counter_off: u64,
    /// This process's slot index; `None` for threads that do not sweep.
    sweep_slot: Option<usize>,
    sync: RegionSync,
    /// Increments a second (0: as fast as possible).
    rate: u64,
    /// Pages a second the sweep writes (0: unlimited).
    sweep_rate: u64,
    quiet_until: Instant,
    deadline: Instant,
}

impl Racer {
    fn bump(&self) {
        // SAFETY: offsets checked against the size by check_region_args
        // and racy_offset; the mutex was initialized before fork.
        unsafe {
            let counter = self.base.0.add(self.counter_off as usize) as *mut u64;
            match self.sync {
                RegionSync::None => bump_counter_unsynchronized(counter),
                RegionSync::Mutex => {
                    let m = self.mutex();
                    libc::pthread_mutex_lock(m);
                    bump_counter_locked(counter);
                    libc::pthread_mutex_unlock(m);
                }
            }
        }
    }

    /// The mutex at the start of the counter's page.
    fn mutex(&self) -> *mut libc::pthread_mutex_t {
        let page = self.counter_off / PAGE * PAGE;
        // SAFETY: inside the region.
        unsafe { self.base.0.add(page as usize) as *mut libc::pthread_mutex_t }
    }

    /// Run until the deadline; returns the increments made.
    fn run(&self) -> u64 {
        let pages = self.size / PAGE;
        let mut page = 0u64;
        let mut sweeps = 0u64;
        let mut n = 0u64;
        let period = (self.rate > 0).then(|| Duration::from_secs_f64(1.0 / self.rate as f64));
        let mut next = self.quiet_until;
        let mut racing = false;
        let sweep_period =
            (self.sweep_rate > 0).then(|| Duration::from_secs_f64(1.0 / self.sweep_rate as f64));
        let mut next_sweep = Instant::now();
        let mut jitter = u64::from(std::process::id()).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        loop {
            // Look at the clock every 64 steps.
            let now = Instant::now();
            if now >= self.deadline {
                return n;
            }
            if !racing && now >= self.quiet_until {
                racing = true;
                next = now;
            }
            // Increments due in this batch of 64 steps.
            let mut due = match period {
                _ if !racing => 0,
                None => 64,
                Some(p) => {
                    let mut d = 0;
                    while next <= now && d < 64 {
                        // Paced, not a metronome: each gap is drawn between
                        // half and one and a half periods, as the writes of
                        // a real program wander.
                        jitter ^= jitter << 13;
                        jitter ^= jitter >> 7;
                        jitter ^= jitter << 17;
                        next += p.mul_f64(0.5 + (jitter % 1024) as f64 / 1024.0);
                        d += 1;
                    }
                    d
                }
            };
            // Sweep steps due in this batch.
            let mut sweeps_due = match sweep_period {
                None => 64,
                Some(p) => {
                    let mut d = 0;
                    while next_sweep <= now && d < 64 {
                        next_sweep += p;
                        d += 1;
                    }
                    d
                }
            };
            for _ in 0..64 {
                if let Some(slot) = self.sweep_slot.filter(|_| sweeps_due > 0) {
                    sweeps_due -= 1;
                    let off = slot_offset(page * PAGE, slot);
                    // SAFETY: a slot word inside the region, written by
                    // this process only.
                    unsafe {
                        ptr::write_volatile(self.base.0.add(off as usize) as *mut u64, sweeps)
                    };
                    page += 1;
                    if page == pages {
                        page = 0;
                        sweeps += 1;
                    }
                } else if due == 0 {
                    break;
                }
                if due > 0 {
                    self.bump();
                    n += 1;
                    due -= 1;
                }
            }
            if (self.sweep_slot.is_none() || sweep_period.is_some())
                && (!racing || period.is_some())
            {
                // Nothing to do but wait: sleep to the next increment (or
                // the next sweep step).
                let mut until = if racing { next } else { self.quiet_until };
                if self.sweep_slot.is_some() && sweep_period.is_some() {
                    until = until.min(next_sweep);
                }
                let now = Instant::now();
                if until > now {
                    std::thread::sleep((until - now).min(self.deadline - now));
                }
            }
        }
    }
}

/// Run one process's threads: thread 0 sweeps (as process `slot`) and
/// races, the others race. Returns the increments made.
fn run_process(r: Racer, threads: usize) -> u64 {
    let mut n = 0;
    std::thread::scope(|s| {
        let hs: Vec<_> = (1..threads)
            .map(|_| {
                let mut other = r;
                other.sweep_slot = None;
                s.spawn(move || other.run())
            })
            .collect();
        n = r.run();
        for h in hs {
            n += h.join().unwrap_or(0);
        }
    });
    n
}

/// Fork `procs - 1` children, each running `body(i)` and exiting; the
/// parent runs `body(0)`, waits for all, and returns (its result, the
/// pids parent first). Children report their result over a pipe.
fn fork_all(procs: usize, body: impl Fn(usize) -> u64) -> Result<(u64, Vec<i32>)> {
    use std::io::{Read, Write};
    let (mut rx, tx) = crate::sys::pipe()?;
    let mut pids = vec![std::process::id() as i32];
    for i in 1..procs {
        let pid = crate::sys::fork()?;
        if pid == 0 {
            drop(rx);
            let n = body(i);
            let mut tx = tx;
            let _ = tx.write_all(&n.to_le_bytes());
            // SAFETY: leave the child without the parent's destructors.
            unsafe { libc::_exit(0) };
        }
        pids.push(pid);
    }
    drop(tx);
    let mut total = body(0);
    let mut failed = Vec::new();
    for &pid in &pids[1..] {
        if crate::sys::wait(pid)? != 0 {
            failed.push(pid);
        }
    }
    let mut buf = Vec::new();
    rx.read_to_end(&mut buf)?;
    for c in buf.chunks_exact(8) {
        total += u64::from_le_bytes(c.try_into().expect("8 bytes"));
    }
    if !failed.is_empty() {
        bail!("children {failed:?} failed");
    }
    Ok((total, pids))
}

/// The `region` workload (see the module's doc).
pub fn region(a: &RegionArgs) -> Result<()> {
    check_region_args(a)?;
    let region = map_region(a.memory, a.size)?;
    let result = region_in(a, &region);
    region.remove();
    let (value, n, pids) = result?;
    let pids: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
    println!(
        "region {} {value} {n} {}",
        racy_offset(a.size),
        pids.join(" ")
    );
    Ok(())
}

fn region_in(a: &RegionArgs, region: &Region) -> Result<(u64, u64, Vec<i32>)> {
    let base = region.base;
    if a.touch {
        // SAFETY: the whole mapping, before anything else uses it.
        unsafe { ptr::write_bytes(base, 0x5a, a.size as usize) };
    }
    let counter_off = racy_offset(a.size);
    // SAFETY: the counter lies inside the region (racy_offset < size).
    unsafe { ptr::write_volatile(base.add(counter_off as usize) as *mut u64, 0) };
    let mut racer = Racer {
        base: Shared(base),
        size: a.size,
        counter_off,
        sweep_slot: Some(0),
        sync: a.sync,
        rate: a.rate,
        sweep_rate: a.sweep_rate,
        quiet_until: Instant::now(),
        deadline: Instant::now(),
    };
    if a.sync == RegionSync::Mutex {
        // SAFETY: initializing a process-shared mutex in the region
        // before fork.
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            libc::pthread_mutexattr_init(&mut attr);
            libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
            if libc::pthread_mutex_init(racer.mutex(), &attr) != 0 {
                bail!("pthread_mutex_init failed");
            }
        }
    }
    // Every process starts its clock at the same moment.
    let start = Instant::now();
    racer.quiet_until = start + Duration::from_secs_f64(a.quiet_secs);
    racer.deadline = racer.quiet_until + Duration::from_secs_f64(a.secs);
    let (n, pids) = fork_all(a.procs, |i| {
        let mut r = racer;
        r.sweep_slot = Some(i);
        run_process(r, a.threads)
    })?;
    // SAFETY: still mapped.
    let value = unsafe { ptr::read_volatile(base.add(counter_off as usize) as *const u64) };
    Ok((value, n, pids))
}

/// The ring's head index, on its own cache line.
pub const RING_HEAD_OFF: u64 = 64;
/// Where the slots start.
pub const RING_SLOTS_OFF: u64 = 4096;
pub const RING_SLOTS: u64 = 1024;
pub const RING_RECORD: u64 = 64;
pub const RING_SIZE: u64 = RING_SLOTS_OFF + RING_SLOTS * RING_RECORD;
// The head is one aligned word before the slots; the ring is whole pages.
const _: () = assert!(RING_HEAD_OFF.is_multiple_of(8) && RING_HEAD_OFF + 8 <= RING_SLOTS_OFF);
const _: () = assert!(RING_SIZE.is_multiple_of(PAGE));

/// Append one record: read the head, fill its slot, publish head + 1.
/// Two producers doing this at once lose records (the race).
///
/// # Safety
/// `ring` points to a live region of [`RING_SIZE`] bytes.
#[inline(never)]
pub unsafe fn ring_append_unsynchronized(ring: *mut u8, rec: &[u64; 8]) {
    // SAFETY: offsets inside the ring (the caller's promise).
    unsafe {
        let head = ring.add(RING_HEAD_OFF as usize) as *mut u64;
        let h = ptr::read_volatile(head);
        let slot = ring.add((RING_SLOTS_OFF + (h % RING_SLOTS) * RING_RECORD) as usize) as *mut u64;
        for (i, w) in rec.iter().enumerate() {
            ptr::write_volatile(slot.add(i), *w);
        }
        ptr::write_volatile(head, h + 1);
    }
}

/// The `ring` workload (see the module's doc).
pub fn ring(producers: usize, secs: f64) -> Result<()> {
    if !(2..=MAX_PROCS).contains(&producers) {
        bail!("--producers {producers}: between 2 and {MAX_PROCS}");
    }
    if !(secs.is_finite() && secs >= 0.0) {
        bail!("--secs {secs}: seconds (0 or more)");
    }
    let region = map_region(RegionMemory::Anon, RING_SIZE)?;
    let base = Shared(region.base);
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let (n, pids) = fork_all(producers, |i| {
        let b = base;
        let pid = std::process::id() as u64;
        let mut n = 0u64;
        while Instant::now() < deadline {
            for _ in 0..1000 {
                let rec = [pid, i as u64, n, 0, 0, 0, 0, 0];
                // SAFETY: the ring region is RING_SIZE bytes and live.
                unsafe { ring_append_unsynchronized(b.0, &rec) };
                n += 1;
            }
        }
        n
    })?;
    // SAFETY: still mapped.
    let head = unsafe { ptr::read_volatile(region.base.add(RING_HEAD_OFF as usize) as *const u64) };
    let pids: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
    println!("ring {RING_HEAD_OFF} {head} {n} {}", pids.join(" "));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("1MB"), Ok(1 << 20));
    }

    #[test]
    fn bad_sizes_are_refused() {
        for s in ["", "M", "x", "-1M", "1.5G", "0", "99999999999T", "16Q"] {
            assert!(parse_size(s).is_err(), "{s:?} accepted");
        }
    }

    #[test]
    fn the_racing_word_sits_128_bytes_into_the_middle_page() {
        assert_eq!(racy_offset(4096), 128);
        assert_eq!(racy_offset(1 << 20), (512 << 10) + 128);
        assert_eq!(racy_offset(16 << 20), (8 << 20) + 128);
        assert_eq!(racy_offset(4 << 30), (2 << 30) + 128);
        // An odd number of pages: the middle rounds down to a page.
        assert_eq!(racy_offset(3 * 4096), 4096 + 128);
    }

    #[test]
    fn legitimate_slots_never_touch_the_racing_word_or_the_mutex() {
        for size in [4096, 3 * 4096, 16 << 20, 4 << 30] {
            let counter = racy_offset(size);
            let page = counter / PAGE * PAGE;
            // The mutex (40 bytes) at the page's start, the counter after it.
            assert!(counter >= page + 40 && counter + 8 <= size);
            for i in 0..MAX_PROCS {
                let s = slot_offset(page, i);
                assert!(s + 8 <= page + PAGE, "slot {i} leaves the page");
                assert!(s >= counter + 8, "slot {i} overlaps the counter");
            }
        }
    }

    fn args(size: u64, procs: usize) -> RegionArgs {
        RegionArgs {
            size,
            memory: RegionMemory::Anon,
            procs,
            threads: 1,
            secs: 1.0,
            rate: 0,
            sweep_rate: 0,
            quiet_secs: 0.0,
            touch: false,
            sync: RegionSync::None,
        }
    }

    #[test]
    fn region_arguments_are_checked() {
        assert!(check_region_args(&args(16 << 20, 2)).is_ok());
        assert!(check_region_args(&args(4097, 2)).is_err());
        assert!(check_region_args(&args(2048, 2)).is_err());
        assert!(check_region_args(&args(4096, 1)).is_err());
        assert!(check_region_args(&args(4096, MAX_PROCS + 1)).is_err());
        assert!(check_region_args(&args(4096, MAX_PROCS)).is_ok());
    }
}
