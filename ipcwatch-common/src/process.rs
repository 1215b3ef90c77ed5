//! Process lifecycle: fork, exec, exit, and a wait that reaped a child.

use crate::header::{EventHeader, PATH_LEN};

/// A new process; the header names the parent.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForkEvent {
    pub hdr: EventHeader,
    pub child_pid: u32,
    pub child_tid: u32,
    /// The parent's cgroup id on the unified (v2) hierarchy, which the
    /// child starts in (`bpf_get_current_cgroup_id`).
    pub cgroup: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecEvent {
    pub hdr: EventHeader,
    /// Thread id before exec (a non-leader thread that execs takes over
    /// the process id).
    pub old_tid: u32,
    pub _pad: u32,
    /// The process's cgroup id on the unified (v2) hierarchy.
    pub cgroup: u64,
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
