//! Where events come from. Today: files and stdin read offline
//! ([`replay`]), the signed HTTP gateway ([`gateway`]) and syslog listeners
//! ([`syslog`]), files followed as they grow ([`tail`]) and the systemd
//! journal ([`journald`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

pub mod gateway;
pub mod journald;
pub mod refusals;
pub mod replay;
pub mod senders;
pub mod syslog;
pub mod tail;

/// Places for open connections: at most `max` at once and `max_per_ip`
/// from one address (the gateway's and the syslog TCP listener's limits).
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

    /// How many places connections from `ip` hold.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.per_ip
            .lock()
            .map_or(0, |counts| counts.get(&ip).copied().unwrap_or(0))
    }

    /// A place for a connection from `ip`, held until the [`Slot`] is
    /// dropped; `None` when either limit is reached.
    pub fn take(&self, ip: IpAddr) -> Option<Slot> {
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
