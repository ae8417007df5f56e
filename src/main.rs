//! The `vigil` command line: a thin layer over the library.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use clap::{Parser as ClapParser, Subcommand, ValueEnum};
use serde::Serialize;

use vigil::config::Config;
use vigil::engine::Pipeline;
use vigil::event::Event;
use vigil::parse::{ParseOptions, Parser, SourceKind};
use vigil::sources::replay::LineReader;
use vigil::store::StoreWriter;

// glibc malloc slows to a crawl when one thread frees what another
// allocated (scan parses on one thread and detects on another); mimalloc
// handles that pattern well. Measured: see README "Benchmarks". Built with
// `no_thp`: asking for transparent huge pages made every fresh 2 MiB region
// cost a 2 MiB zeroing fault (11% of the gateway's CPU under batch load,
// and the ~30 ms worst-case answers); without it batches ran 3-15% faster,
// scans ~10% faster with half the resident memory.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(ClapParser)]
#[command(
    name = "vigil",
    version,
    about = "Vigil: a terminal SOC console — parse logs, correlate attacks, respond.",
    after_help = "Examples:\n  vigil scan /var/log/auth.log            alerts as JSON Lines on stdout, summary on stderr\n  vigil scan --data-dir ./vigil-data auth.log   also keep events, alerts and host state in SQLite\n  vigil parse /var/log/auth.log           one normalised JSON object per input line\n  zcat auth.log.2.gz | vigil scan -       read standard input\n  vigil                                   the console (engine and gateway in this process)\n  vigil console --tail /var/log/auth.log  the console, following a log file as it grows\n  vigil serve --data-dir ./vigil-data     the engine headless, for servers\n  vigil serve --syslog-udp 127.0.0.1:5514 --tail /var/log/auth.log   with syslog and a file\n  vigil audit verify vigil-data/audit.jsonl        check the audit log's hash chain\n  vigil audit event vigil-data/audit.jsonl ID      every audit record of one event"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Kind {
    /// Detect per line: syslog (auth, netfilter, filterlog, web programs) or bare web logs.
    Auto,
    /// Linux auth messages in syslog.
    Auth,
    /// Syslog envelope only.
    Syslog,
    /// nginx / Apache access and error logs.
    #[value(alias = "nginx", alias = "apache")]
    Web,
    /// netfilter kernel lines, pfSense / OPNsense filterlog.
    #[value(alias = "iptables", alias = "pfsense", alias = "opnsense")]
    Firewall,
    /// JSON lines: sec.event.v1, or any JSON log through the `[json]` field mapping.
    Json,
}

impl From<Kind> for SourceKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Auto => SourceKind::Auto,
            Kind::Auth => SourceKind::Auth,
            Kind::Syslog => SourceKind::Syslog,
            Kind::Web => SourceKind::Web,
            Kind::Firewall => SourceKind::Firewall,
            Kind::Json => SourceKind::Json,
        }
    }
}

