//! `cargo xtask bench`: each workload untraced, under the empty hooks,
//! under ipcwatch (three modes), under an equivalent bpftrace script and
//! under strace, alternating in one run; medians and ratios to untraced.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde::ser::SerializeMap;

use crate::build::Bins;
use crate::cmd::{have, root};
use crate::compare::{median, rate_of};
use crate::{bench_collector, bench_load, bench_stages, nginx, realsw};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Alternating rounds per workload (the median is reported).
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Round trips per ping-pong run.
    #[arg(long, default_value_t = 50_000)]
    iters: u64,
    /// Do not rewrite docs/benchmarks.md.
    #[arg(long)]
    no_docs: bool,
    /// Another ipcwatch binary (an earlier build) measured as one more
    /// column, `record -o /dev/null` like the ipcwatch column: before and
    /// after in one run.
    #[arg(long, value_name = "BIN")]
    baseline: Option<std::path::PathBuf>,
    /// What to call the baseline column.
    #[arg(long, default_value = "before")]
    baseline_name: String,
    /// Rounds of the pgbench row (ipcwatch's own CPU on real load).
    #[arg(long, default_value_t = 3)]
    pgbench_rounds: usize,
    /// Seconds of each pgbench run in that row.
    #[arg(long, default_value_t = 15)]
    pgbench_secs: u64,
    /// Rounds of the real-server row (nginx under ab).
    #[arg(long, default_value_t = 3)]
    nginx_rounds: usize,
    /// Requests per ab run in that row.
    #[arg(long, default_value_t = 200_000)]
    nginx_requests: u64,
}

#[derive(Clone, Copy, PartialEq)]
enum Way {
    Untraced,
    /// Empty programs on the raw sys_enter/sys_exit tracepoints that
    /// ipcwatch hooks: what the kernel charges before ipcwatch does any
    /// work (`ipcwatch-workload empty-hooks`).
    Hooks,
    Ipcwatch,
    /// `record -o /dev/null` by the `--baseline` binary.
    Baseline,
    /// `ipcwatch record --lock-probes`.
    LockProbes,
    /// `ipcwatch record --deep`: the race detector's deep mode.
    Deep,
    /// `bpftrace xtask/bench/ipc.bt -c CMD`: the same tracing as a script.
    Bpftrace,
    Strace,
}

/// The label of the `--baseline` column.
static BASELINE_NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();

impl Way {
    fn name(self) -> String {
        match self {
            Way::Baseline => format!(
                "ipcwatch ({})",
                BASELINE_NAME.get().map_or("baseline", String::as_str)
            ),
            Way::Untraced => "untraced".into(),
            Way::Hooks => "empty hooks".into(),
            Way::Ipcwatch => "ipcwatch".into(),
            Way::LockProbes => "ipcwatch --lock-probes".into(),
            Way::Deep => "ipcwatch --deep".into(),
            Way::Bpftrace => "bpftrace".into(),
            Way::Strace => "strace -f".into(),
        }
    }
}

