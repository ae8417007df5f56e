//! Drives the console: starts the engine and gateway in this process, owns
//! the terminal, turns keys, mouse, engine traffic and the clock into
//! [`Action`]s, renders at a capped rate, and carries out [`Effect`]s.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use chrono::Utc;
use crossterm::event::{self, Event as TermEvent, KeyEventKind, MouseEventKind};
use crossterm::{execute, terminal};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

use super::app::{Action, App, Effect, Health, Label, Session};
use crate::config::Config;
use crate::engine::{AdminRequest, EngineHandle, FeedReceiver, LiveConfig};

/// Frames per second at most; a key press is answered at once regardless.
const MAX_FPS: u64 = 30;
/// Feed messages taken per frame, so a flood cannot starve the keyboard.
const FEED_PER_FRAME: usize = 50_000;
/// Alerts loaded from the store at start and after the feed lost updates.
const ALERTS_LOADED: u32 = 100_000;

/// How the console was asked to start.
#[derive(Clone, Debug, Default)]
pub struct ConsoleOptions {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub config: Option<PathBuf>,
    /// Syslog listeners, followed files, the journal: run beside the
    /// gateway, their figures in the overview.
    pub sources: crate::live::SourceOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Live(#[from] crate::live::LiveError),
    #[error("no data directory: pass --data-dir (the platform has no data dir)")]
    NoDataDir,
    #[error("shared secret file {path}")]
    Secret {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate a secret: {0}")]
    Random(String),
    #[error("terminal: {0}")]
    Terminal(std::io::Error),
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("the engine thread panicked")]
    EnginePanicked,
}

/// Where the console keeps its data when not told.
pub fn default_data_dir() -> Option<PathBuf> {
    dirs::data_dir().map(|d| d.join("vigil"))
}

/// The shared secret: from the config/env if set, else from `dir/secret`,
/// else a new random one written there with mode 0600. The second value is
/// true when it was just created (the console shows it once).
pub fn load_or_create_secret(dir: &Path) -> Result<(String, bool), ConsoleError> {
    let path = dir.join("secret");
    let err = |source| ConsoleError::Secret {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok((s.trim().to_string(), false)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    std::fs::create_dir_all(dir).map_err(err)?;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| ConsoleError::Random(e.to_string()))?;
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&path).map_err(err)?;
    f.write_all(secret.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    Ok((secret, true))
}

fn local_user() -> String {
    ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown-user".into())
}

/// While the console owns the terminal, anything written to stderr (an
/// audit-write failure, a source that stopped) would scribble over the
/// screen: it goes to `DATA_DIR/console.log` instead, and stderr is put back
/// when the console ends.
struct StderrToFile {
    #[cfg(unix)]
    saved: Option<i32>,
}

impl StderrToFile {
    fn redirect(path: &Path) -> StderrToFile {
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            let Ok(file) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            else {
                return StderrToFile { saved: None };
            };
            // SAFETY: dup/dup2 on valid descriptors; the file's descriptor
            // stays open (dup2 copies it) until `file` drops.
            let saved = unsafe { libc::dup(2) };
            if saved < 0 || unsafe { libc::dup2(file.as_raw_fd(), 2) } < 0 {
                return StderrToFile { saved: None };
            }
            StderrToFile { saved: Some(saved) }
        }
        #[cfg(not(unix))]
        {
            let _ = path;
            StderrToFile {}
        }
    }
}

impl Drop for StderrToFile {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(fd) = self.saved.take() {
            // SAFETY: `fd` came from dup(2) above and is closed once.
            unsafe {
                libc::dup2(fd, 2);
                libc::close(fd);
            }
        }
    }
}

/// Restores the terminal however the console ends (error or panic).
struct TerminalGuard;

impl TerminalGuard {
    fn enter() -> Result<TerminalGuard, ConsoleError> {
        terminal::enable_raw_mode().map_err(ConsoleError::Terminal)?;
        let guard = TerminalGuard;
        execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            event::EnableMouseCapture,
            event::EnableBracketedPaste
        )
        .map_err(ConsoleError::Terminal)?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = execute!(
            std::io::stdout(),
            event::DisableBracketedPaste,
            event::DisableMouseCapture,
            terminal::LeaveAlternateScreen
        );
        let _ = terminal::disable_raw_mode();
    }
}

