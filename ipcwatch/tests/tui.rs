//! The TUI without a terminal: snapshots of each view drawn from fixed
//! model states on ratatui's TestBackend, and the app fed a recorded trace
//! and key presses. No root needed, but for the last tests: the live
//! headless TUI on real pipes (its in-kernel io totals).

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::mpsc;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use ipcwatch::record::*;
use ipcwatch::tui::app::{App, Clock, run_app};
use ipcwatch::tui::input::{Input, SourceStatus};
use ipcwatch::tui::source::{ReplayControl, replay};
use ipcwatch::tui::theme::Theme;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use serde_json::Value;

const S: u64 = 1_000_000_000;
const T0: u64 = 1000 * S;

fn header() -> Record {
    Record::Header(Header {
        ts_ns: T0,
        format: FORMAT_NAME.into(),
        version: FORMAT_VERSION,
        tool_version: "0.1.0".into(),
        tool_commit: "0123456789ab".into(),
        kernel: "6.18".into(),
        hostname: "test".into(),
        start_time: "2026-01-01T00:00:00Z".into(),
        start_unix_ns: 0,
        command: None,
        pids: vec![],
        comms: vec![],
    })
}

fn process(ts: u64, pid: u32, ppid: u32, comm: &str) -> Record {
    Record::Process(ProcessLine {
        ts_ns: ts,
        event: ProcessEvent::Fork,
        pid,
        tid: pid,
        comm: comm.into(),
        ppid: Some(ppid),
        filename: None,
        child: None,
        exit_code: None,
        signal: None,
        origin: Default::default(),
    })
}

fn open(ts: u64, kind: ChannelKind, ch: &str, pid: u32, comm: &str, fd: i32, end: End) -> Record {
    Record::Channel(ChannelLine {
        ts_ns: ts,
        event: ChannelEvent::Create,
        kind,
        channel: ch.into(),
        pid,
        tid: pid,
        comm: comm.into(),
        fd: Some(fd),
        end: Some(end),
        old_fd: None,
        cloexec: false,
        path: None,
        syscall: None,
        ext: Default::default(),
    })
}

#[allow(clippy::too_many_arguments)]
fn io(
    ts: u64,
    kind: ChannelKind,
    ch: &str,
    op: Op,
    pid: u32,
    comm: &str,
    fd: i32,
    bytes: u64,
) -> Record {
    Record::Io(Io {
        ts_ns: ts,
        kind,
        op,
        channel: ch.into(),
        pid,
        tid: pid,
        comm: comm.into(),
        bytes,
        fd,
        syscall: "write".into(),
        start_ns: None,
        ext: Default::default(),
    })
}

fn access(pid: u32, comm: &str, func: &str, line: u32, ts: u64) -> Access {
    Access {
        pid,
        tid: pid,
        comm: comm.into(),
        ip: 0x401000 + line as u64,
        function: Some(func.into()),
        file: Some("counter.c".into()),
        line: Some(line),
        stack: vec![
            format!("{func} counter.c:{line}"),
            "worker counter.c:40".into(),
            "main counter.c:60".into(),
        ],
        locks: vec![],
        ts_ns: ts,
        origin: Default::default(),
    }
}

