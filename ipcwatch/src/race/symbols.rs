//! Function, file and line of code addresses in a live process
//! (blazesym: ELF symbols and DWARF where the binary has them).
//!
//! The binaries are the traced processes' choice: any user can write an
//! ELF file with crafted DWARF and run it. So ipcwatch never parses one
//! itself. It finds the file behind each address (/proc/PID/maps), opens
//! it (only a regular file, at most [`MAX_FILE_BYTES`]) and hands the
//! open descriptors to `ipcwatch symbolize-worker` ([`worker_main`]): a
//! process without any capability, with no_new_privs, limited in memory
//! and CPU time, that ipcwatch kills when an answer takes more than
//! [`TIME_LIMIT`] of its CPU time (or [`WALL_LIMIT`] of wall time). A
//! crafted file costs at most its missing symbols.

use crate::kernel::privileges::{confine_to_reading, drop_all};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use blazesym::symbolize::{Input, Symbolized, Symbolizer, source::Elf, source::Source};
use serde::{Deserialize, Serialize};

use crate::race::hotwords::open_mapped_file;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    pub ip: u64,
    pub function: Option<String>,
    /// Address where the function starts, in the process.
    pub function_start: Option<u64>,
    pub file: Option<String>,
    pub line: Option<u32>,
}

impl Frame {
    /// "func (file:line)", "func+0x1c", or the bare address.
    pub fn describe(&self) -> String {
        match (&self.function, &self.file, self.line) {
            (Some(f), Some(file), Some(line)) => format!("{f} ({file}:{line})"),
            (Some(f), _, _) => match self.function_start {
                Some(s) if s != self.ip => format!("{f}+{:#x}", self.ip - s),
                _ => f.clone(),
            },
            _ => format!("{:#x}", self.ip),
        }
    }
}

/// Files bigger than this are not symbolized (a missing symbol instead).
pub const MAX_FILE_BYTES: u64 = 512 << 20;
/// The CPU time a worker may spend on one request; past it the worker is
/// killed (and a new one started for the next batch). CPU time, not wall
/// time: on a busy machine a starved worker is not a hostile file.
pub const TIME_LIMIT: Duration = Duration::from_secs(5);
/// The longest ipcwatch waits for one answer, however little CPU the
/// worker got meanwhile.
pub const WALL_LIMIT: Duration = Duration::from_secs(30);
/// The worker's address space (RLIMIT_AS) and CPU time (RLIMIT_CPU, over
/// its whole life: past it the worker is killed and started again).
pub const MEMORY_LIMIT: u64 = 2 << 30;
const CPU_SECONDS: u64 = 60;
/// The worker's end of its socket.
const SOCKET_FD: i32 = 3;
/// At most this many files per request; the worker keeps at most
/// [`WORKER_FILES`] (then starts afresh); bytes of a message; bytes of a
/// name or path in an answer.
const MAX_FILES: usize = 64;
const WORKER_FILES: usize = 256;
const MAX_MESSAGE: usize = 1 << 20;
const MAX_NAME: usize = 1024;

/// What the worker is asked: for the `i`th descriptor passed with the
/// request, the file offsets `files[i]`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub files: Vec<Vec<u64>>,
}

/// A symbol found for one file offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sym {
    pub name: String,
    /// Bytes from the start of the function.
    pub offset: u64,
    pub file: Option<String>,
    pub line: Option<u32>,
}

/// Symbolize `offsets` of the ELF file at `path` in this process, with a
/// symbolizer of its own: the part that parses what a traced process
/// controls (the ELF file and its DWARF), as the worker runs it; the fuzz
/// target's entry. Never panics (a panic of the parser is caught and
/// costs the symbols).
pub fn symbolize_file(path: &Path, offsets: &[u64]) -> Vec<Option<Sym>> {
    symbolize_with(&Symbolizer::new(), path, offsets)
}

