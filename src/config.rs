//! Typed configuration: defaults < TOML file < environment. The MiniSIEM
//! seed's variable names are honoured so its deployments keep working.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::detect::RuleConfig;
use crate::respond::policy::PolicyConfig;

/// Largest configuration file accepted.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub rules: RuleConfig,
    pub policy: PolicyConfig,
    pub store: StoreConfig,
    /// Field mapping for JSON logs that are not `sec.event.v1`.
    pub json: crate::parse::json::JsonMapping,
    pub gateway: GatewayConfig,
    pub syslog: SyslogConfig,
    pub console: ConsoleConfig,
}

/// Colours of the console.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThemeName {
    #[default]
    Dark,
    Light,
}

/// The console (`vigil`, `vigil console`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// `dark` or `light` (switch at run time with `:theme`).
    pub theme: ThemeName,
}

/// The HTTP gateway (`vigil serve`). The shared secret normally comes from
/// the environment (`ARES_SHARED_SECRET`); it is never printed.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    pub listen: String,
    pub replay_window_secs: u32,
    pub rate_limit_per_min: u32,
    #[serde(skip_serializing)]
    pub shared_secret: Option<String>,
    /// Bearer token for the admin routes (release, unban); none = disabled.
    #[serde(skip_serializing)]
    pub admin_token: Option<String>,
    /// Bearer token the read routes (`/alerts/recent`, `/hosts/{host}/state`,
    /// `/api/v1/decisions`) then require (the admin token works too); none
    /// = open to anyone who reaches the gateway, as in the seed.
    #[serde(skip_serializing)]
    pub read_token: Option<String>,
    /// SQLite file (default: `vigil.db` in the data directory).
    pub sqlite_path: Option<std::path::PathBuf>,
    /// Extra producer keys, key id → secret, chosen by the `X-ARES-KEY-ID`
    /// header so a secret can be rotated without downtime. Requests without
    /// that header use `shared_secret` (the seed's behaviour).
    #[serde(skip_serializing)]
    pub producer_keys: std::collections::BTreeMap<String, String>,
    /// Connections open at once; more are answered 503 and closed, so a
    /// flood of idle sockets cannot use up the process's file descriptors.
    pub max_connections: u32,
    /// Connections open at once from one address.
    pub max_connections_per_ip: u32,
    /// Seconds a client has to send a request's headers, and the longest a
    /// kept-alive connection may sit idle between requests.
    pub header_timeout_secs: u32,
    /// Seconds a client has to send a request's body once its headers are
    /// in (408 beyond).
    pub body_timeout_secs: u32,
    /// The audit log moves to a fresh file (the old one renamed
    /// `audit-<n>-<UTC time>.jsonl`, the chain running on) before it would
    /// pass this many MiB.
    pub audit_max_mib: u32,
    /// Rotated audit files kept; the oldest beyond this are deleted. 0
    /// keeps them all.
    pub audit_keep: u32,
    /// Refusals per minute written to the audit log one record each, from
    /// all clients together; past it they are counted into one summary
    /// record a minute (see [`crate::sources::refusals`]). 0: no cap.
    pub audit_refusals_per_minute: u32,
    /// The same, from one client (an IPv4 address or an IPv6 /64).
    pub audit_refusals_per_client_per_minute: u32,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: "127.0.0.1:8000".into(),
            replay_window_secs: 120,
            rate_limit_per_min: 300,
            shared_secret: None,
            admin_token: None,
            read_token: None,
            sqlite_path: None,
            producer_keys: Default::default(),
            max_connections: 1024,
            max_connections_per_ip: 256,
            header_timeout_secs: 30,
            body_timeout_secs: 30,
            audit_max_mib: 256,
            audit_keep: 20,
            audit_refusals_per_minute: 1200,
            audit_refusals_per_client_per_minute: 120,
        }
    }
}

impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("listen", &self.listen)
            .field("replay_window_secs", &self.replay_window_secs)
            .field("rate_limit_per_min", &self.rate_limit_per_min)
            .field(
                "shared_secret",
                &self.shared_secret.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "read_token",
                &self.read_token.as_ref().map(|_| "<redacted>"),
            )
            .field("sqlite_path", &self.sqlite_path)
            .field(
                "producer_keys",
                &self.producer_keys.keys().collect::<Vec<_>>(),
            )
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("header_timeout_secs", &self.header_timeout_secs)
            .field("body_timeout_secs", &self.body_timeout_secs)
            .field("audit_max_mib", &self.audit_max_mib)
            .field("audit_keep", &self.audit_keep)
            .field("audit_refusals_per_minute", &self.audit_refusals_per_minute)
            .field(
                "audit_refusals_per_client_per_minute",
                &self.audit_refusals_per_client_per_minute,
            )
            .finish()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// The events table keeps at most this many rows.
    pub max_events: u64,
    /// The alerts table keeps at most the newest this many alerts.
    pub max_alerts: u64,
    /// Events older than this many days (event time) and alerts last seen
    /// longer ago are deleted; 0 keeps them whatever their age.
    pub max_age_days: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            max_events: crate::store::Retention::default().max_events,
            max_alerts: crate::store::Retention::default().max_alerts,
            max_age_days: 0,
        }
    }
}

impl StoreConfig {
    /// The store writer's retention from these settings.
    pub fn retention(&self) -> crate::store::Retention {
        crate::store::Retention {
            max_events: self.max_events,
            max_alerts: self.max_alerts,
            max_age: (self.max_age_days > 0)
                .then(|| std::time::Duration::from_secs(u64::from(self.max_age_days) * 86_400)),
            ..crate::store::Retention::default()
        }
    }
}

/// Syslog listeners of `vigil serve` and the console; both off unless an
/// address is given.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyslogConfig {
    /// UDP address, e.g. `127.0.0.1:5514`.
    pub udp: Option<String>,
    /// TCP address (RFC 6587 octet counting or newline framing).
    pub tcp: Option<String>,
    /// Largest message accepted, in bytes.
    pub max_message_bytes: usize,
    /// Open TCP connections from one address (1..=1024).
    pub max_connections_per_ip: usize,
    /// Seconds without a whole message after which a TCP connection may be
    /// closed to make room for a new one that found no place (1..=86400).
    /// Idle connections are otherwise kept.
    pub idle_evict_secs: u64,
    /// Addresses or networks (`10.0.0.0/8`, `2001:db8::/32`) the listeners
    /// take messages from; empty takes any (see
    /// [`crate::sources::senders`]).
    pub allowed_senders: Vec<String>,
    /// Receive buffer asked for the UDP socket, in bytes (4096..=1 GiB):
    /// what a burst can queue while the engine catches up. The system may
    /// give less (Linux: `net.core.rmem_max`); datagrams that find it full
    /// are dropped by the kernel, and counted.
    pub udp_receive_buffer_bytes: usize,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        SyslogConfig {
            udp: None,
            tcp: None,
            max_message_bytes: crate::sources::syslog::DEFAULT_MAX_MESSAGE_BYTES,
            max_connections_per_ip: crate::sources::syslog::DEFAULT_MAX_CONNECTIONS_PER_IP,
            idle_evict_secs: crate::sources::syslog::DEFAULT_IDLE_EVICT_SECS,
            allowed_senders: Vec::new(),
            udp_receive_buffer_bytes: crate::sources::syslog::DEFAULT_UDP_RECEIVE_BUFFER,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config {path} is larger than {MAX_CONFIG_BYTES} bytes")]
    TooLarge { path: String },
    #[error("config {path}: {message}")]
    Toml { path: String, message: String },
    #[error("environment variable {name}={value:?}: {problem}")]
    Env {
        name: &'static str,
        value: String,
        problem: String,
    },
    #[error(transparent)]
    Rules(#[from] crate::detect::RuleConfigError),
    #[error(
        "producer key id {id:?}: ids are 1-64 characters of A-Z a-z 0-9 . _ - (not \"default\", which names the shared secret) and the secret must not be empty"
    )]
    ProducerKey { id: String },
    #[error("syslog.max_message_bytes must be 480..=1048576, got {0}")]
    SyslogMessageSize(usize),
    #[error("syslog.max_connections_per_ip must be 1..=1024, got {0}")]
    SyslogConnections(usize),
    #[error("syslog.idle_evict_secs must be 1..=86400, got {0}")]
    SyslogIdleEvict(u64),
    #[error("syslog.udp_receive_buffer_bytes must be 4096..=1073741824, got {0}")]
    SyslogReceiveBuffer(usize),
    #[error("syslog.allowed_senders: {0}")]
    SyslogSender(#[from] crate::sources::senders::NetError),
    #[error("policy.analyst_ban_secs must be at least 1")]
    AnalystBan,
    #[error("store.max_alerts must be at least 1 (0 would delete every alert)")]
    MaxAlerts,
    #[error("store.max_age_days must be 0 (no age bound) to 36500, got {0}")]
    MaxAge(u32),
    #[error("gateway.{name} must be {range}, got {value}")]
    GatewayLimit {
        name: &'static str,
        range: &'static str,
        value: u32,
    },
}

