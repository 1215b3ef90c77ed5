//! Plain data shared by the eBPF programs and userspace.
//!
//! Every event the kernel side emits starts with an [`EventHeader`] whose
//! `kind` says which payload struct follows. All types are `#[repr(C)]`,
//! `Copy`, and laid out without implicit padding so that both sides agree on
//! every byte. Userspace decodes them in `ipcwatch::decode`.
#![no_std]

pub mod race;
pub mod shm;

/// Length of `task_struct.comm`.
pub const COMM_LEN: usize = 16;
/// Bytes of a path captured in the kernel (longer paths are truncated).
pub const PATH_LEN: usize = 256;
/// Size of the syscall-number lookup table (`SYSCALLS` map).
pub const MAX_SYSCALL_NR: u32 = 1024;

/// Values of [`EventHeader::kind`].
pub mod kind {
    /// [`super::IoEvent`]: bytes moved through a channel.
    pub const IO: u32 = 1;
    /// [`super::PipeEvent`]: pipe()/pipe2() created a pipe.
    pub const PIPE: u32 = 2;
    /// [`super::OpenEvent`]: an IPC object (a FIFO) was opened by path.
    pub const OPEN: u32 = 3;
    /// [`super::FdEvent`]: dup/dup2/dup3/fcntl(F_DUPFD*) of an IPC fd.
    pub const DUP: u32 = 4;
    /// [`super::FdEvent`]: close() of an IPC fd.
    pub const CLOSE: u32 = 5;
    /// [`super::FdEvent`]: fcntl(F_SETFD) on an IPC fd.
    pub const FD_FLAGS: u32 = 6;
    /// [`super::FdEvent`]: close_range(first, last, flags).
    pub const CLOSE_RANGE: u32 = 7;
    /// [`super::PathEvent`]: mknod/mknodat created a FIFO.
    pub const MKFIFO: u32 = 8;
    /// [`super::ForkEvent`]: a new process (not a thread).
    pub const FORK: u32 = 9;
    /// [`super::ExecEvent`]: a process called execve.
    pub const EXEC: u32 = 10;
    /// [`super::ExitEvent`]: the last thread of a process exited.
    pub const EXIT: u32 = 11;
    /// [`super::SpanEvent`]: when the write reported by the next IO event
    /// of the same thread started (pipe writes larger than PIPE_BUF).
    pub const SPAN: u32 = 12;
    /// [`super::DataEvent`]: payload of the next IO event of the same
    /// thread (only with `--capture-bytes`).
    pub const DATA: u32 = 13;
    /// [`super::WaitEvent`]: wait4/waitid returned an exited child.
    pub const WAIT: u32 = 14;
    /// [`super::SockEvent`]: bytes through a socket (`op` is an [`super::op`]).
    pub const SOCK_IO: u32 = 32;
    /// [`super::SockEvent`]: socket lifecycle (`op` is a [`super::sock_op`]).
    pub const SOCK_LIFE: u32 = 33;
    /// [`super::MqEvent`]: a POSIX message queue syscall.
    pub const MQ: u32 = 34;
    /// [`super::MsgEvent`]: a SysV message queue syscall.
    pub const MSGQ: u32 = 35;
}

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

    /// Bit for `kind` in [`super::Config::kinds`].
    pub const fn bit(kind: u16) -> u32 {
        1 << kind
    }
}

/// Values of [`IoEvent::op`].
pub mod op {
    pub const READ: u32 = 0;
    pub const WRITE: u32 = 1;
}

