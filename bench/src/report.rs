//! `BENCHMARKS.md` and the latency plot, from a suite's results.
//!
//! The markdown is a template (prose kept in a file next to the suite's
//! configuration) whose `{{name}}` placeholders are replaced by tables
//! generated here. Every table puts each server next to the reference
//! server (nchan) measured in the same run, as a ratio: absolute numbers
//! drift on a shared machine, ratios measured minutes apart hold.
//!
//! The main tables show the single servers of the main run. A target of
//! several processes (two servers sharing a Redis) gets a section of its
//! own, set against the single server it names, from the newest run (the
//! main one or one merged in later) that measured both.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use crate::server_proc::ServerSpec;
use crate::suite::{ServerResults, SuiteResults};
use crate::workloads::{SaturationResult, StepResult};

/// Formats milliseconds with a sensible precision.
fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.2} ms")
    }
}

/// Formats a count with thin groupings (12 345 678).
fn count(v: f64) -> String {
    let n = v.round().max(0.0) as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn kib(bytes: f64) -> String {
    format!("{:.1} KiB", bytes / 1024.0)
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / 1024.0 / 1024.0)
}

/// `value (ratio×)` against `reference`, or just `value`.
fn with_ratio(text: String, value: f64, reference: Option<f64>) -> String {
    match reference {
        Some(r) if r > 0.0 && value.is_finite() => format!("{text} ({:.2}×)", value / r),
        _ => text,
    }
}

/// Loss summary: `0` or `lost/dup/reordered`.
fn integrity(lost: u64, duplicated: u64, reordered: u64) -> String {
    if lost == 0 && duplicated == 0 && reordered == 0 {
        "0 / 0 / 0".to_owned()
    } else {
        format!(
            "**{} / {} / {}**",
            count(lost as f64),
            count(duplicated as f64),
            count(reordered as f64)
        )
    }
}

/// The Unix time as `YYYY-MM-DD HH:MM UTC`.
pub fn utc(unix: u64) -> String {
    let days = i64::try_from(unix / 86_400).unwrap_or(0);
    let secs = unix % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60
    )
}

struct Ctx<'a> {
    results: &'a SuiteResults,
    /// The main run's single servers, in order.
    servers: Vec<&'a ServerResults>,
    reference: Option<&'a ServerResults>,
}

/// The spec of the server `name` in the run's configuration.
fn spec<'a>(run: &'a SuiteResults, name: &str) -> Option<&'a ServerSpec> {
    run.config.servers.iter().find(|s| s.name == name)
}

/// The run's single servers (every server when the configuration does not
/// say otherwise).
fn single_servers(run: &SuiteResults) -> Vec<&ServerResults> {
    run.servers
        .iter()
        // A target set against another one has a section of its own.
        .filter(|s| spec(run, &s.name).is_none_or(|x| x.is_single() && x.compare_with.is_none()))
        .collect()
}

/// Whether anything was measured for `s`.
fn measured(s: &ServerResults) -> bool {
    !s.fanout.is_empty() || s.saturation.is_some() || s.storm.is_some() || s.slow.is_some()
}

fn fanout_at(server: &ServerResults, n: u32) -> Option<&crate::workloads::FanoutResult> {
    server.fanout.iter().find(|f| f.step.subscribers == n)
}

