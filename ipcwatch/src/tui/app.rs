//! The app: state, one event enum in, frames out. The loop in [`run_app`]
//! takes its terminal and its event stream as parameters, so the tests
//! run it on a `TestBackend` with a fake stream.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::Frame;
use ratatui::Terminal;
use ratatui::backend::Backend;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

use crate::model::Model;
use crate::record::{Record, Text};

use super::rates::{Flow, Series};
use super::source::ReplayControl;
use super::theme::Theme;
use super::views::{self, channels, overview, processes, races, regions};

/// Everything the UI reacts to, from every input, as one stream.
#[derive(Debug)]
pub enum AppEvent {
    Key(KeyEvent),
    Mouse(MouseEvent),
    Resize(u16, u16),
    /// Time to draw (and, live, to let rates decay).
    Tick,
    /// A batch of records from the collector or the replay.
    Records(Vec<Record>),
    Source(SourceEvent),
    /// SIGINT, SIGTERM or SIGHUP.
    Signal,
    /// The bench's stand-in for a key press, stamped when it was sent:
    /// the loop measures how long it took to reach the screen. It also
    /// moves to the next view, so every view is drawn under load.
    Probe(Instant),
}

#[derive(Debug, Clone, PartialEq)]
pub enum SourceEvent {
    /// Probes loaded (live) or file opened (replay).
    Started,
    /// Kernel events received and lost so far (live).
    Stats { events: u64, dropped: u64 },
    /// The source stopped: command exited, end of the trace...
    Ended(String),
    /// The source could not start or failed: the app quits with it.
    Failed(String),
    /// Replay: trace time now (advances between records too).
    Clock(u64),
}

#[derive(Debug, Clone, PartialEq)]
pub enum SourceState {
    Starting,
    Running,
    Ended(String),
    Failed(String),
}

/// Which clock drives the rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// CLOCK_MONOTONIC, the clock of live events: rates decay when idle.
    Live,
    /// Only the records' own times (replay, tests).
    Trace,
}

/// Kinds with an event-rate sparkline, in display order.
pub const KINDS: [&str; 11] = [
    "pipe", "fifo", "unix", "tcp", "udp", "mq", "msgq", "shm", "sync", "fault", "proc",
];

fn kind_of(r: &Record) -> Option<&'static str> {
    Some(match r {
        Record::Io(io) => io.kind.as_str(),
        Record::Channel(c) => c.kind.as_str(),
        Record::Process(_) => "proc",
        Record::Region(_) | Record::Mapping(_) => "shm",
        Record::Sync(_) => "sync",
        Record::Fault(_) => "fault",
        _ => return None,
    })
}

/// What the views read: the model plus the rates the UI keeps.
#[derive(Debug, Default)]
pub struct Data {
    pub model: Model,
    pub kinds: BTreeMap<&'static str, Series>,
    pub channel_flow: HashMap<Text, Flow>,
    pub process_flow: HashMap<u32, Flow>,
    /// Time of the first and latest record (or clock), ns.
    pub first_ns: u64,
    pub now_ns: u64,
    /// Kernel events and losses as the source reports them.
    pub events: u64,
    pub dropped: u64,
    /// The process selected in view 5: every view shows only what it touches.
    pub pid_filter: Option<u32>,
    /// Latest comm of each pid (a process may rename itself after fork;
    /// the model keeps the name it was first seen with until exec).
    pub comms: HashMap<u32, Text>,
}

/// The pid and comm a record was made by, if it names them.
fn pid_comm(r: &Record) -> Option<(u32, &Text)> {
    Some(match r {
        Record::Io(x) => (x.pid, &x.comm),
        Record::Channel(x) => (x.pid, &x.comm),
        Record::Process(x) => (x.pid, &x.comm),
        Record::Mapping(x) => (x.pid, &x.comm),
        Record::Sync(x) => (x.pid, &x.comm),
        Record::Fault(x) => (x.pid, &x.comm),
        _ => return None,
    })
}

