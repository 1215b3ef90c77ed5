//! Sockets: kernel events to records.
//!
//! Channel ids, the same value whichever end computes them:
//! - unix stream/seqpacket: `unix:[A-B]`, the two socket inodes sorted
//!   (the inodes `ss -x` and /proc/PID/fd show); an unconnected or
//!   listening socket is `unix:[A]`;
//! - unix dgram: the receiving socket, `unix:[R]` (writes go to the peer
//!   or to the socket bound at the destination address);
//! - TCP and UDP: `tcp:[E1-E2]` / `udp:[E1-E2]`, the two endpoints
//!   ("ip:port", "[ip6]:port") sorted; IPv4-mapped IPv6 is written as IPv4;
//!
//! A unix stream client can write before the server's accept() gives the
//! server's socket an inode. Its events are held back (by the peer's
//! `struct sock` address) until the accept, then written with the right id.

use foldhash::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use compact_str::format_compact;
use ipcwatch_common::{SockEvent, file_kind, op, sock_op};

use super::lines::{channel_line, io_line, op_of, syscall_name};
use crate::decode::{c_str, comm};
use crate::ids::unix_id;
use crate::record::{
    ChannelEvent, ChannelExt, ChannelKind, ChannelLine, Credentials, End, Io, IoExt, Record, Text,
};
use crate::scan::procs::{all_pids, comm_and_ppid};
use crate::scan::sockdiag::{self, Holder, Snapshot};

const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const SOCK_DGRAM: u16 = 2;
const SOL_SOCKET: i32 = 1;
const SCM_RIGHTS: i32 = 1;
const SCM_CREDENTIALS: i32 = 2;
/// Held-back events per unresolved peer before giving up on it.
const PENDING_MAX: usize = 4096;

/// What ipcwatch knows of one socket inode.
#[derive(Debug, Clone, Default)]
struct SockInfo {
    holder: Option<Holder>,
    local: Option<String>,
    /// The sweep of [`SocketTracker::forget`] it was last seen in.
    seen: u32,
}

#[derive(Debug, Default)]
pub struct SocketTracker {
    /// Socket inode -> who uses it, its bound name.
    socks: HashMap<u64, SockInfo>,
    /// `struct sock *` -> socket inode.
    sk_ino: HashMap<u64, u64>,
    /// Bound unix names ("/path", "@name") -> inode.
    bound: HashMap<String, u64>,
    /// Listening inet sockets: (tcp, port) -> inode.
    listeners: HashMap<(bool, u16), u64>,
    /// Connected inet sockets: local endpoint -> inode.
    inet_local: HashMap<(bool, String), u64>,
    /// Events waiting for the inode of a peer (by its `struct sock *`).
    pending: HashMap<u64, Vec<SockEvent>>,
    /// First end of a socketpair, by thread, until the second arrives.
    pair_half: HashMap<u32, SockEvent>,
    /// sock_diag and /proc, taken when an unknown socket shows up.
    diag: Option<Snapshot>,
    holders: Option<std::collections::HashMap<u64, Holder>>,
    /// When /proc was last scanned for holders (scans are rate-limited).
    holders_at: Option<std::time::Instant>,
    /// Sweeps of [`SocketTracker::forget`] so far.
    sweep: u32,
    /// Channel ids of connected inet sockets by their ends as the kernel
    /// gave them: the id is a function of those alone, so an entry can
    /// never be stale, and a busy connection's every event is not
    /// formatted anew (two endpoints and the pair: three allocations).
    inet_ids: HashMap<InetEnds, Text>,
}

/// (kind, family, source address, source port, destination address,
/// destination port) of a connected inet socket's event.
type InetEnds = (u16, u16, [u8; 16], u16, [u8; 16], u16);

/// At most this many ids in [`SocketTracker::inet_ids`]; when full it is
/// emptied (a cache: what leaves is formatted again when next seen).
const INET_IDS_MAX: usize = 4096;

/// At most one /proc scan for socket holders per this interval.
const RESCAN: std::time::Duration = std::time::Duration::from_millis(250);

/// Endpoint text: "1.2.3.4:80", "[::1]:80"; IPv4-mapped IPv6 as IPv4.
pub fn endpoint(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => format!("{v4}:{port}"),
            None => format!("[{a}]:{port}"),
        },
    }
}

fn ip_of(family: u16, bytes: &[u8; 16]) -> IpAddr {
    if family == AF_INET {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*bytes))
    }
}

