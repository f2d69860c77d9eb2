//! What the kernel accounts for the processes under test, read from `/proc`
//! with the `procfs` crate: CPU time and resident memory of a process and
//! its descendants (nginx does its work in a child of the process we
//! start), each CPU's busy time, and which of a worker's connections the
//! peer has closed.

use std::io;

use procfs::net::{TcpNetEntry, TcpState};
use procfs::process::Process;
use procfs::{CpuTime, CurrentSI, KernelStats};

/// One reading of a process tree.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident set size, in bytes.
    pub rss_bytes: u64,
}

fn process(pid: u32) -> Option<Process> {
    Process::new(i32::try_from(pid).ok()?).ok()
}

/// When process `pid` started (clock ticks after boot: with the pid, it
/// names one process, not a later one given the same pid); `None` when it
/// is not running.
pub fn start_time(pid: u32) -> Option<u64> {
    Some(process(pid)?.stat().ok()?.starttime)
}

/// `pid` and all its descendants.
pub fn tree(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = procfs::process::all_processes()
        .map(|all| {
            all.flatten()
                .filter_map(|p| {
                    let stat = p.stat().ok()?;
                    Some((
                        u32::try_from(stat.pid).ok()?,
                        u32::try_from(stat.ppid).ok()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
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
    let ticks = procfs::ticks_per_second().max(1) as f64;
    let mut sample = Sample::default();
    for p in pids.iter().filter_map(|&pid| process(pid)) {
        if let Ok(stat) = p.stat() {
            sample.cpu_seconds += (stat.utime + stat.stime) as f64 / ticks;
        }
        if let Some(kb) = p.status().ok().and_then(|s| s.vmrss) {
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
    if process(pid).is_none() {
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

/// Each of `servers`' CPU time between two readings of them (see
/// [`sample_servers`]): (name, s); `None` when either reading is missing.
pub fn cpu_by_process(
    servers: &[ServerProcess],
    before: Option<&[Sample]>,
    after: Option<&[Sample]>,
) -> Option<Vec<(String, f64)>> {
    let (before, after) = before.zip(after)?;
    Some(
        servers
            .iter()
            .zip(before.iter().zip(after))
            .map(|(p, (b, a))| (p.name.clone(), a.cpu_seconds - b.cpu_seconds))
            .collect(),
    )
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

impl From<&CpuTime> for CpuTicks {
    fn from(t: &CpuTime) -> Self {
        let (irq, softirq) = (t.irq.unwrap_or(0), t.softirq.unwrap_or(0));
        let steal = t.steal.unwrap_or(0);
        let busy = t.user + t.nice + t.system + irq + softirq;
        Self {
            busy,
            softirq,
            steal,
            total: busy + t.idle + t.iowait.unwrap_or(0) + steal,
        }
    }
}

/// Every CPU's cumulative times in `stats`, in CPU order (the machine-wide
/// `cpu` line is not one of them).
pub fn cpu_ticks_of(stats: &KernelStats) -> Vec<CpuTicks> {
    stats.cpu_time.iter().map(CpuTicks::from).collect()
}

/// Every CPU's cumulative times now, in CPU order.
pub fn cpu_ticks() -> Vec<CpuTicks> {
    KernelStats::current()
        .map(|s| cpu_ticks_of(&s))
        .unwrap_or_default()
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

/// The machine's IPv4 TCP connections now (`/proc/net/tcp`); none when it
/// cannot be read.
pub fn tcp_connections() -> Vec<TcpNetEntry> {
    procfs::net::tcp().unwrap_or_default()
}

/// Of the connections from local `ip` in `table`, the local ports whose
/// connection the peer has closed: either our side is in `CLOSE_WAIT`, or
/// (on loopback, where both ends are listed) the peer's side has left
/// `ESTABLISHED`. A peer that closes with unsent data queued to a reader
/// that does not read is only seen the second way: its FIN waits behind the
/// data.
pub fn closed_by_peer(
    table: &[TcpNetEntry],
    ip: std::net::Ipv4Addr,
) -> std::collections::HashSet<u16> {
    let ip = std::net::IpAddr::V4(ip);
    table
        .iter()
        .filter_map(|c| {
            if c.local_address.ip() == ip && c.state == TcpState::CloseWait {
                Some(c.local_address.port())
            } else if c.remote_address.ip() == ip
                && c.state != TcpState::Established
                && c.state != TcpState::Listen
            {
                Some(c.remote_address.port())
            } else {
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use procfs::process::{Stat, Status};
    use procfs::{FromRead, FromReadSI};

    use super::*;

    /// The `(ppid, utime + stime)` and `starttime` of a `/proc/<pid>/stat`
    /// line, as [`sample_pids`] and [`start_time`] read them.
    fn parse_stat(stat: &str) -> Option<((i32, u64), u64)> {
        let stat = Stat::from_read(stat.as_bytes()).ok()?;
        Some(((stat.ppid, stat.utime + stat.stime), stat.starttime))
    }

    #[test]
    fn parses_stat_with_spaces_in_the_name() {
        let stat = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 100 1000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        assert_eq!(parse_stat(stat).map(|s| s.0), Some((1, 300)));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat(stat).map(|s| s.1), Some(100));
        let me = std::process::id();
        assert!(start_time(me).is_some());
        assert_eq!(start_time(me), start_time(me));
        assert_eq!(start_time(u32::MAX), None);
    }

    fn kernel_stats(cpu_lines: &str) -> KernelStats {
        let text = format!("{cpu_lines}\nctxt 1\nbtime 1\nprocesses 1\n");
        KernelStats::from_read(text.as_bytes(), procfs::current_system_info()).unwrap()
    }

    #[test]
    fn cpu_lines() {
        assert_eq!(
            cpu_ticks_of(&kernel_stats("cpu  1 2 3 4 5 6 7 8 0 0")),
            [],
            "the machine-wide line is no CPU"
        );
        assert_eq!(
            cpu_ticks_of(&kernel_stats(
                "cpu  1 2 3 4 5 6 7 8 0 0\ncpu1 10 1 5 100 2 3 4 6 0 0"
            )),
            [CpuTicks {
                busy: 23,
                softirq: 4,
                steal: 6,
                total: 131
            }]
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
        let table =
            procfs::net::TcpNetEntries::from_read(table.as_bytes(), procfs::current_system_info())
                .unwrap()
                .0;
        let mut ports: Vec<u16> = closed_by_peer(&table, std::net::Ipv4Addr::new(127, 0, 1, 1))
            .into_iter()
            .collect();
        ports.sort_unstable();
        assert_eq!(ports, vec![0x9C40, 0x9C43]);
    }

    #[test]
    fn reads_this_process() {
        // VmRSS, in kB, from a status file like this process's own.
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let status: String = status
            .lines()
            .map(|l| {
                if l.starts_with("VmRSS:") {
                    "VmRSS:\t  1234 kB\n".to_owned()
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        assert_eq!(
            Status::from_read(status.as_bytes()).unwrap().vmrss,
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
