//! The UDP listener: one message per datagram, taken off the socket in
//! batches; the socket's receive buffer and the kernel's drop counter.

use super::*;

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

#[cfg(test)]
mod tests {
    use super::*;
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
}
