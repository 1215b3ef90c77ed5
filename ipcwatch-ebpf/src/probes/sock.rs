//! Sockets (unix, TCP, UDP): socket, socketpair, bind, listen, connect,
//! accept and accept4, and bytes through the send and receive calls
//! (read/write on a socket are `io.rs`'s). Called by `dispatch.rs` for the
//! syscall codes 32..44. Nothing is kept between syscall entry and exit:
//! the arguments are read back from the saved user registers.

use aya_ebpf::helpers::generated::bpf_probe_read_user as probe_read_user_raw;
use ipcwatch_common::{ADDR_LEN, CTL_LEN, SockEvent, kind, op, sc, sock_op};

use crate::{
    block::Regs,
    emit::{capture_user, capturing, timed_span, wake_flags},
    file::{file_of_fd, file_of_fd_any},
    socket::{sock_event, sock_of_file},
    user::{first_iov, user},
};

/// `struct user_msghdr` (UAPI, 64-bit): msg_name, msg_namelen,
/// msg_control, msg_controllen.
const MSG_NAME: u64 = 0;
const MSG_NAMELEN: u64 = 8;
const MSG_IOV: u64 = 16;
const MSG_CONTROL: u64 = 32;
const MSG_CONTROLLEN: u64 = 40;
/// `struct mmsghdr`: msghdr (56 bytes), then `unsigned int msg_len`.
const MMSG_SIZE: u64 = 64;
const MMSG_LEN: u64 = 56;
/// Messages of sendmmsg/recvmmsg whose lengths are summed.
const MMSG_MAX: u64 = 16;

/// Copy `len` bytes (clamped) of a user sockaddr into the event.
#[inline(always)]
fn capture_addr(e: *mut SockEvent, src: u64, len: u64) {
    if src == 0 || len == 0 {
        return;
    }
    let n = if len > ADDR_LEN as u64 {
        ADDR_LEN as u32
    } else {
        len as u32
    };
    // Bounded again on the value the helper gets: LLVM compared the u64
    // and passed its truncated copy, whose bound Linux 6.1's verifier did
    // not know ("R2 unbounded memory access").
    // SAFETY: reading a local.
    let n = unsafe { core::ptr::read_volatile(&n) };
    if n == 0 || n > ADDR_LEN as u32 {
        return;
    }
    // SAFETY: `e` is reserved ring-buffer memory; at most ADDR_LEN bytes
    // are written into its `addr` array; the helper tolerates bad `src`.
    unsafe {
        let dst = (&raw mut (*e).addr).cast::<core::ffi::c_void>();
        if probe_read_user_raw(dst, n, src as *const core::ffi::c_void) == 0 {
            (*e).addr_len = n;
        }
    }
}

/// Copy the ancillary data (clamped) of a msghdr into the event.
#[inline(always)]
fn capture_ctl(e: *mut SockEvent, src: u64, len: u64) {
    if src == 0 || len == 0 {
        return;
    }
    let n = if len > CTL_LEN as u64 {
        CTL_LEN as u32
    } else {
        len as u32
    };
    // Bounded again on the value the helper gets: LLVM compared the u64
    // and passed its truncated copy, whose bound Linux 6.1's verifier did
    // not know ("R2 unbounded memory access").
    // SAFETY: reading a local.
    let n = unsafe { core::ptr::read_volatile(&n) };
    if n == 0 || n > CTL_LEN as u32 {
        return;
    }
    // SAFETY: as in `capture_addr`, bounded by CTL_LEN.
    unsafe {
        let dst = (&raw mut (*e).ctl).cast::<core::ffi::c_void>();
        if probe_read_user_raw(dst, n, src as *const core::ffi::c_void) == 0 {
            (*e).ctl_len = n;
        }
    }
}

/// socketpair: both ends, read back from the caller's array.
#[inline(always)]
pub(crate) fn pair(regs: &Regs, pid_tgid: u64, code: u32) {
    let Some(fds) = user::<[i32; 2]>(regs.arg(3)) else {
        return;
    };
    pair_end(pid_tgid, fds[0], code);
    pair_end(pid_tgid, fds[1], code);
}

