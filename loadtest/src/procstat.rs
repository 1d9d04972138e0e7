//! The target process's resource use, from Linux's /proc: CPU time (user + system) and peak
//! resident memory (`VmHWM`, the high-water mark since the process started).

use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub cpu: Duration,
    pub peak_rss_bytes: u64,
    pub rss_bytes: u64,
}

/// Clock ticks per second of /proc/PID/stat; 100 on every Linux this runs on.
const TICKS_PER_SECOND: u64 = 100;

pub fn sample(pid: u32) -> Option<Sample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok()
    };
    Some(Sample {
        cpu: Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND),
        peak_rss_bytes: kib("VmHWM:")? * 1024,
        rss_bytes: kib("VmRSS:")? * 1024,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let sample = sample(std::process::id()).expect("own /proc entry");
        assert!(sample.peak_rss_bytes >= sample.rss_bytes && sample.rss_bytes > 0);
    }
}
