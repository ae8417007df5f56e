//! The alert queue: alerts kept (bounded), the filtered and sorted view,
//! the counts the Overview shows, and labels per rule.

use std::net::IpAddr;

use chrono::{DateTime, Utc};

use super::*;

impl App {
    pub(super) fn upsert_alert(&mut self, a: Alert) {
        match self.alert_index.get(&a.alert_id) {
            Some(&i) => {
                // The console's own verdicts win over an older copy.
                let status = if a.status == AlertStatus::Open {
                    self.alerts[i].status
                } else {
                    a.status
                };
                self.alerts[i] = Alert { status, ..a };
            }
            None => {
                if let Some(ip) = a.src_ip {
                    *self.alerts_by_source.entry(ip).or_default() += 1;
                }
                self.alert_index
                    .insert(a.alert_id.clone(), self.alerts.len());
                self.alerts.push(a);
            }
        }
    }

    /// Keeps memory bounded: beyond [`MAX_ALERTS`], drops the oldest tenth
    /// of the alerts that are not open (open ones are never dropped).
    fn trim_alerts(&mut self) {
        if self.alerts.len() <= MAX_ALERTS {
            return;
        }
        let mut settled: Vec<(DateTime<Utc>, usize)> = self
            .alerts
            .iter()
            .enumerate()
            .filter(|(_, a)| a.status != AlertStatus::Open)
            .map(|(i, a)| (a.last_seen_utc, i))
            .collect();
        let drop_n = (self.alerts.len() - MAX_ALERTS + MAX_ALERTS / 10).min(settled.len());
        if drop_n == 0 {
            return;
        }
        settled.select_nth_unstable(drop_n - 1);
        let gone: HashSet<usize> = settled[..drop_n].iter().map(|&(_, i)| i).collect();
        for &i in &gone {
            if let Some(ip) = self.alerts[i].src_ip
                && let Some(n) = self.alerts_by_source.get_mut(&ip)
            {
                *n -= 1;
                if *n == 0 {
                    self.alerts_by_source.remove(&ip);
                }
            }
        }
        let mut i = 0;
        self.alerts.retain(|_| {
            let keep = !gone.contains(&i);
            i += 1;
            keep
        });
        self.alert_index = self
            .alerts
            .iter()
            .enumerate()
            .map(|(i, a)| (a.alert_id.clone(), i))
            .collect();
    }

    /// Re-filters and re-sorts the alert queue, keeping the selection on
    /// the same alert.
    pub fn refresh_view(&mut self) {
        self.trim_alerts();
        let keep = self.current_alert().map(|a| a.alert_id.clone());
        let text = AlertFilter::parse(&self.alert_filter);
        let mut view: Vec<usize> = (0..self.alerts.len())
            .filter(|&i| {
                let a = &self.alerts[i];
                self.status_filter.is_none_or(|s| a.status == s)
                    && self.rule_filter.as_deref().is_none_or(|r| a.rule_id == r)
                    && (text.is_empty() || text.matches(a))
            })
            .collect();
        // Sort small keys, not the alerts: 100k alerts are ~40 MB of
        // structs, and comparing through indices misses the cache on every
        // step. Ties keep arrival order.
        let alerts = &self.alerts;
        let key = |i: usize| -> (i64, i64) {
            let a = &alerts[i];
            let last = -a.last_seen_utc.timestamp_micros();
            match self.sort {
                SortKey::Severity => (-(a.severity as i64), last),
                SortKey::Risk => (-((a.risk_score.clamp(0.0, 1.0) * 1e6) as i64), last),
                SortKey::Time => (last, 0),
            }
        };
        let mut keyed: Vec<((i64, i64), u32)> = view.iter().map(|&i| (key(i), i as u32)).collect();
        keyed.sort_unstable();
        view.clear();
        view.extend(keyed.into_iter().map(|(_, i)| i as usize));
        self.alert_view = view;
        self.view_dirty = false;
        self.refresh_top_sources();
        self.last_refresh = self.now;
        if let Some(id) = keep
            && let Some(pos) = self
                .alert_view
                .iter()
                .position(|&i| self.alerts[i].alert_id == id)
        {
            self.alert_sel = pos;
        }
        self.clamp_selections();
    }

    pub fn current_alert(&self) -> Option<&Alert> {
        if let Some(id) = &self.detail {
            return self.alert_index.get(id).map(|&i| &self.alerts[i]);
        }
        self.alert_view
            .get(self.alert_sel)
            .map(|&i| &self.alerts[i])
    }

    pub fn alert(&self, id: &str) -> Option<&Alert> {
        self.alert_index.get(id).map(|&i| &self.alerts[i])
    }

    /// Open alerts by severity band: critical (9–10), high (7–8), medium
    /// (4–6), low (0–3).
    pub fn open_by_severity(&self) -> [usize; 4] {
        let mut n = [0; 4];
        for a in self.alerts.iter().filter(|a| a.status == AlertStatus::Open) {
            n[match a.severity {
                9.. => 0,
                7..=8 => 1,
                4..=6 => 2,
                _ => 3,
            }] += 1;
        }
        n
    }

    /// The `n` sources with the most alerts (at most [`TOP_SOURCES`]).
    pub fn top_sources(&self, n: usize) -> &[(IpAddr, u64)] {
        &self.top_cache[..n.min(self.top_cache.len())]
    }

    fn refresh_top_sources(&mut self) {
        let mut v: Vec<(IpAddr, u64)> = self
            .alerts_by_source
            .iter()
            .map(|(ip, c)| (*ip, *c))
            .collect();
        let order = |a: &(IpAddr, u64), b: &(IpAddr, u64)| b.1.cmp(&a.1).then(a.0.cmp(&b.0));
        if v.len() > TOP_SOURCES {
            v.select_nth_unstable_by(TOP_SOURCES, order);
            v.truncate(TOP_SOURCES);
        }
        v.sort_by(order);
        self.top_cache = v;
    }

    /// Labels per rule: (rule, true positives, false positives).
    pub fn label_counts(&self) -> Vec<(String, u64, u64)> {
        let mut m: std::collections::BTreeMap<&str, (u64, u64)> = Default::default();
        for l in &self.labels {
            let e = m.entry(l.rule_id.as_str()).or_default();
            match l.verdict {
                AlertStatus::TruePositive => e.0 += 1,
                AlertStatus::FalsePositive => e.1 += 1,
                _ => {}
            }
        }
        m.into_iter()
            .filter(|(_, (tp, fp))| tp + fp > 0)
            .map(|(r, (tp, fp))| (r.to_string(), tp, fp))
            .collect()
    }
}
