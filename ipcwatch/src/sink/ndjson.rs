//! The NDJSON sink: records written as trace lines (a hand-written fast
//! path for the hot line types, serde_json for the rest). Reading them
//! back is [`crate::trace`].

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::Sink;
use crate::record::Record;

/// The output of a trace, as [`NdjsonWriter::create`] opens it: `-` is
/// standard output; a file is created with mode 0600 and is never opened
/// through a symbolic link.
pub fn open_output(path: &str) -> io::Result<Box<dyn Write + Send>> {
    if path == "-" {
        return Ok(Box::new(io::stdout()));
    }
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(Path::new(path))?;
    Ok(Box::new(file))
}

/// Why [`open_output`] failed, said plainly: a symbolic link is refused
/// (O_NOFOLLOW fails with ELOOP).
pub fn output_error(e: &io::Error) -> String {
    if e.raw_os_error() == Some(libc::ELOOP) {
        "it is a symbolic link, and ipcwatch never writes through one".into()
    } else {
        e.to_string()
    }
}

/// Bytes of whole lines held before they are written out.
const BUFFER: usize = 1 << 16;

pub struct NdjsonWriter {
    out: Box<dyn Write + Send>,
    /// Lines not written out yet. Records are encoded straight into it, so
    /// a line is copied once, by the write (a BufWriter would copy it in
    /// first).
    buf: Vec<u8>,
    /// With `--rotate-size`: where the file rolls over.
    rotation: Option<Rotation>,
}

/// Size-based rotation of a trace file: once FILE holds `size` bytes
/// (passed by one line at most), FILE.(N-1) becomes FILE.N (the oldest,
/// FILE.`keep`, is removed), ..., FILE becomes FILE.1, and a new FILE
/// starts with the header line again, so that each file reads as a trace
/// of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotate {
    /// Bytes per file, at least [`MIN_ROTATE_SIZE`].
    pub size: u64,
    /// Older files kept besides FILE: FILE.1 ... FILE.keep (0: none).
    pub keep: u32,
}

/// The smallest `--rotate-size`.
pub const MIN_ROTATE_SIZE: u64 = 4096;

struct Rotation {
    path: String,
    rule: Rotate,
    /// Bytes written to the current file (buffered lines not included).
    written: u64,
    /// The header line, newline included, once written.
    header: Option<Vec<u8>>,
}

impl NdjsonWriter {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        NdjsonWriter {
            out,
            buf: Vec::with_capacity(BUFFER + 4096),
            rotation: None,
        }
    }

    /// `-` is standard output. A file is created with mode 0600 and is
    /// never opened through a symbolic link.
    pub fn create(path: &str) -> io::Result<Self> {
        Ok(Self::new(open_output(path)?))
    }

    /// A file (not `-`), created as [`create`](Self::create) does, that
    /// rotates by `rule`.
    pub fn create_rotating(path: &str, rule: Rotate) -> io::Result<Self> {
        if path == "-" {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "standard output cannot be rotated",
            ));
        }
        let mut w = Self::create(path)?;
        w.rotation = Some(Rotation {
            path: path.to_string(),
            rule,
            written: 0,
            header: None,
        });
        Ok(w)
    }

    /// Write out the buffered lines (dropped if that fails).
    fn write_out(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let written = self.out.write_all(&self.buf);
        if let Some(r) = &mut self.rotation {
            r.written += self.buf.len() as u64;
        }
        self.buf.clear();
        written
    }

    /// After each line: roll the file over once it is full (and its
    /// header is known).
    fn maybe_rotate(&mut self) -> io::Result<()> {
        let Some(r) = &self.rotation else {
            return Ok(());
        };
        if r.header.is_none() || r.written + (self.buf.len() as u64) < r.rule.size {
            return Ok(());
        }
        self.write_out()?;
        self.out.flush()?;
        let Some(r) = &mut self.rotation else {
            return Ok(());
        };
        let name = |i: u32| format!("{}.{i}", r.path);
        if r.rule.keep == 0 {
            std::fs::remove_file(&r.path)?;
        } else {
            // FILE.keep is replaced by the rename below.
            for i in (1..r.rule.keep).rev() {
                match std::fs::rename(name(i), name(i + 1)) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    other => other?,
                }
            }
            std::fs::rename(&r.path, name(1))?;
        }
        // FILE is gone: a new one, never through a symbolic link (one
        // put there since is refused by O_EXCL).
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(Path::new(&r.path))?;
        self.out = Box::new(file);
        r.written = 0;
        if let Some(h) = &r.header {
            self.buf.extend_from_slice(h);
        }
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.write_out()?;
        self.out.flush()
    }
}

impl Drop for NdjsonWriter {
    fn drop(&mut self) {
        // As a BufWriter does: what can be written is.
        let _ = self.write_out();
    }
}

