//! Sends syslog datagrams (RFC 3164 sshd lines, each a different user and
//! address) to a UDP listener, as fast as it can or at a set rate, and says
//! how many it sent in how long. What `vigil serve --syslog-udp` received
//! and lost is in its summary at stop.
//!
//! ```sh
//! vigil serve --data-dir /tmp/v --syslog-udp 127.0.0.1:5514 &
//! cargo run --release --example udp_burst -- 127.0.0.1:5514 300000 100000
//! kill -TERM %1    # syslog: N received, M UDP datagrams lost (receive buffer full), …
//! ```
//!
//! usage: udp_burst ADDR COUNT [RATE per second; 0 or absent: no pacing]

use std::net::UdpSocket;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: udp_burst ADDR COUNT [RATE]";
    let (Some(addr), Some(count)) = (args.first(), args.get(1)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let Ok(count) = count.parse::<u64>() else {
        eprintln!("COUNT must be a number\n{usage}");
        std::process::exit(2);
    };
    let rate = match args.get(2).map(|r| r.parse::<u64>()) {
        None => 0,
        Some(Ok(r)) => r,
        Some(Err(_)) => {
            eprintln!("RATE must be a number\n{usage}");
            std::process::exit(2);
        }
    };
    let socket = match UdpSocket::bind("0.0.0.0:0").and_then(|s| s.connect(addr).map(|()| s)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("udp_burst: {addr}: {e}");
            std::process::exit(1);
        }
    };
    let stamp = chrono::Utc::now().format("%b %e %H:%M:%S");
    let start = Instant::now();
    let mut failed = 0u64;
    for i in 0..count {
        let line = format!(
            "<38>{stamp} fw{} sshd[123]: Accepted password for u{} from 10.{}.{}.{} port {} ssh2",
            i % 50,
            i % 1000,
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255,
            1024 + i % 60_000
        );
        if socket.send(line.as_bytes()).is_err() {
            failed += 1;
        }
        if rate > 0 && i % 100 == 0 {
            let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "sent {} datagrams in {secs:.2} s ({:.0}/s){}",
        count - failed,
        (count - failed) as f64 / secs,
        if failed > 0 {
            format!(", {failed} not sent")
        } else {
            String::new()
        }
    );
}
