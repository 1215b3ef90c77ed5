//! Pipes and FIFOs with known traffic: a parent and its child, a
//! ping-pong, a pipe made before ipcwatch starts, FIFO ends, descriptor
//! reuse.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::sys::{drain, fork, inode_of, pipe, wait};

/// A parent writes `count` writes of `size` bytes to a child through a
/// pipe. Prints "pipe <inode> parent <pid> child <pid>".
pub fn pipe_parent_child(count: usize, size: usize) -> Result<()> {
    let (r, mut w) = pipe()?;
    let ino = inode_of(&r);
    let child = fork()?;
    if child == 0 {
        drop(w);
        let n = drain(&r).unwrap_or(0);
        std::process::exit(if n == (count * size) as u64 { 0 } else { 1 });
    }
    drop(r);
    println!("pipe {ino} parent {} child {child}", std::process::id());
    std::io::stdout().flush()?;
    let buf = vec![b'x'; size];
    for _ in 0..count {
        w.write_all(&buf)?;
    }
    drop(w);
    let code = wait(child)?;
    if code != 0 {
        bail!("the child did not read {} bytes", count * size);
    }
    Ok(())
}

/// Ping-pong over two pipes between a parent and a child, `iters` round
/// trips of `size` bytes. Prints "round-trips/s <rate>".
pub fn pingpong(size: usize, iters: u64) -> Result<()> {
    let (r1, mut w1) = pipe()?;
    let (mut r2, w2) = pipe()?;
    let child = fork()?;
    let mut buf = vec![0u8; size];
    if child == 0 {
        drop(w1);
        drop(r2);
        let (mut r1, mut w2) = (r1, w2);
        loop {
            if r1.read_exact(&mut buf).is_err() {
                std::process::exit(0);
            }
            if w2.write_all(&buf).is_err() {
                std::process::exit(1);
            }
        }
    }
    drop(r1);
    drop(w2);
    let start = Instant::now();
    for _ in 0..iters {
        w1.write_all(&buf)?;
        r2.read_exact(&mut buf)?;
    }
    let secs = start.elapsed().as_secs_f64();
    drop(w1);
    wait(child)?;
    println!("round-trips/s {:.1}", iters as f64 / secs);
    Ok(())
}

/// Create a pipe and a child, print "pipe <inode> parent <pid> child
/// <pid>", wait `delay` (or, without one, for a line on standard input),
/// then write `bytes` to the child in 1000-byte writes. For a pipe that
/// exists before ipcwatch starts.
pub fn pipe_delayed(delay: Option<Duration>, bytes: usize) -> Result<()> {
    let (r, mut w) = pipe()?;
    let ino = inode_of(&r);
    let child = fork()?;
    if child == 0 {
        drop(w);
        let n = drain(&r).unwrap_or(0);
        std::process::exit(if n == bytes as u64 { 0 } else { 1 });
    }
    drop(r);
    println!("pipe {ino} parent {} child {child}", std::process::id());
    std::io::stdout().flush()?;
    match delay {
        Some(d) => std::thread::sleep(d),
        None => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
        }
    }
    let buf = vec![b'y'; bytes];
    for chunk in buf.chunks(1000) {
        w.write_all(chunk)?;
    }
    drop(w);
    if wait(child)? != 0 {
        bail!("the child did not read {bytes} bytes");
    }
    Ok(())
}

/// Open a FIFO for writing and write `bytes` in 512-byte writes.
pub fn fifo_write(path: &str, bytes: usize) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("opening {path}"))?;
    let buf = vec![b'z'; bytes];
    for chunk in buf.chunks(512) {
        f.write_all(chunk)?;
    }
    Ok(())
}

/// Open a FIFO for reading and read to EOF; prints "read <bytes>".
pub fn fifo_read(path: &str) -> Result<()> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {path}"))?;
    let n = drain(f)?;
    println!("read {n}");
    Ok(())
}

/// Reuse descriptor numbers: pipe A, write 100 bytes, close it; pipe B
/// (same descriptor numbers), write 200 bytes. Prints both inodes:
/// "reuse <inode A> <inode B> fds <r> <w>".
pub fn fd_reuse() -> Result<()> {
    let (ra, mut wa) = pipe()?;
    let (ia, fds_a) = (inode_of(&ra), (ra.as_raw_fd(), wa.as_raw_fd()));
    wa.write_all(&[1u8; 100])?;
    drop(ra);
    drop(wa);
    let (rb, mut wb) = pipe()?;
    let (ib, fds_b) = (inode_of(&rb), (rb.as_raw_fd(), wb.as_raw_fd()));
    if fds_a != fds_b {
        bail!("the kernel did not reuse the descriptors: {fds_a:?} then {fds_b:?}");
    }
    wb.write_all(&[2u8; 200])?;
    println!("reuse {ia} {ib} fds {} {}", fds_b.0, fds_b.1);
    Ok(())
}