/// A fixed state with every kind of thing the model holds: processes,
/// a pipe, a unix socket and a queue with traffic over four seconds, a
/// shared region with mappings, a lock and page writes, and a race.
fn fixture() -> Vec<Record> {
    use ChannelKind::*;
    let mut v = vec![header()];
    v.push(process(T0, 100, 1, "producer"));
    v.push(process(T0, 101, 100, "consumer"));
    v.push(process(T0, 102, 100, "racer"));
    v.push(open(T0, Pipe, "pipe:[500]", 100, "producer", 4, End::Write));
    v.push(open(T0, Pipe, "pipe:[500]", 101, "consumer", 3, End::Read));
    v.push(open(T0, Unix, "unix:[600]", 100, "producer", 5, End::Both));
    v.push(open(T0, Unix, "unix:[601]", 102, "racer", 5, End::Both));
    for s in 0..4u64 {
        for i in 0..10u64 {
            let ts = T0 + s * S + i * (S / 10);
            v.push(io(
                ts,
                Pipe,
                "pipe:[500]",
                Op::Write,
                100,
                "producer",
                4,
                4096,
            ));
            v.push(io(
                ts + 1,
                Pipe,
                "pipe:[500]",
                Op::Read,
                101,
                "consumer",
                3,
                4096,
            ));
            if i % 2 == 0 {
                v.push(io(
                    ts,
                    Unix,
                    "unix:[600]",
                    Op::Write,
                    100,
                    "producer",
                    5,
                    100,
                ));
                v.push(io(
                    ts + 2,
                    Unix,
                    "unix:[601]",
                    Op::Write,
                    102,
                    "racer",
                    5,
                    300,
                ));
            }
            if i % 5 == 0 {
                v.push(io(ts, Mq, "mq:/jobs", Op::Write, 102, "racer", 6, 64));
                v.push(io(ts + 3, Mq, "mq:/jobs", Op::Read, 101, "consumer", 7, 64));
            }
        }
    }
    v.push(Record::Region(RegionLine {
        ts_ns: T0 + S,
        event: RegionEvent::Created,
        region: "anon:0:1234".into(),
        kind: RegionKind::Anon,
        size: 8 * 4096,
        name: None,
        pid: Some(100),
        comm: Some("producer".into()),
    }));
    for pid in [100u32, 102] {
        let comm = if pid == 100 { "producer" } else { "racer" };
        v.push(Record::Mapping(MappingLine {
            ts_ns: T0 + S,
            event: MappingEvent::Mapped,
            region: "anon:0:1234".into(),
            pid,
            comm: comm.into(),
            start: 0x7f00_0000_0000,
            end: 0x7f00_0000_8000,
            offset: 0,
            prot: "rw".into(),
        }));
        v.push(Record::Sync(SyncLine {
            ts_ns: T0 + 2 * S,
            event: SyncEvent::Acquire,
            lock: "anon:0:1234+64".into(),
            pid,
            tid: pid,
            comm: comm.into(),
            primitive: "mutex".into(),
            ok: true,
            region: Some("anon:0:1234".into()),
            offset: Some(64),
            detail: None,
            start_ns: None,
        }));
        for (page, n) in [(0u64, 9), (1, 3), (5, 1)] {
            for k in 0..n {
                v.push(Record::Fault(FaultLine {
                    ts_ns: T0 + 2 * S + k,
                    region: "anon:0:1234".into(),
                    offset: page * 4096 + 8,
                    pid,
                    tid: pid,
                    comm: comm.into(),
                    ip: 0x401000,
                }));
            }
        }
    }
    for k in 0..3 {
        v.push(Record::Race(RaceLine {
            ts_ns: T0 + 3 * S + k,
            kind: "shm-write-write".into(),
            region: Some("anon:0:1234".into()),
            channel: None,
            offset: Some(0),
            len: 8,
            accesses: vec![
                access(100, "producer", "bump", 12, T0 + 3 * S),
                access(102, "racer", "bump", 12, T0 + 3 * S + 40_000),
            ],
            evidence: "collision".into(),
            confidence: 0.95,
            explanation: "both wrote the counter within 40 µs holding no common lock".into(),
        }));
    }
    v.push(Record::Lost(Lost {
        ts_ns: T0 + 3 * S,
        count: 7,
        total: 7,
    }));
    v
}

fn app_with(records: &[Record]) -> App {
    let mut app = App::new(Theme::plain(), Clock::Trace, "test");
    app.handle(Input::Source(SourceStatus::Started));
    app.apply_records(records);
    app
}

fn key(c: char) -> Input {
    Input::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

fn code(c: KeyCode) -> Input {
    Input::Key(KeyEvent::new(c, KeyModifiers::NONE))
}

fn draw(app: &mut App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| app.render(f)).unwrap();
    t
}

