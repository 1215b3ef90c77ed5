//! `cargo xtask accuracy`: run every race-detector acceptance workload a
//! number of times under `ipcwatch record --fail-on-race` and tabulate
//! precision and recall in docs/races.md, with per scenario the time to
//! the first finding and what ipcwatch itself cost (CPU, peak RSS).
//!
//! ipcwatch's own figures come from /proc, not from wait4's rusage: the
//! rusage of a reaped process includes its reaped children (RUSAGE_BOTH),
//! and ipcwatch reaps the traced command, whose RSS is the whole shared
//! region. So the peak RSS is ipcwatch's VmHWM, read every 50 ms while it
//! runs (a high-water mark: the last reading holds every earlier peak),
//! and its CPU time is utime + stime of /proc/PID/stat read once it has
//! exited but before it is reaped (waitid with WNOWAIT), which count its
//! own threads only.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::build::Bins;
use crate::cmd::root;

#[derive(clap::Args)]
pub struct AccuracyArgs {
    /// Runs per workload.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Seconds each workload runs (the racing part, for the late race).
    #[arg(long, default_value_t = 5)]
    secs: u64,
    /// Seconds of quiet before the late race starts.
    #[arg(long, default_value_t = 60)]
    quiet_secs: u64,
    /// Also run every racy scenario again with `stress-ng --cpu <CPUs>`
    /// alongside.
    #[arg(long)]
    load: bool,
    /// Only the scenarios whose name contains SUBSTRING (the table is
    /// then labelled partial).
    #[arg(long, value_name = "SUBSTRING")]
    only: Option<String>,
}

