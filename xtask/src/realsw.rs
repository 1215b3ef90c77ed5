//! `cargo xtask postgres`: PostgreSQL from Debian's packages under the race
//! detector (issue 19, item 6). A fresh cluster in a temporary directory
//! (shared_buffers=1GB by default, a Unix socket only), pgbench -i, then in
//! one run untraced and traced pgbench, alternating: tps of both and their
//! ratio, ipcwatch's peak RSS and CPU, the findings (there must be none)
//! and which regions and words the detector armed. Exits non-zero on a
//! finding, a ratio under 0.95, a peak RSS over 64 MiB, or a detector that
//! armed nothing. The cluster is stopped at the end, also on error.
//!
//! The traced runs use `ipcwatch record --comm postgres`: the postmaster
//! and every backend it forks (the comm stays `postgres`), whenever they
//! start, filtered in the kernel; not pgbench, and not what else the
//! machine runs, so the figures are PostgreSQL's alone (`--system` traces
//! everything). `--pid` would not do: it does not follow forks, and
//! pgbench's backends are forked after the recording starts.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, Write as _};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::cmd::show;
use crate::compare::{alternation, median};
use crate::setup::ensure_postgres;

/// Peak RSS the issue allows ipcwatch (MiB).
const MAX_RSS_MIB: f64 = 64.0;
/// Traced tps over untraced the issue asks for at least.
const MIN_RATIO: f64 = 0.95;
/// The socket's name is `.s.PGSQL.<port>` in the cluster's directory; no
/// TCP listener, so it cannot collide with another cluster.
const PORT: &str = "5432";

#[derive(clap::Args, Clone)]
pub struct PostgresArgs {
    /// Seconds of each pgbench run.
    #[arg(long, default_value_t = 60)]
    secs: u64,
    /// pgbench clients (-c).
    #[arg(long, default_value_t = 8)]
    clients: u32,
    /// pgbench threads (-j).
    #[arg(long, default_value_t = 2)]
    jobs: u32,
    /// pgbench scale (-s): 100,000 accounts each, 20 is about 300 MiB.
    #[arg(long, default_value_t = 20)]
    scale: u32,
    /// The cluster's shared_buffers.
    #[arg(long, default_value = "1GB")]
    shared_buffers: String,
    /// Untraced and traced pairs; odd rounds run untraced first, even ones
    /// traced first. The ratio is of the medians.
    #[arg(long, default_value_t = 1)]
    rounds: u32,
    /// Trace the whole system, not only the processes named postgres.
    #[arg(long)]
    system: bool,
    /// One more argument for the traced runs' `ipcwatch record`
    /// (repeatable), e.g. --record-arg=--no-race to see what the detector
    /// costs apart from the tracing.
    #[arg(long, allow_hyphen_values = true)]
    record_arg: Vec<String>,
    /// Use this ipcwatch binary instead of a release build of this tree.
    #[arg(long)]
    pub bin: Option<PathBuf>,
    /// Keep the cluster's directory, its log and the traces.
    #[arg(long)]
    keep: bool,
}

