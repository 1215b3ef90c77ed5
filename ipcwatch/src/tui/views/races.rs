//! View 4: race findings; the detail pane shows both accesses (pid/comm,
//! function, file:line, stack, locks held) and a timeline. Enter gives the
//! detail the whole screen.

use crossterm::event::KeyEvent;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table, Wrap};

use super::widgets::{block, list_block, rel, table_state, trunc};
use crate::model::Finding;
use crate::record::Access;
use crate::text::{Clean, clean};
use crate::tui::state::{Action, Data, ListState};
use crate::tui::theme::Theme;

pub const SORTS: [&str; 3] = ["first seen", "hits", "recent"];

#[derive(Debug, Default)]
pub struct State {
    pub list: ListState,
}

/// Where a finding is: "sysv:5+0x40" or the channel.
pub fn place(fi: &Finding) -> String {
    let r = &fi.race;
    match (&r.region, &r.channel) {
        (Some(region), _) => format!("{}+{:#x}", Clean(region), r.offset.unwrap_or(0)),
        (None, Some(c)) => clean(c).into_owned(),
        _ => "?".into(),
    }
}

fn site(a: &Access) -> String {
    match (&a.function, &a.file, a.line) {
        (Some(func), Some(file), Some(line)) => format!("{} {}:{line}", Clean(func), Clean(file)),
        (Some(func), _, _) => clean(func).into_owned(),
        _ => format!("{:#x}", a.ip),
    }
}

fn items<'a>(d: &'a Data, list: &ListState) -> (Vec<&'a Finding>, usize) {
    let mut v: Vec<&Finding> = d
        .model
        .findings
        .iter()
        .filter(|fi| {
            d.pid_filter
                .is_none_or(|p| fi.race.accesses.iter().any(|a| a.pid == p))
        })
        .filter(|fi| {
            let mut fields = vec![fi.race.kind.to_string(), place(fi)];
            for a in &fi.race.accesses {
                fields.push(format!("{} {}", a.pid, a.comm));
                fields.push(site(a));
            }
            let refs: Vec<&str> = fields.iter().map(String::as_str).collect();
            list.matches(&refs)
        })
        .collect();
    match list.sort {
        1 => v.sort_by_key(|f| std::cmp::Reverse(f.count)),
        2 => v.sort_by_key(|f| std::cmp::Reverse(f.last_ts)),
        _ => {}
    }
    (v, d.model.findings.len())
}

pub fn handle_key(d: &Data, st: &mut State, k: KeyEvent) -> Action {
    let (v, _) = items(d, &st.list);
    st.list.nav(k, v.len(), SORTS.len())
}

pub fn render(d: &Data, st: &mut State, t: &Theme, f: &mut Frame, area: Rect) {
    let (v, total) = items(d, &st.list);
    st.list.clamp(v.len());
    let selected = v.get(st.list.selected).copied();
    let detail_area = if st.list.detail && selected.is_some() {
        area
    } else {
        let list_h = (v.len() as u16 + 3).max(4).min(area.height / 3);
        let [top, bottom] =
            Layout::vertical([Constraint::Length(list_h), Constraint::Min(4)]).areas(area);
        let rows: Vec<Row> = v
            .iter()
            .map(|fi| {
                let who: Vec<String> = fi
                    .race
                    .accesses
                    .iter()
                    .map(|a| format!("{} {}", a.pid, Clean(&a.comm)))
                    .collect();
                Row::new(vec![
                    trunc(&fi.race.kind, 16),
                    trunc(&place(fi), 22),
                    fi.count.to_string(),
                    who.join(" × "),
                ])
            })
            .collect();
        let table = Table::new(
            rows,
            [
                Constraint::Length(16),
                Constraint::Length(22),
                Constraint::Length(5),
                Constraint::Min(10),
            ],
        )
        .header(Row::new(["KIND", "WHERE", "HITS", "ACCESSES"]).style(t.header()))
        .row_highlight_style(t.selected())
        .block(list_block(t, "Races", v.len(), total, &st.list, &SORTS));
        let mut ts = table_state(st.list.selected, v.len());
        f.render_stateful_widget(table, top, &mut ts);
        bottom
    };
    match selected {
        Some(fi) => render_detail(d, fi, t, f, detail_area, st.list.detail),
        None => f.render_widget(
            Paragraph::new(vec![
                Line::from(Span::styled("No race found.", t.good())),
                Line::from(Span::styled(
                    "Findings of the race detector appear here: both writers, where in their code, and when.",
                    t.dim(),
                )),
            ])
            .wrap(Wrap { trim: true })
            .block(block(t, "Detail")),
            detail_area,
        ),
    }
}

