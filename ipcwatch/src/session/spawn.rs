//! Starting the traced command so that its very first syscall is traced:
//! the child is forked and stops itself, ipcwatch adds its pid to the
//! kernel filter, and only then lets it continue into exec.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::error::Error;

/// A forked child stopped before exec.
pub struct Blocked {
    pub pid: u32,
    status: OwnedFd,
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Error> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::Spawn(format!(
            "pipe2: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: pipe2 returned two fresh descriptors that we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
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
    let (st_r, st_w) = pipe()?;
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
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child to stop.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WUNTRACED) };
        if r == pid && libc::WIFSTOPPED(status) {
            break;
        }
        if r == pid
            || (r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR))
        {
            return Err(Error::Spawn(
                "the command's process died before it could exec".into(),
            ));
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
        // SAFETY: signalling our own stopped child.
        unsafe { libc::kill(self.pid as i32, libc::SIGCONT) };
        let mut err = 0i32;
        let n = loop {
            // SAFETY: reading up to 4 bytes into a valid local.
            let n = unsafe { libc::read(self.status.as_raw_fd(), (&raw mut err).cast(), 4) };
            if n >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break n;
            }
        };
        if n == 4 {
            let mut status = 0;
            // SAFETY: reaping our own child.
            unsafe { libc::waitpid(self.pid as i32, &mut status, 0) };
            return Err(Error::Spawn(format!(
                "cannot run {argv0}: {}",
                std::io::Error::from_raw_os_error(err)
            )));
        }
        Ok(self.pid)
    }
}

/// A pidfd for `pid`: readable once the process has exited.
pub fn pidfd(pid: u32) -> Result<OwnedFd, Error> {
    // SAFETY: plain syscall; the result is a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(Error::Spawn(format!(
            "pidfd_open: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: pidfd_open returned a fresh descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Reap `pid` and return its exit code (128 + signal when killed).
pub fn reap(pid: u32) -> Option<i32> {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    let r = unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) };
    if r != pid as i32 {
        return None;
    }
    if libc::WIFEXITED(status) {
        Some(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        Some(128 + libc::WTERMSIG(status))
    } else {
        None
    }
}
