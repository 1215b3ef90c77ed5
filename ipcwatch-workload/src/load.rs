//! Load workloads for `cargo xtask bench-loss` and `bench-memory`: a paced
//! event generator, and many live channels held by many processes.
//!
//! Both count what the kernel side emits for them: one `io` event per
//! read or write that moved at least one byte (never for 0 bytes or an
//! error, and no span event for writes of PIPE_BUF bytes or less).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::sys::{child_run, fork, os_err, pipe, wait};

/// Quiet time around the measured phase, so that set-up and tear-down
/// events (forks, closes, exits) find the ring buffer drained and are
/// never the ones lost: every loss then falls on an `io` event the
/// generator counted.
const SETTLE: Duration = Duration::from_millis(20);
const QUIET: Duration = Duration::from_millis(1000);

/// One record on the result pipe: (role, syscalls that moved data, ns
/// from the start to the end of the child's measured phase).
const RESULT_BYTES: usize = 24;

fn socketpair_fds() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: valid out array.
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) } != 0 {
        return Err(os_err("socketpair"));
    }
    // SAFETY: fresh descriptors we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// write(2) until `buf` is out; returns the syscalls that moved bytes
/// (each one a traced `io` event).
fn write_counted(fd: RawFd, mut buf: &[u8]) -> Result<u64> {
    let mut calls = 0;
    while !buf.is_empty() {
        // SAFETY: `buf` is valid for its length.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            bail!("write: {e}");
        }
        calls += 1;
        buf = &buf[n as usize..];
    }
    Ok(calls)
}

/// read(2) until `buf` is full or EOF; returns (syscalls that moved
/// bytes, bytes read).
fn read_counted(fd: RawFd, buf: &mut [u8]) -> Result<(u64, usize)> {
    let (mut calls, mut got) = (0, 0);
    while got < buf.len() {
        // SAFETY: the rest of `buf` is valid for writing.
        let n = unsafe { libc::read(fd, buf[got..].as_mut_ptr().cast(), buf.len() - got) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            bail!("read: {e}");
        }
        if n == 0 {
            break;
        }
        calls += 1;
        got += n as usize;
    }
    Ok((calls, got))
}

/// Sleep until `t` (clock_nanosleep, which ipcwatch does not trace).
fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

fn send_result(fd: RawFd, role: u64, calls: u64, end_ns: u64) -> Result<()> {
    let mut rec = [0u8; RESULT_BYTES];
    rec[..8].copy_from_slice(&role.to_le_bytes());
    rec[8..16].copy_from_slice(&calls.to_le_bytes());
    rec[16..].copy_from_slice(&end_ns.to_le_bytes());
    write_counted(fd, &rec)?;
    Ok(())
}

/// Reader `i` of `paced`: read `size`-byte messages from `fd` to EOF,
/// then report its read calls on `res`.
fn paced_reader(i: usize, fd: RawFd, res: RawFd, size: usize, start: Instant) -> Result<()> {
    let mut buf = vec![0u8; size];
    let mut calls = 0;
    loop {
        let (c, got) = read_counted(fd, &mut buf)?;
        calls += c;
        if got < size {
            if got != 0 {
                bail!("reader {i}: a partial message of {got} bytes at EOF");
            }
            break;
        }
    }
    let end_ns = Instant::now().saturating_duration_since(start).as_nanos() as u64;
    std::thread::sleep(SETTLE * 2);
    send_result(res, 2 * i as u64 + 1, calls, end_ns)
}

/// The measured phase of `paced` and each writer's messages per second.
struct Pace {
    start: Instant,
    end: Instant,
    per_sec: f64,
}

/// Writer `i` of `paced`: `size`-byte messages to `fd` at the pace, then
/// its write calls reported on `res`.
fn paced_writer(i: usize, fd: RawFd, res: RawFd, size: usize, pace: &Pace) -> Result<()> {
    let msg = vec![b'p'; size];
    let (start, end) = (pace.start, pace.end);
    let mut done = 0u64;
    let mut calls = 0;
    sleep_until(start);
    let mut tick = start;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let due = (pace.per_sec * (now - start).as_secs_f64()) as u64;
        while done < due {
            calls += write_counted(fd, &msg)?;
            done += 1;
            // Behind the pace: catch up, but not past the end.
            if done.is_multiple_of(1024) && Instant::now() >= end {
                break;
            }
        }
        tick += Duration::from_millis(1);
        sleep_until(tick.min(end));
    }
    let end_ns = Instant::now().saturating_duration_since(start).as_nanos() as u64;
    // Let ipcwatch drain its ring buffer before the result and the exit
    // (whose events are then not lost).
    std::thread::sleep(QUIET);
    send_result(res, 2 * i as u64, calls, end_ns)
}

