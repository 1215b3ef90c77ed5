//! Workloads for sockets and message queues. Each prints the facts a test
//! asserts (pids, names, ports) on standard output.

use std::ffi::CString;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram, UnixListener, UnixStream};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::sys::{child_run, drain, fork, os_err, wait};

fn say(line: String) -> Result<()> {
    let mut out = std::io::stdout();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

fn reap(pid: i32, what: &str) -> Result<()> {
    if wait(pid)? != 0 {
        bail!("the {what} child failed");
    }
    Ok(())
}

/// A POSIX queue opened with `flags` (created with room for `maxmsg`
/// messages of `msgsize` bytes when O_CREAT is in `flags`).
fn mq_open(name: &str, flags: i32, maxmsg: i64, msgsize: i64) -> Result<libc::mqd_t> {
    let cname = CString::new(name)?;
    // SAFETY: mq_attr is plain data; zero is a valid value.
    let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
    attr.mq_maxmsg = maxmsg;
    attr.mq_msgsize = msgsize;
    // SAFETY: valid C string and attr pointer; mode is passed as varargs.
    let q = unsafe { libc::mq_open(cname.as_ptr(), flags, 0o600 as libc::c_uint, &attr) };
    if q < 0 {
        return Err(os_err(&format!("mq_open {name}")));
    }
    Ok(q)
}

fn mq_send(q: libc::mqd_t, buf: &[u8], prio: u32) -> Result<()> {
    // SAFETY: buf is valid for its length.
    if unsafe { libc::mq_send(q, buf.as_ptr().cast(), buf.len(), prio) } != 0 {
        return Err(os_err("mq_send"));
    }
    Ok(())
}

fn mq_receive(q: libc::mqd_t, buf: &mut [u8]) -> Result<usize> {
    let mut prio = 0u32;
    // SAFETY: buf is valid for its length; prio is a valid out-pointer.
    let n = unsafe { libc::mq_receive(q, buf.as_mut_ptr().cast(), buf.len(), &mut prio) };
    if n < 0 {
        return Err(os_err("mq_receive"));
    }
    Ok(n as usize)
}

fn mq_unlink(name: &str) {
    if let Ok(c) = CString::new(name) {
        // SAFETY: valid C string.
        unsafe { libc::mq_unlink(c.as_ptr()) };
    }
}

/// The done-when script: a socketpair carrying 7000 bytes, an abstract
/// unix socket carrying 3333, a TCP loopback connection carrying 5555, and
/// a POSIX queue carrying 5 x 100 bytes from a child to its parent.
pub fn channels_demo() -> Result<()> {
    let me = std::process::id();
    demo_socketpair(me)?;
    demo_abstract(me)?;
    // The TCP sockets stay open until the end, after the queue.
    let _tcp = demo_tcp(me)?;
    demo_mq(me)
}

/// First a socketpair, parent to child.
fn demo_socketpair(me: u32) -> Result<()> {
    let (mut a, b) = UnixStream::pair()?;
    let child = fork()?;
    if child == 0 {
        child_run(|| {
            drop(a);
            let n = drain(&b)?;
            if n != 7000 {
                bail!("socketpair: read {n}");
            }
            Ok(())
        });
    }
    drop(b);
    a.write_all(&[1u8; 7000])?;
    drop(a);
    reap(child, "socketpair")?;
    say(format!("socketpair parent {me} child {child}"))
}

/// Then an abstract unix socket: the child connects and sends 3333 bytes.
fn demo_abstract(me: u32) -> Result<()> {
    let name = format!("ipcwatch-demo-{me}");
    let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
    let listener = UnixListener::bind_addr(&addr)?;
    let child = fork()?;
    if child == 0 {
        child_run(|| {
            let mut c = UnixStream::connect_addr(&addr)?;
            c.write_all(&[2u8; 3333])?;
            Ok(())
        });
    }
    let (conn, _) = listener.accept()?;
    let n = drain(&conn)?;
    reap(child, "abstract")?;
    if n != 3333 {
        bail!("abstract socket: read {n}");
    }
    drop(conn);
    drop(listener);
    say(format!("abstract @{name} parent {me} child {child}"))
}

/// Then TCP loopback: the child connects and sends 5555 bytes. Returns
/// the accepted connection and the listener, still open (closed in that
/// order).
fn demo_tcp(me: u32) -> Result<(TcpStream, TcpListener)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let child = fork()?;
    if child == 0 {
        child_run(|| {
            let mut c = TcpStream::connect(("127.0.0.1", port))?;
            c.write_all(&[3u8; 5555])?;
            Ok(())
        });
    }
    let (conn, _) = listener.accept()?;
    let n = drain(&conn)?;
    reap(child, "tcp")?;
    if n != 5555 {
        bail!("tcp: read {n}");
    }
    say(format!("tcp port {port} parent {me} child {child}"))?;
    Ok((conn, listener))
}

