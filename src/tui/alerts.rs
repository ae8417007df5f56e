//! Pane 2: the alert queue and an alert's detail view with its evidence.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, Wrap};

use super::app::App;
use super::theme::Theme;
use super::view::{clean, empty_hint, event_text, fit, panel, window_start};
use crate::detect::{Alert, AlertStatus};

pub fn render(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    match app.detail.as_deref().and_then(|id| app.alert(id)) {
        Some(a) => render_detail(frame, app, theme, area, a),
        None => render_queue(frame, app, theme, area),
    }
}

fn status_style(theme: &Theme, s: AlertStatus) -> Style {
    Style::new().fg(match s {
        AlertStatus::Open => theme.warn,
        AlertStatus::Acknowledged => theme.fg,
        AlertStatus::TruePositive => theme.bad,
        AlertStatus::FalsePositive => theme.ok,
    })
}

fn render_queue(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let mut title = format!(
        " Alerts {}/{} · sort {} ",
        app.alert_view.len(),
        app.alerts.len(),
        app.sort.label()
    );
    if let Some(s) = app.status_filter {
        title.push_str(&format!("· status {} ", s.as_str()));
    }
    if let Some(r) = &app.rule_filter {
        title.push_str(&format!("· rule {} ", clean(r)));
    }
    if !app.alert_filter.is_empty() {
        title.push_str(&format!("· /{} ", clean(&app.alert_filter)));
    }
    if !app.selected.is_empty() {
        title.push_str(&format!("· {} selected ", app.selected.len()));
    }
    let block = panel(title, theme);
    let rows_fit = area.height.saturating_sub(3) as usize;
    let start = window_start(app.alert_sel, app.alert_view.len(), rows_fit);
    // Narrow terminals drop risk and user and keep the time of day only.
    let wide = area.width >= 110;
    let (rule_w, host_w, seen_w, seen_fmt) = if wide {
        (26, 14, 14, "%m-%d %H:%M:%S")
    } else {
        (20, 10, 8, "%H:%M:%S")
    };
    let rows = app
        .alert_view
        .iter()
        .enumerate()
        .skip(start)
        .take(rows_fit)
        .map(|(i, &idx)| {
            let a = &app.alerts[idx];
            let mark = if app.selected.contains(&a.alert_id) {
                "●"
            } else {
                " "
            };
            let mut cells = vec![
                Cell::from(mark),
                Cell::from(Span::styled(
                    format!("{:>2}", a.severity),
                    theme.severity(a.severity),
                )),
            ];
            if wide {
                cells.push(Cell::from(format!("{:.2}", a.risk_score)));
            }
            cells.extend([
                Cell::from(fit(&clean(&a.rule_id), rule_w)),
                Cell::from(fit(&clean(&a.host), host_w)),
                Cell::from(a.src_ip.map(|i| i.to_string()).unwrap_or_default()),
            ]);
            if wide {
                cells.push(Cell::from(fit(&clean(a.user.as_deref().unwrap_or("")), 12)));
            }
            cells.push(Cell::from(format!("{:>5}", a.count)));
            cells.push(Cell::from(a.last_seen_utc.format(seen_fmt).to_string()));
            cells.push(Cell::from(Span::styled(
                a.status.as_str().replace('_', " "),
                status_style(theme, a.status),
            )));
            let style = if i == app.alert_sel {
                theme.selected()
            } else {
                Style::new()
            };
            Row::new(cells).style(style)
        });
    let mut header = vec!["", "sev"];
    let mut widths = vec![Constraint::Length(1), Constraint::Length(3)];
    if wide {
        header.push("risk");
        widths.push(Constraint::Length(4));
    }
    header.extend(["rule", "host", "source"]);
    widths.extend([
        Constraint::Length(rule_w as u16),
        Constraint::Length(host_w as u16),
        Constraint::Length(15),
    ]);
    if wide {
        header.push("user");
        widths.push(Constraint::Length(12));
    }
    header.extend(["count", if wide { "last seen" } else { "seen" }, "status"]);
    widths.extend([
        Constraint::Length(5),
        Constraint::Length(seen_w),
        Constraint::Min(6),
    ]);
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(theme.dimmed()))
        .block(block);
    frame.render_widget(table, area);
    if app.alert_view.is_empty() {
        let msg = if app.alerts.is_empty() {
            "No alerts yet. They appear here as rules fire."
        } else {
            "No alert matches the filters (S status, r rule; Esc clears the selection)."
        };
        empty_hint(frame, theme, area, msg);
    }
}

