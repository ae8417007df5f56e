//! Keys → [`Action`]s. Each pane's command list feeds both the `?` help
//! overlay and the footer hints, so what is shown is what works.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{Action, App, Mode, Pane};

/// One documented command.
#[derive(Clone, Copy, Debug)]
pub struct Command {
    pub keys: &'static str,
    pub what: &'static str,
    /// Shown in the footer (the most used ones).
    pub hint: bool,
}

const fn cmd(keys: &'static str, what: &'static str, hint: bool) -> Command {
    Command { keys, what, hint }
}

pub const GLOBAL: &[Command] = &[
    cmd("1-5 / Tab", "switch pane (Shift-Tab back)", true),
    cmd("j k ↑ ↓", "move", false),
    cmd("g G", "first / last", false),
    cmd("PgUp PgDn", "page", false),
    cmd("?", "help", true),
    cmd(
        ":",
        "command (:release :unban :ban :quarantine :filter :theme :quit)",
        true,
    ),
    cmd("Esc", "close / clear", false),
    cmd("q", "quit", true),
];

pub const OVERVIEW: &[Command] = &[
    cmd("Enter", "the selected event in full", false),
    cmd("space", "pause / resume the stream", true),
    cmd("/", "filter: text, host:, ip:, user:, action:", true),
];

pub const ALERTS: &[Command] = &[
    cmd("Enter", "open (details and evidence)", true),
    cmd("/", "filter (text, host:, ip:, user:, rule:)", true),
    cmd("a", "acknowledge", true),
    cmd("t", "true positive (with a note)", true),
    cmd("f", "false positive (with a note)", true),
    cmd("b", "ban the source IP", true),
    cmd("x", "quarantine the host", true),
    cmd("v", "select several", false),
    cmd("s", "sort: severity → risk → time", false),
    cmd("S", "filter by status", false),
    cmd("r", "filter by rule", false),
];

pub const HOSTS: &[Command] = &[
    cmd("r", "release the quarantined host", true),
    cmd("u", "lift the selected ban", true),
    cmd("/", "filter (text, host:, ip:)", true),
];

pub const FEEDBACK: &[Command] = &[cmd("R", "retrain the model", true)];

pub const DEMO: &[Command] = &[];

pub fn commands(pane: Pane) -> &'static [Command] {
    match pane {
        Pane::Overview => OVERVIEW,
        Pane::Alerts => ALERTS,
        Pane::Hosts => HOSTS,
        Pane::Feedback => FEEDBACK,
        Pane::Demo => DEMO,
    }
}

/// What a key does in the current mode and pane.
pub fn map_key(app: &App, key: KeyEvent) -> Option<Action> {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && key.code == KeyCode::Char('c') {
        return Some(Action::Quit);
    }
    match &app.mode {
        Mode::Help => match key.code {
            KeyCode::Esc | KeyCode::Char('?') | KeyCode::Char('q') | KeyCode::Enter => {
                Some(Action::Escape)
            }
            _ => None,
        },
        Mode::ConfirmQuit => match key.code {
            KeyCode::Char('y') | KeyCode::Enter => Some(Action::Enter),
            KeyCode::Char('n') | KeyCode::Esc => Some(Action::Escape),
            _ => None,
        },
        Mode::Editor { .. } => match key.code {
            KeyCode::Esc => Some(Action::Escape),
            KeyCode::Char('s') if ctrl => Some(Action::SaveNote),
            _ => Some(Action::EditorKey(key)),
        },
        Mode::Palette(_) | Mode::Filter(_) | Mode::Confirm { .. } => match key.code {
            KeyCode::Esc => Some(Action::Escape),
            KeyCode::Enter => Some(Action::Enter),
            KeyCode::Backspace => Some(Action::InputBackspace),
            KeyCode::Char(c) if !ctrl => Some(Action::InputChar(c)),
            _ => None,
        },
        Mode::Normal => normal(app, key),
    }
}

fn normal(app: &App, key: KeyEvent) -> Option<Action> {
    let global = match key.code {
        KeyCode::Char('q') => Some(Action::Quit),
        KeyCode::Char('?') => Some(Action::OpenHelp),
        KeyCode::Char(':') => Some(Action::OpenPalette),
        KeyCode::Tab => Some(Action::NextPane),
        KeyCode::BackTab => Some(Action::PrevPane),
        KeyCode::Char(c @ '1'..='5') => {
            Some(Action::FocusPane(Pane::ALL[(c as u8 - b'1') as usize]))
        }
        KeyCode::Char('j') | KeyCode::Down => Some(Action::Down),
        KeyCode::Char('k') | KeyCode::Up => Some(Action::Up),
        KeyCode::Char('g') | KeyCode::Home => Some(Action::Top),
        KeyCode::Char('G') | KeyCode::End => Some(Action::Bottom),
        KeyCode::PageUp => Some(Action::PageUp),
        KeyCode::PageDown => Some(Action::PageDown),
        KeyCode::Esc => Some(Action::Escape),
        _ => None,
    };
    if global.is_some() {
        return global;
    }
    match (app.pane, key.code) {
        (Pane::Overview, KeyCode::Char(' ')) => Some(Action::TogglePause),
        (Pane::Overview, KeyCode::Enter) => Some(Action::Enter),
        (Pane::Overview, KeyCode::Char('/')) => Some(Action::OpenFilter),
        (Pane::Alerts, KeyCode::Enter) => Some(Action::Enter),
        (Pane::Alerts | Pane::Hosts, KeyCode::Char('/')) => Some(Action::OpenFilter),
        (Pane::Alerts, KeyCode::Char('a')) => Some(Action::Acknowledge),
        (Pane::Alerts, KeyCode::Char('t')) => Some(Action::MarkTruePositive),
        (Pane::Alerts, KeyCode::Char('f')) => Some(Action::MarkFalsePositive),
        (Pane::Alerts, KeyCode::Char('b')) => Some(Action::BanSource),
        (Pane::Alerts, KeyCode::Char('x')) => Some(Action::QuarantineHost),
        (Pane::Alerts, KeyCode::Char('v')) => Some(Action::ToggleSelect),
        (Pane::Alerts, KeyCode::Char('s')) => Some(Action::CycleSort),
        (Pane::Alerts, KeyCode::Char('S')) => Some(Action::CycleStatusFilter),
        (Pane::Alerts, KeyCode::Char('r')) => Some(Action::CycleRuleFilter),
        (Pane::Hosts, KeyCode::Char('r')) => Some(Action::Release),
        (Pane::Hosts, KeyCode::Char('u')) => Some(Action::Unban),
        (Pane::Feedback, KeyCode::Char('R')) => Some(Action::Retrain),
        _ => None,
    }
}
