//! Message queues: POSIX (mq_open, mq_timedsend, mq_timedreceive,
//! mq_notify, mq_unlink, mq_getsetattr, and close of a queue descriptor)
//! and SysV (msgget, msgsnd, msgrcv, msgctl). Called by `dispatch.rs` for
//! the syscall codes 45..54, and at close's entry.

use aya_ebpf::helpers::bpf_probe_read_user_str_bytes;
use ipcwatch_common::{MqEvent, MsgEvent, file_kind, kind, sc};

use crate::{
    block::Regs,
    emit::{dropped, capture_user, capturing, emit, header, header_any, timed_span, wake_flags},
    file::{file_of_fd_any, ino_of_file, kinds, mqueue_ino},
    maps::EVENTS,
    user::user,
};

const O_CREAT: u64 = 0o100;

/// POSIX message queues.
#[inline(never)]
pub(crate) fn posix<const BTF: bool>(regs: &Regs, pid_tgid: u64, code: u32, ret: i64) {
    if kinds() & file_kind::bit(file_kind::MQ) == 0 {
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
    if code == sc::MQ_TIMEDSEND || code == sc::MQ_TIMEDRECEIVE {
        timed_span(pid_tgid);
    }
    if capturing() {
        match code {
            sc::MQ_TIMEDSEND => capture_user(pid_tgid, regs.arg(1), regs.arg(2) as i64),
            sc::MQ_TIMEDRECEIVE => capture_user(pid_tgid, regs.arg(1), ret),
            _ => {}
        }
    }
    let hdr = header_any::<BTF>(kind::MQ, pid_tgid);
    let Some(mut entry) = EVENTS.reserve::<MqEvent>(0) else {
        dropped(kind::MQ);
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
pub(crate) fn close(pid_tgid: u64, file: u64, fd: i32) {
    if kinds() & file_kind::bit(file_kind::MQ) == 0 {
        return;
    }
    let ino = mqueue_ino(file);
    if ino == 0 {
        return;
    }
    let hdr = header(kind::MQ, pid_tgid);
    let Some(mut entry) = EVENTS.reserve::<MqEvent>(0) else {
        dropped(kind::MQ);
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
pub(crate) fn sysv(regs: &Regs, pid_tgid: u64, code: u32, ret: i64) {
    if kinds() & file_kind::bit(file_kind::MSGQ) == 0 {
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
            regs.arg_more(4) as u32,
        ),
        _ => (0, 0, regs.arg(1) as u32),
    };
    // The text follows the message type (a long) in `struct msgbuf`.
    if code == sc::MSGSND || code == sc::MSGRCV {
        timed_span(pid_tgid);
    }
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
