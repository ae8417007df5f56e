//! What keys, prompts, the command palette and mouse clicks do to the
//! [`App`].

use super::*;

impl App {
    // -- helpers ------------------------------------------------------------

    pub(super) fn say(&mut self, ok: bool, msg: &str) {
        self.status = Some((ok, msg.to_string()));
    }

    pub(super) fn page(&self) -> usize {
        (self.size.1 as usize).saturating_sub(12).max(1)
    }

    pub(super) fn move_sel(&mut self, delta: i64) {
        let (sel, len) = match self.pane {
            Pane::Overview => (&mut self.event_sel, self.events.len()),
            Pane::Alerts => (&mut self.alert_sel, self.alert_view.len()),
            Pane::Hosts => {
                let rows = self.host_rows().len() + self.ban_rows().len();
                (&mut self.host_sel, rows)
            }
            Pane::Feedback => (&mut self.label_sel, self.labels.len()),
            Pane::Demo => (&mut self.demo_sel, self.scenarios.len()),
        };
        let max = len.saturating_sub(1) as i64;
        *sel = (*sel as i64).saturating_add(delta).clamp(0, max) as usize;
    }

    pub(super) fn clamp_selections(&mut self) {
        self.alert_sel = self.alert_sel.min(self.alert_view.len().saturating_sub(1));
        let hosts = self.host_rows().len() + self.ban_rows().len();
        self.host_sel = self.host_sel.min(hosts.saturating_sub(1));
    }

    /// The host under the cursor in the hosts pane, if it is quarantined.
    pub fn selected_host(&self) -> Option<String> {
        if self.pane != Pane::Hosts {
            return None;
        }
        let rows = self.host_rows();
        rows.get(self.host_sel)
            .filter(|(_, st)| st.quarantine.is_some())
            .map(|(h, _)| h.clone())
    }

    /// The ban under the cursor (bans are listed after the hosts).
    pub fn selected_ban(&self) -> Option<IpAddr> {
        if self.pane != Pane::Hosts {
            return None;
        }
        let hosts = self.host_rows().len();
        self.host_sel
            .checked_sub(hosts)
            .and_then(|i| self.ban_rows().get(i).map(|b| b.ip))
    }

    /// Alerts an action applies to: the multi-selection, else the cursor.
    pub(super) fn targets(&self) -> Vec<String> {
        if self.selected.is_empty() {
            self.current_alert()
                .map(|a| vec![a.alert_id.clone()])
                .unwrap_or_default()
        } else {
            let mut v: Vec<String> = self.selected.iter().cloned().collect();
            v.sort();
            v
        }
    }

    pub(super) fn label_effect(&mut self, id: &str, verdict: AlertStatus, note: String) -> Effect {
        Effect::Admin {
            what: format!("mark {id} {}", verdict.as_str().replace('_', " ")),
            request: AdminRequest::Label {
                alert_id: id.to_string(),
                verdict,
                note: note.clone(),
                by: self.session.user.clone(),
            },
        }
    }

    /// Applies a label locally once the engine has stored it.
    pub fn record_label(&mut self, id: &str, verdict: AlertStatus, note: String) {
        let rule = self
            .alert(id)
            .map(|a| a.rule_id.clone())
            .unwrap_or_default();
        if let Some(&i) = self.alert_index.get(id) {
            self.alerts[i].status = verdict;
            self.view_dirty = true;
        }
        if verdict != AlertStatus::Acknowledged {
            self.labels.insert(
                0,
                Label {
                    alert_id: id.to_string(),
                    rule_id: rule,
                    verdict,
                    note,
                    by: self.session.user.clone(),
                    at: self.now,
                },
            );
        }
        self.selected.remove(id);
    }

    pub(super) fn open_editor(&mut self, verdict: AlertStatus) {
        let alerts = self.targets();
        if alerts.is_empty() {
            self.say(false, "no alert selected");
        } else {
            self.editor = tui_textarea::TextArea::default();
            self.editor
                .set_placeholder_text("Why? (optional) — what you checked, what you found");
            self.mode = Mode::Editor { alerts, verdict };
        }
    }

    pub(super) fn confirm(&mut self, action: Pending) {
        self.mode = Mode::Confirm {
            action,
            reason: String::new(),
        };
    }

    pub(super) fn escape(&mut self) {
        match self.mode {
            Mode::Normal => {
                if self.event_detail.is_some() {
                    self.event_detail = None;
                } else if self.detail.is_some() {
                    self.detail = None;
                } else if !self.selected.is_empty() {
                    self.selected.clear();
                } else if !self.pane_filter().is_empty() {
                    self.set_pane_filter(String::new());
                }
            }
            // Esc in the quit question means "stay".
            Mode::ConfirmQuit => self.mode = Mode::Normal,
            _ => self.mode = Mode::Normal,
        }
    }

    pub(super) fn input(&mut self, c: Option<char>) {
        let buf = match &mut self.mode {
            Mode::Palette(s) | Mode::Filter(s) => s,
            Mode::Confirm { reason, .. } => reason,
            _ => return,
        };
        match c {
            Some(c) if !c.is_control() && buf.len() < MAX_INPUT => buf.push(c),
            Some(_) => {}
            None => {
                buf.pop();
            }
        }
        if let Mode::Filter(s) = &self.mode {
            // Applied as it is typed.
            let s = s.clone();
            self.set_pane_filter(s);
        }
    }

