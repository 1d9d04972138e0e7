use std::fmt;

/// Why the body as a whole was refused. Nothing in it is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("body is empty")]
    EmptyBody,
    #[error("body must be a JSON object")]
    NotAnObject,
    #[error("`batch` must be an array of messages")]
    BatchNotArray,
    #[error("`batch` is empty")]
    EmptyBatch,
    #[error("batch has {count} messages; at most {max} are accepted per request")]
    TooManyEvents { count: usize, max: usize },
    #[error("message is {bytes} bytes; at most {max} are accepted per message")]
    EventTooLarge { bytes: usize, max: usize },
    #[error("the batch's context and integrations are {bytes} bytes; merged into every message, at most {max} fit")]
    BatchContextTooLarge { bytes: usize, max: usize },
    #[error("`{field}` must be {expected}")]
    InvalidField { field: &'static str, expected: &'static str },
}

impl RequestError {
    /// The stable error code returned to clients and used as a metric label.
    pub fn code(&self) -> &'static str {
        match self {
            RequestError::InvalidJson(_) => "invalid_json",
            RequestError::EmptyBody => "empty_body",
            RequestError::NotAnObject => "invalid_body",
            RequestError::BatchNotArray => "invalid_batch",
            RequestError::EmptyBatch => "empty_batch",
            RequestError::TooManyEvents { .. } => "too_many_events",
            RequestError::EventTooLarge { .. } => "event_too_large",
            RequestError::BatchContextTooLarge { .. } => "batch_context_too_large",
            RequestError::InvalidField { .. } => "invalid_field",
        }
    }
}

/// Why one message was refused: a bounded set, so it can label metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    NotAnObject,
    InvalidJson,
    EventTooLarge,
    MissingType,
    InvalidType,
    MissingId,
    InvalidId,
    MissingEvent,
    MissingUserId,
    MissingPreviousId,
    MissingGroupId,
    InvalidMessageId,
    InvalidTimestamp,
    InvalidField,
}

impl RejectReason {
    pub const ALL: [RejectReason; 14] = [
        RejectReason::NotAnObject,
        RejectReason::InvalidJson,
        RejectReason::EventTooLarge,
        RejectReason::MissingType,
        RejectReason::InvalidType,
        RejectReason::MissingId,
        RejectReason::InvalidId,
        RejectReason::MissingEvent,
        RejectReason::MissingUserId,
        RejectReason::MissingPreviousId,
        RejectReason::MissingGroupId,
        RejectReason::InvalidMessageId,
        RejectReason::InvalidTimestamp,
        RejectReason::InvalidField,
    ];

    /// The stable error code returned to clients and used as a metric label.
    pub fn code(self) -> &'static str {
        match self {
            RejectReason::NotAnObject => "invalid_message",
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::EventTooLarge => "event_too_large",
            RejectReason::MissingType => "missing_type",
            RejectReason::InvalidType => "invalid_type",
            RejectReason::MissingId => "missing_id",
            RejectReason::InvalidId => "invalid_id",
            RejectReason::MissingEvent => "missing_event",
            RejectReason::MissingUserId => "missing_user_id",
            RejectReason::MissingPreviousId => "missing_previous_id",
            RejectReason::MissingGroupId => "missing_group_id",
            RejectReason::InvalidMessageId => "invalid_message_id",
            RejectReason::InvalidTimestamp => "invalid_timestamp",
            RejectReason::InvalidField => "invalid_field",
        }
    }
}

/// One message refused, with a message for the developer who sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: RejectReason,
    pub message: String,
}

impl Rejection {
    pub(crate) fn new(reason: RejectReason, message: impl Into<String>) -> Rejection {
        Rejection { reason, message: message.into() }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.code(), self.message)
    }
}
