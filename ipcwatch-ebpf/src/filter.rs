//! Which processes are traced: never ipcwatch itself; with `--pid`,
//! `--comm`, `--container`, `--cgroup` or a command, only those in
//! `TRACED`, with a name in `COMMS`, or in (or below) a cgroup of
//! `CGROUPS`. The cgroup lookups cost a helper call and a few map lookups,
//! paid only when that filter is set.

use aya_ebpf::helpers::{
    bpf_get_current_comm,
    generated::{bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id},
};
use ipcwatch_common::filter;

use crate::maps::{CGROUPS, COMMS, TRACED, conf};

/// May process `tgid` produce events?
pub(crate) fn allowed(tgid: u32) -> bool {
    if tgid == conf!(self_tgid) {
        return false;
    }
    let mode = conf!(filter);
    if mode & filter::LISTED == 0 {
        return true;
    }
    if TRACED.get_ptr(tgid).is_some() {
        return true;
    }
    if mode & filter::COMM != 0
        && let Ok(comm) = bpf_get_current_comm()
        && COMMS.get_ptr(comm).is_some()
    {
        return true;
    }
    mode & filter::CGROUP != 0 && in_cgroups()
}

/// Is the current task in a cgroup of `CGROUPS`, or below one?
#[inline(never)]
fn in_cgroups() -> bool {
    // SAFETY: plain helper call.
    let id = unsafe { bpf_get_current_cgroup_id() };
    if CGROUPS.get_ptr(id).is_some() {
        return true;
    }
    let mut level = 1;
    while level <= filter::MAX_CGROUP_DEPTH {
        // SAFETY: plain helper call; 0 past the task's own level.
        let up = unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) };
        if up == 0 || up == id {
            return false;
        }
        if CGROUPS.get_ptr(up).is_some() {
            return true;
        }
        level += 1;
    }
    false
}