fn screen(t: &Terminal<TestBackend>) -> String {
    let buf = t.backend().buffer();
    let mut out = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            out.push_str(buf[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

#[test]
fn snapshot_overview() {
    let mut app = app_with(&fixture());
    insta::assert_snapshot!("overview_80x24", draw(&mut app, 80, 24).backend());
}

#[test]
fn snapshot_channels() {
    let mut app = app_with(&fixture());
    app.handle(key('2'));
    insta::assert_snapshot!("channels_80x24", draw(&mut app, 80, 24).backend());
    app.handle(code(KeyCode::Enter));
    insta::assert_snapshot!("channels_detail_80x24", draw(&mut app, 80, 24).backend());
}

#[test]
fn snapshot_regions() {
    let mut app = app_with(&fixture());
    app.handle(key('3'));
    insta::assert_snapshot!("regions_80x24", draw(&mut app, 80, 24).backend());
}

#[test]
fn snapshot_races() {
    let mut app = app_with(&fixture());
    app.handle(key('4'));
    insta::assert_snapshot!("races_80x24", draw(&mut app, 80, 24).backend());
    app.handle(code(KeyCode::Enter));
    insta::assert_snapshot!("races_detail_100x30", draw(&mut app, 100, 30).backend());
}

#[test]
fn snapshot_processes() {
    let mut app = app_with(&fixture());
    app.handle(key('5'));
    insta::assert_snapshot!("processes_80x24", draw(&mut app, 80, 24).backend());
}

#[test]
fn snapshot_help() {
    let mut app = app_with(&fixture());
    app.handle(key('?'));
    insta::assert_snapshot!("help_80x24", draw(&mut app, 80, 24).backend());
}

#[test]
fn empty_model_and_tiny_or_resized_terminals_draw() {
    let mut app = app_with(&[]);
    for v in ['1', '2', '3', '4', '5'] {
        app.handle(key(v));
        for (w, h) in [(80, 24), (20, 5), (10, 20), (1, 1), (3, 40), (200, 60)] {
            draw(&mut app, w, h);
        }
    }
    let mut app = app_with(&fixture());
    let mut t = Terminal::new(TestBackend::new(80, 24)).unwrap();
    for v in ['1', '2', '3', '4', '5'] {
        app.handle(key(v));
        app.handle(code(KeyCode::Enter));
        for (w, h) in [(80, 24), (30, 8), (120, 40)] {
            t.backend_mut().resize(w, h);
            app.handle(Input::Resize(w, h));
            t.autoresize().unwrap();
            t.draw(|f| app.render(f)).unwrap();
        }
    }
    assert!(screen(&t).contains("Processes"));
}

#[test]
fn keys_move_sort_filter_and_drill_down() {
    let mut app = app_with(&fixture());
    app.handle(code(KeyCode::Tab));
    let s = screen(&draw(&mut app, 80, 24));
    assert!(s.contains("Channels 4 sort:bytes/s"), "{s}");
    // First by bytes/s is the pipe; j moves to the next row.
    app.handle(key('j'));
    app.handle(code(KeyCode::Enter));
    let s = screen(&draw(&mut app, 80, 24));
    assert!(s.contains("unix:[601] (unix)"), "{s}");
    app.handle(code(KeyCode::Esc));
    app.handle(key('s'));
    let s = screen(&draw(&mut app, 80, 24));
    assert!(s.contains("sort:msgs/s"), "{s}");
    // Filter by a comm: only the queue and the socket racer writes.
    for c in "/racer".chars() {
        app.handle(key(c));
    }
    app.handle(code(KeyCode::Enter));
    let s = screen(&draw(&mut app, 80, 24));
    assert!(s.contains("Channels 2/4"), "{s}");
    assert!(!s.contains("pipe:[500]"), "{s}");
    // Esc with nothing to go back from clears the filter.
    app.handle(code(KeyCode::Esc));
    let s = screen(&draw(&mut app, 80, 24));
    assert!(s.contains("Channels 4 "), "{s}");
}

#[test]
fn selecting_a_process_filters_every_view() {
    let mut app = app_with(&fixture());
    app.handle(key('5'));
    // Sorted by bytes/s: producer, consumer, racer. Pick the consumer.
    app.handle(code(KeyCode::Down));
    app.handle(code(KeyCode::Enter));
    let s = screen(&draw(&mut app, 80, 24));
    assert!(s.contains("[pid 101 consumer (Esc clears)]"), "{s}");
    app.handle(key('2'));
    let s = screen(&draw(&mut app, 80, 24));
    assert!(s.contains("Channels 2/4"), "{s}");
    assert!(!s.contains("unix:[600]"), "{s}");
    app.handle(key('3'));
    let s = screen(&draw(&mut app, 80, 24));
    assert!(s.contains("Shared regions 0/1"), "{s}");
    app.handle(key('4'));
    let s = screen(&draw(&mut app, 80, 24));
    assert!(s.contains("Races 0/1"), "{s}");
    app.handle(code(KeyCode::Esc));
    let s = screen(&draw(&mut app, 80, 24));
    assert!(s.contains("Races 1 "), "{s}");
    assert!(!s.contains("[pid 101"), "{s}");
}

#[test]
fn mouse_clicks_tabs_and_scrolls() {
    let mut app = app_with(&fixture());
    draw(&mut app, 80, 24);
    let s = screen(&draw(&mut app, 80, 24));
    let col = s.lines().next().unwrap().find("4 Races").unwrap() as u16;
    app.handle(Input::Mouse(MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: col + 1,
        row: 0,
        modifiers: KeyModifiers::NONE,
    }));
    let s = screen(&draw(&mut app, 80, 24));
    assert!(s.contains("shm-write-write"), "{s}");
    app.handle(key('2'));
    app.handle(Input::Mouse(MouseEvent {
        kind: MouseEventKind::ScrollDown,
        column: 10,
        row: 10,
        modifiers: KeyModifiers::NONE,
    }));
    app.handle(code(KeyCode::Enter));
    let s = screen(&draw(&mut app, 80, 24));
    assert!(s.contains("unix:[601] (unix)"), "{s}");
}

#[test]
fn pause_holds_live_records_until_resumed() {
    let mut app = App::new(Theme::plain(), Clock::Trace, "test");
    app.handle(key('p'));
    app.handle(Input::Records(fixture()));
    assert_eq!(app.data.model.records, 0);
    let s = screen(&draw(&mut app, 80, 24));
    assert!(s.contains("PAUSED"), "{s}");
    app.handle(key('p'));
    assert_eq!(app.data.model.records, fixture().len() as u64);
}

fn trace_inputs() -> Vec<Input> {
    let text = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/pipes.ndjson"
    ))
    .unwrap();
    let mut r = ipcwatch::trace::TraceReader::new(&text[..]);
    let mut recs = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        recs.push(rec);
    }
    vec![Input::Source(SourceStatus::Started), Input::Records(recs)]
}

