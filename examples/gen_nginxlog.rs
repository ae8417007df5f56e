//! Writes a synthetic nginx access log to stdout: `gen_nginxlog [LINES] [SEED]`
//! (default 1,000,000 lines, seed 42). Used for throughput measurements.

#[path = "../tests/support/nginxgen.rs"]
mod nginxgen;

use std::io::{BufWriter, Write};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = match args.next().map(|a| a.parse()) {
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            eprintln!("usage: gen_nginxlog [LINES] [SEED]");
            std::process::exit(2);
        }
        None => 1_000_000,
    };
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(42);
    let out = std::io::stdout();
    let mut w = BufWriter::with_capacity(1 << 16, out.lock());
    let mut g = nginxgen::Gen::new(seed);
    let mut buf = String::new();
    for i in 0..n {
        g.line(i, n, &mut buf);
        if w.write_all(buf.as_bytes())
            .and_then(|_| w.write_all(b"\n"))
            .is_err()
        {
            return; // closed pipe
        }
    }
    let _ = w.flush();
}
