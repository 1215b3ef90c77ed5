//! Untrusted text made safe to show a person: the one sanitizer of every
//! human-facing output (analyze's text, record's warnings and errors on
//! standard error, the diagnostics, doctor, graph's DOT labels, the TUI).
//!
//! Traced processes choose their names, their files' and queues' names and
//! the binaries stacks are symbolized from (docs/security.md). A name such
//! as `"\x1b]0;PWNED\x07"` printed raw would set the title of the terminal
//! of whoever reads the report. [`clean`] shows every character that a
//! terminal could act on as an escape instead:
//!
//! - C0 controls and DEL as `\n`, `\t`, `\r` or `\x1b`;
//! - C1 controls (U+0080..U+009F, which some terminals take for ESC and
//!   a letter) and the bidirectional overrides and isolates (U+202E...,
//!   which reorder what follows) as `\u{9b}`, `\u{202e}`;
//! - the backslash itself as `\\`, so an escape cannot be forged: the
//!   name `\x1b` (four characters) shows as `\\x1b`.
//!
//! Bytes that are not UTF-8 ([`clean_bytes`]) show as `\xff`. The JSON
//! outputs do not go through here: they keep every string exact (JSON
//! escapes control characters itself).

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::io;

/// Whether `c` is shown as an escape.
fn needs_escape(c: char) -> bool {
    matches!(c,
        '\0'..='\x1f' | '\x7f' | '\u{80}'..='\u{9f}' | '\\'
        // Bidirectional marks, embeddings, overrides and isolates.
        | '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        // Line and paragraph separators: line breaks for some readers.
        | '\u{2028}' | '\u{2029}')
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        '\\' => out.push_str("\\\\"),
        c if (c as u32) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

/// `s` with every control character, bidirectional control and backslash
/// shown as an escape (borrowed when there is none).
pub fn clean(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

/// [`clean`], with the backslash escaped or left as it is.
fn escape(s: &str, backslash: bool) -> Cow<'_, str> {
    let needs = |c: char| needs_escape(c) && (backslash || c != '\\');
    let Some(first) = s.find(needs) else {
        return Cow::Borrowed(s);
    };
    let mut out = String::with_capacity(s.len() + 8);
    out.push_str(&s[..first]);
    for c in s[first..].chars() {
        if needs(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// [`clean`] for bytes that may not be UTF-8 (paths, `OsStr`): what is not
/// UTF-8 shows byte by byte as `\xff`.
pub fn clean_bytes(b: &[u8]) -> Cow<'_, str> {
    escape_bytes(b, true)
}

fn escape_bytes(b: &[u8], backslash: bool) -> Cow<'_, str> {
    match std::str::from_utf8(b) {
        Ok(s) => escape(s, backslash),
        Err(_) => {
            let mut out = String::with_capacity(b.len() + 8);
            for chunk in b.utf8_chunks() {
                out.push_str(&escape(chunk.valid(), backslash));
                for byte in chunk.invalid() {
                    let _ = write!(out, "\\x{byte:02x}");
                }
            }
            Cow::Owned(out)
        }
    }
}

/// A path as [`clean_bytes`] shows it.
pub fn clean_path(p: &std::path::Path) -> Cow<'_, str> {
    use std::os::unix::ffi::OsStrExt;
    clean_bytes(p.as_os_str().as_bytes())
}

/// `format!("{}", Clean(s))` is `clean(s)`, without the allocation.
pub struct Clean<'a>(pub &'a str);

impl fmt::Display for Clean<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&clean(self.0))
    }
}

/// The inside of a DOT double-quoted string (the quotes are the caller's):
/// [`clean`], then `"` as `\"`. Graphviz reads `\\` as a backslash, and the
/// escapes [`clean`] writes (`\n`, `\x1b`) come out as a backslash and
/// text, never as a line break or a control character: `\n`, `\l` and `\r`
/// would be line breaks in a label, so every backslash [`clean`] writes is
/// doubled once more.
pub fn dot_label(s: &str) -> String {
    let cleaned = clean(s);
    let mut out = String::with_capacity(cleaned.len() + 4);
    for c in cleaned.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out
}

