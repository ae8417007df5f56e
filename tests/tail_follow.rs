//! `vigil serve --tail FILE` on a real file: starts at the end, reads lines
//! as they are appended (even when written in pieces), and keeps following
//! through rotation (rename + new file) and truncation.

mod common;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

fn failures(host: &str, ip: &str, n: u32) -> String {
    let ts = chrono::Utc::now().format("%b %e %H:%M:%S");
    (0..n)
        .map(|i| {
            format!(
                "{ts} {host} sshd[77]: Failed password for root from {ip} port {} ssh2\n",
                50000 + i
            )
        })
        .collect()
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

#[test]
fn follows_growth_rotation_and_truncation() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("auth.log");
    // Already there before vigil starts: not read (tail starts at the end).
    append(&log, &failures("old-host", "192.0.2.1", 8));
    let server = common::Server::start_with(
        tempfile::tempdir().unwrap(),
        &[("ARES_SHARED_SECRET", "unused-here")],
        &["--tail", log.to_str().unwrap()],
    );
    assert!(
        server.banner.iter().any(|l| l.contains("following")),
        "{:?}",
        server.banner
    );

    // Growth, with the first line written in two pieces.
    let text = failures("grow-host", "198.51.100.1", 8);
    let (head, rest) = text.split_at(20);
    append(&log, head);
    std::thread::sleep(Duration::from_millis(450));
    append(&log, rest);
    server.wait_for_alert("BRUTE_FORCE_V1", "grow-host");

    // Rotation: rename, one last line to the old file, then a new file.
    let rotated = logs.path().join("auth.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    append(&rotated, &failures("late-host", "203.0.113.9", 1));
    append(&log, &failures("rot-host", "198.51.100.2", 8));
    server.wait_for_alert("BRUTE_FORCE_V1", "rot-host");

    // Truncation in place (copytruncate): shrink, then new lines.
    std::fs::File::create(&log).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    append(&log, &failures("trunc-host", "198.51.100.3", 8));
    server.wait_for_alert("BRUTE_FORCE_V1", "trunc-host");

    let mut server = server;
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    assert!(server.stop(), "graceful shutdown exits 0");
    let db = rusqlite::Connection::open(dir.path().join("vigil.db")).unwrap();
    let count = |host: &str| -> i64 {
        db.query_row("SELECT count(*) FROM events WHERE host = ?1", [host], |r| {
            r.get(0)
        })
        .unwrap()
    };
    assert_eq!(count("old-host"), 0, "lines before start are not read");
    assert_eq!(count("grow-host"), 8, "the split line is one event");
    assert_eq!(count("late-host"), 1, "the old file is read to its end");
    assert_eq!(count("rot-host"), 8);
    assert_eq!(count("trunc-host"), 8);
    drop(db);

    // What was saved names the file as it is after the truncation (its new
    // first bytes): the next start resumes in it, not from its start.
    let server = common::Server::start_with(
        dir,
        &[("ARES_SHARED_SECRET", "unused-here")],
        &["--tail", log.to_str().unwrap()],
    );
    append(&log, &failures("after-host", "198.51.100.9", 1));
    common::wait_for_stored(server.dir.path(), "after-host", 1, "after the restart");
    let (ok, text, dir) = server.stop_keeping_data();
    assert!(ok, "{text}");
    assert!(text.contains("auth.log: resuming at byte "), "{text}");
    assert!(
        text.contains("tail: 1 lines, 1 accepted, 0 already stored"),
        "{text}"
    );
    assert_eq!(common::stored_events(dir.path(), "trunc-host"), 8);
}

#[test]
fn from_start_reads_existing_lines_and_a_restart_does_not_store_them_twice() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("auth.log");
    append(&log, &failures("old-host", "192.0.2.1", 8));
    let args = ["--tail", log.to_str().unwrap(), "--from-start"];
    let env = [("ARES_SHARED_SECRET", "unused-here")];
    let mut server = common::Server::start_with(tempfile::tempdir().unwrap(), &env, &args);
    server.wait_for_alert("BRUTE_FORCE_V1", "old-host");
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    assert!(server.stop());
    // Same file again from its start: every line is a known event id.
    let mut server = common::Server::start_with(dir, &env, &args);
    // Lines appended now come after the old ones in the file: once they
    // raise their alert, the old lines have been read (and refused) too.
    append(&log, &failures("new-host", "192.0.2.2", 8));
    server.wait_for_alert("BRUTE_FORCE_V1", "new-host");
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    assert!(server.stop());
    let db = rusqlite::Connection::open(dir.path().join("vigil.db")).unwrap();
    let n: i64 = db
        .query_row(
            "SELECT count(*) FROM events WHERE host = 'old-host'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 8);
}

/// The gateway's per-host rate limit (300 a minute by default) is for
/// producers posting over HTTP, which hear 429 and can slow down. A local
/// log has no one to tell: under a real brute force a fifth of the failed
/// logins were refused and lost, and the live count disagreed with a scan
/// of the same file.
#[test]
fn a_busy_local_log_is_not_rate_limited() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("auth.log");
    append(&log, &failures("busy-host", "192.0.2.3", 400));
    // The sentinel's alert means every line before it was read.
    append(&log, &failures("sentinel-host", "192.0.2.4", 8));
    let args = ["--tail", log.to_str().unwrap(), "--from-start"];
    let server = common::Server::start_with(
        tempfile::tempdir().unwrap(),
        &[("ARES_SHARED_SECRET", "unused-here")],
        &args,
    );
    server.wait_for_alert("BRUTE_FORCE_V1", "sentinel-host");
    let (stopped, log_text, dir) = server.stop_keeping_data();
    assert!(stopped, "{log_text}");
    assert!(
        log_text.contains("tail: 408 lines, 408 accepted, 0 already stored"),
        "{log_text}"
    );
    assert_eq!(common::stored_events(dir.path(), "busy-host"), 400);
}