/// Architecture-independent syscall codes. Userspace fills the `SYSCALLS`
/// map (indexed by this architecture's syscall number) with these.
pub mod sc {
    pub const READ: u32 = 1;
    pub const WRITE: u32 = 2;
    pub const READV: u32 = 3;
    pub const WRITEV: u32 = 4;
    pub const SPLICE: u32 = 5;
    pub const TEE: u32 = 6;
    pub const VMSPLICE: u32 = 7;
    pub const CLOSE: u32 = 8;
    pub const DUP: u32 = 9;
    pub const DUP2: u32 = 10;
    pub const DUP3: u32 = 11;
    pub const FCNTL: u32 = 12;
    pub const PIPE: u32 = 13;
    pub const PIPE2: u32 = 14;
    pub const MKNOD: u32 = 15;
    pub const MKNODAT: u32 = 16;
    pub const OPEN: u32 = 17;
    pub const OPENAT: u32 = 18;
    pub const OPENAT2: u32 = 19;
    pub const CLOSE_RANGE: u32 = 20;
    pub const WAIT4: u32 = 21;
    pub const WAITID: u32 = 22;
    // Sockets and message queues: codes 32..63.
    pub const SOCKET: u32 = 32;
    pub const SOCKETPAIR: u32 = 33;
    pub const BIND: u32 = 34;
    pub const LISTEN: u32 = 35;
    pub const CONNECT: u32 = 36;
    pub const ACCEPT: u32 = 37;
    pub const ACCEPT4: u32 = 38;
    pub const SENDTO: u32 = 39;
    pub const RECVFROM: u32 = 40;
    pub const SENDMSG: u32 = 41;
    pub const RECVMSG: u32 = 42;
    pub const SENDMMSG: u32 = 43;
    pub const RECVMMSG: u32 = 44;
    pub const MQ_OPEN: u32 = 45;
    pub const MQ_TIMEDSEND: u32 = 46;
    pub const MQ_TIMEDRECEIVE: u32 = 47;
    pub const MQ_NOTIFY: u32 = 48;
    pub const MQ_UNLINK: u32 = 49;
    pub const MQ_GETSETATTR: u32 = 50;
    pub const MSGGET: u32 = 51;
    pub const MSGSND: u32 = 52;
    pub const MSGRCV: u32 = 53;
    pub const MSGCTL: u32 = 54;

    /// Names of the socket and message-queue codes.
    pub const CHANNEL_NAMES: [(u32, &str); 23] = [
        (SOCKET, "socket"),
        (SOCKETPAIR, "socketpair"),
        (BIND, "bind"),
        (LISTEN, "listen"),
        (CONNECT, "connect"),
        (ACCEPT, "accept"),
        (ACCEPT4, "accept4"),
        (SENDTO, "sendto"),
        (RECVFROM, "recvfrom"),
        (SENDMSG, "sendmsg"),
        (RECVMSG, "recvmsg"),
        (SENDMMSG, "sendmmsg"),
        (RECVMMSG, "recvmmsg"),
        (MQ_OPEN, "mq_open"),
        (MQ_TIMEDSEND, "mq_timedsend"),
        (MQ_TIMEDRECEIVE, "mq_timedreceive"),
        (MQ_NOTIFY, "mq_notify"),
        (MQ_UNLINK, "mq_unlink"),
        (MQ_GETSETATTR, "mq_getsetattr"),
        (MSGGET, "msgget"),
        (MSGSND, "msgsnd"),
        (MSGRCV, "msgrcv"),
        (MSGCTL, "msgctl"),
    ];

    /// Every code with its syscall name, as it appears in NDJSON and in
    /// the tracepoint names `syscalls:sys_{enter,exit}_<name>`.
    pub const NAMES: [(u32, &str); 22] = [
        (READ, "read"),
        (WRITE, "write"),
        (READV, "readv"),
        (WRITEV, "writev"),
        (SPLICE, "splice"),
        (TEE, "tee"),
        (VMSPLICE, "vmsplice"),
        (CLOSE, "close"),
        (DUP, "dup"),
        (DUP2, "dup2"),
        (DUP3, "dup3"),
        (FCNTL, "fcntl"),
        (PIPE, "pipe"),
        (PIPE2, "pipe2"),
        (MKNOD, "mknod"),
        (MKNODAT, "mknodat"),
        (OPEN, "open"),
        (OPENAT, "openat"),
        (OPENAT2, "openat2"),
        (CLOSE_RANGE, "close_range"),
        (WAIT4, "wait4"),
        (WAITID, "waitid"),
    ];

    /// The syscall name for a code, or `"?"`.
    pub fn name(code: u32) -> &'static str {
        let mut i = 0;
        while i < NAMES.len() {
            if NAMES[i].0 == code {
                return NAMES[i].1;
            }
            i += 1;
        }
        let mut i = 0;
        while i < CHANNEL_NAMES.len() {
            if CHANNEL_NAMES[i].0 == code {
                return CHANNEL_NAMES[i].1;
            }
            i += 1;
        }
        crate::shm::sc::name(code)
    }
}

