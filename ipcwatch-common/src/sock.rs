//! Sockets (unix, TCP, UDP): the event, and the kernel offsets the socket
//! probes read through (the `SOCK_CONFIG` global).

use crate::{fd::FileId, header::EventHeader};

/// Values of [`SockEvent::op`] for `kind::SOCK_LIFE`.
pub mod sock_op {
    /// socket() made it.
    pub const CREATE: u32 = 1;
    /// socketpair(): `fd` and `peer_fd` are the two ends.
    pub const PAIR: u32 = 2;
    pub const BIND: u32 = 3;
    pub const LISTEN: u32 = 4;
    /// connect() succeeded (or is in progress).
    pub const CONNECT: u32 = 5;
    /// accept()/accept4(): `fd` is the new socket.
    pub const ACCEPT: u32 = 6;
}

/// Bytes of a socket address captured from user memory.
pub const ADDR_LEN: usize = 112;
/// Bytes of ancillary data (cmsg) captured from sendmsg/recvmsg.
pub const CTL_LEN: usize = 64;

/// A socket: I/O or lifecycle. Addresses are in network byte order, ports
/// in host order. Built in place in the ring buffer (too big for the BPF
/// stack).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockEvent {
    pub hdr: EventHeader,
    /// The socket's own inode; `kind` is UNIX, TCP or UDP.
    pub file: FileId,
    /// Bytes moved (I/O).
    pub bytes: u64,
    /// `struct sock *` of this socket and of its unix peer (identities
    /// only, never dereferenced by userspace or printed).
    pub sk: u64,
    pub peer_sk: u64,
    /// Inode of the unix peer's socket, 0 when unknown (not yet accepted).
    pub peer_ino: u64,
    pub fd: i32,
    /// [`crate::fd::op`] for I/O, [`sock_op`] for lifecycle.
    pub op: u32,
    pub syscall: u32,
    /// Messages moved (sendmmsg/recvmmsg), else 1.
    pub msgs: u32,
    pub family: u16,
    /// SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET.
    pub sotype: u16,
    pub sport: u16,
    pub dport: u16,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    /// Valid bytes of `ctl` / `addr`.
    pub ctl_len: u32,
    pub addr_len: u32,
    /// Ancillary data of sendmsg/recvmsg (cmsghdr list), truncated.
    pub ctl: [u8; CTL_LEN],
    /// A `struct sockaddr` from the call: send destination, receive
    /// source, bind/connect address.
    pub addr: [u8; ADDR_LEN],
}

/// Byte offsets for the socket probes, from BTF. Kept apart from
/// [`crate::config::KernelOffsets`] in the `SOCK_CONFIG` global.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockOffsets {
    pub file_private_data: u32,
    pub socket_sk: u32,
    pub sk_family: u32,
    pub sk_type: u32,
    pub sk_protocol: u32,
    pub sk_daddr: u32,
    pub sk_rcv_saddr: u32,
    pub sk_dport: u32,
    pub sk_num: u32,
    pub sk_v6_daddr: u32,
    pub sk_v6_rcv_saddr: u32,
    pub sk_socket: u32,
    pub unix_peer: u32,
    /// `socket_alloc.vfs_inode - socket_alloc.socket`: from a `struct
    /// socket *` to its inode.
    pub socket_inode: u32,
    /// `pt_regs` fields of the fifth and sixth syscall arguments.
    pub regs_arg4: u32,
    pub regs_arg5: u32,
}

/// Read-only configuration of the socket and queue probes (global
/// `SOCK_CONFIG`), written by userspace before load.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockConfig {
    pub off: SockOffsets,
}

impl SockConfig {
    pub const fn zeroed() -> Self {
        SockConfig {
            off: SockOffsets {
                file_private_data: 0,
                socket_sk: 0,
                sk_family: 0,
                sk_type: 0,
                sk_protocol: 0,
                sk_daddr: 0,
                sk_rcv_saddr: 0,
                sk_dport: 0,
                sk_num: 0,
                sk_v6_daddr: 0,
                sk_v6_rcv_saddr: 0,
                sk_socket: 0,
                unix_peer: 0,
                socket_inode: 0,
                regs_arg4: 0,
                regs_arg5: 0,
            },
        }
    }
}

#[cfg(feature = "user")]
// SAFETY: SockConfig is repr(C), Copy, made only of u32, with no padding.
unsafe impl aya::Pod for SockConfig {}