/// A sockaddr from user memory, as text ("/path", "@name", "ip:port").
/// `None` for an unnamed or unreadable address.
pub fn sockaddr(bytes: &[u8]) -> Option<String> {
    if bytes.len() < 2 {
        return None;
    }
    let family = u16::from_ne_bytes([bytes[0], bytes[1]]);
    match family {
        AF_UNIX => {
            let path = &bytes[2..];
            if path.is_empty() {
                return None;
            }
            if path[0] == 0 {
                // Abstract: every byte counts, NULs included.
                let name = &path[1..];
                Some(format!("@{}", String::from_utf8_lossy(name)))
            } else {
                let p = c_str(path);
                Some(String::from_utf8_lossy(p).into_owned())
            }
        }
        AF_INET if bytes.len() >= 8 => {
            let port = u16::from_be_bytes([bytes[2], bytes[3]]);
            let ip = Ipv4Addr::new(bytes[4], bytes[5], bytes[6], bytes[7]);
            Some(endpoint(IpAddr::V4(ip), port))
        }
        AF_INET6 if bytes.len() >= 24 => {
            let port = u16::from_be_bytes([bytes[2], bytes[3]]);
            let mut a = [0u8; 16];
            a.copy_from_slice(&bytes[8..24]);
            Some(endpoint(IpAddr::V6(Ipv6Addr::from(a)), port))
        }
        _ => None,
    }
}

/// The ancillary data of a sendmsg/recvmsg: SCM_RIGHTS and
/// SCM_CREDENTIALS (x86_64 `struct cmsghdr`: u64 len, i32 level, i32 type).
pub fn parse_cmsgs(ctl: &[u8]) -> (Option<Vec<i32>>, Option<Credentials>) {
    let (mut rights, mut creds) = (None::<Vec<i32>>, None);
    let mut off = 0usize;
    while off <= ctl.len().saturating_sub(16) && ctl.len() >= 16 {
        let len = u64::from_ne_bytes(ctl[off..off + 8].try_into().unwrap_or([0; 8])) as usize;
        let level = i32::from_ne_bytes(ctl[off + 8..off + 12].try_into().unwrap_or([0; 4]));
        let ty = i32::from_ne_bytes(ctl[off + 12..off + 16].try_into().unwrap_or([0; 4]));
        if len < 16 {
            break;
        }
        let end = off.saturating_add(len).min(ctl.len());
        let data = &ctl[off + 16..end];
        if level == SOL_SOCKET && ty == SCM_RIGHTS {
            let fds = rights.get_or_insert_with(Vec::new);
            fds.extend(
                data.chunks_exact(4)
                    .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]])),
            );
        } else if level == SOL_SOCKET && ty == SCM_CREDENTIALS && data.len() >= 12 {
            let u = |i: usize| u32::from_ne_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
            creds = Some(Credentials {
                pid: u(0),
                uid: u(4),
                gid: u(8),
            });
        }
        off = off.saturating_add(len.saturating_add(7) & !7);
    }
    (rights, creds)
}

fn socket_type(sotype: u16) -> Text {
    Text::const_new(match sotype {
        1 => "stream",
        2 => "dgram",
        5 => "seqpacket",
        _ => "other",
    })
}

fn kind_of(e: &SockEvent) -> ChannelKind {
    match e.file.kind {
        file_kind::TCP => ChannelKind::Tcp,
        file_kind::UDP => ChannelKind::Udp,
        _ => ChannelKind::Unix,
    }
}

fn pair_id(prefix: &str, a: &str, b: &str) -> Text {
    let (x, y) = if a <= b { (a, b) } else { (b, a) };
    format_compact!("{prefix}:[{x}-{y}]")
}

fn is_unspecified(ip: &IpAddr) -> bool {
    ip.is_unspecified()
        || matches!(ip, IpAddr::V6(a) if a.to_ipv4_mapped().is_some_and(|v| v.is_unspecified()))
}

fn is_loopback(s: &str) -> bool {
    s.starts_with("127.") || s.starts_with("[::1]")
}

impl SocketTracker {
    pub fn new() -> Self {
        Self::default()
    }

    fn remember(&mut self, ino: u64, pid: u32, fd: i32, comm: Text) {
        if ino == 0 {
            return;
        }
        let s = self.socks.entry(ino).or_default();
        s.holder = Some(Holder { pid, fd, comm });
        s.seen = self.sweep;
    }

