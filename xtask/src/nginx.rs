//! `cargo xtask bench`'s real-server row (issue 18): nginx from Debian's
//! packages, 4 workers with limit_req and limit_conn zones (shared memory
//! the race detector samples), loaded by `ab -k -c 16` over loopback;
//! requests/s untraced and under a whole-system `ipcwatch record`
//! (and the `--baseline` build), alternating.

use std::fmt::Write as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cmd::have;
use crate::compare::{alternation, median};
use crate::realsw::{Recorder, last_line, system_args, traced_ways};

/// The port nginx listens on (loopback only).
const PORT: u16 = 18_418;

/// nginx and ab (apache2-utils), installed from the distribution's
/// packages when missing.
fn ensure_tools() -> Result<()> {
    if have("nginx") && have("ab") {
        return Ok(());
    }
    eprintln!("bench: installing nginx and ab (apt-get install nginx apache2-utils)");
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-q", "nginx", "apache2-utils"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success());
    if !ok || !have("nginx") || !have("ab") {
        bail!(
            "nginx and ab are needed for the real-server row: apt-get install nginx apache2-utils"
        );
    }
    Ok(())
}

/// A running nginx in a temporary directory; stopped when dropped.
struct Nginx {
    dir: PathBuf,
    child: Child,
}

impl Nginx {
    fn start() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("ipcwatch-nginx-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("tmp"))?;
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process on;\nworker_processes 4;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 1024; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n  fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n  limit_req_zone $binary_remote_addr zone=req:1m rate=1000000r/s;\n  limit_conn_zone $binary_remote_addr zone=conn:1m;\n  server {{\n    listen 127.0.0.1:{PORT};\n    location / {{\n      limit_req zone=req burst=1000000 nodelay;\n      limit_conn conn 1000;\n      return 200 \"ipcwatch\\n\";\n    }}\n  }}\n}}\n"
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        if TcpStream::connect(("127.0.0.1", PORT)).is_ok() {
            bail!("port {PORT} is in use: the real-server row needs it for nginx");
        }
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start nginx")?;
        let mut n = Nginx { dir, child };
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", PORT)).is_err() {
            if let Ok(Some(status)) = n.child.try_wait() {
                bail!(
                    "nginx exited ({status}): {}",
                    std::fs::read_to_string(n.dir.join("error.log")).unwrap_or_default()
                );
            }
            if t0.elapsed() > Duration::from_secs(30) {
                bail!("nginx did not listen on port {PORT} within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(n)
    }

    fn master(&self) -> u32 {
        self.child.id()
    }

    fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGQUIT: graceful stop of the master and its workers.
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGQUIT) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One `ab -k -c 16 -n requests` run: requests per second.
fn ab(requests: u64) -> Result<f64> {
    let out = Command::new("ab")
        .args(["-q", "-k", "-c", "16", "-n", &requests.to_string()])
        .arg(format!("http://127.0.0.1:{PORT}/"))
        .stdin(Stdio::null())
        .output()
        .context("cannot start ab")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "ab failed ({}): {text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if let Some(failed) = text
        .lines()
        .find_map(|l| l.strip_prefix("Failed requests:"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        && failed > 0
    {
        bail!("ab: {failed} failed requests: {text}");
    }
    text.lines()
        .find_map(|l| l.strip_prefix("Requests per second:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no rate in ab's output: {text}"))
}

/// The real-server row: `rounds` alternating rounds of untraced, this
/// build and the baseline; medians and ratios. Returns the markdown table.
pub fn row(
    ipcwatch: &Path,
    baseline: Option<(&Path, &str)>,
    rounds: usize,
    requests: u64,
) -> Result<String> {
    ensure_tools()?;
    let nginx = Nginx::start()?;
    // Warm-up, not counted.
    ab(requests.min(5_000))?;
    let args = system_args();
    let builds = traced_ways(ipcwatch, baseline, &args);
    let mut untraced = Vec::new();
    // Per way: (req/s, events/s, ipcwatch's CPU share, µs per event).
    let mut traced: Vec<Vec<[f64; 4]>> = builds.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for way in alternation(round, builds.len()) {
            let Some(i) = way else {
                let r = ab(requests)?;
                eprintln!("bench: nginx untraced: {r:.0} req/s");
                untraced.push(r);
                continue;
            };
            let trace = nginx.dir().join(format!("trace-{round}-{i}.ndjson"));
            let log = nginx.dir().join(format!("ipcwatch-{round}-{i}.log"));
            let mut rec = Recorder::start(builds[i].0, &trace, &log, &builds[i].2)?;
            rec.wait_ready(&trace, nginx.master())?;
            // ipcwatch's CPU while ab runs (not its start-up or its end).
            let cpu0 = rec.cpu_so_far();
            let t0 = Instant::now();
            let r = ab(requests);
            let secs = t0.elapsed().as_secs_f64();
            let cpu = rec.cpu_so_far().saturating_sub(cpu0).as_secs_f64();
            rec.stop()?;
            let events = last_line(&trace)?["events"].as_f64().unwrap_or(f64::NAN);
            std::fs::remove_file(&trace).ok();
            let r = r?;
            eprintln!(
                "bench: nginx under {}: {r:.0} req/s, {events} events in {secs:.1} s, {cpu:.2} s of ipcwatch CPU",
                builds[i].1
            );
            traced[i].push([r, events / secs, 100.0 * cpu / secs, cpu * 1e6 / events]);
        }
    }
    drop(nginx);
    let base = median(&mut untraced);
    let mut s = format!(
        "| nginx, 4 workers, `ab -k -c 16 -n {requests}` | req/s | ratio | events/s | ipcwatch CPU, % of one core | µs of ipcwatch CPU per event |\n|---|---|---|---|---|---|\n| untraced | {base:.0} | 1.00x | | | |\n"
    );
    for ((_, name, _), runs) in builds.iter().zip(&traced) {
        let med = |k: usize| median(&mut runs.iter().map(|r| r[k]).collect::<Vec<_>>());
        let m = med(0);
        let _ = writeln!(
            s,
            "| `record -o FILE` (whole system), {name} | {m:.0} | {:.2}x | {:.0} | {:.1} | {:.2} |",
            m / base,
            med(1),
            med(2),
            med(3),
        );
    }
    Ok(s)
}
