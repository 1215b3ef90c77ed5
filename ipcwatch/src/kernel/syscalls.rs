//! This architecture's number for each syscall ipcwatch follows: the
//! probes see numbers, the rest of ipcwatch architecture-independent
//! codes (`ipcwatch_common::sc`, `ipcwatch_common::shm::sc`).

use ipcwatch_common::sc;
use ipcwatch_common::shm::sc as shm_sc;

/// This architecture's number for each syscall code ipcwatch follows.
/// Syscalls the architecture lacks (x86's legacy `pipe`, `open`...) are
/// simply absent.
pub fn syscall_numbers() -> Vec<(u32, i64)> {
    let mut v: Vec<(u32, i64)> = vec![
        (sc::READ, libc::SYS_read),
        (sc::WRITE, libc::SYS_write),
        (sc::READV, libc::SYS_readv),
        (sc::WRITEV, libc::SYS_writev),
        (sc::SPLICE, libc::SYS_splice),
        (sc::TEE, libc::SYS_tee),
        (sc::VMSPLICE, libc::SYS_vmsplice),
        (sc::CLOSE, libc::SYS_close),
        (sc::DUP, libc::SYS_dup),
        (sc::DUP3, libc::SYS_dup3),
        (sc::FCNTL, libc::SYS_fcntl),
        (sc::PIPE2, libc::SYS_pipe2),
        (sc::MKNODAT, libc::SYS_mknodat),
        (sc::OPENAT, libc::SYS_openat),
        (sc::OPENAT2, libc::SYS_openat2),
        (sc::CLOSE_RANGE, libc::SYS_close_range),
        (sc::WAIT4, libc::SYS_wait4),
        (sc::WAITID, libc::SYS_waitid),
    ];
    v.extend(channel_syscall_numbers());
    #[cfg(target_arch = "x86_64")]
    v.extend([
        (sc::DUP2, libc::SYS_dup2),
        (sc::PIPE, libc::SYS_pipe),
        (sc::MKNOD, libc::SYS_mknod),
        (sc::OPEN, libc::SYS_open),
    ]);
    v.extend(shm_syscall_numbers());
    v
}

/// Socket and message-queue syscalls. socket() itself is left out: a
/// socket says nothing until it is bound, connected or used.
fn channel_syscall_numbers() -> [(u32, i64); 22] {
    [
        (sc::SOCKETPAIR, libc::SYS_socketpair),
        (sc::BIND, libc::SYS_bind),
        (sc::LISTEN, libc::SYS_listen),
        (sc::CONNECT, libc::SYS_connect),
        (sc::ACCEPT, libc::SYS_accept),
        (sc::ACCEPT4, libc::SYS_accept4),
        (sc::SENDTO, libc::SYS_sendto),
        (sc::RECVFROM, libc::SYS_recvfrom),
        (sc::SENDMSG, libc::SYS_sendmsg),
        (sc::RECVMSG, libc::SYS_recvmsg),
        (sc::SENDMMSG, libc::SYS_sendmmsg),
        (sc::RECVMMSG, libc::SYS_recvmmsg),
        (sc::MQ_OPEN, libc::SYS_mq_open),
        (sc::MQ_TIMEDSEND, libc::SYS_mq_timedsend),
        (sc::MQ_TIMEDRECEIVE, libc::SYS_mq_timedreceive),
        (sc::MQ_NOTIFY, libc::SYS_mq_notify),
        (sc::MQ_UNLINK, libc::SYS_mq_unlink),
        (sc::MQ_GETSETATTR, libc::SYS_mq_getsetattr),
        (sc::MSGGET, libc::SYS_msgget),
        (sc::MSGSND, libc::SYS_msgsnd),
        (sc::MSGRCV, libc::SYS_msgrcv),
        (sc::MSGCTL, libc::SYS_msgctl),
    ]
}

/// Shared-memory and lock syscalls.
fn shm_syscall_numbers() -> Vec<(u32, i64)> {
    let mut v = vec![
        (shm_sc::SHMGET, libc::SYS_shmget),
        (shm_sc::SHMAT, libc::SYS_shmat),
        (shm_sc::SHMDT, libc::SYS_shmdt),
        (shm_sc::SHMCTL, libc::SYS_shmctl),
        (shm_sc::MMAP, libc::SYS_mmap),
        (shm_sc::MUNMAP, libc::SYS_munmap),
        (shm_sc::MREMAP, libc::SYS_mremap),
        (shm_sc::MEMFD_CREATE, libc::SYS_memfd_create),
        (shm_sc::FUTEX, libc::SYS_futex),
        (shm_sc::FLOCK, libc::SYS_flock),
        (shm_sc::UNLINKAT, libc::SYS_unlinkat),
    ];
    #[cfg(target_arch = "x86_64")]
    v.push((shm_sc::UNLINK, libc::SYS_unlink));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_codes_are_unique_and_named() {
        let v = syscall_numbers();
        for (i, (code, nr)) in v.iter().enumerate() {
            assert_ne!(sc::name(*code), "?");
            assert!(*nr >= 0 && *nr < ipcwatch_common::MAX_SYSCALL_NR as i64);
            for (c2, n2) in &v[i + 1..] {
                assert_ne!(code, c2);
                assert_ne!(nr, n2);
            }
        }
    }
}
