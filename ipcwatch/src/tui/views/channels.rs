//! View 2: pipes, FIFOs, sockets and queues with both ends, bytes/s and
//! messages/s. Sortable (`s`), filterable (`/`); Enter shows the holders.

use crossterm::event::KeyEvent;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Row, Table};

use super::widgets::{block, list_block, rel, table_state, trunc, who_list};
use crate::model::Channel;
use crate::text::Clean;
use crate::tui::rates::{bytes, human};
use crate::tui::state::{Action, Data, ListState};
use crate::tui::theme::Theme;

pub const SORTS: [&str; 5] = ["bytes/s", "msgs/s", "total", "recent", "name"];

#[derive(Debug, Default)]
pub struct State {
    pub list: ListState,
}

struct Item<'a> {
    c: &'a Channel,
    writers: Vec<u32>,
    readers: Vec<u32>,
    bps: f64,
    mps: f64,
}

fn items<'a>(d: &'a Data, list: &ListState) -> (Vec<Item<'a>>, usize) {
    let total = d.model.channels.len();
    let mut v: Vec<Item> = d
        .model
        .channels
        .values()
        .map(|c| {
            let (bps, mps) = d.channel_rates(&c.id);
            Item {
                c,
                writers: c.writers().into_iter().collect(),
                readers: c.readers().into_iter().collect(),
                bps,
                mps,
            }
        })
        .filter(|i| {
            d.pid_filter
                .is_none_or(|p| i.writers.contains(&p) || i.readers.contains(&p))
        })
        .filter(|i| {
            if list.filter.is_empty() {
                return true;
            }
            let mut fields = vec![
                i.c.id.to_string(),
                i.c.kind.as_str().to_string(),
                i.c.path.clone().unwrap_or_default(),
            ];
            fields.extend(i.writers.iter().chain(&i.readers).map(|p| d.who(*p)));
            let refs: Vec<&str> = fields.iter().map(String::as_str).collect();
            list.matches(&refs)
        })
        .collect();
    let total_bytes = |c: &Channel| c.bytes_written.max(c.bytes_read);
    v.sort_by(|a, b| {
        let o = match list.sort {
            0 => b
                .bps
                .total_cmp(&a.bps)
                .then(total_bytes(b.c).cmp(&total_bytes(a.c))),
            1 => b
                .mps
                .total_cmp(&a.mps)
                .then((b.c.writes + b.c.reads).cmp(&(a.c.writes + a.c.reads))),
            2 => total_bytes(b.c).cmp(&total_bytes(a.c)),
            3 => b.c.last_ts.cmp(&a.c.last_ts),
            _ => std::cmp::Ordering::Equal,
        };
        o.then(a.c.id.cmp(&b.c.id))
    });
    (v, total)
}

pub fn handle_key(d: &Data, st: &mut State, k: KeyEvent) -> Action {
    let (v, _) = items(d, &st.list);
    st.list.nav(k, v.len(), SORTS.len())
}

pub fn render(d: &Data, st: &mut State, t: &Theme, f: &mut Frame, area: Rect) {
    let (v, total) = items(d, &st.list);
    st.list.clamp(v.len());
    if st.list.detail
        && let Some(item) = v.get(st.list.selected)
    {
        render_detail(d, item, t, f, area);
        return;
    }
    let wide = area.width >= 100;
    let who_w = if wide { 22 } else { 14 };
    let rows: Vec<Row> = v
        .iter()
        .map(|i| {
            Row::new(vec![
                i.c.kind.as_str().to_string(),
                trunc(i.c.path.as_deref().unwrap_or(&i.c.id), 18),
                trunc(&who_list(d, &i.writers, 1), who_w),
                trunc(&who_list(d, &i.readers, 1), who_w),
                human(i.bps),
                human(i.mps),
                bytes(i.c.bytes_written.max(i.c.bytes_read)),
            ])
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(4),
            Constraint::Length(18),
            Constraint::Length(who_w as u16),
            Constraint::Length(who_w as u16),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Min(8),
        ],
    )
    .header(
        Row::new([
            "KIND", "CHANNEL", "WRITERS", "READERS", "B/s", "msg/s", "TOTAL",
        ])
        .style(t.header()),
    )
    .row_highlight_style(t.selected())
    .block(list_block(t, "Channels", v.len(), total, &st.list, &SORTS));
    let mut ts = table_state(st.list.selected, v.len());
    f.render_stateful_widget(table, area, &mut ts);
}

fn render_detail(d: &Data, i: &Item, t: &Theme, f: &mut Frame, area: Rect) {
    let c = i.c;
    let [top, bottom] = Layout::vertical([Constraint::Length(8), Constraint::Min(3)]).areas(area);
    let lines = vec![
        Line::from(format!("{} ({})", Clean(&c.id), c.kind.as_str())),
        Line::from(format!("path: {}", Clean(c.path.as_deref().unwrap_or("-")))),
        Line::from(format!(
            "written {} in {} writes, read {} in {} reads",
            bytes(c.bytes_written),
            c.writes,
            bytes(c.bytes_read),
            c.reads
        )),
        Line::from(format!("now {}/s, {} msgs/s", human(i.bps), human(i.mps))),
        Line::from(format!("writers: {}", who_list(d, &i.writers, 6))),
        Line::from(format!("readers: {}", who_list(d, &i.readers, 6))),
    ];
    f.render_widget(
        Paragraph::new(lines).block(block(t, "Channel (Esc: back)")),
        top,
    );
    let rows: Vec<Row> = c
        .holders
        .iter()
        .map(|((pid, fd), end)| {
            Row::new(vec![
                pid.to_string(),
                trunc(d.comm(*pid), 15),
                fd.to_string(),
                format!("{end:?}").to_lowercase(),
            ])
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(8),
            Constraint::Length(16),
            Constraint::Length(5),
            Constraint::Length(6),
        ],
    )
    .header(Row::new(["PID", "COMM", "FD", "END"]).style(t.header()))
    .block(block(
        t,
        &format!(
            "Holders now, first seen {}, last {}",
            rel(d, c.first_ts),
            rel(d, c.last_ts)
        ),
    ));
    f.render_widget(table, bottom);
}
