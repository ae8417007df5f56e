//! Deterministic synthetic auth.log generator, shared by the throughput
//! example, the benches and tests (`#[path]`-included, not part of the
//! library). Mixes SSH failures from thousands of addresses with accepted
//! logins, sudo, cron, logind sessions and unrelated system noise, one day of
//! timestamps across the file.
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

/// Writes line `i` of an `n`-line file into `out` (without newline).
pub fn line(rng: &mut Rng, i: u64, n: u64, attackers: u64, out: &mut String) {
    out.clear();
    let secs = i * 86_400 / n.max(1);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let host = HOSTS[rng.below(HOSTS.len() as u64) as usize];
    let pid = 1000 + rng.below(60_000);
    let _ = write!(
        out,
        "{} {:>2} {:02}:{:02}:{:02} {} ",
        MONTHS[2], 14, h, m, s, host
    );
    let a = rng.below(attackers);
    let ip = format!(
        "{}.{}.{}.{}",
        11 + a % 200,
        (a >> 3) % 250 + 1,
        (a * 7) % 250 + 1,
        (a * 13) % 250 + 1
    );
    let port = 1024 + rng.below(60_000);
    match rng.below(100) {
        0..=29 => {
            let u = USERS[rng.below(USERS.len() as u64) as usize];
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
            let u = USERS[rng.below(USERS.len() as u64) as usize];
            let _ = write!(out, "sshd[{pid}]: Invalid user {u} from {ip} port {port}");
        }
        38..=44 => {
            let _ = write!(
                out,
                "sshd[{pid}]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost={ip}  user=root"
            );
        }
        45..=49 => {
            let _ = write!(
                out,
                "sshd[{pid}]: Connection closed by authenticating user root {ip} port {port} [preauth]"
            );
        }
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
    let mut rng = Rng::new(seed);
    let mut buf = String::new();
    let mut all = String::with_capacity(n as usize * 110);
    for i in 0..n {
        line(&mut rng, i, n, attackers, &mut buf);
        all.push_str(&buf);
        all.push('\n');
    }
    all
}
