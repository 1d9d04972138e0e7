//! # inlet-wal: the write-ahead log behind every `200`
//!
//! An append-only log of opaque byte records. It knows nothing of events, HTTP or S3: the
//! gateway appends encoded events, and downstream consumers (the lake writer, destinations)
//! read them back by position and confirm what they have made durable elsewhere.
//!
//! ## What an acknowledgement promises
//! [`WalHandle::append`] resolves `Ok` only once its records are written **and**, under the
//! default [`FsyncPolicy::Always`], `fdatasync`ed. Records acknowledged under `Always` survive a
//! process crash (`kill -9`) and a power loss on hardware that honours flushes. The weaker
//! policies trade that promise for latency and say exactly what they lose (see [`FsyncPolicy`]).
//!
//! ## Positions
//! Every record has a log sequence number (LSN): a `u64` that starts at 0 and grows by one per
//! record, forever. LSNs are never reused, even after segments are deleted, because the newest
//! segment is never deleted and its file name carries its first LSN.
//!
//! ## On-disk format
//! A WAL is a directory:
//! ```text
//! {dir}/00000000000000000000.wal   segment whose first record has LSN 0
//! {dir}/00000000000000041273.wal   next segment, first LSN 41273
//! {dir}/cursors.json               consumer cursors (see below)
//! {dir}/next-segment.spare         zeros only: the next segment, prepared ahead (see `spare`)
//! {dir}/recycled-00000000000000000000.spare
//!                                  a confirmed segment kept to become a spare (see `recycle`)
//! ```
//! A segment file is a 24-byte header followed by records, back to back:
//! ```text
//! header:  magic "INLETWAL" (8 bytes) | format version u32 LE (= 1) | reserved u32 (= 0)
//!          | first LSN u64 LE (must equal the number in the file name)
//! record:  payload length u32 LE | CRC32C u32 LE | payload (length bytes)
//! ```
//! The CRC32C (Castagnoli) covers the four length bytes followed by the payload, so a damaged
//! length is caught as surely as a damaged payload. A record's LSN is not stored: it is the
//! segment's first LSN plus the record's index in the segment. A segment is closed (and a new
//! one started) when the next write would take it past the configured segment size; one
//! request's records may straddle two segments. With `preallocate` (the default) a new segment
//! starts as a zero-filled file of the full segment size, so the newest segment may end in
//! zeros after its last record; closing a segment cuts them, so closed segments end at their
//! last record. A segment that did not start that way (the first one, the one reopened after a
//! restart, or one begun when no spare was ready) is closed early, as soon as a spare is ready,
//! so segments may be shorter than the configured size.
//!
//! ## Group commit
//! A single writer thread owns the files. Appends from any number of tasks queue on a channel;
//! each append's records arrive framed by the task that made them ([`FramedRecords`]). The
//! writer drains everything queued (up to [`GROUP_COMMIT_MAX_BYTES`]), copies the records into
//! one buffer, writes them with one `write` (one per segment when a roll falls inside the
//! group), issues one `fdatasync`, then answers every waiter. Concurrent requests therefore
//! share fsyncs, and durability costs latency, not throughput.
//!
//! ## Recovery (on open)
//! A crash can leave the newest segment with a torn tail: a record whose length, CRC or payload
//! is incomplete or wrong. On open the newest segment is scanned from the start; at the first
//! record that does not verify, the file is truncated to the end of the last good record and
//! fsynced. Zeros never verify (the CRC of a zero length is not zero), so the unused part of a
//! preallocated segment is cut the same way. Under `Always`, nothing acknowledged can be in that tail, because a record is
//! acknowledged only after the `fdatasync` that covers it returned. Older segments are not
//! scanned at open (they were fsynced before the next segment was created); a reader that
//! meets a bad record in one (possible only under the weaker policies) reports the gap and
//! continues at the next segment. A header that does not verify refuses the open: that is
//! damage, not a crash artefact, and needs an operator.
//!
//! ## Consumers and deletion
//! Consumers are named in the configuration. Each has a cursor: the LSN of the first record it
//! has *not* yet confirmed. [`WalHandle::confirm`] moves a cursor forward and persists
//! `cursors.json` (write to a temporary file, fsync, rename, fsync the directory) before
//! anything is deleted. A segment is deleted only when every configured consumer's cursor is
//! past its last record; with no consumers configured, nothing is ever deleted (nothing
//! downstream has confirmed anything), and the disk budget enforced by the caller takes over.
//! The newest segment is never deleted. A consumer seen for the first time starts at the
//! oldest retained record. With `preallocate`, up to `recycled_segments` released segments are
//! renamed out of the segments' namespace instead and later zero-filled in place as spares;
//! only the rest are deleted.
//!
//! ## Failure
//! A failed `write` or `fdatasync` poisons the log: after an fsync error the kernel may have
//! dropped dirty pages, so nothing written since the last good sync can be trusted. Every
//! pending and later append fails with [`WalError::Poisoned`]; the process must restart, and
//! recovery on open decides what survived.

mod cursors;
mod error;
mod policy;
mod reader;
mod reaper;
mod record;
mod recycle;
mod segment;
mod spare;
mod wal;
mod writer;

pub use cursors::Cursors;
pub use error::WalError;
pub use policy::FsyncPolicy;
pub use reader::{ReadPosition, Record, RecordChunk, WalReader};
pub use record::{FramedRecords, RECORD_HEADER_BYTES};
pub use segment::SEGMENT_HEADER_BYTES;
pub use wal::{ActiveSegment, RecoveryReport, Wal, WalConfig};
pub use writer::{GROUP_COMMIT_MAX_BYTES, WalHandle, WalObserver, WalStats};
