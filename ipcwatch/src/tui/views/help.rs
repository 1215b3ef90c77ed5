//! The key help, drawn over the current view after `?` or F1.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

use crate::tui::theme::Theme;

/// Draw the key help as a popup in the middle of `area`.
pub fn render(t: &Theme, f: &mut Frame, area: Rect) {
    let lines: Vec<Line> = [
        ("Tab / 1-5", "switch view (Shift-Tab back)"),
        ("↑↓ j k", "move; PgUp PgDn g G"),
        ("Enter", "drill down; on a process: filter every view"),
        ("Esc", "back; then clear the filters"),
        ("/", "filter the list (substring)"),
        ("s", "cycle the sort"),
        ("a", "Regions: hide or show the quiet regions"),
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
