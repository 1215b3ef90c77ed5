//! Container attribution with real podman containers (runc, an image built
//! `FROM scratch` from the workload binary and its libraries): a race
//! between two containers sharing an IPC namespace names both containers,
//! and a unix socket between two containers is one channel with both on
//! it, and podman's API service names both (name and image). Needs
//! root, podman and runc (`cargo xtask setup` installs them); a
//! podman that cannot start a container fails the test with its error.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use common::*;
use serde_json::Value;

const IMAGE: &str = "localhost/ipcwatch-test-workload:latest";

/// Run a command; its standard output, or a failure with what it said.
fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {cmd:?}: {e} (is podman installed? cargo xtask setup)")
    });
    assert!(
        o.status.success(),
        "{cmd:?} failed ({}): {}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The image, built once per test binary: the workload (debug info
/// stripped, symbols kept) and the shared libraries `ldd` lists.
fn image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        require_root();
        let dir = temp_dir();
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        let bin = root.join("ipcwatch-workload");
        let stripped = Command::new("objcopy")
            .args(["--strip-debug", workload()])
            .arg(&bin)
            .status()
            .is_ok_and(|s| s.success());
        if !stripped {
            std::fs::copy(workload(), &bin).unwrap();
        }
        let ldd = run(Command::new("ldd").arg(workload()));
        for lib in ldd.lines().filter_map(|l| {
            let path = l.split("=>").last()?.split_whitespace().next()?;
            path.starts_with('/').then(|| Path::new(path).to_path_buf())
        }) {
            let to = root.join(lib.strip_prefix("/").unwrap());
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&lib, &to).unwrap_or_else(|e| panic!("{}: {e}", lib.display()));
        }
        std::fs::write(
            dir.path().join("Containerfile"),
            "FROM scratch\nCOPY root/ /\n",
        )
        .unwrap();
        run(Command::new("podman")
            .args(["build", "-q", "-t", IMAGE, "-f"])
            .arg(dir.path().join("Containerfile"))
            .arg(dir.path()));
    });
    IMAGE
}

/// Containers of one test, removed at the end whatever happens.
struct Names(Vec<String>);

impl Names {
    fn new(test: &str) -> Self {
        let p = std::process::id();
        Names(vec![
            format!("ipcwatch-{test}-{p}-a"),
            format!("ipcwatch-{test}-{p}-b"),
        ])
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        // The second may depend on the first (--ipc=container:): it goes
        // first.
        for n in self.0.iter().rev() {
            let _ = Command::new("podman")
                .args(["rm", "-f", "-t", "0", n])
                .output();
        }
    }
}

/// podman's API service on root's default socket, where ipcwatch asks
/// containers' names and images; stopped at the end of the test (unless
/// it was running before).
struct PodmanService(Option<std::process::Child>);

const PODMAN_SOCKET: &str = "/run/podman/podman.sock";

impl PodmanService {
    fn start() -> Self {
        if ping() {
            return PodmanService(None);
        }
        // (systemd's podman.socket makes the directory elsewhere.)
        std::fs::create_dir_all("/run/podman").unwrap();
        // A socket left by a service that ended answers nobody.
        let _ = std::fs::remove_file(PODMAN_SOCKET);
        let child = Command::new("podman")
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{PODMAN_SOCKET}"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start podman system service: {e}"));
        let service = PodmanService(Some(child));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !ping() {
            assert!(
                std::time::Instant::now() < deadline,
                "podman system service did not answer on {PODMAN_SOCKET} within 30 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        service
    }
}

