//! A Kubernetes target judged by a metric, not only by Deployment health: a real Prometheus
//! (Debian's) scrapes a test exporter standing in for the model pods (a prediction error ratio
//! per version); the controller promotes the version whose ratio holds and rolls back the one
//! whose ratio fails, with every measurement in the status's history and analysis.

mod support;

use std::time::Duration;

use support::eventually;
use support::http::Receiver;
use support::k8s_mode::{cluster_with, deployment_status, move_alias, serving};
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
      comparisons:
        - name: accuracy
          interval: 1s
          labelDelay: 1s
          margin: 0.01
          successes:
            prometheus:
              address: {prometheus}
              query: 'sum(model_correct_total{{version="{{{{version}}}}"}})'
          trials:
            prometheus:
              address: {prometheus}
              query: 'sum(model_labelled_total{{version="{{{{version}}}}"}})'
    autoRollback: true
"#
    );
    [
        model.to_string(),
        versions("pitch-frames", &["7", "8", "9", "10"], "model.json"),
        production("pitch-frames", "7"),
        deployment,
    ]
    .concat()
}

#[test]
fn a_kubernetes_canary_is_judged_by_its_metric() {
    // The model pods' own metrics, as an exporter serves them: 8 errs on 1% of predictions, 9
    // on 40%; 7 and 8 were right on 90% of their labelled predictions.
    let exporter = Receiver::start(0);
    let labels = "model_labelled_total{version=\"7\"} 50000\nmodel_correct_total{version=\"7\"} 45000\n\
                  model_labelled_total{version=\"8\"} 50000\nmodel_correct_total{version=\"8\"} 45050\n";
    exporter.answer_with(&format!(
        "# TYPE model_prediction_error_ratio gauge\n\
         model_prediction_error_ratio{{namespace=\"default\",version=\"8\"}} 0.01\n\
         model_prediction_error_ratio{{namespace=\"default\",version=\"9\"}} 0.4\n{labels}"
    ));
    let prometheus = Prometheus::scraping(&[format!("127.0.0.1:{}", exporter.port)]);
    eventually(Duration::from_secs(30), || {
        let r = prometheus.query("model_prediction_error_ratio");
        (r["data"]["result"].as_array().map_or(0, Vec::len) == 2).then_some(())
    });
    let (api, _kubelet, controller) = cluster_with(&registry(&prometheus.url()));
    let serving = |v: &str| serving(&api, v);
    serving("7");
    move_alias(&api, "8");
    serving("8");
    let s = deployment_status(&api);
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
    // The comparison's estimate, interval and decision, as the history reports them.
    assert!(
        said.iter().any(|l| l.starts_with("AnalysisMeasured 8: metric accuracy = 0.0010: Success (candidate − serving = 0.0010 (45050 of 50000 vs 45000 of 50000), 95% always-valid interval [")
            && l.ends_with("margin 0.01: not worse)")),
        "{said:#?}"
    );

    move_alias(&api, "9");
    let s = eventually(Duration::from_secs(90), || {
        let s = deployment_status(&api);
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

    // 10 errs no more than 8, but is right less often: the comparison rolls it back.
    exporter.answer_with(&format!(
        "model_prediction_error_ratio{{namespace=\"default\",version=\"10\"}} 0.01\n{labels}\
         model_labelled_total{{version=\"10\"}} 50000\nmodel_correct_total{{version=\"10\"}} 40000\n"
    ));
    eventually(Duration::from_secs(30), || {
        let r = prometheus.query("model_correct_total{version=\"10\"}");
        (r["data"]["result"].as_array().map_or(0, Vec::len) == 1).then_some(())
    });
    move_alias(&api, "10");
    let rolled = eventually(Duration::from_secs(90), || {
        let s = deployment_status(&api);
        s["history"]
            .as_array()?
            .iter()
            .rfind(|h| {
                h["event"] == "RolledBack"
                    && h["message"].as_str().is_some_and(|m| m.starts_with("10:"))
            })
            .map(|h| h["message"].as_str().unwrap_or_default().to_string())
    });
    assert!(
        rolled.starts_with("10: analysis failed at 25%: comparison accuracy shows the candidate worse than the serving version: candidate − serving = -0.1010 (40000 of 50000 vs 45050 of 50000)"),
        "{rolled}"
    );
}