/// Last a POSIX queue: the child sends 5 x 100 bytes, the parent receives.
fn demo_mq(me: u32) -> Result<()> {
    let qname = format!("/ipcwatch-demo-{me}");
    mq_unlink(&qname);
    let q = mq_open(&qname, libc::O_CREAT | libc::O_RDWR, 10, 128)?;
    // mq_notify (register, then remove) and mq_getsetattr (mq_getattr).
    // SAFETY: sigevent is plain data; SIGEV_NONE needs nothing else.
    let mut sev: libc::sigevent = unsafe { std::mem::zeroed() };
    sev.sigev_notify = libc::SIGEV_NONE;
    // SAFETY: valid queue descriptor and sigevent.
    if unsafe { libc::mq_notify(q, &sev) } != 0 {
        return Err(os_err("mq_notify"));
    }
    // SAFETY: a null sigevent removes the registration.
    if unsafe { libc::mq_notify(q, std::ptr::null()) } != 0 {
        return Err(os_err("mq_notify"));
    }
    // SAFETY: mq_attr is plain data; valid out-pointer.
    let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
    // SAFETY: valid queue descriptor and out-pointer.
    if unsafe { libc::mq_getattr(q, &mut attr) } != 0 {
        return Err(os_err("mq_getattr"));
    }
    let child = fork()?;
    if child == 0 {
        child_run(|| {
            let wq = mq_open(&qname, libc::O_WRONLY, 0, 0)?;
            for i in 0..5 {
                mq_send(wq, &[4u8; 100], i)?;
            }
            Ok(())
        });
    }
    let mut buf = [0u8; 128];
    for _ in 0..5 {
        let n = mq_receive(q, &mut buf)?;
        if n != 100 {
            bail!("mq: received {n}");
        }
    }
    reap(child, "mq")?;
    // SAFETY: our own queue descriptor, not used afterwards.
    unsafe { libc::mq_close(q) };
    mq_unlink(&qname);
    say(format!("mq {qname} parent {me} child {child}"))
}

fn seqpacket_pair_listener(name: &str) -> Result<(OwnedFd, libc::sockaddr_un, u32)> {
    // SAFETY: plain syscall.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(os_err("socket"));
    }
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_un is plain data.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as u16;
    for (i, b) in name.bytes().enumerate() {
        sa.sun_path[i] = b as libc::c_char;
    }
    let len = (2 + name.len()) as u32;
    Ok((fd, sa, len))
}

fn sockcall(r: i32, what: &str) -> Result<()> {
    if r < 0 {
        return Err(os_err(what));
    }
    Ok(())
}

