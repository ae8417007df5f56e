//! The console's state and the one way it changes: [`App::update`] applies
//! an [`Action`] and returns the [`Effect`]s (engine requests, quitting) for
//! the runner to carry out. Nothing here touches the terminal or the engine,
//! so every action is unit-testable.
//!
//! Here: the state, the actions and how the engine's feed lands in it;
//! `app/input.rs` holds what keys, prompts, the palette and clicks do,
//! `app/filter.rs` the `/` filters (stream, alert queue, hosts and bans),
//! `app/queue.rs` the alert queue (kept alerts, the sorted view, counts).

mod filter;
mod input;
mod queue;

pub use filter::{AlertFilter, EventFilter, HostFilter};

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;

use chrono::{DateTime, Utc};

use crate::detect::{Alert, AlertStatus, Decision};
use crate::engine::{AdminRequest, Feed, FeedEvent, PolicySnapshot};

/// Events kept for the live stream.
pub const EVENT_BUFFER: usize = 10_000;
/// Alerts held in memory; past this the oldest (by last activity) that are
/// no longer open are let go (they stay in the store).
pub const MAX_ALERTS: usize = 200_000;
/// Seconds of history in the events/s sparkline.
pub const RATE_SECONDS: usize = 60;
/// Sources kept ranked for the overview.
pub const TOP_SOURCES: usize = 64;
/// Longest text typed into a prompt (filter, palette, reason).
pub const MAX_INPUT: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pane {
    Overview,
    Alerts,
    Hosts,
    Feedback,
    Demo,
}

impl Pane {
    pub const ALL: [Pane; 5] = [
        Pane::Overview,
        Pane::Alerts,
        Pane::Hosts,
        Pane::Feedback,
        Pane::Demo,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Pane::Overview => "Overview",
            Pane::Alerts => "Alerts",
            Pane::Hosts => "Hosts & bans",
            Pane::Feedback => "Feedback",
            Pane::Demo => "Demo",
        }
    }

    fn index(self) -> usize {
        Pane::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    Severity,
    Risk,
    Time,
}

impl SortKey {
    pub fn label(self) -> &'static str {
        match self {
            SortKey::Severity => "severity",
            SortKey::Risk => "risk",
            SortKey::Time => "time",
        }
    }

    fn next(self) -> SortKey {
        match self {
            SortKey::Severity => SortKey::Risk,
            SortKey::Risk => SortKey::Time,
            SortKey::Time => SortKey::Severity,
        }
    }
}

/// An administrative action waiting for the analyst's reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pending {
    Release {
        host: String,
    },
    Unban {
        ip: IpAddr,
    },
    Ban {
        ip: IpAddr,
        alert_id: Option<String>,
    },
    Quarantine {
        host: String,
        alert_id: Option<String>,
    },
}

impl Pending {
    pub fn describe(&self) -> String {
        match self {
            Pending::Release { host } => format!("Release host {host}"),
            Pending::Unban { ip } => format!("Lift the ban on {ip}"),
            Pending::Ban { ip, .. } => format!("Ban {ip}"),
            Pending::Quarantine { host, .. } => format!("Quarantine host {host}"),
        }
    }
}

/// What has the keyboard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Normal,
    Help,
    /// `:` command palette with what has been typed.
    Palette(String),
    /// `/` event filter being typed.
    Filter(String),
    /// A confirmation that needs a reason.
    Confirm {
        action: Pending,
        reason: String,
    },
    /// The feedback note editor for these alerts and this verdict.
    Editor {
        alerts: Vec<String>,
        verdict: AlertStatus,
    },
    /// `q` with an edit open: quit anyway?
    ConfirmQuit,
}

/// One analyst verdict, as the feedback pane lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct Label {
    pub alert_id: String,
    pub rule_id: String,
    pub verdict: AlertStatus,
    pub note: String,
    pub by: String,
    pub at: DateTime<Utc>,
}

/// Where the engine runs, for the header.
#[derive(Clone, Debug, Default)]
pub struct Session {
    pub listen: String,
    pub data_dir: String,
    pub user: String,
    /// Shown once, on the first run, with how to send events.
    pub first_run_hint: Option<String>,
}

