//! Uprobes on libc's synchronization calls. The attach cookie says which
//! function was hit (one of `shm::func`).
//!
//! - Set-up calls (pthread_mutex_init...): always on, attached to libc for
//!   every process (they are rare), filtered with `allowed`.
//! - Hot calls (`--lock-probes`): attached per process. Release-type calls
//!   are reported at entry; acquire-type calls stash the object's address
//!   at entry and are reported at return, with the result.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user, generated::bpf_get_attach_cookie},
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
};
use ipcwatch_common::shm::{UprobeEvent, func, kind};

use crate::{
    emit::{emit, header},
    filter::allowed,
    log,
    maps::PENDING,
};

/// glibc `PTHREAD_MUTEXATTR_FLAG_PSHARED` in `pthread_mutexattr_t`.
const MUTEXATTR_PSHARED: u32 = 0x8000_0000;
const UNKNOWN: u32 = 2;

#[uprobe]
pub fn ipcwatch_uprobe(ctx: ProbeContext) -> u32 {
    entry(&ctx);
    0
}

#[inline(always)]
fn cookie(ctx: &ProbeContext) -> u32 {
    // SAFETY: plain helper call on the program's own context.
    unsafe { bpf_get_attach_cookie(ctx.regs as *mut _) as u32 }
}

#[inline(always)]
fn entry(ctx: &ProbeContext) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !allowed((pid_tgid >> 32) as u32) {
        return;
    }
    let f = cookie(ctx);
    let addr: u64 = ctx.arg(0).unwrap_or(0);
    if func::at_return(f) {
        if f != func::SEM_OPEN {
            let _ = PENDING.insert(pid_tgid as u32, addr, 0);
        }
        return;
    }
    let arg1: u64 = ctx.arg(1).unwrap_or(0);
    let pshared = match f {
        func::MUTEX_INIT => {
            if arg1 == 0 {
                0
            } else {
                // SAFETY: user pointer; probe_read tolerates faults.
                match unsafe { bpf_probe_read_user(arg1 as *const u32) } {
                    Ok(kind) => (kind & MUTEXATTR_PSHARED != 0) as u32,
                    Err(_) => UNKNOWN,
                }
            }
        }
        func::RWLOCK_INIT => {
            if arg1 == 0 {
                0
            } else {
                // SAFETY: user pointer; glibc's rwlockattr is {lockkind, pshared}.
                match unsafe { bpf_probe_read_user((arg1 + 4) as *const u32) } {
                    Ok(p) => (p != 0) as u32,
                    Err(_) => UNKNOWN,
                }
            }
        }
        func::SPIN_INIT
        | func::SEM_INIT
        | func::MUTEXATTR_SETPSHARED
        | func::RWLOCKATTR_SETPSHARED => (arg1 != 0) as u32,
        _ => UNKNOWN,
    };
    emit(UprobeEvent {
        hdr: header(kind::UPROBE, pid_tgid),
        addr,
        arg: arg1,
        pshared,
        func: f,
    });
}

#[uretprobe]
pub fn ipcwatch_uretprobe(ctx: RetProbeContext) -> u32 {
    ret(&ctx);
    0
}

#[inline(always)]
fn ret(ctx: &RetProbeContext) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !allowed((pid_tgid >> 32) as u32) {
        return;
    }
    // SAFETY: plain helper call on the program's own context.
    let f = unsafe { bpf_get_attach_cookie(ctx.regs as *mut _) } as u32;
    let rv: u64 = ctx.ret::<u64>();
    let tid = pid_tgid as u32;
    let addr = if f == func::SEM_OPEN {
        rv
    } else {
        // SAFETY: value read once from the map.
        let Some(a) = (unsafe { PENDING.get(tid) }) else {
            log::return_without_entry(tid, f);
            return;
        };
        let a = *a;
        let _ = PENDING.remove(tid);
        a
    };
    emit(UprobeEvent {
        hdr: header(kind::UPROBE, pid_tgid),
        addr,
        arg: rv,
        pshared: UNKNOWN,
        func: f,
    });
}