/// Unix sockets of each type, bound to a path in `dir`: a child sends to
/// its parent `bytes` bytes over stream (3 writes), dgram (3 datagrams)
/// and seqpacket (3 records). Prints "<type> <path> parent P child C".
pub fn unix_types(dir: &str, bytes: usize) -> Result<()> {
    let me = std::process::id();
    let chunk = bytes / 3;
    // stream
    let path = format!("{dir}/stream.sock");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    let child = fork()?;
    if child == 0 {
        child_run(|| {
            let mut c = UnixStream::connect(&path)?;
            for _ in 0..3 {
                c.write_all(&vec![5u8; chunk])?;
            }
            Ok(())
        });
    }
    let (conn, _) = listener.accept()?;
    let n = drain(&conn)?;
    reap(child, "stream")?;
    if n != (chunk * 3) as u64 {
        bail!("stream: read {n}");
    }
    say(format!("stream {path} parent {me} child {child}"))?;

    // dgram: the child sends to the path without connecting.
    let path = format!("{dir}/dgram.sock");
    let _ = std::fs::remove_file(&path);
    let server = UnixDatagram::bind(&path)?;
    let child = fork()?;
    if child == 0 {
        child_run(|| {
            let c = UnixDatagram::unbound()?;
            for _ in 0..3 {
                c.send_to(&vec![6u8; chunk], &path)?;
            }
            Ok(())
        });
    }
    let mut buf = vec![0u8; chunk + 1];
    let mut total = 0;
    for _ in 0..3 {
        total += server.recv(&mut buf)?;
    }
    reap(child, "dgram")?;
    if total != chunk * 3 {
        bail!("dgram: read {total}");
    }
    say(format!("dgram {path} parent {me} child {child}"))?;

    // seqpacket
    let path = format!("{dir}/seqpacket.sock");
    let _ = std::fs::remove_file(&path);
    let (lfd, sa, len) = seqpacket_pair_listener(&path)?;
    // SAFETY: valid descriptor and address.
    sockcall(
        unsafe { libc::bind(lfd.as_raw_fd(), (&raw const sa).cast(), len) },
        "bind",
    )?;
    // SAFETY: valid descriptor.
    sockcall(unsafe { libc::listen(lfd.as_raw_fd(), 4) }, "listen")?;
    let child = fork()?;
    if child == 0 {
        child_run(|| {
            let (cfd, sa, len) = seqpacket_pair_listener(&path)?;
            // SAFETY: valid descriptor and address.
            sockcall(
                unsafe { libc::connect(cfd.as_raw_fd(), (&raw const sa).cast(), len) },
                "connect",
            )?;
            let mut c = std::fs::File::from(cfd);
            for _ in 0..3 {
                c.write_all(&vec![7u8; chunk])?;
            }
            Ok(())
        });
    }
    // SAFETY: valid listening descriptor.
    let cfd = unsafe { libc::accept(lfd.as_raw_fd(), std::ptr::null_mut(), std::ptr::null_mut()) };
    sockcall(cfd, "accept")?;
    // SAFETY: a fresh descriptor we own.
    let conn = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(cfd) });
    let n = drain(&conn)?;
    reap(child, "seqpacket")?;
    if n != (chunk * 3) as u64 {
        bail!("seqpacket: read {n}");
    }
    say(format!("seqpacket {path} parent {me} child {child}"))?;
    Ok(())
}

/// A child passes a pipe's write end to its parent with SCM_RIGHTS (and
/// its credentials with SCM_CREDENTIALS) over a socketpair; the parent
/// writes 10 bytes into the passed descriptor. Prints "fdpass parent P
/// child C sent FD received FD".
pub fn fd_pass() -> Result<()> {
    let me = std::process::id();
    let (a, b) = UnixStream::pair()?;
    let on: libc::c_int = 1;
    // SAFETY: valid descriptor and option value.
    sockcall(
        unsafe {
            libc::setsockopt(
                a.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PASSCRED,
                (&raw const on).cast(),
                4,
            )
        },
        "setsockopt",
    )?;
    let (r, w) = crate::sys::pipe()?;
    let child = fork()?;
    if child == 0 {
        child_run(|| {
            drop(a);
            send_fd(b.as_raw_fd(), w.as_raw_fd())?;
            say(format!("sent {}", w.as_raw_fd()))?;
            Ok(())
        });
    }
    drop(b);
    drop(w);
    let got = recv_fd(a.as_raw_fd())?;
    // SAFETY: the descriptor was just received and is ours.
    let mut passed = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(got) });
    passed.write_all(b"0123456789")?;
    drop(passed);
    reap(child, "fd-pass")?;
    let n = drain(&r)?;
    if n != 10 {
        bail!("fd-pass: read {n} through the passed pipe");
    }
    say(format!("fdpass parent {me} child {child} received {got}"))?;
    Ok(())
}

const CMSG_SPACE_FD: usize = 24;
const CMSG_SPACE_CRED: usize = 32;

