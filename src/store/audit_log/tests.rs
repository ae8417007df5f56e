use super::verify::rotated_from;
use super::*;

/// An intact file that starts the chain.
fn intact(records: u64) -> Verdict {
    Verdict::Intact {
        records,
        previous: None,
    }
}

#[test]
fn a_line_cut_short_by_a_crash_is_set_aside_and_the_chain_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&p).unwrap();
    for n in 0..3 {
        log.append_pending(&record(n)).unwrap();
    }
    drop(log);
    let whole = std::fs::read(&p).unwrap();
    // What one write of two more records adds to the file...
    let copy = dir.path().join("copy.jsonl");
    std::fs::copy(&p, &copy).unwrap();
    let mut log = AuditLog::open(&copy).unwrap();
    let mut two = record(3);
    two.extend(&record(4));
    log.append_pending(&two).unwrap();
    drop(log);
    let both = std::fs::read(&copy).unwrap()[whole.len()..].to_vec();
    std::fs::remove_file(&copy).unwrap();
    // ...and that write killed part-way through the second record.
    let cut = both.len() - 10;
    let first_end = both.iter().position(|b| *b == b'\n').unwrap() + 1;
    assert!(cut > first_end);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&p)
        .unwrap()
        .write_all(&both[..cut])
        .unwrap();
    match verify(&p).unwrap() {
        Verdict::Broken { line: 5, reason } => assert!(
            reason.contains("without a newline") && reason.contains("sets the fragment aside"),
            "{reason}"
        ),
        v => panic!("{v:?}"),
    }
    let mut log = AuditLog::open(&p).unwrap();
    assert_eq!(
        log.head().1,
        4,
        "the whole record before the fragment counts"
    );
    log.append_pending(&record(5)).unwrap();
    drop(log);
    assert_eq!(verify(&p).unwrap(), intact(5));
    let text = std::fs::read(&p).unwrap();
    assert!(text.starts_with(&whole));
    let side: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().into_string().unwrap())
        .filter(|n| n.starts_with("audit-torn-") && n.ends_with(".jsonl"))
        .collect();
    assert_eq!(side.len(), 1, "{side:?}");
    assert_eq!(
        std::fs::read(dir.path().join(&side[0])).unwrap(),
        &both[first_end..cut],
        "the fragment is kept beside the log"
    );
    assert!(
        rotated_names(dir.path()).is_empty(),
        "not taken for a rotated file"
    );

    // Only a fragment, no whole line: the file starts afresh.
    let q = dir.path().join("other.jsonl");
    std::fs::write(&q, b"{\"ty").unwrap();
    let mut log = AuditLog::open(&q).unwrap();
    assert_eq!(log.head().1, 0);
    log.append_pending(&record(0)).unwrap();
    drop(log);
    assert_eq!(verify(&q).unwrap(), intact(1));
}

#[test]
fn chain_detects_edits_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("audit.jsonl");
    for i in 0..3 {
        let mut log = AuditLog::open(&p).unwrap();
        let mut m = serde_json::Map::new();
        m.insert("n".into(), i.into());
        log.append(m).unwrap();
    }
    assert_eq!(verify(&p).unwrap(), intact(3));
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("\"n\":1", "\"n\":7");
    std::fs::write(&p, text).unwrap();
    assert!(matches!(
        verify(&p).unwrap(),
        Verdict::Broken { line: 3, .. }
    ));
}

fn record(n: usize) -> Pending {
    let mut p = Pending::default();
    p.push(&serde_json::json!({ "n": n })).unwrap();
    p
}

/// A log whose file refuses writes (opened read-only) until `fix`.
fn refusing(p: &Path) -> AuditLog {
    let mut log = AuditLog::open(p).unwrap();
    log.file = File::open(p).unwrap();
    log
}

fn fix(log: &mut AuditLog, p: &Path) {
    log.file = OpenOptions::new().append(true).open(p).unwrap();
    if let Some(o) = &mut log.outage {
        o.next_try = std::time::Instant::now();
    }
}

