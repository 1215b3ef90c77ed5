//! Hostile or unusual traced processes, which must never crash ipcwatch:
//! two processes race on a shared counter (so the detector samples the
//! region and arms the word), then truncate, unmap, shrink, remove or
//! replace the region under it, or hold every debug register of their
//! threads; and processes with a thousand threads.

use std::ffi::CString;
use std::io::{Read, Write};
use std::ptr;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::race::{COUNTER_OFF, bump_counter_unsynchronized};
use crate::sys::{child_run, fork, os_err, pipe, wait};

/// Size of the raced region (4 pages).
const LEN: usize = 16384;
/// mremap: the region is bigger, the counter sits beyond the size the
/// mapping shrinks to.
const MREMAP_LEN: usize = 65536;
const MREMAP_COUNTER: usize = 32768 + COUNTER_OFF;
const MREMAP_TO: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Action {
    /// memfd region; the parent truncates it to 0 bytes (both keep it
    /// mapped and stop touching it).
    Truncate,
    /// memfd region; the parent truncates it to half its size (both keep
    /// the whole of it mapped, past the file's new end, and stop touching
    /// it).
    Shrink,
    /// Shared anonymous region; both unmap it.
    Unmap,
    /// Shared anonymous region of 64 KiB, counter at 32 KiB + 128; both
    /// shrink their mapping to 4 KiB with mremap.
    Mremap,
    /// SysV segment; the parent removes it (IPC_RMID), both detach.
    Rmid,
    /// Shared anonymous region; both map a memfd made before the fork
    /// over it (MAP_FIXED) and go on racing on the new region.
    Replace,
    /// Shared anonymous region; before racing, each process takes every
    /// debug register of its thread with breakpoints of its own (the
    /// action time is not used).
    StealDr,
}

fn memfd(name: &str, len: usize) -> Result<i32> {
    let name = CString::new(name)?;
    // SAFETY: plain syscalls; results checked.
    unsafe {
        let fd = libc::memfd_create(name.as_ptr(), 0);
        if fd < 0 || libc::ftruncate(fd, len as i64) != 0 {
            bail!(os_err("memfd_create"));
        }
        Ok(fd)
    }
}

