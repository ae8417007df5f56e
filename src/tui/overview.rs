//! Pane 1: header figures, the live event stream, top alerting sources.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Sparkline, Table};

use super::app::{App, decision_label};
use super::theme::Theme;
use super::view::{clean, event_text, fit, panel, window_start};
use crate::event::Outcome;

pub fn render(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    // One more header line when sources besides the gateway run, one more
    // while a line they could not parse is recent, and one once the store
    // deletes old events.
    let height = if app.sources.is_empty() { 7 } else { 8 }
        + u16::from(recent_unparsed(app).is_some())
        + u16::from(app.health.retention.is_some());
    let [header, body] =
        Layout::vertical([Constraint::Length(height), Constraint::Min(5)]).areas(area);
    render_header(frame, app, theme, header);
    // The stream gets the width; the sources list only when there is room.
    if area.width >= 140 {
        let [stream, side] =
            Layout::horizontal([Constraint::Min(100), Constraint::Length(28)]).areas(body);
        render_stream(frame, app, theme, stream);
        render_sources(frame, app, theme, side);
    } else {
        render_stream(frame, app, theme, body);
    }
}

fn render_header(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let block = panel(" Vigil ", theme);
    let mut inner = block.inner(area);
    frame.render_widget(block, area);
    // A failing store or audit log takes the last lines, full width: the
    // engine is not keeping (or not auditing) what it is sent.
    let problems = health_lines(app);
    if !problems.is_empty() {
        let [top, last] = Layout::vertical([
            Constraint::Min(1),
            Constraint::Length(problems.len() as u16),
        ])
        .areas(inner);
        inner = top;
        let lines: Vec<Line> = problems
            .iter()
            .map(|p| Line::from(Span::styled(p.as_str(), Style::new().fg(theme.bad))))
            .collect();
        frame.render_widget(Paragraph::new(lines), last);
    }
    if let Some(r) = &app.health.retention {
        let [top, last] =
            Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(inner);
        inner = top;
        frame.render_widget(Paragraph::new(retention_line(r, theme)), last);
    }
    // The gateway's line runs the full width under the figures and the
    // sparkline: its refusal reasons want the room.
    if let Some(u) = recent_unparsed(app) {
        let [top, last] =
            Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(inner);
        inner = top;
        frame.render_widget(Paragraph::new(unparsed_line(u, theme)), last);
    }
    if !app.sources.is_empty() {
        let [top, sources] =
            Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(inner);
        inner = top;
        frame.render_widget(Paragraph::new(sources_line(app, theme)), sources);
    }
    let [inner, gateway] =
        Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(inner);
    frame.render_widget(Paragraph::new(gateway_line(app, theme)), gateway);
    let [figures, spark] =
        Layout::horizontal([Constraint::Length(58), Constraint::Min(10)]).areas(inner);
    let per_sec = app.rate.iter().rev().nth(1).copied().unwrap_or(0);
    let [crit, high, med, low] = app.open_by_severity();
    let quarantined = app
        .policy
        .hosts
        .iter()
        .filter(|(_, s)| s.quarantine.is_some())
        .count();
    let mut lines = vec![
        Line::from(vec![
            Span::styled("events ", theme.dimmed()),
            Span::styled(format!("{}", app.events_total), theme.text()),
            Span::styled(format!("  {per_sec}/s"), Style::new().fg(theme.accent)),
            Span::styled("   alerts ", theme.dimmed()),
            Span::styled(format!("{}", app.alerts.len()), theme.text()),
        ]),
        Line::from(vec![
            Span::styled("open ", theme.dimmed()),
            Span::styled(format!("critical {crit} "), theme.severity(9)),
            Span::styled(format!("high {high} "), theme.severity(7)),
            Span::styled(format!("medium {med} "), theme.severity(5)),
            Span::styled(format!("low {low}"), theme.severity(1)),
        ]),
        Line::from(vec![
            Span::styled("quarantined ", theme.dimmed()),
            Span::styled(
                format!("{quarantined}"),
                if quarantined > 0 {
                    Style::new().fg(theme.bad)
                } else {
                    theme.text()
                },
            ),
            Span::styled("   bans ", theme.dimmed()),
            Span::styled(format!("{}", app.policy.bans.len()), theme.text()),
            Span::styled("   model ", theme.dimmed()),
            // Short enough that the line fits the 58 columns with
            // five-digit ban counts (the longer text lost its ")").
            Span::styled("rules (ML not built)", theme.text()),
        ]),
    ];
    if !problems.is_empty() {
        // The last lines are the problems'.
    } else if app.dropped_events > 0 || app.dropped_alerts > 0 {
        lines.push(Line::from(Span::styled(
            format!(
                "console behind: {} events not shown, {} alert updates re-read from the store",
                app.dropped_events, app.dropped_alerts
            ),
            Style::new().fg(theme.warn),
        )));
    } else {
        let top = app.top_sources(3);
        if top.is_empty() {
            lines.push(Line::from(Span::styled(
                format!("data {}", clean(&app.session.data_dir)),
                theme.dimmed(),
            )));
        } else {
            let mut spans = vec![Span::styled("top alerting ", theme.dimmed())];
            for &(ip, n) in top {
                spans.push(Span::styled(format!("{ip} "), theme.text()));
                spans.push(Span::styled(format!("{n}  "), Style::new().fg(theme.warn)));
            }
            lines.push(Line::from(spans));
        }
    }
    frame.render_widget(Paragraph::new(lines), figures);
    let [label, chart] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(spark);
    // The newest seconds that fit: a sparkline draws from its first value,
    // so a narrow chart given the whole minute showed its oldest seconds.
    let shown = app.rate.len().min(usize::from(chart.width));
    let data: Vec<u64> = app
        .rate
        .iter()
        .skip(app.rate.len() - shown)
        .copied()
        .collect();
    frame.render_widget(
        Paragraph::new(Span::styled(
            format!("events/s, last {} s", shown.max(1)),
            theme.dimmed(),
        )),
        label,
    );
    frame.render_widget(
        Sparkline::default()
            .data(&data)
            .style(Style::new().fg(theme.accent)),
        chart,
    );
}