fn send_fd(sock: RawFd, fd: RawFd) -> Result<()> {
    let mut data = *b"F";
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut ctl = [0u64; (CMSG_SPACE_FD + CMSG_SPACE_CRED) / 8];
    // SAFETY: msghdr is plain data.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.as_mut_ptr().cast();
    msg.msg_controllen = CMSG_SPACE_FD + CMSG_SPACE_CRED;
    // SAFETY: the control buffer is large enough for both messages; the
    // CMSG macros stay inside it.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(4) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<i32>(), fd);
        let c2 = libc::CMSG_NXTHDR(&msg, c);
        (*c2).cmsg_level = libc::SOL_SOCKET;
        (*c2).cmsg_type = libc::SCM_CREDENTIALS;
        (*c2).cmsg_len = libc::CMSG_LEN(12) as usize;
        let cred = libc::ucred {
            pid: libc::getpid(),
            uid: libc::getuid(),
            gid: libc::getgid(),
        };
        std::ptr::write_unaligned(libc::CMSG_DATA(c2).cast::<libc::ucred>(), cred);
    }
    // SAFETY: msg points to valid buffers.
    if unsafe { libc::sendmsg(sock, &msg, 0) } != 1 {
        return Err(os_err("sendmsg"));
    }
    Ok(())
}

fn recv_fd(sock: RawFd) -> Result<RawFd> {
    let mut data = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut ctl = [0u64; (CMSG_SPACE_FD + CMSG_SPACE_CRED) / 8];
    // SAFETY: msghdr is plain data.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.as_mut_ptr().cast();
    msg.msg_controllen = CMSG_SPACE_FD + CMSG_SPACE_CRED;
    // SAFETY: msg points to valid buffers.
    if unsafe { libc::recvmsg(sock, &mut msg, 0) } != 1 {
        return Err(os_err("recvmsg"));
    }
    // SAFETY: walking the control data the kernel filled, with the CMSG
    // macros that stay inside msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                return Ok(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<i32>()));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    bail!("no SCM_RIGHTS in the message")
}

/// Send `n` datagrams of `size` bytes with one sendmmsg on a connected
/// socket.
fn sendmmsg(sock: &UdpSocket, n: usize, size: usize) -> Result<()> {
    let mut data = vec![8u8; size];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: size,
    };
    // SAFETY: mmsghdr is plain data.
    let mut msgs: Vec<libc::mmsghdr> = (0..n).map(|_| unsafe { std::mem::zeroed() }).collect();
    for m in &mut msgs {
        m.msg_hdr.msg_iov = &mut iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: every header points to a valid iovec.
    let sent = unsafe { libc::sendmmsg(sock.as_raw_fd(), msgs.as_mut_ptr(), n as u32, 0) };
    if sent != n as i32 {
        return Err(os_err("sendmmsg"));
    }
    Ok(())
}

/// Receive `n` datagrams with recvmmsg (as many calls as needed); returns
/// the bytes received.
fn recvmmsg(sock: &UdpSocket, n: usize, size: usize) -> Result<usize> {
    let mut got = 0;
    let mut total = 0;
    let mut bufs = vec![vec![0u8; size + 1]; n];
    // SAFETY: sockaddr_storage is plain data.
    let mut names: Vec<libc::sockaddr_storage> =
        (0..n).map(|_| unsafe { std::mem::zeroed() }).collect();
    while got < n {
        let mut iovs: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        // SAFETY: mmsghdr is plain data.
        let mut msgs: Vec<libc::mmsghdr> = (0..n).map(|_| unsafe { std::mem::zeroed() }).collect();
        for (i, m) in msgs.iter_mut().enumerate() {
            m.msg_hdr.msg_iov = &mut iovs[i];
            m.msg_hdr.msg_iovlen = 1;
            m.msg_hdr.msg_name = (&raw mut names[i]).cast();
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
        }
        let want = (n - got) as u32;
        // SAFETY: every header points to valid buffers.
        let r = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                want,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if r <= 0 {
            return Err(os_err("recvmmsg"));
        }
        total += msgs[..r as usize]
            .iter()
            .map(|m| m.msg_len as usize)
            .sum::<usize>();
        got += r as usize;
    }
    Ok(total)
}

