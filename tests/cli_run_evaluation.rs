//! `slipway run`'s evaluation and promotion passes on the quickstart: registered versions are
//! evaluated (by real subprocesses, or by an external job reporting through the results API),
//! reports written and aliases promoted; a killed evaluation is resumed without repeating what
//! finished, and a long evaluation holds up no other model's promotion or canary.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::git_mode::{
    Traffic, events, get, quickstart, run_once_with_traffic, serve, set_production, spawn_slipway,
    terminate,
};
use support::http::{Receiver, post_json};
use support::{eventually, root, slipway};

#[test]
fn the_quickstart_registers_evaluates_reports_and_promotes() {
    let (_dir, work) = quickstart();
    let run = slipway(&["run", "registry", "--once", "--state", "state"], &work);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("promoted:\n  pitch-frames/production: (none) → 7"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr
            .contains("holdout on pitch-frames version 8 vs 7: Passed"),
        "{}",
        run.stderr
    );
    let report =
        std::fs::read_to_string(work.join("state/reports/default/pitch-frames-8-holdout.md"))
            .unwrap();
    assert!(
        report.starts_with("# pitch-frames 8 vs 7 — holdout: Passed"),
        "{report}"
    );
    assert!(
        report.contains("| macro_f1 | 0.8148 | 0.7355 | +0.0793 |"),
        "{report}"
    );
    assert!(
        work.join("state/reports/default/pitch-frames-8-holdout.html")
            .is_file()
    );

    set_production(&work, "8");
    let (run, _) = run_once_with_traffic(&work);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("pitch-frames/production: 7 → 8"),
        "{}",
        run.stdout
    );
    assert!(
        !run.stderr.contains("running holdout"),
        "an evaluation ran twice: {}",
        run.stderr
    );

    let status = slipway(&["status", "--state", "state"], &work);
    assert_eq!(status.code, 0);
    assert!(
        status.stdout.contains("alias production → 8"),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("version 8      registered"),
        "{}",
        status.stdout
    );

    let history = slipway(
        &[
            "history",
            "pitch-frames",
            "--alias",
            "production",
            "--state",
            "state",
        ],
        &work,
    );
    let moves: Vec<&str> = history
        .stdout
        .lines()
        .filter(|l| l.contains("AliasMoved"))
        .collect();
    assert_eq!(moves.len(), 2, "{}", history.stdout);
    assert!(moves[1].contains("pitch-frames/production: 7 → 8"));
}

#[test]
fn the_quickstart_artifacts_match_their_registered_digests() {
    use sha2::{Digest, Sha256};
    let dir = root().join("examples/quickstart");
    let versions = std::fs::read_to_string(dir.join("versions.yaml")).unwrap();
    let model = std::fs::read_to_string(dir.join("model.yaml")).unwrap();
    for (file, registry) in [
        ("models/pitch-frames-7.json", &versions),
        ("models/pitch-frames-8.json", &versions),
        ("data/holdout.csv", &model),
    ] {
        let digest: String = Sha256::digest(std::fs::read(dir.join(file)).unwrap())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(
            registry.contains(&format!("sha256:{digest}")),
            "{file} changed; update its digest to sha256:{digest}"
        );
    }
}

#[test]
fn killing_the_reconciler_mid_evaluation_loses_nothing_and_repeats_nothing_finished() {
    let (_dir, work) = quickstart();
    // Version 8's first run hangs (until killed); every run is logged.
    let eval = work.join("registry/evaluate.py");
    let original = std::fs::read_to_string(&eval).unwrap();
    std::fs::write(
        &eval,
        original.replace(
            "def main():\n",
            "def main():\n    with open('runs.log', 'a') as f:\n        f.write(os.environ['SLIPWAY_MODEL_VERSION'] + '\\n')\n    if os.environ['SLIPWAY_MODEL_VERSION'] == '8' and not os.path.exists('hung-once'):\n        open('hung-once', 'w').close()\n        time.sleep(90)\n",
        ),
    )
    .unwrap();
    let mut child = spawn_slipway(&work, &["run", "registry", "--once", "--state", "state"]);
    eventually(Duration::from_secs(60), || {
        work.join("registry/hung-once").exists().then_some(())
    });
    child.kill().unwrap();
    child.wait().unwrap();

    let run = slipway(&["run", "registry", "--once", "--state", "state"], &work);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let runs = std::fs::read_to_string(work.join("registry/runs.log")).unwrap();
    assert_eq!(
        runs.lines().collect::<Vec<_>>(),
        vec!["7", "8", "8"],
        "version 7 ran again after the restart"
    );
    assert!(
        run.stderr
            .contains("holdout on pitch-frames version 8 vs 7: Passed"),
        "{}",
        run.stderr
    );
    let status = slipway(&["status", "--state", "state"], &work);
    assert!(
        status.stdout.contains("alias production → 7"),
        "{}",
        status.stdout
    );
    // Both halves of the first run's work are in the history exactly once.
    let history = slipway(&["history", "pitch-frames", "--state", "state"], &work);
    assert_eq!(
        history.stdout.matches("VersionRegistered").count(),
        2,
        "{}",
        history.stdout
    );
    assert_eq!(
        history.stdout.matches("AliasMoved").count(),
        1,
        "{}",
        history.stdout
    );
}

