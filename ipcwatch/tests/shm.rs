//! Root integration tests: the real shared-memory and lock probes on the
//! built-in workloads (`ipcwatch-workload shm-*`, `file-lock`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// "region <id> parent <pid> children <a>,<b> counter <n>" from shm-counter.
struct Counter {
    region: String,
    parent: u32,
    children: Vec<u32>,
    counter: u64,
}

fn counter_line(t: &Trace) -> Counter {
    let out = t.stdout();
    let line = out
        .lines()
        .find(|l| l.contains(" children "))
        .unwrap_or_else(|| panic!("no counter line in {out:?}; stderr {}", t.stderr()));
    let w: Vec<&str> = line.split_whitespace().collect();
    Counter {
        region: w[1].to_string(),
        parent: w[3].parse().unwrap(),
        children: w[5].split(',').map(|p| p.parse().unwrap()).collect(),
        counter: w[7].parse().unwrap(),
    }
}

fn shm_counter(extra: &[&str], wl_args: &[&str]) -> (Trace, Counter) {
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(["--", workload(), "shm-counter"]);
    args.extend(wl_args);
    let t = record(&args);
    assert_schema(&t.lines);
    assert_eq!(t.summary()["dropped"], 0, "events were lost");
    let c = counter_line(&t);
    (t, c)
}

fn pids_of<'a>(lines: impl Iterator<Item = &'a Value>) -> BTreeSet<u32> {
    lines.map(|l| l["pid"].as_u64().unwrap() as u32).collect()
}

fn syncs<'a>(t: &'a Trace, lock: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    t.of_type("sync").filter(move |l| l["lock"] == lock)
}

/// The "done when": a SysV segment, a process-shared mutex in it,
/// two forked children bumping a counter, without --lock-probes.
#[test]
fn sysv_mutex_counter_shows_two_mappers_and_one_lock_from_two_pids() {
    require_root();
    let (t, c) = shm_counter(
        &["--ring-size", "67108864"],
        &["--region", "sysv", "--lock", "mutex", "--secs", "2"],
    );
    assert!(c.region.starts_with("sysv:"), "{}", c.region);
    assert_eq!(c.children.len(), 2);
    // The region: created by the parent, 4096 bytes, removed at the end.
    let created: Vec<_> = t
        .of_type("region")
        .filter(|l| l["region"] == c.region.as_str() && l["event"] == "created")
        .collect();
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0]["kind"], "sysv");
    assert_eq!(created[0]["size"], 4096);
    assert_eq!(created[0]["pid"], c.parent);
    assert!(
        t.of_type("region")
            .any(|l| l["region"] == c.region.as_str() && l["event"] == "removed")
    );
    // Mapped by the parent (shmat) and both children (inherited at fork),
    // at the same address; unmapped by the parent (shmdt).
    let mapped: Vec<_> = t
        .of_type("mapping")
        .filter(|l| l["region"] == c.region.as_str() && l["event"] == "mapped")
        .collect();
    let mut expected = BTreeSet::from([c.parent]);
    expected.extend(&c.children);
    assert_eq!(pids_of(mapped.iter().copied()), expected);
    assert!(mapped.iter().all(|l| l["start"] == mapped[0]["start"]
        && l["end"].as_u64().unwrap() - l["start"].as_u64().unwrap() == 4096
        && l["offset"] == 0
        && l["prot"] == "rw"));
    assert!(
        t.of_type("mapping")
            .any(|l| l["region"] == c.region.as_str()
                && l["event"] == "unmapped"
                && l["pid"] == c.parent)
    );
    // One lock identity, "<region>+0", in every process: the parent's init
    // (inventory uprobe) and both children's futex operations.
    let lock = format!("{}+0", c.region);
    let init: Vec<_> = syncs(&t, &lock).filter(|l| l["event"] == "init").collect();
    assert_eq!(init.len(), 1, "{init:?}");
    assert_eq!(init[0]["pid"], c.parent);
    assert_eq!(init[0]["primitive"], "mutex");
    assert_eq!(init[0]["detail"], "init pshared");
    let futex: Vec<_> = syncs(&t, &lock)
        .filter(|l| l["primitive"] == "futex")
        .collect();
    let children: BTreeSet<u32> = c.children.iter().copied().collect();
    assert_eq!(pids_of(futex.iter().copied()), children, "{futex:?}");
    assert!(
        futex
            .iter()
            .all(|l| l["region"] == c.region.as_str() && l["offset"] == 0)
    );
    for pid in &c.children {
        assert!(
            futex
                .iter()
                .any(|l| l["pid"] == *pid && l["event"] == "wait")
        );
        assert!(
            futex
                .iter()
                .any(|l| l["pid"] == *pid && l["event"] == "wake")
        );
    }
    // Write faults on the region come back as (region, offset).
    let faults: Vec<_> = t
        .of_type("fault")
        .filter(|l| l["region"] == c.region.as_str())
        .collect();
    assert!(
        faults
            .iter()
            .any(|l| l["pid"] == c.parent && l["offset"].as_u64().unwrap() < 4096),
        "{faults:?}"
    );
    assert!(c.counter > 0);
}

