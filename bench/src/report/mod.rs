//! `BENCHMARKS.md` and the latency plot ([`plot`]), from a suite's results.
//!
//! The markdown is a [minijinja](https://docs.rs/minijinja) template (prose
//! and tables, kept next to the suite's configuration) rendered over the
//! results: `results` (the main run as written to the results file),
//! `servers` (its single servers, in order), `ref` (the reference server's
//! results, nchan), `reference` (its name), `pair` (see below) and
//! `disturbance`. The filters and functions registered here only format
//! and look up ([`format`]: milliseconds, counts, ratios to the
//! reference, why a saturation step failed, CPU by process); every table
//! is in the template. Every table puts each server next to the reference server
//! measured in the same run, as a ratio: absolute numbers drift on a
//! shared machine, ratios measured minutes apart hold.
//!
//! The main tables show the single servers of the main run that are not
//! set against another server. A target of several servers sharing a Redis
//! gets a section of its own, set against the single server it names, from
//! the newest run (the main one or one merged in later) that measured both:
//! `pair` holds that run, the two targets' results and the pair's spec. The
//! targets of one server with its log elsewhere (on disk, or in a Redis of
//! its own), which name the server with its log in memory, get the section
//! `disk` from the newest run that measured one of them; the topic
//! workloads get `topics` from the newest run that ran them, and publishing
//! in batches `batches` from the newest run that ran it, with the reference
//! server's single-event publishing in that run ([`sections`]).
//! Each server's results hold each workload's under the workload's section
//! (`s.fanout`, `s.per_user`, ...).

mod format;
mod plot;
mod sections;

use anyhow::Context as _;
use minijinja::value::{Serde, Value};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};

use self::format::{
    command_line, count, cpu_by_process, cpu_per_event, cpu_per_publish, first_failure, fixed,
    integrity, kib, mib, ms, ms_vs, num, pct, with_ratio,
};
pub use self::format::{failure, utc, LOADGEN_BOUND};
pub use self::plot::latency_svg;
use self::sections::{
    disturbance, find_batches, find_log_targets, find_pair, find_topics, single_servers,
};
use crate::suite::SuiteResults;
use crate::workloads::batch::BatchStep;
use crate::workloads::publish::PublishStep;
use crate::workloads::{SaturationResult, StepResult};

/// The environment the report is rendered in: the template as `name`,
/// and the formatting filters and look-ups it uses.
fn environment(name: &str, template: &str) -> anyhow::Result<Environment<'static>> {
    let mut env = Environment::new();
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()?,
    );
    env.set_auto_escape_callback(|_| AutoEscape::None);
    // Missing results (a server that did not run a workload) read as
    // undefined all the way down, and the template says so.
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.add_filter("ms", ms);
    env.add_filter("count", count);
    env.add_filter("kib", kib);
    env.add_filter("mib", mib);
    env.add_filter("num", num);
    env.add_filter("fixed", fixed);
    env.add_filter("pct", pct);
    env.add_filter("utc", utc);
    env.add_filter("with_ratio", with_ratio);
    env.add_filter("ms_vs", ms_vs);
    env.add_filter("integrity", integrity);
    env.add_filter("command_line", |args: Vec<String>| command_line(&args));
    env.add_filter("lower_bound", |loadgen_share: f64| {
        if loadgen_share >= LOADGEN_BOUND {
            "≥ "
        } else {
            ""
        }
    });
    env.add_filter("cpu", |v: Option<f64>, reference: Option<f64>| match v {
        Some(v) => with_ratio(format!("{v:.2}"), v, reference),
        None => "–".to_owned(),
    });
    env.add_filter(
        "first_failure",
        |sat: Serde<SaturationResult>, p99_limit_ms: f64, unit: Option<String>| {
            first_failure(&sat, p99_limit_ms, unit.as_deref().unwrap_or(""))
        },
    );
    env.add_filter("cpu_by_process", |step: Serde<StepResult>| {
        cpu_by_process(&step).unwrap_or_else(|| "–".to_owned())
    });
    env.add_filter("cpu_per_publish", |step: Serde<PublishStep>| {
        cpu_per_publish(&step).unwrap_or_else(|| "–".to_owned())
    });
    env.add_filter("cpu_per_event", |step: Serde<BatchStep>| {
        cpu_per_event(&step).unwrap_or_else(|| "–".to_owned())
    });
    env.add_template_owned(name.to_owned(), template.to_owned())?;
    Ok(env)
}

