use super::*;
use crate::rollout::step;
use chrono::TimeZone;
use slipway_crd::model_deployment::DeploymentPhase;

fn spec(metrics: serde_json::Value) -> ModelDeploymentSpec {
    serde_json::from_value(serde_json::json!({
        "model": "pitch-frames", "alias": "production",
        "target": {"local": {"command": ["serve"], "port": 9000}},
        "strategy": {"type": "Canary", "steps": [{"weight": 25, "pause": "30s"}],
                     "analysis": {"metrics": metrics}}
    }))
    .unwrap()
}

fn error_rate() -> serde_json::Value {
    serde_json::json!([{
        "name": "error-rate", "interval": "10s", "successCondition": "result < 0.05",
        "provider": {"prometheus": {"address": "http://127.0.0.1:9090/",
            "query": "sum(rate(errors{version=\"{{version}}\",deployment=\"{{deployment}}\"}[1m]))"}}
    }])
}

fn t(s: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, 10, 0, 0).unwrap() + chrono::Duration::seconds(s)
}

fn names() -> Names<'static> {
    Names {
        namespace: "default",
        deployment: "api",
        model: "pitch-frames",
        version: "8\"}",
        stable: Some("7"),
        since: "",
    }
}

fn canary() -> RolloutState {
    RolloutState {
        stable: Some("7".into()),
        candidate: Some("8".into()),
        step: 0,
        step_started: Some(t(0)),
        step_ready: Some(t(0)),
        candidate_started: Some(t(0)),
        phase: DeploymentPhase::Progressing,
        last_desired: Some("8".into()),
        traffic: [("7".to_string(), 75), ("8".to_string(), 25)].into(),
        ..Default::default()
    }
}

#[test]
fn a_metric_is_due_one_interval_into_a_step_then_every_interval() {
    let spec = spec(error_rate());
    let empty = ModelDeploymentStatus::default();
    // A candidate whose label would end a matcher if it were not escaped.
    let state = RolloutState {
        candidate: Some("8\"}".into()),
        ..canary()
    };
    assert!(due(&spec, &empty, &state, ("default", "api"), t(9)).is_empty());
    let q = due(&spec, &empty, &state, ("default", "api"), t(10));
    // Placeholders are escaped for a PromQL string: a version cannot end the matcher.
    assert_eq!(
        q,
        vec![Query {
            metric: "error-rate".into(),
            requests: vec![Request::Prometheus {
                address: "http://127.0.0.1:9090".into(),
                query: "sum(rate(errors{version=\"8\\\"}\",deployment=\"api\"}[1m]))".into()
            }]
        }]
    );
    assert_eq!(
        next_due(&spec, &empty, &state, t(4)),
        Some(Duration::from_secs(6))
    );
    // Measured at 10: next at 20.
    let m = judge(
        &spec.strategy.analysis.as_ref().unwrap().metrics[0],
        &Ok(0.0.into()),
        t(10),
    );
    let status = ModelDeploymentStatus {
        analysis: record(None, &state, &[("error-rate".into(), m)]),
        ..Default::default()
    };
    assert!(due(&spec, &status, &state, ("default", "api"), t(19)).is_empty());
    assert_eq!(
        due(&spec, &status, &state, ("default", "api"), t(20)).len(),
        1
    );
    // Not in the last step (100%), nor without a candidate.
    let done = RolloutState {
        step: 1,
        ..canary()
    };
    assert!(due(&spec, &empty, &done, ("default", "api"), t(100)).is_empty());
    let settled = RolloutState {
        candidate: None,
        ..canary()
    };
    assert!(due(&spec, &empty, &settled, ("default", "api"), t(100)).is_empty());
}

#[test]
fn readings_are_judged_by_the_conditions_and_no_answer_is_never_a_success() {
    let mut m: Metric = serde_json::from_value(error_rate()[0].clone()).unwrap();
    let v = |m: &Metric, r: Reading| judge(m, &r, t(0)).verdict;
    assert_eq!(v(&m, Ok(serde_json::json!(0.01))), Verdict::Success);
    assert_eq!(
        v(&m, Ok(serde_json::json!(0))),
        Verdict::Success,
        "an integer compares too"
    );
    assert_eq!(v(&m, Ok(serde_json::json!(0.2))), Verdict::Failure);
    assert_eq!(
        v(&m, Err("connection refused".into())),
        Verdict::Inconclusive
    );
    assert_eq!(v(&m, Ok(serde_json::json!("high"))), Verdict::Inconclusive);
    m.failure_condition = Some("result > 0.1".into());
    assert_eq!(v(&m, Ok(serde_json::json!(0.07))), Verdict::Inconclusive);
    assert_eq!(v(&m, Ok(serde_json::json!(0.2))), Verdict::Failure);
    let said = said("error-rate", &judge(&m, &Ok(serde_json::json!(0.2)), t(0)));
    assert_eq!(
        said,
        "metric error-rate = 0.2: Failure (`result > 0.1` holds)"
    );
}

