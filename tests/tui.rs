//! The console's panes on ratatui's `TestBackend` (insta snapshots at
//! 120×40 and 80×24), and what every `Action` does to the state.

use chrono::{DateTime, TimeZone, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use serde_json::Map;

use vigil::detect::{Alert, AlertStatus, Decision};
use vigil::engine::{AdminRequest, Feed, FeedEvent, PolicySnapshot};
use vigil::event::Event;
use vigil::respond::policy::{Ban, HostState, Quarantine};
use vigil::sources::gateway::IngestCounts;
use vigil::tui::app::{Action, App, Effect, Health, Label, Mode, Pane, Pending, Session, SortKey};
use vigil::tui::keymap::map_key;

fn t(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_780_000_000 + s, 0).unwrap()
}

fn session() -> Session {
    Session {
        listen: "127.0.0.1:8000".into(),
        data_dir: "/var/lib/vigil".into(),
        user: "ana".into(),
        first_run_hint: None,
    }
}

fn alert(id: &str, rule: &str, host: &str, sev: u8, risk: f32, last: i64, ip: &str) -> Alert {
    Alert {
        alert_id: id.into(),
        rule_id: rule.into(),
        host: host.into(),
        severity: sev,
        confidence: 0.9,
        risk_score: risk,
        created_time_utc: t(last),
        first_seen_utc: t(last - 30),
        last_seen_utc: t(last),
        count: 8,
        user: Some("root".into()),
        src_ip: ip.parse().ok(),
        reasons: vec![format!("8 failed logins for root from {ip} within 60 s")],
        context: Map::new(),
        evidence: vec![format!("{id}-ev1"), format!("{id}-ev2")],
        recommended_action: "BLOCK_IP".into(),
        mitre: vec!["T1110".into()],
        status: AlertStatus::Open,
    }
}

fn feed_event(id: &str, at: i64, host: &str, ip: &str, msg: &str, d: Decision) -> Action {
    let mut ev = Event::login_failed(id, t(at), host, "root", ip.parse().ok());
    ev.message = msg.into();
    Action::Feed(Feed::Event(Box::new(FeedEvent {
        event: ev,
        correlation: d,
        final_decision: d,
        reasons: vec![],
    })))
}

/// A console with events, alerts, a quarantined host, a cooldown, bans and labels.
fn fixture() -> App {
    let mut app = App::new(session(), t(100));
    for i in 0..30 {
        let d = if i % 7 == 6 {
            Decision::Block
        } else {
            Decision::Allow
        };
        app.update(feed_event(
            &format!("ev-{i}"),
            40 + i,
            if i % 2 == 0 { "web-1" } else { "db-1" },
            if i % 3 == 0 {
                "203.0.113.9"
            } else {
                "198.51.100.4"
            },
            &format!(
                "Failed password for root from 203.0.113.9 port {} ssh2",
                40000 + i
            ),
            d,
        ));
    }
    app.update(Action::LoadAlerts(vec![
        alert(
            "al-1",
            "BRUTE_FORCE_V1",
            "web-1",
            7,
            0.63,
            60,
            "203.0.113.9",
        ),
        alert(
            "al-2",
            "PASSWORD_SPRAY_V1",
            "db-1",
            8,
            0.72,
            70,
            "198.51.100.4",
        ),
        alert("al-3", "INGEST_STORM_V1", "web-1", 4, 0.28, 80, ""),
        alert(
            "al-4",
            "SUCCESS_AFTER_FAILURES_V1",
            "db-1",
            9,
            0.81,
            50,
            "203.0.113.9",
        ),
    ]));
    app.update(Action::Snapshot(PolicySnapshot {
        hosts: vec![
            (
                "web-1".into(),
                HostState {
                    quarantine: Some(Quarantine {
                        since_utc: t(60),
                        reason: "brute_force_suspected".into(),
                        alert_id: Some("al-1".into()),
                    }),
                    cooldown_until_utc: Some(t(360)),
                    ..HostState::default()
                },
            ),
            (
                "db-1".into(),
                HostState {
                    cooldown_until_utc: Some(t(250)),
                    ..HostState::default()
                },
            ),
        ],
        bans: vec![Ban {
            ip: "203.0.113.9".parse().unwrap(),
            since_utc: t(60),
            until_utc: t(3660),
            reason: "BRUTE_FORCE_V1".into(),
            alert_id: Some("al-1".into()),
        }],
    }));
    app.update(Action::LoadLabels(vec![Label {
        alert_id: "al-9".into(),
        rule_id: "BRUTE_FORCE_V1".into(),
        verdict: AlertStatus::FalsePositive,
        note: "backup job with a stale key".into(),
        by: "ana".into(),
        at: t(20),
    }]));
    app.update(Action::Tick(t(100)));
    app
}

fn draw(app: &mut App, w: u16, h: u16) -> String {
    app.update(Action::Resize {
        width: w,
        height: h,
    });
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| vigil::tui::view::render(f, app)).unwrap();
    term.backend().to_string()
}

/// The alert queue's ids as shown, in order.
fn alert_order(app: &App) -> Vec<String> {
    app.alert_view
        .iter()
        .map(|&i| app.alerts[i].alert_id.clone())
        .collect()
}