/// One record as one NDJSON line, newline included, into `line`.
pub fn encode(line: &mut Vec<u8>, record: &Record) -> io::Result<()> {
    match record {
        Record::Io(r) if fast::io_line(line, r) => {}
        _ => serde_json::to_writer(&mut *line, record)?,
    }
    line.push(b'\n');
    Ok(())
}

/// `io` lines, most lines of a trace, written directly: the bytes
/// serde_json writes for them (a test checks), without a call per field
/// and per token. Lines with rare parts go through serde_json.
mod fast {
    use crate::record::{Io, Op};

    fn num(line: &mut Vec<u8>, n: impl itoa::Integer) {
        line.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    }

    /// A JSON string, escaped as serde_json escapes it.
    fn string(line: &mut Vec<u8>, s: &str) {
        if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            line.push(b'"');
            line.extend_from_slice(s.as_bytes());
            line.push(b'"');
        } else {
            // Writing to a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *line, s);
        }
    }

    /// Write `io` and return true, or return false (nothing written) for
    /// serde_json to write it.
    pub fn io_line(line: &mut Vec<u8>, io: &Io) -> bool {
        let ext = &io.ext;
        if ext.addr.is_some()
            || ext.scm_rights.is_some()
            || ext.scm_credentials.is_some()
            || ext.calls.is_some()
        {
            return false;
        }
        line.extend_from_slice(b"{\"type\":\"io\",\"ts_ns\":");
        num(line, io.ts_ns);
        line.extend_from_slice(b",\"kind\":\"");
        line.extend_from_slice(io.kind.as_str().as_bytes());
        line.extend_from_slice(match io.op {
            Op::Read => b"\",\"op\":\"read\",\"channel\":",
            Op::Write => b"\",\"op\":\"write\",\"channel\":",
        });
        string(line, &io.channel);
        line.extend_from_slice(b",\"pid\":");
        num(line, io.pid);
        line.extend_from_slice(b",\"tid\":");
        num(line, io.tid);
        line.extend_from_slice(b",\"comm\":");
        string(line, &io.comm);
        line.extend_from_slice(b",\"bytes\":");
        num(line, io.bytes);
        line.extend_from_slice(b",\"fd\":");
        num(line, io.fd);
        line.extend_from_slice(b",\"syscall\":");
        string(line, &io.syscall);
        if let Some(t) = io.start_ns {
            line.extend_from_slice(b",\"start_ns\":");
            num(line, t);
        }
        if let Some(n) = ext.msgs {
            line.extend_from_slice(b",\"msgs\":");
            num(line, n);
        }
        if let Some(n) = ext.priority {
            line.extend_from_slice(b",\"priority\":");
            num(line, n);
        }
        if let Some(n) = ext.mtype {
            line.extend_from_slice(b",\"mtype\":");
            num(line, n);
        }
        if let Some(n) = ext.key {
            line.extend_from_slice(b",\"key\":");
            num(line, n);
        }
        if let Some(d) = &ext.data {
            line.extend_from_slice(b",\"data\":");
            string(line, d);
        }
        line.push(b'}');
        true
    }
}