/// UDP over loopback, IPv4 then IPv6: a child sends 3 datagrams of `size`
/// bytes to its parent; over IPv4 with one sendmmsg (connected) received
/// with recvmmsg, over IPv6 with sendto/recvfrom. Prints "udp4 port P
/// parent P child C" (and udp6).
pub fn udp(size: usize) -> Result<()> {
    let me = std::process::id();
    for (tag, bind) in [("udp4", "127.0.0.1:0"), ("udp6", "[::1]:0")] {
        let server = UdpSocket::bind(bind)?;
        let addr = server.local_addr()?;
        let child = fork()?;
        if child == 0 {
            child_run(|| {
                let local = if addr.is_ipv4() {
                    "127.0.0.1:0"
                } else {
                    "[::1]:0"
                };
                let c = UdpSocket::bind(local)?;
                if addr.is_ipv4() {
                    c.connect(addr)?;
                    return sendmmsg(&c, 3, size);
                }
                for _ in 0..3 {
                    c.send_to(&vec![8u8; size], addr)?;
                }
                Ok(())
            });
        }
        let mut total = 0;
        if addr.is_ipv4() {
            total = recvmmsg(&server, 3, size)?;
        } else {
            let mut buf = vec![0u8; size + 1];
            for _ in 0..3 {
                total += server.recv_from(&mut buf)?.0;
            }
        }
        reap(child, tag)?;
        if total != size * 3 {
            bail!("{tag}: received {total}");
        }
        say(format!(
            "{tag} port {} parent {me} child {child}",
            addr.port()
        ))?;
    }
    Ok(())
}

/// A SysV queue: the child sends `count` messages of `size` bytes (type
/// 7), the parent receives them, then removes the queue. Prints "msgq key
/// K id I parent P child C".
pub fn msgq(count: usize, size: usize) -> Result<()> {
    let me = std::process::id();
    let key = 0x1500_0000 | (me as i32 & 0xffff);
    // SAFETY: plain syscall.
    let id = unsafe { libc::msgget(key, libc::IPC_CREAT | 0o600) };
    if id < 0 {
        return Err(os_err("msgget"));
    }
    let child = fork()?;
    let mut buf = vec![0u8; 8 + size];
    if child == 0 {
        child_run(|| {
            // SAFETY: plain syscall.
            let id = unsafe { libc::msgget(key, 0) };
            if id < 0 {
                return Err(os_err("msgget"));
            }
            buf[..8].copy_from_slice(&7i64.to_ne_bytes());
            buf[8..].fill(9);
            for _ in 0..count {
                // SAFETY: buf holds mtype then `size` bytes.
                if unsafe { libc::msgsnd(id, buf.as_ptr().cast(), size, 0) } != 0 {
                    return Err(os_err("msgsnd"));
                }
            }
            Ok(())
        });
    }
    for _ in 0..count {
        // SAFETY: buf holds mtype then `size` bytes.
        let n = unsafe { libc::msgrcv(id, buf.as_mut_ptr().cast(), size, 0, 0) };
        if n != size as isize {
            bail!("msgrcv returned {n}");
        }
    }
    reap(child, "msgq")?;
    // SAFETY: plain syscall.
    unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
    say(format!("msgq key {key} id {id} parent {me} child {child}"))?;
    Ok(())
}

/// A connected socketpair and a child, made now; after a line on standard
/// input the parent writes `bytes` to the child in 1000-byte writes. For a
/// connection that exists before ipcwatch starts. Prints "sock parent P
/// child C inodes A B".
pub fn sock_delayed(bytes: usize, tcp: bool) -> Result<()> {
    if tcp {
        return tcp_delayed(bytes);
    }
    let (a, b) = UnixStream::pair()?;
    let ino = |s: &UnixStream| crate::sys::inode_of(s);
    let (ia, ib) = (ino(&a), ino(&b));
    let banner = move |child| {
        format!(
            "sock parent {} child {child} inodes {ia} {ib}",
            std::process::id()
        )
    };
    connected_then_written(a, b, bytes, banner, "sock-delayed")
}

/// As `sock_delayed`, over a TCP loopback connection. Prints "tcp parent P
/// child C ports SERVER CLIENT".
fn tcp_delayed(bytes: usize) -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let client = TcpStream::connect(("127.0.0.1", port))?;
    let (server, _) = listener.accept()?;
    drop(listener);
    let cport = client.local_addr()?.port();
    let banner = move |child| {
        format!(
            "tcp parent {} child {child} ports {port} {cport}",
            std::process::id()
        )
    };
    connected_then_written(client, server, bytes, banner, "tcp-delayed")
}