#[test]
fn every_region_kind_has_its_id_mappers_and_end() {
    require_root();
    let dir = temp_dir();
    let file = dir.path().join("shared.bin");
    for kind in ["sysv", "posix", "memfd", "file", "anon"] {
        let name = if kind == "file" {
            file.to_str().unwrap().to_string()
        } else {
            format!("ipcwatch-test-{kind}")
        };
        let (t, c) = shm_counter(
            &[],
            &[
                "--region", kind, "--name", &name, "--lock", "mutex", "--iters", "1000",
            ],
        );
        assert_eq!(c.counter, 2000, "{kind}");
        let prefix = format!("{kind}:");
        assert!(c.region.starts_with(&prefix), "{kind}: {}", c.region);
        let regions: Vec<_> = t
            .of_type("region")
            .filter(|l| l["region"] == c.region.as_str())
            .collect();
        assert!(!regions.is_empty(), "{kind}: no region line");
        assert!(regions.iter().all(|l| l["kind"] == kind), "{regions:?}");
        let first = regions[0]["event"].as_str().unwrap();
        let want_first = if kind == "file" {
            "existing"
        } else {
            "created"
        };
        assert_eq!(first, want_first, "{kind}: {regions:?}");
        if kind == "sysv" || kind == "posix" {
            assert_eq!(
                regions.last().unwrap()["event"],
                "removed",
                "{kind}: {regions:?}"
            );
        }
        let mapped: Vec<_> = t
            .of_type("mapping")
            .filter(|l| l["region"] == c.region.as_str() && l["event"] == "mapped")
            .collect();
        let mut expected = BTreeSet::from([c.parent]);
        expected.extend(&c.children);
        assert_eq!(pids_of(mapped.iter().copied()), expected, "{kind}");
        let unmapped: Vec<_> = t
            .of_type("mapping")
            .filter(|l| l["region"] == c.region.as_str() && l["event"] == "unmapped")
            .collect();
        assert_eq!(unmapped.len(), 1, "{kind}: {unmapped:?}");
        assert_eq!(unmapped[0]["pid"], c.parent);
        assert_eq!(unmapped[0]["start"], mapped[0]["start"]);
        // The mutex has the same identity for every kind.
        let lock = format!("{}+0", c.region);
        assert_eq!(
            syncs(&t, &lock).filter(|l| l["event"] == "init").count(),
            1,
            "{kind}"
        );
    }
}