#[test]
fn records_the_file_refuses_are_held_and_written_in_order_on_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("audit.jsonl");
    AuditLog::open(&p)
        .unwrap()
        .append_pending(&record(0))
        .unwrap();
    let mut log = refusing(&p);
    let mut two = record(1);
    two.extend(&record(2));
    assert!(log.append_pending(&two).is_err());
    // Within RETRY_EVERY: not even tried, held all the same.
    assert!(log.append_pending(&record(3)).is_err());
    assert!(log.retry().is_err());
    let o = log.outage().expect("an outage");
    assert_eq!((o.held, o.lost), (3, 0));
    assert_eq!(std::fs::read_to_string(&p).unwrap().lines().count(), 1);
    fix(&mut log, &p);
    log.append_pending(&record(4)).unwrap();
    assert_eq!(log.outage(), None);
    let text = std::fs::read_to_string(&p).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ns: Vec<_> = lines.iter().map(|v| v["n"].as_u64()).collect();
    assert_eq!(ns, [Some(0), Some(1), Some(2), Some(3), None, Some(4)]);
    assert_eq!(lines[4]["type"], "audit_resumed");
    assert_eq!(lines[4]["records_held"], 3);
    assert_eq!(lines[4]["records_lost"], 0);
    assert_eq!(lines[4]["failing_since"], o.since.to_rfc3339());
    assert!(
        lines[4]["error"]
            .as_str()
            .unwrap()
            .contains("Bad file descriptor")
    );
    assert_eq!(verify(&p).unwrap(), intact(6));
    // Nothing held: a retry writes nothing.
    log.retry().unwrap();
    assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
}

#[test]
fn past_their_bound_refusals_are_counted_lost_and_what_was_taken_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("audit.jsonl");
    let mut log = refusing(&p);
    assert!(log.append_pending(&record(1)).is_err());
    let mut big = Pending::default();
    big.push(&serde_json::json!({ "pad": "x".repeat(HOLD_MAX_BYTES - 20) }))
        .unwrap();
    assert!(log.append_pending(&big).is_err());
    // Refusals past HOLD_MAX_BYTES are dropped...
    assert!(log.append_pending(&record(2)).is_err());
    assert!(log.append_pending(&record(3)).is_err());
    // ...records of what was taken are kept.
    let mut accepted = record(4);
    accepted.taken = true;
    assert!(log.append_pending(&accepted).is_err());
    let o = log.outage().unwrap();
    assert_eq!((o.held, o.lost), (3, 2));
    fix(&mut log, &p);
    log.retry().unwrap();
    let text = std::fs::read_to_string(&p).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["n"], 1);
    assert!(lines[1]["pad"].is_string());
    assert_eq!(lines[2]["n"], 4);
    assert_eq!(lines[3]["type"], "audit_resumed");
    assert_eq!(lines[3]["records_held"], 3);
    assert_eq!(lines[3]["records_lost"], 2);
    assert_eq!(verify(&p).unwrap(), intact(4));
}

fn rotated_names(dir: &Path) -> Vec<String> {
    super::rotated_files(dir, "audit", "jsonl")
        .into_iter()
        .map(|(_, n)| n)
        .collect()
}

