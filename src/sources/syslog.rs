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

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Utc;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

use super::senders::Senders;
use crate::engine::EngineHandle;
use crate::parse::{ParseOptions, Parser, SourceKind};

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

/// Sizes a UDP listener's receive buffer (`want` bytes asked) and says
/// what the system gave; returns its kernel drop counter where one can be
/// read. A burst queues in that buffer while the engine catches up; what
/// overflows it the kernel drops, and counts.
pub fn prepare_udp(socket: &tokio::net::UdpSocket, want: usize) -> Option<UdpDrops> {
    match set_receive_buffer(socket, want) {
        // Stock Linux caps it far below the default asked; the drops
        // themselves are warned of when they happen.
        Ok(got) if got < want => tracing::info!(
            "syslog udp: receive buffer {} KiB, not the {} KiB asked ([syslog] \
             udp_receive_buffer_bytes; on Linux net.core.rmem_max caps it): a burst larger \
             than it is dropped by the kernel, and counted",
            got >> 10,
            want >> 10
        ),
        Ok(got) => tracing::info!("syslog udp: receive buffer {} KiB", got >> 10),
        Err(e) => tracing::warn!("syslog udp: cannot size the receive buffer: {e}"),
    }
    let drops = UdpDrops::of(socket);
    if drops.is_none() {
        tracing::info!(
            "syslog udp: datagrams the kernel drops for a full buffer cannot be counted here \
             (Linux only)"
        );
    }
    drops
}

/// Asks for a receive buffer of `bytes` on `socket` and returns what the
/// system gave (Linux reports twice the usable size, and caps the request
/// at `net.core.rmem_max`).
fn set_receive_buffer(socket: &tokio::net::UdpSocket, bytes: usize) -> std::io::Result<usize> {
    let s = socket2::SockRef::from(socket);
    s.set_recv_buffer_size(bytes)?;
    s.recv_buffer_size()
}

/// The kernel's count of datagrams it dropped for one UDP socket because
/// its receive buffer was full: the `drops` column of `/proc/net/udp` (or
/// `udp6`) on the socket's inode. Linux only; elsewhere [`UdpDrops::of`]
/// is `None` and such losses are not seen.
#[derive(Clone, Debug)]
pub struct UdpDrops {
    inode: u64,
    table: &'static str,
}

impl UdpDrops {
    #[cfg(not(target_os = "linux"))]
    pub fn of(_socket: &tokio::net::UdpSocket) -> Option<UdpDrops> {
        None
    }

    #[cfg(target_os = "linux")]
    pub fn of(socket: &tokio::net::UdpSocket) -> Option<UdpDrops> {
        use std::os::fd::AsRawFd;
        let link = std::fs::read_link(format!("/proc/self/fd/{}", socket.as_raw_fd())).ok()?;
        // "socket:[12345]"
        let inode = link
            .to_str()?
            .strip_prefix("socket:[")?
            .strip_suffix(']')?
            .parse()
            .ok()?;
        let table = match socket.local_addr().ok()? {
            std::net::SocketAddr::V4(_) => "/proc/net/udp",
            std::net::SocketAddr::V6(_) => "/proc/net/udp6",
        };
        let d = UdpDrops { inode, table };
        d.read().map(|_| d)
    }

    /// The drops so far; `None` if the socket is not in the table.
    pub fn read(&self) -> Option<u64> {
        let table = std::fs::read_to_string(self.table).ok()?;
        drops_of(&table, self.inode)
    }
}

/// In a `/proc/net/udp` table, the `drops` of the socket with `inode`.
fn drops_of(table: &str, inode: u64) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
        (f.len() >= 13 && f[9].parse() == Ok(inode)).then(|| f[12].parse().ok())?
    })
}

/// Keeps `stats.kernel_drops` current (once a second) until dropped.
pub async fn watch_udp_drops(drops: UdpDrops, stats: Arc<SyslogStats>) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        every.tick().await;
        if let Some(n) = drops.read() {
            stats.kernel_drops.store(n, Ordering::Relaxed);
        }
    }
}

