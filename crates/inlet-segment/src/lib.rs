//! # inlet-segment: the Segment message model
//!
//! Parses Tracking API request bodies, validates each message against the Segment spec, and
//! normalises it (message id, server-corrected timestamps, merged batch context, client IP).
//! Pure functions over bytes and a clock reading handed in by the caller: no I/O, no HTTP, so
//! the gateway, the golden corpus and the property tests all exercise exactly the same code.
//!
//! Two kinds of failure are kept apart on purpose:
//! - [`RequestError`]: the body as a whole is unusable (not JSON, not a batch, too many
//!   events). Nothing in it is stored.
//! - [`Rejection`]: one message breaks a rule. In a batch the others are still stored.

mod ip_policy;
mod message_type;
mod normalise;
mod payload;
mod raw_json;
mod rejection;
mod stored;
mod time;

pub use ip_policy::IpPolicy;
pub use message_type::MessageType;
pub use normalise::{BatchDefaults, CheckedMembers, Event, Normaliser, RequestMeta, SERVER_FIELDS_ALLOWANCE};
pub use payload::{Limits, ParsedBody, RouteKind, parse_body};
pub use raw_json::{
    MAX_MESSAGE_DEPTH, Member, Nested, ObjectWriter, RawObject, Scalar, is_null, is_object, object_members,
    object_members_nested, scalar, string_value,
};
pub use rejection::{RejectReason, Rejection, RequestError};
pub use stored::{
    BLOCK_MODE, EventKey, PlanVerdict, StoredEvent, StoredEventKey, StoredRecord, UndecodableRecord,
    encode_checked_event_into, encode_stored_event, encode_stored_event_into,
};
pub use time::{format_timestamp, parse_timestamp};