impl Drop for PodmanService {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Does podman's API answer `GET /_ping` with OK?
fn ping() -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(PODMAN_SOCKET) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    let mut out = String::new();
    s.write_all(b"GET /_ping HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .and_then(|()| s.read_to_string(&mut out))
        .is_ok()
        && out.starts_with("HTTP/1.")
        && out.ends_with("OK")
}

/// `podman run -d` with the options every container here takes.
fn podman_run(name: &str, extra: &str, args: &str) -> String {
    format!(
        "podman run -d --runtime runc --network none --name {name} {extra} {} /ipcwatch-workload {args}",
        image()
    )
}

/// Record `script` (two containers, started detached, waited for, their
/// ids printed as "ids A B"); the trace and both ids as podman reports
/// them.
fn record_containers(script: &str) -> (Trace, [String; 2]) {
    let script = format!(
        "set -e\n{script}\npodman wait $a $b >/dev/null\npodman logs $a\npodman logs $b\necho ids $a $b\n"
    );
    let t = record(&["--", "sh", "-c", &script]);
    let ids: Vec<String> = t
        .stdout()
        .lines()
        .find_map(|l| l.strip_prefix("ids "))
        .unwrap_or_else(|| panic!("no ids: {}{}", t.stdout(), t.stderr()))
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_schema(&t.lines);
    (t, [ids[0].clone(), ids[1].clone()])
}

fn container_id(v: &Value) -> Option<&str> {
    v["container"]["id"].as_str()
}

/// Every exec of the workload names its container, with podman as the
/// runtime and the libpod cgroup; with `nspid`, pid 1 inside too (read
/// from /proc: only for processes still running when their exec is
/// collected).
fn assert_execs_named(t: &Trace, ids: &[String; 2], nspid: bool) {
    let execs: Vec<&Value> = t
        .of_type("process")
        .filter(|p| p["event"] == "exec" && p["filename"] == "/ipcwatch-workload")
        .collect();
    let named: BTreeSet<&str> = execs.iter().filter_map(|p| container_id(p)).collect();
    let want: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(named, want, "{execs:?}");
    for p in execs {
        assert_eq!(p["container"]["runtime"], "podman", "{p}");
        let id = container_id(p).unwrap();
        assert!(
            p["cgroup"]
                .as_str()
                .is_some_and(|c| c.ends_with(&format!("libpod-{id}"))),
            "{p}"
        );
        if nspid {
            assert_eq!(p["nspid"], 1, "{p}");
        }
    }
}

#[test]
fn a_race_between_two_containers_names_both() {
    require_root();
    let names = Names::new("race");
    let (a, b) = (&names.0[0], &names.0[1]);
    let _service = PodmanService::start();
    let key = 0x1c000 + (std::process::id() & 0xfff) as i32;
    let work = |cpu| format!("sysv-counter --key {key} --secs 6 --cpu {cpu}");
    let script = format!(
        "a=$({})\nb=$({})",
        podman_run(a, "--ipc=shareable", &work(0)),
        podman_run(b, &format!("--ipc=container:{a}"), &work(1)),
    );
    let (t, ids) = record_containers(&script);
    // Both run for 6 s: their pid inside is read while they run.
    assert_execs_named(&t, &ids, true);
    let race = t
        .of_type("race")
        .find(|r| r["kind"] == "shm-write-write")
        .unwrap_or_else(|| panic!("no race flagged; stderr: {}", t.stderr()));
    assert!(
        race["region"].as_str().unwrap().starts_with("sysv:"),
        "{race}"
    );
    assert_eq!(race["offset"], 128, "{race}");
    let acc = race["accesses"].as_array().unwrap();
    let named: BTreeSet<&str> = acc.iter().filter_map(container_id).collect();
    let want: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(named, want, "{race}");
    // podman's API named both containers (asked when they started): a
    // `container` line each, and the finding's accesses carry the names.
    let name_of = |id: &str| if id == ids[0] { a } else { b };
    for id in &ids {
        let line = t
            .of_type("container")
            .find(|c| c["id"] == id.as_str())
            .unwrap_or_else(|| panic!("no container line for {id}; stderr: {}", t.stderr()));
        assert_eq!(line["runtime"], "podman", "{line}");
        assert_eq!(line["name"], name_of(id).as_str(), "{line}");
        assert_eq!(line["image"], IMAGE, "{line}");
    }
    for x in acc {
        assert_eq!(x["container"]["runtime"], "podman", "{x}");
        assert_eq!(x["nspid"], 1, "{x}");
        let id = container_id(x).unwrap();
        assert_eq!(x["container"]["name"], name_of(id).as_str(), "{x}");
        assert_eq!(x["container"]["image"], IMAGE, "{x}");
    }
    // analyze's text names both containers too (by name).
    let dir = temp_dir();
    let p = dir.path().join("t.ndjson");
    let text: String = t.lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&p, text).unwrap();
    let out = run(Command::new(ipcwatch()).arg("analyze").arg(&p));
    for id in &ids {
        let name = name_of(id);
        assert!(out.contains(&format!("@{name}")), "{name} not in:\n{out}");
    }
}