/// The real loop, fed a recorded trace (three `head | wc` pipelines) and
/// key presses on one stream, like the terminal would.
#[test]
fn app_loop_on_a_recorded_trace_and_keys() {
    let (tx, rx) = mpsc::channel();
    for ev in trace_inputs() {
        tx.send(ev).unwrap();
    }
    for ev in [key('2'), key('s'), key('s'), key('q')] {
        tx.send(ev).unwrap();
    }
    let mut app = App::new(Theme::plain(), Clock::Trace, "trace");
    let mut t = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let stats = run_app(&mut t, &mut app, &rx).unwrap();
    assert!(app.quit);
    assert_eq!(stats.records, 191);
    let s = screen(&t);
    assert!(s.contains("Channels 5 sort:total"), "{s}");
    // Three pipes carried exactly 100000 bytes each.
    assert_eq!(s.matches("97.7KiB").count(), 3, "{s}");
    for pid in ["17268 head", "17271 head", "17274 head", "17269 wc"] {
        assert!(s.contains(pid), "{pid} missing:\n{s}");
    }
}

/// The replay thread paces a trace into the same loop; at full speed it
/// ends with the whole trace applied.
#[test]
fn replay_plays_a_trace_to_the_end() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pipes.ndjson");
    let (reader, first) = ipcwatch::tui::open_trace(path).unwrap();
    let (tx, rx) = mpsc::channel();
    tx.send(Input::Records(vec![first])).unwrap();
    let ctl = Arc::new(ReplayControl::new(0.0));
    replay(reader, path.into(), ctl.clone(), tx).unwrap();
    let mut app = App::new(Theme::plain(), Clock::Trace, "replay");
    app.replay = Some(ctl);
    app.exit_when_done = true;
    let mut t = Terminal::new(TestBackend::new(80, 24)).unwrap();
    run_app(&mut t, &mut app, &rx).unwrap();
    assert_eq!(app.data.model.records, 191);
    assert_eq!(app.data.model.channels.len(), 5);
    let s = screen(&t);
    assert!(s.contains("ENDED (end of trace)"), "{s}");
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ipcwatch")
}

