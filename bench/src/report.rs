//! `BENCHMARKS.md` and the latency plot, from a suite's results.
//!
//! The markdown is a [minijinja](https://docs.rs/minijinja) template (prose
//! and tables, kept next to the suite's configuration) rendered over the
//! results: `results` (the main run as written to the results file),
//! `servers` (its single servers, in order), `ref` (the reference server's
//! results, nchan), `reference` (its name), `pair` (see below) and
//! `disturbance`. The filters and functions registered here only format
//! and look up (milliseconds, counts, ratios to the reference, why a
//! saturation step failed, CPU by process); every table is in the
//! template. Every table puts each server next to the reference server
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
//! workloads get `topics` from the newest run that ran them.

use std::path::Path;

use anyhow::Context as _;
use minijinja::value::{Serde, Value};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use plotters::prelude::*;
use serde::Serialize;

use crate::publish_load::PublishStep;
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
        if i > 0 && (s.len() - i).is_multiple_of(3) {
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

/// The spec of the server `name` in the run's configuration.
fn spec<'a>(run: &'a SuiteResults, name: &str) -> Option<&'a ServerSpec> {
    run.config.servers.iter().find(|s| s.name == name)
}

/// The run's single servers that are not set against another one (every
/// server when the configuration does not say otherwise): a target set
/// against another server has a section of its own.
fn single_servers(run: &SuiteResults) -> Vec<&ServerResults> {
    run.servers
        .iter()
        .filter(|s| spec(run, &s.name).is_none_or(|x| x.is_single() && x.compare_with.is_none()))
        .collect()
}

/// Whether anything was measured for `s`.
fn measured(s: &ServerResults) -> bool {
    !s.fanout.is_empty() || s.saturation.is_some() || s.storm.is_some() || s.slow.is_some()
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
        if let Some(b) = &s.bystanders {
            steps.extend([&b.alone, &b.with_bystanders]);
        }
        steps.extend(&s.per_user);
        steps.extend(&s.rooms);
        steps.extend(s.retention.as_ref().map(|r| &r.step));
        if let Some(p) = &s.prefix {
            steps.extend(p.exact.iter().chain(&p.pattern));
        }
        for st in steps {
            worst = worst.max(st.other_cpu_share);
        }
        for st in s.publish.iter().flat_map(|p| &p.steps) {
            worst = worst.max(st.other_cpu_share);
        }
    }
    worst
}

/// The share of a core above which the load generator, not the server, may
/// have set the limit.
pub const LOADGEN_BOUND: f64 = 0.9;

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
#[derive(Debug, Serialize)]
struct Pair<'a> {
    /// The run that measured both.
    run: &'a SuiteResults,
    /// The pair's spec.
    spec: &'a ServerSpec,
    /// The pair's results.
    pair: &'a ServerResults,
    /// The single server's results.
    single: &'a ServerResults,
    /// Whether `run` is a later run than the main one.
    later: bool,
    /// The highest share of a core used by neither of them nor the load
    /// generator in any step of `run`.
    disturbance: f64,
}

/// The newest run (the main one or a later one) that measured a target of
/// several servers and the single server its spec names.
fn find_pair(results: &SuiteResults) -> Option<Pair<'_>> {
    let mut runs: Vec<&SuiteResults> = std::iter::once(results).chain(&results.later).collect();
    runs.sort_by_key(|r| std::cmp::Reverse(r.started_unix));
    runs.into_iter().find_map(|run| {
        run.servers.iter().find_map(|pair| {
            let spec = spec(run, &pair.name).filter(|s| s.instances > 1)?;
            let name = spec.compare_with.as_deref()?;
            let single = run.servers.iter().find(|s| s.name == name)?;
            (measured(pair) && measured(single)).then_some(Pair {
                run,
                spec,
                pair,
                single,
                later: !std::ptr::eq(run, results),
                disturbance: disturbance([single, pair]),
            })
        })
    })
}

/// The newest run (the main one or one merged in later) that ran the topic
/// workloads, with its single servers that have topic results and the
/// reference server among them.
#[derive(Debug, Serialize)]
struct Topics<'a> {
    /// The run.
    run: &'a SuiteResults,
    /// Its single servers with topic results, in order.
    servers: Vec<&'a ServerResults>,
    /// The reference server's results in it.
    #[serde(rename = "ref")]
    reference: Option<&'a ServerResults>,
    /// Whether `run` is a later run than the main one.
    later: bool,
    /// The highest share of a core used by neither the servers nor the
    /// load generator in any topic step of `run`.
    disturbance: f64,
}

fn has_topic_results(s: &ServerResults) -> bool {
    s.bystanders.is_some()
        || s.per_user.is_some()
        || s.rooms.is_some()
        || s.retention.is_some()
        || s.prefix.is_some()
}

fn find_topics<'a>(results: &'a SuiteResults, reference: &str) -> Option<Topics<'a>> {
    let mut runs: Vec<&SuiteResults> = std::iter::once(results).chain(&results.later).collect();
    runs.sort_by_key(|r| std::cmp::Reverse(r.started_unix));
    runs.into_iter().find_map(|run| {
        let servers: Vec<&ServerResults> = single_servers(run)
            .into_iter()
            .filter(|s| has_topic_results(s))
            .collect();
        if servers.is_empty() {
            return None;
        }
        // Only the topic steps count here.
        let topic_only: Vec<ServerResults> = servers
            .iter()
            .map(|s| ServerResults {
                bystanders: s.bystanders.clone(),
                per_user: s.per_user.clone(),
                rooms: s.rooms.clone(),
                retention: s.retention.clone(),
                prefix: s.prefix.clone(),
                ..ServerResults::default()
            })
            .collect();
        Some(Topics {
            run,
            reference: servers.iter().copied().find(|s| s.name == reference),
            servers,
            later: !std::ptr::eq(run, results),
            disturbance: disturbance(&topic_only),
        })
    })
}