#[test]
fn an_external_job_runs_the_evaluation_and_reports_through_the_results_api() {
    let (_dir, work) = quickstart();
    let receiver = Receiver::start(0);
    let model = work.join("registry/model.yaml");
    let text = std::fs::read_to_string(&model).unwrap().replace(
        "        local:\n          command: [\"python3\", \"evaluate.py\"]\n",
        &format!(
            "        webhook:\n          url: http://127.0.0.1:{}/dispatch\n",
            receiver.port
        ),
    );
    assert!(text.contains("webhook:"));
    std::fs::write(&model, text).unwrap();
    // The receiver is on this host: the operator allows it.
    let (mut child, port) = serve(&work, &["--allowed-destinations", "127.0.0.1"]);
    let dispatch_for = |version: &str| {
        eventually(Duration::from_secs(60), || {
            receiver.requests().into_iter().find_map(|(_, _, body)| {
                let v: serde_json::Value = serde_json::from_str(&body).ok()?;
                (v["version"] == version).then_some(v)
            })
        })
    };
    let results = |f1: f64| {
        format!(
            r#"{{"metrics": {{"macro_f1": {f1}, "p95_latency_us": 12.0}}, "samples": [{{"input": "frames/day-0001.jpg", "expected": "open-play", "prediction": "open-play"}}]}}"#
        )
    };

    // Version 7 first (it becomes production), with no baseline.
    let d7 = dispatch_for("7");
    assert_eq!(d7["baseline"], serde_json::Value::Null);
    assert_eq!(d7["candidate"]["uri"], "models/pitch-frames-7.json");
    let url7 = d7["resultsUrl"].as_str().unwrap().to_string();
    assert_eq!(
        url7,
        format!(
            "http://127.0.0.1:{port}/api/v1/evaluations/default/pitch-frames-7-holdout/results"
        )
    );
    let (code, body) = post_json(
        &url7,
        "not-the-token",
        &format!(r#"{{"candidate": {}}}"#, results(0.74)),
    );
    assert_eq!(code, 401, "{body}");
    let (code, body) = post_json(
        &url7,
        d7["token"].as_str().unwrap(),
        r#"{"candidate": {"metric": {}}}"#,
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("unknown field `metric`"), "{body}");
    let (code, body) = post_json(
        &url7,
        d7["token"].as_str().unwrap(),
        &format!(r#"{{"candidate": {}}}"#, results(0.74)),
    );
    assert_eq!(code, 202, "{body}");

    // Then version 8, compared against production = 7: the job must report both.
    let d8 = dispatch_for("8");
    assert_eq!(d8["baseline"]["version"], "7");
    let url8 = d8["resultsUrl"].as_str().unwrap().to_string();
    let token8 = d8["token"].as_str().unwrap().to_string();
    let (code, body) = post_json(
        &url8,
        &token8,
        &format!(r#"{{"candidate": {}}}"#, results(0.81)),
    );
    assert_eq!(code, 400);
    assert!(body.contains("include \\\"baseline\\\" results"), "{body}");
    let (code, _) = post_json(
        &url8,
        &token8,
        &format!(
            r#"{{"candidate": {}, "baseline": {}}}"#,
            results(0.81),
            results(0.74)
        ),
    );
    assert_eq!(code, 202);
    eventually(Duration::from_secs(30), || {
        events(&work)
            .iter()
            .any(|l| l.contains("holdout on pitch-frames version 8 vs 7: Passed"))
            .then_some(())
    });
    let report =
        std::fs::read_to_string(work.join("state/reports/default/pitch-frames-8-holdout.md"))
            .unwrap();
    assert!(
        report.contains("| macro_f1 | 0.81 | 0.74 | +0.0700 |"),
        "{report}"
    );
    assert!(
        !events(&work)
            .iter()
            .any(|l| l.contains(d8["token"].as_str().unwrap())),
        "the token leaked into the history"
    );

    terminate(&mut child);
}

/// A model whose suite runs until the test opens a gate: an evaluation as long as the test wants.
fn add_gated_model(work: &Path) -> PathBuf {
    let gate = work.join("gate");
    let docs = format!(
        r#"apiVersion: slipway.dev/v1alpha1
kind: RegisteredModel
metadata: {{name: slow-model}}
spec:
  owners: ["group:ml-leads"]
  evaluations:
    - name: holdout
      runner:
        local:
          command: ["sh", "-c", "while [ ! -e \"$GATE\" ]; do sleep 0.1; done; echo '{{\"metrics\": {{\"f1\": 0.9}}}}' > \"$SLIPWAY_RESULTS\""]
          env: {{GATE: "{}"}}
      dataset: {{uri: "file://data/holdout.csv"}}
      gates:
        - {{metric: f1, op: ">=", value: 0.5}}
      timeout: 10m
---
apiVersion: slipway.dev/v1alpha1
kind: ModelVersion
metadata: {{name: slow-model-1}}
spec: {{model: slow-model, version: "1", artifact: {{uri: "file://models/slow-1", digest: "{}"}}}}
"#,
        gate.display(),
        artifact(work, "slow-1")
    );
    std::fs::write(work.join("registry/slow.yaml"), docs).unwrap();
    gate
}

/// Writes artifact `models/NAME` into the registry; its digest.
fn artifact(work: &Path, name: &str) -> String {
    use sha2::{Digest, Sha256};
    let content = format!("weights of {name}\n");
    std::fs::write(work.join("registry/models").join(name), &content).unwrap();
    let hex: String = Sha256::digest(content.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

fn evaluation_phase(port: u16, name: &str) -> Option<String> {
    let (_, body) = get(port, "/api/v1/evaluations");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&body).ok()?;
    rows.iter()
        .find(|r| r["name"] == name)
        .and_then(|r| r["status"]["phase"].as_str().map(str::to_string))
}

/// A model whose webhook runner and notification channel point at a server that accepts
/// connections and never answers (each request waits out its 10 s timeout, with retries).
fn add_hanging_model(work: &Path) -> std::net::TcpListener {
    let hang = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hang.local_addr().unwrap().port();
    let docs = format!(
        r#"apiVersion: slipway.dev/v1alpha1
kind: RegisteredModel
metadata: {{name: hanging-model}}
spec:
  owners: ["group:ml-leads"]
  evaluations:
    - name: holdout
      runner: {{webhook: {{url: "http://127.0.0.1:{port}/dispatch"}}}}
      dataset: {{uri: "file://data/holdout.csv"}}
      gates:
        - {{metric: f1, op: ">=", value: 0.5}}
      timeout: 10m
  notifications:
    - name: hanging
      events: [VersionRegistered]
      webhook: {{url: "http://127.0.0.1:{port}/notify"}}
---
apiVersion: slipway.dev/v1alpha1
kind: ModelVersion
metadata: {{name: hanging-model-1}}
spec: {{model: hanging-model, version: "1", artifact: {{uri: "file://models/hanging-1", digest: "{digest}"}}}}
"#,
        digest = artifact(work, "hanging-1")
    );
    std::fs::write(work.join("registry/hanging.yaml"), docs).unwrap();
    hang
}

#[test]
fn a_long_evaluation_elsewhere_holds_up_no_promotion_and_no_canary() {
    let (_dir, work) = quickstart();
    let gate = add_gated_model(&work);
    // And requests that hang: an evaluation's dispatch and a notification, both off the pass.
    let hang = add_hanging_model(&work);
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let holder = held.clone();
    std::thread::spawn(move || {
        for conn in hang.incoming().flatten() {
            holder.lock().unwrap().push(conn);
        }
    });
    let (mut child, port) = serve(
        &work,
        &[
            "--parallel-evaluations",
            "3",
            "--allowed-destinations",
            "127.0.0.1",
        ],
    );
    // Production is promoted to 7 and rolled out while slow-model's evaluation runs on.
    eventually(Duration::from_secs(90), || {
        let (_, m) = get(port, "/metrics");
        m.contains("slipway_events_total{event=\"RolloutSucceeded\"} 1")
            .then_some(())
    });
    assert_eq!(
        evaluation_phase(port, "slow-model-1-holdout").as_deref(),
        Some("Running")
    );
    // A canary to 8, all its steps, while that evaluation is still running.
    let traffic = Traffic::start(&work);
    set_production(&work, "8");
    eventually(Duration::from_secs(90), || {
        let (_, m) = get(port, "/metrics");
        m.contains("slipway_events_total{event=\"RolloutSucceeded\"} 2")
            .then_some(())
    });
    drop(traffic);
    let moved = events(&work);
    assert!(
        moved
            .iter()
            .any(|l| l.contains("AliasMoved") && l.contains("7 → 8")),
        "{moved:#?}"
    );
    assert_eq!(
        evaluation_phase(port, "slow-model-1-holdout").as_deref(),
        Some("Running"),
        "the canary finished while the other model's evaluation was still running"
    );
    // The hanging dispatch and notification were sent and are still waiting for an answer.
    assert!(held.lock().unwrap().len() >= 2, "both requests were made");
    assert_eq!(
        evaluation_phase(port, "hanging-model-1-holdout").as_deref(),
        Some("Running")
    );
    let (_, history) = get(port, "/api/v1/history");
    assert!(
        !history.contains("Notification/hanging"),
        "the hanging notification has not given up yet: {history}"
    );
    // The evaluation finishes when its job does, and is recorded at once.
    std::fs::write(&gate, "").unwrap();
    eventually(Duration::from_secs(30), || {
        (evaluation_phase(port, "slow-model-1-holdout").as_deref() == Some("Succeeded"))
            .then_some(())
    });
    terminate(&mut child);
}

#[test]
fn two_namespaces_run_the_same_evaluation_each_in_a_folder_of_its_own() {
    let (_dir, work) = quickstart();
    let seen = work.join("results-paths");
    // The same model, suite and artifact in two namespaces: the same content address, run once
    // in each (results are not reused across namespaces), each writing where it was told. And
    // another model with a suite of the same name, the same artifact and dataset: its own run
    // (a run judged by another model's suite is not its result).
    let team = |ns: &str, model: &str| {
        format!(
            r#"apiVersion: slipway.dev/v1alpha1
kind: RegisteredModel
metadata: {{name: {model}, namespace: {ns}}}
spec:
  owners: ["group:ml-leads"]
  evaluations:
    - name: holdout
      runner:
        local:
          command: ["sh", "-c", "echo \"$SLIPWAY_RESULTS\" >> \"$SEEN\"; echo '{{\"metrics\": {{\"f1\": 0.9}}}}' > \"$SLIPWAY_RESULTS\""]
          env: {{SEEN: "{}"}}
      dataset: {{uri: "file://data/holdout.csv"}}
      gates:
        - {{metric: f1, op: ">=", value: 0.5}}
---
apiVersion: slipway.dev/v1alpha1
kind: ModelVersion
metadata: {{name: {model}-1, namespace: {ns}}}
spec: {{model: {model}, version: "1", artifact: {{uri: "file://models/shared-1", digest: "{}"}}}}
"#,
            seen.display(),
            artifact(&work, "shared-1")
        )
    };
    std::fs::write(
        work.join("registry/team-a.yaml"),
        team("team-a", "shared-model"),
    )
    .unwrap();
    std::fs::write(
        work.join("registry/team-b.yaml"),
        team("team-b", "shared-model"),
    )
    .unwrap();
    std::fs::write(
        work.join("registry/team-a-other.yaml"),
        team("team-a", "other-model"),
    )
    .unwrap();
    let run = slipway(&["run", "registry", "--once", "--state", "state"], &work);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let text = std::fs::read_to_string(&seen).unwrap();
    let mut paths: Vec<&str> = text.lines().collect();
    paths.sort();
    assert_eq!(paths.len(), 3, "one run per namespace and model: {paths:?}");
    for run in [
        "/team-a/other-model-1-holdout/",
        "/team-a/shared-model-1-holdout/",
        "/team-b/shared-model-1-holdout/",
    ] {
        assert!(paths.iter().any(|p| p.contains(run)), "{run}: {paths:?}");
    }
}

/// Issue 20: an evaluation whose script was missing failed after three attempts, and fixing the
/// script changed nothing: the result was final, with no way to run it again short of deleting
/// the state. An operator's `slipway retry --evaluation` now starts a new round; a run that
/// produced results is refused.
#[test]
fn an_evaluation_that_failed_without_results_runs_again_when_retried() {
    let (_dir, work) = quickstart();
    let script = work.join("registry/evaluate.py");
    let good = std::fs::read_to_string(&script).unwrap();
    std::fs::remove_file(&script).unwrap();
    let run = slipway(&["run", "registry", "--once", "--state", "state"], &work);
    // Failed evaluations, a promotion that cannot happen: held (exit 3).
    assert_eq!(run.code, 3, "{}", run.stderr);
    let status = |work: &Path| slipway(&["status", "--state", "state"], work).stdout;
    assert!(
        status(&work).contains("evaluation: failed (pitch-frames-7-holdout)"),
        "{}",
        status(&work)
    );
    // The script is back: the failure stands until someone asks for a new run.
    std::fs::write(&script, &good).unwrap();
    slipway(&["run", "registry", "--once", "--state", "state"], &work);
    assert!(status(&work).contains("evaluation: failed (pitch-frames-7-holdout)"));

    let retried = slipway(
        &[
            "retry",
            "--evaluation",
            "pitch-frames-7-holdout",
            "--state",
            "state",
        ],
        &work,
    );
    assert_eq!(retried.code, 0, "{}", retried.stderr);
    assert!(
        retried
            .stdout
            .contains("default/pitch-frames-7-holdout: runs again from its first attempt"),
        "{}",
        retried.stdout
    );
    let run = slipway(&["run", "registry", "--once", "--state", "state"], &work);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        status(&work).contains("evaluation: passed (pitch-frames-7-holdout)"),
        "{}",
        status(&work)
    );
    assert!(
        events(&work)
            .iter()
            .any(|l| l.contains("RetryRequested") && l.contains("pitch-frames-7-holdout")),
        "{:#?}",
        events(&work)
    );
    // A run with results is not run again on request.
    let refused = slipway(
        &[
            "retry",
            "--evaluation",
            "pitch-frames-7-holdout",
            "--state",
            "state",
        ],
        &work,
    );
    assert_eq!(refused.code, 1);
    assert!(
        refused
            .stderr
            .contains("a run that produced results is not run again"),
        "{}",
        refused.stderr
    );
    let unknown = slipway(
        &["retry", "--evaluation", "nope", "--state", "state"],
        &work,
    );
    assert_eq!(unknown.code, 1);
    assert!(
        unknown
            .stderr
            .contains("no evaluation default/nope has run"),
        "{}",
        unknown.stderr
    );
}

/// A suite's gates changed: the evaluations are judged again on the same results (nothing runs
/// again), their reports are rewritten, and the completion is recorded again with the new
/// verdict; the same suite afterwards changes nothing.
#[test]
fn new_gates_judge_the_same_results_again() {
    let (_dir, work) = quickstart();
    let run = slipway(&["run", "registry", "--once", "--state", "state"], &work);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let model = work.join("registry/model.yaml");
    let text = std::fs::read_to_string(&model).unwrap();
    let strict = r#"{metric: macro_f1, op: ">=", value: 0.99}"#;
    assert!(text.contains(r#"{metric: macro_f1, op: ">=", value: 0.70}"#));
    std::fs::write(
        &model,
        text.replace(r#"{metric: macro_f1, op: ">=", value: 0.70}"#, strict),
    )
    .unwrap();
    let run = slipway(&["run", "registry", "--once", "--state", "state"], &work);
    // Judged again, both fail now: held (exit 3).
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        !run.stderr.contains("running holdout"),
        "ran again: {}",
        run.stderr
    );
    let status = slipway(&["status", "--state", "state"], &work).stdout;
    assert!(
        status.contains("evaluation: failed (pitch-frames-8-holdout)"),
        "{status}"
    );
    let report =
        std::fs::read_to_string(work.join("state/reports/default/pitch-frames-8-holdout.md"))
            .unwrap();
    assert!(report.contains("holdout: Failed"), "{report}");
    let completed = |work: &Path| {
        events(work)
            .iter()
            .filter(|l| l.contains("EvaluationCompleted") && l.contains("version 8"))
            .count()
    };
    assert_eq!(completed(&work), 2, "{:#?}", events(&work));
    // The same suite again: it stands.
    slipway(&["run", "registry", "--once", "--state", "state"], &work);
    assert_eq!(completed(&work), 2);
}

#[test]
fn a_candidate_whose_artifact_is_not_its_digest_is_not_evaluated() {
    let (_dir, work) = quickstart();
    let reg = work.join("registry");
    let artifact = reg.join("models/pitch-frames-8.json");
    let text = std::fs::read_to_string(&artifact).unwrap();
    std::fs::write(&artifact, text.replacen('1', "2", 1)).unwrap();
    std::fs::write(
        reg.join("evaluate.py"),
        format!(
            "open('ran', 'w').write('yes')\n{}",
            std::fs::read_to_string(reg.join("evaluate.py")).unwrap()
        ),
    )
    .unwrap();
    let run = slipway(&["run", "registry", "--once", "--state", "state"], &work);
    let both = format!("{}{}", run.stdout, run.stderr);
    assert!(
        both.contains("models/pitch-frames-8.json has digest sha256:")
            && both.contains("is declared: the artifact is not what was registered"),
        "{both}"
    );
    assert!(
        both.contains("holdout on pitch-frames version 8: Failed"),
        "{both}"
    );
    // 7's own evaluation ran (its artifact is intact); 8's never started.
    assert!(reg.join("ran").exists());
    assert!(!run.stdout.contains("→ 8"), "{}", run.stdout);
}

/// A soak in git mode: the model asks for 6 s in staging; one edit sends staging and production
/// to 8 (production first in the file). Production is held until the soak ends — its status says
/// until when — and moves by itself then, long before the next pass the 30 s interval would
/// bring.
#[test]
fn a_production_move_waits_out_the_soak_in_staging_and_is_made_when_it_ends() {
    let (_dir, work) = quickstart();
    let run = slipway(&["run", "registry", "--once", "--state", "state"], &work);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let model = work.join("registry/model.yaml");
    let text = std::fs::read_to_string(&model).unwrap().replacen(
        "  primaryMetric:",
        "  soak: {alias: staging, duration: 6s}\n  primaryMetric:",
        1,
    );
    std::fs::write(&model, text).unwrap();
    set_production(&work, "8");
    let aliases = work.join("registry/aliases.yaml");
    let text = std::fs::read_to_string(&aliases).unwrap()
        + "---\napiVersion: slipway.dev/v1alpha1\nkind: ModelAlias\nmetadata: {name: pitch-frames-staging}\nspec: {model: pitch-frames, alias: staging, version: \"8\"}\n";
    std::fs::write(&aliases, text).unwrap();
    let port = support::free_port();
    let listen = format!("127.0.0.1:{port}");
    let args = [
        "run",
        "registry",
        "--state",
        "state",
        "--interval",
        "30s",
        "--listen",
        &listen,
    ];
    let mut child = spawn_slipway(&work, &args);
    let started = std::time::Instant::now();
    let alias = |name: &str| -> Option<serde_json::Value> {
        let (_, body) = get(port, "/api/v1/aliases");
        let rows: Vec<serde_json::Value> = serde_json::from_str(&body).ok()?;
        rows.into_iter()
            .find(|r| r["name"] == name)
            .map(|r| r["status"].clone())
    };
    // Held (first while staging has not moved: the pass that moves it looks again at once),
    // then until the soak's end.
    let held = eventually(Duration::from_secs(20), || {
        let s = alias("pitch-frames-production")?;
        let m = s["conditions"][0]["message"].as_str()?.to_string();
        m.contains(" until ").then_some(m)
    });
    assert!(
        held.contains("held: denied by production/soaked-in-staging until "),
        "{held}"
    );
    // The model's page says why, with what was left and when it ends.
    eventually(Duration::from_secs(10), || {
        let (code, page) = get(port, "/ui/default/pitch-frames");
        (code == 200
            && page.contains("version 8 served in staging for ")
            && page.contains(" of 6s; earliest "))
        .then_some(())
    });
    let moved = eventually(Duration::from_secs(25), || {
        let s = alias("pitch-frames-production")?;
        (s["resolvedVersion"] == "8").then_some(s)
    });
    let staged = alias("pitch-frames-staging").unwrap();
    let at = |s: &serde_json::Value| {
        let h = s["history"].as_array().unwrap();
        let t = h.last().unwrap()["at"].as_str().unwrap().to_string();
        chrono::DateTime::parse_from_rfc3339(&t).unwrap()
    };
    let soaked = at(&moved) - at(&staged);
    assert!(
        soaked >= chrono::Duration::seconds(6) && soaked < chrono::Duration::seconds(12),
        "production moved {soaked:?} after staging"
    );
    assert!(
        started.elapsed() < Duration::from_secs(29),
        "{:?}",
        started.elapsed()
    );
    terminate(&mut child);
}

/// A model's own report templates, files of the registry: the reports of both versions use
/// them, with the suite's history over the versions; a template changed later rewrites the
/// reports without running anything; one that fails gives the default report with its error,
/// and the evaluation and promotion are the same; one that points out of the registry is
/// refused.
#[test]
fn a_team_report_template_shows_the_history_and_a_broken_one_falls_back() {
    let (_dir, work) = quickstart();
    let model = work.join("registry/model.yaml");
    let text = std::fs::read_to_string(&model).unwrap();
    std::fs::write(
        &model,
        text.replace(
            "  primaryMetric:\n",
            "  report: {markdown: reports/team.md.j2, html: reports/team.html.j2}\n  primaryMetric:\n",
        ),
    )
    .unwrap();
    std::fs::create_dir_all(work.join("registry/reports")).unwrap();
    let md_template = "# Team report: {{ model }} {{ version }} ({{ verdict }})\n\
        Run: {{ lineage.source.run }}\n\
        {% for p in history %}\n- {{ p.version }}: {{ p.metrics.macro_f1 | num }}{{ \" (this)\" if p.this }}\n{% endfor %}\n\
        {{ panels.history }}";
    std::fs::write(work.join("registry/reports/team.md.j2"), md_template).unwrap();
    std::fs::write(
        work.join("registry/reports/team.html.j2"),
        "<html><body><h1>{{ model }} {{ version }}</h1>{{ panels.history }}{{ panels.samples }}</body></html>",
    )
    .unwrap();
    let run = slipway(&["run", "registry", "--once", "--state", "state"], &work);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let read = |name: &str| {
        std::fs::read_to_string(work.join("state/reports/default").join(name)).unwrap()
    };
    let md = read("pitch-frames-8-holdout.md");
    assert!(
        md.starts_with("# Team report: pitch-frames 8 (Passed)\nRun: python3 train.py --version 8 --with-night\n"),
        "{md}"
    );
    // 7 finished first (it is 8's baseline), and 8's report shows both.
    assert!(md.contains("- 7: 0.7355\n- 8: 0.8148 (this)\n"), "{md}");
    assert!(md.contains("| **8** | 0.83 | 0.8148 | "), "{md}");
    let html = read("pitch-frames-8-holdout.html");
    assert!(
        html.starts_with("<html><body><h1>pitch-frames 8</h1>"),
        "{html}"
    );
    assert!(
        html.contains("<svg class=\"history\"") && html.contains("<polyline"),
        "{html}"
    );
    assert!(!html.contains("<script"), "{html}");

    // A broken template: the default report with the error; nothing runs again.
    std::fs::write(work.join("registry/reports/team.md.j2"), "{% for %}").unwrap();
    let run = slipway(&["run", "registry", "--once", "--state", "state"], &work);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(!run.stderr.contains("running holdout"), "{}", run.stderr);
    assert!(
        run.stderr.contains("warning: default/pitch-frames-8-holdout: the report template reports/team.md.j2 failed, the default report is written: line 1: syntax error"),
        "{}",
        run.stderr
    );
    let md = read("pitch-frames-8-holdout.md");
    assert!(
        md.starts_with("> ⚠️ **The model's report template failed** (reports/team.md.j2): `"),
        "{md}"
    );
    assert!(md.contains("syntax error"), "{md}");
    assert!(
        md.contains("# pitch-frames 8 vs 7 — holdout: Passed"),
        "{md}"
    );

    // A link out of the registry is not read.
    std::fs::remove_file(work.join("registry/reports/team.md.j2")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", work.join("registry/reports/team.md.j2")).unwrap();
    let run = slipway(&["run", "registry", "--once", "--state", "state"], &work);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let md = read("pitch-frames-8-holdout.md");
    assert!(
        md.contains("reports/team.md.j2 lies outside the registry's folder"),
        "{md}"
    );
}