/// Opens the pane's `/` filter, replaces its text with `text`, keeps it.
fn refilter(app: &mut App, text: &str) {
    app.update(Action::OpenFilter);
    for _ in 0..40 {
        app.update(Action::InputBackspace);
    }
    type_text(app, text);
    press(app, KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
}

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

fn press(app: &mut App, k: KeyEvent) -> Vec<Effect> {
    match map_key(app, k) {
        Some(a) => app.update(a),
        None => Vec::new(),
    }
}

fn type_text(app: &mut App, s: &str) {
    for c in s.chars() {
        press(app, key(c));
    }
}

// -- snapshots ---------------------------------------------------------------

macro_rules! snap {
    ($name:ident, $setup:expr) => {
        #[test]
        fn $name() {
            for (w, h) in [(120, 40), (80, 24)] {
                let mut app = fixture();
                #[allow(clippy::redundant_closure_call)]
                ($setup)(&mut app);
                let screen = draw(&mut app, w, h);
                insta::assert_snapshot!(format!("{}_{w}x{h}", stringify!($name)), screen);
            }
        }
    };
}

snap!(pane_overview, |_app: &mut App| {});
// The header says when the engine cannot keep or audit what it is sent
// (escape sequences in the errors shown inert).
snap!(overview_store_and_audit_failing, |app: &mut App| {
    app.update(Action::Health(Health {
        store: Some((t(100), "database is locked\x1b[2J".into())),
        audit: Some(vigil::store::audit_log::OutageReport {
            since: t(90),
            error: "No space left on device (os error 28)".into(),
            held: 64_528,
            lost: 179_022,
        }),
        retention: None,
    }));
});
// Once the store deletes old events to stay within its bounds, the header
// says so: an old alert's events may be gone.
snap!(overview_store_at_its_bound, |app: &mut App| {
    app.update(Action::Health(Health {
        retention: Some(vigil::store::RetentionReport {
            stored: 2_000_000,
            max_events: 2_000_000,
            deleted_over_bound: 1_506_000,
            at_bound_since: Some(t(-300)),
            deleted_aged: 31,
            max_age_days: Some(30),
        }),
        ..Health::default()
    }));
});
// Below the count bound, only the age bound deleting.
snap!(overview_store_deleting_aged_events, |app: &mut App| {
    app.update(Action::Health(Health {
        retention: Some(vigil::store::RetentionReport {
            stored: 812_344,
            max_events: 2_000_000,
            deleted_over_bound: 0,
            at_bound_since: None,
            deleted_aged: 31,
            max_age_days: Some(30),
        }),
        ..Health::default()
    }));
});
// The gateway's refusals, by reason, in the header: a producer turned away
// shows in the stream only as silence.
snap!(overview_gateway_refusing, |app: &mut App| {
    app.update(Action::Ingest(ingest(
        1_180,
        &[("signature_mismatch", 7)],
        0,
    )));
    app.update(Action::Ingest(ingest(
        1_204,
        &[
            ("stale_timestamp", 50),
            ("signature_mismatch", 7),
            ("invalid_json", 2),
            ("rate_limited", 1),
        ],
        3,
    )));
});
// Syslog listeners, followed files and the journal get a header line when
// they run: a file that cannot be read and senders turned away stand out
// (escape sequences in a path shown inert).
snap!(overview_with_sources, |app: &mut App| {
    // A second before: 250 datagrams lost and 4 senders refused since.
    app.update(Action::Sources(sources(1_000, 0)));
    app.update(Action::Sources(vigil::live::SourceStatus {
        files: 2,
        file_lines: 1_204,
        file_unparsed: 3,
        unreadable: vec![(
            "/var/log/secure\x1b[2J".into(),
            "Permission denied (os error 13)".into(),
        )],
        syslog: vec!["udp 127.0.0.1:5514".into(), "tcp 127.0.0.1:5514".into()],
        syslog_received: 310,
        syslog_unparsed: 2,
        syslog_dropped: 0,
        syslog_lost: 1_250,
        syslog_refused_senders: 4,
        syslog_senders: 3,
        syslog_silent: vec![("192.0.2.9".into(), t(-600))],
        journal_entries: Some(50),
        last_unparsed: Some(unparsed(40)),
    }));
});
// Other panes say so in the tab bar.
snap!(alerts_pane_with_the_audit_log_failing, |app: &mut App| {
    app.update(Action::Health(Health {
        store: None,
        audit: Some(vigil::store::audit_log::OutageReport {
            since: t(90),
            error: "No space left on device (os error 28)".into(),
            held: 12,
            lost: 0,
        }),
        retention: None,
    }));
    app.update(Action::FocusPane(Pane::Alerts));
});
snap!(pane_alerts, |app: &mut App| {
    app.update(Action::FocusPane(Pane::Alerts));
});
// The queue's `/` filter, open as it is typed: the title says what is
// filtered and how many of all the alerts match.
snap!(alerts_filtered_by_address, |app: &mut App| {
    app.update(Action::FocusPane(Pane::Alerts));
    type_text(app, "/ip:203.0.113.9");
});
// Thousands of bans under an attack: `/` narrows both tables, and the ban
// table says how many of all it shows.
snap!(hosts_filtered, |app: &mut App| {
    with_bans(app, 12);
    app.update(Action::FocusPane(Pane::Hosts));
    type_text(app, "/198.51.100.1");
    press(app, KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
});
snap!(pane_hosts, |app: &mut App| {
    app.update(Action::FocusPane(Pane::Hosts));
});
snap!(pane_feedback, |app: &mut App| {
    app.update(Action::FocusPane(Pane::Feedback));
});
snap!(pane_demo, |app: &mut App| {
    app.update(Action::FocusPane(Pane::Demo));
});
snap!(overlay_help, |app: &mut App| {
    app.update(Action::FocusPane(Pane::Alerts));
    app.update(Action::OpenHelp);
});
snap!(alert_detail, |app: &mut App| {
    app.update(Action::FocusPane(Pane::Alerts));
    app.update(Action::Enter);
});
snap!(release_confirmation, |app: &mut App| {
    app.update(Action::FocusPane(Pane::Hosts));
    app.update(Action::Release);
    for c in "patched".chars() {
        app.update(Action::InputChar(c));
    }
});
snap!(feedback_editor, |app: &mut App| {
    app.update(Action::FocusPane(Pane::Alerts));
    app.update(Action::MarkFalsePositive);
    for c in "known scanner".chars() {
        app.update(Action::EditorKey(key(c)));
    }
});
snap!(paused_and_filtered_stream, |app: &mut App| {
    app.update(Action::TogglePause);
    app.update(feed_event(
        "ev-new",
        99,
        "web-1",
        "192.0.2.1",
        "new",
        Decision::Allow,
    ));
    app.update(Action::OpenFilter);
    for c in "host:db".chars() {
        app.update(Action::InputChar(c));
    }
});
snap!(event_detail, |app: &mut App| {
    app.update(Action::Down);
    app.update(Action::Enter);
});
snap!(light_theme_palette, |app: &mut App| {
    app.update(Action::ToggleTheme);
    app.update(Action::OpenPalette);
    for c in "release web-1".chars() {
        app.update(Action::InputChar(c));
    }
});

#[test]
fn below_80x24_says_so_instead_of_drawing() {
    let mut app = fixture();
    let screen = draw(&mut app, 70, 20);
    assert!(screen.contains("at least 80×24"), "{screen}");
    assert!(screen.contains("70×20"), "{screen}");
    // Resizing back draws the console again.
    assert!(draw(&mut app, 80, 24).contains("Overview"));
}

#[test]
fn escape_sequences_in_log_text_are_shown_inert() {
    let mut app = App::new(session(), t(100));
    app.update(feed_event(
        "ev-esc",
        90,
        "web-\u{1b}]0;pwned\u{7}1",
        "192.0.2.7",
        "clear\u{1b}[2J\u{1b}[31mred\u{9b}2J\u{202e}evil\r\nforged line",
        Decision::Allow,
    ));
    let screen = draw(&mut app, 160, 40);
    assert!(!screen.contains('\u{1b}'));
    assert!(!screen.contains('\u{9b}'));
    assert!(!screen.contains('\u{202e}'));
    assert!(
        screen.contains("clear�[2J�[31mred�2J�evil��forged line"),
        "{screen}"
    );
    assert!(screen.contains("web-�]0;pwn"), "{screen}");
}

// -- actions -----------------------------------------------------------------

#[test]
fn pane_switching_by_number_tab_and_click() {
    let mut app = fixture();
    press(&mut app, key('3'));
    assert_eq!(app.pane, Pane::Hosts);
    press(&mut app, KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE));
    assert_eq!(app.pane, Pane::Feedback);
    press(
        &mut app,
        KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT),
    );
    press(
        &mut app,
        KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT),
    );
    assert_eq!(app.pane, Pane::Alerts);
    for _ in 0..5 {
        app.update(Action::NextPane);
    }
    assert_eq!(app.pane, Pane::Alerts, "Tab wraps around");
    // " 1 Overview " is 12 cells, then a space: column 14 is the Alerts tab.
    app.update(Action::Click { column: 2, row: 0 });
    assert_eq!(app.pane, Pane::Overview);
    app.update(Action::Click { column: 14, row: 0 });
    assert_eq!(app.pane, Pane::Alerts);
}

