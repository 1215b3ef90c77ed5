//! The collision-sampling engine on its own: real watchpoints on a real
//! racing counter, fed with the region and mappings a test reads from
//! /proc (the shared-memory probes produce the same records in `record`).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ipcwatch::decode::{RawEvent, decode};
use ipcwatch::kernel::loader::{Options, Probes};
use ipcwatch::model::Model;
use ipcwatch::race::detector::{Detector, DetectorOptions};
use ipcwatch::record::*;

/// The shared anonymous mapping of `pid` (the counter page).
fn shared_mapping(pid: u32) -> Option<(u64, u64, u64, String)> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    maps.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 6 || !f[1].ends_with('s') || !f[5].starts_with("/dev/zero") {
            return None;
        }
        let (a, b) = f[0].split_once('-')?;
        Some((
            u64::from_str_radix(a, 16).ok()?,
            u64::from_str_radix(b, 16).ok()?,
            u64::from_str_radix(f[2], 16).ok()?,
            format!("anon:{}:{}", f[3], f[4]),
        ))
    })
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// The detector on the workload's counter, run with `sync`, for `watch`;
/// with `until_found`, only until the first finding (then the workload is
/// killed): a machine busy with other work delays the first collision.
fn run_detector(
    sync: &str,
    watch: Duration,
    until_found: bool,
) -> (Vec<RaceLine>, ipcwatch::race::detector::DetectorStats) {
    let mut probes = Probes::load(&Options {
        listed_only: true,
        ..Options::default()
    })
    .expect("load probes");
    let mut ring = probes.take_ring().unwrap();
    let mut wl = Command::new(workload())
        .args(["counter", "--memory", "anon", "--sync", sync, "--secs"])
        .arg((watch.as_secs() + 1).to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let parent = wl.id();
    let t0 = Instant::now();
    let child = loop {
        if let Some(&c) = children(parent).first() {
            break c;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the workload did not fork"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut model = Model::new();
    for pid in [parent, child] {
        let (start, end, offset, region) = loop {
            if let Some(m) = shared_mapping(pid) {
                break m;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        model.apply(&Record::Mapping(MappingLine {
            ts_ns: 1,
            event: MappingEvent::Existing,
            region: region.into(),
            pid,
            comm: "ipcwatch".into(),
            start,
            end,
            offset,
            prot: "rw".into(),
        }));
    }
    // Stacks are symbolized by ipcwatch's worker, not by this test binary.
    let mut det = Detector::new(DetectorOptions {
        symbolizer: Some(vec![ipcwatch().into(), "symbolize-worker".into()]),
        ..DetectorOptions::default()
    });
    let mut races = Vec::new();
    let end = Instant::now() + watch;
    while Instant::now() < end && (!until_found || races.is_empty()) {
        det.tick(&model, &mut probes, Instant::now());
        while let Some(item) = ring.next() {
            if let Ok(RawEvent::Collision(c)) = decode(&item) {
                drop(item);
                det.on_collision(&c, &probes);
            }
        }
        races.extend(det.take_findings());
        std::thread::sleep(Duration::from_millis(5));
    }
    // Closing the last window judges its collisions.
    det.stop(&model, &mut probes);
    races.extend(det.take_findings());
    eprintln!(
        "traps {} collisions {} dropped {}",
        probes.stat(ipcwatch_common::stat::WATCH_TRAPS),
        probes.stat(ipcwatch_common::stat::COLLISIONS),
        probes.dropped()
    );
    if until_found && !races.is_empty() {
        for pid in [child, parent] {
            // SAFETY: kill has no memory effects; both are our workload's.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        wl.wait().unwrap();
        return (races, det.stats);
    }
    let mut line = String::new();
    BufReader::new(wl.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(wl.wait().unwrap().success());
    (races, det.stats)
}

#[test]
fn a_racing_counter_is_caught_with_both_writers_named() {
    require_root();
    let (races, stats) = run_detector("none", Duration::from_secs(20), true);
    assert!(stats.windows > 0 && stats.words_armed > 0, "{stats:?}");
    assert!(!races.is_empty(), "no race found: {stats:?}");
    let r = &races[0];
    eprintln!("{}", serde_json::to_string_pretty(r).unwrap());
    assert_eq!(r.kind, "shm-write-write");
    assert_eq!(r.evidence, "collision");
    assert_eq!(r.offset, Some(128), "the counter's offset");
    let pids: std::collections::BTreeSet<u32> = r.accesses.iter().map(|a| a.pid).collect();
    assert_eq!(pids.len(), 2, "two different processes: {r:?}");
    for a in &r.accesses {
        let f = a.function.as_deref().unwrap_or("");
        assert!(f.contains("bump_counter_unsynchronized"), "{a:?}");
        assert!(
            a.file.as_deref().is_some_and(|f| f.ends_with("race.rs")),
            "{a:?}"
        );
        assert!(!a.stack.is_empty(), "{a:?}");
    }
}

#[test]
fn atomic_increments_are_not_races() {
    require_root();
    let (races, stats) = run_detector("atomic", Duration::from_secs(3), false);
    assert!(races.is_empty(), "{races:?}");
    eprintln!("{stats:?}");
}

#[test]
fn a_mutex_protected_counter_is_not_a_race() {
    require_root();
    let (races, stats) = run_detector("mutex", Duration::from_secs(3), false);
    assert!(races.is_empty(), "{races:?}");
    assert!(stats.words_armed > 0, "{stats:?}");
}
