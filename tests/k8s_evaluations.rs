//! Evaluations in Kubernetes mode on a real kube-apiserver: a new version gets an Evaluation and
//! a Job per run (the job contract of git mode's local runner); the Job (played by the test, as
//! the kubelet would) leaves its results in its termination-message file; malformed results fail
//! the evaluation at once with the reason, and the `slipway.dev/retry` annotation runs it again as
//! a new round; a baseline whose run finished is not run again; an alias move
//! waits for the evaluation; a Job that keeps failing fails the evaluation with the reason.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::apiserver::ApiServer;
use support::http::post_results;
use support::k8s_mode::{
    claim_job, complete_job, fail_job, finish_job, get, move_alias, wait_for_job,
};
use support::registry::{production, versions};
use support::{eventually, free_port};

/// The model with a holdout suite run by Jobs, version 7, production at 7 (the last document).
fn evaluated() -> String {
    let model = r#"
apiVersion: slipway.dev/v1alpha1
kind: RegisteredModel
metadata: {name: pitch-frames}
spec:
  description: Football frame classifier.
  owners: ["group:ml-leads"]
  evaluations:
    - name: holdout
      runner:
        kubernetes:
          image: registry.example/pitch-frames-eval:1.2
          args: ["--split", "holdout"]
          resources: {limits: {memory: 1Gi}}
          serviceAccountName: evaluator
      dataset: {uri: "s3://datasets/pitch-frames/holdout/", digest: "sha256:1111111111111111111111111111111111111111111111111111111111111111"}
      baseline: {alias: production}
      gates:
        - {metric: f1, op: ">=", value: 0.8}
        - {metric: f1, op: ">=", value: -0.01, relativeTo: baseline}
      timeout: 10m
"#;
    [
        model.to_string(),
        versions("pitch-frames", &["7"], "model.json"),
        production("pitch-frames", "7"),
    ]
    .concat()
}