/// Receives datagrams until the task is dropped.
pub async fn run_udp(
    socket: tokio::net::UdpSocket,
    engine: EngineHandle,
    max_message_bytes: usize,
    senders: Arc<Senders>,
    stats: Arc<SyslogStats>,
) {
    // One byte over the limit tells an oversized datagram from a full one.
    let mut buf = vec![0u8; max_message_bytes + 1];
    let mut intake = Intake::new("syslog-udp".into(), "unknown".into(), engine, stats.clone());
    let mut events = Vec::with_capacity(UDP_BATCH);
    let mut from = Vec::with_capacity(UDP_BATCH);
    loop {
        let Ok(first) = socket.recv_from(&mut buf).await else {
            // Transient (e.g. out of buffers): back off instead of spinning.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        // With the datagrams already waiting behind it (a burst), without
        // waiting for more: one trip through the engine for all of them,
        // instead of one each, so a burst drains faster than it overflows.
        let mut next = Some(first);
        let mut taken = 0;
        from.clear();
        while let Some((n, peer)) = next {
            taken += 1;
            if !senders.allows(peer.ip()) {
                stats.refuse_sender(peer.ip());
            } else {
                from.push(peer.ip());
                if n > max_message_bytes {
                    stats.received.fetch_add(1, Ordering::Relaxed);
                    stats.malformed.fetch_add(1, Ordering::Relaxed);
                } else if let Some(ev) = intake.parse(&buf[..n], peer.ip()) {
                    events.push(ev);
                }
            }
            next = if taken < UDP_BATCH {
                socket.try_recv_from(&mut buf).ok()
            } else {
                None
            };
        }
        stats.saw(&from, 1);
        if !events.is_empty() {
            intake.submit(std::mem::take(&mut events)).await;
        }
    }
}

/// Datagrams at most taken off the socket per trip to the engine.
const UDP_BATCH: usize = 64;

/// TCP listener settings (`[syslog]` in the config).
#[derive(Clone, Copy, Debug)]
pub struct TcpLimits {
    pub max_message_bytes: usize,
    pub max_per_ip: usize,
    /// A connection with no whole message for this long may be closed to
    /// make room for a new one.
    pub idle_evict: std::time::Duration,
}

/// The open TCP connections, for choosing one to close when a new one
/// finds no place. Each entry owns its connection's [`super::Slot`], so
/// removing it frees the place at once; the connection's task is told to
/// stop, and removes its entry itself when it ends first.
#[derive(Default)]
struct OpenStreams {
    next: u64,
    streams: std::collections::HashMap<u64, OpenStream>,
}

struct OpenStream {
    /// Its client ([`super::client_key`]), as the per-client limit counts.
    client: std::net::IpAddr,
    /// Milliseconds since the listener started, at the last whole message
    /// (or the connection's start); [`BUSY`] while a message is on its way
    /// to the engine.
    last_message: Arc<AtomicU64>,
    close: Arc<Closing>,
    _slot: super::Slot,
}

/// `last_message` of a connection handing a message to the engine: never
/// the idlest, however long the engine makes it wait.
const BUSY: u64 = u64::MAX;

/// Tells a connection's task to stop.
#[derive(Default)]
struct Closing {
    flag: std::sync::atomic::AtomicBool,
    wake: tokio::sync::Notify,
}

impl OpenStreams {
    /// Closes the connection that has gone longest without a whole
    /// message, if that is at least `idle` (ms); from `client` only when
    /// given (it is at its own limit). True if a place was freed.
    fn evict_idlest(&mut self, client: Option<std::net::IpAddr>, now: u64, idle: u64) -> bool {
        let idlest = self
            .streams
            .iter()
            .filter(|(_, s)| client.is_none_or(|c| s.client == c))
            .map(|(id, s)| (s.last_message.load(Ordering::Relaxed), *id))
            .filter(|(last, _)| *last != BUSY)
            .min();
        match idlest {
            Some((last, id)) if now.saturating_sub(last) >= idle => {
                if let Some(s) = self.streams.remove(&id) {
                    s.close.flag.store(true, Ordering::Relaxed);
                    s.close.wake.notify_one();
                }
                true
            }
            _ => false,
        }
    }
}

/// Accepts connections until the task is dropped; one task per connection,
/// at most [`MAX_TCP_CONNECTIONS`] at once and `max_per_ip` from one
/// address, so one sender cannot take every place and shut the others out.
/// A connection that finds no place takes the idlest one's (see the
/// module notes), or is closed.
pub async fn run_tcp(
    listener: tokio::net::TcpListener,
    engine: EngineHandle,
    limits: TcpLimits,
    senders: Arc<Senders>,
    stats: Arc<SyslogStats>,
) {
    let slots = super::ConnectionSlots::new(MAX_TCP_CONNECTIONS, limits.max_per_ip);
    let open = Arc::new(std::sync::Mutex::new(OpenStreams::default()));
    let started = std::time::Instant::now();
    let idle_ms = limits.idle_evict.as_millis() as u64;
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            // Usually out of file descriptors: back off instead of spinning.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        // Before it takes a place: an outsider cannot crowd senders out.
        if !senders.allows(peer.ip()) {
            stats.refuse_sender(peer.ip());
            drop(stream);
            continue;
        }
        // A panic elsewhere cannot leave the map half-updated: go on.
        let mut streams = open.lock().unwrap_or_else(|e| e.into_inner());
        let mut slot = slots.take(peer.ip());
        if slot.is_none() {
            // Make room: from this address if it is at its own limit,
            // else from anyone.
            let own = slots.open_from(peer.ip()) >= limits.max_per_ip;
            let client = super::client_key(peer.ip());
            if streams.evict_idlest(own.then_some(client), ms_since(started), idle_ms) {
                stats.evicted_connections.fetch_add(1, Ordering::Relaxed);
                slot = slots.take(peer.ip());
            }
        }
        let Some(slot) = slot else {
            // Full: refuse rather than let one sender exhaust descriptors.
            stats.refused_connections.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        let id = streams.next;
        streams.next += 1;
        let last_message = Arc::new(AtomicU64::new(ms_since(started)));
        let close = Arc::new(Closing::default());
        streams.streams.insert(
            id,
            OpenStream {
                client: super::client_key(peer.ip()),
                last_message: last_message.clone(),
                close: close.clone(),
                _slot: slot,
            },
        );
        drop(streams);
        let (engine, stats, open) = (engine.clone(), stats.clone(), open.clone());
        let watch = Watch {
            last_message,
            started,
            close,
        };
        tokio::spawn(async move {
            read_stream(stream, peer, engine, limits.max_message_bytes, stats, watch).await;
            open.lock()
                .unwrap_or_else(|e| e.into_inner())
                .streams
                .remove(&id);
        });
    }
}

fn ms_since(started: std::time::Instant) -> u64 {
    started.elapsed().as_millis() as u64
}

/// A connection's link to the listener: where it notes the time of its
/// last whole message, and the signal to stop (it was closed to make room).
struct Watch {
    last_message: Arc<AtomicU64>,
    /// When the listener started (`last_message` counts from it).
    started: std::time::Instant,
    close: Arc<Closing>,
}

/// Why a TCP syslog stream was closed early.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("octet count {0} is over the message size limit")]
    TooLarge(usize),
}

