//! Traced processes with hostile names (issue 20): every name ipcwatch
//! shows is chosen here to attack whoever reads its output.
//!
//! Two children: the first names itself with terminal escape sequences
//! (`PR_SET_NAME`), the second takes the name of another program
//! (`systemd`). The first writes 5 bytes into two FIFOs and one message
//! into a POSIX queue, the second reads them:
//! - a FIFO whose name has a quote, a newline, an escape sequence and a
//!   byte that is not UTF-8;
//! - a FIFO at the end of a path of about 4 KiB;
//! - a queue whose name has an escape sequence and a bidirectional override.
//!
//! Then both race on a counter in a shared anonymous page for SECS, so the
//! race detector reports a finding that names them. Prints "names <pid of
//! the first> <pid of the second>".

use std::ffi::{CString, OsStr};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::race::{COUNTER_OFF, bump_counter_unsynchronized};
use crate::sys::{child_run, fork, os_err, wait};

/// The first child's name: sets the terminal's title, clears the screen.
pub const EVIL_COMM: &[u8] = b"\x1b]0;PWNED\x07\x1b[2J";
/// The second child's name: another program's.
pub const SPOOF_COMM: &[u8] = b"systemd";
/// The FIFO's file name, under DIR.
pub const FIFO_NAME: &[u8] = b"q\"uote\nline\x1b[2J\xff";
/// The queue's name.
pub const QUEUE_NAME: &str = "/ipcwatch-names-\x1b[2J\u{202e}q";

fn set_name(name: &[u8]) -> Result<()> {
    let name = CString::new(name)?;
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    if unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) } != 0 {
        bail!(os_err("prctl(PR_SET_NAME)"));
    }
    Ok(())
}

fn mkfifo(path: &Path) -> Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: a NUL-terminated path; result checked.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        bail!(os_err("mkfifo"));
    }
    Ok(())
}

/// DIR/aaa…/aaa…/fifo, about `len` bytes long (components of 250 bytes).
fn long_path(dir: &Path, len: usize) -> Result<PathBuf> {
    let mut p = dir.to_path_buf();
    while p.as_os_str().len() + 251 + 5 < len {
        p.push("a".repeat(250));
        std::fs::create_dir(&p).with_context(|| format!("mkdir {}", p.display()))?;
    }
    let fill = len - 6 - p.as_os_str().len();
    p.push("b".repeat(fill.max(1)));
    std::fs::create_dir(&p)?;
    p.push("fifo");
    Ok(p)
}

fn queue(flags: i32) -> Result<libc::mqd_t> {
    let name = CString::new(QUEUE_NAME)?;
    // SAFETY: mq_attr is plain integers; zero is a valid value.
    let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
    attr.mq_maxmsg = 4;
    attr.mq_msgsize = 64;
    // SAFETY: a NUL-terminated name and a valid attr; result checked.
    let q = unsafe { libc::mq_open(name.as_ptr(), flags, 0o600 as libc::c_uint, &attr) };
    if q < 0 {
        bail!(os_err("mq_open"));
    }
    Ok(q)
}

fn race(counter: *mut u64, secs: f64) {
    let until = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < until {
        for _ in 0..1000 {
            bump_counter_unsynchronized(counter);
        }
    }
}

pub fn hostile_names(dir: &str, secs: f64) -> Result<()> {
    let dir = Path::new(dir);
    let short = dir.join(OsStr::from_bytes(FIFO_NAME));
    let long = long_path(dir, 4000)?;
    mkfifo(&short)?;
    mkfifo(&long)?;
    // SAFETY: a new shared anonymous page; result checked.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if page == libc::MAP_FAILED {
        bail!(os_err("mmap"));
    }
    // SAFETY: COUNTER_OFF is inside the page.
    let counter = unsafe { (page as *mut u8).add(COUNTER_OFF) } as *mut u64;
    let q = queue(libc::O_CREAT | libc::O_RDWR)?;
    let writer = fork()?;
    if writer == 0 {
        child_run(|| {
            set_name(EVIL_COMM)?;
            for p in [&short, &long] {
                OpenOptions::new()
                    .write(true)
                    .open(p)?
                    .write_all(b"hello")?;
            }
            // SAFETY: a valid queue and buffer.
            if unsafe { libc::mq_send(q, b"hello".as_ptr().cast(), 5, 0) } != 0 {
                bail!(os_err("mq_send"));
            }
            race(counter, secs);
            Ok(())
        });
    }
    let reader = fork()?;
    if reader == 0 {
        child_run(|| {
            set_name(SPOOF_COMM)?;
            for p in [&short, &long] {
                let mut got = Vec::new();
                File::open(p)?.read_to_end(&mut got)?;
                if got != b"hello" {
                    bail!("read {got:?} from a FIFO");
                }
            }
            let mut buf = [0u8; 64];
            // SAFETY: a valid queue and a buffer of the queue's message size.
            let n =
                unsafe { libc::mq_receive(q, buf.as_mut_ptr().cast(), 64, std::ptr::null_mut()) };
            if n != 5 {
                bail!(os_err("mq_receive"));
            }
            race(counter, secs);
            Ok(())
        });
    }
    println!("names {writer} {reader}");
    let statuses = [wait(writer)?, wait(reader)?];
    let name = CString::new(QUEUE_NAME)?;
    // SAFETY: a NUL-terminated name.
    unsafe { libc::mq_unlink(name.as_ptr()) };
    if statuses != [0, 0] {
        bail!("the children exited with {statuses:?}");
    }
    Ok(())
}
