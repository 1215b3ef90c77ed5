//! The processes that map shared memory (`SHM_PROCS`): only their munmap,
//! mremap, shmdt and write faults are reported.

use crate::maps::SHM_PROCS;

/// `SHM_PROCS` values: the process has a shared mapping (its munmap,
/// mremap and shmdt matter), and a writable one (its write faults matter).
const MAPS_SHARED: u32 = 1;
pub(crate) const MAPS_WRITABLE: u32 = 2;

/// The `MAPS_*` bits of `tgid` (0: maps no shared memory).
#[inline(always)]
pub(crate) fn shared_bits(tgid: u32) -> u32 {
    match SHM_PROCS.get_ptr(tgid) {
        // SAFETY: pointer from the map, valid for this read.
        Some(v) => unsafe { *v },
        None => 0,
    }
}

/// Does `tgid` map shared memory?
#[inline(always)]
pub(crate) fn maps_shared(tgid: u32) -> bool {
    shared_bits(tgid) & MAPS_SHARED != 0
}

/// `tgid` mapped shared memory (`writable`: with write access).
#[inline(always)]
pub(crate) fn mark_shared(tgid: u32, writable: bool) {
    let old = shared_bits(tgid);
    let new = old | MAPS_SHARED | if writable { MAPS_WRITABLE } else { 0 };
    if new != old {
        let _ = SHM_PROCS.insert(tgid, new, 0);
    }
}

/// A fork: the child inherits the parent's shared mappings.
#[inline(always)]
pub(crate) fn inherit(parent: u32, child: u32) {
    let bits = shared_bits(parent);
    if bits != 0 {
        let _ = SHM_PROCS.insert(child, bits, 0);
    }
}

/// The process exited.
#[inline(always)]
pub(crate) fn forget(tgid: u32) {
    let _ = SHM_PROCS.remove(tgid);
}