/// Indices of the per-CPU `STATS` counters.
pub mod stat {
    /// Ring-buffer reservations that failed: events lost.
    pub const DROPPED: u32 = 0;
    /// Unused: counting every event cost an atomic add per event, and the
    /// per-CPU sequence numbers already count them.
    pub const EMITTED: u32 = 1;
    /// Watchpoint traps (collision sampling).
    pub const WATCH_TRAPS: u32 = 2;
    /// Collisions seen (two writes to a watched word in flight at once).
    pub const COLLISIONS: u32 = 3;
    pub const COUNT: u32 = 4;
}

/// Values of [`Config::filter`].
pub mod filter {
    /// Trace every process except ipcwatch itself.
    pub const ALL: u32 = 0;
    /// Trace only processes in the `TRACED` map (and, with
    /// [`COMM`], those whose comm is in the `COMMS` map).
    pub const LISTED: u32 = 1;
    /// Also let processes whose comm is in `COMMS` through.
    pub const COMM: u32 = 2;
}

/// Flags stored as the value of a `TRACED` map entry.
pub mod traced {
    /// Children forked by this process are traced too.
    pub const FOLLOW_FORKS: u32 = 1;
}

/// Common first part of every event.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    /// One of [`kind`].
    pub kind: u32,
    /// CPU that emitted the event; `seq` counts per CPU.
    pub cpu: u32,
    /// Per-CPU sequence number. It advances for dropped events too, so a
    /// gap is a loss.
    pub seq: u64,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC).
    pub ts_ns: u64,
    /// Process id (tgid).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    pub comm: [u8; COMM_LEN],
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
    /// One of [`sc`].
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

/// A new process; the header names the parent.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForkEvent {
    pub hdr: EventHeader,
    pub child_pid: u32,
    pub child_tid: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecEvent {
    pub hdr: EventHeader,
    /// Thread id before exec (a non-leader thread that execs takes over
    /// the process id).
    pub old_tid: u32,
    pub _pad: u32,
    pub filename: [u8; PATH_LEN],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitEvent {
    pub hdr: EventHeader,
    /// `task->exit_code`: wait status encoding (code << 8 | signal).
    pub exit_code: u32,
    pub _pad: u32,
}

/// A wait4/waitid that returned a child that exited (or was killed): the
/// child's end happened before the return. Stopped and continued children
/// are not reported.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WaitEvent {
    pub hdr: EventHeader,
    pub child_pid: u32,
    /// Wait status encoding (code << 8 | signal), as for [`ExitEvent`].
    pub status: u32,
}

/// Values of [`SockEvent::op`] for `kind::SOCK_LIFE`.
pub mod sock_op {
    /// socket() made it.
    pub const CREATE: u32 = 1;
    /// socketpair(): `fd` and `peer_fd` are the two ends.
    pub const PAIR: u32 = 2;
    pub const BIND: u32 = 3;
    pub const LISTEN: u32 = 4;
    /// connect() succeeded (or is in progress).
    pub const CONNECT: u32 = 5;
    /// accept()/accept4(): `fd` is the new socket.
    pub const ACCEPT: u32 = 6;
}

/// Bytes of a socket address captured from user memory.
pub const ADDR_LEN: usize = 112;
/// Bytes of ancillary data (cmsg) captured from sendmsg/recvmsg.
pub const CTL_LEN: usize = 64;
/// Bytes of a message queue name captured.
pub const MQ_NAME_LEN: usize = 128;

