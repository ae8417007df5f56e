//! The live stack both `vigil serve` and the console run: the engine (its
//! state behind a lock, driven by the gateway and sources) with the store
//! writer behind it, and the signed HTTP gateway in front.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::config::Config;
use crate::engine::{EngineHandle, LiveConfig, spawn_live};
use crate::sources::gateway::GatewayState;
use crate::store::StoreError;
use crate::store::audit_log::AuditLog;

/// Why the live stack could not start.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error(
        "no shared secret configured: set ARES_SHARED_SECRET (or [gateway] shared_secret in the config). \
         The gateway never runs without authentication."
    )]
    NoSecret,
    #[error("creating {path}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("opening store {path}")]
    Store { path: PathBuf, source: StoreError },
    #[error("opening audit log {path}")]
    Audit {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("binding {addr}{}", bind_hint(.source))]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// What to do about a listener that could not bind, where it is clear.
fn bind_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            " (is another Vigil or service on it? choose another with --listen)"
        }
        std::io::ErrorKind::PermissionDenied => {
            " (ports below 1024 need privileges; choose another with --listen)"
        }
        std::io::ErrorKind::AddrNotAvailable => " (no interface here has that address)",
        _ => "",
    }
}

/// Why a log source could not start.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("binding syslog {proto} {addr}")]
    SyslogBind {
        proto: &'static str,
        addr: String,
        source: std::io::Error,
    },
    #[error("[syslog] allowed_senders: {0}")]
    Senders(#[from] crate::sources::senders::NetError),
    #[error("starting a file follower")]
    Tail(#[source] std::io::Error),
    #[error(transparent)]
    Journal(#[from] crate::sources::journald::JournalError),
}

/// The log sources besides the gateway, from the command line: syslog
/// listeners (over `[syslog] udp` / `tcp`), files to follow, the systemd
/// journal.
#[derive(Clone, Debug, Default)]
pub struct SourceOptions {
    pub syslog_udp: Option<String>,
    pub syslog_tcp: Option<String>,
    pub tail: Vec<PathBuf>,
    /// Read followed files from their start instead of their end (or where
    /// the last run stopped).
    pub from_start: bool,
    pub journald: bool,
}

impl SourceOptions {
    /// The syslog addresses given on the command line replace the config's.
    pub fn apply_to(&self, cfg: &mut Config) {
        if let Some(a) = &self.syslog_udp {
            cfg.syslog.udp = Some(a.clone());
        }
        if let Some(a) = &self.syslog_tcp {
            cfg.syslog.tcp = Some(a.clone());
        }
    }
}

/// The sources' figures, taken once a second for the console.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceStatus {
    /// How many files are followed.
    pub files: usize,
    pub file_lines: u64,
    pub file_unparsed: u64,
    /// Followed files that cannot be read now, and why (path as shown).
    pub unreadable: Vec<(String, String)>,
    /// The syslog listeners, `udp 127.0.0.1:5514`.
    pub syslog: Vec<String>,
    pub syslog_received: u64,
    pub syslog_unparsed: u64,
    /// Over the size limit, or connections turned away.
    pub syslog_dropped: u64,
    /// UDP datagrams the kernel dropped: the receive buffer was full.
    pub syslog_lost: u64,
    /// Datagrams and connections from senders not in `allowed_senders`.
    pub syslog_refused_senders: u64,
    /// Senders heard from since start.
    pub syslog_senders: usize,
    /// Senders that stopped sending (see [`crate::sources::activity`]),
    /// longest silent first: address and last message.
    pub syslog_silent: Vec<(String, chrono::DateTime<chrono::Utc>)>,
    /// Journal entries read, when the journal is followed.
    pub journal_entries: Option<u64>,
    /// The newest line any of them could not parse.
    pub last_unparsed: Option<crate::sources::unparsed::Unparsed>,
}

impl SourceStatus {
    /// True when no source besides the gateway runs.
    pub fn is_empty(&self) -> bool {
        self.files == 0 && self.syslog.is_empty() && self.journal_entries.is_none()
    }
}

/// Lines the followed files and the journal did not understand, a minute
/// at a time (see [`Sources::unparsed_minutes`]).
pub struct UnparsedMinutes {
    tail: Arc<crate::sources::tail::TailStats>,
    journal: Arc<crate::sources::journald::JournalStats>,
    /// The counts at the last report.
    before: (u64, u64),
}

impl UnparsedMinutes {
    /// A line for each that did not understand some since the last call.
    pub fn report(&mut self) -> Vec<String> {
        use std::sync::atomic::Ordering::Relaxed;
        let now = (
            self.tail.unparsed.load(Relaxed),
            self.journal.unparsed.load(Relaxed),
        );
        let lines = [
            self.tail.last_unparsed.minute_line(
                "files",
                ["line", "lines"],
                now.0.saturating_sub(self.before.0),
            ),
            self.journal.last_unparsed.minute_line(
                "journal",
                ["entry", "entries"],
                now.1.saturating_sub(self.before.1),
            ),
        ];
        self.before = now;
        lines.into_iter().flatten().collect()
    }
}

/// Running sources, each feeding the engine through its own handle. The
/// engine stops only once every handle is gone: [`Sources::stop`] ends the
/// file followers, the journal and the syslog listeners; syslog TCP
/// connections already open end with the runtime.
pub struct Sources {
    tail_stats: Arc<crate::sources::tail::TailStats>,
    tail_stop: Arc<std::sync::atomic::AtomicBool>,
    tail_threads: Vec<std::thread::JoinHandle<()>>,
    journal: Option<crate::sources::journald::Journal>,
    journal_stats: Arc<crate::sources::journald::JournalStats>,
    syslog_stats: Arc<crate::sources::syslog::SyslogStats>,
    syslog_tasks: Vec<tokio::task::JoinHandle<()>>,
    syslog: Vec<String>,
    /// The UDP listener's kernel drop counter, where it can be read.
    udp_drops: Option<crate::sources::syslog::UdpDrops>,
}

impl Sources {
    /// Starts what `opts` and `cfg.syslog` ask for on `runtime`, logging
    /// each. Call it outside the runtime (it waits for the syslog sockets
    /// to bind). On an error, whatever had started is stopped again.
    pub fn start(
        cfg: &Config,
        opts: &SourceOptions,
        engine: &EngineHandle,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Sources, SourceError> {
        let mut sources = Sources {
            tail_stats: Arc::default(),
            tail_stop: Arc::default(),
            tail_threads: Vec::new(),
            journal: None,
            journal_stats: Arc::default(),
            syslog_stats: Arc::default(),
            syslog_tasks: Vec::new(),
            syslog: Vec::new(),
            udp_drops: None,
        };
        match sources.start_all(cfg, opts, engine, runtime) {
            Ok(()) => Ok(sources),
            Err(e) => {
                sources.stop();
                Err(e)
            }
        }
    }

    fn start_all(
        &mut self,
        cfg: &Config,
        opts: &SourceOptions,
        engine: &EngineHandle,
        runtime: &tokio::runtime::Handle,
    ) -> Result<(), SourceError> {
        use crate::sources::{journald, senders, syslog, tail};
        use crate::util::sanitize_for_terminal;
        for path in &opts.tail {
            let t = tail::Tailer::new(
                path,
                crate::parse::SourceKind::Auto,
                opts.from_start,
                engine.clone(),
                runtime.clone(),
                self.tail_stats.clone(),
            );
            let waiting = t.problem().is_some();
            self.tail_threads
                .push(tail::spawn(t, self.tail_stop.clone()).map_err(SourceError::Tail)?);
            tracing::info!(
                "following {}{}",
                sanitize_for_terminal(&path.display().to_string()),
                if waiting {
                    " once it can be read"
                } else if opts.from_start {
                    " from its start"
                } else {
                    ""
                }
            );
        }
        if opts.journald {
            self.journal = Some(journald::Journal::start(
                "journalctl",
                engine.clone(),
                runtime.clone(),
                self.journal_stats.clone(),
            )?);
            tracing::info!("following the systemd journal");
        }
        let max = cfg.syslog.max_message_bytes;
        let allowed = Arc::new(senders::Senders::parse(&cfg.syslog.allowed_senders)?);
        if let Some(addr) = &cfg.syslog.udp {
            let socket = self.bind_syslog(
                runtime,
                ("udp", addr),
                &allowed,
                tokio::net::UdpSocket::bind(addr),
                tokio::net::UdpSocket::local_addr,
            )?;
            self.udp_drops = syslog::prepare_udp(&socket, cfg.syslog.udp_receive_buffer_bytes);
            if let Some(d) = &self.udp_drops {
                self.syslog_tasks
                    .push(runtime.spawn(syslog::watch_udp_drops(
                        d.clone(),
                        self.syslog_stats.clone(),
                    )));
            }
            self.syslog_tasks.push(runtime.spawn(syslog::run_udp(
                socket,
                engine.clone(),
                max,
                allowed.clone(),
                self.syslog_stats.clone(),
            )));
        }
        if let Some(addr) = &cfg.syslog.tcp {
            let listener = self.bind_syslog(
                runtime,
                ("tcp", addr),
                &allowed,
                tokio::net::TcpListener::bind(addr),
                tokio::net::TcpListener::local_addr,
            )?;
            self.syslog_tasks.push(runtime.spawn(syslog::run_tcp(
                listener,
                engine.clone(),
                syslog::TcpLimits {
                    max_message_bytes: max,
                    max_per_ip: cfg.syslog.max_connections_per_ip,
                    idle_evict: std::time::Duration::from_secs(cfg.syslog.idle_evict_secs),
                },
                allowed,
                self.syslog_stats.clone(),
            )));
        }
        Ok(())
    }

    /// Binds a syslog listener (`bind`, waited for on `runtime`), says
    /// where it listens and warns when anyone on the network may send.
    fn bind_syslog<T>(
        &mut self,
        runtime: &tokio::runtime::Handle,
        (proto, addr): (&'static str, &str),
        allowed: &crate::sources::senders::Senders,
        bind: impl std::future::Future<Output = std::io::Result<T>>,
        local_addr: fn(&T) -> std::io::Result<SocketAddr>,
    ) -> Result<T, SourceError> {
        let bound = runtime
            .block_on(bind)
            .and_then(|b| local_addr(&b).map(|local| (b, local)));
        let (b, local) = bound.map_err(|source| SourceError::SyslogBind {
            proto,
            addr: addr.to_string(),
            source,
        })?;
        tracing::info!("syslog {proto} on {local}");
        warn_if_open(proto, local, allowed);
        self.syslog.push(format!("{proto} {local}"));
        Ok(b)
    }

    /// The followed files' and the journal's part of `vigil serve`'s minute
    /// report (the syslog listeners report on their own).
    pub fn unparsed_minutes(&self) -> UnparsedMinutes {
        use std::sync::atomic::Ordering::Relaxed;
        UnparsedMinutes {
            before: (
                self.tail_stats.unparsed.load(Relaxed),
                self.journal_stats.unparsed.load(Relaxed),
            ),
            tail: self.tail_stats.clone(),
            journal: self.journal_stats.clone(),
        }
    }

    /// The syslog listeners' counters (for `vigil serve`'s minute report).
    pub fn syslog_stats(&self) -> Arc<crate::sources::syslog::SyslogStats> {
        self.syslog_stats.clone()
    }

    /// The figures now.
    pub fn status(&self) -> SourceStatus {
        use std::sync::atomic::Ordering::Relaxed;
        let (t, s) = (&self.tail_stats, &self.syslog_stats);
        // One look at the senders for both figures.
        let (syslog_senders, syslog_silent) = s
            .activity
            .lock()
            .map(|a| {
                let silent = a
                    .silent(chrono::Utc::now())
                    .into_iter()
                    .map(|x| (x.ip.to_string(), x.since))
                    .collect();
                (a.senders(), silent)
            })
            .unwrap_or_default();
        SourceStatus {
            files: self.tail_threads.len(),
            file_lines: t.lines.load(Relaxed),
            file_unparsed: t.unparsed.load(Relaxed),
            unreadable: t.unreadable(),
            syslog: self.syslog.clone(),
            syslog_received: s.received.load(Relaxed),
            syslog_unparsed: s.unparsed.load(Relaxed),
            syslog_dropped: s.malformed.load(Relaxed) + s.refused_connections.load(Relaxed),
            syslog_refused_senders: s.refused_senders.load(Relaxed),
            syslog_lost: s.kernel_drops.load(Relaxed),
            syslog_senders,
            syslog_silent,
            journal_entries: self
                .journal
                .as_ref()
                .map(|_| self.journal_stats.entries.load(Relaxed)),
            last_unparsed: crate::sources::unparsed::newest([
                t.last_unparsed.get(),
                s.last_unparsed.get(),
                self.journal_stats.last_unparsed.get(),
            ]),
        }
    }

    /// Stops every source and returns a summary line for each kind that
    /// ran. Lines already handed to the engine are committed.
    pub fn stop(self) -> Vec<String> {
        let mut summaries = Vec::new();
        for task in &self.syslog_tasks {
            task.abort();
        }
        // Messages already handed to the engine are committed (it runs
        // until every handle is gone); their answers are counted before the
        // summary, so it adds up (a few seconds at most: a store failing
        // meanwhile would keep them waiting).
        let answered_by = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while self
            .syslog_stats
            .answering
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
            && std::time::Instant::now() < answered_by
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // The last count, for the summary.
        if let Some(n) = self.udp_drops.as_ref().and_then(|d| d.read()) {
            self.syslog_stats
                .kernel_drops
                .store(n, std::sync::atomic::Ordering::Relaxed);
        }
        if !self.syslog.is_empty() {
            summaries.push(self.syslog_stats.summary());
        }
        if let Some(j) = self.journal {
            j.stop();
            summaries.push(self.journal_stats.summary());
        }
        self.tail_stop
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let files = self.tail_threads.len();
        for t in self.tail_threads {
            let _ = t.join();
        }
        if files > 0 {
            summaries.push(self.tail_stats.summary());
        }
        summaries
    }
}

/// Writes the accept records a crash kept out of the audit log (see
/// [`crate::sources::gateway::recover_accept_records`]) before the gateway
/// takes requests; says what it did. A failure is said, not fatal: the
/// gateway still comes up.
fn recover_accept_records(db: &Path, audit: &mut AuditLog, audit_path: &Path) {
    use crate::sources::gateway::RECOVERED;
    let outcome = crate::store::open(db)
        .map_err(crate::sources::gateway::RecoverError::Store)
        .and_then(|conn| {
            crate::sources::gateway::recover_accept_records(
                &conn,
                audit,
                audit_path,
                chrono::Utc::now(),
            )
        });
    let r = match outcome {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("audit log: the check for accept records a crash lost failed: {e}");
            return;
        }
    };
    if r.recovered > 0 {
        tracing::warn!(
            "audit log: {} events the gateway stored had no accept record (vigil stopped \
             between their commit and their record; they were never answered): written now \
             as {} {RECOVERED} record(s)",
            r.recovered,
            r.records
        );
    }
    if r.unchecked > 0 {
        tracing::warn!(
            "audit log: {} of the newest events the gateway stored were received before the \
             oldest record the log still holds (its older files removed, or the log started \
             anew): whether they have accept records is not checked",
            r.unchecked
        );
    }
}

/// Says so when a syslog listener faces the network and takes messages from
/// anyone: forged lines can raise alerts and bans against addresses of the
/// forger's choosing (see `crate::sources::senders`).
fn warn_if_open(proto: &str, local: SocketAddr, senders: &crate::sources::senders::Senders) {
    if senders.any() && !local.ip().is_loopback() {
        tracing::warn!(
            "syslog {proto} on {local} takes messages from any address, and a forged line can \
             raise alerts and bans: list the senders in [syslog] allowed_senders"
        );
    }
}

/// The engine and what the gateway needs, before anything listens.
pub struct Live {
    pub engine: EngineHandle,
    pub engine_thread: std::thread::JoinHandle<()>,
    pub gateway: Arc<GatewayState>,
    pub db: PathBuf,
    pub audit_path: PathBuf,
}

/// Opens the store under `data_dir` (or `[gateway] sqlite_path`), starts
/// the engine on it and prepares the gateway's state. Refuses to start
/// without a shared secret.
pub fn start(cfg: &Config, data_dir: &Path, live: LiveConfig) -> Result<Live, LiveError> {
    let Some(secret) = cfg.gateway.shared_secret.clone().filter(|s| !s.is_empty()) else {
        return Err(LiveError::NoSecret);
    };
    std::fs::create_dir_all(data_dir).map_err(|source| LiveError::DataDir {
        path: data_dir.to_path_buf(),
        source,
    })?;
    let db = cfg
        .gateway
        .sqlite_path
        .clone()
        .unwrap_or_else(|| data_dir.join("vigil.db"));
    let live = LiveConfig {
        rate_limit_per_min: cfg.gateway.rate_limit_per_min,
        ..live
    };
    let (engine, engine_thread) =
        spawn_live(cfg, live, &db).map_err(|source| LiveError::Store {
            path: db.clone(),
            source,
        })?;
    let audit_path = data_dir.join("audit.jsonl");
    let rotation = crate::store::audit_log::Rotation {
        max_bytes: u64::from(cfg.gateway.audit_max_mib) << 20,
        keep: cfg.gateway.audit_keep as usize,
    };
    let mut audit = AuditLog::open_rotating(&audit_path, Some(rotation)).map_err(|source| {
        LiveError::Audit {
            path: audit_path.clone(),
            source,
        }
    })?;
    let (head, records) = audit.head();
    tracing::info!("audit log: {records} records, chain head {head}");
    recover_accept_records(&db, &mut audit, &audit_path);
    // An empty token is no token: the routes it guards stay as without one.
    let token = |t: &Option<String>| {
        t.as_deref()
            .filter(|t| !t.is_empty())
            .map(|t| t.as_bytes().to_vec())
    };
    let gateway = Arc::new(GatewayState {
        secret: secret.into_bytes(),
        producer_keys: cfg
            .gateway
            .producer_keys
            .iter()
            .map(|(id, k)| (id.clone(), k.clone().into_bytes()))
            .collect(),
        admin_token: token(&cfg.gateway.admin_token),
        read_token: token(&cfg.gateway.read_token),
        replay_window_secs: cfg.gateway.replay_window_secs as i64,
        engine: engine.clone(),
        audit: Mutex::new(audit),
        audit_failures: Mutex::default(),
        audit_failing: Default::default(),
        stats: Arc::new(crate::sources::gateway::GatewayStats::with_keys(
            cfg.gateway.producer_keys.keys().cloned(),
        )),
        limits: crate::sources::gateway::ConnectionLimits::from_config(&cfg.gateway),
        refusals: Mutex::new(crate::sources::refusals::RefusalBudget::new(
            cfg.gateway.audit_refusals_per_client_per_minute,
            cfg.gateway.audit_refusals_per_minute,
        )),
    });
    // `/ingest`'s accept records are appended by the store writer, a group
    // commit at a time (held weakly: the gateway holds the engine).
    let sink: std::sync::Weak<dyn crate::store::RecordSink> = Arc::downgrade(&gateway) as _;
    engine.set_record_sink(sink);
    Ok(Live {
        engine,
        engine_thread,
        gateway,
        db,
        audit_path,
    })
}

/// Async worker threads for the gateway and the sources: one per core but
/// one, which is left to the store writer (a blocking thread that is busy
/// most of the time under load: inserts, then waiting on its fsync) and to
/// the blocking pool, where a batch's work over its whole body runs.
///
/// On two cores that is one worker. Against three (one per core and one
/// more, as before), alternating A/B runs (`scripts/gateway-ab.sh`, three
/// rounds each, README "Gateway"): `/ingest` at c16 quiet B/A 1.050–1.071
/// with 0.885–0.906 of the server CPU per event (three workers parked and
/// woke each other on condition variables ~11 % of their samples), under
/// attack 1.018 (CPU 0.917); `/ingest/batch` at par (0.974–0.996). Single events sent beside batches
/// that saturate the machine fall from 555–634 to 443–524 a second (p99
/// 22–26 ms both ways), as the one worker also runs the batches'
/// correlation; running that on the blocking pool too halved them (the
/// worker then waits for the engine's lock). One worker with the whole
/// batch on it lost 9 % on batches. Syslog over UDP at the same offered
/// rate loses fewer datagrams with one worker (at 200 000/s 11–42k of
/// 300 000 against 39–57k).
pub fn worker_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

/// Binds the gateway's listener (inside a tokio runtime).
pub async fn bind(addr: &str) -> Result<tokio::net::TcpListener, LiveError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| LiveError::Bind {
            addr: addr.to_string(),
            source,
        })
}