/// Lines read while the store cannot commit (here another process holds
/// its write lock past the 5 s busy timeout) are submitted again until
/// they are stored: nothing read from the file is lost.
#[test]
fn lines_read_while_the_store_fails_are_stored_once_it_recovers() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("auth.log");
    append(&log, "");
    let server = common::Server::start_with(
        tempfile::tempdir().unwrap(),
        &[("ARES_SHARED_SECRET", "unused-here")],
        &["--tail", log.to_str().unwrap()],
    );
    common::with_store_failing(server.dir.path(), || {
        append(&log, &failures("locked-host", "192.0.2.5", 8));
    });
    server.wait_for_alert("BRUTE_FORCE_V1", "locked-host");
    // Stored while vigil runs and the file is quiet, not only at stop.
    common::wait_for_stored(
        server.dir.path(),
        "locked-host",
        8,
        "the lines were not stored after the store recovered",
    );
    let (stopped, log_text, dir) = server.stop_keeping_data();
    assert!(stopped, "{log_text}");
    assert!(log_text.contains("commit failed"), "{log_text}");
    assert!(
        log_text.contains("tail: 8 lines, 8 accepted, 0 already stored"),
        "{log_text}"
    );
    assert_eq!(common::stored_events(dir.path(), "locked-host"), 8);
}

/// A path that cannot be read is reported (once per cause) rather than
/// looking like a quiet file, and followed from its start as soon as it
/// can be.
#[test]
fn an_unreadable_path_is_reported_and_followed_once_readable() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("auth.log");
    std::fs::create_dir(&log).unwrap();
    let server = common::Server::start_with(
        tempfile::tempdir().unwrap(),
        &[("ARES_SHARED_SECRET", "unused-here")],
        &["--tail", log.to_str().unwrap()],
    );
    let banner = server.banner.join("\n");
    assert!(banner.contains("once it can be read"), "{banner}");
    assert!(
        banner.contains("cannot read it: it is a directory"),
        "{banner}"
    );
    std::fs::remove_dir(&log).unwrap();
    append(&log, &failures("late-file-host", "192.0.2.6", 8));
    server.wait_for_alert("BRUTE_FORCE_V1", "late-file-host");
    let (stopped, text, dir) = server.stop_keeping_data();
    assert!(stopped, "{text}");
    assert!(text.contains("readable now, following it"), "{text}");
    assert_eq!(text.matches("it is a directory").count(), 1, "{text}");
    assert_eq!(common::stored_events(dir.path(), "late-file-host"), 8);
}