/// Contended process-shared locks of every kind that sleeps in the kernel
/// show up as futex operations on the object's own (region, offset).
#[test]
fn contended_locks_are_seen_through_futex() {
    require_root();
    for lock in ["mutex", "rwlock", "sem", "cond"] {
        // Contention makes a futex call every few operations: keep it
        // short, with room to spare in the ring buffer (the test binary's
        // collector is a debug build, on a busy machine).
        let (t, c) = shm_counter(
            &["--ring-size", "67108864"],
            &["--region", "anon", "--lock", lock, "--secs", "0.5"],
        );
        let object = format!("{}+0", c.region);
        let init: Vec<_> = t.of_type("sync").filter(|l| l["event"] == "init").collect();
        let want_init = if lock == "cond" { "mutex" } else { lock };
        assert!(
            init.iter()
                .any(|l| l["lock"] == object.as_str() && l["primitive"] == want_init),
            "{lock}: {init:?}"
        );
        let futex: Vec<_> = t
            .of_type("sync")
            .filter(|l| l["primitive"] == "futex" && l["region"] == c.region.as_str())
            .collect();
        let children: BTreeSet<u32> = c.children.iter().copied().collect();
        assert_eq!(pids_of(futex.iter().copied()), children, "{lock}");
        if lock == "cond" {
            // The condition variable lives at offset 64 (48 bytes).
            assert!(
                futex.iter().any(|l| {
                    let o = l["offset"].as_u64().unwrap();
                    (64..112).contains(&o) && l["event"] == "wait"
                }),
                "{lock}: {futex:?}"
            );
        } else {
            // Every futex word of the object maps to the object itself.
            assert!(
                futex.iter().all(|l| l["lock"] == object.as_str()),
                "{lock}: {:?}",
                futex.iter().find(|l| l["lock"] != object.as_str())
            );
            for pid in &c.children {
                assert!(
                    futex
                        .iter()
                        .any(|l| l["pid"] == *pid && l["event"] == "wait"),
                    "{lock}: no wait from {pid}"
                );
            }
        }
    }
}

/// A named semaphore lives in its own /dev/shm object: its sem_open is the
/// inventory's "init", and the parent's mapping, both children's inherited
/// mappings and their futex operations carry one identity,
/// "posix:/sem.<name>+0".
#[test]
fn named_semaphore_has_one_identity() {
    require_root();
    // Contended semaphores make a futex call per operation or so: keep it
    // short, with room to spare in the ring buffer.
    let (t, c) = shm_counter(
        &["--ring-size", "67108864"],
        &["--region", "anon", "--lock", "named-sem", "--secs", "0.3"],
    );
    let init: Vec<_> = t
        .of_type("sync")
        .filter(|l| l["event"] == "init" && l["primitive"] == "sem")
        .collect();
    assert_eq!(init.len(), 1, "{init:?}");
    assert_eq!(init[0]["pid"], c.parent);
    assert_eq!(init[0]["detail"], "sem_open pshared");
    let region = init[0]["region"].as_str().unwrap().to_string();
    assert!(region.starts_with("posix:/sem."), "{region}");
    let lock = format!("{region}+0");
    assert_eq!(init[0]["lock"], lock.as_str());
    let mapped = pids_of(
        t.of_type("mapping")
            .filter(|l| l["region"] == region.as_str() && l["event"] == "mapped"),
    );
    let mut all = BTreeSet::from([c.parent]);
    all.extend(&c.children);
    assert_eq!(mapped, all);
    let futex = pids_of(syncs(&t, &lock).filter(|l| l["primitive"] == "futex"));
    let children: BTreeSet<u32> = c.children.iter().copied().collect();
    assert_eq!(futex, children);
}

