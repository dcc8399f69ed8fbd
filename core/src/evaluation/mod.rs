//! Evaluation decisions (pure): gate verdicts, content-addressed cache keys, results files.

pub mod job;
pub mod lifecycle;
pub mod results;
pub mod step;
pub mod summary;

use std::collections::BTreeMap;

use serde_json::json;
use sha2::{Digest, Sha256};
use slipway_crd::common::{DatasetRef, Gate, GateOp, RelativeTo, RunnerSpec};
use slipway_crd::evaluation::{GateResult, Verdict};

/// The gates' results and the verdict for one finished run.
///
/// `baseline` is `None` when there is no baseline version at all (the model's first version):
/// baseline-relative gates are then skipped, and say so. A metric missing from the results
/// fails its gate (fail closed) and names the metric.
pub fn judge(
    gates: &[Gate],
    metrics: &BTreeMap<String, f64>,
    baseline: Option<&BTreeMap<String, f64>>,
) -> (Vec<GateResult>, Verdict) {
    let results: Vec<GateResult> = gates
        .iter()
        .map(|g| judge_one(g, metrics, baseline))
        .collect();
    let verdict = if results.iter().all(|r| r.passed) {
        Verdict::Passed
    } else {
        Verdict::Failed
    };
    (results, verdict)
}

fn symbol(op: GateOp) -> &'static str {
    match op {
        GateOp::Gt => ">",
        GateOp::Ge => ">=",
        GateOp::Lt => "<",
        GateOp::Le => "<=",
    }
}

fn holds(op: GateOp, actual: f64, threshold: f64) -> bool {
    match op {
        GateOp::Gt => actual > threshold,
        GateOp::Ge => actual >= threshold,
        GateOp::Lt => actual < threshold,
        GateOp::Le => actual <= threshold,
    }
}

fn judge_one(
    g: &Gate,
    metrics: &BTreeMap<String, f64>,
    baseline: Option<&BTreeMap<String, f64>>,
) -> GateResult {
    let mut result = GateResult {
        metric: g.metric.clone(),
        op: g.op,
        value: g.value,
        relative_to: g.relative_to,
        actual: metrics.get(&g.metric).copied(),
        threshold: None,
        passed: false,
        message: None,
    };
    let threshold = match g.relative_to {
        RelativeTo::Absolute => Some(g.value),
        RelativeTo::Baseline => match baseline {
            None => {
                result.passed = true;
                result.message =
                    Some("skipped: there is no baseline version to compare with".into());
                return result;
            }
            Some(b) => match b.get(&g.metric) {
                Some(v) => Some(v + g.value),
                None => {
                    result.message = Some(format!(
                        "the baseline's results have no metric `{}`",
                        g.metric
                    ));
                    return result;
                }
            },
        },
    };
    // (A threshold that overflowed is no number a status can hold: it is left out.)
    result.threshold = threshold.filter(|t| t.is_finite());
    match (result.actual, threshold) {
        (None, _) => result.message = Some(format!("the results have no metric `{}`", g.metric)),
        (Some(a), Some(t)) if a.is_finite() && t.is_finite() => {
            result.passed = holds(g.op, a, t);
            if !result.passed {
                result.message = Some(format!("{} = {a} is not {} {t}", g.metric, symbol(g.op)));
            }
        }
        (Some(a), _) => result.message = Some(format!("{} = {a} is not a finite number", g.metric)),
    }
    result
}

/// Whether an evaluation judges its version for the model's suite of the same name: only one
/// that runs the suite as the model declares it (runner, dataset, gates, timeout) feeds policy —
/// one with its author's own runner or gates is someone's experiment, not the model's judgement.
/// The baseline is not compared: Slipway pins a suite's baseline alias to the version it
/// resolved to, and the rules read the baseline version from the results.
pub fn judging(
    model: &slipway_crd::RegisteredModel,
    spec: &slipway_crd::evaluation::EvaluationSpec,
) -> Result<(), String> {
    let Some(suite) = model.spec.evaluations.iter().find(|s| s.name == spec.suite) else {
        return Err(format!(
            "model {} has no evaluation suite `{}`",
            spec.model, spec.suite
        ));
    };
    let differs: Vec<&str> = [
        ("runner", suite.runner != spec.runner),
        ("dataset", suite.dataset != spec.dataset),
        ("gates", suite.gates != spec.gates),
        ("timeout", suite.timeout != spec.timeout),
    ]
    .into_iter()
    .filter_map(|(field, differs)| differs.then_some(field))
    .collect();
    if differs.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "its {} differ from suite `{}` of model {}",
            differs.join(", "),
            suite.name,
            spec.model
        ))
    }
}

