//! Finding processes and IPC descriptors that existed before ipcwatch
//! started, from /proc (through the procfs crate).

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use procfs::process::{FDInfo, FDTarget, Process};

use super::cgroup;
use crate::ids::{fifo_id, pipe_id};
use crate::record::{
    ChannelEvent, ChannelKind, ChannelLine, End, ProcessEvent, ProcessLine, Record, Text,
};

/// `pid`'s /proc entry, or `None` when it has exited (or cannot be read).
fn process(pid: u32) -> Option<Process> {
    Process::new(i32::try_from(pid).ok()?).ok()
}

/// comm and parent of a process, from /proc/PID/stat.
pub fn comm_and_ppid(pid: u32) -> Option<(Text, u32)> {
    let stat = process(pid)?.stat().ok()?;
    Some((Text::from(stat.comm), u32::try_from(stat.ppid).ok()?))
}

/// Every pid in /proc, sorted (the `Process` handles are dropped at once:
/// each holds a descriptor).
pub fn all_pids() -> Vec<u32> {
    let Ok(all) = procfs::process::all_processes() else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = all
        .filter_map(|p| u32::try_from(p.ok()?.pid).ok())
        .collect();
    pids.sort_unstable();
    pids
}

/// The text of a descriptor's link, as readlink(2) on /proc/PID/fd/FD
/// shows it: procfs parses the link into an [`FDTarget`], this writes it
/// back the way the kernel wrote it.
fn fd_target_text(target: &FDTarget) -> String {
    match target {
        FDTarget::Path(p) => p.to_string_lossy().into_owned(),
        FDTarget::Socket(ino) => format!("socket:[{ino}]"),
        FDTarget::Net(ino) => format!("net:[{ino}]"),
        FDTarget::Pipe(ino) => format!("pipe:[{ino}]"),
        FDTarget::AnonInode(what) => format!("anon_inode:{what}"),
        FDTarget::MemFD(name) => format!("/memfd:{name}"),
        FDTarget::Other(kind, ino) => format!("{kind}:[{ino}]"),
        FDTarget::Unknown(kind, rest) => format!("{kind}:{rest}"),
    }
}

/// What `pid`'s descriptor `fd` refers to (the /proc/PID/fd/FD link), while
/// the process lives.
pub fn fd_link(pid: u32, fd: i32) -> Option<String> {
    let info = process(pid)?.fd_from_fd(fd).ok()?;
    Some(fd_target_text(&info.target))
}

/// flags of an open descriptor (octal, from fdinfo). procfs 0.18 has no
/// API for /proc/PID/fdinfo, so this one is still read by hand.
fn fd_flags(pid: u32, fd: i32) -> Option<u32> {
    let info = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
    let line = info.lines().find(|l| l.starts_with("flags:"))?;
    u32::from_str_radix(line["flags:".len()..].trim(), 8).ok()
}

/// The IPC channel behind `pid`'s descriptor `info`, if it is one.
fn channel_of(pid: u32, info: &FDInfo) -> Option<(ChannelKind, Text, Option<String>)> {
    let target = match &info.target {
        FDTarget::Pipe(ino) => return Some((ChannelKind::Pipe, pipe_id(*ino), None)),
        FDTarget::Path(p) if p.starts_with("/") => p.to_string_lossy(),
        _ => return None,
    };
    // The FIFO's device and inode: stat(2) through the link (procfs has
    // the link's text, not what it points to).
    let meta = fs::metadata(format!("/proc/{pid}/fd/{}", info.fd)).ok()?;
    if !meta.file_type().is_fifo() {
        return None;
    }
    let dev = meta.dev();
    Some((
        ChannelKind::Fifo,
        fifo_id(libc::major(dev), libc::minor(dev), meta.ino()),
        Some(target.into_owned()),
    ))
}

