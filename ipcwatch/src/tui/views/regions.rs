//! View 3: shared regions with their mappers and size, write heat per page,
//! and the locks seen on them. Enter shows every mapping.

use crossterm::event::KeyEvent;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table};

use super::widgets::{block, list_block, table_state, trunc, who_list};
use crate::model::{PAGE, Region};
use crate::text::Clean;
use crate::tui::rates::{bytes, human};
use crate::tui::state::{Action, Data, ListState};
use crate::tui::theme::Theme;

pub const SORTS: [&str; 4] = ["writes", "mappers", "size", "name"];

#[derive(Debug, Default)]
pub struct State {
    pub list: ListState,
}

fn writes(r: &Region) -> u64 {
    r.pages
        .values()
        .fold(0u64, |a, p| a.saturating_add(p.writes))
}

fn items<'a>(d: &'a Data, list: &ListState) -> (Vec<&'a Region>, usize) {
    let mut v: Vec<&Region> = d
        .model
        .regions
        .values()
        .filter(|r| {
            d.pid_filter.is_none_or(|p| {
                r.mappers().contains(&p) || r.pages.values().any(|pg| pg.pids.contains(&p))
            })
        })
        .filter(|r| {
            let who: Vec<String> = r.mappers().iter().map(|p| d.who(*p)).collect();
            let mut fields = vec![r.id.as_str(), r.name.as_deref().unwrap_or("")];
            fields.extend(who.iter().map(String::as_str));
            list.matches(&fields)
        })
        .collect();
    v.sort_by(|a, b| {
        let o = match list.sort {
            0 => writes(b).cmp(&writes(a)),
            1 => b.mappers().len().cmp(&a.mappers().len()),
            2 => b.size.cmp(&a.size),
            _ => std::cmp::Ordering::Equal,
        };
        o.then(a.id.cmp(&b.id))
    });
    (v, d.model.regions.len())
}

pub fn handle_key(d: &Data, st: &mut State, k: KeyEvent) -> Action {
    let (v, _) = items(d, &st.list);
    st.list.nav(k, v.len(), SORTS.len())
}

/// One character per page (or per group of pages when the strip is
/// narrower than the region): " " never written, then ░▒▓█ by writes
/// relative to the hottest page.
pub fn heat_strip(r: &Region, width: usize) -> Vec<(char, usize)> {
    let pages = r
        .size
        .div_ceil(PAGE)
        .max(r.pages.keys().next_back().map_or(0, |p| p + 1));
    if pages == 0 || width == 0 {
        return Vec::new();
    }
    let cells = (pages as usize).min(width);
    let per = (pages as usize).div_ceil(cells) as u64;
    let mut sums = vec![0u64; cells];
    for (page, heat) in &r.pages {
        let i = ((page / per) as usize).min(cells - 1);
        sums[i] = sums[i].saturating_add(heat.writes);
    }
    let max = sums.iter().copied().max().unwrap_or(0).max(1);
    sums.iter()
        .map(|&s| {
            if s == 0 {
                ('·', 0)
            } else {
                let level = ((s as u128 * 4).div_ceil(max as u128) as usize).clamp(1, 4);
                (['░', '▒', '▓', '█'][level - 1], level.min(3))
            }
        })
        .collect()
}

pub fn render(d: &Data, st: &mut State, t: &Theme, f: &mut Frame, area: Rect) {
    let (v, total) = items(d, &st.list);
    st.list.clamp(v.len());
    let selected = v.get(st.list.selected).copied();
    if st.list.detail
        && let Some(r) = selected
    {
        render_detail(d, r, t, f, area);
        return;
    }
    let list_h = (v.len() as u16 + 3).max(4).min(area.height / 2);
    let [top, bottom] =
        Layout::vertical([Constraint::Length(list_h), Constraint::Min(4)]).areas(area);
    let rows: Vec<Row> = v
        .iter()
        .map(|r| {
            let mappers: Vec<u32> = r.mappers().into_iter().collect();
            Row::new(vec![
                trunc(&r.id, 22),
                format!("{:?}", r.kind).to_lowercase(),
                bytes(r.size),
                trunc(&who_list(d, &mappers, 2), 24),
                r.locks.len().to_string(),
                human(writes(r) as f64),
            ])
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(22),
            Constraint::Length(5),
            Constraint::Length(8),
            Constraint::Min(12),
            Constraint::Length(5),
            Constraint::Length(6),
        ],
    )
    .header(Row::new(["REGION", "KIND", "SIZE", "MAPPERS", "LOCKS", "WRITES"]).style(t.header()))
    .row_highlight_style(t.selected())
    .block(list_block(
        t,
        "Shared regions",
        v.len(),
        total,
        &st.list,
        &SORTS,
    ));
    let mut ts = table_state(st.list.selected, v.len());
    f.render_stateful_widget(table, top, &mut ts);
    match selected {
        Some(r) => render_selected(d, r, t, f, bottom),
        None => f.render_widget(
            Paragraph::new(Line::from(Span::styled(
                "No shared region seen yet (shared memory tracing lands with its own issue).",
                t.dim(),
            )))
            .block(block(t, "Region")),
            bottom,
        ),
    }
}

