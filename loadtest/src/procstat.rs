//! Resource use from Linux's /proc: a process's CPU time (user + system) and peak resident
//! memory (`VmHWM`, the high-water mark since the process started), and the whole machine's
//! CPU time by state. The generator shares the machine with its target, so a report says what
//! each of them and the rest of the machine used (and what the hypervisor took: `steal`).

use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub cpu: Duration,
    pub peak_rss_bytes: u64,
    pub rss_bytes: u64,
}

impl Sample {
    /// The CPU the process used between `self` and a `later` sample, in per cent of one core
    /// over `seconds`.
    pub fn cpu_percent_until(&self, later: &Sample, seconds: f64) -> f64 {
        later.cpu.saturating_sub(self.cpu).as_secs_f64() / seconds * 100.0
    }
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

/// The machine's CPU time since boot, all CPUs together, by state (the first line of
/// /proc/stat). Interrupt time counts as busy; `steal` is time the hypervisor ran something else
/// while a virtual CPU wanted to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineTicks {
    pub busy: u64,
    pub idle: u64,
    pub iowait: u64,
    pub steal: u64,
}

impl MachineTicks {
    /// Each state's share of the time between `self` and a `later` sample, in per cent of all
    /// the CPUs' time (so a 2-CPU machine fully busy is 100, not 200).
    pub fn shares_until(&self, later: &MachineTicks) -> Option<MachineShares> {
        let busy = later.busy.checked_sub(self.busy)?;
        let idle = later.idle.checked_sub(self.idle)?;
        let iowait = later.iowait.checked_sub(self.iowait)?;
        let steal = later.steal.checked_sub(self.steal)?;
        let total = (busy + idle + iowait + steal) as f64;
        if total == 0.0 {
            return None;
        }
        let percent = |ticks: u64| ticks as f64 / total * 100.0;
        Some(MachineShares { busy: percent(busy), idle: percent(idle), iowait: percent(iowait), steal: percent(steal) })
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MachineShares {
    pub busy: f64,
    pub idle: f64,
    pub iowait: f64,
    pub steal: f64,
}

pub fn machine() -> Option<MachineTicks> {
    parse_machine(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// `cpu  user nice system idle iowait irq softirq steal guest guest_nice`: guest time is
/// already counted in user time, so it is left out.
fn parse_machine(stat: &str) -> Option<MachineTicks> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line.split_whitespace().skip(1).map(str::parse).collect::<Result<_, _>>().ok()?;
    let field = |i: usize| ticks.get(i).copied().unwrap_or(0);
    Some(MachineTicks {
        busy: field(0) + field(1) + field(2) + field(5) + field(6),
        idle: *ticks.get(3)?,
        iowait: field(4),
        steal: field(7),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_states_are_read_from_the_cpu_line() {
        let stat = "cpu  100 5 40 800 20 3 7 25 11 0\ncpu0 50 2 20 400 10 1 3 12 5 0\nintr 1 2 3\n";
        let ticks = parse_machine(stat).expect("parsed");
        assert_eq!(ticks, MachineTicks { busy: 155, idle: 800, iowait: 20, steal: 25 });
        let later = MachineTicks { busy: 255, idle: 850, iowait: 20, steal: 75 };
        let shares = ticks.shares_until(&later).expect("time passed");
        assert_eq!((shares.busy, shares.idle, shares.iowait, shares.steal), (50.0, 25.0, 0.0, 25.0));
        assert_eq!(ticks.shares_until(&ticks), None, "no time between the samples");
        assert_eq!(later.shares_until(&ticks), None, "samples in the wrong order");
    }

    #[test]
    fn reads_this_machine() {
        let ticks = machine().expect("/proc/stat");
        assert!(ticks.busy + ticks.idle > 0);
    }

    #[test]
    fn reads_this_process() {
        let sample = sample(std::process::id()).expect("own /proc entry");
        assert!(sample.peak_rss_bytes >= sample.rss_bytes && sample.rss_bytes > 0);
    }
}