#[derive(clap::Args)]
struct InputArgs {
    /// Log format of the input.
    #[arg(long = "source", value_enum, default_value = "auto")]
    kind: Kind,
    /// Time that year-less syslog dates are placed against (RFC 3339).
    /// Default: the file's modification time (now, for stdin).
    #[arg(long, value_name = "TIME")]
    reference_time: Option<String>,
    /// Host name for lines that carry none.
    #[arg(long, default_value = "unknown")]
    host: String,
    /// TOML configuration (rule thresholds, policy, JSON field mapping).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log files to read, oldest first (e.g. auth.log.1 auth.log); `-` is
    /// standard input. Detection runs across all of them in the order given.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the detection pipeline over log files on event time: alerts as JSON
    /// Lines on stdout, a summary on stderr.
    Scan {
        #[command(flatten)]
        input: InputArgs,
        /// Skip ML scoring. (The ML ensemble is not built yet: scan runs the
        /// correlation rules only, with or without this flag.)
        #[arg(long)]
        no_ml: bool,
        /// Keep events, alerts, host state and bans in SQLite under DIR.
        /// Without it, scan writes nothing to disk.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Print one JSON object per input line, in order: the normalised event,
    /// or the reason the line was not understood.
    Parse {
        #[command(flatten)]
        input: InputArgs,
    },
    /// Run the engine headless with the signed HTTP gateway (MiniSIEM-compatible
    /// `POST /ingest`). Needs a shared secret: ARES_SHARED_SECRET.
    Serve {
        /// Address to listen on (default from config: 127.0.0.1:8000).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Where the SQLite store and the audit log live.
        #[arg(long, value_name = "DIR", default_value = "vigil-data")]
        data_dir: PathBuf,
        /// TOML configuration.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(flatten)]
        sources: SourceArgs,
    },
    /// The console (the default): engine and signed gateway in this process,
    /// with a terminal UI for triage. Needs a terminal.
    Console {
        /// Address the gateway listens on (default from config: 127.0.0.1:8000).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Where the store, audit log and generated secret live (default:
        /// the platform data directory, e.g. ~/.local/share/vigil).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// TOML configuration.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(flatten)]
        sources: SourceArgs,
    },
    /// Audit-log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

/// The log sources `serve` and the console run beside the gateway.
#[derive(clap::Args)]
struct SourceArgs {
    /// Also listen for syslog over UDP on this address (overrides config).
    #[arg(long, value_name = "ADDR")]
    syslog_udp: Option<String>,
    /// Also listen for syslog over TCP on this address (overrides config).
    #[arg(long, value_name = "ADDR")]
    syslog_tcp: Option<String>,
    /// Follow this log file as it grows, through rotation and
    /// truncation (repeatable); a restart resumes where the last run
    /// stopped reading it, the first run starts at its end.
    #[arg(long, value_name = "FILE")]
    tail: Vec<PathBuf>,
    /// Read followed files from their start instead of their end or where
    /// the last run stopped (lines stored before are not stored twice).
    #[arg(long, requires = "tail")]
    from_start: bool,
    /// Also follow the systemd journal (runs `journalctl -o json --follow`,
    /// after the last entry the last run read).
    #[arg(long)]
    journald: bool,
}

impl SourceArgs {
    fn into_options(self) -> vigil::live::SourceOptions {
        vigil::live::SourceOptions {
            syslog_udp: self.syslog_udp,
            syslog_tcp: self.syslog_tcp,
            tail: self.tail,
            from_start: self.from_start,
            journald: self.journald,
        }
    }
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Re-compute the hash chain of an audit log and report the first broken link.
    Verify {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// A chain head `vigil serve` logged (at start, rotation or stop):
        /// also check that the record with this hash is still in the chain,
        /// so nothing up to it was cut off the end.
        #[arg(long, value_name = "HASH")]
        head: Option<String>,
    },
    /// Where the audit log names an event: each record of it (accepted or
    /// refused, on `/ingest` or as a line of a batch), in the log and the
    /// rotated files before it, oldest first.
    Event {
        /// The audit log (`audit.jsonl` in the data dir).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The event's id, as its producer sent it.
        #[arg(value_name = "EVENT_ID")]
        event_id: String,
    },
}

/// Logs (what `vigil serve` is doing, and problems the library meets on
/// the way) go to stderr through `tracing`; the console sends its stderr
/// to `console.log`. `VIGIL_LOG` sets the level: error, warn, info (the
/// default), debug (adds one line per gateway refusal and per batch), trace
/// or off. Command output (`scan`, `parse`) is not logging and is unaffected.
fn init_logging() -> Result<()> {
    use tracing_subscriber::filter::LevelFilter;
    let level = match std::env::var("VIGIL_LOG") {
        Err(_) => LevelFilter::INFO,
        Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
            "" | "info" => LevelFilter::INFO,
            "error" => LevelFilter::ERROR,
            "warn" => LevelFilter::WARN,
            "debug" => LevelFilter::DEBUG,
            "trace" => LevelFilter::TRACE,
            "off" => LevelFilter::OFF,
            other => bail!(
                "VIGIL_LOG={}: expected error, warn, info, debug, trace or off",
                vigil::util::sanitize_for_terminal(other)
            ),
        },
    };
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_max_level(level)
        .with_target(false)
        .try_init()
        .map_err(|e| anyhow::anyhow!("starting the log: {e}"))
}

fn main() {
    let cli = Cli::parse();
    let result = init_logging().and_then(|()| match cli.command {
        None => console(vigil::tui::ConsoleOptions::default()),
        Some(Command::Console {
            listen,
            data_dir,
            config,
            sources,
        }) => console(vigil::tui::ConsoleOptions {
            listen,
            data_dir,
            config,
            sources: sources.into_options(),
        }),
        Some(Command::Scan {
            input,
            no_ml: _,
            data_dir,
        }) => scan(&input, data_dir.as_deref()),
        Some(Command::Parse { input }) => parse(&input),
        Some(Command::Serve {
            listen,
            data_dir,
            config,
            sources,
        }) => serve(listen, &data_dir, config.as_deref(), sources.into_options()),
        Some(Command::Audit {
            command: AuditCommand::Verify { file, head },
        }) => audit_verify(&file, head.as_deref()),
        Some(Command::Audit {
            command: AuditCommand::Event { file, event_id },
        }) => audit_event(&file, &event_id),
    });
    if let Err(e) = result {
        // A closed stdout (e.g. `| head`) is a normal way to stop.
        let broken_pipe = e.chain().any(|c| {
            c.downcast_ref::<io::Error>()
                .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
                || c.downcast_ref::<serde_json::Error>()
                    .and_then(|j| j.io_error_kind())
                    == Some(io::ErrorKind::BrokenPipe)
        });
        if broken_pipe {
            std::process::exit(0);
        }
        // Paths and input in the message may carry control characters; a
        // message of several lines (a TOML error points at the column)
        // keeps them, indented.
        eprintln!(
            "vigil: error: {}",
            vigil::util::sanitize_lines_for_terminal(
                &vigil::util::join_causes(e.chain().map(ToString::to_string)),
                "    "
            )
        );
        std::process::exit(2);
    }
}

/// An opened input with what we know about it.
struct Input {
    name: String,
    reader: Box<dyn BufRead + Send>,
    len: Option<u64>,
    reference: DateTime<Utc>,
}

async fn report_refusals_every_minute(
    gateway: std::sync::Arc<vigil::sources::gateway::GatewayStats>,
    syslog: std::sync::Arc<vigil::sources::syslog::SyslogStats>,
    mut unparsed: vigil::live::UnparsedMinutes,
) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
    every.tick().await;
    let mut last = gateway.counts();
    let mut syslog_before = syslog.minute_start();
    loop {
        every.tick().await;
        let now = gateway.counts();
        if let Some(line) = now.since(&last).minute_report() {
            tracing::warn!("{line}");
        }
        last = now;
        let lines;
        (lines, syslog_before) = syslog.minute_report(syslog_before);
        for line in lines.into_iter().chain(unparsed.report()) {
            tracing::warn!("{line}");
        }
    }
}

