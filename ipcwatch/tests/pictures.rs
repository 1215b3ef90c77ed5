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

use common::{assert_schema, ipcwatch, parse, render_svg, temp_dir};
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
    let svg = String::from_utf8(render_svg(dot.as_bytes())).unwrap();
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

/// The Python of the venv `cargo xtask setup` makes for this test
/// (xtask/src/setup.rs: ensure_perfetto_python), with the `perfetto`
/// package of PyPI: Perfetto's official trace proto.
fn perfetto_python() -> std::path::PathBuf {
    let home = std::env::var_os("HOME").expect("HOME is set");
    std::path::PathBuf::from(home).join(".cache/ipcwatch/perfetto-venv/bin/python3")
}

/// Decodes a Perfetto trace with the official descriptors and prints its
/// tracks and events as JSON.
const DECODE: &str = r#"
import json, sys
from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as p
t = p.Trace()
t.ParseFromString(open(sys.argv[1], "rb").read())
tracks, events = [], []
for pk in t.packet:
    if pk.HasField("track_descriptor"):
        d = pk.track_descriptor
        tr = {"uuid": d.uuid, "parent": d.parent_uuid if d.HasField("parent_uuid") else None}
        if d.HasField("process"):
            tr["process"] = [d.process.pid, d.process.process_name]
        if d.HasField("thread"):
            tr["thread"] = [d.thread.pid, d.thread.tid, d.thread.thread_name]
        tracks.append(tr)
    if pk.HasField("track_event"):
        e = pk.track_event
        events.append({
            "ts": pk.timestamp,
            "type": p.TrackEvent.Type.Name(e.type),
            "track": e.track_uuid,
            "name": e.name,
            "cat": list(e.categories),
            "flows": list(e.flow_ids),
            "ends": list(e.terminating_flow_ids),
        })
print(json.dumps({"tracks": tracks, "events": events}))
"#;