/// Stops `server`, checks it exited 0, and returns its log and data dir.
fn stop(server: common::Server) -> (String, tempfile::TempDir) {
    let (ok, log, dir) = server.stop_keeping_data();
    assert!(ok, "graceful shutdown exits 0: {log}");
    (log, dir)
}

/// A restart resumes each followed file where the last run stopped: lines
/// written while vigil was stopped are read (not skipped, as a start at the
/// end would), none twice; through a rotation while stopped (the rest of
/// the rotated file, found by its identity, then the new file from its
/// start) and a truncation while stopped (from the start).
#[test]
fn a_restart_reads_what_was_written_while_stopped_through_rotation_and_truncation() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("auth.log");
    let arg = log.to_str().unwrap().to_string();
    let env = [("ARES_SHARED_SECRET", "unused-here")];
    append(&log, &failures("before-host", "192.0.2.1", 8));
    let server = common::Server::start_with(tempfile::tempdir().unwrap(), &env, &["--tail", &arg]);
    append(&log, &failures("a-host", "198.51.100.1", 8));
    common::wait_for_stored(server.dir.path(), "a-host", 8, "growth");
    let (first, dir) = stop(server);
    assert!(!first.contains("resuming"), "nothing saved yet: {first}");

    // Written while stopped.
    append(&log, &failures("b-host", "198.51.100.2", 8));
    let server = common::Server::start_with(dir, &env, &["--tail", &arg]);
    common::wait_for_stored(
        server.dir.path(),
        "b-host",
        8,
        "lines written while stopped",
    );
    let (second, dir) = stop(server);
    assert!(second.contains("auth.log: resuming at byte "), "{second}");
    assert!(
        second.contains("tail: 8 lines, 8 accepted, 0 already stored"),
        "read from where it stopped, nothing twice: {second}"
    );

    // Rotated while stopped: a last line to the old file, then a new file.
    append(&log, &failures("c-host", "198.51.100.3", 8));
    let rotated = logs.path().join("auth.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    append(&log, &failures("d-host", "198.51.100.4", 8));
    let server = common::Server::start_with(dir, &env, &["--tail", &arg]);
    common::wait_for_stored(server.dir.path(), "d-host", 8, "the new file");
    common::wait_for_stored(server.dir.path(), "c-host", 8, "the rotated file's rest");
    let (third, dir) = stop(server);
    assert!(
        third.contains("auth.log: rotated while vigil was stopped; reading ")
            && third.contains("auth.log.1 from byte "),
        "{third}"
    );
    assert!(
        third.contains("tail: 16 lines, 16 accepted, 0 already stored, 0 unparsed, 1 rotations"),
        "{third}"
    );

    // Truncated while stopped (shorter than where it was read to).
    let was = std::fs::metadata(&log).unwrap().len();
    std::fs::File::create(&log).unwrap();
    append(&log, &failures("e-host", "198.51.100.5", 2));
    let now = std::fs::metadata(&log).unwrap().len();
    let server = common::Server::start_with(dir, &env, &["--tail", &arg]);
    common::wait_for_stored(server.dir.path(), "e-host", 2, "the truncated file");
    let (fourth, dir) = stop(server);
    assert!(
        fourth.contains(&format!(
            "auth.log: truncated or replaced while vigil was stopped (it was read to byte {was}; \
             now {now} bytes); reading it from its start"
        )),
        "{fourth}"
    );
    assert!(
        fourth.contains("tail: 2 lines, 2 accepted, 0 already stored"),
        "{fourth}"
    );

    // Truncated and written past where it was read to (copytruncate, then
    // a busy minute): the same inode and length enough, other first bytes.
    std::fs::File::create(&log).unwrap();
    append(&log, &failures("h-host", "198.51.100.8", 8));
    let server = common::Server::start_with(dir, &env, &["--tail", &arg]);
    common::wait_for_stored(server.dir.path(), "h-host", 8, "the rewritten file");
    let (fifth, dir) = stop(server);
    assert!(
        fifth.contains("bytes, other first bytes); reading it from its start"),
        "{fifth}"
    );

    for (host, n) in [
        ("h-host", 8),
        ("before-host", 0),
        ("a-host", 8),
        ("b-host", 8),
        ("c-host", 8),
        ("d-host", 8),
        ("e-host", 2),
    ] {
        assert_eq!(common::stored_events(dir.path(), host), n, "{host}");
    }
}

