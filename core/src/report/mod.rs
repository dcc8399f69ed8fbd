//! Comparison reports of finished evaluations: Markdown and a standalone HTML page with an SVG
//! chart of candidate vs baseline metrics, the gates and sample predictions. Pure rendering
//! (minijinja); writing the files is the caller's business.

use minijinja::{Environment, context};
use serde::Serialize;
use slipway_crd::Evaluation;
use slipway_crd::common::RelativeTo;

/// One bar pair of the chart, with geometry computed here so the template stays declarative.
#[derive(Debug, Serialize)]
struct Bar {
    metric: String,
    y: u32,
    candidate: Option<f64>,
    baseline: Option<f64>,
    candidate_width: f64,
    baseline_width: f64,
    delta: String,
}

const BAR_AREA: f64 = 420.0;

fn bars(e: &Evaluation) -> Vec<Bar> {
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

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env.add_filter("num", |v: Option<f64>| {
        v.map(|v| {
            format!("{v:.4}")
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string()
        })
        .unwrap_or_else(|| "—".into())
    });
    env.add_filter("cell", |s: String| s.replace('|', "\\|").replace('\n', " "));
    env
}

fn render(template: &str, name: &str, e: &Evaluation, title: &str) -> String {
    let mut env = environment();
    if let Err(err) = env.add_template(name, template) {
        return format!("report template error: {err}");
    }
    let status = e.status.clone().unwrap_or_default();
    let gates: Vec<serde_json::Value> = status
        .gates
        .iter()
        .map(|g| {
            serde_json::json!({
                "metric": g.metric,
                "rule": match g.relative_to {
                    RelativeTo::Absolute => format!("{} {}", serde_json::to_value(g.op).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(), g.value),
                    RelativeTo::Baseline => format!("{} baseline {:+}", serde_json::to_value(g.op).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(), g.value),
                },
                "actual": g.actual, "threshold": g.threshold, "passed": g.passed, "message": g.message,
            })
        })
        .collect();
    let chart = bars(e);
    let ctx = context! {
        title => title,
        name => e.metadata.name.clone().unwrap_or_default(),
        model => &e.spec.model,
        version => &e.spec.version,
        suite => &e.spec.suite,
        baseline_version => status.baseline_version.clone(),
        dataset => &e.spec.dataset.uri,
        dataset_digest => e.spec.dataset.digest.clone(),
        verdict => status.verdict.map(|v| v.as_str()),
        phase => status.phase.as_str(),
        cache_key => status.cache_key.clone(),
        completed_at => status.completed_at.map(|t| t.to_rfc3339()),
        gates => minijinja::Value::from(minijinja::value::Serde(&gates)),
        samples => minijinja::Value::from(minijinja::value::Serde(&status.samples)),
        bars => minijinja::Value::from(minijinja::value::Serde(&chart)),
        chart_height => 40 + chart.len() as u32 * 46,
    };
    env.get_template(name)
        .and_then(|t| t.render(ctx))
        .unwrap_or_else(|err| format!("report template error: {err}"))
}

/// The Markdown report.
pub fn markdown(e: &Evaluation) -> String {
    render(
        include_str!("report.md.j2"),
        "report.md",
        e,
        "Evaluation report",
    )
}

/// The standalone HTML report (inline CSS and SVG; no external assets).
pub fn html(e: &Evaluation) -> String {
    render(
        include_str!("report.html.j2"),
        "report.html",
        e,
        "Evaluation report",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_crd::EvaluationStatus;
    use slipway_crd::common::GateOp;
    use slipway_crd::evaluation::{EvaluationPhase, GateResult, Sample, Verdict};

    fn evaluation() -> Evaluation {
        let mut e = Evaluation::new(
            "m-8-eval",
            slipway_crd::EvaluationSpec {
                model: "pitch-frame-classifier".into(),
                version: "8".into(),
                suite: "pitch-frames".into(),
                dataset: slipway_crd::common::DatasetRef {
                    uri: "file://frames".into(),
                    digest: Some("sha256:aa".into()),
                },
                ..Default::default()
            },
        );
        e.status = Some(EvaluationStatus {
            phase: EvaluationPhase::Succeeded,
            verdict: Some(Verdict::Passed),
            metrics: [
                ("macro_f1".to_string(), 0.874),
                ("p95_ms".to_string(), 31.5),
            ]
            .into(),
            baseline_metrics: [
                ("macro_f1".to_string(), 0.861),
                ("p95_ms".to_string(), 30.9),
            ]
            .into(),
            baseline_version: Some("7".into()),
            gates: vec![GateResult {
                metric: "macro_f1".into(),
                op: GateOp::Ge,
                value: -0.01,
                relative_to: RelativeTo::Baseline,
                actual: Some(0.874),
                threshold: Some(0.851),
                passed: true,
                message: None,
            }],
            samples: vec![Sample {
                input: "frames/<001>.jpg".into(),
                expected: Some("set-piece".into()),
                candidate: Some("set-piece".into()),
                baseline: Some("open-play".into()),
            }],
            ..Default::default()
        });
        e
    }

    #[test]
    fn the_chart_scales_each_metric_to_its_larger_value() {
        let b = bars(&evaluation());
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].metric, "macro_f1");
        assert_eq!(b[0].candidate_width, BAR_AREA);
        assert!(b[0].baseline_width < BAR_AREA && b[0].baseline_width > 400.0);
        assert_eq!(b[0].delta, "+0.0130");
    }

    #[test]
    fn the_markdown_report_compares_metrics_gates_and_samples() {
        let md = markdown(&evaluation());
        assert!(
            md.contains("# pitch-frame-classifier 8 vs 7 — pitch-frames: Passed"),
            "{md}"
        );
        assert!(
            md.contains("| macro_f1 | 0.874 | 0.861 | +0.0130 |"),
            "{md}"
        );
        assert!(
            md.contains("| macro_f1 | >= baseline -0.01 | 0.874 | 0.851 | ✅ |"),
            "{md}"
        );
        assert!(
            md.contains("| frames/<001>.jpg | set-piece | set-piece ✅ | open-play ❌ |"),
            "{md}"
        );
    }

    #[test]
    fn the_html_report_is_standalone_escaped_and_has_an_svg_chart() {
        let page = html(&evaluation());
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("<svg"), "no chart");
        assert_eq!(page.matches("<rect class=\"candidate\"").count(), 2);
        assert!(
            page.contains("&lt;001&gt;.jpg") && !page.contains("<001>"),
            "sample input not escaped"
        );
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "external asset"
        );
    }
}
