//! `record --metrics`: a real Prometheus server (Debian's `prometheus`,
//! which `cargo xtask setup` installs) scrapes ipcwatch every second while
//! it records a workload with pipes, interleaving pipe writers and a racy
//! shared counter; its query
//! API then returns the values that the trace's summary line states.

mod common;

use std::collections::BTreeMap;
use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Two different ports nobody listens on now (the kernel's picks for
/// port 0, both held until both are picked).
fn free_ports() -> (u16, u16) {
    let bind = || TcpListener::bind("127.0.0.1:0").expect("a free port");
    let (a, b) = (bind(), bind());
    let port = |l: &TcpListener| l.local_addr().expect("a free port").port();
    (port(&a), port(&b))
}

/// A Prometheus server of this test's own: a temporary configuration
/// that scrapes `target` every second, storage in a temporary directory,
/// its web API on a free port. Killed when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Prometheus on `port`, scraping `target`.
    fn start(port: u16, target: u16) -> Prometheus {
        let dir = temp_dir();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: ipcwatch\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start Prometheus ({e}): install it with cargo xtask setup (apt-get install prometheus)")
            });
        let mut p = Prometheus { child, port, dir };
        let t0 = Instant::now();
        loop {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("Prometheus exited with {status} at start:\n{}", p.log());
            }
            if get(port, "/-/ready").is_some_and(|(code, _)| code == 200) {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "Prometheus was not ready after 60 s:\n{}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// An instant query: each series' labels and value.
    fn query(&self, promql: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let (code, body) = get(
            self.port,
            &format!("/api/v1/query?query={}", encode(promql)),
        )
        .unwrap_or_else(|| panic!("Prometheus does not answer:\n{}", self.log()));
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(
            (code, &v["status"]),
            (200, &Value::from("success")),
            "{body}"
        );
        v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let labels = r["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect();
                let value = r["value"][1].as_str().unwrap().parse().unwrap();
                (labels, value)
            })
            .collect()
    }

    /// The last scraped value of a metric (series whose target has gone
    /// are still in range), by the value of `label`.
    fn last_by(&self, metric: &str, label: &str) -> BTreeMap<String, u64> {
        self.query(&format!("last_over_time({metric}[10m])"))
            .into_iter()
            .map(|(l, v)| (l.get(label).cloned().unwrap_or_default(), v as u64))
            .collect()
    }

    fn last(&self, metric: &str) -> f64 {
        let r = self.query(&format!("last_over_time({metric}[10m])"));
        assert_eq!(r.len(), 1, "{metric}: {r:?}");
        r[0].1
    }
}

/// Percent-encoding of a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// HTTP/1.0 GET on 127.0.0.1:`port` (no chunked answers): status and
/// body, or None when nothing answers.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