/// A socket: I/O or lifecycle. Addresses are in network byte order, ports
/// in host order. Built in place in the ring buffer (too big for the BPF
/// stack).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockEvent {
    pub hdr: EventHeader,
    /// The socket's own inode; `kind` is UNIX, TCP or UDP.
    pub file: FileId,
    /// Bytes moved (I/O).
    pub bytes: u64,
    /// `struct sock *` of this socket and of its unix peer (identities
    /// only, never dereferenced by userspace or printed).
    pub sk: u64,
    pub peer_sk: u64,
    /// Inode of the unix peer's socket, 0 when unknown (not yet accepted).
    pub peer_ino: u64,
    pub fd: i32,
    /// [`op`] for I/O, [`sock_op`] for lifecycle.
    pub op: u32,
    pub syscall: u32,
    /// Messages moved (sendmmsg/recvmmsg), else 1.
    pub msgs: u32,
    pub family: u16,
    /// SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET.
    pub sotype: u16,
    pub sport: u16,
    pub dport: u16,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    /// Valid bytes of `ctl` / `addr`.
    pub ctl_len: u32,
    pub addr_len: u32,
    /// Ancillary data of sendmsg/recvmsg (cmsghdr list), truncated.
    pub ctl: [u8; CTL_LEN],
    /// A `struct sockaddr` from the call: send destination, receive
    /// source, bind/connect address.
    pub addr: [u8; ADDR_LEN],
}

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

/// Byte offsets for the socket probes, from BTF. Kept apart from
/// [`KernelOffsets`] in the `SOCK_CONFIG` global.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockOffsets {
    pub file_private_data: u32,
    pub socket_sk: u32,
    pub sk_family: u32,
    pub sk_type: u32,
    pub sk_protocol: u32,
    pub sk_daddr: u32,
    pub sk_rcv_saddr: u32,
    pub sk_dport: u32,
    pub sk_num: u32,
    pub sk_v6_daddr: u32,
    pub sk_v6_rcv_saddr: u32,
    pub sk_socket: u32,
    pub unix_peer: u32,
    /// `socket_alloc.vfs_inode - socket_alloc.socket`: from a `struct
    /// socket *` to its inode.
    pub socket_inode: u32,
    /// `pt_regs` fields of the fifth and sixth syscall arguments.
    pub regs_arg4: u32,
    pub regs_arg5: u32,
}

/// Read-only configuration of the socket and queue probes (global
/// `SOCK_CONFIG`), written by userspace before load.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockConfig {
    pub off: SockOffsets,
}

impl SockConfig {
    pub const fn zeroed() -> Self {
        SockConfig {
            off: SockOffsets {
                file_private_data: 0,
                socket_sk: 0,
                sk_family: 0,
                sk_type: 0,
                sk_protocol: 0,
                sk_daddr: 0,
                sk_rcv_saddr: 0,
                sk_dport: 0,
                sk_num: 0,
                sk_v6_daddr: 0,
                sk_v6_rcv_saddr: 0,
                sk_socket: 0,
                unix_peer: 0,
                socket_inode: 0,
                regs_arg4: 0,
                regs_arg5: 0,
            },
        }
    }
}

/// Byte offsets of the kernel struct fields the probes read, found by
/// userspace in the running kernel's BTF (`/sys/kernel/btf/vmlinux`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    pub task_files: u32,
    pub task_tgid: u32,
    pub task_pid: u32,
    pub task_exit_code: u32,
    pub task_signal: u32,
    pub signal_live: u32,
    pub files_fdt: u32,
    pub fdt_max_fds: u32,
    pub fdt_fd: u32,
    pub file_inode: u32,
    pub file_mode: u32,
    pub inode_mode: u32,
    pub inode_ino: u32,
    pub inode_sb: u32,
    pub sb_magic: u32,
    pub sb_dev: u32,
    /// `struct pt_regs`: the syscall number, and the first four syscall
    /// arguments as the user passed them.
    pub regs_nr: u32,
    pub regs_arg0: u32,
    pub regs_arg1: u32,
    pub regs_arg2: u32,
    pub regs_arg3: u32,
    /// `task_struct.comm`.
    pub task_comm: u32,
}

/// Read-only configuration written by userspace before load
/// (`EbpfLoader::set_global("CONFIG", ...)`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// ipcwatch's own tgid: never traced.
    pub self_tgid: u32,
    /// Bits of [`filter`].
    pub filter: u32,
    /// Bitmask of [`file_kind::bit`]: which channel kinds to report.
    pub kinds: u32,
    /// Wake the reader only once this many bytes wait in the ring buffer
    /// (wakeups cost an interrupt each); the reader also polls on a timer.
    pub wake_bytes: u32,
    /// Collision sampling: how long a trapped write is held, in ns.
    pub watch_delay_ns: u32,
    /// Deep mode: report every trapped write, not only collisions.
    pub deep: u32,
    /// Payload bytes to copy per read/write (0: never; at most
    /// [`MAX_CAPTURE`]).
    pub capture_bytes: u32,
    pub _pad: u32,
    pub off: KernelOffsets,
}