/// Runs the console until the analyst quits.
pub fn run(opts: ConsoleOptions) -> Result<(), ConsoleError> {
    let mut cfg = Config::load(opts.config.as_deref())?;
    opts.sources.apply_to(&mut cfg);
    let data_dir = match opts.data_dir {
        Some(d) => d,
        None => default_data_dir().ok_or(ConsoleError::NoDataDir)?,
    };
    let mut first_run_hint = None;
    if cfg
        .gateway
        .shared_secret
        .as_deref()
        .is_none_or(str::is_empty)
    {
        let (secret, created) = load_or_create_secret(&data_dir)?;
        if created {
            first_run_hint = Some(format!(
                "First run: a shared secret was generated and saved (mode 0600) in {}: {secret}  \
                 Producers sign each POST /ingest body with HMAC-SHA256 of this secret, sent as \
                 X-ARES-SIGNATURE: sha256=<hex>. This is the only time it is shown here.",
                data_dir.join("secret").display()
            ));
        }
        cfg.gateway.shared_secret = Some(secret);
    }
    let listen = opts.listen.unwrap_or_else(|| cfg.gateway.listen.clone());
    let (feed_tx, feed_rx) = crate::engine::feed(16_384);
    let live = crate::live::start(
        &cfg,
        &data_dir,
        LiveConfig {
            feed: Some(feed_tx),
            ..LiveConfig::default()
        },
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(crate::live::worker_threads())
        .enable_all()
        .build()
        .map_err(ConsoleError::Runtime)?;
    let listener = runtime.block_on(crate::live::bind(&listen))?;
    let sources = crate::live::Sources::start(&cfg, &opts.sources, &live.engine, runtime.handle())
        .map_err(crate::live::LiveError::from)?;
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or(listen);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(crate::live::serve_gateway(
        listener,
        live.gateway.clone(),
        async move {
            let _ = stop_rx.await;
        },
    ));
    let session = Session {
        listen: addr,
        data_dir: data_dir.display().to_string(),
        user: local_user(),
        first_run_hint,
    };
    let engine = live.engine.clone();
    let dark = cfg.console.theme == crate::config::ThemeName::Dark;
    // SIGTERM or SIGHUP (the terminal went away) end the console like `q`:
    // the screen is restored and the engine drains and commits.
    let stop_requested = Arc::new(AtomicBool::new(false));
    runtime.spawn(watch_signals(stop_requested.clone()));
    let result = ui_loop(
        session,
        dark,
        &runtime,
        (engine, live.gateway.clone(), &sources),
        feed_rx,
        &live.db,
        &stop_requested,
    );
    // Stop the gateway and the sources, let the engine drain and commit,
    // then exit.
    let _ = stop_tx.send(());
    let _ = runtime.block_on(server);
    for line in sources.stop() {
        tracing::info!("{line}");
    }
    drop(live.gateway);
    drop(live.engine);
    runtime.shutdown_timeout(Duration::from_secs(5));
    if live.engine_thread.join().is_err() {
        return Err(ConsoleError::EnginePanicked);
    }
    result
}

fn ui_loop(
    session: Session,
    dark: bool,
    runtime: &tokio::runtime::Runtime,
    (engine, gateway, sources): (
        EngineHandle,
        Arc<crate::sources::gateway::GatewayState>,
        &crate::live::Sources,
    ),
    mut feed: FeedReceiver,
    db: &Path,
    stop_requested: &AtomicBool,
) -> Result<(), ConsoleError> {
    let mut app = App::new(session, Utc::now());
    app.dark = dark;
    app.scenarios = super::demo::scenarios(Path::new("demo"));
    // Readers open their own connection; WAL lets them run beside the writer.
    let reader = crate::store::open(db).ok();
    if let Some(conn) = &reader {
        load_from_store(&mut app, conn);
    }
    let _stderr = StderrToFile::redirect(&Path::new(&app.session.data_dir).join("console.log"));
    let guard = TerminalGuard::enter()?;
    let mut terminal =
        Terminal::new(CrosstermBackend::new(std::io::stdout())).map_err(ConsoleError::Terminal)?;
    terminal.clear().map_err(ConsoleError::Terminal)?;
    if let Ok(size) = terminal.size() {
        app.update(Action::Resize {
            width: size.width,
            height: size.height,
        });
    }
    let (done_tx, done_rx) = mpsc::sync_channel::<Action>(1024);
    let input = spawn_input_reader()?;
    let frame = Duration::from_millis(1000 / MAX_FPS);
    let mut last_draw = Instant::now() - frame;
    let mut last_snapshot = Instant::now() - Duration::from_secs(1);
    let mut dirty = true;
    let mut answers: Vec<Duration> = Vec::new();
    loop {
        if stop_requested.load(Ordering::Relaxed) {
            break;
        }
        // Engine traffic, bounded per frame.
        let mut n = 0;
        while n < FEED_PER_FRAME {
            match feed.rx.try_recv() {
                Ok(f) => {
                    app.update(Action::Feed(f));
                    n += 1;
                }
                Err(_) => break,
            }
        }
        dirty |= n > 0;
        let dropped = (
            feed.dropped_events.load(Ordering::Relaxed),
            feed.dropped_alerts.load(Ordering::Relaxed),
        );
        if dropped != (app.dropped_events, app.dropped_alerts) {
            let effects = app.update(Action::FeedDropped {
                events: dropped.0,
                alerts: dropped.1,
            });
            if run_effects(
                effects,
                &mut app,
                runtime,
                &engine,
                reader.as_ref(),
                &done_tx,
            ) {
                break;
            }
        }
        while let Ok(a) = done_rx.try_recv() {
            app.update(a);
            dirty = true;
        }
        if last_snapshot.elapsed() >= Duration::from_secs(1) {
            last_snapshot = Instant::now();
            let health = Health {
                store: engine.store_problem(),
                audit: gateway.audit_outage(),
                retention: engine.store_retention(),
            };
            if health != app.health {
                app.update(Action::Health(health));
            }
            app.update(Action::Ingest(gateway.stats.counts()));
            app.update(Action::Sources(sources.status()));
            let engine = engine.clone();
            let tx = done_tx.clone();
            runtime.spawn(async move {
                if let Ok(s) = engine.snapshot().await {
                    let _ = tx.try_send(Action::Snapshot(s));
                }
            });
            app.update(Action::Tick(Utc::now()));
            dirty = true;
        }
        if dirty && last_draw.elapsed() >= frame {
            app.update(Action::Tick(Utc::now()));
            terminal
                .draw(|f| super::view::render(f, &app))
                .map_err(ConsoleError::Terminal)?;
            last_draw = Instant::now();
            dirty = false;
        }
        // Wait for input until the next frame is due; idle, a frame at most
        // (the feed and the clock want a look), never a tight loop.
        let wait = if dirty {
            frame.saturating_sub(last_draw.elapsed())
        } else {
            frame
        }
        .max(Duration::from_millis(1));
        let first = match input.recv_timeout(wait) {
            Ok(ev) => Some(ev),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            // The reader stopped: the terminal is gone.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        if let Some((input_at, first)) = first {
            let mut quit = false;
            // Everything already typed, before drawing again.
            let typed = std::iter::once(first).chain(input.try_iter().map(|(_, ev)| ev));
            for ev in typed {
                if let Some(action) = term_action(&app, ev) {
                    let effects = app.update(action);
                    quit |= run_effects(
                        effects,
                        &mut app,
                        runtime,
                        &engine,
                        reader.as_ref(),
                        &done_tx,
                    );
                }
                if quit {
                    break;
                }
            }
            if quit || app.should_quit {
                break;
            }
            // Answer the key now, not at the next frame.
            app.update(Action::Tick(Utc::now()));
            terminal
                .draw(|f| super::view::render(f, &app))
                .map_err(ConsoleError::Terminal)?;
            last_draw = Instant::now();
            if answers.len() < 100_000 {
                answers.push(last_draw - input_at);
            }
            dirty = false;
        }
    }
    drop(terminal);
    drop(guard);
    drop(_stderr);
    if let Some(summary) = answer_summary(&mut answers) {
        eprintln!("vigil: {summary}");
    }
    Ok(())
}

/// How fast input was answered: from the console reading it off the
/// terminal to the frame showing its effect written back.
fn answer_summary(answers: &mut [Duration]) -> Option<String> {
    if answers.is_empty() {
        return None;
    }
    answers.sort_unstable();
    let at = |q: f64| answers[((answers.len() - 1) as f64 * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Some(format!(
        "{} inputs answered in: median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        answers.len(),
        ms(at(0.5)),
        ms(at(0.99)),
        ms(answers[answers.len() - 1])
    ))
}

/// Reads terminal input on its own thread. crossterm 0.29 spins inside
/// `poll`/`read` once the terminal has gone away (crossterm-rs/crossterm#793),
/// so the UI thread never calls them: it waits on this channel with a
/// timeout, keeps its clock, and notices a dead terminal when a draw fails
/// or this reader stops.
fn spawn_input_reader() -> Result<mpsc::Receiver<(Instant, TermEvent)>, ConsoleError> {
    let (tx, rx) = mpsc::sync_channel::<(Instant, TermEvent)>(256);
    std::thread::Builder::new()
        .name("vigil-input".into())
        .spawn(move || {
            while let Ok(ev) = event::read() {
                // Stamped when read, so the console's own latency figure
                // includes the wait for the UI thread.
                if tx.send((Instant::now(), ev)).is_err() {
                    break;
                }
            }
        })
        .map_err(ConsoleError::Terminal)?;
    Ok(rx)
}

async fn watch_signals(flag: Arc<AtomicBool>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {},
            _ = hup.recv() => {},
        }
        flag.store(true, Ordering::Relaxed);
    }
    #[cfg(not(unix))]
    let _ = flag;
}

fn load_from_store(app: &mut App, conn: &rusqlite::Connection) {
    if let Ok(alerts) = crate::store::recent_alerts(conn, ALERTS_LOADED) {
        app.update(Action::LoadAlerts(alerts));
    }
    if let Ok(rows) = crate::store::feedback(conn, 10_000) {
        let labels = rows
            .into_iter()
            .filter(|r| {
                matches!(
                    r.verdict,
                    crate::detect::AlertStatus::TruePositive
                        | crate::detect::AlertStatus::FalsePositive
                )
            })
            .map(|r| Label {
                alert_id: r.alert_id,
                rule_id: r.rule_id.unwrap_or_default(),
                verdict: r.verdict,
                note: r.note,
                by: r.by,
                at: r.at,
            })
            .collect();
        app.update(Action::LoadLabels(labels));
    }
}

fn term_action(app: &App, ev: TermEvent) -> Option<Action> {
    match ev {
        TermEvent::Key(k) if k.kind != KeyEventKind::Release => super::keymap::map_key(app, k),
        TermEvent::Mouse(m) => match m.kind {
            MouseEventKind::ScrollDown => Some(Action::Down),
            MouseEventKind::ScrollUp => Some(Action::Up),
            MouseEventKind::Down(_) => Some(Action::Click {
                column: m.column,
                row: m.row,
            }),
            _ => None,
        },
        // Pasted text is typed into what is open; it never runs as keys.
        TermEvent::Paste(text) => Some(Action::Paste(text)),
        TermEvent::Resize(w, h) => Some(Action::Resize {
            width: w,
            height: h,
        }),
        _ => None,
    }
}

/// Carries out effects; true when the console should quit.
fn run_effects(
    effects: Vec<Effect>,
    app: &mut App,
    runtime: &tokio::runtime::Runtime,
    engine: &EngineHandle,
    reader: Option<&rusqlite::Connection>,
    done: &mpsc::SyncSender<Action>,
) -> bool {
    let mut quit = false;
    for e in effects {
        match e {
            Effect::Quit => quit = true,
            Effect::ReloadAlerts => {
                if let Some(conn) = reader
                    && let Ok(alerts) = crate::store::recent_alerts(conn, ALERTS_LOADED)
                {
                    app.update(Action::LoadAlerts(alerts));
                }
            }
            Effect::LoadEvidence { ids, from, to } => {
                if let Some(conn) = reader
                    && let Ok(events) = crate::store::events_in_range(conn, &ids, from, to)
                {
                    app.update(Action::EvidenceLoaded(events));
                }
            }
            Effect::Admin { what, request } => {
                let engine = engine.clone();
                let tx = done.clone();
                runtime.spawn(async move {
                    let label = match &request {
                        AdminRequest::Label {
                            alert_id,
                            verdict,
                            note,
                            ..
                        } => Some((alert_id.clone(), *verdict, note.clone())),
                        _ => None,
                    };
                    use crate::engine::AdminOutcome;
                    let (result, not_stored) = match engine.admin(request).await {
                        Ok(AdminOutcome::Done(_)) => (Ok(()), false),
                        // In force: shown as done, then the warning.
                        Ok(AdminOutcome::NotStored(_)) => (Ok(()), true),
                        Ok(AdminOutcome::Refused(e)) => (Err(e), false),
                        Err(_) => (Err("the engine has stopped".to_string()), false),
                    };
                    let action = match (label, result) {
                        (Some((alert_id, verdict, note)), Ok(())) => Action::Labelled {
                            alert_id,
                            verdict,
                            note,
                        },
                        (_, result) => Action::AdminDone {
                            what: what.clone(),
                            result,
                        },
                    };
                    let _ = tx.send(action);
                    if not_stored {
                        let _ = tx.send(Action::AdminDone {
                            what,
                            result: Err("in force, but not stored yet: the store is failing; \
                                         written once it recovers, lost if vigil stops first"
                                .into()),
                        });
                    }
                });
            }
        }
    }
    quit
}