#[test]
fn new_versions_are_evaluated_by_jobs_that_write_the_results_file() {
    let api = ApiServer::start();
    api.install_crds();
    api.create_service_account("evaluator");
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", &evaluated());
    assert_eq!(run.code, 0, "{}", run.stderr);
    let port = free_port();
    let log = api.dir.path().join("controller.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .envs(support::OPEN_BOUNDS)
        .env("SLIPWAY_MAX_CPU", "2")
        .args(["controller", "--listen", &format!("127.0.0.1:{port}")])
        .env("KUBECONFIG", &api.kubeconfig)
        .env("POD_NAME", "controller-a")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let controller_log = || std::fs::read_to_string(&log).unwrap_or_default();

    // Version 7 gets an Evaluation, a token Secret and a Job that carries everything it needs.
    eventually(Duration::from_secs(60), || {
        (api.kubectl(&["get", "job", "pitch-frames-7-holdout-1"], "admin")
            .code
            == 0)
            .then_some(())
    });
    let job = api.kubectl(
        &["get", "job", "pitch-frames-7-holdout-1", "-o", "json"],
        "admin",
    );
    let job: serde_json::Value = serde_json::from_str(&job.stdout).unwrap();
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "registry.example/pitch-frames-eval:1.2");
    assert_eq!(container["args"], serde_json::json!(["--split", "holdout"]));
    assert_eq!(container["resources"]["limits"]["memory"], "1Gi");
    // The CPU limit it did not write is the operator's bound.
    // (as the API server writes 2000m)
    assert_eq!(container["resources"]["limits"]["cpu"], "2");
    assert_eq!(
        job["spec"]["template"]["spec"]["serviceAccountName"],
        "evaluator"
    );
    assert_eq!(job["spec"]["activeDeadlineSeconds"], 600);
    assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "Evaluation");
    let env: std::collections::BTreeMap<String, serde_json::Value> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e.get("value")
                    .cloned()
                    .unwrap_or_else(|| e["valueFrom"].clone()),
            )
        })
        .collect();
    assert_eq!(
        env["SLIPWAY_MODEL_URI"],
        "s3://models/pitch-frames/7/model.json"
    );
    // The job contract, as in git mode: one model per run, results in a file.
    assert_eq!(env["SLIPWAY_ROLE"], "candidate");
    assert_eq!(env["SLIPWAY_SUITE"], "holdout");
    assert_eq!(env["SLIPWAY_RESULTS"], "/dev/termination-log");
    assert_eq!(container["terminationMessagePath"], "/dev/termination-log");
    assert!(!env.contains_key("SLIPWAY_RESULTS_URL"), "{env:?}");
    assert!(!env.contains_key("SLIPWAY_BASELINE_VERSION"), "{env:?}");
    assert_ne!(
        api.kubectl(
            &["get", "secret", "pitch-frames-7-holdout-results-token"],
            "admin"
        )
        .code,
        0,
        "a Job reports through its results file: no token"
    );
    // Nobody posts a Job's results.
    let good = r#"{"metrics": {"f1": 0.86}, "samples": [{"input": "frame-001.jpg", "expected": "open-play", "prediction": "open-play"}]}"#;
    let posted = format!(r#"{{"candidate": {good}}}"#);
    let (code, body) = post_results(port, "pitch-frames-7-holdout", "guessed", &posted);
    assert_eq!(code, 401, "{body}");

    // The test plays the Job: malformed results fail the evaluation at once, with the reason
    // (the same run would write them again: no second and third attempt of it).
    finish_job(
        &api,
        "pitch-frames-7-holdout-1",
        r#"{"metrics": {"f1": "high"}}"#,
    );
    eventually(Duration::from_secs(60), || {
        (get(
            &api,
            &["meval", "pitch-frames-7-holdout"],
            "{.status.phase} {.status.attempts}",
        ) == "Failed 1")
            .then_some(())
    });
    let message = get(
        &api,
        &["meval", "pitch-frames-7-holdout"],
        "{.status.conditions[0].message}",
    );
    assert!(
        message.contains("line 1") && message.contains("f1") && message.contains("not retried"),
        "{message}"
    );
    // Fixed, the operator asks for a new run: a new round, whose Job is a new one.
    let run = api.kubectl(
        &[
            "annotate",
            "meval",
            "pitch-frames-7-holdout",
            "slipway.dev/retry=",
        ],
        "admin",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    wait_for_job(&api, "pitch-frames-7-holdout-1x1");
    eventually(Duration::from_secs(30), || {
        (get(
            &api,
            &["meval", "pitch-frames-7-holdout"],
            r"{.status.round} {.status.attempts} [{.metadata.annotations.slipway\.dev/retry}]",
        ) == "1 1 []")
            .then_some(())
    });
    let events = get(
        &api,
        &[
            "events",
            "--field-selector",
            "involvedObject.name=pitch-frames-7-holdout,reason=RetryRequested",
        ],
        "{.items[*].message}",
    );
    assert!(events.contains("round 1"), "{events}");
    finish_job(&api, "pitch-frames-7-holdout-1x1", good);
    eventually(Duration::from_secs(60), || {
        (get(
            &api,
            &["meval", "pitch-frames-7-holdout"],
            "{.status.phase} {.status.verdict} {.status.metrics.f1}",
        ) == "Succeeded Passed 0.86")
            .then_some(())
    });
    assert_eq!(
        get(
            &api,
            &["meval", "pitch-frames-7-holdout"],
            "{.status.samples[0].candidate}"
        ),
        "open-play",
        "{}",
        controller_log()
    );
    // With its evaluation passed, production resolves to 7.
    eventually(Duration::from_secs(60), || {
        (get(
            &api,
            &["malias", "pitch-frames-production"],
            "{.status.resolvedVersion}",
        ) == "7")
            .then_some(())
    });
    // The suite's gate raised: the Evaluation follows the suite, and the same results are
    // judged again (no Job runs); lowered back, they pass again.
    let strict = evaluated().replace(
        r#"- {metric: f1, op: ">=", value: 0.8}"#,
        r#"- {metric: f1, op: ">=", value: 0.9}"#,
    );
    assert_ne!(strict, evaluated());
    for (registry, verdict) in [(strict, "Failed"), (evaluated(), "Passed")] {
        let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", &registry);
        assert_eq!(run.code, 0, "{}", run.stderr);
        eventually(Duration::from_secs(60), || {
            (get(
                &api,
                &["meval", "pitch-frames-7-holdout"],
                "{.status.phase} {.status.verdict} {.status.metrics.f1}",
            ) == format!("Succeeded {verdict} 0.86"))
            .then_some(())
        });
        let message = get(
            &api,
            &["meval", "pitch-frames-7-holdout"],
            "{.status.conditions[0].message}",
        );
        assert!(message.contains("judged again"), "{message}");
    }
    assert_ne!(
        api.kubectl(&["get", "job", "pitch-frames-7-holdout-2x1"], "admin")
            .code,
        0,
        "a changed gate ran the evaluation again"
    );

    // Version 8 is compared with production (7), whose run on this suite finished as version
    // 7's candidate: only version 8 runs, and 7's results are its baseline.
    let v8 = "apiVersion: slipway.dev/v1alpha1\nkind: ModelVersion\nmetadata: {name: pitch-frames-8}\nspec: {model: pitch-frames, version: \"8\", artifact: {uri: \"s3://models/pitch-frames/8/model.json\", digest: \"sha256:0000000000000000000000000000000000000000000000000000000000000008\"}}\n";
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", v8);
    assert_eq!(run.code, 0, "{}", run.stderr);
    eventually(Duration::from_secs(60), || {
        (get(
            &api,
            &["meval", "pitch-frames-8-holdout"],
            "{.status.phase}",
        ) == "Running")
            .then_some(())
    });
    assert_eq!(
        get(
            &api,
            &["meval", "pitch-frames-8-holdout"],
            "{.spec.baseline.version}"
        ),
        "7"
    );
    wait_for_job(&api, "pitch-frames-8-holdout-1");
    assert_ne!(
        api.kubectl(
            &["get", "job", "pitch-frames-8-holdout-1-baseline"],
            "admin"
        )
        .code,
        0,
        "the baseline's run is not repeated"
    );
    // Moving production to 8 while its evaluation runs: the move waits, and production keeps
    // resolving to 7 meanwhile.
    move_alias(&api, "8");
    eventually(Duration::from_secs(30), || {
        (get(
            &api,
            &["malias", "pitch-frames-production"],
            "{.status.conditions[0].reason}",
        ) == "WaitingForEvaluations")
            .then_some(())
    });
    assert_eq!(
        get(
            &api,
            &["malias", "pitch-frames-production"],
            "{.status.resolvedVersion}"
        ),
        "7"
    );
    // f1 0.80 vs 0.86: the relative gate fails, and says by how much.
    finish_job(
        &api,
        "pitch-frames-8-holdout-1",
        r#"{"metrics": {"f1": 0.80}}"#,
    );
    eventually(Duration::from_secs(60), || {
        (get(
            &api,
            &["meval", "pitch-frames-8-holdout"],
            "{.status.verdict} {.status.baselineMetrics.f1}",
        ) == "Failed 0.86")
            .then_some(())
    });
    let message = get(
        &api,
        &["meval", "pitch-frames-8-holdout"],
        "{.status.conditions[0].message}",
    );
    assert!(message.contains("f1"), "{message}");
    // Finished (no policy here asks for a pass): the move resolves, with both moves in history.
    eventually(Duration::from_secs(30), || {
        (get(
            &api,
            &["malias", "pitch-frames-production"],
            "{.status.resolvedVersion} {.status.previousVersion}",
        ) == "8 7")
            .then_some(())
    });

    // Version 9's Job fails three times: the evaluation fails, with the reason.
    let v9 = v8
        .replace("pitch-frames-8", "pitch-frames-9")
        .replace("\"8\"", "\"9\"")
        .replace("/8/", "/9/")
        .replace("0008\"", "0009\"");
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", &v9);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for attempt in 1..=3 {
        let job = format!("pitch-frames-9-holdout-{attempt}");
        eventually(Duration::from_secs(60), || {
            (api.kubectl(&["get", "job", &job], "admin").code == 0).then_some(())
        });
        fail_job(&api, &job, 2);
    }
    eventually(Duration::from_secs(60), || {
        (get(
            &api,
            &["meval", "pitch-frames-9-holdout"],
            "{.status.phase}",
        ) == "Failed")
            .then_some(())
    });
    assert_eq!(
        get(
            &api,
            &["meval", "pitch-frames-9-holdout"],
            "{.status.attempts}"
        ),
        "3"
    );
    let message = get(
        &api,
        &["meval", "pitch-frames-9-holdout"],
        "{.status.conditions[0].message}",
    );
    assert!(
        message.contains(
            "evaluation failed after 3 attempt(s): the candidate run: BackoffLimitExceeded"
        ) && message.contains(
            "pod pitch-frames-9-holdout-3-pod: terminated, Error (Traceback (most recent call last): FileNotFoundError: holdout.csv), exit code 2"
        ),
        "{message}"
    );
    assert_ne!(
        api.kubectl(&["get", "job", "pitch-frames-9-holdout-4"], "admin")
            .code,
        0
    );
    // Each attempt's start is an event of its own that says which attempt (issue 20: kube's
    // recorder counted attempt 2 as "(x2) … attempt 1 of 3").
    eventually(Duration::from_secs(30), || {
        let started = get(
            &api,
            &[
                "events",
                "--field-selector",
                "involvedObject.name=pitch-frames-9-holdout,reason=JobStarted",
            ],
            "{range .items[*]}{.message}{\"\\n\"}{end}",
        );
        let mut lines: Vec<&str> = started.lines().collect();
        lines.sort();
        (lines.len() == 3 && (1..=3).all(|n| lines[n - 1].contains(&format!("(attempt {n} of 3)"))))
            .then_some(())
    });
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_baseline_that_never_ran_the_suite_gets_a_job_of_its_own() {
    let api = ApiServer::start();
    api.install_crds();
    api.create_service_account("evaluator");
    // Production is version 7 before the model has a suite.
    let registry = evaluated();
    let (model, rest) = registry.split_once("  evaluations:").unwrap();
    let (suite, rest) = rest.split_once("---").unwrap();
    let v8 = versions("pitch-frames", &["8"], "model.json");
    let before = format!("{model}---{rest}{v8}");
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", &before);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let _controller = support::k8s_mode::Controller::start(&api, "controller-a");
    eventually(Duration::from_secs(60), || {
        (get(
            &api,
            &["malias", "pitch-frames-production"],
            "{.status.resolvedVersion}",
        ) == "7")
            .then_some(())
    });

    // The team adds the suite: version 8 is compared with 7, which never ran it.
    let with_suite = format!("{model}  evaluations:{suite}");
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", &with_suite);
    assert_eq!(run.code, 0, "{}", run.stderr);
    eventually(Duration::from_secs(60), || {
        (api.kubectl(
            &["get", "job", "pitch-frames-8-holdout-1-baseline"],
            "admin",
        )
        .code
            == 0)
            .then_some(())
    });
    let baseline = wait_for_job(&api, "pitch-frames-8-holdout-1-baseline");
    // An Evaluation someone made of the suite as declared, its baseline named by the alias: the
    // alias is resolved (7), not dropped — its baseline runs too.
    let mine = format!(
        "apiVersion: slipway.dev/v1alpha1\nkind: Evaluation\nmetadata: {{name: mine-8}}\nspec:\n  model: pitch-frames\n  version: \"8\"\n  suite: holdout\n{}",
        suite
            .lines()
            .skip_while(|l| !l.trim_start().starts_with("runner:"))
            .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
            .collect::<String>()
    );
    let run = api.kubectl_stdin(&["create", "-f", "-"], "admin", &mine);
    assert_eq!(run.code, 0, "{}\n{mine}", run.stderr);
    let theirs = wait_for_job(&api, "mine-8-1-baseline");
    assert!(
        theirs
            .to_string()
            .contains("s3://models/pitch-frames/7/model.json"),
        "{theirs}"
    );
    let env = &baseline["spec"]["template"]["spec"]["containers"][0]["env"];
    let value = |name: &str| {
        env.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].as_str().unwrap().to_string())
    };
    assert_eq!(value("SLIPWAY_ROLE").as_deref(), Some("baseline"));
    assert_eq!(value("SLIPWAY_MODEL_VERSION").as_deref(), Some("7"));
    assert_eq!(
        value("SLIPWAY_MODEL_URI").as_deref(),
        Some("s3://models/pitch-frames/7/model.json")
    );
    assert_eq!(
        baseline["metadata"]["labels"]["slipway.dev/role"],
        "baseline"
    );

    // The baseline's run finishes first: the evaluation waits for the candidate's.
    finish_job(
        &api,
        "pitch-frames-8-holdout-1-baseline",
        r#"{"metrics": {"f1": 0.9}}"#,
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        get(
            &api,
            &["meval", "pitch-frames-8-holdout"],
            "{.status.phase}"
        ),
        "Running"
    );
    finish_job(
        &api,
        "pitch-frames-8-holdout-1",
        r#"{"metrics": {"f1": 0.85}}"#,
    );
    eventually(Duration::from_secs(60), || {
        (get(
            &api,
            &["meval", "pitch-frames-8-holdout"],
            "{.status.verdict} {.status.metrics.f1} {.status.baselineMetrics.f1}",
        ) == "Failed 0.85 0.9")
            .then_some(())
    });
}

