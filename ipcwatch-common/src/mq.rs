//! Message queues: POSIX (mq_*) and SysV (msg*).

use crate::header::EventHeader;

/// Bytes of a message queue name captured.
pub const MQ_NAME_LEN: usize = 128;

/// A POSIX message queue syscall. The queue is named by userspace from
/// `name` (mq_open, mq_unlink) or from the inode behind `fd`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MqEvent {
    pub hdr: EventHeader,
    /// Inode of the queue (mqueue fs), 0 for mq_unlink.
    pub ino: u64,
    /// Message bytes (send: the length sent; receive: the length read).
    pub bytes: u64,
    pub prio: u32,
    pub fd: i32,
    pub syscall: u32,
    /// mq_open: oflag; mq_notify: 1 when a notification was registered.
    pub flags: u32,
    /// mq_open: mode.
    pub mode: u32,
    /// 1 when `attr` holds data, 2 when `oldattr` does, 3 both.
    pub has_attr: u32,
    /// `struct mq_attr` {flags, maxmsg, msgsize, curmsgs}: mq_open's
    /// attributes, mq_getsetattr's new ones.
    pub attr: [i64; 4],
    /// mq_getsetattr's previous attributes.
    pub oldattr: [i64; 4],
    pub name: [u8; MQ_NAME_LEN],
}

/// A SysV message queue syscall.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsgEvent {
    pub hdr: EventHeader,
    /// msgget's key (0 when the syscall does not carry it).
    pub key: i32,
    pub id: i32,
    pub bytes: u64,
    /// The message type (`mtype`), msgsnd/msgrcv.
    pub mtype: i64,
    /// msgget/msgsnd/msgrcv flags; msgctl: the command.
    pub flags: u32,
    pub syscall: u32,
}
