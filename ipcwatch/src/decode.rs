//! The one decoder of kernel events: ring-buffer bytes to typed events.

use std::mem::size_of;

use crate::record::Text;
use ipcwatch_common::race::{CollisionEvent, KIND_COLLISION, KIND_WRITE_SAMPLE};
use ipcwatch_common::{
    DataEvent, EventHeader, ExecEvent, ExitEvent, FdEvent, ForkEvent, IoEvent, MqEvent, MsgEvent,
    OpenEvent, PathEvent, PipeEvent, SockEvent, SpanEvent, WaitEvent, kind,
    shm::{self, FaultEvent, LockEvent, MemEvent, UprobeEvent},
};

// Events are decoded one at a time and never kept in bulk, so the size of
// the largest variant (a memory event with a file's path) does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawEvent {
    Io(IoEvent),
    Pipe(PipeEvent),
    Open(OpenEvent),
    Dup(FdEvent),
    Close(FdEvent),
    FdFlags(FdEvent),
    CloseRange(FdEvent),
    Mkfifo(PathEvent),
    Fork(ForkEvent),
    Exec(ExecEvent),
    Exit(ExitEvent),
    Wait(WaitEvent),
    Collision(CollisionEvent),
    WriteSample(CollisionEvent),
    Span(SpanEvent),
    Data(DataEvent),
    /// Bytes through a socket.
    SockIo(SockEvent),
    /// socket/socketpair/bind/listen/connect/accept.
    SockLife(SockEvent),
    Mq(MqEvent),
    Msgq(MsgEvent),
    /// Shared memory (see `ipcwatch_common::shm`).
    Mem(MemEvent),
    Lock(LockEvent),
    Fault(FaultEvent),
    Uprobe(UprobeEvent),
}

/// The names of the kernel event kinds, indexed by
/// [`RawEvent::kind_index`] (the `kind` label of `ipcwatch_events_total`).
pub const EVENT_KINDS: [&str; 24] = [
    "io",
    "pipe",
    "open",
    "dup",
    "close",
    "fd_flags",
    "close_range",
    "mkfifo",
    "fork",
    "exec",
    "exit",
    "wait",
    "collision",
    "write_sample",
    "span",
    "data",
    "sock_io",
    "sock_life",
    "mq",
    "msgq",
    "mem",
    "lock",
    "fault",
    "uprobe",
];

/// The header's `kind` of each of [`EVENT_KINDS`] (same index): the
/// kernel's drop counter of each kind sits at `stat::dropped_kind` of it.
pub const RAW_KINDS: [u32; EVENT_KINDS.len()] = [
    kind::IO,
    kind::PIPE,
    kind::OPEN,
    kind::DUP,
    kind::CLOSE,
    kind::FD_FLAGS,
    kind::CLOSE_RANGE,
    kind::MKFIFO,
    kind::FORK,
    kind::EXEC,
    kind::EXIT,
    kind::WAIT,
    KIND_COLLISION,
    KIND_WRITE_SAMPLE,
    kind::SPAN,
    kind::DATA,
    kind::SOCK_IO,
    kind::SOCK_LIFE,
    kind::MQ,
    kind::MSGQ,
    shm::kind::MEM,
    shm::kind::LOCK,
    shm::kind::FAULT,
    shm::kind::UPROBE,
];

/// The kernel's counts of events lost because the ring buffer was full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    pub total: u64,
    /// By kind, indexed like [`EVENT_KINDS`]. Read one counter after the
    /// other: while traced processes go on losing events, their sum can
    /// differ from `total` by the losses in between.
    pub by_kind: [u64; EVENT_KINDS.len()],
}

impl Dropped {
    /// The kinds that lost events, by name.
    pub fn named(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        EVENT_KINDS
            .iter()
            .zip(self.by_kind)
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| (*k, n))
    }
}