/// Environment variables read, and where each lands.
const ENV_VARS: &[(&str, &str)] = &[
    ("SEC_COOLDOWN_SECONDS", "policy.cooldown_secs"),
    ("VIGIL_COOLDOWN_SECONDS", "policy.cooldown_secs"),
    ("SEC_SEVERITY_FLOOR", "policy.severity_floor"),
    ("VIGIL_SEVERITY_FLOOR", "policy.severity_floor"),
    ("SEC_ALERT_DEDUP_SECONDS", "rules.dedup_secs"),
    ("VIGIL_ALERT_DEDUP_SECONDS", "rules.dedup_secs"),
    ("VIGIL_BAN_SECONDS", "policy.ban_secs"),
    ("SEC_REPLAY_WINDOW_SECONDS", "gateway.replay_window_secs"),
    ("VIGIL_REPLAY_WINDOW_SECONDS", "gateway.replay_window_secs"),
    ("SEC_RATE_LIMIT_PER_MIN", "gateway.rate_limit_per_min"),
    ("VIGIL_RATE_LIMIT_PER_MIN", "gateway.rate_limit_per_min"),
];

impl Config {
    /// Loads defaults, then `path` (if any), then the process environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut cfg = match path {
            Some(p) => Self::from_file(p)?,
            None => Config::default(),
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge { path: shown });
        }
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| ConfigError::Toml {
            path: shown,
            message,
        })
    }

    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Applies overrides from an environment lookup (injectable for tests).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        for name in ["ARES_SHARED_SECRET", "VIGIL_SHARED_SECRET"] {
            if let Some(v) = get(name).filter(|v| !v.is_empty()) {
                self.gateway.shared_secret = Some(v);
            }
        }
        if let Some(v) = get("VIGIL_ADMIN_TOKEN").filter(|v| !v.is_empty()) {
            self.gateway.admin_token = Some(v);
        }
        if let Some(v) = get("VIGIL_READ_TOKEN").filter(|v| !v.is_empty()) {
            self.gateway.read_token = Some(v);
        }
        if let Some(v) = get("VIGIL_PRODUCER_KEYS").filter(|v| !v.is_empty()) {
            // `id:secret,id2:secret2`; the value is never echoed in errors.
            for pair in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (id, secret) = pair.split_once(':').ok_or_else(|| ConfigError::Env {
                    name: "VIGIL_PRODUCER_KEYS",
                    value: "<redacted>".into(),
                    problem: "expected id:secret pairs separated by commas".into(),
                })?;
                self.gateway
                    .producer_keys
                    .insert(id.trim().to_string(), secret.to_string());
            }
        }
        if let Some(v) = get("SEC_SQLITE_PATH").filter(|v| !v.is_empty()) {
            self.gateway.sqlite_path = Some(v.into());
        }
        for (name, target) in ENV_VARS {
            let Some(value) = get(name) else { continue };
            let bad = |problem: &str| ConfigError::Env {
                name,
                value: value.clone(),
                problem: problem.into(),
            };
            let n: u64 = value
                .trim()
                .parse()
                .map_err(|_| bad("not a whole number"))?;
            match *target {
                "policy.cooldown_secs" => {
                    self.policy.cooldown_secs = u32::try_from(n).map_err(|_| bad("too large"))?
                }
                "policy.severity_floor" => {
                    self.policy.severity_floor = u8::try_from(n)
                        .ok()
                        .filter(|v| *v <= 10)
                        .ok_or_else(|| bad("must be 0–10"))?
                }
                "rules.dedup_secs" => {
                    self.rules.dedup_secs = u32::try_from(n).map_err(|_| bad("too large"))?
                }
                "policy.ban_secs" => {
                    self.policy.ban_secs = u32::try_from(n).map_err(|_| bad("too large"))?
                }
                "gateway.replay_window_secs" => {
                    self.gateway.replay_window_secs =
                        u32::try_from(n).map_err(|_| bad("too large"))?
                }
                "gateway.rate_limit_per_min" => {
                    self.gateway.rate_limit_per_min =
                        u32::try_from(n).map_err(|_| bad("too large"))?
                }
                _ => {}
            }
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.rules.validate()?;
        // RFC 3164 asks for at least 480 octets; more than 1 MiB per message
        // is a memory lever for a sender, not a log line.
        if !(480..=1 << 20).contains(&self.syslog.max_message_bytes) {
            return Err(ConfigError::SyslogMessageSize(
                self.syslog.max_message_bytes,
            ));
        }
        let per_ip = self.syslog.max_connections_per_ip;
        if !(1..=crate::sources::syslog::MAX_TCP_CONNECTIONS).contains(&per_ip) {
            return Err(ConfigError::SyslogConnections(per_ip));
        }
        if !(1..=86_400).contains(&self.syslog.idle_evict_secs) {
            return Err(ConfigError::SyslogIdleEvict(self.syslog.idle_evict_secs));
        }
        if !(4096..=1 << 30).contains(&self.syslog.udp_receive_buffer_bytes) {
            return Err(ConfigError::SyslogReceiveBuffer(
                self.syslog.udp_receive_buffer_bytes,
            ));
        }
        crate::sources::senders::Senders::parse(&self.syslog.allowed_senders)?;
        if self.policy.analyst_ban_secs == 0 {
            return Err(ConfigError::AnalystBan);
        }
        if self.store.max_alerts == 0 {
            return Err(ConfigError::MaxAlerts);
        }
        if self.store.max_age_days > 36_500 {
            return Err(ConfigError::MaxAge(self.store.max_age_days));
        }
        let g = &self.gateway;
        for (name, value, range, ok) in [
            (
                "max_connections",
                g.max_connections,
                "1..=65536",
                (1..=65_536).contains(&g.max_connections),
            ),
            (
                "max_connections_per_ip",
                g.max_connections_per_ip,
                "1..=max_connections",
                (1..=g.max_connections).contains(&g.max_connections_per_ip),
            ),
            (
                "header_timeout_secs",
                g.header_timeout_secs,
                "1..=3600",
                (1..=3600).contains(&g.header_timeout_secs),
            ),
            (
                "body_timeout_secs",
                g.body_timeout_secs,
                "1..=3600",
                (1..=3600).contains(&g.body_timeout_secs),
            ),
            (
                "audit_max_mib",
                g.audit_max_mib,
                "1..=1048576",
                (1..=1 << 20).contains(&g.audit_max_mib),
            ),
        ] {
            if !ok {
                return Err(ConfigError::GatewayLimit { name, range, value });
            }
        }
        for (id, secret) in &self.gateway.producer_keys {
            let id_ok = (1..=64).contains(&id.len())
                && id != "default"
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !id_ok || secret.is_empty() {
                return Err(ConfigError::ProducerKey {
                    id: crate::util::sanitize_for_terminal(id)
                        .chars()
                        .take(64)
                        .collect(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_overrides_defaults_and_env_overrides_toml() {
        let mut c =
            Config::from_toml("[rules]\nbrute_force_threshold = 3\n[policy]\ncooldown_secs = 5\n")
                .unwrap();
        assert_eq!(c.rules.brute_force_threshold, 3);
        assert_eq!(c.rules.spray_window_secs, 120);
        c.apply_env(|k| (k == "SEC_COOLDOWN_SECONDS").then(|| "10".to_string()))
            .unwrap();
        assert_eq!(c.policy.cooldown_secs, 10);
    }

    #[test]
    fn unknown_keys_and_bad_env_are_errors_that_name_them() {
        let e = Config::from_toml("[rules]\nbrute_force_treshold = 3\n").unwrap_err();
        assert!(e.contains("brute_force_treshold"), "{e}");
        let mut c = Config::default();
        let e = c
            .apply_env(|k| (k == "SEC_SEVERITY_FLOOR").then(|| "eleven".to_string()))
            .unwrap_err();
        assert!(e.to_string().contains("SEC_SEVERITY_FLOOR"), "{e}");
    }

    #[test]
    fn audit_rotation_size_and_alert_retention_are_checked() {
        let mut c = Config::default();
        for bad in [0, (1 << 20) + 1] {
            c.gateway.audit_max_mib = bad;
            let e = c.validate().unwrap_err().to_string();
            assert_eq!(
                e,
                format!("gateway.audit_max_mib must be 1..=1048576, got {bad}")
            );
        }
        c.gateway.audit_max_mib = 1;
        c.gateway.audit_keep = 0;
        assert!(c.validate().is_ok());
        c.store.max_alerts = 0;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("store.max_alerts")
        );
        c.store.max_alerts = 1;
        assert!(c.validate().is_ok());
        let c = Config::from_toml("[gateway]\naudit_max_mib = 64\naudit_keep = 3\n").unwrap();
        assert_eq!((c.gateway.audit_max_mib, c.gateway.audit_keep), (64, 3));
    }

    #[test]
    fn syslog_connection_limit_is_checked() {
        let mut c = Config::default();
        assert_eq!(c.syslog.max_connections_per_ip, 64);
        for bad in [0, 1025] {
            c.syslog.max_connections_per_ip = bad;
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("syslog.max_connections_per_ip"), "{e}");
        }
        c.syslog.max_connections_per_ip = 1024;
        assert!(c.validate().is_ok());
        assert_eq!(c.syslog.idle_evict_secs, 30);
        for bad in [0, 86_401] {
            c.syslog.idle_evict_secs = bad;
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("syslog.idle_evict_secs"), "{e}");
        }
        c.syslog.idle_evict_secs = 86_400;
        assert!(c.validate().is_ok());
        assert_eq!(c.syslog.udp_receive_buffer_bytes, 8 << 20);
        for bad in [0, 4095, (1 << 30) + 1] {
            c.syslog.udp_receive_buffer_bytes = bad;
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("syslog.udp_receive_buffer_bytes"), "{e}");
        }
        c.syslog.udp_receive_buffer_bytes = 4096;
        assert!(c.validate().is_ok());
    }

    #[test]
    fn the_age_bound_is_off_by_default_and_checked() {
        assert_eq!(Config::default().store.retention().max_age, None);
        let c = Config::from_toml("[store]\nmax_age_days = 90\n").unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.store.retention().max_age,
            Some(std::time::Duration::from_secs(90 * 86_400))
        );
        assert_eq!(c.store.retention().max_events, 2_000_000);
        let e = Config::from_toml("[store]\nmax_age_days = 40000\n")
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("store.max_age_days"), "{e}");
    }

    #[test]
    fn the_read_token_comes_from_env_and_is_never_printed() {
        let mut c = Config::default();
        c.apply_env(|k| (k == "VIGIL_READ_TOKEN").then(|| "r3ad-s3cr3t".to_string()))
            .unwrap();
        assert_eq!(c.gateway.read_token.as_deref(), Some("r3ad-s3cr3t"));
        let shown = format!("{c:?}");
        assert!(
            shown.contains("read_token: Some(\"<redacted>\")") && !shown.contains("s3cr3t"),
            "{shown}"
        );
        // An empty value sets nothing (the routes stay open).
        let mut c = Config::default();
        c.apply_env(|k| (k == "VIGIL_READ_TOKEN").then(String::new))
            .unwrap();
        assert_eq!(c.gateway.read_token, None);
    }

    #[test]
    fn producer_keys_come_from_env_are_validated_and_never_printed() {
        let mut c = Config::default();
        c.apply_env(|k| {
            (k == "VIGIL_PRODUCER_KEYS").then(|| "k2026:n3w-s3cr3t, k2025:0ld-s3cr3t".to_string())
        })
        .unwrap();
        assert_eq!(c.gateway.producer_keys.len(), 2);
        assert_eq!(c.gateway.producer_keys["k2026"], "n3w-s3cr3t");
        c.validate().unwrap();
        let shown = format!("{c:?}");
        assert!(
            shown.contains("k2026") && !shown.contains("s3cr3t"),
            "{shown}"
        );

        let e = Config::default()
            .apply_env(|k| (k == "VIGIL_PRODUCER_KEYS").then(|| "no-colon-s3cr3t".to_string()))
            .unwrap_err();
        assert!(!e.to_string().contains("s3cr3t"), "{e}");

        let mut c = Config::default();
        c.gateway.producer_keys.insert("bad id".into(), "x".into());
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.gateway.producer_keys.insert("k1".into(), String::new());
        assert!(c.validate().is_err());
    }

    #[test]
    fn analyst_ban_duration_is_configurable_and_not_zero() {
        let c = Config::from_toml("[policy]\nanalyst_ban_secs = 600\n").unwrap();
        assert_eq!(c.policy.analyst_ban_secs, 600);
        let zero = Config::from_toml("[policy]\nanalyst_ban_secs = 0\n").unwrap();
        assert!(matches!(zero.validate(), Err(ConfigError::AnalystBan)));
    }

    #[test]
    fn console_theme_is_dark_or_light() {
        let c = Config::from_toml("[console]\ntheme = \"light\"\n").unwrap();
        assert_eq!(c.console.theme, ThemeName::Light);
        assert!(Config::from_toml("[console]\ntheme = \"blue\"\n").is_err());
    }

    #[test]
    fn shipped_config_documents_the_defaults() {
        let shipped = Config::from_toml(include_str!("../assets/vigil.toml")).unwrap();
        assert_eq!(shipped, Config::default());
    }

    #[test]
    fn secret_comes_from_seed_env_and_is_never_printed() {
        let mut c = Config::default();
        c.apply_env(|k| (k == "ARES_SHARED_SECRET").then(|| "s3cr3t".to_string()))
            .unwrap();
        assert_eq!(c.gateway.shared_secret.as_deref(), Some("s3cr3t"));
        assert!(!format!("{c:?}").contains("s3cr3t"));
        assert!(
            !serde_json::to_string(&c)
                .unwrap_or_default()
                .contains("s3cr3t")
        );
    }

    #[test]
    fn zero_threshold_is_rejected() {
        let c = Config::from_toml("[rules]\nbrute_force_threshold = 0\n").unwrap();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("brute_force_threshold")
        );
    }
}