/// `ipcwatch-workload paced`: `procs` writer processes, each with its own
/// pipe and reader process, write `size`-byte messages at a paced rate for
/// `secs`; every message is one write and one read (the reader reads
/// exactly `size` bytes at a time), so the traced `io` event rate is
/// twice the message rate. Writers catch up once per 1 ms tick with a
/// batch of writes (the pipe holds up to 64 KiB, so the reader drains it
/// in parallel on the other CPU).
///
/// Prints one line, `paced offered=R achieved=A data_events=D
/// control_events=C io_events=D+C secs=T procs=P size=S`: `data_events`
/// the reads and writes of messages, `control_events` those of the result
/// pipe (each child reports its counts on it), `io_events` every `io`
/// event the workload made, `achieved` the data events per second of the
/// measured phase.
pub fn paced(rate: u64, secs: f64, procs: usize, size: usize) -> Result<()> {
    if procs == 0 || size == 0 || size > libc::PIPE_BUF || rate == 0 || secs <= 0.0 {
        bail!("paced: --procs, --rate and --secs must be positive, --size between 1 and 4096");
    }
    let per_writer = rate as f64 / 2.0 / procs as f64; // messages per second
    let (res_r, res_w) = pipe()?;
    // The measured phase starts once every child is forked.
    let start = Instant::now() + SETTLE * (2 * procs as u32 + 2) + QUIET / 4;
    let end = start + Duration::from_secs_f64(secs);
    let mut children = Vec::new();
    for i in 0..procs {
        let (r, w) = pipe()?;
        std::thread::sleep(SETTLE);
        let reader = fork()?;
        if reader == 0 {
            drop(w);
            child_run(|| paced_reader(i, r.as_raw_fd(), res_w.as_raw_fd(), size, start));
        }
        children.push(reader);
        std::thread::sleep(SETTLE);
        let writer = fork()?;
        if writer == 0 {
            let pace = Pace {
                start,
                end,
                per_sec: per_writer,
            };
            // Exit without closing: the reader sees EOF at exit.
            child_run(|| paced_writer(i, w.as_raw_fd(), res_w.as_raw_fd(), size, &pace));
        }
        children.push(writer);
        // The writer's end lives on in the writer only, so that its exit
        // is the reader's EOF.
        drop(w);
        drop(r);
    }
    drop(res_w);
    let (mut data, mut control, mut end_ns) = (0u64, 0u64, 0u64);
    let mut rec = [0u8; RESULT_BYTES];
    for _ in 0..2 * procs {
        let (calls, got) = read_counted(res_r.as_raw_fd(), &mut rec)?;
        if got != RESULT_BYTES {
            bail!("a child exited without reporting its counts");
        }
        control += calls + 1; // this read and the child's write
        data += u64::from_le_bytes(rec[8..16].try_into()?);
        // The writers' ends mark the end of the measured phase.
        if u64::from_le_bytes(rec[..8].try_into()?) % 2 == 0 {
            end_ns = end_ns.max(u64::from_le_bytes(rec[16..].try_into()?));
        }
    }
    for pid in children {
        if wait(pid)? != 0 {
            bail!("a paced child failed");
        }
    }
    let measured = (end_ns as f64 / 1e9).max(1e-9);
    println!(
        "paced offered={rate} achieved={:.0} data_events={data} control_events={control} io_events={} secs={measured:.3} procs={procs} size={size}",
        data as f64 / measured,
        data + control
    );
    Ok(())
}

/// Lift the soft limit on open descriptors to the hard limit.
fn raise_nofile() -> Result<u64> {
    // SAFETY: rlimit is plain data, filled by getrlimit.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: valid out pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(os_err("getrlimit"));
    }
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: valid in pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(os_err("setrlimit"));
    }
    Ok(lim.rlim_cur)
}

/// One channel between a group's two processes: (the leader's end, the
/// partner's end). Pipes are written by the leader.
fn make_channel(j: usize) -> Result<(OwnedFd, OwnedFd)> {
    if j.is_multiple_of(2) {
        let (r, w) = pipe()?;
        Ok((w.into(), r.into()))
    } else {
        socketpair_fds()
    }
}

