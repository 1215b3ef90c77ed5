//! Architecture-independent syscall codes. Userspace fills the `SYSCALLS`
//! map (indexed by this architecture's syscall number) with these. Codes
//! 32..63 are sockets and message queues; shared memory and locks have
//! 64..127 (`crate::shm::sc`).

/// Size of the syscall-number lookup table (`SYSCALLS` map).
pub const MAX_SYSCALL_NR: u32 = 1024;

pub const READ: u32 = 1;
pub const WRITE: u32 = 2;
pub const READV: u32 = 3;
pub const WRITEV: u32 = 4;
pub const SPLICE: u32 = 5;
pub const TEE: u32 = 6;
pub const VMSPLICE: u32 = 7;
pub const CLOSE: u32 = 8;
pub const DUP: u32 = 9;
pub const DUP2: u32 = 10;
pub const DUP3: u32 = 11;
pub const FCNTL: u32 = 12;
pub const PIPE: u32 = 13;
pub const PIPE2: u32 = 14;
pub const MKNOD: u32 = 15;
pub const MKNODAT: u32 = 16;
pub const OPEN: u32 = 17;
pub const OPENAT: u32 = 18;
pub const OPENAT2: u32 = 19;
pub const CLOSE_RANGE: u32 = 20;
pub const WAIT4: u32 = 21;
pub const WAITID: u32 = 22;
// Sockets and message queues: codes 32..63.
pub const SOCKET: u32 = 32;
pub const SOCKETPAIR: u32 = 33;
pub const BIND: u32 = 34;
pub const LISTEN: u32 = 35;
pub const CONNECT: u32 = 36;
pub const ACCEPT: u32 = 37;
pub const ACCEPT4: u32 = 38;
pub const SENDTO: u32 = 39;
pub const RECVFROM: u32 = 40;
pub const SENDMSG: u32 = 41;
pub const RECVMSG: u32 = 42;
pub const SENDMMSG: u32 = 43;
pub const RECVMMSG: u32 = 44;
pub const MQ_OPEN: u32 = 45;
pub const MQ_TIMEDSEND: u32 = 46;
pub const MQ_TIMEDRECEIVE: u32 = 47;
pub const MQ_NOTIFY: u32 = 48;
pub const MQ_UNLINK: u32 = 49;
pub const MQ_GETSETATTR: u32 = 50;
pub const MSGGET: u32 = 51;
pub const MSGSND: u32 = 52;
pub const MSGRCV: u32 = 53;
pub const MSGCTL: u32 = 54;

/// Names of the socket and message-queue codes.
pub const CHANNEL_NAMES: [(u32, &str); 23] = [
    (SOCKET, "socket"),
    (SOCKETPAIR, "socketpair"),
    (BIND, "bind"),
    (LISTEN, "listen"),
    (CONNECT, "connect"),
    (ACCEPT, "accept"),
    (ACCEPT4, "accept4"),
    (SENDTO, "sendto"),
    (RECVFROM, "recvfrom"),
    (SENDMSG, "sendmsg"),
    (RECVMSG, "recvmsg"),
    (SENDMMSG, "sendmmsg"),
    (RECVMMSG, "recvmmsg"),
    (MQ_OPEN, "mq_open"),
    (MQ_TIMEDSEND, "mq_timedsend"),
    (MQ_TIMEDRECEIVE, "mq_timedreceive"),
    (MQ_NOTIFY, "mq_notify"),
    (MQ_UNLINK, "mq_unlink"),
    (MQ_GETSETATTR, "mq_getsetattr"),
    (MSGGET, "msgget"),
    (MSGSND, "msgsnd"),
    (MSGRCV, "msgrcv"),
    (MSGCTL, "msgctl"),
];

/// Every code with its syscall name, as it appears in NDJSON (the
/// `syscall` field of a record).
pub const NAMES: [(u32, &str); 22] = [
    (READ, "read"),
    (WRITE, "write"),
    (READV, "readv"),
    (WRITEV, "writev"),
    (SPLICE, "splice"),
    (TEE, "tee"),
    (VMSPLICE, "vmsplice"),
    (CLOSE, "close"),
    (DUP, "dup"),
    (DUP2, "dup2"),
    (DUP3, "dup3"),
    (FCNTL, "fcntl"),
    (PIPE, "pipe"),
    (PIPE2, "pipe2"),
    (MKNOD, "mknod"),
    (MKNODAT, "mknodat"),
    (OPEN, "open"),
    (OPENAT, "openat"),
    (OPENAT2, "openat2"),
    (CLOSE_RANGE, "close_range"),
    (WAIT4, "wait4"),
    (WAITID, "waitid"),
];

/// Codes are below this (the shared-memory codes end at 127).
const CODES: usize = 128;

/// The names of [`NAMES`], [`CHANNEL_NAMES`] and the shared-memory codes,
/// indexed by code: one load per record, on the collector's hot path.
static BY_CODE: [&str; CODES] = {
    let mut t = ["?"; CODES];
    let tables: [&[(u32, &str)]; 3] = [&NAMES, &CHANNEL_NAMES, &crate::shm::sc::NAMES];
    let mut i = 0;
    while i < tables.len() {
        let mut j = 0;
        while j < tables[i].len() {
            let (code, name) = tables[i][j];
            t[code as usize] = name;
            j += 1;
        }
        i += 1;
    }
    t
};

/// The syscall name for a code, or `"?"`.
pub fn name(code: u32) -> &'static str {
    BY_CODE.get(code as usize).copied().unwrap_or("?")
}

/// The families of `sys_exit` that the dispatcher reaches by tail call
/// (each its own program, verified on its own: one program for all of
/// them was over the verifier's million instructions on Linux 6.1), by
/// their index in the `EXIT_TAILS` (raw tracepoint) and `EXIT_TAILS_BTF`
/// (tp_btf) program arrays.
pub mod exit_tail {
    /// read, readv, write, writev (the hot path).
    pub const READ_WRITE: u32 = 3;
    /// splice, tee, vmsplice.
    pub const SPLICE: u32 = 4;
    /// Sockets and message queues (codes 32..63).
    pub const SOCK_MQ: u32 = 0;
    /// Shared memory and locks (codes 64..127).
    pub const SHM_SYNC: u32 = 1;
    /// Descriptors' life: dup, fcntl, pipe, mknod, open, wait (and the
    /// locks and shared memory of fcntl and open).
    pub const FD: u32 = 2;
    pub const COUNT: u32 = 5;
    /// The raw-tracepoint program of each family, by index; the tp_btf
    /// one is the same name with `_btf`.
    pub const PROGRAMS: [&str; COUNT as usize] = [
        "ipcwatch_exit_sock_mq",
        "ipcwatch_exit_shm_sync",
        "ipcwatch_exit_fd",
        "ipcwatch_exit_read_write",
        "ipcwatch_exit_splice",
    ];
    /// What a recording loses without the family.
    pub const LOSES: [&str; COUNT as usize] = [
        "no socket or message-queue events but read/write on sockets",
        "no shared-memory, futex, flock or fcntl-lock events",
        "no dup, fcntl, pipe, mknod, open or wait events",
        "no read, readv, write or writev events",
        "no splice, tee or vmsplice events",
    ];
}
