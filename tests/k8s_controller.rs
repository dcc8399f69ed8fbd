//! The Kubernetes-mode controllers on a real kube-apiserver: aliases resolve, per-version
//! Deployments roll out step by step (the test plays the kubelet), a failing candidate is rolled
//! back, a killed controller resumes, an API-server restart is survived, and of two replicas
//! only the Lease holder acts.

mod support;

use support::free_port;
use support::http::{self, post_results};

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::apiserver::ApiServer;
use support::eventually;
use support::kubelet::Kubelet;

const REGISTRY: &str = r#"
apiVersion: slipway.dev/v1alpha1
kind: RegisteredModel
metadata: {name: pitch-frames}
spec:
  description: Football frame classifier.
  owners: ["group:ml-leads"]
---
apiVersion: slipway.dev/v1alpha1
kind: ModelVersion
metadata: {name: pitch-frames-7}
spec: {model: pitch-frames, version: "7", artifact: {uri: "s3://models/pitch-frames/7/model.json", digest: "sha256:0000000000000000000000000000000000000000000000000000000000000007"}}
---
apiVersion: slipway.dev/v1alpha1
kind: ModelVersion
metadata: {name: pitch-frames-8}
spec: {model: pitch-frames, version: "8", artifact: {uri: "s3://models/pitch-frames/8/model.json", digest: "sha256:0000000000000000000000000000000000000000000000000000000000000008"}}
---
apiVersion: slipway.dev/v1alpha1
kind: ModelVersion
metadata: {name: pitch-frames-9}
spec: {model: pitch-frames, version: "9", artifact: {uri: "s3://models/pitch-frames/9/model.json", digest: "sha256:0000000000000000000000000000000000000000000000000000000000000009"}}
---
apiVersion: slipway.dev/v1alpha1
kind: ModelAlias
metadata: {name: pitch-frames-production}
spec: {model: pitch-frames, alias: production, version: "7"}
---
apiVersion: slipway.dev/v1alpha1
kind: ModelDeployment
metadata: {name: pitch-frames-api}
spec:
  model: pitch-frames
  alias: production
  target:
    kubernetes: {image: "registry.example/pitch-frames-server:1.4", replicas: 4, port: 8080}
  strategy:
    type: Canary
    steps:
      - {weight: 25, pause: 2s}
      - {weight: 50, pause: 2s}
    autoRollback: true
"#;

/// A `slipway controller` process (no webhook); killed on drop.
struct Controller {
    child: Child,
    log: std::path::PathBuf,
    port: u16,
}

