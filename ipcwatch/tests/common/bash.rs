//! The bash completion of `ipcwatch completions bash`, driven in a real
//! bash as Tab drives it (packaging.rs with this build's script, dist.rs
//! with the installed package's).

use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::temp_dir;

/// A running process with a name of our choosing: a copy of sleep.
fn named_sleeper(dir: &Path, name: &str) -> Child {
    let copy = dir.join(name);
    std::fs::copy("/bin/sleep", &copy).expect("copy sleep");
    Command::new(&copy)
        .arg("120")
        .spawn()
        .expect("start the sleeper")
}

/// Completes the command line `words` (the last one is being typed) the
/// way bash does on Tab, with the script of `ipcwatch completions bash`
/// sourced, in `dir`; returns the candidates.
fn bash_complete(script: &Path, dir: &Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let line = words.join(" ");
    let program = format!(
        r#"source '{}' || exit 90
complete -p ipcwatch >/dev/null || exit 91
COMP_WORDS=({})
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMP_LINE='{line}'
COMP_POINT=${{#COMP_LINE}}
COMP_TYPE=9
_clap_complete_ipcwatch ipcwatch "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}"
"#,
        script.display(),
        quoted.join(" ")
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "bash exited with {} completing {words:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The checks of the bash completion, with the script at `script` (used
/// here with this build's, and by dist.rs with the installed package's).
pub fn check_completion(script: &Path) {
    let dir = temp_dir();
    let mut sleeper = named_sleeper(dir.path(), "zqx-complete-t");
    // A process whose name carries an escape sequence is not offered.
    let mut hostile = Command::new("bash")
        .args([
            "-c",
            r#"printf 'zqx\033]0;x\007' > /proc/$$/comm; read -t 120"#,
        ])
        .stdin(Stdio::piped())
        .spawn()
        .expect("start bash");
    std::fs::write(dir.path().join("trace.ndjson"), "").unwrap();
    std::fs::create_dir(dir.path().join("traces")).unwrap();
    // Wait until the hostile name is set.
    let comm = format!("/proc/{}/comm", hostile.id());
    while !std::fs::read_to_string(&comm)
        .unwrap()
        .starts_with("zqx\u{1b}")
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let complete = |words: &[&str]| bash_complete(script, dir.path(), words);

    let kinds = complete(&["ipcwatch", "record", "--kind", ""]);
    assert_eq!(
        kinds,
        ["pipe", "fifo", "unix", "tcp", "udp", "mq", "msgq"],
        "--kind"
    );
    let pids = complete(&["ipcwatch", "record", "--pid", ""]);
    assert!(pids.contains(&sleeper.id().to_string()), "{pids:?}");
    assert!(pids.iter().all(|p| p.parse::<u32>().is_ok()), "{pids:?}");
    // A prefix no other process here is likely to have (ipcwatch itself
    // may be running beside the test).
    let comms = complete(&["ipcwatch", "tui", "--comm", "zqx"]);
    assert_eq!(comms, ["zqx-complete-t"], "--comm");
    assert_eq!(
        complete(&["ipcwatch", "analyze", "tr"]),
        ["trace.ndjson", "traces/"]
    );
    assert_eq!(
        complete(&["ipcwatch", "tui", "--replay", "trace."]),
        ["trace.ndjson"]
    );
    assert_eq!(complete(&["ipcwatch", "rec"]), ["record"]);
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    hostile.kill().unwrap();
    hostile.wait().unwrap();
}
