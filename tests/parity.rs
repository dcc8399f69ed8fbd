//! Parity: one table of lifecycle scenarios, run against both homes — git mode (`slipway run` on a
//! registry folder, SQLite) and Kubernetes mode (`slipway controller` on a real kube-apiserver) —
//! asserting the same decisions and what users see, step by step, and then that the two
//! transcripts are equal: evaluation statuses, versions, aliases, a deployment's canary rollout,
//! each step judged by a metric (measured once per step), its rollback and an operator's retry
//! (the test plays the kubelet in the cluster), an analysis
//! neither target can measure, the model's status, and the `EvaluationCompleted` announcements
//! (text and data). The SageMaker heal is compared between the homes in
//! `tests/sagemaker_kubernetes.rs`. A scenario that passes in one home and fails in the other is a
//! bug. The homes are in `tests/support/parity_homes.rs`.
//!
//! The evaluations use the `webhook` runner in both homes: the test is the external system. It
//! reads each dispatch from a real HTTP receiver and posts results to the home's results API.

mod support;

use std::collections::BTreeMap;

use std::time::Duration;

use serde_json::{Value, json};
use support::eventually;
use support::http::{Receiver, post_json, request};
use support::parity_homes::{ClusterHome, GitHome, Home};

const DIGEST: &str = "sha256:00000000000000000000000000000000000000000000000000000000000000";

/// The model, its suite (dispatched to the receiver), and a policy: production needs a pass.
fn base(receiver: u16) -> String {
    format!(
        r#"apiVersion: slipway.dev/v1alpha1
kind: RegisteredModel
metadata: {{name: pitch-frames}}
spec:
  owners: ["group:ml-leads"]
  evaluations:
    - name: holdout
      runner: {{webhook: {{url: "http://127.0.0.1:{receiver}/dispatch"}}}}
      dataset: {{uri: "s3://datasets/holdout/", digest: "{DIGEST}aa"}}
      baseline: {{alias: production}}
      gates:
        - {{metric: f1, op: ">=", value: 0.8}}
      timeout: 60s
  notifications:
    - name: parity
      webhook: {{url: "http://127.0.0.1:{receiver}/notify"}}
      events: [EvaluationCompleted]
---
apiVersion: slipway.dev/v1alpha1
kind: RegisteredModel
metadata: {{name: stalls}}
spec:
  owners: ["group:ml-leads"]
  evaluations:
    - name: holdout
      runner: {{webhook: {{url: "http://127.0.0.1:{receiver}/dispatch"}}}}
      dataset: {{uri: "s3://datasets/holdout/", digest: "{DIGEST}aa"}}
      gates:
        - {{metric: f1, op: ">=", value: 0.8}}
      timeout: 2s
---
apiVersion: slipway.dev/v1alpha1
kind: PromotionPolicy
metadata: {{name: production}}
spec:
  match: {{kinds: [ModelAlias], aliases: [production], operations: [create, update]}}
  rules:
    - name: candidate-evaluations-passed
      expression: 'model.evaluations.all(s, candidate.evaluations[s].verdict == "Passed")'
      message: An evaluation suite of the candidate did not pass.
"#
    )
}

/// Team-b's registry: the same suite of the same model (no baseline, no notifications) and
/// version 8's artifact.
fn team_b(receiver: u16) -> String {
    format!(
        r#"apiVersion: slipway.dev/v1alpha1
kind: RegisteredModel
metadata: {{name: pitch-frames, namespace: team-b}}
spec:
  owners: ["group:ml-leads"]
  evaluations:
    - name: holdout
      runner: {{webhook: {{url: "http://127.0.0.1:{receiver}/dispatch"}}}}
      dataset: {{uri: "s3://datasets/holdout/", digest: "{DIGEST}aa"}}
      gates:
        - {{metric: f1, op: ">=", value: 0.8}}
      timeout: 60s
---
apiVersion: slipway.dev/v1alpha1
kind: ModelVersion
metadata: {{name: pitch-frames-8, namespace: team-b}}
spec: {{model: pitch-frames, version: "8", artifact: {{uri: "s3://models/pitch-frames/8/", digest: "{DIGEST}08"}}}}
"#
    )
}

