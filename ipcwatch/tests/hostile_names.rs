//! Root integration test (issue 20): traced processes whose names attack
//! whoever reads ipcwatch's output. One process names itself with escape
//! sequences that set the terminal's title and clear the screen, another
//! takes the name `systemd`; they talk through FIFOs named with quotes, a
//! newline, an escape sequence and a byte that is not UTF-8, and at the end
//! of a 4 KiB path, through a queue whose name has a bidirectional
//! override, and race on shared memory (a finding, when the detector
//! catches one, is checked like every other line: collisions are caught
//! by sampling, so the test does not require one).
//!
//! Every human output (record's summary and warnings, analyze's text,
//! graph's DOT rendered by Graphviz) must hold no raw control character;
//! the JSON outputs keep the names exactly.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::*;
use ipcwatch::text::has_control;
use serde_json::Value;

const EVIL: &str = "\x1b]0;PWNED\x07\x1b[2J";
const QUEUE: &str = "mq:/ipcwatch-names-\x1b[2J\u{202e}q";

/// No byte a terminal acts on, apart from the line ends (and tabs) that
/// are the output's own.
fn assert_clean(what: &str, bytes: &[u8]) {
    let text = std::str::from_utf8(bytes).unwrap_or_else(|e| panic!("{what}: not UTF-8: {e}"));
    let body: String = text.chars().filter(|c| *c != '\n' && *c != '\t').collect();
    assert!(
        !has_control(&body),
        "{what} holds a raw control character:\n{text}"
    );
}

fn run(args: &[&str]) -> std::process::Output {
    let o = Command::new(ipcwatch()).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "ipcwatch {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

#[test]
fn hostile_names_never_reach_a_terminal_raw() {
    require_root();
    let dir = temp_dir();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let trace_path = dir.path().join("trace.ndjson");
    let o = Command::new(ipcwatch())
        .arg("record")
        .arg("-o")
        .arg(&trace_path)
        .args(["--", workload(), "hostile-names", "--secs", "3", "--dir"])
        .arg(&work)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "record: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // record's summary and warnings, on standard error.
    assert_clean("record's standard error", &o.stderr);
    let line = String::from_utf8_lossy(&o.stdout);
    let w: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(w.first(), Some(&"names"), "{line}");
    let (evil, spoof): (u32, u32) = (w[1].parse().unwrap(), w[2].parse().unwrap());
    let lines = parse(&trace_path);

    // The trace keeps every name exactly.
    let comms = |pid: u32| -> BTreeSet<String> {
        lines
            .iter()
            .filter(|l| l["pid"] == pid && l["comm"].is_string())
            .map(|l| l["comm"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(comms(evil).contains(EVIL), "{:?}", comms(evil));
    assert!(comms(spoof).contains("systemd"), "{:?}", comms(spoof));
    let opens: Vec<&Value> = lines
        .iter()
        .filter(|l| l["type"] == "channel" && l["event"] == "open" && l["kind"] == "fifo")
        .collect();
    let paths: BTreeSet<&str> = opens.iter().filter_map(|l| l["path"].as_str()).collect();
    // Bytes that are not UTF-8 are the one thing a JSON string cannot
    // carry: the decoder replaces them with U+FFFD.
    let short = format!("{}/q\"uote\nline\x1b[2J\u{fffd}", work.display());
    assert!(paths.contains(short.as_str()), "{paths:?}");
    let long = paths
        .iter()
        .find(|p| p.contains("/aaaaaaaaaa"))
        .unwrap_or_else(|| panic!("no open of the long FIFO in {paths:?}"));
    assert!(long.starts_with(&format!("{}/", work.display())), "{long}");
    // Both FIFOs moved 5 bytes each way; the queue one message.
    let fifo_channels: BTreeSet<&str> =
        opens.iter().filter_map(|l| l["channel"].as_str()).collect();
    assert_eq!(fifo_channels.len(), 2, "{fifo_channels:?}");
    let io = |ch: &str, op: &str, pid: u32| -> u64 {
        lines
            .iter()
            .filter(|l| l["type"] == "io" && l["channel"] == ch && l["op"] == op && l["pid"] == pid)
            .map(|l| l["bytes"].as_u64().unwrap())
            .sum()
    };
    for ch in &fifo_channels {
        assert_eq!(io(ch, "write", evil), 5, "{ch}");
        assert_eq!(io(ch, "read", spoof), 5, "{ch}");
    }
    assert_eq!(io(QUEUE, "write", evil), 5);
    assert_eq!(io(QUEUE, "read", spoof), 5);
    let trace = trace_path.to_str().unwrap();
    // analyze, as text: escaped. (Processes are listed with the name they
    // had when first seen, before they renamed themselves; a race finding,
    // when the detector catches one between them, names them as they were
    // at the writes, and is checked by assert_clean like the rest.)
    let text = run(&["analyze", trace]).stdout;
    assert_clean("analyze's text", &text);
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains("mq:/ipcwatch-names-\\x1b[2J\\u{202e}q"),
        "{text}"
    );
    assert!(text.contains(&format!("[{evil}] -> ")), "{text}");
    // analyze, as JSON: exact.
    let json: Value = serde_json::from_slice(&run(&["analyze", "--format", "json", trace]).stdout)
        .expect("analyze's JSON");
    let channels: BTreeSet<&str> = json["channels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["channel"].as_str())
        .collect();
    assert!(channels.contains(QUEUE), "{channels:?}");
    // graph: DOT with escaped labels, which Graphviz renders; JSON exact.
    let dot = run(&["graph", "--input", trace]).stdout;
    assert_clean("graph's DOT", &dot);
    let dot_text = String::from_utf8(dot.clone()).unwrap();
    assert!(
        dot_text.contains(&format!(
            "p{evil} -> p{spoof} [label=\"mq mq:/ipcwatch-names-\\\\x1b[2J\\\\u{{202e}}q\\n5 B in 1 msgs\"]"
        )),
        "{dot_text}"
    );
    assert_clean("the SVG", &render_svg(&dot));
    let g: Value =
        serde_json::from_slice(&run(&["graph", "--input", trace, "--format", "json"]).stdout)
            .expect("graph's JSON");
    let edges: BTreeSet<&str> = g["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["channel"].as_str())
        .collect();
    assert!(edges.contains(QUEUE), "{edges:?}");
}
