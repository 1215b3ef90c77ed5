//! `cargo xtask bench-collector`: how many kernel events a second the
//! collector turns into NDJSON on one core. `ipcwatch-workload
//! collector-throughput` pushes synthetic ring-buffer records through the
//! decoder, the model and the NDJSON writer (no kernel, no root) and checks
//! its own output; this runs it a few times and reports the median.
//! The goal is judged on events per CPU-second of the collector's thread:
//! on a core shared with other work the wall clock counts that work too.
//! The table shows both, and how much of the core the run got.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cmd::have;

/// Issue 7's goal, events per second on one core.
pub const GOAL: f64 = 2_000_000.0;
/// Runs per measurement (the median is reported).
const RUNS: usize = 3;

/// One run's figures, as the workload prints them.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Figures {
    events: u64,
    ndjson_bytes: u64,
    secs: f64,
    cpu_secs: f64,
    events_per_sec: f64,
    events_per_cpu_sec: f64,
}

fn parse(text: &str) -> Result<Figures> {
    let field = |name: &str| -> Result<&str> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .map(str::trim)
            .with_context(|| format!("no `{name}` in the workload's output: {text}"))
    };
    let num = |name: &str| -> Result<f64> {
        let v = field(name)?;
        v.parse()
            .with_context(|| format!("`{name}` is not a number: {v}"))
    };
    let int = |name: &str| -> Result<u64> {
        let v = field(name)?;
        v.parse()
            .with_context(|| format!("`{name}` is not an integer: {v}"))
    };
    Ok(Figures {
        events: int("events")?,
        ndjson_bytes: int("ndjson bytes")?,
        secs: num("seconds")?,
        cpu_secs: num("cpu seconds")?,
        events_per_sec: num("collector events/s")?,
        events_per_cpu_sec: num("collector events/cpu-s")?,
    })
}

/// The arguments before `collector-throughput`: none for ipcwatch-workload;
/// `workload` for an ipcwatch built before the workloads left it (a
/// `--baseline`).
fn prefix(bin: &Path) -> &'static [&'static str] {
    if bin.file_name().is_some_and(|n| n == "ipcwatch") {
        &["workload"]
    } else {
        &[]
    }
}

fn once(bin: &Path, events: u64, pin: bool) -> Result<Figures> {
    let mut cmd = if pin {
        let mut c = Command::new("taskset");
        c.args(["-c", "1"]).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    cmd.args(prefix(bin));
    cmd.args(["collector-throughput", "--events", &events.to_string()]);
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "collector-throughput failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse(&String::from_utf8_lossy(&out.stdout))
}

/// 1234567 -> "1,234,567".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut s = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            s.push(',');
        }
        s.push(c);
    }
    s
}

fn table(runs: &[Figures], pinned: bool) -> String {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|a, b| a.events_per_sec.total_cmp(&b.events_per_sec));
    let m = sorted[sorted.len() / 2];
    let cpu = median_cpu(runs);
    let core = if pinned { "CPU 1" } else { "not pinned" };
    // On a core shared with other work, wall-clock time counts theirs too;
    // the thread's CPU time is what one core gives the collector.
    let met = if cpu >= GOAL { "met" } else { "not met" };
    let rows = [
        ("events", thousands(m.events)),
        (
            "events/s (wall clock)",
            thousands(m.events_per_sec.round() as u64),
        ),
        (
            "ns/event (wall clock)",
            format!("{:.0}", 1e9 / m.events_per_sec),
        ),
        ("events per CPU-second", thousands(cpu.round() as u64)),
        (
            "share of the core the run got",
            format!("{:.2}", (m.cpu_secs / m.secs).min(1.0)),
        ),
        (
            "NDJSON MB/s",
            format!("{:.0}", m.ndjson_bytes as f64 / 1e6 / m.secs),
        ),
    ];
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| collector throughput ({core}, median of {}) | |",
        runs.len()
    );
    let _ = writeln!(t, "|---|---:|");
    for (name, value) in rows {
        let _ = writeln!(t, "| {name} | {value} |");
    }
    let _ = writeln!(
        t,
        "| goal ≥ {} events/s on one core (CPU time) | {met} |",
        thousands(GOAL as u64)
    );
    t
}