struct Variant {
    name: String,
    racy: bool,
    args: Vec<String>,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// The variants, run by the workload binary `bin`.
fn variants(bin: &str, secs: u64, quiet_secs: u64) -> Vec<Variant> {
    let s = secs.to_string();
    let counter = |memory: &str, sync: &str| {
        strings(&[
            bin, "counter", "--memory", memory, "--sync", sync, "--secs", &s,
        ])
    };
    let posix = format!(
        "n=/ipcwatch-acc-$$; {bin} posix-counter --name $n --secs {s} & {bin} posix-counter --name $n --secs {s}; wait; rm -f /dev/shm/${{n#/}}"
    );
    let pipes = |size: &str, records: &str| {
        strings(&[
            bin,
            "pipe-writers",
            "--writers",
            "3",
            "--size",
            size,
            "--records",
            records,
        ])
    };
    // ipcwatch-workload region (ipcwatch-workload/src/scale.rs).
    // At its CPU budget the sampler reads a region through in about 16 s
    // per GiB (release build): big regions get the time of a pass at least.
    let region = |size: &str, memory: &str, more: &[&str]| {
        let at_least: u64 = match size {
            "1G" => 30,
            "4G" => 100,
            _ => 0,
        };
        let secs = secs.max(at_least).to_string();
        let mut v = strings(&[
            bin, "region", "--size", size, "--memory", memory, "--secs", &secs,
        ]);
        v.extend(strings(more));
        v
    };
    // Two processes of four threads each, taking `sync` for every bump.
    let threaded = |sync: &str| {
        strings(&[
            bin,
            "counter",
            "--memory",
            "anon",
            "--sync",
            sync,
            "--threads",
            "4",
            "--secs",
            &s,
        ])
    };
    let v = |name: &str, racy: bool, args: Vec<String>| Variant {
        name: name.to_string(),
        racy,
        args,
    };
    let q = quiet_secs.to_string();
    vec![
        v(
            "racy counter, shared anonymous memory",
            true,
            counter("anon", "none"),
        ),
        v("racy counter, memfd", true, counter("memfd", "none")),
        v("racy counter, SysV shm", true, counter("sysv", "none")),
        v(
            "racy counter, POSIX shm, unrelated processes",
            true,
            vec!["sh".into(), "-c".into(), posix],
        ),
        v("pipe writers, 64 KiB records", true, pipes("65536", "32")),
        // Issue 19: recall at scale. A racing word among legitimate
        // single-writer words on every page of the region.
        v(
            "region 1 MiB, anon, written all over",
            true,
            region("1M", "anon", &["--touch"]),
        ),
        v("region 16 MiB, anon", true, region("16M", "anon", &[])),
        v("region 256 MiB, memfd", true, region("256M", "memfd", &[])),
        v("region 1 GiB, SysV shm", true, region("1G", "sysv", &[])),
        v(
            "region 4 GiB, POSIX shm, written all over",
            true,
            region("4G", "posix", &["--touch"]),
        ),
        v(
            "region 16 MiB, 4 threads per process",
            true,
            region("16M", "memfd", &["--threads", "4"]),
        ),
        v(
            "ring, two producers, unsynchronized head",
            true,
            strings(&[bin, "ring", "--producers", "2", "--secs", &s]),
        ),
        v(
            "rare race, 1,000 writes/s per process, 1 MiB, sweeps at 20,000 pages/s",
            true,
            region("1M", "anon", &["--rate", "1000", "--sweep-rate", "20000"]),
        ),
        v(
            "rare race, 1,000 writes/s per process, 1 MiB, unpaced sweeps",
            true,
            region("1M", "anon", &["--rate", "1000"]),
        ),
        v(
            &format!("race after {quiet_secs} s of quiet, 16 MiB"),
            true,
            region("16M", "anon", &["--quiet-secs", &q]),
        ),
        v("process-shared mutex", false, counter("anon", "mutex")),
        v(
            "glibc process-shared spinlock",
            false,
            counter("anon", "spin"),
        ),
        v(
            "contended mutex, 4 threads per process",
            false,
            threaded("mutex"),
        ),
        v(
            "contended rwlock, 4 threads per process",
            false,
            threaded("rwlock"),
        ),
        v(
            "lock-free CAS stack",
            false,
            strings(&[bin, "cas-queue", "--procs", "2", "--secs", &s]),
        ),
        v(
            "seqlock, one writer",
            false,
            strings(&[bin, "seqlock", "--readers", "1", "--secs", &s]),
        ),
        v(
            "per-process slots in one page",
            false,
            strings(&[bin, "slots", "--procs", "4", "--secs", &s]),
        ),
        v("process-shared rwlock", false, counter("anon", "rwlock")),
        v("atomic increments", false, counter("anon", "atomic")),
        v("named semaphore", false, counter("anon", "semaphore")),
        v("token over two pipes", false, counter("anon", "token")),
        v("pipe writers, 512 B records", false, pipes("512", "2000")),
        v(
            "region 1 GiB, anon, mutex counter",
            false,
            region("1G", "anon", &["--sync", "mutex"]),
        ),
    ]
}

/// What one `ipcwatch record` run gave.
struct RunResult {
    flagged: bool,
    /// First race line's ts minus the header's.
    first_ns: Option<u64>,
    /// ipcwatch's own user + system time.
    cpu_ns: u64,
    wall_ns: u64,
    /// The summary's detector.sampler_cpu_ns, when present.
    sampler_cpu_ns: Option<u64>,
    /// ipcwatch's VmHWM, KiB.
    hwm_kib: u64,
    /// wait4's ru_maxrss (ipcwatch and the command it reaped), KiB.
    rusage_maxrss_kib: u64,
}

/// VmHWM of `pid` in KiB, if it still has a memory map.
fn vm_hwm(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// utime + stime of `pid` (its own threads, not its children), in ns.
fn own_cpu_ns(pid: i32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat
        .rsplit_once(") ")
        .map(|(_, r)| r)
        .context("malformed /proc/PID/stat")?;
    // After the comm: state is field 3, utime 14, stime 15.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(ticks * 1_000_000_000 / hz)
}

/// Has `pid` (our child) exited? Leaves it unreaped.
fn exited(pid: i32) -> Result<bool> {
    // SAFETY: a zeroed siginfo is a valid out parameter.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waiting on our own child, without reaping it.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOWAIT | libc::WNOHANG,
        )
    };
    if r != 0 {
        bail!("waitid: {}", std::io::Error::last_os_error());
    }
    // SAFETY: filled in by waitid (si_pid 0 while it still runs).
    Ok(unsafe { info.si_pid() } == pid)
}

