//! Synchronization syscalls: futex (only process-shared operations, without
//! `FUTEX_PRIVATE_FLAG`), flock, and fcntl's record locks. Failures are
//! reported too: a refused `F_SETLK` or a futex wait that found the word
//! changed is a fact about a lock. Called by `dispatch.rs` at syscall exit.

use aya_ebpf::helpers::bpf_probe_read_user;
use ipcwatch_common::{
    sc as base_sc,
    shm::{LockEvent, kind, sc},
};

use crate::{
    block::syscall_arg as arg,
    emit::{emit, header, timed_span},
    file::{file_ident, file_of_fd},
};

const FUTEX_PRIVATE_FLAG: u64 = 128;
const F_SETLK: u64 = 6;
const F_SETLKW: u64 = 7;
const F_OFD_SETLK: u64 = 37;
const F_OFD_SETLKW: u64 = 38;

/// A futex operation on a process-private word (not reported).
#[inline(always)]
pub(crate) fn futex_private(op: u64) -> bool {
    op & FUTEX_PRIVATE_FLAG != 0
}

/// An fcntl command that sets a record lock (reported).
#[inline(always)]
pub(crate) fn lock_cmd(cmd: u64) -> bool {
    matches!(cmd, F_SETLK | F_SETLKW | F_OFD_SETLK | F_OFD_SETLKW)
}

/// futex: the word, the operation and its result.
#[inline(always)]
pub(crate) fn futex(regs: u64, ret: i64, pid_tgid: u64) {
    let op = arg(regs, 1);
    if futex_private(op) {
        return;
    }
    timed_span(pid_tgid);
    emit(LockEvent {
        hdr: header(kind::LOCK, pid_tgid),
        addr: arg(regs, 0),
        ret,
        ino: 0,
        start: arg(regs, 4),
        len: 0,
        dev: 0,
        op: op as u32,
        arg: arg(regs, 2) as u32,
        kind: 0,
        syscall: sc::FUTEX,
        _pad: 0,
    });
}

/// flock: the file and the operation.
#[inline(always)]
pub(crate) fn flock(regs: u64, ret: i64, pid_tgid: u64) {
    let fd = arg(regs, 0);
    let (ino, dev, _) = file_ident(file_of_fd(fd as i64));
    timed_span(pid_tgid);
    emit(LockEvent {
        hdr: header(kind::LOCK, pid_tgid),
        addr: 0,
        ret,
        ino,
        start: 0,
        len: 0,
        dev,
        op: arg(regs, 1) as u32,
        arg: fd as u32,
        kind: 0,
        syscall: sc::FLOCK,
        _pad: 0,
    });
}

/// `struct flock` as fcntl reads it (x86_64): l_type, l_whence, l_start,
/// l_len, l_pid.
#[repr(C)]
#[derive(Clone, Copy)]
struct Flock {
    l_type: i16,
    l_whence: i16,
    _pad: u32,
    l_start: i64,
    l_len: i64,
    l_pid: i32,
    _pad2: u32,
}

/// fcntl record locks (F_SETLK, F_SETLKW and their OFD forms): the file,
/// the range and the lock type.
#[inline(always)]
pub(crate) fn fcntl(regs: u64, ret: i64, pid_tgid: u64) {
    let cmd = arg(regs, 1);
    if !lock_cmd(cmd) {
        return;
    }
    let fd = arg(regs, 0);
    // SAFETY: user pointer passed to fcntl; probe_read tolerates faults.
    let Ok(fl) = (unsafe { bpf_probe_read_user(arg(regs, 2) as *const Flock) }) else {
        return;
    };
    let (ino, dev, _) = file_ident(file_of_fd(fd as i64));
    timed_span(pid_tgid);
    emit(LockEvent {
        hdr: header(kind::LOCK, pid_tgid),
        addr: 0,
        ret,
        ino,
        start: fl.l_start as u64,
        len: fl.l_len as u64,
        dev,
        op: cmd as u32,
        arg: fd as u32,
        kind: (fl.l_type as u16 as u32) | ((fl.l_whence as u16 as u32) << 16),
        syscall: base_sc::FCNTL,
        _pad: 0,
    });
}
