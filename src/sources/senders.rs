//! Which addresses a listener takes messages from (`[syslog]
//! allowed_senders`).
//!
//! Syslog carries no credentials: whoever reaches the port can write a
//! "Failed password for root from 10.0.0.5" line, and with enough of them
//! raise an alert and have the policy ban 10.0.0.5, an address of the
//! sender's choosing (the log-injection attack fail2ban setups know). A
//! list of networks closes that to everyone outside them over TCP. Over
//! UDP a source address can be forged by anyone on a path that does not
//! filter it, so the list narrows UDP but does not make it safe; TCP, or
//! a listener on 127.0.0.1 fed by a local relay, is the stronger choice.

use std::net::IpAddr;

/// A network: an address and how many of its leading bits must match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    bits: u8,
}

/// Why an `allowed_senders` entry was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("{0:?} is not an address or ADDRESS/BITS network")]
    Syntax(String),
    #[error("{entry:?}: an {family} network has at most {max} bits")]
    TooManyBits {
        entry: String,
        family: &'static str,
        max: u8,
    },
    #[error("{entry:?} has bits set past /{bits}: the network is {network}")]
    HostBits {
        entry: String,
        bits: u8,
        network: String,
    },
}

impl Net {
    /// `192.0.2.7`, `10.0.0.0/8`, `2001:db8::/32`. An IPv4-mapped IPv6
    /// address is read as the IPv4 one (so is a peer's, when matched).
    pub fn parse(entry: &str) -> Result<Net, NetError> {
        let syntax = || NetError::Syntax(entry.to_string());
        let (addr, bits) = match entry.trim().split_once('/') {
            Some((a, b)) => (a, Some(b.parse::<u8>().map_err(|_| syntax())?)),
            None => (entry.trim(), None),
        };
        let addr = addr.parse::<IpAddr>().map_err(|_| syntax())?.to_canonical();
        let (family, max) = match addr {
            IpAddr::V4(_) => ("IPv4", 32),
            IpAddr::V6(_) => ("IPv6", 128),
        };
        let bits = bits.unwrap_or(max);
        if bits > max {
            return Err(NetError::TooManyBits {
                entry: entry.to_string(),
                family,
                max,
            });
        }
        let net = Net { addr, bits };
        let masked = net.masked(addr);
        if masked != addr {
            return Err(NetError::HostBits {
                entry: entry.to_string(),
                bits,
                network: format!("{masked}/{bits}"),
            });
        }
        Ok(net)
    }

    /// `ip` with the bits past this network's prefix cleared.
    fn masked(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                IpAddr::from((u32::from(a) & mask).to_be_bytes())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                IpAddr::from((u128::from(a) & mask).to_be_bytes())
            }
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.addr.is_ipv4() && self.masked(ip) == self.addr
    }
}

/// The networks a listener takes messages from; empty takes any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Senders(Vec<Net>);

impl Senders {
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Senders, NetError> {
        entries
            .iter()
            .map(|e| Net::parse(e.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map(Senders)
    }

    /// Whether any address may send (no list configured).
    pub fn any(&self) -> bool {
        self.0.is_empty()
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        self.any() || self.0.iter().any(|n| n.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_match_their_own_addresses_only() {
        let s = Senders::parse(&["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]).unwrap();
        assert!(s.allows(ip("10.255.1.2")));
        assert!(!s.allows(ip("11.0.0.1")));
        assert!(s.allows(ip("192.0.2.7")));
        assert!(!s.allows(ip("192.0.2.8")));
        assert!(s.allows(ip("2001:db8:ffff::1")));
        assert!(!s.allows(ip("2001:db9::1")));
        // A dual-stack socket reports IPv4 peers as mapped IPv6.
        assert!(s.allows(ip("::ffff:10.1.2.3")));
        assert!(!s.allows(ip("::ffff:11.1.2.3")));
        // An IPv4 network never matches an IPv6 address of the same bits.
        assert!(!s.allows(ip("a00::1")));
        // /0 takes a whole family; no list takes everyone.
        let all_v4 = Senders::parse(&["0.0.0.0/0"]).unwrap();
        assert!(all_v4.allows(ip("203.0.113.1")) && !all_v4.allows(ip("::1")));
        let none: [&str; 0] = [];
        assert!(Senders::parse(&none).unwrap().allows(ip("::1")));
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        assert_eq!(
            Net::parse("10.0.0.1/8"),
            Err(NetError::HostBits {
                entry: "10.0.0.1/8".into(),
                bits: 8,
                network: "10.0.0.0/8".into()
            })
        );
        assert!(matches!(
            Net::parse("10.0.0.0/33"),
            Err(NetError::TooManyBits { max: 32, .. })
        ));
        assert!(matches!(
            Net::parse("::/129"),
            Err(NetError::TooManyBits { max: 128, .. })
        ));
        for bad in [
            "",
            "host.example",
            "10.0.0.0/",
            "10.0.0.0/x",
            "10.0.0/8",
            "1.2.3.4/-1",
        ] {
            assert!(matches!(Net::parse(bad), Err(NetError::Syntax(_))), "{bad}");
        }
        assert_eq!(
            Net::parse("::ffff:10.1.2.3").unwrap(),
            Net::parse("10.1.2.3").unwrap()
        );
    }
}
