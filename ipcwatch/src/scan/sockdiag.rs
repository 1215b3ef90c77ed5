//! Sockets that existed before ipcwatch started, as `ss -xp` and `ss -tup`
//! find them: the kernel's sock_diag netlink interface gives every socket's
//! inode, peer and addresses; /proc/PID/fd gives who holds each inode.

use std::collections::HashMap;
use std::net::IpAddr;

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::{
    SockDiagMessage,
    constants::{AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP},
    inet::{ExtensionFlags, InetRequest, SocketId, StateFlags as InetStates},
    unix::{ShowFlags, StateFlags as UnixStates, UnixRequest, nlas::UnixDiagName},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_SOCK_DIAG};

use crate::record::Text;
use crate::scan::procs::{all_pids, comm_and_ppid};

/// A unix socket as sock_diag reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixSock {
    pub inode: u64,
    /// 1 stream, 2 dgram, 5 seqpacket.
    pub sotype: u8,
    /// Inode of the connected peer, 0 if none.
    pub peer: u64,
    /// "/path" or "@abstract", when bound.
    pub name: Option<String>,
}

/// A TCP or UDP socket as sock_diag reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InetSock {
    pub inode: u64,
    pub tcp: bool,
    pub local: (IpAddr, u16),
    pub remote: (IpAddr, u16),
}

/// Every socket's inode known to sock_diag.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub unix: HashMap<u64, UnixSock>,
    pub inet: HashMap<u64, InetSock>,
}

impl Snapshot {
    /// Dump every unix, TCP and UDP socket. Failures leave parts empty and
    /// are returned as messages (for a warning line).
    pub fn take() -> (Snapshot, Vec<String>) {
        let mut snap = Snapshot::default();
        let mut errors = Vec::new();
        match dump(SockDiagMessage::UnixRequest(UnixRequest {
            state_flags: UnixStates::all(),
            inode: 0,
            show_flags: ShowFlags::NAME | ShowFlags::PEER,
            cookie: [0xff; 8],
        })) {
            Ok(msgs) => {
                for m in msgs {
                    if let SockDiagMessage::UnixResponse(r) = m {
                        let inode = r.header.inode as u64;
                        let name = r.name().map(|n| match n {
                            UnixDiagName::Pathname(p) => p.to_string_lossy().into_owned(),
                            UnixDiagName::Abstract(a) => {
                                format!("@{}", String::from_utf8_lossy(a))
                            }
                        });
                        snap.unix.insert(
                            inode,
                            UnixSock {
                                inode,
                                sotype: r.header.kind,
                                peer: r.peer().unwrap_or(0) as u64,
                                name,
                            },
                        );
                    }
                }
            }
            Err(e) => errors.push(format!(
                "sock_diag unix dump: {e}{}",
                missing_module(&e, "unix_diag")
            )),
        }
        for family in [AF_INET, AF_INET6] {
            for protocol in [IPPROTO_TCP, IPPROTO_UDP] {
                let socket_id = if family == AF_INET {
                    SocketId::new_v4()
                } else {
                    SocketId::new_v6()
                };
                let req = SockDiagMessage::InetRequest(InetRequest {
                    family,
                    protocol,
                    extensions: ExtensionFlags::empty(),
                    states: InetStates::all(),
                    socket_id,
                });
                match dump(req) {
                    Ok(msgs) => {
                        for m in msgs {
                            if let SockDiagMessage::InetResponse(r) = m {
                                let id = &r.header.socket_id;
                                let inode = r.header.inode as u64;
                                snap.inet.insert(
                                    inode,
                                    InetSock {
                                        inode,
                                        tcp: protocol == IPPROTO_TCP,
                                        local: (id.source_address, id.source_port),
                                        remote: (id.destination_address, id.destination_port),
                                    },
                                );
                            }
                        }
                    }
                    Err(e) => errors.push(format!(
                        "sock_diag inet dump: {e}{}",
                        missing_module(&e, "inet_diag tcp_diag udp_diag")
                    )),
                }
            }
        }
        (snap, errors)
    }

    /// The unix socket bound to `name` ("/path" or "@abstract").
    pub fn bound(&self, name: &str) -> Option<u64> {
        self.unix
            .values()
            .find(|u| u.name.as_deref() == Some(name) && u.peer == 0)
            .or_else(|| self.unix.values().find(|u| u.name.as_deref() == Some(name)))
            .map(|u| u.inode)
    }
}

/// One netlink dump request, all its answers.
fn dump(req: SockDiagMessage) -> std::io::Result<Vec<SockDiagMessage>> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut hdr = NetlinkHeader::default();
    hdr.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut packet = NetlinkMessage::new(hdr, req.into());
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf[..]);
    socket.send(&buf[..], 0)?;
    let mut out = Vec::new();
    let mut rx = Vec::with_capacity(1 << 16);
    loop {
        rx.clear();
        let size = socket.recv(&mut rx, 0)?;
        if size == 0 {
            return Ok(out);
        }
        let mut offset = 0;
        while offset < rx.len() {
            let msg = <NetlinkMessage<SockDiagMessage>>::deserialize(&rx[offset..])
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let len = msg.header.length as usize;
            match msg.payload {
                NetlinkPayload::InnerMessage(m) => out.push(m),
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(e) => return Err(e.to_io()),
                _ => {}
            }
            if len == 0 {
                break;
            }
            offset += len;
        }
    }
}

/// Who holds a socket: pid, fd and comm of one holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub fd: i32,
    pub comm: Text,
}

/// Socket inode -> a holder, from /proc/*/fd (lowest pid, lowest fd).
pub fn socket_holders() -> HashMap<u64, Holder> {
    let mut map: HashMap<u64, Holder> = HashMap::new();
    for pid in all_pids() {
        for (fd, ino) in socket_fds(pid) {
            map.entry(ino).or_insert_with(|| Holder {
                pid,
                fd,
                comm: comm_and_ppid(pid).map(|(c, _)| c).unwrap_or_default(),
            });
        }
    }
    map
}

/// What to add to a dump's error when the kernel has no handler for it
/// (ENOENT): Debian's kernels build the sock_diag handlers as modules,
/// which a system without module loading (or `cargo xtask kernels`'s
/// guests, which carry none) does not have.
fn missing_module(e: &std::io::Error, modules: &str) -> String {
    if e.raw_os_error() == Some(libc::ENOENT) {
        format!(
            " (this kernel has no handler for it: `modprobe {modules}`); sockets made before the start are not resolved"
        )
    } else {
        String::new()
    }
}

/// (fd, socket inode) of every socket `pid` holds, sorted by fd.
pub fn socket_fds(pid: u32) -> Vec<(i32, u64)> {
    let fds = i32::try_from(pid)
        .ok()
        .and_then(|pid| procfs::process::Process::new(pid).ok())
        .and_then(|p| p.fd().ok());
    let Some(fds) = fds else {
        return Vec::new();
    };
    let mut v: Vec<(i32, u64)> = fds
        .filter_map(|info| {
            let info = info.ok()?;
            match info.target {
                procfs::process::FDTarget::Socket(ino) => Some((info.fd, ino)),
                _ => None,
            }
        })
        .collect();
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests {
    use super::missing_module;

    #[test]
    fn a_missing_handler_names_its_module() {
        let enoent = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert!(missing_module(&enoent, "unix_diag").contains("`modprobe unix_diag`"));
        let eperm = std::io::Error::from_raw_os_error(libc::EPERM);
        assert_eq!(missing_module(&eperm, "unix_diag"), "");
    }
}
