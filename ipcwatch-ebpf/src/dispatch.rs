//! The hot path: one program on `sys_enter` and one on `sys_exit` see
//! every syscall of every task. Each exists twice: on a BTF-enabled
//! tracepoint (tp_btf), where the registers and the task are typed
//! pointers loaded directly, and on a raw tracepoint, the fallback where
//! each of those loads is a helper call (userspace loads the second when
//! the kernel refuses the first, or with `IPCWATCH_NO_TP_BTF=1`).
//!
//! One lookup in the `SYSCALLS` array (filled by userspace with this
//! architecture's numbers) turns away the syscalls ipcwatch does not
//! follow; the others are routed here to their family in `probes/`. At
//! `sys_exit`, reads and writes are handled in the dispatcher itself and
//! the other families (sockets and message queues, shared memory and
//! locks, the descriptors' other calls) are programs of their own,
//! reached by tail call with a constant index (a direct jump once the JIT
//! has patched it): the verifier checks each program on its own, where
//! all of them in one were over its million instructions on Linux 6.1,
//! and a family that does not load is dropped with a warning.
//!
//! The routing functions that are `#[inline(never)]` are BPF-to-BPF calls
//! on purpose: each has its own stack frame, so the frames of the
//! families do not add up in `ipcwatch_sys_exit` (512 bytes of stack in
//! all). The rest is inlined: the verifier sees the same program as when
//! all of it was one function.

use aya_ebpf::{
    EbpfContext,
    helpers::bpf_get_current_pid_tgid,
    macros::{btf_tracepoint, raw_tracepoint},
    programs::{BtfTracePointContext, RawTracePointContext},
};
use ipcwatch_common::{
    PIPE_BUF, file_kind,
    sc::{self, exit_tail},
    shm::sc as shm_sc,
};

use crate::{
    block::{Regs, kread, regs_arg},
    emit::{call_starts, timing},
    file::{classify_file, file_of_fd, wanted},
    filter::allowed,
    maps::{EXIT_TAILS, EXIT_TAILS_BTF, SYSCALLS, conf},
    probes::{fd, mq, process, shm, sock, sync},
};

/// `sys_enter(struct pt_regs *regs, long id)`, for every syscall: entry of
/// close and close_range (the descriptor must be classified before the
/// kernel drops it), and of write and writev larger than PIPE_BUF to a
/// pipe (such writes can interleave: their start is kept). A raw
/// tracepoint costs far less per call than the syscalls:sys_enter_* ones
/// (no perf buffer), and the syscall number comes as an argument, so
/// every other syscall is turned away after one array lookup.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn ipcwatch_sys_enter(ctx: RawTracePointContext) -> i32 {
    sys_enter::<false>(ctx.arg(0), ctx.arg(1));
    0
}

/// The same on tp_btf (see `ipcwatch_sys_exit_btf`): a write's length is
/// loaded from the registers directly.
#[btf_tracepoint(function = "sys_enter")]
pub fn ipcwatch_sys_enter_btf(ctx: BtfTracePointContext) -> i32 {
    sys_enter::<true>(ctx.arg(0), ctx.arg(1));
    0
}

