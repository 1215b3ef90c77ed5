//! `cargo xtask bench-loss` and `cargo xtask bench-memory` (issue 7, items
//! 3 and 4): the highest event rate ipcwatch records with nothing lost,
//! with every loss checked to be counted; and ipcwatch's memory with 10,000
//! live channels held by 1,000 processes.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::build::Bins;

/// Seconds of paced load per run.
const PACED_SECS: f64 = 3.0;
/// Writer processes (each with a reader): two pairs for two CPUs.
const PACED_PROCS: usize = 2;
/// The smallest ring buffer `--ring-size` accepts.
const TINY_RING: u32 = 4096;

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ipcwatch-{name}-{}.ndjson", std::process::id()))
}

/// What one trace says, read line by line.
#[derive(Debug, Default)]
struct TraceFacts {
    /// Channels the traced processes created (pipe, socketpair).
    created: HashSet<String>,
    /// `io` lines on those channels.
    io_created: u64,
    forks: u64,
    lost_sum: u64,
    lost_last_total: u64,
    events: u64,
    dropped: u64,
    seq_gaps: u64,
    summary_channels: u64,
}

fn read_trace(path: &Path) -> Result<TraceFacts> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut t = TraceFacts::default();
    // `io` lines per channel; those on the workload's channels are summed
    // at the end.
    let mut io_lines: HashMap<String, u64> = HashMap::new();
    let mut saw_summary = false;
    for line in BufReader::new(f).lines() {
        let line = line?;
        // io lines are most of the trace: keep their channel only.
        if line.starts_with("{\"type\":\"io\"") {
            let v: Value = serde_json::from_str(&line)?;
            *io_lines
                .entry(v["channel"].as_str().unwrap_or_default().to_string())
                .or_default() += 1;
            continue;
        }
        let v: Value = serde_json::from_str(&line).with_context(|| format!("bad line {line}"))?;
        match v["type"].as_str().unwrap_or_default() {
            "channel" if matches!(v["event"].as_str(), Some("create" | "socket")) => {
                t.created
                    .insert(v["channel"].as_str().unwrap_or_default().to_string());
            }
            "process" if v["event"] == "fork" => t.forks += 1,
            "lost" => {
                t.lost_sum += v["count"].as_u64().unwrap_or(0);
                t.lost_last_total = v["total"].as_u64().unwrap_or(0);
            }
            "summary" => {
                saw_summary = true;
                t.events = v["events"].as_u64().unwrap_or(0);
                t.dropped = v["dropped"].as_u64().unwrap_or(0);
                t.seq_gaps = v["seq_gaps"].as_u64().unwrap_or(0);
                t.summary_channels = v["channels"].as_array().map_or(0, |a| a.len() as u64);
            }
            _ => {}
        }
    }
    ensure!(saw_summary, "{}: no summary line", path.display());
    t.io_created = io_lines
        .iter()
        .filter(|(c, _)| t.created.contains(*c))
        .map(|(_, n)| n)
        .sum();
    Ok(t)
}

/// The workload's own line, `key=value` words after its name.
fn field(line: &str, key: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

struct PacedRun {
    offered: u64,
    ring: Option<u32>,
    achieved: f64,
    /// `io` events the generator made (messages and its result pipe).
    generated: u64,
    recorded: u64,
    dropped: u64,
    lost_sum: u64,
    seq_gaps: u64,
}

impl PacedRun {
    fn row(&self) -> String {
        format!(
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} |\n",
            self.offered,
            self.ring
                .map_or("8 MiB (default)".to_string(), |r| format!("{r} B")),
            self.achieved,
            self.generated,
            self.recorded,
            self.dropped,
            self.lost_sum,
            self.seq_gaps,
            if self.recorded + self.dropped == self.generated {
                "exact"
            } else {
                "MISMATCH"
            }
        )
    }
}