/// `ipcwatch-workload many-channels`: `procs` processes (`procs / 2`
/// groups of a leader and its partner) hold `channels` live channels
/// between them, half pipes and half unix socketpairs, each written once
/// by the leader and read once by the partner. Prints `many-channels
/// ready procs=P channels=C` when they all are, holds them for `hold`
/// while the leaders write one byte to their channels in turn (`rate`
/// messages per second in all, each one write and one read), then every
/// process exits. Prints `many-channels done messages=N` at the end.
pub fn many_channels(procs: usize, channels: usize, hold: f64, rate: f64) -> Result<()> {
    if procs < 2 || !procs.is_multiple_of(2) || channels < procs / 2 {
        bail!("many-channels: --procs must be even and --channels at least --procs / 2");
    }
    let nofile = raise_nofile()?;
    let groups = procs / 2;
    let per_group = channels.div_ceil(groups);
    if (per_group * 2 + 16) as u64 > nofile {
        bail!(
            "many-channels: {per_group} channels per process need more than {nofile} descriptors"
        );
    }
    let period = Duration::from_secs_f64(groups as f64 / rate.max(1e-3));
    let (stop_r, stop_w) = pipe()?;
    let (ready_r, ready_w) = pipe()?;
    let (done_r, done_w) = pipe()?;
    let stop_w_fd = stop_w.as_raw_fd();
    let mut leaders = Vec::new();
    for g in 0..groups {
        let mine: Vec<usize> = (g..channels).step_by(groups).collect();
        let leader = fork()?;
        if leader == 0 {
            // SAFETY: closing our copy of the stop pipe's write end, so
            // that the parent's close is our EOF.
            unsafe { libc::close(stop_w_fd) };
            child_run(|| {
                group(
                    &mine,
                    stop_r.as_raw_fd(),
                    ready_w.as_raw_fd(),
                    done_w.as_raw_fd(),
                    period,
                )
            });
        }
        leaders.push(leader);
        // Set-up in steps, so that it does not flood the ring buffer.
        std::thread::sleep(Duration::from_micros(500));
    }
    drop(ready_w);
    drop(done_w);
    let mut buf = vec![0u8; groups];
    let (_, got) = read_counted(ready_r.as_raw_fd(), &mut buf)?;
    if got != groups {
        bail!("many-channels: only {got} of {groups} groups got ready");
    }
    println!("many-channels ready procs={procs} channels={channels}");
    use std::io::Write as _;
    std::io::stdout().flush()?;
    std::thread::sleep(Duration::from_secs_f64(hold));
    drop(stop_w);
    let mut messages = 0u64;
    let mut rec = [0u8; 8];
    for _ in 0..groups {
        let (_, got) = read_counted(done_r.as_raw_fd(), &mut rec)?;
        if got != 8 {
            bail!("many-channels: a group exited without reporting");
        }
        messages += u64::from_le_bytes(rec);
    }
    let mut failed = 0;
    for pid in leaders {
        if wait(pid)? != 0 {
            failed += 1;
        }
    }
    if failed > 0 {
        bail!("many-channels: {failed} groups failed");
    }
    println!("many-channels done messages={messages}");
    Ok(())
}

/// A leader: make its channels, fork its partner, write each channel
/// once, then one channel every `period` until the stop pipe closes.
fn group(mine: &[usize], stop: RawFd, ready: RawFd, done: RawFd, period: Duration) -> Result<()> {
    let mut mine_ends = Vec::with_capacity(mine.len());
    let mut theirs = Vec::with_capacity(mine.len());
    for &j in mine {
        let (a, b) = make_channel(j)?;
        mine_ends.push(a);
        theirs.push(b);
    }
    let partner = fork()?;
    if partner == 0 {
        drop(mine_ends);
        child_run(|| {
            let mut byte = [0u8; 1];
            let mut k = 0usize;
            loop {
                let (_, got) = read_counted(theirs[k % theirs.len()].as_raw_fd(), &mut byte)?;
                if got == 0 {
                    return Ok(());
                }
                k += 1;
                if k == theirs.len() {
                    // Every channel used from both ends.
                    write_counted(ready, &[1])?;
                }
            }
        });
    }
    drop(theirs);
    let mut sent = 0u64;
    for end in &mine_ends {
        write_counted(end.as_raw_fd(), b"m")?;
        sent += 1;
    }
    let mut k = 0usize;
    loop {
        let mut pfd = libc::pollfd {
            fd: stop,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, period.as_millis().max(1) as i32) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            bail!("poll: {e}");
        }
        if n > 0 {
            break;
        }
        write_counted(mine_ends[k % mine_ends.len()].as_raw_fd(), b"m")?;
        sent += 1;
        k += 1;
    }
    // Closing our ends is the partner's EOF.
    drop(mine_ends);
    if wait(partner)? != 0 {
        bail!("a partner failed");
    }
    write_counted(done, &sent.to_le_bytes())?;
    Ok(())
}
