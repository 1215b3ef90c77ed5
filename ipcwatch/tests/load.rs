//! Load: many live channels held by many processes are all recorded, and
//! when a tiny ring buffer overflows every lost event is counted, the
//! same way in the summary, the `lost` lines and the sequence gaps.

mod common;

use std::collections::HashSet;

use common::*;

/// Channels that the traced processes created (pipe, socketpair).
fn created(t: &Trace) -> HashSet<String> {
    t.of_type("channel")
        .filter(|l| l["event"] == "create" || l["event"] == "socket")
        .map(|l| l["channel"].as_str().unwrap().to_string())
        .collect()
}

/// `key=value` from the workload's line that starts with `prefix`.
fn field(out: &str, prefix: &str, key: &str) -> u64 {
    let line = out
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in {out:?}"));
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
        .parse()
        .unwrap()
}

#[test]
fn many_channels_held_by_many_processes_are_all_recorded() {
    require_root();
    let t = record(&[
        "--",
        workload(),
        "many-channels",
        "--procs",
        "50",
        "--channels",
        "500",
        "--hold",
        "1",
        "--rate",
        "200",
    ]);
    let out = t.stdout();
    assert!(
        out.contains("many-channels ready procs=50 channels=500"),
        "{out}"
    );
    let s = t.summary();
    assert_eq!(s["dropped"], 0);
    assert_eq!(s["seq_gaps"], 0);
    // 250 pipes and 250 socketpairs, each created, written and read.
    let created = created(&t);
    let pipes = created.iter().filter(|c| c.starts_with("pipe:")).count();
    let unix = created.iter().filter(|c| c.starts_with("unix:")).count();
    // Besides the 500: the stop, ready and done pipes.
    assert_eq!(pipes, 250 + 3, "{pipes} pipes");
    assert_eq!(unix, 250, "{unix} socketpairs");
    let summary_channels = s["channels"].as_array().unwrap();
    assert!(summary_channels.len() >= 500, "{}", summary_channels.len());
    for c in summary_channels
        .iter()
        .filter(|c| created.contains(c["channel"].as_str().unwrap()))
        .filter(|c| c["channel"].as_str().unwrap().starts_with("unix:"))
    {
        assert!(c["writes"].as_u64().unwrap() >= 1, "{c}");
        assert!(c["reads"].as_u64().unwrap() >= 1, "{c}");
    }
    let forks: HashSet<u64> = t
        .of_type("process")
        .filter(|l| l["event"] == "fork")
        .map(|l| l["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(forks.len(), 50);
    let exits = t
        .of_type("process")
        .filter(|l| l["event"] == "exit" && forks.contains(&l["pid"].as_u64().unwrap()))
        .count();
    assert_eq!(exits, 50, "every process exits");
    assert_schema(&t.lines);
}

#[test]
fn a_tiny_ring_buffer_loses_events_and_counts_every_one() {
    require_root();
    let procs = 2;
    let t = record(&[
        "--ring-size",
        "4096",
        "--",
        workload(),
        "paced",
        "--rate",
        "400000",
        "--secs",
        "1",
        "--procs",
        "2",
    ]);
    let generated = field(&t.stdout(), "paced ", "io_events");
    let s = t.summary();
    let dropped = s["dropped"].as_u64().unwrap();
    assert!(dropped > 0, "a 4096-byte ring buffer dropped nothing");
    // The kernel's counter, the lost lines and the sequence numbers agree.
    let lost: Vec<_> = t.of_type("lost").collect();
    let lost_sum: u64 = lost.iter().map(|l| l["count"].as_u64().unwrap()).sum();
    assert_eq!(lost_sum, dropped);
    assert_eq!(lost.last().unwrap()["total"], dropped);
    assert_eq!(s["seq_gaps"], dropped);
    // Set-up and exits happen on a drained ring (below): every loss is an
    // io event, and counted as one.
    assert_eq!(
        s["dropped_by_kind"],
        serde_json::json!({ "io": dropped }),
        "{s}"
    );
    // Set-up and exits happen on a drained ring, so every loss is one of
    // the generator's io events: what it made is what was recorded plus
    // what was dropped.
    let forks = t
        .of_type("process")
        .filter(|l| l["event"] == "fork")
        .count();
    assert_eq!(forks, 2 * procs);
    let created = created(&t);
    let recorded = t
        .of_type("io")
        .filter(|l| created.contains(l["channel"].as_str().unwrap()))
        .count() as u64;
    assert_eq!(
        recorded + dropped,
        generated,
        "recorded {recorded} + dropped {dropped} != generated {generated}"
    );
    assert_schema(&t.lines);
}
