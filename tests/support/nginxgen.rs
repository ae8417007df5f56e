//! Deterministic synthetic nginx access log (combined format), shared by the
//! throughput example, benches and tests: ordinary browsing from thousands of
//! clients, some 404s and redirects, and a few scanners and injection attempts.
#![allow(dead_code)]

use std::fmt::Write as _;

pub struct Gen {
    state: u64,
}

const PATHS: &[&str] = &[
    "/",
    "/index.html",
    "/about",
    "/blog/2026/03/release-notes",
    "/static/app.js",
    "/static/style.css",
    "/img/logo.png",
    "/api/v1/items?page=2&sort=price",
    "/api/v1/cart",
    "/login",
    "/search?q=rust+logs",
    "/products/42",
    "/products/1337/reviews",
    "/favicon.ico",
    "/robots.txt",
    "/sitemap.xml",
];
const PROBES: &[&str] = &[
    "/.env",
    "/wp-login.php",
    "/phpmyadmin/",
    "/.git/config",
    "/admin.php",
    "/xmlrpc.php",
];
const ATTACKS: &[&str] = &[
    "/item?id=1%20UNION%20SELECT%20password%20FROM%20users",
    "/download?file=../../../../etc/passwd",
    "/search?q=%3Cscript%3Ealert(1)%3C/script%3E",
];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "curl/8.5.0",
];

impl Gen {
    pub fn new(seed: u64) -> Self {
        Gen { state: seed }
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() % xs.len() as u64) as usize]
    }

    /// Line `i` of an `n`-line file spanning one day, into `out`.
    pub fn line(&mut self, i: u64, n: u64, out: &mut String) {
        out.clear();
        let secs = i * 86_400 / n.max(1);
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        let c = self.next() % 5_000;
        let roll = self.next() % 1000;
        let (path, status, agent) = if roll < 3 {
            (self.pick(ATTACKS), 403, AGENTS[0])
        } else if roll < 10 {
            (self.pick(PROBES), 404, "Mozilla/5.0 zgrab/0.x")
        } else {
            let p = self.pick(PATHS);
            let st = match self.next() % 100 {
                0..=79 => 200,
                80..=89 => 304,
                90..=95 => 301,
                _ => 404,
            };
            (p, st, self.pick(AGENTS))
        };
        let method = if path.starts_with("/api/v1/cart") || path == "/login" {
            "POST"
        } else {
            "GET"
        };
        let bytes = self.next() % 50_000;
        let _ = write!(
            out,
            "{}.{}.{}.{} - - [14/Mar/2026:{h:02}:{m:02}:{s:02} +0100] \"{method} {path} HTTP/1.1\" {status} {bytes} \"-\" \"{agent}\"",
            11 + c % 200,
            (c >> 3) % 250 + 1,
            (c * 7) % 250 + 1,
            (c * 13) % 250 + 1
        );
    }
}

/// A whole file of `n` lines.
pub fn generate(n: u64, seed: u64) -> String {
    let mut g = Gen::new(seed);
    let mut buf = String::new();
    let mut all = String::with_capacity(n as usize * 160);
    for i in 0..n {
        g.line(i, n, &mut buf);
        all.push_str(&buf);
        all.push('\n');
    }
    all
}
