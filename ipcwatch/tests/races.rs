//! The race detector's acceptance suite, in its default mode: two
//! processes bump one shared counter. Every racy variant must be flagged
//! within 5 seconds, with both writers' pids and functions; no
//! synchronized variant may be. `ipcwatch analyze` on each recording must
//! print the same findings. Then deep mode's happens-before analysis.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::*;
use serde_json::Value;

const SECS: &str = "5";

fn races(t: &Trace) -> Vec<&Value> {
    t.of_type("race").collect()
}

/// Findings as `analyze --format json` reports them for a trace.
fn analyzed(lines: &[Value]) -> Vec<Value> {
    let dir = temp_dir();
    let p = dir.path().join("t.ndjson");
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&p, text).unwrap();
    let o = Command::new(ipcwatch())
        .args(["analyze", "--format", "json", p.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v["races"].as_array().unwrap().clone()
}

fn finding_keys(races: &[&Value]) -> BTreeSet<String> {
    races
        .iter()
        .map(|r| {
            let mut fns: Vec<String> = r["accesses"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["function"].as_str().unwrap_or("?").to_string())
                .collect();
            fns.sort();
            format!(
                "{} {} {} {}",
                r["kind"],
                r["region"],
                r["offset"],
                fns.join(",")
            )
        })
        .collect()
}

fn assert_racy(args: &[&str]) {
    require_root();
    let t = record(args);
    let found = races(&t);
    assert!(!found.is_empty(), "no race flagged; stderr: {}", t.stderr());
    let start = t.lines[0]["ts_ns"].as_u64().unwrap();
    let first = found[0];
    assert_eq!(first["kind"], "shm-write-write");
    assert_eq!(first["evidence"], "collision");
    let elapsed = first["ts_ns"].as_u64().unwrap() - start;
    assert!(
        elapsed < 5_000_000_000,
        "flagged after {} ms",
        elapsed / 1_000_000
    );
    let acc = first["accesses"].as_array().unwrap();
    let pids: BTreeSet<u64> = acc.iter().map(|a| a["pid"].as_u64().unwrap()).collect();
    assert_eq!(pids.len(), 2, "two writers: {first}");
    for a in acc {
        let f = a["function"].as_str().unwrap_or("");
        assert!(f.contains("bump_counter_unsynchronized"), "{a}");
    }
    // The counter sits at offset 128 of its page.
    assert_eq!(first["offset"].as_u64().map(|o| o % 4096), Some(128));
    // While it ran (5 s), the `heat` lines (every 2 s) showed the racing
    // word changing, before the summary did.
    let heat = t
        .lines
        .iter()
        .filter(|l| l["type"] == "heat")
        .flat_map(|l| l["words"].as_array().cloned().unwrap_or_default())
        .find(|w| w["region"] == first["region"] && w["offset"] == first["offset"]);
    let heat = heat
        .unwrap_or_else(|| panic!("no heat line names the racing word; stderr: {}", t.stderr()));
    assert!(
        heat["changes"].as_u64().unwrap() + heat["traps"].as_u64().unwrap() > 0,
        "{heat}"
    );
    assert_schema(&t.lines);
    // analyze finds the same findings in the recording.
    let again = analyzed(&t.lines);
    let again: Vec<&Value> = again
        .iter()
        .filter(|r| r["kind"] == "shm-write-write")
        .collect();
    assert_eq!(finding_keys(&again), finding_keys(&found));
}

fn assert_clean(args: &[&str]) {
    require_root();
    let t = record(args);
    let found = races(&t);
    assert!(found.is_empty(), "false positive: {found:?}");
    assert!(analyzed(&t.lines).is_empty());
    assert_schema(&t.lines);
}

fn counter(memory: &'static str, sync: &'static str) -> Vec<&'static str> {
    counter_for(memory, sync, SECS)
}

