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

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::build::Bins;
use crate::compare::{median, rate_of};

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
        // The programs' own run time per depth, in rounds of their own
        // (bpf_stats slows every program down): medians.
        let filters = [
            &["--comm", NOBODY][..],
            &["--comm", WORKLOAD_COMM, "--kind", "mq"],
            &["--comm", WORKLOAD_COMM],
        ];
        let mut own = vec![Vec::new(); filters.len()];
        for _ in 0..rounds.max(1) {
            for (i, filter) in filters.iter().enumerate() {
                let ns = run_time(bins, filter, pin, &workload)?;
                eprintln!("bench stages: {name}: {filter:?}: {ns:.0} ns of eBPF per syscall");
                own[i].push(ns);
            }
        }
        let own: Vec<f64> = own.iter_mut().map(|v| median(v)).collect();
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
        let _ = writeln!(
            s,
            "| {name}: eBPF run time per traced syscall, `sys_enter` + `sys_exit` (bpf_stats) | | | {:.0} ns | {:.0} ns | {:.0} ns |",
            own[0], own[1], own[2]
        );
    }
    Ok(s)
}

/// The workload's name as the kernel keeps it (15 bytes).
const WORKLOAD_COMM: &str = "ipcwatch-worklo";

/// With kernel.bpf_stats_enabled on, a whole-system `record` with
/// `filter` while the workload runs untraced: the mean run time per run
/// of each of ipcwatch's programs that ran for every syscall (at least
/// once per traced event: `sys_enter` and `sys_exit` with the families
/// it tail-calls), summed: eBPF ns per traced syscall. From the fdinfo of
/// its descriptors, before and after the run; other processes' syscalls
/// (turned away) in that window are in the mean too, a small part.
fn run_time(bins: &Bins, filter: &[&str], pin: bool, workload: &[String]) -> Result<f64> {
    const KNOB: &str = "/proc/sys/kernel/bpf_stats_enabled";
    let iters: u64 = workload
        .iter()
        .skip_while(|a| *a != "--iters")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .context("no --iters in the workload")?;
    let was = std::fs::read_to_string(KNOB).context("reading kernel.bpf_stats_enabled")?;
    std::fs::write(KNOB, "1").context("enabling kernel.bpf_stats_enabled")?;
    let got = background(&bins.ipcwatch, pin, filter, |pid| {
        // Past ipcwatch's start-up (its /proc scan is syscalls too).
        std::thread::sleep(Duration::from_secs(1));
        let before = programs(pid);
        let out = pinned_workload(bins, pin, workload).output();
        let after = programs(pid);
        rate(&String::from_utf8_lossy(
            &out.context("running the workload")?.stdout,
        ))?;
        let mut ns = 0.0;
        for (id, (t1, c1)) in &after {
            let (t0, c0) = before.get(id).copied().unwrap_or_default();
            if c1 - c0 >= 4 * iters {
                ns += (t1 - t0) as f64 / (c1 - c0) as f64;
            }
        }
        Ok(ns)
    });
    let _ = std::fs::write(KNOB, was.trim());
    got
}

/// prog_id -> (run_time_ns, run_cnt) of the BPF programs `pid` holds.
fn programs(pid: u32) -> BTreeMap<u64, (u64, u64)> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return out;
    };
    for info in dir
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
    {
        let field = |name: &str| -> Option<u64> {
            info.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
        };
        if let (Some(id), Some(t), Some(c)) =
            (field("prog_id:"), field("run_time_ns:"), field("run_cnt:"))
        {
            out.insert(id, (t, c));
        }
    }
    out
}

/// The workload's command: `taskset -c 1` first when pinned.
fn pinned_workload(bins: &Bins, pin: bool, workload: &[String]) -> Command {
    let mut c = if pin {
        let mut c = Command::new("taskset");
        c.args(["-c", "1"]).arg(&bins.workload);
        c
    } else {
        Command::new(&bins.workload)
    };
    c.args(workload);
    c
}

/// `program` on CPU 0 when pinned (the tracer's CPU).
fn on_cpu0(program: &Path, pin: bool) -> Command {
    if pin {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// One run of the ping-pong `workload` at `depth`: round trips/s.
fn once(bins: &Bins, depth: Depth, workload: &[String], pin: bool) -> Result<f64> {
    let traced = |tracer: &Path, args: &[&str]| {
        let w = pinned_workload(bins, pin, workload);
        let mut c = on_cpu0(tracer, pin);
        c.args(args).arg(w.get_program()).args(w.get_args());
        c
    };
    let out = match depth {
        Depth::Untraced => pinned_workload(bins, pin, workload).output(),
        Depth::Hooks => traced(&bins.workload, &["empty-hooks", "--"]).output(),
        Depth::TurnedAway => {
            return background(&bins.ipcwatch, pin, &["--comm", NOBODY], |_| {
                let out = pinned_workload(bins, pin, workload)
                    .output()
                    .context("running the workload")?;
                if !out.status.success() {
                    bail!(
                        "the workload failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                rate(&String::from_utf8_lossy(&out.stdout))
            });
        }
        Depth::Classified => traced(
            &bins.ipcwatch,
            &["record", "--kind", "mq", "-o", "/dev/null", "--"],
        )
        .output(),
        Depth::Sent => traced(&bins.ipcwatch, &["record", "-o", "/dev/null", "--"]).output(),
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

/// `during(pid)` while a whole-system `ipcwatch record FILTER` runs:
/// started first, ready once its trace holds the header (written after
/// the probes are attached), stopped with SIGINT after; it must exit 0.
fn background<T>(
    ipcwatch: &Path,
    pin: bool,
    filter: &[&str],
    during: impl FnOnce(u32) -> Result<T>,
) -> Result<T> {
    let trace = std::env::temp_dir().join(format!("ipcwatch-stages-{}.ndjson", std::process::id()));
    let _ = std::fs::remove_file(&trace);
    let mut rec = on_cpu0(ipcwatch, pin)
        .arg("record")
        .args(filter)
        .arg("-o")
        .arg(&trace)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting ipcwatch record")?;
    let t0 = Instant::now();
    while std::fs::metadata(&trace).map_or(0, |m| m.len()) == 0 {
        if let Some(st) = rec.try_wait()? {
            let out = rec.wait_with_output()?;
            bail!(
                "ipcwatch record {filter:?} exited ({st}) before the run: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = rec.kill();
            let _ = rec.wait();
            bail!("ipcwatch record {filter:?} wrote no header in 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // taskset execs ipcwatch: the same pid.
    let got = during(rec.id());
    // SAFETY: signalling our own child.
    unsafe { libc::kill(rec.id() as i32, libc::SIGINT) };
    let rec = rec.wait_with_output()?;
    let _ = std::fs::remove_file(&trace);
    if !rec.status.success() {
        bail!(
            "ipcwatch record {filter:?} failed ({}): {}",
            rec.status,
            String::from_utf8_lossy(&rec.stderr)
        );
    }
    got
}

fn rate(stdout: &str) -> Result<f64> {
    rate_of(stdout).with_context(|| format!("no rate in the workload's output: {stdout}"))
}