/// Reads one RFC 6587 frame into `out`. `Ok(false)` at a clean end of
/// stream. A newline-delimited message over the limit is truncated (the
/// rest of the line is skipped) and reported through `truncated`.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    max: usize,
    out: &mut Vec<u8>,
    truncated: &mut bool,
) -> std::io::Result<Result<bool, FramingError>> {
    out.clear();
    *truncated = false;
    // Skip blank separators between frames.
    loop {
        let buf = r.fill_buf().await?;
        match buf.first() {
            None => return Ok(Ok(false)),
            Some(b'\n' | b'\r' | b'\0') => r.consume(1),
            Some(_) => break,
        }
    }
    // Octet counting (`LEN SP MSG`) when the frame opens with up to ten
    // digits and a space; anything else is a newline-delimited message (so a
    // PRI-less line that starts with a date is not mistaken for a count).
    let buf = r.fill_buf().await?;
    if let Some((digits, len)) = octet_count(buf) {
        r.consume(digits + 1);
        if len > max {
            return Ok(Err(FramingError::TooLarge(len)));
        }
        out.resize(len, 0);
        r.read_exact(out).await?;
        return Ok(Ok(true));
    }
    let n = (&mut *r).take(max as u64).read_until(b'\n', out).await?;
    if n == max && out.last() != Some(&b'\n') {
        // Over the limit: keep the head, drop the rest of the line.
        *truncated = true;
        let mut sink = Vec::new();
        loop {
            sink.clear();
            let m = (&mut *r)
                .take(64 * 1024)
                .read_until(b'\n', &mut sink)
                .await?;
            if m == 0 || sink.last() == Some(&b'\n') {
                break;
            }
        }
    }
    Ok(Ok(true))
}

