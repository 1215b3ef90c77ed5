//! Reading a trace back: one reader ([`TraceReader`]: the header checked
//! first, errors that name the line) and one replay ([`Replay`]: the
//! trace's records plus what is recomputed from them) for `analyze`,
//! `graph` and the TUI.

use std::io::{self, BufRead};

use crate::model::Model;
use crate::race::Analyses;
use crate::record::{FORMAT_NAME, FORMAT_VERSION, Record, Summary};

/// Longest line the reader accepts.
pub const MAX_LINE: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("line {line}: {msg}")]
    Line { line: u64, msg: String },
    #[error("the trace is empty (no header line)")]
    Empty,
    #[error("reading the trace: {0}")]
    Io(#[from] io::Error),
}

/// Reads records from an NDJSON trace, checking the header first.
pub struct TraceReader<R> {
    input: R,
    line: u64,
    buf: Vec<u8>,
    header_seen: bool,
}

impl<R: BufRead> TraceReader<R> {
    pub fn new(input: R) -> Self {
        TraceReader {
            input,
            line: 0,
            buf: Vec::new(),
            header_seen: false,
        }
    }

    /// Line number of the last record returned.
    pub fn line(&self) -> u64 {
        self.line
    }

    fn err(&self, msg: impl Into<String>) -> TraceError {
        TraceError::Line {
            line: self.line,
            msg: msg.into(),
        }
    }

    /// Read one line into `buf`, refusing lines over [`MAX_LINE`] without
    /// holding them in memory. Returns false at end of input.
    fn read_line(&mut self) -> Result<bool, TraceError> {
        self.buf.clear();
        self.line += 1;
        let mut too_long = false;
        loop {
            let chunk = self.input.fill_buf()?;
            if chunk.is_empty() {
                if too_long {
                    return Err(self.err(format!("line longer than {MAX_LINE} bytes")));
                }
                return Ok(!self.buf.is_empty());
            }
            let (part, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (&chunk[..i], Some(i + 1)),
                None => (chunk, None),
            };
            if !too_long {
                if self.buf.len() + part.len() > MAX_LINE {
                    too_long = true;
                    self.buf.clear();
                } else {
                    self.buf.extend_from_slice(part);
                }
            }
            let used = done.unwrap_or(chunk.len());
            self.input.consume(used);
            if done.is_some() {
                if too_long {
                    return Err(self.err(format!("line longer than {MAX_LINE} bytes")));
                }
                return Ok(true);
            }
        }
    }

    /// The next record, `Ok(None)` at the end.
    pub fn next_record(&mut self) -> Result<Option<Record>, TraceError> {
        loop {
            if !self.read_line()? {
                if !self.header_seen {
                    return Err(TraceError::Empty);
                }
                return Ok(None);
            }
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let record: Record = serde_json::from_slice(&self.buf)
                .map_err(|e| self.err(format!("not a valid ipcwatch record: {e}")))?;
            if !self.header_seen {
                match &record {
                    Record::Header(h) if h.format == FORMAT_NAME => {
                        if h.version != FORMAT_VERSION {
                            return Err(self.err(format!(
                                "trace format version {} is not supported (this ipcwatch reads version {FORMAT_VERSION})",
                                h.version
                            )));
                        }
                    }
                    Record::Header(h) => {
                        return Err(self.err(format!("unknown trace format {:?}", h.format)));
                    }
                    _ => {
                        return Err(
                            self.err("the first line must be the header (\"type\":\"header\")")
                        );
                    }
                }
                self.header_seen = true;
            }
            if matches!(record, Record::Unknown) {
                continue;
            }
            return Ok(Some(record));
        }
    }
}

/// A trace replayed: its records in order, each followed by the findings
/// that are recomputed from the records (pipe interleaving, the deep-mode
/// happens-before analysis). The summary line is passed on like any other
/// record (the model ignores it) and kept in [`Replay::summary`].
pub struct Replay<R> {
    reader: TraceReader<R>,
    analyses: Analyses,
    derived: Option<Record>,
    /// The trace's own summary line, once read (a trace cut short by a
    /// crash has none).
    pub summary: Option<Summary>,
}

impl<R: BufRead> Replay<R> {
    /// Replay the trace `input`, from its header line.
    pub fn new(input: R) -> Self {
        Replay {
            reader: TraceReader::new(input),
            analyses: Analyses::offline(),
            derived: None,
            summary: None,
        }
    }

    /// Line number of the last record read.
    pub fn line(&self) -> u64 {
        self.reader.line()
    }

    /// The next record, `Ok(None)` at the end.
    pub fn next_record(&mut self) -> Result<Option<Record>, TraceError> {
        if let Some(d) = self.derived.take() {
            return Ok(Some(d));
        }
        let Some(record) = self.reader.next_record()? else {
            return Ok(None);
        };
        if let Record::Summary(s) = &record {
            self.summary = Some(s.clone());
        }
        self.derived = self.analyses.apply(&record).map(Record::Race);
        Ok(Some(record))
    }

    /// Every record left, into `model`. On a bad line, the records before
    /// it stay applied.
    pub fn apply_all(&mut self, model: &mut Model) -> Result<(), TraceError> {
        while let Some(record) = self.next_record()? {
            model.apply(&record);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::test_header as header;

    fn read_all(text: &[u8]) -> Result<Vec<Record>, TraceError> {
        let mut r = TraceReader::new(text);
        let mut v = Vec::new();
        while let Some(rec) = r.next_record()? {
            v.push(rec);
        }
        Ok(v)
    }

    #[test]
    fn reads_a_trace_and_skips_unknown_types() {
        let t = format!(
            "{}\n{{\"type\":\"from_the_future\",\"ts_ns\":2}}\n\n{{\"type\":\"warning\",\"ts_ns\":3,\"message\":\"m\"}}\n",
            header(1)
        );
        let v = read_all(t.as_bytes()).unwrap();
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn bad_traces_name_the_line() {
        assert!(matches!(read_all(b""), Err(TraceError::Empty)));
        let e = read_all(format!("{}\n", header(9)).as_bytes()).unwrap_err();
        assert!(
            e.to_string().starts_with("line 1: trace format version 9"),
            "{e}"
        );
        let e = read_all(b"{\"type\":\"warning\",\"ts_ns\":3,\"message\":\"m\"}\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("line 1: the first line must be the header")
        );
        let t = format!("{}\n{{\"type\":\"io\",\"ts_ns\":", header(1));
        let e = read_all(t.as_bytes()).unwrap_err();
        assert!(e.to_string().starts_with("line 2: not a valid"), "{e}");
        let t = format!("{}\n\u{1}\u{2}garbage\n", header(1));
        assert!(
            read_all(t.as_bytes())
                .unwrap_err()
                .to_string()
                .starts_with("line 2")
        );
    }

    #[test]
    fn refuses_huge_lines_without_buffering_them() {
        let mut t = header(1).into_bytes();
        t.push(b'\n');
        t.extend(std::iter::repeat_n(b'x', MAX_LINE * 3));
        t.push(b'\n');
        let e = read_all(&t).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("line 2: line longer than {MAX_LINE} bytes")
        );
    }
}
