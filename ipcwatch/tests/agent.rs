//! `ipcwatch agent`: whole-system, stopped by SIGTERM, its output sized
//! for weeks (aggregates instead of `io` lines), its rotation, its config
//! file. Root (it loads the probes) except the bad config files.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// `ipcwatch agent ARGS` in the background, once its probes are attached
/// (the trace file holds its first lines: they are written after).
fn start_agent(trace: &Path, args: &[&str]) -> Child {
    let child = Command::new(ipcwatch())
        .arg("agent")
        .arg("-o")
        .arg(trace)
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ipcwatch agent");
    let t0 = Instant::now();
    while std::fs::metadata(trace).map_or(true, |m| m.len() == 0) {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the agent wrote nothing in 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// SIGTERM, then its exit status and standard error.
fn stop(child: Child) -> (std::process::ExitStatus, String) {
    // SAFETY: kill has no memory effects; the pid is our child's, not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().expect("wait for the agent");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sum of `field` over the aggregate lines of `channel`.
fn total(lines: &[Value], channel: &str, field: &str) -> u64 {
    lines
        .iter()
        .filter(|l| l["type"] == "aggregate" && l["channel"] == channel)
        .map(|l| l[field].as_u64().unwrap())
        .sum()
}

/// The pids in `field` over the aggregate lines of `channel`.
fn pids(lines: &[Value], channel: &str, field: &str) -> Vec<u64> {
    let mut all: Vec<u64> = lines
        .iter()
        .filter(|l| l["type"] == "aggregate" && l["channel"] == channel)
        .flat_map(|l| {
            l[field]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_u64().unwrap())
        })
        .collect();
    all.sort();
    all.dedup();
    all
}

fn workload_out(args: &[&str]) -> (u32, String) {
    let child = Command::new(workload())
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the workload");
    let pid = child.id();
    let out = child.wait_with_output().expect("the workload");
    assert!(out.status.success(), "workload {args:?} failed");
    (pid, String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn aggregates_add_up_to_what_the_workload_did_and_sigterm_ends_with_a_summary() {
    require_root();
    let dir = temp_dir();
    let trace = dir.path().join("agent.ndjson");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        "# a short interval for the test\ninterval = \"1s\"\n",
    )
    .unwrap();
    let agent = start_agent(&trace, &["--config", config.to_str().unwrap()]);
    let (_, out) = workload_out(&["pipe-parent-child", "--count", "3", "--size", "1000"]);
    let (ino, parent, child) = pipe_line(&out);
    let (sock_parent, _) = workload_out(&["unix-pingpong", "--size", "100", "--iters", "50"]);
    // At least one interval ends while the agent runs.
    std::thread::sleep(Duration::from_millis(1500));
    let (status, stderr) = stop(agent);
    assert!(status.success(), "the agent exited with {status}: {stderr}");
    assert!(stderr.contains("stopped: signal"), "{stderr}");
    let lines = parse(&trace);
    assert_schema(&lines);
    assert_eq!(lines[0]["type"], "header");
    let summary = lines.last().unwrap();
    assert_eq!(
        (&summary["type"], &summary["reason"]),
        (&Value::from("summary"), &Value::from("signal"))
    );
    // No line per read or write, whole-system.
    assert_eq!(lines.iter().filter(|l| l["type"] == "io").count(), 0);
    let pipe = format!("pipe:[{ino}]");
    assert_eq!(
        [
            total(&lines, &pipe, "bytes_written"),
            total(&lines, &pipe, "writes"),
            total(&lines, &pipe, "bytes_read"),
        ],
        [3000, 3, 3000],
        "{pipe}"
    );
    assert_eq!(pids(&lines, &pipe, "writers"), [u64::from(parent)]);
    assert_eq!(pids(&lines, &pipe, "readers"), [u64::from(child)]);
    // The socket pair: 50 round trips of 100 bytes, each way.
    let sock = lines
        .iter()
        .find(|l| l["type"] == "channel" && l["event"] == "socket" && l["pid"] == sock_parent)
        .unwrap_or_else(|| panic!("no socket line of pid {sock_parent}"))["channel"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        [
            total(&lines, &sock, "bytes_written"),
            total(&lines, &sock, "writes"),
            total(&lines, &sock, "bytes_read"),
        ],
        [10_000, 100, 10_000],
        "{sock}"
    );
    assert_eq!(pids(&lines, &sock, "writers").len(), 2, "{sock}");
    // The summary agrees (the model saw every event).
    let in_summary = summary["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == pipe.as_str())
        .expect("the pipe in the summary");
    assert_eq!(in_summary["bytes_written"], 3000);
    // The intervals follow each other.
    let mut spans: Vec<(u64, u64)> = lines
        .iter()
        .filter(|l| l["type"] == "aggregate")
        .map(|l| {
            (
                l["start_ns"].as_u64().unwrap(),
                l["ts_ns"].as_u64().unwrap(),
            )
        })
        .collect();
    spans.dedup();
    assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0), "{spans:?}");
}

#[test]
fn rotation_keeps_n_files_and_flags_win_over_the_config_file() {
    require_root();
    let dir = temp_dir();
    let trace = dir.path().join("agent.ndjson");
    let config = dir.path().join("agent.toml");
    // The file says keep 5 and 64K; the command line says keep 2 and 4K.
    std::fs::write(
        &config,
        "rotate-size = \"64K\"\nrotate-keep = 5\nevents = true\nno-race = true\n",
    )
    .unwrap();
    let agent = start_agent(
        &trace,
        &[
            "--config",
            config.to_str().unwrap(),
            "--rotate-keep",
            "2",
            "--rotate-size",
            "4K",
        ],
    );
    // Whole-system, the start-up scan alone fills more than three files.
    std::thread::sleep(Duration::from_millis(300));
    let (status, stderr) = stop(agent);
    assert!(status.success(), "the agent exited with {status}: {stderr}");
    let name = |n: u32| dir.path().join(format!("agent.ndjson.{n}"));
    assert!(name(1).is_file() && name(2).is_file(), "two rotated files");
    assert!(!name(3).exists(), "--rotate-keep 2 kept a third file");
    for f in [name(2), name(1), trace.clone()] {
        let lines = parse(&f);
        assert_eq!(lines[0]["type"], "header", "{}", f.display());
    }
    for f in [name(2), name(1)] {
        // 4K, passed by one line at most.
        let size = std::fs::metadata(&f).unwrap().len();
        assert!(size < 4096 + 65536, "{}: {size} bytes", f.display());
    }
    assert_eq!(parse(&trace).last().unwrap()["type"], "summary");
}

/// GET /metrics at `addr`: each sample's value by its name and labels.
fn scrape(addr: &str) -> std::collections::BTreeMap<String, f64> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to --metrics");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines()
        .filter(|l| l.starts_with("ipcwatch_"))
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect()
}

/// A long-running agent forgets processes that exited and channels
/// nobody holds (`--forget-after`), keeps what is alive, and its counts
/// since the start stay whole.
#[test]
fn the_agent_forgets_what_is_gone_and_keeps_what_is_alive() {
    require_root();
    let dir = temp_dir();
    let trace = dir.path().join("agent.ndjson");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let agent = start_agent(
        &trace,
        &["--forget-after", "1", "--interval", "1", "--metrics", &addr],
    );
    // Its event loop runs from about now: the first pass at 10 s, the
    // second at 20 s.
    let t0 = Instant::now();
    // Gone: a pipe between two processes that exit.
    let (_, out) = workload_out(&["pipe-parent-child", "--count", "3", "--size", "1000"]);
    let (gone, gone_parent, gone_child) = pipe_line(&out);
    // Alive: a pipe held by two processes that wait (no event on it)
    // until after the agent's first pass, 10 s after its start.
    let mut held = Command::new(workload())
        .args(["pipe-delayed", "--bytes", "5000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the workload");
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(held.stdout.as_mut().unwrap()),
        &mut first,
    )
    .unwrap();
    let (alive, _, _) = pipe_line(&first);
    // The first pass (10 s into the loop) forgets the gone pair.
    let m = loop {
        let m = scrape(&addr);
        if m["ipcwatch_forgotten_total{what=\"processes\"}"] >= 2.0 {
            break m;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no pass forgot anything: {m:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let first_pass = t0.elapsed();
    // Written and read after the pass: the channel and both ends are
    // still known.
    std::io::Write::write_all(held.stdin.as_mut().unwrap(), b"go\n").unwrap();
    assert!(held.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(1500));
    let (status, stderr) = stop(agent);
    assert!(status.success(), "the agent exited with {status}: {stderr}");
    // The next pass, 10 s after the first, would forget the alive pipe
    // too (its processes have exited): the stop came before it.
    assert!(
        t0.elapsed() < first_pass + Duration::from_secs(8),
        "too slow: a second pass may have run ({:?} after the first)",
        t0.elapsed() - first_pass
    );
    let lines = parse(&trace);
    assert_schema(&lines);
    let summary = lines.last().unwrap();
    let in_summary = |ino: u64| {
        summary["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["channel"] == format!("pipe:[{ino}]").as_str())
            .cloned()
    };
    assert!(in_summary(gone).is_none(), "pipe:[{gone}] not forgotten");
    let kept = in_summary(alive).unwrap_or_else(|| panic!("pipe:[{alive}] forgotten"));
    assert_eq!(
        (&kept["bytes_written"], &kept["bytes_read"]),
        (&5000.into(), &5000.into())
    );
    // What was forgotten still counts: the gone pipe's aggregates were
    // written, and the metrics count its processes and channel.
    assert_eq!(
        total(&lines, &format!("pipe:[{gone}]"), "bytes_written"),
        3000
    );
    assert_eq!(
        pids(&lines, &format!("pipe:[{gone}]"), "writers"),
        [u64::from(gone_parent)]
    );
    assert_eq!(
        pids(&lines, &format!("pipe:[{gone}]"), "readers"),
        [u64::from(gone_child)]
    );
    assert!(m["ipcwatch_processes{state=\"exited\"}"] >= 2.0, "{m:?}");
    assert!(
        m["ipcwatch_forgotten_total{what=\"channels\"}"] >= 1.0,
        "{m:?}"
    );
    assert!(m["ipcwatch_channels{kind=\"pipe\"}"] >= 2.0, "{m:?}");
}

/// `ipcwatch agent --config FILE` that must fail before tracing: exit 2
/// and the message.
fn bad_config(text: &str) -> String {
    let dir = temp_dir();
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, text).unwrap();
    let out = Command::new(ipcwatch())
        .args(["agent", "-o"])
        .arg(dir.path().join("t.ndjson"))
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run ipcwatch agent");
    assert_eq!(out.status.code(), Some(2), "{text:?}");
    assert!(!dir.path().join("t.ndjson").exists(), "a trace was started");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let path = config.display().to_string();
    assert!(
        stderr.contains(&path),
        "the message names the file: {stderr}"
    );
    stderr
}

#[test]
fn a_bad_config_file_is_a_clear_error() {
    let e = bad_config("interval = \"1s\"\nbogus = 1\n");
    assert!(e.contains("unknown key `bogus`"), "{e}");
    let e = bad_config("rotate-size = \"12X\"\n");
    assert!(e.contains("--rotate-size") && e.contains("12X"), "{e}");
    let e = bad_config("interval = [\n");
    assert!(e.contains("not valid TOML") && e.contains("line 1"), "{e}");
    let e = bad_config("pid = { a = 1 }\n");
    assert!(e.contains("`pid` must be"), "{e}");
    let out = Command::new(ipcwatch())
        .args(["agent", "--config", "/nonexistent/agent.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read the config file"),
        "{out:?}"
    );
}