impl Data {
    pub fn apply(&mut self, r: &Record) {
        self.model.apply(r);
        let ts = match r.ts_ns() {
            Some(ts) if ts > 0 => ts,
            _ => self.now_ns,
        };
        if self.first_ns == 0 {
            self.first_ns = ts;
        }
        self.now_ns = self.now_ns.max(ts);
        if let Some(k) = kind_of(r) {
            self.kinds.entry(k).or_default().add(ts, 1);
        }
        if let Some((pid, comm)) = pid_comm(r)
            && !comm.is_empty()
            && self.comms.get(&pid) != Some(comm)
        {
            self.comms.insert(pid, comm.clone());
        }
        match r {
            Record::Io(io) => {
                if io.op == crate::record::Op::Write {
                    self.channel_flow
                        .entry(io.channel.clone())
                        .or_default()
                        .add(ts, io.bytes);
                }
                self.process_flow
                    .entry(io.pid)
                    .or_default()
                    .add(ts, io.bytes);
            }
            Record::Lost(l) => self.dropped = self.dropped.max(l.total),
            Record::Summary(s) => {
                self.dropped = self.dropped.max(s.dropped);
                self.events = self.events.max(s.events);
            }
            _ => {}
        }
    }

    /// Live only: processes rename themselves (prctl PR_SET_NAME) without
    /// an event ipcwatch traces, so read the current name of the live
    /// processes the model knows from /proc (at most 512 per call).
    pub fn refresh_comms_from_proc(&mut self) {
        let pids: Vec<u32> = self
            .model
            .processes
            .values()
            .filter(|p| p.alive)
            .map(|p| p.pid)
            .take(512)
            .collect();
        for pid in pids {
            if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/comm")) {
                let name = s.trim_end_matches('\n');
                if !name.is_empty() && self.comms.get(&pid).map(Text::as_str) != Some(name) {
                    self.comms.insert(pid, Text::from(name));
                }
            }
        }
    }

    pub fn comm(&self, pid: u32) -> &str {
        if let Some(c) = self.comms.get(&pid) {
            return c;
        }
        self.model
            .processes
            .get(&pid)
            .map(|p| p.comm.as_str())
            .unwrap_or("?")
    }

    /// "1234 comm".
    pub fn who(&self, pid: u32) -> String {
        format!("{pid} {}", self.comm(pid))
    }

    pub fn channel_rates(&self, id: &str) -> (f64, f64) {
        self.channel_flow.get(id).map_or((0.0, 0.0), |f| {
            (
                f.bytes.rate(self.now_ns, self.first_ns),
                f.msgs.rate(self.now_ns, self.first_ns),
            )
        })
    }

    pub fn process_rates(&self, pid: u32) -> (f64, f64) {
        self.process_flow.get(&pid).map_or((0.0, 0.0), |f| {
            (
                f.bytes.rate(self.now_ns, self.first_ns),
                f.msgs.rate(self.now_ns, self.first_ns),
            )
        })
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.max(self.model.lost)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewId {
    Overview,
    Channels,
    Regions,
    Races,
    Processes,
}

impl ViewId {
    pub const ALL: [ViewId; 5] = [
        ViewId::Overview,
        ViewId::Channels,
        ViewId::Regions,
        ViewId::Races,
        ViewId::Processes,
    ];

    pub fn title(self) -> &'static str {
        match self {
            ViewId::Overview => "Overview",
            ViewId::Channels => "Channels",
            ViewId::Regions => "Regions",
            ViewId::Races => "Races",
            ViewId::Processes => "Processes",
        }
    }

    fn index(self) -> usize {
        ViewId::ALL.iter().position(|v| *v == self).unwrap_or(0)
    }
}

/// What a view asks of the app after a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Not for this view.
    Ignored,
    Handled,
    /// Filter every view on this process.
    SelectPid(u32),
}

/// Typing a filter after `/`.
#[derive(Debug, Clone, Default)]
pub struct Input {
    pub text: String,
}

pub struct App {
    pub data: Data,
    pub view: ViewId,
    pub overview: overview::State,
    pub channels: channels::State,
    pub regions: regions::State,
    pub races: races::State,
    pub processes: processes::State,
    pub theme: Theme,
    pub clock: Clock,
    pub source: SourceState,
    /// Live: records held while paused.
    pub paused: bool,
    held: Vec<Vec<Record>>,
    held_count: usize,
    pub replay: Option<Arc<ReplayControl>>,
    pub help: bool,
    pub input: Option<Input>,
    pub quit: bool,
    /// Set when the source failed: the message to print after the TUI.
    pub error: Option<String>,
    /// Where the tabs were drawn, for mouse clicks: (x range, view).
    tab_hits: Vec<(u16, u16, ViewId)>,
    /// Duration of the last few draws, for the status line and the bench.
    pub last_draw: Duration,
    pub label: String,
    /// Quit when the source ends (headless bench).
    pub exit_when_done: bool,
    /// Panic at the first tick after drawing (tests the terminal restore).
    pub panic_on_tick: bool,
    last_proc_scan: Option<Instant>,
}

