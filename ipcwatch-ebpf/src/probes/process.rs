//! Process lifecycle: `sched_process_fork` (a raw tracepoint: it sees the
//! child's `task_struct`, so threads are told from processes, and children
//! of a traced process join `TRACED` before they run), `sched_process_exec`,
//! `sched_process_exit` (reported when the last thread exits), and wait4 /
//! waitid returning a child that ended (from `dispatch.rs`).

use aya_ebpf::{
    EbpfContext as _,
    helpers::{
        bpf_get_current_pid_tgid, bpf_probe_read_kernel_str_bytes, bpf_probe_read_user,
        generated::{bpf_get_current_cgroup_id, bpf_get_current_task},
    },
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use ipcwatch_common::{ExecEvent, ExitEvent, ForkEvent, WaitEvent, kind, sc, traced};

use crate::{
    block::{Regs, kread},
    emit::{dropped, emit, header},
    filter::allowed,
    log,
    maps::{EVENTS, TRACED, conf},
    shared,
};

/// `sched_process_fork(struct task_struct *parent, struct task_struct *child)`.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn ipcwatch_fork(ctx: RawTracePointContext) -> i32 {
    fork(&ctx);
    0
}

fn fork(ctx: &RawTracePointContext) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let parent = (pid_tgid >> 32) as u32;
    let child: u64 = ctx.arg(1);
    let Some(child_tgid) = kread::<u32>(child, conf!(off.task_tgid)) else {
        log::unreadable_child(parent, child);
        return;
    };
    if child_tgid == parent {
        return; // a new thread
    }
    let child_tid = kread::<u32>(child, conf!(off.task_pid)).unwrap_or(child_tgid);
    shared::inherit(parent, child_tgid);
    if let Some(flags) = TRACED.get_ptr(parent) {
        // SAFETY: pointer from the map, valid for this read.
        let flags = unsafe { *flags };
        if flags & traced::FOLLOW_FORKS != 0 {
            let _ = TRACED.insert(child_tgid, flags, 0);
        }
    }
    if !allowed(parent) {
        return;
    }
    emit(ForkEvent {
        hdr: header(kind::FORK, pid_tgid),
        child_pid: child_tgid,
        child_tid,
        // SAFETY: plain helper call.
        cgroup: unsafe { bpf_get_current_cgroup_id() },
    });
}

#[tracepoint]
pub fn ipcwatch_exec(ctx: TracePointContext) -> u32 {
    exec(&ctx);
    0
}

fn exec(ctx: &TracePointContext) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !allowed((pid_tgid >> 32) as u32) {
        return;
    }
    // SAFETY: sched_process_exec: __data_loc filename at 8, old_pid at 16.
    let (loc, old_tid) = unsafe {
        (
            ctx.read_at::<u32>(8).unwrap_or(0),
            ctx.read_at::<u32>(16).unwrap_or(0),
        )
    };
    let hdr = header(kind::EXEC, pid_tgid);
    let Some(mut entry) = EVENTS.reserve::<ExecEvent>(0) else {
        dropped(kind::EXEC);
        return;
    };
    let e = entry.as_mut_ptr();
    let src = (ctx.as_ptr() as u64 + (loc & 0xffff) as u64) as *const u8;
    // SAFETY: `e` points to reserved ring-buffer memory of the right size;
    // `src` lies inside the tracepoint record.
    unsafe {
        (*e).hdr = hdr;
        (*e).old_tid = old_tid;
        (*e)._pad = 0;
        (*e).cgroup = bpf_get_current_cgroup_id();
        if bpf_probe_read_kernel_str_bytes(src, &mut (*e).filename).is_err() {
            (*e).filename[0] = 0;
            log::unreadable_exec_name((pid_tgid >> 32) as u32);
        }
    }
    entry.submit(0);
}

#[tracepoint]
pub fn ipcwatch_exit(_ctx: TracePointContext) -> u32 {
    exit();
    0
}

fn exit() {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    // SAFETY: plain helper call.
    let task = unsafe { bpf_get_current_task() };
    let signal = kread::<u64>(task, conf!(off.task_signal)).unwrap_or(0);
    let live = kread::<i32>(signal, conf!(off.signal_live)).unwrap_or(0);
    if live != 0 {
        return; // other threads of the process are still running
    }
    let traced = TRACED.get_ptr(tgid).is_some();
    let allow = allowed(tgid);
    if traced {
        let _ = TRACED.remove(tgid);
    }
    shared::forget(tgid);
    if !allow {
        return;
    }
    let exit_code = kread::<u32>(task, conf!(off.task_exit_code)).unwrap_or(0);
    emit(ExitEvent {
        hdr: header(kind::EXIT, pid_tgid),
        exit_code,
        _pad: 0,
    });
}

/// wait4/waitid that returned a child which exited or was killed (for the
/// happens-before edge from its end to this return).
#[inline(never)]
pub(crate) fn wait<const BTF: bool>(regs: u64, pid_tgid: u64, code: u32, ret: i64) {
    let r = &Regs::any::<BTF>(regs);
    const WUNTRACED: u64 = 2;
    const WCONTINUED: u64 = 8;
    const CLD_EXITED: i32 = 1;
    const CLD_KILLED: i32 = 2;
    const CLD_DUMPED: i32 = 3;
    let read = |addr: u64| -> Option<i32> {
        // SAFETY: user pointer; probe_read tolerates faults.
        unsafe { bpf_probe_read_user(addr as *const i32) }.ok()
    };
    let (child, status) = if code == sc::WAIT4 {
        // The pid, or 0 (WNOHANG and nothing to report).
        if ret <= 0 {
            return;
        }
        let status = match r.arg(1) {
            0 => None,
            p => read(p),
        };
        match status {
            // Stopped (0x7f in the low byte) or continued (0xffff).
            Some(st) if st & 0xff == 0x7f || st == 0xffff => return,
            Some(st) => (ret as u32, st as u32),
            // No status to look at: only exits can be reported.
            None if r.arg(2) & (WUNTRACED | WCONTINUED) != 0 => return,
            None => (ret as u32, 0),
        }
    } else {
        // siginfo_t: si_code at 8, si_pid at 16, si_status at 24.
        let info = r.arg(2);
        let (Some(si_code), Some(pid), Some(st)) =
            (read(info + 8), read(info + 16), read(info + 24))
        else {
            return;
        };
        match si_code {
            _ if pid <= 0 => return,
            CLD_EXITED => (pid as u32, ((st & 0xff) << 8) as u32),
            CLD_KILLED | CLD_DUMPED => (pid as u32, (st & 0x7f) as u32),
            _ => return,
        }
    };
    emit(WaitEvent {
        hdr: header(kind::WAIT, pid_tgid),
        child_pid: child,
        status,
    });
}
