//! Where a traced event's cost goes in the kernel: the 1-byte pipe and
//! unix socket ping-pongs, pinned as in the bench, run untraced, under
//! the empty hooks, and under ipcwatch stopped at three depths of its
//! per-event path, with no change to ipcwatch:
//!
//! - **turned away**: a whole-system `record --comm NOBODY`: every
//!   syscall runs ipcwatch's programs up to the process filter, which
//!   turns the workload away;
//! - **classified, not sent**: `record --kind mq -- CMD`: the workload
//!   is followed, each read and write has its descriptor classified (slot,
//!   file, inode; for a socket also its `struct sock`), and the kind
//!   filter drops it before any record is made;
//! - **sent**: `record -- CMD`, the bench's ipcwatch column.
//!
//! The ns per event above the empty hooks of each depth, side by side in
//! one run, say what each step of the path costs.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::build::Bins;
use crate::compare::median;

/// A comm no process has (at most 15 bytes).
const NOBODY: &str = "ipcw-stage-none";

#[derive(Clone, Copy, PartialEq)]
enum Depth {
    Untraced,
    Hooks,
    TurnedAway,
    Classified,
    Sent,
}

const DEPTHS: [Depth; 5] = [
    Depth::Untraced,
    Depth::Hooks,
    Depth::TurnedAway,
    Depth::Classified,
    Depth::Sent,
];

impl Depth {
    fn name(self) -> &'static str {
        match self {
            Depth::Untraced => "untraced",
            Depth::Hooks => "empty hooks",
            Depth::TurnedAway => "turned away by the filter",
            Depth::Classified => "classified, not sent",
            Depth::Sent => "sent (ipcwatch)",
        }
    }
}

/// The table: one row per ping-pong, each depth's median rate and its ns
/// per event above the empty hooks (four traced events per round trip).
pub fn run(bins: &Bins, iters: u64, rounds: usize, pin: bool) -> Result<String> {
    let iters = iters.to_string();
    let mut s = String::from(
        "| ping-pong, 1 B | untraced | empty hooks | turned away by the filter | classified, not sent | sent (ipcwatch) |\n|---|---|---|---|---|---|\n",
    );
    for (name, sub) in [("pipe", "pingpong"), ("unix socket", "unix-pingpong")] {
        let workload: Vec<String> = [sub, "--size", "1", "--iters", &iters]
            .iter()
            .map(|a| a.to_string())
            .collect();
        let mut samples = vec![Vec::new(); DEPTHS.len()];
        for round in 0..rounds.max(1) {
            for step in 0..DEPTHS.len() {
                let i = (step + round) % DEPTHS.len();
                let rate = once(bins, DEPTHS[i], &workload, pin)?;
                eprintln!("bench stages: {name}: {}: {rate:.0}/s", DEPTHS[i].name());
                samples[i].push(rate);
            }
        }
        let rates: Vec<f64> = samples.iter_mut().map(|v| median(v)).collect();
        let (base, hooks) = (rates[0], rates[1]);
        let _ = write!(s, "| {name} | {base:.0}/s |");
        for (d, rate) in DEPTHS.iter().zip(&rates).skip(1) {
            let above = (1.0 / rate - 1.0 / hooks) * 1e9 / 4.0;
            if *d == Depth::Hooks {
                let _ = write!(s, " {:.2}x ({rate:.0}/s) |", rate / base);
            } else {
                let _ = write!(s, " {:.2}x, {above:+.0} ns |", rate / base);
            }
        }
        s.push('\n');
    }
    Ok(s)
}

/// One run of the ping-pong `workload` at `depth`: round trips/s.
fn once(bins: &Bins, depth: Depth, workload: &[String], pin: bool) -> Result<f64> {
    let mut argv: Vec<String> = Vec::new();
    if pin {
        // The workload's two processes share CPU 1; the tracer gets CPU 0.
        argv.extend(["taskset".into(), "-c".into(), "1".into()]);
    }
    argv.push(bins.workload.display().to_string());
    argv.extend(workload.iter().cloned());
    let tracer = |args: &[&str]| {
        let mut c = if pin {
            let mut c = Command::new("taskset");
            c.args(["-c", "0"]).arg(&bins.ipcwatch);
            c
        } else {
            Command::new(&bins.ipcwatch)
        };
        c.args(args);
        c
    };
    let out = match depth {
        Depth::Untraced => Command::new(&argv[0]).args(&argv[1..]).output(),
        Depth::Hooks => {
            let mut c = if pin {
                let mut c = Command::new("taskset");
                c.args(["-c", "0"]).arg(&bins.workload);
                c
            } else {
                Command::new(&bins.workload)
            };
            c.args(["empty-hooks", "--"]).args(&argv).output()
        }
        Depth::TurnedAway => return turned_away(&bins.ipcwatch, pin, &argv),
        Depth::Classified => tracer(&["record", "--kind", "mq", "-o", "/dev/null", "--"])
            .args(&argv)
            .output(),
        Depth::Sent => tracer(&["record", "-o", "/dev/null", "--"])
            .args(&argv)
            .output(),
    }
    .with_context(|| format!("running the workload ({})", depth.name()))?;
    if !out.status.success() {
        bail!(
            "{} run failed: {}",
            depth.name(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    rate(&String::from_utf8_lossy(&out.stdout))
}

/// The workload run untraced while a whole-system `record --comm
/// NOBODY` runs: started first, ready once its trace holds the header
/// (written after the probes are attached), stopped with SIGINT after.
fn turned_away(ipcwatch: &Path, pin: bool, argv: &[String]) -> Result<f64> {
    let trace = std::env::temp_dir().join(format!("ipcwatch-stages-{}.ndjson", std::process::id()));
    let _ = std::fs::remove_file(&trace);
    let mut cmd = if pin {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]).arg(ipcwatch);
        c
    } else {
        Command::new(ipcwatch)
    };
    let mut rec = cmd
        .args(["record", "--comm", NOBODY, "-o"])
        .arg(&trace)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting ipcwatch record --comm")?;
    let t0 = Instant::now();
    while std::fs::metadata(&trace).map_or(0, |m| m.len()) == 0 {
        if let Some(st) = rec.try_wait()? {
            let out = rec.wait_with_output()?;
            bail!(
                "ipcwatch record --comm exited ({st}) before the run: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = rec.kill();
            bail!("ipcwatch record --comm wrote no header in 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = Command::new(&argv[0]).args(&argv[1..]).output();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(rec.id() as i32, libc::SIGINT) };
    let rec = rec.wait_with_output()?;
    let _ = std::fs::remove_file(&trace);
    let out = out.context("running the workload")?;
    if !rec.status.success() {
        bail!(
            "ipcwatch record --comm failed ({}): {}",
            rec.status,
            String::from_utf8_lossy(&rec.stderr)
        );
    }
    if !out.status.success() {
        bail!(
            "the workload failed under record --comm: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    rate(&String::from_utf8_lossy(&out.stdout))
}

fn rate(stdout: &str) -> Result<f64> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("round-trips/s "))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no rate in the workload's output: {stdout}"))
}