/// `-- ipcwatch-workload counter` on `memory`, taking `sync`, for `secs`.
fn counter_for(memory: &'static str, sync: &'static str, secs: &'static str) -> Vec<&'static str> {
    vec![
        "--",
        workload(),
        "counter",
        "--memory",
        memory,
        "--sync",
        sync,
        "--secs",
        secs,
    ]
}

#[test]
fn racy_shared_anonymous_memory() {
    assert_racy(&counter("anon", "none"));
}

#[test]
fn racy_memfd() {
    assert_racy(&counter("memfd", "none"));
}

#[test]
fn racy_sysv_shm() {
    assert_racy(&counter("sysv", "none"));
}

#[test]
fn racy_posix_shm_between_unrelated_processes() {
    let script = format!(
        "n=/ipcwatch-race-$$; {w} posix-counter --name $n --secs {SECS} & {w} posix-counter --name $n --secs {SECS}; wait; rm -f /dev/shm/${{n#/}}",
        w = workload()
    );
    assert_racy(&["--", "sh", "-c", &script]);
}

#[test]
fn a_process_shared_mutex_is_not_a_race() {
    assert_clean(&counter("anon", "mutex"));
}

#[test]
fn an_rwlock_is_not_a_race() {
    assert_clean(&counter("anon", "rwlock"));
}

#[test]
fn atomic_increments_are_not_a_race() {
    assert_clean(&counter("anon", "atomic"));
}

#[test]
fn a_named_semaphore_is_not_a_race() {
    assert_clean(&counter("anon", "semaphore"));
}

#[test]
fn a_token_over_two_pipes_is_not_a_race() {
    assert_clean(&counter("anon", "token"));
}

#[test]
fn pipe_writers_of_64k_records_interleave() {
    require_root();
    let t = record(&[
        "--",
        workload(),
        "pipe-writers",
        "--writers",
        "3",
        "--size",
        "65536",
        "--records",
        "32",
    ]);
    let found = races(&t);
    assert!(!found.is_empty(), "no pipe-interleave finding");
    let ino = t.stdout().split_whitespace().nth(1).unwrap().to_string();
    for r in &found {
        assert_eq!(r["kind"], "pipe-interleave");
        assert_eq!(r["channel"], format!("pipe:[{ino}]"));
        let pids: BTreeSet<u64> = r["accesses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["pid"].as_u64().unwrap())
            .collect();
        assert_eq!(pids.len(), 2);
    }
    let again = analyzed(&t.lines);
    assert!(again.iter().all(|r| r["kind"] == "pipe-interleave") && !again.is_empty());
    assert_schema(&t.lines);
}

#[test]
fn pipe_writers_of_512_byte_records_do_not() {
    assert_clean(&[
        "--",
        workload(),
        "pipe-writers",
        "--writers",
        "3",
        "--size",
        "512",
        "--records",
        "2000",
    ]);
}

#[test]
fn record_fail_on_race_exits_3_only_when_a_race_was_found() {
    require_root();
    let run = |sync: &'static str| {
        Command::new(ipcwatch())
            .args(["record", "-o", "/dev/null", "--fail-on-race"])
            .args(counter_for("anon", sync, "3"))
            .output()
            .unwrap()
    };
    let racy = run("none");
    assert_eq!(
        racy.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&racy.stderr)
    );
    let clean = run("mutex");
    assert_eq!(
        clean.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );
}

/// `record --deep` of the counter taking `sync` turns for 2 s: its trace
/// and the pids of the parent and the child.
fn deep_counter(sync: &'static str) -> (Trace, u64, u64) {
    require_root();
    let mut args = vec!["--deep"];
    args.extend(counter_for("anon", sync, "2"));
    let t = record(&args);
    let fork = t
        .of_type("process")
        .find(|l| l["event"] == "fork")
        .expect("the workload forks");
    let (child, parent) = (
        fork["pid"].as_u64().unwrap(),
        fork["ppid"].as_u64().unwrap(),
    );
    // Both processes' writes were sampled: the analysis had both to order.
    for pid in [parent, child] {
        assert!(
            t.of_type("write_sample").any(|w| w["pid"] == pid),
            "no write sampled for {pid}"
        );
    }
    (t, parent, child)
}

#[test]
fn deep_mode_flags_writes_that_nothing_orders() {
    let (t, parent, child) = deep_counter("none");
    let hb: Vec<&Value> = races(&t)
        .into_iter()
        .filter(|r| r["evidence"] == "happens-before")
        .collect();
    assert!(!hb.is_empty(), "no happens-before finding");
    let pids: BTreeSet<u64> = hb[0]["accesses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(pids, BTreeSet::from([parent, child]));
    assert_schema(&t.lines);
}

#[test]
fn deep_mode_orders_a_childs_writes_before_its_parents_wait() {
    // The child writes for 1 s and exits; the parent waits for it, then
    // writes for 1 s. No lock, but exit -> wait orders the two.
    let (t, parent, child) = deep_counter("handoff");
    let wait = t
        .of_type("process")
        .find(|l| l["event"] == "wait")
        .expect("a wait line");
    assert_eq!(wait["pid"].as_u64(), Some(parent));
    assert_eq!(wait["child"].as_u64(), Some(child));
    assert_eq!(wait["exit_code"], 0);
    let found = races(&t);
    assert!(found.is_empty(), "false positive: {found:?}");
    assert!(analyzed(&t.lines).is_empty());
    assert_schema(&t.lines);
}