/// An object's `Ready` condition (conditions are a map by type: their order is the API server's).
fn ready(v: &Value) -> &Value {
    v["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .unwrap_or(&Value::Null)
}

fn version(model: &str, v: &str, digest: &str) -> String {
    stored_as(model, v, digest, v)
}

/// Version `v` whose artifact is the one stored for version `at` (the same URI and digest).
fn stored_as(model: &str, v: &str, digest: &str, at: &str) -> String {
    format!(
        r#"apiVersion: slipway.dev/v1alpha1
kind: ModelVersion
metadata: {{name: {model}-{v}}}
spec: {{model: {model}, version: "{v}", artifact: {{uri: "s3://models/{model}/{at}/", digest: "{DIGEST}{digest}"}}}}
"#
    )
}

fn alias(model: &str, v: &str) -> String {
    format!(
        r#"apiVersion: slipway.dev/v1alpha1
kind: ModelAlias
metadata: {{name: {model}-production}}
spec: {{model: {model}, alias: production, version: "{v}"}}
"#
    )
}

/// A deployment's status without its times: phase, versions, traffic, the rollout history
/// (event, traffic after it, message) and `Ready`.
fn deployment_facts(d: &Value) -> Value {
    let history: Vec<Value> = d["history"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| json!([h["event"], h["traffic"], in_common(&h["message"])]))
        .collect();
    json!({
        "phase": d["phase"], "servingVersion": d["servingVersion"], "targetVersion": d["targetVersion"],
        "traffic": d["traffic"], "rejectedVersions": d["rejectedVersions"], "history": history,
        "ready": ready(d)["status"], "reason": ready(d)["reason"],
        "message": in_common(&ready(d)["message"]),
    })
}

/// A deployment's message without what only its target can say of a version it waits for (a
/// server process and its log; a Deployment's replicas and pods): ` (still waiting for …)` in
/// a failure, `; waiting for …` at the end of a Ready condition.
fn in_common(message: &Value) -> Value {
    let Some(m) = message.as_str() else {
        return message.clone();
    };
    let m = match m.split_once(" (still waiting for ") {
        Some((before, rest)) => format!(
            "{before}{}",
            rest.split_once(')').map(|(_, after)| after).unwrap_or("")
        ),
        None => m.to_string(),
    };
    json!(
        m.split_once("; waiting for ")
            .map_or(m.as_str(), |(before, _)| before)
    )
}

/// What the scenario saw, to compare between homes.
type Transcript = BTreeMap<String, Value>;

/// An alias status without its times.
fn alias_facts(a: &Value) -> Value {
    let moves: Vec<Value> = a["history"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| json!([m["from"], m["to"], m["decision"]]))
        .collect();
    json!({
        "resolvedVersion": a["resolvedVersion"], "previousVersion": a["previousVersion"],
        "history": moves, "reason": ready(a)["reason"],
        "message": ready(a)["message"], "ready": ready(a)["status"],
    })
}

fn status_facts(s: &Value) -> Value {
    let condition = &ready(s);
    json!({
        "phase": s["phase"], "verdict": s["verdict"], "attempts": s["attempts"],
        "metrics": s["metrics"], "baselineMetrics": s["baselineMetrics"],
        "baselineVersion": s["baselineVersion"], "cacheKey": s["cacheKey"],
        "baselineCacheKey": s["baselineCacheKey"],
        "reason": condition["reason"], "message": condition["message"],
    })
}

/// The dispatches the receiver got for `evaluation`, as JSON bodies, in order.
fn dispatches(receiver: &Receiver, evaluation: &str) -> Vec<Value> {
    receiver
        .requests()
        .into_iter()
        .filter(|(path, _, _)| path == "/dispatch")
        .filter_map(|(_, _, body)| serde_json::from_str::<Value>(&body).ok())
        .filter(|b| b["evaluation"] == evaluation)
        .collect()
}

/// Plays the external system: waits for the `n`th dispatch of `evaluation` and posts `results`.
fn report(home: &dyn Home, receiver: &Receiver, evaluation: &str, n: usize, results: Value) {
    let d = eventually(Duration::from_secs(60), || {
        dispatches(receiver, evaluation).get(n - 1).cloned()
    });
    let url = d["resultsUrl"].as_str().unwrap_or_default().to_string();
    let token = d["token"].as_str().unwrap_or_default().to_string();
    let (code, body) = post_json(&url, &token, &results.to_string());
    assert_eq!(code, 202, "{}: {body}\n{}", home.name(), home.log());
}

/// Waits until `read` gives a status whose `field` is `want`; the failure names what it saw.
fn wait_for(
    home: &dyn Home,
    what: &str,
    read: impl Fn() -> Option<Value>,
    field: &str,
    want: &str,
) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(s) = read()
            && s[field] == want
        {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}: {what}: {field} never became {want}: {:?}\n{}",
            home.name(),
            read(),
            home.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until pitch-frames-api's status has `field` = `want` (with no rollout under way, when
/// `settled`).
fn wait_deployment(home: &dyn Home, settled: bool, field: &str, want: &str) -> Value {
    let read = || {
        home.deployment_status("pitch-frames-api")
            .filter(|d| !settled || d["targetVersion"].is_null())
    };
    wait_for(home, "deployment pitch-frames-api", read, field, want)
}

fn wait_evaluation(home: &dyn Home, name: &str, phase: &str) -> Value {
    let what = format!("evaluation {name}");
    wait_for(home, &what, || home.evaluation(name), "phase", phase)
}

/// A version's status once its `Ready` reason is `reason`, without times.
fn version_facts(home: &dyn Home, name: &str, reason: &str) -> Value {
    let what = format!("version {name}");
    let read = || {
        home.version(name)
            .map(|v| json!({"reason": ready(&v)["reason"], "message": ready(&v)["message"], "evaluations": v["evaluations"]}))
    };
    wait_for(home, &what, read, "reason", reason)
}

fn wait_resolved(home: &dyn Home, name: &str, version: &str) -> Value {
    let what = format!("alias {name}");
    wait_for(home, &what, || home.alias(name), "resolvedVersion", version)
}

/// The scenarios, in order, on one home: new version → evaluation → promotion; a second
/// version compared with the first; a third with the second's artifact (reused, not run); a
/// suite that never reports (timeouts retried, then failed for good, promotion held); a canary
/// rollout; a version that never becomes healthy (rolled back at the progress deadline), then
/// retried by an operator.
fn scenarios(home: &mut dyn Home, receiver: &Receiver) -> Transcript {
    let mut t = Transcript::new();
    let who = home.name();

    // 1. A first version: evaluated without a baseline, then promoted.
    home.apply("base.yaml", &base(receiver.port));
    home.apply("v7.yaml", &version("pitch-frames", "7", "07"));
    home.apply("alias.yaml", &alias("pitch-frames", "7"));
    report(
        home,
        receiver,
        "pitch-frames-7-holdout",
        1,
        json!({"candidate": {"metrics": {"f1": 0.85}}}),
    );
    let s = wait_evaluation(home, "pitch-frames-7-holdout", "Succeeded");
    assert_eq!(s["verdict"], "Passed", "{who}: {s}");
    // The results API: the attempt's token is good for one set of results (409 after), and a
    // caller without it learns nothing, not even whether an evaluation exists (401 alike).
    let sent = &dispatches(receiver, "pitch-frames-7-holdout")[0];
    let url = sent["resultsUrl"].as_str().unwrap_or_default();
    let again = post_json(url, sent["token"].as_str().unwrap_or_default(), "{}");
    let unknown = post_json(&url.replace("7-holdout", "77-holdout"), "guess", "{}");
    let bare = request("POST", url, &[], "{}");
    assert_eq!(
        (again.0, unknown.0, bare.0),
        (409, 401, 401),
        "{who}: {again:?} {unknown:?} {bare:?}"
    );
    t.insert("1 results API".into(), json!([again.1, unknown.1, bare.1]));
    assert_eq!(s["attempts"], 1, "{who}: {s}");
    assert_eq!(ready(&s)["reason"], "Passed", "{who}: {s}");
    t.insert("1 evaluation".into(), status_facts(&s));
    let a = wait_resolved(home, "pitch-frames-production", "7");
    t.insert("1 alias".into(), alias_facts(&a));

    // 2. A second version, compared with production = 7, promoted over it.
    home.apply("v8.yaml", &version("pitch-frames", "8", "08"));
    home.apply("alias.yaml", &alias("pitch-frames", "8"));
    let d = eventually(Duration::from_secs(60), || {
        dispatches(receiver, "pitch-frames-8-holdout")
            .first()
            .cloned()
    });
    assert_eq!(d["baseline"]["version"], "7", "{who}: {d}");
    report(
        home,
        receiver,
        "pitch-frames-8-holdout",
        1,
        json!({"candidate": {"metrics": {"f1": 0.9}}, "baseline": {"metrics": {"f1": 0.85}}}),
    );
    let s = wait_evaluation(home, "pitch-frames-8-holdout", "Succeeded");
    assert_eq!(s["baselineVersion"], "7", "{who}: {s}");
    assert_eq!(s["baselineMetrics"]["f1"], 0.85, "{who}: {s}");
    t.insert("2 evaluation".into(), status_facts(&s));
    t.insert(
        "2 version".into(),
        version_facts(home, "pitch-frames-8", "Evaluated"),
    );
    let a = wait_resolved(home, "pitch-frames-production", "8");
    assert_eq!(a["previousVersion"], "7", "{who}: {a}");
    t.insert("2 alias".into(), alias_facts(&a));

    // 3. Version 9 is version 8's artifact again (its URI and digest; a digest alone claimed
    //    by another URI is another artifact): both runs it needs (9 and production = 8)
    //    have finished results with the same content address; nothing is dispatched.
    home.apply("v9.yaml", &stored_as("pitch-frames", "9", "08", "8"));
    home.apply("alias.yaml", &alias("pitch-frames", "9"));
    let s = wait_evaluation(home, "pitch-frames-9-holdout", "Succeeded");
    assert!(
        dispatches(receiver, "pitch-frames-9-holdout").is_empty(),
        "{who}: a reusable evaluation was dispatched"
    );
    let message = ready(&s)["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("results reused from pitch-frames-8-holdout"),
        "{who}: {s}"
    );
    assert_eq!(
        (&s["metrics"]["f1"], &s["baselineMetrics"]["f1"]),
        (&json!(0.9), &json!(0.9)),
        "{who}: {s}"
    );
    assert_eq!(s["cacheKey"], t["2 evaluation"]["cacheKey"], "{who}: {s}");
    t.insert("3 evaluation".into(), status_facts(&s));
    let a = wait_resolved(home, "pitch-frames-production", "9");
    t.insert("3 alias".into(), alias_facts(&a));

    // 3b. Reuse stays within a namespace: team-b declares the same suite for version 8's
    //     artifact (its content address is the one default ran); it is dispatched and run
    //     there, not taken from default's results.
    home.namespace("team-b");
    home.apply("team-b.yaml", &team_b(receiver.port));
    let d = eventually(Duration::from_secs(60), || {
        dispatches(receiver, "pitch-frames-8-holdout")
            .into_iter()
            .find(|b| b["namespace"] == "team-b")
    });
    let url = d["resultsUrl"].as_str().unwrap_or_default();
    let (code, body) = post_json(
        url,
        d["token"].as_str().unwrap_or_default(),
        &json!({"candidate": {"metrics": {"f1": 0.7}}}).to_string(),
    );
    assert_eq!(code, 202, "{who}: {body}");
    let s = wait_for(
        home,
        "team-b's evaluation",
        || home.evaluation_in("team-b", "pitch-frames-8-holdout"),
        "phase",
        "Succeeded",
    );
    assert_eq!(
        s["verdict"], "Failed",
        "{who}: team-b's own run, not default's: {s}"
    );
    assert_eq!(s["cacheKey"], t["2 evaluation"]["cacheKey"], "{who}: {s}");
    t.insert("3b evaluation in team-b".into(), status_facts(&s));

    // 4. A suite that never reports: each attempt times out after 2 s and is dispatched again
    //    with a fresh token; the third timeout fails it, and production is held.
    home.apply("stalls.yaml", &version("stalls", "1", "51"));
    home.apply("stalls-alias.yaml", &alias("stalls", "1"));
    let s = wait_evaluation(home, "stalls-1-holdout", "Failed");
    let sent = dispatches(receiver, "stalls-1-holdout");
    assert_eq!(sent.len(), 3, "{who}: {sent:?}");
    let tokens: std::collections::BTreeSet<&str> =
        sent.iter().filter_map(|d| d["token"].as_str()).collect();
    assert_eq!(tokens.len(), 3, "{who}: every attempt has its own token");
    assert_eq!(s["attempts"], 3, "{who}: {s}");
    assert_eq!(s["verdict"], "Failed", "{who}: {s}");
    assert_eq!(
        ready(&s)["message"],
        format!(
            "evaluation failed after 3 attempt(s): no results within the suite's timeout (2s); {}",
            slipway_core::evaluation::lifecycle::RETRY_HINT
        ),
        "{who}: {s}"
    );
    t.insert("4 evaluation".into(), status_facts(&s));
    t.insert(
        "4 version".into(),
        version_facts(home, "stalls-1", "EvaluationFailed"),
    );
    let held = eventually(Duration::from_secs(30), || {
        let events = home.alias_events("stalls-production");
        events
            .iter()
            .any(|e| e == "PromotionBlocked")
            .then_some(events)
    });
    assert!(!held.iter().any(|e| e == "AliasMoved"), "{who}: {held:?}");
    let a = home.alias("stalls-production").unwrap_or(Value::Null);
    assert!(a["resolvedVersion"].is_null(), "{who}: {a}");
    assert_eq!(ready(&a)["reason"], "PromotionBlocked", "{who}: {a}");
    t.insert("4 alias".into(), alias_facts(&a));

    // 5. A deployment follows production (= 9): the first version goes live at once; then
    //    version 10 (9's artifact again: its evaluation is reused) is promoted and rolled out
    //    by the canary steps, 25% → 50% → 100%, each held for its pause.
    //    Each step is judged by a metric too — the receiver answers the quality service's
    //    accuracy — measured once per step (its interval is the steps' pause), so both homes
    //    record the same measurements.
    let deployment = home.deployment().replace(
        "autoRollback: true",
        &format!(
            "analysis: {{metrics: [{{name: accuracy, interval: 1s, successCondition: 'result >= 0.9', provider: {{http: {{url: 'http://127.0.0.1:{}/quality?version={{{{version}}}}', jsonPath: accuracy}}}}}}]}}, autoRollback: true",
            receiver.port
        ),
    );
    assert!(deployment.contains("name: accuracy"), "{deployment}");
    home.apply("deployment.yaml", &deployment);
    let d = wait_deployment(home, false, "servingVersion", "9");
    assert_eq!(d["traffic"], json!({"9": 100}), "{who}: {d}");
    home.apply("v10.yaml", &stored_as("pitch-frames", "10", "08", "8"));
    home.apply("alias.yaml", &alias("pitch-frames", "10"));
    wait_resolved(home, "pitch-frames-production", "10");
    let canary = wait_deployment(home, false, "targetVersion", "10");
    assert_eq!(canary["phase"], "Progressing", "{who}: {canary}");
    let d = wait_deployment(home, true, "servingVersion", "10");
    assert_eq!(d["traffic"], json!({"10": 100}), "{who}: {d}");
    assert_eq!(d["phase"], "Healthy", "{who}: {d}");
    let steps: Vec<&Value> = d["history"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| &h["traffic"])
        .collect();
    assert!(
        steps.contains(&&json!({"9": 75, "10": 25}))
            && steps.contains(&&json!({"9": 50, "10": 50})),
        "{who}: the canary skipped a step: {d}"
    );
    let measured: Vec<&Value> = d["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["event"] == "AnalysisMeasured")
        .map(|h| &h["message"])
        .collect();
    assert_eq!(
        measured,
        [
            "10: metric accuracy = 0.95: Success",
            "10: metric accuracy = 0.95: Success"
        ],
        "{who}: one measurement per canary step: {d}"
    );
    t.insert("5 deployment".into(), deployment_facts(&d));

    // 6. Version 11 (the same artifact: reused) never becomes healthy: at the strategy's
    //    progress deadline (3 s) its rollout fails, all traffic goes back to 10, and 11 is
    //    rejected while the alias stays on it. Once it is fixed, an operator's retry rolls it
    //    out by the canary steps.
    home.hold("11", true);
    home.apply("v11.yaml", &stored_as("pitch-frames", "11", "08", "8"));
    home.apply("alias.yaml", &alias("pitch-frames", "11"));
    wait_resolved(home, "pitch-frames-production", "11");
    let d = wait_deployment(home, false, "phase", "RolledBack");
    assert_eq!(
        (&d["servingVersion"], &d["traffic"], &d["rejectedVersions"]),
        (&json!("10"), &json!({"10": 100}), &json!(["11"])),
        "{who}: {d}"
    );
    let last = |d: &Value| d["history"].as_array().and_then(|h| h.last()).cloned();
    // The same words in both homes, with the cause as each target says it (a server process
    // and its log; a Deployment's replicas).
    let message = last(&d)
        .and_then(|h| h["message"].as_str().map(str::to_string))
        .unwrap_or_default();
    let (said, cause) = message
        .split_once(" (still waiting for ")
        .and_then(|(said, rest)| Some((said, rest.split_once("); ")?)))
        .map(|(said, (cause, rest))| (format!("{said}; {rest}"), cause.to_string()))
        .unwrap_or_default();
    assert_eq!(
        said,
        "11: version 11 did not become healthy within 3s; all traffic is back on version 10. Version 11 is not retried until the alias moves to it again or a retry is requested",
        "{who}: {message}"
    );
    assert!(
        cause.contains("its log: ") || cause.contains("pitch-frames-api-v11: 0/"),
        "{who}: {message}"
    );
    t.insert("6 rollback".into(), deployment_facts(&d));
    home.hold("11", false);
    home.retry("pitch-frames-api", "11");
    let d = wait_deployment(home, true, "servingVersion", "11");
    assert_eq!(
        (&d["phase"], &d["traffic"], &d["rejectedVersions"]),
        (&json!("Healthy"), &json!({"11": 100}), &Value::Null),
        "{who}: {d}"
    );
    let events: Vec<&str> = d["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h["event"].as_str())
        .collect();
    let since = events.iter().rposition(|e| *e == "RolledBack").unwrap_or(0);
    assert_eq!(
        &events[since..],
        [
            "RolledBack",
            "RetryRequested",
            "RolloutStarted",
            "StepStarted",
            "AnalysisMeasured",
            "StepStarted",
            "AnalysisMeasured",
            "StepStarted",
            "RolloutSucceeded"
        ],
        "{who}: {d}"
    );
    t.insert("6 retry".into(), deployment_facts(&d));

    // The model's status: its newest version and where its aliases resolve.
    let m = wait_for(
        home,
        "model pitch-frames",
        || {
            home.model("pitch-frames")
                .filter(|s| s["aliases"]["production"] == "11")
        },
        "latestVersion",
        "11",
    );
    assert_eq!(
        ready(&m)["message"],
        "5 versions, newest 11; 1 alias resolved",
        "{who}: {m}"
    );
    t.insert(
        "6 model".into(),
        json!([
            m["latestVersion"],
            m["aliases"],
            ready(&m)["reason"],
            ready(&m)["message"]
        ]),
    );

    // The announcements of every finished evaluation: one text and one set of data keys in
    // both homes (the report's location, the run's duration and the revision aside).
    let announced = || -> Vec<Value> {
        let mut seen: Vec<Value> = receiver
            .requests()
            .into_iter()
            .filter(|(path, _, _)| path == "/notify")
            .filter_map(|(_, _, body)| serde_json::from_str::<Value>(&body).ok())
            .filter(|b| b["event"] == "EvaluationCompleted")
            .map(|b| {
                let data = &b["data"];
                let keys: Vec<&String> = data.as_object().map(|o| o.keys().collect()).unwrap_or_default();
                json!({
                    "evaluation": data["evaluation"], "message": b["message"], "version": b["version"],
                    "keys": keys, "verdict": data["verdict"], "metrics": data["metrics"],
                    "baselineVersion": data["baselineVersion"], "baselineMetrics": data["baselineMetrics"],
                })
            })
            .collect();
        seen.sort_by_key(|n| n["evaluation"].to_string());
        seen.dedup();
        seen
    };
    let notes = eventually(Duration::from_secs(30), || {
        let n = announced();
        (n.len() >= 5).then_some(n)
    });
    let eight = notes
        .iter()
        .find(|n| n["evaluation"] == "pitch-frames-8-holdout")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        eight["keys"],
        json!([
            "baselineMetrics",
            "baselineVersion",
            "evaluation",
            "metrics",
            "report",
            "seconds",
            "suite",
            "verdict"
        ]),
        "{who}: {notes:#?}"
    );
    assert_eq!(eight["baselineVersion"], "7", "{who}: {eight}");
    t.insert("6 announcements".into(), json!(notes));

    // 7. An analysis the target cannot measure (CloudWatch alarms: neither the local router nor
    //    a Deployment's health measures them) is said in the status of both homes, and what
    //    serves is untouched.
    let with_alarms = deployment.replace(
        "analysis: {metrics:",
        "analysis: {alarms: [pitch-frames-5xx], metrics:",
    );
    assert_ne!(with_alarms, deployment);
    home.apply("deployment.yaml", &with_alarms);
    let measured = || {
        let d = home.deployment_status("pitch-frames-api")?;
        let c = d["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "AnalysisMeasured")?
            .clone();
        Some(
            json!({"status": c["status"], "reason": c["reason"], "message": c["message"],
                    "servingVersion": d["servingVersion"], "traffic": d["traffic"]}),
        )
    };
    let c = wait_for(home, "AnalysisMeasured", measured, "reason", "Unmeasurable");
    assert_eq!(
        (&c["status"], &c["servingVersion"], &c["traffic"]),
        (&json!("False"), &json!("11"), &json!({"11": 100})),
        "{who}: {c}"
    );
    let message = c["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("strategy.analysis asks for alarms, which a ")
            && message.contains("target cannot measure: its steps are judged by"),
        "{who}: {message}"
    );
    t.insert(
        "7 unmeasured analysis".into(),
        json!([c["status"], c["reason"], c["servingVersion"], c["traffic"]]),
    );
    t
}

/// What `slipway_events_total` counted, once the counts of what the scenarios announced settle
/// (announcements and their notifications go out in the background).
fn events_counted(home: &dyn Home) -> Value {
    let counted = || -> BTreeMap<String, String> {
        home.metrics()
            .lines()
            .filter_map(|l| l.strip_prefix("slipway_events_total{event=\""))
            .filter_map(|l| l.split_once("\"} "))
            .map(|(event, n)| (event.to_string(), n.to_string()))
            .collect()
    };
    let mut last = counted();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(500));
        let now = counted();
        if now == last && !now.is_empty() {
            break;
        }
        last = now;
    }
    json!(last)
}

#[test]
fn both_homes_evaluate_reuse_retry_and_promote_alike() {
    let receiver = Receiver::start(0);
    receiver.answer_with(r#"{"accuracy": 0.95}"#);
    let mut git = GitHome::start();
    let mut in_git = scenarios(&mut git, &receiver);
    in_git.insert("metrics".into(), events_counted(&git));
    drop(git);

    // The same receiver (its address is part of the runner spec, so of the content addresses).
    receiver.clear();
    let mut cluster = ClusterHome::start();
    let mut in_cluster = scenarios(&mut cluster, &receiver);
    in_cluster.insert("metrics".into(), events_counted(&cluster));

    // Same decisions and status fields (timestamps and report locations aside), step by step.
    for (step, facts) in &in_git {
        assert_eq!(
            Some(facts),
            in_cluster.get(step),
            "step `{step}` differs between git mode and Kubernetes mode"
        );
    }
    assert_eq!(in_git.len(), in_cluster.len());
}

/// A model whose suite runs with `home`'s job runner, version 1 and production at 1.
fn job_model(home: &dyn Home) -> String {
    format!(
        r#"apiVersion: slipway.dev/v1alpha1
kind: RegisteredModel
metadata: {{name: contract}}
spec:
  owners: ["group:ml-leads"]
  evaluations:
    - name: holdout
      runner:
{}      dataset: {{uri: "s3://datasets/holdout/", digest: "{DIGEST}aa"}}
      baseline: {{alias: production}}
      gates:
        - {{metric: f1, op: ">=", value: 0.8}}
      timeout: 10m
---
{}---
{}"#,
        home.job_runner(),
        version("contract", "1", "01"),
        alias("contract", "1"),
    )
}

/// The environment each run's job gets, and what it came to.
fn job_contract(home: &mut dyn Home) -> BTreeMap<String, Value> {
    let docs = job_model(home);
    home.apply("contract.yaml", &docs);
    let mut t = BTreeMap::new();
    for v in ["1", "2"] {
        if v == "2" {
            home.apply("contract-2.yaml", &version("contract", "2", "02"));
        }
        let evaluation = format!("contract-{v}-holdout");
        let env = home.job_environment(&evaluation, "candidate");
        let done = wait_evaluation(home, &evaluation, "Succeeded");
        t.insert(
            format!("version {v}"),
            json!([
                env,
                done["metrics"],
                done["baselineMetrics"],
                done["baselineVersion"]
            ]),
        );
    }
    t
}

#[test]
fn every_job_gets_the_same_contract_in_both_homes() {
    let mut git = GitHome::start();
    let in_git = job_contract(&mut git);
    drop(git);
    let mut cluster = ClusterHome::start();
    let in_cluster = job_contract(&mut cluster);
    assert_eq!(in_git, in_cluster);
    // Version 2 is compared with production (1), whose run finished: only 2 ran, as the
    // candidate, and 1's results are its baseline.
    assert_eq!(in_git["version 2"][0]["SLIPWAY_ROLE"], "candidate");
    assert_eq!(in_git["version 2"][0]["SLIPWAY_MODEL_VERSION"], "2");
    assert_eq!(in_git["version 2"][0]["SLIPWAY_SUITE"], "holdout");
    assert_eq!(in_git["version 2"][3], "1");
    assert_eq!(in_git["version 2"][2]["f1"], 0.9);
}