async fn read_stream(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    engine: EngineHandle,
    max: usize,
    stats: Arc<SyslogStats>,
    watch: Watch,
) {
    let mut r = BufReader::new(stream);
    let mut intake = Intake::new(
        format!("syslog-tcp/{peer}"),
        peer.ip().to_string(),
        engine,
        stats.clone(),
    );
    let mut msg = Vec::new();
    let mut truncated = false;
    loop {
        // Closed only while waiting for a message: one on its way to the
        // engine is marked BUSY and never chosen, and a whole frame already
        // buffered is read first.
        if watch.close.flag.load(Ordering::Relaxed) {
            return;
        }
        let mut frame = tokio::select! {
            biased;
            frame = read_frame(&mut r, max, &mut msg, &mut truncated) => frame,
            () = watch.close.wake.notified() => return,
        };
        // With the frames already whole in the buffer behind it (a sender
        // writing fast), without waiting for more: one trip to the engine
        // for all of them.
        let mut events = Vec::new();
        let mut taken = 0;
        let mut messages = 0;
        let ended = loop {
            taken += 1;
            match frame {
                Ok(Ok(true)) => {
                    messages += 1;
                    if truncated {
                        stats.malformed.fetch_add(1, Ordering::Relaxed);
                    }
                    events.extend(intake.parse(&msg, peer.ip()));
                }
                Ok(Err(_)) => {
                    // The framing is lost; nothing after this can be trusted.
                    stats.malformed.fetch_add(1, Ordering::Relaxed);
                    break true;
                }
                Ok(Ok(false)) | Err(_) => break true,
            }
            if taken == TCP_BATCH || !whole_frame_buffered(r.buffer(), max) {
                break false;
            }
            frame = read_frame(&mut r, max, &mut msg, &mut truncated).await;
        };
        stats.saw(&[peer.ip()], messages);
        if !events.is_empty() {
            watch.last_message.store(BUSY, Ordering::Relaxed);
            intake.submit(events).await;
        }
        // Whole messages came (events or not): not idle.
        watch
            .last_message
            .store(ms_since(watch.started), Ordering::Relaxed);
        if ended {
            return;
        }
    }
}

/// Frames at most taken from one connection per trip to the engine.
const TCP_BATCH: usize = 64;

/// Whether [`read_frame`] on a reader holding `buf` (and nothing more yet)
/// would return without waiting for more bytes: a whole frame is there
/// (or one it would refuse at once, an octet count over `max`).
fn whole_frame_buffered(buf: &[u8], max: usize) -> bool {
    let Some(start) = buf.iter().position(|b| !matches!(b, b'\n' | b'\r' | b'\0')) else {
        return false;
    };
    let rest = &buf[start..];
    match octet_count(rest) {
        Some((digits, len)) => len > max || rest.len() - digits > len,
        None => memchr::memchr(b'\n', rest).is_some(),
    }
}

