//! View 1: event-rate sparklines per kind, losses, top talkers, races by
//! kind.

use std::collections::BTreeMap;

use crossterm::event::KeyEvent;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Sparkline, Table};

use super::widgets::{block, trunc};
use crate::text::Clean;
use crate::tui::rates::{HISTORY, bytes, human};
use crate::tui::state::{Action, Data, KINDS};
use crate::tui::theme::Theme;

#[derive(Debug, Default)]
pub struct State;

pub fn handle_key(_d: &Data, _st: &mut State, _k: KeyEvent) -> Action {
    Action::Ignored
}

pub fn render(d: &Data, _st: &mut State, t: &Theme, f: &mut Frame, area: Rect) {
    let rows = KINDS.len() as u16 + 2;
    let [top, bottom] =
        Layout::vertical([Constraint::Length(rows), Constraint::Min(3)]).areas(area);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(58), Constraint::Percentage(42)]).areas(top);
    render_rates(d, t, f, left);
    render_totals(d, t, f, right);
    render_talkers(d, t, f, bottom);
}

fn render_rates(d: &Data, t: &Theme, f: &mut Frame, area: Rect) {
    let b = block(t, "Events per second, last 60 s");
    let inner = b.inner(area);
    f.render_widget(b, area);
    let label_w = 6u16;
    let rate_w = 7u16;
    let spark_w = inner.width.saturating_sub(label_w + rate_w + 1);
    for (i, kind) in KINDS.iter().enumerate() {
        if i as u16 >= inner.height {
            break;
        }
        let y = inner.y + i as u16;
        let series = d.kinds.get(kind);
        let rate = series.map_or(0.0, |s| s.rate(d.now_ns, d.first_ns));
        let style = if series.is_some() {
            t.header()
        } else {
            t.dim()
        };
        f.render_widget(
            Paragraph::new(Span::styled(format!("{kind:<5}"), style)),
            Rect::new(inner.x, y, label_w, 1).intersection(inner),
        );
        let data = series
            .map(|s| s.last(d.now_ns, (spark_w as usize).min(HISTORY)))
            .unwrap_or_default();
        f.render_widget(
            Sparkline::default().data(&data).style(t.spark()),
            Rect::new(inner.x + label_w, y, spark_w, 1).intersection(inner),
        );
        f.render_widget(
            Paragraph::new(format!("{:>7}", human(rate))),
            Rect::new(inner.x + label_w + spark_w + 1, y, rate_w, 1).intersection(inner),
        );
    }
}

fn render_totals(d: &Data, t: &Theme, f: &mut Frame, area: Rect) {
    let m = &d.model;
    let alive = m.processes.values().filter(|p| p.alive).count();
    let dropped = d.dropped();
    let mut lines = vec![
        Line::from(if d.events > 0 {
            format!(
                "events {}  records {}",
                human(d.events as f64),
                human(m.records as f64)
            )
        } else {
            format!("records {}", human(m.records as f64))
        }),
        Line::from(vec![
            Span::raw("dropped "),
            Span::styled(
                dropped.to_string(),
                if dropped > 0 { t.alert() } else { t.good() },
            ),
        ]),
        Line::from(format!("processes {} ({} alive)", m.processes.len(), alive)),
        Line::from(format!(
            "channels {}  regions {}  locks {}",
            m.channels.len(),
            m.regions.len(),
            m.locks.len()
        )),
    ];
    if let Some(w) = m.warnings.last() {
        lines.push(Line::from(Span::styled(
            format!("warnings {}: {}", m.warnings.len(), Clean(w)),
            t.dim(),
        )));
    }
    let mut by_kind: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
    for fi in &m.findings {
        let e = by_kind.entry(fi.race.kind.as_str()).or_default();
        e.0 += 1;
        e.1 += fi.count;
    }
    lines.push(Line::from(Span::styled("Races by kind", t.title())));
    if by_kind.is_empty() {
        lines.push(Line::from(Span::styled("none found", t.dim())));
    }
    for (k, (n, hits)) in by_kind {
        lines.push(Line::from(vec![
            Span::styled(format!("{n:>3} "), t.alert()),
            Span::raw(format!("{} ({hits} hits)", Clean(k))),
        ]));
    }
    f.render_widget(Paragraph::new(lines).block(block(t, "Totals")), area);
}

fn render_talkers(d: &Data, t: &Theme, f: &mut Frame, area: Rect) {
    let mut procs: Vec<_> = d
        .model
        .processes
        .values()
        .filter(|p| d.pid_filter.is_none_or(|pid| pid == p.pid))
        .filter(|p| p.bytes_written + p.bytes_read > 0)
        .map(|p| {
            let (bps, mps) = d.process_rates(p.pid);
            (bps, mps, p)
        })
        .collect();
    procs.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then((b.2.bytes_written + b.2.bytes_read).cmp(&(a.2.bytes_written + a.2.bytes_read)))
            .then(a.2.pid.cmp(&b.2.pid))
    });
    let rows: Vec<Row> = procs
        .iter()
        .take(area.height.saturating_sub(3) as usize)
        .map(|(bps, mps, p)| {
            Row::new(vec![
                p.pid.to_string(),
                trunc(d.comm(p.pid), 15),
                human(*bps),
                human(*mps),
                bytes(p.bytes_written),
                bytes(p.bytes_read),
                p.fds.len().to_string(),
            ])
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(7),
            Constraint::Length(15),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(4),
        ],
    )
    .header(Row::new(["PID", "COMM", "B/s", "io/s", "WRITTEN", "READ", "FDS"]).style(t.header()))
    .block(block(t, "Top talkers"));
    f.render_widget(table, area);
}
