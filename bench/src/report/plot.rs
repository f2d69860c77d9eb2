//! The latency plot: p99 and p50 publish-to-receive latency against
//! subscribers, per single server, from the fan-out sweep.

use std::path::Path;

use plotters::prelude::*;

use super::format::count;
use super::sections::single_servers;
use crate::suite::SuiteResults;
use crate::workloads::fanout::Fanout;

/// One plotted fan-out run: subscribers, p99 ms, p50 ms.
type Point = (f64, f64, f64);

/// Draws p99 (solid) and p50 (thin) publish-to-receive latency against
/// subscribers, one colour per server, log–log, as an SVG file.
///
/// # Errors
/// When the file cannot be written or there is nothing to plot.
pub fn latency_svg(results: &SuiteResults, path: &Path) -> anyhow::Result<()> {
    let series = series(results);
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
        results.config.section::<Fanout>().map_or(0.0, |f| f.rate)
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
    draw_series(&mut chart, &series)?;
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Each single server's fan-out runs that measured latency, in order.
fn series(results: &SuiteResults) -> Vec<(&str, Vec<Point>)> {
    single_servers(results)
        .into_iter()
        .map(|s| {
            let points = s
                .sweep::<Fanout>()
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
        .collect()
}

/// The chart's log–log coordinates.
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<LogCoord<f64>, LogCoord<f64>>>;

/// Draws each server's p99 (solid, with points) and p50 (dashed) lines.
fn draw_series(chart: &mut Chart<'_, '_>, series: &[(&str, Vec<Point>)]) -> anyhow::Result<()> {
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
    Ok(())
}