/// `gateway 1204 accepted · 57 refused (12 last min) · from 192.0.2.7 50,
/// 1 other · stale_timestamp 50, signature_mismatch 7 · keys default 904,
/// k2026 300`, in the warning colour while refusals keep coming (within
/// the last minute): a producer turned away shows in the stream only as
/// silence. The counts come first, then who and why: a narrow terminal
/// cuts the end. With several producer keys, their counts close the line
/// (a key at 0 since start is one a rotation may retire).
fn gateway_line<'a>(app: &App, theme: &Theme) -> Line<'a> {
    let c = &app.ingest;
    let recent = app.refused_last_minute();
    let warn = Style::new().fg(theme.warn);
    let mut spans = vec![
        Span::styled("gateway ", theme.dimmed()),
        Span::styled(format!("{} accepted", c.accepted), theme.text()),
        Span::styled(" · ", theme.dimmed()),
        Span::styled(
            format!("{} refused", c.refused_total()),
            if recent > 0 { warn } else { theme.text() },
        ),
    ];
    if recent > 0 {
        spans.push(Span::styled(format!(" ({recent} last min)"), warn));
    }
    if !c.refused_by_client.is_empty() {
        spans.push(Span::styled(" · from ", theme.dimmed()));
        spans.push(Span::styled(clean(&c.clients(1)), theme.text()));
    }
    if !c.refused.is_empty() {
        spans.push(Span::styled(" · ", theme.dimmed()));
        spans.push(Span::styled(clean(&c.reasons(2)), theme.dimmed()));
    }
    if c.connections_refused > 0 {
        spans.push(Span::styled(" · ", theme.dimmed()));
        spans.push(Span::styled(
            format!("{} connections turned away", c.connections_refused),
            warn,
        ));
    }
    if let Some(keys) = c.keys() {
        spans.push(Span::styled(" · keys ", theme.dimmed()));
        spans.push(Span::styled(clean(&keys), theme.dimmed()));
    }
    Line::from(spans)
}