impl Controller {
    fn start(api: &ApiServer, name: &str) -> Controller {
        let log = api.dir.path().join(format!("{name}.log"));
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_slipway"))
            .envs(support::OPEN_BOUNDS)
            .args(["controller", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .env("KUBECONFIG", &api.kubeconfig)
            .env("POD_NAME", name)
            .env("SLIPWAY_LOG", "info,kube=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Controller { child, log, port }
    }

    fn metrics(&self) -> String {
        http::request(
            "GET",
            &format!("http://127.0.0.1:{}/metrics", self.port),
            &[],
            "",
        )
        .1
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill();
    }
}

fn get(api: &ApiServer, what: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    let jsonpath = format!("jsonpath={path}");
    args.extend(["-o", &jsonpath]);
    api.kubectl(&args, "admin").stdout
}

fn move_alias(api: &ApiServer, version: &str) {
    let patch = format!(r#"{{"spec":{{"version":"{version}"}}}}"#);
    let run = api.kubectl(
        &[
            "patch",
            "malias",
            "pitch-frames-production",
            "--type=merge",
            "-p",
            &patch,
        ],
        "admin",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// The deployment's rollout history as "Event {traffic}" lines.
fn rollout_history(api: &ApiServer) -> Vec<String> {
    let out = api.kubectl(
        &["get", "mdeploy", "pitch-frames-api", "-o", "json"],
        "admin",
    );
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    v["status"]["history"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| format!("{} {}", h["event"].as_str().unwrap_or("?"), h["traffic"]))
        .collect()
}

/// `eventually`, with the controller's log and the rollout history when it times out.
fn until<T>(
    api: &ApiServer,
    controller: &Controller,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "condition not met within {timeout:?}\n{}\nhistory: {:?}\nalias: {}\ndeployments: {}",
                controller.log(),
                rollout_history(api),
                api.kubectl(&["get", "malias", "-o", "yaml"], "admin")
                    .stdout,
                api.kubectl(&["get", "deploy", "-o", "wide"], "admin")
                    .stdout
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn setup() -> (ApiServer, Kubelet) {
    let api = ApiServer::start();
    api.install_crds();
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", REGISTRY);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let kubelet = Kubelet::start(&api.kubeconfig, "default");
    (api, kubelet)
}

fn wait_serving(api: &ApiServer, controller: &Controller, version: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let out = get(
            api,
            &["mdeploy", "pitch-frames-api"],
            "{.status.phase} {.status.servingVersion} {.status.targetVersion}",
        );
        if out == format!("Healthy {version} ") {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not serving {version}: {out}\n{}\n{:?}",
            controller.log(),
            rollout_history(api)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_alias_move_rolls_out_step_by_step_and_a_failing_candidate_is_rolled_back() {
    let (api, kubelet) = setup();
    let controller = Controller::start(&api, "controller-a");
    // The alias resolves; the first version goes out at once; one Service fronts all versions.
    until(&api, &controller, Duration::from_secs(60), || {
        (get(
            &api,
            &["malias", "pitch-frames-production"],
            "{.status.resolvedVersion}",
        ) == "7")
            .then_some(())
    });
    wait_serving(&api, &controller, "7");
    assert_eq!(
        get(&api, &["deploy", "pitch-frames-api-v7"], "{.spec.replicas}"),
        "4"
    );
    assert_eq!(
        get(
            &api,
            &["deploy", "pitch-frames-api-v7"],
            "{.spec.template.spec.containers[0].env[?(@.name==\"MODEL_URI\")].value}"
        ),
        "s3://models/pitch-frames/7/model.json"
    );
    assert_eq!(
        get(&api, &["svc", "pitch-frames-api"], "{.spec.selector}"),
        r#"{"slipway.dev/deployment":"pitch-frames-api"}"#
    );
    assert_eq!(
        get(
            &api,
            &["deploy", "pitch-frames-api-v7"],
            "{.metadata.ownerReferences[0].kind}"
        ),
        "ModelDeployment"
    );

    // 7 → 8: 25% (1 of 4 replicas), 50% (2 of 4), then all; 7's Deployment is collected.
    move_alias(&api, "8");
    wait_serving(&api, &controller, "8");
    let history = rollout_history(&api);
    let steps: Vec<&String> = history
        .iter()
        .filter(|h| !h.starts_with("RolloutStarted"))
        .collect();
    assert_eq!(
        steps[1..],
        [
            r#"StepStarted {"7":75,"8":25}"#,
            r#"StepStarted {"7":50,"8":50}"#,
            r#"StepStarted {"8":100}"#,
            r#"RolloutSucceeded {"8":100}"#,
        ],
        "{history:?}"
    );
    until(&api, &controller, Duration::from_secs(20), || {
        (api.kubectl(&["get", "deploy", "pitch-frames-api-v7"], "admin")
            .code
            != 0)
            .then_some(())
    });
    assert_eq!(
        get(&api, &["deploy", "pitch-frames-api-v8"], "{.spec.replicas}"),
        "4"
    );

    // 8 → 9, and 9 never becomes available: rolled back to 8, 9 rejected, a Warning event.
    kubelet.failing.lock().unwrap().insert("9".into());
    move_alias(&api, "9");
    until(&api, &controller, Duration::from_secs(60), || {
        (get(&api, &["mdeploy", "pitch-frames-api"], "{.status.phase}") == "RolledBack")
            .then_some(())
    });
    let rejected = |api: &ApiServer| {
        get(
            api,
            &["mdeploy", "pitch-frames-api"],
            "{.status.rejectedVersions}",
        )
    };
    assert_eq!(rejected(&api), r#"["9"]"#);
    assert_eq!(
        get(&api, &["mdeploy", "pitch-frames-api"], "{.status.traffic}"),
        r#"{"8":100}"#
    );
    let history = rollout_history(&api);
    assert!(
        history
            .last()
            .unwrap()
            .starts_with(r#"RolledBack {"8":100}"#),
        "{history:?}"
    );
    until(&api, &controller, Duration::from_secs(20), || {
        (api.kubectl(&["get", "deploy", "pitch-frames-api-v9"], "admin")
            .code
            != 0)
            .then_some(())
    });
    let events = api.kubectl(
        &[
            "get",
            "events",
            "--field-selector",
            "reason=RolledBack",
            "-o",
            "jsonpath={.items[*].type}",
        ],
        "admin",
    );
    assert!(
        events.stdout.contains("Warning"),
        "{}{}",
        events.stdout,
        events.stderr
    );

    // A retry of a version that is not rejected is refused with a Warning event; either way the
    // controller removes the annotation.
    let annotate = |value: &str| {
        let run = api.kubectl(
            &[
                "annotate",
                "--overwrite",
                "mdeploy",
                "pitch-frames-api",
                &format!("slipway.dev/retry={value}"),
            ],
            "admin",
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
    };
    let annotation = |api: &ApiServer| {
        get(
            api,
            &["mdeploy", "pitch-frames-api"],
            "{.metadata.annotations.slipway\\.dev/retry}",
        )
    };
    annotate("7");
    until(&api, &controller, Duration::from_secs(20), || {
        annotation(&api).is_empty().then_some(())
    });
    let refused = api.kubectl(
        &[
            "get",
            "events",
            "--field-selector",
            "reason=NothingToRetry",
            "-o",
            "jsonpath={.items[*].type} {.items[*].message}",
        ],
        "admin",
    );
    assert_eq!(
        refused.stdout,
        "Warning default/pitch-frames-api has versions 9 rejected; nothing to retry for version 7"
    );
    assert_eq!(rejected(&api), r#"["9"]"#);
    let metrics = controller.metrics();
    assert!(metrics.contains("slipway_controller_leader 1"), "{metrics}");
    assert!(
        metrics.contains("slipway_controller_reconciles_total{controller=\"deployments\"}"),
        "{metrics}"
    );
    let promotions: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("slipway_controller_promotion_latency_seconds_count "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(promotions >= 2, "{metrics}");
    drop(controller);
}

#[test]
fn a_killed_controller_resumes_the_rollout_where_it_was() {
    let (api, _kubelet) = setup();
    let mut first = Controller::start(&api, "controller-a");
    wait_serving(&api, &first, "7");
    move_alias(&api, "8");
    // Kill it as soon as the first canary step is recorded.
    eventually(Duration::from_secs(60), || {
        rollout_history(&api)
            .iter()
            .any(|h| h.starts_with("StepStarted"))
            .then_some(())
    });
    first.kill();
    // A new process takes the lease once the old one's expires, and carries on from the step
    // it was at: one RolloutStarted for 8, no step repeated.
    let second = Controller::start(&api, "controller-b");
    wait_serving(&api, &second, "8");
    let history = rollout_history(&api);
    let started = history
        .iter()
        .filter(|h| h.starts_with("RolloutStarted"))
        .count();
    assert_eq!(started, 2, "{history:?}"); // 7, then 8
    let steps: Vec<&String> = history
        .iter()
        .filter(|h| h.starts_with("StepStarted"))
        .collect();
    let unique: std::collections::BTreeSet<&&String> = steps.iter().collect();
    assert_eq!(
        steps.len(),
        unique.len(),
        "a step was repeated: {history:?}"
    );
}

#[test]
fn the_controller_survives_an_api_server_restart() {
    let (mut api, _kubelet) = setup();
    let controller = Controller::start(&api, "controller-a");
    wait_serving(&api, &controller, "7");
    api.restart_apiserver(Duration::from_secs(2));
    move_alias(&api, "8");
    wait_serving(&api, &controller, "8");
}

#[test]
fn of_two_replicas_only_the_lease_holder_acts() {
    let (api, _kubelet) = setup();
    let mut replicas = [
        Controller::start(&api, "controller-a"),
        Controller::start(&api, "controller-b"),
    ];
    wait_serving(&api, &replicas[0], "7");
    let holder = get(
        &api,
        &["lease", "slipway-controller"],
        "{.spec.holderIdentity}",
    );
    let leader = match holder.as_str() {
        "controller-a" => 0,
        "controller-b" => 1,
        other => panic!("lease held by {other:?}"),
    };
    let follower = 1 - leader;
    assert!(
        replicas[leader].log().contains("acquired leadership"),
        "{}",
        replicas[leader].log()
    );
    assert!(
        !replicas[follower].log().contains("acquired leadership"),
        "{}",
        replicas[follower].log()
    );
    // Events name the acting replica: only the leader ever wrote one.
    let reporters = api.kubectl(
        &[
            "get",
            "events.events.k8s.io",
            "-o",
            "jsonpath={.items[*].reportingInstance}",
        ],
        "admin",
    );
    assert!(
        !reporters.stdout.is_empty(),
        "no events: {}",
        reporters.stderr
    );
    assert!(
        reporters.stdout.split_whitespace().all(|r| r == holder),
        "{}",
        reporters.stdout
    );
    // The leader stops on SIGTERM and releases the lease; the other takes over without waiting
    // for it to expire, and acts.
    replicas[leader].terminate();
    let other = if leader == 0 {
        "controller-b"
    } else {
        "controller-a"
    };
    eventually(Duration::from_secs(10), || {
        (get(
            &api,
            &["lease", "slipway-controller"],
            "{.spec.holderIdentity}",
        ) == other)
            .then_some(())
    });
    move_alias(&api, "8");
    wait_serving(&api, &replicas[follower], "8");
}

const EVALUATED: &str = r#"
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
          resources: {limits: {cpu: "1", memory: 1Gi}}
          serviceAccountName: evaluator
      dataset: {uri: "s3://datasets/pitch-frames/holdout/", digest: "sha256:1111111111111111111111111111111111111111111111111111111111111111"}
      baseline: {alias: production}
      gates:
        - {metric: f1, op: ">=", value: 0.8}
        - {metric: f1, op: ">=", value: -0.01, relativeTo: baseline}
      timeout: 10m
---
apiVersion: slipway.dev/v1alpha1
kind: ModelVersion
metadata: {name: pitch-frames-7}
spec: {model: pitch-frames, version: "7", artifact: {uri: "s3://models/pitch-frames/7/model.json", digest: "sha256:0000000000000000000000000000000000000000000000000000000000000007"}}
---
apiVersion: slipway.dev/v1alpha1
kind: ModelAlias
metadata: {name: pitch-frames-production}
spec: {model: pitch-frames, alias: production, version: "7"}
"#;

fn token_of(api: &ApiServer, evaluation: &str) -> String {
    let b64 = get(
        api,
        &["secret", &format!("{evaluation}-results-token")],
        "{.data.token}",
    );
    use base64::Engine as _;
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .unwrap(),
    )
    .unwrap()
}

fn fail_job(api: &ApiServer, job: &str) {
    let status = r#"{"status":{"failed":1,"conditions":[{"type":"Failed","status":"True","reason":"BackoffLimitExceeded","message":"Job has reached the specified backoff limit"}]}}"#;
    let run = api.kubectl(
        &[
            "patch",
            "job",
            job,
            "--subresource=status",
            "--type=merge",
            "-p",
            status,
        ],
        "admin",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn new_versions_are_evaluated_by_jobs_that_report_through_the_results_api() {
    let api = ApiServer::start();
    api.install_crds();
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", EVALUATED);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let port = free_port();
    let log = api.dir.path().join("controller.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .envs(support::OPEN_BOUNDS)
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
    assert_eq!(
        env["SLIPWAY_RESULTS_URL"],
        format!(
            "http://127.0.0.1:{port}/api/v1/evaluations/default/pitch-frames-7-holdout/results"
        )
    );
    assert_eq!(
        env["SLIPWAY_RESULTS_TOKEN"]["secretKeyRef"]["name"],
        "pitch-frames-7-holdout-results-token"
    );
    assert!(!env.contains_key("SLIPWAY_BASELINE_VERSION"), "{env:?}");

    // The test plays the Job: wrong token and malformed bodies are refused with a reason.
    let token = token_of(&api, "pitch-frames-7-holdout");
    let good = r#"{"candidate": {"metrics": {"f1": 0.86}, "samples": [{"input": "frame-001.jpg", "expected": "open-play", "prediction": "open-play"}]}}"#;
    let (code, body) = post_results(port, "pitch-frames-7-holdout", "not-the-token", good);
    assert_eq!(code, 401, "{body}");
    let (code, body) = post_results(
        port,
        "pitch-frames-7-holdout",
        &token,
        r#"{"candidate": {"metrics": {"f1": "high"}}}"#,
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("line 1"), "{body}");
    let (code, body) = post_results(port, "pitch-frames-7-holdout", &token, good);
    assert_eq!(code, 202, "{body}\n{}", controller_log());
    assert!(body.contains("\"verdict\":\"Passed\""), "{body}");
    assert_eq!(
        get(
            &api,
            &["meval", "pitch-frames-7-holdout"],
            "{.status.phase} {.status.verdict} {.status.metrics.f1}"
        ),
        "Succeeded Passed 0.86"
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
    let (code, _) = post_results(port, "pitch-frames-7-holdout", &token, good);
    assert_eq!(code, 409, "results are accepted once");

    // Version 8 is compared with production (7): results without the baseline's are refused.
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
    assert_eq!(
        get(
            &api,
            &["job", "pitch-frames-8-holdout-1"],
            "{.spec.template.spec.containers[0].env[?(@.name==\"SLIPWAY_BASELINE_VERSION\")].value}"
        ),
        "7"
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
    let token = token_of(&api, "pitch-frames-8-holdout");
    let (code, body) = post_results(
        port,
        "pitch-frames-8-holdout",
        &token,
        r#"{"candidate": {"metrics": {"f1": 0.80}}}"#,
    );
    assert_eq!(code, 400);
    assert!(body.contains("include \\\"baseline\\\" results"), "{body}");
    // f1 0.80 vs 0.86: the relative gate fails, and says by how much.
    let (code, body) = post_results(
        port,
        "pitch-frames-8-holdout",
        &token,
        r#"{"candidate": {"metrics": {"f1": 0.80}}, "baseline": {"metrics": {"f1": 0.86}}}"#,
    );
    assert_eq!(code, 202, "{body}");
    assert!(body.contains("\"verdict\":\"Failed\""), "{body}");
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
        fail_job(&api, &job);
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
        message.contains("evaluation failed after 3 attempt(s): BackoffLimitExceeded"),
        "{message}"
    );
    assert_ne!(
        api.kubectl(&["get", "job", "pitch-frames-9-holdout-4"], "admin")
            .code,
        0
    );
    let _ = child.kill();
    let _ = child.wait();
}

const EXTERNAL: &str = r#"
apiVersion: v1
kind: Secret
metadata: {name: ci-credentials, labels: {slipway.dev/usable-by: slipway}}
stringData: {dispatch: ci-secret-1, notify: notify-secret-2}
---
apiVersion: v1
kind: Secret
metadata: {name: team-database}
stringData: {password: db-password-3}
---
apiVersion: slipway.dev/v1alpha1
kind: RegisteredModel
metadata: {name: pitch-frames}
spec:
  owners: ["group:ml-leads"]
  evaluations:
    - name: holdout
      runner:
        webhook:
          url: http://127.0.0.1:RECEIVER/ci/dispatch
          headers:
            X-Dispatch-Token: {secretKeyRef: {name: ci-credentials, key: dispatch}}
          bodyTemplate: '{"ref": "main", "inputs": {"model": "{{ model }}", "version": "{{ version }}", "results": "{{ resultsUrl }}", "token": "{{ token }}"}}'
      dataset: {uri: "s3://datasets/pitch-frames/holdout/", digest: "sha256:1111111111111111111111111111111111111111111111111111111111111111"}
      gates:
        - {metric: f1, op: ">=", value: 0.8}
      timeout: 10m
  notifications:
    - name: ops
      events: [VersionRegistered, EvaluationCompleted, AliasMoved]
      webhook:
        url: http://127.0.0.1:RECEIVER/ops
        headers:
          Authorization: {secretKeyRef: {name: ci-credentials, key: notify}}
        bodyTemplate: '{"event": "{{ event }}", "version": "{{ version }}", "message": "{{ message }}"}'
    - name: missing-secret
      events: [AliasMoved]
      webhook:
        url: http://127.0.0.1:RECEIVER/never
        headers:
          Authorization: {secretKeyRef: {name: not-there, key: token}}
    - name: not-opted-in
      events: [AliasMoved]
      webhook:
        url: http://127.0.0.1:RECEIVER/never
        headers:
          Authorization: {secretKeyRef: {name: team-database, key: password}}
    - name: elsewhere
      events: [AliasMoved]
      webhook:
        url: http://127.0.0.2:RECEIVER/never
        headers:
          Authorization: {secretKeyRef: {name: ci-credentials, key: notify}}
---
apiVersion: slipway.dev/v1alpha1
kind: RegisteredModel
metadata: {name: legacy}
spec:
  evaluations:
    - name: smoke
      runner:
        local: {command: ["python3", "evaluate.py"]}
      dataset: {uri: "s3://datasets/legacy/", digest: "sha256:2222222222222222222222222222222222222222222222222222222222222222"}
---
apiVersion: slipway.dev/v1alpha1
kind: ModelVersion
metadata: {name: legacy-1}
spec: {model: legacy, version: "1", artifact: {uri: "s3://models/legacy/1/model.json", digest: "sha256:0000000000000000000000000000000000000000000000000000000000000001"}}
---
apiVersion: slipway.dev/v1alpha1
kind: ModelVersion
metadata: {name: pitch-frames-7}
spec: {model: pitch-frames, version: "7", artifact: {uri: "s3://models/pitch-frames/7/model.json", digest: "sha256:0000000000000000000000000000000000000000000000000000000000000007"}}
---
apiVersion: slipway.dev/v1alpha1
kind: ModelAlias
metadata: {name: pitch-frames-production}
spec: {model: pitch-frames, alias: production, version: "7"}
"#;

#[test]
fn webhook_runners_notifications_and_reports_work_in_kubernetes_mode() {
    let api = ApiServer::start();
    api.install_crds();
    let receiver = http::Receiver::start(0);
    let manifest = EXTERNAL.replace("RECEIVER", &receiver.port.to_string());
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", &manifest);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let controller = Controller::start(&api, "controller-a");

    // The external system is asked to run the evaluation, with the header's secret from the
    // cluster and the results URL and token in the rendered body.
    let dispatch = eventually(Duration::from_secs(60), || {
        receiver
            .requests()
            .into_iter()
            .find(|(path, _, _)| path == "/ci/dispatch")
    });
    assert!(
        dispatch.1.contains("X-Dispatch-Token: ci-secret-1")
            || dispatch.1.contains("x-dispatch-token: ci-secret-1"),
        "{}",
        dispatch.1
    );
    let body: serde_json::Value = serde_json::from_str(&dispatch.2).unwrap();
    assert_eq!(body["inputs"]["version"], "7");
    let results = body["inputs"]["results"].as_str().unwrap().to_string();
    assert!(
        results.ends_with("/api/v1/evaluations/default/pitch-frames-7-holdout/results"),
        "{results}"
    );
    let token = body["inputs"]["token"].as_str().unwrap();
    assert_eq!(token, token_of(&api, "pitch-frames-7-holdout"));
    eventually(Duration::from_secs(30), || {
        (get(
            &api,
            &["meval", "pitch-frames-7-holdout"],
            "{.status.phase} {.status.conditions[0].reason}",
        ) == "Running Running")
            .then_some(())
    });
    assert_eq!(
        api.kubectl(&["get", "jobs", "-o", "name"], "admin")
            .stdout
            .trim(),
        "",
        "a webhook runner starts no Job"
    );

    // The external job reports back; the report is served by the controller.
    let (code, answer) = http::post_json(
        &results,
        token,
        r#"{"candidate": {"metrics": {"f1": 0.91}, "samples": [{"input": "frame-001.jpg", "expected": "corner", "prediction": "corner"}]}}"#,
    );
    assert_eq!(code, 202, "{answer}\n{}", controller.log());
    let report = get(
        &api,
        &["meval", "pitch-frames-7-holdout"],
        "{.status.report}",
    );
    assert_eq!(
        report,
        format!(
            "http://127.0.0.1:{}/reports/default/pitch-frames-7-holdout.html",
            controller.port
        )
    );
    // A report is the namespace's: without a token, or for someone who may not read the
    // evaluation, there is none.
    let (code, said) = http::request("GET", &report, &[], "");
    assert_eq!(code, 401, "{said}");
    assert!(said.contains("send your Kubernetes bearer token"), "{said}");
    let (code, said) = http::request(
        "GET",
        &report,
        &[("Authorization", "Bearer erin-token")],
        "",
    );
    assert_eq!(code, 403, "{said}");
    assert!(
        said.contains("erin may not get evaluation default/pitch-frames-7-holdout"),
        "{said}"
    );
    let (code, said) = http::request("GET", &report, &[("Authorization", "Bearer forged")], "");
    assert_eq!(code, 401, "{said}");
    let admin = [("Authorization", "Bearer admin-token")];
    let (code, html) = http::request("GET", &report, &admin, "");
    assert_eq!(code, 200);
    assert!(html.contains("<html") && html.contains("frame-001.jpg") && html.contains("0.91"));
    let (code, md) = http::request("GET", &report.replace(".html", ".md"), &admin, "");
    assert_eq!(code, 200);
    assert!(md.contains("pitch-frames") && md.contains("f1"), "{md}");
    let (code, _) = http::request(
        "GET",
        &report.replace("holdout.html", "nope.html"),
        &admin,
        "",
    );
    assert_eq!(code, 404);

    // Notifications: registered, evaluated, moved — each once, with the cluster secret.
    let notes = eventually(Duration::from_secs(60), || {
        let notes: Vec<serde_json::Value> = receiver
            .requests()
            .into_iter()
            .filter(|(path, _, _)| path == "/ops")
            .map(|(_, headers, body)| {
                assert!(
                    headers
                        .to_ascii_lowercase()
                        .contains("authorization: notify-secret-2"),
                    "{headers}"
                );
                serde_json::from_str(&body).unwrap()
            })
            .collect();
        (notes.len() >= 3).then_some(notes)
    });
    let mut events: Vec<&str> = notes.iter().map(|n| n["event"].as_str().unwrap()).collect();
    events.sort();
    assert_eq!(
        events,
        ["AliasMoved", "EvaluationCompleted", "VersionRegistered"],
        "{notes:?}"
    );
    let evaluated = notes
        .iter()
        .find(|n| n["event"] == "EvaluationCompleted")
        .unwrap();
    assert!(
        evaluated["message"].as_str().unwrap().contains("Passed"),
        "{notes:?}"
    );
    // A channel whose secret is missing: a warning event says which Secret to create.
    let failed = eventually(Duration::from_secs(30), || {
        let out = api
            .kubectl(
                &[
                    "get",
                    "events",
                    "--field-selector",
                    "reason=NotificationFailed",
                    "-o",
                    "jsonpath={.items[*].message}",
                ],
                "admin",
            )
            .stdout;
        (!out.is_empty()).then_some(out)
    });
    assert!(
        failed.contains("missing-secret")
            && failed.contains("Secret default/not-there does not exist"),
        "{failed}"
    );
    // A Secret of the namespace that did not opt in is not read out; a host the operator did
    // not allow gets nothing. (Events of one reason on one object form one series, so the
    // controller's log says each.)
    let failed = eventually(Duration::from_secs(30), || {
        let log = controller.log();
        (log.contains("not sent to not-opted-in") && log.contains("not sent to elsewhere"))
            .then_some(log)
    });
    assert!(
        failed
            .contains("Secret default/team-database is not labelled slipway.dev/usable-by=slipway"),
        "{failed}"
    );
    assert!(
        failed.contains("host 127.0.0.2 is not among the destinations the operator allows"),
        "{failed}"
    );
    assert!(
        !receiver.requests().iter().any(|(p, _, _)| p == "/never"),
        "nothing is sent without its secret"
    );
    eventually(Duration::from_secs(30), || {
        let metrics = controller.metrics();
        (metrics.contains("slipway_controller_notifications_total{outcome=\"delivered\"} 3")
            && metrics.contains("slipway_controller_notifications_total{outcome=\"failed\"} 3"))
        .then_some(())
    });

    // A local runner cannot run in a cluster: the evaluation fails and says what to use.
    let message = eventually(Duration::from_secs(60), || {
        let m = get(
            &api,
            &["meval", "legacy-1-smoke"],
            "{.status.phase}: {.status.conditions[0].message}",
        );
        m.starts_with("Failed").then_some(m)
    });
    assert!(
        message.contains("local runner runs only in git mode") && message.contains("webhook"),
        "{message}"
    );
    // Nothing is announced twice.
    std::thread::sleep(Duration::from_secs(3));
    let ops: Vec<String> = receiver
        .requests()
        .into_iter()
        .filter(|(p, _, _)| p == "/ops")
        .map(|(_, _, body)| body)
        .collect();
    assert_eq!(ops.len(), 3, "{ops:#?}");
}
