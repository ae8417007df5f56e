//! The frame: tab bar, the focused pane, footer, and overlays (help,
//! command palette, confirmation, note editor). Rendering reads the
//! [`App`] and draws; it never changes state.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use super::app::{App, Mode, Pane};
use super::keymap;
use super::theme::Theme;

/// Smallest terminal the console lays out for.
pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;

/// Log text is untrusted: control characters (escape sequences included)
/// and bidirectional overrides are replaced before they reach the screen.
pub fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// Most characters of an event's text the stream builds (no terminal row is
/// wider): a producer may send 1 MiB of attributes, and the stream builds
/// the text of every visible row each frame.
pub const EVENT_TEXT_MAX: usize = 1024;

/// What the stream shows for an event: its log line, or for events sent as
/// JSON (which carry none) their attributes as `key=value`; at most
/// [`EVENT_TEXT_MAX`] characters of either, then `…`.
pub fn event_text(ev: &crate::event::Event) -> String {
    let capped = |s: &str| match s.char_indices().nth(EVENT_TEXT_MAX) {
        Some((at, _)) => format!("{}…", clean(&s[..at])),
        None => clean(s),
    };
    if !ev.message.is_empty() || ev.attributes.is_empty() {
        return capped(&ev.message);
    }
    let mut text = String::new();
    for (k, v) in ev.attributes.iter() {
        if text.len() > EVENT_TEXT_MAX * 4 {
            break;
        }
        if !text.is_empty() {
            text.push(' ');
        }
        match v.as_str() {
            Some(s) => text.push_str(&format!("{k}={s}")),
            None => text.push_str(&format!("{k}={v}")),
        }
    }
    capped(&text)
}

/// Attributes the event detail lists.
const DETAIL_ATTRIBUTES: usize = 100;

/// A pane's bordered box with its title.
pub fn panel<'a>(title: impl Into<String>, theme: &Theme) -> Block<'a> {
    Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(title.into(), theme.title()))
        .border_style(theme.dimmed())
}

/// A one-line hint inside an empty list's box.
pub fn empty_hint(frame: &mut Frame, theme: &Theme, area: Rect, msg: &str) {
    frame.render_widget(
        Paragraph::new(Span::styled(msg.to_string(), theme.dimmed())).wrap(Wrap { trim: true }),
        Rect {
            x: area.x + 2,
            y: area.y + 3,
            width: area.width.saturating_sub(4),
            height: area.height.saturating_sub(4).min(2),
        },
    );
}

/// Cuts `s` to `width` characters, marking the cut with `…`.
pub fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Draws the whole console.
pub fn render(frame: &mut Frame, app: &App) {
    let area = frame.area();
    let theme = Theme::of(app.dark);
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let msg = format!(
            "Vigil needs a terminal of at least {MIN_WIDTH}×{MIN_HEIGHT}; this one is {}×{}.\nEnlarge the window (q quits).",
            area.width, area.height
        );
        frame.render_widget(
            Paragraph::new(msg)
                .style(theme.text())
                .wrap(Wrap { trim: true }),
            area,
        );
        return;
    }
    let [tabs, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(area);
    render_tabs(frame, app, &theme, tabs);
    match app.pane {
        Pane::Overview => super::overview::render(frame, app, &theme, body),
        Pane::Alerts => super::alerts::render(frame, app, &theme, body),
        Pane::Hosts => super::hosts::render(frame, app, &theme, body),
        Pane::Feedback => super::feedback::render(frame, app, &theme, body),
        Pane::Demo => super::demo::render(frame, app, &theme, body),
    }
    render_footer(frame, app, &theme, footer);
    if let (Pane::Overview, Some(e)) = (app.pane, &app.event_detail) {
        render_event(frame, &theme, area, e);
    }
    match &app.mode {
        Mode::Help => render_help(frame, app, &theme, area),
        Mode::Confirm { action, reason } => {
            let lines = vec![
                Line::from(Span::styled(
                    format!("{}?", clean(&action.describe())),
                    theme.title(),
                )),
                Line::from(""),
                Line::from(vec![
                    Span::styled("Reason (required): ", theme.text()),
                    Span::styled(format!("{}▏", clean(reason)), Style::new().fg(theme.accent)),
                ]),
                Line::from(""),
                Line::from(Span::styled(
                    format!("Recorded in the audit log as {}.", clean(&app.session.user)),
                    theme.dimmed(),
                )),
                Line::from(Span::styled("Enter confirm · Esc cancel", theme.dimmed())),
            ];
            dialog(frame, &theme, area, "Confirm", lines, 64, 8);
        }
        Mode::Editor { alerts, verdict } => {
            let rect = centered(area, 72, 12);
            frame.render_widget(Clear, rect);
            let title = format!(
                " {} — note for {} alert{} · Ctrl-S save · Esc cancel ",
                match verdict {
                    crate::detect::AlertStatus::TruePositive => "True positive",
                    crate::detect::AlertStatus::FalsePositive => "False positive",
                    _ => "Label",
                },
                alerts.len(),
                if alerts.len() == 1 { "" } else { "s" }
            );
            let block = Block::default()
                .borders(Borders::ALL)
                .title(Span::styled(title, theme.title()))
                .border_style(Style::new().fg(theme.accent));
            let inner = block.inner(rect);
            frame.render_widget(block, rect);
            frame.render_widget(&app.editor, inner);
        }
        Mode::ConfirmQuit => dialog(
            frame,
            &theme,
            area,
            "Quit?",
            vec![
                Line::from("An edit is open and would be lost."),
                Line::from(""),
                Line::from(Span::styled("y quit · n stay", theme.dimmed())),
            ],
            44,
            5,
        ),
        Mode::Normal | Mode::Palette(_) | Mode::Filter(_) => {}
    }
}