/// `ipcwatch record -o FILE [--ring-size N] -- ipcwatch-workload paced`,
/// then the accounting checks: the kernel's drop counter, the `lost`
/// lines and the sequence gaps agree, and recorded + dropped is what the
/// generator made.
fn paced(bins: &Bins, rate: u64, ring: Option<u32>) -> Result<PacedRun> {
    let trace = scratch("paced");
    let mut cmd = Command::new(&bins.ipcwatch);
    cmd.args(["record", "-o"]).arg(&trace);
    if let Some(r) = ring {
        cmd.args(["--ring-size", &r.to_string()]);
    }
    cmd.arg("--")
        .arg(&bins.workload)
        .args(["paced", "--rate", &rate.to_string()])
        .args(["--secs", &PACED_SECS.to_string()])
        .args(["--procs", &PACED_PROCS.to_string()]);
    let out = cmd.output().context("running ipcwatch record")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success(),
        "ipcwatch record of the paced workload at {rate}/s failed: {stderr}"
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("paced "))
        .with_context(|| format!("no `paced` line from the workload: {stdout}"))?;
    let facts = read_trace(&trace)?;
    std::fs::remove_file(&trace).ok();
    let run = PacedRun {
        offered: rate,
        ring,
        achieved: field(line, "achieved").unwrap_or(0.0),
        generated: field(line, "io_events").unwrap_or(0.0) as u64,
        recorded: facts.io_created,
        dropped: facts.dropped,
        lost_sum: facts.lost_sum,
        seq_gaps: facts.seq_gaps,
    };
    eprintln!(
        "bench-loss: offered {rate}/s{}: achieved {:.0}/s, generated {}, recorded {}, dropped {} (lost lines {}, seq_gaps {})",
        ring.map_or(String::new(), |r| format!(" ring {r} B")),
        run.achieved,
        run.generated,
        run.recorded,
        run.dropped,
        run.lost_sum,
        run.seq_gaps
    );
    // Every loss counted, three ways, and nothing else missing.
    ensure!(
        facts.dropped == facts.lost_sum && facts.lost_sum == facts.lost_last_total,
        "at {rate}/s: summary dropped {} but the lost lines sum to {} (last total {})",
        facts.dropped,
        facts.lost_sum,
        facts.lost_last_total
    );
    ensure!(
        facts.seq_gaps == facts.dropped,
        "at {rate}/s: seq_gaps {} != dropped {}",
        facts.seq_gaps,
        facts.dropped
    );
    // Set-up and tear-down happen while the ring is drained, so every
    // fork is there and every loss is an io event of the generator.
    ensure!(
        facts.forks == 2 * PACED_PROCS as u64,
        "at {rate}/s: {} fork lines, expected {}",
        facts.forks,
        2 * PACED_PROCS
    );
    ensure!(
        run.recorded + run.dropped == run.generated,
        "at {rate}/s: recorded {} + dropped {} != generated {} io events",
        run.recorded,
        run.dropped,
        run.generated
    );
    Ok(run)
}

const LOSS_HEADER: &str = "| offered io events/s | ring buffer | achieved io events/s | io events generated | recorded | dropped (summary) | sum of `lost` lines | seq_gaps | recorded + dropped = generated |\n|---|---|---|---|---|---|---|---|---|\n";

