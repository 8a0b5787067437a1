//! CPU time and peak resident memory of a process, read from Linux's /proc
//! (no libc binding needed; elsewhere the figures are reported as absent).

/// Clock ticks per second of /proc/<pid>/stat times. Linux fixes USER_HZ at
/// 100 on every architecture agentd runs on.
const TICKS_PER_SEC: f64 = 100.0;

/// User + system CPU seconds used so far by process `pid`.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it don't.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SEC)
}

/// Peak resident set size of process `pid` in MiB (VmHWM).
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    status_mib(pid, "VmHWM:")
}

/// Resident set size of process `pid` now, in MiB (VmRSS).
pub fn rss_mib(pid: u32) -> Option<f64> {
    status_mib(pid, "VmRSS:")
}

fn status_mib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let before = cpu_secs(me).expect("cpu time");
        // Burn a little CPU so the counter moves past one tick.
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(60) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        assert!(cpu_secs(me).unwrap() > before);
        assert!(peak_rss_mib(me).unwrap() > 1.0);
        assert!(rss_mib(me).unwrap() <= peak_rss_mib(me).unwrap());
    }
}