#[test]
fn prometheus_scrapes_the_values_of_the_summary() {
    require_root();
    let t0 = Instant::now();
    let (target, port) = free_ports();
    let prom = Prometheus::start(port, target);
    let dir = temp_dir();
    let out = dir.path().join("trace.ndjson");
    let script = format!(
        "head -c 100000 /dev/zero | wc -c; {w} pipe-writers --writers 3 --size 65536 --records 32; {w} counter --memory anon --sync none --secs 3",
        w = workload()
    );
    let o = Command::new(ipcwatch())
        .args(["record", "-o"])
        .arg(&out)
        .args(["--metrics", &format!("127.0.0.1:{target}")])
        .args(["--metrics-linger", "30", "--", "sh", "-c", &script])
        .output()
        .expect("run ipcwatch");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    // It waited for a scrape of the final values, and got one.
    assert!(!stderr.contains("no scrape"), "{stderr}");
    let t = Trace {
        lines: parse(&out),
        output: o,
    };
    let s = t.summary();

    // That scrape is in Prometheus's storage once it shows the end.
    let t1 = Instant::now();
    while prom
        .query("last_over_time(ipcwatch_recording_finished[10m]) == 1")
        .is_empty()
    {
        assert!(
            t1.elapsed() < Duration::from_secs(20),
            "Prometheus has no finished scrape:\n{}",
            prom.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let events = prom.last_by("ipcwatch_events_total", "kind");
    assert_eq!(
        events.values().sum::<u64>(),
        s["events"].as_u64().unwrap(),
        "{events:?}"
    );
    assert!(events["fork"] >= 2 && events["io"] > 0, "{events:?}");
    let lost = prom.last_by("ipcwatch_events_lost_total", "reason");
    assert_eq!(lost["ring_full"], s["dropped"].as_u64().unwrap());
    assert_eq!(lost["undecodable"], 0);
    // Drops by kind: a series for every kind the events have, each the
    // summary's count of that kind (absent there when 0).
    let dropped = prom.last_by("ipcwatch_events_dropped_total", "kind");
    assert_eq!(
        dropped.keys().collect::<Vec<_>>(),
        events.keys().collect::<Vec<_>>()
    );
    for (kind, n) in &dropped {
        assert_eq!(
            *n,
            s["dropped_by_kind"][kind.as_str()].as_u64().unwrap_or(0),
            "{kind}: {dropped:?} {s}"
        );
    }

    let mut channels: BTreeMap<String, u64> = ["pipe", "fifo", "unix", "tcp", "udp", "mq", "msgq"]
        .iter()
        .map(|k| (k.to_string(), 0))
        .collect();
    for c in s["channels"].as_array().unwrap() {
        *channels
            .get_mut(c["kind"].as_str().unwrap())
            .expect("a known kind") += 1;
    }
    assert!(channels["pipe"] >= 1, "{channels:?}");
    assert_eq!(prom.last_by("ipcwatch_channels", "kind"), channels);

    let mut findings: BTreeMap<String, u64> = ["shm-write-write", "pipe-interleave"]
        .iter()
        .map(|k| (k.to_string(), 0))
        .collect();
    for r in t.of_type("race") {
        *findings
            .entry(r["kind"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    // Three writers of 64 KiB records on one pipe interleave (as in
    // tests/races.rs); the racy counter may add shm-write-write findings.
    assert!(findings["pipe-interleave"] > 0, "{findings:?}");
    assert_eq!(prom.last_by("ipcwatch_findings_total", "kind"), findings);

    let det = &s["detector"];
    let windows = det["windows"].as_u64().unwrap();
    assert!(windows > 0, "{det}");
    assert_eq!(prom.last("ipcwatch_watch_windows_total") as u64, windows);
    let words = det["words"].as_array().unwrap();
    assert!(words.len() < 64, "every armed word is in the summary");
    let traps: u64 = words.iter().map(|w| w["traps"].as_u64().unwrap()).sum();
    assert_eq!(prom.last("ipcwatch_watch_traps_total") as u64, traps);

    // Regions and processes are not in the summary line: the trace states
    // them through the model it replays into (what `analyze` reads).
    let file = std::fs::File::open(&out).unwrap();
    let (analysis, err) = ipcwatch::report::analyze::replay(BufReader::new(file));
    assert!(err.is_none(), "{err:?}");
    let model = &analysis.model;
    assert!(!model.regions.is_empty());
    assert_eq!(prom.last("ipcwatch_regions") as usize, model.regions.len());
    let alive = model.processes.values().filter(|p| p.alive).count() as u64;
    let mut processes = BTreeMap::new();
    processes.insert("alive".to_string(), alive);
    processes.insert("exited".to_string(), model.processes.len() as u64 - alive);
    assert_eq!(prom.last_by("ipcwatch_processes", "state"), processes);

    let lag = prom.last("ipcwatch_collector_lag_seconds");
    assert!((0.0..60.0).contains(&lag), "{lag}");
    eprintln!(
        "metrics test: {:.1} s; scraped {} events, channels {channels:?}, findings {findings:?}, {windows} windows, {traps} traps, lag {lag} s",
        t0.elapsed().as_secs_f64(),
        events.values().sum::<u64>()
    );
}
