//! The real binary in a real terminal (tmux, 100x30): `ipcwatch demo`
//! draws every view, `q` exits 0 with the terminal restored, and so do
//! SIGTERM and a panic (after the TUI's terminal set-up, run by
//! `ipcwatch-workload tui-panic`). Needs root (eBPF) and tmux.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{ipcwatch, require_root, temp_dir, workload};

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
