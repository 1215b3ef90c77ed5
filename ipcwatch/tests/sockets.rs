//! Root integration tests: the real probes on socket and message-queue
//! workloads, asserting exact endpoints, bytes and message counts.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::*;

/// Words of the workload's line starting with `tag`.
fn fact<'a>(text: &'a str, tag: &str) -> Vec<&'a str> {
    text.lines()
        .find(|l| l.starts_with(&format!("{tag} ")))
        .unwrap_or_else(|| panic!("no `{tag}` line in {text:?}"))
        .split_whitespace()
        .collect()
}

/// The value after `key` in a workload line.
fn after(words: &[&str], key: &str) -> u64 {
    let i = words.iter().position(|w| *w == key).unwrap();
    words[i + 1].parse().unwrap()
}

fn io_lines<'a>(lines: &'a [Value], channel: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    lines
        .iter()
        .filter(move |l| l["type"] == "io" && l["channel"] == channel)
}

/// (bytes, count) of `op` io lines on `channel` by `pid`.
fn moved(lines: &[Value], channel: &str, op: &str, pid: u64) -> (u64, usize) {
    let v: Vec<u64> = io_lines(lines, channel)
        .filter(|l| l["op"] == op && l["pid"] == pid)
        .map(|l| l["bytes"].as_u64().unwrap())
        .collect();
    (v.iter().sum(), v.len())
}

/// The one channel id of `kind` whose io lines move data, among those
/// matching `pred`.
fn channel_of(lines: &[Value], kind: &str, pred: impl Fn(&str) -> bool) -> String {
    let ids: BTreeSet<String> = lines
        .iter()
        .filter(|l| l["type"] == "io" && l["kind"] == kind)
        .map(|l| l["channel"].as_str().unwrap().to_string())
        .filter(|c| pred(c))
        .collect();
    assert_eq!(ids.len(), 1, "{kind} channels: {ids:?}");
    ids.into_iter().next().unwrap()
}

fn summary_channel<'a>(t: &'a Trace, id: &str) -> &'a Value {
    t.summary()["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == id)
        .unwrap_or_else(|| panic!("{id} not in the summary"))
}

