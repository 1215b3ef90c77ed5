//! Helpers for the root integration tests: run the real binary, parse the
//! trace it writes.
#![allow(dead_code)]

pub mod bash;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub fn ipcwatch() -> &'static str {
    env!("CARGO_BIN_EXE_ipcwatch")
}

/// The `ipcwatch-workload` binary, next to ipcwatch (same target directory
/// and profile). Cargo builds it for its own package only, so it must be
/// built before these tests run; `cargo xtask test` does that.
pub fn workload() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let path = Path::new(ipcwatch()).with_file_name("ipcwatch-workload");
        assert!(
            path.is_file(),
            "{} is missing: build it first: cargo build -p ipcwatch-workload, or run cargo xtask test",
            path.display()
        );
        path.display().to_string()
    })
}

/// The comm (first 15 bytes of the name) of `ipcwatch-workload`'s
/// processes, as traces show it.
pub const WORKLOAD_COMM: &str = "ipcwatch-worklo";

/// These tests load eBPF programs: they need root, and say so.
pub fn require_root() {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the integration tests load eBPF probes: run them as root (cargo xtask test)"
    );
}

pub struct Trace {
    pub lines: Vec<Value>,
    pub output: Output,
}

impl Trace {
    pub fn of_type<'a>(&'a self, ty: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.lines.iter().filter(move |l| l["type"] == ty)
    }

    pub fn summary(&self) -> &Value {
        let last = self.lines.last().expect("an empty trace");
        assert_eq!(last["type"], "summary", "the last line is not the summary");
        last
    }

    /// Sum of `bytes` of io lines on `channel` with `op`.
    pub fn bytes(&self, channel: &str, op: &str) -> u64 {
        self.of_type("io")
            .filter(|l| l["channel"] == channel && l["op"] == op)
            .map(|l| l["bytes"].as_u64().unwrap())
            .sum()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// `dot -Tsvg` of DOT text (Graphviz, which `cargo xtask setup`
/// installs): the SVG, asserted to render with nothing on standard error.
pub fn render_svg(dot: &[u8]) -> Vec<u8> {
    let dir = temp_dir();
    let file = dir.path().join("g.dot");
    std::fs::write(&file, dot).unwrap();
    let svg = Command::new("dot")
        .arg("-Tsvg")
        .arg(&file)
        .output()
        .expect("run Graphviz's dot (cargo xtask setup installs it)");
    assert!(
        svg.status.success() && svg.stderr.is_empty(),
        "dot -Tsvg: {}\n{}",
        String::from_utf8_lossy(&svg.stderr),
        String::from_utf8_lossy(dot)
    );
    svg.stdout
}

/// A FIFO at `path` (a traced command can block on it until the test is
/// ready).
pub fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

pub fn parse(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("the trace file");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}

/// `ipcwatch record -o <tmp> ARGS...`, which must succeed.
pub fn record(args: &[&str]) -> Trace {
    record_with(ipcwatch(), args)
}

/// `BIN record -o <tmp> ARGS...` (another build of ipcwatch), which must
/// succeed.
pub fn record_with(bin: &str, args: &[&str]) -> Trace {
    let dir = temp_dir();
    let out: PathBuf = dir.path().join("trace.ndjson");
    let output = Command::new(bin)
        .arg("record")
        .arg("-o")
        .arg(&out)
        .args(args)
        .output()
        .expect("run ipcwatch");
    assert!(
        output.status.success(),
        "{bin} record {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Trace {
        lines: parse(&out),
        output,
    }
}

/// The pid of the command of a running `ipcwatch record -- CMD`, once it
/// runs: ipcwatch forks it after attaching its probes, and it stays stopped
/// until ipcwatch follows it.
pub fn running_command(ipcwatch_pid: u32) -> u32 {
    let children = format!("/proc/{ipcwatch_pid}/task/{ipcwatch_pid}/children");
    let t0 = std::time::Instant::now();
    loop {
        let kid = std::fs::read_to_string(&children)
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok());
        if let Some(kid) = kid {
            // The state follows the ") " that ends the command name.
            let stat = std::fs::read_to_string(format!("/proc/{kid}/stat")).unwrap_or_default();
            if stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('T'))
            {
                return kid;
            }
        }
        assert!(t0.elapsed() < patience(20), "the command did not start");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Parse "pipe <ino> parent <pid> child <pid>" printed by the workloads.
pub fn pipe_line(text: &str) -> (u64, u32, u32) {
    let line = text
        .lines()
        .find(|l| l.starts_with("pipe "))
        .unwrap_or_else(|| panic!("no pipe line in {text:?}"));
    let w: Vec<&str> = line.split_whitespace().collect();
    (
        w[1].parse().unwrap(),
        w[3].parse().unwrap(),
        w[5].parse().unwrap(),
    )
}

pub fn schema() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/ndjson.schema.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("docs/ndjson.schema.json"))
        .expect("the schema is JSON")
}

/// Every line must validate against docs/ndjson.schema.json.
pub fn assert_schema(lines: &[Value]) {
    let schema = schema();
    let validator = jsonschema::validator_for(&schema).expect("a valid schema");
    for l in lines {
        let errors: Vec<String> = validator.iter_errors(l).map(|e| e.to_string()).collect();
        assert!(
            errors.is_empty(),
            "{l} does not match the schema: {errors:?}"
        );
    }
}

/// How long to wait for what ipcwatch does once, at its start or its
/// stop (loading, attaching or detaching its programs, its first scan):
/// `secs` seconds, times `IPCWATCH_TEST_PATIENCE` when that is set.
/// `cargo xtask kernels` sets it in its guests, whose emulated CPU (QEMU's
/// TCG) runs about 8 times slower than this machine: ipcwatch takes 12 to
/// 20 s there to load its programs. Only waits that a slower machine
/// lengthens use it; no assertion about what was traced does.
pub fn patience(secs: u64) -> std::time::Duration {
    let factor = std::env::var("IPCWATCH_TEST_PATIENCE")
        .ok()
        .and_then(|f| f.parse::<u64>().ok())
        .unwrap_or(1)
        .max(1);
    std::time::Duration::from_secs(secs * factor)
}