impl Ctx<'_> {
    fn machine(&self) -> String {
        let m = &self.results.machine;
        let mut out = String::new();
        let _ = writeln!(out, "- CPU: {} ({} cores available)", m.cpu, m.cpus);
        let _ = writeln!(out, "- Memory: {} MiB; Linux {}", m.memory_mib, m.kernel);
        for (name, version) in &m.versions {
            let _ = writeln!(out, "- {name}: `{version}`");
        }
        let c = &self.results.config;
        let _ = writeln!(
            out,
            "- Pinning: every server on CPU {} (`taskset -c {}`), the load generator (coordinator, publisher and workers) on CPU {}",
            c.server_cpus.as_deref().unwrap_or("any"),
            c.server_cpus.as_deref().unwrap_or("-"),
            c.loadgen_cpus.as_deref().unwrap_or("any")
        );
        let _ = writeln!(
            out,
            "- Run: {}, {:.1} minutes; CPU time used by neither the servers nor the load generator (other processes, and network softirq work charged to no process) was at most {:.0}% of a core in any step",
            utc(self.results.started_unix),
            self.results.seconds / 60.0,
            self.disturbance() * 100.0
        );
        out
    }

    fn servers(&self) -> String {
        let mut out =
            String::from("| server | what | resumes from Last-Event-ID |\n|---|---|---|\n");
        for s in &self.servers {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                s.name,
                s.description,
                if s.resumes { "yes" } else { "no" }
            );
        }
        out
    }

    fn parameters(&self) -> String {
        let c = &self.results.config;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "- Fan-out: {} subscribers; {} events/s for {} s, {}-byte payloads.",
            c.fanout
                .subscribers
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            c.fanout.rate,
            c.fanout.seconds,
            c.fanout.payload_bytes
        );
        let _ = writeln!(
            out,
            "- Saturation: {} subscribers; event rates {} per second, {} s each, {}-byte payloads; a rate passes with nothing lost, duplicated or reordered and p99 under {} ms; {} bisection probes after the first failure, each on a restarted server.",
            c.saturation.subscribers,
            c.saturation
                .rates
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            c.saturation.seconds,
            c.saturation.payload_bytes,
            c.saturation.p99_limit_ms,
            c.saturation.refine
        );
        let _ = writeln!(
            out,
            "- Reconnect storm: {} subscribers, {} events/s; after {} s all of them drop and reconnect at once with the `Last-Event-ID` of the event {} behind their newest; publishing goes on for {} s.",
            c.storm.subscribers, c.storm.rate, c.storm.before_seconds, c.storm.behind, c.storm.during_seconds
        );
        let _ = writeln!(
            out,
            "- Slow consumer: {} subscribers of which {} stop reading (keeping their connections open); {} events/s for {} s, {}-byte payloads.",
            c.slow.subscribers, c.slow.stalled, c.slow.rate, c.slow.seconds, c.slow.payload_bytes
        );
        let _ = writeln!(
            out,
            "- Load generator: at most {} subscribers per worker process, {} connection attempts in flight per worker, {} publishing connections.",
            c.per_worker, c.connect_concurrency, c.publish_connections
        );
        out
    }

    fn fanout(&self) -> String {
        let mut out = String::from(
            "| subscribers | server | p50 | p99 | p99.9 | max | last subscriber p99 | lost / dup / reordered | server CPU s per M deliveries | load generator CPU |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for &n in &self.results.config.fanout.subscribers {
            let reference = self
                .reference
                .and_then(|r| fanout_at(r, n))
                .map(|f| &f.step);
            for s in &self.servers {
                let Some(f) = fanout_at(s, n) else {
                    let _ = writeln!(out, "| {n} | {} | failed | | | | | | | |", s.name);
                    continue;
                };
                let st = &f.step;
                let r = reference;
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0}% |",
                    count(f64::from(st.active)),
                    s.name,
                    ms_vs(st.latency.p50_ms, r.map(|r| r.latency.p50_ms)),
                    ms_vs(st.latency.p99_ms, r.map(|r| r.latency.p99_ms)),
                    ms(st.latency.p999_ms),
                    ms(st.latency.max_ms),
                    ms_vs(st.completion.p99_ms, r.map(|r| r.completion.p99_ms)),
                    integrity(st.lost, st.duplicated, st.reordered),
                    cpu_cell(st, r),
                    st.loadgen_cpu_share * 100.0
                );
            }
        }
        out
    }

    fn memory(&self) -> String {
        let ns = &self.results.config.fanout.subscribers;
        let mut out = String::from("| server |");
        let mut rule = String::from("|---|");
        for n in ns {
            let _ = write!(out, " {} idle subscribers |", count(f64::from(*n)));
            rule.push_str("---:|");
        }
        out.push('\n');
        out.push_str(&rule);
        out.push('\n');
        for s in &self.servers {
            let _ = write!(out, "| {} |", s.name);
            for &n in ns {
                let reference = self
                    .reference
                    .and_then(|r| fanout_at(r, n))
                    .and_then(|f| f.idle_memory)
                    .map(|m| m.per_subscriber);
                match fanout_at(s, n).and_then(|f| f.idle_memory) {
                    Some(m) => {
                        let _ = write!(
                            out,
                            " {} per subscriber, RSS {} → {} |",
                            with_ratio(kib(m.per_subscriber), m.per_subscriber, reference),
                            mib(m.rss_before as f64),
                            mib(m.rss_after as f64)
                        );
                    }
                    None => out.push_str(" – |"),
                }
            }
            out.push('\n');
        }
        out
    }

    fn saturation(&self) -> String {
        let mut out = String::from(
            "| server | most deliveries/s, clean | at events/s | p99 there | last subscriber p99 there | server CPU s per M deliveries | load generator CPU | first failing rate: why |\n|---|---:|---:|---:|---:|---:|---:|---|\n",
        );
        let reference = self
            .reference
            .and_then(|r| r.saturation.as_ref())
            .and_then(|s| s.best.as_ref());
        for s in &self.servers {
            let Some(sat) = &s.saturation else {
                let _ = writeln!(out, "| {} | failed | | | | | | |", s.name);
                continue;
            };
            let fail = first_failure(sat, self.results.config.saturation.p99_limit_ms, "");
            match &sat.best {
                Some(b) => {
                    let _ = writeln!(
                        out,
                        "| {} | {}{} | {} | {} | {} | {} | {:.0}% | {} |",
                        s.name,
                        lower_bound(b),
                        with_ratio(
                            count(b.deliveries_per_s),
                            b.deliveries_per_s,
                            reference.map(|r| r.deliveries_per_s)
                        ),
                        b.rate,
                        ms(b.latency.p99_ms),
                        ms(b.completion.p99_ms),
                        cpu_cell(b, reference),
                        b.loadgen_cpu_share * 100.0,
                        fail
                    );
                }
                None => {
                    let _ = writeln!(out, "| {} | none clean | | | | | | {} |", s.name, fail);
                }
            }
        }
        out
    }

    fn storm(&self) -> String {
        let mut out = String::from(
            "| server | caught up | catch-up p50 | catch-up p99 | all caught up after | lost (gaps) | duplicated | reordered | resets | connect errors | p99 of live events meanwhile |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        let reference = self.reference.and_then(|r| r.storm.as_ref());
        for s in &self.servers {
            let Some(st) = &s.storm else {
                let _ = writeln!(out, "| {} | failed | | | | | | | | | |", s.name);
                continue;
            };
            let all = st.caught_up >= st.subscribers && st.subscribers > 0;
            let _ = writeln!(
                out,
                "| {} | {} of {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                s.name,
                count(f64::from(st.caught_up)),
                count(f64::from(st.subscribers)),
                if st.caught_up > 0 {
                    ms(st.catch_up.p50_ms)
                } else {
                    "–".to_owned()
                },
                if st.caught_up > 0 {
                    ms(st.catch_up.p99_ms)
                } else {
                    "–".to_owned()
                },
                if all {
                    with_ratio(
                        ms(st.catch_up.max_ms),
                        st.catch_up.max_ms,
                        reference
                            .filter(|r| r.caught_up >= r.subscribers)
                            .map(|r| r.catch_up.max_ms),
                    )
                } else {
                    "never".to_owned()
                },
                if st.lost == 0 {
                    "0".to_owned()
                } else {
                    format!("**{}**", count(st.lost as f64))
                },
                count(st.duplicated as f64),
                count(st.reordered as f64),
                count(st.resets as f64),
                count(st.connect_errors as f64),
                ms(st.during.latency.p99_ms),
            );
        }
        out
    }

    fn slow(&self) -> String {
        let mut out = String::from(
            "| server | others' p50 | others' p99 | others' max | others lost / dup / reordered | server RSS before → peak | stalled connections the server closed | others' streams ended |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        let reference = self
            .reference
            .and_then(|r| r.slow.as_ref())
            .map(|s| &s.step);
        for s in &self.servers {
            let Some(slow) = &s.slow else {
                let _ = writeln!(out, "| {} | failed | | | | | | |", s.name);
                continue;
            };
            let st = &slow.step;
            let rss = match (st.server_rss_before, st.server_rss_peak) {
                (Some(b), Some(p)) => format!("{} → {}", mib(b as f64), mib(p.max(b) as f64)),
                _ => "–".to_owned(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} of {} | {} |",
                s.name,
                ms(st.latency.p50_ms),
                ms_vs(st.latency.p99_ms, reference.map(|r| r.latency.p99_ms)),
                ms(st.latency.max_ms),
                integrity(st.lost, st.duplicated, st.reordered),
                rss,
                slow.stalled_closed,
                slow.stalled,
                count(st.disconnects as f64),
            );
        }
        out
    }

    /// One row per headline metric, one column per server, with ratios to
    /// the reference.
    fn summary(&self) -> String {
        let servers = &self.servers;
        let mut out = String::from("| |");
        let mut rule = String::from("|---|");
        for s in servers {
            let _ = write!(out, " {} |", s.name);
            rule.push_str("---:|");
        }
        out.push('\n');
        out.push_str(&rule);
        out.push('\n');
        let max_n = self
            .results
            .config
            .fanout
            .subscribers
            .iter()
            .copied()
            .max()
            .unwrap_or(0);
        let rate = self.results.config.fanout.rate;
        type Metric<'m> = (
            String,
            Box<dyn Fn(&ServerResults) -> Option<(String, f64)> + 'm>,
        );
        let metrics: Vec<Metric<'_>> = vec![
            (
                format!(
                    "p99 latency, {} subscribers at {rate} events/s",
                    count(f64::from(max_n))
                ),
                Box::new(move |s: &ServerResults| {
                    fanout_at(s, max_n).map(|f| (ms(f.step.latency.p99_ms), f.step.latency.p99_ms))
                }),
            ),
            (
                format!(
                    "time until the last of {} subscribers has an event, p99",
                    count(f64::from(max_n))
                ),
                Box::new(move |s: &ServerResults| {
                    fanout_at(s, max_n)
                        .map(|f| (ms(f.step.completion.p99_ms), f.step.completion.p99_ms))
                }),
            ),
            (
                format!(
                    "most deliveries/s with nothing lost and p99 < {} ms ({} subscribers)",
                    self.results.config.saturation.p99_limit_ms,
                    self.results.config.saturation.subscribers
                ),
                Box::new(|s: &ServerResults| {
                    let b = s.saturation.as_ref()?.best.as_ref()?;
                    Some((
                        format!("{}{}", lower_bound(b), count(b.deliveries_per_s)),
                        b.deliveries_per_s,
                    ))
                }),
            ),
            (
                "server CPU seconds per million deliveries, there".to_owned(),
                Box::new(|s: &ServerResults| {
                    let v = s
                        .saturation
                        .as_ref()?
                        .best
                        .as_ref()?
                        .server_cpu_s_per_million?;
                    Some((format!("{v:.2}"), v))
                }),
            ),
            (
                format!(
                    "server memory per idle subscriber ({} subscribers)",
                    count(f64::from(max_n))
                ),
                Box::new(move |s: &ServerResults| {
                    let m = fanout_at(s, max_n)?.idle_memory?;
                    Some((kib(m.per_subscriber), m.per_subscriber))
                }),
            ),
            (
                format!(
                    "reconnect storm ({} subscribers, {} behind): all caught up after",
                    count(f64::from(self.results.config.storm.subscribers)),
                    self.results.config.storm.behind
                ),
                Box::new(|s: &ServerResults| {
                    let st = s.storm.as_ref()?;
                    if st.caught_up >= st.subscribers && st.lost == 0 {
                        Some((ms(st.catch_up.max_ms), st.catch_up.max_ms))
                    } else {
                        Some((
                            format!("never ({} deliveries lost)", count(st.lost as f64)),
                            f64::NAN,
                        ))
                    }
                }),
            ),
            (
                format!(
                    "slow consumers ({} of {} stalled): the others' p99",
                    self.results.config.slow.stalled, self.results.config.slow.subscribers
                ),
                Box::new(|s: &ServerResults| {
                    let st = &s.slow.as_ref()?.step;
                    Some((ms(st.latency.p99_ms), st.latency.p99_ms))
                }),
            ),
        ];
        for (label, get) in &metrics {
            let reference = self
                .reference
                .and_then(get)
                .map(|(_, v)| v)
                .filter(|v| v.is_finite());
            let _ = write!(out, "| {label} |");
            for s in servers {
                let is_reference = self.reference.is_some_and(|r| r.name == s.name);
                match get(s) {
                    Some((text, v)) if !is_reference => {
                        let _ = write!(out, " {} |", with_ratio(text, v, reference));
                    }
                    Some((text, _)) => {
                        let _ = write!(out, " {text} |");
                    }
                    None => out.push_str(" – |"),
                }
            }
            out.push('\n');
        }
        out
    }

    /// The highest share of a core used by neither the server nor the load
    /// generator during any step of the main run.
    fn disturbance(&self) -> f64 {
        disturbance(self.results.servers.iter())
    }

    fn errors(&self) -> String {
        let mut out = String::new();
        let mut servers: Vec<&ServerResults> = self.results.servers.iter().collect();
        if let Some(p) = find_pair(self.results).filter(|p| p.later) {
            servers.extend([p.single, p.pair]);
        }
        for s in servers {
            for e in &s.errors {
                let _ = writeln!(out, "- {}: {}", s.name, e.replace('\n', " "));
            }
        }
        if out.is_empty() {
            out.push_str("None: every workload ran against every server.\n");
        }
        out
    }
}

