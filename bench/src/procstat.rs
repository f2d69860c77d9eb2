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

/// Field 22 of `/proc/<pid>/stat` (`starttime`, in clock ticks after
/// boot): with the pid, it names one process, not a later one given the
/// same pid.
fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// When process `pid` started (clock ticks after boot); `None` when it is
/// not running.
pub fn start_time(pid: u32) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .as_deref()
        .and_then(parse_start_time)
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

/// One process on the server side of a target (a server, or the Redis its
/// servers share), watched for CPU time and memory with its descendants.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServerProcess {
    /// What it is, for the report (`server`, `server 1`, `redis`).
    pub name: String,
    /// Its process id.
    pub pid: u32,
}

/// Samples every process of a target's server side (each with its
/// descendants), in order; `None` when there is none or one is not running.
pub fn sample_servers(servers: &[ServerProcess]) -> Option<Vec<Sample>> {
    if servers.is_empty() {
        return None;
    }
    servers.iter().map(|s| sample_tree(s.pid).ok()).collect()
}

/// The sum of `samples`.
pub fn total(samples: &[Sample]) -> Sample {
    samples.iter().fold(Sample::default(), |a, s| Sample {
        cpu_seconds: a.cpu_seconds + s.cpu_seconds,
        rss_bytes: a.rss_bytes + s.rss_bytes,
    })
}

/// Cumulative time of one CPU from `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTicks {
    /// user + nice + system + irq + softirq.
    pub busy: u64,
    /// Of `busy`, softirq (network processing that no process is charged
    /// for when ksoftirqd does it).
    pub softirq: u64,
    /// Taken by the hypervisor.
    pub steal: u64,
    /// Everything, idle and iowait included.
    pub total: u64,
}

fn parse_cpu_line(line: &str) -> Option<CpuTicks> {
    let mut fields = line.split_whitespace();
    let name = fields.next()?;
    if !name.starts_with("cpu") || name == "cpu" {
        return None;
    }
    let v: Vec<u64> = fields.map_while(|f| f.parse().ok()).collect();
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    let busy = get(0) + get(1) + get(2) + get(5) + get(6);
    Some(CpuTicks {
        busy,
        softirq: get(6),
        steal: get(7),
        total: busy + get(3) + get(4) + get(7),
    })
}

/// Every CPU's cumulative times, in CPU order.
pub fn cpu_ticks() -> Vec<CpuTicks> {
    std::fs::read_to_string("/proc/stat")
        .unwrap_or_default()
        .lines()
        .filter_map(parse_cpu_line)
        .collect()
}

/// How one CPU was used between two readings, as shares of the elapsed time.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CpuUse {
    /// Busy (user, system, irq, softirq).
    pub busy: f64,
    /// Softirq alone.
    pub softirq: f64,
    /// Stolen by the hypervisor.
    pub steal: f64,
}

/// Per-CPU use between `before` and `after`.
pub fn cpu_use(before: &[CpuTicks], after: &[CpuTicks]) -> Vec<CpuUse> {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| {
            let total = a.total.saturating_sub(b.total).max(1) as f64;
            CpuUse {
                busy: a.busy.saturating_sub(b.busy) as f64 / total,
                softirq: a.softirq.saturating_sub(b.softirq) as f64 / total,
                steal: a.steal.saturating_sub(b.steal) as f64 / total,
            }
        })
        .collect()
}

/// Of the connections from local `ip`, the local ports whose connection the
/// peer has closed, from a `/proc/net/tcp` `table`: either our side is in
/// `CLOSE_WAIT`, or (on loopback, where both ends are listed) the peer's side
/// has left `ESTABLISHED`. A peer that closes with unsent data queued to a
/// reader that does not read is only seen the second way: its FIN waits
/// behind the data.
pub fn closed_by_peer(table: &str, ip: std::net::Ipv4Addr) -> std::collections::HashSet<u16> {
    // An address is the in-memory (network order) u32 printed as hex on a
    // little-endian machine, then `:` and the port in hex.
    let want = format!("{:08X}", u32::from_le_bytes(ip.octets()));
    let split = |field: &str| -> Option<(String, u16)> {
        let (addr, port) = field.split_once(':')?;
        Some((addr.to_owned(), u16::from_str_radix(port, 16).ok()?))
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, remote, state) = (
                split(fields.get(1)?)?,
                split(fields.get(2)?)?,
                *fields.get(3)?,
            );
            if local.0 == want && state == "08" {
                Some(local.1)
            } else if remote.0 == want && state != "01" && state != "0A" {
                Some(remote.1)
            } else {
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_the_name() {
        let stat = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 100 1000 200 18446744073709551615";
        assert_eq!(parse_stat(stat), Some((1, 300)));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_start_time(stat), Some(100));
        assert_eq!(parse_start_time("garbage"), None);
        let me = std::process::id();
        assert!(start_time(me).is_some());
        assert_eq!(start_time(me), start_time(me));
        assert_eq!(start_time(u32::MAX), None);
    }

    #[test]
    fn cpu_lines() {
        assert_eq!(parse_cpu_line("cpu  1 2 3 4 5 6 7 8 0 0"), None);
        assert_eq!(
            parse_cpu_line("cpu1 10 1 5 100 2 3 4 6 0 0"),
            Some(CpuTicks {
                busy: 23,
                softirq: 4,
                steal: 6,
                total: 131
            })
        );
        let before = [CpuTicks {
            busy: 0,
            softirq: 0,
            steal: 0,
            total: 100,
        }];
        let after = [CpuTicks {
            busy: 50,
            softirq: 10,
            steal: 5,
            total: 200,
        }];
        let used = cpu_use(&before, &after);
        assert!((used[0].busy - 0.5).abs() < 1e-9);
        assert!((used[0].softirq - 0.1).abs() < 1e-9);
        assert!(!cpu_ticks().is_empty());
    }

    #[test]
    fn finds_connections_closed_by_the_peer() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0101007F:9C40 0100007F:1F90 08 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 20 4 0 10 -1
   1: 0101007F:9C41 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 0 10 -1
   2: 0201007F:9C42 0100007F:1F90 08 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 20 4 0 10 -1
   3: 0100007F:1F90 0101007F:9C43 04 00000000:00000000 00:00000000 00000000     0        0 4 1 0000000000000000 20 4 0 10 -1
   4: 0100007F:1F90 0101007F:9C41 01 00000000:00000000 00:00000000 00000000     0        0 5 1 0000000000000000 20 4 0 10 -1
";
        let mut ports: Vec<u16> = closed_by_peer(table, std::net::Ipv4Addr::new(127, 0, 1, 1))
            .into_iter()
            .collect();
        ports.sort_unstable();
        assert_eq!(ports, vec![0x9C40, 0x9C43]);
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
        let named = |pid| ServerProcess {
            name: "x".to_owned(),
            pid,
        };
        let both = sample_servers(&[named(me), named(me)]).unwrap();
        assert_eq!(both.len(), 2);
        assert_eq!(
            total(&both).rss_bytes,
            both[0].rss_bytes + both[1].rss_bytes
        );
        assert!(sample_servers(&[named(me), named(u32::MAX)]).is_none());
        assert!(sample_servers(&[]).is_none());
    }
}
