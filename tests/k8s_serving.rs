//! A Kubernetes target fit for model serving, on a real kube-apiserver (the test plays the
//! kubelet): the per-version Deployment carries the target's command, arguments, readiness probe,
//! node selector, tolerations and image pull secrets; and a canary step counts only once the
//! candidate is ready at its weights — pods a step scales up that are still loading neither
//! count toward its pause nor run the rollout into a deadline that began before the step.

mod support;

use std::time::Duration;

use support::eventually;
use support::k8s_mode::{cluster_with, deployment_status, move_alias, serving};
use support::registry::{production, versions};

fn registry() -> String {
    let deployment = r#"---
apiVersion: slipway.dev/v1alpha1
kind: ModelDeployment
metadata: {name: pitch-frames-api}
spec:
  model: pitch-frames
  alias: production
  target:
    kubernetes:
      image: "registry.example/pitch-frames-server:1.4"
      replicas: 4
      port: 8080
      command: [python3, -m, server]
      args: ["--workers", "2"]
      readiness: {path: /v2/health/ready, initialDelaySeconds: 10, periodSeconds: 3}
      nodeSelector: {accelerator: a10g}
      tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
      imagePullSecrets: [registry-credentials]
  strategy:
    type: Canary
    steps:
      - {weight: 25, pause: 8s}
      - {weight: 50, pause: 3s}
    progressDeadline: 10s
    autoRollback: true
"#;
    [
        "apiVersion: slipway.dev/v1alpha1\nkind: RegisteredModel\nmetadata: {name: pitch-frames}\nspec:\n  owners: [\"group:ml-leads\"]\n".to_string(),
        versions("pitch-frames", &["7", "8"], "model.json"),
        production("pitch-frames", "7"),
        deployment.to_string(),
    ]
    .concat()
}

fn at(event: &serde_json::Value) -> chrono::DateTime<chrono::Utc> {
    event["at"].as_str().unwrap().parse().unwrap()
}

#[test]
fn a_model_server_is_placed_as_asked_and_a_step_counts_once_its_pods_are_ready() {
    let (api, kubelet, controller) = cluster_with(&registry());
    let serving = |v: &str| serving(&api, v);
    serving("7");
    let out = api.kubectl(
        &["get", "deploy", "pitch-frames-api-v7", "-o", "json"],
        "admin",
    );
    let d: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let pod = &d["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(
        c["command"],
        serde_json::json!(["python3", "-m", "server"]),
        "{pod}"
    );
    assert_eq!(c["args"], serde_json::json!(["--workers", "2"]), "{pod}");
    assert_eq!(
        c["readinessProbe"],
        serde_json::json!({"httpGet": {"path": "/v2/health/ready", "port": 8080, "scheme": "HTTP"},
                           "initialDelaySeconds": 10, "periodSeconds": 3, "failureThreshold": 3,
                           "successThreshold": 1, "timeoutSeconds": 1}),
        "{pod}"
    );
    assert_eq!(
        pod["nodeSelector"],
        serde_json::json!({"accelerator": "a10g"}),
        "{pod}"
    );
    assert_eq!(
        pod["tolerations"],
        serde_json::json!([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]),
        "{pod}"
    );
    assert_eq!(
        pod["imagePullSecrets"],
        serde_json::json!([{"name": "registry-credentials"}]),
        "{pod}"
    );
    assert_eq!(pod["automountServiceAccountToken"], false, "{pod}");

    // 8 rolls out; at 50% its new pods are still loading (not available) for 5 s. The rollout's
    // deadline (10 s) began before the 25% step's 8 s pause: counted from the candidate's start it
    // would have run out; counted from the step's, it has not.
    move_alias(&api, "8");
    let fifty = serde_json::json!({"7": 50, "8": 50});
    eventually(Duration::from_secs(60), || {
        let s = deployment_status(&api);
        s["history"]
            .as_array()?
            .iter()
            .any(|h| h["event"] == "StepStarted" && h["traffic"] == fifty)
            .then_some(())
    });
    kubelet.starting.lock().unwrap().insert("8".into());
    std::thread::sleep(Duration::from_secs(5));
    let s = deployment_status(&api);
    assert_eq!(
        (&s["phase"], &s["currentStep"], &s["stepReadyAt"]),
        (
            &serde_json::json!("Progressing"),
            &serde_json::json!(1),
            &serde_json::Value::Null
        ),
        "{s}\n{}",
        controller.log()
    );
    let released = chrono::Utc::now();
    kubelet.starting.lock().unwrap().remove("8");
    serving("8");
    let s = deployment_status(&api);
    let history = s["history"].as_array().unwrap();
    let succeeded = history
        .iter()
        .rfind(|h| h["event"] == "RolloutSucceeded")
        .unwrap();
    // The 50% step's 3 s pause counted from when its pods were ready, not from when it began.
    assert!(
        at(succeeded) >= released + chrono::Duration::milliseconds(2500),
        "released at {released}: {s}"
    );
    assert!(!history.iter().any(|h| h["event"] == "RolledBack"), "{s}");
}
