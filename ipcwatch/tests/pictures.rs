//! The pictures of a trace: `graph` (regions, mappers and races as well as
//! channels) and `analyze`'s list of who mapped each region, on a known
//! trace. No root needed.
//!
//! tests/data/demo-race.ndjson is `ipcwatch record -- ipcwatch demo
//! --workloads-only --duration 10`, cut down to its first 240 `io` and 12
//! `sync` lines: the demo's pipeline, socket pair and queue, its shared
//! counters (anon:1:169, mapped by the demo and its four counter
//! processes) and the race the detector found on the unsynchronized one.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{assert_schema, ipcwatch, parse, temp_dir};
use serde_json::Value;

const TRACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/demo-race.ndjson");
const REGION: &str = "anon:1:169";
const RACERS: [u64; 2] = [12435, 12437];
const MAPPERS: [u64; 5] = [12427, 12435, 12436, 12437, 12438];

fn run(args: &[&str]) -> Vec<u8> {
    let out = Command::new(ipcwatch()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ipcwatch {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn the_known_trace_is_valid() {
    assert_schema(&parse(std::path::Path::new(TRACE)));
}

#[test]
fn graph_json_holds_channels_regions_mappers_and_the_race() {
    let g: Value = serde_json::from_slice(&run(&["graph", "--format", "json", "--input", TRACE]))
        .expect("graph's JSON");
    let nodes: BTreeSet<(u64, &str)> = g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["pid"].as_u64().unwrap(), n["comm"].as_str().unwrap()))
        .collect();
    // Every process under its latest name (they rename themselves).
    for (pid, comm) in [
        (12427, "demo"),
        (12428, "demo-src"),
        (12429, "demo-filter"),
        (12430, "demo-sink"),
        (12433, "demo-mq-send"),
        (12434, "demo-mq-recv"),
        (12435, "demo-racer"),
        (12436, "demo-locked"),
        (12437, "demo-racer"),
        (12438, "demo-locked"),
    ] {
        assert!(nodes.contains(&(pid, comm)), "{pid} {comm} in {nodes:?}");
    }
    // Channels keep their edges.
    let edges: BTreeSet<(u64, u64, &str)> = g["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["from"].as_u64().unwrap(),
                e["to"].as_u64().unwrap(),
                e["kind"].as_str().unwrap(),
            )
        })
        .collect();
    for e in [
        (12428, 12429, "pipe"),
        (12429, 12430, "pipe"),
        (12431, 12432, "unix"),
        (12433, 12434, "mq"),
    ] {
        assert!(edges.contains(&e), "{e:?} in {edges:?}");
    }
    // The region is a node, with one race on it.
    let regions = g["regions"].as_array().unwrap();
    assert_eq!(regions.len(), 1, "{regions:?}");
    assert_eq!(regions[0]["region"], REGION);
    assert_eq!(regions[0]["races"], 1);
    // An edge from every process that mapped it, though all have exited.
    let mapped: BTreeSet<(u64, bool)> = g["mappings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["region"], REGION);
            assert!(m["unmapped_ns"].as_u64() > m["mapped_ns"].as_u64(), "{m}");
            (m["pid"].as_u64().unwrap(), m["writable"].as_bool().unwrap())
        })
        .collect();
    assert_eq!(mapped, MAPPERS.iter().map(|p| (*p, true)).collect());
    // The race: between its two writers, with region, offset and code.
    let races = g["races"].as_array().unwrap();
    assert_eq!(races.len(), 1, "{races:?}");
    let r = &races[0];
    assert_eq!(
        (r["region"].as_str(), r["offset"].as_u64()),
        (Some(REGION), Some(0))
    );
    let sides: BTreeSet<u64> = [&r["a"], &r["b"]]
        .iter()
        .map(|s| {
            assert_eq!(s["comm"], "demo-racer");
            assert_eq!(s["at"], "ipcwatch_demo_bump_unsynchronized (demo.rs:354)");
            s["pid"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(sides, RACERS.into_iter().collect());
}

#[test]
fn graph_dot_draws_the_same_and_graphviz_renders_it() {
    let dot = String::from_utf8(run(&["graph", "--input", TRACE])).unwrap();
    assert!(
        dot.contains("p12428 -> p12429 [label=\"pipe pipe:[210226]"),
        "{dot}"
    );
    assert!(dot.contains("r0 [shape=ellipse"), "{dot}");
    assert!(
        dot.contains(&format!("label=\"{REGION}\\n4096 B\\n1 race\"")),
        "{dot}"
    );
    for pid in MAPPERS {
        assert!(
            dot.contains(&format!("  p{pid} -> r0 [label=\"rw\"")),
            "mapping of {pid}: {dot}"
        );
    }
    let race = dot
        .lines()
        .find(|l| l.contains("color=red"))
        .unwrap_or_else(|| panic!("no red race edge:\n{dot}"));
    assert!(race.starts_with("  p12435 -> p12437 ["), "{race}");
    assert!(race.contains(&format!("RACE {REGION}+0x0")), "{race}");
    assert_eq!(
        race.matches("ipcwatch_demo_bump_unsynchronized (demo.rs:354)")
            .count(),
        2,
        "{race}"
    );
    let dir = temp_dir();
    let file = dir.path().join("g.dot");
    std::fs::write(&file, &dot).unwrap();
    let svg = Command::new("dot")
        .arg("-Tsvg")
        .arg(&file)
        .output()
        .expect("run Graphviz's dot (cargo xtask setup installs it)");
    assert!(
        svg.status.success() && svg.stderr.is_empty(),
        "dot -Tsvg: {}\n{dot}",
        String::from_utf8_lossy(&svg.stderr)
    );
    let svg = String::from_utf8(svg.stdout).unwrap();
    assert!(svg.contains("<svg") && svg.contains("RACE"), "{svg}");
}

#[test]
fn analyze_lists_every_mapper_with_its_times() {
    let text = String::from_utf8(run(&["analyze", TRACE])).unwrap();
    let region = text
        .lines()
        .find(|l| l.trim_start().starts_with(REGION))
        .unwrap_or_else(|| panic!("no {REGION} in\n{text}"));
    assert!(region.contains("mapped by 5 processes"), "{region}");
    assert!(!text.contains("mapped by {}"), "{text}");
    for pid in MAPPERS {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("[{pid}] rw  mapped at ")))
            .unwrap_or_else(|| panic!("no mapping of {pid} in\n{text}"));
        assert!(line.ends_with("(exit)"), "{line}");
    }
}
