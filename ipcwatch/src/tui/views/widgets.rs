//! Widgets and text helpers shared by the views: list blocks, table
//! state, truncation, "pid comm" lists and relative times.

use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, TableState};

use crate::text::clean;
use crate::tui::state::{Data, ListState};
use crate::tui::theme::Theme;
/// A table state selecting row `selected` (none when empty).
pub fn table_state(selected: usize, len: usize) -> TableState {
    TableState::default().with_selected((len > 0).then_some(selected))
}

/// A bordered block titled "name (shown/total) sort: x filter: y".
pub fn list_block<'a>(
    t: &Theme,
    name: &str,
    shown: usize,
    total: usize,
    list: &ListState,
    sorts: &[&str],
) -> Block<'a> {
    let mut spans = vec![Span::styled(format!(" {name} "), t.title())];
    if shown == total {
        spans.push(Span::raw(format!("{total} ")));
    } else {
        spans.push(Span::raw(format!("{shown}/{total} ")));
    }
    if let Some(s) = sorts.get(list.sort) {
        spans.push(Span::styled(format!("sort:{s} "), t.dim()));
    }
    if !list.filter.is_empty() {
        spans.push(Span::styled(
            format!("/{} ", clean(&list.filter)),
            t.header(),
        ));
    }
    Block::bordered().title(Line::from(spans))
}

pub fn block<'a>(t: &Theme, name: &str) -> Block<'a> {
    Block::bordered().title(Span::styled(format!(" {name} "), t.title()))
}

/// Truncate to `w` characters, with an ellipsis, after making every
/// control character visible ([`clean`]: the text is often a traced
/// process's choice).
pub fn trunc(s: &str, w: usize) -> String {
    let s = clean(s);
    if s.chars().count() <= w {
        s.to_string()
    } else if w == 0 {
        String::new()
    } else {
        let mut out: String = s.chars().take(w - 1).collect();
        out.push('…');
        out
    }
}

/// "1234 comm, 5678 comm +2" for a set of pids, at most `n` named.
pub fn who_list(d: &Data, pids: &[u32], n: usize) -> String {
    let mut parts: Vec<String> = pids.iter().take(n).map(|p| d.who(*p)).collect();
    if pids.len() > n {
        parts.push(format!("+{}", pids.len() - n));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

/// Seconds since the start of what we have seen, "12.3s".
pub fn rel(d: &Data, ts: u64) -> String {
    format!("{:.3}s", ts.saturating_sub(d.first_ns) as f64 / 1e9)
}