#[inline(never)]
fn pair_end(pid_tgid: u64, fd: i32, code: u32) {
    let file = file_of_fd(fd as i64);
    let Some(s) = sock_of_file(file) else {
        return;
    };
    let Some(mut entry) = sock_event::<false>(kind::SOCK_LIFE, pid_tgid, file, &s, fd) else {
        return;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: reserved ring-buffer memory.
    unsafe {
        (*e).op = sock_op::PAIR;
        (*e).syscall = code;
    }
    entry.submit(wake_flags());
}

/// sendto/recvfrom/sendmsg/recvmsg/sendmmsg/recvmmsg.
#[inline(never)]
pub(crate) fn msg_io<const BTF: bool>(regs: &Regs, pid_tgid: u64, code: u32, ret: i64) {
    if ret <= 0 {
        return;
    }
    let fd = regs.arg(0) as i32;
    let file = file_of_fd_any::<BTF>(fd as i64);
    let Some(s) = sock_of_file(file) else {
        return;
    };
    timed_span(pid_tgid);
    if capturing() {
        let (buf, len) = msg_payload(regs, code, ret);
        capture_user(pid_tgid, buf, len);
    }
    let Some(mut entry) = sock_event::<BTF>(kind::SOCK_IO, pid_tgid, file, &s, fd) else {
        return;
    };
    let e = entry.as_mut_ptr();
    let send = matches!(code, sc::SENDTO | sc::SENDMSG | sc::SENDMMSG);
    // SAFETY: reserved ring-buffer memory.
    unsafe {
        (*e).op = if send { op::WRITE } else { op::READ };
        (*e).syscall = code;
        (*e).bytes = ret as u64;
    }
    match code {
        sc::SENDTO => capture_addr(e, regs.arg_more(4), regs.arg_more(5)),
        sc::RECVFROM => {
            let len = user::<u32>(regs.arg_more(5)).unwrap_or(0);
            capture_addr(e, regs.arg_more(4), len as u64);
        }
        sc::SENDMSG | sc::RECVMSG => {
            let msg = regs.arg(1);
            let name = user::<u64>(msg + MSG_NAME).unwrap_or(0);
            let namelen = user::<u32>(msg + MSG_NAMELEN).unwrap_or(0);
            capture_addr(e, name, namelen as u64);
            let control = user::<u64>(msg + MSG_CONTROL).unwrap_or(0);
            let controllen = user::<u64>(msg + MSG_CONTROLLEN).unwrap_or(0);
            capture_ctl(e, control, controllen);
        }
        _ => {
            // sendmmsg/recvmmsg return a message count; sum their lengths.
            // The first message's address stands for all of them.
            let vec = regs.arg(1);
            let name = user::<u64>(vec + MSG_NAME).unwrap_or(0);
            let namelen = user::<u32>(vec + MSG_NAMELEN).unwrap_or(0);
            capture_addr(e, name, namelen as u64);
            let count = ret as u64;
            let mut total = 0u64;
            for i in 0..MMSG_MAX {
                if i >= count {
                    break;
                }
                total += user::<u32>(vec + i * MMSG_SIZE + MMSG_LEN).unwrap_or(0) as u64;
            }
            // SAFETY: reserved ring-buffer memory.
            unsafe {
                (*e).bytes = total;
                (*e).msgs = count as u32;
            }
            if total == 0 {
                entry.discard(0);
                return;
            }
        }
    }
    entry.submit(wake_flags());
}

/// The first buffer a send or receive of `ret` (bytes, or messages for
/// sendmmsg/recvmmsg) moved, and how many bytes of it: sendto/recvfrom's
/// buffer, sendmsg/recvmsg's first iovec, the first message's first iovec
/// of sendmmsg/recvmmsg.
#[inline(always)]
fn msg_payload(regs: &Regs, code: u32, ret: i64) -> (u64, i64) {
    let msg = regs.arg(1);
    match code {
        sc::SENDTO | sc::RECVFROM => (msg, ret),
        sc::SENDMSG | sc::RECVMSG => first_iov(user::<u64>(msg + MSG_IOV).unwrap_or(0), ret),
        _ => {
            let first_len = user::<u32>(msg + MMSG_LEN).unwrap_or(0);
            first_iov(user::<u64>(msg + MSG_IOV).unwrap_or(0), first_len as i64)
        }
    }
}

/// socket, bind, listen, connect, accept, accept4.
#[inline(never)]
pub(crate) fn life(regs: &Regs, pid_tgid: u64, code: u32, ret: i64) {
    let fd = match code {
        sc::SOCKET | sc::ACCEPT | sc::ACCEPT4 => ret as i32,
        _ => regs.arg(0) as i32,
    };
    let file = file_of_fd(fd as i64);
    let Some(s) = sock_of_file(file) else {
        return;
    };
    let Some(mut entry) = sock_event::<false>(kind::SOCK_LIFE, pid_tgid, file, &s, fd) else {
        return;
    };
    let e = entry.as_mut_ptr();
    let what = match code {
        sc::SOCKET => sock_op::CREATE,
        sc::BIND => sock_op::BIND,
        sc::LISTEN => sock_op::LISTEN,
        sc::CONNECT => sock_op::CONNECT,
        _ => sock_op::ACCEPT,
    };
    // SAFETY: reserved ring-buffer memory.
    unsafe {
        (*e).op = what;
        (*e).syscall = code;
        // accept: the listening descriptor, for the model.
        if what == sock_op::ACCEPT {
            (*e).msgs = regs.arg(0) as u32;
        }
    }
    match code {
        sc::BIND | sc::CONNECT => capture_addr(e, regs.arg(1), regs.arg(2)),
        sc::ACCEPT | sc::ACCEPT4 => {
            let len = user::<u32>(regs.arg(2)).unwrap_or(0);
            capture_addr(e, regs.arg(1), len as u64);
        }
        _ => {}
    }
    entry.submit(wake_flags());
}