/// uid and gid of the `postgres` user (the server refuses to run as root).
fn postgres_user() -> Result<(u32, u32)> {
    // SAFETY: getpwnam with a NUL-terminated name; the result is read at
    // once, before any other getpw* call.
    let pw = unsafe { libc::getpwnam(c"postgres".as_ptr()) };
    if pw.is_null() {
        bail!(
            "there is no `postgres` user: the postgresql package creates it (apt-get install postgresql)"
        );
    }
    // SAFETY: pw is non-null and points to a passwd struct.
    Ok(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

/// A cluster in a temporary directory; stopped and removed when dropped.
struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    uid: u32,
    gid: u32,
    keep: bool,
    started: bool,
}

impl Cluster {
    fn new(bin: PathBuf, keep: bool) -> Result<Self> {
        let (uid, gid) = postgres_user()?;
        let dir = std::env::temp_dir().join(format!("ipcwatch-pg-{}", std::process::id()));
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let cluster = Cluster {
            bin,
            dir,
            uid,
            gid,
            keep,
            started: false,
        };
        std::os::unix::fs::chown(&cluster.dir, Some(uid), Some(gid))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cluster.dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// One of the cluster's programs, run as the postgres user.
    fn tool(&self, name: &str) -> Command {
        let mut c = Command::new(self.bin.join(name));
        c.uid(self.uid)
            .gid(self.gid)
            .current_dir(&self.dir)
            .env("HOME", &self.dir)
            .env("PGHOST", &self.dir)
            .env("PGPORT", PORT)
            .env("PGUSER", "postgres")
            .env("PGDATABASE", "postgres");
        c
    }

    fn init_and_start(&mut self, shared_buffers: &str) -> Result<()> {
        let data = self.data();
        quiet(
            self.tool("initdb")
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "-A", "trust", "-E", "UTF8"])
                .args(["--locale=C", "--no-sync", "--no-instructions"]),
        )?;
        // synchronous_commit=off: each commit does not wait for its WAL
        // flush, so the run is bound by CPU, where ipcwatch's cost shows,
        // not by the disk's flush latency, which would hide it.
        // max_wal_size: no forced checkpoint within a run.
        let conf = format!(
            "\n# cargo xtask postgres\nshared_buffers = '{shared_buffers}'\nhuge_pages = off\nlisten_addresses = ''\nunix_socket_directories = '{}'\nport = {PORT}\nsynchronous_commit = off\nmax_wal_size = '8GB'\n",
            self.dir.display()
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))?
            .write_all(conf.as_bytes())?;
        quiet(
            self.tool("pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(self.dir.join("server.log"))
                .args(["-w", "-t", "120", "start"]),
        )
        .with_context(|| format!("starting PostgreSQL; its log: {}", self.log_tail()))?;
        self.started = true;
        Ok(())
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn psql(&self, sql: &str) -> Result<String> {
        quiet(
            self.tool("psql")
                .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql]),
        )
    }

    /// The postmaster's pid (first line of postmaster.pid).
    fn postmaster(&self) -> Result<u32> {
        let text = std::fs::read_to_string(self.data().join("postmaster.pid"))?;
        text.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .context("no pid in postmaster.pid")
    }

    /// One pgbench run; its tps (without the initial connection time).
    fn pgbench(&self, args: &PostgresArgs, secs: u64) -> Result<f64> {
        let out = quiet(self.tool("pgbench").args([
            "-c",
            &args.clients.to_string(),
            "-j",
            &args.jobs.to_string(),
            "-T",
            &secs.to_string(),
        ]))?;
        out.lines()
            .find_map(|l| l.strip_prefix("tps = "))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .with_context(|| format!("no tps in pgbench's output: {out}"))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.started {
            let data = self.data();
            if let Err(e) = quiet(
                self.tool("pg_ctl")
                    .arg("-D")
                    .arg(&data)
                    .args(["-m", "fast", "-w", "stop"]),
            ) {
                eprintln!(
                    "postgres: could not stop the cluster in {}: {e:#}",
                    data.display()
                );
                return;
            }
        }
        if self.keep {
            eprintln!("postgres: kept {}", self.dir.display());
        } else if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("postgres: could not remove {}: {e}", self.dir.display());
        }
    }
}