/// An octet-counted frame's count (`LEN SP`, up to ten digits) at the
/// start of `buf`: how many digits, and the length they give. `None`: a
/// newline-delimited message.
fn octet_count(buf: &[u8]) -> Option<(usize, usize)> {
    let digits = buf
        .iter()
        .take(11)
        .take_while(|b| b.is_ascii_digit())
        .count();
    ((1..=10).contains(&digits) && buf.get(digits) == Some(&b' ')).then(|| {
        let len = buf[..digits]
            .iter()
            .fold(0usize, |a, d| a * 10 + (d - b'0') as usize);
        (digits, len)
    })
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

    /// A reader that has `buf` and then nothing yet (a sender that paused).
    struct ThenPending(Option<Vec<u8>>);

    impl tokio::io::AsyncRead for ThenPending {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            out: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            match self.0.take() {
                Some(b) if !b.is_empty() => {
                    out.put_slice(&b);
                    std::task::Poll::Ready(Ok(()))
                }
                _ => std::task::Poll::Pending,
            }
        }
    }

    /// Whether `read_frame` returns at its first poll on a reader holding
    /// only `buf`.
    fn reads_without_waiting(buf: &[u8], max: usize) -> bool {
        let mut r = BufReader::new(ThenPending(Some(buf.to_vec())));
        let (mut out, mut truncated) = (Vec::new(), false);
        let mut frame = std::pin::pin!(read_frame(&mut r, max, &mut out, &mut truncated));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        std::future::Future::poll(frame.as_mut(), &mut cx).is_ready()
    }

    #[test]
    fn a_whole_frame_is_seen_exactly_when_reading_it_would_not_wait() {
        for (buf, max) in [
            (&b""[..], 64),
            (b"\n\r\0", 64),
            (b"<13>hello", 64),
            (b"<13>hello\n", 64),
            (b"\n\n<13>hello\nmore", 64),
            (b"5 hello", 64),
            (b"5 hell", 64),
            (b"12", 64),
            (b"12 ", 64),
            (b"99 short", 8),
            (b"12345678901 x\n", 64),
            (b"1234567890 x", 64),
            (b"a line longer than max\n", 8),
            (b"a line longer than max", 8),
        ] {
            assert_eq!(
                whole_frame_buffered(buf, max),
                reads_without_waiting(buf, max),
                "{:?} max {max}",
                String::from_utf8_lossy(buf)
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn whole_frame_buffered_agrees_with_read_frame(
            buf in proptest::collection::vec(
                proptest::sample::select(b"0123456789 \n\r\0a<".to_vec()), 0..48),
            max in proptest::sample::select(vec![1usize, 4, 9, 64]),
        ) {
            proptest::prop_assert_eq!(
                whole_frame_buffered(&buf, max),
                reads_without_waiting(&buf, max)
            );
        }
    }

    #[test]
    fn drops_are_read_off_the_sockets_own_line() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops            \n\
  812: 0100007F:158B 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 0         \n\
  813: 0100007F:158C 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 123456 2 0000000000000000 4945      \n";
        assert_eq!(drops_of(table, 123_456), Some(4945));
        assert_eq!(drops_of(table, 4242), Some(0));
        // Not there (closed), or a column that is not a number.
        assert_eq!(drops_of(table, 12_345), None);
        assert_eq!(drops_of("header\n 1: a b c d e f g h 77 i j x\n", 77), None);
        assert_eq!(drops_of("", 77), None);
    }

    #[test]
    fn the_idlest_connection_is_closed_never_a_busy_one() {
        let slots = super::super::ConnectionSlots::new(8, 8);
        let a: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        let b: std::net::IpAddr = "192.0.2.2".parse().unwrap();
        let mut open = OpenStreams::default();
        let mut closing = Vec::new();
        for (id, (ip, last)) in [(a, 100), (b, 500), (a, BUSY)].into_iter().enumerate() {
            let close = Arc::new(Closing::default());
            closing.push(close.clone());
            open.streams.insert(
                id as u64,
                OpenStream {
                    client: ip,
                    last_message: Arc::new(AtomicU64::new(last)),
                    close,
                    _slot: slots.take(ip).unwrap(),
                },
            );
        }
        assert_eq!(slots.open_from(a), 2);
        // Not idle long enough: nothing is closed.
        assert!(!open.evict_idlest(None, 1000, 901));
        // From anyone: the idlest (a, last message at 100).
        assert!(open.evict_idlest(None, 1000, 900));
        assert!(closing[0].flag.load(Ordering::Relaxed));
        assert_eq!(slots.open_from(a), 1, "its place is free at once");
        // From b only: b's, once it has been idle long enough.
        assert!(!open.evict_idlest(Some(b), 1000, 501));
        assert!(open.evict_idlest(Some(b), 1000, 500));
        // Only a busy connection is left: it is never closed.
        assert!(!open.evict_idlest(None, u64::MAX - 1, 0));
        assert!(!closing[2].flag.load(Ordering::Relaxed));
    }

    async fn frames(input: &[u8], max: usize) -> Vec<(String, bool)> {
        let mut r = BufReader::new(input);
        let mut out = Vec::new();
        let mut msg = Vec::new();
        let mut truncated = false;
        while let Ok(Ok(true)) = read_frame(&mut r, max, &mut msg, &mut truncated).await {
            out.push((
                String::from_utf8_lossy(&msg).trim_end().to_string(),
                truncated,
            ));
        }
        out
    }

    #[tokio::test]
    async fn both_framings_and_mixed_streams() {
        let got = frames(
            b"11 <13>hello a\n<13>line b\n\n5 abcde11 <13>x\ny\nz\r\n2024-05-01 host x\n",
            1024,
        )
        .await;
        let texts: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            texts,
            [
                "<13>hello a",
                "<13>line b",
                "abcde",
                "<13>x\ny\nz",
                "2024-05-01 host x"
            ]
        );
    }

    #[tokio::test]
    async fn oversized_lines_are_truncated_and_the_stream_resyncs() {
        let mut input = vec![b'<'; 100];
        input.extend_from_slice(b"\n<13>next\n");
        let got = frames(&input, 16).await;
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].0.len(), got[0].1), (16, true));
        assert_eq!(got[1], ("<13>next".to_string(), false));
    }

    #[tokio::test]
    async fn huge_octet_counts_stop_the_stream() {
        let mut r = BufReader::new(&b"99999 <13>x"[..]);
        let (mut msg, mut t) = (Vec::new(), false);
        assert_eq!(
            read_frame(&mut r, 1024, &mut msg, &mut t).await.unwrap(),
            Err(FramingError::TooLarge(99999))
        );
        // Not a count (no space, or too many digits): a plain line.
        for line in [&b"12x <13>x"[..], b"123456789012 x"] {
            let mut r = BufReader::new(line);
            assert_eq!(
                read_frame(&mut r, 1024, &mut msg, &mut t).await.unwrap(),
                Ok(true)
            );
            assert_eq!(msg, line);
        }
    }
}
