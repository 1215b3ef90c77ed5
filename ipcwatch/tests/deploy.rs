//! The deployment files of deploy/, each tried for real:
//! - the systemd unit's capabilities: the agent, run as a non-root user
//!   with exactly those (setpriv), finds a known race; without CAP_BPF it
//!   stops with a message that names it; `systemd-analyze verify` accepts
//!   the unit (root);
//! - the Kubernetes manifest validates against the Kubernetes schemas
//!   (kubernetes-validate, which `cargo xtask setup` installs);
//! - the Containerfile builds with podman from target/dist and runs
//!   `doctor` and the agent in a privileged container (ignored by a plain
//!   `cargo test`: it needs `cargo xtask dist`, after which `cargo xtask
//!   test` runs it).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file)
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (cargo xtask setup installs it)"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The values of `key=` in the unit, split on spaces.
fn unit_list(key: &str) -> Vec<String> {
    let unit = std::fs::read_to_string(deploy("ipcwatch-agent.service")).unwrap();
    let prefix = format!("{key}=");
    let lines: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .collect();
    assert_eq!(lines.len(), 1, "one {key}= line in the unit");
    lines[0].split_whitespace().map(str::to_string).collect()
}

/// `setpriv`'s list of `caps`: "-all,+bpf,+perfmon...".
fn setpriv_caps(caps: &[String]) -> String {
    let mut s = "-all".to_string();
    for c in caps {
        let name = c.strip_prefix("CAP_").unwrap_or(c).to_ascii_lowercase();
        s.push_str(&format!(",+{name}"));
    }
    s
}

/// The agent as uid/gid 65534 (nobody) with `caps` only, its trace in
/// `dir` (which nobody can write), until SIGTERM after `work` ran.
fn agent_as_nobody(
    dir: &Path,
    caps: &[String],
    args: &[&str],
    work: impl FnOnce(),
) -> (Output, PathBuf) {
    let trace = dir.join("agent.ndjson");
    std::os::unix::fs::chown(dir, Some(65534), Some(65534)).unwrap();
    let list = setpriv_caps(caps);
    let mut child = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(format!("--inh-caps={list}"))
        .arg(format!("--ambient-caps={list}"))
        .arg(format!("--bounding-set={list}"))
        .args([ipcwatch(), "agent", "--interval", "1s", "-o"])
        .arg(&trace)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run setpriv (util-linux)");
    let t0 = Instant::now();
    loop {
        if std::fs::metadata(&trace).is_ok_and(|m| m.len() > 0) {
            work();
            // SAFETY: kill has no memory effects; our child, not reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the agent wrote nothing in 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (child.wait_with_output().unwrap(), trace)
}

#[test]
fn the_units_capabilities_are_enough_to_find_a_race_and_cap_bpf_is_needed() {
    require_root();
    let caps = unit_list("AmbientCapabilities");
    assert_eq!(
        caps,
        unit_list("CapabilityBoundingSet"),
        "the bounding set is the ambient set"
    );
    // The unit as systemd reads it (the binary's path made one that
    // exists here).
    let dir = temp_dir();
    let unit = std::fs::read_to_string(deploy("ipcwatch-agent.service"))
        .unwrap()
        .replace("/usr/sbin/ipcwatch", ipcwatch());
    let copy = dir.path().join("ipcwatch-agent.service");
    std::fs::write(&copy, unit).unwrap();
    let o = run(Command::new("systemd-analyze").arg("verify").arg(&copy));
    assert!(
        o.status.success() && text(&o).trim().is_empty(),
        "systemd-analyze verify: {}",
        text(&o)
    );

    // Two processes bump a counter in a SysV segment without a lock, each
    // pinned to a CPU of its own (they collide even on a busy machine), as
    // root: other users' processes to the agent. Only they are traced, so
    // that the race detector watches nothing else.
    let key = 0x1d000 + (std::process::id() & 0xfff) as i32;
    let (o, trace) = agent_as_nobody(dir.path(), &caps, &["--comm", WORKLOAD_COMM], || {
        let counters: Vec<_> = ["0", "1"]
            .iter()
            .map(|cpu| {
                Command::new(workload())
                    .args(["sysv-counter", "--key", &key.to_string(), "--secs", "4"])
                    .args(["--cpu", cpu])
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("run the workload")
            })
            .collect();
        for mut c in counters {
            assert!(c.wait().unwrap().success(), "sysv-counter failed");
        }
    });
    assert!(o.status.success(), "agent as nobody: {}", text(&o));
    let lines = parse(&trace);
    let found = lines.iter().any(|l| {
        l["type"] == "race"
            && l["kind"] == "shm-write-write"
            && l["offset"] == 128
            && l["accesses"]
                .as_array()
                .unwrap()
                .iter()
                .all(|a| a["comm"] == WORKLOAD_COMM)
    });
    assert!(found, "no race of the counter found: {}", text(&o));

    // Without CAP_BPF: a clear refusal, no trace.
    let without: Vec<String> = caps.iter().filter(|c| *c != "CAP_BPF").cloned().collect();
    assert_eq!(without.len() + 1, caps.len(), "the unit grants CAP_BPF");
    let dir = temp_dir();
    let (o, trace) = agent_as_nobody(dir.path(), &without, &[], || {});
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("without CAP_BPF"),
        "the message names CAP_BPF: {}",
        text(&o)
    );
    assert!(!trace.exists());
}

/// The venv `cargo xtask setup` installs kubernetes-validate into.
fn kubernetes_validate() -> PathBuf {
    let home = std::env::var_os("HOME").expect("HOME");
    let bin = Path::new(&home).join(".cache/ipcwatch/perfetto-venv/bin/kubernetes-validate");
    assert!(
        bin.is_file(),
        "{} is missing: cargo xtask setup installs it",
        bin.display()
    );
    bin
}

#[test]
fn the_daemonset_validates_against_the_kubernetes_schemas() {
    let validate = kubernetes_validate();
    let manifest = deploy("daemonset.yaml");
    let o = run(Command::new(&validate).arg("--strict").arg(&manifest));
    assert!(o.status.success(), "{}", text(&o));
    let said = text(&o);
    for kind in ["namespace", "configmap", "daemonset"] {
        assert!(
            said.contains(&format!("passed for resource {kind}/")),
            "{said}"
        );
    }
    // The validator does refuse a wrong manifest (a misspelt field).
    let dir = temp_dir();
    let bad = dir.path().join("bad.yaml");
    let yaml = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&bad, yaml.replace("hostPID: true", "hostPid: true")).unwrap();
    let o = run(Command::new(&validate).arg("--strict").arg(&bad));
    assert!(!o.status.success(), "accepted hostPid: {}", text(&o));
    // What the agent needs is there.
    for needed in [
        "hostPID: true",
        "- BPF",
        "- PERFMON",
        "- SYS_PTRACE",
        "path: /sys/kernel/tracing",
        "path: /sys/fs/cgroup",
        "path: /sys/kernel/btf",
        "path: /var/log/ipcwatch",
        "memory: 1Gi",
    ] {
        assert!(yaml.contains(needed), "the manifest lacks {needed}");
    }
}

