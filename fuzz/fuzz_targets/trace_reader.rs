//! Arbitrary bytes as a trace file: the reader and the model must never
//! panic, whatever the file holds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (analysis, _error) = ipcwatch::report::analyze::replay(data);
    let _ = analysis.text();
    let _ = analysis.json();
});