#[test]
fn prometheus_answers_and_json_paths_read_as_values() {
    let vector = |samples: serde_json::Value| serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": samples}});
    assert_eq!(
        prometheus_result(&vector(
            serde_json::json!([{"metric": {}, "value": [1.0, "0.25"]}])
        )),
        Ok(serde_json::json!(0.25))
    );
    assert_eq!(
        prometheus_result(&vector(serde_json::json!([
            {"metric": {"a": "1"}, "value": [1.0, "1"]}, {"metric": {"a": "2"}, "value": [1.0, "2"]}
        ]))),
        Ok(serde_json::json!([1.0, 2.0]))
    );
    assert!(
        prometheus_result(&vector(serde_json::json!([])))
            .unwrap_err()
            .contains("no samples")
    );
    assert!(
        prometheus_result(&vector(
            serde_json::json!([{"metric": {}, "value": [1.0, "NaN"]}])
        ))
        .unwrap_err()
        .contains("NaN")
    );
    let scalar = serde_json::json!({"status": "success", "data": {"resultType": "scalar", "result": [1.0, "3"]}});
    assert_eq!(prometheus_result(&scalar), Ok(serde_json::json!(3.0)));
    let error = serde_json::json!({"status": "error", "error": "parse error at char 3"});
    assert_eq!(
        prometheus_result(&error),
        Err("Prometheus answered an error: parse error at char 3".into())
    );
    let doc = serde_json::json!({"data": {"items": [{"accuracy": 0.93}], "empty": null}});
    assert_eq!(
        json_path(&doc, Some("data.items.0.accuracy")),
        Ok(serde_json::json!(0.93))
    );
    assert!(json_path(&doc, Some("data.items.3")).is_err());
    assert!(
        json_path(&doc, Some("data.empty"))
            .unwrap_err()
            .contains("null")
    );
    assert_eq!(json_path(&doc, None), Ok(doc.clone()));
}

#[test]
fn a_failed_metric_rolls_back_and_a_step_passes_only_on_a_success() {
    let spec = spec(error_rate());
    let state = canary();
    let metric = &spec.strategy.analysis.as_ref().unwrap().metrics[0];
    let previous = ModelDeploymentStatus::default();
    let ready = || step::Look {
        ready: true,
        judgement: Judgement::Pass,
        waiting: None,
    };
    let input = |previous: &'static ModelDeploymentStatus,
                 measured: &'static [(String, Measurement)],
                 now| step::Input {
        spec: Box::leak(Box::new(spec.clone())),
        previous,
        state: Box::leak(Box::new(state.clone())),
        desired: Some("8"),
        generation: None,
        poll: Duration::from_secs(1),
        now,
        measured,
        resolve: &|_| None,
    };
    let leak = |v: Vec<(String, Measurement)>| -> &'static [(String, Measurement)] {
        Box::leak(v.into_boxed_slice())
    };
    let previous: &'static ModelDeploymentStatus = Box::leak(Box::new(previous));
    // The hold is over but nothing was measured: the step holds, and looks again when due.
    let held = step::step(&input(previous, &[], t(31)), Some(ready()));
    assert_eq!(held.step.state.step, 0, "{held:?}");
    assert_eq!(held.wait, Some(Duration::ZERO));
    // A success lets it pass; the measurement is in the history and the status.
    let ok = leak(vec![(
        "error-rate".into(),
        judge(metric, &Ok(0.01.into()), t(31)),
    )]);
    let passed = step::step(&input(previous, ok, t(31)), Some(ready()));
    assert_eq!(passed.step.state.candidate, None, "{passed:?}");
    assert_eq!(passed.step.state.stable.as_deref(), Some("8"));
    let first = &passed.status.history[0];
    assert_eq!(
        first.event,
        slipway_crd::model_deployment::RolloutEventKind::AnalysisMeasured
    );
    assert_eq!(
        first.message.as_deref(),
        Some("8: metric error-rate = 0.01: Success")
    );
    let a = passed.status.analysis.as_ref().unwrap();
    assert_eq!((a.version.as_str(), a.metrics[0].successes), ("8", 1));
    // A failure rolls back at once, before the hold is over.
    let bad = leak(vec![(
        "error-rate".into(),
        judge(metric, &Ok(0.3.into()), t(10)),
    )]);
    let failed = step::step(&input(previous, bad, t(10)), Some(ready()));
    assert_eq!(failed.step.state.phase, DeploymentPhase::RolledBack);
    assert_eq!(failed.step.state.traffic, [("7".to_string(), 100)].into());
    let why = failed
        .status
        .history
        .last()
        .unwrap()
        .message
        .clone()
        .unwrap();
    assert!(
        why.contains("analysis failed at 25%: 1 failed measurement(s) of metric error-rate (failureLimit 0); last: metric error-rate = 0.3: Failure (`result < 0.05` is false)"),
        "{why}"
    );
    // An unreachable provider is inconclusive: the step holds, never passes.
    let down = leak(vec![(
        "error-rate".into(),
        judge(metric, &Err("connection refused".into()), t(31)),
    )]);
    let holding = step::step(&input(previous, down, t(31)), Some(ready()));
    assert_eq!(holding.step.state.step, 0);
    assert_eq!(holding.step.state.phase, DeploymentPhase::Progressing);
}

