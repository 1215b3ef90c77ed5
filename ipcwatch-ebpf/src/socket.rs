//! What a socket is: from a `struct file *` to its `struct sock` (family,
//! type, protocol: unix, TCP or UDP), and a [`SockEvent`] reserved in the
//! ring buffer with the socket's identity filled in (inode, peer, ports
//! and addresses). A socket of a kind userspace did not ask for
//! (`CONFIG.kinds`) stops after four kernel reads.

use aya_ebpf::maps::ring_buf::RingBufEntry;
use ipcwatch_common::{FileId, SockEvent, file_kind, stat};

use crate::{
    block::kread,
    emit::{bump, header_any},
    file::{ino_of_file, inode_ino_off, kinds},
    maps::{EVENTS, sconf},
};

const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const SOCK_STREAM: u16 = 1;
const SOCK_DGRAM: u16 = 2;
const IPPROTO_TCP: u16 = 6;
const IPPROTO_UDP: u16 = 17;

/// A socket of a wanted kind: `struct sock *`, kind, family, type.
pub(crate) struct Sock {
    sk: u64,
    kind: u16,
    family: u16,
    sotype: u16,
}

/// The socket behind a `struct file *`, if it is of a wanted kind.
#[inline(always)]
pub(crate) fn sock_of_file(file: u64) -> Option<Sock> {
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
    if kinds() & file_kind::bit(kind) == 0 {
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
pub(crate) fn sock_event<const BTF: bool>(
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
pub(crate) fn sock_event_ino<const BTF: bool>(
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
