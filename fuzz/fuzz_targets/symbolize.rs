//! Corrupted ELF and DWARF files through the symbolize path: the part of
//! ipcwatch that parses binaries a traced process may have written (run
//! by `ipcwatch symbolize-worker`). Any file, any offsets: an answer per
//! offset, never a crash.
//!
//! What is checked is ipcwatch's promise: no panic *escapes*
//! `symbolize_file` (it catches the parser's, which cost the symbols), and
//! no abort, memory error, hang or runaway memory. libFuzzer's panic hook
//! aborts on every panic, caught or not, so it is replaced by a quiet one.
//! A panic the parser raises is a bug in blazesym all the same: its first
//! was kept (docs/fuzzing.md).
#![no_main]

use ipcwatch::race::symbols::symbolize_file;
use libfuzzer_sys::fuzz_target;

fuzz_target!(init: {
    std::panic::set_hook(Box::new(|_| {}));
}, |data: &[u8]| {
    let path = std::env::temp_dir().join(format!(
        "ipcwatch-fuzz-symbolize-{}.elf",
        std::process::id()
    ));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    // Offsets at the start, in the middle, past the end, and some taken
    // from the input's last bytes (so the fuzzer steers them too).
    let len = data.len() as u64;
    let mut offsets = vec![0, 0x40, 0x1139, len / 2, len + 1];
    for c in data.rchunks_exact(8).take(4) {
        let v = u64::from_le_bytes(c.try_into().unwrap_or_default());
        offsets.push(v % (len + 1));
    }
    let syms = symbolize_file(&path, &offsets);
    assert_eq!(syms.len(), offsets.len());
});
