//! The geometry of the report's charts, computed here so the templates stay declarative: the
//! candidate-vs-baseline bars and, per metric, a line over the model's versions.

use serde::Serialize;
use slipway_crd::Evaluation;

use super::subject::Point;

/// One bar pair of the comparison chart.
#[derive(Debug, Serialize)]
pub(super) struct Bar {
    pub(super) metric: String,
    y: u32,
    candidate: Option<f64>,
    baseline: Option<f64>,
    pub(super) candidate_width: f64,
    pub(super) baseline_width: f64,
    pub(super) delta: String,
}

/// The width of the longest bar.
pub(super) const BAR_AREA: f64 = 420.0;

/// The comparison chart's bars, one pair per metric of either side.
pub(super) fn bars(e: &Evaluation) -> Vec<Bar> {
    let status = e.status.clone().unwrap_or_default();
    let mut names: Vec<&String> = status
        .metrics
        .keys()
        .chain(status.baseline_metrics.keys())
        .collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let c = status.metrics.get(name).copied();
            let b = status.baseline_metrics.get(name).copied();
            // Each metric on its own scale: the larger of the two values spans the bar area.
            let scale = c.unwrap_or(0.0).abs().max(b.unwrap_or(0.0).abs());
            let width = |v: Option<f64>| match v {
                Some(v) if scale > 0.0 && v.is_finite() => {
                    (v.abs() / scale * BAR_AREA * 10.0).round() / 10.0
                }
                _ => 0.0,
            };
            let delta = match (c, b) {
                (Some(c), Some(b)) => format!("{:+.4}", c - b),
                _ => String::new(),
            };
            Bar {
                metric: name.clone(),
                y: 20 + (i as u32) * 46,
                candidate: c,
                baseline: b,
                candidate_width: width(c),
                baseline_width: width(b),
                delta,
            }
        })
        .collect()
}

/// The plot area of one history chart, and where it starts.
const PLOT: (f64, f64) = (560.0, 90.0);
const LEFT: f64 = 60.0;
const TOP: f64 = 14.0;

/// One metric over the model's versions.
#[derive(Debug, PartialEq, Serialize)]
pub(super) struct Line {
    pub(super) metric: String,
    /// The `points` attribute of its polyline.
    pub(super) path: String,
    pub(super) dots: Vec<Dot>,
    /// The smallest and largest value, as the axis shows them.
    pub(super) low: f64,
    pub(super) high: f64,
}

/// One version's value on a line.
#[derive(Debug, PartialEq, Serialize)]
pub(super) struct Dot {
    pub(super) x: f64,
    pub(super) y: f64,
    pub(super) version: String,
    pub(super) value: f64,
    /// The version the report is of.
    pub(super) this: bool,
}

/// A line per metric of the history (versions without the metric are left out of its line).
pub(super) fn lines(history: &[Point]) -> Vec<Line> {
    let mut metrics: Vec<&String> = history.iter().flat_map(|p| p.metrics.keys()).collect();
    metrics.sort();
    metrics.dedup();
    let step = PLOT.0 / (history.len().max(2) - 1) as f64;
    let round = |v: f64| (v * 10.0).round() / 10.0;
    metrics
        .into_iter()
        .map(|m| {
            let values: Vec<(usize, &Point, f64)> = history
                .iter()
                .enumerate()
                .filter_map(|(i, p)| Some((i, p, *p.metrics.get(m)?)))
                .filter(|(_, _, v)| v.is_finite())
                .collect();
            let low = values.iter().map(|v| v.2).fold(f64::INFINITY, f64::min);
            let high = values.iter().map(|v| v.2).fold(f64::NEG_INFINITY, f64::max);
            // A flat line sits in the middle.
            let span = if high > low { high - low } else { 0.0 };
            let dots: Vec<Dot> = values
                .iter()
                .map(|(i, p, v)| Dot {
                    x: round(LEFT + step * *i as f64),
                    y: round(match span > 0.0 {
                        true => TOP + PLOT.1 * (1.0 - (v - low) / span),
                        false => TOP + PLOT.1 / 2.0,
                    }),
                    version: p.version.clone(),
                    value: *v,
                    this: p.this,
                })
                .collect();
            Line {
                metric: m.clone(),
                path: dots
                    .iter()
                    .map(|d| format!("{},{}", d.x, d.y))
                    .collect::<Vec<_>>()
                    .join(" "),
                dots,
                low: if low.is_finite() { low } else { 0.0 },
                high: if high.is_finite() { high } else { 0.0 },
            }
        })
        .collect()
}
