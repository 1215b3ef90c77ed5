//! Bytes through a descriptor: one [`IoEvent`] for a pipe or FIFO, one
//! socket event for a socket. Below the probes, because read/write,
//! splice, tee and vmsplice (probes/fd.rs) reach sockets too.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{bindings::BPF_NOEXIST, helpers::bpf_ktime_get_ns};
use ipcwatch_common::{FileId, IoEvent, IoKey, IoTotals, PIPE_BUF, file_kind, kind, op};

use crate::{
    emit::{emit, header_any, wake_flags},
    file::{file_of_fd, wanted},
    maps::{IO_TOTALS, conf},
    socket::{sock_event_ino, sock_of_file},
};

/// Bytes moved through `fd` (`file`), in direction `op`, by `syscall`.
#[inline(always)]
pub(crate) fn io<const BTF: bool>(
    pid_tgid: u64,
    file: FileId,
    fd: i32,
    op: u32,
    bytes: i64,
    syscall: u32,
) {
    io_event::<BTF>(pid_tgid, &file, 0, pack(fd, op, syscall), bytes);
}

/// A descriptor, a direction and a syscall code in one argument (BPF
/// functions take at most five).
#[inline(always)]
pub(crate) fn pack(fd: i32, op: u32, syscall: u32) -> u64 {
    ((fd as u32 as u64) << 32) | ((op as u64) << 16) | syscall as u64
}

/// The IO event itself, in its own BPF function (its own stack frame:
/// `sys_exit` handles many syscalls and must stay under 512 bytes).
/// `fptr` is the `struct file *` when the caller has it (0: look it up).
#[inline(never)]
pub(crate) fn io_event<const BTF: bool>(
    pid_tgid: u64,
    file: &FileId,
    fptr: u64,
    fd_op_sc: u64,
    bytes: i64,
) {
    let fd = (fd_op_sc >> 32) as i32;
    let (op, syscall) = ((fd_op_sc >> 16) as u32 & 0xffff, fd_op_sc as u32 & 0xffff);
    if file.kind == file_kind::SOCKET && bytes > 0 {
        let fptr = if fptr == 0 {
            file_of_fd(fd as i64)
        } else {
            fptr
        };
        socket_io::<BTF>(pid_tgid, fptr, fd_op_sc, bytes as u64, file.ino);
        return;
    }
    if bytes <= 0 || !wanted(file) {
        return;
    }
    // The live TUI (a constant: off, the verifier drops the branch). Pipe
    // writes larger than PIPE_BUF stay events: the interleaving check
    // needs each one with its start.
    if conf!(aggregate) != 0
        && !(op == op::WRITE && bytes as u64 > PIPE_BUF)
        && add_totals(pid_tgid, file, fd, op, bytes as u64)
    {
        return;
    }
    emit(IoEvent {
        hdr: header_any::<BTF>(kind::IO, pid_tgid),
        file: *file,
        bytes: bytes as u64,
        fd,
        op,
        syscall,
        _pad: 0,
    });
}

/// Add one call of `bytes` to the descriptor's entry of `IO_TOTALS`
/// (made on its first call). False when the map is full: the caller
/// sends the event instead. Inlined: no stack frame of its own, and its
/// key and value take the place of the event it replaces.
#[inline(always)]
fn add_totals(pid_tgid: u64, file: &FileId, fd: i32, op: u32, bytes: u64) -> bool {
    let key = IoKey {
        ino: file.ino,
        dev: file.dev,
        kind: file.kind,
        op: op as u16,
        pid: (pid_tgid >> 32) as u32,
        fd,
    };
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    for _ in 0..2 {
        if let Some(t) = IO_TOTALS.get_ptr_mut(key) {
            // SAFETY: a valid, aligned per-CPU value. Atomic adds whose
            // result is unused (plain BPF_XADD, which Linux 5.10 has too):
            // two programs preempted on one CPU may interleave here.
            unsafe {
                atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*t).bytes, bytes);
                atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*t).ops, 1);
                (&raw mut (*t).last_ns).write_volatile(now);
            }
            return true;
        }
        // The first call: make the entry with zeros (another program may
        // make it first: then the insert fails and the lookup finds it).
        let _ = IO_TOTALS.insert(key, IoTotals::default(), BPF_NOEXIST as u64);
    }
    false
}

/// Bytes through a socket by read/write/readv/writev/splice: `file` is
/// the `struct file *` and `ino` its inode number (the caller classified
/// it); `fd_op_sc` packs the descriptor, the direction and the syscall.
///
/// Inlined into [`io_event`]: a frame of its own made the chain of calls
/// from `sys_exit` deeper than Linux 6.1's verifier allows (512 bytes,
/// each frame rounded up to 32).
#[inline(always)]
fn socket_io<const BTF: bool>(pid_tgid: u64, file: u64, fd_op_sc: u64, bytes: u64, ino: u64) {
    let fd = (fd_op_sc >> 32) as i32;
    let (dir, syscall) = ((fd_op_sc >> 16) as u32 & 0xffff, fd_op_sc as u32 & 0xffff);
    let Some(s) = sock_of_file(file) else {
        return;
    };
    let Some(mut entry) = sock_event_ino::<BTF>(kind::SOCK_IO, pid_tgid, file, ino, &s, fd) else {
        return;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: reserved ring-buffer memory.
    unsafe {
        (*e).bytes = bytes;
        (*e).op = dir;
        (*e).syscall = syscall;
    }
    entry.submit(wake_flags());
}