/// Every way the console's state changes.
#[derive(Clone, Debug)]
pub enum Action {
    Quit,
    FocusPane(Pane),
    NextPane,
    PrevPane,
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    /// Click at a terminal cell (focus the tab or row under it).
    Click {
        column: u16,
        row: u16,
    },
    TogglePause,
    OpenFilter,
    OpenPalette,
    OpenHelp,
    /// `Esc`: close what is open, else clear the filter / selection.
    Escape,
    Enter,
    InputChar(char),
    InputBackspace,
    /// Pasted text: typed into the open prompt or note, ignored otherwise
    /// (so a paste can never run commands).
    Paste(String),
    CycleSort,
    CycleStatusFilter,
    CycleRuleFilter,
    ToggleSelect,
    Acknowledge,
    MarkTruePositive,
    MarkFalsePositive,
    BanSource,
    QuarantineHost,
    Release,
    Unban,
    Retrain,
    ToggleTheme,
    /// A key for the note editor.
    EditorKey(crossterm::event::KeyEvent),
    /// Store the labels being edited with the editor's text as the note.
    SaveNote,
    /// Engine traffic.
    Feed(Feed),
    Snapshot(PolicySnapshot),
    /// Alerts read from the store (start-up, or after the feed lost some).
    LoadAlerts(Vec<Alert>),
    LoadLabels(Vec<Label>),
    EvidenceLoaded(Vec<crate::event::Event>),
    AdminDone {
        what: String,
        result: Result<(), String>,
    },
    /// The engine stored an analyst's verdict.
    Labelled {
        alert_id: String,
        verdict: AlertStatus,
        note: String,
    },
    /// Wall clock for rates and countdowns.
    Tick(DateTime<Utc>),
    Resize {
        width: u16,
        height: u16,
    },
    FeedDropped {
        events: u64,
        alerts: u64,
    },
    /// The store's and the audit log's state, polled once a second.
    Health(Health),
    /// The gateway's accepts and refusals so far, sent once a second.
    Ingest(crate::sources::gateway::IngestCounts),
    /// The other sources' figures (syslog, files, journal), sent once a
    /// second when they changed.
    Sources(crate::live::SourceStatus),
}

/// What keeps the engine from doing its job, for the overview header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// Commits fail: since when, and the latest error.
    pub store: Option<(DateTime<Utc>, String)>,
    /// The audit log refuses writes (the gateway refuses events meanwhile).
    pub audit: Option<crate::store::audit_log::OutageReport>,
    /// The store is deleting old events to stay within its bounds (not a
    /// failure, but an old alert's evidence may be gone).
    pub retention: Option<crate::store::RetentionReport>,
}

/// Work for the runner.
#[derive(Clone, Debug)]
pub enum Effect {
    Admin {
        what: String,
        request: AdminRequest,
    },
    /// Re-read alerts from the store (the feed lost some).
    ReloadAlerts,
    /// Read an alert's evidence events from the store.
    LoadEvidence {
        ids: Vec<String>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
    Quit,
}

/// The console's whole state.
pub struct App {
    pub pane: Pane,
    pub mode: Mode,
    pub session: Session,
    pub dark: bool,
    pub size: (u16, u16),
    pub now: DateTime<Utc>,

