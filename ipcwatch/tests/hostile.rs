//! Hostile or unusual traced processes never crash ipcwatch (issue 19,
//! item 3). Two processes race on a shared counter, so the detector
//! samples their region and arms the word; then they truncate, unmap,
//! shrink, remove or replace the region, or they hold every debug register
//! of their threads. ipcwatch must exit with the command's status, end the
//! trace with its summary, and say in a `warning` line from the race
//! detector which region it had to skip.

mod common;

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Output};

use common::*;
use serde_json::Value;

/// `ipcwatch record -o FILE -- ipcwatch-workload ARGS`: ipcwatch must not
/// die of a signal, must exit 0 (the command's status), and the trace must
/// end with its summary.
fn record_survives(args: &[&str]) -> Trace {
    require_root();
    let dir = temp_dir();
    let out: PathBuf = dir.path().join("trace.ndjson");
    let output: Output = Command::new(ipcwatch())
        .arg("record")
        .arg("-o")
        .arg(&out)
        .arg("--")
        .arg(workload())
        .args(args)
        .output()
        .expect("run ipcwatch");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.signal(),
        None,
        "ipcwatch died of signal {:?} ({}) on `{}`; stderr: {stderr}",
        output.status.signal(),
        output.status,
        args.join(" ")
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "ipcwatch record on `{}`: {}; stderr: {stderr}",
        args.join(" "),
        output.status
    );
    let t = Trace {
        lines: parse(&out),
        output,
    };
    assert_eq!(t.summary()["command_status"], 0, "{}", t.summary());
    assert_schema(&t.lines);
    t
}

/// The shared regions the trace saw created.
fn regions(t: &Trace) -> BTreeSet<String> {
    t.of_type("region")
        .filter(|r| r["event"] == "created")
        .filter_map(|r| r["region"].as_str().map(str::to_string))
        .collect()
}

/// The race detector's warnings.
fn detector_warnings(t: &Trace) -> Vec<&Value> {
    t.of_type("warning")
        .filter(|w| w["probe"] == "race-detector")
        .collect()
}

/// `hostile --action ACTION` racing for 1.5 s, then 1.5 s after the action.
fn hostile(action: &str) -> Trace {
    let t = record_survives(&[
        "hostile",
        "--action",
        action,
        "--after-ms",
        "1500",
        "--secs",
        "3",
    ]);
    assert!(
        t.stdout()
            .lines()
            .any(|l| l.starts_with(&format!("hostile {action} "))),
        "the workload did not finish: {}",
        t.stdout()
    );
    t
}

/// A race-detector warning names the workload's region (of `kind`).
fn assert_warned_about(t: &Trace, kind: &str) {
    let ours: Vec<String> = regions(t)
        .into_iter()
        .filter(|r| r.starts_with(&format!("{kind}:")))
        .collect();
    assert!(!ours.is_empty(), "no {kind} region in the trace");
    let warnings = detector_warnings(t);
    assert!(
        warnings.iter().any(|w| {
            let m = w["message"].as_str().unwrap_or("");
            ours.iter().any(|r| m.contains(r.as_str()))
        }),
        "no race-detector warning names {ours:?}; warnings: {:?}",
        t.of_type("warning").collect::<Vec<_>>()
    );
}

/// The detector armed a word of a region of `kind` (so the action hit a
/// region it was watching).
fn assert_armed(t: &Trace, kind: &str) {
    let det = &t.summary()["detector"];
    assert!(
        det.is_object(),
        "the summary has no `detector`: {}",
        t.summary()
    );
    let armed = det["words"].as_array().is_some_and(|ws| {
        ws.iter().any(|w| {
            w["region"]
                .as_str()
                .is_some_and(|r| r.starts_with(&format!("{kind}:")))
        })
    });
    assert!(armed, "no {kind} word armed before the action: {det}");
}

#[test]
fn a_memfd_truncated_while_sampled() {
    let t = hostile("truncate");
    assert_warned_about(&t, "memfd");
    assert_armed(&t, "memfd");
}

/// Shrunk to half, still mapped whole: the detector says so once and
/// samples what is left; it does not widen the region back to its
/// mappings and say it again on every pass.
#[test]
fn a_memfd_shrunk_while_sampled() {
    let t = hostile("shrink");
    assert_warned_about(&t, "memfd");
    assert_armed(&t, "memfd");
    let shrank = detector_warnings(&t)
        .into_iter()
        .filter(|w| {
            let m = w["message"].as_str().unwrap_or("");
            m.contains("memfd:") && m.contains("shrank while sampled")
        })
        .count();
    assert_eq!(shrank, 1, "{:?}", t.of_type("warning").collect::<Vec<_>>());
}

#[test]
fn a_region_unmapped_while_sampled() {
    let t = hostile("unmap");
    assert_warned_about(&t, "anon");
    assert_armed(&t, "anon");
}

#[test]
fn a_region_shrunk_by_mremap_while_sampled() {
    let t = hostile("mremap");
    assert_armed(&t, "anon");
}

#[test]
fn a_sysv_segment_removed_while_sampled() {
    let t = hostile("rmid");
    assert_warned_about(&t, "sysv");
    assert_armed(&t, "sysv");
}

#[test]
fn a_region_replaced_while_sampled() {
    let t = hostile("replace");
    assert_armed(&t, "anon");
}

#[test]
fn debug_registers_taken_by_the_traced_processes() {
    let t = hostile("steal-dr");
    // Each process held all 4 debug registers of its thread; the next
    // breakpoint it asked for was refused with ENOSPC (28), as ipcwatch's
    // watchpoints then are.
    let stdout = t.stdout();
    let steals: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("steal-dr "))
        .collect();
    assert_eq!(steals.len(), 2, "{stdout}");
    for l in steals {
        assert!(l.ends_with(" 4 28"), "{l}");
    }
    assert_warned_about(&t, "anon");
}

#[test]
fn a_thousand_threads_per_mapper() {
    // Two processes of 1,000 threads each (all but one asleep) race on a
    // shared counter: the detector arms one watchpoint per thread per word.
    let t = record_survives(&["threads", "--count", "1000", "--secs", "5"]);
    assert!(
        t.stdout().lines().any(|l| l.starts_with("threads ")),
        "{}",
        t.stdout()
    );
    assert_armed(&t, "anon");
}
