//! Faults: traced processes that crash, exec, reuse descriptors, or come
//! and go by the thousand; ipcwatch stopped by signals.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_writer_killed_mid_write_is_seen_exiting_by_signal() {
    require_root();
    // `yes` fills the pipe (sleep never reads) and dies of SIGPIPE inside
    // its blocked write when sleep exits.
    let t = record(&["--", "sh", "-c", "yes | sleep 0.3"]);
    let exit = t
        .of_type("process")
        .find(|l| l["event"] == "exit" && l["comm"] == "yes")
        .expect("the exit of yes");
    assert_eq!(exit["signal"], libc::SIGPIPE);
    let pipe = t
        .of_type("channel")
        .find(|l| l["event"] == "create")
        .map(|l| l["channel"].as_str().unwrap().to_string())
        .unwrap();
    // Everything yes wrote fitted in the pipe; nobody read it.
    let written = t.bytes(&pipe, "write");
    assert!(written > 0 && written <= 1 << 20, "{written}");
    assert_eq!(t.bytes(&pipe, "read"), 0);
    let s = t.summary();
    assert_eq!(s["dropped"], 0);
    let ch = s["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == pipe.as_str())
        .unwrap();
    assert_eq!(ch["bytes_written"], written);
    assert_schema(&t.lines);
}

#[test]
fn reused_descriptor_numbers_are_attributed_to_the_right_pipe() {
    require_root();
    let t = record(&["--", workload(), "fd-reuse"]);
    let out = t.stdout();
    let w: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("reuse "))
        .unwrap()
        .split_whitespace()
        .collect();
    let (a, b) = (format!("pipe:[{}]", w[1]), format!("pipe:[{}]", w[2]));
    assert_ne!(a, b);
    assert_eq!(t.bytes(&a, "write"), 100);
    assert_eq!(t.bytes(&b, "write"), 200);
    let fd_w: i64 = w[5].parse().unwrap();
    for l in t
        .of_type("io")
        .filter(|l| l["channel"] == a.as_str() || l["channel"] == b.as_str())
    {
        assert_eq!(l["fd"].as_i64(), Some(fd_w));
    }
    // A was closed before B was created on the same numbers.
    let closes: Vec<_> = t
        .of_type("channel")
        .filter(|l| l["event"] == "close" && l["channel"] == a.as_str())
        .collect();
    assert_eq!(closes.len(), 2);
}

