//! The real binary in a real terminal (tmux, 100x30): `ipcwatch demo`
//! draws every view, `q` exits 0 with the terminal restored, and so do
//! SIGTERM and a panic (after the TUI's terminal set-up, run by
//! `ipcwatch-workload tui-panic`). Needs root (eBPF) and tmux.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{ipcwatch, mkfifo, require_root, temp_dir, workload};

fn tmux(args: &[&str]) -> String {
    let o = Command::new("tmux")
        .args(args)
        .output()
        .expect("tmux is needed for this test (cargo xtask setup installs it)");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

struct Session(String);

impl Session {
    /// A 100x30 session running `cmd` under sh; the pane stays after exit.
    fn start(name: &str, cmd: &str) -> Session {
        let s = Session(format!("{name}-{}", std::process::id()));
        tmux(&["kill-session", "-t", &s.0]);
        tmux(&["new-session", "-d", "-s", &s.0, "-x", "100", "-y", "30"]);
        tmux(&["set-option", "-t", &s.0, "remain-on-exit", "on"]);
        tmux(&["respawn-pane", "-k", "-t", &s.0, cmd]);
        s
    }

    fn screen(&self) -> String {
        tmux(&["capture-pane", "-p", "-t", &self.0])
    }

    fn keys(&self, keys: &str) {
        tmux(&["send-keys", "-t", &self.0, keys]);
    }

    fn var(&self, v: &str) -> String {
        tmux(&["display-message", "-p", "-t", &self.0, v])
            .trim()
            .to_string()
    }

    /// Wait until the screen contains every one of `want`.
    fn wait_for(&self, want: &[&str], secs: u64) -> String {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.screen();
            if want.iter().all(|w| s.contains(w)) {
                return s;
            }
            if Instant::now() > end {
                panic!("after {secs}s the screen lacks one of {want:?}:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        tmux(&["kill-session", "-t", &self.0]);
    }
}

fn wait_file(p: &Path, secs: u64) -> String {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(s) = std::fs::read_to_string(p)
            && s.ends_with('\n')
        {
            return s.trim().to_string();
        }
        assert!(Instant::now() < end, "{} never appeared", p.display());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `sh` wrapper of `bin args`: terminal settings before and after, and
/// the exit status.
fn wrapped(dir: &Path, bin: &str, args: &str) -> String {
    let d = dir.display();
    format!(
        "sh -c 'stty -g > {d}/before; echo $$ > {d}/sh.pid; {bin} {args}; echo $? > {d}/status; stty -g > {d}/after; sleep 600'"
    )
}

fn assert_restored(s: &Session, dir: &Path) {
    let before = wait_file(&dir.join("before"), 5);
    let after = wait_file(&dir.join("after"), 5);
    assert_eq!(before, after, "terminal settings were not restored");
    assert_eq!(
        s.var("#{alternate_on}"),
        "0",
        "still on the alternate screen"
    );
    assert_eq!(s.var("#{mouse_any_flag}"), "0", "mouse reporting left on");
}

#[test]
fn demo_shows_every_view_and_q_exits_0_with_the_terminal_restored() {
    require_root();
    let dir = temp_dir();
    let s = Session::start("ipcwatch-demo", &wrapped(dir.path(), ipcwatch(), "demo"));
    // View 1: live, the pipeline's processes among the top talkers.
    s.wait_for(&["LIVE", "Events per second", "Top talkers", "demo-"], 30);
    s.keys("2");
    let v2 = s.wait_for(&["Channels", "pipe:[", "demo-src", "demo-filter"], 15);
    assert!(v2.contains("demo-sink"), "{v2}");
    s.keys("3");
    s.wait_for(&["Shared regions"], 5);
    s.keys("4");
    s.wait_for(&["Races", "Detail"], 5);
    // The demo's unsynchronized counter is flagged within 30 seconds.
    s.wait_for(&["shm-write-write", "demo-racer"], 30);
    s.keys("5");
    s.wait_for(
        &[
            "Processes (Enter",
            "demo-racer",
            "demo-locked",
            "demo-mq-send",
        ],
        10,
    );
    // 80x24 after a resize still draws the tabs and the status line.
    tmux(&["resize-window", "-t", &s.0, "-x", "80", "-y", "24"]);
    s.wait_for(&["5 Processes", "?:help"], 5);
    s.keys("?");
    s.wait_for(&["Keys (any key closes)"], 5);
    s.keys("Escape");
    std::thread::sleep(Duration::from_millis(300));
    s.keys("q");
    assert_eq!(wait_file(&dir.path().join("status"), 20), "0");
    assert_restored(&s, dir.path());
    // The demo's workloads went away with it.
    let left = Command::new("pgrep")
        .args(["-f", "demo --workloads-only"])
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "demo workloads left running");
}

#[test]
fn sigterm_restores_the_terminal() {
    require_root();
    let dir = temp_dir();
    let s = Session::start("ipcwatch-term", &wrapped(dir.path(), ipcwatch(), "tui"));
    s.wait_for(&["LIVE", "Events per second"], 30);
    let sh = wait_file(&dir.path().join("sh.pid"), 5);
    let child = Command::new("pgrep").args(["-P", &sh]).output().unwrap();
    let pid = String::from_utf8_lossy(&child.stdout).trim().to_string();
    assert!(!pid.is_empty(), "no ipcwatch under sh {sh}");
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert_eq!(wait_file(&dir.path().join("status"), 20), "0");
    assert_restored(&s, dir.path());
}

#[test]
fn a_panic_restores_the_terminal() {
    let dir = temp_dir();
    let cmd = wrapped(dir.path(), workload(), "tui-panic");
    let s = Session::start("ipcwatch-panic", &cmd);
    let status = wait_file(&dir.path().join("status"), 20);
    assert_eq!(status, "101", "a panic exits with 101");
    assert_restored(&s, dir.path());
    assert!(
        s.screen()
            .contains("tui-panic: panicking to test the terminal restore"),
        "{}",
        s.screen()
    );
}

/// `/proc/PID/task/*`: each thread's name and its `CapEff`, `CapPrm`,
/// `CapBnd` and `NoNewPrivs` lines.
fn thread_caps(pid: &str) -> Vec<(String, [String; 4])> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task")).expect("ipcwatch is running") {
        let dir = e.unwrap().path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let field = |f: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(f)?.strip_prefix(':'))
                .map_or(String::new(), |v| v.trim().to_string())
        };
        out.push((
            name.trim().to_string(),
            [
                field("CapEff"),
                field("CapPrm"),
                field("CapBnd"),
                field("NoNewPrivs"),
            ],
        ));
    }
    out.sort();
    out
}

