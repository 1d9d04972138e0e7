use std::io;
use std::path::PathBuf;

/// Everything the write-ahead log can fail with.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("segment {path} is damaged at byte {offset}: {reason}")]
    Corrupt { path: PathBuf, offset: u64, reason: String },
    #[error("record of {len} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge { len: usize, max: usize },
    #[error("the write-ahead log failed earlier and refuses writes until restart: {0}")]
    Poisoned(String),
    #[error("the write-ahead log is shut down")]
    Closed,
    #[error("LSN {requested} is no longer retained (oldest retained is {oldest})")]
    Truncated { requested: u64, oldest: u64 },
    #[error("unknown consumer {0:?} (consumers are fixed when the log is opened)")]
    UnknownConsumer(String),
}

impl WalError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> WalError {
        let context = context.into();
        move |source| WalError::Io { context, source }
    }

    /// As [`WalError::io`], with the context built only if there is an error: for the calls
    /// made on every append, where formatting a path each time would cost more than the call.
    pub(crate) fn io_lazily(context: impl FnOnce() -> String) -> impl FnOnce(io::Error) -> WalError {
        move |source| WalError::Io { context: context(), source }
    }
}

pub(crate) type Result<T, E = WalError> = std::result::Result<T, E>;