/// The loss sweep: double the offered rate until events are dropped (or
/// the generator cannot go faster), bisect between the last clean and
/// the first lossy rate, then force drops with the smallest ring buffer.
pub fn loss_sweep(bins: &Bins) -> Result<String> {
    let mut runs = Vec::new();
    let mut clean: Option<u64> = None;
    let mut lossy: Option<u64> = None;
    let mut rate = 100_000u64;
    while rate <= 12_800_000 {
        let r = paced(bins, rate, None)?;
        let dropped = r.dropped;
        runs.push(r);
        if dropped > 0 {
            lossy = Some(rate);
            break;
        }
        clean = Some(rate);
        // Twice in a row under half the offered rate: the traced
        // generator is as fast as it gets.
        let saturated = runs.len() >= 2
            && runs[runs.len() - 2..]
                .iter()
                .all(|r| r.achieved < r.offered as f64 / 2.0);
        if saturated {
            break;
        }
        rate *= 2;
    }
    if let (Some(mut lo), Some(mut hi)) = (clean, lossy) {
        // Bisect: `lo` stays clean, `hi` lossy.
        for _ in 0..3 {
            let mid = (lo + hi) / 2 / 10_000 * 10_000;
            if mid <= lo || mid >= hi {
                break;
            }
            let r = paced(bins, mid, None)?;
            if r.dropped > 0 {
                hi = mid;
            } else {
                lo = mid;
            }
            runs.push(r);
        }
        lossy = Some(hi);
    }
    let tiny = paced(bins, 400_000, Some(TINY_RING))?;
    if tiny.dropped == 0 {
        bail!(
            "the {TINY_RING}-byte ring dropped nothing at 400,000/s: the loss path is not exercised"
        );
    }
    let best = runs
        .iter()
        .filter(|r| r.dropped == 0)
        .max_by_key(|r| r.offered);
    let mut doc = String::from("### Loss under load\n\n");
    doc.push_str(LOSS_HEADER);
    for r in runs.iter().chain(std::iter::once(&tiny)) {
        doc.push_str(&r.row());
    }
    let _ = write!(
        doc,
        "\n`ipcwatch record -o FILE -- ipcwatch-workload paced --rate R --secs {PACED_SECS} --procs {PACED_PROCS}` ({PACED_PROCS} writers, each with a pipe and a reader; one 8-byte write and one read per message, paced per 1 ms tick). "
    );
    match (best, lossy) {
        (Some(b), Some(l)) => {
            let _ = write!(
                doc,
                "Highest offered rate with zero drops: **{} io events/s** (achieved {:.0}/s); drops from {}/s offered. ",
                b.offered, b.achieved, l
            );
        }
        (Some(b), None) => {
            let _ = write!(
                doc,
                "No drops at any offered rate up to {}/s: the highest achieved rate, with zero drops, was {:.0} io events/s (the traced generator went no faster). ",
                b.offered,
                runs.iter().map(|r| r.achieved).fold(0.0, f64::max)
            );
        }
        _ => doc.push_str("Drops at the lowest offered rate. "),
    }
    doc.push_str("Every run checked: summary `dropped` == sum of `lost` lines == `seq_gaps`, all forks recorded, and io lines recorded + dropped == io events the generator counted.\n");
    Ok(doc)
}

/// (VmRSS, VmHWM, RssAnon, RssFile) of `pid`, in KiB.
pub(crate) fn mem_kib(pid: u32) -> Option<[u64; 4]> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let get = |k: &str| -> Option<u64> {
        s.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    };
    Some([
        get("VmRSS:")?,
        get("VmHWM:")?,
        get("RssAnon:")?,
        get("RssFile:")?,
    ])
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Memory: ipcwatch records 1,000 processes holding 10,000 live channels,
/// sampled every second while they are live.
pub fn memory(bins: &Bins) -> Result<String> {
    memory_with(bins, 1000, 10_000, 60)
}

