//! Load client for `vigil serve`: signed `sec.event.v1` events over
//! keep-alive HTTP/1.1 connections, reporting throughput and latency
//! percentiles.
//!
//! ```sh
//! ARES_SHARED_SECRET=bench SEC_RATE_LIMIT_PER_MIN=100000000 \
//!     cargo run --release -- serve --data-dir /tmp/vigil-load &
//! cargo run --release --example load_gateway -- --secret bench --concurrency 16 --seconds 10
//! cargo run --release --example load_gateway -- --secret bench --concurrency 4 --batch 1000
//! ```
//!
//! By default every 7th event is a failed login aimed at one of ten
//! attacked hosts per connection, each failure from a new source address:
//! those hosts cross the brute-force threshold (8 failures in 60 s) within
//! the first second at any rate, so from then on every failed login opens
//! an alert and bans an IP (the heaviest path), and the ten hosts also
//! trip the storm rule. The other events are logins spread over 1 000
//! hosts. `--fail-every 0` sends no failed logins: a quiet fleet.
//! `--report-every N` prints the rate of each N-second interval, to see
//! whether a long run holds its pace.
//!
//! `--pregenerate RATE` builds and signs the requests for RATE events a
//! second (over `--seconds`, at most 60) before the clock starts, so the
//! client does not share the cores with the server while it is measured
//! (its events are the same; their timestamps are up to a minute old, well
//! inside the replay window). A connection that runs out builds the rest
//! as it goes, and the summary says how many requests were built during
//! the run.
//!
//! Every request carries a fresh timestamp and a unique event id, so each
//! one goes through the whole path (signature, schema, replay window,
//! idempotency, rate limit, correlation, policy, commit). Events spread over
//! 1 000 hosts per connection so per-host state looks like a fleet, not one
//! box. Ids carry a per-run tag, so running twice against one server does
//! not turn the second run into cheap duplicate refusals. Only events the
//! server accepted are counted: a batch answered 200 with refused lines
//! counts its `accepted` figure, not its line count. Exit status 1 if any
//! request was not answered 200 or any line was refused.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use vigil::sources::gateway::sign;

struct Args {
    /// Distinguishes this run's event ids from every earlier run's.
    run: u64,
    addr: String,
    secret: String,
    concurrency: usize,
    threads: usize,
    seconds: u64,
    batch: usize,
    /// Every Nth event is a failed login against one of ten attacked hosts
    /// (0: none). The default, 7, opens a new alert and bans an IP with
    /// one event in 7 from the first second: the engine's heaviest path.
    fail_every: u64,
    /// Print the accepted rate every this many seconds (0: only the total),
    /// to see whether a long run holds its pace.
    report_every: u64,
    /// Events a second to build and sign before the clock starts (0: none).
    pregenerate: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        run: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        addr: "127.0.0.1:8000".into(),
        secret: std::env::var("ARES_SHARED_SECRET").unwrap_or_default(),
        concurrency: 16,
        threads: 1,
        seconds: 10,
        batch: 0,
        fail_every: 7,
        report_every: 0,
        pregenerate: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => a.addr = value()?,
            "--secret" => a.secret = value()?,
            "--concurrency" => a.concurrency = value()?.parse().map_err(|e| format!("{e}"))?,
            "--threads" => a.threads = value()?.parse().map_err(|e| format!("{e}"))?,
            "--seconds" => a.seconds = value()?.parse().map_err(|e| format!("{e}"))?,
            "--batch" => a.batch = value()?.parse().map_err(|e| format!("{e}"))?,
            "--fail-every" => a.fail_every = value()?.parse().map_err(|e| format!("{e}"))?,
            "--report-every" => a.report_every = value()?.parse().map_err(|e| format!("{e}"))?,
            "--pregenerate" => a.pregenerate = value()?.parse().map_err(|e| format!("{e}"))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.secret.is_empty() {
        return Err("--secret (or ARES_SHARED_SECRET) is required".into());
    }
    if a.concurrency == 0
        || a.concurrency > 1024
        || a.batch > 10_000
        || a.threads == 0
        || a.threads > 64
    {
        return Err("--concurrency 1..=1024, --threads 1..=64, --batch 0..=10000".into());
    }
    if a.pregenerate > 0 && (a.seconds > 60 || a.pregenerate > 2_000_000) {
        return Err("--pregenerate needs --seconds 1..=60 and a rate up to 2000000 (its timestamps must stay inside the replay window)".into());
    }
    Ok(a)
}