/// The content address of an evaluation: the model and its suite (a run judged by another
/// model's suite of the same name is not this one's), the artifact (its digest and where it is —
/// a digest alone could be claimed by any URI, and take the results of the artifact it names),
/// the dataset (where it is and its digest: a digest does not stand for a URI), and the runner
/// spec. A finished result with the same key, in the same namespace, is reused instead of
/// running again.
pub fn cache_key(
    model: &str,
    artifact: &slipway_crd::model_version::Artifact,
    dataset: &DatasetRef,
    runner: &RunnerSpec,
    suite: &str,
) -> String {
    // serde_json maps are sorted (no preserve_order feature), so this rendering is canonical.
    let canonical = json!({
        "model": model,
        "artifact": artifact.digest,
        "uri": artifact.uri,
        "dataset": {"uri": dataset.uri, "digest": dataset.digest},
        "runner": runner,
        "suite": suite,
    })
    .to_string();
    let digest = Sha256::digest(canonical.as_bytes());
    format!("sha256:{}", crate::hex(&digest))
}

/// What judges an evaluation's run besides its content address: the gates and the timeout. A
/// finished evaluation recorded under other ones is decided again ([`lifecycle::next`]): its
/// results judged by the new gates, or — when it failed without results — run again.
pub fn judged_by(gates: &[Gate], timeout: Option<&str>) -> String {
    let canonical = json!({"gates": gates, "timeout": timeout}).to_string();
    let digest = Sha256::digest(canonical.as_bytes());
    format!("sha256:{}", crate::hex(&digest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_crd::common::LocalRunner;

    #[test]
    fn only_an_evaluation_that_runs_the_suite_as_declared_judges() {
        let cat = crate::testing::catalog(&crate::testing::registry("1"));
        let model = cat.model("default", "m").unwrap();
        let suite = &model.spec.evaluations[0];
        let mut spec = slipway_crd::evaluation::EvaluationSpec {
            model: "m".into(),
            version: "2".into(),
            suite: "eval".into(),
            baseline: None,
            dataset: suite.dataset.clone(),
            runner: suite.runner.clone(),
            gates: suite.gates.clone(),
            timeout: suite.timeout.clone(),
        };
        assert_eq!(judging(model, &spec), Ok(()));
        // The author's own gate (one that always passes) and runner: not the model's judgement.
        spec.gates = vec![gate("f1", GateOp::Ge, 0.0, RelativeTo::Absolute)];
        spec.runner.local = Some(LocalRunner {
            command: vec!["true".into()],
            ..Default::default()
        });
        assert_eq!(
            judging(model, &spec),
            Err("its runner, gates differ from suite `eval` of model m".into())
        );
        spec.suite = "mine".into();
        assert!(
            judging(model, &spec)
                .unwrap_err()
                .contains("has no evaluation suite `mine`")
        );
    }

    fn gate(metric: &str, op: GateOp, value: f64, relative_to: RelativeTo) -> Gate {
        Gate {
            metric: metric.into(),
            op,
            value,
            relative_to,
        }
    }

    fn m(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn a_threshold_that_overflows_fails_the_gate_and_is_left_out_of_the_status() {
        let gates = [gate("f1", GateOp::Ge, 1e308, RelativeTo::Baseline)];
        let (results, verdict) = judge(&gates, &m(&[("f1", 1.0)]), Some(&m(&[("f1", 1.7e308)])));
        assert_eq!(verdict, Verdict::Failed);
        assert_eq!(results[0].threshold, None);
        assert!(!results[0].passed);
        // What a status holds serializes without a null (the published schema has none).
        assert!(!serde_json::to_string(&results[0]).unwrap().contains("null"));
    }

    #[test]
    fn absolute_and_relative_gates_pass_on_good_metrics() {
        let gates = [
            gate("f1", GateOp::Ge, 0.8, RelativeTo::Absolute),
            gate("f1", GateOp::Ge, -0.01, RelativeTo::Baseline),
            gate("p95_ms", GateOp::Le, 40.0, RelativeTo::Absolute),
        ];
        let (results, verdict) = judge(
            &gates,
            &m(&[("f1", 0.874), ("p95_ms", 31.5)]),
            Some(&m(&[("f1", 0.861)])),
        );
        assert_eq!(verdict, Verdict::Passed);
        assert!((results[1].threshold.unwrap() - 0.851).abs() < 1e-9);
    }

    #[test]
    fn a_regression_against_the_baseline_fails_with_the_numbers() {
        let gates = [gate("f1", GateOp::Ge, -0.01, RelativeTo::Baseline)];
        let (results, verdict) = judge(&gates, &m(&[("f1", 0.80)]), Some(&m(&[("f1", 0.86)])));
        assert_eq!(verdict, Verdict::Failed);
        assert_eq!(
            results[0].message.as_deref(),
            Some("f1 = 0.8 is not >= 0.85")
        );
    }

    #[test]
    fn a_missing_metric_fails_closed_and_is_named() {
        let gates = [gate("recall", GateOp::Gt, 0.5, RelativeTo::Absolute)];
        let (results, verdict) = judge(&gates, &m(&[("f1", 0.9)]), None);
        assert_eq!(verdict, Verdict::Failed);
        assert_eq!(
            results[0].message.as_deref(),
            Some("the results have no metric `recall`")
        );
    }

    #[test]
    fn a_nan_metric_fails() {
        let gates = [gate("f1", GateOp::Ge, 0.5, RelativeTo::Absolute)];
        assert_eq!(
            judge(&gates, &m(&[("f1", f64::NAN)]), None).1,
            Verdict::Failed
        );
    }

    #[test]
    fn relative_gates_are_skipped_without_any_baseline_but_not_without_its_metric() {
        let gates = [gate("f1", GateOp::Ge, 0.0, RelativeTo::Baseline)];
        let (results, verdict) = judge(&gates, &m(&[("f1", 0.9)]), None);
        assert_eq!(verdict, Verdict::Passed);
        assert!(
            results[0]
                .message
                .as_deref()
                .unwrap()
                .starts_with("skipped")
        );
        assert_eq!(
            judge(&gates, &m(&[("f1", 0.9)]), Some(&m(&[]))).1,
            Verdict::Failed
        );
    }

    #[test]
    fn cache_keys_change_with_every_input_and_only_then() {
        let runner = RunnerSpec {
            local: Some(LocalRunner {
                command: vec!["python3".into(), "e.py".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let data = DatasetRef {
            uri: "s3://d".into(),
            digest: Some("sha256:aa".into()),
        };
        let art = |uri: &str, digest: &str| slipway_crd::model_version::Artifact {
            uri: uri.into(),
            digest: digest.into(),
            format: None,
        };
        let one = art("s3://m/1", "sha256:01");
        let k = cache_key("m", &one, &data, &runner, "s");
        assert_eq!(k, cache_key("m", &one, &data, &runner, "s"));
        assert!(k.starts_with("sha256:") && k.len() == 71);
        assert_ne!(
            k,
            cache_key("m", &art("s3://m/1", "sha256:02"), &data, &runner, "s")
        );
        // Another URI claiming the same digest is another artifact.
        assert_ne!(
            k,
            cache_key("m", &art("s3://evil/m", "sha256:01"), &data, &runner, "s")
        );
        assert_ne!(
            k,
            cache_key(
                "m",
                &one,
                &DatasetRef {
                    digest: Some("sha256:bb".into()),
                    ..data.clone()
                },
                &runner,
                "s"
            )
        );
        assert_ne!(k, cache_key("m", &one, &data, &RunnerSpec::default(), "s"));
        assert_ne!(k, cache_key("m", &one, &data, &runner, "t"));
        // Another model's suite of the same name; the same digest at another dataset URI.
        assert_ne!(k, cache_key("n", &one, &data, &runner, "s"));
        assert_ne!(
            k,
            cache_key(
                "m",
                &one,
                &DatasetRef {
                    uri: "s3://elsewhere/".into(),
                    ..data.clone()
                },
                &runner,
                "s"
            )
        );
    }
}
