//! Pieces of records that every tracker puts together the same way.

use ipcwatch_common::EventHeader;

use crate::decode::{c_str, comm};
use crate::record::{ChannelEvent, ChannelKind, ChannelLine, Io, Op, Text};

/// The name of an architecture-independent syscall code.
pub fn syscall_name(code: u32) -> Text {
    Text::const_new(ipcwatch_common::sc::name(code))
}

/// A channel line for `event` by the thread of `hdr`, fields beyond the
/// channel left empty.
pub fn channel_line(
    hdr: &EventHeader,
    event: ChannelEvent,
    kind: ChannelKind,
    channel: Text,
) -> ChannelLine {
    ChannelLine {
        ts_ns: hdr.ts_ns,
        event,
        kind,
        channel,
        pid: hdr.pid,
        tid: hdr.tid,
        comm: comm(hdr),
        fd: None,
        end: None,
        old_fd: None,
        cloexec: false,
        path: None,
        syscall: None,
        ext: Box::default(),
    }
}

/// A NUL-terminated name from the kernel, as text.
pub fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(c_str(bytes)).into_owned()
}

/// Read or write, from the probe's direction.
pub fn op_of(op: u32) -> Op {
    if op == ipcwatch_common::op::WRITE {
        Op::Write
    } else {
        Op::Read
    }
}

/// An io record for `bytes` moved by the thread of `hdr` through `fd`
/// (-1 without one), the extensions left empty.
pub fn io_line(
    hdr: &EventHeader,
    kind: ChannelKind,
    op: Op,
    channel: Text,
    bytes: u64,
    fd: i32,
    syscall: u32,
) -> Io {
    Io {
        ts_ns: hdr.ts_ns,
        kind,
        op,
        channel,
        pid: hdr.pid,
        tid: hdr.tid,
        comm: comm(hdr),
        bytes,
        fd,
        syscall: syscall_name(syscall),
        start_ns: None,
        ext: Default::default(),
    }
}
