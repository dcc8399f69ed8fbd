//! Rollouts of the Kubernetes-mode controllers on a real kube-apiserver: aliases resolve,
//! per-version Deployments roll out step by step (the test plays the kubelet), a failing candidate
//! is rolled back, a killed controller resumes, an API-server restart is survived, and of two
//! replicas only the Lease holder acts.

mod support;

use std::time::Duration;

use support::apiserver::ApiServer;
use support::eventually;
use support::k8s_mode::{Controller, get, move_alias};
use support::kubelet::Kubelet;
use support::registry::{production, versions};

/// The model, versions 7–9, production at 7, and a canary deployment of it.
fn registry() -> String {
    let model = r#"
apiVersion: slipway.dev/v1alpha1
kind: RegisteredModel
metadata: {name: pitch-frames}
spec:
  description: Football frame classifier.
  owners: ["group:ml-leads"]
"#;
    let deployment = r#"---
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
    [
        model.to_string(),
        versions("pitch-frames", &["7", "8", "9"], "model.json"),
        production("pitch-frames", "7"),
        deployment.to_string(),
    ]
    .concat()
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
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", &registry());
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
            "not serving {version}: {out}\n{}\n{:?}\n{}",
            controller.log(),
            rollout_history(api),
            api.kubectl(&["get", "deploy,svc,mdeploy", "-o", "wide"], "admin")
                .stdout
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
    // Every change of the version Deployments' replicas is watched: 8 never has more than its
    // step's share of the pods the Service spreads requests over, at any moment.
    let mut watch = api.kubectl_spawn(
        &[
            "get",
            "deploy",
            "--watch",
            "--output-watch-events",
            "-o",
            r#"jsonpath={.type} {.object.metadata.name} {.object.spec.replicas}{"\n"}"#,
        ],
        "admin",
    );
    std::thread::sleep(Duration::from_millis(500));
    move_alias(&api, "8");
    wait_serving(&api, &controller, "8");
    until(&api, &controller, Duration::from_secs(20), || {
        (api.kubectl(&["get", "deploy", "pitch-frames-api-v7"], "admin")
            .code
            != 0)
            .then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    let _ = watch.kill();
    let seen = String::from_utf8_lossy(&watch.wait_with_output().unwrap().stdout).into_owned();
    let mut pods: std::collections::BTreeMap<String, u32> = Default::default();
    let mut shares = Vec::new();
    for line in seen.lines() {
        let mut f = line.split_whitespace();
        let (Some(kind), Some(name), Some(n)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        match kind {
            "DELETED" => pods.remove(name),
            _ => pods.insert(name.to_string(), n.parse().unwrap()),
        };
        let eight = pods.get("pitch-frames-api-v8").copied().unwrap_or(0);
        let all: u32 = pods.values().sum();
        // (The last step takes 8 to all 4 replicas: 100%, then 7 goes.)
        if eight > 0 && eight < 4 && pods.contains_key("pitch-frames-api-v7") {
            shares.push((eight * 100 / all, line.to_string()));
        }
    }
    assert!(!shares.is_empty(), "{seen}");
    // 8 starts as 1 pod beside 7's 4 (20%; it used to start with all 4), never more than 50%
    // while 7 still serves.
    let started = seen
        .lines()
        .find(|l| l.contains(" pitch-frames-api-v8 "))
        .unwrap_or_default();
    assert!(started.ends_with(" pitch-frames-api-v8 1"), "{seen}");
    assert!(shares[0].0 <= 25, "{seen}");
    assert!(shares.iter().all(|(s, _)| *s <= 50), "{shares:?}\n{seen}");
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
    // The rollback says why, down to what the pods say.
    let message = get(
        &api,
        &["mdeploy", "pitch-frames-api"],
        "{.status.history[-1:].message}",
    );
    assert!(
        message.contains("pitch-frames-api-v9 is not progressing (ProgressDeadlineExceeded")
            && message.contains(
                "pod pitch-frames-api-v9-crash: CrashLoopBackOff (back-off 1m20s restarting failed container=model-server), last exit code 1"
            ),
        "{message}"
    );
    // What failed stays inspectable until the next try: its Deployment, without pods.
    until(&api, &controller, Duration::from_secs(20), || {
        (get(&api, &["deploy", "pitch-frames-api-v9"], "{.spec.replicas}") == "0").then_some(())
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
    // Each rollout's start is an event of its own that says which version (one reason, three
    // notes: never a count of the first rollout's words).
    let started = api.kubectl(
        &[
            "get",
            "events.events.k8s.io",
            "--field-selector",
            "reason=RolloutStarted,regarding.name=pitch-frames-api",
            "-o",
            "jsonpath={range .items[*]}{.note}{\"\\n\"}{end}",
        ],
        "admin",
    );
    let mut notes: Vec<&str> = started.stdout.lines().collect();
    notes.sort();
    assert_eq!(
        notes,
        [
            "rolling out 7",
            "rolling out 8 from 7",
            "rolling out 9 from 8"
        ],
        "{}",
        started.stderr
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
    // The kept Deployment stays without pods, whoever scales it.
    let run = api.kubectl(
        &["scale", "deploy", "pitch-frames-api-v9", "--replicas=2"],
        "admin",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    until(&api, &controller, Duration::from_secs(20), || {
        (get(&api, &["deploy", "pitch-frames-api-v9"], "{.spec.replicas}") == "0").then_some(())
    });
    // Fixed and retried, 9 starts from a new Deployment (not the failed try's conditions).
    let failed_try = get(&api, &["deploy", "pitch-frames-api-v9"], "{.metadata.uid}");
    kubelet.failing.lock().unwrap().remove("9");
    annotate("9");
    until(&api, &controller, Duration::from_secs(60), || {
        (get(
            &api,
            &["mdeploy", "pitch-frames-api"],
            "{.status.phase} {.status.servingVersion}",
        ) == "Healthy 9")
            .then_some(())
    });
    let retried = get(&api, &["deploy", "pitch-frames-api-v9"], "{.metadata.uid}");
    assert!(
        !retried.is_empty() && retried != failed_try,
        "{retried} {failed_try}"
    );
    // The alias moves on (back to 8): 9's Deployment is gone once 8 serves.
    move_alias(&api, "8");
    until(&api, &controller, Duration::from_secs(60), || {
        (api.kubectl(&["get", "deploy", "pitch-frames-api-v9"], "admin")
            .code
            != 0)
            .then_some(())
    });
    let metrics = controller.metrics();
    assert!(metrics.contains("slipway_leader 1"), "{metrics}");
    assert!(
        metrics.contains("slipway_reconciles_total{controller=\"deployments\"}"),
        "{metrics}"
    );
    let promotions: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("slipway_promotion_latency_seconds_count "))
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
    let url = format!("http://127.0.0.1:{}/readyz", controller.port);
    assert_eq!(support::http::request("GET", &url, &[], "").0, 200);
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
    // Both replicas are ready once their watches have listed; /readyz says which one leads.
    for (i, r) in replicas.iter().enumerate() {
        let url = format!("http://127.0.0.1:{}/readyz", r.port);
        let body = eventually(Duration::from_secs(30), || {
            let (code, body) = support::http::request("GET", &url, &[], "");
            (code == 200).then_some(body)
        });
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["leader"], i == leader, "replica {i}: {body}");
        // Started without the webhook and with its results API on loopback: said, in /readyz
        // and the log, as what this setup keeps from working.
        let warnings = body["warnings"].as_array().cloned().unwrap_or_default();
        let said = |start: &str| {
            warnings
                .iter()
                .any(|w| w.as_str().is_some_and(|w| w.starts_with(start)))
        };
        assert!(
            said("no --webhook-listen: nothing is checked at admission"),
            "{body}"
        );
        assert!(said("the results API is at http://127.0.0.1:"), "{body}");
        assert!(r.log().contains("no --webhook-listen"), "{}", r.log());
    }
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

/// The `ModelDeployment`'s conditions as "Type=Status/Reason" words.
fn conditions(api: &ApiServer) -> String {
    get(
        api,
        &["mdeploy", "pitch-frames-api"],
        r#"{range .status.conditions[*]}{.type}={.status}/{.reason} {end}"#,
    )
}

#[test]
fn a_name_taken_by_an_object_that_is_not_slipways_stalls_the_deployment_until_it_is_freed() {
    let (api, _kubelet) = setup();
    // Somebody else's Service has the name Slipway would give the deployment's.
    let foreign = api.kubectl(
        &[
            "create",
            "service",
            "clusterip",
            "pitch-frames-api",
            "--tcp=80:9000",
        ],
        "admin",
    );
    assert_eq!(foreign.code, 0, "{}", foreign.stderr);
    let controller = Controller::start(&api, "controller");
    let stalled = until(&api, &controller, Duration::from_secs(30), || {
        let c = conditions(&api);
        c.contains("Stalled=True/NotOwned").then_some(c)
    });
    let status: serde_json::Value = serde_json::from_str(
        &api.kubectl(
            &["get", "mdeploy", "pitch-frames-api", "-o", "json"],
            "admin",
        )
        .stdout,
    )
    .unwrap();
    let message = status["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Stalled")
        .map(|c| c["message"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    assert!(
        message.contains(
            "Service default/pitch-frames-api exists and is not ModelDeployment pitch-frames-api's"
        ),
        "{stalled}: {message} {}",
        status["status"]["conditions"]
    );
    // Said once as a warning event, however often the reconcile is refused meanwhile.
    let events = || {
        api.kubectl(
            &[
                "get",
                "events",
                "--field-selector",
                "reason=Stalled,involvedObject.name=pitch-frames-api",
                "-o",
                "jsonpath={.items[*].type}",
            ],
            "admin",
        )
        .stdout
    };
    let warned = until(&api, &controller, Duration::from_secs(10), || {
        let e = events();
        (!e.is_empty()).then_some(e)
    });
    assert_eq!(warned, "Warning");
    // Nothing was written over it.
    assert_eq!(
        get(
            &api,
            &["service", "pitch-frames-api"],
            "{.spec.ports[0].targetPort}"
        ),
        "9000"
    );
    // Freed: the next look (a change of the object) clears the stall and rolls out.
    let freed = api.kubectl(&["delete", "service", "pitch-frames-api"], "admin");
    assert_eq!(freed.code, 0, "{}", freed.stderr);
    let touched = api.kubectl(
        &[
            "annotate",
            "mdeploy",
            "pitch-frames-api",
            "example.com/touched=1",
        ],
        "admin",
    );
    assert_eq!(touched.code, 0, "{}", touched.stderr);
    wait_serving(&api, &controller, "7");
    let after = conditions(&api);
    assert!(!after.contains("Stalled=True"), "{after}");
    assert_eq!(
        get(
            &api,
            &["service", "pitch-frames-api"],
            "{.spec.ports[0].targetPort}"
        ),
        "8080"
    );
    assert_eq!(events(), "Warning", "the stall was announced again");
}

/// A label registered again with another artifact (its first version deleted while no webhook
/// stood guard) is not served: the deployment stalls, saying why, and its Deployment keeps the
/// artifact the alias moved with — on no target is the new artifact "healed" in.
#[test]
fn a_label_registered_again_with_another_artifact_is_not_served() {
    let (api, _kubelet) = setup();
    let controller = Controller::start(&api, "controller");
    wait_serving(&api, &controller, "7");
    let uri = |api: &ApiServer| {
        get(
            api,
            &["deploy", "pitch-frames-api-v7"],
            "{.spec.template.spec.containers[0].env[?(@.name==\"MODEL_URI\")].value}",
        )
    };
    let before = uri(&api);
    assert!(before.contains("pitch-frames/7/model.json"), "{before}");
    let run = api.kubectl(&["delete", "mver", "pitch-frames-7"], "admin");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let again = format!(
        "apiVersion: slipway.dev/v1alpha1\nkind: ModelVersion\nmetadata: {{name: pitch-frames-7-again}}\nspec: {{model: pitch-frames, version: \"7\", artifact: {{uri: \"s3://attacker/model.json\", digest: \"sha256:{}\"}}}}\n",
        "f".repeat(64)
    );
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", &again);
    assert_eq!(run.code, 0, "{}", run.stderr);
    until(&api, &controller, Duration::from_secs(30), || {
        conditions(&api)
            .contains("Stalled=True/ArtifactChanged")
            .then_some(())
    });
    let message = get(
        &api,
        &["mdeploy", "pitch-frames-api"],
        r#"{.status.conditions[?(@.type=="Stalled")].message}"#,
    );
    assert!(
        message.contains(&format!(
            "version 7 of pitch-frames has artifact sha256:{}",
            "f".repeat(64)
        )) && message.contains("the label was registered again with another artifact"),
        "{message}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        uri(&api),
        before,
        "the Deployment was healed to the new artifact"
    );
}

/// A soak in a cluster: staging moves to 8 and production asks for 8 at once; the move is held,
/// saying until when, and is made by itself when the soak ends — nothing else changes, and the
/// usual look at a held move is a minute away.
#[test]
fn a_production_move_waits_out_the_soak_in_staging_and_is_made_when_it_ends() {
    let (api, _kubelet) = setup();
    let controller = Controller::start(&api, "controller-a");
    wait_serving(&api, &controller, "7");
    let soak = r#"---
apiVersion: slipway.dev/v1alpha1
kind: ModelAlias
metadata: {name: pitch-frames-staging}
spec: {model: pitch-frames, alias: staging, version: "7"}
---
apiVersion: slipway.dev/v1alpha1
kind: PromotionPolicy
metadata: {name: soak}
spec:
  match: {kinds: [ModelAlias], aliases: [production], operations: [create, update]}
  rules:
    - name: soaked-in-staging
      expression: >-
        !has(model.soak) ||
        (change.rollback && !candidate.serving.rollbacks.exists(r, r.alias == change.alias)) ||
        (candidate.servedIn(model.soak.alias) >= duration(model.soak.duration) &&
          !candidate.serving.rollbacks.exists(r, r.alias == model.soak.alias))
"#;
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", soak);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let patch = r#"{"spec":{"soak":{"alias":"staging","duration":"8s"}}}"#;
    let run = api.kubectl(
        &[
            "patch",
            "rmodel",
            "pitch-frames",
            "--type=merge",
            "-p",
            patch,
        ],
        "admin",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let resolved = |alias: &str| get(&api, &["malias", alias], "{.status.resolvedVersion}");
    until(&api, &controller, Duration::from_secs(30), || {
        (resolved("pitch-frames-staging") == "7").then_some(())
    });
    let run = api.kubectl(
        &[
            "patch",
            "malias",
            "pitch-frames-staging",
            "--type=merge",
            "-p",
            r#"{"spec":{"version":"8"}}"#,
        ],
        "admin",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    until(&api, &controller, Duration::from_secs(30), || {
        (resolved("pitch-frames-staging") == "8").then_some(())
    });
    let staged = std::time::Instant::now();
    move_alias(&api, "8");
    let held = held_message(&api, &controller);
    assert!(
        held.contains("held: denied by soak/soaked-in-staging until "),
        "{held}"
    );
    assert_eq!(resolved("pitch-frames-production"), "7");
    until(&api, &controller, Duration::from_secs(30), || {
        (resolved("pitch-frames-production") == "8").then_some(())
    });
    assert!(
        staged.elapsed() >= Duration::from_secs(7),
        "{:?}",
        staged.elapsed()
    );
    let history = get(
        &api,
        &["malias", "pitch-frames-production"],
        "{.status.history[*].to}",
    );
    assert_eq!(history, "7 8");
}

/// A move the alias reconciler finds inside a freeze (admitted before it started, or, as here,
/// without the webhook) is held, saying until when, and made when the freeze ends — with
/// nothing else changing. The freeze is the minute the move is asked for in.
#[test]
fn a_pending_move_is_held_through_a_freeze_and_made_when_it_ends() {
    let (api, _kubelet) = setup();
    let controller = Controller::start(&api, "controller-a");
    wait_serving(&api, &controller, "7");
    // A freeze of the current minute (early in it: 35 s or more of it left), starting daily.
    eventually(Duration::from_secs(70), || {
        let s = chrono::Utc::now().timestamp() % 60;
        (1..=25).contains(&s).then_some(())
    });
    let minute = chrono::Utc::now();
    let freeze = format!(
        "---\napiVersion: slipway.dev/v1alpha1\nkind: PromotionPolicy\nmetadata: {{name: freeze}}\nspec:\n  match: {{kinds: [ModelAlias], aliases: [production], operations: [update]}}\n  windows:\n    - {{name: this-minute, effect: deny, schedule: \"{} {} * * *\", duration: 1m, message: Frozen.}}\n",
        minute.format("%M"),
        minute.format("%H")
    );
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", &freeze);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let asked = chrono::Utc::now();
    move_alias(&api, "8");
    let held = held_message(&api, &controller);
    assert!(
        held.contains("held: denied by freeze/window until "),
        "{held}"
    );
    until(&api, &controller, Duration::from_secs(75), || {
        (get(
            &api,
            &["malias", "pitch-frames-production"],
            "{.status.resolvedVersion}",
        ) == "8")
            .then_some(())
    });
    let moved = get(
        &api,
        &["malias", "pitch-frames-production"],
        "{.status.history[-1:].at}",
    );
    let moved = chrono::DateTime::parse_from_rfc3339(&moved).unwrap();
    let opened = asked.timestamp() - asked.timestamp() % 60 + 60;
    assert!(
        moved.timestamp() >= opened && moved.timestamp() < opened + 15,
        "moved at {moved}, the freeze ended at {opened}"
    );
}

/// The production alias's status message once it says the move is held.
fn held_message(api: &ApiServer, controller: &Controller) -> String {
    until(api, controller, Duration::from_secs(30), || {
        let m = get(
            api,
            &["malias", "pitch-frames-production"],
            "{.status.conditions[0].message}",
        );
        m.contains(" held: ").then_some(m)
    })
}
