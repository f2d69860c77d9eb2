//! How late events arrive: the live p50 and p99 over the last few seconds,
//! sampled once a second for the chart of the last minutes, and the SVG
//! paths of that chart.

use std::collections::VecDeque;
use std::fmt::Write as _;

use crate::decimal::fixed;

/// The window of the live percentiles.
pub const WINDOW_MS: f64 = 5000.0;
/// One point of the chart per this many ms: the live window's percentiles.
pub const BUCKET_MS: f64 = 1000.0;
/// Points the chart keeps: three minutes.
pub const CHART_POINTS: usize = 180;
/// The chart's drawing size, in SVG user units.
pub const CHART_WIDTH: u32 = 300;
/// See [`CHART_WIDTH`].
pub const CHART_HEIGHT: u32 = 60;

/// The median and the 99th percentile of some latencies, in ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    /// Half of the latencies are at most this.
    pub p50: f64,
    /// 99 in 100 are at most this.
    pub p99: f64,
    /// How many latencies.
    pub count: usize,
}

/// Bins of 1 ms below this many ms…
const FINE_MS: usize = 10_000;
/// … then of 100 ms up to a minute, then one bin for the rest.
const COARSE_BINS: usize = 500;
const BINS: usize = FINE_MS + COARSE_BINS + 1;

/// The bin of a latency: whole milliseconds below 10 s, tenths of a second
/// below a minute, then one bin.
fn bin(ms: f64) -> usize {
    let ms = ms.max(0.0);
    if ms < FINE_MS as f64 {
        ms as usize
    } else {
        (FINE_MS + ((ms - FINE_MS as f64) / 100.0) as usize).min(BINS - 1)
    }
}

/// The latency a bin stands for (its lower bound).
fn bin_ms(bin: usize) -> f64 {
    if bin < FINE_MS {
        bin as f64
    } else {
        (FINE_MS + (bin - FINE_MS) * 100) as f64
    }
}

/// The latencies of the last [`WINDOW_MS`], counted in bins (so that their
/// percentiles need no sorting), and the chart's points: the window's
/// percentiles once a second over the last [`CHART_POINTS`] seconds.
#[derive(Debug, Clone)]
pub struct Latencies {
    /// (arrival, bin) of the window, oldest first.
    recent: VecDeque<(f64, u16)>,
    /// How many of `recent` are in each bin.
    counts: Vec<u32>,
    /// (second, the window's percentiles then), oldest first.
    points: VecDeque<(f64, Percentiles)>,
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    /// Nothing measured yet.
    pub fn new() -> Self {
        Self {
            recent: VecDeque::new(),
            counts: vec![0; BINS],
            points: VecDeque::new(),
        }
    }

    /// Takes in an event's latency, measured when it arrived at `at_ms`.
    pub fn push(&mut self, at_ms: f64, latency_ms: f64) {
        let bin = bin(latency_ms);
        self.counts[bin] += 1;
        self.recent.push_back((at_ms, bin as u16));
    }

    /// The nearest-rank percentiles of the window ending at `now_ms`
    /// (latencies in whole ms below 10 s, in tenths of a second above),
    /// forgetting what is older; `None` when nothing arrived in it.
    pub fn live(&mut self, now_ms: f64) -> Option<Percentiles> {
        while let Some(&(at, bin)) = self.recent.front() {
            if at >= now_ms - WINDOW_MS {
                break;
            }
            self.counts[usize::from(bin)] -= 1;
            self.recent.pop_front();
        }
        let n = self.recent.len();
        if n == 0 {
            return None;
        }
        let rank = |p: f64| ((p * n as f64).ceil() as usize).clamp(1, n);
        let (r50, r99) = (rank(0.50), rank(0.99));
        let (mut p50, mut seen) = (None, 0);
        for (bin, &count) in self.counts.iter().enumerate() {
            seen += count as usize;
            if p50.is_none() && seen >= r50 {
                p50 = Some(bin_ms(bin));
            }
            if seen >= r99 {
                return Some(Percentiles {
                    p50: p50.unwrap_or(0.0),
                    p99: bin_ms(bin),
                    count: n,
                });
            }
        }
        None
    }