impl Sink for NdjsonWriter {
    fn record(&mut self, record: &Record) -> io::Result<()> {
        // A full file rotates when the next line comes, so that the last
        // line (the summary) is never followed by a file of a header only.
        self.maybe_rotate()?;
        let start = self.buf.len();
        if let Err(e) = encode(&mut self.buf, record) {
            self.buf.truncate(start);
            return Err(e);
        }
        if let Some(r) = &mut self.rotation
            && r.header.is_none()
            && matches!(record, Record::Header(_))
        {
            r.header = Some(self.buf[start..].to_vec());
        }
        if self.buf.len() >= BUFFER {
            self.write_out()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        NdjsonWriter::flush(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::test_header as header;

    #[test]
    fn io_lines_are_written_as_serde_json_writes_them() {
        use crate::record::{ChannelKind, Credentials, Io, Op};
        let base = Io {
            ts_ns: 1,
            kind: ChannelKind::Pipe,
            op: Op::Write,
            channel: "pipe:[7]".into(),
            pid: 10,
            tid: 11,
            comm: "sh".into(),
            bytes: 100,
            fd: 3,
            syscall: "write".into(),
            start_ns: None,
            ext: Default::default(),
        };
        let mut cases = vec![base.clone()];
        for comm in [
            "",
            "a\"b",
            "back\\slash",
            "tab\there",
            "\u{1}\u{1f}\u{7f}",
            "\u{e9}\u{65e5}\u{1f600}",
            "line\nbreak\r\u{8}\u{c}",
        ] {
            let mut io = base.clone();
            io.comm = comm.into();
            io.channel = format!("unix:[{comm}]").into();
            cases.push(io);
        }
        for kind in ChannelKind::ALL
            .into_iter()
            .filter(|k| *k != ChannelKind::Pipe)
        {
            let mut io = base.clone();
            io.kind = kind;
            io.op = Op::Read;
            cases.push(io);
        }
        let mut io = base.clone();
        io.ts_ns = u64::MAX;
        io.pid = u32::MAX;
        io.bytes = 0;
        io.fd = -1;
        io.start_ns = Some(0);
        io.ext.msgs = Some(3);
        io.ext.priority = Some(u32::MAX);
        io.ext.mtype = Some(-5);
        io.ext.key = Some(i64::MIN);
        io.ext.data = Some("00ff7a".into());
        cases.push(io.clone());
        io.ext.addr = Some("/tmp/s\"ock".into());
        cases.push(io.clone());
        io.ext.scm_rights = Some(vec![4, 5]);
        io.ext.scm_credentials = Some(Credentials {
            pid: 1,
            uid: 2,
            gid: 3,
        });
        cases.push(io);
        for io in cases {
            let record = Record::Io(io);
            let mut line = Vec::new();
            encode(&mut line, &record).unwrap();
            let want = serde_json::to_string(&record).unwrap() + "\n";
            assert_eq!(String::from_utf8(line).unwrap(), want);
        }
    }

    /// 300 io lines through a writer that rotates at 4 KiB and keeps 2:
    /// FILE.2, FILE.1 and FILE hold the last lines, in order, each after
    /// the header; the rotated ones hold 4 KiB, passed by one line at most.
    #[test]
    fn rotation_keeps_n_files_each_starting_with_the_header() {
        use crate::record::{ChannelKind, Io, Op};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.ndjson");
        let path = path.to_str().unwrap();
        let rule = Rotate {
            size: 4096,
            keep: 2,
        };
        let mut w = NdjsonWriter::create_rotating(path, rule).unwrap();
        let h: Record = serde_json::from_str(&header(1)).unwrap();
        w.record(&h).unwrap();
        let io = |ts: u64| {
            Record::Io(Io {
                ts_ns: ts,
                kind: ChannelKind::Pipe,
                op: Op::Write,
                channel: "pipe:[7]".into(),
                pid: 10,
                tid: 10,
                comm: "sh".into(),
                bytes: 1,
                fd: 3,
                syscall: "write".into(),
                start_ns: None,
                ext: Default::default(),
            })
        };
        // ts 1000..1299: lines of one length.
        for ts in 1000..1300 {
            w.record(&io(ts)).unwrap();
        }
        drop(w);
        let read = |p: &str| std::fs::read_to_string(p).unwrap();
        assert!(!Path::new(&format!("{path}.3")).exists());
        let files = [
            read(&format!("{path}.2")),
            read(&format!("{path}.1")),
            read(path),
        ];
        let line_len = serde_json::to_string(&io(1000)).unwrap().len() as u64 + 1;
        let mut all = Vec::new();
        for (i, f) in files.iter().enumerate() {
            let mut lines = f.lines();
            assert_eq!(lines.next(), Some(header(1).as_str()), "file {i}");
            if i < 2 {
                let len = f.len() as u64;
                assert!((4096..4096 + line_len).contains(&len), "file {i}: {len}");
            }
            for l in lines {
                let r: Record = serde_json::from_str(l).unwrap();
                all.push(r.ts_ns().unwrap());
            }
        }
        // The lines of the three files are the last ones written, in order.
        let per_file = (4096 - header(1).len() as u64 - 1).div_ceil(line_len);
        assert_eq!(files[0].lines().count() as u64, per_file + 1);
        let first = *all.first().unwrap();
        assert_eq!(all, (first..1300).collect::<Vec<_>>());
        // Each rotated file holds per_file lines; FILE what is left.
        assert_eq!(1300 - first, 2 * per_file + 300 % per_file);
        // Files are created 0600.
        use std::os::unix::fs::PermissionsExt;
        for p in [path.to_string(), format!("{path}.1")] {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{p}");
        }
        // Standard output cannot rotate.
        assert!(
            NdjsonWriter::create_rotating(
                "-",
                Rotate {
                    size: 4096,
                    keep: 1
                }
            )
            .is_err()
        );
    }

    /// An output the test can look at after the writer has it.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_writer_buffers_whole_lines_until_flush_or_drop() {
        let out = Shared::default();
        let mut w = NdjsonWriter::new(Box::new(out.clone()));
        let h: Record = serde_json::from_str(&header(1)).unwrap();
        w.record(&h).unwrap();
        assert!(out.0.lock().unwrap().is_empty());
        NdjsonWriter::flush(&mut w).unwrap();
        assert_eq!(
            *out.0.lock().unwrap(),
            format!("{}\n", header(1)).into_bytes()
        );
        // Past the buffer size, whole lines go out without a flush.
        let n = BUFFER / header(1).len() + 2;
        for _ in 0..n {
            w.record(&h).unwrap();
        }
        let len = out.0.lock().unwrap().len();
        assert!(len > BUFFER && len % (header(1).len() + 1) == 0, "{len}");
        w.record(&h).unwrap();
        drop(w);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), n + 2);
    }
}
