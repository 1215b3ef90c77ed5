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
    let t = record(&["--", ipcwatch(), "workload", "fd-reuse"]);
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
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "ipcwatch did not start"
        );
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
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "still loaded: {left:?}"
        );
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
