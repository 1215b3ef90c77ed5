//! What every workload needs: fork, wait, pipes, and errors that carry
//! the OS error.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use anyhow::{Result, bail};

/// `what` failed, with the OS error it left.
pub fn os_err(what: &str) -> anyhow::Error {
    anyhow::anyhow!("{what}: {}", std::io::Error::last_os_error())
}

pub fn pipe() -> Result<(std::fs::File, std::fs::File)> {
    let mut fds = [0; 2];
    // SAFETY: valid out array.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(os_err("pipe"));
    }
    // SAFETY: fresh descriptors we own.
    Ok(unsafe {
        (
            std::fs::File::from(OwnedFd::from_raw_fd(fds[0])),
            std::fs::File::from(OwnedFd::from_raw_fd(fds[1])),
        )
    })
}

/// Child: run `f`, exit with its status (no destructors, so no close
/// calls: the kernel closes the descriptors at exit).
pub fn child_run(f: impl FnOnce() -> Result<()>) -> ! {
    let code = match f() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ipcwatch-workload child: {e:#}");
            1
        }
    };
    std::process::exit(code)
}

/// fork(); Ok(0) in the child. The workloads are single-threaded.
pub fn fork() -> Result<i32> {
    // SAFETY: the workload process is single-threaded here.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        bail!("fork: {}", std::io::Error::last_os_error());
    }
    Ok(pid)
}

pub fn wait(pid: i32) -> Result<i32> {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        bail!("waitpid: {}", std::io::Error::last_os_error());
    }
    Ok(libc::WEXITSTATUS(status))
}

pub fn inode_of(f: &impl AsRawFd) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/self/fd/{}", f.as_raw_fd()))
        .map(|m| m.ino())
        .unwrap_or(0)
}

/// Read everything from `r` until EOF; returns the byte count.
pub fn drain(mut r: impl Read) -> Result<u64> {
    let mut buf = vec![0u8; 65536];
    let mut total = 0;
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
}
