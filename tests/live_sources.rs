//! The sources `vigil serve` and the console run beside the gateway
//! (`vigil::live::Sources`): their figures as the console shows them, a
//! followed file that cannot be read named with why, and a stop that lets
//! the engine drain and end.

use std::io::Write;
use std::time::{Duration, Instant};

use vigil::config::Config;
use vigil::engine::{LiveConfig, spawn_live};
use vigil::live::{SourceOptions, SourceStatus, Sources};

fn wait_for(sources: &Sources, what: &str, ok: impl Fn(&SourceStatus) -> bool) -> SourceStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = sources.status();
        if ok(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "waiting for {what}: {s:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A live engine on a fresh store in `dir`, and `opts`' sources (the
/// syslog addresses applied to the config as the CLI does) on a runtime.
fn start(
    dir: &std::path::Path,
    opts: &SourceOptions,
) -> (
    vigil::engine::EngineHandle,
    std::thread::JoinHandle<()>,
    tokio::runtime::Runtime,
    Sources,
) {
    let mut cfg = Config::default();
    opts.apply_to(&mut cfg);
    assert_eq!(cfg.syslog.udp, opts.syslog_udp);
    assert_eq!(cfg.syslog.tcp, opts.syslog_tcp);
    let (engine, engine_thread) =
        spawn_live(&cfg, LiveConfig::default(), &dir.join("vigil.db")).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sources = Sources::start(&cfg, opts, &engine, runtime.handle()).unwrap();
    (engine, engine_thread, runtime, sources)
}

#[test]
fn status_names_an_unreadable_file_counts_syslog_and_stop_lets_the_engine_end() {
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("auth.log");
    // A directory where the file should be: it cannot be read (yet).
    std::fs::create_dir(&log).unwrap();
    let opts = SourceOptions {
        syslog_udp: Some("127.0.0.1:0".into()),
        tail: vec![log.clone()],
        ..SourceOptions::default()
    };
    let (engine, engine_thread, _runtime, sources) = start(dir.path(), &opts);
    // What `vigil serve` logs each minute for the files and the journal.
    let mut minutes = sources.unparsed_minutes();
    assert_eq!(minutes.report(), Vec::<String>::new());

    let s = sources.status();
    assert!(!s.is_empty());
    assert_eq!(s.files, 1);
    assert_eq!(
        s.unreadable,
        vec![(log.display().to_string(), "it is a directory".to_string())]
    );
    assert_eq!(s.syslog.len(), 1, "{s:?}");
    let udp = s.syslog[0].strip_prefix("udp ").expect("udp listener");
    assert_ne!(udp, "127.0.0.1:0", "the bound port is shown");
    assert_eq!(s.journal_entries, None);

    // The file becomes readable: it leaves the list and its lines count.
    std::fs::remove_dir(&log).unwrap();
    let mut f = std::fs::File::create(&log).unwrap();
    writeln!(
        f,
        "Nov 22 05:11:01 db1 sshd[77]: Failed password for root from 203.0.113.50 port 40001 ssh2"
    )
    .unwrap();
    writeln!(f, "not a log line anyone wrote").unwrap();
    drop(f);
    let s = wait_for(&sources, "the file read", |s| s.file_lines == 2);
    assert!(s.unreadable.is_empty(), "{s:?}");
    // The line that is not a log line is counted, and shown with why.
    assert_eq!(s.file_unparsed, 1, "{s:?}");
    let u = s.last_unparsed.expect("the unparsed line is kept");
    assert_eq!(
        (u.origin.as_str(), u.line.as_str()),
        (
            log.display().to_string().as_str(),
            "not a log line anyone wrote"
        )
    );
    assert!(u.why.contains("no syslog timestamp"), "{u:?}");
    assert_eq!(
        minutes.report(),
        [format!(
            "files, last minute: 1 line not understood, the latest {}: \"not a log line \
             anyone wrote\" (no syslog timestamp or `host program[pid]:` header)",
            log.display()
        )]
    );
    assert_eq!(
        minutes.report(),
        Vec::<String>::new(),
        "each minute its own"
    );

    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .send_to(
            b"<38>Nov 22 05:10:00 web1 sshd[123]: Failed password for root from 198.51.100.7 port 50000 ssh2",
            udp,
        )
        .unwrap();
    // A sender speaking something else: its datagram is the newest
    // unparsed line now.
    socket.send_to(b"\x16\x03\x01 not syslog", udp).unwrap();
    let s = wait_for(&sources, "the datagrams", |s| s.syslog_received == 2);
    assert_eq!(s.syslog_unparsed, 1, "{s:?}");
    // One sender, heard from just now: not silent.
    assert_eq!((s.syslog_senders, s.syslog_silent.len()), (1, 0), "{s:?}");
    let u = s.last_unparsed.expect("the newest unparsed line");
    assert_eq!(u.origin, "syslog from 127.0.0.1", "{u:?}");
    assert_eq!(
        u.line, "\u{fffd}\u{fffd}\u{fffd} not syslog",
        "control bytes shown inert"
    );

    let summaries = sources.stop();
    assert_eq!(summaries.len(), 2, "{summaries:?}");
    assert!(
        summaries[0].starts_with("syslog: 2 received"),
        "{summaries:?}"
    );
    assert!(
        summaries[0].ends_with(
            "; last unparsed: syslog from 127.0.0.1: \"\u{fffd}\u{fffd}\u{fffd} not syslog\" \
             (no syslog timestamp or `host program[pid]:` header)"
        ),
        "{summaries:?}"
    );
    assert!(summaries[1].starts_with("tail: 2 lines"), "{summaries:?}");
    assert!(
        summaries[1].contains("; last unparsed: ") && summaries[1].contains("not a log line"),
        "{summaries:?}"
    );
    // Every engine handle the sources held is gone: the engine ends once
    // ours goes too.
    drop(engine);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(engine_thread.join().is_ok());
    });
    assert_eq!(
        done_rx.recv_timeout(Duration::from_secs(10)),
        Ok(true),
        "the engine did not stop after the sources did"
    );
}