fn open_inputs(args: &InputArgs) -> Result<Vec<Input>> {
    let fixed = args
        .reference_time
        .as_deref()
        .map(|t| {
            DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&Utc))
                .with_context(|| format!("--reference-time {t:?} is not an RFC 3339 time"))
        })
        .transpose()?;
    let mut out = Vec::new();
    let mut stdin_used = false;
    for path in &args.files {
        if path == Path::new("-") {
            if stdin_used {
                bail!("standard input (-) given more than once");
            }
            stdin_used = true;
            out.push(Input {
                name: "-".into(),
                reader: Box::new(BufReader::with_capacity(1 << 16, io::stdin())),
                len: None,
                reference: fixed.unwrap_or_else(Utc::now),
            });
            continue;
        }
        let f = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let meta = f
            .metadata()
            .with_context(|| format!("cannot stat {}", path.display()))?;
        if meta.is_dir() {
            bail!("{} is a directory, not a log file", path.display());
        }
        let mtime = meta.modified().ok().map(DateTime::<Utc>::from);
        out.push(Input {
            name: path.display().to_string(),
            reader: Box::new(BufReader::with_capacity(1 << 16, f)),
            len: Some(meta.len()),
            reference: fixed.or(mtime).unwrap_or_else(Utc::now),
        });
    }
    Ok(out)
}