/// A connection made now, used later: a child reads `reader` to the end
/// (and checks it got `bytes`); the parent prints `banner(child pid)`,
/// waits for a line on standard input, then writes `bytes` to `writer` in
/// 1000-byte writes.
fn connected_then_written<W: Write, R: Read>(
    mut writer: W,
    reader: R,
    bytes: usize,
    banner: impl FnOnce(i32) -> String,
    what: &str,
) -> Result<()> {
    let child = fork()?;
    if child == 0 {
        child_run(|| {
            drop(writer);
            let n = drain(reader)?;
            if n != bytes as u64 {
                bail!("read {n}");
            }
            Ok(())
        });
    }
    drop(reader);
    say(banner(child))?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    for chunk in vec![9u8; bytes].chunks(1000) {
        writer.write_all(chunk)?;
    }
    drop(writer);
    reap(child, what)
}

/// Round trips of `size` bytes over a unix socketpair. Prints
/// "round-trips/s RATE".
pub fn unix_pingpong(size: usize, iters: u64) -> Result<()> {
    let (mut a, mut b) = UnixStream::pair()?;
    let mut buf = vec![0u8; size];
    let child = fork()?;
    if child == 0 {
        drop(a);
        loop {
            if b.read_exact(&mut buf).is_err() || b.write_all(&buf).is_err() {
                std::process::exit(0);
            }
        }
    }
    drop(b);
    let start = Instant::now();
    for _ in 0..iters {
        a.write_all(&buf)?;
        a.read_exact(&mut buf)?;
    }
    let secs = start.elapsed().as_secs_f64();
    drop(a);
    wait(child)?;
    say(format!("round-trips/s {:.1}", iters as f64 / secs))
}

/// Round trips of `size` bytes over two POSIX queues. Prints
/// "round-trips/s RATE".
pub fn mq_pingpong(size: usize, iters: u64) -> Result<()> {
    let me = std::process::id();
    let (n1, n2) = (format!("/ipcw-ping-{me}"), format!("/ipcw-pong-{me}"));
    mq_unlink(&n1);
    mq_unlink(&n2);
    let size = size.max(1);
    let q1 = mq_open(&n1, libc::O_CREAT | libc::O_RDWR, 4, size as i64)?;
    let q2 = mq_open(&n2, libc::O_CREAT | libc::O_RDWR, 4, size as i64)?;
    mq_unlink(&n1);
    mq_unlink(&n2);
    let mut buf = vec![0u8; size];
    let child = fork()?;
    if child == 0 {
        for _ in 0..iters {
            if mq_receive(q1, &mut buf).is_err() || mq_send(q2, &buf, 0).is_err() {
                std::process::exit(1);
            }
        }
        std::process::exit(0);
    }
    let start = Instant::now();
    for _ in 0..iters {
        mq_send(q1, &buf, 0)?;
        mq_receive(q2, &mut buf)?;
    }
    let secs = start.elapsed().as_secs_f64();
    reap(child, "mq-pingpong").context("mq ping-pong")?;
    say(format!("round-trips/s {:.1}", iters as f64 / secs))
}

/// Listen on the unix stream socket at `path`, accept one connection and
/// read it to the end. Prints "unix-serve <pid> <bytes read>".
pub fn unix_serve(path: &str) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).with_context(|| format!("bind {path}"))?;
    let (mut conn, _) = listener.accept().context("accept")?;
    let n = drain(&mut conn)?;
    say(format!("unix-serve {} {n}", std::process::id()))
}

/// Connect to the unix stream socket at `path` (waiting up to 30 s for it
/// to appear) and write `bytes` bytes. Prints "unix-send <pid> <bytes>".
pub fn unix_send(path: &str, bytes: usize) -> Result<()> {
    let start = Instant::now();
    let mut conn = loop {
        match UnixStream::connect(path) {
            Ok(c) => break c,
            Err(e) if start.elapsed().as_secs() >= 30 => {
                return Err(e).with_context(|| format!("connect {path}"));
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
        }
    };
    conn.write_all(&vec![b'u'; bytes])?;
    drop(conn);
    say(format!("unix-send {} {bytes}", std::process::id()))
}