/// bpftrace, installed from the distribution's packages when missing.
fn ensure_bpftrace() -> bool {
    if have("bpftrace") {
        return true;
    }
    if have("apt-get") {
        eprintln!("bench: installing bpftrace (apt-get install bpftrace)");
        let ok = Command::new("apt-get")
            .args(["install", "-y", "-q", "bpftrace"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success());
        if ok && have("bpftrace") {
            return true;
        }
    }
    eprintln!("bench: bpftrace could not be installed; its column is left out");
    false
}

/// `cmd` as a canonical absolute path, looked up in PATH.
fn absolute(cmd: &str) -> Result<String> {
    if cmd.contains('/') {
        return Ok(std::fs::canonicalize(cmd)?.display().to_string());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(cmd))
        .find(|p| p.is_file())
        .and_then(|p| std::fs::canonicalize(p).ok())
        .map(|p| p.display().to_string())
        .with_context(|| format!("{cmd} not found in PATH"))
}

/// Run the workload (arguments of ipcwatch-workload) one way; returns
/// round trips per second. A `--baseline` binary only traces: the
/// workload is always this tree's.
fn once(
    bins: &Bins,
    baseline: Option<&Path>,
    way: Way,
    workload: &[String],
    pin: bool,
) -> Result<f64> {
    let mut argv: Vec<String> = Vec::new();
    if pin {
        // The workload's two processes share CPU 1; the tracer gets CPU 0.
        argv.extend(["taskset".into(), "-c".into(), "1".into()]);
    }
    argv.push(bins.workload.display().to_string());
    argv.extend(workload.iter().cloned());
    let bin = &bins.ipcwatch;
    let mut cmd = match way {
        Way::Untraced => {
            let mut c = Command::new(&argv[0]);
            c.args(&argv[1..]);
            c
        }
        Way::Hooks => {
            let mut c = Command::new(&bins.workload);
            c.args(["empty-hooks", "--"]).args(&argv);
            c
        }
        Way::Ipcwatch => {
            let mut c = Command::new(bin);
            c.args(["record", "-o", "/dev/null", "--"]).args(&argv);
            c
        }
        Way::Baseline => {
            let mut c = Command::new(baseline.context("no --baseline binary")?);
            c.args(["record", "-o", "/dev/null", "--"]).args(&argv);
            c
        }
        Way::LockProbes => {
            let mut c = Command::new(bin);
            c.args(["record", "--lock-probes", "-o", "/dev/null", "--"])
                .args(&argv);
            c
        }
        Way::Deep => {
            let mut c = Command::new(bin);
            c.args(["record", "--deep", "-o", "/dev/null", "--"])
                .args(&argv);
            c
        }
        Way::Bpftrace => {
            // bpftrace starts CMD itself (-c, no shell) once its probes
            // are attached; its output goes where ipcwatch's does. It
            // wants the command as one absolute path (with /bin a link to
            // /usr/bin, "taskset" matches two).
            let mut cmdline = argv.clone();
            cmdline[0] = absolute(&cmdline[0])?;
            let mut c = Command::new("bpftrace");
            c.arg("-o")
                .arg("/dev/null")
                .arg(root().join("xtask/bench/ipc.bt"))
                .arg("-c")
                .arg(cmdline.join(" "));
            c
        }
        Way::Strace => {
            let mut c = Command::new("strace");
            c.args(["-f", "-o", "/dev/null"]).args(&argv);
            c
        }
    };
    if pin && way != Way::Untraced {
        // The tracer's own process runs on CPU 0, away from the workload
        // (the workload re-pins itself to CPU 1 with taskset).
        let mut pinned = Command::new("taskset");
        pinned
            .args(["-c", "0"])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        cmd = pinned;
    }
    let out = cmd.output().context("running the workload")?;
    if !out.status.success() {
        bail!(
            "{} run failed: {}",
            way.name(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            l.strip_prefix("round-trips/s ")
                .or_else(|| l.strip_prefix("increments/s "))
        })
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no rate in the workload's output: {text}"))
}

struct Row {
    workload: String,
    medians: Vec<(Way, f64)>,
    /// Traced events per round trip (a ping-pong: two writes and two
    /// reads); `None` where it is not fixed (the counters).
    events_per_op: Option<f64>,
}

impl Row {
    /// The median of one way.
    fn of(&self, way: Way) -> Option<f64> {
        self.medians.iter().find(|(w, _)| *w == way).map(|m| m.1)
    }

    /// What `way` adds per traced event above the empty hooks, in ns:
    /// (1/traced rate - 1/empty-hooks rate) / events per round trip.
    fn ns_above_hooks(&self, way: Way) -> Option<f64> {
        let per_op = self.events_per_op?;
        let (hooks, traced) = (self.of(Way::Hooks)?, self.of(way)?);
        Some((1.0 / traced - 1.0 / hooks) * 1e9 / per_op)
    }
}

/// Can the workload and the tracer get a CPU each (taskset, 2 CPUs)?
pub fn pinned() -> bool {
    have("taskset") && std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
}

pub fn run(bins: &Bins, args: &BenchArgs) -> Result<()> {
    let pin = pinned();
    let _ = BASELINE_NAME.set(args.baseline_name.clone());
    let ways = ways(args)?;
    let load = load_average();
    let rows = measure(bins, args, &ways, workloads(args), pin)?;
    let table = table(&rows, &ways);
    println!("\n{table}");
    let stages_load = load_average();
    let stages = bench_stages::run(bins, args.iters, args.rounds, pin)?;
    println!("\n{stages}");
    let tui = tui_load(bins, args.iters * TUI_ITERS_FACTOR, TUI_ROUNDS, pin)?;
    println!("\n{tui}");
    let own_cpu_load = load_average();
    let own_cpu = realsw::own_cpu(
        &bins.ipcwatch,
        args.baseline
            .as_deref()
            .map(|b| (b, args.baseline_name.as_str())),
        args.pgbench_rounds,
        args.pgbench_secs,
    )?;
    println!("\n{own_cpu}");
    let nginx_load = load_average();
    let nginx = nginx::row(
        &bins.ipcwatch,
        args.baseline
            .as_deref()
            .map(|b| (b, args.baseline_name.as_str())),
        args.nginx_rounds,
        args.nginx_requests,
    )?;
    println!("\n{nginx}");
    let collector = bench_collector::run(&bins.workload, COLLECTOR_EVENTS)?;
    println!("\n{collector}");
    let loss = bench_load::loss_sweep(bins)?;
    println!("\n{loss}");
    let memory = bench_load::memory(bins)?;
    println!("\n{memory}");
    let out = root().join("target/bench.json");
    std::fs::write(&out, json(&rows)?)?;
    eprintln!("bench: wrote {}", out.display());
    if !args.no_docs {
        write_docs(&table, args, pin, &load)?;
        write_part_docs(args, &tui, &collector, &loss, &memory)?;
        write_section(
            "<!-- bench-stages:begin -->",
            "<!-- bench-stages:end -->",
            &format!(
                "Measured by `cargo xtask bench` on {} (load average {stages_load} at the start): {} round trips per run, {} rounds, the order rotating, medians; each traced column gives its ratio to untraced and its ns per event above the empty hooks.\n\n{stages}",
                machine(),
                args.iters,
                args.rounds,
            ),
        )?;
        write_section(
            "<!-- bench-own-cpu:begin -->",
            "<!-- bench-own-cpu:end -->",
            &format!(
                "Measured by `cargo xtask bench` on {} (load average {} at the start): {} alternating rounds of {} s, medians (peak RSS: the highest).\n\n{own_cpu}",
                machine(),
                own_cpu_load,
                args.pgbench_rounds,
                args.pgbench_secs
            ),
        )?;
        write_section(
            "<!-- bench-nginx:begin -->",
            "<!-- bench-nginx:end -->",
            &format!(
                "Measured by `cargo xtask bench` on {} (load average {} at the start): {} alternating rounds, medians.\n\n{nginx}",
                machine(),
                nginx_load,
                args.nginx_rounds,
            ),
        )?;
    }
    Ok(())
}

/// The columns: untraced, every tracer, and what is installed of
/// bpftrace and strace.
fn ways(args: &BenchArgs) -> Result<Vec<Way>> {
    let mut ways = vec![Way::Untraced, Way::Hooks, Way::Ipcwatch];
    if let Some(b) = &args.baseline {
        if !b.is_file() {
            bail!("--baseline {}: no such file", b.display());
        }
        ways.push(Way::Baseline);
    }
    ways.extend([Way::LockProbes, Way::Deep]);
    if ensure_bpftrace() {
        ways.push(Way::Bpftrace);
    }
    if have("strace") {
        ways.push(Way::Strace);
    } else {
        eprintln!("bench: strace not installed; its column is left out");
    }
    Ok(ways)
}

/// The rows: a name and the workload's arguments.
fn workloads(args: &BenchArgs) -> Vec<Workload> {
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    let iters = args.iters.to_string();
    let mut workloads: Vec<Workload> = Vec::new();
    for (name, workload, size) in [
        ("pipe ping-pong 1 B", "pingpong", "1"),
        ("pipe ping-pong 4 KiB", "pingpong", "4096"),
        ("unix socket ping-pong 1 B", "unix-pingpong", "1"),
        ("unix socket ping-pong 4 KiB", "unix-pingpong", "4096"),
        ("POSIX queue ping-pong 1 B", "mq-pingpong", "1"),
        ("POSIX queue ping-pong 4 KiB", "mq-pingpong", "4096"),
    ] {
        // Each round trip: a write and a read on each side.
        workloads.push((
            name,
            strings(&[workload, "--size", size, "--iters", &iters]),
            Some(4.0),
        ));
    }
    // Two processes bump a counter in a SysV segment under a
    // process-shared mutex; each waits 0.5 s first, so that --lock-probes
    // is attached before the measured second starts.
    workloads.push((
        "shm mutex counter, 2 processes (increments/s)",
        strings(&[
            "shm-counter",
            "--region",
            "sysv",
            "--lock",
            "mutex",
            "--secs",
            "1",
            "--settle",
            "0.5",
        ]),
        None,
    ));
    // The same two processes with no lock at all: the race detector's
    // racy counter.
    workloads.push((
        "racy shm counter, 2 processes, no lock (increments/s)",
        strings(&[
            "shm-counter",
            "--region",
            "anon",
            "--lock",
            "none",
            "--secs",
            "1",
            "--settle",
            "0.5",
        ]),
        None,
    ));
    // The same loop on a private mutex in private memory: a process that
    // shares nothing, which --lock-probes leaves alone.
    workloads.push((
        "private mutex counter, shares nothing (increments/s)",
        strings(&[
            "shm-counter",
            "--region",
            "private",
            "--lock",
            "mutex",
            "--children",
            "0",
            "--secs",
            "1",
            "--settle",
            "0.5",
        ]),
        None,
    ));
    workloads
}

/// A row's name, the workload's arguments, and its traced events per
/// round trip when fixed.
type Workload = (&'static str, Vec<String>, Option<f64>);

/// Every workload `args.rounds` times each way, alternating; the medians.
fn measure(
    bins: &Bins,
    args: &BenchArgs,
    ways: &[Way],
    workloads: Vec<Workload>,
    pin: bool,
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (name, wl, events_per_op) in workloads {
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); ways.len()];
        for round in 0..args.rounds {
            // Alternate the order each round so drift hits every way alike.
            let order: Vec<usize> = if round % 2 == 0 {
                (0..ways.len()).collect()
            } else {
                (0..ways.len()).rev().collect()
            };
            for i in order {
                samples[i].push(once(bins, args.baseline.as_deref(), ways[i], &wl, pin)?);
            }
        }
        let medians = ways
            .iter()
            .zip(samples.iter_mut())
            .map(|(w, s)| (*w, median(s)))
            .collect();
        let row = Row {
            workload: name.into(),
            medians,
            events_per_op,
        };
        eprintln!("{}", line(&row));
        rows.push(row);
    }
    Ok(rows)
}

/// The TUI, collector, loss and memory sections of docs/benchmarks.md.
fn write_part_docs(
    args: &BenchArgs,
    tui: &str,
    collector: &str,
    loss: &str,
    memory: &str,
) -> Result<()> {
    write_section(
        "<!-- bench-tui:begin -->",
        "<!-- bench-tui:end -->",
        &format!(
            "Measured by `cargo xtask bench` on {} (load average {} at the end): pipe ping-pong of 1 byte, {} round trips (4 traced events each), {TUI_ROUNDS} rounds in turn.\n\n{tui}",
            machine(),
            load_average(),
            args.iters * TUI_ITERS_FACTOR
        ),
    )?;
    write_section(
        "<!-- bench-collector:begin -->",
        "<!-- bench-collector:end -->",
        &format!(
            "Measured by `cargo xtask bench` on {}: `ipcwatch-workload collector-throughput --events {COLLECTOR_EVENTS}`, pinned to CPU 1.\n\n{collector}",
            machine()
        ),
    )?;
    for (name, text) in [("loss", loss), ("memory", memory)] {
        write_section(
            &format!("<!-- bench-{name}:begin -->"),
            &format!("<!-- bench-{name}:end -->"),
            &format!(
                "Measured by `cargo xtask bench` on {}.\n\n{text}",
                machine()
            ),
        )?;
    }
    Ok(())
}

/// Synthetic events per collector-throughput run.
const COLLECTOR_EVENTS: u64 = 3_000_000;

/// The TUI load test runs this many times `--iters` round trips.
pub const TUI_ITERS_FACTOR: u64 = 4;

/// Rounds of the TUI load test (untraced, `--per-event`, kernel totals).
pub const TUI_ROUNDS: usize = 3;

/// One `tui --headless` run of the ping-pong: its round trips per second
/// and the report.
fn tui_run(
    ipcwatch: &Path,
    extra: &[&str],
    workload: &[String],
) -> Result<(f64, serde_json::Value)> {
    let out = Command::new(ipcwatch)
        .args(["tui", "--headless"])
        .args(extra)
        .arg("--")
        .args(workload)
        .env_remove("IPCWATCH_PER_EVENT")
        .output()
        .context("running ipcwatch tui --headless")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("tui --headless failed: {stderr}");
    }
    let report = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .with_context(|| format!("no report from tui --headless: {stdout}"))?;
    eprintln!("bench: tui --headless {} {report}", extra.join(" "));
    let report: serde_json::Value = serde_json::from_str(report).unwrap_or(serde_json::Value::Null);
    Ok((rate_of(&stderr).unwrap_or(f64::NAN), report))
}

