//! Torn tails: whatever a crash leaves after the last good record is cut on open, the good
//! records stay, and LSNs continue where the good records end.

use std::fs::{self, OpenOptions};
use std::io::Write;

use inlet_wal::{SEGMENT_HEADER_BYTES, Wal, WalConfig, WalError, WalReader};

fn payloads(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("{{\"event\":\"e{i}\"}}").into_bytes()).collect()
}

fn read_all(dir: &std::path::Path) -> Vec<Vec<u8>> {
    WalReader::open(dir, 0, u64::MAX, 1 << 20).expect("reader").map(|r| r.expect("record").payload).collect()
}

#[test]
fn every_cut_inside_the_last_record_recovers_the_records_before_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = WalConfig::new(dir.path());
    let segment = {
        let (mut wal, _) = Wal::open(config.clone()).expect("open");
        wal.append(&payloads(5)).expect("append");
        wal.active_segment().path
    };
    let full = fs::read(&segment).expect("segment");
    let last_record_start = full.len() - (8 + payloads(5)[4].len());
    for cut in last_record_start..full.len() {
        fs::write(&segment, &full[..cut]).expect("tear");
        let (mut wal, report) = Wal::open(config.clone()).expect("recover");
        assert_eq!(report.next_lsn, 4, "cut at {cut}");
        assert_eq!(report.truncated_bytes, (cut - last_record_start) as u64);
        assert_eq!(fs::metadata(&segment).expect("meta").len(), last_record_start as u64);
        assert_eq!(read_all(dir.path()), payloads(4));
        assert_eq!(wal.append(&[b"after"]).expect("append"), 4..5);
        drop(wal);
        fs::write(&segment, &full).expect("restore");
    }
}

#[test]
fn garbage_and_zeroes_after_the_last_record_are_cut() {
    for tail in [vec![0u8; 4096], vec![0xFF; 3], b"\x05\x00\x00\x00garbage-with-bad-crc".to_vec()] {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = WalConfig::new(dir.path());
        let segment = {
            let (mut wal, _) = Wal::open(config.clone()).expect("open");
            wal.append(&payloads(3)).expect("append");
            wal.active_segment().path
        };
        OpenOptions::new().append(true).open(&segment).expect("open").write_all(&tail).expect("write");
        let (_, report) = Wal::open(config).expect("recover");
        assert_eq!(report.next_lsn, 3);
        assert_eq!(report.truncated_bytes, tail.len() as u64);
        assert!(report.truncated_reason.is_some());
        assert_eq!(read_all(dir.path()), payloads(3));
    }
}

#[test]
fn a_damaged_header_refuses_to_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = WalConfig::new(dir.path());
    let segment = Wal::open(config.clone()).expect("open").0.active_segment().path;
    let mut bytes = fs::read(&segment).expect("read");
    bytes[0] ^= 0xFF;
    fs::write(&segment, &bytes).expect("write");
    match Wal::open(config) {
        Err(WalError::Corrupt { reason, .. }) => assert!(reason.contains("magic"), "{reason}"),
        other => panic!("expected a corrupt-header error, got {other:?}"),
    }
    bytes[0] ^= 0xFF;
    bytes.truncate(SEGMENT_HEADER_BYTES as usize - 1);
    fs::write(&segment, &bytes).expect("write");
    assert!(matches!(Wal::open(WalConfig::new(dir.path())), Err(WalError::Corrupt { .. })));
}