/// Run `cmd`, returning its stdout; on failure, its stderr in the error.
fn quiet(cmd: &mut Command) -> Result<String> {
    let shown = show(cmd);
    eprintln!("+ {shown}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start {shown}"))?;
    if !out.status.success() {
        bail!(
            "`{shown}` failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What the kernel reports for a reaped child.
pub(crate) struct Exit {
    status: i32,
    /// Peak RSS, KiB.
    maxrss_kib: u64,
    cpu: Duration,
}

fn tv(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
}

/// wait4 on `pid`; None while it runs (with WNOHANG).
fn wait4(pid: i32, flags: i32) -> Result<Option<Exit>> {
    let mut status = 0;
    // SAFETY: rusage is plain data, filled in by wait4.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child with valid out-pointers.
    let r = unsafe { libc::wait4(pid, &mut status, flags, &mut ru) };
    if r < 0 {
        bail!("wait4({pid}): {}", std::io::Error::last_os_error());
    }
    if r == 0 {
        return Ok(None);
    }
    Ok(Some(Exit {
        status,
        maxrss_kib: ru.ru_maxrss as u64,
        cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
    }))
}

/// Peak RssAnon, RssFile and RssShmem of a process (KiB), sampled from
/// /proc/PID/status every 200 ms until `stop` is set: what ru_maxrss, a
/// single figure, is made of.
struct RssParts {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<[u64; 3]>,
}

impl RssParts {
    fn start(pid: i32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = [0u64; 3];
            while !flag.load(Ordering::Relaxed) {
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                for (i, key) in ["RssAnon:", "RssFile:", "RssShmem:"].iter().enumerate() {
                    let kib = status
                        .lines()
                        .find_map(|l| l.strip_prefix(key))
                        .and_then(|v| v.split_whitespace().next()?.parse().ok())
                        .unwrap_or(0);
                    peak[i] = peak[i].max(kib);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            peak
        });
        RssParts { stop, thread }
    }

    fn finish(self) -> [u64; 3] {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// A running `ipcwatch record`; interrupted and reaped when dropped if
/// [`Recorder::stop`] was not reached.
pub(crate) struct Recorder {
    pid: i32,
    log: PathBuf,
    reaped: bool,
}

impl Recorder {
    pub(crate) fn start(
        ipcwatch: &Path,
        trace: &Path,
        log: &Path,
        args: &PostgresArgs,
    ) -> Result<Self> {
        let mut cmd = Command::new(ipcwatch);
        cmd.arg("record").arg("-o").arg(trace);
        if !args.system {
            cmd.args(["--comm", "postgres"]);
        }
        cmd.args(&args.record_arg);
        eprintln!("+ {}", show(&cmd));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(log)?)
            .spawn()
            .with_context(|| format!("cannot start {}", ipcwatch.display()))?;
        Ok(Recorder {
            pid: child.id() as i32,
            log: log.to_path_buf(),
            reaped: false,
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The CPU it used so far (0 when /proc cannot say).
    pub(crate) fn cpu_so_far(&self) -> Duration {
        cpu_of(self.pid).unwrap_or_default()
    }

    /// Wait until the trace holds the postmaster's existing mappings: the
    /// probes are attached and what existed before is scanned.
    pub(crate) fn wait_ready(&mut self, trace: &Path, postmaster: u32) -> Result<()> {
        let needle = format!("\"pid\":{postmaster},");
        let t0 = Instant::now();
        loop {
            if let Some(e) = wait4(self.pid, libc::WNOHANG)? {
                self.reaped = true;
                bail!(
                    "ipcwatch exited (status {:#x}) before the run: {}",
                    e.status,
                    self.log()
                );
            }
            let text = std::fs::read_to_string(trace).unwrap_or_default();
            if text
                .lines()
                .any(|l| l.starts_with("{\"type\":\"mapping\"") && l.contains(&needle))
            {
                return Ok(());
            }
            if t0.elapsed() > Duration::from_secs(120) {
                bail!(
                    "after 120 s the trace has no mapping of the postmaster ({postmaster}): {}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGINT, as Ctrl-C: ipcwatch ends the trace with its summary.
    pub(crate) fn stop(mut self) -> Result<Exit> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid, libc::SIGINT) };
        let e = wait4(self.pid, 0)?.context("wait4 returned no child")?;
        self.reaped = true;
        if !(libc::WIFEXITED(e.status) && libc::WEXITSTATUS(e.status) == 0) {
            bail!(
                "ipcwatch record failed (wait status {:#x}): {}",
                e.status,
                self.log()
            );
        }
        Ok(e)
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: signalling and reaping our own child.
            unsafe { libc::kill(self.pid, libc::SIGINT) };
            let _ = wait4(self.pid, 0);
        }
    }
}

/// What a trace says about races and the detector.
struct Findings {
    lines: u64,
    races: Vec<String>,
    /// region id -> its `region` line.
    regions: BTreeMap<String, Value>,
    /// region id -> pids seen mapping it, and those of them mapping it
    /// writable.
    mappers: BTreeMap<String, (BTreeSet<u64>, BTreeSet<u64>)>,
    summary: Value,
}

fn read_trace(path: &Path) -> Result<Findings> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut f = Findings {
        lines: 0,
        races: Vec::new(),
        regions: BTreeMap::new(),
        mappers: BTreeMap::new(),
        summary: Value::Null,
    };
    let mut last = String::new();
    for line in BufReader::new(file).lines() {
        let line = line?;
        f.lines += 1;
        if line.starts_with("{\"type\":\"race\"") {
            f.races.push(line.clone());
        } else if line.starts_with("{\"type\":\"region\"") {
            let v: Value = serde_json::from_str(&line)?;
            if let Some(id) = v["region"].as_str() {
                f.regions.entry(id.to_string()).or_insert(v);
            }
        } else if line.starts_with("{\"type\":\"mapping\"") {
            let v: Value = serde_json::from_str(&line)?;
            if let (Some(id), Some(pid)) = (v["region"].as_str(), v["pid"].as_u64()) {
                let m = f.mappers.entry(id.to_string()).or_default();
                m.0.insert(pid);
                if v["prot"].as_str().is_some_and(|p| p.contains('w')) {
                    m.1.insert(pid);
                }
            }
        }
        last = line;
    }
    let summary: Value = serde_json::from_str(&last).context("the trace's last line")?;
    if summary["type"] != "summary" {
        bail!("{} does not end with its summary", path.display());
    }
    f.summary = summary;
    Ok(f)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

struct Traced {
    tps: f64,
    exit: Exit,
    /// Peak RssAnon, RssFile, RssShmem (KiB).
    rss_parts: [u64; 3],
    secs: f64,
    findings: Findings,
}

pub fn run(ipcwatch: &Path, pg_bin: PathBuf, args: &PostgresArgs) -> Result<()> {
    if args.rounds == 0 || args.secs == 0 {
        bail!("--rounds and --secs must be at least 1");
    }
    let mut cluster = Cluster::new(pg_bin, args.keep)?;
    cluster.init_and_start(&args.shared_buffers)?;
    quiet(
        cluster
            .tool("pgbench")
            .args(["-i", "-q", "-s", &args.scale.to_string()]),
    )?;
    // The tables and indexes into shared_buffers, so that the first
    // measured run is not the one that reads them from the page cache.
    cluster.psql(
        "CREATE EXTENSION pg_prewarm; SELECT sum(pg_prewarm(c.oid)) FROM pg_class c WHERE c.relname LIKE 'pgbench_%' AND c.relkind IN ('r', 'i')",
    )?;
    let warm = args.secs.min(10);
    eprintln!("postgres: warm-up, {warm} s untraced (not counted)");
    cluster.pgbench(args, warm)?;
    let postmaster = cluster.postmaster()?;

    let mut untraced = Vec::new();
    let mut traced: Vec<Traced> = Vec::new();
    for round in 1..=args.rounds {
        for traced_now in [round % 2 == 0, round % 2 == 1] {
            cluster.psql("CHECKPOINT")?;
            if !traced_now {
                let tps = cluster.pgbench(args, args.secs)?;
                eprintln!("postgres: round {round} untraced: {tps:.1} tps");
                untraced.push(tps);
                continue;
            }
            let trace = cluster.dir.join(format!("trace-{round}.ndjson"));
            let log = cluster.dir.join(format!("ipcwatch-{round}.log"));
            let mut rec = Recorder::start(ipcwatch, &trace, &log, args)?;
            rec.wait_ready(&trace, postmaster)?;
            let parts = RssParts::start(rec.pid);
            let t0 = Instant::now();
            let tps = cluster.pgbench(args, args.secs)?;
            let exit = rec.stop();
            let rss_parts = parts.finish();
            let exit = exit?;
            let secs = t0.elapsed().as_secs_f64();
            let findings = read_trace(&trace)?;
            eprintln!(
                "postgres: round {round} traced: {tps:.1} tps, ipcwatch peak RSS {:.1} MiB, {} findings",
                mib(exit.maxrss_kib),
                findings.races.len()
            );
            if !args.keep {
                std::fs::remove_file(&trace).ok();
            }
            traced.push(Traced {
                tps,
                exit,
                rss_parts,
                secs,
                findings,
            });
        }
    }
    drop(cluster);

    let (report, failures) = report(args, &untraced, &traced);
    print!("{report}");
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    Ok(())
}

/// The markdown report, and what fails the bar.
fn report(args: &PostgresArgs, untraced: &[f64], traced: &[Traced]) -> (String, Vec<String>) {
    let mut failures = Vec::new();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "PostgreSQL (Debian), shared_buffers={}, pgbench -s {} -c {} -j {} -T {}; traced: `ipcwatch record {}`\n",
        args.shared_buffers,
        args.scale,
        args.clients,
        args.jobs,
        args.secs,
        [
            if args.system { "" } else { "--comm postgres" },
            &args.record_arg.join(" ")
        ]
        .join(" ")
        .trim()
    );
    let _ = writeln!(
        s,
        "| run | tps | ipcwatch peak RSS (MiB) | peak RssAnon / RssFile / RssShmem (MiB) | ipcwatch CPU (s) | CPU, % of one core | trace lines | findings |\n|---|---|---|---|---|---|---|---|"
    );
    for (i, tps) in untraced.iter().enumerate() {
        let _ = writeln!(s, "| untraced {} | {tps:.1} | | | | | | |", i + 1);
    }
    for (i, t) in traced.iter().enumerate() {
        let cpu = t.exit.cpu.as_secs_f64();
        let _ = writeln!(
            s,
            "| traced {} | {:.1} | {:.1} | {:.1} / {:.1} / {:.1} | {cpu:.2} | {:.1} | {} | {} |",
            i + 1,
            t.tps,
            mib(t.exit.maxrss_kib),
            mib(t.rss_parts[0]),
            mib(t.rss_parts[1]),
            mib(t.rss_parts[2]),
            100.0 * cpu / t.secs,
            t.findings.lines,
            t.findings.races.len()
        );
    }
    let ratio = median(&mut traced.iter().map(|t| t.tps).collect::<Vec<_>>())
        / median(&mut untraced.to_vec());
    let peak = traced.iter().map(|t| t.exit.maxrss_kib).max().unwrap_or(0);
    let races: usize = traced.iter().map(|t| t.findings.races.len()).sum();
    let verdict = |ok: bool| if ok { "ok" } else { "FAIL" };
    let _ = writeln!(
        s,
        "\ntps traced/untraced: {ratio:.3} (at least {MIN_RATIO}: {})",
        verdict(ratio >= MIN_RATIO)
    );
    let _ = writeln!(
        s,
        "ipcwatch peak RSS: {:.1} MiB (at most {MAX_RSS_MIB} MiB: {})",
        mib(peak),
        verdict(mib(peak) <= MAX_RSS_MIB)
    );
    let _ = writeln!(s, "findings: {races} (0: {})", verdict(races == 0));
    if ratio < MIN_RATIO {
        failures.push(format!("tps ratio {ratio:.3} < {MIN_RATIO}"));
    }
    if mib(peak) > MAX_RSS_MIB {
        failures.push(format!("peak RSS {:.1} MiB > {MAX_RSS_MIB} MiB", mib(peak)));
    }
    if races > 0 {
        failures.push(format!("{races} findings"));
        for t in traced {
            for r in t.findings.races.iter().take(3) {
                let _ = writeln!(s, "- `{r}`");
            }
        }
    }
    for (i, t) in traced.iter().enumerate() {
        let _ = writeln!(
            s,
            "\ntraced {}: regions mapped by at least 2 processes (what the detector may sample):\n\n| region | kind | size (MiB) | name | mapped by | writable in |\n|---|---|---|---|---|---|",
            i + 1
        );
        for (id, (pids, writable)) in &t.findings.mappers {
            if pids.len() < 2 {
                continue;
            }
            let r = t.findings.regions.get(id);
            let field = |k: &str| r.map(|r| r[k].clone()).unwrap_or(Value::Null);
            let _ = writeln!(
                s,
                "| {id} | {} | {:.1} | {} | {} pids | {} pids |",
                field("kind").as_str().unwrap_or("?"),
                field("size").as_u64().unwrap_or(0) as f64 / (1 << 20) as f64,
                field("name").as_str().unwrap_or(""),
                pids.len(),
                writable.len()
            );
        }
        let det = &t.findings.summary["detector"];
        if !det.is_object() {
            let _ = writeln!(
                s,
                "\ntraced {}: the summary has no `detector` object (this ipcwatch does not report what it armed)",
                i + 1
            );
            continue;
        }
        let words = det["words"].as_array().cloned().unwrap_or_default();
        let _ = writeln!(
            s,
            "\ntraced {}: detector: {} regions sampled, {} MiB read by the sampler in {:.2} s of CPU, {} windows, {} collisions, {} atomic, {} undecoded, {} skipped, {} words armed",
            i + 1,
            det["regions"],
            det["bytes_sampled"].as_u64().unwrap_or(0) >> 20,
            det["sampler_cpu_ns"].as_u64().unwrap_or(0) as f64 / 1e9,
            det["windows"],
            det["collisions"],
            det["atomic"],
            det["undecoded"],
            det["skipped"],
            words.len()
        );
        if words.is_empty() {
            failures.push(format!("traced run {} armed no word", i + 1));
            continue;
        }
        let _ = writeln!(
            s,
            "\n| region | kind | size (MiB) | name | offset | windows | traps | writers |\n|---|---|---|---|---|---|---|---|"
        );
        for w in &words {
            let id = w["region"].as_str().unwrap_or("?");
            let r = t.findings.regions.get(id);
            let field = |k: &str| r.map(|r| r[k].clone()).unwrap_or(Value::Null);
            let writers = w["writers"].as_array().map_or(0, |a| a.len());
            let _ = writeln!(
                s,
                "| {id} | {} | {:.1} | {} | {} | {} | {} | {writers} pids |",
                field("kind").as_str().unwrap_or("?"),
                field("size").as_u64().unwrap_or(0) as f64 / (1 << 20) as f64,
                field("name").as_str().unwrap_or(""),
                w["offset"],
                w["windows"],
                w["traps"],
            );
        }
    }
    (s, failures)
}

/// Arguments for a whole-system `ipcwatch record` by [`Recorder`] (the
/// pgbench fields are the bench's: -c 8 -j 2, scale 5, 256 MB).
pub(crate) fn system_args() -> PostgresArgs {
    PostgresArgs {
        secs: 15,
        clients: 8,
        jobs: 2,
        scale: 5,
        shared_buffers: "256MB".into(),
        rounds: 1,
        system: true,
        record_arg: Vec::new(),
        bin: None,
        keep: false,
    }
}

/// The traced ways of a real-software row: ipcwatch, ipcwatch with
/// `--no-race` (the per-event pipeline apart from the race detector,
/// whose cost is per second: its sampler's CPU budget), and the
/// `--baseline` build; each with its name and its `record` arguments.
pub(crate) fn traced_ways<'a>(
    ipcwatch: &'a Path,
    baseline: Option<(&'a Path, &str)>,
    args: &PostgresArgs,
) -> Vec<(&'a Path, String, PostgresArgs)> {
    let mut ways = vec![
        (ipcwatch, "ipcwatch".to_string(), args.clone()),
        (
            ipcwatch,
            "ipcwatch `--no-race`".to_string(),
            args.with_record_args(&["--no-race"]),
        ),
    ];
    if let Some((b, name)) = baseline {
        ways.push((b, format!("ipcwatch ({name})"), args.clone()));
    }
    ways
}

impl PostgresArgs {
    /// The same with `extra` appended to the traced runs' `record`
    /// arguments.
    pub(crate) fn with_record_args(&self, extra: &[&str]) -> Self {
        let mut a = self.clone();
        a.record_arg.extend(extra.iter().map(|x| x.to_string()));
        a
    }
}

/// utime + stime of a running process (from /proc/PID/stat), or `None`.
fn cpu_of(pid: i32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the comm's closing parenthesis: state is field 3, utime 14,
    // stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_nanos(ticks * 1_000_000_000 / hz))
}

/// One whole-system recording next to pgbench, for `cargo xtask bench`.
struct OwnCpu {
    tps: f64,
    /// Kernel events received (the summary's `events`).
    events: u64,
    dropped: u64,
    /// Seconds from the end of start-up to the stop.
    secs: f64,
    /// ipcwatch's CPU over those seconds (start-up left out).
    cpu: Duration,
    maxrss_kib: u64,
}

impl OwnCpu {
    fn per_event_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.events.max(1) as f64
    }
}

/// `cargo xtask bench`'s row for ipcwatch's own CPU on real load: a
/// PostgreSQL cluster (Debian's packages), pgbench -c 8 -j 2 for `secs`
/// seconds each run, untraced and under a whole-system `ipcwatch record
/// -o FILE` (the race detector on), by this build and by `baseline`,
/// alternating for `rounds` rounds. For each traced run: the events, the
/// CPU ipcwatch spent after its start-up (its probes attached and /proc
/// scanned), per event, and its peak RSS. Returns the markdown table.
pub fn own_cpu(
    ipcwatch: &Path,
    baseline: Option<(&Path, &str)>,
    rounds: usize,
    secs: u64,
) -> Result<String> {
    let pg_bin = ensure_postgres()?;
    let args = PostgresArgs {
        secs,
        rounds: rounds as u32,
        ..system_args()
    };
    let mut cluster = Cluster::new(pg_bin, false)?;
    cluster.init_and_start(&args.shared_buffers)?;
    quiet(
        cluster
            .tool("pgbench")
            .args(["-i", "-q", "-s", &args.scale.to_string()]),
    )?;
    cluster.pgbench(&args, 3)?;
    let postmaster = cluster.postmaster()?;
    let builds = traced_ways(ipcwatch, baseline, &args);
    let mut untraced = Vec::new();
    let mut traced: Vec<Vec<OwnCpu>> = builds.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for way in alternation(round, builds.len()) {
            let Some(i) = way else {
                untraced.push(cluster.pgbench(&args, secs)?);
                continue;
            };
            let trace = cluster.dir.join(format!("own-cpu-{round}-{i}.ndjson"));
            let log = cluster.dir.join(format!("own-cpu-{round}-{i}.log"));
            let mut rec = Recorder::start(builds[i].0, &trace, &log, &builds[i].2)?;
            rec.wait_ready(&trace, postmaster)?;
            let cpu0 = cpu_of(rec.pid).unwrap_or_default();
            let t0 = Instant::now();
            let tps = cluster.pgbench(&args, secs)?;
            let exit = rec.stop()?;
            let run_secs = t0.elapsed().as_secs_f64();
            let summary = last_line(&trace)?;
            std::fs::remove_file(&trace).ok();
            let num = |k: &str| summary[k].as_u64().unwrap_or(0);
            let r = OwnCpu {
                tps,
                events: num("events"),
                dropped: num("dropped"),
                secs: run_secs,
                cpu: exit.cpu.saturating_sub(cpu0),
                maxrss_kib: exit.maxrss_kib,
            };
            eprintln!(
                "bench: {} next to pgbench: {tps:.0} tps, {} events in {run_secs:.1} s, {:.2} s CPU, {:.2} µs/event, peak RSS {:.1} MiB",
                builds[i].1,
                r.events,
                r.cpu.as_secs_f64(),
                r.per_event_us(),
                mib(r.maxrss_kib)
            );
            traced[i].push(r);
        }
    }
    drop(cluster);
    let mut s = String::from(
        "| pgbench -c 8 -j 2, whole system | tps | events/s | dropped | ipcwatch CPU, % of one core | µs of ipcwatch CPU per event | peak RSS (MiB) |\n|---|---|---|---|---|---|---|\n",
    );
    let _ = writeln!(s, "| untraced | {:.0} | | | | | |", median(&mut untraced));
    for ((_, name, _), runs) in builds.iter().zip(&traced) {
        let med = |f: &dyn Fn(&OwnCpu) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
        let _ = writeln!(
            s,
            "| `record -o FILE`, {name} | {:.0} | {:.0} | {:.0} | {:.1} | {:.2} | {:.1} |",
            med(&|r| r.tps),
            med(&|r| r.events as f64 / r.secs),
            med(&|r| r.dropped as f64),
            med(&|r| 100.0 * r.cpu.as_secs_f64() / r.secs),
            med(&|r| r.per_event_us()),
            runs.iter().map(|r| mib(r.maxrss_kib)).fold(0.0, f64::max),
        );
    }
    Ok(s)
}

/// The last line of a trace (its summary), parsed.
pub(crate) fn last_line(path: &Path) -> Result<Value> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut last = String::new();
    for line in BufReader::new(file).lines() {
        last = line?;
    }
    let v: Value = serde_json::from_str(&last).context("the trace's last line")?;
    if v["type"] != "summary" {
        bail!("{} does not end with its summary", path.display());
    }
    Ok(v)
}
