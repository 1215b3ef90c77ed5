//! Starting the traced command so that its very first syscall is traced:
//! the child is forked and stops itself, ipcwatch adds its pid to the
//! kernel filter, and only then lets it continue into exec.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};

use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, Signal, WaitOptions};

use crate::error::Error;

/// A forked child stopped before exec.
pub struct Blocked {
    pub pid: u32,
    status: OwnedFd,
}

fn spawn_err(what: &str, e: Errno) -> Error {
    Error::Spawn(format!("{what}: {}", std::io::Error::from(e)))
}

fn pid_of(pid: u32) -> Result<Pid, Error> {
    Pid::from_raw(pid as i32).ok_or_else(|| Error::Spawn(format!("not a process id: {pid}")))
}

/// Fork `argv`, stopped (SIGSTOP) before exec, so that the caller can
/// start tracing it before it runs anything of its own. With
/// `stdout_to_stderr`, the child's standard output goes to ipcwatch's
/// standard error (used when the trace itself goes to standard output).
///
/// Call it while the process has a single thread (before the async
/// runtime starts): the child runs only async-signal-safe code.
pub fn spawn_blocked(argv: &[String], stdout_to_stderr: bool) -> Result<Blocked, Error> {
    let args: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| Error::Spawn("the command contains a NUL byte".into()))?;
    if args.is_empty() {
        return Err(Error::Spawn("no command given after --".into()));
    }
    let mut ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // Reports a failed exec: close-on-exec, so EOF means success.
    let (st_r, st_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| spawn_err("pipe2", e))?;
    // fork stays libc: rustix offers applications no fork (only its
    // runtime's), and the child below must make only raw,
    // async-signal-safe calls.
    // SAFETY: the child only calls async-signal-safe functions (raise,
    // signal, sigprocmask, dup2, execvp, write, _exit) on memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Error::Spawn(format!(
            "fork: {}",
            std::io::Error::last_os_error()
        )));
    }
    if pid == 0 {
        // SAFETY: see above; every pointer was built before fork.
        unsafe {
            libc::raise(libc::SIGSTOP);
            // Rust ignores SIGPIPE; the command must get the default
            // dispositions and an empty signal mask, as from a shell.
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            if stdout_to_stderr {
                libc::dup2(2, 1);
            }
            libc::execvp(ptrs[0], ptrs.as_ptr());
            let err = *libc::__errno_location();
            libc::write(st_w.as_raw_fd(), (&raw const err).cast(), 4);
            libc::_exit(127);
        }
    }
    drop(st_w);
    let child = pid_of(pid as u32)?;
    loop {
        match rustix::process::waitpid(Some(child), WaitOptions::UNTRACED) {
            Ok(Some((_, status))) if status.stopped() => break,
            Err(Errno::INTR) => continue,
            _ => {
                return Err(Error::Spawn(
                    "the command's process died before it could exec".into(),
                ));
            }
        }
    }
    Ok(Blocked {
        pid: pid as u32,
        status: st_r,
    })
}

impl Blocked {
    /// Let the child exec. Fails when exec failed (the command was not
    /// found, or is not executable).
    pub fn release(self, argv0: &str) -> Result<u32, Error> {
        let child = pid_of(self.pid)?;
        rustix::process::kill_process(child, Signal::CONT).map_err(|e| spawn_err("SIGCONT", e))?;
        let mut err = [0u8; 4];
        let n = loop {
            match rustix::io::read(&self.status, &mut err) {
                Err(Errno::INTR) => continue,
                r => break r.unwrap_or(0),
            }
        };
        if n == 4 {
            // Reap it: it exited with 127.
            let _ = rustix::process::waitpid(Some(child), WaitOptions::empty());
            return Err(Error::Spawn(format!(
                "cannot run {argv0}: {}",
                std::io::Error::from_raw_os_error(i32::from_ne_bytes(err))
            )));
        }
        Ok(self.pid)
    }
}

/// A pidfd for `pid`: readable once the process has exited.
pub fn pidfd(pid: u32) -> Result<OwnedFd, Error> {
    rustix::process::pidfd_open(pid_of(pid)?, PidfdFlags::empty())
        .map_err(|e| spawn_err("pidfd_open", e))
}

/// Reap `pid` and return its exit code (128 + signal when killed).
pub fn reap(pid: u32) -> Option<i32> {
    let (_, status) = rustix::process::waitpid(Some(pid_of(pid).ok()?), WaitOptions::NOHANG)
        .ok()
        .flatten()?;
    if let Some(code) = status.exit_status() {
        Some(code)
    } else {
        status.terminating_signal().map(|sig| 128 + sig)
    }
}

/// Send SIGTERM to `pid` (our own child: the caller makes sure it is not
/// yet reaped, so the pid is still its).
pub fn terminate(pid: u32) {
    if let Ok(p) = pid_of(pid) {
        let _ = rustix::process::kill_process(p, Signal::TERM);
    }
}