#[test]
fn a_rotated_log_chains_across_files_and_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("audit.jsonl");
    let rotation = Rotation {
        max_bytes: 1000,
        keep: 0,
    };
    let mut log = AuditLog::open_rotating(&p, Some(rotation)).unwrap();
    // 83 bytes a record: twelve to the first file; the others start with
    // `audit_rotated` (~150 bytes).
    for n in 0..25 {
        log.append_pending(&record(n)).unwrap();
    }
    let rotated = rotated_names(dir.path());
    assert_eq!(rotated.len(), 2, "{rotated:?}");
    let chain = verify_chain(&p).unwrap();
    let summary: Vec<_> = chain
        .iter()
        .map(|f| {
            (
                f.path.file_name().unwrap().to_str().unwrap().to_string(),
                f.verdict.clone(),
                f.linked,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (rotated[0].clone(), intact(12), false),
            (
                rotated[1].clone(),
                Verdict::Intact {
                    records: 10,
                    previous: Some(rotated[0].clone())
                },
                true
            ),
            (
                "audit.jsonl".into(),
                Verdict::Intact {
                    records: 5,
                    previous: Some(rotated[1].clone())
                },
                true
            ),
        ]
    );
    // Every record is there once, in order, and no file is past its bound
    // but for its last write.
    let mut ns = Vec::new();
    for f in &chain {
        let text = std::fs::read_to_string(&f.path).unwrap();
        assert!(text.len() <= 1000 + 100, "{}", text.len());
        for l in text.lines() {
            let v: Value = serde_json::from_str(l).unwrap();
            match v["n"].as_u64() {
                Some(n) => ns.push(n),
                None => {
                    assert_eq!(v["type"], ROTATED);
                    assert!(
                        v["previous_records"] == 12 || v["previous_records"] == 10,
                        "{v}"
                    );
                }
            }
        }
    }
    assert_eq!(ns, (0..25).collect::<Vec<_>>());
    // Reopened, the log goes on in the current file.
    drop(log);
    let mut log = AuditLog::open_rotating(&p, Some(rotation)).unwrap();
    log.append_pending(&record(25)).unwrap();
    assert!(matches!(
        verify_chain(&p).unwrap()[2].verdict,
        Verdict::Intact { records: 6, .. }
    ));

    // An edit in an older file breaks the chain there...
    let first = dir.path().join(&rotated[0]);
    let text = std::fs::read_to_string(&first).unwrap();
    std::fs::write(&first, text.replace("\"n\":9", "\"n\":90")).unwrap();
    let chain = verify_chain(&p).unwrap();
    assert_eq!(chain.len(), 1);
    assert!(
        // (the record after it no longer matches)
        matches!(chain[0].verdict, Verdict::Broken { line: 11, .. }),
        "{chain:?}"
    );
    // ...and so does dropping its last record: the next file no longer
    // continues it.
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&first, lines[..9].join("\n") + "\n").unwrap();
    let chain = verify_chain(&p).unwrap();
    assert_eq!(chain.len(), 2);
    assert!(matches!(
        chain[0].verdict,
        Verdict::Intact { records: 9, .. }
    ));
    match &chain[1].verdict {
        Verdict::Broken { line: 1, reason } => {
            assert!(reason.contains("does not continue"), "{reason}")
        }
        v => panic!("{v:?}"),
    }
    // Without the older files, the current one is checked from its start.
    std::fs::remove_file(&first).unwrap();
    std::fs::remove_file(dir.path().join(&rotated[1])).unwrap();
    let chain = verify_chain(&p).unwrap();
    assert_eq!(chain.len(), 1);
    assert_eq!(
        chain[0].verdict,
        Verdict::Intact {
            records: 6,
            previous: Some(rotated[1].clone())
        }
    );
    assert!(!chain[0].linked);
}

#[test]
fn rotation_keeps_the_newest_files_and_names_only_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("audit.jsonl");
    // Not ours: never deleted.
    let others = [
        "audit-notes.jsonl",
        "audit-000001.jsonl",
        "audit-x-20261121T000000.000000Z.jsonl",
        "other-000001-20261121T000000.000000Z.jsonl",
    ];
    for other in others {
        std::fs::write(dir.path().join(other), "x").unwrap();
    }
    // Ours, from a clock far ahead: numbered 7, so it is the oldest
    // once newer files follow it, whatever their times say.
    let ahead = "audit-000007-29991231T000000.000000Z.jsonl";
    std::fs::write(dir.path().join(ahead), "x").unwrap();
    let mut log = AuditLog::open_rotating(
        &p,
        Some(Rotation {
            max_bytes: 200,
            keep: 2,
        }),
    )
    .unwrap();
    for n in 0..20 {
        log.append_pending(&record(n)).unwrap();
    }
    let rotated = rotated_names(dir.path());
    assert_eq!(rotated.len(), 2, "{rotated:?}");
    assert!(!dir.path().join(ahead).exists());
    let seqs: Vec<u64> = super::rotated_files(dir.path(), "audit", "jsonl")
        .iter()
        .map(|(s, _)| *s)
        .collect();
    let last = *seqs.last().unwrap();
    assert!(last > 8 && seqs == [last - 1, last], "{rotated:?}");
    for other in others {
        assert!(dir.path().join(other).exists(), "{other}");
    }
    let chain = verify_chain(&p).unwrap();
    assert_eq!(chain.len(), 3);
    assert!(
        chain
            .iter()
            .all(|f| matches!(f.verdict, Verdict::Intact { .. })),
        "{chain:?}"
    );
    assert!(!chain[0].linked && chain[1].linked && chain[2].linked);
    // A previous_file that is not a plain name is not followed.
    assert_eq!(
        rotated_from(&serde_json::json!({"type": ROTATED, "previous_file": "../etc/passwd"})),
        None
    );
    assert_eq!(
        rotated_from(&serde_json::json!({"type": ROTATED, "previous_file": ".."})),
        None
    );
}

