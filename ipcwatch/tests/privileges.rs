//! Root integration tests (issue 20): least privilege. After start-up a
//! recording keeps exactly the capabilities `ipcwatch doctor` lists (in its
//! effective, permitted and bounding sets) with no_new_privs set, in every
//! thread; what it writes is created 0600 and never through a symbolic link.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// CAP_KILL (5), CAP_DAC_READ_SEARCH (2), CAP_SYS_PTRACE (19),
/// CAP_PERFMON (38), CAP_BPF (39), CAP_CHECKPOINT_RESTORE (40).
const KEPT: &str = "000001c000080024";

fn field<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name} in {status}"))
}

/// With --lock-probes, CAP_SYS_ADMIN (21) too: its uprobes are attached
/// while recording.
const KEPT_LOCK_PROBES: &str = "000001c000280024";

#[test]
fn a_recording_keeps_only_the_capabilities_it_needs() {
    require_root();
    check_recording(&[], KEPT);
    check_recording(&["--lock-probes"], KEPT_LOCK_PROBES);
    // The thread that serves /metrics (the one that reads the network)
    // keeps nothing.
    check_recording(&["--metrics", "127.0.0.1:0"], KEPT);
}

/// Record `-- sh` (blocked on a FIFO) with `args`: every thread keeps
/// exactly `kept`, but the metrics server's thread (with `--metrics`),
/// which keeps none.
fn check_recording(args: &[&str], kept: &str) {
    let dir = temp_dir();
    let trace = dir.path().join("t.ndjson");
    let fifo = dir.path().join("hold");
    mkfifo(&fifo);
    // The command blocks on the FIFO until the test has read the sets.
    let child = Command::new(ipcwatch())
        .arg("record")
        .arg("-o")
        .arg(&trace)
        .args(args)
        .args(["--", "sh", "-c", "read x < \"$0\"; echo done"])
        .arg(&fifo)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let status_of = |task: &str| std::fs::read_to_string(format!("/proc/{pid}/task/{task}/status"));
    // The drop happens once the command is forked and released: wait for
    // the permitted set to change (or ipcwatch to end).
    let t0 = Instant::now();
    loop {
        let s = status_of(&pid.to_string()).unwrap_or_default();
        if s.is_empty() || field(&s, "CapPrm") == kept {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "ipcwatch kept {} after 30 s:\n{s}",
            field(&s, "CapPrm")
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let tasks: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("ipcwatch is running")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!tasks.is_empty());
    let mut servers = 0;
    for task in &tasks {
        let s = status_of(task).unwrap();
        let want = if field(&s, "Name") == "metrics" {
            servers += 1;
            "0000000000000000"
        } else {
            kept
        };
        for set in ["CapEff", "CapPrm", "CapBnd"] {
            assert_eq!(field(&s, set), want, "task {task}, {set}");
        }
        assert_eq!(field(&s, "CapInh"), "0000000000000000", "task {task}");
        assert_eq!(field(&s, "CapAmb"), "0000000000000000", "task {task}");
        assert_eq!(field(&s, "NoNewPrivs"), "1", "task {task}");
    }
    assert_eq!(
        servers,
        usize::from(args.contains(&"--metrics")),
        "{tasks:?}"
    );
    // `doctor` names the same set, and CAP_SYS_ADMIN for --lock-probes.
    let doctor = Command::new(ipcwatch())
        .args(["doctor", "--format", "json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&doctor.stdout).unwrap();
    let names: Vec<&str> = report["kept_capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "CAP_BPF",
            "CAP_PERFMON",
            "CAP_SYS_PTRACE",
            "CAP_DAC_READ_SEARCH",
            "CAP_CHECKPOINT_RESTORE",
            "CAP_KILL",
            "CAP_SYS_ADMIN"
        ]
    );
    assert!(
        report["kept_capabilities"][6]["why"]
            .as_str()
            .unwrap()
            .starts_with("only with --lock-probes"),
        "{report}"
    );
    // Let the command end; the recording finishes normally.
    std::fs::write(&fifo, "go\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = parse(&trace);
    assert_eq!(lines.last().unwrap()["reason"], "command-exited");
    let mode = std::fs::metadata(&trace).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o600, "{mode:o}");
}

#[test]
fn outputs_are_never_written_through_a_symbolic_link() {
    require_root();
    let dir = temp_dir();
    let target = dir.path().join("target");
    std::fs::write(&target, "keep me\n").unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    for args in [
        vec!["record", "-o"],
        vec!["graph", "--format", "json", "-o"],
    ] {
        let o = Command::new(ipcwatch())
            .args(&args)
            .arg(&link)
            .args(["--", "true"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("is a symbolic link, and ipcwatch never writes through one"),
            "{args:?}: {err}"
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me\n");
    }
    // A new graph file is created 0600.
    let out = dir.path().join("g.json");
    let o = Command::new(ipcwatch())
        .args(["graph", "--format", "json", "-o"])
        .arg(&out)
        .args(["--", "true"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mode = std::fs::metadata(&out).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o600, "{mode:o}");
}

/// One `open`, `openat` or `openat2` made by ipcwatch (its threads and its
/// symbolizer worker), from an `strace -ff` file.
#[derive(Debug)]
struct Open {
    pid: u32,
    path: String,
    flags: String,
}

/// The first quoted string of an strace line (the path of an open).
fn quoted(line: &str) -> Option<String> {
    let start = line.find('"')? + 1;
    let end = start + line[start..].find('"')?;
    Some(line[start..end].to_string())
}

/// Every open made by a process or thread running ipcwatch's image, from
/// `strace -ff -o PREFIX` files: `root` ran ipcwatch; a clone inherits its
/// parent's image at that moment, an execve replaces it.
fn ipcwatch_opens(prefix: &std::path::Path, root: u32, ipcwatch: &str) -> Vec<Open> {
    let mut opens = Vec::new();
    let mut todo = vec![(root, true)];
    while let Some((pid, mut ours)) = todo.pop() {
        let file = format!("{}.{pid}", prefix.display());
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for line in text.lines() {
            let result = line.rsplit(" = ").next().unwrap_or("");
            if line.starts_with("execve(") && !result.starts_with('-') {
                ours = quoted(line).is_some_and(|p| p == ipcwatch);
            } else if line.starts_with("clone")
                || line.starts_with("fork")
                || line.starts_with("vfork")
            {
                if let Ok(child) = result.trim().parse::<u32>() {
                    todo.push((child, ours));
                }
            } else if ours && (line.starts_with("open(") || line.starts_with("openat")) {
                let path = quoted(line).unwrap_or_default();
                let flags = line
                    .split(", ")
                    .find(|f| f.starts_with("O_"))
                    .unwrap_or("")
                    .to_string();
                opens.push(Open { pid, path, flags });
            }
        }
    }
    opens
}

/// Why an open of ipcwatch's is one it was asked for (or needs for
/// itself), or None: see docs/security.md, "Files ipcwatch opens".
fn why_allowed(o: &Open, trace: &str, ipcwatch: &str) -> Option<&'static str> {
    let p = o.path.as_str();
    let o_path = o.flags.contains("O_PATH");
    if p == trace {
        return Some("the trace it was asked to write");
    }
    if p == ipcwatch || p == "/dev/null" {
        return Some("itself (the worker's exec), /dev/null");
    }
    for dir in ["/sys/", "/proc/sys/", "/proc/self/", "/proc/thread-self/"] {
        if p.starts_with(dir) {
            return Some("kernel interfaces and its own descriptors");
        }
    }
    if [
        "/proc/filesystems",
        "/proc/version_signature",
        "/proc/loadavg",
    ]
    .contains(&p)
    {
        return Some("kernel interfaces");
    }
    if p == "/etc/ld.so.cache"
        || p.starts_with("/lib/x86_64-linux-gnu/")
        || p.starts_with("/usr/lib/x86_64-linux-gnu/")
        || p.starts_with("/usr/lib/debug/")
    {
        return Some("the C library (its loader, the lock probes) and debug files");
    }
    // A traced process's /proc entries: /proc/PID/X, or X relative to a
    // /proc/PID directory it opened with O_PATH.
    let entry = match p.strip_prefix("/proc/") {
        Some(rest) => {
            let (pid, entry) = rest.split_once('/').unwrap_or((rest, ""));
            if !pid.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            entry
        }
        None if !p.starts_with('/') => p,
        None => return None,
    };
    if entry.is_empty() {
        return o_path.then_some("a /proc/PID directory, O_PATH");
    }
    let first = entry.split('/').next().unwrap_or("");
    match first {
        // Opening through these would follow the traced process's links
        // into any file: only O_PATH handles (no open of the target's
        // contents, no driver code) are allowed, and only for map_files.
        "map_files" if o_path => Some("a mapping's file, O_PATH first"),
        "fd" | "map_files" if entry == first && o.flags.contains("O_DIRECTORY") => {
            Some("a traced process's descriptor list (the links are read, not followed)")
        }
        "map_files" | "root" | "cwd" | "exe" | "fd" => None,
        _ => Some("a traced process's /proc entry"),
    }
}

/// Whatever the traced processes do (map a new file over a region while
/// it is read, exec a setuid binary as another user), ipcwatch opens only
/// what it was asked to read: every open of its own, found with strace,
/// is one of the kinds docs/security.md lists.
#[test]
fn opens_only_what_it_was_asked_to_read() {
    require_root();
    let dir = temp_dir();
    let trace = dir.path().join("t.ndjson");
    let prefix = dir.path().join("strace");
    let script = format!(
        "{w} hostile --action replace --after-ms 1500 --secs 3 && \
         setpriv --reuid=65534 --regid=65534 --clear-groups /usr/bin/mount --version",
        w = workload()
    );
    let out = Command::new("strace")
        .args(["-ff", "-qq", "--seccomp-bpf", "-e", "signal=none"])
        .args([
            "-e",
            "trace=execve,clone,clone3,fork,vfork,open,openat,openat2",
        ])
        .arg("-o")
        .arg(&prefix)
        .arg(ipcwatch())
        .arg("record")
        .arg("-o")
        .arg(&trace)
        .args(["--", "sh", "-c", &script])
        // cargo's library path would send the loader through target/.
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("strace is needed for this test (cargo xtask setup installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The root: the one file whose first line execs ipcwatch.
    let root = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            let pid: u32 = name.strip_prefix("strace.")?.parse().ok()?;
            let text = std::fs::read_to_string(dir.path().join(&name)).ok()?;
            let first = text.lines().next()?;
            (first.starts_with("execve(") && quoted(first)? == ipcwatch()).then_some(pid)
        })
        .min()
        .expect("an strace file of ipcwatch");
    let opens = ipcwatch_opens(&prefix, root, ipcwatch());
    let trace_path = trace.to_str().unwrap();
    let refused: Vec<String> = opens
        .iter()
        .filter(|o| why_allowed(o, trace_path, ipcwatch()).is_none())
        .map(|o| format!("pid {}: {} {}", o.pid, o.path, o.flags))
        .collect();
    assert!(
        refused.is_empty(),
        "opens outside what ipcwatch reads: {refused:#?}"
    );
    // It did read the traced processes (so the check checked something):
    // their maps, and a region's file through map_files with O_PATH.
    assert!(
        opens
            .iter()
            .any(|o| o.path.ends_with("/maps") || o.path == "maps"),
        "{opens:#?}"
    );
    assert!(
        opens
            .iter()
            .any(|o| o.path.contains("/map_files/") && o.flags.contains("O_PATH")),
        "{opens:#?}"
    );
    // And the setuid command ran, as nobody, under ipcwatch.
    let lines = parse(&trace);
    assert!(
        lines
            .iter()
            .any(|l| l["type"] == "process" && l["comm"] == "mount"),
        "no mount process in the trace"
    );
}
