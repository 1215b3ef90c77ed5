//! Descriptors, pipes and FIFOs: bytes through them (read, write, readv,
//! writev, splice, tee, vmsplice), and the calls that make, name, copy and
//! close them (pipe, mknod, open, dup, fcntl, close, close_range). Called
//! by `dispatch.rs` at syscall exit (entry for close, close_range and the
//! start of large writes).

use aya_ebpf::helpers::{bpf_probe_read_user, bpf_probe_read_user_str_bytes};
use ipcwatch_common::{
    FdEvent, FileId, OpenEvent, PIPE_BUF, PathEvent, PipeEvent, file_kind, kind, op, sc,
};

use crate::{
    block::{Regs, regs_arg, syscall_arg},
    emit::{dropped, call_starts, capture_user, capturing, emit, header, span, timing, wake_flags},
    file::{FMODE_WRITE, S_IFIFO, S_IFMT, classify_fd, classify_file, file_of_fd_any, wanted},
    io::{io, io_event, pack},
    maps::{EVENTS, conf},
    user::{first_iov, iov_len},
};

const O_CLOEXEC: u64 = 0o2000000;
const F_DUPFD: u64 = 0;
const F_SETFD: u64 = 2;
const F_DUPFD_CLOEXEC: u64 = 1030;

/// read, readv, write, writev: the span of a large pipe write, the
/// payload with `--capture-bytes`, then the IO event.
#[inline(always)]
pub(crate) fn read_write<const BTF: bool>(fd: i32, buf: u64, pid_tgid: u64, code: u32, ret: i64) {
    let fptr = file_of_fd_any::<BTF>(fd as i64);
    let file = classify_file(fptr);
    let dir = if code == sc::READ || code == sc::READV {
        op::READ
    } else {
        op::WRITE
    };
    if timing() {
        // Every read and write was timed at entry.
        if ret > 0 && (wanted(&file) || file.kind == file_kind::SOCKET) {
            span(pid_tgid);
        }
    } else if dir == op::WRITE
        && (file.kind == file_kind::PIPE || file.kind == file_kind::FIFO)
        && ret as u64 > PIPE_BUF
    {
        span(pid_tgid);
    }
    if capturing() {
        capture(pid_tgid, &file, user_buf(code, buf, ret));
    }
    io_event::<BTF>(pid_tgid, &file, fptr, pack(fd, dir, code), ret)
}

/// vmsplice: the direction is the descriptor's (a pipe end).
#[inline(always)]
pub(crate) fn vmsplice<const BTF: bool>(regs: u64, pid_tgid: u64, code: u32, ret: i64) {
    let r = &Regs::any::<BTF>(regs);
    let fd = r.arg(0) as i32;
    let file = classify_fd(fd as i64);
    let dir = if file.access as u32 & FMODE_WRITE != 0 {
        op::WRITE
    } else {
        op::READ
    };
    io::<BTF>(pid_tgid, file, fd, dir, ret, code)
}

/// splice: bytes out of one descriptor and into another.
#[inline(always)]
pub(crate) fn splice<const BTF: bool>(regs: u64, pid_tgid: u64, code: u32, ret: i64) {
    let r = &Regs::any::<BTF>(regs);
    let (fd_in, fd_out) = (r.arg(0) as i32, r.arg(2) as i32);
    io::<BTF>(
        pid_tgid,
        classify_fd(fd_in as i64),
        fd_in,
        op::READ,
        ret,
        code,
    );
    io::<BTF>(
        pid_tgid,
        classify_fd(fd_out as i64),
        fd_out,
        op::WRITE,
        ret,
        code,
    );
}

/// tee copies without consuming its input: only the output grows.
#[inline(always)]
pub(crate) fn tee<const BTF: bool>(regs: u64, pid_tgid: u64, code: u32, ret: i64) {
    let r = &Regs::any::<BTF>(regs);
    let fd_out = r.arg(1) as i32;
    io::<BTF>(
        pid_tgid,
        classify_fd(fd_out as i64),
        fd_out,
        op::WRITE,
        ret,
        code,
    )
}