/// With --lock-probes, every uncontended operation is seen, exactly.
#[test]
fn uncontended_locks_are_seen_with_lock_probes() {
    require_root();
    let iters = 200u64;
    for (lock, ops) in [
        ("mutex", vec!["lock"]),
        ("rwlock", vec!["wrlock", "rdlock"]),
        ("spin", vec!["lock"]),
        ("sem", vec!["wait"]),
    ] {
        let it = iters.to_string();
        let (t, c) = shm_counter(
            &["--lock-probes"],
            &[
                "--region", "memfd", "--lock", lock, "--serial", "--iters", &it, "--settle", "1",
            ],
        );
        let object = format!("{}+0", c.region);
        let inits: Vec<_> = syncs(&t, &object)
            .filter(|l| l["event"] == "init")
            .collect();
        assert_eq!(inits.len(), 1, "{lock}: {inits:?}");
        assert_eq!(inits[0]["pid"], c.parent);
        assert_eq!(inits[0]["primitive"], lock);
        for pid in &c.children {
            let mine: Vec<_> = syncs(&t, &object).filter(|l| l["pid"] == *pid).collect();
            let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
            for l in &mine {
                assert_eq!(l["primitive"], lock, "{l}");
                assert_eq!(l["ok"], true, "{l}");
                *counts
                    .entry((
                        l["event"].as_str().unwrap().to_string(),
                        l["detail"].as_str().unwrap().to_string(),
                    ))
                    .or_default() += 1;
            }
            let mut want: BTreeMap<(String, String), u64> = BTreeMap::new();
            for op in &ops {
                want.insert(("acquire".into(), op.to_string()), iters);
            }
            let release = if lock == "sem" { "post" } else { "unlock" };
            want.insert(
                ("release".into(), release.to_string()),
                iters * ops.len() as u64,
            );
            assert_eq!(counts, want, "{lock}, child {pid}");
        }
    }
}

#[test]
fn unrelated_processes_share_a_posix_object() {
    require_root();
    let name = format!("ipcwatch-peer-{}", std::process::id());
    let w = workload();
    let script = format!(
        "{w} shm-posix-peer {name} --role create & {w} shm-posix-peer {name} --role open; wait"
    );
    let t = record(&["--", "sh", "-c", &script]);
    assert_schema(&t.lines);
    let out = t.stdout();
    let pid_of = |role: &str| -> u32 {
        let l = out
            .lines()
            .find(|l| l.ends_with(&format!("role {role}")))
            .unwrap_or_else(|| panic!("no {role} line in {out:?}"));
        l.split_whitespace().nth(3).unwrap().parse().unwrap()
    };
    let (creator, opener) = (pid_of("create"), pid_of("open"));
    let region = format!("posix:/{name}");
    let mapped: BTreeSet<u32> = pids_of(
        t.of_type("mapping")
            .filter(|l| l["region"] == region.as_str() && l["event"] == "mapped"),
    );
    assert_eq!(mapped, BTreeSet::from([creator, opener]));
    // Neither is the other's parent: both were forked by the shell.
    let parent = |pid: u32| {
        t.of_type("process")
            .find(|l| l["event"] == "fork" && l["pid"] == pid)
            .map(|l| l["ppid"].as_u64().unwrap() as u32)
    };
    assert_ne!(parent(creator), Some(opener));
    assert_ne!(parent(opener), Some(creator));
    let events: Vec<(String, u32)> = t
        .of_type("region")
        .filter(|l| l["region"] == region.as_str())
        .map(|l| {
            (
                l["event"].as_str().unwrap().to_string(),
                l["pid"].as_u64().unwrap() as u32,
            )
        })
        .collect();
    assert_eq!(events[0], ("created".to_string(), creator), "{events:?}");
    assert_eq!(
        events.last().unwrap(),
        &("removed".to_string(), creator),
        "{events:?}"
    );
    // Each wrote its mark: a write fault in the region from each.
    let faulted = pids_of(
        t.of_type("fault")
            .filter(|l| l["region"] == region.as_str()),
    );
    assert_eq!(faulted, BTreeSet::from([creator, opener]));
}

#[test]
fn contended_file_locks_have_one_identity() {
    require_root();
    let dir = temp_dir();
    for (kind, primitive) in [
        ("flock", "flock"),
        ("fcntl", "fcntl"),
        ("ofd", "ofd"),
        ("lockf", "fcntl"),
    ] {
        let path = dir.path().join(format!("{kind}.lock"));
        let t = record(&["--", workload(), "file-lock", kind, path.to_str().unwrap()]);
        assert_schema(&t.lines);
        let out = t.stdout();
        let w: Vec<&str> = out
            .lines()
            .find(|l| l.starts_with("filelock"))
            .unwrap_or_else(|| panic!("{kind}: {out:?} {}", t.stderr()))
            .split_whitespace()
            .collect();
        let (parent, child): (u32, u32) = (w[3].parse().unwrap(), w[5].parse().unwrap());
        let lines: Vec<_> = t
            .of_type("sync")
            .filter(|l| l["primitive"] == primitive)
            .collect();
        let locks: BTreeSet<&str> = lines.iter().map(|l| l["lock"].as_str().unwrap()).collect();
        assert_eq!(locks.len(), 1, "{kind}: {locks:?}");
        let seq = |pid: u32| -> Vec<(String, bool)> {
            lines
                .iter()
                .filter(|l| l["pid"] == pid)
                .map(|l| (l["event"].as_str().unwrap().to_string(), l["ok"] == true))
                .collect()
        };
        let s = |e: &str, ok| (e.to_string(), ok);
        assert_eq!(
            seq(parent),
            vec![s("acquire", true), s("release", true)],
            "{kind}"
        );
        assert_eq!(
            seq(child),
            vec![s("acquire", false), s("acquire", true), s("release", true)],
            "{kind}"
        );
    }
}

