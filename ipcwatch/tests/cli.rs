//! The command line: bad input, missing privileges, doctor.

mod common;

use std::process::Command;

use common::*;

fn run(args: &[&str]) -> std::process::Output {
    Command::new(ipcwatch()).args(args).output().unwrap()
}

#[test]
fn a_duration_that_is_not_a_number_is_a_usage_error() {
    let o = run(&["record", "--duration", "notanumber"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("`notanumber` is neither a number of seconds nor a duration"),
        "{err}"
    );
    // Units are accepted, a zero or negative duration is not.
    let o = run(&["record", "--duration", "0s", "--", "true"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("must be a positive"), "{err}");
}

#[test]
fn a_duration_with_units_stops_a_system_wide_recording() {
    require_root();
    let dir = temp_dir();
    let out = dir.path().join("t.ndjson");
    let o = run(&[
        "record",
        "--duration",
        "300ms",
        "--comm",
        "no-such-comm",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let lines = parse(&out);
    let summary = lines.last().unwrap();
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["reason"], "duration");
    let ns = summary["duration_ns"].as_u64().unwrap();
    assert!((300_000_000..3_000_000_000).contains(&ns), "{ns}");
}

#[test]
fn bad_ring_sizes_and_mixed_filters_are_usage_errors() {
    let o = run(&["record", "--ring-size", "5000", "--", "true"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("power of two"));
    let o = run(&["record", "--pid", "1", "--", "true"]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["record", "--container", "abcd", "--", "true"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_container_or_cgroup_that_does_not_exist_is_a_usage_error() {
    let o = run(&["record", "--container", "0123456789abcdef0123"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no running container"), "{err}");
    let o = run(&["record", "--cgroup", "/no/such/cgroup\x1b[2J"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no such cgroup"), "{err}");
    let o = run(&["tui", "--cgroup", "/a/../b"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("`..`"), "{err}");
}

#[test]
fn an_unwritable_output_is_a_clear_error() {
    require_root();
    let o = run(&["record", "-o", "/nonexistent/dir/t.ndjson", "--", "true"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot write the trace to /nonexistent/dir/t.ndjson"),
        "{err}"
    );
}

#[test]
fn the_output_file_is_private_and_never_follows_a_symlink() {
    require_root();
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir();
    let out = dir.path().join("t.ndjson");
    let o = run(&["record", "-o", out.to_str().unwrap(), "--", "true"]);
    assert!(o.status.success());
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let target = dir.path().join("victim");
    std::fs::write(&target, "keep").unwrap();
    let link = dir.path().join("link.ndjson");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let o = run(&["record", "-o", link.to_str().unwrap(), "--", "true"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
}

#[test]
fn a_command_that_does_not_exist_is_reported() {
    require_root();
    let dir = temp_dir();
    let out = dir.path().join("t.ndjson");
    let o = run(&[
        "record",
        "-o",
        out.to_str().unwrap(),
        "--",
        "/no/such/program",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot run /no/such/program: No such file or directory"),
        "{err}"
    );
}

#[test]
fn without_privileges_it_names_what_is_missing_and_exits_1() {
    require_root();
    // Drop to nobody, with no capabilities at all.
    let o = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .args([ipcwatch(), "record", "-o", "/dev/null", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("CAP_BPF and CAP_PERFMON"), "{err}");
    assert!(err.contains("uid 65534"), "{err}");
}

#[test]
fn doctor_tells_the_truth_about_this_kernel() {
    require_root();
    let o = run(&["doctor", "--format", "json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let check = |name: &str| -> bool {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["feature"] == name)
            .unwrap_or_else(|| panic!("no {name} check"))["supported"]
            .as_bool()
            .unwrap()
    };
    for f in [
        "tracepoint",
        "raw tracepoint",
        "ring buffer",
        "BTF",
        "tracefs",
    ] {
        assert!(check(f), "{f} must work: ipcwatch just used it");
    }
    // Facts the kernel shows independently of ipcwatch's own attempts.
    let kprobe_pmu = std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists();
    assert_eq!(check("kprobe"), kprobe_pmu);
    // This machine's watchpoints trap (the race tests find their races
    // with them): the check saw each of its writes, not only an attach.
    assert!(check("hw watchpoint"));
    let watchpoint = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["feature"] == "hw watchpoint")
        .unwrap();
    let detail = watchpoint["detail"].as_str().unwrap();
    let traps: u64 = detail
        .split_once(" trapped ")
        .and_then(|(_, t)| t.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no trap count: {detail}"));
    assert!(traps > 0, "{detail}");
    assert_eq!(
        report["kernel"].as_str().unwrap(),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap()
            .trim()
    );
    let text = run(&["doctor"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("FEATURE"), "{text}");
    assert!(text.contains("hw watchpoint"), "{text}");
}

#[test]
fn bad_metrics_and_rotation_flags_are_usage_errors() {
    let err = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    for args in [
        &["record", "--metrics", "nope", "--", "true"][..],
        &["record", "--metrics", "localhost:9464", "--", "true"],
        &["tui", "--metrics", "9464"],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(err(&o).contains("is not IP:PORT"), "{}", err(&o));
    }
    let o = run(&["record", "--metrics-linger", "5", "--", "true"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    let o = run(&[
        "record",
        "-o",
        "/tmp/x",
        "--rotate-size",
        "1K",
        "--",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("at least 4096 bytes"), "{}", err(&o));
    let o = run(&[
        "record",
        "-o",
        "/tmp/x",
        "--rotate-size",
        "12Q",
        "--",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("K, M or G"), "{}", err(&o));
    let o = run(&["record", "--rotate-size", "1M", "--", "true"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err(&o).contains("--rotate-size needs -o FILE"),
        "{}",
        err(&o)
    );
    let o = run(&["record", "-o", "/tmp/x", "--rotate-keep", "3", "--", "true"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
}

/// A port in use is said before anything is traced: exit 1, no trace.
#[test]
fn a_metrics_port_in_use_is_an_error_before_tracing() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let dir = temp_dir();
    let out = dir.path().join("t.ndjson");
    let o = run(&[
        "record",
        "--metrics",
        &addr,
        "-o",
        out.to_str().unwrap(),
        "--",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "cannot serve metrics on {addr}: Address already in use"
        )),
        "{err}"
    );
    assert!(!out.exists());
}

/// `--rotate-size 64K --rotate-keep 2` on 20,000 pipe writes and their
/// reads: FILE, FILE.1
/// and FILE.2 are left (not FILE.3); each starts with the same header and
/// `analyze` reads each; the rotated ones hold 64 KiB passed by one line at
/// most; FILE ends with the summary; the kept lines are whole and in order.
#[test]
fn record_rotates_its_output_and_keeps_n_files() {
    require_root();
    let dir = temp_dir();
    let out = dir.path().join("t.ndjson");
    let path = out.to_str().unwrap();
    let o = run(&[
        "record",
        "-o",
        path,
        "--rotate-size",
        "64K",
        "--rotate-keep",
        "2",
        "--no-race",
        "--",
        "sh",
        "-c",
        "dd if=/dev/zero bs=10 count=20000 status=none | cat > /dev/null",
    ]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(!std::path::Path::new(&format!("{path}.3")).exists());
    let names = [format!("{path}.2"), format!("{path}.1"), path.to_string()];
    let texts: Vec<String> = names
        .iter()
        .map(|n| std::fs::read_to_string(n).unwrap())
        .collect();
    let header = texts[2].lines().next().unwrap();
    assert!(header.contains("\"type\":\"header\""), "{header}");
    let mut last_ts = 0;
    for (name, text) in names.iter().zip(&texts) {
        assert_eq!(text.lines().next(), Some(header), "{name}");
        let longest = text.lines().map(str::len).max().unwrap() as u64 + 1;
        if name != path {
            let len = text.len() as u64;
            assert!((65536..65536 + longest).contains(&len), "{name}: {len}");
        }
        for l in text.lines().skip(1) {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            // Lines are written in the order events were taken, which for
            // io lines of one pipe is time order.
            if v["type"] == "io" {
                let ts = v["ts_ns"].as_u64().unwrap();
                assert!(ts >= last_ts, "{name}: {l}");
                last_ts = ts;
            }
        }
        let a = Command::new(ipcwatch())
            .args(["analyze", "--format", "json", name])
            .output()
            .unwrap();
        assert!(
            a.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&a.stderr)
        );
    }
    assert!(
        texts[2]
            .lines()
            .last()
            .unwrap()
            .contains("\"type\":\"summary\"")
    );
    // 20,000 writes (and their reads) were recorded; fewer lines are kept.
    let kept: usize = texts
        .iter()
        .map(|t| t.matches("\"type\":\"io\"").count())
        .sum();
    let events = parse(&out).last().unwrap()["events"].as_u64().unwrap();
    assert!(events > 20_000 && kept < 20_000, "{kept} of {events}");
}
