//! Descriptors of pipes and FIFOs, and the descriptor side of every
//! channel (dup, close, fcntl, close_range): kernel events to records.
//! Stateless: what a descriptor refers to is in the model.

use ipcwatch_common::{EventHeader, FdEvent, FileId, IoEvent, PathEvent, file_kind};

use super::lines::{channel_line, io_line, lossy, op_of, syscall_name};
use crate::decode::RawEvent;
use crate::ids::{channel_id, fifo_id};
use crate::model::Model;
use crate::record::{ChannelEvent, ChannelKind, ChannelLine, End, Record, Text};
use crate::scan::procs::fd_link;

const O_CLOEXEC: u32 = libc::O_CLOEXEC as u32;
const CLOSE_RANGE_CLOEXEC: u32 = 4;

fn syscall(code: u32) -> Option<Text> {
    Some(syscall_name(code))
}

fn line(
    hdr: &EventHeader,
    event: ChannelEvent,
    kind: ChannelKind,
    channel: Text,
    fd: i32,
) -> ChannelLine {
    ChannelLine {
        fd: Some(fd),
        ..channel_line(hdr, event, kind, channel)
    }
}

/// The channel of a descriptor: from the file itself (pipes, FIFOs),
/// or, for sockets, from what the model learned of `pid`'s `fd`.
fn known_channel(model: &Model, file: &FileId, pid: u32, fd: i32) -> Option<(ChannelKind, Text)> {
    if let Some(c) = channel_id(file) {
        return Some(c);
    }
    if file.kind != file_kind::SOCKET {
        return None;
    }
    let r = model.fd(pid, fd)?;
    let kind = model.channels.get(&r.channel)?.kind;
    Some((kind, r.channel.clone()))
}

/// Records for a descriptor event (the other events are not for here).
pub fn convert(model: &Model, raw: &RawEvent, out: &mut Vec<Record>) {
    match raw {
        RawEvent::Io(e) => out.extend(io(e)),
        RawEvent::Pipe(e) => {
            let Some((kind, channel)) = channel_id(&e.file) else {
                return;
            };
            for (fd, end) in [(e.fds[0], End::Read), (e.fds[1], End::Write)] {
                let mut l = line(&e.hdr, ChannelEvent::Create, kind, channel.clone(), fd);
                l.end = Some(end);
                l.cloexec = e.flags & O_CLOEXEC != 0;
                l.syscall = syscall(e.syscall);
                out.push(Record::Channel(l));
            }
        }
        RawEvent::Open(e) => {
            let Some((kind, channel)) = channel_id(&e.file) else {
                return;
            };
            let mut l = line(&e.hdr, ChannelEvent::Open, kind, channel, e.fd);
            l.end = Some(End::from_open_flags(e.flags));
            l.cloexec = e.flags & O_CLOEXEC != 0;
            let raw_path = lossy(&e.path);
            l.path = Some(if raw_path.starts_with('/') {
                raw_path
            } else {
                fd_link(e.hdr.pid, e.fd).unwrap_or(raw_path)
            });
            l.syscall = syscall(e.syscall);
            out.push(Record::Channel(l));
        }
        RawEvent::Dup(e) => {
            let Some((kind, channel)) = known_channel(model, &e.file, e.hdr.pid, e.arg as i32)
            else {
                return;
            };
            let mut l = line(&e.hdr, ChannelEvent::Dup, kind, channel, e.fd);
            l.old_fd = Some(e.arg as i32);
            l.end = End::from_access(e.file.access);
            l.cloexec = e.flags & 1 != 0;
            l.syscall = syscall(e.syscall);
            out.push(Record::Channel(l));
        }
        RawEvent::Close(e) => {
            let Some((kind, channel)) = known_channel(model, &e.file, e.hdr.pid, e.fd) else {
                return;
            };
            let mut l = line(&e.hdr, ChannelEvent::Close, kind, channel, e.fd);
            l.end = End::from_access(e.file.access);
            l.syscall = syscall(e.syscall);
            out.push(Record::Channel(l));
        }
        RawEvent::FdFlags(e) => {
            let Some((kind, channel)) = known_channel(model, &e.file, e.hdr.pid, e.fd) else {
                return;
            };
            let mut l = line(&e.hdr, ChannelEvent::Setfd, kind, channel, e.fd);
            l.cloexec = e.flags & libc::FD_CLOEXEC as u32 != 0;
            l.syscall = syscall(e.syscall);
            out.push(Record::Channel(l));
        }
        RawEvent::CloseRange(e) => close_range(model, e, out),
        RawEvent::Mkfifo(e) => out.extend(mkfifo(e)),
        _ => {}
    }
}

/// A read or write on a pipe or FIFO.
fn io(e: &IoEvent) -> Option<Record> {
    let (kind, channel) = channel_id(&e.file)?;
    Some(Record::Io(io_line(
        &e.hdr,
        kind,
        op_of(e.op),
        channel,
        e.bytes,
        e.fd,
        e.syscall,
    )))
}

/// close_range(2): a close (or, with CLOSE_RANGE_CLOEXEC, a setfd) line for
/// every known channel descriptor in the range.
fn close_range(model: &Model, e: &FdEvent, out: &mut Vec<Record>) {
    let first = e.fd as u32;
    let cloexec = e.flags & CLOSE_RANGE_CLOEXEC != 0;
    for (fd, r) in model.fds_in_range(e.hdr.pid, first, e.arg) {
        let kind = model
            .channels
            .get(&r.channel)
            .map_or(ChannelKind::Pipe, |c| c.kind);
        let event = if cloexec {
            ChannelEvent::Setfd
        } else {
            ChannelEvent::Close
        };
        let mut l = line(&e.hdr, event, kind, r.channel, fd);
        l.end = Some(r.end);
        l.cloexec = cloexec;
        l.syscall = syscall(e.syscall);
        out.push(Record::Channel(l));
    }
}

/// mkfifo(3): the FIFO's id from the file the call made (relative paths
/// resolved against the process's cwd).
fn mkfifo(e: &PathEvent) -> Option<Record> {
    let raw_path = lossy(&e.path);
    let path = if raw_path.starts_with('/') {
        raw_path
    } else {
        let cwd = i32::try_from(e.hdr.pid)
            .ok()
            .and_then(|pid| procfs::process::Process::new(pid).ok())
            .and_then(|p| p.cwd().ok());
        match cwd {
            Some(cwd) => cwd.join(&raw_path).to_string_lossy().into_owned(),
            None => raw_path,
        }
    };
    // Already gone: its opens will still be seen.
    let meta = std::fs::metadata(&path).ok()?;
    use std::os::unix::fs::MetadataExt;
    let dev = meta.dev();
    let channel = fifo_id(libc::major(dev), libc::minor(dev), meta.ino());
    let mut l = line(&e.hdr, ChannelEvent::Mkfifo, ChannelKind::Fifo, channel, 0);
    l.fd = None;
    l.path = Some(path);
    l.syscall = syscall(e.syscall);
    Some(Record::Channel(l))
}