#[test]
fn limits_count_within_a_step_and_a_new_step_starts_afresh() {
    let mut metrics = error_rate();
    metrics[0]["failureLimit"] = 1.into();
    metrics[0]["inconclusiveLimit"] = 0.into();
    let spec = spec(metrics);
    let a = spec.strategy.analysis.as_ref().unwrap();
    let m = &a.metrics[0];
    let state = canary();
    let one = record(
        None,
        &state,
        &[("error-rate".into(), judge(m, &Ok(0.3.into()), t(10)))],
    );
    assert!(matches!(
        judgement(Some(a), one.as_ref(), &state),
        Judgement::Inconclusive(_)
    ));
    let two = record(
        one.as_ref(),
        &state,
        &[("error-rate".into(), judge(m, &Ok(0.3.into()), t(20)))],
    );
    assert!(matches!(
        judgement(Some(a), two.as_ref(), &state),
        Judgement::Fail(_)
    ));
    // One inconclusive measurement beyond a limit of 0: handled as onInconclusive (Rollback).
    let lost = record(
        None,
        &state,
        &[(
            "error-rate".into(),
            judge(m, &Err("timed out".into()), t(10)),
        )],
    );
    let j = judgement(Some(a), lost.as_ref(), &state);
    assert!(
        matches!(&j, Judgement::Fail(w) if w.contains("inconclusiveLimit 0") && w.contains("timed out")),
        "{j:?}"
    );
    // The next step's record starts from nothing.
    let next = RolloutState {
        step: 1,
        step_started: Some(t(40)),
        step_ready: Some(t(40)),
        ..canary()
    };
    assert_eq!(
        judgement(Some(a), two.as_ref(), &next),
        Judgement::Inconclusive("metric error-rate not measured yet in this step".into())
    );
}

#[test]
fn bad_metrics_are_named_by_field() {
    let spec = spec(serde_json::json!([
        {"name": "a", "interval": "0s", "successCondition": "result <", "provider": {}},
        {"name": "a", "successCondition": "outcome > 1",
         "provider": {"http": {"url": "ftp://x/{{versoin}}"}}}
    ]));
    let p = problems(spec.strategy.analysis.as_ref().unwrap());
    let fields: Vec<&str> = p.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.strategy.analysis.metrics[0].interval",
            "spec.strategy.analysis.metrics[0].successCondition",
            "spec.strategy.analysis.metrics[0].provider",
            "spec.strategy.analysis.metrics[1].name",
            "spec.strategy.analysis.metrics[1].successCondition",
            "spec.strategy.analysis.metrics[1].provider.http",
            "spec.strategy.analysis.metrics[1].provider.http",
        ],
        "{p:?}"
    );
    assert!(
        p[4].1
            .contains("unknown variable `outcome`; it can read `result`"),
        "{p:?}"
    );
    assert!(p[5].1.contains("unknown placeholder(s) versoin"), "{p:?}");
}