/// How often live process names are read again from /proc.
const PROC_SCAN: Duration = Duration::from_secs(2);

/// Records held while paused beyond this are applied anyway, so a long
/// pause cannot eat all memory.
const HOLD_MAX: usize = 2_000_000;

impl App {
    pub fn new(theme: Theme, clock: Clock, label: impl Into<String>) -> Self {
        App {
            data: Data::default(),
            view: ViewId::Overview,
            overview: Default::default(),
            channels: Default::default(),
            regions: Default::default(),
            races: Default::default(),
            processes: Default::default(),
            theme,
            clock,
            source: SourceState::Starting,
            paused: false,
            held: Vec::new(),
            held_count: 0,
            replay: None,
            help: false,
            input: None,
            quit: false,
            error: None,
            tab_hits: Vec::new(),
            last_draw: Duration::ZERO,
            label: label.into(),
            exit_when_done: false,
            panic_on_tick: false,
            last_proc_scan: None,
        }
    }

    pub fn apply_records(&mut self, batch: &[Record]) {
        for r in batch {
            self.data.apply(r);
        }
    }

    fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
        if let Some(c) = &self.replay {
            c.set_paused(paused);
        }
        if !paused {
            for batch in std::mem::take(&mut self.held) {
                self.apply_records(&batch);
            }
            self.held_count = 0;
        }
    }

    /// Apply one event; returns true when the screen should be redrawn
    /// now rather than at the next tick.
    pub fn handle(&mut self, ev: AppEvent) -> bool {
        match ev {
            AppEvent::Records(batch) => {
                if self.paused && self.replay.is_none() && self.held_count < HOLD_MAX {
                    self.held_count += batch.len();
                    self.held.push(batch);
                } else {
                    self.apply_records(&batch);
                }
                false
            }
            AppEvent::Tick => {
                if self.panic_on_tick && self.last_draw > Duration::ZERO {
                    panic!(
                        "IPCWATCH_TUI_TEST_PANIC is set: panicking to test the terminal restore"
                    );
                }
                if self.clock == Clock::Live && !self.paused {
                    self.data.now_ns = self.data.now_ns.max(crate::host::monotonic_ns());
                    if self.last_proc_scan.is_none_or(|t| t.elapsed() >= PROC_SCAN) {
                        self.last_proc_scan = Some(Instant::now());
                        self.data.refresh_comms_from_proc();
                    }
                }
                true
            }
            AppEvent::Source(s) => {
                match s {
                    SourceEvent::Started => self.source = SourceState::Running,
                    SourceEvent::Stats { events, dropped } => {
                        self.data.events = self.data.events.max(events);
                        self.data.dropped = self.data.dropped.max(dropped);
                    }
                    SourceEvent::Ended(why) => {
                        self.source = SourceState::Ended(why);
                        self.quit |= self.exit_when_done;
                    }
                    SourceEvent::Failed(why) => {
                        self.error = Some(why.clone());
                        self.source = SourceState::Failed(why);
                        self.quit = true;
                    }
                    SourceEvent::Clock(ts) => {
                        if !self.paused {
                            self.data.now_ns = self.data.now_ns.max(ts);
                        }
                    }
                }
                true
            }
            AppEvent::Signal => {
                self.quit = true;
                true
            }
            AppEvent::Resize(..) => true,
            AppEvent::Probe(_) => {
                self.view = ViewId::ALL[(self.view.index() + 1) % 5];
                true
            }
            AppEvent::Mouse(m) => {
                self.mouse(m);
                true
            }
            AppEvent::Key(k) => {
                if k.kind == KeyEventKind::Release {
                    return false;
                }
                self.key(k);
                true
            }
        }
    }

    fn mouse(&mut self, m: MouseEvent) {
        match m.kind {
            MouseEventKind::ScrollDown => {
                self.view_key(KeyEvent::from(KeyCode::Down));
            }
            MouseEventKind::ScrollUp => {
                self.view_key(KeyEvent::from(KeyCode::Up));
            }
            MouseEventKind::Down(MouseButton::Left) if m.row == 0 => {
                if let Some(&(_, _, v)) = self
                    .tab_hits
                    .iter()
                    .find(|(a, b, _)| (*a..*b).contains(&m.column))
                {
                    self.view = v;
                }
            }
            _ => {}
        }
    }

    fn key(&mut self, k: KeyEvent) {
        if k.modifiers.contains(KeyModifiers::CONTROL)
            && matches!(k.code, KeyCode::Char('c') | KeyCode::Char('d'))
        {
            self.quit = true;
            return;
        }
        if let Some(input) = &mut self.input {
            match k.code {
                KeyCode::Enter => {
                    let text = input.text.clone();
                    self.input = None;
                    self.set_filter(text);
                }
                KeyCode::Esc => self.input = None,
                KeyCode::Backspace => {
                    input.text.pop();
                }
                KeyCode::Char(c) => input.text.push(c),
                _ => {}
            }
            return;
        }
        if self.help {
            // Any key closes the help (q still quits).
            self.help = false;
            if k.code == KeyCode::Char('q') {
                self.quit = true;
            }
            return;
        }
        match k.code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Char('?') | KeyCode::F(1) => self.help = true,
            KeyCode::Tab => self.view = ViewId::ALL[(self.view.index() + 1) % 5],
            KeyCode::BackTab => self.view = ViewId::ALL[(self.view.index() + 4) % 5],
            KeyCode::Char(c @ '1'..='5') => {
                self.view = ViewId::ALL[(c as u8 - b'1') as usize];
            }
            KeyCode::Char('p') | KeyCode::Char(' ') => self.set_paused(!self.paused),
            KeyCode::Char('+') | KeyCode::Char('>') => self.speed(2.0),
            KeyCode::Char('-') | KeyCode::Char('<') => self.speed(0.5),
            KeyCode::Char('/') => {
                self.input = Some(Input {
                    text: self.filter().unwrap_or_default(),
                });
            }
            _ => {
                let action = self.view_key(k);
                match action {
                    Action::SelectPid(pid) => {
                        self.data.pid_filter = Some(pid);
                    }
                    Action::Handled => {}
                    Action::Ignored => {
                        if k.code == KeyCode::Esc {
                            // Nothing left to go back from: drop the filters.
                            if self.data.pid_filter.is_some() {
                                self.data.pid_filter = None;
                            } else {
                                self.set_filter(String::new());
                            }
                        }
                    }
                }
            }
        }
    }

    fn speed(&mut self, factor: f64) {
        if let Some(c) = &self.replay {
            c.scale_speed(factor);
        }
    }

    fn view_key(&mut self, k: KeyEvent) -> Action {
        let d = &self.data;
        match self.view {
            ViewId::Overview => overview::handle_key(d, &mut self.overview, k),
            ViewId::Channels => channels::handle_key(d, &mut self.channels, k),
            ViewId::Regions => regions::handle_key(d, &mut self.regions, k),
            ViewId::Races => races::handle_key(d, &mut self.races, k),
            ViewId::Processes => processes::handle_key(d, &mut self.processes, k),
        }
    }

    fn filter(&self) -> Option<String> {
        match self.view {
            ViewId::Overview => None,
            ViewId::Channels => Some(self.channels.list.filter.clone()),
            ViewId::Regions => Some(self.regions.list.filter.clone()),
            ViewId::Races => Some(self.races.list.filter.clone()),
            ViewId::Processes => Some(self.processes.list.filter.clone()),
        }
    }

    fn set_filter(&mut self, text: String) {
        let list = match self.view {
            ViewId::Overview => {
                // The overview has no list: filter the channels.
                self.view = ViewId::Channels;
                &mut self.channels.list
            }
            ViewId::Channels => &mut self.channels.list,
            ViewId::Regions => &mut self.regions.list,
            ViewId::Races => &mut self.races.list,
            ViewId::Processes => &mut self.processes.list,
        };
        list.filter = text;
        list.selected = 0;
    }

    /// Draw the whole screen.
    pub fn render(&mut self, f: &mut Frame) {
        let area = f.area();
        let [tabs, body, status] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(3),
            Constraint::Length(1),
        ])
        .areas(area);
        self.render_tabs(f, tabs);
        let t = self.theme;
        let d = &self.data;
        match self.view {
            ViewId::Overview => overview::render(d, &mut self.overview, &t, f, body),
            ViewId::Channels => channels::render(d, &mut self.channels, &t, f, body),
            ViewId::Regions => regions::render(d, &mut self.regions, &t, f, body),
            ViewId::Races => races::render(d, &mut self.races, &t, f, body),
            ViewId::Processes => processes::render(d, &mut self.processes, &t, f, body),
        }
        self.render_status(f, status);
        if self.help {
            render_help(&t, f, area);
        }
    }

    fn render_tabs(&mut self, f: &mut Frame, area: Rect) {
        let t = self.theme;
        let mut spans = vec![Span::styled(" ipcwatch ", t.title())];
        let mut x = area.x + 10;
        self.tab_hits.clear();
        for (i, v) in ViewId::ALL.iter().enumerate() {
            let mut label = format!(" {} {} ", i + 1, v.title());
            if *v == ViewId::Races && !self.data.model.findings.is_empty() {
                label = format!(
                    " {} {} ({}) ",
                    i + 1,
                    v.title(),
                    self.data.model.findings.len()
                );
            }
            let w = label.chars().count() as u16;
            self.tab_hits.push((x, x + w, *v));
            x += w + 1;
            let style = if *v == self.view {
                t.tab_active()
            } else if *v == ViewId::Races && !self.data.model.findings.is_empty() {
                t.alert()
            } else {
                ratatui::style::Style::new()
            };
            spans.push(Span::styled(label, style));
            spans.push(Span::raw(" "));
        }
        f.render_widget(Paragraph::new(Line::from(spans)), area);
    }

    fn render_status(&self, f: &mut Frame, area: Rect) {
        let t = self.theme;
        if let Some(input) = &self.input {
            let line = Line::from(vec![
                Span::styled("filter: ", t.header()),
                Span::raw(input.text.clone()),
                Span::styled("█  (Enter applies, Esc cancels)", t.dim()),
            ]);
            f.render_widget(Paragraph::new(line), area);
            return;
        }
        let mode = match (&self.source, self.paused) {
            (SourceState::Failed(e), _) => format!("FAILED: {e}"),
            (_, true) => "PAUSED".to_string(),
            (SourceState::Starting, _) => "starting…".to_string(),
            (SourceState::Running, _) => match &self.replay {
                Some(c) => format!("REPLAY {}", c.speed_label()),
                None => "LIVE".to_string(),
            },
            (SourceState::Ended(why), _) => format!("ENDED ({why})"),
        };
        let mut spans = vec![
            Span::styled(format!(" {mode} "), t.tab_active()),
            Span::raw(format!(" {} ", self.label)),
        ];
        let dropped = self.data.dropped();
        spans.push(Span::styled(
            format!("dropped {dropped} "),
            if dropped > 0 { t.alert() } else { t.dim() },
        ));
        if let Some(pid) = self.data.pid_filter {
            spans.push(Span::styled(
                format!("[pid {} (Esc clears)] ", self.data.who(pid)),
                t.header(),
            ));
        }
        spans.push(Span::styled("?:help q:quit", t.dim()));
        f.render_widget(Paragraph::new(Line::from(spans)), area);
    }
}