#[test]
fn exec_drops_close_on_exec_pipes_and_keeps_the_others() {
    require_root();
    // The shell's pipe ends become cat's stdin/stdout (kept across exec).
    let t = record(&["--", "sh", "-c", "echo hello | cat | cat > /dev/null"]);
    let execs = t
        .of_type("process")
        .filter(|l| l["event"] == "exec" && l["comm"] == "cat")
        .count();
    assert_eq!(execs, 2);
    // 6 bytes through each of the two pipes.
    let created: BTreeSet<String> = t
        .of_type("channel")
        .filter(|l| l["event"] == "create")
        .map(|l| l["channel"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(created.len(), 2);
    for p in &created {
        assert_eq!(t.bytes(p, "write"), 6, "{p}");
        assert_eq!(t.bytes(p, "read"), 6, "{p}");
    }
}

#[test]
fn thousands_of_short_lived_processes_are_all_accounted_for() {
    require_root();
    let n = 1500;
    let script = format!("i=0; while [ $i -lt {n} ]; do echo x | true; i=$((i+1)); done");
    let start = Instant::now();
    let t = record(&["--", "sh", "-c", &script]);
    let secs = start.elapsed().as_secs_f64();
    let forks = t
        .of_type("process")
        .filter(|l| l["event"] == "fork")
        .count();
    let exits = t
        .of_type("process")
        .filter(|l| l["event"] == "exit")
        .count();
    let s = t.summary();
    let dropped = s["dropped"].as_u64().unwrap();
    // Each iteration forks two processes (echo side and true side).
    if dropped == 0 {
        assert!(forks >= 2 * n, "{forks} forks");
        assert_eq!(exits, forks + 1, "every child and the shell exit");
    } else {
        // Losses are allowed under load, but never silent.
        assert_eq!(s["seq_gaps"].as_u64(), Some(dropped));
        assert!(t.of_type("lost").count() > 0);
    }
    eprintln!(
        "{forks} processes in {secs:.1}s ({:.0}/s), {dropped} events lost",
        forks as f64 / secs
    );
    assert_schema(&t.lines);
}

fn start_recording(out: &std::path::Path) -> std::process::Child {
    let rec = Command::new(ipcwatch())
        .args(["record", "-o", out.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while std::fs::read_to_string(out).map_or(true, |s| s.lines().count() < 2) {
        assert!(t0.elapsed() < patience(20), "ipcwatch did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    rec
}

#[test]
fn sigterm_flushes_and_writes_the_summary() {
    require_root();
    let dir = temp_dir();
    let out = dir.path().join("t.ndjson");
    let rec = start_recording(&out);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(rec.id() as i32, libc::SIGTERM) };
    let o = rec.wait_with_output().unwrap();
    assert!(o.status.success());
    let lines = parse(&out);
    assert_eq!(lines.last().unwrap()["type"], "summary");
    assert_eq!(lines.last().unwrap()["reason"], "signal");
    assert!(String::from_utf8_lossy(&o.stderr).contains("stopped: signal"));
}

/// `ipcwatch record -o OUT -- sh -c SCRIPT`, in a process group of its own
/// (as a terminal's job), once the command runs: (ipcwatch, command pid).
fn record_in_own_group(out: &std::path::Path, script: &str) -> (std::process::Child, u32) {
    use std::os::unix::process::CommandExt;
    // The command must not hold ipcwatch's piped stderr open after it.
    let script = format!("exec >/dev/null 2>&1; {script}");
    let rec = Command::new(ipcwatch())
        .args([
            "record",
            "-o",
            out.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            &script,
        ])
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let cmd = running_command(rec.id());
    (rec, cmd)
}

/// Until the command has set itself up and made `file`.
fn wait_for(file: &std::path::Path) {
    let t0 = Instant::now();
    while !file.exists() {
        assert!(t0.elapsed() < patience(20), "no {}", file.display());
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

#[test]
fn a_signal_to_ipcwatch_alone_ends_its_command_too() {
    require_root();
    let dir = temp_dir();
    let out = dir.path().join("t.ndjson");
    let (rec, cmd) = record_in_own_group(&out, "exec sleep 100");
    // SAFETY: signalling our own child (ipcwatch only, not its group).
    unsafe { libc::kill(rec.id() as i32, libc::SIGINT) };
    let o = rec.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    // sleep did not get the SIGINT; after a second it got SIGTERM.
    assert!(!alive(cmd), "the command {cmd} is still running");
    let lines = parse(&out);
    let summary = lines.last().unwrap();
    assert_eq!(summary["reason"], "signal");
    assert_eq!(summary["command_status"], 128 + libc::SIGTERM);
    assert!(stderr.contains("command exited with 143"), "{stderr}");
    // Recording went on until it exited: its exit is in the trace.
    let exit = lines
        .iter()
        .find(|l| l["type"] == "process" && l["event"] == "exit" && l["pid"] == cmd)
        .unwrap_or_else(|| panic!("no exit of {cmd} in the trace"));
    assert_eq!(exit["signal"], libc::SIGTERM);
    assert_schema(&lines);
}

#[test]
fn ctrl_c_to_the_job_lets_the_command_end_by_itself() {
    require_root();
    let dir = temp_dir();
    let out = dir.path().join("t.ndjson");
    // The command cleans up on SIGINT and exits 7; a SIGTERM would kill it
    // with 143 instead.
    let ready = dir.path().join("ready");
    let script = format!(
        "trap 'echo cleaned | cat > /dev/null; exit 7' INT; : > {}; while :; do sleep 0.05; done",
        ready.display()
    );
    let (rec, cmd) = record_in_own_group(&out, &script);
    wait_for(&ready);
    // What a terminal does on Ctrl-C: SIGINT to the whole job.
    // SAFETY: signalling the process group we created.
    unsafe { libc::kill(-(rec.id() as i32), libc::SIGINT) };
    let o = rec.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(!alive(cmd));
    let lines = parse(&out);
    let summary = lines.last().unwrap();
    assert_eq!(summary["reason"], "signal");
    assert_eq!(summary["command_status"], 7, "{summary}");
    // The clean-up's pipe traffic, made after the signal, is recorded.
    let cleaned: u64 = lines
        .iter()
        .filter(|l| l["type"] == "io" && l["kind"] == "pipe" && l["op"] == "write")
        .map(|l| l["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(cleaned, "cleaned\n".len() as u64);
}

#[test]
fn a_command_that_ignores_sigterm_is_left_running_with_a_warning() {
    require_root();
    let dir = temp_dir();
    let out = dir.path().join("t.ndjson");
    let ready = dir.path().join("ready");
    let script = format!("trap '' INT TERM; : > {}; exec sleep 100", ready.display());
    let (rec, cmd) = record_in_own_group(&out, &script);
    wait_for(&ready);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(rec.id() as i32, libc::SIGTERM) };
    let o = rec.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    let still = alive(cmd);
    // SAFETY: cleaning up the command that would not stop.
    unsafe { libc::kill(cmd as i32, libc::SIGKILL) };
    assert!(o.status.success(), "{stderr}");
    assert!(still, "the command should have survived SIGTERM");
    let lines = parse(&out);
    let summary = lines.last().unwrap();
    assert_eq!(summary["reason"], "signal");
    assert!(
        summary.get("command_status").is_none_or(|s| s.is_null()),
        "{summary}"
    );
    let msg = format!("the command (pid {cmd}) is still running 2 s after SIGTERM; leaving it");
    assert!(
        lines
            .iter()
            .any(|l| l["type"] == "warning" && l["message"] == msg.as_str()),
        "no warning {msg:?}"
    );
    assert!(stderr.contains(&msg), "{stderr}");
}

fn ipcwatch_program_ids() -> BTreeSet<u32> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| p.name_as_str().is_some_and(|n| n.starts_with("ipcwatch_")))
        .map(|p| p.id())
        .collect()
}

#[test]
fn sigkill_leaves_nothing_attached_or_pinned() {
    require_root();
    let before = ipcwatch_program_ids();
    let dir = temp_dir();
    let out = dir.path().join("t.ndjson");
    let mut rec = start_recording(&out);
    let ours: BTreeSet<u32> = ipcwatch_program_ids()
        .difference(&before)
        .copied()
        .collect();
    assert!(
        ours.len() >= 4,
        "its programs are loaded while it runs: {ours:?}"
    );
    rec.kill().unwrap();
    rec.wait().unwrap();
    // The kernel frees them once the last descriptor is gone.
    let t0 = Instant::now();
    loop {
        let left: Vec<u32> = ipcwatch_program_ids()
            .intersection(&ours)
            .copied()
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(t0.elapsed() < patience(10), "still loaded: {left:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Nothing is pinned in bpffs.
    if let Ok(dir) = std::fs::read_dir("/sys/fs/bpf") {
        let pinned: Vec<_> = dir
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains("ipcwatch"))
            .collect();
        assert!(pinned.is_empty(), "{pinned:?}");
    }
}