fn heat_line<'a>(r: &Region, t: &Theme, width: usize) -> Line<'a> {
    let spans: Vec<Span> = heat_strip(r, width)
        .into_iter()
        .map(|(c, level)| Span::styled(c.to_string(), t.heat(level)))
        .collect();
    Line::from(spans)
}

fn lock_rows<'a>(d: &Data, r: &Region) -> Vec<Row<'a>> {
    r.locks
        .iter()
        .map(|id| {
            let l = d.model.locks.get(id);
            Row::new(vec![
                trunc(id, 24),
                l.map_or("?".into(), |l| l.primitive.to_string()),
                l.map_or(0, |l| l.acquires).to_string(),
                l.map_or(0, |l| l.waits).to_string(),
                l.map_or("-".into(), |l| {
                    who_list(d, &l.pids.iter().copied().collect::<Vec<_>>(), 2)
                }),
            ])
        })
        .collect()
}

fn render_selected(d: &Data, r: &Region, t: &Theme, f: &mut Frame, area: Rect) {
    let b = block(
        t,
        &format!("{}: write heat per page, locks", trunc(&r.id, 40)),
    );
    let inner = b.inner(area);
    f.render_widget(b, area);
    let [heat, locks] = Layout::vertical([Constraint::Length(2), Constraint::Min(1)]).areas(inner);
    let pages = r.size.div_ceil(PAGE);
    let lines = vec![
        Line::from(Span::styled(
            format!(
                "{} pages, {} written, {} writes",
                pages,
                r.pages.len(),
                writes(r)
            ),
            t.dim(),
        )),
        heat_line(r, t, heat.width as usize),
    ];
    f.render_widget(Paragraph::new(lines), heat);
    let table = Table::new(
        lock_rows(d, r),
        [
            Constraint::Length(24),
            Constraint::Length(7),
            Constraint::Length(8),
            Constraint::Length(6),
            Constraint::Min(10),
        ],
    )
    .header(Row::new(["LOCK", "KIND", "ACQUIRES", "WAITS", "BY"]).style(t.header()));
    f.render_widget(table, locks);
}

fn render_detail(d: &Data, r: &Region, t: &Theme, f: &mut Frame, area: Rect) {
    let [top, bottom] = Layout::vertical([Constraint::Length(6), Constraint::Min(3)]).areas(area);
    let b = block(t, "Region (Esc: back)");
    let inner = b.inner(top);
    f.render_widget(b, top);
    let lines = vec![
        Line::from(format!(
            "{} {} {}{}",
            Clean(&r.id),
            format!("{:?}", r.kind).to_lowercase(),
            bytes(r.size),
            if r.removed { " (removed)" } else { "" }
        )),
        Line::from(format!("name: {}", Clean(r.name.as_deref().unwrap_or("-")))),
        Line::from(format!(
            "{} locks, {} pages written",
            r.locks.len(),
            r.pages.len()
        )),
        heat_line(r, t, inner.width as usize),
    ];
    f.render_widget(Paragraph::new(lines), inner);
    let rows: Vec<Row> = r
        .mappings
        .iter()
        .map(|m| {
            Row::new(vec![
                m.pid.to_string(),
                trunc(d.comm(m.pid), 15),
                format!("{:#x}-{:#x}", m.start, m.end),
                format!("{:#x}", m.offset),
                m.prot.to_string(),
            ])
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(8),
            Constraint::Length(16),
            Constraint::Length(30),
            Constraint::Length(8),
            Constraint::Length(4),
        ],
    )
    .header(Row::new(["PID", "COMM", "RANGE", "OFFSET", "PROT"]).style(t.header()))
    .block(block(t, "Mappings"));
    f.render_widget(table, bottom);
}