    pub(super) fn enter(&mut self) -> Vec<Effect> {
        match std::mem::replace(&mut self.mode, Mode::Normal) {
            Mode::Normal => {
                if self.pane == Pane::Overview {
                    let picked = self
                        .visible_events()
                        .nth(self.event_sel)
                        .map(|e| Box::new(e.clone()));
                    self.event_detail = picked;
                    return Vec::new();
                }
                if self.pane != Pane::Alerts {
                    return Vec::new();
                }
                let Some(a) = self.current_alert() else {
                    return Vec::new();
                };
                let effect = Effect::LoadEvidence {
                    ids: a.evidence.clone(),
                    from: a.first_seen_utc,
                    to: a.last_seen_utc,
                };
                self.detail = Some(a.alert_id.clone());
                self.evidence.clear();
                vec![effect]
            }
            Mode::Filter(s) => {
                self.set_pane_filter(s);
                Vec::new()
            }
            Mode::Palette(cmd) => self.run_command(&cmd),
            Mode::Confirm { action, reason } => {
                if reason.trim().is_empty() {
                    self.say(false, "a reason is required");
                    self.mode = Mode::Confirm { action, reason };
                    return Vec::new();
                }
                vec![self.admin_effect(action, reason.trim().to_string())]
            }
            Mode::ConfirmQuit => {
                self.should_quit = true;
                vec![Effect::Quit]
            }
            m @ (Mode::Help | Mode::Editor { .. }) => {
                self.mode = m;
                Vec::new()
            }
        }
    }

    fn admin_effect(&self, action: Pending, reason: String) -> Effect {
        let by = self.session.user.clone();
        let what = action.describe();
        let request = match action {
            Pending::Release { host } => AdminRequest::Release { host, reason, by },
            Pending::Unban { ip } => AdminRequest::Unban { ip, reason, by },
            Pending::Ban { ip, alert_id } => AdminRequest::Ban {
                ip,
                reason,
                by,
                alert_id,
            },
            Pending::Quarantine { host, alert_id } => AdminRequest::Quarantine {
                host,
                reason,
                by,
                alert_id,
            },
        };
        Effect::Admin { what, request }
    }

    /// `:release HOST`, `:unban IP`, `:ban IP`, `:quarantine HOST`,
    /// `:filter TEXT`, `:theme`, `:quit`.
    fn run_command(&mut self, cmd: &str) -> Vec<Effect> {
        let mut words = cmd.split_whitespace();
        let verb = words.next().unwrap_or("");
        let rest: Vec<&str> = words.collect();
        match (verb, rest.as_slice()) {
            ("q" | "quit", []) => {
                self.should_quit = true;
                vec![Effect::Quit]
            }
            ("release", [host]) => {
                self.confirm(Pending::Release {
                    host: host.to_string(),
                });
                Vec::new()
            }
            ("unban", [ip]) => match ip.parse() {
                Ok(ip) => {
                    self.confirm(Pending::Unban { ip });
                    Vec::new()
                }
                Err(_) => {
                    self.say(false, &format!("not an IP address: {}", clean_arg(ip)));
                    Vec::new()
                }
            },
            ("ban", [ip]) => match ip.parse() {
                Ok(ip) => {
                    self.confirm(Pending::Ban { ip, alert_id: None });
                    Vec::new()
                }
                Err(_) => {
                    self.say(false, &format!("not an IP address: {}", clean_arg(ip)));
                    Vec::new()
                }
            },
            ("quarantine", [host]) => {
                self.confirm(Pending::Quarantine {
                    host: host.to_string(),
                    alert_id: None,
                });
                Vec::new()
            }
            ("filter", words) => {
                self.filter = words.join(" ");
                self.pane = Pane::Overview;
                Vec::new()
            }
            ("theme", []) => {
                self.dark = !self.dark;
                Vec::new()
            }
            ("", []) => Vec::new(),
            _ => {
                self.say(
                    false,
                    &format!(
                        "unknown command: {} (try :release HOST, :unban IP, :ban IP, :quarantine HOST, :filter TEXT, :theme, :quit)",
                        crate::util::sanitize_for_terminal(cmd)
                    ),
                );
                Vec::new()
            }
        }
    }

    /// Click-to-focus: a tab in the first row, or a row of the list.
    pub(super) fn click(&mut self, column: u16, row: u16) {
        if row == 0 {
            if let Some(p) = crate::tui::view::tab_at(self.size.0, column) {
                self.pane = p;
                self.detail = None;
            }
            return;
        }
        if let Some(i) = crate::tui::view::row_to_index(self, row) {
            match self.pane {
                Pane::Alerts => self.alert_sel = i,
                Pane::Hosts => self.host_sel = i,
                Pane::Feedback => self.label_sel = i,
                _ => {}
            }
        }
    }
}

/// A palette argument as it may be shown back (typed text is bounded and
/// free of control characters already; this keeps messages short).
fn clean_arg(s: &str) -> String {
    crate::tui::view::fit(&crate::util::sanitize_for_terminal(s), 64)
}