    /// For long runs (`agent`), every few tens of seconds: drop what is
    /// known of sockets not seen since the sweep before this one whose
    /// holder is gone (`alive` says no), with the names, ports, struct-sock
    /// and endpoint maps that lead to them; events held back for a peer
    /// more than `keep_ns` ago; and the sock_diag and /proc snapshots
    /// (taken again when an unknown socket or name shows up).
    pub fn forget(&mut self, alive: impl Fn(u32) -> bool, now_ns: u64, keep_ns: u64) {
        let recent = self.sweep.saturating_sub(1);
        self.socks
            .retain(|_, s| s.seen >= recent || s.holder.as_ref().is_some_and(|h| alive(h.pid)));
        let socks = &self.socks;
        self.sk_ino.retain(|_, ino| socks.contains_key(ino));
        self.inet_local.retain(|_, ino| socks.contains_key(ino));
        self.bound.retain(|_, ino| socks.contains_key(ino));
        self.listeners.retain(|_, ino| socks.contains_key(ino));
        let fresh = |e: &SockEvent| e.hdr.ts_ns.saturating_add(keep_ns) >= now_ns;
        self.pending
            .retain(|_, held| held.last().is_some_and(fresh));
        self.pair_half.retain(|_, e| fresh(e));
        self.holders = None;
        self.diag = None;
        self.socks.shrink_to(self.socks.len() * 2);
        self.sk_ino.shrink_to(self.sk_ino.len() * 2);
        self.inet_local.shrink_to(self.inet_local.len() * 2);
        self.sweep += 1;
    }

    /// Who holds socket `ino`: seen in events, else (once per miss) from
    /// /proc like `ss -p`.
    fn holder(&mut self, ino: u64) -> Option<Holder> {
        if ino == 0 {
            return None;
        }
        if let Some(h) = self.socks.get(&ino).and_then(|s| s.holder.clone()) {
            return Some(h);
        }
        let known = self.holders.as_ref().and_then(|h| h.get(&ino).cloned());
        if known.is_some() {
            return known;
        }
        if self.holders_at.is_some_and(|t| t.elapsed() < RESCAN) {
            return None;
        }
        self.holders_at = Some(std::time::Instant::now());
        let holders = sockdiag::socket_holders();
        let found = holders.get(&ino).cloned();
        self.holders = Some(holders);
        found
    }

    fn diag(&mut self) -> &Snapshot {
        self.diag.get_or_insert_with(|| Snapshot::take().0)
    }

    /// Inode of the unix socket bound to `name`.
    fn bound_ino(&mut self, name: &str) -> Option<u64> {
        if let Some(i) = self.bound.get(name) {
            return Some(*i);
        }
        if self.diag.is_some() && self.holders_at.is_some_and(|t| t.elapsed() < RESCAN) {
            return self.diag().bound(name);
        }
        self.holders_at = Some(std::time::Instant::now());
        self.diag = None;
        let ino = self.diag().bound(name)?;
        self.bound.insert(name.to_string(), ino);
        Some(ino)
    }

    /// The unix peer's inode, from the event or from an earlier event that
    /// showed the peer's `struct sock`.
    fn unix_peer(&self, e: &SockEvent) -> u64 {
        if e.peer_ino != 0 {
            e.peer_ino
        } else if e.peer_sk != 0 {
            self.sk_ino.get(&e.peer_sk).copied().unwrap_or(0)
        } else {
            0
        }
    }

    fn addr(e: &SockEvent) -> Option<String> {
        let n = (e.addr_len as usize).min(e.addr.len());
        if n == 0 {
            return None;
        }
        sockaddr(&e.addr[..n])
    }

    /// (local, remote) endpoints of an inet socket; `remote` from the
    /// call's address when the socket is not connected.
    fn inet_ends(e: &SockEvent) -> (String, Option<String>) {
        let lip = ip_of(e.family, &e.saddr);
        let local = endpoint(lip, e.sport);
        // bind's address is the local one, not a peer.
        let call_addr = e.hdr.kind == ipcwatch_common::kind::SOCK_IO || e.op == sock_op::CONNECT;
        let remote = if e.dport != 0 {
            Some(endpoint(ip_of(e.family, &e.daddr), e.dport))
        } else if call_addr {
            Self::addr(e)
        } else {
            None
        };
        // Bound to the wildcard address: a loopback peer sees us as the
        // loopback address.
        let local = match &remote {
            Some(r) if is_unspecified(&lip) && is_loopback(r) => {
                let host = if r.starts_with('[') {
                    "[::1]"
                } else {
                    "127.0.0.1"
                };
                format!("{host}:{}", e.sport)
            }
            _ => local,
        };
        (local, remote)
    }

