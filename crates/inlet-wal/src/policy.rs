use std::time::Duration;

/// When the log calls `fdatasync`, and therefore what an acknowledged append promises.
///
/// This is the one place the policy is defined; the gateway exposes it as `wal.fsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// Sync before acknowledging (group commit shares one sync among all queued appends).
    /// Acknowledged records survive a process crash and a power loss. The default.
    #[default]
    Always,
    /// Acknowledge once written to the OS; sync at most this long after the first unsynced
    /// write. Survives a process crash (the page cache outlives the process); a power loss or
    /// kernel crash can lose up to the interval's worth of acknowledged records.
    Interval(Duration),
    /// Acknowledge once written to the OS; never sync explicitly (the kernel writes back when it
    /// likes). For benchmarks and tests only: a power loss can lose anything.
    Never,
}

impl FsyncPolicy {
    /// Whether an append must wait for the sync that covers it before it is acknowledged.
    pub fn syncs_before_ack(self) -> bool {
        matches!(self, FsyncPolicy::Always)
    }
}
