//! Descriptors, pipes and FIFOs: what a descriptor is ([`file_kind`],
//! [`FileId`]), bytes through it ([`IoEvent`] and the [`SpanEvent`] and
//! [`DataEvent`] that precede one), and the calls that make, copy, name
//! and close descriptors.

use crate::header::{EventHeader, PATH_LEN};

/// What the object behind a file descriptor is, as classified in the kernel
/// from `inode->i_mode` and the superblock magic.
pub mod file_kind {
    pub const NONE: u16 = 0;
    /// Anonymous pipe (pipefs).
    pub const PIPE: u16 = 1;
    /// Named pipe on a real filesystem.
    pub const FIFO: u16 = 2;
    /// Any socket.
    pub const SOCKET: u16 = 3;
    /// Unix-domain socket (refines SOCKET in socket events).
    pub const UNIX: u16 = 8;
    /// TCP socket, IPv4 or IPv6.
    pub const TCP: u16 = 9;
    /// UDP socket, IPv4 or IPv6.
    pub const UDP: u16 = 10;
    /// POSIX message queue (mqueue fs); only a filter bit.
    pub const MQ: u16 = 11;
    /// SysV message queue (not a file); only a filter bit.
    pub const MSGQ: u16 = 12;

    /// Bit for `kind` in [`crate::config::Config::kinds`].
    pub const fn bit(kind: u16) -> u32 {
        1 << kind
    }
}

/// Values of [`IoEvent::op`].
pub mod op {
    pub const READ: u32 = 0;
    pub const WRITE: u32 = 1;
}

/// Identity of the object behind a file descriptor.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileId {
    pub ino: u64,
    /// `sb->s_dev` (kernel dev_t encoding: major << 20 | minor).
    pub dev: u32,
    /// One of [`file_kind`].
    pub kind: u16,
    /// `file->f_mode & (FMODE_READ | FMODE_WRITE)`: 1 read end, 2 write
    /// end, 3 both.
    pub access: u16,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoEvent {
    pub hdr: EventHeader,
    pub file: FileId,
    pub bytes: u64,
    pub fd: i32,
    /// One of [`op`].
    pub op: u32,
    /// One of [`crate::sc`].
    pub syscall: u32,
    pub _pad: u32,
}

/// Start time of a large pipe write, sent just before its [`IoEvent`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpanEvent {
    pub hdr: EventHeader,
    pub start_ns: u64,
}

/// Most payload bytes captured per syscall (`--capture-bytes`).
pub const MAX_CAPTURE: usize = 256;

/// The first bytes a read or write moved, sent just before its IO event.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataEvent {
    pub hdr: EventHeader,
    /// Valid bytes in `data`.
    pub len: u32,
    pub _pad: u32,
    pub data: [u8; MAX_CAPTURE],
}

/// Key of the `IO_TOTALS` map (`Config::aggregate`): one descriptor of one
/// process, in one direction.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IoKey {
    pub ino: u64,
    pub dev: u32,
    /// One of [`file_kind`].
    pub kind: u16,
    /// One of [`op`].
    pub op: u16,
    /// tgid.
    pub pid: u32,
    pub fd: i32,
}

/// Value of the `IO_TOTALS` map, per CPU: what the reads or writes of an
/// [`IoKey`] moved since the entry was made.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoTotals {
    pub bytes: u64,
    /// Calls (each one that moved at least one byte).
    pub ops: u64,
    /// `bpf_ktime_get_ns` of the last of them.
    pub last_ns: u64,
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: repr(C), Copy, integers only, no padding (see the layout
    // tests in lib.rs).
    unsafe impl aya::Pod for super::IoKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::IoTotals {}
}

/// Writes larger than this to a pipe may interleave with other writers.
pub const PIPE_BUF: u64 = 4096;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PipeEvent {
    pub hdr: EventHeader,
    pub file: FileId,
    /// Read end, write end.
    pub fds: [i32; 2],
    /// pipe2 flags (O_CLOEXEC, O_NONBLOCK, O_DIRECT).
    pub flags: u32,
    pub syscall: u32,
}

/// dup, close, fcntl(F_SETFD) and close_range.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FdEvent {
    pub hdr: EventHeader,
    pub file: FileId,
    /// The fd acted on (dup: the new fd; close_range: first).
    pub fd: i32,
    /// dup: the old fd; close_range: last (inclusive).
    pub arg: u32,
    /// dup: 1 when the new fd is close-on-exec; F_SETFD: the fd flags;
    /// close_range: its flags.
    pub flags: u32,
    pub syscall: u32,
}

/// An IPC object opened by path (today: FIFOs).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenEvent {
    pub hdr: EventHeader,
    pub file: FileId,
    pub fd: i32,
    /// open flags (O_RDONLY/O_WRONLY/O_RDWR, O_CLOEXEC, ...).
    pub flags: u32,
    pub syscall: u32,
    pub _pad: u32,
    /// NUL-terminated path as passed to open (may be relative).
    pub path: [u8; PATH_LEN],
}

/// mknod/mknodat of a FIFO.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathEvent {
    pub hdr: EventHeader,
    pub mode: u32,
    pub syscall: u32,
    pub path: [u8; PATH_LEN],
}
