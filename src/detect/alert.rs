//! The alert record (the JSON contract in DESIGN.md) and the rule catalogue:
//! ids, default severity/confidence, MITRE ATT&CK techniques, and the
//! recommended action each rule suggests.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Where an alert is in triage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    #[default]
    Open,
    Acknowledged,
    TruePositive,
    FalsePositive,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Open => "open",
            AlertStatus::Acknowledged => "acknowledged",
            AlertStatus::TruePositive => "true_positive",
            AlertStatus::FalsePositive => "false_positive",
        }
    }

    pub fn from_text(s: &str) -> Option<Self> {
        Some(match s {
            "open" => AlertStatus::Open,
            "acknowledged" => AlertStatus::Acknowledged,
            "true_positive" => AlertStatus::TruePositive,
            "false_positive" => AlertStatus::FalsePositive,
            _ => return None,
        })
    }
}

/// One alert. Field order and names are the contract other tools read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub alert_id: String,
    pub rule_id: String,
    pub host: String,
    pub severity: u8,
    pub confidence: f32,
    pub risk_score: f32,
    pub created_time_utc: DateTime<Utc>,
    pub first_seen_utc: DateTime<Utc>,
    pub last_seen_utc: DateTime<Utc>,
    pub count: u64,
    pub user: Option<String>,
    pub src_ip: Option<IpAddr>,
    pub reasons: Vec<String>,
    pub context: Map<String, Value>,
    pub evidence: Vec<String>,
    pub recommended_action: String,
    pub mitre: Vec<String>,
    pub status: AlertStatus,
}

/// Static facts about a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleInfo {
    pub id: &'static str,
    /// The seed's correlation reason string for this rule.
    pub reason: &'static str,
    pub severity: u8,
    /// Confidence in hundredths (0–100).
    pub confidence_pct: u8,
    pub mitre: &'static [&'static str],
}

impl RuleInfo {
    pub fn confidence(&self) -> f32 {
        self.confidence_pct as f32 / 100.0
    }

    /// Rule-based risk until the ML ensemble scores alerts: severity scaled
    /// to 0–1 and weighted by the rule's confidence.
    pub fn risk_score(&self) -> f32 {
        (self.severity as f32 / 10.0) * self.confidence()
    }
}

pub const BRUTE_FORCE: RuleInfo = RuleInfo {
    id: "BRUTE_FORCE_V1",
    reason: "brute_force_suspected",
    severity: 7,
    confidence_pct: 75,
    mitre: &["T1110.001"],
};
pub const PASSWORD_SPRAY: RuleInfo = RuleInfo {
    id: "PASSWORD_SPRAY_V1",
    reason: "password_spray_suspected",
    severity: 8,
    confidence_pct: 80,
    mitre: &["T1110.003"],
};
pub const SUCCESS_AFTER_FAILURES: RuleInfo = RuleInfo {
    id: "SUCCESS_AFTER_FAILURES_V1",
    reason: "success_after_failures",
    severity: 8,
    confidence_pct: 70,
    mitre: &["T1078"],
};
pub const INGEST_STORM: RuleInfo = RuleInfo {
    id: "INGEST_STORM_V1",
    reason: "ingest_storm",
    severity: 5,
    confidence_pct: 60,
    mitre: &["T1499"],
};

pub const PORT_SCAN: RuleInfo = RuleInfo {
    id: "PORT_SCAN_V1",
    reason: "port_scan_suspected",
    severity: 5,
    confidence_pct: 70,
    mitre: &["T1046"],
};
pub const WEB_SCAN: RuleInfo = RuleInfo {
    id: "WEB_SCAN_V1",
    reason: "web_scan_suspected",
    severity: 5,
    confidence_pct: 70,
    mitre: &["T1595.003"],
};
pub const WEB_ATTACK: RuleInfo = RuleInfo {
    id: "WEB_ATTACK_V1",
    reason: "web_attack_detected",
    severity: 6,
    confidence_pct: 60,
    mitre: &["T1190"],
};
pub const HTTP_AUTH_BRUTE_FORCE: RuleInfo = RuleInfo {
    id: "HTTP_AUTH_BRUTE_FORCE_V1",
    reason: "http_brute_force_suspected",
    severity: 7,
    confidence_pct: 75,
    mitre: &["T1110.001"],
};
pub const SUDO_ABUSE: RuleInfo = RuleInfo {
    id: "SUDO_ABUSE_V1",
    reason: "sudo_abuse_suspected",
    severity: 7,
    confidence_pct: 70,
    mitre: &["T1548.003"],
};
pub const LATERAL_MOVEMENT: RuleInfo = RuleInfo {
    id: "LATERAL_MOVEMENT_V1",
    reason: "lateral_movement_suspected",
    severity: 8,
    confidence_pct: 60,
    mitre: &["T1021.004"],
};

pub const ALL_RULES: [RuleInfo; 10] = [
    BRUTE_FORCE,
    PASSWORD_SPRAY,
    SUCCESS_AFTER_FAILURES,
    INGEST_STORM,
    PORT_SCAN,
    WEB_SCAN,
    WEB_ATTACK,
    HTTP_AUTH_BRUTE_FORCE,
    SUDO_ABUSE,
    LATERAL_MOVEMENT,
];

/// Recommended actions (the vocabulary the response policy acts on).
pub mod recommended {
    pub const BLOCK_IP: &str = "BLOCK_IP";
    pub const INVESTIGATE_ACCOUNT: &str = "INVESTIGATE_ACCOUNT";
    pub const RATE_LIMIT_HOST: &str = "RATE_LIMIT_HOST";
    pub const INVESTIGATE: &str = "INVESTIGATE";
    pub const QUARANTINE_HOST: &str = "QUARANTINE_HOST";
}
