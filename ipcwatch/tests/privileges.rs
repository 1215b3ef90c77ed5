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
}

/// Record `-- sh` (blocked on a FIFO) with `args`: every thread keeps
/// exactly `kept`.
fn check_recording(args: &[&str], kept: &str) {
    let dir = temp_dir();
    let trace = dir.path().join("t.ndjson");
    let fifo = dir.path().join("hold");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
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
    for task in &tasks {
        let s = status_of(task).unwrap();
        for set in ["CapEff", "CapPrm", "CapBnd"] {
            assert_eq!(field(&s, set), kept, "task {task}, {set}");
        }
        assert_eq!(field(&s, "CapInh"), "0000000000000000", "task {task}");
        assert_eq!(field(&s, "CapAmb"), "0000000000000000", "task {task}");
        assert_eq!(field(&s, "NoNewPrivs"), "1", "task {task}");
    }
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
