//! Function, file and line of code addresses in a live process
//! (blazesym: ELF symbols and DWARF where the binary has them).
//!
//! The binaries are the traced processes' choice: any user can write an
//! ELF file with crafted DWARF and run it. So ipcwatch never parses one
//! itself. It finds the file behind each address (/proc/PID/maps), opens
//! it (only a regular file, at most [`MAX_FILE_BYTES`]) and hands the
//! open descriptors to `ipcwatch symbolize-worker` ([`worker_main`]): a
//! process without any capability, with no_new_privs, limited in memory
//! and CPU time, that ipcwatch kills after [`TIME_LIMIT`]. A crafted file
//! costs at most its missing symbols.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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
/// The worker is killed after this long, for one batch.
pub const TIME_LIMIT: Duration = Duration::from_secs(5);
/// The worker's address space (RLIMIT_AS) and CPU time (RLIMIT_CPU).
pub const MEMORY_LIMIT: u64 = 2 << 30;
const CPU_SECONDS: u64 = 10;
/// The first descriptor of the files handed to the worker (3, 4, ...).
const FIRST_FD: i32 = 3;
/// At most this many files per batch, and bytes of request or answer.
const MAX_FILES: usize = 64;
const MAX_MESSAGE: u64 = 16 << 20;

/// What the worker is asked: for the file at descriptor `FIRST_FD + i`,
/// the file offsets `files[i]`.
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

