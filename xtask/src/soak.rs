//! `cargo xtask soak`: ipcwatch under a high event rate for minutes, with
//! its RSS and losses sampled over time; the table goes to docs/soak.md.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
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
}

/// VmRSS of `pid` in KiB (0 once it is gone).
fn rss_kib(pid: u32) -> u64 {
    mem_kib(pid).map_or(0, |m| m[0])
}

pub fn run(bins: &Bins, args: &SoakArgs) -> Result<()> {
    let mut child = Command::new(&bins.ipcwatch)
        .args(["record", "-o", "-", "--"])
        .arg(&bins.workload)
        .args(["pingpong", "--size", "64", "--iters", "1000000000000"])
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
    let stdout = child.stdout.take().context("no stdout")?;
    let reader = {
        let (lines, lost, summary) = (lines.clone(), lost.clone(), summary.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                lines.fetch_add(1, Ordering::Relaxed);
                if line.starts_with("{\"type\":\"lost\"") {
                    let v: serde_json::Value =
                        serde_json::from_str(&line).unwrap_or(serde_json::Value::Null);
                    if let Some(total) = v["total"].as_u64() {
                        lost.store(total, Ordering::Relaxed);
                    }
                } else if line.starts_with("{\"type\":\"summary\"") {
                    *summary.lock().unwrap() = line.chars().take(300).collect();
                }
            }
        })
    };
    let start = Instant::now();
    let total = Duration::from_secs(args.minutes * 60);
    let mut table = String::from(
        "| time (s) | ipcwatch RSS (MiB) | lines written | events lost |\n|---|---|---|---|\n",
    );
    let mut rss_samples = Vec::new();
    while start.elapsed() < total {
        std::thread::sleep(
            Duration::from_secs(args.every).min(total.saturating_sub(start.elapsed())),
        );
        let rss = rss_kib(pid);
        rss_samples.push(rss);
        let row = format!(
            "| {:.0} | {:.1} | {} | {} |\n",
            start.elapsed().as_secs_f64(),
            rss as f64 / 1024.0,
            lines.load(Ordering::Relaxed),
            lost.load(Ordering::Relaxed)
        );
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
    let mut doc = String::new();
    let _ = write!(
        doc,
        "# Soak\n\n`cargo xtask soak --minutes {} --every {}`: `ipcwatch record -o -` traces a 64-byte pipe ping-pong that runs flat out, its NDJSON read by the soak command, for {} minutes; ipcwatch's RSS and the events it reported lost are sampled over time.\n\n{table}\nipcwatch exited with {status}; its last words: `{}`\n\nThe summary line began: `{}`\n",
        args.minutes,
        args.every,
        args.minutes,
        err.trim(),
        summary
    );
    let path = root().join("docs/soak.md");
    std::fs::write(&path, doc)?;
    eprintln!("soak: wrote {}", path.display());
    Ok(())
}
