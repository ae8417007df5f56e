//! `PORT_SCAN_V1`: one source touching many distinct destination ports
//! (firewall drops and unlabelled firewall logs; explicit allows do not count),
//! or a scan reported by a scan detector (scanlogd, PortSentry).

use std::net::IpAddr;
use std::sync::Arc;

use serde_json::json;

use super::Firing;
use super::alert::{self, recommended};
use super::rules::{FiringDetail, IsOpen, RuleConfig, ctx_map, to_time};
use super::window::{Micros, Recent, secs};
use crate::event::{Action, Event};
use crate::util::FastMap;

/// Per source address: recent (destination port, id) it was seen on.
#[derive(Debug, Default)]
pub struct PortScanRule {
    sources: FastMap<IpAddr, Recent<(u16, Arc<str>)>>,
}

impl PortScanRule {
    pub fn evict_idle(&mut self, horizon: Micros) {
        self.sources
            .retain(|_, r| r.newest().is_some_and(|t| t >= horizon));
    }

    pub fn tracked(&self) -> usize {
        self.sources.len()
    }

    pub fn observe(
        &mut self,
        cfg: &RuleConfig,
        ev: &Event,
        id: &str,
        now: Micros,
        is_open: IsOpen<'_>,
        out: &mut Vec<Firing>,
    ) {
        let Some(ip) = ev.src_ip else { return };
        let rule = alert::PORT_SCAN;
        if ev.action == Action::PortScanDetected {
            let (dedup_key, open) = is_open(&rule, &ev.host, None, Some(ip));
            let detail = (!open).then(|| FiringDetail {
                first_seen: ev.timestamp_utc,
                evidence: vec![id.to_string()],
                count: 1,
                reasons: vec![format!("{} reported a port scan from {ip}", ev.source)],
                context: ctx_map(json!({ "reported_by": ev.source.as_ref() })),
            });
            out.push(Firing {
                rule,
                dedup_key,
                user: None,
                src_ip: Some(ip),
                recommended_action: recommended::BLOCK_IP,
                detail,
            });
            return;
        }
        if !matches!(ev.action, Action::FirewallBlock | Action::FirewallLog) {
            return;
        }
        let Some(port) = ev.dest_port else { return };
        let cap = (cfg.port_scan_distinct_ports as usize * 4).max(64);
        let r = self.sources.entry(ip).or_insert_with(|| Recent::new(cap));
        r.push(now, (port, Arc::from(id)));
        let w = secs(cfg.port_scan_window_secs);
        let mut ports: Vec<u16> = r.within_latest(now, w).map(|(_, (p, _))| *p).collect();
        ports.sort_unstable();
        ports.dedup();
        if ports.len() >= cfg.port_scan_distinct_ports as usize {
            let (dedup_key, open) = is_open(&rule, &ev.host, None, Some(ip));
            let detail = (!open).then(|| {
                let in_w: Vec<_> = r.within_latest(now, w).collect();
                let shown: Vec<String> = ports.iter().take(20).map(u16::to_string).collect();
                FiringDetail {
                    first_seen: to_time(in_w.first().map_or(now, |x| x.0)),
                    evidence: in_w.iter().map(|x| x.1.1.to_string()).collect(),
                    count: in_w.len() as u64,
                    reasons: vec![format!(
                        "{ip} hit {} distinct destination ports within {} s (threshold {}): {}{}",
                        ports.len(),
                        cfg.port_scan_window_secs,
                        cfg.port_scan_distinct_ports,
                        shown.join(", "),
                        if ports.len() > 20 { ", …" } else { "" }
                    )],
                    context: ctx_map(json!({
                        "distinct_ports": ports.len(), "window_seconds": cfg.port_scan_window_secs,
                        "threshold": cfg.port_scan_distinct_ports,
                    })),
                }
            });
            out.push(Firing {
                rule,
                dedup_key,
                user: None,
                src_ip: Some(ip),
                recommended_action: recommended::BLOCK_IP,
                detail,
            });
        }
    }
}