fn render_help(t: &Theme, f: &mut Frame, area: Rect) {
    let lines: Vec<Line> = [
        ("Tab / 1-5", "switch view (Shift-Tab back)"),
        ("↑↓ j k", "move; PgUp PgDn g G"),
        ("Enter", "drill down; on a process: filter every view"),
        ("Esc", "back; then clear the filters"),
        ("/", "filter the list (substring)"),
        ("s", "cycle the sort"),
        ("p / space", "pause"),
        ("+ -", "replay speed ×2 ÷2"),
        ("mouse", "wheel scrolls, click a tab"),
        ("q Ctrl-C", "quit"),
    ]
    .iter()
    .map(|(k, v)| {
        Line::from(vec![
            Span::styled(format!("{k:<11}"), t.header()),
            Span::raw(*v),
        ])
    })
    .collect();
    let w = 60.min(area.width);
    let h = (lines.len() as u16 + 2).min(area.height);
    let popup = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    f.render_widget(Clear, popup);
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(Block::bordered().title(Span::styled(" Keys (any key closes) ", t.title()))),
        popup,
    );
}

/// Steady drawing rate.
pub const FRAME: Duration = Duration::from_millis(100);

/// Statistics of one run of the loop (for the bench and the tests).
#[derive(Debug, Default, Clone)]
pub struct LoopStats {
    pub frames: u64,
    pub records: u64,
    pub max_draw: Duration,
    pub total_draw: Duration,
    pub draws_over_frame: u64,
    /// Probe events: sent -> the end of the next draw.
    pub max_latency: Duration,
    pub total_latency: Duration,
    pub latencies: u64,
}