/// A one-line timeline between the first and last access: "A" and "B"
/// where each access happened.
pub fn timeline(accesses: &[Access], width: usize) -> String {
    if accesses.is_empty() || width < 3 {
        return String::new();
    }
    let lo = accesses.iter().map(|a| a.ts_ns).min().unwrap_or(0);
    let hi = accesses.iter().map(|a| a.ts_ns).max().unwrap_or(0);
    let mut cells = vec!['─'; width];
    for (i, a) in accesses.iter().enumerate() {
        let pos = if hi == lo {
            i.min(width - 1)
        } else {
            ((a.ts_ns - lo) as u128 * (width as u128 - 1) / (hi - lo) as u128) as usize
        };
        let mark = (b'A' + (i as u8 % 26)) as char;
        let mut p = pos;
        while p < width && cells[p] != '─' {
            p += 1;
        }
        if p < width {
            cells[p] = mark;
        }
    }
    cells.into_iter().collect()
}

fn access_lines<'a>(a: &Access, label: char, t: &Theme, max_stack: usize) -> Vec<Line<'a>> {
    let mut lines = vec![
        Line::from(Span::styled(
            format!("{label}: {} {} (tid {})", a.pid, Clean(&a.comm), a.tid),
            t.header(),
        )),
        Line::from(format!(
            "fn {}",
            Clean(a.function.as_deref().unwrap_or("?"))
        )),
        Line::from(format!(
            "at {}:{}",
            Clean(a.file.as_deref().unwrap_or("?")),
            a.line.map_or("?".into(), |l| l.to_string())
        )),
        Line::from(format!("ip {:#x}", a.ip)),
        Line::from(if a.locks.is_empty() {
            Span::styled("locks held: none", t.alert())
        } else {
            Span::raw(format!("locks held: {}", clean(&a.locks.join(", "))))
        }),
    ];
    if !a.stack.is_empty() {
        lines.push(Line::from(Span::styled("stack:", t.dim())));
        for frame in a.stack.iter().take(max_stack) {
            lines.push(Line::from(format!("  {}", clean(&frame.to_string()))));
        }
        if a.stack.len() > max_stack {
            lines.push(Line::from(Span::styled(
                format!("  … {} more", a.stack.len() - max_stack),
                t.dim(),
            )));
        }
    }
    lines
}

fn render_detail(d: &Data, fi: &Finding, t: &Theme, f: &mut Frame, area: Rect, full: bool) {
    let r = &fi.race;
    let b = block(
        t,
        if full {
            "Race (Esc: back)"
        } else {
            "Detail (Enter: expand)"
        },
    );
    let inner = b.inner(area);
    f.render_widget(b, area);
    let lo = r.accesses.iter().map(|a| a.ts_ns).min().unwrap_or(0);
    let hi = r.accesses.iter().map(|a| a.ts_ns).max().unwrap_or(0);
    let head = vec![
        Line::from(vec![
            Span::styled(format!("{} ", Clean(&r.kind)), t.alert()),
            Span::raw(format!(
                "at {} ({} bytes), {} {:.0}%, {} hits, first {} last {}",
                place(fi),
                r.len,
                r.evidence,
                r.confidence * 100.0,
                fi.count,
                rel(d, fi.first_ts),
                rel(d, fi.last_ts)
            )),
        ]),
        Line::from(vec![
            Span::styled("timeline ", t.dim()),
            Span::raw(timeline(
                &r.accesses,
                inner.width.saturating_sub(22) as usize,
            )),
            Span::styled(format!(" Δ {:.1}µs", (hi - lo) as f64 / 1e3), t.dim()),
        ]),
        Line::from(Span::styled(clean(&r.explanation).into_owned(), t.dim())),
    ];
    let [h, body] = Layout::vertical([Constraint::Length(3), Constraint::Min(1)]).areas(inner);
    f.render_widget(Paragraph::new(head), h);
    let n = r.accesses.len().clamp(1, 2) as u32;
    let cols = Layout::horizontal(vec![Constraint::Ratio(1, n); n as usize]).split(body);
    let max_stack = body.height.saturating_sub(7) as usize;
    for (i, (a, col)) in r.accesses.iter().zip(cols.iter()).enumerate() {
        let label = (b'A' + i as u8) as char;
        f.render_widget(Paragraph::new(access_lines(a, label, t, max_stack)), *col);
    }
}