    /// The chart's points up to `now_ms`: adds the window's percentiles as
    /// the point of the current second, if it has none yet and the window
    /// holds latencies; forgets points older than [`CHART_POINTS`] seconds.
    pub fn points(&mut self, now_ms: f64) -> &VecDeque<(f64, Percentiles)> {
        let second = (now_ms / BUCKET_MS).floor() * BUCKET_MS;
        if self.points.back().is_none_or(|(t, _)| *t < second) {
            if let Some(p) = self.live(now_ms) {
                self.points.push_back((second, p));
            }
        }
        let oldest = second - (CHART_POINTS as f64 - 1.0) * BUCKET_MS;
        while self.points.front().is_some_and(|(t, _)| *t < oldest) {
            self.points.pop_front();
        }
        &self.points
    }

    /// Forgets everything (a new subscription).
    pub fn clear(&mut self) {
        *self = Self::new();
    }
}

/// The chart of the last minutes, ready for an `<svg>` of
/// [`CHART_WIDTH`] × [`CHART_HEIGHT`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chart {
    /// The `d` of the p50 line.
    pub p50: String,
    /// The `d` of the p99 line.
    pub p99: String,
    /// The latency at the top of the chart, in ms (a round number).
    pub top_ms: f64,
    /// How many seconds have a point.
    pub seconds: usize,
}

/// Draws `points` (second start, percentiles) ending at `now_ms`: time
/// runs left to right over [`CHART_POINTS`] seconds, 0 ms at the bottom;
/// a second without events breaks the lines.
pub fn chart<'a>(
    points: impl Iterator<Item = &'a (f64, Percentiles)> + Clone,
    now_ms: f64,
) -> Chart {
    let top_ms = nice_ceiling(points.clone().map(|(_, p)| p.p99).fold(0.0, f64::max));
    let span = CHART_POINTS as f64 * BUCKET_MS;
    let (width, height) = (f64::from(CHART_WIDTH), f64::from(CHART_HEIGHT));
    let x = |t: f64| ((t + BUCKET_MS - (now_ms - span)) / span * width).clamp(0.0, width);
    let y = |v: f64| height - (v / top_ms).min(1.0) * height;
    let mut chart = Chart {
        top_ms,
        ..Chart::default()
    };
    let mut previous: Option<f64> = None;
    for (start, p) in points {
        let joined = previous.is_some_and(|t| start - t <= BUCKET_MS * 1.5);
        let command = if joined { 'L' } else { 'M' };
        let px = fixed(x(*start), 1);
        let _ = write!(chart.p50, "{command}{px} {}", fixed(y(p.p50), 1));
        let _ = write!(chart.p99, "{command}{px} {}", fixed(y(p.p99), 1));
        previous = Some(*start);
        chart.seconds += 1;
    }
    chart
}

/// The smallest of 10, 20, 50, 100, 200, 500, … ms that is at least `ms`.
pub fn nice_ceiling(ms: f64) -> f64 {
    if ms.is_nan() || ms <= 10.0 {
        return 10.0;
    }
    let mut decade = 10.0;
    loop {
        for step in [1.0, 2.0, 5.0] {
            if step * decade >= ms {
                return step * decade;
            }
        }
        decade *= 10.0;
    }
}