/// [`symbolize_file`] with a symbolizer that caches what it parsed.
fn symbolize_with(symbolizer: &Symbolizer, path: &Path, offsets: &[u64]) -> Vec<Option<Sym>> {
    let run = || {
        let src = Source::Elf(Elf::new(path));
        let one = |s: Symbolized| match s {
            Symbolized::Sym(s) => Some(Sym {
                name: bounded(&s.name),
                offset: s.offset as u64,
                file: s
                    .code_info
                    .as_ref()
                    .map(|c| bounded(&c.to_path().display().to_string())),
                line: s.code_info.as_ref().and_then(|c| c.line),
            }),
            _ => None,
        };
        // One offset blazesym cannot take fails the whole batch: then each
        // offset alone, so that the others keep their names.
        match symbolizer.symbolize(&src, Input::FileOffset(offsets)) {
            Ok(syms) => syms.into_iter().map(one).collect(),
            Err(_) => offsets
                .iter()
                .map(|&o| {
                    symbolizer
                        .symbolize_single(&src, Input::FileOffset(o))
                        .ok()
                        .and_then(one)
                })
                .collect(),
        }
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
        .unwrap_or_else(|_| vec![None; offsets.len()])
}

/// A name or path from a binary, cut to [`MAX_NAME`] bytes.
fn bounded(s: &str) -> String {
    let mut end = s.len().min(MAX_NAME);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// `ipcwatch symbolize-worker`: the unprivileged process that parses the
/// binaries (docs/security.md). It drops every capability and sets
/// no_new_privs before it reads anything, and runs under the limits its
/// parent set (address space, CPU time, no file writes, no core, no new
/// process). At descriptor 3 it finds a SOCK_SEQPACKET socket: each
/// message is a [`Request`] (JSON) with the files it names as passed
/// descriptors; each answer is one message, a list of `Option<Sym>` per
/// file. It keeps the files and what it parsed of them until it holds
/// [`WORKER_FILES`] of them, and ends when its parent closes the socket.
/// It opens nothing by itself but what blazesym looks up next to a binary
/// (split DWARF, debug links).
pub fn worker_main() -> i32 {
    use std::os::fd::{FromRawFd, OwnedFd};
    let fail = |what: &str| {
        eprintln!("ipcwatch symbolize-worker: {what}");
        1
    };
    if let Err(e) = drop_all() {
        return fail(&format!("cannot drop privileges: {e}"));
    }
    if let Err(e) = confine_to_reading() {
        return fail(&format!("cannot confine itself to reading (Landlock): {e}"));
    }
    let is_socket = rustix::fs::fstat(
        // SAFETY: descriptor 3 is only borrowed for the check.
        unsafe { BorrowedFd::borrow_raw(SOCKET_FD) },
    )
    .is_ok_and(|st| {
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Socket
    });
    if !is_socket {
        return fail("no request socket at descriptor 3 (ipcwatch starts this worker itself)");
    }
    // SAFETY: descriptor 3 is a socket that nothing else in this process owns.
    let sock = unsafe { OwnedFd::from_raw_fd(SOCKET_FD) };
    let mut symbolizer = Symbolizer::new();
    // The files received, by identity: the first descriptor of each stays
    // open, so that its path (and blazesym's cache of it) stays valid.
    let mut kept: HashMap<FileId, OwnedFd> = HashMap::new();
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let (request, fds) = match receive(&sock, &mut buf) {
            Ok(Some(m)) => m,
            Ok(None) => return 0,
            Err(e) => return fail(&format!("cannot read a request: {e}")),
        };
        let Ok(req) = serde_json::from_slice::<Request>(request) else {
            return fail("a bad request");
        };
        if req.files.len() != fds.len() {
            return fail("a request whose files and descriptors do not match");
        }
        if kept.len() + fds.len() > WORKER_FILES {
            kept.clear();
            symbolizer = Symbolizer::new();
        }
        let answer: Vec<Vec<Option<Sym>>> = req
            .files
            .iter()
            .zip(fds)
            .map(|(offsets, fd)| {
                let Some(id) = identity(&fd) else {
                    return vec![None; offsets.len()];
                };
                let raw = kept.entry(id).or_insert(fd).as_raw_fd();
                let path = format!("/proc/self/fd/{raw}");
                symbolize_with(&symbolizer, Path::new(&path), offsets)
            })
            .collect();
        let Ok(out) = serde_json::to_vec(&answer) else {
            return fail("cannot encode an answer");
        };
        if let Err(e) = rustix::net::send(&sock, &out, rustix::net::SendFlags::NOSIGNAL) {
            return fail(&format!("cannot answer: {e}"));
        }
    }
}

/// One message and the descriptors that came with it (None: the other end
/// closed).
fn receive<'b>(
    sock: &OwnedFd,
    buf: &'b mut [u8],
) -> std::io::Result<Option<(&'b [u8], Vec<OwnedFd>)>> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
    use std::mem::MaybeUninit;
    let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FILES))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = recvmsg(sock, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)?;
    let mut fds = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = m {
            fds.extend(received);
        }
    }
    if msg.bytes == 0 && fds.is_empty() {
        return Ok(None);
    }
    if msg.flags.contains(rustix::net::ReturnFlags::TRUNC) {
        return Err(std::io::Error::other("a message too long"));
    }
    Ok(Some((&buf[..msg.bytes], fds)))
}

