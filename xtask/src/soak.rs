//! `cargo xtask soak`: ipcwatch under a high event rate for minutes, with
//! its RSS and losses sampled over time; the table goes to docs/soak.md.
//! With `--otlp`, findings are exported too, to an OTLP receiver
//! (`ipcwatch-workload otlp-receiver`) that is killed halfway and
//! restarted after `--otlp-outage` seconds.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::bench_load::mem_kib;
use crate::build::Bins;
use crate::cmd::root;

#[derive(clap::Args)]
pub struct SoakArgs {
    /// Minutes to run.
    #[arg(long, default_value_t = 10)]
    minutes: u64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 30)]
    every: u64,
    /// Also export with `--otlp` to a receiver this command starts, and
    /// kill the receiver halfway; race findings come from three pipe
    /// writers started every second beside the ping-pong.
    #[arg(long)]
    otlp: bool,
    /// With --otlp or --agent: seconds the receiver stays down.
    #[arg(long, default_value_t = 20)]
    otlp_outage: u64,
    /// Soak `ipcwatch agent` instead of `record` (implies --otlp): the
    /// same workload beside it, its trace rotated in target/soak-agent,
    /// its counters scraped from --metrics; the table becomes the "Agent"
    /// section of docs/soak.md.
    #[arg(long)]
    agent: bool,
}

/// The workload of `--otlp` and `--agent`: the ping-pong flat out, and
/// three pipe writers whose 64 KiB records interleave, every second (race
/// findings). With `churn` (the agent's), every second also a socketpair,
/// an abstract unix socket, a TCP connection and a POSIX queue, each
/// between two new processes (`channels-demo`): a host's turnover of
/// processes and connections, which a daemon must not accumulate.
fn racy_script(workload: &Path, churn: bool) -> String {
    let w = workload.display();
    let churn = if churn {
        format!("{w} channels-demo >/dev/null; ")
    } else {
        String::new()
    };
    // A background job of a script ignores SIGINT: the trap ends it.
    format!(
        "{w} pingpong --size 64 --iters 1000000000000 & p=$!; trap 'kill $p; exit 130' INT TERM; while :; do {w} pipe-writers --writers 3 --size 65536 --records 32 >/dev/null; {churn}sleep 1; done"
    )
}

/// GET /metrics of the server at `addr`: each sample's value by its name
/// with labels (`ipcwatch_events_lost_total{reason="ring_full"}`).
fn scrape(addr: &str) -> std::collections::BTreeMap<String, f64> {
    use std::io::{Read as _, Write as _};
    let mut out = std::collections::BTreeMap::new();
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return out;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut text = String::new();
    if s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .and_then(|()| s.read_to_string(&mut text))
        .is_err()
    {
        return out;
    }
    for l in text.lines().filter(|l| l.starts_with("ipcwatch_")) {
        if let Some((name, v)) = l.rsplit_once(' ')
            && let Ok(v) = v.parse()
        {
            out.insert(name.to_owned(), v);
        }
    }
    out
}

/// The sum of the samples of metric `name` (over its labels).
fn total(m: &std::collections::BTreeMap<String, f64>, name: &str) -> u64 {
    m.iter()
        .filter(|(k, _)| *k == name || k.starts_with(&format!("{name}{{")))
        .map(|(_, v)| *v)
        .sum::<f64>() as u64
}

/// The trace files of the agent's rotation, and their bytes.
fn trace_files(dir: &Path) -> (usize, u64) {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("agent.ndjson"))
        .fold((0, 0), |(n, b), e| {
            (n + 1, b + e.metadata().map_or(0, |m| m.len()))
        })
}