/// Reap `pid`: its exit code and wait4's ru_maxrss (KiB).
fn reap(pid: i32) -> Result<(Option<i32>, u64)> {
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid out parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: reaping our own child.
    if unsafe { libc::wait4(pid, &mut status, 0, &mut ru) } != pid {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    Ok((code, ru.ru_maxrss as u64))
}

/// From a trace: the first race line's time after the header, and the
/// summary's detector.sampler_cpu_ns. Reads it line by line (a trace of
/// a 4 GiB region holds a fault line per page).
fn scan_trace(path: &Path) -> Result<(Option<u64>, Option<u64>)> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut header_ts = None;
    let mut first = None;
    let mut sampler = None;
    for line in BufReader::new(f).lines() {
        let line = line?;
        let interesting = header_ts.is_none()
            || (first.is_none() && line.starts_with("{\"type\":\"race\""))
            || line.starts_with("{\"type\":\"summary\"");
        if !interesting {
            continue;
        }
        let v: Value = serde_json::from_str(&line).context("a trace line")?;
        let ts = v["ts_ns"].as_u64();
        match v["type"].as_str() {
            Some("header") => header_ts = ts,
            Some("race") if first.is_none() => first = ts,
            Some("summary") => sampler = v["detector"]["sampler_cpu_ns"].as_u64(),
            _ => {}
        }
        if header_ts.is_none() {
            bail!("{} does not start with a header", path.display());
        }
    }
    let first = match (first, header_ts) {
        (Some(f), Some(h)) => Some(f.saturating_sub(h)),
        _ => None,
    };
    Ok((first, sampler))
}

