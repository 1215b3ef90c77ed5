//! docs/ndjson.md as the man page ipcwatch-ndjson(5): markdown read with
//! pulldown-cmark, written with roff (which escapes what roff would read
//! as requests).

use pulldown_cmark::{Event, HeadingLevel, Parser, Tag, TagEnd};
use roff::{Inline, Roff, bold, italic, roman};

/// The page, titled `IPCWATCH-NDJSON(5)`, for version `version`.
pub fn ndjson_page(markdown: &str, version: &str) -> String {
    let mut roff = Roff::new();
    roff.control(
        "TH",
        [
            "IPCWATCH-NDJSON",
            "5",
            "",
            &format!("ipcwatch {version}"),
            "File Formats",
        ],
    );
    roff.control("SH", ["NAME"]);
    roff.text([roman(
        "ipcwatch-ndjson - the trace format of ipcwatch record",
    )]);
    let mut w = Writer {
        roff,
        line: Vec::new(),
        styles: Vec::new(),
        cells: Vec::new(),
        in_head: false,
        in_code: false,
        skip: false,
    };
    for event in Parser::new_ext(markdown, pulldown_cmark::Options::ENABLE_TABLES) {
        w.event(event);
    }
    w.roff.control("SH", ["SEE ALSO"]);
    w.roff.text([roman(
        "ipcwatch(8), ipcwatch-record(8), ipcwatch-analyze(8); the JSON Schema of a line: \
         /usr/share/doc/ipcwatch/ndjson.schema.json",
    )]);
    w.roff.render()
}

#[derive(Clone, Copy)]
enum Style {
    Bold,
    Italic,
}

struct Writer {
    roff: Roff,
    /// The inlines of the paragraph, heading, item or cell being read.
    line: Vec<Inline>,
    styles: Vec<Style>,
    /// The cells of the table row being read.
    cells: Vec<Vec<Inline>>,
    in_head: bool,
    in_code: bool,
    /// Inside the title (`#`): the page has its own NAME.
    skip: bool,
}

impl Writer {
    fn push_text(&mut self, text: &str, code: bool) {
        if self.skip {
            return;
        }
        let inline = match (code, self.styles.last()) {
            (true, _) | (false, Some(Style::Bold)) => bold(text),
            (false, Some(Style::Italic)) => italic(text),
            (false, None) => roman(text),
        };
        self.line.push(inline);
    }

    fn flush(&mut self, request: Option<(&str, &[&str])>) {
        let line = std::mem::take(&mut self.line);
        if let Some((name, args)) = request {
            self.roff.control(name, args.iter().copied());
        }
        if !line.is_empty() {
            self.roff.text(line);
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                self.skip = level == HeadingLevel::H1;
            }
            Event::End(TagEnd::Heading(level)) => {
                let text = plain(&std::mem::take(&mut self.line));
                match level {
                    HeadingLevel::H1 => self.skip = false,
                    HeadingLevel::H2 => {
                        self.roff.control("SH", [text.to_uppercase().as_str()]);
                    }
                    _ => {
                        self.roff.control("SS", [text.as_str()]);
                    }
                }
            }
            Event::End(TagEnd::Paragraph) => self.flush(Some(("PP", &[]))),
            Event::Start(Tag::Item) => self.flush(None),
            Event::End(TagEnd::Item) => self.flush(Some(("IP", &["\\(bu", "2"]))),
            Event::Start(Tag::CodeBlock(_)) => {
                self.in_code = true;
                self.roff.control("RS", ["4"]).control("nf", []);
            }
            Event::End(TagEnd::CodeBlock) => {
                self.in_code = false;
                self.roff.control("fi", []).control("RE", []);
            }
            Event::Start(Tag::Strong) => self.styles.push(Style::Bold),
            Event::Start(Tag::Emphasis) => self.styles.push(Style::Italic),
            Event::End(TagEnd::Strong | TagEnd::Emphasis) => {
                self.styles.pop();
            }
            Event::Start(Tag::TableHead) => self.in_head = true,
            Event::End(TagEnd::TableHead) => {
                self.in_head = false;
                self.cells.clear();
            }
            Event::End(TagEnd::TableCell) => {
                let cell = std::mem::take(&mut self.line);
                self.cells.push(cell);
            }
            Event::End(TagEnd::TableRow) if !self.in_head => self.table_row(),
            // Between the block's `nf` and `fi`, line by line.
            Event::Text(t) if self.in_code => {
                for l in t.lines() {
                    self.roff.text([roman(l)]);
                }
            }
            Event::Text(t) => self.push_text(&t, false),
            Event::Code(t) => self.push_text(&t, true),
            Event::SoftBreak | Event::HardBreak => self.push_text(" ", false),
            _ => {}
        }
    }

    /// A row: its first cell as the tag, the others below it.
    fn table_row(&mut self) {
        let mut cells = std::mem::take(&mut self.cells).into_iter();
        let Some(tag) = cells.next() else { return };
        self.roff.control("TP", []).text(tag);
        let rest: Vec<Vec<Inline>> = cells.filter(|c| !c.is_empty()).collect();
        let mut body = Vec::new();
        for (i, c) in rest.into_iter().enumerate() {
            if i > 0 {
                body.push(roman("; "));
            }
            body.extend(c);
        }
        if !body.is_empty() {
            self.roff.text(body);
        }
    }
}

/// The text of inlines, without styles (for headings).
fn plain(inlines: &[Inline]) -> String {
    let mut s = String::new();
    for i in inlines {
        if let Inline::Roman(t) | Inline::Bold(t) | Inline::Italic(t) = i {
            s.push_str(t);
        }
    }
    s.trim().to_owned()
}
