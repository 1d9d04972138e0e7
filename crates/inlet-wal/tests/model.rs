//! Model-based property test: random appends, syncs, confirmations (which recycle segments as
//! spares, or delete them), clean reopens and crashes that tear the unsynced tail, checked
//! against a plain vector of every record ever appended.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;

use inlet_wal::{FsyncPolicy, Wal, WalConfig, WalReader};
use proptest::prelude::*;

const CONSUMERS: [&str; 2] = ["lake", "destination"];

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<Vec<u8>>),
    Sync,
    /// Confirm for consumer `.0` a fraction (per mille) of the synced records.
    Confirm(usize, u16),
    Reopen,
    /// The process dies: the active segment keeps its synced bytes plus `keep` per mille of the
    /// unsynced ones, followed by `garbage` (a torn write).
    Crash {
        keep: u16,
        garbage: Vec<u8>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec(prop::collection::vec(any::<u8>(), 0..120), 1..6).prop_map(Op::Append),
        2 => Just(Op::Sync),
        2 => (0..CONSUMERS.len(), 0..=1000u16).prop_map(|(c, f)| Op::Confirm(c, f)),
        1 => Just(Op::Reopen),
        1 => (0..=1000u16, prop::collection::vec(any::<u8>(), 0..40)).prop_map(|(keep, garbage)| Op::Crash { keep, garbage }),
    ]
}

struct Model {
    /// Every record ever appended and still expected, indexed by LSN.
    records: Vec<Vec<u8>>,
    cursors: [u64; CONSUMERS.len()],
}

fn check(wal: &Wal, model: &Model) {
    assert_eq!(wal.next_lsn(), model.records.len() as u64);
    let oldest = wal.oldest_lsn();
    let min_cursor = *model.cursors.iter().min().expect("consumers");
    assert!(oldest <= min_cursor, "a segment was deleted before every consumer confirmed it");
    let dir = &wal.config().dir;
    let read: Vec<_> = WalReader::open(dir, oldest, u64::MAX, wal.config().max_record_bytes)
        .expect("reader")
        .map(|r| r.expect("record"))
        .collect();
    assert_eq!(read.len() as u64, wal.next_lsn() - oldest);
    let recycled = std::fs::read_dir(dir)
        .expect("ls")
        .filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().starts_with("recycled-")))
        .count();
    let limit = if wal.config().preallocate { wal.config().recycled_segments } else { 0 };
    assert!(recycled <= limit, "{recycled} recycled files kept, more than {limit}");
    for record in read {
        assert_eq!(record.payload, model.records[record.lsn as usize], "record {}", record.lsn);
    }
}

fn run(ops: Vec<Op>, preallocate: bool, recycled_segments: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = WalConfig {
        segment_bytes: 400,
        fsync: FsyncPolicy::Always,
        max_record_bytes: 1000,
        consumers: CONSUMERS.iter().map(|c| c.to_string()).collect(),
        preallocate,
        recycled_segments,
        ..WalConfig::new(dir.path())
    };
    let (mut wal, _) = Wal::open(config.clone()).expect("open");
    let mut model = Model { records: Vec::new(), cursors: [0; CONSUMERS.len()] };
    for op in ops {
        match op {
            Op::Append(payloads) => {
                let lsns = wal.append(&payloads).expect("append");
                assert_eq!(lsns.start, model.records.len() as u64);
                model.records.extend(payloads);
            }
            Op::Sync => wal.sync().expect("sync"),
            Op::Confirm(consumer, per_mille) => {
                let lsn = wal.synced_lsn() * u64::from(per_mille) / 1000;
                wal.confirm(CONSUMERS[consumer], lsn).expect("confirm");
                model.cursors[consumer] = model.cursors[consumer].max(lsn);
            }
            Op::Reopen => {
                drop(wal);
                let (reopened, report) = Wal::open(config.clone()).expect("reopen");
                assert_eq!(report.truncated_bytes, 0, "a clean close leaves no torn tail");
                wal = reopened;
            }
            Op::Crash { keep, garbage } => {
                let synced_lsn = wal.synced_lsn();
                let active = wal.active_segment();
                // Simulate death: no final sync, no Drop.
                std::mem::forget(wal);
                let unsynced = active.bytes - active.synced_bytes;
                let keep_bytes = active.synced_bytes + unsynced * u64::from(keep) / 1000;
                let file = OpenOptions::new().read(true).write(true).open(&active.path).expect("segment");
                let file_len = file.metadata().expect("metadata").len();
                if file_len > active.bytes {
                    // A preallocated segment keeps its length, and what was not written is zeros
                    // (also in a recycled file: no record of its earlier life may be left).
                    let mut unwritten = vec![0; (file_len - active.bytes) as usize];
                    file.read_exact_at(&mut unwritten, active.bytes).expect("read");
                    assert!(unwritten.iter().all(|&b| b == 0), "a spare held more than zeros");
                    file.write_all_at(&vec![0; (file_len - keep_bytes) as usize], keep_bytes).expect("tear");
                    file.write_all_at(&garbage, keep_bytes).expect("garbage");
                } else {
                    file.set_len(keep_bytes).expect("tear");
                    let mut file = OpenOptions::new().append(true).open(&active.path).expect("segment");
                    file.write_all(&garbage).expect("garbage");
                }
                drop(file);
                let (reopened, report) = Wal::open(config.clone()).expect("recover");
                wal = reopened;
                assert!(report.next_lsn >= synced_lsn, "a synced record was lost");
                assert!(report.next_lsn <= model.records.len() as u64);
                model.records.truncate(report.next_lsn as usize);
                for (i, cursor) in model.cursors.iter_mut().enumerate() {
                    // Cursors only ever cover synced records, so they all survive.
                    assert_eq!(wal.cursors().position(CONSUMERS[i]), Some(*cursor));
                    assert!(*cursor <= report.next_lsn);
                }
            }
        }
        check(&wal, &model);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn wal_matches_model(
        ops in prop::collection::vec(op(), 1..60),
        preallocate in any::<bool>(),
        recycled_segments in 0..3usize,
    ) {
        run(ops, preallocate, recycled_segments);
    }
}
