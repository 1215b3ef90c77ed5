//! `ipcwatch demo`: the TUI on built-in workloads. ipcwatch traces itself
//! started again as `ipcwatch demo --workloads-only` (hidden), which runs
//! the workloads below with plain libc calls. Each runs in its own
//! processes, at a pace a person can watch, until ipcwatch goes away
//! (every process asks the kernel for SIGTERM when its parent dies) or
//! `--duration` ends:
//!
//! - a pipe pipeline: `demo-src` -> `demo-filter` -> `demo-sink`;
//! - a unix socket pair between `demo-sock-a` and `demo-sock-b`;
//! - a POSIX message queue, `demo-mq-send` -> `demo-mq-recv`;
//! - a counter in MAP_SHARED|MAP_ANONYMOUS memory bumped by two processes
//!   with no synchronization (`demo-racer`: the race);
//! - another bumped under a process-shared pthread mutex (`demo-locked`).
//!
//! The workloads for tests and benchmarks are elsewhere (the
//! `ipcwatch-workload` crate); these are the only ones ipcwatch ships.

use std::ffi::CString;
use std::os::fd::{BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;
use ipcwatch::session::RecordArgs;
use ipcwatch::text::Clean;
use rustix::process::{Pid, Signal, WaitOptions};

use super::args::parse_secs;

#[derive(clap::Args, Debug)]
pub struct DemoCli {
    /// Run only the demo's workloads, without the TUI: what `ipcwatch demo`
    /// starts and traces.
    #[arg(long, hide = true)]
    workloads_only: bool,
    /// With --workloads-only: stop after this long (default: when the
    /// parent goes).
    #[arg(long, hide = true, requires = "workloads_only", value_parser = parse_secs)]
    duration: Option<Duration>,
}

pub fn run(cli: DemoCli) -> ExitCode {
    let r = if cli.workloads_only {
        workloads(cli.duration)
    } else {
        watch()
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipcwatch: error: {}", Clean(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

/// The TUI, live, on this executable's `demo --workloads-only`.
fn watch() -> Result<()> {
    let exe = std::env::current_exe()
        .map_err(|e| anyhow::anyhow!("cannot find my own executable: {e}"))?;
    let args = RecordArgs {
        command: vec![
            exe.display().to_string(),
            "demo".into(),
            "--workloads-only".into(),
        ],
        ..RecordArgs::default()
    };
    ipcwatch::tui::run_live(args, "demo")
}

/// `what` failed, with the OS error it left.
fn os_err(what: &str) -> anyhow::Error {
    anyhow::anyhow!("{what}: {}", std::io::Error::last_os_error())
}

/// Name this process (its comm) so the TUI shows what it is.
fn set_name(name: &str) {
    if let Ok(c) = CString::new(name) {
        let _ = rustix::thread::set_name(&c);
    }
}

/// Die with SIGTERM when the parent goes; exit now if it already went.
fn die_with_parent(parent: Option<Pid>) {
    let _ = rustix::process::set_parent_process_death_signal(Some(Signal::TERM));
    if rustix::process::getppid() != parent {
        std::process::exit(0);
    }
}

/// Fork a child running `body` (which never returns).
fn spawn(name: &str, body: impl FnOnce()) -> Result<i32> {
    let me = Some(rustix::process::getpid());
    // fork stays libc: rustix offers applications no fork.
    // SAFETY: the demo's processes are single-threaded when they fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(os_err("fork"));
    }
    if pid == 0 {
        die_with_parent(me);
        set_name(name);
        body();
        std::process::exit(0);
    }
    Ok(pid)
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// A descriptor of the demo's own, by number (they are passed across
/// forks as plain integers, as a C program would).
fn fd_ref(fd: i32) -> BorrowedFd<'static> {
    // SAFETY: the demo only names descriptors it opened and has not closed.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

fn write_all(fd: i32, buf: &[u8]) -> bool {
    let mut off = 0;
    while off < buf.len() {
        match rustix::io::write(fd_ref(fd), &buf[off..]) {
            Ok(n) if n > 0 => off += n,
            _ => return false,
        }
    }
    true
}

fn read_some(fd: i32, buf: &mut [u8]) -> isize {
    rustix::io::read(fd_ref(fd), buf).map_or(-1, |n| n as isize)
}

fn pipe() -> Result<[i32; 2]> {
    let (r, w) = rustix::pipe::pipe().map_err(|e| anyhow::anyhow!("pipe: {e}"))?;
    Ok([r.into_raw_fd(), w.into_raw_fd()])
}

fn close(fd: i32) {
    // SAFETY: closing a descriptor this process owns and no longer uses.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
}

/// src writes 512-byte chunks every 20 ms; filter copies them on; sink reads.
fn pipeline() -> Result<()> {
    let a = pipe()?;
    let b = pipe()?;
    spawn("demo-src", || {
        close(a[0]);
        close(b[0]);
        close(b[1]);
        let buf = [b's'; 512];
        while write_all(a[1], &buf) {
            sleep_ms(20);
        }
    })?;
    spawn("demo-filter", || {
        close(a[1]);
        close(b[0]);
        let mut buf = [0u8; 4096];
        loop {
            let n = read_some(a[0], &mut buf);
            if n <= 0 || !write_all(b[1], &buf[..n as usize]) {
                return;
            }
        }
    })?;
    spawn("demo-sink", || {
        close(a[0]);
        close(a[1]);
        close(b[1]);
        let mut buf = [0u8; 4096];
        while read_some(b[0], &mut buf) > 0 {}
    })?;
    for fd in a.into_iter().chain(b) {
        close(fd);
    }
    Ok(())
}

/// Request and reply of 100 and 300 bytes every 50 ms over a socketpair.
fn socket_pair() -> Result<()> {
    let mut sv = [0; 2];
    // SAFETY: valid out array.
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, sv.as_mut_ptr()) } != 0 {
        return Err(os_err("socketpair"));
    }
    spawn("demo-sock-a", || {
        close(sv[1]);
        let mut buf = [0u8; 300];
        while write_all(sv[0], &[b'q'; 100]) && read_some(sv[0], &mut buf) > 0 {
            sleep_ms(50);
        }
    })?;
    spawn("demo-sock-b", || {
        close(sv[0]);
        let mut buf = [0u8; 100];
        while read_some(sv[1], &mut buf) > 0 && write_all(sv[1], &[b'r'; 300]) {}
    })?;
    close(sv[0]);
    close(sv[1]);
    Ok(())
}

/// A POSIX queue: 10 messages of 64 bytes a second.
fn message_queue() -> Result<()> {
    // SAFETY: getpid cannot fail.
    let name = CString::new(format!(
        "/ipcwatch-demo-{}",
        rustix::process::getpid().as_raw_nonzero()
    ))
    .map_err(|_| anyhow::anyhow!("queue name"))?;
    // SAFETY: an all-zero mq_attr is valid; the fields are set below.
    let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
    attr.mq_maxmsg = 8;
    attr.mq_msgsize = 64;
    // SAFETY: valid name and attributes; mode and attr are the variadic arguments.
    let q = unsafe {
        libc::mq_open(
            name.as_ptr(),
            libc::O_CREAT | libc::O_RDWR,
            0o600 as libc::mode_t,
            &raw mut attr,
        )
    };
    if q < 0 {
        return Err(os_err("mq_open"));
    }
    // The queue lives as long as the two processes hold it.
    // SAFETY: a valid name.
    unsafe { libc::mq_unlink(name.as_ptr()) };
    spawn("demo-mq-send", || {
        let msg = [b'm'; 64];
        // SAFETY: sending from a valid buffer on an open queue.
        while unsafe { libc::mq_send(q, msg.as_ptr().cast(), msg.len(), 1) } == 0 {
            sleep_ms(100);
        }
    })?;
    spawn("demo-mq-recv", || {
        let mut buf = [0u8; 64];
        let mut prio = 0;
        // SAFETY: receiving into a buffer of mq_msgsize bytes.
        while unsafe { libc::mq_receive(q, buf.as_mut_ptr().cast(), buf.len(), &mut prio) } >= 0 {}
    })?;
    // SAFETY: closing our copy of the queue descriptor.
    unsafe { libc::mq_close(q) };
    Ok(())
}

/// Shared page: a counter, and a process-shared mutex guarding another.
#[repr(C)]
struct Shared {
    racy: u64,
    locked: u64,
    mutex: libc::pthread_mutex_t,
}

fn shared_counters() -> Result<()> {
    let size = 4096;
    // SAFETY: a fresh anonymous shared mapping; checked below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(os_err("mmap"));
    }
    let shared = p.cast::<Shared>();
    // SAFETY: the mapping is page-sized, zeroed and suitably aligned for
    // Shared; the attribute lives on this stack for the init call only.
    unsafe {
        let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
        libc::pthread_mutexattr_init(&mut attr);
        libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
        libc::pthread_mutex_init(&raw mut (*shared).mutex, &attr);
        libc::pthread_mutexattr_destroy(&mut attr);
    }
    let addr = shared as usize;
    for _ in 0..2 {
        spawn("demo-racer", move || {
            let s = addr as *mut Shared;
            loop {
                for _ in 0..1000 {
                    // SAFETY: the mapping outlives the process.
                    unsafe { ipcwatch_demo_bump_unsynchronized(&raw mut (*s).racy) };
                }
                sleep_ms(10);
            }
        })?;
        spawn("demo-locked", move || {
            let s = addr as *mut Shared;
            loop {
                for _ in 0..1000 {
                    // SAFETY: the mutex was initialized process-shared in
                    // this mapping before the fork; the counter is only
                    // touched under it.
                    unsafe {
                        libc::pthread_mutex_lock(&raw mut (*s).mutex);
                        let v = std::ptr::read_volatile(&raw const (*s).locked);
                        std::ptr::write_volatile(&raw mut (*s).locked, v + 1);
                        libc::pthread_mutex_unlock(&raw mut (*s).mutex);
                    }
                }
                sleep_ms(10);
            }
        })?;
    }
    Ok(())
}

