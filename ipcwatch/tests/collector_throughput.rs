//! `ipcwatch-workload collector-throughput` (no root): synthetic kernel
//! events through the decoder, the collector and the NDJSON writer. The
//! command checks its own result; here the file it wrote is read back.

mod common;

use std::process::Command;

use common::*;

fn field<'a>(stdout: &'a str, name: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no `{name}` in {stdout}"))
}

#[test]
fn the_benchmark_writes_every_line_it_reports() {
    let dir = temp_dir();
    let out = dir.path().join("synth.ndjson");
    let o = Command::new(workload())
        .args(["collector-throughput", "--events", "20000"])
        .args(["--output", out.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(field(&stdout, "events"), "20000");
    assert!(field(&stdout, "collector events/s").parse::<f64>().unwrap() > 0.0);
    assert!(field(&stdout, "collector ns/event").parse::<f64>().unwrap() > 0.0);
    let lines = parse(&out);
    assert_eq!(
        lines.len(),
        field(&stdout, "ndjson lines").parse::<usize>().unwrap()
    );
    assert_eq!(
        std::fs::metadata(&out).unwrap().len(),
        field(&stdout, "ndjson bytes").parse::<u64>().unwrap()
    );
    assert_eq!(lines[0]["type"], "header");
    let summary = lines.last().unwrap();
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["events"], 20000);
    assert_eq!(summary["seq_gaps"], 0);
    let ios = lines.iter().filter(|l| l["type"] == "io").count();
    // Mostly IO (the exact counts are checked by the command itself).
    assert!(ios > 15_000, "{ios} io lines");
    assert_schema(&lines);
}

#[test]
fn zero_events_is_an_error() {
    let o = Command::new(workload())
        .args(["collector-throughput", "--events", "0"])
        .output()
        .unwrap();
    assert!(!o.status.success());
}