/// The venv's Python (it must exist), and the known trace exported to
/// Perfetto's format in `dir`.
fn python_and_export(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let python = perfetto_python();
    assert!(
        python.exists(),
        "{} is missing: run `cargo xtask setup` (it installs Perfetto's Python package in a venv)",
        python.display()
    );
    let out = dir.join("demo.perfetto-trace");
    let run = Command::new(ipcwatch())
        .args(["export", "--format", "perfetto", TRACE, "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    (python, out)
}

#[test]
fn perfetto_export_decodes_with_the_official_proto() {
    let dir = temp_dir();
    let (python, out) = python_and_export(dir.path());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let script = dir.path().join("decode.py");
    std::fs::write(&script, DECODE).unwrap();
    let decoded = Command::new(&python)
        .arg(&script)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        decoded.status.success(),
        "decoding with perfetto_trace_pb2: {}",
        String::from_utf8_lossy(&decoded.stderr)
    );
    let v: Value = serde_json::from_slice(&decoded.stdout).unwrap();

    // What the trace holds, read from its lines.
    let lines = parse(std::path::Path::new(TRACE));
    let of = |ty: &'static str| lines.iter().filter(move |l| l["type"] == ty);
    let sync_slices = of("sync")
        .filter(|l| l["event"] == "wait" || l["event"] == "acquire")
        .count();
    let mut names: std::collections::BTreeMap<u64, String> = Default::default();
    for l in &lines {
        if let (Some(pid), Some(comm)) = (l["pid"].as_u64(), l["comm"].as_str())
            && l["tid"] == l["pid"]
        {
            names.insert(pid, comm.to_string());
        }
    }

    // A track per process, named by its latest name; one per thread, under it.
    let tracks = v["tracks"].as_array().unwrap();
    let mut uuid_of_thread = std::collections::BTreeMap::new();
    let mut uuid_of_process = std::collections::BTreeMap::new();
    for t in tracks {
        if let Some(p) = t["process"].as_array() {
            let pid = p[0].as_u64().unwrap();
            assert_eq!(p[1].as_str(), names.get(&pid).map(String::as_str), "{t}");
            uuid_of_process.insert(pid, t["uuid"].as_u64().unwrap());
        }
    }
    for t in tracks {
        if let Some(th) = t["thread"].as_array() {
            let (pid, tid) = (th[0].as_u64().unwrap(), th[1].as_u64().unwrap());
            assert_eq!(
                t["parent"].as_u64(),
                uuid_of_process.get(&pid).copied(),
                "{t}"
            );
            uuid_of_thread.insert(t["uuid"].as_u64().unwrap(), (pid, tid));
        }
    }
    let pids: BTreeSet<u64> = uuid_of_process.keys().copied().collect();
    for pid in 12427..=12438 {
        assert!(pids.contains(&pid), "no track for {pid}: {pids:?}");
    }

    let events = v["events"].as_array().unwrap();
    let begins: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "TYPE_SLICE_BEGIN")
        .collect();
    let ends = events
        .iter()
        .filter(|e| e["type"] == "TYPE_SLICE_END")
        .count();
    // A slice per io line and per futex wait or lock acquire, closed.
    assert_eq!(begins.len(), of("io").count() + sync_slices);
    assert_eq!(ends, begins.len());
    for io in of("io") {
        let name = format!(
            "{} {}",
            io["op"].as_str().unwrap(),
            io["channel"].as_str().unwrap()
        );
        assert!(
            begins
                .iter()
                .any(|b| b["name"] == name.as_str() && b["ts"] == io["ts_ns"]),
            "no slice {name} at {}",
            io["ts_ns"]
        );
    }
    // Flows: each write starts one; it ends on a read of the same channel
    // by another process (pipes, queues) or the other end (sockets).
    let mut started = std::collections::BTreeMap::new();
    for b in &begins {
        for f in b["flows"].as_array().unwrap() {
            assert!(b["name"].as_str().unwrap().starts_with("write "), "{b}");
            assert!(
                started.insert(f.as_u64().unwrap(), *b).is_none(),
                "flow {f} twice"
            );
        }
    }
    let mut ended = 0;
    for b in &begins {
        for f in b["ends"].as_array().unwrap() {
            let w = started[&f.as_u64().unwrap()];
            let channel = |e: &Value| {
                e["name"]
                    .as_str()
                    .unwrap()
                    .split_once(' ')
                    .unwrap()
                    .1
                    .to_string()
            };
            assert!(b["name"].as_str().unwrap().starts_with("read "), "{b}");
            assert_eq!(channel(w), channel(b));
            let (wp, rp) = (
                uuid_of_thread[&w["track"].as_u64().unwrap()].0,
                uuid_of_thread[&b["track"].as_u64().unwrap()].0,
            );
            assert_ne!(wp, rp, "{w} -> {b}");
            assert!(w["ts"].as_u64() <= b["ts"].as_u64(), "{w} -> {b}");
            ended += 1;
        }
    }
    assert_eq!(
        started.len(),
        of("io").filter(|l| l["op"] == "write").count()
    );
    // The pipeline's reads each take whole 512-byte writes: every pipe read
    // ends one flow.
    let pipe_reads = of("io")
        .filter(|l| l["kind"] == "pipe" && l["op"] == "read")
        .count();
    assert!(
        ended >= pipe_reads && pipe_reads > 0,
        "{ended} flows ended, {pipe_reads} pipe reads"
    );

    // Instants: each write fault, and the race on both writers' tracks,
    // linked by one flow.
    let instants: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "TYPE_INSTANT")
        .collect();
    let faults = instants.iter().filter(|e| e["cat"][0] == "fault").count();
    assert_eq!(faults, of("fault").count());
    let races: Vec<&&Value> = instants.iter().filter(|e| e["cat"][0] == "race").collect();
    assert_eq!(races.len(), 2, "{races:?}");
    let on: BTreeSet<u64> = races
        .iter()
        .map(|r| {
            assert_eq!(r["name"], format!("race {REGION}+0x0").as_str());
            uuid_of_thread[&r["track"].as_u64().unwrap()].1
        })
        .collect();
    assert_eq!(on, RACERS.into_iter().collect());
    assert_eq!(races[0]["flows"], races[1]["ends"]);
    assert_eq!(races[0]["flows"].as_array().unwrap().len(), 1);
}