/// Records for one process: an `existing` process line, then a channel
/// line per IPC descriptor. With `before_exec`, descriptors marked
/// close-on-exec are left out: the process is about to exec, which closes
/// them.
pub fn scan_process(pid: u32, ts_ns: u64, before_exec: bool, out: &mut Vec<Record>) {
    let Some((comm, ppid)) = comm_and_ppid(pid) else {
        return;
    };
    out.push(Record::Process(ProcessLine {
        ts_ns,
        event: ProcessEvent::Existing,
        pid,
        tid: pid,
        comm: comm.clone(),
        ppid: Some(ppid),
        filename: None,
        child: None,
        exit_code: None,
        signal: None,
        origin: cgroup::origin_of_pid(pid),
    }));
    let Some(Ok(fds)) = process(pid).map(|p| p.fd()) else {
        return;
    };
    let mut fds: Vec<FDInfo> = fds.filter_map(Result::ok).collect();
    fds.sort_unstable_by_key(|i| i.fd);
    for info in fds {
        let fd = info.fd;
        let Some((kind, channel, path)) = channel_of(pid, &info) else {
            continue;
        };
        let flags = fd_flags(pid, fd).unwrap_or(0);
        let cloexec = flags & libc::O_CLOEXEC as u32 != 0;
        if before_exec && cloexec {
            continue;
        }
        out.push(Record::Channel(ChannelLine {
            ts_ns,
            event: ChannelEvent::Existing,
            kind,
            channel,
            pid,
            tid: pid,
            comm: comm.clone(),
            fd: Some(fd),
            end: Some(End::from_open_flags(flags)),
            old_fd: None,
            cloexec,
            path,
            syscall: None,
            ext: Default::default(),
        }));
    }
}

/// Every process for which `want(pid, comm)` holds, except ipcwatch itself.
pub fn scan(ts_ns: u64, want: &dyn Fn(u32, &str) -> bool) -> Vec<Record> {
    let me = std::process::id();
    let mut out = Vec::new();
    for pid in all_pids() {
        if pid == me {
            continue;
        }
        let Some((comm, _)) = comm_and_ppid(pid) else {
            continue;
        };
        if want(pid, &comm) {
            scan_process(pid, ts_ns, false, &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn finds_a_pipe_of_this_process() {
        let (r, w) = std::io::pipe().unwrap();
        let ino = fs::metadata(format!("/proc/self/fd/{}", r.as_raw_fd()))
            .unwrap()
            .ino();
        let mut out = Vec::new();
        scan_process(std::process::id(), 5, false, &mut out);
        let mine: Vec<_> = out
            .iter()
            .filter_map(|rec| match rec {
                Record::Channel(l) if l.channel == pipe_id(ino) => Some((l.fd, l.end)),
                _ => None,
            })
            .collect();
        assert!(
            mine.contains(&(Some(r.as_raw_fd()), Some(End::Read))),
            "{mine:?}"
        );
        assert!(
            mine.contains(&(Some(w.as_raw_fd()), Some(End::Write))),
            "{mine:?}"
        );
    }

    #[test]
    fn fd_links_read_as_readlink_shows_them() {
        let (r, _w) = std::io::pipe().unwrap();
        let (sock, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let file = fs::File::open("/proc/self/status").unwrap();
        let name = std::ffi::CString::new("ipcw test (x)").unwrap();
        // SAFETY: a valid C string; the descriptor is closed below.
        let memfd = unsafe { libc::memfd_create(name.as_ptr(), 0) };
        assert!(memfd >= 0);
        // SAFETY: plain syscall, no pointers.
        let efd = unsafe { libc::eventfd(0, 0) };
        assert!(efd >= 0);
        let me = std::process::id();
        // Only our own descriptors: other tests open and close theirs.
        for fd in [
            r.as_raw_fd(),
            sock.as_raw_fd(),
            file.as_raw_fd(),
            memfd,
            efd,
        ] {
            let link = fs::read_link(format!("/proc/{me}/fd/{fd}")).unwrap();
            assert_eq!(
                fd_link(me, fd).as_deref(),
                Some(&*link.to_string_lossy()),
                "fd {fd}"
            );
        }
        // SAFETY: descriptors opened above, closed once.
        unsafe {
            libc::close(memfd);
            libc::close(efd);
        }
    }

    #[test]
    fn parses_comm_with_spaces_and_parens() {
        let (comm, ppid) = comm_and_ppid(std::process::id()).unwrap();
        assert!(!comm.is_empty());
        assert_eq!(ppid, std::os::unix::process::parent_id());
    }
}
