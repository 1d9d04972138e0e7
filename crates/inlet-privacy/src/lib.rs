//! # inlet-privacy: erase and suppress a user everywhere Inlet keeps their events
//!
//! A *regulation* asks for one of three things about a list of ids (user ids and anonymous
//! ids): `suppress` (accept their events with `200` but store and forward none), `delete`
//! (suppress, and erase every stored copy of their events) or `unsuppress` (lift an earlier
//! suppression; erased data stays erased). Regulations live in the lake, so every gateway and
//! batch job that shares a lake shares them.
//!
//! ## On-disk format (in the lake)
//! ```text
//! _inlet/privacy/regulations/{id}.json          one Regulation, written once, never changed
//! _inlet/privacy/status/{id}/{step}.json        one StepStatus per step of a deletion, replaced as it progresses
//! _inlet/privacy/audit/dt={YYYY-MM-DD}/{unix µs}-{id}-{step}.json   one AuditEntry per completed step
//! _inlet/privacy/quota/{destination}/{YYYY-MM-DD}.json     deletion requests sent on a quota day
//! ```
//! A regulation's id starts with its creation time (`20261205T101500123456Z-1a2b3c4d`), so
//! listing order is creation order, the order in which suppressions and unsuppressions apply.
//! Steps: `lake` (the event files, done by the gateway's privacy worker or `inlet privacy
//! run`), `dead-letters`, `destination-{name}` (a vendor's deletion API) and `warehouse`
//! (`inlet-batch`). The `lake` step first records the anonymous ids the lake links to the
//! deleted user ids (`stitched_anonymous_ids`), so that their events are suppressed too.
//!
//! ## Invariants
//! - A regulation is stored (fsynced locally, confirmed by S3) before it is acknowledged.
//! - A step is marked `done` only after everything it removed is gone from its store; a step
//!   interrupted anywhere is simply run again, and running it again on data it already erased
//!   changes nothing (each file is rewritten whole and swapped in by one atomic put).
//! - The audit log holds the regulation's ids, the step and its counts: no event data.

pub mod erase;
pub mod regulation;
pub mod suppressions;

pub use erase::{BloomIndex, LakeErasure, erase_events, stitched_anonymous_ids};
pub use regulation::{
    AuditEntry, MAX_TARGETS, PrivacyError, PrivacyStore, Regulation, RegulationKind, StepState, StepStatus, Targets,
};
pub use suppressions::{IdSet, Suppressions};
