//! Pane 5: the attack scenarios in `demo/`. Loading them is the demo
//! issue's work; until then this pane only lists them and says so.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::app::App;
use super::theme::Theme;
use super::view::{clean, panel};

/// Scenario files (`*.toml`) in `dir`, sorted; none when it is absent.
pub fn scenarios(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.ends_with(".toml").then_some(name)
        })
        .collect();
    v.sort();
    v
}

pub fn render(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let mut lines = vec![
        Line::from(Span::styled(
            "The demo loader is not built yet: scenarios cannot be replayed from here.",
            Style::new().fg(theme.warn),
        )),
        Line::from(""),
    ];
    if app.scenarios.is_empty() {
        lines.push(Line::from(Span::styled(
            "No scenario files in demo/ (demo/*.toml).",
            theme.dimmed(),
        )));
    } else {
        lines.push(Line::from(Span::styled(
            "Scenarios in demo/:",
            theme.title(),
        )));
        for (i, s) in app.scenarios.iter().enumerate() {
            let style = if i == app.demo_sel {
                theme.selected()
            } else {
                theme.text()
            };
            lines.push(Line::from(Span::styled(format!("  {}", clean(s)), style)));
        }
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(
        "Meanwhile, replay a log with `vigil scan FILE`, or send events to the gateway.",
        theme.dimmed(),
    )));
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(panel(" Demo ", theme)),
        area,
    );
}