/// Issue 22 §2: a comparison asks for both versions' counts over the candidate's time so far,
/// not before its label delay, and judges them by the sequential test.
#[test]
fn a_comparison_waits_for_its_labels_and_is_judged_by_the_sequential_test() {
    let mut spec = spec(serde_json::json!([]));
    let analysis = spec.strategy.analysis.as_mut().unwrap();
    analysis.comparisons = vec![
        serde_json::from_value(serde_json::json!({
            "name": "accuracy", "interval": "30s", "labelDelay": "2m", "margin": 0.01,
            "successes": {"prometheus": {"address": "http://p:9090",
                "query": "sum(increase(correct_total{version=\"{{version}}\"}[{{since}}]))"}},
            "trials": {"prometheus": {"address": "http://p:9090",
                "query": "sum(increase(labelled_total{version=\"{{version}}\"}[{{since}}]))"}}
        }))
        .unwrap(),
    ];
    let empty = ModelDeploymentStatus::default();
    // A candidate whose label would end a matcher if it were not escaped.
    let state = RolloutState {
        candidate: Some("8\"}".into()),
        ..canary()
    };
    assert!(
        due(&spec, &empty, &state, ("default", "api"), t(60)).is_empty(),
        "labels take 2m"
    );
    let q = due(&spec, &empty, &state, ("default", "api"), t(120));
    assert_eq!(q.len(), 1);
    let queries: Vec<String> = q[0]
        .requests
        .iter()
        .map(|r| match r {
            Request::Prometheus { query, .. } => query.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        queries,
        [
            "sum(increase(correct_total{version=\"8\\\"}\"}[120s]))",
            "sum(increase(labelled_total{version=\"8\\\"}\"}[120s]))",
            "sum(increase(correct_total{version=\"7\"}[120s]))",
            "sum(increase(labelled_total{version=\"7\"}[120s]))",
        ]
    );
    let a = spec.strategy.analysis.as_ref().unwrap();
    let judged = |counts: [f64; 4]| {
        let readings = vec![counts.iter().map(|n| Ok(serde_json::json!(n))).collect()];
        judge_all(&spec, &q, &readings, t(120)).remove(0).1
    };
    // 80% against 90% on 5,000 labels each: worse, and the step fails saying so.
    let worse = judged([4_000.0, 5_000.0, 4_500.0, 5_000.0]);
    assert_eq!(worse.verdict, Verdict::Failure, "{worse:?}");
    assert_eq!(worse.value.as_deref(), Some("-0.1000"));
    let message = worse.message.clone().unwrap();
    assert!(
        message.starts_with("candidate − serving = -0.1000 (4000 of 5000 vs 4500 of 5000), 95% always-valid interval [-0.1"),
        "{message}"
    );
    assert!(message.ends_with("margin 0.01: worse"), "{message}");
    let recorded = record(None, &state, &[("accuracy".into(), worse)]);
    let j = judgement(Some(a), recorded.as_ref(), &state);
    assert!(
        matches!(&j, Judgement::Fail(w) if w.starts_with("comparison accuracy shows the candidate worse than the serving version: candidate − serving = -0.1000")),
        "{j:?}"
    );
    // As good: undecided on 5,000 labels each (a 1% margin is finer than that shows), not worse
    // on 50,000; too few labels: inconclusive.
    assert_eq!(
        judged([4_500.0, 5_000.0, 4_500.0, 5_000.0]).verdict,
        Verdict::Inconclusive
    );
    assert_eq!(
        judged([45_000.0, 50_000.0, 45_000.0, 50_000.0]).verdict,
        Verdict::Success
    );
    let few = judged([45.0, 50.0, 45.0, 50.0]);
    assert_eq!(few.verdict, Verdict::Inconclusive);
    assert_eq!(
        few.message.as_deref(),
        Some("50 and 50 trials of the 100 each version needs")
    );
    // A provider that did not answer is no reading.
    let readings = vec![vec![
        Ok(serde_json::json!(1.0)),
        Err("cannot reach http://p:9090".into()),
    ]];
    let lost = judge_all(&spec, &q, &readings, t(120)).remove(0).1;
    assert_eq!(lost.verdict, Verdict::Inconclusive);
    assert_eq!(
        lost.message.as_deref(),
        Some("the candidate's trials: cannot reach http://p:9090")
    );
    // Before its labels: the step waits for it.
    assert_eq!(
        judgement(Some(a), None, &state),
        Judgement::Inconclusive(
            "comparison accuracy not measured yet (its labels come 2m after a prediction)".into()
        )
    );
}

#[test]
fn a_comparison_with_parameters_out_of_range_is_named_by_field() {
    let mut spec = spec(serde_json::json!([]));
    spec.strategy.analysis.as_mut().unwrap().comparisons = vec![
        serde_json::from_value(serde_json::json!({
            "name": "accuracy", "margin": -0.1, "alpha": 0.7, "tau": 0, "labelDelay": "soon",
            "successes": {}, "trials": {"http": {"url": "http://q/{{sinse}}"}}
        }))
        .unwrap(),
    ];
    let p = problems(spec.strategy.analysis.as_ref().unwrap());
    let fields: Vec<&str> = p.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.strategy.analysis.comparisons[0].labelDelay",
            "spec.strategy.analysis.comparisons[0].margin",
            "spec.strategy.analysis.comparisons[0].alpha",
            "spec.strategy.analysis.comparisons[0].tau",
            "spec.strategy.analysis.comparisons[0].successes",
            "spec.strategy.analysis.comparisons[0].trials.http",
        ],
        "{p:?}"
    );
}