fn parser_for(input: &Input, args: &InputArgs, cfg: &Config) -> Parser {
    let mut opts = ParseOptions::new(args.kind.into(), input.reference, input.name.clone());
    opts.default_host = args.host.clone();
    opts.json_mapping = cfg.json.clone();
    Parser::new(opts)
}

#[derive(Serialize)]
struct ParseRow<'a> {
    file: &'a str,
    line: u64,
    parsed: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    event: Option<&'a Event>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn parse(args: &InputArgs) -> Result<()> {
    let cfg = Config::load(args.config.as_deref())?;
    let inputs = open_inputs(args)?;
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    for input in inputs {
        let mut parser = parser_for(&input, args, &cfg);
        let mut lines = LineReader::new(input.reader);
        while let Some(line) = lines
            .next_line()
            .with_context(|| format!("reading {}", input.name))?
        {
            let res = parser.parse_line(&line.text, line.number);
            let row = match &res {
                Ok(ev) => ParseRow {
                    file: &input.name,
                    line: line.number,
                    parsed: true,
                    event: Some(ev),
                    error: None,
                },
                Err(e) => ParseRow {
                    file: &input.name,
                    line: line.number,
                    parsed: false,
                    event: None,
                    error: Some(e.to_string()),
                },
            };
            serde_json::to_writer(&mut out, &row)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(())
}

/// A one-line progress display on stderr, only when stderr is a terminal.
struct Progress {
    enabled: bool,
    last: Instant,
    start: Instant,
}

impl Progress {
    fn new() -> Self {
        let now = Instant::now();
        Progress {
            enabled: io::stderr().is_terminal(),
            last: now,
            start: now,
        }
    }

    fn update(&mut self, name: &str, done: u64, total: Option<u64>, lines: u64) {
        if !self.enabled || self.last.elapsed() < Duration::from_millis(150) {
            return;
        }
        self.last = Instant::now();
        let rate = lines as f64 / self.start.elapsed().as_secs_f64().max(1e-9);
        let bar = match total.filter(|t| *t > 0) {
            Some(t) => {
                let frac = (done as f64 / t as f64).min(1.0);
                let filled = (frac * 30.0) as usize;
                format!(
                    "[{}{}] {:>3.0}%",
                    "#".repeat(filled),
                    " ".repeat(30 - filled),
                    frac * 100.0
                )
            }
            None => format!("{} MiB", done >> 20),
        };
        let name = vigil::util::sanitize_for_terminal(name);
        eprint!("\r\x1b[2K{name} {bar} {lines} lines, {:.0} lines/s", rate);
    }

    fn clear(&self) {
        if self.enabled {
            eprint!("\r\x1b[2K");
        }
    }
}

/// Events parsed from one stretch of one input. `events[..filled]` are this
/// batch's; slots past `filled` are recycled buffers.
struct ParsedBatch {
    input: usize,
    events: Vec<Event>,
    filled: usize,
    lines: u64,
    unparsed: u64,
    bytes_read: u64,
}

const BATCH: usize = 1024;

/// The parse thread: reads and parses every input in order into batches.
/// Consumed batches come back on `recycled`, so their events' buffers are
/// reused and freed by the thread that allocated them.
fn parse_inputs(
    inputs: Vec<Input>,
    parsers: Vec<Parser>,
    tx: std::sync::mpsc::SyncSender<Result<ParsedBatch>>,
    recycled: std::sync::mpsc::Receiver<Vec<Event>>,
) {
    let fresh = |idx: usize| ParsedBatch {
        input: idx,
        events: recycled
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH)),
        filled: 0,
        lines: 0,
        unparsed: 0,
        bytes_read: 0,
    };
    for (idx, (input, mut parser)) in inputs.into_iter().zip(parsers).enumerate() {
        let mut lines = LineReader::new(input.reader);
        let mut batch = fresh(idx);
        loop {
            let line = match lines.next_line() {
                Ok(Some(l)) => l,
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Err(
                        anyhow::Error::new(e).context(format!("reading {}", input.name))
                    ));
                    return;
                }
            };
            batch.lines += 1;
            if batch.filled == batch.events.len() {
                batch
                    .events
                    .push(Event::new(String::new(), Utc::now(), String::new()));
            }
            match parser.parse_line_into(&line.text, line.number, &mut batch.events[batch.filled]) {
                Ok(()) => batch.filled += 1,
                Err(_) => batch.unparsed += 1,
            }
            if batch.lines as usize >= BATCH {
                batch.bytes_read = lines.bytes_read();
                let full = std::mem::replace(&mut batch, fresh(idx));
                if tx.send(Ok(full)).is_err() {
                    return; // the consumer stopped (error or closed stdout)
                }
            }
        }
        batch.bytes_read = lines.bytes_read();
        if tx.send(Ok(batch)).is_err() {
            return;
        }
    }
}