/// `--from-start` reads the whole file whatever was saved; the lines read
/// before are refused as duplicates, not stored twice. A file whose saved
/// position names a file no longer in its directory is read from its start,
/// and the log says which lines could not be read.
#[test]
fn a_rotated_file_gone_while_stopped_is_said_and_the_new_one_read_whole() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("secure");
    let arg = log.to_str().unwrap().to_string();
    let env = [("ARES_SHARED_SECRET", "unused-here")];
    std::fs::write(&log, "").unwrap();
    let server = common::Server::start_with(tempfile::tempdir().unwrap(), &env, &["--tail", &arg]);
    append(&log, &failures("f-host", "198.51.100.6", 4));
    common::wait_for_stored(server.dir.path(), "f-host", 4, "growth");
    let (_, dir) = stop(server);
    // Rotated and the old file compressed away while stopped (the new file
    // made first, so it cannot reuse the old one's inode).
    let new = logs.path().join("secure.new");
    append(&new, &failures("g-host", "198.51.100.7", 3));
    std::fs::remove_file(&log).unwrap();
    std::fs::rename(&new, &log).unwrap();
    let server = common::Server::start_with(dir, &env, &["--tail", &arg]);
    common::wait_for_stored(server.dir.path(), "g-host", 3, "the new file");
    let (log_text, dir) = stop(server);
    assert!(
        log_text
            .contains("no longer in its directory (compressed or deleted): its lines after byte "),
        "{log_text}"
    );
    // Read again whole: the three lines were stored before.
    let server = common::Server::start_with(dir, &env, &["--tail", &arg, "--from-start"]);
    let (again, dir) = stop(server);
    assert!(
        again.contains("tail: 3 lines, 0 accepted, 3 already stored"),
        "{again}"
    );
    assert_eq!(common::stored_events(dir.path(), "g-host"), 3);
}

/// Lines read but never stored because vigil stopped while the store failed
/// are not skipped by the next start: the position saved stays before them.
#[test]
fn lines_a_stop_left_unstored_are_read_again_at_the_next_start() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("auth.log");
    let arg = log.to_str().unwrap().to_string();
    let env = [("ARES_SHARED_SECRET", "unused-here")];
    append(&log, "");
    let server = common::Server::start_with(tempfile::tempdir().unwrap(), &env, &["--tail", &arg]);
    append(&log, &failures("kept-host", "192.0.2.6", 2));
    common::wait_for_stored(server.dir.path(), "kept-host", 2, "before the failure");
    let data = server.dir.path().to_path_buf();
    let mut stopped = None;
    common::with_store_failing(&data, || {
        append(&log, &failures("unstored-host", "192.0.2.7", 3));
        // Read and handed to the engine, whose commit waits on the lock.
        std::thread::sleep(Duration::from_millis(600));
        stopped = Some(server.stop_keeping_data());
    });
    let (ok, first, dir) = stopped.unwrap();
    assert!(ok, "{first}");
    assert!(
        first.contains("tail: 5 lines, 2 accepted, 0 already stored, 0 unparsed, 0 rotations, 0 truncations; 3 NOT STORED (the store failed until vigil stopped): the next start reads them again"),
        "the three were read and not stored: {first}"
    );
    assert_eq!(common::stored_events(dir.path(), "unstored-host"), 0);
    let server = common::Server::start_with(dir, &env, &["--tail", &arg]);
    common::wait_for_stored(server.dir.path(), "unstored-host", 3, "read again");
    let (second, dir) = stop(server);
    // From the last position the store took (at the latest, where the file
    // was opened): lines stored before it are refused as duplicates.
    assert!(
        second.contains("tail: 5 lines, 3 accepted, 2 already stored")
            || second.contains("tail: 3 lines, 3 accepted, 0 already stored"),
        "{second}"
    );
    assert_eq!(common::stored_events(dir.path(), "kept-host"), 2);
}