/// The UI loop: take events, apply them, draw at most every [`FRAME`]
/// (and at once after a key). Returns when the app quits or every sender
/// is gone.
pub fn run_app<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    events: &Receiver<AppEvent>,
) -> Result<LoopStats, B::Error> {
    let mut stats = LoopStats::default();
    let mut next_draw = Instant::now();
    let mut probes: Vec<Instant> = Vec::new();
    while !app.quit {
        if Instant::now() >= next_draw {
            app.handle(AppEvent::Tick);
            let t0 = Instant::now();
            terminal.draw(|f| app.render(f))?;
            let took = t0.elapsed();
            app.last_draw = took;
            stats.frames += 1;
            stats.total_draw += took;
            stats.max_draw = stats.max_draw.max(took);
            if took > FRAME {
                stats.draws_over_frame += 1;
            }
            next_draw = Instant::now() + FRAME;
            for sent in probes.drain(..) {
                let l = Instant::now().saturating_duration_since(sent);
                stats.max_latency = stats.max_latency.max(l);
                stats.total_latency += l;
                stats.latencies += 1;
            }
            continue;
        }
        let ev = match events.recv_timeout(next_draw.saturating_duration_since(Instant::now())) {
            Ok(ev) => ev,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut one = |app: &mut App, ev: AppEvent, stats: &mut LoopStats| {
            match &ev {
                AppEvent::Records(b) => stats.records += b.len() as u64,
                AppEvent::Probe(sent) => probes.push(*sent),
                _ => {}
            }
            let input = matches!(
                ev,
                AppEvent::Key(_) | AppEvent::Mouse(_) | AppEvent::Resize(..) | AppEvent::Probe(_)
            );
            let redraw = app.handle(ev);
            input && redraw
        };
        let mut urgent = one(app, ev, &mut stats);
        // What is already queued, without waiting, but never past the
        // next frame: a flood of records cannot hold the screen back.
        while !app.quit && Instant::now() < next_draw {
            let Ok(ev) = events.try_recv() else { break };
            urgent |= one(app, ev, &mut stats);
        }
        if urgent {
            // Input shows at once.
            next_draw = Instant::now();
        }
    }
    terminal.draw(|f| app.render(f))?;
    Ok(stats)
}

/// A view's list state: selection, filter, sort and drill-down.
#[derive(Debug, Clone, Default)]
pub struct ListState {
    pub selected: usize,
    pub filter: String,
    pub sort: usize,
    /// Enter was pressed on the selection: show its detail.
    pub detail: bool,
}

impl ListState {
    /// Movement keys over `len` rows; Enter and Esc toggle the detail.
    pub fn nav(&mut self, k: KeyEvent, len: usize, sorts: usize) -> Action {
        let last = len.saturating_sub(1);
        match k.code {
            KeyCode::Down | KeyCode::Char('j') => self.selected = (self.selected + 1).min(last),
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::PageDown => self.selected = (self.selected + 10).min(last),
            KeyCode::PageUp => self.selected = self.selected.saturating_sub(10),
            KeyCode::Home | KeyCode::Char('g') => self.selected = 0,
            KeyCode::End | KeyCode::Char('G') => self.selected = last,
            KeyCode::Char('s') if sorts > 0 => {
                self.sort = (self.sort + 1) % sorts;
                self.selected = 0;
            }
            KeyCode::Enter if len > 0 => self.detail = true,
            KeyCode::Esc if self.detail => self.detail = false,
            _ => return Action::Ignored,
        }
        Action::Handled
    }

    pub fn clamp(&mut self, len: usize) {
        self.selected = self.selected.min(len.saturating_sub(1));
        if len == 0 {
            self.detail = false;
        }
    }

    /// Case-insensitive substring match of the filter on any of `fields`.
    pub fn matches(&self, fields: &[&str]) -> bool {
        if self.filter.is_empty() {
            return true;
        }
        let needle = self.filter.to_lowercase();
        fields.iter().any(|f| f.to_lowercase().contains(&needle))
    }
}

/// Re-exported for the views.
pub use views::table_state;