#[inline(always)]
fn sys_enter<const BTF: bool>(regs: u64, nr: u64) {
    let code = match SYSCALLS.get(nr as u32) {
        Some(&c) if c != 0 => c,
        _ => return,
    };
    // With `--durations` (a constant to the verifier: without it, this
    // branch is not even loaded), timed calls keep their start; a large
    // pipe write then needs nothing more here.
    if timing() {
        time_call(regs, code);
        if code != sc::CLOSE && code != sc::CLOSE_RANGE {
            return;
        }
    }
    if !matches!(code, sc::CLOSE | sc::CLOSE_RANGE | sc::WRITE | sc::WRITEV) {
        return;
    }
    let arg = |i: usize| regs_arg(regs, i);
    if code == sc::WRITE {
        let len = if BTF {
            let at = regs + conf!(off.regs_arg2) as u64;
            // SAFETY: `regs` is the kernel's `struct pt_regs *` of a
            // tp_btf program; the verifier checks the load against BTF.
            unsafe { core::ptr::read_volatile(at as *const u64) }
        } else {
            arg(2)
        };
        if len <= PIPE_BUF {
            return;
        }
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    if !allowed((pid_tgid >> 32) as u32) {
        return;
    }
    match code {
        sc::CLOSE => {
            let fd = arg(0) as i32;
            let fptr = file_of_fd(fd as i64);
            let file = classify_file(fptr);
            if wanted(&file) {
                fd::close(pid_tgid, file, fd, code);
            } else if file.kind == file_kind::NONE && fptr != 0 {
                mq::close(pid_tgid, fptr, fd);
            }
        }
        sc::CLOSE_RANGE => fd::close_range(regs, pid_tgid, code),
        _ => fd::write_start(regs, pid_tgid, code),
    }
}

/// `--durations`: the calls whose events carry their start (reads, writes,
/// sends and receives, queue sends and receives, and the lock calls that
/// `probes/sync.rs` reports: process-shared futex operations, flock,
/// fcntl's record locks), as the exit side selects them.
#[inline(never)]
fn time_call(regs: u64, code: u32) {
    let timed = match code {
        sc::READ
        | sc::READV
        | sc::WRITE
        | sc::WRITEV
        | sc::SENDTO
        | sc::RECVFROM
        | sc::SENDMSG
        | sc::RECVMSG
        | sc::SENDMMSG
        | sc::RECVMMSG
        | sc::MQ_TIMEDSEND
        | sc::MQ_TIMEDRECEIVE
        | sc::MSGSND
        | sc::MSGRCV
        | shm_sc::FLOCK => true,
        shm_sc::FUTEX => !sync::futex_private(regs_arg(regs, 1)),
        sc::FCNTL => sync::lock_cmd(regs_arg(regs, 1)),
        _ => false,
    };
    if !timed {
        return;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    if allowed((pid_tgid >> 32) as u32) {
        call_starts(pid_tgid);
    }
}

/// `sys_exit(struct pt_regs *regs, long ret)`, for every syscall: one
/// array lookup turns away the ones ipcwatch does not follow. The
/// arguments are read back from the saved user registers, so nothing is
/// kept between entry and exit. Reads and writes (the hot path) are
/// handled here; the other families are programs of their own, reached
/// by tail call (`ipcwatch_exit_*`).
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn ipcwatch_sys_exit(ctx: RawTracePointContext) -> i32 {
    sys_exit::<false, _>(&ctx, ctx.arg(0), ctx.arg(1));
    0
}

/// The same on a BTF-enabled tracepoint (tp_btf), where the registers and
/// the task's descriptor table are typed pointers: the verifier lets the
/// program load through them directly, without a helper call each.
/// Loaded when the kernel allows it; the raw tracepoint otherwise.
#[btf_tracepoint(function = "sys_exit")]
pub fn ipcwatch_sys_exit_btf(ctx: BtfTracePointContext) -> i32 {
    sys_exit::<true, _>(&ctx, ctx.arg(0), ctx.arg(1));
    0
}

/// Jump to family `index` of `sys_exit` (`sc::exit_tail`); returns only
/// when its slot is empty (the family did not load: it is dropped).
#[inline(always)]
fn tail<const BTF: bool, C: EbpfContext>(ctx: &C, index: u32) {
    let tails = if BTF { &EXIT_TAILS_BTF } else { &EXIT_TAILS };
    // SAFETY: `ctx` is this program's context; every program of the array
    // is a sys_exit program of the same type, which takes the same one.
    unsafe { tails.tail_call(ctx, index) };
}

/// The code of the syscall (0: not followed), from its number alone.
#[inline(always)]
fn code_of<const BTF: bool>(regs: u64) -> u32 {
    let at = conf!(off.regs_nr);
    let nr = if BTF {
        // SAFETY: `regs` is the kernel's `struct pt_regs *` of a tp_btf
        // program; the verifier checks the load against BTF.
        unsafe { core::ptr::read_volatile((regs + at as u64) as *const u64) }
    } else {
        match kread::<u64>(regs, at) {
            Some(nr) => nr,
            None => return 0,
        }
    };
    SYSCALLS.get(nr as u32).copied().unwrap_or(0)
}

/// The saved registers, and the code of the syscall (0: not followed).
/// Returned apart, not as a pair: a pair of them was copied on the stack.
#[inline(always)]
fn decode<const BTF: bool>(regs: u64) -> (Regs, u32) {
    let r = if BTF {
        Regs::of_btf(regs)
    } else {
        Regs::of(regs)
    };
    let code = match r.nr() {
        Some(nr) => SYSCALLS.get(nr as u32).copied().unwrap_or(0),
        None => 0,
    };
    (r, code)
}

#[inline(always)]
fn sys_exit<const BTF: bool, C: EbpfContext>(ctx: &C, regs: u64, ret: i64) {
    let code = code_of::<BTF>(regs);
    if code == 0 || code == sc::CLOSE || code == sc::CLOSE_RANGE {
        return;
    }
    // Shared memory and locks see failures too; so do fcntl's locks and
    // open under /dev/shm, which the descriptor family hands on.
    if (64..128).contains(&code) {
        return tail::<BTF, C>(ctx, exit_tail::SHM_SYNC);
    }
    if code == sc::FCNTL || code == sc::OPEN || code == sc::OPENAT {
        return tail::<BTF, C>(ctx, exit_tail::SHM_SYNC);
    }
    // A non-blocking connect() in progress (-EINPROGRESS) is reported too.
    if ret < 0 && !(code == sc::CONNECT && ret == -115) {
        return;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    if !allowed((pid_tgid >> 32) as u32) {
        return;
    }
    match code {
        sc::READ | sc::READV | sc::WRITE | sc::WRITEV => tail::<BTF, C>(ctx, exit_tail::READ_WRITE),
        32..64 => tail::<BTF, C>(ctx, exit_tail::SOCK_MQ),
        sc::SPLICE | sc::TEE | sc::VMSPLICE => tail::<BTF, C>(ctx, exit_tail::SPLICE),
        _ => tail::<BTF, C>(ctx, exit_tail::FD),
    }
}

/// splice, tee, vmsplice, reached by tail call (the dispatcher checked
/// the result and the filter).
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn ipcwatch_exit_splice(ctx: RawTracePointContext) -> i32 {
    exit_splice::<false>(ctx.arg(0), ctx.arg(1));
    0
}

#[btf_tracepoint(function = "sys_exit")]
pub fn ipcwatch_exit_splice_btf(ctx: BtfTracePointContext) -> i32 {
    exit_splice::<true>(ctx.arg(0), ctx.arg(1));
    0
}

#[inline(always)]
fn exit_splice<const BTF: bool>(regs: u64, ret: i64) {
    let code = code_of::<BTF>(regs);
    let pid_tgid = bpf_get_current_pid_tgid();
    match code {
        sc::VMSPLICE => fd::vmsplice::<BTF>(regs, pid_tgid, code, ret),
        sc::SPLICE => fd::splice::<BTF>(regs, pid_tgid, code, ret),
        _ => fd::tee::<BTF>(regs, pid_tgid, code, ret),
    }
}

/// read, readv, write, writev, reached by tail call (the dispatcher
/// checked the result and the filter).
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn ipcwatch_exit_read_write(ctx: RawTracePointContext) -> i32 {
    exit_read_write::<false>(ctx.arg(0), ctx.arg(1));
    0
}

#[btf_tracepoint(function = "sys_exit")]
pub fn ipcwatch_exit_read_write_btf(ctx: BtfTracePointContext) -> i32 {
    exit_read_write::<true>(ctx.arg(0), ctx.arg(1));
    0
}

#[inline(always)]
fn exit_read_write<const BTF: bool>(regs: u64, ret: i64) {
    // The two arguments used, not the block of nine registers: in the
    // raw form that block's 72 bytes put the chain through classify_file
    // over Linux 6.1's 512 bytes (544, found by the matrix's pipes group).
    let code = code_of::<BTF>(regs);
    let fd = arg_of::<BTF>(regs, conf!(off.regs_arg0));
    let buf = arg_of::<BTF>(regs, conf!(off.regs_arg1));
    fd::read_write::<BTF>(fd as i32, buf, bpf_get_current_pid_tgid(), code, ret);
}

/// The saved register at `at` in `regs`: a direct load in the tp_btf
/// form, a probe read in the raw one (0 when it fails).
#[inline(always)]
fn arg_of<const BTF: bool>(regs: u64, at: u32) -> u64 {
    if BTF {
        // SAFETY: `regs` is the kernel's `struct pt_regs *` of a tp_btf
        // program; the verifier checks the load against BTF.
        unsafe { core::ptr::read_volatile((regs + at as u64) as *const u64) }
    } else {
        kread::<u64>(regs, at).unwrap_or(0)
    }
}

/// Sockets and message queues, reached by tail call from the dispatcher
/// (which checked the result and the filter).
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn ipcwatch_exit_sock_mq(ctx: RawTracePointContext) -> i32 {
    exit_sock_mq::<false>(ctx.arg(0), ctx.arg(1));
    0
}

#[btf_tracepoint(function = "sys_exit")]
pub fn ipcwatch_exit_sock_mq_btf(ctx: BtfTracePointContext) -> i32 {
    exit_sock_mq::<true>(ctx.arg(0), ctx.arg(1));
    0
}

#[inline(always)]
fn exit_sock_mq<const BTF: bool>(regs: u64, ret: i64) {
    let (r, code) = decode::<BTF>(regs);
    sock_mq::<BTF>(&r, bpf_get_current_pid_tgid(), code, ret);
}

/// Shared memory and locks (codes 64..127), reached by tail call.
/// fcntl, open and openat come here first (their locks and /dev/shm),
/// then go on to the descriptor family by another tail call.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn ipcwatch_exit_shm_sync(ctx: RawTracePointContext) -> i32 {
    exit_shm_sync::<false, _>(&ctx, ctx.arg(0), ctx.arg(1));
    0
}

#[btf_tracepoint(function = "sys_exit")]
pub fn ipcwatch_exit_shm_sync_btf(ctx: BtfTracePointContext) -> i32 {
    exit_shm_sync::<true, _>(&ctx, ctx.arg(0), ctx.arg(1));
    0
}

#[inline(always)]
fn exit_shm_sync<const BTF: bool, C: EbpfContext>(ctx: &C, regs: u64, ret: i64) {
    let code = code_of::<BTF>(regs);
    let mine = (64..128).contains(&code);
    if matches!(code, shm_sc::FUTEX | shm_sc::FLOCK | sc::FCNTL) {
        lock_exit(regs, code, ret);
    } else {
        shm_sync_exit(regs, code, ret, mine);
    }
    if !mine && ret >= 0 && allowed((bpf_get_current_pid_tgid() >> 32) as u32) {
        tail::<BTF, C>(ctx, exit_tail::FD);
    }
}

/// The descriptors' other calls, reached by tail call (fcntl and open
/// from the shm family, after their locks and shared memory).
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn ipcwatch_exit_fd(ctx: RawTracePointContext) -> i32 {
    exit_fd::<false>(ctx.arg(0), ctx.arg(1));
    0
}

#[btf_tracepoint(function = "sys_exit")]
pub fn ipcwatch_exit_fd_btf(ctx: BtfTracePointContext) -> i32 {
    exit_fd::<true>(ctx.arg(0), ctx.arg(1));
    0
}

#[inline(always)]
fn exit_fd<const BTF: bool>(regs: u64, ret: i64) {
    let code = code_of::<BTF>(regs);
    // The dispatcher (or the shm family, for fcntl and open) checked the
    // result and the filter.
    let pid_tgid = bpf_get_current_pid_tgid();
    match code {
        sc::WAIT4 | sc::WAITID => process::wait::<BTF>(regs, pid_tgid, code, ret),
        sc::DUP | sc::DUP2 | sc::DUP3 | sc::FCNTL => fd::dup_call::<BTF>(regs, pid_tgid, code, ret),
        sc::PIPE | sc::PIPE2 => fd::pipe::<BTF>(regs, pid_tgid, code),
        sc::MKNOD | sc::MKNODAT => fd::mknod::<BTF>(regs, pid_tgid, code),
        sc::OPEN | sc::OPENAT | sc::OPENAT2 => fd::open::<BTF>(regs, pid_tgid, code, ret),
        _ => {}
    }
}

/// Shared memory and locks (probes/shm.rs, probes/sync.rs): codes
/// 64..127, plus fcntl's lock commands and open under /dev/shm. Returns
/// `mine` (the caller stops when the syscall is theirs only).
#[inline(never)]
fn shm_sync_exit(regs: u64, code: u32, ret: i64, mine: bool) -> bool {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if !allowed(tgid) {
        return mine;
    }
    match code {
        sc::OPEN | sc::OPENAT => shm::open(regs, code, ret, pid_tgid),
        shm_sc::UNLINK | shm_sc::UNLINKAT => shm::unlink(regs, code, ret, pid_tgid),
        _ => shm::memory(regs, code, ret, pid_tgid, tgid),
    }
    mine
}

/// futex, flock and fcntl's locks, in a frame of their own: beside
/// [`shm_sync_exit`]'s, whose shared-memory events take 424 bytes, not
/// under it (6.1 allows 512 bytes for a chain of calls, and the span of
/// `--durations` is one more call).
#[inline(never)]
fn lock_exit(regs: u64, code: u32, ret: i64) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !allowed((pid_tgid >> 32) as u32) {
        return;
    }
    match code {
        shm_sc::FUTEX => sync::futex(regs, ret, pid_tgid),
        shm_sc::FLOCK => sync::flock(regs, ret, pid_tgid),
        _ => sync::fcntl(regs, ret, pid_tgid),
    }
}

/// Sockets and message queues (codes 32..63), in their own stack frame.
#[inline(never)]
fn sock_mq<const BTF: bool>(regs: &Regs, pid_tgid: u64, code: u32, ret: i64) {
    match code {
        sc::SENDTO | sc::RECVFROM | sc::SENDMSG | sc::RECVMSG | sc::SENDMMSG | sc::RECVMMSG => {
            sock::msg_io::<BTF>(regs, pid_tgid, code, ret)
        }
        sc::SOCKET | sc::BIND | sc::LISTEN | sc::CONNECT | sc::ACCEPT | sc::ACCEPT4 => {
            sock::life(regs, pid_tgid, code, ret)
        }
        sc::SOCKETPAIR => sock::pair(regs, pid_tgid, code),
        sc::MSGGET | sc::MSGSND | sc::MSGRCV | sc::MSGCTL => mq::sysv(regs, pid_tgid, code, ret),
        _ => mq::posix::<BTF>(regs, pid_tgid, code, ret),
    }
}
