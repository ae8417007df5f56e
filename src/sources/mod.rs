//! Where events come from. Today: files and stdin read offline
//! ([`replay`]), the signed HTTP gateway ([`gateway`]) and syslog listeners
//! ([`syslog`]), files followed as they grow ([`tail`]) and the systemd
//! journal ([`journald`]). Each live source keeps its latest line it could
//! not parse ([`unparsed`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

pub mod activity;
pub mod feeder;
pub mod gateway;
pub mod journald;
pub mod refusals;
pub mod replay;
pub mod senders;
pub mod syslog;
pub mod tail;
pub mod unparsed;

/// Whom per-client limits count as one: an IPv4 address (an IPv4-mapped
/// IPv6 one as IPv4), or an IPv6 /64, given here with its lower 64 bits
/// cleared. A host is normally handed a whole /64: counting its addresses
/// one by one would let it take every place under a per-address limit.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(a) => IpAddr::from((u128::from(a) & !u128::from(u64::MAX)).to_be_bytes()),
        v4 => v4,
    }
}

/// How a [`client_key`] is shown: the IPv4 address, or the IPv6 network
/// as `2001:db8:1:2::/64`.
pub fn client_name(key: IpAddr) -> String {
    match key {
        IpAddr::V6(net) => format!("{net}/64"),
        v4 => v4.to_string(),
    }
}

/// Places for open connections: at most `max` at once and `max_per_ip`
/// from one client (see [`client_key`]; the gateway's and the syslog TCP
/// listener's limits).
pub struct ConnectionSlots {
    open: Arc<tokio::sync::Semaphore>,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max_per_ip: usize,
}

impl ConnectionSlots {
    pub fn new(max: usize, max_per_ip: usize) -> Self {
        ConnectionSlots {
            open: Arc::new(tokio::sync::Semaphore::new(max)),
            per_ip: Arc::default(),
            max_per_ip,
        }
    }

    /// Waits until every place is free again (`max` of them): each open
    /// connection holds one until it ends.
    pub async fn all_closed(&self, max: u32) {
        let _ = self.open.acquire_many(max).await;
    }

    /// How many places connections from `ip`'s client hold.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        let key = client_key(ip);
        self.per_ip
            .lock()
            .map_or(0, |counts| counts.get(&key).copied().unwrap_or(0))
    }

    /// A place for a connection from `ip`, held until the [`Slot`] is
    /// dropped; `None` when either limit is reached.
    pub fn take(&self, ip: IpAddr) -> Option<Slot> {
        let ip = client_key(ip);
        let permit = self.open.clone().try_acquire_owned().ok()?;
        let mut counts = self.per_ip.lock().ok()?;
        let n = counts.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return None;
        }
        *n += 1;
        Some(Slot {
            _permit: permit,
            per_ip: self.per_ip.clone(),
            ip,
        })
    }
}

/// A connection's place under the limits, given back when it closes.
pub struct Slot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.per_ip.lock()
            && let Some(n) = counts.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_ipv6_64_is_one_client_and_mapped_ipv4_is_ipv4() {
        assert_eq!(client_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(client_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(client_key(ip("192.0.2.7")), ip("192.0.2.7"));
        let slots = ConnectionSlots::new(100, 2);
        let held: Vec<Slot> = ["2001:db8:1:2::1", "2001:db8:1:2:ffff::9"]
            .iter()
            .map(|a| slots.take(ip(a)).unwrap())
            .collect();
        // A third address of the same /64 is the same client, at its limit.
        assert!(slots.take(ip("2001:db8:1:2::3")).is_none());
        assert_eq!(slots.open_from(ip("2001:db8:1:2::77")), 2);
        // The next /64 is another client.
        assert!(slots.take(ip("2001:db8:1:3::1")).is_some());
        drop(held);
        assert_eq!(slots.open_from(ip("2001:db8:1:2::1")), 0);
        // An IPv4 client counts the same whether mapped or not.
        let _a = slots.take(ip("::ffff:192.0.2.7")).unwrap();
        let _b = slots.take(ip("192.0.2.7")).unwrap();
        assert!(slots.take(ip("192.0.2.7")).is_none());
    }
}
