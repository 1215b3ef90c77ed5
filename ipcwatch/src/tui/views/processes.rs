//! View 5: each process's IPC summary. Enter filters every view on the
//! selected process; Esc (with nothing else to go back from) clears it.

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::widgets::{Row, Table};

use super::widgets::{list_block, table_state, trunc};
use crate::model::Process;
use crate::tui::rates::{bytes, human};
use crate::tui::state::{Action, Data, ListState};
use crate::tui::theme::Theme;

pub const SORTS: [&str; 4] = ["bytes/s", "total", "pid", "name"];

#[derive(Debug, Default)]
pub struct State {
    pub list: ListState,
}

fn regions_of(d: &Data, pid: u32) -> usize {
    d.model
        .regions
        .values()
        .filter(|r| r.mappings.iter().any(|m| m.pid == pid))
        .count()
}

fn channels_of(p: &Process) -> usize {
    let mut ids: Vec<&str> = p.fds.values().map(|r| r.channel.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.len()
}

fn items<'a>(d: &'a Data, list: &ListState) -> (Vec<(&'a Process, f64)>, usize) {
    let mut v: Vec<(&Process, f64)> = d
        .model
        .processes
        .values()
        .filter(|p| {
            let pid = p.pid.to_string();
            list.matches(&[&pid, d.comm(p.pid)])
        })
        .map(|p| (p, d.process_rates(p.pid).0))
        .collect();
    let total = |p: &Process| p.bytes_written + p.bytes_read;
    v.sort_by(|(a, ra), (b, rb)| {
        let o = match list.sort {
            0 => rb.total_cmp(ra).then(total(b).cmp(&total(a))),
            1 => total(b).cmp(&total(a)),
            3 => d.comm(a.pid).cmp(d.comm(b.pid)),
            _ => std::cmp::Ordering::Equal,
        };
        o.then(a.pid.cmp(&b.pid))
    });
    (v, d.model.processes.len())
}

pub fn handle_key(d: &Data, st: &mut State, k: KeyEvent) -> Action {
    let (v, _) = items(d, &st.list);
    if k.code == KeyCode::Enter {
        return match v.get(st.list.selected) {
            Some((p, _)) => Action::SelectPid(p.pid),
            None => Action::Handled,
        };
    }
    st.list.nav(k, v.len(), SORTS.len())
}

pub fn render(d: &Data, st: &mut State, t: &Theme, f: &mut Frame, area: Rect) {
    let (v, total) = items(d, &st.list);
    st.list.clamp(v.len());
    // A CONTAINER column only when some process runs in one.
    let containers = d
        .model
        .processes
        .values()
        .any(|p| p.origin.container.is_some());
    let rows: Vec<Row> = v
        .iter()
        .map(|(p, bps)| {
            let state = match (p.alive, p.exit_code, p.signal) {
                (true, _, _) => "run".to_string(),
                (false, Some(c), _) => format!("exit {c}"),
                (false, _, Some(s)) => format!("sig {s}"),
                _ => "gone".to_string(),
            };
            let mark = if d.pid_filter == Some(p.pid) {
                "▶"
            } else {
                " "
            };
            let mut cells = vec![format!("{mark}{}", p.pid), trunc(d.comm(p.pid), 15)];
            if containers {
                cells.push(
                    p.origin
                        .container
                        .as_ref()
                        .map_or("-".into(), |c| trunc(c.short(), 12)),
                );
            }
            cells.extend([
                p.ppid.map_or("-".into(), |pp| pp.to_string()),
                state,
                p.fds.len().to_string(),
                channels_of(p).to_string(),
                regions_of(d, p.pid).to_string(),
                human(*bps),
                bytes(p.bytes_written),
                bytes(p.bytes_read),
            ]);
            Row::new(cells)
        })
        .collect();
    let mut widths = vec![Constraint::Length(8), Constraint::Length(15)];
    let mut header = vec!["PID", "COMM"];
    if containers {
        widths.push(Constraint::Length(12));
        header.push("CONTAINER");
    }
    widths.extend([
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(3),
        Constraint::Length(4),
        Constraint::Length(4),
        Constraint::Length(6),
        Constraint::Length(8),
        Constraint::Min(8),
    ]);
    header.extend([
        "PPID", "STATE", "FDS", "CHAN", "SHM", "B/s", "WRITTEN", "READ",
    ]);
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(t.header()))
        .row_highlight_style(t.selected())
        .block(list_block(
            t,
            "Processes (Enter: filter every view)",
            v.len(),
            total,
            &st.list,
            &SORTS,
        ));
    let mut ts = table_state(st.list.selected, v.len());
    f.render_stateful_widget(table, area, &mut ts);
}
