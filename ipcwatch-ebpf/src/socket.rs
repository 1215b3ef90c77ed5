//! What a socket is: from a `struct file *` to its `struct sock` (family,
//! type, protocol: unix, TCP or UDP), and a [`SockEvent`] reserved in the
//! ring buffer with the socket's identity filled in (inode, peer, ports
//! and addresses). A socket of a kind userspace did not ask for
//! (`CONFIG.kinds`) stops after four kernel reads.

use aya_ebpf::{helpers::generated, maps::ring_buf::RingBufEntry};
use ipcwatch_common::{FileId, SockEvent, file_kind};

use crate::{
    block::kread,
    emit::{dropped, header_any},
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
        dropped(ev_kind);
        return None;
    };
    let sk = s.sk;
    let e = entry.as_mut_ptr();
    // The addresses are read straight into the event (ring-buffer
    // memory), not through the stack: Linux 6.1's verifier allows 512
    // bytes for a chain of calls, and this function is at its end.
    // SAFETY: `e` is reserved ring-buffer memory of a SockEvent; the
    // helper writes at most the size given into the named field.
    // (The helper zeroes what it could not read; a zeroing loop here
    // would be a call to memset, one more frame in the chain.)
    let read_into = |dst: *mut u8, len: u32, src: u64| unsafe {
        generated::bpf_probe_read_kernel(dst.cast(), len, src as *const core::ffi::c_void);
    };
    let (mut peer_sk, mut peer_ino, mut sport, mut dport) = (0u64, 0u64, 0u16, 0u16);
    // SAFETY: as above.
    // Word by word and volatile: LLVM merged the two arrays' zeroing into
    // a call to memset, one more frame at the end of the chain.
    unsafe {
        let sa = (&raw mut (*e).saddr).cast::<u64>();
        let da = (&raw mut (*e).daddr).cast::<u64>();
        sa.write_volatile(0);
        sa.add(1).write_volatile(0);
        da.write_volatile(0);
        da.add(1).write_volatile(0);
    }
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
        let (len, sa, da) = if s.family == AF_INET {
            (4, sconf!(off.sk_rcv_saddr), sconf!(off.sk_daddr))
        } else {
            (16, sconf!(off.sk_v6_rcv_saddr), sconf!(off.sk_v6_daddr))
        };
        // SAFETY: both fields are 16 bytes; `len` is 4 or 16.
        unsafe {
            read_into((&raw mut (*e).saddr).cast(), len, sk + sa as u64);
            read_into((&raw mut (*e).daddr).cast(), len, sk + da as u64);
        }
    }
    let ino = if ino == 0 { ino_of_file(file) } else { ino };
    // SAFETY: reserved ring-buffer memory of the right size.
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
        (*e).ctl_len = 0;
        (*e).addr_len = 0;
    }
    Some(entry)
}
