//! The app: its state, [`Input`]s in, frames out, and the key dispatch.
//! The loop in [`run_app`] takes its terminal and its input stream as
//! parameters, so the tests run it on a `TestBackend` with a fake stream.

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
use ratatui::widgets::Paragraph;

use crate::record::Record;
use crate::text::Clean;

use super::input::{Input, SourceStatus};
use super::source::ReplayControl;
use super::state::{Action, Data, ViewId};
use super::theme::Theme;
use super::views::{channels, help, overview, processes, races, regions};
use crate::host::monotonic_ns;

/// Where the source is, as the status line shows it.
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

/// Typing a filter after `/`.
#[derive(Debug, Clone, Default)]
pub struct Prompt {
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
    pub prompt: Option<Prompt>,
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
            prompt: None,
            quit: false,
            error: None,
            tab_hits: Vec::new(),
            last_draw: Duration::ZERO,
            label: label.into(),
            exit_when_done: false,
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

    /// Apply one input; returns true when the screen should be redrawn
    /// now rather than at the next tick.
    pub fn handle(&mut self, input: Input) -> bool {
        match input {
            Input::Records(batch) => {
                self.records(batch);
                false
            }
            Input::Tick => {
                self.tick();
                true
            }
            Input::Source(s) => {
                self.source_status(s);
                true
            }
            Input::Signal => {
                self.quit = true;
                true
            }
            Input::Resize(..) => true,
            Input::Probe(_) => {
                self.view = ViewId::ALL[(self.view.index() + 1) % 5];
                true
            }
            Input::Mouse(m) => {
                self.mouse(m);
                true
            }
            Input::Key(k) => {
                if k.kind == KeyEventKind::Release {
                    return false;
                }
                self.key(k);
                true
            }
        }
    }

    /// A batch from the source: applied, or held while a live view is
    /// paused.
    fn records(&mut self, batch: Vec<Record>) {
        if self.paused && self.replay.is_none() && self.held_count < HOLD_MAX {
            self.held_count += batch.len();
            self.held.push(batch);
        } else {
            self.apply_records(&batch);
        }
    }

    /// Live: the clock moves on (rates decay) and names are read again.
    fn tick(&mut self) {
        if self.clock == Clock::Live && !self.paused {
            self.data.now_ns = self.data.now_ns.max(monotonic_ns());
            if self.last_proc_scan.is_none_or(|t| t.elapsed() >= PROC_SCAN) {
                self.last_proc_scan = Some(Instant::now());
                self.data.refresh_comms_from_proc();
            }
        }
    }

    fn source_status(&mut self, s: SourceStatus) {
        match s {
            SourceStatus::Started => self.source = SourceState::Running,
            SourceStatus::Stats { events, dropped } => {
                self.data.events = self.data.events.max(events);
                self.data.dropped = self.data.dropped.max(dropped);
            }
            SourceStatus::Ended(why) => {
                self.source = SourceState::Ended(why);
                self.quit |= self.exit_when_done;
            }
            SourceStatus::Failed(why) => {
                self.error = Some(why.clone());
                self.source = SourceState::Failed(why);
                self.quit = true;
            }
            SourceStatus::Clock(ts) => {
                if !self.paused {
                    self.data.now_ns = self.data.now_ns.max(ts);
                }
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
        if self.prompt.is_some() {
            self.prompt_key(k);
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
                self.prompt = Some(Prompt {
                    text: self.filter().unwrap_or_default(),
                });
            }
            _ => self.view_key_or_clear(k),
        }
    }

    /// A key while the filter is being typed.
    fn prompt_key(&mut self, k: KeyEvent) {
        let Some(prompt) = &mut self.prompt else {
            return;
        };
        match k.code {
            KeyCode::Enter => {
                let text = prompt.text.clone();
                self.prompt = None;
                self.set_filter(text);
            }
            KeyCode::Esc => self.prompt = None,
            KeyCode::Backspace => {
                prompt.text.pop();
            }
            KeyCode::Char(c) => prompt.text.push(c),
            _ => {}
        }
    }

    /// A key for the view; Esc that no view wants drops the filters.
    fn view_key_or_clear(&mut self, k: KeyEvent) {
        match self.view_key(k) {
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
            help::render(&t, f, area);
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
        if let Some(prompt) = &self.prompt {
            let line = Line::from(vec![
                Span::styled("filter: ", t.header()),
                Span::raw(prompt.text.clone()),
                Span::styled("█  (Enter applies, Esc cancels)", t.dim()),
            ]);
            f.render_widget(Paragraph::new(line), area);
            return;
        }
        let mode = match (&self.source, self.paused) {
            (SourceState::Failed(e), _) => format!("FAILED: {}", Clean(e)),
            (_, true) => "PAUSED".to_string(),
            (SourceState::Starting, _) => "starting…".to_string(),
            (SourceState::Running, _) => match &self.replay {
                Some(c) => format!("REPLAY {}", c.speed_label()),
                None => "LIVE".to_string(),
            },
            (SourceState::Ended(why), _) => format!("ENDED ({})", Clean(why)),
        };
        let mut spans = vec![
            Span::styled(format!(" {mode} "), t.tab_active()),
            Span::raw(format!(" {} ", Clean(&self.label))),
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
    /// Probe inputs: sent -> the end of the next draw.
    pub max_latency: Duration,
    pub total_latency: Duration,
    pub latencies: u64,
}

/// The UI loop: take inputs, apply them, draw at most every [`FRAME`]
/// (and at once after a key). Returns when the app quits or every sender
/// is gone.
pub fn run_app<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    inputs: &Receiver<Input>,
) -> Result<LoopStats, B::Error> {
    let mut stats = LoopStats::default();
    let mut next_draw = Instant::now();
    let mut probes: Vec<Instant> = Vec::new();
    while !app.quit {
        if Instant::now() >= next_draw {
            draw_frame(terminal, app, &mut stats, &mut probes)?;
            next_draw = Instant::now() + FRAME;
            continue;
        }
        let input = match inputs.recv_timeout(next_draw.saturating_duration_since(Instant::now())) {
            Ok(input) => input,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut urgent = apply(app, input, &mut stats, &mut probes);
        // What is already queued, without waiting, but never past the
        // next frame: a flood of records cannot hold the screen back.
        while !app.quit && Instant::now() < next_draw {
            let Ok(input) = inputs.try_recv() else { break };
            urgent |= apply(app, input, &mut stats, &mut probes);
        }
        if urgent {
            // Input shows at once.
            next_draw = Instant::now();
        }
    }
    terminal.draw(|f| app.render(f))?;
    Ok(stats)
}

/// Tick, draw, and account the draw and the probes it answers.
fn draw_frame<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    stats: &mut LoopStats,
    probes: &mut Vec<Instant>,
) -> Result<(), B::Error> {
    app.handle(Input::Tick);
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
    for sent in probes.drain(..) {
        let l = Instant::now().saturating_duration_since(sent);
        stats.max_latency = stats.max_latency.max(l);
        stats.total_latency += l;
        stats.latencies += 1;
    }
    Ok(())
}

/// Apply one input; true when it came from the user (or a probe) and
/// asks for a redraw now.
fn apply(app: &mut App, input: Input, stats: &mut LoopStats, probes: &mut Vec<Instant>) -> bool {
    match &input {
        Input::Records(b) => stats.records += b.len() as u64,
        Input::Probe(sent) => probes.push(*sent),
        _ => {}
    }
    let user = matches!(
        input,
        Input::Key(_) | Input::Mouse(_) | Input::Resize(..) | Input::Probe(_)
    );
    let redraw = app.handle(input);
    user && redraw
}