#[test]
fn moving_the_cursor_clamps_to_the_list() {
    let mut app = fixture();
    app.update(Action::FocusPane(Pane::Alerts));
    app.update(Action::Up);
    assert_eq!(app.alert_sel, 0);
    app.update(Action::Down);
    app.update(Action::Down);
    assert_eq!(app.alert_sel, 2);
    app.update(Action::Bottom);
    assert_eq!(app.alert_sel, 3);
    app.update(Action::PageDown);
    assert_eq!(app.alert_sel, 3);
    app.update(Action::Top);
    assert_eq!(app.alert_sel, 0);
    app.update(Action::PageDown);
    assert_eq!(app.alert_sel, 3);
    app.update(Action::PageUp);
    assert_eq!(app.alert_sel, 0);
    // A click on the third data row (rows start at 3) selects it.
    draw(&mut app, 120, 40);
    app.update(Action::Click { column: 10, row: 5 });
    assert_eq!(app.alert_sel, 2);
}

#[test]
fn alert_queue_sorts_and_filters_keeping_the_selection() {
    let mut app = fixture();
    app.update(Action::FocusPane(Pane::Alerts));
    assert_eq!(app.sort, SortKey::Severity);
    assert_eq!(alert_order(&app), ["al-4", "al-2", "al-1", "al-3"]);
    app.update(Action::Down); // al-2
    app.update(Action::CycleSort);
    app.update(Action::Tick(t(101)));
    assert_eq!(app.sort, SortKey::Risk);
    assert_eq!(alert_order(&app), ["al-4", "al-2", "al-1", "al-3"]);
    app.update(Action::CycleSort);
    app.update(Action::Tick(t(102)));
    assert_eq!(alert_order(&app), ["al-3", "al-2", "al-1", "al-4"]);
    assert_eq!(app.current_alert().unwrap().alert_id, "al-2");
    app.update(Action::CycleRuleFilter);
    app.update(Action::Tick(t(103)));
    assert_eq!(app.rule_filter.as_deref(), Some("BRUTE_FORCE_V1"));
    assert_eq!(alert_order(&app), ["al-1"]);
    app.update(Action::CycleRuleFilter);
    app.update(Action::Tick(t(104)));
    assert_eq!(alert_order(&app), ["al-3"]);
    for _ in 0..3 {
        app.update(Action::CycleRuleFilter);
    }
    app.update(Action::Tick(t(105)));
    assert_eq!(app.rule_filter, None);
    app.update(Action::CycleStatusFilter);
    app.update(Action::Tick(t(106)));
    assert_eq!(app.status_filter, Some(AlertStatus::Open));
    assert_eq!(alert_order(&app).len(), 4);
    app.update(Action::CycleStatusFilter);
    app.update(Action::Tick(t(107)));
    assert_eq!(alert_order(&app).len(), 0);
}

