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
    /// With --otlp: seconds the receiver stays down.
    #[arg(long, default_value_t = 20, requires = "otlp")]
    otlp_outage: u64,
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
        let w = bins.workload.display();
        let script = format!(
            // A background job of a script ignores SIGINT: the trap ends it.
            "{w} pingpong --size 64 --iters 1000000000000 & p=$!; trap 'kill $p; exit 130' INT TERM; while :; do {w} pipe-writers --writers 3 --size 65536 --records 32 >/dev/null; sleep 1; done"
        );
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
