//! Write faults (`exceptions:page_fault_user` with the write bit) of
//! traced processes that map writable shared memory; userspace keeps those
//! that land in a shared region.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};
use ipcwatch_common::shm::{FaultEvent, kind, shm_flags};

use crate::{
    emit::{emit, header},
    filter::allowed,
    maps::shm_conf,
    shared::{MAPS_WRITABLE, shared_bits},
};

const FAULT_WRITE: u64 = 0x2;

/// `exceptions:page_fault_user`: write faults of traced processes that map
/// shared memory. Userspace keeps those that land in a shared region.
#[tracepoint]
pub fn ipcwatch_page_fault(ctx: TracePointContext) -> u32 {
    page_fault(&ctx);
    0
}

#[inline(always)]
fn page_fault(ctx: &TracePointContext) {
    if shm_conf!(flags) & shm_flags::FAULTS == 0 {
        return;
    }
    // SAFETY: page_fault_user: address at 8, ip at 16, error_code at 24.
    let (addr, ip, error_code) = unsafe {
        (
            ctx.read_at::<u64>(8).unwrap_or(0),
            ctx.read_at::<u64>(16).unwrap_or(0),
            ctx.read_at::<u64>(24).unwrap_or(0),
        )
    };
    if error_code & FAULT_WRITE == 0 {
        return;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if shared_bits(tgid) & MAPS_WRITABLE == 0 || !allowed(tgid) {
        return;
    }
    emit(FaultEvent {
        hdr: header(kind::FAULT, pid_tgid),
        addr,
        ip,
        error_code,
    });
}