/// A latency for people: `0 ms`, `12 ms`, `1.4 s`.
pub fn format_ms(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{} ms", fixed(ms, 0))
    } else {
        format!("{} s", fixed(ms / 1000.0, 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(values: &[f64]) -> Option<Percentiles> {
        let mut l = Latencies::new();
        for &v in values {
            l.push(0.0, v);
        }
        l.live(0.0)
    }

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let p = window(&values).expect("values");
        assert_eq!((p.p50, p.p99, p.count), (50.0, 99.0, 100));
        let p = window(&[7.4]).expect("a value");
        assert_eq!((p.p50, p.p99), (7.0, 7.0), "whole ms");
        let p = window(&[30.0, 10.0, 20.0]).expect("values");
        assert_eq!((p.p50, p.p99), (20.0, 30.0));
        // Above 10 s, tenths of a second; above a minute, one bin.
        let p = window(&[12_345.0, -3.0, 99_999.0]).expect("values");
        assert_eq!((p.p50, p.p99), (12_300.0, 60_000.0));
        assert_eq!(window(&[-1.0]).map(|p| p.p99), Some(0.0));
        assert_eq!(window(&[]), None);
    }

    #[test]
    fn the_live_window_forgets_old_latencies() {
        let mut l = Latencies::new();
        l.push(0.0, 500.0);
        for i in 0..99 {
            l.push(4000.0 + f64::from(i), 10.0);
        }
        let p = l.live(4100.0).expect("latencies");
        assert_eq!((p.p50, p.p99, p.count), (10.0, 10.0, 100));
        // p99 of 100 values is the 99th smallest: the slow one is the 100th.
        // With one more, the 100th of 101 is.
        l.push(4200.0, 900.0);
        assert_eq!(l.live(4200.0).expect("latencies").p99, 500.0);
        // The first one has left the window.
        let p = l.live(5500.0).expect("latencies");
        assert_eq!((p.p99, p.count), (10.0, 100));
        assert_eq!(l.live(20_000.0), None);
    }

    #[test]
    fn one_point_per_second_for_the_last_minutes() {
        let mut l = Latencies::new();
        for second in 0..200 {
            let start = f64::from(second) * 1000.0;
            for i in 0..10 {
                l.push(start + f64::from(i), f64::from(second % 3 + 1));
            }
            // Asked several times a second: one point.
            l.points(start + 10.0);
            l.points(start + 500.0);
        }
        let points: Vec<_> = l.points(199_600.0).iter().copied().collect();
        assert_eq!(points.len(), CHART_POINTS);
        assert_eq!(points[0].0, 20_000.0);
        assert_eq!(points.last().map(|(t, _)| *t), Some(199_000.0));
        // Each is the window's: 5 s of latencies 1, 2 and 3 ms.
        assert_eq!((points[10].1.p50, points[10].1.p99), (2.0, 3.0));
        // A silent stream adds no points.
        assert_eq!(l.points(300_000.0).len(), 79);
        assert_eq!(l.points(400_000.0).len(), 0);
    }

    #[test]
    fn the_chart_scales_to_a_round_top_and_breaks_at_silences() {
        let p = |p50: f64, p99: f64| Percentiles { p50, p99, count: 1 };
        let points = [
            (177_000.0, p(10.0, 40.0)),
            (178_000.0, p(20.0, 80.0)),
            // A silent second, then one more.
            (180_000.0, p(5.0, 10.0)),
        ];
        let c = chart(points.iter(), 181_000.0);
        assert_eq!(c.top_ms, 100.0);
        assert_eq!(c.seconds, 3);
        // The newest second ends at the right edge.
        assert_eq!(c.p50, "M295.0 54.0L296.7 48.0M300.0 57.0");
        assert_eq!(c.p99, "M295.0 36.0L296.7 12.0M300.0 54.0");
        assert_eq!(
            chart([].iter(), 0.0),
            Chart {
                top_ms: 10.0,
                ..Chart::default()
            }
        );
    }

    #[test]
    fn round_tops_and_formats() {
        let tops: Vec<f64> = [
            f64::NAN,
            10.0,
            11.0,
            21.0,
            51.0,
            101.0,
            300.0,
            999.0,
            1001.0,
        ]
        .into_iter()
        .map(nice_ceiling)
        .collect();
        assert_eq!(
            tops,
            [10.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0]
        );
        assert_eq!(format_ms(0.0), "0 ms");
        assert_eq!(format_ms(12.4), "12 ms");
        assert_eq!(format_ms(1430.0), "1.4 s");
    }
}