/// Serves the gateway on `listener` until `shutdown` completes, then lets
/// requests in flight finish (at most [`DRAIN`]).
///
/// Its own accept loop rather than `axum::serve`, for the limits a gateway
/// facing the network needs: at most `max_connections` open (and
/// `max_connections_per_ip` from one address), so idle sockets cannot use
/// up the file descriptors and shut producers out; more are answered 503
/// and closed. Headers must arrive within `header_timeout`, which also
/// closes connections left idle that long (slowloris, forgotten clients).
pub async fn serve_gateway(
    listener: tokio::net::TcpListener,
    state: Arc<GatewayState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use tower_service::Service;
    let limits = state.limits;
    let stats = state.stats.clone();
    let catching_up = tokio::spawn(catch_up_every_second(state.clone()));
    let gateway = state.clone();
    let mut make =
        crate::sources::gateway::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let slots =
        crate::sources::ConnectionSlots::new(limits.max_connections, limits.max_connections_per_ip);
    let (closing, closed) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        let Some(slot) = slots.take(addr.ip()) else {
            stats.connection_refused();
            tracing::debug!(
                "connection from {} turned away: at the connection limit",
                addr.ip()
            );
            refuse_connection(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = match make.call(addr).await {
            Ok(service) => service,
            Err(never) => match never {},
        };
        let mut closed = closed.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(
                    hyper_util::rt::TokioIo::new(stream),
                    hyper_util::service::TowerToHyperService::new(service),
                );
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = async { closed.wait_for(|c| *c).await.is_ok() } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    drop(listener);
    let _ = closing.send(true);
    // Each connection holds a permit until it ends: all back, all done.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(DRAIN, slots.all_closed(all))
        .await
        .is_err()
    {
        tracing::warn!(
            "stopping with connections still open after {} s",
            DRAIN.as_secs()
        );
    }
    // Its engine handle must be gone before the engine can close.
    catching_up.abort();
    let _ = catching_up.await;
    gateway.close_audit();
    Ok(())
}

/// Once a second, retries what failed commits handed back (see
/// [`crate::engine::EngineHandle::catch_up`]), so the store catches up with
/// memory after a failure even when no event or action comes to carry it,
/// and writes audit records held while the audit log refused writes (see
/// [`GatewayState::retry_audit`]), so the gateway takes events again.
async fn catch_up_every_second(gateway: Arc<GatewayState>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if gateway.engine.catch_up().await.is_err() {
            return;
        }
        if gateway.audit_outage().is_some() {
            gateway.retry_audit();
        }
        gateway.flush_refusals(false);
    }
}

/// How long a stop waits for requests in flight.
pub const DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Tells a client over the limits why, if its socket takes the answer at
/// once (never waits on it), and closes.
fn refuse_connection(stream: tokio::net::TcpStream) {
    let _ = stream.try_write(
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
          content-length: 33\r\nconnection: close\r\n\r\n{\"detail\":\"too_many_connections\"}",
    );
}

/// An accept error: a connection that failed before it was accepted is
/// skipped; running out of descriptors or memory is logged and waited out
/// (accepting again at once would spin).
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted
    ) {
        return;
    }
    tracing::warn!("accepting a connection failed: {e}");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
}
