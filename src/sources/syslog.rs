//! Syslog listeners for `vigil serve` and the console: UDP (one message per datagram) and
//! TCP with both RFC 6587 framings (octet counting `LEN SP MSG`, and
//! newline-delimited). Off unless an address is configured.
//!
//! Messages go through the same parsers as files (`SourceKind::Auto`), so an
//! sshd line arriving over syslog correlates exactly like the same line in
//! `auth.log`. Each message gets an event id from its listener, peer, a
//! sequence number seeded with the start time and its text, so ids do not
//! collide across restarts. Events are queued to the engine in arrival order
//! per connection; the engine's per-host rate limit and idempotency apply.
//!
//! UDP has no back-pressure: when the engine falls behind, the kernel drops
//! datagrams (counted by the OS, not here). TCP readers wait for the engine.
//!
//! TCP connections are capped (in all and per address). Senders such as
//! rsyslog keep quiet connections open for hours, so an idle connection is
//! not closed for being idle; but when a new connection finds no place,
//! the connection that has gone longest without a whole message (and at
//! least `idle_evict_secs`) is closed to make room for it. Holding places
//! open without sending therefore cannot lock senders out.
//!
//! Here: the counters, the minute report and the hand-over to the engine;
//! `syslog/udp.rs` is the UDP listener, `syslog/tcp.rs` the TCP listener
//! and its framing.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Utc;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

use super::senders::Senders;
use crate::engine::EngineHandle;
use crate::parse::{ParseOptions, Parser, SourceKind};

mod tcp;
mod udp;

pub use tcp::*;
pub use udp::*;

/// Largest message accepted when the config does not say (RFC 5424 asks
/// receivers to take at least 2 KiB; 64 KiB covers any datagram).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Open TCP syslog connections at once; more are closed on accept.
pub const MAX_TCP_CONNECTIONS: usize = 1024;

/// Open TCP syslog connections from one address when the config does not
/// say (a relay needs a few; a flood from one host gets no more).
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 64;

/// Seconds without a whole message after which a TCP connection may be
/// closed to make room for a new one, when the config does not say.
pub const DEFAULT_IDLE_EVICT_SECS: u64 = 30;
/// UDP receive buffer asked for: ~40 000 typical datagrams of a burst.
pub const DEFAULT_UDP_RECEIVE_BUFFER: usize = 8 << 20;

/// What the listeners saw; printed when `vigil serve` stops, shown by the
/// console while it runs.
#[derive(Debug, Default)]
pub struct SyslogStats {
    pub received: AtomicU64,
    pub accepted: AtomicU64,
    /// Refused by the engine (rate limit, duplicate, store failure).
    pub refused: AtomicU64,
    pub unparsed: AtomicU64,
    /// The latest message that did not parse, from whom and why.
    pub last_unparsed: super::unparsed::LastUnparsed,
    /// Who sends, and who stopped.
    pub activity: std::sync::Mutex<super::activity::Activity>,
    /// Over the size limit (truncated for newline framing, skipped for
    /// octet counting).
    pub malformed: AtomicU64,
    /// Read with U+FFFD in place of bytes that are not UTF-8.
    pub not_utf8: AtomicU64,
    /// TCP connections closed on accept: [`MAX_TCP_CONNECTIONS`] were open,
    /// or `max_connections_per_ip` from that address, and none had been
    /// idle long enough to make room.
    pub refused_connections: AtomicU64,
    /// Idle TCP connections closed to make room for a new one.
    pub evicted_connections: AtomicU64,
    /// Datagrams and TCP connections from addresses outside
    /// `allowed_senders`, dropped unread.
    pub refused_senders: AtomicU64,
    /// The latest such address, for the warning `vigil serve` logs.
    pub last_refused_sender: std::sync::Mutex<Option<std::net::IpAddr>>,
    /// Datagrams the kernel dropped because the UDP socket's receive
    /// buffer was full (read by [`UdpDrops`]; Linux only, 0 elsewhere).
    pub kernel_drops: AtomicU64,
    /// Messages received as events whose answer is not counted yet.
    pub answering: AtomicU64,
}

/// What the minute reports of [`SyslogStats::minute_report`] count from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyslogMinute {
    refused_senders: u64,
    kernel_drops: u64,
    unparsed: u64,
}

impl SyslogStats {
    /// Messages (`n` from each of `from`, with repeats) arrived now from
    /// allowed senders.
    fn saw(&self, from: &[IpAddr], n: u64) {
        if from.is_empty() {
            return;
        }
        let now = Utc::now();
        if let Ok(mut a) = self.activity.lock() {
            for ip in from {
                a.saw(*ip, n, now);
            }
        }
    }

    /// Counts a datagram or connection from a sender not allowed.
    fn refuse_sender(&self, ip: std::net::IpAddr) {
        self.refused_senders.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.last_refused_sender.lock() {
            *last = Some(ip);
        }
    }