/// The ping-pong untraced: round trips per second.
fn untraced_run(workload: &[String]) -> Result<f64> {
    let out = Command::new(&workload[0])
        .args(&workload[1..])
        .output()
        .context("running the workload")?;
    if !out.status.success() {
        bail!(
            "untraced run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    rate_of(&String::from_utf8_lossy(&out.stdout)).context("no rate from the untraced run")
}

/// The TUI under load: the ping-pong traced by `ipcwatch tui --headless`
/// (the collector thread feeding the UI thread, which applies the records
/// and draws a 100x30 off-screen frame every 100 ms, cycling through the
/// five views), with the kernel's io totals (the default) and with
/// `--per-event`, next to the ping-pong untraced, `rounds` rounds in
/// turn (the order rotating), and `record -o /dev/null` once. Reports the
/// median ratio of each to the untraced run of its round, kernel drops,
/// draw times, and how long a key press waits behind the records.
pub fn tui_load(bins: &Bins, iters: u64, rounds: usize, pin: bool) -> Result<String> {
    let iters = iters.to_string();
    let mut workload: Vec<String> = Vec::new();
    if pin {
        workload.extend(["taskset".into(), "-c".into(), "1".into()]);
    }
    workload.push(bins.workload.display().to_string());
    workload.extend(
        ["pingpong", "--size", "1", "--iters", &iters]
            .iter()
            .map(|s| s.to_string()),
    );
    // Per way: rates, ratios to the round's untraced run, the last report.
    let ways: [&[&str]; 2] = [&["--per-event"], &[]];
    let mut untraced = Vec::new();
    let mut rates = vec![Vec::new(); ways.len()];
    let mut ratios = vec![Vec::new(); ways.len()];
    let mut reports = vec![serde_json::Value::Null; ways.len()];
    for round in 0..rounds.max(1) {
        let mut got = vec![f64::NAN; ways.len()];
        let mut base = f64::NAN;
        for step in 0..=ways.len() {
            let i = (step + round) % (ways.len() + 1);
            if i == ways.len() {
                base = untraced_run(&workload)?;
            } else {
                let (rate, report) = tui_run(&bins.ipcwatch, ways[i], &workload)?;
                got[i] = rate;
                reports[i] = report;
            }
        }
        untraced.push(base);
        for (i, r) in got.into_iter().enumerate() {
            rates[i].push(r);
            ratios[i].push(r / base);
        }
    }

    let rec = Command::new(&bins.ipcwatch)
        .args(["record", "-o", "/dev/null", "--"])
        .args(&workload)
        .output()
        .context("running ipcwatch record")?;
    let rec_err = String::from_utf8_lossy(&rec.stderr);
    if !rec.status.success() {
        bail!("record failed: {rec_err}");
    }
    // With -o FILE the workload's own output stays on standard output.
    let rec_rate = rate_of(&String::from_utf8_lossy(&rec.stdout))
        .or_else(|| rate_of(&rec_err))
        .unwrap_or(f64::NAN)
        * 4.0;
    let rec_lost: f64 = rec_err
        .lines()
        .find_map(|l| {
            let l = l.strip_prefix("ipcwatch: ")?;
            let lost = l.split(", ").nth(1)?;
            lost.split(' ').next()?.parse().ok()
        })
        .unwrap_or(f64::NAN);
    let mut s = String::from(
        "| pipeline | traced events/s (median) | ratio to untraced: median (min-max) | ns per event above untraced | ring-buffer events | io records | dropped | frames | draw mean / max | key to screen mean / max |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let base = median(&mut untraced);
    let _ = writeln!(s, "| untraced | {:.0} | 1 | | | | | | | |", base * 4.0);
    let _ = writeln!(
        s,
        "| `record -o /dev/null` (one run) | {rec_rate:.0} | | | | | {rec_lost} | | | |"
    );
    let names = ["`tui --per-event`", "`tui` (kernel totals)"];
    for i in 0..ways.len() {
        let r = &reports[i];
        let num = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        // `median` sorts: first and last are the extremes.
        let rate = median(&mut rates[i]);
        let io_records: u64 = r["channels"]
            .as_array()
            .map(|cs| cs.iter().filter_map(|c| c["io_records"].as_u64()).sum())
            .unwrap_or(0);
        let _ = writeln!(
            s,
            "| {} | {:.0} | {:.3} ({:.3}-{:.3}) | {:.0} | {} | {io_records} | {} | {} in {:.1} s | {:.2} ms / {:.2} ms | {:.1} ms / {:.1} ms |",
            names[i],
            rate * 4.0,
            median(&mut ratios[i]),
            ratios[i].first().copied().unwrap_or(f64::NAN),
            ratios[i].last().copied().unwrap_or(f64::NAN),
            (1.0 / rate - 1.0 / base) * 1e9 / 4.0,
            num("events"),
            num("dropped"),
            num("frames"),
            num("seconds"),
            num("draw_mean_us") / 1e3,
            num("draw_max_us") / 1e3,
            num("input_latency_mean_ms"),
            num("input_latency_max_ms"),
        );
    }
    Ok(s)
}

fn write_section(begin: &str, end: &str, text: &str) -> Result<()> {
    let path = root().join("docs/benchmarks.md");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let body = format!("{begin}\n{text}{end}");
    let new = match (old.find(begin), old.find(end)) {
        (Some(a), Some(b)) if b > a => format!("{}{body}{}", &old[..a], &old[b + end.len()..]),
        _ => format!("{old}\n{body}\n"),
    };
    std::fs::write(&path, new)?;
    Ok(())
}

fn line(row: &Row) -> String {
    let base = row.medians[0].1;
    let mut s = format!("{}:", row.workload);
    for (w, v) in &row.medians {
        let _ = write!(s, " {} {:.0}/s ({:.2}x)", w.name(), v, v / base);
    }
    for w in [Way::Ipcwatch, Way::Baseline] {
        if let Some(ns) = row.ns_above_hooks(w) {
            let _ = write!(s, " {}: {ns:.0} ns/event above empty hooks", w.name());
        }
    }
    s
}

/// The ways whose cost per event above the empty hooks gets a column:
/// ipcwatch's default mode, and the `--baseline` build's.
fn per_event_ways(ways: &[Way]) -> Vec<Way> {
    if !ways.contains(&Way::Hooks) {
        return Vec::new();
    }
    ways.iter()
        .copied()
        .filter(|w| matches!(w, Way::Ipcwatch | Way::Baseline))
        .collect()
}

fn table(rows: &[Row], ways: &[Way]) -> String {
    let extra = per_event_ways(ways);
    let mut s = String::from("| workload |");
    for w in ways {
        let _ = write!(s, " {} |", w.name());
    }
    for w in &extra {
        let _ = write!(s, " {}: ns per event above empty hooks |", w.name());
    }
    s.push_str("\n|---|");
    for _ in ways.iter().chain(&extra) {
        s.push_str("---|");
    }
    s.push('\n');
    for r in rows {
        let base = r.medians[0].1;
        let _ = write!(s, "| {} |", r.workload);
        for (w, v) in &r.medians {
            if *w == Way::Untraced {
                let _ = write!(s, " {v:.0}/s |");
            } else {
                let _ = write!(s, " {:.2}x ({v:.0}/s) |", v / base);
            }
        }
        for w in &extra {
            match r.ns_above_hooks(*w) {
                Some(ns) => {
                    let _ = write!(s, " {ns:.0} |");
                }
                None => s.push_str(" |"),
            }
        }
        s.push('\n');
    }
    s
}

/// A row of target/bench.json: the workload, then each way's median and
/// its ratio to untraced, in the table's order.
impl Serialize for Row {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let base = self.medians[0].1;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("workload", &self.workload)?;
        for (w, v) in &self.medians {
            let key = w.name().replace(' ', "").replace('-', "_");
            map.serialize_entry(&format!("{key}_per_s"), &round_to(*v, 1))?;
            map.serialize_entry(&format!("{key}_ratio"), &round_to(v / base, 4))?;
        }
        for w in [Way::Ipcwatch, Way::Baseline] {
            if let Some(ns) = self.ns_above_hooks(w) {
                let key = w.name().replace(' ', "").replace('-', "_");
                map.serialize_entry(&format!("{key}_ns_per_event_above_hooks"), &round_to(ns, 1))?;
            }
        }
        map.end()
    }
}

/// `v` with `digits` decimals (the precision bench.json always had).
fn round_to(v: f64, digits: usize) -> f64 {
    format!("{v:.digits$}").parse().unwrap_or(v)
}

/// The rows as a JSON array (target/bench.json).
fn json(rows: &[Row]) -> Result<String> {
    let mut s = serde_json::to_string_pretty(rows)?;
    s.push('\n');
    Ok(s)
}

/// The 1-minute load average now (the machine is shared: a figure says
/// how busy it was).
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpu}, {cores} cores, Linux {}", kernel.trim())
}

