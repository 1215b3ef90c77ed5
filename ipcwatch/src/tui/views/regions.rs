//! View 3: shared regions with their mappers and size, write heat per page,
//! the words the race detector saw written, and the locks seen on them.
//! Regions with findings come first; read-only and single-writer regions
//! are dimmed, or hidden with `a`. Enter shows every mapping.

use std::collections::{BTreeMap, BTreeSet};

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};

use super::widgets::{block, list_block, table_state, trunc, who_list};
use crate::model::{PAGE, Region};
use crate::text::Clean;
use crate::tui::rates::{bytes, human};
use crate::tui::state::{Action, Data, ListState, WordHeat};
use crate::tui::theme::Theme;

pub const SORTS: [&str; 5] = ["findings", "writes", "mappers", "size", "name"];

#[derive(Debug, Default)]
pub struct State {
    pub list: ListState,
    /// Hide the quiet regions (read-only, or written by one process).
    pub hide_quiet: bool,
}

/// The detector's words of region `r`, by offset.
fn words<'a>(d: &'a Data, r: &Region) -> impl Iterator<Item = (u64, &'a WordHeat)> + 'a {
    let id = r.id.clone();
    d.words
        .range((id.clone(), 0)..=(id, u64::MAX))
        .map(|((_, off), h)| (*off, h))
}

/// Write activity per page: write faults, plus what the detector saw
/// change there (its words' changes, or the sampler's count of samples in
/// which the page changed, whichever is larger: the same writes seen two
/// ways).
fn page_writes(d: &Data, r: &Region) -> BTreeMap<u64, u64> {
    let mut seen: BTreeMap<u64, u64> = BTreeMap::new();
    for (offset, w) in words(d, r) {
        let n = seen.entry(offset / PAGE).or_default();
        *n = n.saturating_add(w.changes());
    }
    let id = r.id.clone();
    for ((_, page), changes) in d.pages.range((id.clone(), 0)..=(id, u64::MAX)) {
        let n = seen.entry(*page).or_default();
        *n = (*n).max(*changes);
    }
    for (page, heat) in &r.pages {
        let n = seen.entry(*page).or_default();
        *n = n.saturating_add(heat.writes);
    }
    seen
}

/// Write activity: write faults, and the changes the detector saw.
fn writes(d: &Data, r: &Region) -> u64 {
    page_writes(d, r)
        .values()
        .fold(0u64, |a, n| a.saturating_add(*n))
}

/// Distinct findings on the region.
fn races(d: &Data, r: &Region) -> usize {
    d.model
        .findings
        .iter()
        .filter(|f| f.race.region.as_deref() == Some(r.id.as_str()))
        .count()
}

/// The processes mapping it now; when all have gone, how many did.
fn mappers_text(d: &Data, r: &Region, now: &[u32]) -> String {
    let ever = d.mapped_by.get(&r.id).map_or(0, |s| s.len());
    if now.is_empty() && ever > 0 {
        format!("({ever} exited)")
    } else {
        who_list(d, now, 2)
    }
}

/// Distinct findings on one word of the region.
fn findings_at(d: &Data, r: &Region, offset: u64) -> usize {
    d.model
        .findings
        .iter()
        .filter(|f| {
            f.race.region.as_deref() == Some(r.id.as_str()) && f.race.offset == Some(offset)
        })
        .count()
}

/// Processes that can or did write it: writable mappings, write faults,
/// the detector's writers.
fn writers(d: &Data, r: &Region) -> BTreeSet<u32> {
    let mut w: BTreeSet<u32> = r
        .mappings
        .iter()
        .filter(|m| m.prot.contains('w'))
        .map(|m| m.pid)
        .collect();
    w.extend(r.pages.values().flat_map(|p| p.pids.iter().copied()));
    w.extend(words(d, r).flat_map(|(_, h)| h.writers.iter().copied()));
    w
}

/// No finding, and at most one writer: nothing to race on.
fn quiet(d: &Data, r: &Region) -> bool {
    races(d, r) == 0 && writers(d, r).len() < 2
}

fn items<'a>(d: &'a Data, list: &ListState, hide_quiet: bool) -> (Vec<&'a Region>, usize) {
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
        .filter(|r| !hide_quiet || !quiet(d, r))
        .collect();
    v.sort_by(|a, b| {
        let o = match list.sort {
            0 => (races(d, b), writes(d, b)).cmp(&(races(d, a), writes(d, a))),
            1 => writes(d, b).cmp(&writes(d, a)),
            2 => b.mappers().len().cmp(&a.mappers().len()),
            3 => b.size.cmp(&a.size),
            _ => std::cmp::Ordering::Equal,
        };
        o.then(a.id.cmp(&b.id))
    });
    (v, d.model.regions.len())
}

pub fn handle_key(d: &Data, st: &mut State, k: KeyEvent) -> Action {
    if k.code == KeyCode::Char('a') && !st.list.detail {
        st.hide_quiet = !st.hide_quiet;
        st.list.selected = 0;
        return Action::Handled;
    }
    let (v, _) = items(d, &st.list, st.hide_quiet);
    st.list.nav(k, v.len(), SORTS.len())
}