/// One server with its log elsewhere than in memory (on disk, or in a
/// Redis of its own) next to the server it names, which keeps it in memory:
/// the newest run (the main one or one merged in later) that measured one
/// of them.
#[derive(Debug, Serialize)]
struct LogTargets<'a> {
    /// The run.
    run: &'a SuiteResults,
    /// The server with its log in memory that the targets name, when the
    /// run measured it.
    base: Option<&'a ServerResults>,
    /// The targets that name it, in order, with their specs.
    targets: Vec<LogTarget<'a>>,
    /// Whether `run` is a later run than the main one.
    later: bool,
    /// The highest share of a core used by neither the server side nor the
    /// load generator in any step of these targets and `base` in `run`.
    disturbance: f64,
}

/// One target of [`LogTargets`].
#[derive(Debug, Serialize)]
struct LogTarget<'a> {
    /// Its results.
    results: &'a ServerResults,
    /// Its spec.
    spec: &'a ServerSpec,
}

/// Whether anything of the disk section was measured for `s`.
fn has_log_results(s: &ServerResults) -> bool {
    s.publish.is_some() || !s.fanout.is_empty()
}

fn find_log_targets(results: &SuiteResults) -> Option<LogTargets<'_>> {
    let mut runs: Vec<&SuiteResults> = std::iter::once(results).chain(&results.later).collect();
    runs.sort_by_key(|r| std::cmp::Reverse(r.started_unix));
    runs.into_iter().find_map(|run| {
        // One server each (a Redis of its own at most), set against another.
        let targets: Vec<LogTarget<'_>> = run
            .servers
            .iter()
            .filter_map(|s| {
                let spec = spec(run, &s.name)?;
                (spec.instances <= 1 && spec.compare_with.is_some() && has_log_results(s))
                    .then_some(LogTarget { results: s, spec })
            })
            .collect();
        let name = targets.first()?.spec.compare_with.as_deref()?;
        let targets: Vec<LogTarget<'_>> = targets
            .into_iter()
            .filter(|t| t.spec.compare_with.as_deref() == Some(name))
            .collect();
        let base = run.servers.iter().find(|s| s.name == name);
        Some(LogTargets {
            run,
            base,
            disturbance: disturbance(base.into_iter().chain(targets.iter().map(|t| t.results))),
            targets,
            later: !std::ptr::eq(run, results),
        })
    })
}

/// A publish step's server-side CPU per acknowledged publish, in µs, with
/// `name µs (share%)` per process when there are several.
fn cpu_per_publish(step: &PublishStep) -> Option<String> {
    let total = step.server_cpu_s.filter(|t| *t > 0.0 && step.ok > 0)?;
    let per = |cpu: f64| cpu / step.ok as f64 * 1e6;
    if step.server_cpu_by_process.len() < 2 {
        return Some(format!("{:.0} µs", per(total)));
    }
    let parts: Vec<String> = step
        .server_cpu_by_process
        .iter()
        .map(|(name, cpu)| format!("{name} {:.0} ({:.0}%)", per(*cpu), 100.0 * cpu / total))
        .collect();
    Some(format!("{:.0} µs = {}", per(total), parts.join(" + ")))
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

/// Formats a float as Rust's `{}` does (`5` for 5.0, `0.25`).
fn num(v: f64) -> String {
    v.to_string()
}

/// `v` with `digits` decimals.
fn fixed(v: f64, digits: usize) -> String {
    format!("{v:.digits$}")
}

/// A share of a core (or any fraction) as a whole percentage.
fn pct(share: f64) -> String {
    format!("{:.0}%", share * 100.0)
}

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
        disturbance => disturbance(results.servers.iter()),
    };
    let text = env
        .get_template("BENCHMARKS.md")?
        .render(context)
        .map_err(|e| anyhow::anyhow!("{e:#}"))
        .context("cannot render the report template")?;
    Ok(text)
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
                    s.fanout.clear();
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
            s.publish = Some(crate::publish_load::PublishResult { steps });
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
    fn topic_tables_come_from_the_newest_run_that_has_them() {
        let template = shipped_template();
        let main = run(1, &[("ours", 10.0), ("nchan", 20.0)]);
        let text = markdown(&template, &main, "nchan").unwrap();
        assert!(!text.contains("## Topics"), "no topic results: no section");
        // A later run of the topic workloads only: the main tables stay,
        // the topic section shows the later run, with goals judged.
        let mut topics = run(2, &[("ours", 0.0), ("nchan", 0.0)]);
        for (s, cpu) in topics.servers.iter_mut().zip([0.9, 1.0]) {
            let mut step = s.fanout.pop().unwrap().step;
            step.expected = 1000;
            step.delivered = 1000;
            step.latency.p99_ms = 5.0;
            step.server_cpu_s = Some(cpu);
            step.server_cpu_s_per_million = Some(cpu * 1000.0);
            s.per_user = Some(step);
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