/// The highest share of a core used by neither the servers nor the load
/// generator during any step of `servers`.
fn disturbance<'a>(servers: impl IntoIterator<Item = &'a ServerResults>) -> f64 {
    let mut worst: f64 = 0.0;
    for s in servers {
        let mut steps: Vec<&StepResult> = s.fanout.iter().map(|f| &f.step).collect();
        if let Some(sat) = &s.saturation {
            steps.extend(sat.steps.iter().map(|(_, st)| st));
        }
        steps.extend(s.storm.as_ref().map(|st| &st.during));
        steps.extend(s.slow.as_ref().map(|st| &st.step));
        for st in steps {
            worst = worst.max(st.other_cpu_share);
        }
    }
    worst
}

/// The share of a core above which the load generator, not the server, may
/// have set the limit.
pub const LOADGEN_BOUND: f64 = 0.9;

/// `≥ ` when the load generator was nearly saturated in `step`, so the
/// server's capacity is at least the figure shown.
fn lower_bound(step: &StepResult) -> &'static str {
    if step.loadgen_cpu_share >= LOADGEN_BOUND {
        "≥ "
    } else {
        ""
    }
}

fn cpu_cell(step: &StepResult, reference: Option<&StepResult>) -> String {
    match step.server_cpu_s_per_million {
        Some(v) => with_ratio(
            format!("{v:.2}"),
            v,
            reference.and_then(|r| r.server_cpu_s_per_million),
        ),
        None => "–".to_owned(),
    }
}

