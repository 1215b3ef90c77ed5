//! Sockets (unix, TCP, UDP), POSIX and SysV message queues.
//!
//! Called from `tracer::sys_exit` for the syscall codes 32..63, and from
//! `tracer::io` when read/write/readv/writev/splice hit a socket. Nothing
//! is kept between syscall entry and exit: the arguments are read back
//! from the saved user registers. A socket of a kind userspace did not ask
//! for (`CONFIG.kinds`) is dropped after four kernel reads.

use aya_ebpf::{
    helpers::{
        bpf_probe_read_user, bpf_probe_read_user_str_bytes,
        generated::bpf_probe_read_user as probe_read_user_raw,
    },
    maps::ring_buf::RingBufEntry,
};
use ipcwatch_common::{
    ADDR_LEN, CTL_LEN, FileId, MqEvent, MsgEvent, SockConfig, SockEvent, file_kind, kind, op, sc,
    sock_op, stat,
};

use crate::tracer::{
    EVENTS, Regs, bump, capture_user, capturing, emit, file_of_fd, file_of_fd_any, first_iov,
    header, header_any, ino_of_file, inode_ino_off, kinds, kread, mqueue_ino, wake_flags,
};

/// Written by userspace before load.
#[unsafe(no_mangle)]
static SOCK_CONFIG: SockConfig = SockConfig::zeroed();

macro_rules! sconf {
    ($($field:ident).+) => {
        // SAFETY: SOCK_CONFIG is a static; the pointer is valid and aligned.
        unsafe { core::ptr::read_volatile(&raw const SOCK_CONFIG.$($field).+) }
    };
}

const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const SOCK_STREAM: u16 = 1;
const SOCK_DGRAM: u16 = 2;
const IPPROTO_TCP: u16 = 6;
const IPPROTO_UDP: u16 = 17;
const O_CREAT: u64 = 0o100;
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

#[inline(always)]
fn bit(k: u16) -> u32 {
    file_kind::bit(k)
}

/// Fifth and sixth syscall arguments.
#[inline(always)]
fn regs_arg_more(regs: &Regs, i: usize) -> u64 {
    let off = if i == 4 {
        sconf!(off.regs_arg4)
    } else {
        sconf!(off.regs_arg5)
    };
    regs.u64(off).unwrap_or(0)
}

#[inline(always)]
fn user<T>(addr: u64) -> Option<T> {
    if addr == 0 {
        return None;
    }
    // SAFETY: bpf_probe_read_user tolerates any address.
    unsafe { bpf_probe_read_user(addr as *const T).ok() }
}

/// A socket of a wanted kind: `struct sock *`, kind, family, type.
struct Sock {
    sk: u64,
    kind: u16,
    family: u16,
    sotype: u16,
}

/// The socket behind a `struct file *`, if it is of a wanted kind.
#[inline(always)]
fn sock_of_file(file: u64) -> Option<Sock> {
    if file == 0 {
        return None;
    }
    let socket = kread::<u64>(file, sconf!(off.file_private_data))?;
    let sk = kread::<u64>(socket, sconf!(off.socket_sk))?;
    if sk == 0 {
        return None;
    }
    let family = kread::<u16>(sk, sconf!(off.sk_family))?;
    let sotype = kread::<u16>(sk, sconf!(off.sk_type))?;
    let kind = match family {
        AF_UNIX => file_kind::UNIX,
        AF_INET | AF_INET6 => {
            let proto = kread::<u16>(sk, sconf!(off.sk_protocol))?;
            match (sotype, proto) {
                (SOCK_STREAM, IPPROTO_TCP) => file_kind::TCP,
                (SOCK_DGRAM, IPPROTO_UDP) => file_kind::UDP,
                _ => return None,
            }
        }
        _ => return None,
    };
    if kinds() & bit(kind) == 0 {
        return None;
    }
    Some(Sock {
        sk,
        kind,
        family,
        sotype,
    })
}