    /// The channel id of an inet socket's event: `tcp:[A-B]` with both
    /// ends, or `tcp:[A]` with only its own.
    fn inet_id(e: &SockEvent) -> Text {
        let prefix = if e.file.kind == file_kind::TCP {
            "tcp"
        } else {
            "udp"
        };
        let (local, remote) = Self::inet_ends(e);
        match remote {
            Some(r) => pair_id(prefix, &local, &r),
            None => format_compact!("{prefix}:[{local}]"),
        }
    }

    /// The channel id of a socket event; `None` means "wait for the peer".
    fn sock_id(&mut self, e: &SockEvent, dir: Option<u32>) -> Option<Text> {
        let own = e.file.ino;
        match e.file.kind {
            file_kind::TCP | file_kind::UDP => {
                // Unconnected (no destination port): the id depends on
                // the call's address too, so it is not kept.
                let key = (e.dport != 0).then_some((
                    e.file.kind,
                    e.family,
                    e.saddr,
                    e.sport,
                    e.daddr,
                    e.dport,
                ));
                if let Some(id) = key.as_ref().and_then(|k| self.inet_ids.get(k)) {
                    return Some(id.clone());
                }
                let id = Self::inet_id(e);
                if let Some(k) = key {
                    if self.inet_ids.len() >= INET_IDS_MAX {
                        self.inet_ids.clear();
                    }
                    self.inet_ids.insert(k, id.clone());
                }
                Some(id)
            }
            _ if e.sotype == SOCK_DGRAM => {
                let target = match dir {
                    Some(op::WRITE) => {
                        let peer = self.unix_peer(e);
                        if peer != 0 {
                            peer
                        } else {
                            Self::addr(e)
                                .and_then(|name| self.bound_ino(&name))
                                .unwrap_or(own)
                        }
                    }
                    _ => own,
                };
                Some(unix_id(target, None))
            }
            _ => {
                let peer = self.unix_peer(e);
                if peer != 0 {
                    let (a, b) = (own.min(peer), own.max(peer));
                    Some(unix_id(a, Some(b)))
                } else if e.peer_sk != 0 {
                    None
                } else {
                    Some(unix_id(own, None))
                }
            }
        }
    }

    /// Turn a socket event into records (or hold it back).
    pub fn sock(&mut self, e: &SockEvent, io: bool, out: &mut Vec<Record>) {
        if e.sk != 0 && e.file.ino != 0 {
            self.sk_ino.insert(e.sk, e.file.ino);
        }
        // A connect whose peer has no inode made a new server-side sock,
        // maybe at the address of a freed one: forget what that address
        // meant, and wait for the accept.
        if !io && e.op == sock_op::CONNECT && e.peer_ino == 0 && e.peer_sk != 0 {
            self.sk_ino.remove(&e.peer_sk);
        }
        self.remember(e.file.ino, e.hdr.pid, e.fd, comm(&e.hdr));
        // Events held back for this socket's inode can go now.
        if let Some(held) = self.pending.remove(&e.sk) {
            for h in held {
                self.sock_now(&h, h.hdr.kind == ipcwatch_common::kind::SOCK_IO, false, out);
            }
        }
        self.sock_now(e, io, true, out);
    }

    fn sock_now(&mut self, e: &SockEvent, io: bool, may_wait: bool, out: &mut Vec<Record>) {
        let dir = io.then_some(e.op);
        let id = match self.sock_id(e, dir) {
            Some(id) => id,
            None if may_wait => {
                let q = self.pending.entry(e.peer_sk).or_default();
                if q.len() < PENDING_MAX {
                    q.push(*e);
                    return;
                }
                unix_id(e.file.ino, None)
            }
            None => unix_id(e.file.ino, None),
        };
        if io {
            self.sock_io(e, id, out);
        } else {
            self.sock_life(e, id, out);
        }
    }

    fn sock_io(&mut self, e: &SockEvent, channel: Text, out: &mut Vec<Record>) {
        let n = (e.ctl_len as usize).min(e.ctl.len());
        let (scm_rights, scm_credentials) = parse_cmsgs(&e.ctl[..n]);
        let connected = e.dport != 0 || e.peer_sk != 0 || e.peer_ino != 0;
        let addr = if connected { None } else { Self::addr(e) };
        out.push(Record::Io(Io {
            ext: IoExt {
                msgs: (e.msgs > 1).then_some(e.msgs),
                addr,
                scm_rights,
                scm_credentials,
                ..IoExt::default()
            },
            ..io_line(
                &e.hdr,
                kind_of(e),
                op_of(e.op),
                channel,
                e.bytes,
                e.fd,
                e.syscall,
            )
        }));
    }

