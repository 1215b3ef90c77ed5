//! The part every event shares: [`EventHeader`], the event kinds, and the
//! per-CPU counters of `STATS` (losses, watchpoint traps, collisions).

/// Length of `task_struct.comm`.
pub const COMM_LEN: usize = 16;
/// Bytes of a path captured in the kernel (longer paths are truncated).
pub const PATH_LEN: usize = 256;

/// Values of [`EventHeader::kind`]. Shared memory and the race detector
/// number their own (`crate::shm::kind`, `crate::race`).
pub mod kind {
    /// [`crate::fd::IoEvent`]: bytes moved through a channel.
    pub const IO: u32 = 1;
    /// [`crate::fd::PipeEvent`]: pipe()/pipe2() created a pipe.
    pub const PIPE: u32 = 2;
    /// [`crate::fd::OpenEvent`]: an IPC object (a FIFO) was opened by path.
    pub const OPEN: u32 = 3;
    /// [`crate::fd::FdEvent`]: dup/dup2/dup3/fcntl(F_DUPFD*) of an IPC fd.
    pub const DUP: u32 = 4;
    /// [`crate::fd::FdEvent`]: close() of an IPC fd.
    pub const CLOSE: u32 = 5;
    /// [`crate::fd::FdEvent`]: fcntl(F_SETFD) on an IPC fd.
    pub const FD_FLAGS: u32 = 6;
    /// [`crate::fd::FdEvent`]: close_range(first, last, flags).
    pub const CLOSE_RANGE: u32 = 7;
    /// [`crate::fd::PathEvent`]: mknod/mknodat created a FIFO.
    pub const MKFIFO: u32 = 8;
    /// [`crate::process::ForkEvent`]: a new process (not a thread).
    pub const FORK: u32 = 9;
    /// [`crate::process::ExecEvent`]: a process called execve.
    pub const EXEC: u32 = 10;
    /// [`crate::process::ExitEvent`]: the last thread of a process exited.
    pub const EXIT: u32 = 11;
    /// [`crate::fd::SpanEvent`]: when the write reported by the next IO
    /// event of the same thread started (pipe writes larger than PIPE_BUF).
    pub const SPAN: u32 = 12;
    /// [`crate::fd::DataEvent`]: payload of the next IO event of the same
    /// thread (only with `--capture-bytes`).
    pub const DATA: u32 = 13;
    /// [`crate::process::WaitEvent`]: wait4/waitid returned an exited child.
    pub const WAIT: u32 = 14;
    /// [`crate::sock::SockEvent`]: bytes through a socket (`op` is an
    /// [`crate::fd::op`]).
    pub const SOCK_IO: u32 = 32;
    /// [`crate::sock::SockEvent`]: socket lifecycle (`op` is a
    /// [`crate::sock::sock_op`]).
    pub const SOCK_LIFE: u32 = 33;
    /// [`crate::mq::MqEvent`]: a POSIX message queue syscall.
    pub const MQ: u32 = 34;
    /// [`crate::mq::MsgEvent`]: a SysV message queue syscall.
    pub const MSGQ: u32 = 35;
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
    /// First of the ring-buffer drops by event kind: the slot of kind `k`
    /// is [`dropped_kind`]`(k)` (their sum is [`DROPPED`]).
    pub const DROPPED_KINDS: u32 = 8;
    /// Event kinds have values below this (see [`super::kind`],
    /// `shm::kind`, `race::KIND_*`).
    pub const KIND_SLOTS: u32 = 128;
    pub const COUNT: u32 = DROPPED_KINDS + KIND_SLOTS;

    /// The slot counting ring-buffer drops of events of `kind`.
    #[inline(always)]
    pub const fn dropped_kind(kind: u32) -> u32 {
        DROPPED_KINDS + (kind & (KIND_SLOTS - 1))
    }
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