/// How long the latest unparsed line stays on show.
const UNPARSED_SHOWN_MINUTES: i64 = 10;

/// The sources' latest unparsed line, if it came within the last
/// [`UNPARSED_SHOWN_MINUTES`].
fn recent_unparsed(app: &App) -> Option<&crate::sources::unparsed::Unparsed> {
    app.sources
        .last_unparsed
        .as_ref()
        .filter(|u| app.now - u.at < chrono::Duration::minutes(UNPARSED_SHOWN_MINUTES))
}

/// `store full (max_events 2000000): 1506000 oldest events deleted since
/// 14:02:11 · 31 past max_age_days 30 deleted · 2000000 kept`: why an old
/// alert's events may no longer be in the store (the count that matters
/// first, so a narrow terminal keeps it).
fn retention_line<'a>(r: &crate::store::RetentionReport, theme: &Theme) -> Line<'a> {
    let warn = Style::new().fg(theme.warn);
    let mut spans = vec![];
    if r.deleted_over_bound > 0 {
        spans.push(Span::styled("store full ", warn));
        spans.push(Span::styled(
            format!("(max_events {}): ", r.max_events),
            theme.dimmed(),
        ));
        spans.push(Span::styled(
            format!("{} oldest events deleted", r.deleted_over_bound),
            theme.text(),
        ));
        if let Some(since) = r.at_bound_since {
            spans.push(Span::styled(
                format!(" since {}", since.format("%H:%M:%S")),
                theme.dimmed(),
            ));
        }
    } else {
        spans.push(Span::styled("store ", theme.dimmed()));
    }
    if r.deleted_aged > 0 {
        if r.deleted_over_bound > 0 {
            spans.push(Span::styled(" · ", theme.dimmed()));
        }
        let days = r.max_age_days.map_or_else(String::new, |d| format!(" {d}"));
        spans.push(Span::styled(
            format!("{} events past max_age_days{days} deleted", r.deleted_aged),
            warn,
        ));
    }
    spans.push(Span::styled(
        format!(" · {} kept", r.stored),
        theme.dimmed(),
    ));
    Line::from(spans)
}

/// `last unparsed 07:50:11 syslog from 192.0.2.7: "<13>junk…" (no syslog
/// timestamp …)`: what an "unparsed" count is made of (already cut and
/// made inert by the source).
fn unparsed_line<'a>(u: &crate::sources::unparsed::Unparsed, theme: &Theme) -> Line<'a> {
    Line::from(vec![
        Span::styled("last unparsed ", theme.dimmed()),
        Span::styled(u.at.format("%H:%M:%S ").to_string(), theme.dimmed()),
        Span::styled(clean(&u.describe()), theme.text()),
    ])
}

