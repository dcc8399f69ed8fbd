//! A Kubernetes target judged by a metric, not only by Deployment health: a real Prometheus
//! (Debian's) scrapes a test exporter standing in for the model pods (a prediction error ratio
//! per version); the controller promotes the version whose ratio holds and rolls back the one
//! whose ratio fails, with every measurement in the status's history and analysis.

mod support;

use std::time::Duration;

use support::apiserver::ApiServer;
use support::eventually;
use support::http::Receiver;
use support::k8s_mode::{Controller, get, move_alias};
use support::kubelet::Kubelet;
use support::prometheus::Prometheus;
use support::registry::{production, versions};

fn registry(prometheus: &str) -> String {
    let model = r#"
apiVersion: slipway.dev/v1alpha1
kind: RegisteredModel
metadata: {name: pitch-frames}
spec:
  owners: ["group:ml-leads"]
"#;
    let deployment = format!(
        r#"---
apiVersion: slipway.dev/v1alpha1
kind: ModelDeployment
metadata: {{name: pitch-frames-api}}
spec:
  model: pitch-frames
  alias: production
  target:
    kubernetes: {{image: "registry.example/pitch-frames-server:1.4", replicas: 4, port: 8080}}
  strategy:
    type: Canary
    steps:
      - {{weight: 25, pause: 2s}}
    analysis:
      metrics:
        - name: prediction-errors
          interval: 1s
          successCondition: "result < 0.1"
          provider:
            prometheus:
              address: {prometheus}
              query: 'max(model_prediction_error_ratio{{namespace="{{{{namespace}}}}",version="{{{{version}}}}"}})'
    autoRollback: true
"#
    );
    [
        model.to_string(),
        versions("pitch-frames", &["7", "8", "9"], "model.json"),
        production("pitch-frames", "7"),
        deployment,
    ]
    .concat()
}

fn status(api: &ApiServer) -> serde_json::Value {
    let out = api.kubectl(
        &["get", "mdeploy", "pitch-frames-api", "-o", "json"],
        "admin",
    );
    serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap_or_default()["status"].clone()
}

#[test]
fn a_kubernetes_canary_is_judged_by_its_metric() {
    // The model pods' own metrics, as an exporter serves them: 8 errs on 1% of predictions, 9 on
    // 40%.
    let exporter = Receiver::start(0);
    exporter.answer_with(
        "# TYPE model_prediction_error_ratio gauge\n\
         model_prediction_error_ratio{namespace=\"default\",version=\"8\"} 0.01\n\
         model_prediction_error_ratio{namespace=\"default\",version=\"9\"} 0.4\n",
    );
    let prometheus = Prometheus::scraping(&[format!("127.0.0.1:{}", exporter.port)]);
    eventually(Duration::from_secs(30), || {
        let r = prometheus.query("model_prediction_error_ratio");
        (r["data"]["result"].as_array().map_or(0, Vec::len) == 2).then_some(())
    });
    let api = ApiServer::start();
    api.install_crds();
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", &registry(&prometheus.url()));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let _kubelet = Kubelet::start(&api.kubeconfig, "default");
    let controller = Controller::start(&api, "controller-a");
    let serving = |v: &str| {
        let want = format!("Healthy {v}");
        eventually(Duration::from_secs(90), || {
            (get(
                &api,
                &["mdeploy", "pitch-frames-api"],
                "{.status.phase} {.status.servingVersion}",
            ) == want)
                .then_some(())
        })
    };
    serving("7");
    move_alias(&api, "8");
    serving("8");
    let s = status(&api);
    let said: Vec<String> = s["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            format!(
                "{} {}",
                h["event"].as_str().unwrap(),
                h["message"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        said.iter()
            .any(|l| l == "AnalysisMeasured 8: metric prediction-errors = 0.01: Success"),
        "{said:#?}\n{}",
        controller.log()
    );

    move_alias(&api, "9");
    let s = eventually(Duration::from_secs(90), || {
        let s = status(&api);
        (s["phase"] == "RolledBack").then_some(s)
    });
    assert_eq!(s["servingVersion"], "8", "{s}");
    let rolled = s["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["event"] == "RolledBack")
        .unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        rolled.contains("analysis failed at 25%: 1 failed measurement(s) of metric prediction-errors (failureLimit 0); last: metric prediction-errors = 0.4: Failure (`result < 0.1` is false)"),
        "{rolled}"
    );
    assert_eq!(s["analysis"]["version"], "9", "{s}");
    assert_eq!(s["analysis"]["metrics"][0]["failures"], 1, "{s}");
    assert_eq!(
        s["analysis"]["metrics"][0]["measurements"][0]["value"], "0.4",
        "{s}"
    );
}
