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
    #[error("binding {addr} (is another Vigil or service on it? choose another with --listen)")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
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
    let audit = AuditLog::open(&audit_path).map_err(|source| LiveError::Audit {
        path: audit_path.clone(),
        source,
    })?;
    let gateway = Arc::new(GatewayState {
        secret: secret.into_bytes(),
        producer_keys: cfg
            .gateway
            .producer_keys
            .iter()
            .map(|(id, k)| (id.clone(), k.clone().into_bytes()))
            .collect(),
        admin_token: cfg
            .gateway
            .admin_token
            .clone()
            .filter(|t| !t.is_empty())
            .map(String::into_bytes),
        replay_window_secs: cfg.gateway.replay_window_secs as i64,
        engine: engine.clone(),
        audit: Mutex::new(audit),
        stats: Arc::default(),
    });
    Ok(Live {
        engine,
        engine_thread,
        gateway,
        db,
        audit_path,
    })
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

/// Serves the gateway on `listener` until `shutdown` completes.
pub async fn serve_gateway(
    listener: tokio::net::TcpListener,
    state: Arc<GatewayState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app =
        crate::sources::gateway::router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