fn event(out: &mut Vec<u8>, run: u64, fail_every: u64, worker: usize, n: u64) {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    // Failed logins go to ten hosts, so brute force is detected from the
    // start whatever the rate (spread over all 1 000 hosts it would take
    // ~35 s at 25k events/s over 16 connections to reach 8 failures on
    // one host, so a short run never left the quiet path).
    let (action, host) = if fail_every > 0 && n % fail_every == 0 {
        ("login_failed", (n / fail_every) % 10)
    } else {
        ("session_opened", n % 1000)
    };
    let _ = write!(
        out,
        r#"{{"event_type":"sec.event.v1","event_id":"load-{run:x}-{worker:04}-{n:012}","source":"auth","host":"node-{worker}-{host}","timestamp_utc":"{now}","category":"auth","action":"{action}","severity":5,"user":"svc{u}","src_ip":"10.{a}.{b}.{c}","attributes":{{"bench":true}}}}"#,
        u = host % 50,
        a = worker % 256,
        b = (n / 256) % 256,
        c = n % 256,
    );
}

/// One request on a kept-alive connection; returns the status code and
/// the answer's body.
async fn exchange(
    conn: &mut BufReader<TcpStream>,
    request: &mut Vec<u8>,
    path: &str,
    body: &[u8],
    sig: &str,
) -> std::io::Result<(u16, Vec<u8>)> {
    // Head and body in one write, as wrk does: one segment per request.
    request.clear();
    write!(
        request,
        "POST {path} HTTP/1.1\r\nHost: vigil\r\nContent-Type: application/json\r\nX-ARES-SIGNATURE: {sig}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )?;
    request.extend_from_slice(body);
    conn.get_mut().write_all(request).await?;
    let mut line = String::new();
    conn.read_line(&mut line).await?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut len = 0usize;
    loop {
        line.clear();
        if conn.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; len];
    conn.read_exact(&mut body).await?;
    Ok((status, body))
}

/// The `accepted` count at the head of a `/ingest/batch` answer
/// (`{"accepted":N,"rejected":M,"results":[...]}`).
fn accepted_lines(answer: &[u8]) -> Option<u64> {
    let key = b"\"accepted\":";
    let at = answer.windows(key.len()).position(|w| w == key)? + key.len();
    let digits: Vec<u8> = answer[at..]
        .iter()
        .copied()
        .take_while(u8::is_ascii_digit)
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

struct Tally {
    ok: u64,
    other: u64,
    events: u64,
    /// Lines of 200-answered batches that the server refused.
    refused: u64,
    /// Requests built during the run (none were left pre-generated).
    built_live: u64,
    latencies_us: Vec<u32>,
}

/// One request's body and signature.
type Request = (Vec<u8>, String);

/// The body of the `n`th request of connection `w` (events numbered from
/// `*next`, which it advances), signed.
fn build(a: &Args, w: usize, next: &mut u64) -> Request {
    let lines = a.batch.max(1);
    let mut body = Vec::with_capacity(lines * 330);
    for _ in 0..lines {
        *next += 1;
        event(&mut body, a.run, a.fail_every, w, *next);
        body.push(b'\n');
    }
    let sig = sign(a.secret.as_bytes(), &body);
    (body, sig)
}

async fn worker(
    a: Arc<Args>,
    w: usize,
    prebuilt: Vec<Request>,
    mut n: u64,
    until: Instant,
    progress: Arc<AtomicU64>,
) -> std::io::Result<Tally> {
    let stream = TcpStream::connect(&a.addr).await?;
    stream.set_nodelay(true)?;
    let mut conn = BufReader::new(stream);
    let mut t = Tally {
        ok: 0,
        other: 0,
        events: 0,
        refused: 0,
        built_live: 0,
        latencies_us: Vec::new(),
    };
    let mut request = Vec::new();
    let mut prebuilt = prebuilt.into_iter();
    let lines = a.batch.max(1);
    while Instant::now() < until {
        let (body, sig) = match prebuilt.next() {
            Some(r) => r,
            None => {
                t.built_live += 1;
                build(&a, w, &mut n)
            }
        };
        let path = if a.batch == 0 {
            "/ingest"
        } else {
            "/ingest/batch"
        };
        let started = Instant::now();
        let (status, answer) = exchange(&mut conn, &mut request, path, &body, &sig).await?;
        t.latencies_us
            .push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
        if status == 200 {
            t.ok += 1;
            let accepted = if a.batch == 0 {
                1
            } else {
                accepted_lines(&answer).unwrap_or(0)
            };
            t.events += accepted;
            progress.fetch_add(accepted, Ordering::Relaxed);
            t.refused += lines as u64 - accepted.min(lines as u64);
        } else {
            t.other += 1;
        }
    }
    Ok(t)
}

/// Prints the accepted rate of each interval until the run ends.
async fn report(every: u64, started: Instant, until: Instant, progress: Arc<AtomicU64>) {
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::from_std(started) + Duration::from_secs(every),
        Duration::from_secs(every),
    );
    let mut last = 0;
    while Instant::now() < until {
        tick.tick().await;
        let now = progress.load(Ordering::Relaxed);
        println!(
            "  {:>5} s: {:.0} events/s",
            started.elapsed().as_secs(),
            (now - last) as f64 / every as f64
        );
        last = now;
    }
}

fn main() {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("load_gateway: {e}");
            std::process::exit(2);
        }
    };
    // Connections are tasks on a small runtime (as wrk and oha do), not a
    // thread each: sixteen client threads would crowd the server's threads
    // off a two-core machine and the figure would measure the scheduler.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.threads)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("load_gateway: cannot start the runtime: {e}");
            std::process::exit(2);
        }
    };
    // Pre-generated requests, per connection, and where each connection's
    // event numbers go on from.
    let per_conn = if a.pregenerate == 0 {
        0
    } else {
        (a.pregenerate * a.seconds).div_ceil(a.concurrency as u64 * a.batch.max(1) as u64)
    };
    let mut prebuilt: Vec<(Vec<Request>, u64)> = (0..a.concurrency)
        .map(|w| {
            let mut n = 0;
            let reqs = (0..per_conn).map(|_| build(&a, w, &mut n)).collect();
            (reqs, n)
        })
        .collect();
    if per_conn > 0 {
        eprintln!(
            "load_gateway: {} requests built and signed before the run",
            per_conn * a.concurrency as u64
        );
    }
    let a = Arc::new(a);
    let started = Instant::now();
    let until = started + Duration::from_secs(a.seconds);
    let progress = Arc::new(AtomicU64::new(0));
    let results: Vec<std::io::Result<Tally>> = runtime.block_on(async {
        let handles: Vec<_> = (0..a.concurrency)
            .map(|w| {
                let (reqs, n) = std::mem::take(&mut prebuilt[w]);
                tokio::spawn(worker(a.clone(), w, reqs, n, until, progress.clone()))
            })
            .collect();
        if a.report_every > 0 {
            tokio::spawn(report(a.report_every, started, until, progress.clone()));
        }
        let mut out = Vec::new();
        for h in handles {
            out.push(
                h.await
                    .unwrap_or_else(|_| Err(std::io::Error::other("worker panicked"))),
            );
        }
        out
    });
    let elapsed = started.elapsed().as_secs_f64();
    let (mut ok, mut other, mut events, mut refused, mut lat) = (0, 0, 0, 0, Vec::new());
    let mut built_live = 0;
    for r in results {
        match r {
            Ok(t) => {
                ok += t.ok;
                other += t.other;
                events += t.events;
                refused += t.refused;
                built_live += t.built_live;
                lat.extend(t.latencies_us);
            }
            Err(e) => {
                eprintln!("load_gateway: connection failed: {e}");
                other += 1;
            }
        }
    }
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |us| *us as f64 / 1000.0)
    };
    let built = if a.pregenerate == 0 {
        String::new()
    } else {
        format!(" [pre-generated; {built_live} built during the run]")
    };
    println!(
        "{} {} requests ({} x 200, {} other) = {} events accepted ({} refused) in {:.2} s: {:.0} events/s, {:.0} requests/s; latency ms p50 {:.2} p99 {:.2} max {:.2}{built}",
        if a.batch == 0 {
            "/ingest".to_string()
        } else {
            format!("/ingest/batch x{}", a.batch)
        },
        ok + other,
        ok,
        other,
        events,
        refused,
        elapsed,
        events as f64 / elapsed,
        (ok + other) as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        pct(1.0),
    );
    if other > 0 || refused > 0 {
        std::process::exit(1);
    }
}