#[test]
fn a_unix_socket_between_two_containers_is_one_channel() {
    require_root();
    let names = Names::new("unix");
    let (a, b) = (&names.0[0], &names.0[1]);
    let dir = temp_dir();
    let vol = format!("-v {}:/s", dir.path().display());
    const BYTES: u64 = 100_000;
    let script = format!(
        "a=$({})\nb=$({})",
        podman_run(a, &vol, "unix-serve /s/sock"),
        podman_run(b, &vol, &format!("unix-send /s/sock --bytes {BYTES}")),
    );
    let (t, ids) = record_containers(&script);
    assert_execs_named(&t, &ids, false);
    let want: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    let channels: Vec<&Value> = t.summary()["channels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            let ids: BTreeSet<&str> = c["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(container_id)
                .collect();
            ids.len() > 1
        })
        .collect();
    // (runc's own socketpairs inside each container are channels too.)
    assert_eq!(
        channels.len(),
        1,
        "one channel between the containers: {channels:?}"
    );
    assert_eq!(channels[0]["kind"], "unix");
    let ends = channels[0]["endpoints"].as_array().unwrap();
    let named: BTreeSet<&str> = ends.iter().filter_map(container_id).collect();
    assert_eq!(named, want, "{}", channels[0]);
    let sent: u64 = ends
        .iter()
        .filter(|e| container_id(e) == Some(&ids[1]))
        .map(|e| e["bytes_written"].as_u64().unwrap())
        .sum();
    let got: u64 = ends
        .iter()
        .filter(|e| container_id(e) == Some(&ids[0]))
        .map(|e| e["bytes_read"].as_u64().unwrap())
        .sum();
    assert_eq!((sent, got), (BYTES, BYTES), "{}", channels[0]);
}

#[test]
fn the_container_filter_keeps_that_container_only() {
    require_root();
    let names = Names::new("filter");
    let a = &names.0[0];
    // Pipes in the container and on the host, 200 io events/s each.
    let paced = "paced --rate 200 --secs 20 --procs 1";
    let id = run(Command::new("sh").arg("-c").arg(podman_run(a, "", paced)));
    let id = id.trim();
    let mut host = Command::new(workload())
        .args(paced.split(' '))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // By name and by a prefix of its id (each must name a running
    // container, or record refuses to start): the same cgroup.
    let traces = [record(&[
        "--duration",
        "1",
        "--container",
        a,
        "--container",
        &id[..12],
    ])];
    let _ = host.kill();
    let _ = host.wait();
    for t in &traces {
        assert_schema(&t.lines);
        let inside: BTreeSet<u64> = t
            .of_type("process")
            .filter(|p| container_id(p) == Some(id))
            .map(|p| p["pid"].as_u64().unwrap())
            .collect();
        assert!(!inside.is_empty(), "no process of the container");
        let io: Vec<&Value> = t.of_type("io").collect();
        assert!(io.len() > 50, "{} io lines", io.len());
        for l in io {
            let pid = l["pid"].as_u64().unwrap();
            assert!(inside.contains(&pid), "{pid} is not in the container: {l}");
        }
        assert!(
            !t.lines.iter().any(|l| l["pid"] == host.id()),
            "the host's workload {} was traced",
            host.id()
        );
    }
}