#[test]
fn jobs_and_pods_slipway_did_not_make_report_nothing() {
    let api = ApiServer::start();
    api.install_crds();
    api.create_service_account("evaluator");
    let registry = evaluated();
    let without_alias = registry.rsplit_once("---").unwrap().0;
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", without_alias);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // Someone makes the Job of attempt 1 before Slipway does.
    let planted = r#"{"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pitch-frames-7-holdout-1"},
      "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "evaluate", "image": "busybox",
      "command": ["sh", "-c", "echo '{\"metrics\": {\"f1\": 1}}' > /dev/termination-log"]}]}}}}"#;
    let run = api.kubectl_stdin(&["create", "-f", "-"], "admin", planted);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let controller = support::k8s_mode::Controller::start(&api, "controller-a");
    let message = |n: &str| {
        get(
            &api,
            &[
                "events",
                "--field-selector",
                "involvedObject.name=pitch-frames-7-holdout,reason=Retrying",
            ],
            "{.items[*].message}",
        )
        .contains(n)
    };
    // Attempt 1 fails: the Job is not Slipway's to run in.
    eventually(Duration::from_secs(60), || {
        message("already exists").then_some(())
    });

    // Attempt 2's Job is Slipway's; a second pod claims it besides the Job's own.

    claim_job(
        &api,
        "pitch-frames-7-holdout-2",
        "job-own-pod",
        r#"{"metrics": {"f1": 0.5}}"#,
        |_| {},
    );
    claim_job(
        &api,
        "pitch-frames-7-holdout-2",
        "a-forged-pod",
        r#"{"metrics": {"f1": 0.99}}"#,
        |_| {},
    );
    complete_job(&api, "pitch-frames-7-holdout-2");
    // Attempt 2 took neither pod's results: attempt 3 runs (events of one reason keep their
    // first words, so the attempt's reason is read from the controller's log).
    wait_for_job(&api, "pitch-frames-7-holdout-3");
    assert!(
        controller
            .log()
            .contains("2 pods claim Job pitch-frames-7-holdout-2"),
        "{}",
        controller.log()
    );

    // A token Secret planted for the evaluation (not the evaluation's own) opens nothing: its
    // token is not taken for the evaluation's.
    let secret = r#"{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pitch-frames-7-holdout-results-token"},
      "stringData": {"token": "planted-token-0123456789"}}"#;
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", secret);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (code, body) = post_results(
        controller.port,
        "pitch-frames-7-holdout",
        "planted-token-0123456789",
        r#"{"candidate": {"metrics": {"f1": 0.99}}}"#,
    );
    assert_eq!(code, 401, "{body}");

    // Attempt 3's one pod runs something else than the Job's template.
    claim_job(
        &api,
        "pitch-frames-7-holdout-3",
        "a-different-pod",
        r#"{"metrics": {"f1": 0.99}}"#,
        |spec| spec["containers"][0]["command"] = serde_json::json!(["sh", "-c", "true"]),
    );
    complete_job(&api, "pitch-frames-7-holdout-3");
    eventually(Duration::from_secs(60), || {
        (get(
            &api,
            &["meval", "pitch-frames-7-holdout"],
            "{.status.phase}",
        ) == "Failed")
            .then_some(())
    });
    let why = get(
        &api,
        &["meval", "pitch-frames-7-holdout"],
        "{.status.conditions[0].message}",
    );
    assert!(
        why.contains("does not run what the Job's template says"),
        "{why}"
    );
    assert_eq!(
        get(
            &api,
            &["meval", "pitch-frames-7-holdout"],
            "{.status.metrics}"
        ),
        "",
        "no results were taken: {}",
        controller.log()
    );
}

