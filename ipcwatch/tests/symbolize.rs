//! The symbolizer on corrupted binaries (issue 20), through the real
//! `ipcwatch symbolize-worker`: a truncated ELF file, garbled DWARF, a
//! garbage header, a file that is not ELF at all. Each costs its symbols,
//! never the worker (it answers) nor ipcwatch. No root needed.
//!
//! tests/data/bump-dwarf5.elf is tests/data/bump.c built with `gcc -g -O0`
//! (DWARF 5); `bump` starts at file offset 0x1139.

mod common;

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use common::*;
use ipcwatch::race::symbols::{TIME_LIMIT, WALL_LIMIT, Worker};

const BUMP: u64 = 0x1139;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bump-dwarf5.elf")
}

fn worker() -> Vec<OsString> {
    vec![ipcwatch().into(), "symbolize-worker".into()]
}

/// `bytes` as a file of its own.
fn file_of(dir: &Path, name: &str, bytes: &[u8]) -> File {
    let p = dir.join(name);
    File::create(&p).unwrap().write_all(bytes).unwrap();
    File::open(p).unwrap()
}

#[test]
fn corrupted_binaries_cost_their_symbols_not_the_worker() {
    let good = std::fs::read(data()).unwrap();
    let dir = temp_dir();
    let mut truncated_dwarf = good.clone();
    truncated_dwarf.truncate(good.len() - 2000);
    let mut garbled = good.clone();
    // Everything after the code and data (the symbol tables and the
    // DWARF sections) overwritten with a pattern.
    for (i, b) in garbled.iter_mut().enumerate().skip(0x3100) {
        *b = (i as u8).wrapping_mul(167) ^ 0x5a;
    }
    let mut header = good.clone();
    // Section headers pointing past the end, a huge section count.
    header[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
    header[0x3c..0x3e].copy_from_slice(&0xffffu16.to_le_bytes());
    let offsets = vec![0, BUMP, BUMP + 4, 0x40, u64::MAX];
    let files: Vec<(File, Vec<u64>)> = [
        ("good", good.clone()),
        ("truncated-half", good[..good.len() / 2].to_vec()),
        ("truncated-dwarf", truncated_dwarf),
        ("garbled", garbled),
        ("bad-header", header),
        ("not-elf", b"#!/bin/sh\necho hello\n".to_vec()),
        ("empty", Vec::new()),
    ]
    .iter()
    .map(|(name, bytes)| (file_of(dir.path(), name, bytes), offsets.clone()))
    .collect();
    let mut w = Worker::spawn(&worker()).unwrap();
    let answer = w
        .symbolize(&files, TIME_LIMIT, WALL_LIMIT)
        .expect("the worker answers");
    assert_eq!(answer.len(), files.len());
    for a in &answer {
        assert_eq!(a.len(), offsets.len());
    }
    // The intact file: bump, from its DWARF (file and line).
    let bump = answer[0][1].as_ref().expect("bump is found");
    assert_eq!(bump.name, "bump");
    assert_eq!(bump.offset, 0);
    assert!(
        bump.file.as_deref().unwrap_or("").ends_with(".c"),
        "{bump:?}"
    );
    assert_eq!(answer[0][2].as_ref().map(|s| s.offset), Some(4));
    // Nothing found in a file that is not ELF, or empty, or at offsets
    // outside any segment.
    assert!(answer[5].iter().all(Option::is_none), "{:?}", answer[5]);
    assert!(answer[6].iter().all(Option::is_none), "{:?}", answer[6]);
    assert!(answer.iter().all(|a| a[4].is_none()));
    // The same worker answers again (it keeps what it parsed), for the
    // intact file opened anew.
    let again = vec![(File::open(data()).unwrap(), vec![BUMP])];
    let answer = w
        .symbolize(&again, TIME_LIMIT, WALL_LIMIT)
        .expect("a second answer");
    assert_eq!(answer[0][0].as_ref().map(|s| s.name.as_str()), Some("bump"));
}

#[test]
fn the_worker_started_by_hand_says_what_it_needs() {
    let o = std::process::Command::new(ipcwatch())
        .arg("symbolize-worker")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim(),
        "ipcwatch symbolize-worker: no request socket at descriptor 3 (ipcwatch starts this worker itself)"
    );
}

/// The first input the `symbolize` fuzz target found: blazesym 0.2.7
/// overflows an addition in `elf::parser::find_sym` (a panic where
/// overflow checks are on, as in this debug build). The worker catches it
/// and answers without the symbols.
#[test]
fn a_panic_of_the_parser_costs_only_the_symbols() {
    let input =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/blazesym-find-sym-add-overflow.elf");
    let bytes = std::fs::read(&input).unwrap();
    let len = bytes.len() as u64;
    // The offsets the fuzz target asked for.
    let mut offsets = vec![0, 0x40, 0x1139, len / 2, len + 1];
    for c in bytes.rchunks_exact(8).take(4) {
        offsets.push(u64::from_le_bytes(c.try_into().unwrap()) % (len + 1));
    }
    let mut w = Worker::spawn(&worker()).unwrap();
    let answer = w
        .symbolize(
            &[(File::open(&input).unwrap(), offsets.clone())],
            TIME_LIMIT,
            WALL_LIMIT,
        )
        .expect("the worker answers");
    assert_eq!(answer[0].len(), offsets.len());
    // And it goes on answering.
    let again = w
        .symbolize(
            &[(File::open(data()).unwrap(), vec![BUMP])],
            TIME_LIMIT,
            WALL_LIMIT,
        )
        .expect("a second answer");
    assert_eq!(again[0][0].as_ref().map(|s| s.name.as_str()), Some("bump"));
}