/// Start a holder of a region of `kind`; returns it and its "region" line.
fn holder(kind: &str, name: &str) -> (std::process::Child, String, u32) {
    let mut child = Command::new(workload())
        .args(["shm-hold", kind, "--name", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the holder");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let w: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(w.first(), Some(&"region"), "{line:?}");
    (child, w[1].to_string(), w[3].parse().unwrap())
}

#[test]
fn regions_that_existed_before_the_start_are_found() {
    require_root();
    let name = format!("ipcwatch-hold-{}", std::process::id());
    let (mut sysv, sysv_id, sysv_pid) = holder("sysv", &name);
    let (mut posix, posix_id, posix_pid) = holder("posix", &name);
    let dir = temp_dir();
    let out = dir.path().join("trace.ndjson");
    let mut rec = Command::new(ipcwatch())
        .args(["record", "-o", out.to_str().unwrap(), "--duration", "3"])
        .args([
            "--pid",
            &sysv_pid.to_string(),
            "--pid",
            &posix_pid.to_string(),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ipcwatch");
    // Once the scan is written, let the holders write and remove.
    let start = Instant::now();
    while !std::fs::read_to_string(&out).is_ok_and(|s| s.contains("\"type\":\"mapping\"")) {
        assert!(start.elapsed() < patience(20), "no scan");
        std::thread::sleep(Duration::from_millis(50));
    }
    for h in [&mut sysv, &mut posix] {
        h.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
        assert!(h.wait().unwrap().success());
    }
    assert!(rec.wait().unwrap().success());
    let lines = parse(&out);
    assert_schema(&lines);
    let of = |ty: &'static str| lines.iter().filter(move |l| l["type"] == ty);
    for (id, pid) in [(&sysv_id, sysv_pid), (&posix_id, posix_pid)] {
        let events: Vec<&str> = of("region")
            .filter(|l| l["region"] == id.as_str())
            .map(|l| l["event"].as_str().unwrap())
            .collect();
        assert_eq!(events.first(), Some(&"existing"), "{id}: {events:?}");
        assert_eq!(events.last(), Some(&"removed"), "{id}: {events:?}");
        let existing: Vec<_> = of("mapping")
            .filter(|l| l["region"] == id.as_str() && l["event"] == "existing")
            .collect();
        assert_eq!(existing.len(), 1, "{id}: {existing:?}");
        assert_eq!(existing[0]["pid"], pid);
        assert_eq!(existing[0]["prot"], "rw");
        // The write after the start is a fault at offset 100 of the region.
        let faults: Vec<_> = of("fault")
            .filter(|l| l["region"] == id.as_str() && l["pid"] == pid)
            .collect();
        assert_eq!(faults.len(), 1, "{id}: {faults:?}");
        assert_eq!(faults[0]["offset"], 100);
        assert!(
            of("mapping")
                .any(|l| l["region"] == id.as_str() && l["event"] == "unmapped" && l["pid"] == pid)
        );
    }
    // The SysV segment was listed from /proc/sysvipc/shm with its size.
    assert!(
        of("region").any(|l| l["region"] == sysv_id.as_str()
            && l["event"] == "existing"
            && l["size"] == 4096)
    );
}
