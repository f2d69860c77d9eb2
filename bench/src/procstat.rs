//! CPU time and resident memory of a process and its descendants, read from
//! `/proc` (nginx does its work in a child of the process we start).

use std::fs;
use std::io;

/// One reading of a process tree.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident set size, in bytes.
    pub rss_bytes: u64,
}

/// The fields of `/proc/<pid>/stat` after the command name: (ppid, utime +
/// stime in clock ticks).
fn parse_stat(stat: &str) -> Option<(u32, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is the state (field 3 of stat(5)); ppid is field 4, utime
    // field 14 and stime field 15.
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

fn parse_rss_kb(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Clock ticks per second for `/proc` times.
pub fn clock_ticks() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// `pid` and all its descendants.
pub fn tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some((ppid, _)) = fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .as_deref()
                .and_then(parse_stat)
            {
                parents.push((p, ppid));
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    out
}

/// Sums CPU time and RSS over `pids` (processes that are gone count zero).
pub fn sample_pids(pids: &[u32]) -> Sample {
    let ticks = clock_ticks() as f64;
    let mut sample = Sample::default();
    for pid in pids {
        if let Some((_, t)) = fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .as_deref()
            .and_then(parse_stat)
        {
            sample.cpu_seconds += t as f64 / ticks;
        }
        if let Some(kb) = fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .as_deref()
            .and_then(parse_rss_kb)
        {
            sample.rss_bytes += kb * 1024;
        }
    }
    sample
}

/// Samples `pid` and its descendants.
///
/// # Errors
/// [`io::ErrorKind::NotFound`] when `pid` is not running.
pub fn sample_tree(pid: u32) -> io::Result<Sample> {
    if fs::metadata(format!("/proc/{pid}")).is_err() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("process {pid} is not running"),
        ));
    }
    Ok(sample_pids(&tree(pid)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_the_name() {
        let stat = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 100 1000 200 18446744073709551615";
        assert_eq!(parse_stat(stat), Some((1, 300)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn reads_this_process() {
        assert_eq!(
            parse_rss_kb("Name:\tx\nVmRSS:\t  1234 kB\nVmSwap: 0 kB\n"),
            Some(1234)
        );
        let me = std::process::id();
        let sample = sample_tree(me).unwrap();
        assert!(sample.rss_bytes > 0);
        assert!(tree(me).contains(&me));
        assert!(sample_tree(u32::MAX).is_err());
    }
}