/// The lowest failing rate of a saturation search (followed by `unit`) and
/// why it failed.
fn first_failure(sat: &SaturationResult, p99_limit_ms: f64, unit: &str) -> String {
    sat.steps
        .iter()
        .filter(|(ok, _)| !ok)
        .min_by(|a, b| a.1.rate.total_cmp(&b.1.rate))
        .map_or_else(
            || "none up to the highest rate tried".to_owned(),
            |(_, st)| format!("{}{unit}: {}", st.rate, failure(st, p99_limit_ms)),
        )
}

/// A duration in ms with its ratio to the reference's, when there is one.
fn ms_vs(value: f64, reference: Option<f64>) -> String {
    with_ratio(ms(value), value, reference)
}

/// Why a saturation step failed.
pub fn failure(step: &StepResult, p99_limit_ms: f64) -> String {
    let mut why = Vec::new();
    if step.lost > 0 {
        why.push(format!("{} deliveries lost", count(step.lost as f64)));
    }
    if step.duplicated > 0 {
        why.push(format!("{} duplicated", count(step.duplicated as f64)));
    }
    if step.reordered > 0 {
        why.push(format!("{} reordered", count(step.reordered as f64)));
    }
    if step.publish_failed > 0 {
        why.push(format!(
            "{} publishes failed",
            count(step.publish_failed as f64)
        ));
    }
    if step.latency.p99_ms >= p99_limit_ms {
        why.push(format!("p99 {}", ms(step.latency.p99_ms)));
    }
    if !step.drained && step.lost == 0 {
        why.push("not drained in time".to_owned());
    }
    if step.connect_failed > 0 {
        why.push(format!(
            "{} subscribers could not connect",
            step.connect_failed
        ));
    }
    if why.is_empty() {
        why.push("incomplete".to_owned());
    }
    why.join(", ")
}