    fn sock_life(&mut self, e: &SockEvent, channel: Text, out: &mut Vec<Record>) {
        let kind = kind_of(e);
        let inet = kind != ChannelKind::Unix;
        let (local, remote) = if inet {
            let (l, r) = Self::inet_ends(e);
            (Some(l), r)
        } else {
            let own = self.socks.get(&e.file.ino).and_then(|s| s.local.clone());
            (own, None)
        };
        let event = match e.op {
            sock_op::CREATE => return, // nothing to say until it is used
            sock_op::PAIR => return self.socketpair(e, kind, channel, out),
            sock_op::BIND => {
                if let Some(name) = Self::addr(e)
                    && !inet
                {
                    self.bound.insert(name.clone(), e.file.ino);
                    let s = self.socks.entry(e.file.ino).or_default();
                    s.local = Some(name);
                    s.seen = self.sweep;
                }
                ChannelEvent::Bind
            }
            sock_op::LISTEN => {
                if inet {
                    self.listeners
                        .insert((kind == ChannelKind::Tcp, e.sport), e.file.ino);
                }
                ChannelEvent::Listen
            }
            sock_op::CONNECT => ChannelEvent::Connect,
            _ => ChannelEvent::Accept,
        };
        let mut l = channel_line(&e.hdr, event, kind, channel);
        l.fd = Some(e.fd);
        if matches!(event, ChannelEvent::Connect | ChannelEvent::Accept) {
            l.end = Some(End::Both);
        }
        l.syscall = Some(syscall_name(e.syscall));
        l.ext.socket_type = Some(socket_type(e.sotype));
        l.ext.inode = Some(e.file.ino);
        let mut local = local;
        let mut remote = remote;
        if event == ChannelEvent::Bind && local.is_none() {
            local = Self::addr(e);
        }
        if !inet && event == ChannelEvent::Connect {
            remote = Self::addr(e);
        }
        let peer = self.peer_of(e, event, kind, local.as_ref(), remote.as_ref());
        if !inet && event == ChannelEvent::Accept {
            // The connecting end's name, if it bound one.
            remote = peer.and_then(|p| self.socks.get(&p).and_then(|s| s.local.clone()));
            local = self
                .socks
                .get(&e.file.ino)
                .and_then(|s| s.local.clone())
                .or(local);
        }
        l.ext.local = local;
        l.ext.remote = remote;
        if let Some(p) = peer {
            l.ext.peer_inode = Some(p);
            if let Some(h) = self.holder(p) {
                l.ext.peer_pid = Some(h.pid);
                l.ext.peer_comm = Some(h.comm);
                l.ext.peer_fd = Some(h.fd);
            }
        }
        out.push(Record::Channel(l));
    }

    /// socketpair(2): the first end waits for the second (same thread),
    /// then one line each, naming the other.
    fn socketpair(
        &mut self,
        e: &SockEvent,
        kind: ChannelKind,
        channel: Text,
        out: &mut Vec<Record>,
    ) {
        if let Some(first) = self.pair_half.remove(&e.hdr.tid) {
            // Both ends known: one line each, naming the other.
            for (me, other) in [(&first, e), (e, &first)] {
                let mut l = channel_line(&me.hdr, ChannelEvent::Socket, kind, channel.clone());
                l.fd = Some(me.fd);
                l.end = Some(End::Both);
                l.syscall = Some(syscall_name(me.syscall));
                l.ext.socket_type = Some(socket_type(me.sotype));
                l.ext.inode = Some(me.file.ino);
                l.ext.peer_inode = Some(other.file.ino);
                l.ext.peer_pid = Some(other.hdr.pid);
                l.ext.peer_comm = Some(comm(&other.hdr));
                l.ext.peer_fd = Some(other.fd);
                out.push(Record::Channel(l));
            }
        } else {
            self.pair_half.insert(e.hdr.tid, *e);
        }
    }