/// dup, dup2, dup3, and fcntl's F_DUPFD, F_DUPFD_CLOEXEC and F_SETFD
/// (its lock commands are probes/sync.rs's): one descriptor event, built
/// at one place (one frame: Linux 6.1's verifier allows 512 bytes of
/// stack for the chain from the program to classify_file).
#[inline(never)]
pub(crate) fn dup_call<const BTF: bool>(regs: u64, pid_tgid: u64, code: u32, ret: i64) {
    // One read per argument used, not the block of all nine registers
    // (72 bytes of this frame: Linux 5.10 counted the chain from the
    // program through it to classify_file over 512 bytes).
    let arg = |i: u32| syscall_arg(regs, i);
    let arg0 = arg(0) as i32;
    // (event kind, descriptor, its `arg`, its `flags`)
    let (ev, fd, arg, flags) = match code {
        sc::DUP3 => (
            kind::DUP,
            ret as i32,
            arg0 as u32,
            (arg(2) & O_CLOEXEC != 0) as u32,
        ),
        sc::FCNTL => match arg(1) {
            F_DUPFD => (kind::DUP, ret as i32, arg0 as u32, 0),
            F_DUPFD_CLOEXEC => (kind::DUP, ret as i32, arg0 as u32, 1),
            F_SETFD => (kind::FD_FLAGS, arg0, 0, arg(2) as u32),
            _ => return,
        },
        _ => (kind::DUP, ret as i32, arg0 as u32, 0),
    };
    let file = classify_fd(fd as i64);
    if !wanted(&file) {
        return;
    }
    // Built in the ring buffer, not on the stack and copied: Linux
    // 5.10's verifier counted 544 bytes for the chain from the program
    // through this frame to classify_file (512 allowed).
    let hdr = header(ev, pid_tgid);
    let Some(mut entry) = EVENTS.reserve::<FdEvent>(0) else {
        dropped(ev);
        return;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points to reserved ring-buffer memory of the right size.
    unsafe {
        (*e).hdr = hdr;
        (*e).file = file;
        (*e).fd = fd;
        (*e).arg = arg;
        (*e).flags = flags;
        (*e).syscall = code;
    }
    entry.submit(wake_flags());
}

/// pipe, pipe2: both ends, read back from the caller's array.
#[inline(never)]
pub(crate) fn pipe<const BTF: bool>(regs: u64, pid_tgid: u64, code: u32) {
    // One read per argument used, not the block of all nine registers
    // (72 bytes of this frame: Linux 5.10 counted the chain from the
    // program through it to classify_file over 512 bytes).
    let arg = |i: u32| syscall_arg(regs, i);
    // SAFETY: user pointer passed to pipe(); probe_read tolerates faults.
    let Ok(fds) = (unsafe { bpf_probe_read_user(arg(0) as *const [i32; 2]) }) else {
        return;
    };
    let file = classify_fd(fds[0] as i64);
    if !wanted(&file) {
        return;
    }
    let flags = if code == sc::PIPE2 {
        arg(1) as u32
    } else {
        0
    };
    // In place, as in dup_call.
    let hdr = header(kind::PIPE, pid_tgid);
    let Some(mut entry) = EVENTS.reserve::<PipeEvent>(0) else {
        dropped(kind::PIPE);
        return;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points to reserved ring-buffer memory of the right size.
    unsafe {
        (*e).hdr = hdr;
        (*e).file = file;
        (*e).fds = fds;
        (*e).flags = flags;
        (*e).syscall = code;
    }
    entry.submit(wake_flags());
}

/// mknod, mknodat of a FIFO: its path.
#[inline(never)]
pub(crate) fn mknod<const BTF: bool>(regs: u64, pid_tgid: u64, code: u32) {
    let r = &Regs::any::<BTF>(regs);
    let (path, mode) = if code == sc::MKNOD {
        (r.arg(0), r.arg(1) as u32)
    } else {
        (r.arg(1), r.arg(2) as u32)
    };
    if mode & S_IFMT != S_IFIFO || conf!(kinds) & file_kind::bit(file_kind::FIFO) == 0 {
        return;
    }
    let hdr = header(kind::MKFIFO, pid_tgid);
    let Some(mut entry) = EVENTS.reserve::<PathEvent>(0) else {
        dropped(kind::MKFIFO);
        return;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points to reserved ring-buffer memory of the right size.
    unsafe {
        (*e).hdr = hdr;
        (*e).mode = mode;
        (*e).syscall = code;
        if bpf_probe_read_user_str_bytes(path as *const u8, &mut (*e).path).is_err() {
            (*e).path[0] = 0;
        }
    }
    entry.submit(wake_flags());
}

/// open, openat, openat2 of a wanted kind (a FIFO): the descriptor, its
/// flags and path.
#[inline(never)]
pub(crate) fn open<const BTF: bool>(regs: u64, pid_tgid: u64, code: u32, ret: i64) {
    // One read per argument used, not the block of all nine registers
    // (72 bytes of this frame: Linux 5.10 counted the chain from the
    // program through it to classify_file over 512 bytes).
    let arg = |i: u32| syscall_arg(regs, i);
    let file = classify_fd(ret);
    if !wanted(&file) {
        return;
    }
    let (path, flags) = match code {
        sc::OPEN => (arg(0), arg(1)),
        sc::OPENAT => (arg(1), arg(2)),
        // SAFETY: open_how.flags is the first u64 of a user struct.
        _ => (arg(1), unsafe {
            bpf_probe_read_user(arg(2) as *const u64).unwrap_or(0)
        }),
    };
    let hdr = header(kind::OPEN, pid_tgid);
    let Some(mut entry) = EVENTS.reserve::<OpenEvent>(0) else {
        dropped(kind::OPEN);
        return;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points to reserved ring-buffer memory of the right size.
    unsafe {
        (*e).hdr = hdr;
        (*e).file = file;
        (*e).fd = ret as i32;
        (*e).flags = flags as u32;
        (*e).syscall = code;
        (*e)._pad = 0;
        if bpf_probe_read_user_str_bytes(path as *const u8, &mut (*e).path).is_err() {
            (*e).path[0] = 0;
        }
    }
    entry.submit(wake_flags());
}

/// close (at entry) of a descriptor of a wanted kind, classified by the
/// caller.
#[inline(always)]
pub(crate) fn close(pid_tgid: u64, file: FileId, fd: i32, code: u32) {
    emit(FdEvent {
        hdr: header(kind::CLOSE, pid_tgid),
        file,
        fd,
        arg: 0,
        flags: 0,
        syscall: code,
    });
}

/// close_range (at entry): the range and flags, for userspace to apply.
#[inline(always)]
pub(crate) fn close_range(regs: u64, pid_tgid: u64, code: u32) {
    let arg = |i: usize| regs_arg(regs, i);
    emit(FdEvent {
        hdr: header(kind::CLOSE_RANGE, pid_tgid),
        file: FileId::default(),
        fd: arg(0) as i32,
        arg: arg(1) as u32,
        flags: arg(2) as u32,
        syscall: code,
    })
}

/// write or writev (at entry) larger than PIPE_BUF: if it goes to a pipe
/// or FIFO, keep its start time for [`span`].
#[inline(always)]
pub(crate) fn write_start(regs: u64, pid_tgid: u64, code: u32) {
    let arg = |i: usize| regs_arg(regs, i);
    if code == sc::WRITEV && iov_len(arg(1), arg(2)) <= PIPE_BUF {
        return;
    }
    let file = classify_fd(arg(0) as i64);
    if (file.kind == file_kind::PIPE || file.kind == file_kind::FIFO) && wanted(&file) {
        call_starts(pid_tgid);
    }
}

/// The user buffer of a read/write that moved `ret` bytes, and how many of
/// them it holds (readv/writev: the first iovec's).
#[inline(always)]
fn user_buf(code: u32, arg1: u64, ret: i64) -> (u64, i64) {
    if code == sc::READV || code == sc::WRITEV {
        first_iov(arg1, ret)
    } else {
        (arg1, ret)
    }
}

/// With `--capture-bytes`: before the IO event, the first bytes moved.
#[inline(always)]
fn capture(pid_tgid: u64, file: &FileId, (buf, len): (u64, i64)) {
    if wanted(file) {
        capture_user(pid_tgid, buf, len);
    }
}