impl RawEvent {
    /// This event's kind, as an index into [`EVENT_KINDS`].
    pub fn kind_index(&self) -> usize {
        match self {
            RawEvent::Io(_) => 0,
            RawEvent::Pipe(_) => 1,
            RawEvent::Open(_) => 2,
            RawEvent::Dup(_) => 3,
            RawEvent::Close(_) => 4,
            RawEvent::FdFlags(_) => 5,
            RawEvent::CloseRange(_) => 6,
            RawEvent::Mkfifo(_) => 7,
            RawEvent::Fork(_) => 8,
            RawEvent::Exec(_) => 9,
            RawEvent::Exit(_) => 10,
            RawEvent::Wait(_) => 11,
            RawEvent::Collision(_) => 12,
            RawEvent::WriteSample(_) => 13,
            RawEvent::Span(_) => 14,
            RawEvent::Data(_) => 15,
            RawEvent::SockIo(_) => 16,
            RawEvent::SockLife(_) => 17,
            RawEvent::Mq(_) => 18,
            RawEvent::Msgq(_) => 19,
            RawEvent::Mem(_) => 20,
            RawEvent::Lock(_) => 21,
            RawEvent::Fault(_) => 22,
            RawEvent::Uprobe(_) => 23,
        }
    }

    pub fn header(&self) -> &EventHeader {
        match self {
            RawEvent::Io(e) => &e.hdr,
            RawEvent::Pipe(e) => &e.hdr,
            RawEvent::Open(e) => &e.hdr,
            RawEvent::Dup(e) | RawEvent::Close(e) | RawEvent::FdFlags(e) => &e.hdr,
            RawEvent::CloseRange(e) => &e.hdr,
            RawEvent::Mkfifo(e) => &e.hdr,
            RawEvent::Fork(e) => &e.hdr,
            RawEvent::Exec(e) => &e.hdr,
            RawEvent::Exit(e) => &e.hdr,
            RawEvent::Wait(e) => &e.hdr,
            RawEvent::Collision(e) | RawEvent::WriteSample(e) => &e.hdr,
            RawEvent::Span(e) => &e.hdr,
            RawEvent::Data(e) => &e.hdr,
            RawEvent::SockIo(e) | RawEvent::SockLife(e) => &e.hdr,
            RawEvent::Mq(e) => &e.hdr,
            RawEvent::Msgq(e) => &e.hdr,
            RawEvent::Mem(e) => &e.hdr,
            RawEvent::Lock(e) => &e.hdr,
            RawEvent::Fault(e) => &e.hdr,
            RawEvent::Uprobe(e) => &e.hdr,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("event of {len} bytes is shorter than its {need}-byte {what}")]
    Short {
        len: usize,
        need: usize,
        what: &'static str,
    },
    #[error("unknown event kind {0}")]
    UnknownKind(u32),
}

/// Copy a `T` out of the front of `bytes`.
fn read<T: Copy>(bytes: &[u8], what: &'static str) -> Result<T, DecodeError> {
    let need = size_of::<T>();
    if bytes.len() < need {
        return Err(DecodeError::Short {
            len: bytes.len(),
            need,
            what,
        });
    }
    // SAFETY: the length is checked above; every T decoded here is a
    // repr(C) struct of integers and byte arrays, valid for any bit
    // pattern; read_unaligned copes with any alignment.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

pub fn decode(bytes: &[u8]) -> Result<RawEvent, DecodeError> {
    let hdr: EventHeader = read(bytes, "header")?;
    Ok(match hdr.kind {
        kind::IO => RawEvent::Io(read(bytes, "io event")?),
        kind::PIPE => RawEvent::Pipe(read(bytes, "pipe event")?),
        kind::OPEN => RawEvent::Open(read(bytes, "open event")?),
        kind::DUP => RawEvent::Dup(read(bytes, "dup event")?),
        kind::CLOSE => RawEvent::Close(read(bytes, "close event")?),
        kind::FD_FLAGS => RawEvent::FdFlags(read(bytes, "fd flags event")?),
        kind::CLOSE_RANGE => RawEvent::CloseRange(read(bytes, "close_range event")?),
        kind::MKFIFO => RawEvent::Mkfifo(read(bytes, "mkfifo event")?),
        kind::FORK => RawEvent::Fork(read(bytes, "fork event")?),
        kind::EXEC => RawEvent::Exec(read(bytes, "exec event")?),
        kind::EXIT => RawEvent::Exit(read(bytes, "exit event")?),
        kind::WAIT => RawEvent::Wait(read(bytes, "wait event")?),
        kind::SPAN => RawEvent::Span(read(bytes, "span event")?),
        kind::DATA => RawEvent::Data(read(bytes, "data event")?),
        KIND_COLLISION => RawEvent::Collision(read(bytes, "collision event")?),
        KIND_WRITE_SAMPLE => RawEvent::WriteSample(read(bytes, "write sample")?),
        kind::SOCK_IO => RawEvent::SockIo(read(bytes, "socket io event")?),
        kind::SOCK_LIFE => RawEvent::SockLife(read(bytes, "socket event")?),
        kind::MQ => RawEvent::Mq(read(bytes, "mq event")?),
        kind::MSGQ => RawEvent::Msgq(read(bytes, "msgq event")?),
        shm::kind::MEM => RawEvent::Mem(read(bytes, "memory event")?),
        shm::kind::LOCK => RawEvent::Lock(read(bytes, "lock event")?),
        shm::kind::FAULT => RawEvent::Fault(read(bytes, "fault event")?),
        shm::kind::UPROBE => RawEvent::Uprobe(read(bytes, "uprobe event")?),
        other => return Err(DecodeError::UnknownKind(other)),
    })
}

/// The bytes of a plain-data event, as the kernel writes them. Used by
/// tests and the synthetic benchmark source.
pub fn as_bytes<T: Copy>(event: &T) -> &[u8] {
    // SAFETY: T is one of the padding-free repr(C) event structs; viewing
    // it as bytes reads only initialized memory.
    unsafe { std::slice::from_raw_parts((event as *const T).cast::<u8>(), size_of::<T>()) }
}

/// A NUL-terminated byte string from the kernel, as text.
pub fn c_str(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

/// A process name from the kernel (`comm`), as text. Valid UTF-8, the
/// usual case, is copied as it is; anything else is converted lossily.
pub fn comm_text(bytes: &[u8]) -> Text {
    let name = c_str(bytes);
    match std::str::from_utf8(name) {
        Ok(s) => Text::new(s),
        Err(_) => Text::from_utf8_lossy(name),
    }
}

/// The name of the process an event comes from.
pub fn comm(hdr: &EventHeader) -> Text {
    comm_text(&hdr.comm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipcwatch_common::{FileId, PATH_LEN, file_kind, op, sc};

    fn hdr(kind: u32) -> EventHeader {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"head");
        EventHeader {
            kind,
            cpu: 1,
            seq: 42,
            ts_ns: 123_456_789,
            pid: 100,
            tid: 101,
            comm,
        }
    }

    /// Each raw kind decodes to the event kind of the same index, so the
    /// drops counted per raw kind carry the right name.
    #[test]
    fn raw_kinds_line_up_with_the_kind_names() {
        let mut bytes = vec![0u8; 4096];
        for (i, raw) in RAW_KINDS.iter().enumerate() {
            bytes[..size_of::<EventHeader>()].copy_from_slice(as_bytes(&hdr(*raw)));
            let ev = decode(&bytes).unwrap();
            assert_eq!(ev.kind_index(), i, "{}", EVENT_KINDS[i]);
            assert!(*raw < ipcwatch_common::stat::KIND_SLOTS);
        }
    }

    #[test]
    fn io_round_trip() {
        let ev = IoEvent {
            hdr: hdr(kind::IO),
            file: FileId {
                ino: 12345,
                dev: 13,
                kind: file_kind::PIPE,
                access: 2,
            },
            bytes: 4096,
            fd: 1,
            op: op::WRITE,
            syscall: sc::WRITE,
            _pad: 0,
        };
        assert_eq!(decode(as_bytes(&ev)), Ok(RawEvent::Io(ev)));
    }

    #[test]
    fn every_kind_round_trips() {
        let fd = FdEvent {
            hdr: hdr(kind::DUP),
            file: FileId::default(),
            fd: 5,
            arg: 3,
            flags: 1,
            syscall: sc::DUP3,
        };
        assert_eq!(decode(as_bytes(&fd)), Ok(RawEvent::Dup(fd)));
        let close = FdEvent {
            hdr: hdr(kind::CLOSE),
            ..fd
        };
        assert_eq!(decode(as_bytes(&close)), Ok(RawEvent::Close(close)));
        let mut path = [0u8; PATH_LEN];
        path[..9].copy_from_slice(b"/tmp/fifo");
        let open = OpenEvent {
            hdr: hdr(kind::OPEN),
            file: FileId::default(),
            fd: 7,
            flags: 1,
            syscall: sc::OPENAT,
            _pad: 0,
            path,
        };
        match decode(as_bytes(&open)) {
            Ok(RawEvent::Open(o)) => assert_eq!(c_str(&o.path), b"/tmp/fifo"),
            other => panic!("{other:?}"),
        }
        let fork = ForkEvent {
            hdr: hdr(kind::FORK),
            child_pid: 200,
            child_tid: 200,
            cgroup: 0,
        };
        assert_eq!(decode(as_bytes(&fork)), Ok(RawEvent::Fork(fork)));
        let exit = ExitEvent {
            hdr: hdr(kind::EXIT),
            exit_code: 256,
            _pad: 0,
        };
        assert_eq!(decode(as_bytes(&exit)), Ok(RawEvent::Exit(exit)));
        let msg = MsgEvent {
            hdr: hdr(kind::MSGQ),
            key: 0x1234,
            id: 7,
            bytes: 100,
            mtype: 3,
            flags: 0,
            syscall: sc::MSGSND,
        };
        assert_eq!(decode(as_bytes(&msg)), Ok(RawEvent::Msgq(msg)));
        let mut sock = SockEvent {
            hdr: hdr(kind::SOCK_IO),
            file: FileId::default(),
            bytes: 7000,
            sk: 1,
            peer_sk: 2,
            peer_ino: 99,
            fd: 3,
            op: op::WRITE,
            syscall: sc::SENDTO,
            msgs: 1,
            family: 1,
            sotype: 1,
            sport: 0,
            dport: 0,
            saddr: [0; 16],
            daddr: [0; 16],
            ctl_len: 0,
            addr_len: 0,
            ctl: [0; ipcwatch_common::CTL_LEN],
            addr: [0; ipcwatch_common::ADDR_LEN],
        };
        assert_eq!(decode(as_bytes(&sock)), Ok(RawEvent::SockIo(sock)));
        sock.hdr.kind = kind::SOCK_LIFE;
        assert_eq!(decode(as_bytes(&sock)), Ok(RawEvent::SockLife(sock)));
        let mq = MqEvent {
            hdr: hdr(kind::MQ),
            ino: 5,
            bytes: 100,
            prio: 2,
            fd: 4,
            syscall: sc::MQ_TIMEDSEND,
            flags: 0,
            mode: 0,
            has_attr: 0,
            attr: [0; 4],
            oldattr: [0; 4],
            name: [0; ipcwatch_common::MQ_NAME_LEN],
        };
        assert_eq!(decode(as_bytes(&mq)), Ok(RawEvent::Mq(mq)));
    }

    #[test]
    fn comms_become_text() {
        assert_eq!(comm_text(b"cat\0\0\0junk"), "cat");
        assert_eq!(comm_text(b"0123456789abcdef"), "0123456789abcdef");
        assert_eq!(comm_text(b"a\xffb\0"), "a\u{fffd}b");
    }

    #[test]
    fn short_and_unknown_events_are_errors() {
        let ev = IoEvent {
            hdr: hdr(kind::IO),
            ..Default::default()
        };
        let bytes = as_bytes(&ev);
        assert!(matches!(
            decode(&bytes[..bytes.len() - 1]),
            Err(DecodeError::Short { .. })
        ));
        assert!(matches!(
            decode(&bytes[..10]),
            Err(DecodeError::Short { .. })
        ));
        let unknown = hdr(999);
        assert_eq!(
            decode(as_bytes(&unknown)),
            Err(DecodeError::UnknownKind(999))
        );
    }
}