/// One stream event with every field, its full text and its verdict.
fn render_event(frame: &mut Frame, theme: &Theme, area: Rect, e: &crate::engine::FeedEvent) {
    let ev = &e.event;
    let field = |k: &str, v: String| {
        Line::from(vec![
            Span::styled(format!("{k:<12}"), theme.dimmed()),
            Span::styled(clean(&v), theme.text()),
        ])
    };
    let opt = |v: Option<String>| v.unwrap_or_else(|| "–".into());
    let mut lines = vec![
        field("event id", ev.event_id.clone()),
        field(
            "time",
            format!(
                "{} (received {})",
                ev.timestamp_utc.to_rfc3339(),
                opt(ev.received_time_utc.map(|t| t.to_rfc3339()))
            ),
        ),
        field("host", format!("{}   source {}", ev.host, ev.source)),
        field(
            "what",
            format!(
                "{} / {} / {}   severity {}",
                ev.category.as_str(),
                ev.action.as_str(),
                ev.outcome.as_str(),
                ev.severity
            ),
        ),
        field(
            "who",
            format!(
                "user {}   from {}{}",
                opt(ev.user.clone()),
                opt(ev.src_ip.map(|i| i.to_string())),
                ev.src_port.map(|p| format!(":{p}")).unwrap_or_default()
            ),
        ),
        field(
            "decision",
            format!(
                "{} (correlation {}){}",
                super::app::decision_label(e.final_decision),
                super::app::decision_label(e.correlation),
                if e.reasons.is_empty() {
                    String::new()
                } else {
                    format!(": {}", e.reasons.join(", "))
                }
            ),
        ),
    ];
    if let Some(h) = &ev.http {
        lines.push(field(
            "http",
            format!(
                "{} {} → {}",
                h.method.as_deref().unwrap_or("?"),
                h.path.as_deref().unwrap_or("?"),
                h.status.map(|s| s.to_string()).unwrap_or_default()
            ),
        ));
    }
    // A screenful at most: a producer may send 100k attributes.
    for (k, v) in ev.attributes.iter().take(DETAIL_ATTRIBUTES) {
        let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
        lines.push(field(&format!("· {}", fit(k, 10)), v));
    }
    if ev.attributes.len() > DETAIL_ATTRIBUTES {
        lines.push(Line::from(Span::styled(
            format!(
                "  … {} more attributes (in the store)",
                ev.attributes.len() - DETAIL_ATTRIBUTES
            ),
            theme.dimmed(),
        )));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled("line", theme.dimmed())));
    lines.push(Line::from(Span::styled(
        if ev.message.is_empty() {
            "(sent as JSON: no log line)".to_string()
        } else {
            clean(&ev.message)
        },
        theme.text(),
    )));
    let h = lines.len() as u16 + 2;
    dialog(frame, theme, area, "Event · Esc closes", lines, 100, h);
}

/// Tab labels and where each starts, for drawing and for mouse clicks.
fn tab_spans() -> Vec<(Pane, String)> {
    Pane::ALL
        .iter()
        .enumerate()
        .map(|(i, p)| (*p, format!(" {} {} ", i + 1, p.title())))
        .collect()
}

/// The pane whose tab covers `column` of the tab bar.
pub fn tab_at(_width: u16, column: u16) -> Option<Pane> {
    let mut x = 0u16;
    for (p, label) in tab_spans() {
        let w = label.chars().count() as u16;
        if column >= x && column < x + w {
            return Some(p);
        }
        x += w + 1;
    }
    None
}