/// Reserve a socket event in the ring buffer and fill everything but the
/// captured address and control data (their lengths are set to 0).
#[inline(always)]
fn sock_event<const BTF: bool>(
    ev_kind: u32,
    pid_tgid: u64,
    file: u64,
    s: &Sock,
    fd: i32,
) -> Option<RingBufEntry<SockEvent>> {
    sock_event_ino::<BTF>(ev_kind, pid_tgid, file, 0, s, fd)
}

/// [`sock_event`] when the inode number is known already (0: read it).
#[inline(always)]
fn sock_event_ino<const BTF: bool>(
    ev_kind: u32,
    pid_tgid: u64,
    file: u64,
    ino: u64,
    s: &Sock,
    fd: i32,
) -> Option<RingBufEntry<SockEvent>> {
    let hdr = header_any::<BTF>(ev_kind, pid_tgid);
    let Some(mut entry) = EVENTS.reserve::<SockEvent>(0) else {
        bump(stat::DROPPED);
        return None;
    };
    let sk = s.sk;
    let (mut peer_sk, mut peer_ino, mut sport, mut dport) = (0u64, 0u64, 0u16, 0u16);
    let mut saddr = [0u8; 16];
    let mut daddr = [0u8; 16];
    if s.family == AF_UNIX {
        peer_sk = kread::<u64>(sk, sconf!(off.unix_peer)).unwrap_or(0);
        if peer_sk != 0 {
            let sock = kread::<u64>(peer_sk, sconf!(off.sk_socket)).unwrap_or(0);
            if sock != 0 {
                peer_ino = kread::<u64>(sock + sconf!(off.socket_inode) as u64, inode_ino_off())
                    .unwrap_or(0);
            }
        }
    } else {
        sport = kread::<u16>(sk, sconf!(off.sk_num)).unwrap_or(0);
        dport = u16::from_be(kread::<u16>(sk, sconf!(off.sk_dport)).unwrap_or(0));
        if s.family == AF_INET {
            let sa = kread::<[u8; 4]>(sk, sconf!(off.sk_rcv_saddr)).unwrap_or([0; 4]);
            let da = kread::<[u8; 4]>(sk, sconf!(off.sk_daddr)).unwrap_or([0; 4]);
            saddr[..4].copy_from_slice(&sa);
            daddr[..4].copy_from_slice(&da);
        } else {
            saddr = kread::<[u8; 16]>(sk, sconf!(off.sk_v6_rcv_saddr)).unwrap_or([0; 16]);
            daddr = kread::<[u8; 16]>(sk, sconf!(off.sk_v6_daddr)).unwrap_or([0; 16]);
        }
    }
    let ino = if ino == 0 { ino_of_file(file) } else { ino };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points to reserved ring-buffer memory of the right size.
    unsafe {
        (*e).hdr = hdr;
        (*e).file = FileId {
            ino,
            dev: 0,
            kind: s.kind,
            access: 3,
        };
        (*e).bytes = 0;
        (*e).sk = sk;
        (*e).peer_sk = peer_sk;
        (*e).peer_ino = peer_ino;
        (*e).fd = fd;
        (*e).op = 0;
        (*e).syscall = 0;
        (*e).msgs = 1;
        (*e).family = s.family;
        (*e).sotype = s.sotype;
        (*e).sport = sport;
        (*e).dport = dport;
        (*e).saddr = saddr;
        (*e).daddr = daddr;
        (*e).ctl_len = 0;
        (*e).addr_len = 0;
    }
    Some(entry)
}

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
    // SAFETY: as in `capture_addr`, bounded by CTL_LEN.
    unsafe {
        let dst = (&raw mut (*e).ctl).cast::<core::ffi::c_void>();
        if probe_read_user_raw(dst, n, src as *const core::ffi::c_void) == 0 {
            (*e).ctl_len = n;
        }
    }
}