/// Symbolize `offsets` of the ELF file at `path` in this process: the
/// part that parses what a traced process controls (the ELF file and its
/// DWARF), run by the worker and by the fuzz target. Never panics (a
/// panic of the parser is caught and costs the symbols).
pub fn symbolize_file(path: &Path, offsets: &[u64]) -> Vec<Option<Sym>> {
    let run = || {
        let symbolizer = Symbolizer::new();
        let src = Source::Elf(Elf::new(path));
        let one = |s: Symbolized| match s {
            Symbolized::Sym(s) => Some(Sym {
                name: s.name.to_string(),
                offset: s.offset as u64,
                file: s
                    .code_info
                    .as_ref()
                    .map(|c| c.to_path().display().to_string()),
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
    std::panic::catch_unwind(run).unwrap_or_else(|_| vec![None; offsets.len()])
}

/// `ipcwatch symbolize-worker`: the unprivileged process that parses the
/// binaries (docs/security.md). It drops every capability and sets
/// no_new_privs before it reads anything, runs under the limits its parent
/// set (address space, CPU time, no file writes, no core, no new
/// process), reads a [`Request`] on standard input with the files already
/// open at descriptors 3, 4... and writes the answer (one list of
/// `Option<Sym>` per file) on standard output. It opens nothing by itself
/// but what blazesym looks up next to a binary (split DWARF, debug links).
pub fn worker_main() -> i32 {
    if let Err(e) = drop_all_privileges() {
        eprintln!("ipcwatch symbolize-worker: cannot drop privileges: {e}");
        return 1;
    }
    let mut input = Vec::new();
    if std::io::stdin()
        .take(MAX_MESSAGE)
        .read_to_end(&mut input)
        .is_err()
    {
        return 1;
    }
    let Ok(req) = serde_json::from_slice::<Request>(&input) else {
        eprintln!("ipcwatch symbolize-worker: a bad request");
        return 1;
    };
    let answer: Vec<Vec<Option<Sym>>> = req
        .files
        .iter()
        .take(MAX_FILES)
        .enumerate()
        .map(|(i, offsets)| {
            let path = format!("/proc/self/fd/{}", FIRST_FD + i as i32);
            symbolize_file(Path::new(&path), offsets)
        })
        .collect();
    let mut out = std::io::stdout().lock();
    match serde_json::to_writer(&mut out, &answer)
        .map_err(std::io::Error::from)
        .and_then(|()| out.flush())
    {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// The worker's own drop: no capability in any set (the bounding set too
/// when it still may), no ambient ones, no_new_privs.
fn drop_all_privileges() -> std::io::Result<()> {
    use rustix::thread::{
        CapabilitySet, CapabilitySets, capabilities, clear_ambient_capability_set,
        remove_capability_from_bounding_set, set_capabilities, set_no_new_privs,
    };
    set_no_new_privs(true)?;
    if capabilities(None)?
        .effective
        .contains(CapabilitySet::SETPCAP)
    {
        for bit in 0..64 {
            // Bits the kernel does not know fail: nothing to drop there.
            let _ = remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(1 << bit));
        }
    }
    clear_ambient_capability_set()?;
    set_capabilities(
        None,
        CapabilitySets {
            effective: CapabilitySet::empty(),
            permitted: CapabilitySet::empty(),
            inheritable: CapabilitySet::empty(),
        },
    )?;
    Ok(())
}

/// Run the worker `command` (program and arguments) on `files`, each with
/// the file offsets to symbolize: the answer, one entry per offset, or
/// `None` for every offset when the worker fails, is killed at
/// `time_limit`, or answers something else.
pub fn symbolize_in_worker(
    command: &[OsString],
    files: &[(File, Vec<u64>)],
    time_limit: Duration,
) -> Vec<Vec<Option<Sym>>> {
    let missing = || {
        files
            .iter()
            .map(|(_, o)| vec![None; o.len()])
            .collect::<Vec<_>>()
    };
    match run_worker(command, files, time_limit) {
        Ok(answer)
            if answer.len() == files.len()
                && answer
                    .iter()
                    .zip(files)
                    .all(|(a, (_, o))| a.len() == o.len()) =>
        {
            answer
        }
        Ok(_) => {
            tracing::debug!("the symbolizer answered for other addresses than asked");
            missing()
        }
        Err(e) => {
            tracing::debug!("symbolizer: {e}");
            missing()
        }
    }
}

/// [`symbolize_in_worker`], saying why it has no answer (tests).
pub fn run_worker(
    command: &[OsString],
    files: &[(File, Vec<u64>)],
    time_limit: Duration,
) -> std::io::Result<Vec<Vec<Option<Sym>>>> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let (program, args) = command
        .split_first()
        .ok_or_else(|| std::io::Error::other("no symbolizer command"))?;
    let files = &files[..files.len().min(MAX_FILES)];
    // Copies of the descriptors above any the child could have at 3..,
    // closed at exec; the child puts them at 3, 4... before it.
    let high: Vec<OwnedFd> = files
        .iter()
        .map(|(f, _)| rustix::io::fcntl_dupfd_cloexec(f, 1024))
        .collect::<Result<_, _>>()?;
    let raw: Vec<i32> = high.iter().map(|f| f.as_raw_fd()).collect();
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env_clear();
    // SAFETY: between fork and exec the closure makes only async-signal-safe
    // system calls (dup2, setrlimit) on values computed before the fork.
    unsafe {
        cmd.pre_exec(move || {
            for (i, fd) in raw.iter().enumerate() {
                if libc::dup2(*fd, FIRST_FD + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
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
    // A group of its own: a worker that forked is killed whole.
    cmd.process_group(0);
    let mut child = cmd.spawn()?;
    drop(high);
    let group = child.id() as i32;
    let kill_group = || {
        // SAFETY: a signal to the worker's own process group.
        unsafe { libc::kill(-group, libc::SIGKILL) };
    };
    let request = serde_json::to_vec(&Request {
        files: files.iter().map(|(_, o)| o.clone()).collect(),
    })?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    // The answer is read on a thread of its own, so that a worker that
    // stops reading or writing cannot hold ipcwatch past the time limit.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("symbolizer-io".into())
        .spawn(move || {
            let io = || -> std::io::Result<Vec<u8>> {
                if let Some(mut stdin) = stdin {
                    stdin.write_all(&request)?;
                }
                let mut answer = Vec::new();
                if let Some(out) = stdout {
                    out.take(MAX_MESSAGE).read_to_end(&mut answer)?;
                }
                Ok(answer)
            };
            let _ = tx.send(io());
        })?;
    let deadline = Instant::now() + time_limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            kill_group();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let answer = rx.recv_timeout(
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100)),
    );
    if answer.is_err() {
        // Something the worker left holds its output open.
        kill_group();
    }
    match status {
        None => Err(std::io::Error::other(format!(
            "the symbolizer took longer than {time_limit:?}: killed"
        ))),
        Some(s) if !s.success() => Err(std::io::Error::other(format!("the symbolizer {s}"))),
        Some(_) => {
            let answer =
                answer.map_err(|_| std::io::Error::other("the symbolizer did not answer"))??;
            serde_json::from_slice(&answer).map_err(std::io::Error::other)
        }
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
    /// Frames already found, per process and address.
    cache: RefCell<HashMap<(u32, u64), Frame>>,
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
            cache: RefCell::new(HashMap::new()),
        }
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
                    let Ok(file) = open_binary(pid, p.start, p.end) else {
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
            let answer = symbolize_in_worker(&self.command, &files, TIME_LIMIT);
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

    #[test]
    fn a_worker_that_fails_or_lies_costs_only_the_symbols() {
        let files = vec![(File::open("/proc/self/exe").unwrap(), vec![1, 2])];
        let none = vec![vec![None, None]];
        for script in ["exit 3", "cat >/dev/null; echo garbage", "echo '[[null]]'"] {
            assert_eq!(
                symbolize_in_worker(&sh(script), &files, TIME_LIMIT),
                none,
                "{script}"
            );
        }
        assert_eq!(symbolize_in_worker(&[], &files, TIME_LIMIT), none);
    }

    #[test]
    fn a_worker_past_its_time_is_killed() {
        let files = vec![(File::open("/proc/self/exe").unwrap(), vec![1])];
        let t0 = Instant::now();
        let answer = symbolize_in_worker(&sh("sleep 600"), &files, Duration::from_millis(200));
        assert_eq!(answer, vec![vec![None]]);
        // Killed, not waited for.
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "{:?}",
            t0.elapsed()
        );
    }

    #[test]
    fn the_worker_answers_with_the_limits_and_descriptors_it_is_given() {
        let files = vec![
            (File::open("/proc/self/exe").unwrap(), vec![7]),
            (File::open("/proc/self/exe").unwrap(), vec![8, 9]),
        ];
        // A stand-in worker that answers only when it runs under its
        // limits (address space, CPU seconds, no file writes, no core, no
        // new process) with both files at 3 and 4. awk, exec'd: the limit
        // of no new process leaves the shell no fork.
        let script = format!(
            r#"exec awk -v M={MEMORY_LIMIT} -v C={CPU_SECONDS} '
            /^Max address space/ {{ if ($4 == M) ok++ }}
            /^Max cpu time/ {{ if ($4 == C) ok++ }}
            /^Max file size/ {{ if ($4 == 0) ok++ }}
            /^Max core file size/ {{ if ($5 == 0) ok++ }}
            /^Max processes/ {{ if ($3 == 0) ok++ }}
            END {{ if (ok == 5 && (getline a < "/proc/self/fd/3") > 0 && (getline b < "/proc/self/fd/4") > 0)
                print "[[{{\"name\":\"f\",\"offset\":1,\"file\":null,\"line\":null}}],[null,null]]" }}
            ' /proc/self/limits"#
        );
        let answer = symbolize_in_worker(&sh(&script), &files, TIME_LIMIT);
        let f = Sym {
            name: "f".into(),
            offset: 1,
            file: None,
            line: None,
        };
        assert_eq!(answer, vec![vec![Some(f)], vec![None, None]]);
    }
}
