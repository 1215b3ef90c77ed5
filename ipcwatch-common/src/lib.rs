//! Plain data shared by the eBPF programs and userspace.
//!
//! Every event the kernel side emits starts with an [`EventHeader`] whose
//! `kind` says which payload struct follows. All types are `#[repr(C)]`,
//! `Copy`, and laid out without implicit padding so that both sides agree on
//! every byte. Userspace decodes them in `ipcwatch::decode`.
#![no_std]

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

    /// Every code with its syscall name, as it appears in NDJSON and in
    /// the tracepoint names `syscalls:sys_{enter,exit}_<name>`.
    pub const NAMES: [(u32, &str); 20] = [
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
        crate::shm::sc::name(code)
    }
}

/// Indices of the per-CPU `STATS` counters.
pub mod stat {
    /// Ring-buffer reservations that failed: events lost.
    pub const DROPPED: u32 = 0;
    /// Events written to the ring buffer.
    pub const EMITTED: u32 = 1;
    pub const COUNT: u32 = 2;
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
    pub _pad: u32,
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
    pub off: KernelOffsets,
}

impl Config {
    pub const fn zeroed() -> Self {
        Config {
            self_tgid: 0,
            filter: 0,
            kinds: 0,
            wake_bytes: 0,
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
                _pad: 0,
            },
        }
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: Config is repr(C), Copy, made only of integers, with no padding.
    unsafe impl aya::Pod for super::Config {}
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
        assert_eq!(size_of::<Config>(), 16 + 22 * 4);
    }

    #[test]
    fn syscall_names_are_unique() {
        for (i, (a, n)) in sc::NAMES.iter().enumerate() {
            assert_eq!(sc::name(*a), *n);
            for (b, m) in &sc::NAMES[i + 1..] {
                assert_ne!(a, b);
                assert_ne!(n, m);
            }
        }
    }
}