const IMAGE: &str = "localhost/ipcwatch-deploy-test:latest";

/// `podman run --rm` of the image with the options of deploy/Containerfile's
/// comment.
fn podman_run(args: &[&str], mounts: &[(&Path, &str)]) -> Output {
    let mut c = Command::new("podman");
    c.args([
        "run",
        "--rm",
        "--runtime",
        "runc",
        "--privileged",
        "--pid=host",
        "--network=host",
    ]);
    for (from, to) in mounts {
        c.arg("-v").arg(format!("{}:{to}", from.display()));
    }
    run(c.arg(IMAGE).args(args))
}

#[test]
#[ignore = "needs target/dist (cargo xtask dist); cargo xtask test runs it"]
fn the_container_image_runs_doctor_and_the_agent() {
    require_root();
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dist");
    assert!(
        dist.join("ipcwatch").is_file(),
        "{} has no ipcwatch: run cargo xtask dist first",
        dist.display()
    );
    let o = run(Command::new("podman")
        .args(["build", "-q", "--runtime", "runc", "-t", IMAGE, "-f"])
        .arg(deploy("Containerfile"))
        .arg(&dist));
    assert!(o.status.success(), "podman build: {}", text(&o));
    let o = podman_run(&["doctor"], &[]);
    assert!(o.status.success(), "doctor in the container: {}", text(&o));
    // The agent with the image's own command, stopped by --duration.
    let dir = temp_dir();
    let tracing = Path::new("/sys/kernel/tracing");
    let o = podman_run(
        &[
            "agent",
            "-o",
            "/var/log/ipcwatch/trace.ndjson",
            "--duration",
            "2",
        ],
        &[
            (tracing, "/sys/kernel/tracing"),
            (dir.path(), "/var/log/ipcwatch"),
        ],
    );
    assert!(
        o.status.success(),
        "the agent in the container: {}",
        text(&o)
    );
    let lines = parse(&dir.path().join("trace.ndjson"));
    assert_eq!(lines[0]["type"], "header");
    assert_eq!(lines.last().unwrap()["reason"], "duration");
    // The host's processes, seen from the container (--pid=host).
    assert!(
        lines
            .iter()
            .any(|l| l["type"] == "process" && l["event"] == "existing" && l["pid"] == 1),
        "pid 1 not found"
    );
    assert_schema(&lines);
}