/// The median of events per CPU-second.
fn median_cpu(runs: &[Figures]) -> f64 {
    let mut cpu: Vec<f64> = runs.iter().map(|r| r.events_per_cpu_sec).collect();
    cpu.sort_by(f64::total_cmp);
    cpu[cpu.len() / 2]
}

/// This tree's collector and a `baseline` build's, alternating run by run
/// in one invocation: both tables and the ratio of their medians.
pub fn run_against(bin: &Path, baseline: &Path, events: u64) -> Result<String> {
    let pin = have("taskset") && std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    let (mut now, mut before) = (Vec::new(), Vec::new());
    for i in 0..RUNS {
        for (which, b, runs) in [
            ("this tree", bin, &mut now),
            ("baseline", baseline, &mut before),
        ] {
            let f = once(b, events, pin)?;
            eprintln!(
                "collector-throughput run {}/{RUNS}, {which}: {:.0} events/s ({:.0} per CPU-second)",
                i + 1,
                f.events_per_sec,
                f.events_per_cpu_sec
            );
            runs.push(f);
        }
    }
    let ratio = median_cpu(&now) / median_cpu(&before);
    Ok(format!(
        "This tree ({}):\n\n{}\nBaseline ({}):\n\n{}\nEvents per CPU-second, this tree / baseline: **{ratio:.3}** (runs alternating, median of {RUNS} each)\n",
        bin.display(),
        table(&now, pin),
        baseline.display(),
        table(&before, pin)
    ))
}

/// Run the benchmark with the workload binary `bin`; a markdown table of
/// the median run.
pub fn run(bin: &Path, events: u64) -> Result<String> {
    let pin = have("taskset") && std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    let mut runs = Vec::with_capacity(RUNS);
    for i in 0..RUNS {
        let f = once(bin, events, pin)?;
        eprintln!(
            "collector-throughput run {}/{RUNS}: {:.0} events/s ({:.0} per CPU-second)",
            i + 1,
            f.events_per_sec,
            f.events_per_cpu_sec
        );
        runs.push(f);
    }
    Ok(table(&runs, pin))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "events 3000000\nndjson lines 3009041\nndjson bytes 493994141\n\
        seconds 1.500000\ncollector events/s 2000000.0\ncollector ns/event 500.00\n\
        cpu seconds 1.400000\ncollector events/cpu-s 2142857.1\nndjson MB/s 329.3\n";

    #[test]
    fn parses_the_workload_output() {
        let f = parse(OUTPUT).unwrap();
        assert_eq!(f.events, 3_000_000);
        assert_eq!(f.ndjson_bytes, 493_994_141);
        assert_eq!(f.events_per_sec, 2_000_000.0);
        assert!(parse("events 3\n").is_err());
    }

    #[test]
    fn the_table_reports_the_median_run() {
        let f = parse(OUTPUT).unwrap();
        let slow = Figures {
            events_per_sec: 1_000_000.0,
            events_per_cpu_sec: 1_900_000.0,
            ..f
        };
        let fast = Figures {
            events_per_sec: 3_000_000.0,
            ..f
        };
        let t = table(&[fast, slow, f], true);
        assert!(t.contains("| events/s (wall clock) | 2,000,000 |"), "{t}");
        assert!(t.contains("| ns/event (wall clock) | 500 |"), "{t}");
        assert!(t.contains("| events per CPU-second | 2,142,857 |"), "{t}");
        assert!(
            t.contains("| share of the core the run got | 0.93 |"),
            "{t}"
        );
        assert!(t.contains("| NDJSON MB/s | 329 |"), "{t}");
        assert!(t.contains("(CPU time) | met |"), "{t}");
        let t = table(&[slow], false);
        assert!(t.contains("(CPU time) | not met |"), "{t}");
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(12_345_678), "12,345,678");
    }
}