/// What a recording keeps (tests/privileges.rs): CAP_KILL,
/// CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE, CAP_PERFMON, CAP_BPF,
/// CAP_CHECKPOINT_RESTORE.
const KEPT: &str = "000001c000080024";
const NONE: &str = "0000000000000000";

/// Wait until `pid`'s thread named `name` shows `CapPrm` `want`.
fn wait_thread_caps(pid: &str, name: &str, want: &str, secs: u64) -> Vec<(String, [String; 4])> {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let t = thread_caps(pid);
        if t.iter().any(|(n, c)| n == name && c[1] == want) {
            return t;
        }
        assert!(Instant::now() < end, "after {secs}s: {t:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Live, the collector thread keeps what tracing needs and every other
/// thread of the TUI (drawing, keys, signals) keeps no capability at all;
/// a replay keeps none anywhere.
#[test]
fn tui_threads_keep_only_what_they_need() {
    require_root();
    let dir = temp_dir();
    let d = dir.path().display();
    let fifo = dir.path().join("hold");
    mkfifo(&fifo);
    let cmd = format!(
        "sh -c 'echo $$ > {d}/pid; exec {} tui -- sh -c \"read x < {d}/hold\"'",
        ipcwatch()
    );
    let s = Session::start("ipcwatch-caps", &cmd);
    let pid = wait_file(&dir.path().join("pid"), 5);
    s.wait_for(&["LIVE"], 30);
    let threads = wait_thread_caps(&pid, "collector", KEPT, 30);
    let names: Vec<&str> = threads.iter().map(|(n, _)| n.as_str()).collect();
    for want in ["collector", "input", "signals"] {
        assert!(names.contains(&want), "no {want} thread: {threads:?}");
    }
    for (name, [eff, prm, bnd, nnp]) in &threads {
        let want = if name == "collector" { KEPT } else { NONE };
        assert_eq!(
            (eff.as_str(), prm.as_str(), bnd.as_str()),
            (want, want, want),
            "{name}: {threads:?}"
        );
        assert_eq!(nnp, "1", "{name}: {threads:?}");
    }
    std::fs::write(&fifo, "go\n").unwrap();
    s.keys("q");
    drop(s);

    // A replay of a trace: nothing anywhere.
    let trace = dir.path().join("t.ndjson");
    let rec = Command::new(ipcwatch())
        .arg("record")
        .arg("-o")
        .arg(&trace)
        .args(["--", "true"])
        .output()
        .unwrap();
    assert!(
        rec.status.success(),
        "{}",
        String::from_utf8_lossy(&rec.stderr)
    );
    let cmd = format!(
        "sh -c 'echo $$ > {d}/pid2; exec {} tui --replay {}'",
        ipcwatch(),
        trace.display()
    );
    let s = Session::start("ipcwatch-caps-replay", &cmd);
    let pid = wait_file(&dir.path().join("pid2"), 5);
    s.wait_for(&["Events per second", "Totals"], 30);
    let threads = wait_thread_caps(&pid, "ipcwatch", NONE, 10);
    for (name, [eff, prm, _, nnp]) in &threads {
        assert_eq!(
            (eff.as_str(), prm.as_str(), nnp.as_str()),
            (NONE, NONE, "1"),
            "{name}: {threads:?}"
        );
    }
    s.keys("q");
}
