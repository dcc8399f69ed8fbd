use super::*;
use panels::{BAR_AREA, bars};
use slipway_crd::Evaluation;
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

/// Version 8's evaluation with the registry's model, versions 6, 7 and 8 (signatures on 7 and
/// 8), and results of 6 and 7 of the same suite.
fn subject() -> Subject {
    let yaml = r#"apiVersion: slipway.dev/v1alpha1
kind: RegisteredModel
metadata: {name: pitch-frame-classifier}
spec:
  evaluations:
    - name: pitch-frames
      runner: {local: {command: [python3, e.py]}}
      dataset: {uri: file://frames, digest: "sha256:aa"}
---
apiVersion: slipway.dev/v1alpha1
kind: ModelVersion
metadata: {name: pfc-7}
spec:
  model: pitch-frame-classifier
  version: "7"
  artifact: {uri: file://7, digest: "sha256:07"}
  signature: {inputs: [{name: frame, type: uint8}], outputs: [{name: label, type: string}]}
---
apiVersion: slipway.dev/v1alpha1
kind: ModelVersion
metadata: {name: pfc-8}
spec:
  model: pitch-frame-classifier
  version: "8"
  artifact: {uri: file://8, digest: "sha256:08"}
  source: {run: "https://tracker/runs/8", commit: abc123}
  signature: {inputs: [{name: frame, type: float32}], outputs: [{name: label, type: string}]}
"#;
    let cat = crate::testing::catalog(yaml);
    let other = |version: &str, f1: f64| {
        let mut e = evaluation();
        e.metadata.name = Some(format!("pfc-{version}-eval"));
        e.metadata.namespace = Some("default".into());
        e.spec.version = version.into();
        if let Some(s) = e.status.as_mut() {
            s.metrics = [("macro_f1".to_string(), f1)].into();
        }
        e
    };
    let mut results = crate::catalog::results::Results::default();
    let (six, seven, ten) = (other("6", 0.84), other("7", 0.861), other("10", 0.9));
    let mut running = other("9", 0.0);
    running.status.as_mut().unwrap().phase = EvaluationPhase::Running;
    results.add([&six, &seven, &ten, &running]);
    let mut e = evaluation();
    e.metadata.namespace = Some("default".into());
    Subject::of(&cat, &results, &e)
}

#[test]
fn the_subject_has_the_suites_history_in_version_order() {
    let s = subject();
    let versions: Vec<(&str, bool)> = s
        .history
        .iter()
        .map(|p| (p.version.as_str(), p.this))
        .collect();
    // 9 has not finished; 10 sorts after 8 (numbers by value).
    assert_eq!(
        versions,
        [("6", false), ("7", false), ("8", true), ("10", false)]
    );
    assert_eq!(s.baseline.unwrap().spec.version, "7");
    assert_eq!(
        s.candidate.unwrap().spec.source.unwrap().commit.as_deref(),
        Some("abc123")
    );
}

#[test]
fn the_history_chart_scales_each_metric_between_its_extremes() {
    let s = subject();
    let l = panels::lines(&s.history);
    let f1 = l.iter().find(|l| l.metric == "macro_f1").unwrap();
    assert_eq!((f1.low, f1.high), (0.84, 0.9));
    let ys: Vec<f64> = f1.dots.iter().map(|d| d.y).collect();
    // The lowest value at the bottom of the plot, the highest at its top.
    assert_eq!(ys[0], 104.0);
    assert_eq!(ys[3], 14.0);
    assert!(f1.dots[2].this && f1.dots[2].version == "8");
    assert_eq!(f1.path.split(' ').count(), 4);
}

#[test]
fn the_default_report_shows_the_signature_difference_against_the_baseline() {
    let md = render(&subject(), Format::Markdown, None);
    assert!(md.contains("## Signature against 7"), "{md}");
    assert!(
        md.contains("- ❌ input `frame` retyped uint8 → float32 (breaks callers)"),
        "{md}"
    );
    let page = render(&subject(), Format::Html, None);
    assert!(page.contains("<ul id=\"signature\">"), "{page}");
    // Alone, an evaluation has no versions to compare signatures of.
    assert!(!markdown(&evaluation()).contains("Signature"));
}

fn custom(text: &str) -> Custom {
    Custom {
        origin: "reports/team.md.j2".into(),
        text: Ok(text.into()),
    }
}

#[test]
fn a_team_template_reads_the_data_and_the_panels() {
    let t = "# {{ model }} {{ version }}: {{ verdict }}\n\
             commit {{ lineage.source.commit }}; f1 {{ metrics.macro_f1 }} vs {{ baseline_metrics.macro_f1 }}\n\
             {% for p in history %}{{ p.version }}={{ p.metrics.macro_f1 }} {% endfor %}\n\
             {{ panels.history }}{{ panels.samples }}";
    let md = render(&subject(), Format::Markdown, Some(&custom(t)));
    assert!(md.starts_with("# pitch-frame-classifier 8: Passed\ncommit abc123; f1 0.874 vs 0.861\n6=0.84 7=0.861 8=0.874 10=0.9 | Version | macro_f1 | p95_ms | Verdict |\n"), "{md}");
    assert!(md.contains("| **8** | 0.874 | 31.5 | Passed |"), "{md}");
    assert!(md.contains("| frames/<001>.jpg | set-piece |"), "{md}");
    // An HTML template escapes what it shows, and shows the panels as they are.
    let html_t = "<h1>{{ samples[0].input }}</h1>{{ panels.history }}";
    let page = render(&subject(), Format::Html, Some(&custom(html_t)));
    assert!(
        page.starts_with("<h1>frames&#x2f;&lt;001&gt;.jpg</h1>"),
        "{page}"
    );
    assert_eq!(page.matches("<svg class=\"history\"").count(), 2, "{page}");
    assert!(page.contains("<polyline"), "{page}");
    assert!(!page.contains("<script"), "{page}");
}

#[test]
fn a_template_that_fails_gives_the_default_report_with_its_error() {
    let cases = [
        ("{% for %}", "syntax error"),
        ("{{ metrics.macro_f1 | nosuchfilter }}", "unknown filter"),
        (
            "{% for i in range(10000) %}{% for j in range(10000) %}{{ i }}{% endfor %}{% endfor %}",
            "the template worked too long (over 2000000 steps)",
        ),
        (
            "{% for i in range(100) %}{{ 'x' * 1000000 }}{% endfor %}",
            "larger than 4 MiB",
        ),
    ];
    for (text, why) in cases {
        let md = render(&subject(), Format::Markdown, Some(&custom(text)));
        assert!(
            md.starts_with("> ⚠️ **The model's report template failed** (reports/team.md.j2): `"),
            "{text}: {md}"
        );
        assert!(md.contains(why), "{text}: {md}");
        assert!(
            md.contains("# pitch-frame-classifier 8 vs 7 — pitch-frames: Passed"),
            "{md}"
        );
    }
    let unreadable = Custom {
        origin: "ConfigMap team-report, key report.html.j2".into(),
        text: Err("ConfigMap team-report does not exist".into()),
    };
    let page = render(&subject(), Format::Html, Some(&unreadable));
    assert!(page.contains("id=\"template-error\""), "{page}");
    assert!(
        page.contains("ConfigMap team-report does not exist"),
        "{page}"
    );
}
