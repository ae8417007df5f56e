//! Writes a synthetic auth.log to stdout: `gen_authlog [LINES] [SEED]`
//! (default 1,000,000 lines, seed 42). Used for throughput comparisons.

#[path = "../tests/support/authgen.rs"]
mod authgen;

use std::io::{BufWriter, Write};

fn main() {
    if let Err(e) = run() {
        // A closed pipe (`| head`) is a normal way to stop reading.
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("gen_authlog: {e}");
            std::process::exit(1);
        }
    }
}

fn run() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: u64 = match args.next().map(|a| a.parse()) {
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            eprintln!("usage: gen_authlog [LINES] [SEED]");
            std::process::exit(2);
        }
        None => 1_000_000,
    };
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(42);
    let out = std::io::stdout();
    let mut w = BufWriter::with_capacity(1 << 16, out.lock());
    let mut g = authgen::Gen::new(seed, 20_000);
    for i in 0..n {
        w.write_all(g.line(i, n).as_bytes())?;
        w.write_all(b"\n")?;
    }
    w.flush()
}