/// Start every demo workload, then wait: until `duration` (killing the
/// children) or until ipcwatch, the parent, goes away.
fn workloads(duration: Option<Duration>) -> Result<()> {
    die_with_parent(rustix::process::getppid());
    set_name("demo");
    pipeline()?;
    socket_pair()?;
    message_queue()?;
    shared_counters()?;
    let start = Instant::now();
    loop {
        // Reap the children that ended, without blocking.
        while let Ok(Some(_)) = rustix::process::wait(WaitOptions::NOHANG) {}
        if duration.is_some_and(|d| start.elapsed() >= d) {
            // Each child dies with us (PR_SET_PDEATHSIG).
            break;
        }
        sleep_ms(200);
    }
    Ok(())
}

/// The demo's race: an unsynchronized read-modify-write of a shared counter
/// (volatile, so it stays a plain load and store). Not mangled, and kept
/// in the dynamic symbol table of the stripped binary that `cargo xtask
/// dist` builds, so that the finding names it there too.
///
/// # Safety
/// `counter` points to a live, aligned u64.
#[unsafe(no_mangle)]
#[inline(never)]
pub unsafe extern "C" fn ipcwatch_demo_bump_unsynchronized(counter: *mut u64) {
    // SAFETY: the caller's promise.
    unsafe {
        let v = std::ptr::read_volatile(counter);
        std::ptr::write_volatile(counter, v + 1);
    }
}