impl Config {
    pub const fn zeroed() -> Self {
        Config {
            self_tgid: 0,
            filter: 0,
            kinds: 0,
            wake_bytes: 0,
            watch_delay_ns: 0,
            deep: 0,
            capture_bytes: 0,
            _pad: 0,
            off: KernelOffsets {
                task_files: 0,
                task_tgid: 0,
                task_pid: 0,
                task_exit_code: 0,
                task_signal: 0,
                signal_live: 0,
                files_fdt: 0,
                fdt_max_fds: 0,
                fdt_fd: 0,
                file_inode: 0,
                file_mode: 0,
                inode_mode: 0,
                inode_ino: 0,
                inode_sb: 0,
                sb_magic: 0,
                sb_dev: 0,
                regs_nr: 0,
                regs_arg0: 0,
                regs_arg1: 0,
                regs_arg2: 0,
                regs_arg3: 0,
                task_comm: 0,
            },
        }
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: Config is repr(C), Copy, made only of integers, with no padding.
    unsafe impl aya::Pod for super::Config {}
    // SAFETY: repr(C), Copy, integers only, no padding.
    unsafe impl aya::Pod for super::race::WatchKey {}
    // SAFETY: repr(C), Copy, integers and bytes only, no padding.
    unsafe impl aya::Pod for super::race::Slot {}
    // SAFETY: SockConfig is repr(C), Copy, made only of u32, with no padding.
    unsafe impl aya::Pod for super::SockConfig {}
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_padding() {
        assert_eq!(size_of::<EventHeader>(), 48);
        assert_eq!(size_of::<FileId>(), 16);
        assert_eq!(size_of::<IoEvent>(), 48 + 16 + 8 + 16);
        assert_eq!(size_of::<PipeEvent>(), 48 + 16 + 16);
        assert_eq!(size_of::<FdEvent>(), 48 + 16 + 16);
        assert_eq!(size_of::<OpenEvent>(), 48 + 16 + 16 + PATH_LEN);
        assert_eq!(size_of::<PathEvent>(), 48 + 8 + PATH_LEN);
        assert_eq!(size_of::<ForkEvent>(), 48 + 8);
        assert_eq!(size_of::<ExecEvent>(), 48 + 8 + PATH_LEN);
        assert_eq!(size_of::<ExitEvent>(), 48 + 8);
        assert_eq!(size_of::<KernelOffsets>(), 22 * 4);
        assert_eq!(size_of::<Config>(), 32 + 22 * 4);
        assert_eq!(size_of::<DataEvent>(), 48 + 8 + MAX_CAPTURE);
        assert_eq!(size_of::<race::Slot>(), 48);
        assert_eq!(size_of::<race::CollisionEvent>(), 48 + 32 + 48);
        assert_eq!(
            size_of::<SockEvent>(),
            48 + 16 + 32 + 16 + 8 + 32 + 8 + 64 + 112
        );
        assert_eq!(size_of::<MqEvent>(), 48 + 16 + 24 + 64 + MQ_NAME_LEN);
        assert_eq!(size_of::<MsgEvent>(), 48 + 8 + 8 + 8 + 8);
        assert_eq!(size_of::<WaitEvent>(), 48 + 8);
        assert_eq!(size_of::<SockConfig>(), 16 * 4);
    }

    #[test]
    fn syscall_names_are_unique() {
        let all: std::vec::Vec<(u32, &str)> = sc::NAMES
            .iter()
            .chain(sc::CHANNEL_NAMES.iter())
            .copied()
            .collect();
        for (i, (a, n)) in all.iter().enumerate() {
            assert_eq!(sc::name(*a), *n);
            for (b, m) in &all[i + 1..] {
                assert_ne!(a, b);
                assert_ne!(n, m);
            }
        }
    }
}