/// `files 2: 1204 lines, 1 unreadable · syslog 310 received, 1 silent, from
/// 12 senders · journal 50 entries · /var/log/secure: Permission denied ·
/// 192.0.2.7 silent since 07:40:11 · syslog on udp 127.0.0.1:5514`:
/// what the other sources took in; a file that cannot be read, a sender
/// that stopped sending, and datagrams lost or senders turned away within
/// the last minute, in the warning colours (each looks like a quiet source
/// otherwise).
fn sources_line<'a>(app: &App, theme: &Theme) -> Line<'a> {
    let s = &app.sources;
    let warn = Style::new().fg(theme.warn);
    // `, N what` after a source's main figure, when N is not 0.
    let also = |p: &mut Vec<Span<'a>>, n: u64, what: String, style: Style| {
        if n > 0 {
            p.push(Span::styled(format!(", {n} {what}"), style));
        }
    };
    let mut parts: Vec<Vec<Span<'a>>> = Vec::new();
    if s.files > 0 {
        let mut p = vec![
            Span::styled(format!("files {}: ", s.files), theme.dimmed()),
            Span::styled(format!("{} lines", s.file_lines), theme.text()),
        ];
        also(&mut p, s.file_unparsed, "unparsed".into(), theme.dimmed());
        also(&mut p, s.unreadable.len() as u64, "unreadable".into(), warn);
        parts.push(p);
    }
    if !s.syslog.is_empty() {
        let mut p = vec![
            Span::styled("syslog ", theme.dimmed()),
            Span::styled(format!("{} received", s.syslog_received), theme.text()),
        ];

        // Losses in red and refused senders in yellow while they keep
        // coming (within the minute); plain totals after.
        let (lost_lately, refused_lately) = app.sources_trouble_last_minute();
        let (lost_style, lately) = if lost_lately > 0 {
            (
                Style::new().fg(theme.bad),
                format!(" ({lost_lately} last min)"),
            )
        } else {
            (theme.text(), String::new())
        };
        also(
            &mut p,
            s.syslog_lost,
            format!("lost (UDP buffer full){lately}"),
            lost_style,
        );
        also(&mut p, s.syslog_silent.len() as u64, "silent".into(), warn);
        also(&mut p, s.syslog_unparsed, "unparsed".into(), theme.dimmed());
        also(
            &mut p,
            s.syslog_dropped,
            "dropped (size or connections)".into(),
            warn,
        );
        also(
            &mut p,
            s.syslog_refused_senders,
            "from senders not allowed".into(),
            if refused_lately > 0 {
                warn
            } else {
                theme.text()
            },
        );
        if s.syslog_senders > 0 {
            p.push(Span::styled(
                format!(
                    ", from {} sender{}",
                    s.syslog_senders,
                    if s.syslog_senders == 1 { "" } else { "s" }
                ),
                theme.dimmed(),
            ));
        }
        parts.push(p);
    }
    if let Some(n) = s.journal_entries {
        parts.push(vec![
            Span::styled("journal ", theme.dimmed()),
            Span::styled(format!("{n} entries"), theme.text()),
        ]);
    }
    // Which files and why, then where syslog listens, last: the figures
    // come first on a narrow terminal.
    for (path, why) in &s.unreadable {
        parts.push(vec![Span::styled(
            format!("{}: {}", clean(path), clean(why)),
            warn,
        )]);
    }
    // The senders silent longest; the count says how many in all.
    for (ip, since) in s.syslog_silent.iter().take(2) {
        parts.push(vec![Span::styled(
            format!("{} silent since {}", clean(ip), since.format("%H:%M:%S")),
            warn,
        )]);
    }
    if !s.syslog.is_empty() {
        parts.push(vec![Span::styled(
            format!("syslog on {}", s.syslog.join(", ")),
            theme.dimmed(),
        )]);
    }
    let mut spans = Vec::new();
    for (i, p) in parts.into_iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled(" · ", theme.dimmed()));
        }
        spans.extend(p);
    }
    Line::from(spans)
}

/// The store's and the audit log's failures, a line each.
fn health_lines(app: &App) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some((since, error)) = &app.health.store {
        lines.push(format!(
            "STORE FAILING since {}: events get 503 ({})",
            since.format("%H:%M:%S"),
            clean(error)
        ));
    }
    if let Some(o) = &app.health.audit {
        lines.push(format!(
            "AUDIT LOG FAILING since {}: gateway refuses events; {} records held, {} lost ({})",
            o.since.format("%H:%M:%S"),
            o.held,
            o.lost,
            clean(&o.error)
        ));
    }
    lines
}