#[test]
fn a_syslog_address_that_cannot_be_bound_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let opts = SourceOptions {
        syslog_udp: Some(addr.clone()),
        ..SourceOptions::default()
    };
    let mut cfg = Config::default();
    opts.apply_to(&mut cfg);
    let (engine, engine_thread) =
        spawn_live(&cfg, LiveConfig::default(), &dir.path().join("vigil.db")).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let err = Sources::start(&cfg, &opts, &engine, runtime.handle())
        .err()
        .expect("the address is taken");
    assert_eq!(err.to_string(), format!("binding syslog udp {addr}"));
    drop(engine);
    engine_thread.join().unwrap();
}

/// At stop, the summary counts every message already read as answered:
/// what was received was accepted, not "still on its way" to the store.
#[test]
fn the_stop_summary_adds_up_for_messages_still_being_committed() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SourceOptions {
        syslog_tcp: Some("127.0.0.1:0".into()),
        ..SourceOptions::default()
    };
    let (engine, engine_thread, runtime, sources) = start(dir.path(), &opts);
    let tcp = sources.status().syslog[0]
        .strip_prefix("tcp ")
        .expect("tcp listener")
        .to_string();
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let lines: String = (0..500)
        .map(|i| {
            format!(
                "<38>1 {ts} summed sshd 4242 - - Accepted password for u{i} from 192.0.2.70 port {} ssh2\n",
                40000 + i
            )
        })
        .collect();
    // The store held (within its busy timeout) while the lines come: their
    // commits are still waiting when the stop begins.
    let locker = rusqlite::Connection::open(dir.path().join("vigil.db")).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let mut c = std::net::TcpStream::connect(&tcp).unwrap();
    c.write_all(lines.as_bytes()).unwrap();
    drop(c);
    wait_for(&sources, "the lines read", |s| s.syslog_received == 500);
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        locker.execute_batch("ROLLBACK").unwrap();
    });
    let summaries = sources.stop();
    release.join().unwrap();
    assert!(
        summaries[0].starts_with("syslog: 500 received, 0 UDP datagrams lost"),
        "{summaries:?}"
    );
    assert!(
        summaries[0].contains(", 500 accepted, 0 refused by the engine"),
        "{summaries:?}"
    );
    drop(engine);
    drop(runtime);
    engine_thread.join().unwrap();
}