/// Issue 22, the hostile review: what a deployment's author writes cannot make a failing
/// metric pass or stall the controller.
#[test]
fn a_metric_cannot_smuggle_a_query_escape_a_label_or_run_without_bound() {
    let one = |query: &str, address: &str| -> Metric {
        serde_json::from_value(serde_json::json!({
            "name": "m", "successCondition": "result < 0.5",
            "provider": {"prometheus": {"address": address, "query": query}}
        }))
        .unwrap()
    };
    let ok = "sum(errors{version=\"{{version}}\"}[{{since}}])";
    assert!(request(&one(ok, "http://p:9090"), &names()).is_some());
    // A query of its own in the address: never asked, and validation says why.
    let smuggled = one(ok, "http://p:9090/api/v1/query?query=vector(0)&x=");
    assert_eq!(request(&smuggled, &names()), None);
    // A placeholder outside a double-quoted `=` label value could end the matcher.
    for q in [
        "sum(errors{version='{{version}}'})",
        "sum(errors{version=~\"{{version}}\"})",
        "sum(errors{version=\"v{{version}}\"})",
        "errors_{{version}}",
    ] {
        assert_eq!(request(&one(q, "http://p:9090"), &names()), None, "{q}");
    }
    let mut spec = spec(serde_json::json!([]));
    let a = spec.strategy.analysis.as_mut().unwrap();
    a.metrics = vec![
        smuggled,
        one("sum(errors{version='{{version}}'})", "http://p:9090"),
        serde_json::from_value(serde_json::json!({
            "name": "deep", "interval": "100ms",
            "successCondition": "result.all(a, result.all(b, result.all(c, true)))",
            "provider": {"http": {"url": "http://q/", "headers": {"Host": {"env": "X"}}}}
        }))
        .unwrap(),
    ];
    let p = problems(a);
    let said: Vec<String> = p.iter().map(|(f, m)| format!("{f}: {m}")).collect();
    for want in [
        "spec.strategy.analysis.metrics[0].provider.prometheus.address: an address is where Prometheus answers",
        "spec.strategy.analysis.metrics[1].name: metric m is named twice",
        "spec.strategy.analysis.metrics[1].provider.prometheus.query: {{version}} must be a whole double-quoted label value",
        "spec.strategy.analysis.metrics[2].interval: an interval under 1s",
        "spec.strategy.analysis.metrics[2].successCondition: a condition may nest at most 2 comprehensions",
        "spec.strategy.analysis.metrics[2].provider.http.headers.Host: Host is Slipway's to set",
    ] {
        assert!(
            said.iter().any(|s| s.starts_with(want)),
            "{want}\n{said:#?}"
        );
    }
    // +Inf (beyond the largest bucket) fails a bound instead of vanishing from the list.
    let vector = serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"pod": "a"}, "value": [1.0, "+Inf"]}, {"metric": {"pod": "b"}, "value": [1.0, "+Inf"]}]}});
    let reading = prometheus_result(&vector);
    let all_fast: Metric = serde_json::from_value(serde_json::json!({
        "name": "p99", "successCondition": "result.all(x, x < 0.5)",
        "provider": {"prometheus": {"address": "http://p:9090", "query": "q"}}
    }))
    .unwrap();
    assert_eq!(judge(&all_fast, &reading, t(0)).verdict, Verdict::Failure);
    // An answer too large to read through is no reading, and what is kept of words is short.
    let huge = serde_json::Value::Array((0..2000).map(|i| serde_json::json!(i)).collect());
    let m = judge(&all_fast, &Ok(huge), t(0));
    assert_eq!(m.verdict, Verdict::Inconclusive);
    assert!(m.value.as_deref().unwrap().len() <= MAX_VALUE + 3);
    let long_error = judge(&all_fast, &Err("x".repeat(100_000)), t(0));
    assert!(long_error.message.unwrap().len() <= MAX_VALUE + 3);
}