    // Overview
    pub events: VecDeque<FeedEvent>,
    pub events_total: u64,
    /// `events_total` when the stream was paused.
    pub paused_at: Option<u64>,
    pub filter: String,
    pub event_sel: usize,
    /// The stream event opened with Enter (a copy: the stream moves on).
    pub event_detail: Option<Box<FeedEvent>>,
    /// Events per second over the last minute, oldest first.
    pub rate: VecDeque<u64>,
    rate_second: i64,
    /// Alerts per source address.
    alerts_by_source: HashMap<IpAddr, u64>,
    /// The sources with the most alerts, most first (recomputed with the
    /// alert queue, not per frame).
    top_cache: Vec<(IpAddr, u64)>,
    pub dropped_events: u64,
    pub dropped_alerts: u64,
    pub health: Health,
    /// The gateway's counts, as last sent.
    pub ingest: crate::sources::gateway::IngestCounts,
    /// Syslog listeners, followed files and the journal (empty: none run).
    pub sources: crate::live::SourceStatus,
    /// UDP datagrams lost and senders refused so far, at each of the last
    /// 61 [`Action::Sources`] (one a second): what came within a minute.
    sources_trouble: VecDeque<(u64, u64)>,
    /// Refusals so far at each of the last 61 [`Action::Ingest`] (one a
    /// second): the newest less the oldest is the last minute's.
    ingest_refused: VecDeque<u64>,

    // Alerts
    pub alerts: Vec<Alert>,
    alert_index: HashMap<String, usize>,
    /// Indices into `alerts`, filtered and sorted.
    pub alert_view: Vec<usize>,
    view_dirty: bool,
    last_refresh: DateTime<Utc>,
    pub alert_sel: usize,
    pub selected: HashSet<String>,
    pub sort: SortKey,
    pub status_filter: Option<AlertStatus>,
    pub rule_filter: Option<String>,
    /// The alert queue's `/` filter ([`AlertFilter`]).
    pub alert_filter: String,
    /// The Hosts & bans pane's `/` filter ([`HostFilter`]).
    pub hosts_filter: String,
    pub detail: Option<String>,
    /// Evidence events read from the store for the detail view.
    pub evidence: HashMap<String, crate::event::Event>,

    // Hosts & bans
    pub policy: PolicySnapshot,
    pub host_sel: usize,

    // Feedback
    pub editor: tui_textarea::TextArea<'static>,
    pub labels: Vec<Label>,
    pub label_sel: usize,

    // Demo
    pub scenarios: Vec<String>,
    pub demo_sel: usize,

    /// Last outcome shown in the footer.
    pub status: Option<(bool, String)>,
    pub should_quit: bool,
}

impl App {
    pub fn new(session: Session, now: DateTime<Utc>) -> App {
        App {
            pane: Pane::Overview,
            mode: Mode::Normal,
            session,
            dark: true,
            size: (120, 40),
            now,
            events: VecDeque::with_capacity(EVENT_BUFFER),
            events_total: 0,
            paused_at: None,
            filter: String::new(),
            event_sel: 0,
            event_detail: None,
            rate: VecDeque::from(vec![0; RATE_SECONDS]),
            rate_second: now.timestamp(),
            alerts_by_source: HashMap::new(),
            top_cache: Vec::new(),
            dropped_events: 0,
            dropped_alerts: 0,
            health: Health::default(),
            ingest: Default::default(),
            sources: Default::default(),
            sources_trouble: VecDeque::with_capacity(61),
            ingest_refused: VecDeque::with_capacity(61),
            alerts: Vec::new(),
            alert_index: HashMap::new(),
            alert_view: Vec::new(),
            view_dirty: false,
            last_refresh: now,
            alert_sel: 0,
            selected: HashSet::new(),
            sort: SortKey::Severity,
            status_filter: None,
            rule_filter: None,
            alert_filter: String::new(),
            hosts_filter: String::new(),
            detail: None,
            evidence: HashMap::new(),
            policy: PolicySnapshot::default(),
            host_sel: 0,
            editor: tui_textarea::TextArea::default(),
            labels: Vec::new(),
            label_sel: 0,
            scenarios: Vec::new(),
            demo_sel: 0,
            status: None,
            should_quit: false,
        }
    }