/// Live: `graph -- CMD` on the demo's workloads draws the shared region
/// with every process that mapped it, and the race between the two
/// racers (the detector runs as for `record`), besides the pipes.
#[test]
fn graph_of_the_demo_live_draws_its_region_mappers_and_race() {
    common::require_root();
    let g = Command::new(ipcwatch())
        .args(["graph", "--format", "json", "--", ipcwatch()])
        .args(["demo", "--workloads-only", "--duration", "15"])
        .output()
        .unwrap();
    assert!(g.status.success(), "{}", String::from_utf8_lossy(&g.stderr));
    let g: Value = serde_json::from_slice(&g.stdout).expect("only JSON on stdout");
    let comm_of = |pid: &Value| -> String {
        g["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| &n["pid"] == pid)
            .map(|n| n["comm"].as_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let edges: BTreeSet<(String, String, String)> = g["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                comm_of(&e["from"]),
                comm_of(&e["to"]),
                e["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (from, to, kind) in [
        ("demo-src", "demo-filter", "pipe"),
        ("demo-filter", "demo-sink", "pipe"),
        ("demo-mq-send", "demo-mq-recv", "mq"),
    ] {
        assert!(
            edges.contains(&(from.into(), to.into(), kind.into())),
            "{from} -> {to} ({kind}) in {edges:?}"
        );
    }
    // The counters' region: the demo and its four counter processes map it
    // writable.
    let region = g["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "anon")
        .unwrap_or_else(|| panic!("no anon region in {g}"));
    let id = region["region"].as_str().unwrap();
    let mut mappers: Vec<String> = g["mappings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["region"] == id && m["writable"] == true)
        .map(|m| comm_of(&m["pid"]))
        .collect();
    mappers.sort();
    assert_eq!(
        mappers,
        [
            "demo",
            "demo-locked",
            "demo-locked",
            "demo-racer",
            "demo-racer"
        ],
        "{g}"
    );
    // The race, between the two racers, on that region.
    let races = g["races"].as_array().unwrap();
    let race = races
        .iter()
        .find(|r| r["region"] == id)
        .unwrap_or_else(|| panic!("no race on {id}: {g}"));
    assert_ne!(race["a"]["pid"], race["b"]["pid"]);
    for side in [&race["a"], &race["b"]] {
        assert_eq!(comm_of(&side["pid"]), "demo-racer", "{race}");
    }
    // Both write from the same line (the function named is the innermost
    // frame the symbolizer found: the demo's bump, or the write_volatile
    // inlined into it).
    assert_eq!(race["a"]["at"], race["b"]["at"], "{race}");
    assert!(race["a"]["at"].as_str().unwrap().contains(".rs:"), "{race}");
    assert_eq!(
        region["races"].as_u64(),
        Some(races.iter().filter(|r| r["region"] == id).count() as u64)
    );
}

/// `export -o` writes like `record -o`: never through a symbolic link, and
/// a bad trace leaves no file.
#[test]
fn export_refuses_a_symbolic_link_and_a_bad_trace() {
    let dir = temp_dir();
    let target = dir.path().join("target");
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let out = Command::new(ipcwatch())
        .args(["export", "--format", "perfetto", TRACE, "-o"])
        .arg(&link)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("it is a symbolic link, and ipcwatch never writes through one"),
        "{err}"
    );
    assert!(!target.exists());
    let bad = dir.path().join("bad.ndjson");
    std::fs::write(&bad, "{\"type\":\"io\"}\n").unwrap();
    let out_file = dir.path().join("out.perfetto-trace");
    let out = Command::new(ipcwatch())
        .args(["export"])
        .arg(&bad)
        .arg("-o")
        .arg(&out_file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 1"), "{err}");
    assert!(!out_file.exists());
}

/// docs/img/perfetto2svg.py (the README's timeline) draws the known
/// trace's export: well-formed SVG, both racing writes marked and linked
/// by the race's red flow, a row per thread it shows.
#[test]
fn the_timeline_picture_draws_the_race_from_the_export() {
    let dir = temp_dir();
    let (python, out) = python_and_export(dir.path());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/img/perfetto2svg.py");
    let drawn = Command::new(&python)
        .args([script, out.to_str().unwrap(), "--window-ms", "40"])
        .output()
        .unwrap();
    assert!(
        drawn.status.success(),
        "{}",
        String::from_utf8_lossy(&drawn.stderr)
    );
    let svg = String::from_utf8(drawn.stdout).unwrap();
    let file = dir.path().join("timeline.svg");
    std::fs::write(&file, &svg).unwrap();
    let parsed = Command::new(&python)
        .args([
            "-c",
            "import sys, xml.etree.ElementTree as E; E.parse(sys.argv[1])",
        ])
        .arg(&file)
        .status()
        .unwrap();
    assert!(parsed.success(), "not well-formed:\n{svg}");
    // The known trace's race: anon region, offset 0, two demo-racers.
    let lines = parse(std::path::Path::new(TRACE));
    let race = lines.iter().find(|l| l["type"] == "race").unwrap();
    let label = format!("race {}+0x0", race["region"].as_str().unwrap());
    assert_eq!(svg.matches(&format!(">{label}</text>")).count(), 2, "{svg}");
    assert_eq!(svg.matches("marker-end=\"url(#red)\"").count(), 1, "{svg}");
    for a in race["accesses"].as_array().unwrap() {
        let row = format!(">demo-racer {}/{}</text>", a["pid"], a["tid"]);
        assert!(svg.contains(&row), "no row {row}");
    }
}