/// One `ipcwatch record --fail-on-race -- ARGS` run, measured.
fn run_once(bins: &Bins, v: &Variant, dir: &Path) -> Result<RunResult> {
    let trace = dir.join("trace.ndjson");
    let err = dir.join("stderr");
    let t0 = Instant::now();
    let child = Command::new(&bins.ipcwatch)
        .arg("record")
        .arg("-o")
        .arg(&trace)
        .args(["--fail-on-race", "--"])
        .args(&v.args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err)?)
        .spawn()
        .context("running ipcwatch record")?;
    let pid = child.id() as i32;
    let mut hwm = 0;
    while !exited(pid)? {
        if let Some(h) = vm_hwm(pid) {
            hwm = hwm.max(h);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let cpu_ns = own_cpu_ns(pid)?;
    let wall_ns = t0.elapsed().as_nanos() as u64;
    let (code, rusage_maxrss_kib) = reap(pid)?;
    drop(child);
    let flagged = match code {
        Some(3) => true,
        Some(0) => false,
        other => bail!(
            "{}: ipcwatch exited with {other:?}: {}",
            v.name,
            std::fs::read_to_string(&err).unwrap_or_default()
        ),
    };
    let (first_ns, sampler_cpu_ns) = scan_trace(&trace)?;
    let _ = std::fs::remove_file(&trace);
    Ok(RunResult {
        flagged,
        first_ns,
        cpu_ns,
        wall_ns,
        sampler_cpu_ns,
        hwm_kib: hwm,
        rusage_maxrss_kib,
    })
}

/// stress-ng keeping every CPU busy, in its own process group, killed
/// with its workers when dropped.
struct Load(Child);

impl Load {
    fn start() -> Result<Load> {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let child = Command::new("stress-ng")
            .args(["--cpu", &cpus.to_string(), "--quiet"])
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .context("stress-ng cannot start: cargo xtask setup installs it")?;
        std::thread::sleep(Duration::from_millis(500));
        Ok(Load(child))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        // SAFETY: signalling the process group of our own child.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

fn median(v: &mut [u64]) -> Option<u64> {
    v.sort_unstable();
    (!v.is_empty()).then(|| v[v.len() / 2])
}

fn secs(ns: u64) -> String {
    format!("{:.2} s", ns as f64 / 1e9)
}

pub fn run(bins: &Bins, args: &AccuracyArgs) -> Result<()> {
    let workload = bins.workload.display().to_string();
    let dir: PathBuf =
        std::env::temp_dir().join(format!("ipcwatch-accuracy-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut all = variants(&workload, args.secs, args.quiet_secs);
    if args.load {
        let loaded: Vec<Variant> = all
            .iter()
            .filter(|v| v.racy)
            .map(|v| Variant {
                name: format!("{}, CPUs busy", v.name),
                racy: true,
                args: v.args.clone(),
            })
            .collect();
        all.extend(loaded);
    }
    if let Some(only) = &args.only {
        all.retain(|v| v.name.contains(only.as_str()));
        if all.is_empty() {
            bail!("--only {only:?}: no scenario's name contains it");
        }
    }
    let mut table = String::from(
        "| workload | racy | runs | flagged | first finding, median | worst | ipcwatch CPU, median | sampler CPU, median | peak RSS of ipcwatch |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    let (mut tp, mut fn_, mut fp, mut tn) = (0, 0, 0, 0);
    for v in &all {
        let _load = if v.name.ends_with(", CPUs busy") {
            Some(Load::start()?)
        } else {
            None
        };
        let mut results = Vec::new();
        for i in 0..args.runs {
            let r = run_once(bins, v, &dir)?;
            eprintln!(
                "accuracy: {} run {}: flagged {}, first {}, cpu {} of {}, sampler {}, VmHWM {} KiB, wait4 ru_maxrss {} KiB",
                v.name,
                i + 1,
                r.flagged,
                r.first_ns.map_or("-".into(), secs),
                secs(r.cpu_ns),
                secs(r.wall_ns),
                r.sampler_cpu_ns.map_or("-".into(), secs),
                r.hwm_kib,
                r.rusage_maxrss_kib
            );
            results.push(r);
        }
        let flagged = results.iter().filter(|r| r.flagged).count();
        if v.racy {
            tp += flagged;
            fn_ += args.runs - flagged;
        } else {
            fp += flagged;
            tn += args.runs - flagged;
        }
        let mut firsts: Vec<u64> = results.iter().filter_map(|r| r.first_ns).collect();
        let worst = firsts.iter().max().copied();
        let first_median = median(&mut firsts);
        let mut cpu: Vec<u64> = results.iter().map(|r| r.cpu_ns).collect();
        let mut wall: Vec<u64> = results.iter().map(|r| r.wall_ns).collect();
        let mut sampler: Vec<u64> = results.iter().filter_map(|r| r.sampler_cpu_ns).collect();
        let hwm = results.iter().map(|r| r.hwm_kib).max().unwrap_or(0);
        let cpu_cell = match (median(&mut cpu), median(&mut wall)) {
            (Some(c), Some(w)) if w > 0 => {
                format!("{} ({:.1}%)", secs(c), 100.0 * c as f64 / w as f64)
            }
            _ => "-".into(),
        };
        eprintln!("accuracy: {}: flagged {flagged}/{}", v.name, args.runs);
        let _ = writeln!(
            table,
            "| {} | {} | {} | {flagged} | {} | {} | {cpu_cell} | {} | {:.1} MiB |",
            v.name,
            if v.racy { "yes" } else { "no" },
            args.runs,
            first_median.map_or("-".into(), secs),
            worst.map_or("-".into(), secs),
            median(&mut sampler).map_or("-".into(), secs),
            hwm as f64 / 1024.0,
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    let precision = if tp + fp > 0 {
        tp as f64 / (tp + fp) as f64
    } else {
        1.0
    };
    let recall = if tp + fn_ > 0 {
        tp as f64 / (tp + fn_) as f64
    } else {
        1.0
    };
    let _ = write!(
        table,
        "\nPrecision {precision:.2} ({tp} true / {} flagged), recall {recall:.2} ({tp} of {} racy runs flagged); {tn} clean runs left alone.\n",
        tp + fp,
        tp + fn_
    );
    println!("{table}");
    let path = root().join("docs/races.md");
    let old = std::fs::read_to_string(&path)?;
    let (begin, end) = ("<!-- accuracy:begin -->", "<!-- accuracy:end -->");
    let mut command = format!(
        "cargo xtask accuracy --runs {} --secs {} --quiet-secs {}",
        args.runs, args.secs, args.quiet_secs
    );
    if args.load {
        command.push_str(" --load");
    }
    if let Some(only) = &args.only {
        let _ = write!(command, " --only {only:?}");
    }
    let partial = if args.only.is_some() {
        "**Partial run** (only the scenarios named by `--only`). "
    } else {
        ""
    };
    let body = format!(
        "{begin}\n{partial}Measured by `{command}` (default mode, each run a fresh `ipcwatch record --fail-on-race`; first finding: the first `race` line's time after the header; ipcwatch CPU: its own user + system time, and the share of the run's wall time; sampler CPU: the summary's `detector.sampler_cpu_ns`; peak RSS: ipcwatch's VmHWM, the highest over the runs; \"CPUs busy\": `stress-ng --cpu <CPUs>` alongside):\n\n{table}{end}"
    );
    let new = match (old.find(begin), old.find(end)) {
        (Some(a), Some(b)) if b > a => format!("{}{body}{}", &old[..a], &old[b + end.len()..]),
        _ => format!("{old}\n## Precision and recall\n\n{body}\n"),
    };
    std::fs::write(&path, new)?;
    eprintln!("accuracy: updated {}", path.display());
    Ok(())
}