/// A running `ipcwatch symbolize-worker` (or another command speaking its
/// protocol, in tests), started under its limits.
pub struct Worker {
    child: std::process::Child,
    sock: OwnedFd,
}

impl Worker {
    /// Start `command` (program and arguments) with the worker's end of a
    /// SOCK_SEQPACKET pair at descriptor 3.
    pub fn spawn(command: &[OsString]) -> std::io::Result<Worker> {
        use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        let (program, args) = command
            .split_first()
            .ok_or_else(|| std::io::Error::other("no symbolizer command"))?;
        let (ours, theirs) = socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )?;
        let raw = theirs.as_raw_fd();
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .env_clear()
            // A group of its own: a worker that forked is killed whole.
            .process_group(0);
        // SAFETY: between fork and exec the closure makes only
        // async-signal-safe system calls (dup2, setrlimit) on values
        // computed before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(raw, SOCKET_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let limit = |res, n: u64| {
                    let l = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    libc::setrlimit(res, &l)
                };
                limit(libc::RLIMIT_AS, MEMORY_LIMIT);
                limit(libc::RLIMIT_CPU, CPU_SECONDS);
                limit(libc::RLIMIT_FSIZE, 0);
                limit(libc::RLIMIT_CORE, 0);
                limit(libc::RLIMIT_NPROC, 0);
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        drop(theirs);
        Ok(Worker { child, sock: ours })
    }

    /// The CPU time the worker has used (user and system, /proc/PID/stat);
    /// zero once it is gone.
    fn cpu_time(&self) -> Duration {
        let ticks = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .ok()
            .and_then(|stat| {
                // After the command name, utime and stime are the 12th and
                // 13th fields.
                let rest = &stat[stat.rfind(')')? + 1..];
                let mut f = rest.split_whitespace().skip(11);
                let user: u64 = f.next()?.parse().ok()?;
                let system: u64 = f.next()?.parse().ok()?;
                Some(user + system)
            })
            .unwrap_or(0);
        // SAFETY: sysconf has no memory effects.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_millis(ticks * 1000 / hz)
    }

    /// Symbolize `files`, each with its file offsets: one answer per
    /// offset, or an error when the worker does not answer within
    /// `time_limit`, ends, or answers something else (the worker is then
    /// of no further use: drop it).
    pub fn symbolize(
        &mut self,
        files: &[(File, Vec<u64>)],
        time_limit: Duration,
        wall_limit: Duration,
    ) -> std::io::Result<Vec<Vec<Option<Sym>>>> {
        use rustix::net::{
            SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg, sockopt::Timeout,
            sockopt::set_socket_timeout,
        };
        use std::mem::MaybeUninit;
        let files = &files[..files.len().min(MAX_FILES)];
        let request = serde_json::to_vec(&Request {
            files: files.iter().map(|(_, o)| o.clone()).collect(),
        })?;
        let fds: Vec<BorrowedFd<'_>> = files.iter().map(|(f, _)| f.as_fd()).collect();
        let mut space =
            vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(std::io::Error::other("too many files for one request"));
        }
        set_socket_timeout(&self.sock, Timeout::Send, Some(time_limit))?;
        sendmsg(
            &self.sock,
            &[std::io::IoSlice::new(&request)],
            &mut control,
            SendFlags::NOSIGNAL,
        )?;
        // Wait in short steps, looking at the CPU time the worker spent.
        let start = std::time::Instant::now();
        let cpu0 = self.cpu_time();
        set_socket_timeout(&self.sock, Timeout::Recv, Some(Duration::from_millis(100)))?;
        let mut buf = vec![0u8; MAX_MESSAGE];
        let n = loop {
            match rustix::net::recv(&self.sock, &mut buf, rustix::net::RecvFlags::TRUNC) {
                Ok((n, _)) => break n,
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
            let used = self.cpu_time().saturating_sub(cpu0);
            if used > time_limit {
                return Err(std::io::Error::other(format!(
                    "no answer after {used:?} of CPU time"
                )));
            }
            if start.elapsed() > wall_limit {
                return Err(std::io::Error::other(format!(
                    "no answer after {:?}",
                    start.elapsed()
                )));
            }
        };
        if n == 0 {
            return Err(std::io::Error::other("the symbolizer ended"));
        }
        if n > buf.len() {
            return Err(std::io::Error::other("an answer too long"));
        }
        let answer: Vec<Vec<Option<Sym>>> =
            serde_json::from_slice(&buf[..n]).map_err(std::io::Error::other)?;
        if answer.len() != files.len()
            || answer
                .iter()
                .zip(files)
                .any(|(a, (_, o))| a.len() != o.len())
        {
            return Err(std::io::Error::other(
                "the symbolizer answered for other addresses than asked",
            ));
        }
        Ok(answer)
    }
}