fn scan(args: &InputArgs, data_dir: Option<&Path>) -> Result<()> {
    let cfg = Config::load(args.config.as_deref())?;
    let inputs = open_inputs(args)?;
    let store = match data_dir {
        Some(dir) => {
            let db = dir.join("vigil.db");
            Some(
                StoreWriter::spawn(&db, cfg.store.retention())
                    .with_context(|| format!("opening store {}", db.display()))?,
            )
        }
        None => None,
    };
    let started = Instant::now();
    let wall_now = Utc::now();
    let mut pipeline = Pipeline::new(&cfg, store);
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut progress = Progress::new();
    let (mut lines_total, mut unparsed) = (0u64, 0u64);
    let mut emitted = 0u64;
    let names: Vec<String> = inputs.iter().map(|i| i.name.clone()).collect();
    let lens: Vec<Option<u64>> = inputs.iter().map(|i| i.len).collect();
    // Parsing runs on its own thread, detection on this one: the two halves
    // of the work overlap on a two-core machine. Batches keep the channel
    // cheap; the bounded channel keeps memory flat.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<ParsedBatch>>(8);
    let (back_tx, back_rx) = std::sync::mpsc::sync_channel::<Vec<Event>>(8);
    let parsers: Vec<Parser> = inputs.iter().map(|i| parser_for(i, args, &cfg)).collect();
    let reader = std::thread::Builder::new()
        .name("vigil-parse".into())
        .spawn(move || parse_inputs(inputs, parsers, tx, back_rx))
        .context("starting the parser thread")?;
    for batch in rx {
        let batch = batch?;
        lines_total += batch.lines;
        unparsed += batch.unparsed;
        for ev in &batch.events[..batch.filled] {
            pipeline.process(ev, wall_now)?;
        }
        // Hand the buffers back; if the parser has enough, they are dropped here.
        let _ = back_tx.try_send(batch.events);
        for a in pipeline.take_closed_alerts()? {
            serde_json::to_writer(&mut out, &a)?;
            out.write_all(b"\n")?;
            emitted += 1;
        }
        progress.update(
            &names[batch.input],
            batch.bytes_read,
            lens[batch.input],
            lines_total,
        );
    }
    if reader.join().is_err() {
        bail!("the parser thread panicked");
    }
    let mut closed = pipeline.take_closed_alerts()?;
    let (rest, stats, policy) = pipeline.finish()?;
    closed.extend(rest);
    for a in &closed {
        serde_json::to_writer(&mut out, a)?;
        out.write_all(b"\n")?;
        emitted += 1;
    }
    out.flush()?;
    progress.clear();

    let secs = started.elapsed().as_secs_f64();
    let mut err = io::stderr().lock();
    writeln!(
        err,
        "vigil scan: {lines_total} lines ({unparsed} not understood), {} events, {} failure events, {emitted} alerts in {secs:.2} s ({:.0} lines/s)",
        stats.events,
        stats.failures,
        lines_total as f64 / secs.max(1e-9),
    )?;
    if stats.untimed > 0 {
        writeln!(
            err,
            "  {} events carried no timestamp (journald short format?): time-window rules skipped them",
            stats.untimed
        )?;
    }
    for (rule, n) in &stats.alerts_by_rule {
        writeln!(err, "  {rule}: {n}")?;
    }
    let horizon = closed
        .iter()
        .map(|a| a.last_seen_utc)
        .max()
        .unwrap_or(wall_now);
    let quarantined = policy.quarantined_hosts();
    if !quarantined.is_empty() {
        let names: Vec<&str> = quarantined.iter().map(|(h, _)| *h).collect();
        writeln!(err, "  quarantined hosts: {}", names.join(", "))?;
    }
    let bans = policy.active_bans(horizon);
    if !bans.is_empty() {
        writeln!(err, "  IP bans in force at end of log: {}", bans.len())?;
    }
    if let Some(dir) = data_dir {
        writeln!(err, "  stored in {}", dir.join("vigil.db").display())?;
        if let Some(line) = stats
            .store
            .as_ref()
            .and_then(vigil::store::describe_retention)
        {
            writeln!(err, "  {line}")?;
        }
    }
    Ok(())
}