#[test]
fn a_rotation_whose_first_record_meets_a_full_disk_writes_it_on_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open_rotating(
        &p,
        Some(Rotation {
            max_bytes: 100,
            keep: 0,
        }),
    )
    .unwrap();
    log.append_pending(&record(0)).unwrap();
    // The next write rotates; the new file refuses it.
    log.rotate(log.rotation.unwrap());
    log.file = File::open(&p).unwrap();
    assert!(log.append_pending(&record(1)).is_err());
    fix(&mut log, &p);
    log.append_pending(&record(2)).unwrap();
    let text = std::fs::read_to_string(&p).unwrap();
    let types: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .collect();
    assert_eq!(types[0]["type"], ROTATED);
    assert_eq!(types[1]["n"], 1);
    assert_eq!(types[2]["type"], "audit_resumed");
    assert_eq!(types[3]["n"], 2);
    let chain = verify_chain(&p).unwrap();
    assert_eq!(chain.len(), 2);
    assert!(
        chain
            .iter()
            .all(|f| matches!(f.verdict, Verdict::Intact { .. })),
        "{chain:?}"
    );
}

#[test]
fn tries_back_off_while_the_file_refuses_writes() {
    let ms = |n| retry_delay(n).as_millis();
    assert_eq!(
        [ms(1), ms(2), ms(3), ms(4), ms(5), ms(6), ms(u32::MAX)],
        [250, 500, 1000, 2000, 4000, 4000, 4000]
    );
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("audit.jsonl");
    let mut log = refusing(&p);
    assert!(log.append_pending(&record(1)).is_err());
    for failures in 2..=4 {
        log.outage.as_mut().unwrap().next_try = std::time::Instant::now();
        let before = std::time::Instant::now();
        assert!(log.retry().is_err());
        let o = log.outage.as_ref().unwrap();
        assert_eq!(o.failures, failures);
        assert!(o.next_try >= before + retry_delay(failures));
    }
    // Within the wait, a retry does not touch the file; a last one does.
    log.file = OpenOptions::new().append(true).open(&p).unwrap();
    assert!(log.retry().is_err());
    log.retry_now().unwrap();
    assert_eq!(log.outage(), None);
    assert_eq!(verify(&p).unwrap(), intact(2));
}

#[test]
fn a_stop_between_a_rotation_and_the_first_record_keeps_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("audit.jsonl");
    let rotation = Rotation {
        max_bytes: 1 << 20,
        keep: 0,
    };
    let mut log = AuditLog::open_rotating(&p, Some(rotation)).unwrap();
    log.append_pending(&record(1)).unwrap();
    log.append_pending(&record(2)).unwrap();
    // Renamed aside and a fresh file opened; then the process stops.
    log.rotate(rotation);
    drop(log);
    assert_eq!(std::fs::metadata(&p).unwrap().len(), 0);
    let mut log = AuditLog::open_rotating(&p, Some(rotation)).unwrap();
    log.append_pending(&record(3)).unwrap();
    let chain = verify_chain(&p).unwrap();
    assert_eq!(chain.len(), 2, "{chain:?}");
    assert_eq!(
        chain[1].verdict,
        Verdict::Intact {
            records: 2,
            previous: Some(rotated_names(dir.path())[0].clone())
        }
    );
    assert!(chain[1].linked);
    let first: Value =
        serde_json::from_str(std::fs::read_to_string(&p).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(first["previous_records"], 2);
}

