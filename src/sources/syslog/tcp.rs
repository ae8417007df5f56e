//! The TCP listener: connection limits and eviction, and RFC 6587 framing
//! (octet counting and newline-delimited).

use super::*;

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
/// finds no place. Each entry owns its connection's [`crate::sources::Slot`], so
/// removing it frees the place at once; the connection's task is told to
/// stop, and removes its entry itself when it ends first.
#[derive(Default)]
struct OpenStreams {
    next: u64,
    streams: std::collections::HashMap<u64, OpenStream>,
}

struct OpenStream {
    /// Its client ([`crate::sources::client_key`]), as the per-client limit counts.
    client: std::net::IpAddr,
    /// Milliseconds since the listener started, at the last whole message
    /// (or the connection's start); [`BUSY`] while a message is on its way
    /// to the engine.
    last_message: Arc<AtomicU64>,
    close: Arc<Closing>,
    _slot: crate::sources::Slot,
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
    let slots = crate::sources::ConnectionSlots::new(MAX_TCP_CONNECTIONS, limits.max_per_ip);
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
            let client = crate::sources::client_key(peer.ip());
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
                client: crate::sources::client_key(peer.ip()),
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
    fn the_idlest_connection_is_closed_never_a_busy_one() {
        let slots = crate::sources::ConnectionSlots::new(8, 8);
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