fn console(opts: vigil::tui::ConsoleOptions) -> Result<()> {
    if !io::stdout().is_terminal() || !io::stdin().is_terminal() {
        bail!(
            "the console needs a terminal. For a headless engine run `vigil serve`; \
             `vigil --help` lists the commands."
        );
    }
    vigil::tui::run(opts)?;
    Ok(())
}

/// Verifies `file` and the rotated files before it (oldest first), one
/// line each; fails at the first broken one.
fn audit_verify(file: &Path, head: Option<&str>) -> Result<()> {
    use vigil::store::audit_log::{Verdict, find_record, verify_chain};
    if let Some(h) = head {
        if h.len() != 64
            || !h
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            bail!("--head takes a chain head as vigil serve logs it: 64 lowercase hex digits");
        }
    }
    let files = verify_chain(file).with_context(|| format!("reading {}", file.display()))?;
    let paths: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
    for f in files {
        let path = f.path.display().to_string();
        let shown = vigil::util::sanitize_for_terminal(&path);
        match f.verdict {
            Verdict::Intact { records, previous } => {
                let how = match (previous, f.linked) {
                    (_, true) => ", continues the file above".to_string(),
                    (Some(p), false) => {
                        let p = vigil::util::sanitize_for_terminal(&p);
                        format!(" (continues {p}, which is not here: checked from this file on)")
                    }
                    (None, false) => String::new(),
                };
                println!("{shown}: intact, {records} records{how}");
            }
            Verdict::Broken { line, reason } => {
                bail!("{shown}: chain broken at line {line}: {reason}")
            }
        }
    }
    if let Some(h) = head {
        match find_record(&paths, h).with_context(|| format!("reading {}", file.display()))? {
            Some((at, line, after)) => {
                let at = at.display().to_string();
                println!(
                    "head {h}: {} line {line}, {after} records after it",
                    vigil::util::sanitize_for_terminal(&at)
                );
            }
            None => bail!(
                "head {h}: no record in the chain hashes to it: records up to it were cut off \
                 (or it was logged for another audit log)"
            ),
        }
    }
    Ok(())
}