    /// Applies one action.
    pub fn update(&mut self, action: Action) -> Vec<Effect> {
        let mut effects = Vec::new();
        match action {
            Action::Quit => {
                if matches!(self.mode, Mode::Editor { .. } | Mode::Confirm { .. }) {
                    self.mode = Mode::ConfirmQuit;
                } else {
                    self.should_quit = true;
                    effects.push(Effect::Quit);
                }
            }
            Action::FocusPane(p) => {
                self.pane = p;
                self.detail = None;
                self.event_detail = None;
            }
            Action::NextPane => {
                self.pane = Pane::ALL[(self.pane.index() + 1) % Pane::ALL.len()];
                self.detail = None;
            }
            Action::PrevPane => {
                self.pane = Pane::ALL[(self.pane.index() + Pane::ALL.len() - 1) % Pane::ALL.len()];
                self.detail = None;
            }
            Action::Up => self.move_sel(-1),
            Action::Down => self.move_sel(1),
            Action::PageUp => self.move_sel(-(self.page() as i64)),
            Action::PageDown => self.move_sel(self.page() as i64),
            Action::Top => self.move_sel(i64::MIN / 2),
            Action::Bottom => self.move_sel(i64::MAX / 2),
            Action::Click { column, row } => self.click(column, row),
            Action::TogglePause => {
                self.paused_at = match self.paused_at {
                    Some(_) => None,
                    None => Some(self.events_total),
                };
            }
            Action::OpenFilter => {
                let current = self.pane_filter().clone();
                self.mode = Mode::Filter(current);
            }
            Action::OpenPalette => self.mode = Mode::Palette(String::new()),
            Action::OpenHelp => self.mode = Mode::Help,
            Action::Escape => self.escape(),
            Action::Enter => effects.extend(self.enter()),
            Action::InputChar(c) => self.input(Some(c)),
            Action::InputBackspace => self.input(None),
            Action::Paste(text) => {
                if self.editing() {
                    let text = crate::util::truncate_at_char_boundary(
                        &text,
                        crate::engine::MAX_NOTE_BYTES,
                    );
                    self.editor.insert_str(text);
                } else {
                    for c in text.chars().take(MAX_INPUT) {
                        self.input(Some(c));
                    }
                }
            }
            Action::CycleSort => {
                self.sort = self.sort.next();
                self.refresh_view();
            }
            Action::CycleStatusFilter => {
                self.status_filter = match self.status_filter {
                    None => Some(AlertStatus::Open),
                    Some(AlertStatus::Open) => Some(AlertStatus::Acknowledged),
                    Some(AlertStatus::Acknowledged) => Some(AlertStatus::TruePositive),
                    Some(AlertStatus::TruePositive) => Some(AlertStatus::FalsePositive),
                    Some(AlertStatus::FalsePositive) => None,
                };
                self.refresh_view();
            }
            Action::CycleRuleFilter => {
                let mut rules: Vec<&str> = self.alerts.iter().map(|a| a.rule_id.as_str()).collect();
                rules.sort_unstable();
                rules.dedup();
                self.rule_filter = match &self.rule_filter {
                    None => rules.first().map(|r| r.to_string()),
                    Some(cur) => rules
                        .iter()
                        .position(|r| r == cur)
                        .and_then(|i| rules.get(i + 1))
                        .map(|r| r.to_string()),
                };
                self.refresh_view();
            }
            Action::ToggleSelect => {
                if let Some(id) = self.current_alert().map(|a| a.alert_id.clone())
                    && !self.selected.remove(&id)
                {
                    self.selected.insert(id);
                }
            }
            Action::Acknowledge => {
                for id in self.targets() {
                    effects.push(self.label_effect(&id, AlertStatus::Acknowledged, String::new()));
                }
            }
            Action::MarkTruePositive => self.open_editor(AlertStatus::TruePositive),
            Action::MarkFalsePositive => self.open_editor(AlertStatus::FalsePositive),
            Action::BanSource => {
                match self.current_alert().map(|a| (a.src_ip, a.alert_id.clone())) {
                    Some((Some(ip), id)) => self.confirm(Pending::Ban {
                        ip,
                        alert_id: Some(id),
                    }),
                    Some((None, _)) => self.say(false, "this alert has no source address"),
                    None => self.say(false, "no alert selected"),
                }
            }
            Action::QuarantineHost => {
                match self
                    .current_alert()
                    .map(|a| (a.host.clone(), a.alert_id.clone()))
                {
                    Some((host, id)) => self.confirm(Pending::Quarantine {
                        host,
                        alert_id: Some(id),
                    }),
                    None => self.say(false, "no alert selected"),
                }
            }
            Action::Release => match self.selected_host() {
                Some(host) => self.confirm(Pending::Release { host }),
                None => self.say(false, "select a quarantined host first"),
            },
            Action::Unban => match self.selected_ban() {
                Some(ip) => self.confirm(Pending::Unban { ip }),
                None => self.say(false, "select a ban first"),
            },
            Action::Retrain => self.say(
                false,
                "retraining is not available: the ML ensemble is not built yet (rules only)",
            ),
            Action::ToggleTheme => self.dark = !self.dark,
            Action::EditorKey(key) => {
                if self.editing() {
                    self.editor.input(key);
                }
            }
            Action::SaveNote => {
                if let Mode::Editor { alerts, verdict } =
                    std::mem::replace(&mut self.mode, Mode::Normal)
                {
                    let note = self.editor.lines().join("\n").trim().to_string();
                    let note = crate::util::truncate_at_char_boundary(
                        &note,
                        crate::engine::MAX_NOTE_BYTES,
                    )
                    .to_string();
                    for id in alerts {
                        effects.push(self.label_effect(&id, verdict, note.clone()));
                    }
                }
            }
            Action::Feed(f) => self.feed(f),
            Action::Snapshot(s) => {
                self.policy = s;
                self.clamp_selections();
            }
            Action::LoadAlerts(alerts) => {
                for a in alerts {
                    self.upsert_alert(a);
                }
                self.refresh_view();
            }
            Action::LoadLabels(labels) => self.labels = labels,
            Action::EvidenceLoaded(events) => {
                self.evidence = events
                    .into_iter()
                    .map(|e| (e.event_id.clone(), e))
                    .collect();
            }
            Action::AdminDone { what, result } => match result {
                Ok(()) => self.say(true, &format!("{what}: done")),
                Err(e) => self.say(false, &format!("{what}: {e}")),
            },
            Action::Labelled {
                alert_id,
                verdict,
                note,
            } => {
                self.record_label(&alert_id, verdict, note);
                self.say(
                    true,
                    &format!("{alert_id}: {}", verdict.as_str().replace('_', " ")),
                );
            }
            Action::Tick(now) => {
                self.advance_rate(now);
                self.now = now;
                // Alert updates from the feed re-sort the queue at most four
                // times a second; the analyst's own changes re-sort at once.
                if self.view_dirty && now - self.last_refresh >= chrono::Duration::milliseconds(250)
                {
                    self.refresh_view();
                }
            }
            Action::Resize { width, height } => self.size = (width, height),
            Action::FeedDropped { events, alerts } => {
                if alerts > self.dropped_alerts {
                    effects.push(Effect::ReloadAlerts);
                }
                self.dropped_events = events;
                self.dropped_alerts = alerts;
            }
            Action::Health(h) => self.health = h,
            Action::Ingest(c) => {
                if self.ingest_refused.len() == 61 {
                    self.ingest_refused.pop_front();
                }
                self.ingest_refused.push_back(c.refused_total());
                self.ingest = c;
            }
            Action::Sources(s) => {
                if self.sources_trouble.len() == 61 {
                    self.sources_trouble.pop_front();
                }
                self.sources_trouble
                    .push_back((s.syslog_lost, s.syslog_refused_senders));
                self.sources = s;
            }
        }
        effects
    }