/// Renders `template` over `results`, with ratios against the server
/// named `reference`.
///
/// # Errors
/// When the template does not parse or fails to render (the error names
/// the line).
pub fn markdown(template: &str, results: &SuiteResults, reference: &str) -> anyhow::Result<String> {
    let servers = single_servers(results);
    let env = environment("BENCHMARKS.md", template)?;
    let context = minijinja::context! {
        results => Value::from(Serde(results)),
        servers => Value::from(Serde(&servers)),
        reference => reference,
        ref => Value::from(Serde(servers.iter().find(|s| s.name == reference))),
        pair => Value::from(Serde(find_pair(results))),
        topics => Value::from(Serde(find_topics(results, reference))),
        disk => Value::from(Serde(find_log_targets(results))),
        batches => Value::from(Serde(find_batches(results, reference))),
        disturbance => disturbance(results.servers.iter()),
    };
    let text = env
        .get_template("BENCHMARKS.md")?
        .render(context)
        .map_err(|e| anyhow::anyhow!("{e:#}"))
        .context("cannot render the report template")?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::suite::ServerResults;
    use crate::workloads::fanout::Fanout;
    use crate::workloads::per_user::PerUser;
    use crate::workloads::publish::Publish;
    use crate::workloads::Workload;

    fn run(started_unix: u64, servers: &[(&str, f64)]) -> SuiteResults {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/suite.toml");
        let step = |p99_ms: f64| StepResult {
            subscribers: 100,
            active: 100,
            latency: crate::workloads::Percentiles {
                count: 1,
                p50_ms: p99_ms / 2.0,
                p99_ms,
                p999_ms: p99_ms,
                max_ms: p99_ms,
            },
            deliveries_per_s: 500.0,
            server_cpu_s: Some(0.4),
            server_cpu_by_process: vec![("server 1".into(), 0.3), ("redis".into(), 0.1)],
            server_cpu_s_per_million: Some(4.0),
            seconds: 1.0,
            ..StepResult::default()
        };
        SuiteResults {
            machine: crate::suite::Machine::default(),
            config: crate::suite::SuiteConfig::load(&path).unwrap(),
            started_unix,
            seconds: 60.0,
            servers: servers
                .iter()
                .map(|&(name, p99)| {
                    let mut s = ServerResults {
                        name: name.to_owned(),
                        ..ServerResults::default()
                    };
                    s.set::<Fanout>(&crate::workloads::FanoutResult {
                        step: step(p99),
                        ..Default::default()
                    });
                    s
                })
                .collect(),
            later: Vec::new(),
        }
    }

    fn shipped_template() -> String {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/BENCHMARKS.md.in"),
        )
        .unwrap()
    }

    #[test]
    fn the_pair_has_its_own_section_from_the_newest_run() {
        let template = shipped_template();
        let template = template.as_str();
        // Nothing measured the pair: the section says so.
        let main = run(1, &[("ours", 10.0), ("nchan", 20.0)]);
        let text = markdown(template, &main, "nchan").unwrap();
        assert!(text.contains("Not measured"), "{text}");
        // A later run of the pair and ours: the main tables keep the main
        // run (ours at 10 ms against nchan), the section compares the later
        // run's pair with its ours.
        let merged = main.merge(run(2, &[("ours", 30.0), ("ours-redis-pair", 60.0)]));
        let text = markdown(template, &merged, "nchan").unwrap();
        assert!(text.contains("| | ours | nchan |"), "{text}");
        assert!(text.contains("| 100 | ours | 5.00 ms (0.50×) | 10.0 ms (0.50×) |"));
        assert!(!text.contains("| 100 | ours-redis-pair |"), "{text}");
        assert!(text.contains("a run of ours and ours-redis-pair merged into the results"));
        assert!(text
            .contains("| fan-out: 100 subscribers, 5 events/s | ours | 500 | 15.0 ms | 30.0 ms |"));
        assert!(
            text.contains(
                "|  | ours-redis-pair | 500 (1.00×) | 30.0 ms (2.00×) | 60.0 ms (2.00×) |"
            ),
            "{text}"
        );
        assert!(text.contains(
            "ours-redis-pair 4.00 = server 1 3.00 (75%) + redis 1.00 (25%) (busy 40% of a core)"
        ));
        assert!(text.contains("None: every workload ran"));
    }

    #[test]
    fn the_log_targets_have_their_own_section_from_a_partial_run() {
        let template = shipped_template();
        let main = run(1, &[("ours", 10.0), ("nchan", 20.0)]);
        let text = markdown(&template, &main, "nchan").unwrap();
        assert!(text.contains("## One server with its history on disk"));
        assert!(text.contains("Not measured: no run in `bench/results/results.json` has a target with its log on disk"));
        // A later run of ours and the log targets, as scripts/bench.sh runs
        // it with BENCH_WORKLOADS=publish,fanout: the disk targets have
        // fan-out results, every target publishes.
        let mut later = run(
            2,
            &[
                ("ours", 10.0),
                ("ours-disk-always", 20.0),
                ("ours-disk-batch", 10.0),
                ("ours-redis-always", 0.0),
            ],
        );
        let step = |per_s: f64, p99_ms: f64, processes: &[(&str, f64)]| PublishStep {
            publishers: 16,
            seconds: 5.0,
            ok: 10_000,
            per_s,
            latency: crate::workloads::Percentiles {
                count: 10_000,
                p50_ms: p99_ms / 4.0,
                p99_ms,
                p999_ms: p99_ms,
                max_ms: p99_ms * 2.0,
            },
            server_cpu_s: Some(processes.iter().map(|(_, c)| c).sum()),
            server_cpu_by_process: processes.iter().map(|&(n, c)| (n.to_owned(), c)).collect(),
            loadgen_cpu_share: 0.5,
            ..PublishStep::default()
        };
        for s in &mut later.servers {
            let publish = match s.name.as_str() {
                "ours" => step(2000.0, 2.0, &[("server", 0.5)]),
                "ours-disk-always" => step(1000.0, 8.0, &[("server", 1.0)]),
                "ours-disk-batch" => PublishStep {
                    failed: 3,
                    first_error: Some("status 503 Service Unavailable".to_owned()),
                    ..step(3000.0, 1.0, &[("server", 0.9)])
                },
                _ => {
                    s.workloads.remove(Fanout::SECTION);
                    step(500.0, 4.0, &[("server 1", 0.6), ("redis", 0.2)])
                }
            };
            let mut steps = vec![publish];
            if s.name == "ours-disk-always" {
                // One publisher alone, measured by this target only.
                steps.insert(
                    0,
                    PublishStep {
                        publishers: 1,
                        ..step(300.0, 3.0, &[("server", 0.2)])
                    },
                );
            }
            s.set::<Publish>(&crate::workloads::publish::PublishResult { steps });
        }
        // The main run has a disk target too, as a full run has: the main
        // tables leave it out, the section takes the newer run.
        let main = run(
            1,
            &[("ours", 10.0), ("nchan", 20.0), ("ours-disk-always", 1.0)],
        );
        let merged = main.merge(later);
        let text = markdown(&template, &merged, "nchan").unwrap();
        assert!(text.contains("| | ours | nchan |"), "{text}");
        assert!(!text.contains("| ours-disk-always |  | no |"), "{text}");
        assert!(!text.contains("1.00 ms (0.10×)"), "{text}");
        assert!(!text.contains(
            "Not measured: no run in `bench/results/results.json` has a target with its log"
        ));
        assert!(text.contains(
            "a run of ours, ours-disk-always, ours-disk-batch, ours-redis-always merged into the results"
        ));
        assert!(
            text.contains(
                "| 16 | ours | 2,000 | 0.50 ms | 2.00 ms | 4.00 ms | 50 µs | 0 | 50% | 0% |"
            ),
            "{text}"
        );
        assert!(text.contains("| 16 | ours-disk-always | 1,000 (0.50×) | 2.00 ms (4.00×) | 8.00 ms (4.00×) | 16.0 ms | 100 µs | 0 |"), "{text}");
        assert!(
            text.contains("| 16 | ours-disk-batch | 3,000 (1.50×) |"),
            "{text}"
        );
        assert!(text.contains("| **3** |"), "{text}");
        assert!(text.contains("- ours-disk-batch, 16 publishers: 3 failed, the first with `status 503 Service Unavailable`"));
        assert!(text.contains(
            "| 16 | ours-redis-always | 500 (0.25×) | 1.00 ms (2.00×) | 4.00 ms (2.00×) | 8.00 ms | 80 µs = server 1 60 (75%) + redis 20 (25%) |"
        ), "{text}");
        assert!(text.contains("| 1 | ours | failed |"), "{text}");
        assert!(text.contains("| 1 | ours-disk-always | 300 |"), "{text}");
        assert!(!text.contains("| 64 |"), "{text}");
        assert!(
            text.contains("every time\n(300 publishes/s, p50 0.75 ms here)"),
            "{text}"
        );
        assert!(
            text.contains("(16 publishers:\n1,000 publishes/s"),
            "{text}"
        );
        // The fan-out rows: the disk targets against ours, no Redis target.
        assert!(text.contains("### Fan-out with the log on disk"));
        assert!(
            text.contains("| 100 | ours | 5.00 ms | 10.0 ms | 10.0 ms |"),
            "{text}"
        );
        assert!(
            text.contains(
                "| 100 | ours-disk-always | 10.0 ms (2.00×) | 20.0 ms (2.00×) | 20.0 ms |"
            ),
            "{text}"
        );
        assert!(!text.contains("| 100 | ours-redis-always |"), "{text}");
        assert!(text.contains("None: every workload ran"));
    }

    #[test]
    fn batches_are_set_against_the_references_single_event_publishes() {
        use crate::workloads::batch::{Batch, BatchResult};
        use crate::workloads::publish::PublishResult;
        let template = shipped_template();
        let main = run(1, &[("ours", 10.0), ("nchan", 20.0)]);
        let text = markdown(&template, &main, "nchan").unwrap();
        assert!(text.contains("## Publishing in batches"), "{text}");
        assert!(text.contains(
            "Not measured: no run in `bench/results/results.json` has published in batches"
        ));
        // A later run of publishing alone and in batches: nchan publishes
        // one event a request (best: 4,000/s at 16 publishers), ours and
        // its Redis target post batches of 1,000.
        let mut later = run(
            2,
            &[("ours", 0.0), ("nchan", 0.0), ("ours-redis-always", 0.0)],
        );
        let publish = |publishers: u32, per_s: f64| PublishStep {
            publishers,
            seconds: 5.0,
            ok: (per_s * 5.0) as u64,
            per_s,
            ..PublishStep::default()
        };
        let batch = |publishers: u32, events_per_s: f64, processes: &[(&str, f64)]| BatchStep {
            publishers,
            events_per_batch: 1000,
            seconds: 5.0,
            batches: (events_per_s * 5.0 / 1000.0) as u64,
            events: (events_per_s * 5.0) as u64,
            events_per_s,
            batches_per_s: events_per_s / 1000.0,
            latency: crate::workloads::Percentiles {
                count: 1,
                p50_ms: 5.0,
                p99_ms: 9.0,
                p999_ms: 9.0,
                max_ms: 12.0,
            },
            server_cpu_s: Some(processes.iter().map(|(_, c)| c).sum()),
            server_cpu_by_process: processes.iter().map(|&(n, c)| (n.to_owned(), c)).collect(),
            loadgen_cpu_share: 0.25,
            ..BatchStep::default()
        };
        for s in &mut later.servers {
            s.workloads.remove(Fanout::SECTION);
            match s.name.as_str() {
                "nchan" => s.set::<Publish>(&PublishResult {
                    steps: vec![publish(1, 1000.0), publish(16, 4000.0), publish(64, 3000.0)],
                }),
                "ours" => {
                    s.set::<Publish>(&PublishResult {
                        steps: vec![publish(1, 2000.0), publish(16, 5000.0)],
                    });
                    s.set::<Batch>(&BatchResult {
                        steps: vec![
                            batch(1, 100_000.0, &[("server", 1.0)]),
                            batch(4, 200_000.0, &[("server", 2.5)]),
                        ],
                    });
                }
                _ => s.set::<Batch>(&BatchResult {
                    steps: vec![BatchStep {
                        failed: 2,
                        first_error: Some(
                            "the answer lists 999 stored events of the batch's 1000".to_owned(),
                        ),
                        ..batch(1, 40_000.0, &[("server 1", 0.3), ("redis", 0.1)])
                    }],
                }),
            }
        }
        let merged = main.merge(later);
        let text = markdown(&template, &merged, "nchan").unwrap();
        assert!(!text.contains("has published in batches"), "{text}");
        assert!(text.contains("| 100 | ours | 5.00 ms (0.50×) | 10.0 ms (0.50×) |"));
        assert!(text.contains(
            "- nchan, one event a request: 4,000 publishes/s at its best (16 publishers"
        ));
        assert!(text.contains("a run of ours, nchan, ours-redis-always merged into the results"));
        assert!(text.contains(
            "| 1 | ours | 100,000 | 25.00× | 20.00× | 100 | 5.00 ms | 9.00 ms | 12.0 ms | 2.0 µs | 0 | 25% | 0% |"
        ), "{text}");
        assert!(
            text.contains("| 4 | ours | 200,000 | 50.00× | 40.00× | 200 |"),
            "{text}"
        );
        assert!(text.contains(
            "| 1 | ours-redis-always | 40,000 | 10.00× | – | 40 | 5.00 ms | 9.00 ms | 12.0 ms | 2.0 µs = server 1 1.5 (75%) + redis 0.50 (25%) | **2** |"
        ), "{text}");
        assert!(
            text.contains("| 4 | ours-redis-always | failed |"),
            "{text}"
        );
        assert!(text.contains(
            "- ours-redis-always, 1 publishers: 2 failed, the first with `the answer lists 999 stored events of the batch's 1000`"
        ), "{text}");
        // Without the reference's publishing in that run: no ratios.
        let mut alone = run(3, &[("ours", 0.0)]);
        alone.servers[0].set::<Batch>(&BatchResult {
            steps: vec![batch(1, 100_000.0, &[("server", 1.0)])],
        });
        let text = markdown(&template, &merged.merge(alone), "nchan").unwrap();
        assert!(text.contains("- nchan's publishing alone was not measured in this run"));
        assert!(
            text.contains("| 1 | ours | 100,000 | – | – | 100 |"),
            "{text}"
        );
    }

    #[test]
    fn topic_tables_come_from_the_newest_run_that_has_them() {
        let template = shipped_template();
        let main = run(1, &[("ours", 10.0), ("nchan", 20.0)]);
        let text = markdown(&template, &main, "nchan").unwrap();
        assert!(!text.contains("## Topics"), "no topic results: no section");
        // A later run of the topic workloads only: the main tables stay,
        // the topic section shows the later run, with goals judged.
        let mut topics = run(2, &[("ours", 0.0), ("nchan", 0.0)]);
        for (s, cpu) in topics.servers.iter_mut().zip([0.9, 1.0]) {
            let mut step = s.sweep::<Fanout>().pop().unwrap().step;
            s.workloads.remove(Fanout::SECTION);
            step.expected = 1000;
            step.delivered = 1000;
            step.latency.p99_ms = 5.0;
            step.server_cpu_s = Some(cpu);
            step.server_cpu_s_per_million = Some(cpu * 1000.0);
            s.set::<PerUser>(&step);
        }
        let merged = main.merge(topics);
        let text = markdown(&template, &merged, "nchan").unwrap();
        assert!(text.contains("| 100 | ours | 5.00 ms (0.50×) | 10.0 ms (0.50×) |"));
        assert!(text.contains("## Topics"), "{text}");
        assert!(text.contains("merged into the results after the main run"));
        assert!(
            text.contains("| per-user topics: p99 under 20 ms | 5.00 ms: met | 5.00 ms: met |"),
            "{text}"
        );
        assert!(text.contains(
            "| per-user topics: server CPU at or below nchan's (per delivery) | 0.90×: met | 1.00× |"
        ));
    }
}
