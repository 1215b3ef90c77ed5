//! `--otlp URL`: a real OTLP/HTTP receiver (`ipcwatch-workload
//! otlp-receiver`, which decodes every request with the official
//! generated types of opentelemetry-proto) gets the same findings as the
//! NDJSON trace, every field of each race line, with OpenTelemetry's
//! attributes, and the counters as metrics whose final values are the
//! summary's. Then the same with the receiver down when recording starts
//! and up a few seconds later: nothing queued meanwhile is lost.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A port nothing listens on now.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().unwrap().port()
}

struct Receiver(Child);

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The receiver, listening once this returns (or the test fails, with
/// the reason).
fn start_receiver(port: u16, out: &Path) -> Receiver {
    let mut child = Command::new(workload())
        .args(["otlp-receiver", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--out")
        .arg(out)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start ipcwatch-workload otlp-receiver");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.starts_with("listening on"),
        "the OTLP receiver did not start: {line:?} (exit: {:?})",
        child.try_wait()
    );
    Receiver(child)
}

/// What the receiver decoded.
fn received(out: &Path) -> Vec<Value> {
    parse(out)
}

fn logs(got: &[Value]) -> Vec<&Value> {
    got.iter().filter(|l| l["signal"] == "log").collect()
}

/// The points of the last metrics request (the final one).
fn final_metrics(got: &[Value]) -> Vec<&Value> {
    let last = got
        .iter()
        .filter(|l| l["signal"] == "metric")
        .map(|l| l["request"].as_u64().unwrap())
        .max()
        .expect("no metrics received");
    got.iter()
        .filter(|l| l["signal"] == "metric" && l["request"] == last)
        .collect()
}

fn by(points: &[&Value], name: &str, label: &str) -> BTreeMap<String, u64> {
    points
        .iter()
        .filter(|p| p["name"] == name)
        .map(|p| {
            (
                p["attributes"][label]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                p["value"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn value(points: &[&Value], name: &str) -> Value {
    points
        .iter()
        .find(|p| p["name"] == name)
        .map(|p| p["value"].clone())
        .unwrap_or_else(|| panic!("no {name} point"))
}

/// Every race line of the trace reached the receiver once, whole and in
/// order, with its attributes; the final metrics are the summary's.
fn assert_delivered(trace: &[Value], got: &[Value]) {
    let races: Vec<&Value> = trace.iter().filter(|l| l["type"] == "race").collect();
    let logs = logs(got);
    assert!(!races.is_empty(), "no race in the trace");
    assert_eq!(logs.len(), races.len(), "log records vs race lines");
    let header = &trace[0];
    for (log, race) in logs.iter().zip(&races) {
        // Lossless: the body is the NDJSON line.
        assert_eq!(&log["body"], *race);
        assert_eq!(log["event_name"], "ipcwatch.race");
        assert_eq!(log["severity_text"], "WARN");
        assert_eq!(log["scope"], "ipcwatch");
        let r = &log["resource"];
        assert_eq!(r["service.name"], "ipcwatch");
        assert_eq!(r["host.name"], header["hostname"]);
        assert_eq!(r["service.version"], header["tool_version"]);
        let a = &log["attributes"];
        assert_eq!(a["ipcwatch.finding.kind"], race["kind"]);
        let accesses = race["accesses"].as_array().unwrap();
        assert_eq!(a["ipcwatch.access.count"], accesses.len());
        for (i, acc) in accesses.iter().enumerate() {
            let k = |n: &str| a[format!("ipcwatch.access.{i}.{n}")].clone();
            assert_eq!(k("process.pid"), acc["pid"]);
            assert_eq!(k("thread.id"), acc["tid"]);
            assert_eq!(k("process.executable.name"), acc["comm"]);
        }
        // Unix time: after the trace's start.
        assert!(
            log["time_unix_nano"].as_u64().unwrap() >= header["start_unix_ns"].as_u64().unwrap()
        );
    }
    let s = trace.last().unwrap();
    assert_eq!(s["type"], "summary");
    let points = final_metrics(got);
    assert_eq!(value(&points, "ipcwatch.recording.finished"), 1);
    let events: u64 = by(&points, "ipcwatch.events", "kind").values().sum();
    assert_eq!(events, s["events"].as_u64().unwrap());
    assert_eq!(
        by(&points, "ipcwatch.events.lost", "reason")["ring_full"],
        s["dropped"].as_u64().unwrap()
    );
    let mut findings: BTreeMap<String, u64> = ["shm-write-write", "pipe-interleave"]
        .iter()
        .map(|k| (k.to_string(), 0))
        .collect();
    for r in &races {
        *findings
            .entry(r["kind"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(by(&points, "ipcwatch.findings", "kind"), findings);
    assert_eq!(
        by(&points, "ipcwatch.otlp.findings", "outcome")["sent"],
        races.len() as u64
    );
    // The summary counts them too.
    let o = &s["otlp"];
    assert_eq!(o["sent"], races.len(), "{s}");
    for lost in ["dropped_queue_full", "rejected", "undelivered", "queued"] {
        assert_eq!(o[lost], 0, "{s}");
    }
    assert!(o["metric_exports"].as_u64().unwrap() >= 1, "{s}");
}

#[test]
fn a_receiver_gets_the_traces_findings_and_the_summarys_counts() {
    require_root();
    let started = Instant::now();
    let dir = temp_dir();
    let out = dir.path().join("otlp.ndjson");
    let port = free_port();
    let _receiver = start_receiver(port, &out);
    let url = format!("http://127.0.0.1:{port}");
    // Three writers of 64 KiB records on one pipe interleave (as in
    // tests/races.rs).
    let t = record(&[
        "--otlp",
        &url,
        "--",
        workload(),
        "pipe-writers",
        "--writers",
        "3",
        "--size",
        "65536",
        "--records",
        "32",
    ]);
    let got = received(&out);
    assert_delivered(&t.lines, &got);
    assert!(
        t.stderr()
            .contains(&format!("otlp: {} sent, 0 lost", t.of_type("race").count())),
        "{}",
        t.stderr()
    );
    assert!(t.of_type("warning").all(|w| w["probe"] != "otlp"));
    assert_schema(&t.lines);
    eprintln!(
        "otlp test: {} findings, {} metric points; {:.1} s",
        logs(&got).len(),
        got.len() - logs(&got).len(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn findings_queued_while_the_receiver_is_down_arrive_when_it_is_up() {
    require_root();
    let started = Instant::now();
    let dir = temp_dir();
    let out = dir.path().join("otlp.ndjson");
    let trace = dir.path().join("trace.ndjson");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    // Two processes bump a counter in shared memory without a lock for
    // 12 s: findings within 5 s (tests/races.rs), the receiver 3 s later.
    let mut ipcwatch = Command::new(ipcwatch())
        .args(["record", "-o"])
        .arg(&trace)
        .args(["--otlp", &url, "--", workload(), "counter"])
        .args(["--memory", "anon", "--sync", "none", "--secs", "12"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ipcwatch");
    // The receiver comes up 3 s after the first finding was written (its
    // batch was due 1 s after it, and failed).
    let first = loop {
        let text = std::fs::read_to_string(&trace).unwrap_or_default();
        if text.lines().any(|l| l.contains(r#""type":"race""#)) {
            break Instant::now();
        }
        if let Some(status) = ipcwatch.try_wait().unwrap() {
            panic!("ipcwatch ended ({status}) before any finding");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no finding within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_secs(3).saturating_sub(first.elapsed()));
    assert!(
        ipcwatch.try_wait().unwrap().is_none(),
        "ipcwatch ended before the receiver came up"
    );
    let _receiver = start_receiver(port, &out);
    let output = ipcwatch.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let lines = parse(&trace);
    let got = received(&out);
    assert_delivered(&lines, &got);
    // It did fail while the receiver was down, and said so.
    let s = lines.last().unwrap();
    let failed = s["otlp"]["failed_requests"].as_u64().unwrap();
    assert!(failed >= 1, "{s}");
    let warning = lines
        .iter()
        .find(|l| l["type"] == "warning" && l["probe"] == "otlp")
        .unwrap_or_else(|| panic!("no otlp warning: {stderr}"));
    let msg = warning["message"].as_str().unwrap();
    assert!(msg.contains(" 0 LOST"), "{msg}");
    assert!(msg.contains(&format!("{failed} requests failed")), "{msg}");
    assert_schema(&lines);
    eprintln!(
        "otlp outage test: {} findings, {failed} failed requests; {:.1} s",
        logs(&got).len(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn a_url_it_cannot_send_to_is_a_usage_error() {
    for (args, says) in [
        (
            &["record", "--otlp", "https://collector:4318"][..],
            "https is not supported",
        ),
        (
            &["record", "--otlp", "collector:4318"][..],
            "not an http:// URL",
        ),
        (
            &["tui", "--otlp", "http://h:99999"][..],
            "the port is not a number",
        ),
        (&["record", "--otlp-flush", "3"][..], "--otlp"),
        (
            &["tui", "--replay", "t.ndjson", "--otlp", "http://h"][..],
            "cannot be used with",
        ),
    ] {
        let o = Command::new(ipcwatch())
            .args(args)
            .args(["--", "true"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