/// Prints each record of `file` (and the rotated files before it) that
/// names `event_id`; fails when none does.
fn audit_event(file: &Path, event_id: &str) -> Result<()> {
    use vigil::store::audit_log::{chain_files, find_event};
    // The gateway takes ids of 8 to 128 characters (sec.event.v1).
    let chars = event_id.chars().count();
    if !(1..=128).contains(&chars) {
        bail!("an event id is 1 to 128 characters (this one is {chars})");
    }
    if !file.is_file() {
        bail!("{}: no such audit log", file.display());
    }
    let files = chain_files(file).with_context(|| format!("reading {}", file.display()))?;
    let found =
        find_event(&files, event_id).with_context(|| format!("reading {}", file.display()))?;
    let shown_id = vigil::util::sanitize_for_terminal(event_id);
    if found.is_empty() {
        bail!(
            "no audit record names event {shown_id} in {} ({} file{} read)",
            file.display(),
            files.len(),
            if files.len() == 1 { "" } else { "s" }
        );
    }
    let mut out = io::stdout().lock();
    for m in found {
        // Hosts and sources are producer text.
        writeln!(
            out,
            "{}",
            vigil::util::sanitize_for_terminal(&m.to_string())
        )?;
    }
    Ok(())
}

fn serve(
    listen: Option<String>,
    data_dir: &Path,
    config: Option<&Path>,
    sources: vigil::live::SourceOptions,
) -> Result<()> {
    let mut cfg = Config::load(config)?;
    sources.apply_to(&mut cfg);
    let listen = listen.unwrap_or_else(|| cfg.gateway.listen.clone());
    let vigil::live::Live {
        engine,
        engine_thread,
        gateway: state,
        db,
        audit_path,
    } = vigil::live::start(&cfg, data_dir, vigil::engine::LiveConfig::default())?;
    let gateway_stats = state.stats.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(vigil::live::worker_threads())
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let running = vigil::live::Sources::start(&cfg, &sources, &engine, runtime.handle())?;
    // The sources hold their own handles; the engine stops once they and
    // the router's are gone.
    drop(engine);
    let syslog_stats = running.syslog_stats();
    let unparsed_minutes = running.unparsed_minutes();
    let served = runtime.block_on(async move {
        let listener = vigil::live::bind(&listen).await?;
        let addr = listener.local_addr()?;
        // (An empty token is none: the routes stay open.)
        if !addr.ip().is_loopback() && cfg.gateway.read_token.as_deref().is_none_or(str::is_empty) {
            tracing::warn!(
                "the gateway on {addr} shows alerts, host states and decisions (who is banned, \
                 which hosts are watched) to anyone who can reach it: set VIGIL_READ_TOKEN \
                 (or [gateway] read_token) to require a bearer token for them"
            );
        }
        let stop = shutdown_signal();
        // Logged last: tests and scripts wait for this line.
        tracing::info!(
            "listening on {addr} (store {}, audit {})",
            vigil::util::sanitize_for_terminal(&db.display().to_string()),
            vigil::util::sanitize_for_terminal(&audit_path.display().to_string())
        );
        // A producer turned away (a rotated secret, a clock outside the
        // replay window, a sender left off allowed_senders), a sender gone
        // silent or a log whose format changed only show as silence in the
        // event stream: a minute with refusals or lines not understood gets
        // a line, a quiet minute none.
        let reporting = tokio::spawn(report_refusals_every_minute(
            gateway_stats.clone(),
            syslog_stats,
            unparsed_minutes,
        ));
        vigil::live::serve_gateway(listener, state, stop).await?;
        reporting.abort();
        tracing::info!("{}", gateway_stats.summary());
        anyhow::Ok(())
    });
    for line in running.stop() {
        tracing::info!("{line}");
    }
    served?;
    // Syslog connections still open hold engine handles: the runtime's end
    // drops them. Events already queued are committed.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    // Every engine handle is gone: the engine drains, commits and stops.
    if engine_thread.join().is_err() {
        bail!("the engine thread panicked");
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Registers the SIGINT and SIGTERM handlers now, and returns what
/// completes on either. Registered before the `listening on` line: a
/// handler set up only when the server first waited on it left a moment
/// after that line in which SIGTERM killed the process (no drain, exit
/// status by signal) instead of stopping it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let int = signal(SignalKind::interrupt());
        let term = signal(SignalKind::terminate());
        async move {
            let wait = |s: std::io::Result<tokio::signal::unix::Signal>| async move {
                match s {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = wait(int) => {},
                _ = wait(term) => {},
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