#[test]
fn bytes_that_are_not_utf8_are_a_broken_link_at_their_line_and_do_not_stop_a_start() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&p).unwrap();
    log.append_pending(&record(1)).unwrap();
    log.append_pending(&record(2)).unwrap();
    drop(log);
    let mut bytes = std::fs::read(&p).unwrap();
    // `"n":1` becomes `"n":` and a stray byte.
    let at = bytes.windows(5).position(|w| w == b"\"n\":1").unwrap() + 4;
    bytes[at] = 0xff;
    std::fs::write(&p, &bytes).unwrap();
    match verify(&p).unwrap() {
        Verdict::Broken { line: 1, reason } => assert_eq!(reason, "not UTF-8"),
        v => panic!("{v:?}"),
    }
    // The log still opens and goes on from the (damaged) last record.
    let mut log = AuditLog::open(&p).unwrap();
    assert_eq!(log.head().1, 2);
    log.append_pending(&record(3)).unwrap();
    assert!(matches!(
        verify(&p).unwrap(),
        Verdict::Broken { line: 1, .. }
    ));
}

#[test]
fn a_log_that_is_not_a_regular_file_is_not_read() {
    let Ok(meta) = std::fs::metadata("/dev/zero") else {
        eprintln!("SKIP: no /dev/zero");
        return;
    };
    assert!(!meta.is_file());
    // Reading /dev/zero for lines would never end.
    let mut log = AuditLog::open(Path::new("/dev/zero")).unwrap();
    assert_eq!(&log.prev[..], GENESIS.as_bytes());
    log.append_pending(&record(1)).unwrap();
}

#[test]
fn prev_is_the_last_key_and_only_objects_are_records() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&p).unwrap();
    log.append(serde_json::json!({})).unwrap();
    log.append(serde_json::json!({"b": 1, "a": "x}"})).unwrap();
    assert!(log.append(serde_json::json!([1, 2])).is_err());
    assert!(log.append("text").is_err());
    let text = std::fs::read_to_string(&p).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "a refused record writes nothing");
    assert_eq!(lines[0], format!("{{\"prev\":\"{GENESIS}\"}}"));
    let second: Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(second["a"], "x}");
    assert_eq!(second["prev"], sha256_hex(lines[0].as_bytes()));
    assert_eq!(verify(&p).unwrap(), intact(2));
}

#[test]
fn strings_are_escaped_as_serde_json_does_and_raw_records_must_open_an_object() {
    for s in [
        "plain",
        "a\"b",
        "back\\slash",
        "new\nline",
        "\u{1}\u{1f}\u{7f}",
        "é ☃",
        "",
    ] {
        let mut out = Vec::new();
        json_str(&mut out, s);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            serde_json::to_string(s).unwrap()
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&p).unwrap();
    let mut pending = Pending::default();
    assert!(
        pending
            .push_open(|o| o.extend_from_slice(b"\"a\":1"))
            .is_err()
    );
    assert!(
        pending
            .push_open(|o| o.extend_from_slice(b"{\"a\":1,"))
            .is_err()
    );
    pending
        .push_open(|o| {
            o.extend_from_slice(b"{\"id\":");
            json_str(o, "x\"}\n{");
        })
        .unwrap();
    pending.push_open(|o| o.push(b'{')).unwrap();
    assert_eq!(pending.len(), 2, "refused records add nothing");
    log.append_pending(&pending).unwrap();
    let text = std::fs::read_to_string(&p).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["id"], "x\"}\n{");
    assert_eq!(lines[1].as_object().unwrap().len(), 1, "only prev");
    assert_eq!(verify(&p).unwrap(), intact(2));
}

#[test]
fn lines_past_the_bound_are_an_error_not_a_read_of_everything() {
    let text = b"abc\r\n\nexactly10b\n0123456789X\nnever read\n";
    let lines: Vec<std::io::Result<Vec<u8>>> =
        RawLines::new(std::io::Cursor::new(&text[..]), 10).collect();
    assert_eq!(lines.len(), 4, "stops at the first line too long");
    assert_eq!(lines[0].as_ref().unwrap(), b"abc");
    assert_eq!(lines[1].as_ref().unwrap(), b"");
    assert_eq!(lines[2].as_ref().unwrap(), b"exactly10b");
    let e = lines[3].as_ref().unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    assert!(
        e.to_string().contains("line 4 is longer than 10 bytes"),
        "{e}"
    );
    // The last line without its newline is read as it is.
    let tail: Vec<Vec<u8>> = RawLines::new(std::io::Cursor::new(&b"a\nbc"[..]), 10)
        .map(Result::unwrap)
        .collect();
    assert_eq!(tail, [b"a".to_vec(), b"bc".to_vec()]);
}