/// Bytes through a socket by read/write/readv/writev/splice: `file` is
/// the `struct file *` and `ino` its inode number (the caller classified
/// it); `fd_op_sc` packs the descriptor, the direction and the syscall.
#[inline(never)]
pub fn fd_io<const BTF: bool>(pid_tgid: u64, file: u64, fd_op_sc: u64, bytes: u64, ino: u64) {
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

#[inline(never)]
pub fn sys_exit<const BTF: bool>(regs: &Regs, pid_tgid: u64, code: u32, ret: i64) {
    match code {
        sc::SENDTO | sc::RECVFROM | sc::SENDMSG | sc::RECVMSG | sc::SENDMMSG | sc::RECVMMSG => {
            msg_io::<BTF>(regs, pid_tgid, code, ret)
        }
        sc::SOCKET | sc::BIND | sc::LISTEN | sc::CONNECT | sc::ACCEPT | sc::ACCEPT4 => {
            life(regs, pid_tgid, code, ret)
        }
        sc::SOCKETPAIR => {
            let Some(fds) = user::<[i32; 2]>(regs.arg(3)) else {
                return;
            };
            pair_end(pid_tgid, fds[0], code);
            pair_end(pid_tgid, fds[1], code);
        }
        sc::MSGGET | sc::MSGSND | sc::MSGRCV | sc::MSGCTL => msgq(regs, pid_tgid, code, ret),
        _ => mq::<BTF>(regs, pid_tgid, code, ret),
    }
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
fn msg_io<const BTF: bool>(regs: &Regs, pid_tgid: u64, code: u32, ret: i64) {
    if ret <= 0 {
        return;
    }
    let fd = regs.arg(0) as i32;
    let file = file_of_fd_any::<BTF>(fd as i64);
    let Some(s) = sock_of_file(file) else {
        return;
    };
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
        sc::SENDTO => capture_addr(e, regs_arg_more(regs, 4), regs_arg_more(regs, 5)),
        sc::RECVFROM => {
            let len = user::<u32>(regs_arg_more(regs, 5)).unwrap_or(0);
            capture_addr(e, regs_arg_more(regs, 4), len as u64);
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
fn life(regs: &Regs, pid_tgid: u64, code: u32, ret: i64) {
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

/// POSIX message queues.
#[inline(never)]
fn mq<const BTF: bool>(regs: &Regs, pid_tgid: u64, code: u32, ret: i64) {
    if kinds() & bit(file_kind::MQ) == 0 {
        return;
    }
    let fd = match code {
        sc::MQ_OPEN => ret as i32,
        sc::MQ_UNLINK => -1,
        _ => regs.arg(0) as i32,
    };
    let ino = if fd >= 0 {
        ino_of_file(file_of_fd_any::<BTF>(fd as i64))
    } else {
        0
    };
    if capturing() {
        match code {
            sc::MQ_TIMEDSEND => capture_user(pid_tgid, regs.arg(1), regs.arg(2) as i64),
            sc::MQ_TIMEDRECEIVE => capture_user(pid_tgid, regs.arg(1), ret),
            _ => {}
        }
    }
    let hdr = header_any::<BTF>(kind::MQ, pid_tgid);
    let Some(mut entry) = EVENTS.reserve::<MqEvent>(0) else {
        bump(stat::DROPPED);
        return;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: reserved ring-buffer memory; user reads tolerate faults.
    unsafe {
        (*e).hdr = hdr;
        (*e).ino = ino;
        (*e).bytes = 0;
        (*e).prio = 0;
        (*e).fd = fd;
        (*e).syscall = code;
        (*e).flags = 0;
        (*e).mode = 0;
        (*e).has_attr = 0;
        (*e).attr = [0; 4];
        (*e).oldattr = [0; 4];
        (*e).name[0] = 0;
        match code {
            sc::MQ_OPEN | sc::MQ_UNLINK => {
                let name = regs.arg(0);
                if bpf_probe_read_user_str_bytes(name as *const u8, &mut (*e).name).is_err() {
                    (*e).name[0] = 0;
                }
                if code == sc::MQ_OPEN {
                    let flags = regs.arg(1);
                    (*e).flags = flags as u32;
                    (*e).mode = regs.arg(2) as u32;
                    if flags & O_CREAT != 0
                        && let Some(a) = user::<[i64; 4]>(regs.arg(3))
                    {
                        (*e).attr = a;
                        (*e).has_attr = 1;
                    }
                }
            }
            sc::MQ_TIMEDSEND => {
                (*e).bytes = regs.arg(2);
                (*e).prio = regs.arg(3) as u32;
            }
            sc::MQ_TIMEDRECEIVE => {
                (*e).bytes = ret as u64;
                (*e).prio = user::<u32>(regs.arg(3)).unwrap_or(0);
            }
            sc::MQ_NOTIFY => (*e).flags = (regs.arg(1) != 0) as u32,
            _ => {
                if let Some(a) = user::<[i64; 4]>(regs.arg(1)) {
                    (*e).attr = a;
                    (*e).has_attr |= 1;
                }
                if let Some(a) = user::<[i64; 4]>(regs.arg(2)) {
                    (*e).oldattr = a;
                    (*e).has_attr |= 2;
                }
            }
        }
    }
    entry.submit(wake_flags());
}

/// close() of a POSIX queue descriptor (seen at syscall entry).
#[inline(never)]
pub fn mq_close(pid_tgid: u64, file: u64, fd: i32) {
    if kinds() & bit(file_kind::MQ) == 0 {
        return;
    }
    let ino = mqueue_ino(file);
    if ino == 0 {
        return;
    }
    let hdr = header(kind::MQ, pid_tgid);
    let Some(mut entry) = EVENTS.reserve::<MqEvent>(0) else {
        bump(stat::DROPPED);
        return;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: reserved ring-buffer memory of the right size.
    unsafe {
        (*e).hdr = hdr;
        (*e).ino = ino;
        (*e).bytes = 0;
        (*e).prio = 0;
        (*e).fd = fd;
        (*e).syscall = sc::CLOSE;
        (*e).flags = 0;
        (*e).mode = 0;
        (*e).has_attr = 0;
        (*e).attr = [0; 4];
        (*e).oldattr = [0; 4];
        (*e).name[0] = 0;
    }
    entry.submit(wake_flags());
}

/// SysV message queues.
#[inline(never)]
fn msgq(regs: &Regs, pid_tgid: u64, code: u32, ret: i64) {
    if kinds() & bit(file_kind::MSGQ) == 0 {
        return;
    }
    let a0 = regs.arg(0);
    let (key, id) = if code == sc::MSGGET {
        (a0 as i32, ret as i32)
    } else {
        (0, a0 as i32)
    };
    let (bytes, mtype, flags) = match code {
        sc::MSGGET => (0, 0, regs.arg(1) as u32),
        sc::MSGSND => (
            regs.arg(2),
            user::<i64>(regs.arg(1)).unwrap_or(0),
            regs.arg(3) as u32,
        ),
        sc::MSGRCV => (
            ret as u64,
            user::<i64>(regs.arg(1)).unwrap_or(0),
            regs_arg_more(regs, 4) as u32,
        ),
        _ => (0, 0, regs.arg(1) as u32),
    };
    // The text follows the message type (a long) in `struct msgbuf`.
    if capturing() && (code == sc::MSGSND || code == sc::MSGRCV) {
        capture_user(pid_tgid, regs.arg(1) + 8, bytes as i64);
    }
    emit(MsgEvent {
        hdr: header(kind::MSGQ, pid_tgid),
        key,
        id,
        bytes,
        mtype,
        flags,
        syscall: code,
    });
}