#[test]
fn done_when_socketpair_abstract_tcp_and_posix_queue_in_one_record() {
    require_root();
    let t = record(&["--", workload(), "channels-demo"]);
    let out = t.stdout();
    let l = &t.lines;

    // Socketpair: 7000 bytes, parent to child, one channel for both ends.
    let sp = fact(&out, "socketpair");
    let (parent, child) = (after(&sp, "parent"), after(&sp, "child"));
    let pair: Vec<&Value> = t
        .of_type("channel")
        .filter(|c| c["event"] == "socket" && c["syscall"] == "socketpair")
        .collect();
    assert_eq!(pair.len(), 2, "{pair:?}");
    let id = pair[0]["channel"].as_str().unwrap().to_string();
    assert_eq!(pair[1]["channel"], id.as_str());
    assert_eq!(pair[0]["peer_inode"], pair[1]["inode"]);
    assert_eq!(pair[0]["peer_fd"], pair[1]["fd"]);
    assert_eq!(pair[0]["peer_pid"], parent);
    assert_eq!(moved(l, &id, "write", parent), (7000, 1));
    assert_eq!(moved(l, &id, "read", child).0, 7000);
    assert_eq!(t.bytes(&id, "write"), t.bytes(&id, "read"));

    // Abstract unix socket: 3333 bytes, child to parent; both ends named.
    let ab = fact(&out, "abstract");
    let (name, child) = (ab[1].to_string(), after(&ab, "child"));
    let connect = t
        .of_type("channel")
        .find(|c| c["event"] == "connect" && c["remote"] == name.as_str())
        .expect("a connect line to the abstract name");
    assert_eq!(connect["pid"], child);
    assert_eq!(connect["peer_pid"], parent);
    let id = connect["channel"].as_str().unwrap().to_string();
    let accept = t
        .of_type("channel")
        .find(|c| c["event"] == "accept" && c["channel"] == id.as_str())
        .expect("an accept line on the same channel");
    assert_eq!(accept["pid"], parent);
    assert_eq!(accept["peer_pid"], child);
    assert_eq!(accept["peer_inode"], connect["inode"]);
    assert_eq!(moved(l, &id, "write", child).0, 3333);
    assert_eq!(moved(l, &id, "read", parent).0, 3333);
    assert!(
        t.of_type("channel")
            .any(|c| c["event"] == "bind" && c["local"] == name.as_str())
    );

    // TCP loopback: 5555 bytes, keyed by the 5-tuple, both ends resolved.
    let tcp = fact(&out, "tcp");
    let (port, child) = (after(&tcp, "port"), after(&tcp, "child"));
    let id = channel_of(l, "tcp", |_| true);
    assert!(id.contains(&format!("127.0.0.1:{port}")), "{id}");
    assert_eq!(moved(l, &id, "write", child), (5555, 1));
    assert_eq!(moved(l, &id, "read", parent).0, 5555);
    let accept = t
        .of_type("channel")
        .find(|c| c["event"] == "accept" && c["channel"] == id.as_str())
        .unwrap();
    assert_eq!(accept["peer_pid"], child);
    assert_eq!(accept["local"], format!("127.0.0.1:{port}"));
    let connect = t
        .of_type("channel")
        .find(|c| c["event"] == "connect" && c["channel"] == id.as_str())
        .unwrap();
    assert_eq!(connect["pid"], child);
    assert_eq!(connect["peer_pid"], parent);

    // POSIX queue: 5 x 100 bytes, child to parent, named by its name.
    let mq = fact(&out, "mq");
    let (qname, child) = (mq[1], after(&mq, "child"));
    let id = format!("mq:{qname}");
    assert_eq!(moved(l, &id, "write", child), (500, 5));
    assert_eq!(moved(l, &id, "read", parent), (500, 5));
    let prios: Vec<u64> = io_lines(l, &id)
        .filter(|x| x["op"] == "write")
        .map(|x| x["priority"].as_u64().unwrap())
        .collect();
    assert_eq!(prios, vec![0, 1, 2, 3, 4]);
    let open = t
        .of_type("channel")
        .find(|c| c["event"] == "open" && c["channel"] == id.as_str() && c["pid"] == parent)
        .unwrap();
    assert_eq!(open["attr"]["maxmsg"], 10);
    assert_eq!(open["attr"]["msgsize"], 128);
    assert!(
        t.of_type("channel")
            .any(|c| c["event"] == "unlink" && c["name"] == qname)
    );
    let notify: Vec<&Value> = t
        .of_type("channel")
        .filter(|c| c["event"] == "notify" && c["channel"] == id.as_str())
        .collect();
    assert_eq!(notify.len(), 2);
    assert_eq!(
        (&notify[0]["notify"], &notify[1]["notify"]),
        (&Value::from(true), &Value::from(false))
    );
    let getattr = t
        .of_type("channel")
        .find(|c| c["event"] == "control" && c["syscall"] == "mq_getsetattr")
        .expect("mq_getattr is mq_getsetattr");
    assert_eq!(getattr["channel"], id.as_str());
    assert_eq!(getattr["old_attr"]["maxmsg"], 10);
    assert_eq!(getattr["old_attr"]["curmsgs"], 0);
    // Both descriptors of the queue were closed (the child's at exit).
    assert!(
        t.of_type("channel")
            .any(|c| c["event"] == "close" && c["channel"] == id.as_str() && c["pid"] == parent)
    );
    let s = summary_channel(&t, &id);
    assert_eq!(
        (s["bytes_written"].as_u64(), s["reads"].as_u64()),
        (Some(500), Some(5))
    );
    assert_eq!(s["writers"], serde_json::json!([child]));
    assert_eq!(s["readers"], serde_json::json!([parent]));
    assert_eq!(t.summary()["dropped"], 0);
    assert_schema(&t.lines);

    // The graph of this trace draws the four channels.
    let dir = temp_dir();
    let trace = dir.path().join("t.ndjson");
    std::fs::write(
        &trace,
        t.lines
            .iter()
            .map(|v| v.to_string() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    let g = Command::new(ipcwatch())
        .args(["graph", "--format", "json", "--input"])
        .arg(&trace)
        .output()
        .unwrap();
    assert!(g.status.success(), "{}", String::from_utf8_lossy(&g.stderr));
    let g: Value = serde_json::from_slice(&g.stdout).unwrap();
    let edges: BTreeSet<(String, u64)> = g["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] != "pipe")
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        edges,
        BTreeSet::from([
            ("mq".to_string(), 500),
            ("tcp".to_string(), 5555),
            ("unix".to_string(), 3333),
            ("unix".to_string(), 7000)
        ])
    );
}

#[test]
fn graph_traces_a_command_and_writes_dot() {
    require_root();
    let dir = temp_dir();
    let out = dir.path().join("g.dot");
    let g = Command::new(ipcwatch())
        .args(["graph", "-o", out.to_str().unwrap(), "--kind", "unix", "--"])
        .args([workload(), "channels-demo"])
        .output()
        .unwrap();
    assert!(g.status.success(), "{}", String::from_utf8_lossy(&g.stderr));
    let dot = std::fs::read_to_string(&out).unwrap();
    assert!(dot.starts_with("digraph ipcwatch {"), "{dot}");
    assert!(dot.contains("7000 B in 1 msgs"), "{dot}");
    assert!(dot.contains("3333 B in 1 msgs"), "{dot}");
    // --kind unix: no other kind is drawn.
    assert!(!dot.contains("tcp:") && !dot.contains("mq:"), "{dot}");
    // To standard output, the command's own output stays out of the graph.
    let g = Command::new(ipcwatch())
        .args(["graph", "--format", "json", "--kind", "tcp", "--"])
        .args([workload(), "channels-demo"])
        .output()
        .unwrap();
    assert!(g.status.success(), "{}", String::from_utf8_lossy(&g.stderr));
    let g: Value = serde_json::from_slice(&g.stdout).expect("only JSON on stdout");
    let edges = g["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 1, "{g}");
    assert_eq!(
        (&edges[0]["kind"], &edges[0]["bytes"]),
        (&Value::from("tcp"), &Value::from(5555))
    );
    assert_eq!(g["nodes"].as_array().unwrap().len(), 2);
}

#[test]
fn unix_stream_dgram_and_seqpacket_by_path() {
    require_root();
    let dir = temp_dir();
    let d = dir.path().to_str().unwrap().to_string();
    let t = record(&["--", workload(), "unix-types", &d, "--bytes", "3000"]);
    let out = t.stdout();
    let l = &t.lines;
    for ty in ["stream", "dgram", "seqpacket"] {
        let f = fact(&out, ty);
        let (path, parent, child) = (f[1], after(&f, "parent"), after(&f, "child"));
        let id = channel_of(l, "unix", |c| {
            io_lines(l, c).any(|x| x["pid"] == child && x["op"] == "write")
        } && {
            // This type's channel: its receiver is bound (or connected) at `path`.
            let mine = t.of_type("channel").any(|x| {
                x["channel"] == c && x["socket_type"] == ty
            });
            mine || (ty == "dgram" && io_lines(l, c).any(|x| x["addr"] == path))
        });
        assert_eq!(moved(l, &id, "write", child), (3000, 3), "{ty}");
        assert_eq!(moved(l, &id, "read", parent).0, 3000, "{ty}");
        if ty == "dgram" {
            // Unconnected: the destination path names the receiver.
            assert!(io_lines(l, &id).all(|x| x["op"] == "read" || x["addr"] == path));
            assert_eq!(moved(l, &id, "read", parent).1, 3);
            assert!(t.of_type("channel").any(|c| c["event"] == "bind"
                && c["local"] == path
                && c["channel"] == id.as_str()));
        } else {
            let c = t
                .of_type("channel")
                .find(|c| c["event"] == "connect" && c["channel"] == id.as_str())
                .unwrap();
            assert_eq!(
                (&c["remote"], &c["peer_pid"]),
                (&Value::from(path), &Value::from(parent))
            );
        }
        if ty == "seqpacket" {
            assert_eq!(
                moved(l, &id, "read", parent).1,
                3,
                "records keep their bounds"
            );
        }
    }
    assert_schema(&t.lines);
}

#[test]
fn fd_passing_records_scm_rights_and_credentials() {
    require_root();
    let t = record(&["--", workload(), "fd-pass"]);
    let out = t.stdout();
    let f = fact(&out, "fdpass");
    let (parent, child, received) = (
        after(&f, "parent"),
        after(&f, "child"),
        after(&f, "received"),
    );
    let sent = after(&fact(&out, "sent"), "sent");
    let send = t
        .of_type("io")
        .find(|l| l["syscall"] == "sendmsg" && l["pid"] == child)
        .expect("the sendmsg");
    assert_eq!(send["scm_rights"], serde_json::json!([sent]));
    assert_eq!(send["scm_credentials"]["pid"], child);
    let recv = t
        .of_type("io")
        .find(|l| l["syscall"] == "recvmsg" && l["pid"] == parent)
        .expect("the recvmsg");
    assert_eq!(recv["channel"], send["channel"]);
    assert_eq!(recv["scm_rights"], serde_json::json!([received]));
    assert_eq!(recv["scm_credentials"]["pid"], child);
    assert_eq!(recv["scm_credentials"]["uid"], 0);
    // The parent then wrote 10 bytes into the passed pipe end.
    assert!(t.of_type("io").any(|l| l["pid"] == parent
        && l["fd"] == received
        && l["kind"] == "pipe"
        && l["bytes"] == 10));
    assert_schema(&t.lines);
}

#[test]
fn udp_over_ipv4_and_ipv6_loopback() {
    require_root();
    let t = record(&["--", workload(), "udp", "--size", "400"]);
    let out = t.stdout();
    let l = &t.lines;
    for (tag, host) in [("udp4", "127.0.0.1"), ("udp6", "[::1]")] {
        let f = fact(&out, tag);
        let (port, parent, child) = (after(&f, "port"), after(&f, "parent"), after(&f, "child"));
        let server = format!("{host}:{port}");
        let id = channel_of(l, "udp", |c| c.contains(&server));
        assert!(id.starts_with("udp:["), "{id}");
        assert_eq!(moved(l, &id, "read", parent).0, 1200, "{tag}");
        if tag == "udp4" {
            // One sendmmsg of 3 datagrams; recvmmsg on the other side.
            assert_eq!(moved(l, &id, "write", child), (1200, 1));
            let w = io_lines(l, &id).find(|x| x["op"] == "write").unwrap();
            assert_eq!(
                (&w["syscall"], &w["msgs"]),
                (&Value::from("sendmmsg"), &Value::from(3))
            );
            assert!(
                io_lines(l, &id)
                    .filter(|x| x["op"] == "read")
                    .all(|x| x["syscall"] == "recvmmsg")
            );
        } else {
            assert_eq!(moved(l, &id, "write", child), (1200, 3), "{tag}");
            assert_eq!(moved(l, &id, "read", parent).1, 3, "{tag}");
        }
    }
    assert_schema(&t.lines);
}

#[test]
fn sysv_queue_written_by_a_child_read_by_its_parent() {
    require_root();
    let t = record(&["--", workload(), "msgq", "--count", "4", "--size", "64"]);
    let out = t.stdout();
    let f = fact(&out, "msgq");
    let (key, id, parent, child) = (
        after(&f, "key"),
        after(&f, "id"),
        after(&f, "parent"),
        after(&f, "child"),
    );
    let ch = format!("msgq:{id}");
    let l = &t.lines;
    assert_eq!(moved(l, &ch, "write", child), (256, 4));
    assert_eq!(moved(l, &ch, "read", parent), (256, 4));
    assert!(io_lines(l, &ch).all(|x| x["key"] == key && x["mtype"] == 7));
    let get: Vec<&Value> = t
        .of_type("channel")
        .filter(|c| c["syscall"] == "msgget" && c["channel"] == ch.as_str())
        .collect();
    assert_eq!(get.len(), 2, "parent and child called msgget");
    assert!(get.iter().all(|g| g["key"] == key && g["id"] == id));
    assert!(
        t.of_type("channel")
            .any(|c| c["event"] == "unlink" && c["syscall"] == "msgctl" && c["pid"] == parent)
    );
    assert_schema(&t.lines);
}

/// (syscall, data) of every io line of `kind`, sorted, with a count.
fn payloads(t: &Trace, kind: &str) -> Vec<(String, String, usize)> {
    let mut seen = std::collections::BTreeMap::new();
    for l in t.of_type("io").filter(|l| l["kind"] == kind) {
        let sc = l["syscall"].as_str().unwrap().to_string();
        let data = l["data"].as_str().unwrap_or("(none)").to_string();
        *seen.entry((sc, data)).or_insert(0) += 1;
    }
    seen.into_iter().map(|((s, d), n)| (s, d, n)).collect()
}

fn own(v: &[(&str, &str, usize)]) -> Vec<(String, String, usize)> {
    v.iter()
        .map(|&(s, d, n)| (s.to_string(), d.to_string(), n))
        .collect()
}

#[test]
fn payloads_of_sends_receives_and_queues_are_captured_when_asked() {
    require_root();
    // Each workload fills its messages with one byte value; the first 3
    // bytes of every send and receive must be that value.
    let demo = record(&["--capture-bytes", "3", "--", workload(), "channels-demo"]);
    assert_eq!(
        payloads(&demo, "mq"),
        own(&[
            ("mq_timedreceive", "040404", 5),
            ("mq_timedsend", "040404", 5)
        ])
    );
    assert_eq!(
        payloads(&demo, "tcp"),
        own(&[("recvfrom", "030303", 1), ("sendto", "030303", 1)])
    );
    let udp = record(&[
        "--capture-bytes",
        "3",
        "--",
        workload(),
        "udp",
        "--size",
        "400",
    ]);
    let udp_calls = payloads(&udp, "udp");
    assert!(
        udp_calls.iter().all(|(_, d, _)| d == "080808"),
        "{udp_calls:?}"
    );
    let calls: BTreeSet<&str> = udp_calls.iter().map(|(s, _, _)| s.as_str()).collect();
    assert_eq!(
        calls,
        BTreeSet::from(["recvfrom", "recvmmsg", "sendmmsg", "sendto"])
    );
    // sendmsg/recvmsg: the one byte of fd-pass's message, "F".
    let fdpass = record(&["--capture-bytes", "3", "--", workload(), "fd-pass"]);
    assert_eq!(
        payloads(&fdpass, "unix"),
        own(&[("recvmsg", "46", 1), ("sendmsg", "46", 1)])
    );
    // SysV: the text after the message type.
    let args = ["msgq", "--count", "4", "--size", "64"];
    let msgq = record(&[&["--capture-bytes", "3", "--", workload()][..], &args[..]].concat());
    assert_eq!(
        payloads(&msgq, "msgq"),
        own(&[("msgrcv", "090909", 4), ("msgsnd", "090909", 4)])
    );
    let plain = record(&[&["--", workload()][..], &args[..]].concat());
    assert_eq!(
        payloads(&plain, "msgq"),
        own(&[("msgrcv", "(none)", 4), ("msgsnd", "(none)", 4)])
    );
    for t in [&demo, &udp, &fdpass, &msgq] {
        assert_schema(&t.lines);
    }
}

#[test]
fn a_connection_made_before_ipcwatch_started_is_resolved_by_sock_diag() {
    require_root();
    let mut wl = Command::new(workload())
        .args(["sock-delayed", "--bytes", "6000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(wl.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    let w: Vec<&str> = first.split_whitespace().collect();
    let (parent, child) = (after(&w, "parent"), after(&w, "child"));
    let (ia, ib): (u64, u64) = (w[6].parse().unwrap(), w[7].parse().unwrap());
    let id = format!("unix:[{}-{}]", ia.min(ib), ia.max(ib));
    let dir = temp_dir();
    let out = dir.path().join("t.ndjson");
    let mut rec = Command::new(ipcwatch())
        .args(["record", "-o", out.to_str().unwrap(), "--duration", "3"])
        .args(["--pid", &parent.to_string(), "--pid", &child.to_string()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while std::fs::read_to_string(&out).map_or(true, |s| !s.contains(&id)) {
        assert!(t0.elapsed() < patience(20), "ipcwatch did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    wl.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    assert!(wl.wait().unwrap().success());
    assert!(rec.wait().unwrap().success());
    let lines = parse(&out);
    // Both ends found at start, each naming the other (as `ss -xp` would).
    let existing: BTreeSet<(u64, u64, u64)> = lines
        .iter()
        .filter(|l| {
            l["type"] == "channel" && l["event"] == "existing" && l["channel"] == id.as_str()
        })
        .map(|l| {
            (
                l["pid"].as_u64().unwrap(),
                l["inode"].as_u64().unwrap(),
                l["peer_pid"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        existing,
        BTreeSet::from([(parent, ia, child), (child, ib, parent)])
    );
    assert_eq!(moved(&lines, &id, "write", parent), (6000, 6));
    assert_eq!(moved(&lines, &id, "read", child).0, 6000);
    assert_schema(&lines);
}

#[test]
fn a_tcp_connection_made_before_ipcwatch_started_names_both_processes() {
    require_root();
    let mut wl = Command::new(workload())
        .args(["sock-delayed", "--tcp", "--bytes", "4000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(wl.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    let w: Vec<&str> = first.split_whitespace().collect();
    let (parent, child) = (after(&w, "parent"), after(&w, "child"));
    let (sport, cport) = (w[6], w[7]);
    let id = format!("tcp:[127.0.0.1:{cport}-127.0.0.1:{sport}]");
    let id = if cport < sport {
        id
    } else {
        format!("tcp:[127.0.0.1:{sport}-127.0.0.1:{cport}]")
    };
    let dir = temp_dir();
    let out = dir.path().join("t.ndjson");
    let mut rec = Command::new(ipcwatch())
        .args(["record", "-o", out.to_str().unwrap(), "--duration", "3"])
        .args(["--pid", &parent.to_string(), "--pid", &child.to_string()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while std::fs::read_to_string(&out).map_or(true, |s| !s.contains(&id)) {
        assert!(t0.elapsed() < patience(20), "ipcwatch did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    wl.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    assert!(wl.wait().unwrap().success());
    assert!(rec.wait().unwrap().success());
    let lines = parse(&out);
    let existing: BTreeSet<(u64, String, u64)> = lines
        .iter()
        .filter(|l| {
            l["type"] == "channel" && l["event"] == "existing" && l["channel"] == id.as_str()
        })
        .map(|l| {
            (
                l["pid"].as_u64().unwrap(),
                l["local"].as_str().unwrap().to_string(),
                l["peer_pid"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        existing,
        BTreeSet::from([
            (parent, format!("127.0.0.1:{cport}"), child),
            (child, format!("127.0.0.1:{sport}"), parent)
        ])
    );
    assert_eq!(moved(&lines, &id, "write", parent), (4000, 4));
    assert_eq!(moved(&lines, &id, "read", child).0, 4000);
    assert_schema(&lines);
}

#[test]
fn kind_filter_keeps_only_the_named_kinds() {
    require_root();
    let t = record(&["--kind", "mq", "--", workload(), "channels-demo"]);
    let kinds: BTreeSet<&str> = t
        .of_type("io")
        .map(|l| l["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, BTreeSet::from(["mq"]));
    assert_eq!(
        t.bytes(&format!("mq:{}", fact(&t.stdout(), "mq")[1]), "write"),
        500
    );
    assert_schema(&t.lines);
}