fn map(len: usize, flags: i32, fd: i32, at: *mut libc::c_void) -> Result<*mut u8> {
    // SAFETY: a new mapping (or, with MAP_FIXED, one over our own region
    // that nothing touches while it is replaced); result checked.
    let p = unsafe {
        libc::mmap(
            at,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | flags,
            fd,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        bail!(os_err("mmap"));
    }
    Ok(p as *mut u8)
}

/// Bump the counter at `counter` until `until`.
fn race_until(counter: *mut u64, until: Instant) {
    while Instant::now() < until {
        for _ in 0..1000 {
            bump_counter_unsynchronized(counter);
        }
    }
}

// From linux/perf_event.h (not in the libc crate).
const PERF_TYPE_BREAKPOINT: u32 = 5;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;

/// A breakpoint (write watchpoint, 8 bytes) on `addr` in the calling
/// thread, counting only; the descriptor, or the errno.
fn breakpoint(addr: u64) -> std::result::Result<i32, i32> {
    // perf_event_attr as of PERF_ATTR_SIZE_VER5 (112 bytes): type, size,
    // config, sample_period, sample_type, read_format, flags (u64),
    // wakeup_events, bp_type, bp_addr, bp_len, ...
    let mut attr = [0u8; 112];
    let put32 =
        |a: &mut [u8; 112], at: usize, v: u32| a[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    let put64 =
        |a: &mut [u8; 112], at: usize, v: u64| a[at..at + 8].copy_from_slice(&v.to_ne_bytes());
    put32(&mut attr, 0, PERF_TYPE_BREAKPOINT);
    put32(&mut attr, 4, 112);
    put32(&mut attr, 52, 2); // bp_type: HW_BREAKPOINT_W
    put64(&mut attr, 56, addr); // bp_addr
    put64(&mut attr, 64, 8); // bp_len: HW_BREAKPOINT_LEN_8
    // SAFETY: a valid attr for this thread (pid 0), any CPU.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_ptr(),
            0,
            -1,
            -1,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(fd as i32)
    }
}

/// Take every debug register of the calling thread: breakpoints on words
/// of our own until the kernel refuses one. Returns how many were taken
/// and the errno of the refusal.
fn steal_debug_registers() -> Result<(usize, i32)> {
    let words: &'static mut [u64; 8] = Box::leak(Box::new([0u64; 8]));
    let mut taken = 0;
    for w in words.iter() {
        match breakpoint(w as *const u64 as u64) {
            Ok(_fd) => taken += 1, // kept open for the life of the process
            Err(errno) => {
                if taken == 0 {
                    bail!(
                        "perf_event_open(PERF_TYPE_BREAKPOINT): {}",
                        std::io::Error::from_raw_os_error(errno)
                    );
                }
                return Ok((taken, errno));
            }
        }
    }
    bail!("the kernel gave {taken} breakpoints to one thread without refusing one")
}

/// Two processes race on a counter in a shared region for `after_ms`,
/// then do `action` to it (see [`Action`]), then live on until `secs`
/// have passed (racing on the new region, for replace) and exit 0. Prints
/// "hostile <action> <parent pid> <child pid>" and, for steal-dr, each
/// process's "steal-dr <pid> <breakpoints taken> <errno of the next>".
pub fn hostile(action: Action, after_ms: u64, secs: f64) -> Result<()> {
    let start = Instant::now();
    let act_at = start + Duration::from_millis(after_ms);
    let end = start + Duration::from_secs_f64(secs);
    if act_at > end && action != Action::StealDr {
        bail!("--after-ms must fall within --secs");
    }
    let (len, counter_off) = match action {
        Action::Mremap => (MREMAP_LEN, MREMAP_COUNTER),
        _ => (LEN, COUNTER_OFF),
    };
    let mut fd = -1;
    let mut shmid = -1;
    let mut spare = -1;
    let region = match action {
        Action::Truncate | Action::Shrink => {
            fd = memfd("ipcwatch-hostile", len)?;
            map(len, 0, fd, ptr::null_mut())?
        }
        Action::Rmid => {
            // SAFETY: plain syscalls; results checked.
            unsafe {
                shmid = libc::shmget(libc::IPC_PRIVATE, len, libc::IPC_CREAT | 0o600);
                if shmid < 0 {
                    bail!(os_err("shmget"));
                }
                let p = libc::shmat(shmid, ptr::null(), 0);
                if p as isize == -1 {
                    bail!(os_err("shmat"));
                }
                p as *mut u8
            }
        }
        _ => {
            if action == Action::Replace {
                spare = memfd("ipcwatch-replacement", len)?;
            }
            map(len, libc::MAP_ANONYMOUS, -1, ptr::null_mut())?
        }
    };
    // SAFETY: inside the region.
    let counter = unsafe { region.add(counter_off) } as *mut u64;
    // The child tells the parent it no longer touches the region.
    let (mut stopped_r, mut stopped_w) = pipe()?;
    let child = fork()?;
    let parent = child != 0;
    let mut body = move || -> Result<()> {
        if action == Action::StealDr {
            let (taken, errno) = steal_debug_registers()?;
            println!("steal-dr {} {taken} {errno}", std::process::id());
        }
        race_until(counter, act_at.min(end));
        if action == Action::StealDr {
            race_until(counter, end);
            return Ok(());
        }
        // Both stop touching the region; the parent acts once the child
        // has stopped too.
        if parent {
            let mut b = [0u8; 1];
            stopped_r.read_exact(&mut b)?;
        } else {
            stopped_w.write_all(b"s")?;
        }
        // SAFETY: the region is ours and nothing touches it any more
        // (except through the new mapping, for replace).
        unsafe {
            match action {
                Action::Truncate if parent && libc::ftruncate(fd, 0) != 0 => {
                    bail!(os_err("ftruncate"));
                }
                Action::Shrink if parent && libc::ftruncate(fd, (len / 2) as i64) != 0 => {
                    bail!(os_err("ftruncate"));
                }
                Action::Unmap if libc::munmap(region as *mut libc::c_void, len) != 0 => {
                    bail!(os_err("munmap"));
                }
                Action::Mremap => {
                    let p = libc::mremap(region as *mut libc::c_void, len, MREMAP_TO, 0);
                    if p == libc::MAP_FAILED {
                        bail!(os_err("mremap"));
                    }
                }
                Action::Rmid => {
                    if parent && libc::shmctl(shmid, libc::IPC_RMID, ptr::null_mut()) != 0 {
                        bail!(os_err("shmctl(IPC_RMID)"));
                    }
                    if libc::shmdt(region as *const libc::c_void) != 0 {
                        bail!(os_err("shmdt"));
                    }
                }
                Action::Replace => {
                    map(len, libc::MAP_FIXED, spare, region as *mut libc::c_void)?;
                    race_until(counter, end);
                }
                _ => {}
            }
        }
        if let Some(rest) = end.checked_duration_since(Instant::now()) {
            std::thread::sleep(rest);
        }
        Ok(())
    };
    if !parent {
        child_run(body);
    }
    body()?;
    let status = wait(child)?;
    if status != 0 {
        bail!("the child failed (status {status})");
    }
    let name = clap::ValueEnum::to_possible_value(&action).map(|v| v.get_name().to_string());
    println!(
        "hostile {} {} {child}",
        name.unwrap_or_default(),
        std::process::id()
    );
    Ok(())
}

/// Two processes map one shared page; each runs `count` threads, of which
/// `count - 1` sleep until the end and one (the main thread) races on the
/// counter with the other process's, for `secs`. Prints "threads <parent
/// pid> <child pid> <threads per process>".
pub fn threads(count: usize, secs: f64) -> Result<()> {
    if count == 0 {
        bail!("--count must be at least 1");
    }
    let page = crate::race::shared_page(crate::race::Memory::Anon)?;
    // SAFETY: inside the page.
    let counter = unsafe { page.add(COUNTER_OFF) } as *mut u64;
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let child = fork()?;
    let body = move || -> Result<()> {
        let mut idle = Vec::with_capacity(count - 1);
        for i in 1..count {
            let t = std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    if let Some(rest) = end.checked_duration_since(Instant::now()) {
                        std::thread::sleep(rest);
                    }
                });
            match t {
                Ok(t) => idle.push(t),
                Err(e) => bail!("thread {i} of {count}: {e}"),
            }
        }
        race_until(counter, end);
        for t in idle {
            let _ = t.join();
        }
        Ok(())
    };
    if child == 0 {
        child_run(body);
    }
    body()?;
    let status = wait(child)?;
    if status != 0 {
        bail!("the child failed (status {status})");
    }
    println!("threads {} {child} {count}", std::process::id());
    Ok(())
}