fn render_tabs(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let mut spans = Vec::new();
    for (p, label) in tab_spans() {
        let style = if p == app.pane {
            theme.selected().fg(theme.accent)
        } else {
            theme.dimmed()
        };
        spans.push(Span::styled(label, style));
        spans.push(Span::raw(" "));
    }
    // On every pane, in place of the address: the store or the audit log
    // failing (the overview's header says since when and why).
    let failing: Vec<&str> = [
        app.health.store.is_some().then_some("STORE"),
        app.health.audit.is_some().then_some("AUDIT"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let (right, style) = if failing.is_empty() {
        (
            format!("vigil · {} ", clean(&app.session.listen)),
            theme.dimmed(),
        )
    } else {
        (
            format!("{} FAILING ", failing.join("+")),
            Style::new().fg(theme.bad).add_modifier(Modifier::BOLD),
        )
    };
    let used: usize = spans.iter().map(|s| s.content.chars().count()).sum();
    let pad = (area.width as usize).saturating_sub(used + right.chars().count());
    spans.push(Span::raw(" ".repeat(pad)));
    spans.push(Span::styled(right, style));
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn render_footer(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let line = match &app.mode {
        Mode::Palette(s) => Line::from(vec![
            Span::styled(":", theme.title()),
            Span::styled(format!("{}▏", clean(s)), theme.text()),
            Span::styled("   Enter run · Esc cancel", theme.dimmed()),
        ]),
        Mode::Filter(s) => Line::from(vec![
            Span::styled("/", theme.title()),
            Span::styled(format!("{}▏", clean(s)), theme.text()),
            Span::styled(
                match app.pane {
                    Pane::Alerts => "   host: ip: user: rule: or any text · Enter keep · Esc close",
                    Pane::Hosts => "   host: ip: or any text · Enter keep · Esc close",
                    _ => "   host: ip: user: action: or any text · Enter keep · Esc close",
                },
                theme.dimmed(),
            ),
        ]),
        _ => match &app.status {
            Some((ok, msg)) => Line::from(Span::styled(
                clean(msg),
                Style::new().fg(if *ok { theme.ok } else { theme.warn }),
            )),
            None => hints(app, theme),
        },
    };
    frame.render_widget(Paragraph::new(line), area);
}

/// Footer hints: the pane's and the global commands marked as hints.
fn hints(app: &App, theme: &Theme) -> Line<'static> {
    let mut spans = Vec::new();
    for c in keymap::commands(app.pane)
        .iter()
        .chain(keymap::GLOBAL)
        .filter(|c| c.hint)
    {
        spans.push(Span::styled(
            c.keys.to_string(),
            theme.title().remove_modifier(Modifier::BOLD),
        ));
        let what = c.what.split(" (").next().unwrap_or(c.what);
        spans.push(Span::styled(format!(" {what}  "), theme.dimmed()));
    }
    Line::from(spans)
}

fn render_help(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let mut lines = vec![Line::from(Span::styled(
        format!("{} pane", app.pane.title()),
        theme.title(),
    ))];
    let row = |c: &keymap::Command| {
        Line::from(vec![
            Span::styled(format!("  {:<12}", c.keys), Style::new().fg(theme.accent)),
            Span::styled(c.what.to_string(), theme.text()),
        ])
    };
    let pane = keymap::commands(app.pane);
    if pane.is_empty() {
        lines.push(Line::from(Span::styled(
            "  (no pane commands)",
            theme.dimmed(),
        )));
    }
    lines.extend(pane.iter().map(row));
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled("Everywhere", theme.title())));
    lines.extend(keymap::GLOBAL.iter().map(row));
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(
        "Mouse: wheel scrolls, click focuses a tab or row. Esc or ? closes.",
        theme.dimmed(),
    )));
    let h = lines.len() as u16 + 2;
    dialog(frame, theme, area, "Help", lines, 80, h);
}

fn dialog(
    frame: &mut Frame,
    theme: &Theme,
    area: Rect,
    title: &str,
    lines: Vec<Line<'_>>,
    width: u16,
    height: u16,
) {
    let rect = centered(area, width, height + 2);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::default()
                .borders(Borders::ALL)
                .title(Span::styled(format!(" {title} "), theme.title()))
                .border_style(Style::new().fg(theme.accent)),
        ),
        rect,
    );
}

/// A `width`×`height` rectangle centred in `area` (clipped to it).
pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

/// First row shown of a list of `len` rows with `sel` selected, when
/// `rows` fit: the selection stays in view.
pub fn window_start(sel: usize, len: usize, rows: usize) -> usize {
    if rows == 0 || len <= rows {
        return 0;
    }
    sel.saturating_sub(rows - 1).min(len - rows)
}

/// The list index under terminal row `row` in the focused list pane.
pub fn row_to_index(app: &App, row: u16) -> Option<usize> {
    let (w, h) = app.size;
    if w < MIN_WIDTH || h < MIN_HEIGHT {
        return None;
    }
    if app.pane == Pane::Hosts {
        let body = Rect {
            x: 0,
            y: 1,
            width: w,
            height: h.saturating_sub(2),
        };
        return super::hosts::row_at(app, body, row);
    }
    // Tab bar (1), the list block's border (1) and its header row (1).
    let first = 3u16;
    let rows = h.saturating_sub(first + 2) as usize;
    if row < first || (row - first) as usize >= rows {
        return None;
    }
    let (sel, len) = match app.pane {
        Pane::Alerts if app.detail.is_none() => (app.alert_sel, app.alert_view.len()),
        Pane::Feedback => (app.label_sel, app.labels.len()),
        _ => return None,
    };
    let i = window_start(sel, len, rows) + (row - first) as usize;
    (i < len).then_some(i)
}
