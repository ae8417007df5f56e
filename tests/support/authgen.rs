//! Deterministic synthetic auth.log generator, shared by the throughput
//! example, the benches and tests (`#[path]`-included, not part of the
//! library). Mixes SSH failures from thousands of addresses with accepted
//! logins, sudo, cron, logind sessions and unrelated system noise, one day of
//! timestamps across the file. Attacks come in bursts from one address
//! (brute force against one user, or a spray over many).
#![allow(dead_code)]

use std::fmt::Write as _;

/// SplitMix64: tiny, seeded, good enough to vary log lines.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const USERS: &[&str] = &[
    "root", "admin", "test", "oracle", "ubuntu", "git", "postgres", "deploy", "pi", "user",
];
const STAFF: &[&str] = &["alice", "bob", "carol", "dave"];
const HOSTS: &[&str] = &["web-1", "web-2", "db-1", "bastion"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// One attacker working through its attempts (real brute force comes in
/// bursts from one address, not as one failure per random address).
struct Attack {
    ip: String,
    host: &'static str,
    /// Users it tries: one for a brute force, many for a spray.
    users: Vec<&'static str>,
    remaining: u32,
    next_user: usize,
}

/// Generator state: the attacks in progress.
pub struct Gen {
    rng: Rng,
    attacks: Vec<Attack>,
    attackers: u64,
    buf: String,
}

impl Gen {
    pub fn new(seed: u64, attackers: u64) -> Self {
        Gen {
            rng: Rng::new(seed),
            attacks: Vec::new(),
            attackers: attackers.max(1),
            buf: String::new(),
        }
    }

    fn attack(&mut self) -> usize {
        if self.attacks.len() < 6 {
            let a = self.rng.below(self.attackers);
            let b = Rng::new(a).next();
            let ip = format!(
                "{}.{}.{}.{}",
                11 + b % 200,
                (b >> 8) % 254 + 1,
                (b >> 16) % 254 + 1,
                (b >> 24) % 254 + 1
            );
            let spray = self.rng.below(6) == 0;
            let users: Vec<&'static str> = if spray {
                USERS.to_vec()
            } else {
                vec![USERS[self.rng.below(3) as usize]]
            };
            let remaining = if spray {
                10 + self.rng.below(30)
            } else {
                2 + self.rng.below(40)
            } as u32;
            let host = HOSTS[self.rng.below(HOSTS.len() as u64) as usize];
            self.attacks.push(Attack {
                ip,
                host,
                users,
                remaining,
                next_user: 0,
            });
            return self.attacks.len() - 1;
        }
        self.rng.below(self.attacks.len() as u64) as usize
    }

    /// Line `i` of an `n`-line file (one day of timestamps), without newline.
    pub fn line(&mut self, i: u64, n: u64) -> &str {
        let mut out = std::mem::take(&mut self.buf);
        out.clear();
        let rng = &mut self.rng;
        let secs = i * 86_400 / n.max(1);
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        let host = HOSTS[rng.below(HOSTS.len() as u64) as usize];
        let pid = 1000 + rng.below(60_000);
        let port = 1024 + rng.below(60_000);
        let kind = rng.below(100);
        let stamp = |out: &mut String, host: &str| {
            let _ = write!(
                out,
                "{} {:>2} {:02}:{:02}:{:02} {} ",
                MONTHS[2], 14, h, m, s, host
            );
        };
        if kind < 50 {
            let k = self.attack();
            let a = &mut self.attacks[k];
            stamp(&mut out, a.host);
            let u = a.users[a.next_user % a.users.len()];
            a.next_user += 1;
            a.remaining -= 1;
            let ip = std::mem::take(&mut a.ip);
            let rng = &mut self.rng;
            match kind {
                0..=29 => {
                    let inv = if rng.below(3) == 0 {
                        "invalid user "
                    } else {
                        ""
                    };
                    let _ = write!(
                        out,
                        "sshd[{pid}]: Failed password for {inv}{u} from {ip} port {port} ssh2"
                    );
                }
                30..=37 => {
                    let _ = write!(out, "sshd[{pid}]: Invalid user {u} from {ip} port {port}");
                }
                38..=44 => {
                    let _ = write!(
                        out,
                        "sshd[{pid}]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost={ip}  user={u}"
                    );
                }
                _ => {
                    let _ = write!(
                        out,
                        "sshd[{pid}]: Connection closed by authenticating user {u} {ip} port {port} [preauth]"
                    );
                }
            }
            let a = &mut self.attacks[k];
            a.ip = ip;
            if a.remaining == 0 {
                self.attacks.swap_remove(k);
            }
        } else {
            stamp(&mut out, host);
            noise(rng, kind, pid, port, &mut out);
        }
        self.buf = out;
        &self.buf
    }
}

fn noise(rng: &mut Rng, kind: u64, pid: u64, port: u64, out: &mut String) {
    match kind {
        50..=54 => {
            let u = STAFF[rng.below(STAFF.len() as u64) as usize];
            let _ = write!(
                out,
                "sshd[{pid}]: Accepted publickey for {u} from 192.0.2.{} port {port} ssh2: ED25519 SHA256:x",
                1 + rng.below(20)
            );
        }
        55..=59 => {
            let u = STAFF[rng.below(STAFF.len() as u64) as usize];
            let _ = write!(
                out,
                "sshd[{pid}]: pam_unix(sshd:session): session opened for user {u}(uid=1000) by (uid=0)"
            );
        }
        60..=69 => {
            let _ = write!(
                out,
                "CRON[{pid}]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)"
            );
        }
        70..=74 => {
            let _ = write!(
                out,
                "CRON[{pid}]: (root) CMD (cd / && run-parts --report /etc/cron.hourly)"
            );
        }
        75..=81 => {
            let u = STAFF[rng.below(STAFF.len() as u64) as usize];
            let _ = write!(
                out,
                "sudo:    {u} : TTY=pts/0 ; PWD=/home/{u} ; USER=root ; COMMAND=/usr/bin/systemctl status nginx"
            );
        }
        82..=87 => {
            let u = STAFF[rng.below(STAFF.len() as u64) as usize];
            let _ = write!(
                out,
                "systemd-logind[{}]: New session {} of user {u}.",
                500 + rng.below(10),
                rng.below(100_000)
            );
        }
        88..=93 => {
            let _ = write!(
                out,
                "systemd[1]: Started Session {} of User root.",
                rng.below(100_000)
            );
        }
        _ => {
            let _ = write!(
                out,
                "kernel: [{}.{:06}] audit: type=1400 apparmor=\"ALLOWED\" operation=\"open\"",
                rng.below(999_999),
                rng.below(999_999)
            );
        }
    }
}

/// A whole file of `n` lines, from `seed`.
pub fn generate(n: u64, seed: u64, attackers: u64) -> String {
    let mut g = Gen::new(seed, attackers);
    let mut all = String::with_capacity(n as usize * 110);
    for i in 0..n {
        all.push_str(g.line(i, n));
        all.push('\n');
    }
    all
}

/// Benchmark baseline: the least work that touches every line of `text`
/// (split on newlines, check UTF-8). Ratios against it are stable across
/// noisy machines where absolute times are not.
pub fn baseline_split_lines(text: &str) -> usize {
    text.as_bytes()
        .split(|c| *c == b'\n')
        .filter(|l| std::str::from_utf8(l).is_ok_and(|s| !s.is_empty()))
        .count()
}