pub fn memory_with(bins: &Bins, procs: usize, channels: usize, hold: u64) -> Result<String> {
    let trace = scratch("memory");
    let mut child = Command::new(&bins.ipcwatch)
        .args(["record", "-o"])
        .arg(&trace)
        .arg("--")
        .arg(&bins.workload)
        .args(["many-channels"])
        .args(["--procs", &procs.to_string()])
        .args(["--channels", &channels.to_string()])
        .args(["--hold", &hold.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting ipcwatch record")?;
    let pid = child.id();
    let stdout = child.stdout.take().context("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(l) if l.starts_with("many-channels ready") => break,
            Ok(_) => {}
            Err(_) => {
                // SAFETY: our own child.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                bail!("many-channels did not get ready");
            }
        }
    }
    let setup = started.elapsed();
    let ready_at = Instant::now();
    let mut samples = Vec::new();
    while ready_at.elapsed() < Duration::from_secs(hold) {
        std::thread::sleep(Duration::from_secs(1));
        if ready_at.elapsed() > Duration::from_secs(hold) {
            break;
        }
        if let Some(m) = mem_kib(pid) {
            samples.push((ready_at.elapsed().as_secs_f64(), m));
        }
    }
    let status = child.wait()?;
    reader.join().ok();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        e.read_to_string(&mut err).ok();
    }
    ensure!(status.success(), "ipcwatch record failed: {err}");
    let facts = read_trace(&trace)?;
    std::fs::remove_file(&trace).ok();
    ensure!(!samples.is_empty(), "no memory samples");
    memory_doc(procs, channels, hold, setup, &facts, &samples)
}

/// The memory section: the checks that the trace holds every channel and
/// process, then the samples and the verdict.
fn memory_doc(
    procs: usize,
    channels: usize,
    hold: u64,
    setup: Duration,
    facts: &TraceFacts,
    samples: &[(f64, [u64; 4])],
) -> Result<String> {
    // The collector saw them all.
    ensure!(
        facts.summary_channels >= channels as u64 && facts.created.len() >= channels,
        "the trace has {} channels ({} created), expected at least {channels}",
        facts.summary_channels,
        facts.created.len()
    );
    ensure!(
        facts.forks >= procs as u64,
        "the trace has {} forks, expected at least {procs}",
        facts.forks
    );
    let first = samples[0].1;
    let last = samples[samples.len() - 1].1;
    let max_rss = samples.iter().map(|s| s.1[0]).max().unwrap_or(0);
    let hwm = samples.iter().map(|s| s.1[1]).max().unwrap_or(0);
    let mut doc = String::from("### Memory\n\n");
    doc.push_str("| seconds with the channels live | VmRSS (MiB) | VmHWM (MiB) | RssAnon (MiB) | RssFile (MiB) |\n|---|---|---|---|---|\n");
    let every = (samples.len() / 12).max(1);
    for (i, (t, m)) in samples.iter().enumerate() {
        if i % every == 0 || i + 1 == samples.len() {
            let _ = writeln!(
                doc,
                "| {t:.0} | {:.1} | {:.1} | {:.1} | {:.1} |",
                mib(m[0]),
                mib(m[1]),
                mib(m[2]),
                mib(m[3])
            );
        }
    }
    let _ = write!(
        doc,
        "\n`ipcwatch record -o FILE -- ipcwatch-workload many-channels --procs {procs} --channels {channels} --hold {hold}` (set-up {:.1} s; trace: {} channels in the summary, {} forks, {} events, {} dropped). \
         RSS with {channels} live channels and {procs} processes: **{:.1} MiB** (peak {:.1} MiB, high-water mark {:.1} MiB; goal <= 64 MiB: {}); \
         first sample {:.1} MiB, last {:.1} MiB after {:.0} s of steady traffic ({}). \
         RssFile includes the 8 MiB ring buffer, which is mapped twice (16 MiB).\n",
        setup.as_secs_f64(),
        facts.summary_channels,
        facts.forks,
        facts.events,
        facts.dropped,
        mib(last[0]),
        mib(max_rss),
        mib(hwm),
        match (max_rss <= 64 * 1024, hwm <= 64 * 1024) {
            (true, true) => "met",
            (true, false) => "met while live, NOT by the start-up peak",
            _ => "NOT met",
        },
        mib(first[0]),
        mib(last[0]),
        samples[samples.len() - 1].0,
        if last[0] <= first[0] + first[0] / 50 {
            "flat"
        } else {
            "GROWING"
        }
    );
    Ok(doc)
}