#[test]
fn a_bad_replay_file_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.ndjson");
    std::fs::write(&bad, "{\"type\":\"io\"}\n").unwrap();
    let missing = dir.path().join("missing.ndjson");
    for (file, want) in [
        (bad.to_str().unwrap(), "line 1:"),
        (missing.to_str().unwrap(), "cannot open"),
    ] {
        let o = Command::new(bin())
            .args(["tui", "--replay", file])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("ipcwatch: error: ") && err.contains(want),
            "{err}"
        );
    }
    let o = Command::new(bin())
        .args(["tui", "--replay", "x", "--pid", "1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn no_color_draws_without_colours() {
    use ratatui::style::Color;
    let colours = |theme: Theme| {
        let mut app = App::new(theme, Clock::Trace, "test");
        app.apply_records(&fixture());
        let t = draw(&mut app, 80, 24);
        let buf = t.backend().buffer().clone();
        buf.content()
            .iter()
            .filter(|c| c.fg != Color::Reset || c.bg != Color::Reset)
            .count()
    };
    assert!(colours(Theme { color: true }) > 0);
    assert_eq!(colours(Theme::plain()), 0);
}

/// Odd but well-formed input (a trace can hold anything the format
/// allows) never panics a view.
#[test]
fn extreme_values_draw_in_every_view() {
    let mut v = fixture();
    v.push(Record::Region(RegionLine {
        ts_ns: u64::MAX,
        event: RegionEvent::Existing,
        region: "file:/huge".into(),
        kind: RegionKind::File,
        size: u64::MAX,
        name: Some("x".repeat(300)),
        pid: None,
        comm: None,
    }));
    v.push(Record::Fault(FaultLine {
        ts_ns: 0,
        region: "file:/huge".into(),
        offset: u64::MAX,
        pid: u32::MAX,
        tid: 0,
        comm: "".into(),
        ip: u64::MAX,
    }));
    for n in [0usize, 1, 5] {
        v.push(Record::Race(RaceLine {
            ts_ns: 1,
            kind: "k".repeat(100).into(),
            region: None,
            channel: None,
            offset: None,
            len: u64::MAX,
            accesses: (0..n)
                .map(|i| access(i as u32, "", "f", u32::MAX, u64::MAX - i as u64))
                .collect(),
            evidence: "".into(),
            confidence: f64::NAN,
            explanation: "y".repeat(500),
        }));
    }
    v.push(io(
        u64::MAX,
        ChannelKind::Tcp,
        "tcp:huge",
        Op::Write,
        7,
        "big",
        -1,
        u64::MAX,
    ));
    for (pid, page) in [(8, 3), (9, 3)] {
        v.push(Record::Fault(FaultLine {
            ts_ns: 5,
            region: "file:/huge".into(),
            offset: page * 4096,
            pid,
            tid: pid,
            comm: "f".into(),
            ip: 0,
        }));
    }
    let mut app = app_with(&v);
    for view in ['1', '2', '3', '4', '5'] {
        app.handle(key(view));
        for _ in 0..2 {
            for (w, h) in [(80, 24), (100, 30), (25, 10)] {
                draw(&mut app, w, h);
            }
            app.handle(code(KeyCode::End));
            app.handle(code(KeyCode::Enter));
        }
        app.handle(code(KeyCode::Esc));
    }
    app.handle(key('4'));
    let s = screen(&draw(&mut app, 100, 30));
    assert!(s.contains("Races 4"), "{s}");
}

/// Names are the traced processes' choice: a name made of terminal escape
/// sequences, a channel path with a newline and a bidirectional override,
/// a race whose function and file carry escapes. Every view shows them
/// with the control characters made visible, never raw (ratatui would drop
/// them, which lets a name pass for another).
#[test]
fn hostile_names_are_shown_escaped_in_every_view() {
    const EVIL: &str = "\x1b]0;PWNED\x07\x1b[2J";
    let mut v = vec![header()];
    v.push(process(T0, 100, 1, EVIL));
    v.push(process(T0, 101, 100, "b\u{202e}ash"));
    let fifo = "fifo:/tmp/q\"x\ny\u{9b}";
    v.push(open(T0, ChannelKind::Fifo, fifo, 100, EVIL, 4, End::Write));
    v.push(open(
        T0,
        ChannelKind::Fifo,
        fifo,
        101,
        "b\u{202e}ash",
        3,
        End::Read,
    ));
    for (pid, op) in [(100, Op::Write), (101, Op::Read)] {
        let comm = if pid == 100 { EVIL } else { "b\u{202e}ash" };
        v.push(io(T0 + S, ChannelKind::Fifo, fifo, op, pid, comm, 4, 10));
    }
    let mut a = access(100, EVIL, "f\x1b[31m", 7, T0 + S);
    a.file = Some("/tmp/\x1b[2J.c".into());
    a.stack = vec!["\x1b]52;c;cHduZWQ=\x07".into()];
    v.push(Record::Race(RaceLine {
        ts_ns: T0 + S,
        kind: "data-race".into(),
        region: Some("posix:/\x1b[2Jshm".into()),
        channel: None,
        offset: Some(8),
        len: 8,
        accesses: vec![a.clone(), access(101, "b\u{202e}ash", "g", 9, T0 + S + 5)],
        evidence: "collision".into(),
        confidence: 0.9,
        explanation: format!("{EVIL} and b\u{202e}ash wrote"),
    }));
    let mut app = app_with(&v);
    let mut seen = String::new();
    for (view, detail) in [
        ('1', false),
        ('2', true),
        ('3', false),
        ('4', true),
        ('5', true),
    ] {
        app.handle(key(view));
        for enter in [false, detail] {
            if enter {
                app.handle(code(KeyCode::Enter));
            }
            let s = screen(&draw(&mut app, 120, 40));
            assert!(
                !ipcwatch::text::has_control(&s.replace('\n', "")),
                "view {view}: a raw control character:\n{s}"
            );
            seen.push_str(&s);
        }
        app.handle(code(KeyCode::Esc));
    }
    // Ratatui draws one character per cell: look for the escapes in the
    // cells' text.
    for shown in [
        "\\x1b]0;PWNED\\x07",
        "b\\u{202e}ash",
        "/tmp/q\"x\\ny",
        "f\\x1b[31m",
    ] {
        assert!(seen.contains(shown), "{shown} not shown in:\n{seen}");
    }
    app.handle(key('5'));
    insta::assert_snapshot!("hostile_processes_80x12", draw(&mut app, 80, 12).backend());
}

/// The fixture, plus what makes the Regions view sort and dim: a
/// read-only file mapped by four shells, a region one process writes, and
/// the summary's armed words (one racing, one a lock word, one quiet).
fn regions_fixture() -> Vec<Record> {
    let mut v = fixture();
    let map = |ts: u64, region: &str, pid: u32, comm: &str, prot: &str| {
        Record::Mapping(MappingLine {
            ts_ns: ts,
            event: MappingEvent::Existing,
            region: region.into(),
            pid,
            comm: comm.into(),
            start: 0x7e00_0000_0000,
            end: 0x7e00_0000_8000,
            offset: 0,
            prot: prot.into(),
        })
    };
    let cache = "file:/usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache";
    v.push(Record::Region(RegionLine {
        ts_ns: T0,
        event: RegionEvent::Existing,
        region: cache.into(),
        kind: RegionKind::File,
        size: 26 * 4096,
        name: None,
        pid: None,
        comm: None,
    }));
    for pid in 200..204u32 {
        v.push(process(T0, pid, 1, "sh"));
        v.push(map(T0, cache, pid, "sh", "r"));
        let mut exit = process(T0 + S, pid, 1, "sh");
        if let Record::Process(p) = &mut exit {
            p.event = ProcessEvent::Exit;
            p.exit_code = Some(0);
        }
        v.push(exit);
    }
    v.push(Record::Region(RegionLine {
        ts_ns: T0,
        event: RegionEvent::Created,
        region: "sysv:40".into(),
        kind: RegionKind::Sysv,
        size: 4096,
        name: None,
        pid: Some(100),
        comm: Some("producer".into()),
    }));
    v.push(map(T0, "sysv:40", 100, "producer", "rw"));
    v.push(map(T0, "sysv:40", 101, "consumer", "r"));
    for k in 0..40 {
        v.push(Record::Fault(FaultLine {
            ts_ns: T0 + S + k,
            region: "sysv:40".into(),
            offset: 16,
            pid: 100,
            tid: 100,
            comm: "producer".into(),
            ip: 0x401000,
        }));
    }
    let word = |offset: u64, traps: u64, writers: Vec<u32>, sync: bool| ArmedWord {
        region: "anon:0:1234".into(),
        offset,
        windows: 4,
        traps,
        writers,
        sync,
    };
    v.push(Record::Summary(Summary {
        ts_ns: T0 + 4 * S,
        duration_ns: 4 * S,
        events: 500,
        dropped: 7,
        dropped_by_kind: Default::default(),
        seq_gaps: 7,
        reason: "end-of-input".into(),
        command_status: None,
        channels: vec![],
        otlp: None,
        detector: Some(DetectorSummary {
            regions: 1,
            bytes_sampled: 1 << 20,
            sampler_cpu_ns: 1_000_000,
            windows: 12,
            collisions: 5,
            atomic: 2,
            undecoded: 0,
            findings: 1,
            skipped: 0,
            words: vec![
                word(0, 40, vec![100, 102], false),
                word(64, 12, vec![100, 102], true),
                word(5 * 4096 + 8, 4, vec![102], false),
            ],
        }),
    }));
    v
}

/// The style of the first cell of the row that starts with `text`.
fn row_style(t: &Terminal<TestBackend>, text: &str) -> ratatui::style::Style {
    let buf = t.backend().buffer();
    let s = screen(t);
    let y = s
        .lines()
        .position(|l| l.starts_with(&format!("│{text}")))
        .unwrap_or_else(|| panic!("no row {text} in\n{s}"));
    buf[(1, y as u16)].style()
}

#[test]
fn snapshot_regions_findings_first_quiet_dimmed_or_hidden() {
    let mut app = app_with(&regions_fixture());
    app.handle(key('3'));
    let t = draw(&mut app, 100, 30);
    insta::assert_snapshot!("regions_findings_first_100x30", t.backend());
    let s = screen(&t);
    // Findings first, then by write activity: the racing region, the
    // one-writer region, the read-only cache.
    let order: Vec<usize> = ["│anon:0:1234", "│sysv:40", "│file:/usr/lib"]
        .iter()
        .map(|r| s.find(r).unwrap_or_else(|| panic!("{r} in\n{s}")))
        .collect();
    assert!(order[0] < order[1] && order[1] < order[2], "{s}");
    // The shells have exited: the cache says how many mapped it.
    assert!(s.contains("104.0KiB (4 exited)"), "{s}");
    // Quiet regions (no finding, at most one writer) are dimmed.
    use ratatui::style::Modifier;
    assert!(
        !row_style(&t, "anon:0:1234")
            .add_modifier
            .contains(Modifier::DIM)
    );
    assert!(
        row_style(&t, "sysv:40")
            .add_modifier
            .contains(Modifier::DIM)
    );
    assert!(
        row_style(&t, "file:/usr/lib")
            .add_modifier
            .contains(Modifier::DIM)
    );
    // `a` hides them, `a` again shows them.
    app.handle(key('a'));
    let t = draw(&mut app, 100, 30);
    insta::assert_snapshot!("regions_quiet_hidden_100x30", t.backend());
    let s = screen(&t);
    assert!(!s.contains("│sysv:40") && !s.contains("│file:"), "{s}");
    assert!(s.contains("Shared regions (a: show quiet) 1/3"), "{s}");
    app.handle(key('a'));
    assert!(screen(&draw(&mut app, 100, 30)).contains("│file:"));
}

#[test]
fn snapshot_regions_hot_words_and_heat_from_the_detector() {
    let mut app = app_with(&regions_fixture());
    app.handle(key('3'));
    let t = draw(&mut app, 100, 30);
    let s = screen(&t);
    // The racing word first (armed, 3 findings), then the lock word, then
    // a word one process wrote, on page 5: its heat shows though no write
    // fault hit that page.
    let word = |w: &str| {
        s.find(w)
            .unwrap_or_else(|| panic!("{w} not in the hot words:\n{s}"))
    };
    assert!(word("│+0x0 ") < word("│+0x40 ") && word("│+0x40 ") < word("│+0x5008 "));
    assert!(s.contains("sync"), "{s}");
    let heat = s
        .lines()
        .find(|l| l.starts_with("│█"))
        .unwrap_or_else(|| panic!("no heat strip:\n{s}"));
    assert_ne!(heat.chars().nth(6), Some('·'), "page 5 is warm: {heat}");
    // The sysv region's heat comes from its write faults alone.
    app.handle(key('j'));
    let t = draw(&mut app, 100, 30);
    insta::assert_snapshot!("regions_one_writer_100x30", t.backend());
    assert!(screen(&t).contains("1 pages, 1 written, 40 writes, 1 writers"));
}

/// A live session, before its summary: the `heat` lines alone warm the
/// pages the sampler saw change (no write fault hit pages 6 and 7) and
/// list the word it ranked hottest, with the writers its watchpoint saw.
#[test]
fn snapshot_regions_live_heat_before_the_summary() {
    let mut v = fixture();
    let heat = |ts: u64, changes: u64, page_changes: u64| {
        Record::Heat(HeatLine {
            ts_ns: ts,
            words: vec![HotWordLine {
                region: "anon:0:1234".into(),
                offset: 7 * 4096 + 16,
                changes,
                score: 9.5,
                windows: 2,
                traps: 11,
                writers: vec![100, 102],
                armed: true,
                sync: false,
            }],
            pages: vec![HotPageLine {
                region: "anon:0:1234".into(),
                page: 6,
                changes: page_changes,
                score: 4.0,
            }],
        })
    };
    // Counts only grow: a later line replaces, an older one never lowers.
    v.push(heat(T0 + 2 * S, 30, 12));
    v.push(heat(T0 + 3 * S, 25, 10));
    let mut app = app_with(&v);
    app.handle(key('3'));
    let t = draw(&mut app, 100, 30);
    insta::assert_snapshot!("regions_live_heat_100x30", t.backend());
    let s = screen(&t);
    let strip: Vec<char> = s
        .lines()
        .find(|l| l.starts_with("│█"))
        .unwrap_or_else(|| panic!("no heat strip:\n{s}"))
        .chars()
        .skip(1)
        .take(8)
        .collect();
    // Page 0 (9 faults) and the pages the sampler saw (12 and 30 changes)
    // are warm; pages 2, 3 and 4 were never written.
    assert_eq!(strip[2..5], ['·', '·', '·'], "{s}");
    assert_ne!(strip[6], '·', "page 6 is warm: {s}");
    assert_eq!(strip[7], '█', "page 7 is the hottest: {s}");
    let row = s
        .lines()
        .find(|l| l.starts_with("│+0x7010 "))
        .unwrap_or_else(|| panic!("the sampled word is not listed:\n{s}"));
    assert!(row.contains(" 30 ") && row.contains("yes"), "{row}");
}

/// An exec line in `container` (a hostile name: it reaches the screen
/// escaped).
fn exec_in(ts: u64, pid: u32, comm: &str, id: &str, name: Option<&str>) -> Record {
    Record::Process(ProcessLine {
        ts_ns: ts,
        event: ProcessEvent::Exec,
        pid,
        tid: pid,
        comm: comm.into(),
        ppid: None,
        filename: Some(format!("/{comm}")),
        child: None,
        exit_code: None,
        signal: None,
        origin: Origin {
            cgroup: Some(format!("/libpod_parent/libpod-{id}")),
            container: Some(Container {
                id: id.into(),
                runtime: "podman".into(),
                name: name.map(str::to_owned),
                ..Container::default()
            }),
            unit: None,
            nspid: Some(1),
        },
    })
}

#[test]
fn containers_show_in_processes_and_on_channels_between_them() {
    let a = "04d6d93bf4dfcb60cc9f0b2c6ac5bcdf11588d1ebdc5b8573a799a100c8b6382";
    let b = "9f0e1d2c3b4a59687766554433221100ffeeddccbbaa99887766554433221100";
    let mut v = fixture();
    v.push(exec_in(T0 + 1, 100, "producer", a, None));
    v.push(exec_in(
        T0 + 1,
        101,
        "consumer",
        b,
        Some("web\x1b]0;PWNED\x07"),
    ));
    let mut app = app_with(&v);
    app.handle(key('5'));
    let s = screen(&draw(&mut app, 100, 24));
    assert!(s.contains("CONTAINER"), "{s}");
    assert!(s.contains(&a[..12]), "{s}");
    assert!(s.contains("web\\x1b]0;P"), "{s}");
    assert!(!s.contains('\x1b') && !s.contains('\x07'), "{s:?}");
    // The pipe between them names both containers.
    app.handle(key('2'));
    let s = screen(&draw(&mut app, 140, 24));
    assert!(s.contains(&format!("producer@{}", &a[..8])), "{s}");
    assert!(s.contains("consumer@web"), "{s}");
}

/// `ipcwatch tui --headless [extra] -- ipcwatch-workload pipe-parent-child
/// --count COUNT --size SIZE`: the report, and the workload's pipe.
fn headless_pipe(extra: &[&str], count: &str, size: &str) -> (Value, Value) {
    common::require_root();
    let out = Command::new(bin())
        .args(["tui", "--headless"])
        .args(extra)
        .args(["--", common::workload(), "pipe-parent-child"])
        .args(["--count", count, "--size", size])
        .env_remove("IPCWATCH_PER_EVENT")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The command's standard output goes to standard error under the TUI.
    let (ino, _, _) = common::pipe_line(&stderr);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let pipe = format!("pipe:[{ino}]");
    let channel = report["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == pipe.as_str())
        .unwrap_or_else(|| panic!("{pipe} is not in {report}"))
        .clone();
    assert_eq!(
        report["stopped"], "command-exited, command exited with 0",
        "{report}"
    );
    (report, channel)
}

fn counts(c: &Value) -> [u64; 5] {
    let n = |k: &str| c[k].as_u64().unwrap_or_else(|| panic!("no {k} in {c}"));
    [
        n("bytes_written"),
        n("bytes_read"),
        n("writes"),
        n("reads"),
        n("io_records"),
    ]
}

#[test]
fn live_tui_sums_pipe_io_in_the_kernel_with_exact_counts_and_no_records() {
    let (report, channel) = headless_pipe(&[], "3", "1000");
    assert_eq!(report["aggregate"], true, "{report}");
    let [written, read, writes, reads, records] = counts(&channel);
    assert_eq!((written, read, writes), (3000, 3000, 3), "{channel}");
    // The child reads until the end: one to three reads, as the writes
    // and its reads happened to interleave.
    assert!((1..=3).contains(&reads), "{channel}");
    assert_eq!(
        records, 0,
        "an io record crossed the ring buffer: {channel}"
    );
}

#[test]
fn live_tui_per_event_sends_every_read_and_write() {
    let (report, channel) = headless_pipe(&["--per-event"], "3", "1000");
    assert_eq!(report["aggregate"], false, "{report}");
    let [written, read, writes, reads, records] = counts(&channel);
    assert_eq!((written, read, writes), (3000, 3000, 3), "{channel}");
    assert!((1..=3).contains(&reads), "{channel}");
    assert_eq!(records, writes + reads, "{channel}");
}

#[test]
fn live_tui_keeps_pipe_writes_over_pipe_buf_as_records() {
    // The interleaving check needs each of them (with its start).
    let (report, channel) = headless_pipe(&[], "2", "10000");
    assert_eq!(report["aggregate"], true, "{report}");
    let [written, read, writes, _, records] = counts(&channel);
    assert_eq!((written, read, writes), (20000, 20000, 2), "{channel}");
    assert_eq!(records, 2, "the two writes, and no read: {channel}");
}