    /// The counts a minute report starts from.
    pub fn minute_start(&self) -> SyslogMinute {
        SyslogMinute {
            refused_senders: self.refused_senders.load(Ordering::Relaxed),
            kernel_drops: self.kernel_drops.load(Ordering::Relaxed),
            unparsed: self.unparsed.load(Ordering::Relaxed),
        }
    }

    /// The lines `vigil serve` logs for a minute (since `before`) in which
    /// senders not allowed were dropped, the kernel dropped datagrams or
    /// messages were not understood, none for a quiet minute; and the
    /// counts now, for the next call. A sender left off the list, or a
    /// burst lost to a full buffer, otherwise looks like a sender that went
    /// quiet; a device whose format is not read, like one that sends
    /// nothing worth an alert.
    pub fn minute_report(&self, before: SyslogMinute) -> (Vec<String>, SyslogMinute) {
        let now = self.minute_start();
        let mut lines = Vec::new();
        let refused = now.refused_senders.saturating_sub(before.refused_senders);
        if refused > 0 {
            let last = self
                .last_refused_sender
                .lock()
                .ok()
                .and_then(|l| *l)
                .map(|ip| format!(", the latest from {ip}"))
                .unwrap_or_default();
            lines.push(format!(
                "syslog, last minute: {refused} datagrams or connections dropped from senders not in allowed_senders{last}"
            ));
        }
        let dropped = now.kernel_drops.saturating_sub(before.kernel_drops);
        if dropped > 0 {
            lines.push(format!(
                "syslog, last minute: {dropped} UDP datagrams lost: the receive buffer was full \
                 (raise [syslog] udp_receive_buffer_bytes, and net.core.rmem_max on Linux, or send over TCP)"
            ));
        }
        lines.extend(self.last_unparsed.minute_line(
            "syslog",
            ["message", "messages"],
            now.unparsed.saturating_sub(before.unparsed),
        ));
        let changes = self
            .activity
            .lock()
            .map(|mut a| a.changes(Utc::now()))
            .unwrap_or_default();
        for s in changes.silent {
            lines.push(format!(
                "syslog: {} has sent nothing since {} ({} messages before): its forwarder may have \
                 stopped, or its messages no longer reach this listener",
                s.ip,
                s.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                s.messages
            ));
        }
        for ip in changes.back {
            lines.push(format!("syslog: {ip} is sending again"));
        }
        (lines, now)
    }

    pub fn summary(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "syslog: {} received, {} UDP datagrams lost (receive buffer full), {} accepted, {} refused by the engine, {} unparsed, {} malformed, {} not UTF-8 (read with U+FFFD), {} connections refused, {} idle connections closed for new ones, {} datagrams or connections from senders not allowed",
            g(&self.received),
            g(&self.kernel_drops),
            g(&self.accepted),
            g(&self.refused),
            g(&self.unparsed),
            g(&self.malformed),
            g(&self.not_utf8),
            g(&self.refused_connections),
            g(&self.evicted_connections),
            g(&self.refused_senders)
        ) + &self.last_unparsed.summary_note()
    }
}

/// Turns raw messages from one origin into events and queues them.
struct Intake {
    parser: Parser,
    seq: u64,
    engine: EngineHandle,
    stats: Arc<SyslogStats>,
}

impl Intake {
    fn new(
        origin: String,
        default_host: String,
        engine: EngineHandle,
        stats: Arc<SyslogStats>,
    ) -> Self {
        let now = Utc::now();
        let mut opts = ParseOptions::new(SourceKind::Auto, now, origin);
        opts.default_host = default_host;
        Intake {
            parser: Parser::new(opts),
            seq: now.timestamp_micros().max(0) as u64,
            engine,
            stats,
        }
    }

    /// The message as an event; `None` (counted) when it is empty or not
    /// understood.
    fn parse(&mut self, raw: &[u8], from: IpAddr) -> Option<crate::event::Event> {
        // Waiting for its answer until it is found not to be an event: one
        // who sees it received sees it answered or on its way.
        self.stats.answering.fetch_add(1, Ordering::Relaxed);
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        let ev = self.event_of(raw, from);
        if ev.is_none() {
            self.stats.answering.fetch_sub(1, Ordering::Relaxed);
        }
        ev
    }

    fn event_of(&mut self, raw: &[u8], from: IpAddr) -> Option<crate::event::Event> {
        // Bytes that are not UTF-8 become U+FFFD, as in files: dropping the
        // message would let an attacker hide a failed login behind one
        // stray byte in the user name.
        let text = match std::str::from_utf8(raw) {
            Ok(t) => std::borrow::Cow::Borrowed(t),
            Err(_) => {
                self.stats.not_utf8.fetch_add(1, Ordering::Relaxed);
                String::from_utf8_lossy(raw)
            }
        };
        let text = text.trim_end_matches(['\r', '\n', '\0']);
        if text.is_empty() {
            return None;
        }
        // Year-less BSD timestamps are read against the parser's reference
        // time; keep it current on a long-running listener.
        let now = Utc::now();
        if now - self.parser.options().reference > chrono::Duration::minutes(1) {
            self.parser.set_reference(now);
        }
        self.seq += 1;
        match self.parser.parse_line(text, self.seq) {
            Ok(ev) => Some(ev),
            Err(e) => {
                self.stats.unparsed.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .last_unparsed
                    .note(|| format!("syslog from {from}"), text, &e);
                None
            }
        }
    }

