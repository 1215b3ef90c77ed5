//! The race detector's precision on real synchronization (issue 19, item
//! 4): processes that write shared words concurrently but correctly must
//! never be flagged. A quiet detector proves nothing if it armed nothing,
//! so each test also checks, in the summary's `detector.words`, that words
//! of the workload's region were armed and which processes wrote them.
//!
//! Each workload checks its own result (no lost update, no torn read, no
//! foreign write) and exits non-zero otherwise, which `record` turns into
//! a failure.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::Value;

const SECS: &str = "4";

/// The shared regions the trace saw created.
fn regions(t: &Trace) -> BTreeSet<String> {
    t.of_type("region")
        .filter(|r| r["event"] == "created")
        .filter_map(|r| r["region"].as_str().map(str::to_string))
        .collect()
}

/// The armed words of the summary's `detector` that lie in one of the
/// trace's regions.
fn armed_words(t: &Trace) -> Vec<Value> {
    let det = &t.summary()["detector"];
    assert!(
        det.is_object(),
        "the summary has no `detector` object: {}",
        t.summary()
    );
    let ours = regions(t);
    assert!(!ours.is_empty(), "the trace shows no shared region");
    det["words"]
        .as_array()
        .unwrap_or_else(|| panic!("detector.words is not a list: {det}"))
        .iter()
        .filter(|w| w["region"].as_str().is_some_and(|r| ours.contains(r)))
        .cloned()
        .collect()
}

fn writers(word: &Value) -> BTreeSet<u64> {
    word["writers"]
        .as_array()
        .unwrap_or_else(|| panic!("no writers list in {word}"))
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect()
}

/// Record `-- ARGS` for a few seconds: no race line, `analyze` agrees, and
/// a word of the workload's region was armed and written by at least
/// `min_writers` processes while armed. Returns the trace and the armed
/// words.
fn assert_precise(args: &[&str], min_writers: usize) -> (Trace, Vec<Value>) {
    require_root();
    let mut all = vec!["--", workload()];
    all.extend_from_slice(args);
    let t = record(&all);
    let found: Vec<&Value> = t.of_type("race").collect();
    assert!(
        found.is_empty(),
        "false positive on `{}`: {found:#?}",
        args.join(" ")
    );
    assert_schema(&t.lines);
    let words = armed_words(&t);
    assert!(
        words.iter().any(|w| writers(w).len() >= min_writers),
        "no word of {:?} was armed with {min_writers} writer(s) seen; the detector's words: {}",
        regions(&t),
        t.summary()["detector"]["words"]
    );
    (t, words)
}

/// `counter --memory anon --sync SYNC --threads THREADS`.
fn counter<'a>(sync: &'a str, threads: &'a str) -> Vec<&'a str> {
    vec![
        "counter",
        "--memory",
        "anon",
        "--sync",
        sync,
        "--threads",
        threads,
        "--secs",
        SECS,
    ]
}

#[test]
fn a_glibc_process_shared_spinlock_is_not_a_race() {
    // The lock word (offset 0) takes `lock decl` to lock and a plain
    // `mov` to unlock; both processes write it.
    let (_, words) = assert_precise(&counter("spin", "1"), 2);
    assert!(
        words.iter().any(|w| w["offset"].as_u64() == Some(0)),
        "the lock word was never armed: {words:?}"
    );
}

#[test]
fn a_contended_mutex_with_four_threads_per_process_is_not_a_race() {
    assert_precise(&counter("mutex", "4"), 2);
}

#[test]
fn a_contended_rwlock_with_four_threads_per_process_is_not_a_race() {
    assert_precise(&counter("rwlock", "4"), 2);
}

#[test]
fn a_lock_free_cas_stack_is_not_a_race() {
    assert_precise(&["cas-queue", "--procs", "3", "--secs", SECS], 2);
}

#[test]
fn a_seqlock_with_one_writer_is_not_a_race() {
    let (t, words) = assert_precise(&["seqlock", "--readers", "2", "--secs", SECS], 1);
    // The readers never write: only the writer (the parent) was seen.
    let writer: u64 = t
        .stdout()
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.split(',').next()?.parse().ok())
        .expect("seqlock <pids> ... on stdout");
    for w in &words {
        assert_eq!(writers(w), BTreeSet::from([writer]), "{w}");
    }
}

#[test]
fn per_process_slots_in_one_page_are_not_a_race() {
    let (t, words) = assert_precise(&["slots", "--procs", "4", "--secs", SECS], 1);
    let pids: Vec<u64> = t
        .stdout()
        .split_whitespace()
        .nth(1)
        .expect("slots <pids> ... on stdout")
        .split(',')
        .map(|p| p.parse().unwrap())
        .collect();
    // Slot i (offset 8 i) is written by process i alone.
    for w in &words {
        let off = w["offset"].as_u64().unwrap();
        let owner = *pids
            .get((off / 8) as usize)
            .unwrap_or_else(|| panic!("armed word at {off} is no process's slot: {w}"));
        assert!(
            writers(w).is_subset(&BTreeSet::from([owner])),
            "slot {off} written by others than {owner}: {w}"
        );
    }
}