impl Drop for Worker {
    /// Kill the worker's whole group and reap it.
    fn drop(&mut self) {
        // SAFETY: a signal to the worker's own process group.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Where an address of a process is: the file mapped there and the
/// offset in it.
struct Place {
    start: u64,
    end: u64,
    file_offset: u64,
}

/// Symbolizes code addresses of live processes by handing the mapped
/// files, already open, to `ipcwatch symbolize-worker`: ipcwatch itself
/// never parses a binary a traced process could have written.
pub struct Symbols {
    /// The worker: this program with `symbolize-worker`.
    command: Vec<OsString>,
    /// The running worker, started at the first address to symbolize.
    worker: RefCell<Option<Worker>>,
    /// Frames already found, per process and address.
    cache: RefCell<HashMap<(u32, u64), Frame>>,
    /// Files a worker failed on when asked for them alone (by identity).
    failed: RefCell<HashSet<FileId>>,
}

/// A file's identity: device, inode, size and modification time.
type FileId = (u64, u64, i64, i64);

fn identity(f: impl AsFd) -> Option<FileId> {
    let st = rustix::fs::fstat(f).ok()?;
    Some((st.st_dev, st.st_ino, st.st_size, st.st_mtime))
}

impl Default for Symbols {
    fn default() -> Self {
        Self::new()
    }
}

impl Symbols {
    pub fn new() -> Self {
        let exe = std::env::current_exe()
            .map(PathBuf::into_os_string)
            .unwrap_or_else(|_| "/proc/self/exe".into());
        Self::with_worker(vec![exe, "symbolize-worker".into()])
    }

    /// Another worker command (tests).
    pub fn with_worker(command: Vec<OsString>) -> Self {
        Symbols {
            command,
            worker: RefCell::new(None),
            cache: RefCell::new(HashMap::new()),
            failed: RefCell::new(HashSet::new()),
        }
    }

    /// The worker's answer for `files`. When it fails (it is then killed,
    /// and started again), each file is asked alone, so that one file
    /// that the worker cannot parse in time costs only its own symbols;
    /// a file that fails alone is not handed to a worker again.
    fn ask(&self, files: &[(File, Vec<u64>)]) -> Vec<Vec<Option<Sym>>> {
        let none = |offsets: &[u64]| vec![None; offsets.len()];
        match self.try_ask(files) {
            Ok(answer) => answer,
            Err(e) if files.len() > 1 => {
                tracing::debug!("symbolizer: {e}; asking for each file alone");
                files
                    .iter()
                    .map(|f| {
                        self.try_ask(std::slice::from_ref(f)).map_or_else(
                            |e| {
                                tracing::debug!("symbolizer: {e}");
                                self.failed.borrow_mut().extend(identity(&f.0));
                                none(&f.1)
                            },
                            |mut a| a.pop().unwrap_or_else(|| none(&f.1)),
                        )
                    })
                    .collect()
            }
            Err(e) => {
                tracing::debug!("symbolizer: {e}");
                if let Some((f, _)) = files.first() {
                    self.failed.borrow_mut().extend(identity(f));
                }
                files.iter().map(|(_, o)| none(o)).collect()
            }
        }
    }

    /// One request to the worker (started if none runs; dropped, so
    /// killed, when it fails).
    fn try_ask(&self, files: &[(File, Vec<u64>)]) -> std::io::Result<Vec<Vec<Option<Sym>>>> {
        let mut worker = self.worker.borrow_mut();
        if worker.is_none() {
            *worker = Some(Worker::spawn(&self.command)?);
        }
        let answer = match worker.as_mut() {
            Some(w) => w.symbolize(files, TIME_LIMIT, WALL_LIMIT),
            None => Err(std::io::Error::other("no symbolizer")),
        };
        if answer.is_err() {
            *worker = None;
        }
        answer
    }

    /// Symbolize `ips` of live process `pid`; unknown addresses keep only
    /// their `ip`.
    pub fn frames(&self, pid: u32, ips: &[u64]) -> Vec<Frame> {
        let mut frames: Vec<Frame> = ips
            .iter()
            .map(|&ip| {
                self.cache
                    .borrow()
                    .get(&(pid, ip))
                    .cloned()
                    .unwrap_or(Frame {
                        ip,
                        ..Frame::default()
                    })
            })
            .collect();
        let todo: Vec<usize> = (0..ips.len())
            .filter(|&i| !self.cache.borrow().contains_key(&(pid, ips[i])))
            .collect();
        if todo.is_empty() {
            return frames;
        }
        // Group the addresses by mapped file.
        let places = places(pid, &todo.iter().map(|&i| ips[i]).collect::<Vec<_>>());
        let mut files: Vec<(File, Vec<u64>)> = Vec::new();
        let mut which: Vec<Vec<usize>> = Vec::new();
        let mut opened: HashMap<(u64, u64), usize> = HashMap::new();
        for (&i, place) in todo.iter().zip(places) {
            let Some(p) = place else { continue };
            let slot = match opened.get(&(p.start, p.end)) {
                Some(&slot) => slot,
                None => {
                    let file = open_binary(pid, p.start, p.end).ok().filter(|f| {
                        identity(f).is_none_or(|id| !self.failed.borrow().contains(&id))
                    });
                    let Some(file) = file else {
                        opened.insert((p.start, p.end), usize::MAX);
                        continue;
                    };
                    files.push((file, Vec::new()));
                    which.push(Vec::new());
                    opened.insert((p.start, p.end), files.len() - 1);
                    files.len() - 1
                }
            };
            if slot == usize::MAX {
                continue;
            }
            files[slot].1.push(p.file_offset);
            which[slot].push(i);
        }
        if !files.is_empty() {
            let answer = self.ask(&files);
            for (syms, idx) in answer.into_iter().zip(which) {
                for (sym, i) in syms.into_iter().zip(idx) {
                    let Some(s) = sym else { continue };
                    let ip = ips[i];
                    frames[i] = Frame {
                        ip,
                        function: Some(s.name),
                        function_start: ip.checked_sub(s.offset),
                        file: s.file,
                        line: s.line,
                    };
                }
            }
        }
        let mut cache = self.cache.borrow_mut();
        if cache.len() > 65_536 {
            cache.clear();
        }
        for &i in &todo {
            cache.insert((pid, ips[i]), frames[i].clone());
        }
        frames
    }
}

/// The mapped file and offset of each address (None: not in a mapped
/// file, or the process is gone).
fn places(pid: u32, ips: &[u64]) -> Vec<Option<Place>> {
    use procfs::process::MMapPath;
    let maps = i32::try_from(pid)
        .ok()
        .and_then(|p| procfs::process::Process::new(p).ok())
        .and_then(|p| p.maps().ok());
    let Some(maps) = maps else {
        return ips.iter().map(|_| None).collect();
    };
    ips.iter()
        .map(|&ip| {
            let m = maps
                .iter()
                .find(|m| m.address.0 <= ip && ip < m.address.1)?;
            matches!(m.pathname, MMapPath::Path(_)).then(|| Place {
                start: m.address.0,
                end: m.address.1,
                file_offset: ip - m.address.0 + m.offset,
            })
        })
        .collect()
}

/// The binary mapped at `start..end` in `pid`, if it is a regular file no
/// bigger than [`MAX_FILE_BYTES`].
fn open_binary(pid: u32, start: u64, end: u64) -> std::io::Result<File> {
    let file = open_mapped_file(pid, start, end)?;
    let len = file.metadata()?.len();
    if len > MAX_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "{len} bytes: over the symbolizer's limit of {MAX_FILE_BYTES}"
        )));
    }
    Ok(file)
}