/// `--agent`: `ipcwatch agent` with rotation, metrics and OTLP export
/// beside the racy workload; the receiver killed halfway and restarted.
fn run_agent(bins: &Bins, args: &SoakArgs) -> Result<()> {
    const ROTATE_KEEP: usize = 3;
    let dir = root().join("target/soak-agent");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let otlp_out = dir.join("received.ndjson");
    let free_port = || -> Result<u16> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    };
    let (otlp_port, metrics_port) = (free_port()?, free_port()?);
    let metrics = format!("127.0.0.1:{metrics_port}");
    let mut receiver = Some(start_receiver(&bins.workload, otlp_port, &otlp_out)?);
    let trace = dir.join("agent.ndjson");
    let mut agent = Command::new(&bins.ipcwatch)
        .arg("agent")
        .arg("-o")
        .arg(&trace)
        .args([
            "--rotate-size",
            "4M",
            "--rotate-keep",
            &ROTATE_KEEP.to_string(),
        ])
        .args(["--interval", "10", "--metrics", &metrics])
        .args(["--otlp", &format!("http://127.0.0.1:{otlp_port}")])
        .stderr(Stdio::piped())
        .spawn()
        .context("starting ipcwatch agent")?;
    let pid = agent.id();
    // The agent traces the whole system: the workload starts once it is
    // recording (its metrics answer).
    let up = Instant::now();
    while scrape(&metrics).is_empty() {
        anyhow::ensure!(
            up.elapsed() < Duration::from_secs(60),
            "ipcwatch agent served no metrics within 60 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut work = Command::new("sh")
        .arg("-c")
        .arg(racy_script(&bins.workload, true))
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .context("starting the workload")?;
    let start = Instant::now();
    let total_time = Duration::from_secs(args.minutes * 60);
    let kill_at = total_time / 2;
    let back_at = kill_at + Duration::from_secs(args.otlp_outage);
    let mut table = String::from(
        "| time (s) | agent RSS (MiB) | events | events lost | processes exited | channels | findings | OTLP sent | OTLP dropped | OTLP queued | log records received | receiver | trace files (MiB) |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut rss_samples = Vec::new();
    let mut killed = false;
    while start.elapsed() < total_time {
        let now = start.elapsed();
        if !killed && now >= kill_at {
            if let Some(mut r) = receiver.take() {
                r.kill().ok();
                r.wait().ok();
                eprintln!("soak: the OTLP receiver is killed at {} s", now.as_secs());
            }
            killed = true;
        } else if killed && receiver.is_none() && now >= back_at {
            receiver = Some(start_receiver(&bins.workload, otlp_port, &otlp_out)?);
            eprintln!("soak: the OTLP receiver is back at {} s", now.as_secs());
        }
        let next_sample = Duration::from_secs(args.every * (rss_samples.len() as u64 + 1));
        let mut wake = next_sample.min(total_time);
        for t in [kill_at, back_at] {
            if t > now {
                wake = wake.min(t);
            }
        }
        std::thread::sleep(wake.saturating_sub(start.elapsed()));
        if start.elapsed() < next_sample.min(total_time) {
            continue;
        }
        let rss = rss_kib(pid);
        rss_samples.push(rss);
        let m = scrape(&metrics);
        let (files, bytes) = trace_files(&dir);
        let row = format!(
            "| {:.0} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {files} ({:.1}) |\n",
            start.elapsed().as_secs_f64(),
            rss as f64 / 1024.0,
            total(&m, "ipcwatch_events_total"),
            total(&m, "ipcwatch_events_lost_total"),
            total(&m, "ipcwatch_processes{state=\"exited\"}"),
            total(&m, "ipcwatch_channels"),
            total(&m, "ipcwatch_findings_total"),
            total(&m, "ipcwatch_otlp_findings_total{outcome=\"sent\"}"),
            total(&m, "ipcwatch_otlp_findings_total{outcome=\"dropped\"}"),
            total(&m, "ipcwatch_otlp_queued_findings"),
            received(&otlp_out).0,
            if receiver.is_some() { "up" } else { "down" },
            bytes as f64 / (1 << 20) as f64,
        );
        eprint!("soak: {row}");
        table.push_str(&row);
    }
    // SAFETY: signalling our own children (the workload's process group,
    // then the agent).
    unsafe {
        libc::kill(-(work.id() as i32), libc::SIGINT);
        libc::kill(pid as i32, libc::SIGTERM);
    }
    work.wait().ok();
    let status = agent.wait()?;
    let mut err = String::new();
    if let Some(mut e) = agent.stderr.take() {
        use std::io::Read;
        e.read_to_string(&mut err).ok();
    }
    if let Some(mut r) = receiver.take() {
        r.kill().ok();
        r.wait().ok();
    }
    // The summary is the last line of the newest file.
    let text = std::fs::read_to_string(&trace).unwrap_or_default();
    let summary: serde_json::Value = text
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(serde_json::Value::Null);
    let (logs, points) = received(&otlp_out);
    let (files, _) = trace_files(&dir);
    let first = rss_samples
        .get(1)
        .or(rss_samples.first())
        .copied()
        .unwrap_or(0);
    let last = rss_samples.last().copied().unwrap_or(0);
    let max = rss_samples.iter().copied().max().unwrap_or(0);
    let section = format!(
        "## Agent\n\n`cargo xtask soak --agent --minutes {} --every {} --otlp-outage {}`: `ipcwatch agent -o target/soak-agent/agent.ndjson --rotate-size 1M --rotate-keep {ROTATE_KEEP} --interval 10 --metrics ADDR --otlp URL`, whole-system, beside the same workload as `--otlp` (the 64-byte pipe ping-pong flat out, and three pipe writers whose records interleave, every second) and, every second, a socketpair, an abstract unix socket, a TCP connection and a POSIX queue between new processes (`ipcwatch-workload channels-demo`), a host's turnover that the agent forgets 60 s after it ends (`--forget-after`, default); the OTLP receiver (`ipcwatch-workload otlp-receiver`) killed at {} s and restarted {} s later. Each row: the agent's RSS, and its counters as its `--metrics` served them.\n\n{table}\nRSS from the second sample to the last: {:.1} → {:.1} MiB (peak {:.1}). The agent exited with {status}; its last lines on stderr (last first): `{}`.\n\nIts summary: `events` {}, `dropped` {}, `seq_gaps` {}, `otlp` `{}`. The receiver decoded {logs} log records and {points} metric points; trace files at the end: {files} (the rotation keeps {ROTATE_KEEP} besides the current one).\n",
        args.minutes,
        args.every,
        args.otlp_outage,
        kill_at.as_secs(),
        args.otlp_outage,
        first as f64 / 1024.0,
        last as f64 / 1024.0,
        max as f64 / 1024.0,
        err.trim()
            .lines()
            .rev()
            .take(2)
            .collect::<Vec<_>>()
            .join(" / "),
        summary["events"],
        summary["dropped"],
        summary["seq_gaps"],
        summary["otlp"],
    );
    let path = root().join("docs/soak.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_default();
    let kept = doc.split("\n## Agent\n").next().unwrap_or("").trim_end();
    std::fs::write(&path, format!("{kept}\n\n{section}"))?;
    eprintln!("soak: wrote {}", path.display());
    Ok(())
}

/// The OTLP receiver on `port`, appending to `out`, once it listens.
fn start_receiver(workload: &Path, port: u16, out: &Path) -> Result<Child> {
    let mut child = Command::new(workload)
        .args(["otlp-receiver", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--out")
        .arg(out)
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the OTLP receiver")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut line)?;
    anyhow::ensure!(
        line.starts_with("listening on"),
        "the OTLP receiver did not start: {line:?}"
    );
    Ok(child)
}

/// Log records and metric points the receiver wrote.
fn received(out: &Path) -> (u64, u64) {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    let logs = text
        .lines()
        .filter(|l| l.contains(r#""signal":"log""#))
        .count() as u64;
    let lines = text.lines().count() as u64;
    (logs, lines - logs)
}

/// VmRSS of `pid` in KiB (0 once it is gone).
fn rss_kib(pid: u32) -> u64 {
    mem_kib(pid).map_or(0, |m| m[0])
}

pub fn run(bins: &Bins, args: &SoakArgs) -> Result<()> {
    if args.agent {
        return run_agent(bins, args);
    }
    let otlp_dir = root().join("target/soak-otlp");
    std::fs::create_dir_all(&otlp_dir)?;
    let otlp_out = otlp_dir.join("received.ndjson");
    // A fresh file: the receiver appends (its restart too).
    let _ = std::fs::remove_file(&otlp_out);
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut receiver = if args.otlp {
        Some(start_receiver(&bins.workload, port, &otlp_out)?)
    } else {
        None
    };
    let mut cmd = Command::new(&bins.ipcwatch);
    cmd.args(["record", "-o", "-"]);
    if args.otlp {
        let script = racy_script(&bins.workload, false);
        cmd.args(["--otlp", &format!("http://127.0.0.1:{port}")])
            .args(["--", "sh", "-c", &script]);
    } else {
        cmd.arg("--").arg(&bins.workload).args([
            "pingpong",
            "--size",
            "64",
            "--iters",
            "1000000000000",
        ]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that SIGINT reaches the workload too,
        // as Ctrl-C would in a terminal.
        .process_group(0)
        .spawn()
        .context("starting ipcwatch record")?;
    let pid = child.id();
    let lines = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicU64::new(0));
    let summary = Arc::new(std::sync::Mutex::new(String::new()));
    let races = Arc::new(AtomicU64::new(0));
    let otlp_summary = Arc::new(std::sync::Mutex::new(serde_json::Value::Null));
    let stdout = child.stdout.take().context("no stdout")?;
    let reader = {
        let (lines, lost, summary) = (lines.clone(), lost.clone(), summary.clone());
        let (races, otlp_summary) = (races.clone(), otlp_summary.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                lines.fetch_add(1, Ordering::Relaxed);
                if line.starts_with("{\"type\":\"lost\"") {
                    let v: serde_json::Value =
                        serde_json::from_str(&line).unwrap_or(serde_json::Value::Null);
                    if let Some(total) = v["total"].as_u64() {
                        lost.store(total, Ordering::Relaxed);
                    }
                } else if line.starts_with("{\"type\":\"race\"") {
                    races.fetch_add(1, Ordering::Relaxed);
                } else if line.starts_with("{\"type\":\"summary\"") {
                    *summary.lock().unwrap() = line.chars().take(300).collect();
                    let v: serde_json::Value =
                        serde_json::from_str(&line).unwrap_or(serde_json::Value::Null);
                    *otlp_summary.lock().unwrap() = v["otlp"].clone();
                }
            }
        })
    };
    let start = Instant::now();
    let total = Duration::from_secs(args.minutes * 60);
    let mut table = String::from(if args.otlp {
        "| time (s) | ipcwatch RSS (MiB) | lines written | events lost | race lines | OTLP log records received | receiver |\n|---|---|---|---|---|---|---|\n"
    } else {
        "| time (s) | ipcwatch RSS (MiB) | lines written | events lost |\n|---|---|---|---|\n"
    });
    let mut rss_samples = Vec::new();
    // The receiver's outage: killed halfway, back `otlp_outage` s later.
    let kill_at = total / 2;
    let back_at = kill_at + Duration::from_secs(args.otlp_outage);
    let mut outage = None;
    while start.elapsed() < total {
        if args.otlp {
            let now = start.elapsed();
            let mut next = Duration::from_secs(args.every);
            if outage.is_none() && now >= kill_at {
                if let Some(mut r) = receiver.take() {
                    r.kill().ok();
                    r.wait().ok();
                    eprintln!("soak: the OTLP receiver is killed at {} s", now.as_secs());
                }
                outage = Some(now);
            } else if receiver.is_none() && outage.is_some() && now >= back_at {
                receiver = Some(start_receiver(&bins.workload, port, &otlp_out)?);
                eprintln!("soak: the OTLP receiver is back at {} s", now.as_secs());
            }
            // Wake for the kill and the restart too.
            for t in [kill_at, back_at] {
                if t > now {
                    next = next.min(t - now);
                }
            }
            let next_sample = Duration::from_secs(args.every * (rss_samples.len() as u64 + 1));
            if next_sample > now && next_sample - now > next {
                std::thread::sleep(next);
                continue;
            }
        }
        // Until the next sample is due.
        let next_sample = Duration::from_secs(args.every * (rss_samples.len() as u64 + 1));
        std::thread::sleep(
            next_sample
                .saturating_sub(start.elapsed())
                .min(total.saturating_sub(start.elapsed())),
        );
        let rss = rss_kib(pid);
        rss_samples.push(rss);
        let mut row = format!(
            "| {:.0} | {:.1} | {} | {} |",
            start.elapsed().as_secs_f64(),
            rss as f64 / 1024.0,
            lines.load(Ordering::Relaxed),
            lost.load(Ordering::Relaxed)
        );
        if args.otlp {
            let _ = write!(
                row,
                " {} | {} | {} |",
                races.load(Ordering::Relaxed),
                received(&otlp_out).0,
                if receiver.is_some() { "up" } else { "down" }
            );
        }
        row.push('\n');
        eprint!("soak: {row}");
        table.push_str(&row);
    }
    // SAFETY: signalling our own child's process group.
    unsafe { libc::kill(-(pid as i32), libc::SIGINT) };
    let status = child.wait()?;
    reader.join().ok();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        e.read_to_string(&mut err).ok();
    }
    let summary = summary.lock().unwrap().clone();
    let otlp_text = if args.otlp {
        // The exit's flush is done: what arrived is all that will.
        if let Some(mut r) = receiver.take() {
            r.kill().ok();
            r.wait().ok();
        }
        let (logs, points) = received(&otlp_out);
        let o = otlp_summary.lock().unwrap().clone();
        format!(
            "\n## OTLP export\n\n`--otlp`: ipcwatch exported to `ipcwatch-workload otlp-receiver`, killed at {} s and restarted {} s later. The trace has {} race lines; the receiver decoded {logs} log records and {points} metric points. The summary's `otlp`: `{o}`. Every finding is sent, dropped (queue full), rejected or undelivered; a log record received more than once was written by a receiver killed before its answer reached ipcwatch, which sent it again.\n",
            kill_at.as_secs(),
            args.otlp_outage,
            races.load(Ordering::Relaxed),
        )
    } else {
        String::new()
    };
    let mut doc = String::new();
    let _ = write!(
        doc,
        "# Soak\n\n`cargo xtask soak --minutes {} --every {}{}`: `ipcwatch record -o -` traces a 64-byte pipe ping-pong that runs flat out{}, its NDJSON read by the soak command, for {} minutes; ipcwatch's RSS and the events it reported lost are sampled over time.\n\n{table}\nipcwatch exited with {status}; its last words: `{}`\n\nThe summary line began: `{}`\n{otlp_text}",
        args.minutes,
        args.every,
        if args.otlp { " --otlp" } else { "" },
        if args.otlp {
            " (and three pipe writers whose 64 KiB records interleave, every second: race findings)"
        } else {
            ""
        },
        args.minutes,
        err.trim(),
        summary
    );
    let path = root().join("docs/soak.md");
    std::fs::write(&path, doc)?;
    eprintln!("soak: wrote {}", path.display());
    Ok(())
}