/// A target of several processes (servers sharing a Redis), the single
/// server it is set against, and the run that measured both.
struct Pair<'a> {
    /// The results file's main run.
    main: &'a SuiteResults,
    /// The run that measured both.
    run: &'a SuiteResults,
    spec: &'a ServerSpec,
    pair: &'a ServerResults,
    single: &'a ServerResults,
    /// Whether `run` is a later run than the main one.
    later: bool,
}

/// The newest run (the main one or a later one) that measured a target of
/// several processes and the single server its spec names.
fn find_pair(results: &SuiteResults) -> Option<Pair<'_>> {
    let mut runs: Vec<&SuiteResults> = std::iter::once(results).chain(&results.later).collect();
    runs.sort_by_key(|r| std::cmp::Reverse(r.started_unix));
    runs.into_iter().find_map(|run| {
        run.servers.iter().find_map(|pair| {
            let spec = spec(run, &pair.name).filter(|s| !s.is_single())?;
            let name = spec.compare_with.as_deref()?;
            let single = run.servers.iter().find(|s| s.name == name)?;
            (measured(pair) && measured(single)).then_some(Pair {
                main: results,
                run,
                spec,
                pair,
                single,
                later: !std::ptr::eq(run, results),
            })
        })
    })
}

/// A command line as it would be typed (empty arguments as `""`).
fn command_line(args: &[String]) -> String {
    args.iter()
        .map(|a| if a.is_empty() { "\"\"" } else { a.as_str() })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A step's server-side CPU per million deliveries (with `name a (share%)`
/// per process when there are several) and how busy that kept its CPU.
fn cpu_by_process(step: &StepResult) -> Option<String> {
    let total = step.server_cpu_s.filter(|t| *t > 0.0)?;
    let per_million = step.server_cpu_s_per_million?;
    let busy = format!(
        " (busy {:.0}% of a core)",
        100.0 * total / step.seconds.max(1e-9)
    );
    if step.server_cpu_by_process.len() < 2 {
        return Some(format!("{per_million:.2}{busy}"));
    }
    let parts: Vec<String> = step
        .server_cpu_by_process
        .iter()
        .map(|(name, cpu)| {
            format!(
                "{name} {:.2} ({:.0}%)",
                per_million * cpu / total,
                100.0 * cpu / total
            )
        })
        .collect();
    Some(format!("{per_million:.2} = {}{busy}", parts.join(" + ")))
}

impl<'a> Pair<'a> {
    /// What stands in the section when no run measured a pair.
    fn missing() -> String {
        "Not measured: no run in `bench/results/results.json` has a target of several servers \
         next to the single server it is set against (`BENCH_SERVERS=ours,ours-redis-pair \
         scripts/bench.sh` adds one)."
            .to_owned()
    }

    /// The setup and the run, as a list.
    fn setup(&self) -> String {
        let c = &self.run.config;
        let n = self.spec.instances.max(1);
        let (pair, single) = (self.pair, self.single);
        let mut out = String::new();
        let _ = writeln!(out, "- **{}**: {}.", pair.name, pair.description);
        let _ = writeln!(
            out,
            "- Set against **{}**: {}, measured in the same run. Every workload starts fresh processes: for {}, a new Redis and {n} new servers.",
            single.name, single.description, pair.name
        );
        if let Some(redis) = &self.spec.redis {
            let version = self
                .run
                .machine
                .versions
                .iter()
                .find(|(name, _)| name == "redis")
                .map_or_else(String::new, |(_, v)| format!(" (`{v}`)"));
            let _ = writeln!(
                out,
                "- Redis{version}, on a free loopback port (`{{port}}`) in a fresh temporary directory (`{{dir}}`), started before the servers and stopped after them: `{}`.",
                command_line(&redis.command)
            );
        }
        let _ = writeln!(
            out,
            "- Subscribers alternate between the {n} servers (subscriber *i* on server *i* mod {n}), so each server holds an equal share; every event is published to server 1 only. Latency, loss, duplicates and order are measured the same way on every subscriber, whichever server it is on."
        );
        let _ = writeln!(
            out,
            "- Pinning: every server-side process ({}) on CPU {} (`taskset -c {}`), the same CPU budget as the single server; the load generator on CPU {}.",
            if self.spec.redis.is_some() {
                format!("the {n} servers and Redis")
            } else {
                format!("the {n} servers")
            },
            c.server_cpus.as_deref().unwrap_or("any"),
            c.server_cpus.as_deref().unwrap_or("-"),
            c.loadgen_cpus.as_deref().unwrap_or("any")
        );
        let which = if self.later {
            format!(
                "a run of {} merged into the results after the main run of {} that the tables above come from",
                self.run
                    .servers
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(" and "),
                utc(self.main.started_unix)
            )
        } else {
            "the main run".to_owned()
        };
        let _ = writeln!(
            out,
            "- Run: {}, {:.1} minutes ({which}); CPU time used by neither the server side nor the load generator was at most {:.0}% of a core in any step of these two targets.",
            utc(self.run.started_unix),
            self.run.seconds / 60.0,
            disturbance([self.single, self.pair]) * 100.0
        );
        out
    }

    /// The table, then the server side's CPU by process and why the
    /// saturation search stopped.
    fn table(&self) -> String {
        let c = &self.run.config;
        let (pair, single) = (self.pair, self.single);
        let mut out = format!(
            "Ratios are against {}; the server side's CPU is {}'s processes together.\n\n",
            single.name, pair.name
        );
        out.push_str(
            "| workload | target | deliveries/s | p50 | p99 | max | last subscriber p99 | lost / dup / reordered | server-side CPU s per M deliveries | load generator CPU |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        let row = |out: &mut String,
                   workload: &str,
                   name: &str,
                   st: &StepResult,
                   r: Option<&StepResult>,
                   at: String| {
            let _ = writeln!(
                out,
                "| {workload} | {name} | {}{}{at} | {} | {} | {} | {} | {} | {} | {:.0}% |",
                lower_bound(st),
                with_ratio(
                    count(st.deliveries_per_s),
                    st.deliveries_per_s,
                    r.map(|r| r.deliveries_per_s)
                ),
                ms_vs(st.latency.p50_ms, r.map(|r| r.latency.p50_ms)),
                ms_vs(st.latency.p99_ms, r.map(|r| r.latency.p99_ms)),
                ms_vs(st.latency.max_ms, r.map(|r| r.latency.max_ms)),
                ms_vs(st.completion.p99_ms, r.map(|r| r.completion.p99_ms)),
                integrity(st.lost, st.duplicated, st.reordered),
                cpu_cell(st, r),
                st.loadgen_cpu_share * 100.0
            );
        };
        // The server side's CPU at the most subscribers, and at the highest
        // clean rate.
        let mut cpu_notes: Vec<(String, &StepResult, &StepResult)> = Vec::new();
        let mut most_subscribers = None;
        for &n in &c.fanout.subscribers {
            let (a, b) = (fanout_at(single, n), fanout_at(pair, n));
            if a.is_none() && b.is_none() {
                continue;
            }
            let workload = format!(
                "fan-out: {} subscribers, {} events/s",
                count(f64::from(n)),
                c.fanout.rate
            );
            match a {
                Some(a) => row(
                    &mut out,
                    &workload,
                    &single.name,
                    &a.step,
                    None,
                    String::new(),
                ),
                None => {
                    let _ = writeln!(
                        out,
                        "| {workload} | {} | failed | | | | | | | |",
                        single.name
                    );
                }
            }
            match b {
                Some(b) => row(
                    &mut out,
                    "",
                    &pair.name,
                    &b.step,
                    a.map(|a| &a.step),
                    String::new(),
                ),
                None => {
                    let _ = writeln!(out, "| | {} | failed | | | | | | | |", pair.name);
                }
            }
            if let (Some(a), Some(b)) = (a, b) {
                most_subscribers = Some((workload, &a.step, &b.step));
            }
        }
        cpu_notes.extend(most_subscribers);
        let best = |s: &'a ServerResults| s.saturation.as_ref().and_then(|x| x.best.as_ref());
        if single.saturation.is_some() || pair.saturation.is_some() {
            let workload = format!(
                "highest clean rate: {} subscribers, p99 < {} ms",
                count(f64::from(c.saturation.subscribers)),
                c.saturation.p99_limit_ms
            );
            let (a, b) = (best(single), best(pair));
            for (i, (s, st)) in [(single, a), (pair, b)].into_iter().enumerate() {
                let label = if i == 0 { workload.as_str() } else { "" };
                match st {
                    Some(st) => row(
                        &mut out,
                        label,
                        &s.name,
                        st,
                        if i == 0 { None } else { a },
                        format!(" at {} events/s", st.rate),
                    ),
                    None => {
                        let why = if s.saturation.is_some() {
                            "none clean"
                        } else {
                            "failed"
                        };
                        let _ = writeln!(out, "| {label} | {} | {why} | | | | | | | |", s.name);
                    }
                }
            }
            if let (Some(a), Some(b)) = (a, b) {
                cpu_notes.push((format!("{workload}, each at its own rate"), a, b));
            }
        }
        if !cpu_notes.is_empty() {
            let _ = writeln!(
                out,
                "\nServer-side CPU seconds per million deliveries, by process:\n"
            );
            for (workload, a, b) in cpu_notes {
                let _ = writeln!(
                    out,
                    "- {workload}: {} {}; {} {}",
                    single.name,
                    cpu_by_process(a).unwrap_or_else(|| "–".to_owned()),
                    pair.name,
                    cpu_by_process(b).unwrap_or_else(|| "–".to_owned())
                );
            }
        }
        let fails: Vec<String> = [single, pair]
            .iter()
            .filter_map(|s| {
                let sat = s.saturation.as_ref()?;
                let text = first_failure(sat, c.saturation.p99_limit_ms, " events/s");
                Some(format!("- {}: {text}", s.name))
            })
            .collect();
        if !fails.is_empty() {
            let _ = writeln!(
                out,
                "\nFirst failing rate of the saturation search:\n\n{}",
                fails.join("\n")
            );
        }
        out
    }
}

/// Fills `template`'s placeholders from `results`, with ratios against the
/// server named `reference`.
pub fn markdown(template: &str, results: &SuiteResults, reference: &str) -> String {
    let servers = single_servers(results);
    let ctx = Ctx {
        results,
        reference: servers.iter().copied().find(|s| s.name == reference),
        servers,
    };
    let pair = find_pair(results);
    let parts = [
        ("{{summary}}", ctx.summary()),
        ("{{machine}}", ctx.machine()),
        ("{{servers}}", ctx.servers()),
        ("{{parameters}}", ctx.parameters()),
        ("{{fanout}}", ctx.fanout()),
        ("{{memory}}", ctx.memory()),
        ("{{saturation}}", ctx.saturation()),
        ("{{storm}}", ctx.storm()),
        ("{{slow}}", ctx.slow()),
        ("{{errors}}", ctx.errors()),
        (
            "{{redis_pair_setup}}",
            pair.as_ref().map_or_else(Pair::missing, Pair::setup),
        ),
        (
            "{{redis_pair}}",
            pair.as_ref().map_or_else(String::new, Pair::table),
        ),
        ("{{disk}}", crate::disk_report::section(results)),
        ("{{reference}}", reference.to_owned()),
    ];
    let mut out = template.to_owned();
    for (key, value) in parts {
        out = out.replace(key, value.trim_end());
    }
    out
}

/// One plotted fan-out run: subscribers, p99 ms, p50 ms.
type Point = (f64, f64, f64);

/// Draws p99 (solid) and p50 (thin) publish-to-receive latency against
/// subscribers, one colour per server, log–log, as an SVG file.
///
/// # Errors
/// When the file cannot be written or there is nothing to plot.
pub fn latency_svg(results: &SuiteResults, path: &Path) -> anyhow::Result<()> {
    let series: Vec<(&str, Vec<Point>)> = single_servers(results)
        .into_iter()
        .map(|s| {
            let points = s
                .fanout
                .iter()
                .filter(|f| f.step.latency.count > 0)
                .map(|f| {
                    (
                        f64::from(f.step.active),
                        f.step.latency.p99_ms.max(0.01),
                        f.step.latency.p50_ms.max(0.01),
                    )
                })
                .collect();
            (s.name.as_str(), points)
        })
        .collect();
    let all: Vec<&Point> = series.iter().flat_map(|(_, p)| p).collect();
    anyhow::ensure!(!all.is_empty(), "no fan-out results to plot");
    let x_max = all.iter().map(|p| p.0).fold(1.0, f64::max) * 1.3;
    let x_min = all.iter().map(|p| p.0).fold(f64::MAX, f64::min) / 1.3;
    let y_max = all.iter().map(|p| p.1).fold(0.1, f64::max) * 2.0;
    let y_min = all.iter().map(|p| p.2).fold(f64::MAX, f64::min) / 2.0;

    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!(
        "Publish-to-receive latency at {} events/s (p99 solid, p50 dashed)",
        results.config.fanout.rate
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d((x_min..x_max).log_scale(), (y_min..y_max).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("subscribers")
        .y_desc("latency (ms)")
        .x_label_formatter(&|v| count(*v))
        .y_label_formatter(&|v| {
            if *v >= 1.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.2}")
            }
        })
        .draw()?;
    let palette = [
        RGBColor(0xd6, 0x27, 0x28),
        RGBColor(0x1f, 0x77, 0xb4),
        RGBColor(0x2c, 0xa0, 0x2c),
        RGBColor(0x94, 0x67, 0xbd),
        RGBColor(0xff, 0x7f, 0x0e),
    ];
    for (i, (name, points)) in series.iter().enumerate() {
        let color = palette[i % palette.len()];
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|p| (p.0, p.1)),
                color.stroke_width(3),
            ))?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
        chart.draw_series(
            points
                .iter()
                .map(|p| Circle::new((p.0, p.1), 4, color.filled())),
        )?;
        chart.draw_series(DashedLineSeries::new(
            points.iter().map(|p| (p.0, p.2)),
            6,
            4,
            color.stroke_width(1),
        ))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(count(1_234_567.4), "1,234,567");
        assert_eq!(count(12.0), "12");
        assert_eq!(ms(0.1234), "0.12 ms");
        assert_eq!(ms(12.34), "12.3 ms");
        assert_eq!(with_ratio("2".into(), 2.0, Some(4.0)), "2 (0.50×)");
        assert_eq!(with_ratio("2".into(), 2.0, None), "2");
        assert_eq!(integrity(0, 0, 0), "0 / 0 / 0");
        assert_eq!(integrity(1, 2, 3), "**1 / 2 / 3**");
        assert_eq!(
            command_line(&["a".into(), String::new(), "b".into()]),
            "a \"\" b"
        );
    }

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
                .map(|&(name, p99)| ServerResults {
                    name: name.to_owned(),
                    fanout: vec![crate::workloads::FanoutResult {
                        step: step(p99),
                        ..Default::default()
                    }],
                    ..ServerResults::default()
                })
                .collect(),
            later: Vec::new(),
        }
    }

    #[test]
    fn the_pair_has_its_own_section_from_the_newest_run() {
        let template = "{{summary}}\n{{fanout}}\n{{redis_pair_setup}}\n{{redis_pair}}\n{{errors}}";
        // Nothing measured the pair: the section says so.
        let main = run(1, &[("ours", 10.0), ("nchan", 20.0)]);
        let text = markdown(template, &main, "nchan");
        assert!(text.contains("Not measured"), "{text}");
        // A later run of the pair and ours: the main tables keep the main
        // run (ours at 10 ms against nchan), the section compares the later
        // run's pair with its ours.
        let merged = main.merge(run(2, &[("ours", 30.0), ("ours-redis-pair", 60.0)]));
        let text = markdown(template, &merged, "nchan");
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
}