fn render_detail(frame: &mut Frame, app: &App, theme: &Theme, area: Rect, a: &Alert) {
    let label = |s: &str| Span::styled(format!("{s:<13}"), theme.dimmed());
    let mut lines = vec![
        Line::from(vec![
            Span::styled(clean(&a.rule_id), theme.title()),
            Span::raw("  "),
            Span::styled(
                a.status.as_str().replace('_', " "),
                status_style(theme, a.status),
            ),
        ]),
        Line::from(vec![
            label("severity"),
            Span::styled(format!("{}/10", a.severity), theme.severity(a.severity)),
            Span::styled(
                format!(
                    "   risk {:.2}   confidence {:.2}   events {}",
                    a.risk_score, a.confidence, a.count
                ),
                theme.text(),
            ),
        ]),
        Line::from(vec![
            label("host"),
            Span::styled(clean(&a.host), theme.text()),
            Span::styled("   source ", theme.dimmed()),
            Span::styled(
                a.src_ip
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| "–".into()),
                theme.text(),
            ),
            Span::styled("   user ", theme.dimmed()),
            Span::styled(clean(a.user.as_deref().unwrap_or("–")), theme.text()),
        ]),
        Line::from(vec![
            label("seen"),
            Span::styled(
                format!(
                    "{} → {} (event time)",
                    a.first_seen_utc.format("%Y-%m-%d %H:%M:%S"),
                    a.last_seen_utc.format("%H:%M:%S")
                ),
                theme.text(),
            ),
        ]),
        Line::from(vec![
            label("recommended"),
            Span::styled(
                clean(&a.recommended_action),
                Style::new().fg(theme.accent).add_modifier(Modifier::BOLD),
            ),
            Span::styled("   MITRE ", theme.dimmed()),
            Span::styled(clean(&a.mitre.join(", ")), theme.text()),
        ]),
        Line::from(""),
        Line::from(Span::styled("Why it fired", theme.title())),
    ];
    for r in &a.reasons {
        lines.push(Line::from(vec![
            Span::styled("  • ", theme.dimmed()),
            Span::styled(clean(r), theme.text()),
        ]));
    }
    if !a.context.is_empty() {
        let ctx: Vec<String> = a
            .context
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    v.as_str().map_or_else(|| v.to_string(), str::to_string)
                )
            })
            .collect();
        lines.push(Line::from(vec![
            Span::styled("  context ", theme.dimmed()),
            Span::styled(clean(&ctx.join("  ")), theme.text()),
        ]));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(
        format!("Evidence ({} events)", a.evidence.len()),
        theme.title(),
    )));
    for id in &a.evidence {
        let line = match app.evidence_event(id) {
            Some(ev) => Line::from(vec![
                Span::styled(
                    format!("  {} ", ev.timestamp_utc.format("%H:%M:%S")),
                    theme.dimmed(),
                ),
                Span::styled(
                    format!("{:<16} ", fit(ev.action.as_str(), 16)),
                    theme.text(),
                ),
                Span::styled(
                    format!(
                        "{:<15} {:<10} ",
                        ev.src_ip.map(|i| i.to_string()).unwrap_or_default(),
                        fit(&clean(ev.user.as_deref().unwrap_or("")), 10)
                    ),
                    theme.dimmed(),
                ),
                Span::styled(
                    fit(&event_text(ev), (area.width as usize).saturating_sub(58)),
                    theme.text(),
                ),
            ]),
            None => Line::from(Span::styled(
                format!("  {} (not in the store)", fit(&clean(id), 60)),
                theme.dimmed(),
            )),
        };
        lines.push(line);
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(
        "a acknowledge · t true positive · f false positive · b ban source · x quarantine host · Esc back",
        theme.dimmed(),
    )));
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(panel(
                format!(" Alert {} ", fit(&clean(&a.alert_id), 40)),
                theme,
            )),
        area,
    );
}
