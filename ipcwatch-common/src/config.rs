//! The read-only `CONFIG` global that userspace writes before load: who
//! is traced, which channel kinds, and the kernel's struct offsets.

/// Values of [`Config::filter`].
pub mod filter {
    /// Trace every process except ipcwatch itself.
    pub const ALL: u32 = 0;
    /// Trace only processes in the `TRACED` map (and, with
    /// [`COMM`], those whose comm is in the `COMMS` map).
    pub const LISTED: u32 = 1;
    /// Also let processes whose comm is in `COMMS` through.
    pub const COMM: u32 = 2;
    /// Also let processes in a cgroup of `CGROUPS` (or below one) through
    /// (`--container`, `--cgroup`).
    pub const CGROUP: u32 = 4;
    /// Levels below the root at which `CGROUPS` is looked up for the
    /// current cgroup's ancestors.
    pub const MAX_CGROUP_DEPTH: u32 = 12;
}

/// Flags stored as the value of a `TRACED` map entry.
pub mod traced {
    /// Children forked by this process are traced too.
    pub const FOLLOW_FORKS: u32 = 1;
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

/// Configuration written by userspace before load
/// (`EbpfLoader::override_global("CONFIG", ...)`). It is read-only data:
/// the verifier sees its fields as constants.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// ipcwatch's own tgid: never traced.
    pub self_tgid: u32,
    /// Bits of [`filter`].
    pub filter: u32,
    /// Bitmask of [`crate::fd::file_kind::bit`]: which channel kinds to report.
    pub kinds: u32,
    /// Wake the reader only once this many bytes wait in the ring buffer
    /// (wakeups cost an interrupt each); the reader also polls on a timer.
    pub wake_bytes: u32,
    /// Collision sampling: how long a trapped write is held, in ns.
    pub watch_delay_ns: u32,
    /// Deep mode: report every trapped write, not only collisions.
    pub deep: u32,
    /// Payload bytes to copy per read/write (0: never; at most
    /// [`crate::fd::MAX_CAPTURE`]).
    pub capture_bytes: u32,
    /// `--durations`: keep when each timed call (read, write, send,
    /// receive, queue send and receive, lock and futex waits) started, and
    /// report it just before its event.
    pub durations: u32,
    /// The live TUI without a per-event consumer: bytes through pipes and
    /// FIFOs are summed in the `IO_TOTALS` map ([`crate::fd::IoKey`])
    /// instead of one [`crate::IoEvent`] each, except pipe writes larger
    /// than PIPE_BUF (the interleaving check needs them). 0 in every other
    /// mode, where the verifier drops the branch.
    pub aggregate: u32,
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
            durations: 0,
            aggregate: 0,
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
// SAFETY: Config is repr(C), Copy, made only of integers, with no padding.
unsafe impl aya::Pod for Config {}
