//! Ring-buffer bytes -> decoder -> collector -> model -> NDJSON.
#![no_main]

use ipcwatch::collect::Collector;
use ipcwatch::sink::Sink;
use ipcwatch::decode::decode;
use ipcwatch::record::Record;
use libfuzzer_sys::fuzz_target;

struct Json;

impl Sink for Json {
    fn record(&mut self, r: &Record) -> std::io::Result<()> {
        // Every record must serialize and read back as itself.
        let line = serde_json::to_string(r).expect("serialize");
        let back: Record = serde_json::from_str(&line).expect("parse back");
        assert_eq!(&back, r);
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let mut collector = Collector::new();
    // Several events back to back, as the ring buffer hands them over.
    for chunk in data.chunks(400) {
        if let Ok(ev) = decode(chunk) {
            let _ = collector.ingest(&ev, &mut Json);
        }
    }
});