    // -- feed ---------------------------------------------------------------

    fn feed(&mut self, f: Feed) {
        match f {
            Feed::Event(ev) => {
                if let Some(last) = self.rate.back_mut() {
                    *last += 1;
                }
                self.events_total += 1;
                if self.events.len() == EVENT_BUFFER {
                    self.events.pop_back();
                }
                self.events.push_front(*ev);
                // Keep the selected event in place while the stream moves.
                if self.event_sel > 0 && self.paused_at.is_none() {
                    self.event_sel = (self.event_sel + 1).min(EVENT_BUFFER - 1);
                }
            }
            Feed::Alert(a) => {
                self.upsert_alert(*a);
                self.view_dirty = true;
            }
        }
    }

    fn advance_rate(&mut self, now: DateTime<Utc>) {
        let sec = now.timestamp();
        let gap = (sec - self.rate_second).clamp(0, RATE_SECONDS as i64);
        for _ in 0..gap {
            self.rate.pop_front();
            self.rate.push_back(0);
        }
        if sec > self.rate_second {
            self.rate_second = sec;
        }
    }

    // -- queries used by the views --------------------------------------------

    /// Events the stream shows: frozen while paused, filtered by `/`.
    pub fn visible_events(&self) -> impl Iterator<Item = &FeedEvent> {
        let skip = self
            .paused_at
            .map_or(0, |p| (self.events_total - p) as usize);
        let filter = EventFilter::parse(&self.filter);
        self.events
            .iter()
            .skip(skip)
            .filter(move |e| filter.matches(e))
    }