fn write_docs(table: &str, args: &BenchArgs, pin: bool, load: &str) -> Result<()> {
    let path = root().join("docs/benchmarks.md");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let begin = "<!-- bench:begin -->";
    let end = "<!-- bench:end -->";
    let body = format!(
        "{begin}\nMeasured by `cargo xtask bench` on {} (a virtual machine, load average {load} at the start), {} alternating rounds (ping-pong: {} round trips; counters: 1 s), medians{}. Rates: round trips/s for the ping-pongs, increments/s for the counters.\n\n{table}{end}",
        machine(),
        args.rounds,
        args.iters,
        if pin {
            "; the workload's processes pinned together on CPU 1, the tracer's own process on CPU 0"
        } else {
            ""
        }
    );
    let new = match (old.find(begin), old.find(end)) {
        (Some(a), Some(b)) if b > a => format!("{}{body}{}", &old[..a], &old[b + end.len()..]),
        _ => format!("{old}\n{body}\n"),
    };
    std::fs::write(&path, new)?;
    eprintln!("bench: updated {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_json_keeps_the_column_order_and_precision() {
        let rows = [Row {
            workload: "pipe ping-pong 1 B".into(),
            medians: vec![
                (Way::Untraced, 200_000.04),
                (Way::LockProbes, 150_000.06),
                (Way::Strace, f64::NAN),
            ],
            events_per_op: None,
        }];
        let text = json(&rows).unwrap();
        let keys: Vec<&str> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix('"')?.split('"').next())
            .collect();
        assert_eq!(
            keys,
            [
                "workload",
                "untraced_per_s",
                "untraced_ratio",
                "ipcwatch__lock_probes_per_s",
                "ipcwatch__lock_probes_ratio",
                "strace_f_per_s",
                "strace_f_ratio",
            ]
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v[0]["workload"], "pipe ping-pong 1 B");
        assert_eq!(v[0]["untraced_per_s"], 200_000.0);
        assert_eq!(v[0]["untraced_ratio"], 1.0);
        assert_eq!(v[0]["ipcwatch__lock_probes_per_s"], 150_000.1);
        assert_eq!(v[0]["ipcwatch__lock_probes_ratio"], 0.75);
        assert!(v[0]["strace_f_per_s"].is_null());
        assert!(text.ends_with("}\n]\n"), "{text}");
    }

    #[test]
    fn cost_per_event_above_the_empty_hooks() {
        let row = Row {
            workload: "pipe ping-pong 1 B".into(),
            // 10 µs a round trip with the hooks, 12 µs traced: 2 µs for
            // four events.
            medians: vec![
                (Way::Untraced, 200_000.0),
                (Way::Hooks, 100_000.0),
                (Way::Ipcwatch, 1e6 / 12.0),
            ],
            events_per_op: Some(4.0),
        };
        let ns = row.ns_above_hooks(Way::Ipcwatch).unwrap();
        assert!((ns - 500.0).abs() < 1e-6, "{ns}");
        assert_eq!(row.ns_above_hooks(Way::Baseline), None);
        let t = table(&[row], &[Way::Untraced, Way::Hooks, Way::Ipcwatch]);
        assert!(
            t.contains("| ipcwatch: ns per event above empty hooks |"),
            "{t}"
        );
        assert!(t.lines().nth(2).unwrap().ends_with("| 500 |"), "{t}");
        let v: serde_json::Value = serde_json::from_str(
            &json(&[Row {
                workload: "x".into(),
                medians: vec![
                    (Way::Untraced, 1.0),
                    (Way::Hooks, 1.0),
                    (Way::Ipcwatch, 0.5),
                ],
                events_per_op: Some(4.0),
            }])
            .unwrap(),
        )
        .unwrap();
        assert_eq!(v[0]["ipcwatch_ns_per_event_above_hooks"], 250_000_000.0);
    }
}
