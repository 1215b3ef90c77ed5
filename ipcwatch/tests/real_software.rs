//! Real software under the race detector (issue 19, item 6): programs
//! from Debian's packages, whose shared memory is synchronized, must give
//! 0 findings; and the detector must have armed words there, since a
//! detector that armed nothing proves nothing.
//!
//! SQLite in WAL mode: four `sqlite3` processes (Debian's CLI on Debian's
//! libsqlite3, no code of ours in the writers) write one database in many
//! short transactions. The WAL index, `DB-shm`, is mapped MAP_SHARED by
//! every connection and written by all of them: the write lock holder
//! appends hash entries and rewrites the index header on each commit,
//! readers take read marks; all under fcntl locks on that same file.
//! PostgreSQL under pgbench is too slow for CI: `cargo xtask postgres`.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

/// Seconds each writer keeps starting transactions.
const WRITE_SECS: u32 = 8;
const WRITERS: u32 = 4;

/// `bash -c` script, arguments DB SECS WRITERS. Creates the database in WAL
/// mode, then starts WRITERS `sqlite3` processes on it. Writer `w` runs
/// transactions `i` = 1, 2, ... for SECS seconds, each inserting row
/// (w, i) and bumping one shared counter, with a read transaction between
/// two writes, pausing 20 ms every 10 transactions; it writes how many it
/// sent to DB.count.w. The pause keeps the four writers near 1,000
/// transactions a second together: flat out they make about 30,000 fcntl
/// lock events a second, and the debug build of ipcwatch that the tests
/// run loses half of them, `mapping` lines included (the release build
/// keeps up). A writer whose `sqlite3` fails (`.bail on`: any error,
/// SQLITE_BUSY after the 60 s busy timeout included) fails the script.
const SCRIPT: &str = r#"
set -u
db=$1; secs=$2; writers=$3
sqlite3 -bail "$db" "PRAGMA journal_mode=WAL; CREATE TABLE rows(writer INTEGER, seq INTEGER, PRIMARY KEY(writer, seq)); CREATE TABLE counter(id INTEGER PRIMARY KEY, n INTEGER); INSERT INTO counter VALUES(0, 0);" >/dev/null || exit 1
pids=
w=1
while [ $w -le $writers ]; do
  ( i=0; SECONDS=0
    echo ".bail on"; echo ".timeout 60000"; echo "PRAGMA synchronous=NORMAL;"
    while [ $SECONDS -lt $secs ]; do
      i=$((i+1))
      echo "BEGIN IMMEDIATE; INSERT INTO rows VALUES($w, $i); UPDATE counter SET n = n + 1 WHERE id = 0; COMMIT;"
      echo "SELECT n FROM counter;"
      [ $((i % 10)) -eq 0 ] && sleep 0.02
    done
    echo $i > "$db.count.$w"
  ) | sqlite3 "$db" >/dev/null &
  pids="$pids $!"
  w=$((w+1))
done
for p in $pids; do wait $p || exit 1; done
"#;

/// Debian's sqlite3 must be there (`cargo xtask setup` installs it).
fn require_sqlite3() {
    let ok = Command::new("sqlite3")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "sqlite3 is missing: install Debian's sqlite3 package (apt-get install sqlite3; cargo xtask setup does)"
    );
}

fn query(db: &Path, sql: &str) -> String {
    let o = Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .expect("run sqlite3");
    assert!(
        o.status.success(),
        "sqlite3 {sql:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn sqlite_wal_with_four_writer_processes_has_no_race() {
    require_root();
    require_sqlite3();
    let dir = temp_dir();
    let db = dir.path().join("ipcwatch-wal.db");
    let db_arg = db.to_str().unwrap();
    let secs = WRITE_SECS.to_string();
    let writers = WRITERS.to_string();
    let t = record(&["--", "bash", "-c", SCRIPT, "bash", db_arg, &secs, &writers]);
    let summary = t.summary();
    assert_eq!(
        summary["command_status"],
        0,
        "the writers failed: {}",
        t.stderr()
    );

    // Every transaction a writer sent is in the database, once.
    let mut sent = 0u64;
    for w in 1..=WRITERS {
        let n: u64 = std::fs::read_to_string(dir.path().join(format!("ipcwatch-wal.db.count.{w}")))
            .expect("the writer's count")
            .trim()
            .parse()
            .unwrap();
        assert!(n > 0, "writer {w} committed nothing");
        let got = query(
            &db,
            &format!("SELECT count(*) || ' ' || max(seq) FROM rows WHERE writer = {w}"),
        );
        assert_eq!(got, format!("{n} {n}"), "writer {w}'s rows");
        sent += n;
    }
    assert_eq!(query(&db, "SELECT n FROM counter"), sent.to_string());
    assert_eq!(query(&db, "SELECT count(*) FROM rows"), sent.to_string());

    // The WAL index was seen as a shared region, mapped by the writers.
    let shm_ids: BTreeSet<String> = t
        .of_type("region")
        .filter(|r| {
            r["kind"] == "file"
                && r["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with("/ipcwatch-wal.db-shm"))
        })
        .map(|r| r["region"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        shm_ids.len(),
        1,
        "one region for the WAL index: {shm_ids:?}; regions: {:?}",
        t.of_type("region").collect::<Vec<_>>()
    );
    let shm = shm_ids.into_iter().next().unwrap();
    let mappers: BTreeSet<u64> = t
        .of_type("mapping")
        .filter(|m| m["region"] == shm.as_str() && m["event"] == "mapped")
        .map(|m| m["pid"].as_u64().unwrap())
        .collect();
    assert!(
        mappers.len() >= 2,
        "{shm} mapped by {mappers:?}, not by >= 2 writers"
    );

    // 0 findings.
    let races: Vec<&Value> = t.of_type("race").collect();
    assert!(
        races.is_empty(),
        "{} findings on SQLite's WAL index, e.g. {}",
        races.len(),
        races[0]
    );

    // What the detector armed, so that 0 findings means something.
    let det = &summary["detector"];
    eprintln!("{shm} mapped by {mappers:?}; {sent} transactions; detector: {det}");
    assert!(
        det.is_object(),
        "the summary has no `detector` object: {summary}"
    );
    assert!(
        det["regions"].as_u64().is_some_and(|n| n >= 1),
        "the detector sampled no region: {det}"
    );
    let armed: Vec<&Value> = det["words"]
        .as_array()
        .map(|w| w.iter().filter(|w| w["region"] == shm.as_str()).collect())
        .unwrap_or_default();
    assert!(!armed.is_empty(), "no word of {shm} was armed: {det}");
    assert_schema(&t.lines);
}
