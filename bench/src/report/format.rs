//! The report's formatting filters: milliseconds, counts, sizes, ratios to
//! the reference server, dates, why a saturation step failed, CPU by
//! process. They only format; every table is in the template.

use crate::workloads::batch::BatchStep;
use crate::workloads::publish::PublishStep;
use crate::workloads::{SaturationResult, StepResult};

/// Formats milliseconds with a sensible precision.
pub(super) fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.2} ms")
    }
}

/// Formats a count with thin groupings (12 345 678).
pub(super) fn count(v: f64) -> String {
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

pub(super) fn kib(bytes: f64) -> String {
    format!("{:.1} KiB", bytes / 1024.0)
}

pub(super) fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / 1024.0 / 1024.0)
}

/// `value (ratio×)` against `reference`, or just `value`.
pub(super) fn with_ratio(text: String, value: f64, reference: Option<f64>) -> String {
    match reference {
        Some(r) if r > 0.0 && value.is_finite() => format!("{text} ({:.2}×)", value / r),
        _ => text,
    }
}

/// Loss summary: `0` or `lost/dup/reordered`.
pub(super) fn integrity(lost: u64, duplicated: u64, reordered: u64) -> String {
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

/// The share of a core above which the load generator, not the server, may
/// have set the limit.
pub const LOADGEN_BOUND: f64 = 0.9;

/// The lowest failing rate of a saturation search (followed by `unit`) and
/// why it failed.
pub(super) fn first_failure(sat: &SaturationResult, p99_limit_ms: f64, unit: &str) -> String {
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
pub(super) fn ms_vs(value: f64, reference: Option<f64>) -> String {
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

/// Microseconds with a sensible precision (no unit).
fn micros(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Server-side CPU time `total` (s) per one of `count`, in µs, with
/// `name µs (share%)` per process when there are several.
fn cpu_per(total: Option<f64>, by_process: &[(String, f64)], count: u64) -> Option<String> {
    let total = total.filter(|t| *t > 0.0 && count > 0)?;
    let per = |cpu: f64| micros(cpu / count as f64 * 1e6);
    if by_process.len() < 2 {
        return Some(format!("{} µs", per(total)));
    }
    let parts: Vec<String> = by_process
        .iter()
        .map(|(name, cpu)| format!("{name} {} ({:.0}%)", per(*cpu), 100.0 * cpu / total))
        .collect();
    Some(format!("{} µs = {}", per(total), parts.join(" + ")))
}

/// A publish step's server-side CPU per acknowledged publish, in µs, with
/// `name µs (share%)` per process when there are several.
pub(super) fn cpu_per_publish(step: &PublishStep) -> Option<String> {
    cpu_per(step.server_cpu_s, &step.server_cpu_by_process, step.ok)
}

/// A batch step's server-side CPU per acknowledged event, as
/// [`cpu_per_publish`].
pub(super) fn cpu_per_event(step: &BatchStep) -> Option<String> {
    cpu_per(step.server_cpu_s, &step.server_cpu_by_process, step.events)
}

/// A command line as it would be typed (empty arguments as `""`).
pub(super) fn command_line(args: &[String]) -> String {
    args.iter()
        .map(|a| if a.is_empty() { "\"\"" } else { a.as_str() })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A step's server-side CPU per million deliveries (with `name a (share%)`
/// per process when there are several) and how busy that kept its CPU.
pub(super) fn cpu_by_process(step: &StepResult) -> Option<String> {
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
pub(super) fn num(v: f64) -> String {
    v.to_string()
}

/// `v` with `digits` decimals.
pub(super) fn fixed(v: f64, digits: usize) -> String {
    format!("{v:.digits$}")
}

/// A share of a core (or any fraction) as a whole percentage.
pub(super) fn pct(share: f64) -> String {
    format!("{:.0}%", share * 100.0)
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
        let batch = BatchStep {
            events: 400_000,
            server_cpu_s: Some(1.0),
            server_cpu_by_process: vec![("server".into(), 0.8), ("redis".into(), 0.2)],
            ..BatchStep::default()
        };
        assert_eq!(
            cpu_per_event(&batch).as_deref(),
            Some("2.5 µs = server 2.0 (80%) + redis 0.50 (20%)")
        );
        assert_eq!(cpu_per_event(&BatchStep::default()), None);
    }
}