/// A writer (standard error, for the diagnostics) that shows every control
/// character of what goes through it as an escape, except the line ends
/// and tabs its lines are made of. Invalid UTF-8 shows as `\xff`.
pub struct CleanWriter<W: io::Write>(pub W);

impl<W: io::Write> io::Write for CleanWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut out = String::with_capacity(buf.len() + 8);
        for line in buf.split_inclusive(|&b| b == b'\n') {
            let (body, end) = match line.split_last() {
                Some((b'\n', body)) => (body, "\n"),
                _ => (line, ""),
            };
            for (i, part) in body.split(|&b| b == b'\t').enumerate() {
                if i > 0 {
                    out.push('\t');
                }
                // A message's backslashes are its own: only controls change.
                out.push_str(&escape_bytes(part, false));
            }
            out.push_str(end);
        }
        self.0.write_all(out.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Whether `s` holds a byte a terminal would act on (what [`clean`]
/// escapes, backslash aside): for tests of every output.
pub fn has_control(s: &str) -> bool {
    s.chars().any(|c| c != '\\' && needs_escape(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_become_visible() {
        assert_eq!(
            clean("\x1b]0;PWNED\x07\x1b[2J"),
            "\\x1b]0;PWNED\\x07\\x1b[2J"
        );
        assert_eq!(clean("a\nb\tc\rd\x7f\0"), "a\\nb\\tc\\rd\\x7f\\x00");
        assert_eq!(clean("x\u{9b}31m"), "x\\u{9b}31m");
        assert_eq!(clean("\u{85}"), "\\u{85}");
        assert_eq!(clean("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        assert_eq!(clean("\u{2066}a\u{2069}"), "\\u{2066}a\\u{2069}");
        assert!(!has_control(&clean("\x1b\u{9b}\u{202e}\u{2028}\n")));
    }

    #[test]
    fn plain_text_is_borrowed_and_unchanged() {
        for s in ["bash", "/tmp/a b/\"q\"", "pipe:[123]", "naïve ✓ 名前", ""] {
            assert!(matches!(clean(s), Cow::Borrowed(x) if x == s));
        }
    }

    #[test]
    fn an_escape_cannot_be_forged() {
        // The four characters \x1b and the escape byte look different.
        assert_eq!(clean("\\x1b"), "\\\\x1b");
        assert_ne!(clean("\\x1b"), clean("\x1b"));
    }

    #[test]
    fn invalid_utf8_is_shown_byte_by_byte() {
        assert_eq!(clean_bytes(b"a\xffb\xc3"), "a\\xffb\\xc3");
        assert_eq!(clean_bytes(b"\x1b\xfe"), "\\x1b\\xfe");
        assert_eq!(clean_bytes("é".as_bytes()), "é");
        use std::os::unix::ffi::OsStrExt;
        let p = std::path::Path::new(std::ffi::OsStr::from_bytes(b"/tmp/\xff\n"));
        assert_eq!(clean_path(p), "/tmp/\\xff\\n");
    }

    #[test]
    fn display_pads_the_cleaned_text() {
        assert_eq!(format!("[{:<6}]", Clean("a\x07")), "[a\\x07 ]");
    }

    #[test]
    fn dot_labels_escape_quotes_and_backslashes() {
        assert_eq!(dot_label("a\"b"), "a\\\"b");
        assert_eq!(dot_label("a\\b"), "a\\\\\\\\b");
        // A newline is the text \n, which DOT must not read as a break:
        // the backslash is doubled.
        assert_eq!(dot_label("a\nb"), "a\\\\nb");
        assert_eq!(dot_label("\x1b[2J"), "\\\\x1b[2J");
        assert!(!dot_label("\"\n\x1b\u{202e}").contains(['\n', '\x1b', '\u{202e}']));
    }

    #[test]
    fn the_writer_keeps_line_ends_and_tabs() {
        use std::io::Write;
        let mut w = CleanWriter(Vec::new());
        w.write_all(b"warn: \x1b[31mred\x1b[0m\tpath\\x \xff\n")
            .unwrap();
        let out = String::from_utf8(w.0).unwrap();
        assert_eq!(out, "warn: \\x1b[31mred\\x1b[0m\tpath\\x \\xff\n");
    }
}
