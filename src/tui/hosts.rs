//! Pane 3: quarantined hosts, cooldowns with live countdowns, IP bans.

use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::Span;
use ratatui::widgets::{Cell, Row, Table};

use super::app::App;
use super::theme::Theme;
use super::view::{clean, empty_hint, fit, panel, window_start};

/// `1h02m`, `4m05s`, `12s`: time left until `until`.
pub fn countdown(now: DateTime<Utc>, until: DateTime<Utc>) -> String {
    let s = (until - now).num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The hosts table above, the bans table below (shared with mouse clicks).
pub fn split(area: Rect) -> [Rect; 2] {
    Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area)
}

/// The row index (hosts first, then bans) under terminal row `row`.
pub fn row_at(app: &App, area: Rect, row: u16) -> Option<usize> {
    let hosts = app.host_rows().len();
    let bans = app.ban_rows().len();
    let [top, bottom] = split(area);
    for (rect, len, sel, base) in [
        (
            top,
            hosts,
            (app.host_sel < hosts).then_some(app.host_sel),
            0,
        ),
        (bottom, bans, app.host_sel.checked_sub(hosts), hosts),
    ] {
        let first = rect.y + 2;
        let rows_fit = rect.height.saturating_sub(3) as usize;
        if row >= first && ((row - first) as usize) < rows_fit {
            let i = window_start(sel.unwrap_or(0), len, rows_fit) + (row - first) as usize;
            return (i < len).then_some(base + i);
        }
    }
    None
}

/// `· /TEXT ` when the pane's `/` filter is set.
fn filtered(app: &App) -> String {
    if app.hosts_filter.is_empty() {
        String::new()
    } else {
        format!("· /{} ", clean(&app.hosts_filter))
    }
}

pub fn render(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let hosts = app.host_rows();
    let bans = app.ban_rows();
    let [top, bottom] = split(area);

    let rows_fit = top.height.saturating_sub(3) as usize;
    let host_sel = (app.host_sel < hosts.len()).then_some(app.host_sel);
    let start = window_start(host_sel.unwrap_or(0), hosts.len(), rows_fit);
    let rows = hosts
        .iter()
        .enumerate()
        .skip(start)
        .take(rows_fit)
        .map(|(i, (host, st))| {
            let (state, since, why, alert, left) = match &st.quarantine {
                Some(q) => (
                    Span::styled("QUARANTINED", Style::new().fg(theme.bad)),
                    q.since_utc.format("%m-%d %H:%M:%S").to_string(),
                    clean(&q.reason),
                    q.alert_id.clone().unwrap_or_default(),
                    "until released".to_string(),
                ),
                None => (
                    Span::styled("cooldown", Style::new().fg(theme.warn)),
                    String::new(),
                    "repeat alerts are throttled".to_string(),
                    String::new(),
                    st.cooldown_until_utc
                        .map(|c| countdown(app.now, c))
                        .unwrap_or_default(),
                ),
            };
            let style = if host_sel == Some(i) {
                theme.selected()
            } else {
                Style::new()
            };
            Row::new(vec![
                Cell::from(fit(&clean(host), 16)),
                Cell::from(state),
                Cell::from(since),
                Cell::from(left),
                Cell::from(fit(&clean(&alert), 18)),
                Cell::from(why),
            ])
            .style(style)
        });
    let quarantined = hosts.iter().filter(|(_, s)| s.quarantine.is_some()).count();
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(16),
                Constraint::Length(11),
                Constraint::Length(14),
                Constraint::Length(14),
                Constraint::Length(18),
                Constraint::Min(10),
            ],
        )
        .header(
            Row::new(["host", "state", "since", "time left", "alert", "why"]).style(theme.dimmed()),
        )
        .block(panel(
            format!(
                " Hosts: {quarantined} quarantined, {} in cooldown · r release {}",
                hosts.len() - quarantined,
                filtered(app)
            ),
            theme,
        )),
        top,
    );
    if hosts.is_empty() {
        let hint = if app.hosts_filter.is_empty() {
            "No host is quarantined or cooling down."
        } else {
            "No quarantined or cooling host matches the filter (Esc clears it)."
        };
        empty_hint(frame, theme, top, hint);
    }

    let rows_fit = bottom.height.saturating_sub(3) as usize;
    let ban_sel = app.host_sel.checked_sub(hosts.len());
    let start = window_start(ban_sel.unwrap_or(0), bans.len(), rows_fit);
    let rows = bans
        .iter()
        .enumerate()
        .skip(start)
        .take(rows_fit)
        .map(|(i, b)| {
            let style = if ban_sel == Some(i) {
                theme.selected()
            } else {
                Style::new()
            };
            Row::new(vec![
                Cell::from(b.ip.to_string()),
                Cell::from(b.since_utc.format("%m-%d %H:%M:%S").to_string()),
                Cell::from(b.until_utc.format("%m-%d %H:%M:%S").to_string()),
                Cell::from(countdown(app.now, b.until_utc)),
                Cell::from(fit(&clean(b.alert_id.as_deref().unwrap_or("")), 18)),
                Cell::from(clean(&b.reason)),
            ])
            .style(style)
        });
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(16),
                Constraint::Length(14),
                Constraint::Length(14),
                Constraint::Length(9),
                Constraint::Length(18),
                Constraint::Min(10),
            ],
        )
        .header(
            Row::new(["address", "since", "until", "left", "alert", "reason"])
                .style(theme.dimmed()),
        )
        .block(panel(
            if app.hosts_filter.is_empty() {
                format!(" IP bans: {} in force · u unban ", bans.len())
            } else {
                format!(
                    " IP bans: {} of {} in force · u unban {}",
                    bans.len(),
                    app.policy.bans.len(),
                    filtered(app)
                )
            },
            theme,
        )),
        bottom,
    );
    if bans.is_empty() {
        let hint = if app.hosts_filter.is_empty() || app.policy.bans.is_empty() {
            "No ban in force."
        } else {
            "No ban in force matches the filter (Esc clears it)."
        };
        empty_hint(frame, theme, bottom, hint);
    }
}