/// One character per page (or per group of pages when the strip is
/// narrower than the region): "·" never written, then ░▒▓█ by writes
/// (write faults, and the changes the race detector saw on its words)
/// relative to the hottest page.
pub fn heat_strip(d: &Data, r: &Region, width: usize) -> Vec<(char, usize)> {
    let per_page = page_writes(d, r);
    let pages = r
        .size
        .div_ceil(PAGE)
        .max(per_page.keys().next_back().map_or(0, |p| p + 1));
    if pages == 0 || width == 0 {
        return Vec::new();
    }
    let cells = (pages as usize).min(width);
    let per = (pages as usize).div_ceil(cells) as u64;
    let mut sums = vec![0u64; cells];
    for (page, n) in per_page {
        let i = ((page / per) as usize).min(cells - 1);
        sums[i] = sums[i].saturating_add(n);
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
    let (v, total) = items(d, &st.list, st.hide_quiet);
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
            let n = races(d, r);
            let row = Row::new(vec![
                Cell::from(trunc(&r.id, 22)),
                Cell::from(format!("{:?}", r.kind).to_lowercase()),
                Cell::from(bytes(r.size)),
                Cell::from(trunc(&mappers_text(d, r, &mappers), 40)),
                Cell::from(r.locks.len().to_string()),
                Cell::from(human(writes(d, r) as f64)),
                if n > 0 {
                    Cell::from(Span::styled(n.to_string(), t.alert()))
                } else {
                    Cell::from("-")
                },
            ]);
            if quiet(d, r) { row.style(t.dim()) } else { row }
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
            Constraint::Length(5),
        ],
    )
    .header(
        Row::new([
            "REGION", "KIND", "SIZE", "MAPPERS", "LOCKS", "WRITES", "RACES",
        ])
        .style(t.header()),
    )
    .row_highlight_style(t.selected())
    .block(list_block(
        t,
        if st.hide_quiet {
            "Shared regions (a: show quiet)"
        } else {
            "Shared regions"
        },
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

fn heat_line<'a>(d: &Data, r: &Region, t: &Theme, width: usize) -> Line<'a> {
    let spans: Vec<Span> = heat_strip(d, r, width)
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

/// The detector's words of the region: offset, changes and their rate
/// over the time seen, writers, armed or not, findings.
fn word_rows<'a>(d: &Data, r: &Region, t: &Theme) -> Vec<Row<'a>> {
    let secs = d.now_ns.saturating_sub(d.first_ns) as f64 / 1e9;
    let mut v: Vec<(u64, &WordHeat)> = words(d, r).collect();
    v.sort_by(|a, b| (b.1.races, b.1.changes(), a.0).cmp(&(a.1.races, a.1.changes(), b.0)));
    v.into_iter()
        .map(|(offset, w)| {
            let rate = if secs > 0.0 {
                human(w.changes() as f64 / secs)
            } else {
                "-".into()
            };
            let writers: Vec<u32> = w.writers.iter().copied().collect();
            let row = Row::new(vec![
                format!("+{offset:#x}"),
                human(w.changes() as f64),
                rate,
                trunc(&who_list(d, &writers, 2), 40),
                if w.sync {
                    "sync".into()
                } else if w.armed {
                    "yes".into()
                } else {
                    "no".into()
                },
                match findings_at(d, r, offset) {
                    0 => "-".into(),
                    n => n.to_string(),
                },
            ]);
            if w.races > 0 {
                row.style(t.alert())
            } else {
                row
            }
        })
        .collect()
}

fn render_selected(d: &Data, r: &Region, t: &Theme, f: &mut Frame, area: Rect) {
    let b = block(
        t,
        &format!(
            "{}: write heat per page, hot words, locks",
            trunc(&r.id, 40)
        ),
    );
    let inner = b.inner(area);
    f.render_widget(b, area);
    let hot = word_rows(d, r, t);
    let hot_h = if hot.is_empty() {
        0
    } else {
        (hot.len() as u16 + 1).min(7)
    };
    let [heat, words_area, locks] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(hot_h),
        Constraint::Min(1),
    ])
    .areas(inner);
    let pages = r.size.div_ceil(PAGE);
    let lines = vec![
        Line::from(Span::styled(
            format!(
                "{} pages, {} written, {} writes, {} writers",
                pages,
                r.pages.len(),
                writes(d, r),
                writers(d, r).len()
            ),
            t.dim(),
        )),
        heat_line(d, r, t, heat.width as usize),
    ];
    f.render_widget(Paragraph::new(lines), heat);
    if !hot.is_empty() {
        let table = Table::new(
            hot,
            [
                Constraint::Length(10),
                Constraint::Length(8),
                Constraint::Length(8),
                Constraint::Min(12),
                Constraint::Length(6),
                Constraint::Length(5),
            ],
        )
        .header(
            Row::new(["WORD", "CHANGES", "RATE/s", "WRITERS", "ARMED", "RACES"]).style(t.header()),
        );
        f.render_widget(table, words_area);
    }
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
        heat_line(d, r, t, inner.width as usize),
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