#[test]
fn alert_queue_text_filter_finds_an_address_a_host_or_a_reason() {
    let mut app = fixture();
    app.update(Action::FocusPane(Pane::Alerts));
    // Applied as it is typed, kept by Enter.
    type_text(&mut app, "/ip:203.0.113.9");
    assert!(matches!(app.mode, Mode::Filter(_)));
    assert_eq!(alert_order(&app), ["al-4", "al-1"]);
    press(&mut app, KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert_eq!(app.mode, Mode::Normal);
    assert_eq!(app.alert_filter, "ip:203.0.113.9");
    assert_eq!(alert_order(&app), ["al-4", "al-1"]);
    // The stream's filter is another one.
    assert_eq!(app.filter, "");
    // Esc clears it.
    press(&mut app, KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
    assert_eq!(app.alert_filter, "");
    assert_eq!(alert_order(&app).len(), 4);
    // Terms must all match; free text also searches rules and reasons;
    // case does not matter.
    let mut by = |text: &str| {
        refilter(&mut app, text);
        alert_order(&app)
    };
    assert_eq!(by("spray"), ["al-2"]);
    assert_eq!(by("host:WEB-1 rule:storm"), ["al-3"]);
    assert_eq!(by("failed logins from 198.51"), ["al-2"]);
    assert_eq!(by("user:root host:db"), ["al-4", "al-2"]);
    assert_eq!(by("ip:192.0.2"), Vec::<String>::new());
    // With the status and rule filters too.
    by("host:db-1");
    app.update(Action::CycleRuleFilter);
    assert_eq!(app.rule_filter.as_deref(), Some("BRUTE_FORCE_V1"));
    assert_eq!(alert_order(&app), Vec::<String>::new());
}

#[test]
fn acknowledge_applies_to_the_multi_selection() {
    let mut app = fixture();
    app.update(Action::FocusPane(Pane::Alerts));
    app.update(Action::ToggleSelect);
    app.update(Action::Down);
    app.update(Action::ToggleSelect);
    assert_eq!(app.selected.len(), 2);
    let effects = app.update(Action::Acknowledge);
    let ids: Vec<String> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Admin {
                request:
                    AdminRequest::Label {
                        alert_id,
                        verdict: AlertStatus::Acknowledged,
                        by,
                        ..
                    },
                ..
            } if by == "ana" => Some(alert_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(ids, ["al-2", "al-4"]);
    // v again unselects; Esc clears the rest.
    app.update(Action::ToggleSelect);
    assert_eq!(app.selected.len(), 1);
    app.update(Action::Escape);
    assert!(app.selected.is_empty());
}

#[test]
fn true_and_false_positive_open_the_note_editor_and_save_a_label() {
    let mut app = fixture();
    app.update(Action::FocusPane(Pane::Alerts));
    app.update(Action::MarkTruePositive);
    assert!(matches!(
        &app.mode,
        Mode::Editor { alerts, verdict: AlertStatus::TruePositive } if alerts == &["al-4".to_string()]
    ));
    // q types into the note instead of quitting.
    type_text(&mut app, "quick check");
    assert!(app.editing());
    let effects = press(
        &mut app,
        KeyEvent::new(KeyCode::Char('s'), KeyModifiers::CONTROL),
    );
    match effects.as_slice() {
        [
            Effect::Admin {
                request:
                    AdminRequest::Label {
                        alert_id,
                        verdict: AlertStatus::TruePositive,
                        note,
                        ..
                    },
                ..
            },
        ] => {
            assert_eq!(alert_id, "al-4");
            assert_eq!(note, "quick check");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(app.mode, Mode::Normal);
    app.record_label("al-4", AlertStatus::TruePositive, "quick check".into());
    assert_eq!(app.alert("al-4").unwrap().status, AlertStatus::TruePositive);
    assert_eq!(app.labels[0].alert_id, "al-4");
    assert_eq!(
        app.label_counts(),
        [
            ("BRUTE_FORCE_V1".to_string(), 0, 1),
            ("SUCCESS_AFTER_FAILURES_V1".to_string(), 1, 0)
        ]
    );
    // f, then Esc: nothing is stored.
    app.update(Action::MarkFalsePositive);
    assert!(app.editing());
    assert!(app.update(Action::Escape).is_empty());
    assert_eq!(app.mode, Mode::Normal);
}

#[test]
fn quitting_with_an_edit_open_asks_first() {
    let mut app = fixture();
    app.update(Action::FocusPane(Pane::Alerts));
    app.update(Action::MarkFalsePositive);
    let effects = press(
        &mut app,
        KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL),
    );
    assert!(effects.is_empty());
    assert_eq!(app.mode, Mode::ConfirmQuit);
    press(&mut app, key('n'));
    assert_eq!(app.mode, Mode::Normal);
    let effects = press(&mut app, key('q'));
    assert!(matches!(effects.as_slice(), [Effect::Quit]));
    assert!(app.should_quit);
}

#[test]
fn ban_and_quarantine_need_a_reason_and_name_the_alert() {
    let mut app = fixture();
    app.update(Action::FocusPane(Pane::Alerts));
    app.update(Action::BanSource);
    assert_eq!(
        app.mode,
        Mode::Confirm {
            action: Pending::Ban {
                ip: "203.0.113.9".parse().unwrap(),
                alert_id: Some("al-4".into())
            },
            reason: String::new()
        }
    );
    // Enter without a reason keeps the dialog open.
    assert!(app.update(Action::Enter).is_empty());
    assert!(matches!(app.mode, Mode::Confirm { .. }));
    type_text(&mut app, "scanner");
    let effects = app.update(Action::Enter);
    assert!(matches!(
        effects.as_slice(),
        [Effect::Admin { request: AdminRequest::Ban { reason, alert_id: Some(a), .. }, .. }]
            if reason == "scanner" && a == "al-4"
    ));
    app.update(Action::Down);
    app.update(Action::Down);
    app.update(Action::Down); // al-3 has no source address
    app.update(Action::BanSource);
    assert_eq!(app.mode, Mode::Normal);
    assert!(app.status.as_ref().unwrap().1.contains("no source address"));
    app.update(Action::QuarantineHost);
    type_text(&mut app, "contain");
    let effects = app.update(Action::Enter);
    assert!(matches!(
        effects.as_slice(),
        [Effect::Admin { request: AdminRequest::Quarantine { host, .. }, .. }] if host == "web-1"
    ));
}

#[test]
fn release_and_unban_from_the_hosts_pane() {
    let mut app = fixture();
    press(&mut app, key('3'));
    // web-1 (quarantined) first, then db-1 (cooldown), then the ban.
    assert_eq!(app.selected_host().as_deref(), Some("web-1"));
    press(&mut app, key('r'));
    type_text(&mut app, "reimaged");
    let effects = press(&mut app, KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert!(matches!(
        effects.as_slice(),
        [Effect::Admin { request: AdminRequest::Release { host, reason, by }, .. }]
            if host == "web-1" && reason == "reimaged" && by == "ana"
    ));
    press(&mut app, key('j'));
    press(&mut app, key('r'));
    assert!(app.status.as_ref().unwrap().1.contains("quarantined host"));
    press(&mut app, key('j'));
    assert_eq!(app.selected_ban(), "203.0.113.9".parse().ok());
    press(&mut app, key('u'));
    press(
        &mut app,
        KeyEvent::new(KeyCode::Backspace, KeyModifiers::NONE),
    );
    type_text(&mut app, "false alarm");
    let effects = press(&mut app, KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert!(matches!(
        effects.as_slice(),
        [Effect::Admin { request: AdminRequest::Unban { ip, .. }, .. }] if ip.to_string() == "203.0.113.9"
    ));
    app.update(Action::AdminDone {
        what: "Lift the ban on 203.0.113.9".into(),
        result: Err("203.0.113.9 is not banned".into()),
    });
    assert_eq!(
        app.status,
        Some((
            false,
            "Lift the ban on 203.0.113.9: 203.0.113.9 is not banned".into()
        ))
    );
}

#[test]
fn command_palette_runs_release_unban_filter_theme_and_quit() {
    let mut app = fixture();
    press(&mut app, key(':'));
    type_text(&mut app, "release db-7");
    press(&mut app, KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert!(matches!(
        &app.mode,
        Mode::Confirm { action: Pending::Release { host }, .. } if host == "db-7"
    ));
    app.update(Action::Escape);
    press(&mut app, key(':'));
    type_text(&mut app, "ban 198.51.100.23");
    press(&mut app, KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert!(matches!(
        &app.mode,
        Mode::Confirm { action: Pending::Ban { ip, alert_id: None }, .. } if ip.to_string() == "198.51.100.23"
    ));
    app.update(Action::Escape);
    press(&mut app, key(':'));
    type_text(&mut app, "quarantine db-9");
    press(&mut app, KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert!(matches!(
        &app.mode,
        Mode::Confirm { action: Pending::Quarantine { host, alert_id: None }, .. } if host == "db-9"
    ));
    app.update(Action::Escape);
    press(&mut app, key(':'));
    type_text(&mut app, "unban nonsense");
    press(&mut app, KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert!(app.status.as_ref().unwrap().1.contains("not an IP address"));
    press(&mut app, key(':'));
    type_text(&mut app, "filter user:root web");
    press(&mut app, KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert_eq!(app.filter, "user:root web");
    assert_eq!(app.visible_events().count(), 15);
    press(&mut app, key(':'));
    type_text(&mut app, "theme");
    press(&mut app, KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert!(!app.dark);
    press(&mut app, key(':'));
    type_text(&mut app, "bogus");
    press(&mut app, KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert!(app.status.as_ref().unwrap().1.contains("unknown command"));
    press(&mut app, key(':'));
    type_text(&mut app, "quit");
    let effects = press(&mut app, KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert!(matches!(effects.as_slice(), [Effect::Quit]));
}

#[test]
fn stream_pause_filter_and_escape() {
    let mut app = fixture();
    assert_eq!(app.visible_events().count(), 30);
    press(&mut app, key(' '));
    app.update(feed_event(
        "ev-x",
        99,
        "web-9",
        "192.0.2.1",
        "x",
        Decision::Allow,
    ));
    assert_eq!(app.events_total, 31);
    assert_eq!(
        app.visible_events().next().unwrap().event.event_id,
        "ev-29",
        "paused: the view stays put"
    );
    press(&mut app, key(' '));
    assert_eq!(app.visible_events().next().unwrap().event.event_id, "ev-x");
    press(&mut app, key('/'));
    type_text(&mut app, "ip:203.0.113.9");
    assert_eq!(app.visible_events().count(), 10, "filters as you type");
    press(&mut app, KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert_eq!(app.filter, "ip:203.0.113.9");
    press(&mut app, KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
    assert_eq!(app.filter, "", "Esc clears the filter");
    // Typed text is bounded.
    press(&mut app, key('/'));
    type_text(&mut app, &"x".repeat(2000));
    assert_eq!(app.filter.len(), vigil::tui::app::MAX_INPUT);
}

#[test]
fn feed_updates_alerts_rates_and_sources() {
    let mut app = App::new(session(), t(0));
    app.update(Action::Tick(t(0)));
    for i in 0..5 {
        app.update(feed_event(
            &format!("e{i}"),
            i,
            "h",
            "192.0.2.1",
            "m",
            Decision::Allow,
        ));
    }
    app.update(Action::Tick(t(1)));
    assert_eq!(app.rate.iter().rev().nth(1), Some(&5));
    assert!(
        app.top_sources(3).is_empty(),
        "sources rank by alerts, not events"
    );
    let mut a = alert("al-1", "BRUTE_FORCE_V1", "h", 7, 0.6, 1, "192.0.2.1");
    app.update(Action::Feed(Feed::Alert(Box::new(a.clone()))));
    a.count = 40;
    app.update(Action::Feed(Feed::Alert(Box::new(a))));
    app.update(Action::Tick(t(2)));
    assert_eq!(app.alerts.len(), 1, "an update replaces, not duplicates");
    assert_eq!(app.top_sources(3), [("192.0.2.1".parse().unwrap(), 1)]);
    assert_eq!(app.alerts[0].count, 40);
    assert_eq!(app.open_by_severity(), [0, 1, 0, 0]);
    // Lost alert updates make the console re-read them from the store.
    let effects = app.update(Action::FeedDropped {
        events: 10,
        alerts: 1,
    });
    assert!(matches!(effects.as_slice(), [Effect::ReloadAlerts]));
    assert!(
        app.update(Action::FeedDropped {
            events: 12,
            alerts: 1
        })
        .is_empty()
    );
    assert_eq!(app.dropped_events, 12);
}

#[test]
fn detail_view_asks_for_the_evidence_and_esc_goes_back() {
    let mut app = fixture();
    app.update(Action::FocusPane(Pane::Alerts));
    let effects = app.update(Action::Enter);
    assert!(matches!(
        effects.as_slice(),
        [Effect::LoadEvidence { ids, from, to }]
            if ids == &["al-4-ev1".to_string(), "al-4-ev2".to_string()] && *from == t(20) && *to == t(50)
    ));
    assert_eq!(app.detail.as_deref(), Some("al-4"));
    let mut ev = Event::login_failed("al-4-ev1", t(21), "db-1", "root", None);
    ev.message = "the stored evidence line".into();
    app.update(Action::EvidenceLoaded(vec![ev]));
    assert!(draw(&mut app, 120, 40).contains("the stored evidence line"));
    app.update(Action::Escape);
    assert_eq!(app.detail, None);
}

#[test]
fn retrain_says_it_is_not_available_and_help_closes() {
    let mut app = fixture();
    press(&mut app, key('4'));
    press(&mut app, key('R'));
    assert!(app.status.as_ref().unwrap().1.contains("not available"));
    press(&mut app, key('?'));
    assert_eq!(app.mode, Mode::Help);
    press(&mut app, key('?'));
    assert_eq!(app.mode, Mode::Normal);
}

#[test]
fn a_stored_label_updates_the_alert_the_list_and_the_footer() {
    let mut app = fixture();
    app.update(Action::Labelled {
        alert_id: "al-2".into(),
        verdict: AlertStatus::FalsePositive,
        note: "pentest".into(),
    });
    assert_eq!(
        app.alert("al-2").unwrap().status,
        AlertStatus::FalsePositive
    );
    assert_eq!(app.labels[0].note, "pentest");
    assert_eq!(app.labels[0].by, "ana");
    assert_eq!(app.status, Some((true, "al-2: false positive".into())));
    // Acknowledging changes the status but is not a verdict for the model.
    app.update(Action::Labelled {
        alert_id: "al-1".into(),
        verdict: AlertStatus::Acknowledged,
        note: String::new(),
    });
    assert_eq!(app.alert("al-1").unwrap().status, AlertStatus::Acknowledged);
    assert_eq!(app.labels.len(), 2);
}

#[test]
fn first_run_secret_is_created_0600_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let (s1, created) = vigil::tui::run::load_or_create_secret(dir.path()).unwrap();
    assert!(created);
    assert_eq!(s1.len(), 64);
    assert!(s1.chars().all(|c| c.is_ascii_hexdigit()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("secret"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (s2, created) = vigil::tui::run::load_or_create_secret(dir.path()).unwrap();
    assert!(!created);
    assert_eq!(s1, s2);
    let other = tempfile::tempdir().unwrap();
    let (s3, _) = vigil::tui::run::load_or_create_secret(other.path()).unwrap();
    assert_ne!(s1, s3, "secrets are random");
}

#[test]
fn paste_types_into_prompts_and_never_runs_keys() {
    let mut app = fixture();
    // In normal mode a paste of "q" does not quit, and "3" does not switch.
    assert!(app.update(Action::Paste("q3".into())).is_empty());
    assert!(!app.should_quit);
    assert_eq!(app.pane, Pane::Overview);
    app.update(Action::OpenFilter);
    app.update(Action::Paste("host:web\u{1b}[2J\n".into()));
    assert_eq!(app.filter, "host:web[2J", "control characters are dropped");
    app.update(Action::Escape);
    app.update(Action::FocusPane(Pane::Alerts));
    app.update(Action::MarkTruePositive);
    app.update(Action::Paste("line one\nline two".into()));
    assert_eq!(app.editor.lines(), ["line one", "line two"]);
}

#[test]
fn stream_colours_outcome_decision_and_severity() {
    use ratatui::style::Color;
    let mut app = App::new(session(), t(100));
    app.update(feed_event(
        "ev-b",
        90,
        "web-1",
        "192.0.2.9",
        "x",
        Decision::Block,
    ));
    let mut ok = Event::new("ev-ok", t(91), "web-1");
    ok.action = vigil::event::Action::LoginSuccess;
    ok.outcome = vigil::event::Outcome::Success;
    ok.severity = 9;
    app.update(Action::Feed(Feed::Event(Box::new(FeedEvent {
        event: ok,
        correlation: Decision::Allow,
        final_decision: Decision::Allow,
        reasons: vec![],
    }))));
    app.update(Action::Resize {
        width: 120,
        height: 40,
    });
    let mut term = Terminal::new(TestBackend::new(120, 40)).unwrap();
    term.draw(|f| vigil::tui::view::render(f, &app)).unwrap();
    let buf = term.backend().buffer().clone();
    let row_of = |needle: &str| {
        (0..40)
            .find(|&y| {
                (0..120)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
                    .contains(needle)
            })
            .unwrap()
    };
    let col_of = |y: u16, needle: &str| {
        let line: String = (0..120).map(|x| buf[(x, y)].symbol().to_string()).collect();
        line[..line.find(needle).unwrap()].chars().count() as u16
    };
    let dark = vigil::tui::theme::DARK;
    let fail = row_of("login_failed");
    assert_eq!(buf[(col_of(fail, "login_failed"), fail)].fg, dark.warn);
    assert_eq!(buf[(col_of(fail, "BLOCK"), fail)].fg, dark.bad);
    let success = row_of("login_success");
    assert_eq!(buf[(col_of(success, "login_success"), success)].fg, dark.ok);
    assert_eq!(buf[(col_of(success, "ALLOW"), success)].fg, dark.ok);
    // Severity 9 is critical.
    let header = row_of("decision");
    assert_eq!(buf[(col_of(header, "sev"), success)].symbol(), "9");
    assert_eq!(buf[(col_of(header, "sev"), success)].fg, dark.critical);
    assert_ne!(dark.critical, Color::Reset);
}

#[test]
fn alerts_in_memory_are_bounded_and_open_ones_kept() {
    use vigil::tui::app::MAX_ALERTS;
    let mut app = App::new(session(), t(0));
    let mut batch = Vec::new();
    for i in 0..MAX_ALERTS as i64 + 10 {
        let mut a = alert(
            &format!("al-{i}"),
            "BRUTE_FORCE_V1",
            "h",
            5,
            0.5,
            i,
            "192.0.2.1",
        );
        // The oldest ten are still open: they must survive the trim.
        if i >= 10 {
            a.status = AlertStatus::Acknowledged;
        }
        batch.push(a);
    }
    app.update(Action::LoadAlerts(batch));
    assert!(app.alerts.len() <= MAX_ALERTS, "{}", app.alerts.len());
    for i in 0..10 {
        assert!(app.alert(&format!("al-{i}")).is_some(), "open al-{i} kept");
    }
    let newest = format!("al-{}", MAX_ALERTS + 9);
    assert!(app.alert(&newest).is_some(), "the newest are kept");
    assert!(app.alert("al-10").is_none(), "the oldest settled ones go");
    assert_eq!(app.alert_view.len(), app.alerts.len());
    // Source counts follow what is held.
    assert_eq!(
        app.top_sources(1),
        [("192.0.2.1".parse().unwrap(), app.alerts.len() as u64)]
    );
}

/// The fixture's policy with `n` more bans, from 198.51.100.1 on.
fn with_bans(app: &mut App, n: u8) {
    let mut p = app.policy.clone();
    for i in 1..=n {
        p.bans.push(Ban {
            ip: format!("198.51.100.{i}").parse().unwrap(),
            since_utc: t(70),
            until_utc: t(3670),
            reason: if i % 2 == 0 {
                "PASSWORD_SPRAY_V1".into()
            } else {
                "BRUTE_FORCE_V1".into()
            },
            alert_id: Some(format!("al-b{i}")),
        });
    }
    app.update(Action::Snapshot(p));
}

#[test]
fn hosts_and_bans_filter_narrows_both_tables_and_what_u_lifts() {
    let mut app = fixture();
    with_bans(&mut app, 12);
    app.update(Action::FocusPane(Pane::Hosts));
    let bans =
        |app: &App| -> Vec<String> { app.ban_rows().iter().map(|b| b.ip.to_string()).collect() };
    let hosts =
        |app: &App| -> Vec<String> { app.host_rows().iter().map(|(h, _)| h.clone()).collect() };
    assert_eq!((hosts(&app).len(), bans(&app).len()), (2, 13));
    // Free text: an address part keeps the bans with it (no host has it).
    type_text(&mut app, "/198.51.100.1");
    assert!(matches!(app.mode, Mode::Filter(_)));
    assert_eq!(hosts(&app), Vec::<String>::new());
    assert_eq!(
        bans(&app),
        [
            "198.51.100.1",
            "198.51.100.10",
            "198.51.100.11",
            "198.51.100.12"
        ]
    );
    press(&mut app, KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    // The cursor runs over what is shown, and `u` lifts the ban under it.
    press(&mut app, key('j'));
    assert_eq!(app.selected_ban(), "198.51.100.10".parse().ok());
    press(&mut app, key('u'));
    assert!(
        matches!(&app.mode, Mode::Confirm { action: Pending::Unban { ip }, .. } if ip.to_string() == "198.51.100.10"),
        "{:?}",
        app.mode
    );
    press(&mut app, KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
    // Keys: host: only hosts, ip: only bans; free text searches reasons
    // and alerts too.
    let mut by = |text: &str| {
        refilter(&mut app, text);
        (hosts(&app), bans(&app))
    };
    assert_eq!(by("host:web"), (vec!["web-1".to_string()], vec![]));
    assert_eq!(by("ip:203.0"), (vec![], vec!["203.0.113.9".to_string()]));
    assert_eq!(by("brute_force al-b1").1, ["198.51.100.1", "198.51.100.11"]);
    assert_eq!(
        by("brute_force_suspected").0,
        ["web-1"],
        "the quarantine's reason"
    );
    // Esc clears it; the other panes' filters are their own.
    press(&mut app, KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
    assert_eq!(app.hosts_filter, "");
    assert_eq!((app.filter.as_str(), app.alert_filter.as_str()), ("", ""));
    assert_eq!((hosts(&app).len(), bans(&app).len()), (2, 13));
}

#[test]
fn clicking_a_ban_row_selects_it_for_unban() {
    let mut app = fixture();
    app.update(Action::FocusPane(Pane::Hosts));
    let screen = draw(&mut app, 120, 40);
    let row = screen
        .lines()
        .position(|l| l.contains("203.0.113.9      05-28"))
        .expect("ban row on screen") as u16;
    app.update(Action::Click { column: 5, row });
    assert_eq!(app.selected_ban(), "203.0.113.9".parse().ok());
    let host_row = screen
        .lines()
        .position(|l| l.contains("db-1             cooldown"))
        .expect("cooldown row") as u16;
    app.update(Action::Click {
        column: 5,
        row: host_row,
    });
    assert_eq!(app.host_sel, 1);
    assert_eq!(app.selected_host(), None, "db-1 is only cooling down");
}

#[test]
fn enter_on_the_stream_opens_the_event_and_esc_closes_it() {
    let mut app = fixture();
    press(&mut app, key('j'));
    press(&mut app, KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert_eq!(app.event_detail.as_ref().unwrap().event.event_id, "ev-28");
    // New events do not change what is open.
    app.update(feed_event(
        "ev-new",
        99,
        "h",
        "192.0.2.1",
        "x",
        Decision::Allow,
    ));
    assert_eq!(app.event_detail.as_ref().unwrap().event.event_id, "ev-28");
    press(&mut app, KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
    assert!(app.event_detail.is_none());
    press(&mut app, KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    press(&mut app, key('2'));
    assert!(app.event_detail.is_none(), "switching panes closes it");
}

/// A producer may send 100k attributes (1 MiB): the stream row builds a
/// bounded text from them, and the event detail lists a screenful and says
/// how many more there are.
#[test]
fn huge_attributes_are_shown_bounded_in_the_stream_and_the_detail() {
    let mut ev = Event::login_failed("ev-huge", t(100), "h", "root", None);
    ev.message.clear();
    let object: Vec<String> = (0..100_000).map(|i| format!("\"k{i}\":{i}")).collect();
    ev.attributes = serde_json::from_str(&format!("{{{}}}", object.join(","))).unwrap();
    let text = vigil::tui::view::event_text(&ev);
    assert_eq!(
        text.chars().count(),
        vigil::tui::view::EVENT_TEXT_MAX + 1,
        "{}",
        &text[..80]
    );
    assert!(text.starts_with("k0=0 k1=1 ") && text.ends_with('…'));

    let mut app = fixture();
    app.update(Action::Feed(Feed::Event(Box::new(FeedEvent {
        event: ev,
        correlation: Decision::Allow,
        final_decision: Decision::Allow,
        reasons: vec![],
    }))));
    let screen = draw(&mut app, 120, 40);
    assert!(screen.contains("k0=0 k1=1 k2=2"), "{screen}");
    press(&mut app, KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert_eq!(app.event_detail.as_ref().unwrap().event.event_id, "ev-huge");
    // On a tall terminal the whole list shows: cut at 100, the rest counted.
    let screen = draw(&mut app, 120, 200);
    assert!(screen.contains("· k99 "), "{screen}");
    assert!(!screen.contains("· k100 "), "{screen}");
    assert!(screen.contains("… 99900 more attributes"), "{screen}");
}

/// Two listeners and a followed file, with these syslog losses and
/// refused senders so far.
fn unparsed(at: i64) -> vigil::sources::unparsed::Unparsed {
    vigil::sources::unparsed::Unparsed {
        at: t(at),
        origin: "syslog from 192.0.2.7".into(),
        line: "<13>Nov 21 ASA-4-106023: Deny\x1b[2J tcp".into(),
        why: "no syslog timestamp or `host program[pid]:` header".into(),
    }
}

/// The latest line a source could not parse is shown (inert) under the
/// sources' line for ten minutes, then the header shrinks back.
#[test]
fn an_unparsed_line_shows_for_ten_minutes() {
    let mut app = fixture();
    let mut status = sources(0, 0);
    status.last_unparsed = Some(unparsed(100));
    app.update(Action::Sources(status));
    let shown = "last unparsed 20:28:20 syslog from 192.0.2.7: \"<13>Nov 21 ASA-4-106023: \
                 Deny\u{fffd}[2J tcp\" (no syslog timestamp";
    let screen = draw(&mut app, 120, 40);
    assert!(screen.contains(shown), "{screen}");
    app.update(Action::Tick(t(100 + 599)));
    assert!(draw(&mut app, 120, 40).contains(shown));
    app.update(Action::Tick(t(100 + 600)));
    let screen = draw(&mut app, 120, 40);
    assert!(!screen.contains("last unparsed"), "{screen}");
}

fn sources(lost: u64, refused_senders: u64) -> vigil::live::SourceStatus {
    vigil::live::SourceStatus {
        files: 1,
        file_lines: 10,
        syslog: vec!["udp 127.0.0.1:5514".into()],
        syslog_received: 100,
        syslog_lost: lost,
        syslog_refused_senders: refused_senders,
        ..Default::default()
    }
}

/// Lost datagrams are red, with how many in the last minute, while they
/// keep coming; a minute later the total stays, plain.
#[test]
fn syslog_losses_stand_out_for_a_minute_of_samples() {
    let mut app = fixture();
    app.update(Action::Sources(sources(0, 0)));
    app.update(Action::Sources(sources(40, 2)));
    assert_eq!(app.sources_trouble_last_minute(), (40, 2));
    let screen = draw(&mut app, 120, 40);
    assert!(
        screen.contains("syslog 100 received, 40 lost (UDP buffer full) (40 last min), 2 from senders not allowed"),
        "{screen}"
    );
    for _ in 0..59 {
        app.update(Action::Sources(sources(40, 2)));
    }
    assert_eq!(app.sources_trouble_last_minute(), (40, 2));
    app.update(Action::Sources(sources(40, 2)));
    assert_eq!(app.sources_trouble_last_minute(), (0, 0));
    let screen = draw(&mut app, 120, 40);
    assert!(
        screen
            .contains("syslog 100 received, 40 lost (UDP buffer full), 2 from senders not allowed"),
        "{screen}"
    );
    assert!(!screen.contains("last min"), "{screen}");
}

fn ingest(accepted: u64, refused: &[(&str, u64)], turned_away: u64) -> IngestCounts {
    let refused: Vec<(String, u64)> = refused.iter().map(|(r, n)| (r.to_string(), *n)).collect();
    let total = refused.iter().map(|(_, n)| n).sum::<u64>();
    IngestCounts {
        accepted,
        refused_by_client: if total > 0 {
            vec![("203.0.113.9".into(), total - 1), ("192.0.2.7".into(), 1)]
        } else {
            Vec::new()
        },
        refused,
        connections_refused: turned_away,
        by_key: Vec::new(),
    }
}

#[test]
fn refusals_count_as_recent_for_a_minute_of_samples() {
    let mut app = fixture();
    assert_eq!(app.refused_last_minute(), 0);
    app.update(Action::Ingest(ingest(0, &[], 0)));
    app.update(Action::Ingest(ingest(5, &[("stale_timestamp", 4)], 0)));
    assert_eq!(app.refused_last_minute(), 4);
    // A sample a second: 59 more quiet seconds keep them in the minute...
    for _ in 0..59 {
        app.update(Action::Ingest(ingest(5, &[("stale_timestamp", 4)], 0)));
    }
    assert_eq!(app.refused_last_minute(), 4);
    // ...the 60th lets them go, while the totals stay on show.
    app.update(Action::Ingest(ingest(5, &[("stale_timestamp", 4)], 0)));
    assert_eq!(app.refused_last_minute(), 0);
    assert_eq!(app.ingest.refused_total(), 4);
    let screen = draw(&mut app, 120, 40);
    assert!(
        screen.contains(
            "gateway 5 accepted · 4 refused · from 203.0.113.9 3, 1 other · stale_timestamp 4"
        ),
        "{screen}"
    );
    assert!(!screen.contains("last min"), "{screen}");
}

#[test]
fn the_gateway_line_counts_each_producer_key_when_there_are_several() {
    let mut app = fixture();
    let key = |id: &str, accepted| vigil::sources::gateway::KeyCount {
        id: id.into(),
        accepted,
        last_used: None,
    };
    let mut counts = ingest(5, &[], 0);
    counts.by_key = vec![key("default", 5), key("k2025", 0)];
    app.update(Action::Ingest(counts.clone()));
    let screen = draw(&mut app, 120, 40);
    assert!(
        screen.contains("gateway 5 accepted · 0 refused · keys default 5, k2025 0"),
        "{screen}"
    );
    // With one key there is nothing to tell apart.
    counts.by_key.truncate(1);
    app.update(Action::Ingest(counts));
    let screen = draw(&mut app, 120, 40);
    assert!(!screen.contains("· keys"), "{screen}");
}

#[test]
fn a_syslog_sender_gone_silent_is_named_in_the_sources_line() {
    let mut app = fixture();
    let mut status = sources(0, 0);
    status.syslog_senders = 12;
    status.syslog_silent = vec![
        ("192.0.2.9".into(), t(-600)),
        ("198.51.100.3".into(), t(-300)),
        ("203.0.113.1".into(), t(-60)),
    ];
    app.update(Action::Sources(status));
    let screen = draw(&mut app, 220, 40);
    assert!(
        screen.contains("syslog 100 received, 3 silent, from 12 senders"),
        "{screen}"
    );
    // The two silent longest are named.
    assert!(
        screen.contains(
            "192.0.2.9 silent since 20:16:40 · 198.51.100.3 silent since 20:21:40 · syslog on"
        ),
        "{screen}"
    );
}
