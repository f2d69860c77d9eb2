//! The `BENCHMARKS.md` section on the event log on disk (`{{disk}}`): what
//! publishing costs with the log in memory, on disk (`--fsync always` and
//! `batch=100ms`) and in Redis (`appendfsync always` and `everysec`), and
//! the fan-out with the log on disk next to the log in memory, all from the
//! newest run (the main one or one merged in later) that measured a disk
//! target.

use std::fmt::Write as _;

use crate::report::utc;
use crate::suite::{ServerResults, SuiteResults};

/// The servers of this section, in the order of its tables.
const TARGETS: [&str; 5] = [
    "ours",
    "ours-disk-always",
    "ours-disk-batch",
    "ours-redis-always",
    "ours-redis-everysec",
];

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.2} ms")
    }
}

fn ratio(value: f64, reference: Option<f64>) -> String {
    match reference {
        Some(r) if r > 0.0 && value.is_finite() => format!(" ({:.2}×)", value / r),
        _ => String::new(),
    }
}

fn disk_measured(run: &SuiteResults) -> bool {
    run.servers
        .iter()
        .any(|s| s.name.starts_with("ours-disk") && (s.publish.is_some() || !s.fanout.is_empty()))
}

/// The section's tables, or how to measure them.
pub fn section(results: &SuiteResults) -> String {
    let mut runs: Vec<&SuiteResults> = std::iter::once(results).chain(&results.later).collect();
    runs.sort_by_key(|r| std::cmp::Reverse(r.started_unix));
    let Some(run) = runs.into_iter().find(|r| disk_measured(r)) else {
        return "Not measured yet: `BENCH_SERVERS=ours,ours-disk-always,ours-disk-batch,\
                ours-redis-always,ours-redis-everysec BENCH_WORKLOADS=publish,fanout \
                scripts/bench.sh`."
            .to_owned();
    };
    let servers: Vec<&ServerResults> = TARGETS
        .iter()
        .filter_map(|name| run.servers.iter().find(|s| s.name == *name))
        .collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Measured in the run of {} (every row of a table in that run). *Other \
         CPU* is the share of a core that processes other than the target and \
         the load generator used during the step.\n",
        utc(run.started_unix)
    );
    out.push_str(&publish_table(&servers));
    out.push('\n');
    out.push_str(&fanout_table(&servers));
    out
}

fn publish_table(servers: &[&ServerResults]) -> String {
    let memory = servers.iter().find(|s| s.name == "ours");
    let mut out = String::from(
        "| target | publishers | publishes/s | p50 | p99 | server CPU per publish | failed | other CPU |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for s in servers {
        let Some(publish) = &s.publish else { continue };
        for step in &publish.steps {
            let reference = memory
                .and_then(|m| m.publish.as_ref())
                .and_then(|p| p.steps.iter().find(|r| r.publishers == step.publishers));
            let per_publish = step.server_cpu_s.filter(|_| step.ok > 0).map_or_else(
                || "–".to_owned(),
                |c| format!("{:.0} µs", c / step.ok as f64 * 1e6),
            );
            let _ = writeln!(
                out,
                "| {} | {} | {:.0}{} | {} | {}{} | {} | {} | {:.0}% |",
                s.name,
                step.publishers,
                step.per_s,
                ratio(step.per_s, reference.map(|r| r.per_s)),
                ms(step.latency.p50_ms),
                ms(step.latency.p99_ms),
                ratio(step.latency.p99_ms, reference.map(|r| r.latency.p99_ms)),
                per_publish,
                step.failed,
                step.other_cpu_share.max(0.0) * 100.0,
            );
        }
    }
    out
}

fn fanout_table(servers: &[&ServerResults]) -> String {
    let with_fanout: Vec<&&ServerResults> =
        servers.iter().filter(|s| !s.fanout.is_empty()).collect();
    if with_fanout.is_empty() {
        return String::new();
    }
    let memory = servers.iter().find(|s| s.name == "ours");
    let mut counts: Vec<u32> = with_fanout
        .iter()
        .flat_map(|s| s.fanout.iter().map(|f| f.step.subscribers))
        .collect();
    counts.sort_unstable();
    counts.dedup();
    let mut out = String::from(
        "| target | subscribers | p50 | p99 | last subscriber p99 | lost / dup / reordered | other CPU |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    for n in counts {
        let reference = memory
            .and_then(|m| m.fanout.iter().find(|f| f.step.subscribers == n))
            .map(|f| f.step.latency.p99_ms);
        for s in &with_fanout {
            let Some(f) = s.fanout.iter().find(|f| f.step.subscribers == n) else {
                continue;
            };
            let st = &f.step;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {}{} | {} | {} / {} / {} | {:.0}% |",
                s.name,
                n,
                ms(st.latency.p50_ms),
                ms(st.latency.p99_ms),
                ratio(st.latency.p99_ms, reference),
                ms(st.completion.p99_ms),
                st.lost,
                st.duplicated,
                st.reordered,
                st.other_cpu_share.max(0.0) * 100.0,
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish_load::{PublishResult, PublishStep};
    use crate::workloads::{FanoutResult, Percentiles, StepResult};

    fn server(name: &str, per_s: f64, p99: f64) -> ServerResults {
        ServerResults {
            name: name.to_owned(),
            publish: Some(PublishResult {
                steps: vec![PublishStep {
                    publishers: 16,
                    per_s,
                    ok: 100,
                    server_cpu_s: Some(0.01),
                    latency: Percentiles {
                        p99_ms: p99,
                        ..Percentiles::default()
                    },
                    ..PublishStep::default()
                }],
            }),
            fanout: vec![FanoutResult {
                step: StepResult {
                    subscribers: 1000,
                    latency: Percentiles {
                        p99_ms: 20.0,
                        ..Percentiles::default()
                    },
                    ..StepResult::default()
                },
                ..FanoutResult::default()
            }],
            ..ServerResults::default()
        }
    }

    #[test]
    fn the_section_sets_the_disk_targets_against_memory_from_the_newest_run() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/suite.toml");
        let run = |started_unix, servers| SuiteResults {
            machine: crate::suite::Machine::default(),
            config: crate::suite::SuiteConfig::load(&path).unwrap(),
            started_unix,
            seconds: 1.0,
            servers,
            later: Vec::new(),
        };
        let mut main = run(1, vec![server("ours", 1000.0, 1.0)]);
        assert!(section(&main).starts_with("Not measured yet"));
        main.later.push(run(
            2,
            vec![
                server("ours", 2000.0, 1.0),
                server("ours-disk-always", 1000.0, 4.0),
            ],
        ));
        let text = section(&main);
        assert!(
            text.contains("| ours-disk-always | 16 | 1000 (0.50×) |"),
            "{text}"
        );
        assert!(text.contains("4.00 ms (4.00×)"), "{text}");
        assert!(text.contains("| ours-disk-always | 1000 |"), "{text}");
    }
}
