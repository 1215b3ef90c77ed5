//! `ipcwatch analyze` on bad trace files: a one-line reason naming the
//! line, a non-zero exit, never a panic. No root needed.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

const HEADER: &str = r#"{"type":"header","ts_ns":1,"format":"ipcwatch-ndjson","version":1,"tool_version":"0","kernel":"6","hostname":"h","start_time":"2026-01-01T00:00:00Z","start_unix_ns":0}"#;
const IO: &str = r#"{"type":"io","ts_ns":2,"kind":"pipe","op":"write","channel":"pipe:[5]","pid":7,"tid":7,"comm":"w","bytes":10,"fd":1,"syscall":"write"}"#;

fn analyze(path: &Path) -> Output {
    Command::new(ipcwatch())
        .args(["analyze", path.to_str().unwrap()])
        .output()
        .unwrap()
}

/// Exit 1 with exactly one line on stderr that contains `reason`.
fn assert_refused(o: &Output, reason: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(err.contains(reason), "{err:?} does not say {reason:?}");
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn a_good_trace_is_summarized() {
    let dir = temp_dir();
    let p = write(
        dir.path(),
        "ok.ndjson",
        format!("{HEADER}\n{IO}\n{IO}\n").as_bytes(),
    );
    let o = analyze(&p);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("pipe:[5]") && out.contains("20 B written"),
        "{out}"
    );
}

#[test]
fn an_empty_file_is_refused() {
    let dir = temp_dir();
    assert_refused(
        &analyze(&write(dir.path(), "empty", b"")),
        "the trace is empty",
    );
}

#[test]
fn a_truncated_trace_keeps_its_good_lines_and_names_the_cut() {
    let dir = temp_dir();
    let text = format!("{HEADER}\n{IO}\n{}", &IO[..40]);
    let o = analyze(&write(dir.path(), "cut", text.as_bytes()));
    assert_refused(&o, "line 3:");
    // The lines before the cut are still reported.
    assert!(String::from_utf8_lossy(&o.stdout).contains("pipe:[5]"));
}

#[test]
fn random_bytes_are_refused() {
    let dir = temp_dir();
    // A fixed pseudo-random sequence, so the test is repeatable.
    let mut x: u32 = 0x1234_5678;
    let bytes: Vec<u8> = (0..10_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    assert_refused(&analyze(&write(dir.path(), "rand", &bytes)), "line 1:");
    let mut corrupted = format!("{HEADER}\n{IO}\n").into_bytes();
    corrupted.extend_from_slice(&bytes[..300]);
    assert_refused(
        &analyze(&write(dir.path(), "corrupt", &corrupted)),
        "line 3:",
    );
}

#[test]
fn wrong_or_unknown_versions_are_refused() {
    let dir = temp_dir();
    let v2 = HEADER.replace("\"version\":1", "\"version\":2");
    assert_refused(
        &analyze(&write(dir.path(), "v2", format!("{v2}\n{IO}\n").as_bytes())),
        "trace format version 2 is not supported",
    );
    let other = HEADER.replace("ipcwatch-ndjson", "something-else");
    assert_refused(
        &analyze(&write(dir.path(), "fmt", format!("{other}\n").as_bytes())),
        "unknown trace format",
    );
    assert_refused(
        &analyze(&write(dir.path(), "nohdr", format!("{IO}\n").as_bytes())),
        "the first line must be the header",
    );
}

#[test]
fn a_line_of_tens_of_megabytes_is_refused_without_exhausting_memory() {
    let dir = temp_dir();
    let mut text = format!("{HEADER}\n").into_bytes();
    text.extend(std::iter::repeat_n(b'a', 40 << 20));
    text.push(b'\n');
    assert_refused(
        &analyze(&write(dir.path(), "huge", &text)),
        "line 2: line longer than",
    );
}

#[test]
fn missing_files_and_directories_are_clear_errors() {
    assert_refused(
        &analyze(Path::new("/nonexistent")),
        "cannot read /nonexistent",
    );
    let dir = temp_dir();
    assert_refused(&analyze(dir.path()), "is a directory");
}

#[test]
fn fail_on_race_exits_3_when_the_trace_holds_a_race() {
    let dir = temp_dir();
    let race = r#"{"type":"race","ts_ns":3,"kind":"shm-write-write","region":"sysv:1","offset":0,"len":8,"accesses":[{"pid":1,"tid":1,"comm":"a","ip":1,"stack":[],"locks":[],"ts_ns":3},{"pid":2,"tid":2,"comm":"b","ip":2,"stack":[],"locks":[],"ts_ns":3}],"evidence":"collision","confidence":0.9,"explanation":"two writers"}"#;
    let p = write(dir.path(), "race", format!("{HEADER}\n{race}\n").as_bytes());
    let o = Command::new(ipcwatch())
        .args(["analyze", "--fail-on-race", p.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stdout).contains("shm-write-write on sysv:1"));
    let clean = write(dir.path(), "clean", format!("{HEADER}\n{IO}\n").as_bytes());
    let o = Command::new(ipcwatch())
        .args(["analyze", "--fail-on-race", clean.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
}