/// Read `len` bytes of `pid`'s memory at `addr` (root: /proc/PID/mem).
pub fn read_memory(pid: u32, addr: u64, len: usize) -> Option<Vec<u8>> {
    let f = std::fs::File::open(format!("/proc/{pid}/mem")).ok()?;
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, addr).ok()?;
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn a_function_to_find() -> u64 {
        std::hint::black_box(42)
    }

    /// The parsing half, in this process, on this test binary.
    #[test]
    fn symbolizes_a_function_of_this_binary() {
        let ip = a_function_to_find as *const () as u64;
        let me = std::process::id();
        let p = places(me, &[ip])
            .pop()
            .flatten()
            .expect("mapped from a file");
        let file = open_binary(me, p.start, p.end).unwrap();
        let path = format!("/proc/self/fd/{}", file.as_raw_fd());
        let sym = symbolize_file(Path::new(&path), &[p.file_offset])[0]
            .clone()
            .expect("a symbol");
        assert!(sym.name.contains("a_function_to_find"), "{sym:?}");
        assert_eq!(sym.offset, 0);
        assert!(read_memory(me, ip, 4).is_some());
    }

    fn sh(script: &str) -> Vec<OsString> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    fn exe() -> Vec<(File, Vec<u64>)> {
        vec![(File::open("/proc/self/exe").unwrap(), vec![1, 2])]
    }

    #[test]
    fn a_worker_that_fails_or_lies_costs_only_the_symbols() {
        for script in [
            "exit 3",
            "echo garbage >&3; sleep 600",
            "echo '[[null]]' >&3; sleep 600",
        ] {
            let mut w = Worker::spawn(&sh(script)).unwrap();
            assert!(
                w.symbolize(&exe(), TIME_LIMIT, WALL_LIMIT).is_err(),
                "{script}"
            );
            // Through Symbols: the addresses keep no name.
            let s = Symbols::with_worker(sh(script));
            assert_eq!(s.ask(&exe()), vec![vec![None, None]], "{script}");
            assert!(s.worker.borrow().is_none());
        }
        assert!(Worker::spawn(&[]).is_err());
    }

    /// A worker that fails on a request of two files is asked for each
    /// alone; files it failed on alone are not handed to a worker again.
    #[test]
    fn files_a_worker_fails_on_are_asked_alone_then_skipped() {
        // Each start leaves an empty file (the worker may write nothing).
        let dir = tempfile::tempdir().unwrap();
        let s = Symbols::with_worker(sh(&format!(
            ": > {}/start.$$; exit 3",
            dir.path().display()
        )));
        let started = || std::fs::read_dir(dir.path()).unwrap().count();
        let me = std::process::id();
        // An address in this test program and one in the C library: two
        // files in one request.
        let ips = [
            a_function_to_find as *const () as u64,
            libc::getpid as *const () as u64,
        ];
        let frames = s.frames(me, &ips);
        assert!(frames.iter().all(|f| f.function.is_none()), "{frames:?}");
        assert_eq!(started(), 3, "one request of two files, then one each");
        assert_eq!(s.failed.borrow().len(), 2);
        // Other addresses in the same files: no worker is started.
        let frames = s.frames(me, &[ips[0] + 1, ips[1] + 1]);
        assert!(frames.iter().all(|f| f.function.is_none()), "{frames:?}");
        assert_eq!(started(), 3);
    }

    #[test]
    fn a_worker_past_its_time_is_killed() {
        let ms = Duration::from_millis;
        // Past its wall time, idle (killed with the sleep it started, not
        // waited for).
        let t0 = std::time::Instant::now();
        let mut w = Worker::spawn(&sh("sleep 600")).unwrap();
        assert!(w.symbolize(&exe(), ms(200), ms(300)).is_err());
        drop(w);
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "{:?}",
            t0.elapsed()
        );
        // Past its CPU time, long before its wall time.
        let t0 = std::time::Instant::now();
        let mut w = Worker::spawn(&sh("while :; do :; done")).unwrap();
        let e = w
            .symbolize(&exe(), ms(300), Duration::from_secs(120))
            .unwrap_err();
        assert!(e.to_string().contains("CPU time"), "{e}");
        drop(w);
        assert!(
            t0.elapsed() < Duration::from_secs(100),
            "{:?}",
            t0.elapsed()
        );
        // Slow but idle (a starved worker): it is waited for.
        let mut w = Worker::spawn(&sh("sleep 1; echo '[[null,null]]' >&3; sleep 600")).unwrap();
        assert_eq!(
            w.symbolize(&exe(), ms(200), Duration::from_secs(60))
                .unwrap(),
            vec![vec![None, None]]
        );
    }

    #[test]
    fn the_worker_runs_under_its_limits() {
        // A stand-in worker that answers only when it runs under its
        // limits (address space, CPU seconds, no file writes, no core, no
        // new process) with its socket at 3. awk, exec'd: the limit of no
        // new process leaves the shell no fork. It then spins until it is
        // killed: a worker that ends with the request unread resets the
        // socket.
        let script = format!(
            r#"exec awk -v M={MEMORY_LIMIT} -v C={CPU_SECONDS} '
            /^Max address space/ {{ if ($4 == M) ok++ }}
            /^Max cpu time/ {{ if ($4 == C) ok++ }}
            /^Max file size/ {{ if ($4 == 0) ok++ }}
            /^Max core file size/ {{ if ($5 == 0) ok++ }}
            /^Max processes/ {{ if ($3 == 0) ok++ }}
            END {{ if (ok == 5) print "[[{{\"name\":\"f\",\"offset\":1,\"file\":null,\"line\":null}},null]]";
                   fflush(); while (1) {{}} }}
            ' /proc/self/limits >&3"#
        );
        let mut w = Worker::spawn(&sh(&script)).unwrap();
        let f = Sym {
            name: "f".into(),
            offset: 1,
            file: None,
            line: None,
        };
        assert_eq!(
            w.symbolize(&exe(), TIME_LIMIT, WALL_LIMIT).unwrap(),
            vec![vec![Some(f), None]]
        );
    }
}
