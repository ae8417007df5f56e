//! Pane 4: the analyst's verdicts and what they say about each rule.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, Wrap};

use super::app::App;
use super::theme::Theme;
use super::view::{clean, empty_hint, fit, panel, window_start};
use crate::detect::AlertStatus;

pub fn render(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let side_width = if area.width >= 110 { 44 } else { 34 };
    let [list, side] =
        Layout::horizontal([Constraint::Min(40), Constraint::Length(side_width)]).areas(area);
    let rows_fit = list.height.saturating_sub(3) as usize;
    let start = window_start(app.label_sel, app.labels.len(), rows_fit);
    let rows = app
        .labels
        .iter()
        .enumerate()
        .skip(start)
        .take(rows_fit)
        .map(|(i, l)| {
            let (verdict, colour) = match l.verdict {
                AlertStatus::TruePositive => ("true pos.", theme.bad),
                AlertStatus::FalsePositive => ("false pos.", theme.ok),
                AlertStatus::Acknowledged => ("ack", theme.fg),
                AlertStatus::Open => ("open", theme.fg),
            };
            let style = if i == app.label_sel {
                theme.selected()
            } else {
                Style::new()
            };
            Row::new(vec![
                Cell::from(l.at.format("%m-%d %H:%M").to_string()),
                Cell::from(Span::styled(verdict, Style::new().fg(colour))),
                Cell::from(fit(&clean(&l.rule_id), 22)),
                Cell::from(fit(&clean(&l.by), 10)),
                Cell::from(clean(&l.note.replace('\n', " ⏎ "))),
            ])
            .style(style)
        });
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(11),
                Constraint::Length(10),
                Constraint::Length(22),
                Constraint::Length(10),
                Constraint::Min(10),
            ],
        )
        .header(Row::new(["when", "verdict", "rule", "by", "note"]).style(theme.dimmed()))
        .block(panel(
            format!(" Labelled alerts ({}) ", app.labels.len()),
            theme,
        )),
        list,
    );
    if app.labels.is_empty() {
        empty_hint(
            frame,
            theme,
            list,
            "No verdicts yet: in Alerts, t marks a true positive, f a false positive.",
        );
    }

    // rule | TP | FP | FP rate, the rule taking what the box leaves.
    let rule_w = (side_width as usize).saturating_sub(2 + 4 + 4 + 6).max(8);
    let mut lines = vec![Line::from(Span::styled(
        format!("{:<rule_w$}{:>4}{:>4}{:>6}", "rule", "TP", "FP", "FP%"),
        theme.dimmed(),
    ))];
    for (rule, tp, fp) in app.label_counts() {
        let rate = fp as f64 / (tp + fp) as f64 * 100.0;
        lines.push(Line::from(Span::styled(
            format!(
                "{:<rule_w$}{tp:>4}{fp:>4}{rate:>5.0}%",
                fit(&clean(&rule), rule_w - 1)
            ),
            theme.text(),
        )));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled("Retraining (R)", theme.title())));
    lines.push(Line::from(Span::styled(
        "Not available: the ML ensemble is not built yet, so verdicts are stored for it but nothing is retrained.",
        Style::new().fg(theme.warn),
    )));
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(panel(" Per rule ", theme)),
        side,
    );
}