    /// The inode of the other end of a socket event: the connected inet
    /// socket whose local end is this one's remote end (or the listener on
    /// its port), the unix peer the kernel names, or the socket bound at
    /// the address connected to.
    fn peer_of(
        &mut self,
        e: &SockEvent,
        event: ChannelEvent,
        kind: ChannelKind,
        local: Option<&String>,
        remote: Option<&String>,
    ) -> Option<u64> {
        let inet = kind != ChannelKind::Unix;
        if inet {
            let tcp = kind == ChannelKind::Tcp;
            if let Some(lc) = local {
                self.inet_local.insert((tcp, lc.clone()), e.file.ino);
            }
            match (event, remote) {
                (ChannelEvent::Connect | ChannelEvent::Accept, Some(r)) => {
                    let port = r.rsplit(':').next().and_then(|p| p.parse().ok());
                    self.inet_local
                        .get(&(tcp, r.clone()))
                        .copied()
                        .or_else(|| port.and_then(|p: u16| self.listeners.get(&(tcp, p)).copied()))
                }
                _ => None,
            }
        } else if matches!(event, ChannelEvent::Connect | ChannelEvent::Accept) {
            let p = self.unix_peer(e);
            if p != 0 {
                Some(p)
            } else {
                remote.and_then(|r| self.bound_ino(r))
            }
        } else {
            None
        }
    }

    /// Held-back events whose peer never got an inode: write them now.
    pub fn flush(&mut self, out: &mut Vec<Record>) {
        let mut held: Vec<SockEvent> = self.pending.drain().flat_map(|(_, v)| v).collect();
        held.sort_by_key(|e| e.hdr.ts_ns);
        for h in held {
            let io = h.hdr.kind == ipcwatch_common::kind::SOCK_IO;
            self.sock_now(&h, io, false, out);
        }
    }