    /// Hands `events` to the engine in order, without waiting for their
    /// commit; a task counts the answers and submits again any event whose
    /// commit failed, until stored: the sender will not send it twice.
    /// (Stopping vigil cancels these tasks.)
    async fn submit(&mut self, events: Vec<crate::event::Event>) {
        let n = events.len() as u64;
        match self
            .engine
            .submit_many(events.clone(), crate::engine::Origin::Local)
            .await
        {
            Ok(receipt) => {
                let stats = self.stats.clone();
                let engine = self.engine.clone();
                tokio::spawn(async move {
                    let answers = receipt.answers().await;
                    for (ev, answer) in events.into_iter().zip(answers) {
                        let answer = match answer {
                            Some(Err(crate::engine::Refusal::StoreFailed)) | None => {
                                engine.ingest_local(ev, &|| false).await.ok()
                            }
                            answer => answer,
                        };
                        match answer {
                            Some(Ok(_)) => stats.accepted.fetch_add(1, Ordering::Relaxed),
                            _ => stats.refused.fetch_add(1, Ordering::Relaxed),
                        };
                        stats.answering.fetch_sub(1, Ordering::Relaxed);
                    }
                });
            }
            Err(_) => {
                self.stats.refused.fetch_add(n, Ordering::Relaxed);
                self.stats.answering.fetch_sub(n, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_with_senders_dropped_or_datagrams_lost_says_so() {
        let stats = SyslogStats::default();
        let start = stats.minute_start();
        assert_eq!(stats.minute_report(start), (Vec::new(), start));
        stats.refuse_sender("203.0.113.5".parse().unwrap());
        stats.refuse_sender("192.0.2.9".parse().unwrap());
        stats.kernel_drops.store(7, Ordering::Relaxed);
        let (lines, next) = stats.minute_report(start);
        assert_eq!(
            lines,
            vec![
                "syslog, last minute: 2 datagrams or connections dropped from senders \
                 not in allowed_senders, the latest from 192.0.2.9"
                    .to_string(),
                "syslog, last minute: 7 UDP datagrams lost: the receive buffer was full \
                 (raise [syslog] udp_receive_buffer_bytes, and net.core.rmem_max on Linux, \
                 or send over TCP)"
                    .to_string(),
            ]
        );
        // Only what grew since counts.
        assert_eq!(stats.minute_report(next), (Vec::new(), next));
        stats.kernel_drops.store(9, Ordering::Relaxed);
        let (lines, _) = stats.minute_report(next);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].starts_with("syslog, last minute: 2 UDP datagrams lost"));
    }

    #[test]
    fn a_minute_with_messages_not_understood_shows_the_latest() {
        let stats = SyslogStats::default();
        let start = stats.minute_start();
        stats.unparsed.store(3, Ordering::Relaxed);
        stats.last_unparsed.note(
            || "syslog from 192.0.2.7".into(),
            "%ASA-4-106023: Deny",
            &"no header",
        );
        let (lines, next) = stats.minute_report(start);
        assert_eq!(
            lines,
            [
                "syslog, last minute: 3 messages not understood, the latest syslog from \
                 192.0.2.7: \"%ASA-4-106023: Deny\" (no header)"
            ]
        );
        assert_eq!(stats.minute_report(next), (Vec::new(), next));
    }

    #[test]
    fn a_minute_in_which_a_sender_went_silent_or_came_back_says_so() {
        let stats = SyslogStats::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let long_ago = Utc::now() - chrono::Duration::minutes(30);
        if let Ok(mut a) = stats.activity.lock() {
            for i in 0..20 {
                a.saw(ip, 1, long_ago + chrono::Duration::seconds(i));
            }
        }
        let start = stats.minute_start();
        let (lines, next) = stats.minute_report(start);
        let since = (long_ago + chrono::Duration::seconds(19))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        assert_eq!(
            lines,
            [format!(
                "syslog: 192.0.2.7 has sent nothing since {since} (20 messages before): its \
                 forwarder may have stopped, or its messages no longer reach this listener"
            )]
        );
        // Told once.
        assert_eq!(stats.minute_report(next).0, Vec::<String>::new());
        stats.saw(&[ip], 1);
        assert_eq!(
            stats.minute_report(next).0,
            ["syslog: 192.0.2.7 is sending again"]
        );
    }
}