#[test]
fn an_evaluation_whose_service_account_is_missing_fails_at_once_and_says_how_to_fix_it() {
    let api = ApiServer::start();
    api.install_crds();
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", &evaluated());
    assert_eq!(run.code, 0, "{}", run.stderr);
    let port = free_port();
    let log = api.dir.path().join("controller.log");
    // The bounds name the account the suite runs as; it does not exist yet.
    let mut child = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .envs(support::OPEN_BOUNDS)
        .env("SLIPWAY_ALLOWED_SERVICE_ACCOUNTS", "evaluator")
        .args(["controller", "--listen", &format!("127.0.0.1:{port}")])
        .env("KUBECONFIG", &api.kubeconfig)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let said = eventually(Duration::from_secs(30), || {
        let (code, body) = support::git_mode::get(port, "/readyz");
        (code == 200).then_some(body)
    });
    assert!(
        said.contains(
            "--allowed-service-accounts names evaluator, which does not exist in any namespace"
        ),
        "{said}"
    );
    // Its evaluation fails at once, without a Job, saying what to do.
    eventually(Duration::from_secs(60), || {
        (get(
            &api,
            &["meval", "pitch-frames-7-holdout"],
            "{.status.phase}",
        ) == "Failed")
            .then_some(())
    });
    let message = get(
        &api,
        &["meval", "pitch-frames-7-holdout"],
        "{.status.conditions[0].message}",
    );
    assert!(
        message.contains("service account evaluator does not exist in namespace default")
            && message.contains("kubectl -n default create serviceaccount evaluator")
            && message.contains("annotate meval pitch-frames-7-holdout slipway.dev/retry="),
        "{message}"
    );
    assert_eq!(
        api.kubectl(&["get", "jobs", "-o", "name"], "admin").stdout,
        ""
    );
    // Created, and retried as the message says: its Job starts.
    api.create_service_account("evaluator");
    let run = api.kubectl(
        &[
            "annotate",
            "meval",
            "pitch-frames-7-holdout",
            "slipway.dev/retry=",
        ],
        "admin",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    wait_for_job(&api, "pitch-frames-7-holdout-1x1");
    let _ = child.kill();
    let _ = child.wait();
}

/// A thousand evaluations of versions that are not registered tie nothing up: each is looked at
/// less and less often, a real evaluation elsewhere still starts at once, and a version's
/// registration wakes the evaluation that waited for it.
#[test]
fn evaluations_of_versions_that_do_not_exist_tie_nothing_up() {
    let api = ApiServer::start();
    api.install_crds();
    api.create_service_account("evaluator");
    let waiting: String = (0..1000)
        .map(|i| {
            format!(
                "---\napiVersion: slipway.dev/v1alpha1\nkind: Evaluation\nmetadata: {{name: waiting-{i}}}\nspec:\n  model: pitch-frames\n  version: \"{}\"\n  suite: holdout\n  runner: {{kubernetes: {{image: registry.example/pitch-frames-eval:1.2, serviceAccountName: evaluator}}}}\n  dataset: {{uri: \"s3://datasets/pitch-frames/holdout/\"}}\n  gates: [{{metric: f1, op: \">=\", value: 0.8}}]\n",
                5000 + i
            )
        })
        .collect();
    let run = api.kubectl_stdin(&["create", "-f", "-"], "admin", &waiting);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let controller = support::k8s_mode::Controller::start(&api, "controller-a");
    // Let them settle into their backoff.
    std::thread::sleep(Duration::from_secs(10));

    // A real model elsewhere: its evaluation's Job starts within seconds.
    let started = std::time::Instant::now();
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", &evaluated());
    assert_eq!(run.code, 0, "{}", run.stderr);
    wait_for_job(&api, "pitch-frames-7-holdout-1");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the real evaluation waited {:?}",
        started.elapsed()
    );
    // Registering the version one of them waits for wakes it at once (its backoff is long by now).
    let run = api.kubectl_stdin(
        &["apply", "-f", "-"],
        "admin",
        &versions("pitch-frames", &["5005"], "model.json"),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let woken = std::time::Instant::now();
    wait_for_job(&api, "waiting-5-1");
    assert!(
        woken.elapsed() < Duration::from_secs(20),
        "{:?}",
        woken.elapsed()
    );
    // Each waiting one was looked at a handful of times, not once a second.
    let metrics = controller.metrics();
    let looks: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("slipway_reconciles_total{controller=\"evaluations\"} "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(f64::MAX);
    assert!(
        looks < 8000.0,
        "{looks} looks at 1,000 waiting evaluations\n{metrics}"
    );
}

/// The messages of the events with `reason` on object `name`, once there are some.
fn said(api: &ApiServer, name: &str, reason: &str) -> String {
    eventually(Duration::from_secs(60), || {
        let said = get(
            api,
            &[
                "events",
                "--field-selector",
                &format!("involvedObject.name={name},reason={reason}"),
            ],
            "{.items[*].message}",
        );
        (!said.is_empty()).then_some(said)
    })
}

/// Issue 21 §4: a result counts for a move only if it was compared against what its suite's
/// baseline resolves to now. Version 9 was compared against 7; production serves 8 when it is
/// asked to move to 9: the controller compares 9's evaluation again against 8 (its spec pinned
/// there, a new round whose candidate Job runs again, 8's run reused), and the move waits for
/// it. An `Evaluation` someone made under the name the controller would give a version's suite
/// is not taken over when the version registers.
#[test]
fn a_move_waits_for_its_candidate_compared_again_against_what_production_serves_now() {
    let api = ApiServer::start();
    api.install_crds();
    api.create_service_account("evaluator");
    let registry = evaluated().replace(
        &versions("pitch-frames", &["7"], "model.json"),
        &versions("pitch-frames", &["7", "8", "9"], "model.json"),
    );
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", &registry);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let _controller = support::k8s_mode::Controller::start(&api, "controller-a");
    let resolved = |v: &str| {
        eventually(Duration::from_secs(60), || {
            (get(
                &api,
                &["malias", "pitch-frames-production"],
                "{.status.resolvedVersion}",
            ) == v)
                .then_some(())
        })
    };
    let evaluation = |v: &str| {
        get(
            &api,
            &["meval", &format!("pitch-frames-{v}-holdout")],
            "{.status.phase} {.status.baselineVersion} {.spec.baseline.version}",
        )
    };
    finish_job(
        &api,
        "pitch-frames-7-holdout-1",
        r#"{"metrics": {"f1": 0.85}}"#,
    );
    resolved("7");
    finish_job(
        &api,
        "pitch-frames-8-holdout-1",
        r#"{"metrics": {"f1": 0.86}}"#,
    );
    finish_job(
        &api,
        "pitch-frames-9-holdout-1",
        r#"{"metrics": {"f1": 0.87}}"#,
    );
    for v in ["8", "9"] {
        eventually(Duration::from_secs(60), || {
            (evaluation(v) == "Succeeded 7 7").then_some(())
        });
    }
    move_alias(&api, "8");
    resolved("8");

    // 9's result was compared against 7: compared again, against 8.
    move_alias(&api, "9");
    eventually(Duration::from_secs(60), || {
        get(
            &api,
            &["malias", "pitch-frames-production"],
            "{.status.conditions[0].message}",
        )
        .contains("waiting for evaluation holdout")
        .then_some(())
    });
    let events = said(&api, "pitch-frames-9-holdout", "BaselineMoved");
    assert!(
        events.contains("compared again, against version 8")
            && events.contains("compared against version 7"),
        "{events}"
    );
    wait_for_job(&api, "pitch-frames-9-holdout-1x1");
    assert_ne!(
        api.kubectl(
            &["get", "job", "pitch-frames-9-holdout-1x1-baseline"],
            "admin"
        )
        .code,
        0,
        "8's run was stored: it is not run again"
    );
    assert_eq!(
        get(
            &api,
            &["malias", "pitch-frames-production"],
            "{.status.resolvedVersion}"
        ),
        "8"
    );
    finish_job(
        &api,
        "pitch-frames-9-holdout-1x1",
        r#"{"metrics": {"f1": 0.87}}"#,
    );
    eventually(Duration::from_secs(60), || {
        (evaluation("9") == "Succeeded 8 8").then_some(())
    });
    resolved("9");

    // Someone makes an Evaluation under the name the controller gives version 10's suite,
    // before 10 registers: it is not taken over, and the version says so.
    let suite = registry
        .split_once("    - name: holdout\n")
        .unwrap()
        .1
        .split_once("---")
        .unwrap()
        .0
        .lines()
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect::<String>();
    let theirs = format!(
        "apiVersion: slipway.dev/v1alpha1\nkind: Evaluation\nmetadata: {{name: pitch-frames-10-holdout}}\nspec:\n  model: pitch-frames\n  version: \"10\"\n  suite: holdout\n{suite}"
    );
    let run = api.kubectl_stdin(&["create", "-f", "-"], "admin", &theirs);
    assert_eq!(run.code, 0, "{}\n{theirs}", run.stderr);
    let run = api.kubectl_stdin(
        &["apply", "-f", "-"],
        "admin",
        &versions("pitch-frames", &["10"], "model.json"),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let said = said(&api, "pitch-frames-10", "Stalled");
    assert!(
        said.contains("Evaluation pitch-frames-10-holdout exists and is not Slipway's own"),
        "{said}"
    );
    assert_eq!(
        get(
            &api,
            &["meval", "pitch-frames-10-holdout"],
            "{.metadata.ownerReferences}"
        ),
        ""
    );
}
