//! Finding processes and IPC descriptors that existed before ipcwatch
//! started, from /proc.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use crate::ids::{fifo_id, pipe_id};
use crate::record::{
    ChannelEvent, ChannelKind, ChannelLine, End, ProcessEvent, ProcessLine, Record, Text,
};

/// comm and parent of a process, from /proc.
pub fn comm_and_ppid(pid: u32) -> Option<(Text, u32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = Text::from(&stat[open + 1..close]);
    let ppid = stat[close + 1..].split_whitespace().nth(1)?.parse().ok()?;
    Some((comm, ppid))
}

/// flags of an open descriptor (octal, from fdinfo).
fn fd_flags(pid: u32, fd: i32) -> Option<u32> {
    let info = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
    let line = info.lines().find(|l| l.starts_with("flags:"))?;
    u32::from_str_radix(line["flags:".len()..].trim(), 8).ok()
}

/// The IPC channel behind `pid`'s descriptor `fd`, if it is one.
fn channel_of(pid: u32, fd: i32) -> Option<(ChannelKind, Text, Option<String>)> {
    let target = fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    let target = target.to_string_lossy();
    if let Some(rest) = target.strip_prefix("pipe:[") {
        let ino = rest.trim_end_matches(']').parse().ok()?;
        return Some((ChannelKind::Pipe, pipe_id(ino), None));
    }
    if !target.starts_with('/') {
        return None;
    }
    let meta = fs::metadata(format!("/proc/{pid}/fd/{fd}")).ok()?;
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
    }));
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return;
    };
    let mut fds: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    for fd in fds {
        let Some((kind, channel, path)) = channel_of(pid, fd) else {
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
    let mut pids: Vec<u32> = match fs::read_dir("/proc") {
        Ok(d) => d
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => return Vec::new(),
    };
    pids.sort_unstable();
    let mut out = Vec::new();
    for pid in pids {
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
    fn parses_comm_with_spaces_and_parens() {
        let (comm, ppid) = comm_and_ppid(std::process::id()).unwrap();
        assert!(!comm.is_empty());
        assert_eq!(ppid, std::os::unix::process::parent_id());
    }
}
