//! Root integration tests: the real probes on real pipe workloads.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn head_to_wc_moves_exactly_100000_bytes_through_one_pipe() {
    require_root();
    let t = record(&["--", "sh", "-c", "head -c 100000 /dev/zero | wc -c"]);
    assert_eq!(t.stdout().trim(), "100000");
    // The shell made exactly one pipe; the only other channel with I/O is
    // the test's own stdout pipe, which wc writes its count to.
    let created: BTreeSet<String> = t
        .of_type("channel")
        .filter(|l| l["event"] == "create")
        .map(|l| l["channel"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(created.len(), 1, "{created:?}");
    let pipe = created.iter().next().unwrap();
    assert!(pipe.starts_with("pipe:["), "{pipe}");
    let others: Vec<_> = t
        .of_type("io")
        .filter(|l| l["channel"] != pipe.as_str())
        .collect();
    assert!(
        others
            .iter()
            .all(|l| l["comm"] == "wc" && l["op"] == "write" && l["bytes"] == 7),
        "{others:?}"
    );
    assert_eq!(t.bytes(pipe, "write"), 100_000);
    assert_eq!(t.bytes(pipe, "read"), 100_000);
    let comms = |op: &str| -> BTreeSet<String> {
        t.of_type("io")
            .filter(|l| l["op"] == op && l["channel"] == pipe.as_str())
            .map(|l| l["comm"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(comms("write"), BTreeSet::from(["head".to_string()]));
    assert_eq!(comms("read"), BTreeSet::from(["wc".to_string()]));
    // The pipe was made by the shell with pipe2, both ends.
    let created: Vec<_> = t
        .of_type("channel")
        .filter(|l| l["event"] == "create" && l["channel"] == pipe.as_str())
        .collect();
    assert_eq!(created.len(), 2);
    let s = t.summary();
    assert_eq!(s["reason"], "command-exited");
    assert_eq!(s["command_status"], 0);
    assert_eq!(s["dropped"], 0);
    let ch = s["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == pipe.as_str())
        .unwrap();
    assert_eq!(ch["bytes_written"], 100_000);
    assert_eq!(ch["bytes_read"], 100_000);
    assert_schema(&t.lines);
}

/// Kernels without tp_btf get the raw tracepoints, which read everything
/// through helpers: forced here, the same pipeline gives the same facts.
#[test]
fn raw_tracepoint_fallback_moves_the_same_100000_bytes() {
    require_root();
    let with = |no_btf: bool| {
        let dir = temp_dir();
        let out = dir.path().join("trace.ndjson");
        let mut cmd = Command::new(ipcwatch());
        cmd.args(["record", "-o"]).arg(&out).args([
            "--",
            "sh",
            "-c",
            "head -c 100000 /dev/zero | wc -c",
        ]);
        if no_btf {
            cmd.env("IPCWATCH_NO_TP_BTF", "1");
        }
        let output = cmd.output().expect("run ipcwatch");
        assert!(output.status.success(), "{output:?}");
        Trace {
            lines: parse(&out),
            output,
        }
    };
    for no_btf in [false, true] {
        let t = with(no_btf);
        let skipped: BTreeSet<String> = t
            .of_type("warning")
            .filter_map(|l| l["probe"].as_str().map(str::to_string))
            .filter(|p| p.starts_with("tp_btf:"))
            .collect();
        let expected: BTreeSet<String> = if no_btf {
            ["tp_btf:sys_enter", "tp_btf:sys_exit"]
                .map(String::from)
                .into()
        } else {
            BTreeSet::new()
        };
        assert_eq!(skipped, expected, "no_btf={no_btf}");
        let pipe = t
            .of_type("channel")
            .find(|l| l["event"] == "create")
            .map(|l| l["channel"].as_str().unwrap().to_string())
            .expect("the shell's pipe");
        assert_eq!(t.bytes(&pipe, "write"), 100_000, "no_btf={no_btf}");
        assert_eq!(t.bytes(&pipe, "read"), 100_000, "no_btf={no_btf}");
        let comms: BTreeSet<String> = t
            .of_type("io")
            .filter(|l| l["channel"] == pipe.as_str())
            .map(|l| l["comm"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            comms,
            BTreeSet::from(["head".to_string(), "wc".to_string()]),
            "no_btf={no_btf}"
        );
    }
}

#[test]
fn parent_writes_3_times_1000_bytes_to_its_child() {
    require_root();
    let t = record(&[
        "--",
        workload(),
        "pipe-parent-child",
        "--count",
        "3",
        "--size",
        "1000",
    ]);
    let (ino, parent, child) = pipe_line(&t.stdout());
    let pipe = format!("pipe:[{ino}]");
    let writes: Vec<_> = t
        .of_type("io")
        .filter(|l| l["channel"] == pipe.as_str() && l["op"] == "write")
        .collect();
    assert_eq!(writes.len(), 3);
    for w in &writes {
        assert_eq!(w["bytes"], 1000);
        assert_eq!(w["pid"], parent);
        assert_eq!(w["comm"], WORKLOAD_COMM);
    }
    let reads: Vec<_> = t
        .of_type("io")
        .filter(|l| l["channel"] == pipe.as_str() && l["op"] == "read")
        .collect();
    assert!(reads.iter().all(|r| r["pid"] == child));
    assert_eq!(t.bytes(&pipe, "read"), 3000);
    // The child was forked by the parent, and inherited both ends.
    assert!(
        t.of_type("process")
            .any(|l| l["event"] == "fork" && l["pid"] == child && l["ppid"] == parent)
    );
    let ch = t.summary()["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == pipe.as_str())
        .cloned()
        .unwrap();
    assert_eq!(ch["writers"], serde_json::json!([parent]));
    assert_eq!(ch["readers"], serde_json::json!([child]));
    assert_eq!(
        (ch["writes"].as_u64(), ch["bytes_written"].as_u64()),
        (Some(3), Some(3000))
    );
    assert_schema(&t.lines);
}

#[test]
fn fifo_between_two_processes_that_share_only_its_path() {
    require_root();
    let dir = temp_dir();
    let fifo = dir.path().join("f");
    let script = format!(
        "mkfifo {f} && ({w} fifo-write {f} --bytes 5000 &) && {w} fifo-read {f}; wait",
        f = fifo.display(),
        w = workload()
    );
    let t = record(&["--", "sh", "-c", &script]);
    assert!(t.stdout().contains("read 5000"), "{}", t.stdout());
    let meta = std::fs::metadata(&fifo).unwrap();
    let id = format!(
        "fifo:[{}:{}:{}]",
        libc::major(meta.dev()),
        libc::minor(meta.dev()),
        meta.ino()
    );
    assert_eq!(t.bytes(&id, "write"), 5000, "{id}");
    assert_eq!(t.bytes(&id, "read"), 5000);
    let opens: Vec<_> = t
        .of_type("channel")
        .filter(|l| l["event"] == "open" && l["channel"] == id.as_str())
        .collect();
    assert_eq!(opens.len(), 2, "{opens:?}");
    let ends: BTreeSet<&str> = opens.iter().map(|l| l["end"].as_str().unwrap()).collect();
    assert_eq!(ends, BTreeSet::from(["read", "write"]));
    let pids: BTreeSet<u64> = opens.iter().map(|l| l["pid"].as_u64().unwrap()).collect();
    assert_eq!(pids.len(), 2, "reader and writer are different processes");
    for o in &opens {
        assert_eq!(o["path"], fifo.to_str().unwrap());
        assert_eq!(o["kind"], "fifo");
    }
    assert!(
        t.of_type("channel")
            .any(|l| l["event"] == "mkfifo" && l["channel"] == id.as_str())
    );
    assert_schema(&t.lines);
}

#[test]
fn a_pipe_made_before_ipcwatch_started_is_found_and_traced() {
    require_root();
    let mut wl = Command::new(workload())
        .args(["pipe-delayed", "--bytes", "5000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(wl.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    let (ino, parent, child) = pipe_line(&first);
    let dir = temp_dir();
    let out = dir.path().join("t.ndjson");
    let mut rec = Command::new(ipcwatch())
        .args(["record", "-o", out.to_str().unwrap(), "--duration", "3"])
        .args(["--pid", &parent.to_string(), "--pid", &child.to_string()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the probes: the header is written once they are attached.
    let t0 = Instant::now();
    while std::fs::read_to_string(&out).map_or(true, |s| !s.contains("\"existing\"")) {
        assert!(t0.elapsed() < patience(20), "ipcwatch did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    wl.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    assert!(wl.wait().unwrap().success());
    assert!(rec.wait().unwrap().success());
    let lines = parse(&out);
    let pipe = format!("pipe:[{ino}]");
    let existing: BTreeSet<(u64, &str)> = lines
        .iter()
        .filter(|l| {
            l["type"] == "channel" && l["event"] == "existing" && l["channel"] == pipe.as_str()
        })
        .map(|l| (l["pid"].as_u64().unwrap(), l["end"].as_str().unwrap()))
        .collect();
    assert_eq!(
        existing,
        BTreeSet::from([(parent as u64, "write"), (child as u64, "read")])
    );
    let sum = |op: &str, pid: u32| -> u64 {
        lines
            .iter()
            .filter(|l| {
                l["type"] == "io"
                    && l["channel"] == pipe.as_str()
                    && l["op"] == op
                    && l["pid"] == pid
            })
            .map(|l| l["bytes"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(sum("write", parent), 5000);
    assert_eq!(sum("read", child), 5000);
    let last = lines.last().unwrap();
    assert_eq!(last["type"], "summary");
    assert_eq!(last["reason"], "duration");
    assert_schema(&lines);
}

#[test]
fn a_full_ring_buffer_loses_events_and_counts_every_one() {
    require_root();
    // A collector that cannot read: stop ipcwatch (SIGSTOP) for a second
    // while its command runs a ping-pong. A 4 KiB ring holds about 45
    // events; the ping-pong makes tens of thousands in that second, so the
    // kernel side must lose events, and every one must be counted.
    const ITERS: u64 = 50_000;
    let dir = temp_dir();
    let out = dir.path().join("t.ndjson");
    let iters = ITERS.to_string();
    let rec = Command::new(ipcwatch())
        .args([
            "record",
            "-o",
            out.to_str().unwrap(),
            "--ring-size",
            "4096",
            "--",
        ])
        .args([workload(), "pingpong", "--iters", &iters])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = rec.id() as i32;
    running_command(pid as u32);
    std::thread::sleep(Duration::from_millis(50));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    std::thread::sleep(Duration::from_secs(1));
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let o = rec.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{stderr}");
    let t = Trace {
        lines: parse(&out),
        output: o,
    };
    let s = t.summary();
    let dropped = s["dropped"].as_u64().unwrap();
    assert!(dropped > 0, "nothing was dropped: {s}");
    let lost: Vec<_> = t.of_type("lost").collect();
    assert!(!lost.is_empty());
    let counted: u64 = lost.iter().map(|l| l["count"].as_u64().unwrap()).sum();
    assert_eq!(counted, dropped);
    assert_eq!(lost.last().unwrap()["total"].as_u64(), Some(dropped));
    // The per-CPU sequence numbers show the same gaps.
    assert_eq!(s["seq_gaps"].as_u64(), Some(dropped));
    // Received + lost = everything the kernel produced: 4 per round trip.
    let io = t.of_type("io").count() as u64;
    assert!(io + dropped >= 4 * ITERS, "io {io} + dropped {dropped}");
    // Counted by kind too (the ping-pong's reads and writes, mostly; its
    // exit may fall in the stopped second as well), the same in the
    // summary and in the message.
    let by_kind = s["dropped_by_kind"].as_object().unwrap();
    let sum: u64 = by_kind.values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(sum, dropped, "{s}");
    let io_lost = by_kind["io"].as_u64().unwrap();
    assert!(io_lost > 0, "{s}");
    assert!(
        stderr.contains(&format!("{dropped} LOST (io {io_lost}")),
        "{stderr}"
    );
    assert_schema(&t.lines);
}

#[test]
fn sigint_stops_a_system_wide_recording_with_a_summary() {
    require_root();
    let dir = temp_dir();
    let out = dir.path().join("t.ndjson");
    let rec = Command::new(ipcwatch())
        .args(["record", "-o", out.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while std::fs::read_to_string(&out).map_or(true, |s| s.lines().count() < 2) {
        assert!(t0.elapsed() < patience(20), "ipcwatch did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Some pipe traffic from an unrelated process while it runs.
    let st = Command::new("sh")
        .args(["-c", "head -c 12345 /dev/zero | cat > /dev/null"])
        .status()
        .unwrap();
    assert!(st.success());
    std::thread::sleep(Duration::from_millis(300));
    let rec_pid = rec.id();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(rec_pid as i32, libc::SIGINT) };
    let o = rec.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines = parse(&out);
    let last = lines.last().unwrap();
    assert_eq!(last["type"], "summary");
    assert_eq!(last["reason"], "signal");
    // Everything but ipcwatch itself is traced: the head | cat pipe too.
    let head_bytes: u64 = lines
        .iter()
        .filter(|l| l["type"] == "io" && l["comm"] == "head" && l["op"] == "write")
        .map(|l| l["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(head_bytes, 12345);
    assert!(
        !lines
            .iter()
            .any(|l| l["type"] == "io" && l["pid"] == rec_pid),
        "ipcwatch traced itself"
    );
    assert_schema(&lines);
}

#[test]
fn payload_bytes_are_captured_only_when_asked_and_capped() {
    require_root();
    let script = "printf 'secret-payload' | cat > /dev/null";
    let plain = record(&["--", "sh", "-c", script]);
    assert!(plain.of_type("io").all(|l| l.get("data").is_none()));
    let t = record(&["--capture-bytes", "6", "--", "sh", "-c", script]);
    let datas: Vec<&str> = t
        .of_type("io")
        .filter(|l| l["kind"] == "pipe")
        .map(|l| l["data"].as_str().unwrap())
        .collect();
    // The write by printf and the read by cat: "secret" in hex.
    assert_eq!(datas, vec!["736563726574", "736563726574"]);
    assert_schema(&t.lines);
}

/// `--durations`: a read that waits for its writer, and a flock that waits
/// for its holder, carry when they started; every pipe line has a start.
#[test]
fn durations_give_blocked_calls_their_start() {
    require_root();
    let dir = temp_dir();
    let lock = dir.path().join("x.lock");
    let script = format!(
        "(sleep 0.4; printf ab) | cat >/dev/null; \
         flock {l} sleep 0.4 & sleep 0.1; flock {l} true; wait",
        l = lock.display()
    );
    let t = record(&["--durations", "--", "sh", "-c", &script]);
    assert_schema(&t.lines);
    let waited_ms = |l: &serde_json::Value| -> u64 {
        let (ts, start) = (l["ts_ns"].as_u64().unwrap(), l["start_ns"].as_u64());
        let start = start.unwrap_or_else(|| panic!("no start_ns: {l}"));
        assert!(start <= ts, "{l}");
        (ts - start) / 1_000_000
    };
    let pipe_lines: Vec<_> = t.of_type("io").filter(|l| l["kind"] == "pipe").collect();
    for l in &pipe_lines {
        waited_ms(l);
    }
    // cat's read of "ab" waited for the writer's 0.4 s sleep.
    let read = pipe_lines
        .iter()
        .find(|l| l["comm"] == "cat" && l["op"] == "read" && l["bytes"] == 2)
        .unwrap_or_else(|| panic!("no read of 2 bytes by cat: {pipe_lines:?}"));
    let ms = waited_ms(read);
    assert!(
        (300..5000).contains(&ms),
        "cat's read waited {ms} ms: {read}"
    );
    // The second flock waited for the first (held 0.4 s, asked 0.1 s in).
    let flocks: Vec<_> = t
        .of_type("sync")
        .filter(|l| l["primitive"] == "flock" && l["event"] == "acquire" && l["ok"] == true)
        .collect();
    assert_eq!(flocks.len(), 2, "{flocks:?}");
    let waits: Vec<u64> = flocks.iter().map(|l| waited_ms(l)).collect();
    assert!(waits[0] < 100, "the first flock waited {} ms", waits[0]);
    assert!(
        (200..5000).contains(&waits[1]),
        "the second flock waited {} ms",
        waits[1]
    );
}