    /// `existing` lines for the sockets that the processes `want` accepts
    /// held when ipcwatch started (sock_diag, as `ss -xp` does).
    pub fn existing(&mut self, ts_ns: u64, want: &dyn Fn(u32, &str) -> bool) -> Vec<Record> {
        let (snap, _errors) = Snapshot::take();
        let mut out = Vec::new();
        let holders = sockdiag::socket_holders();
        // Inet sockets by (tcp, local endpoint): the peer of a connection
        // on this host is the socket whose local end is our remote end.
        let inet_by_local: HashMap<(bool, String), u64> = snap
            .inet
            .values()
            .filter(|s| s.remote.1 != 0)
            .map(|s| ((s.tcp, endpoint(s.local.0, s.local.1)), s.inode))
            .collect();
        for pid in all_pids() {
            if pid == std::process::id() {
                continue;
            }
            let Some((pcomm, _)) = comm_and_ppid(pid) else {
                continue;
            };
            if !want(pid, &pcomm) {
                continue;
            }
            for (fd, ino) in sockdiag::socket_fds(pid) {
                let mut ext = ChannelExt {
                    inode: Some(ino),
                    ..ChannelExt::default()
                };
                let (kind, channel) = if let Some(u) = snap.unix.get(&ino) {
                    ext.socket_type = Some(socket_type(u.sotype as u16));
                    ext.local.clone_from(&u.name);
                    if let Some(n) = &u.name {
                        self.bound.insert(n.clone(), ino);
                        let s = self.socks.entry(ino).or_default();
                        s.local = Some(n.clone());
                        s.seen = self.sweep;
                    }
                    let id = if u.peer != 0 && u.sotype as u16 != SOCK_DGRAM {
                        ext.peer_inode = Some(u.peer);
                        ext.remote = snap.unix.get(&u.peer).and_then(|p| p.name.clone());
                        let (a, b) = (ino.min(u.peer), ino.max(u.peer));
                        unix_id(a, Some(b))
                    } else {
                        if u.peer != 0 {
                            ext.peer_inode = Some(u.peer);
                        }
                        unix_id(ino, None)
                    };
                    (ChannelKind::Unix, id)
                } else if let Some(s) = snap.inet.get(&ino) {
                    let local = endpoint(s.local.0, s.local.1);
                    let prefix = if s.tcp { "tcp" } else { "udp" };
                    let id = if s.remote.1 != 0 {
                        let remote = endpoint(s.remote.0, s.remote.1);
                        ext.peer_inode = inet_by_local.get(&(s.tcp, remote.clone())).copied();
                        ext.remote = Some(remote.clone());
                        pair_id(prefix, &local, &remote)
                    } else {
                        format_compact!("{prefix}:[{local}]")
                    };
                    ext.local = Some(local);
                    let kind = if s.tcp {
                        ChannelKind::Tcp
                    } else {
                        ChannelKind::Udp
                    };
                    (kind, id)
                } else {
                    continue;
                };
                if let Some(p) = ext.peer_inode
                    && let Some(h) = holders.get(&p)
                {
                    ext.peer_pid = Some(h.pid);
                    ext.peer_comm = Some(h.comm.clone());
                    ext.peer_fd = Some(h.fd);
                }
                self.remember(ino, pid, fd, pcomm.clone());
                out.push(Record::Channel(ChannelLine {
                    ts_ns,
                    event: ChannelEvent::Existing,
                    kind,
                    channel,
                    pid,
                    tid: pid,
                    comm: pcomm.clone(),
                    fd: Some(fd),
                    end: Some(End::Both),
                    old_fd: None,
                    cloexec: false,
                    path: None,
                    syscall: None,
                    ext: Box::new(ext),
                }));
            }
        }
        self.holders = Some(holders);
        self.diag = Some(snap);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipcwatch_common::sc;

    #[test]
    fn sockaddrs_become_text() {
        let mut a = vec![1u8, 0];
        a.extend_from_slice(b"\0demo\0x");
        assert_eq!(sockaddr(&a).as_deref(), Some("@demo\0x"));
        let mut p = vec![1u8, 0];
        p.extend_from_slice(b"/tmp/s\0\0\0");
        assert_eq!(sockaddr(&p).as_deref(), Some("/tmp/s"));
        assert_eq!(sockaddr(&[1, 0]), None);
        let v4 = [2u8, 0, 0x15, 0xb3, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(sockaddr(&v4).as_deref(), Some("127.0.0.1:5555"));
        let mut v6 = vec![10u8, 0, 0x15, 0xb3, 0, 0, 0, 0];
        v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        v6.extend_from_slice(&[0; 4]);
        assert_eq!(sockaddr(&v6).as_deref(), Some("[::1]:5555"));
        assert_eq!(sockaddr(&[9, 9, 9]), None);
    }

    #[test]
    fn mapped_ipv6_is_written_as_ipv4_and_pairs_sort() {
        let m: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(endpoint(m, 80), "127.0.0.1:80");
        assert_eq!(
            pair_id("tcp", "127.0.0.1:80", "127.0.0.1:40000"),
            pair_id("tcp", "127.0.0.1:40000", "127.0.0.1:80")
        );
    }

    #[test]
    fn cmsgs_give_rights_and_credentials() {
        let mut ctl = Vec::new();
        ctl.extend_from_slice(&24u64.to_ne_bytes());
        ctl.extend_from_slice(&1i32.to_ne_bytes());
        ctl.extend_from_slice(&1i32.to_ne_bytes());
        ctl.extend_from_slice(&5i32.to_ne_bytes());
        ctl.extend_from_slice(&6i32.to_ne_bytes());
        ctl.extend_from_slice(&28u64.to_ne_bytes());
        ctl.extend_from_slice(&1i32.to_ne_bytes());
        ctl.extend_from_slice(&2i32.to_ne_bytes());
        for v in [42u32, 1000, 100] {
            ctl.extend_from_slice(&v.to_ne_bytes());
        }
        ctl.extend_from_slice(&[0; 4]);
        let (rights, creds) = parse_cmsgs(&ctl);
        assert_eq!(rights, Some(vec![5, 6]));
        assert_eq!(
            creds,
            Some(Credentials {
                pid: 42,
                uid: 1000,
                gid: 100
            })
        );
        // Truncated or garbage control data never panics.
        assert_eq!(parse_cmsgs(&ctl[..20]), (Some(vec![5]), None));
        assert_eq!(parse_cmsgs(&ctl[..12]), (None, None));
        assert_eq!(parse_cmsgs(&[0xff; 64]).1, None);
    }

    fn ev(kind: u32, ino: u64, sk: u64, peer_sk: u64, peer_ino: u64, op: u32) -> SockEvent {
        SockEvent {
            hdr: ipcwatch_common::EventHeader {
                kind,
                pid: 10,
                tid: 10,
                ts_ns: ino,
                ..Default::default()
            },
            file: ipcwatch_common::FileId {
                ino,
                dev: 0,
                kind: file_kind::UNIX,
                access: 3,
            },
            bytes: 5,
            sk,
            peer_sk,
            peer_ino,
            fd: 3,
            op,
            syscall: sc::WRITE,
            msgs: 1,
            family: AF_UNIX,
            sotype: 1,
            sport: 0,
            dport: 0,
            saddr: [0; 16],
            daddr: [0; 16],
            ctl_len: 0,
            addr_len: 0,
            ctl: [0; ipcwatch_common::CTL_LEN],
            addr: [0; ipcwatch_common::ADDR_LEN],
        }
    }

    #[test]
    fn a_write_before_accept_waits_for_the_peer_inode() {
        use ipcwatch_common::kind::{SOCK_IO, SOCK_LIFE};
        let mut c = SocketTracker::new();
        let mut out = Vec::new();
        // Client (inode 100, sk 0xa) writes; its peer (sk 0xb) has no inode.
        c.sock(&ev(SOCK_IO, 100, 0xa, 0xb, 0, op::WRITE), true, &mut out);
        assert!(out.is_empty());
        // The server accepts: socket inode 200 for sk 0xb.
        let mut acc = ev(SOCK_LIFE, 200, 0xb, 0xa, 100, sock_op::ACCEPT);
        acc.syscall = sc::ACCEPT4;
        c.sock(&acc, false, &mut out);
        assert_eq!(out.len(), 2);
        match (&out[0], &out[1]) {
            (Record::Io(io), Record::Channel(l)) => {
                assert_eq!(io.channel, "unix:[100-200]");
                assert_eq!(l.channel, "unix:[100-200]");
                assert_eq!(l.ext.peer_inode, Some(100));
            }
            other => panic!("{other:?}"),
        }
        // A freed sock's address reused by a new connection's server end:
        // the old mapping must not name the new channel.
        let mut conn = ev(SOCK_LIFE, 400, 0xe, 0xa, 0, sock_op::CONNECT);
        conn.syscall = sc::CONNECT;
        c.sock(&conn, false, &mut out);
        c.sock(&ev(SOCK_IO, 400, 0xe, 0xa, 0, op::WRITE), true, &mut out);
        assert_eq!(out.len(), 2, "held back until the accept");
        let mut acc = ev(SOCK_LIFE, 500, 0xa, 0xe, 400, sock_op::ACCEPT);
        acc.syscall = sc::ACCEPT4;
        c.sock(&acc, false, &mut out);
        let ids: Vec<&str> = out[2..]
            .iter()
            .map(|r| match r {
                Record::Io(io) => io.channel.as_str(),
                Record::Channel(l) => l.channel.as_str(),
                _ => "",
            })
            .collect();
        assert_eq!(ids, ["unix:[400-500]"; 3]);
        // Unresolved events are written at the end.
        c.sock(&ev(SOCK_IO, 300, 0xc, 0xd, 0, op::WRITE), true, &mut out);
        assert_eq!(out.len(), 5);
        c.flush(&mut out);
        assert_eq!(out.len(), 6);
    }

    /// A TCP event from 127.0.0.1:`sport` to 127.0.0.1:`dport` (0: none).
    fn tcp(sport: u16, dport: u16) -> SockEvent {
        let mut e = ev(ipcwatch_common::kind::SOCK_IO, 700, 0x7, 0, 0, op::WRITE);
        e.file.kind = file_kind::TCP;
        e.family = AF_INET;
        e.sotype = 1;
        e.sport = sport;
        e.dport = dport;
        e.saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        if dport != 0 {
            e.daddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        }
        e
    }

    #[test]
    fn connected_inet_ids_are_kept_by_their_ends_and_stay_right() {
        let mut c = SocketTracker::new();
        let a = tcp(40000, 80);
        let first = c.sock_id(&a, Some(op::WRITE)).unwrap();
        assert_eq!(first, "tcp:[127.0.0.1:40000-127.0.0.1:80]");
        assert_eq!(c.inet_ids.len(), 1);
        assert_eq!(c.sock_id(&a, Some(op::WRITE)).unwrap(), first);
        // Other ends, another id; the same ends from the other side, the
        // same id (pairs sort).
        assert_eq!(
            c.sock_id(&tcp(40001, 80), None).unwrap(),
            "tcp:[127.0.0.1:40001-127.0.0.1:80]"
        );
        assert_eq!(c.sock_id(&tcp(80, 40000), None).unwrap(), first);
        assert_eq!(c.inet_ids.len(), 3);
        // Unconnected: its id depends on the call's address, never kept.
        assert_eq!(
            c.sock_id(&tcp(5353, 0), None).unwrap(),
            "tcp:[127.0.0.1:5353]"
        );
        assert_eq!(c.inet_ids.len(), 3);
        // Full: emptied, then filled again.
        for port in 0..INET_IDS_MAX as u16 {
            c.sock_id(&tcp(10000 + port, 81), None);
        }
        assert!(c.inet_ids.len() <= INET_IDS_MAX);
        assert_eq!(c.sock_id(&a, None).unwrap(), first);
    }
}
