//! What the kernel side has to say beyond its events: why one was skipped
//! or left incomplete (a kernel read that failed, a watchpoint trap that no
//! armed word explains...), at debug level, through aya-log (`AYA_LOGS`).
//!
//! Only cold paths call these, never a normal event's path. Each message is
//! its own BPF function (`#[inline(never)]`), so a caller gains a call in a
//! branch it rarely takes rather than the message's code. Userspace writes
//! the level into the read-only `AYA_LOG_LEVEL` global before load: below
//! debug (without `-v`), the verifier sees a constant and drops the
//! messages' code.

use aya_log_ebpf::debug;

/// sched_process_fork: the child's task could not be read; the fork is
/// not reported and the child does not join `TRACED`.
#[inline(never)]
pub(crate) fn unreadable_child(parent: u32, child: u64) {
    debug!(
        &(),
        "fork of {} skipped: child task_struct at {:x} unreadable", parent, child
    );
}

/// sched_process_exec: the file name could not be read; the exec is
/// reported without it.
#[inline(never)]
pub(crate) fn unreadable_exec_name(pid: u32) {
    debug!(&(), "exec of {}: file name unreadable, reported empty", pid);
}

/// A watchpoint trap at an address that no armed word explains (disarmed
/// while the trap was in flight): dropped.
#[inline(never)]
pub(crate) fn trap_outside_armed_words(pid: u32, addr: u64) {
    debug!(
        &(),
        "watchpoint trap of {} at {:x} outside any armed word, dropped", pid, addr
    );
}

/// An acquire-type lock call returned without the entry that stashes its
/// object (the probe was attached during the call): dropped.
#[inline(never)]
pub(crate) fn return_without_entry(tid: u32, func: u32) {
    debug!(
        &(),
        "uretprobe of thread {}: lock call {} returned without its entry, dropped", tid, func
    );
}