    /// An evidence event: from the store if loaded, else from the stream.
    pub fn evidence_event(&self, id: &str) -> Option<&crate::event::Event> {
        self.evidence.get(id).or_else(|| {
            self.events
                .iter()
                .map(|e| &e.event)
                .find(|e| e.event_id == id)
        })
    }

    /// Gateway refusals over the last minute (over the console's life, if
    /// shorter).
    pub fn refused_last_minute(&self) -> u64 {
        match (self.ingest_refused.front(), self.ingest_refused.back()) {
            (Some(oldest), Some(newest)) => newest.saturating_sub(*oldest),
            _ => 0,
        }
    }

    /// Syslog datagrams lost to a full buffer and messages from senders
    /// not allowed, within the last minute of samples.
    pub fn sources_trouble_last_minute(&self) -> (u64, u64) {
        match (self.sources_trouble.front(), self.sources_trouble.back()) {
            (Some(oldest), Some(newest)) => (
                newest.0.saturating_sub(oldest.0),
                newest.1.saturating_sub(oldest.1),
            ),
            _ => (0, 0),
        }
    }

    /// Quarantined hosts first, then hosts with a cooldown running (those
    /// the pane's `/` filter keeps).
    pub fn host_rows(&self) -> Vec<&(String, crate::respond::policy::HostState)> {
        let filter = HostFilter::parse(&self.hosts_filter);
        let mut rows: Vec<_> = self
            .policy
            .hosts
            .iter()
            .filter(|(h, st)| {
                (st.quarantine.is_some() || st.cooldown_until_utc.is_some_and(|c| c > self.now))
                    && filter.host(h, st)
            })
            .collect();
        rows.sort_by_key(|(h, st)| (st.quarantine.is_none(), h.clone()));
        rows
    }

    /// The bans in force that the Hosts & bans pane's `/` filter keeps.
    pub fn ban_rows(&self) -> Vec<&crate::respond::policy::Ban> {
        let filter = HostFilter::parse(&self.hosts_filter);
        self.policy.bans.iter().filter(|b| filter.ban(b)).collect()
    }

    /// The current pane's `/` filter text.
    pub(super) fn pane_filter(&mut self) -> &mut String {
        match self.pane {
            Pane::Alerts => &mut self.alert_filter,
            Pane::Hosts => &mut self.hosts_filter,
            _ => &mut self.filter,
        }
    }

    /// Sets the current pane's `/` filter and puts its view in line.
    pub(super) fn set_pane_filter(&mut self, text: String) {
        *self.pane_filter() = text;
        match self.pane {
            Pane::Alerts => self.refresh_view(),
            Pane::Hosts => self.clamp_selections(),
            _ => self.event_sel = 0,
        }
    }

    pub fn editing(&self) -> bool {
        matches!(self.mode, Mode::Editor { .. })
    }
}

/// How a decision is called on screen.
pub fn decision_label(d: Decision) -> &'static str {
    match d {
        Decision::Allow => "ALLOW",
        Decision::Throttle => "THROTTLE",
        Decision::Block => "BLOCK",
    }
}