fn render_stream(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let mut title = String::from(" Live events ");
    if let Some(p) = app.paused_at {
        title = format!(
            " Live events — PAUSED ({} new) ",
            app.events_total.saturating_sub(p)
        );
    }
    if !app.filter.is_empty() {
        title.push_str(&format!("· filter: {} ", fit(&clean(&app.filter), 30)));
    }
    let block = panel(title, theme);
    let rows_fit = area.height.saturating_sub(3) as usize;
    // Only the rows on screen are formatted, however long the buffer.
    let visible: Vec<_> = app
        .visible_events()
        .take(app.event_sel + rows_fit + 1)
        .collect();
    let start = window_start(app.event_sel, visible.len(), rows_fit);
    let wide = area.width >= 100;
    let rows = visible
        .iter()
        .enumerate()
        .skip(start)
        .take(rows_fit)
        .map(|(i, e)| {
            let ev = &e.event;
            let style = if i == app.event_sel {
                theme.selected()
            } else {
                Style::new()
            };
            let mut cells = vec![
                Cell::from(ev.timestamp_utc.format("%H:%M:%S").to_string()),
                Cell::from(fit(&clean(&ev.host), 12)),
                Cell::from(Span::styled(
                    fit(ev.action.as_str(), 14),
                    match ev.outcome {
                        Outcome::Failure => Style::new().fg(theme.warn),
                        Outcome::Success => Style::new().fg(theme.ok),
                        Outcome::Unknown => theme.text(),
                    },
                )),
                Cell::from(Span::styled(
                    decision_label(e.final_decision),
                    theme.decision(e.final_decision),
                )),
            ];
            if wide {
                cells.push(Cell::from(Span::styled(
                    ev.severity.to_string(),
                    theme.severity(ev.severity),
                )));
            }
            cells.push(Cell::from(
                ev.src_ip.map(|i| i.to_string()).unwrap_or_default(),
            ));
            if wide {
                cells.push(Cell::from(fit(
                    &clean(ev.user.as_deref().unwrap_or("")),
                    10,
                )));
            }
            // The table cuts what does not fit; clean() first so no escape
            // sequence is ever cut in half.
            cells.push(Cell::from(event_text(ev)));
            Row::new(cells).style(style)
        });
    let mut header = vec!["time", "host", "action", "decision"];
    let mut widths = vec![
        Constraint::Length(8),
        Constraint::Length(12),
        Constraint::Length(14),
        Constraint::Length(8),
    ];
    if wide {
        header.push("sev");
        widths.push(Constraint::Length(3));
    }
    header.push("source");
    widths.push(Constraint::Length(15));
    if wide {
        header.push("user");
        widths.push(Constraint::Length(10));
    }
    header.push("message");
    widths.push(Constraint::Min(10));
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(theme.dimmed()))
        .block(block);
    frame.render_widget(table, area);
    if app.events.is_empty() {
        let inner = Rect {
            x: area.x + 2,
            y: area.y + 3,
            width: area.width.saturating_sub(4),
            height: area.height.saturating_sub(4),
        };
        let mut lines = vec![
            Line::from(Span::styled("No events yet.", theme.text())),
            Line::from(Span::styled(
                format!(
                    "Send signed sec.event.v1 JSON to http://{}/ingest (header X-ARES-SIGNATURE).",
                    clean(&app.session.listen)
                ),
                theme.dimmed(),
            )),
        ];
        // Shown until the first event arrives, and only on the first run.
        if let Some(hint) = &app.session.first_run_hint {
            lines.push(Line::from(""));
            lines.push(Line::from(Span::styled(
                clean(hint),
                Style::new().fg(theme.warn),
            )));
        }
        frame.render_widget(
            Paragraph::new(lines).wrap(ratatui::widgets::Wrap { trim: true }),
            inner,
        );
    }
}

fn render_sources(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let block = panel(" Top alerting sources ", theme);
    let n = area.height.saturating_sub(2) as usize;
    let lines: Vec<Line> = app
        .top_sources(n)
        .iter()
        .map(|&(ip, c)| {
            let banned = app.policy.bans.iter().any(|b| b.ip == ip);
            Line::from(vec![
                Span::styled(format!("{:<16}", ip.to_string()), theme.text()),
                Span::styled(format!("{c:>6}"), Style::new().fg(theme.warn)),
                Span::styled(if banned { " ban" } else { "" }, Style::new().fg(theme.bad)),
            ])
        })
        .collect();
    let para = if lines.is_empty() {
        Paragraph::new(Span::styled("none yet", theme.dimmed()))
    } else {
        Paragraph::new(lines)
    };
    frame.render_widget(para.block(block), area);
}
