//! Webhook runners, notifications and reports in Kubernetes mode on a real kube-apiserver: an
//! external system is asked to run the evaluation with a cluster Secret, notifications carry
//! Secrets that opted in and go only to allowed hosts, reports are served only to those who may
//! read the evaluation, and a local runner is refused in a cluster.

mod support;

use std::time::Duration;

use support::apiserver::ApiServer;
use support::eventually;
use support::http;
use support::k8s_mode::{Controller, get, token_of};
use support::registry::{production, versions};

/// Two models with webhook runners and notifications (`RECEIVER` is the receiver's port), a
/// version of each, production at 7.
fn external() -> String {
    let models = r#"
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
"#;
    [
        models.to_string(),
        versions("legacy", &["1"], "model.json"),
        versions("pitch-frames", &["7"], "model.json"),
        production("pitch-frames", "7"),
    ]
    .concat()
}

#[test]
fn webhook_runners_notifications_and_reports_work_in_kubernetes_mode() {
    let api = ApiServer::start();
    api.install_crds();
    let receiver = http::Receiver::start(0);
    let manifest = external().replace("RECEIVER", &receiver.port.to_string());
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

    // The model's own templates, keys of a ConfigMap labelled as report templates: the report
    // renders with them when asked for; an unlabelled ConfigMap is not read.
    let templates = |labelled: bool| {
        let label = if labelled {
            "\n  labels: {slipway.dev/report-template: \"true\"}"
        } else {
            ""
        };
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: team-report{label}\ndata:\n  md: \"# Team: {{{{ model }}}} {{{{ version }}}} f1={{{{ metrics.f1 }}}}\\n{{{{ panels.history }}}}\"\n  html: \"<h1>{{{{ samples[0].input }}}}</h1>{{{{ panels.history }}}}\"\n"
        )
    };
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", &templates(false));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = api.kubectl(
        &[
            "patch",
            "registeredmodel",
            "pitch-frames",
            "--type=merge",
            "-p",
            r#"{"spec":{"report":{"configMap":"team-report","markdown":"md","html":"html"}}}"#,
        ],
        "admin",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let md_url = report.replace(".html", ".md");
    let refused = eventually(Duration::from_secs(30), || {
        let (_, md) = http::request("GET", &md_url, &admin, "");
        md.contains("report template failed").then_some(md)
    });
    assert!(
        refused.contains("(ConfigMap team-report, key md): `ConfigMap default/team-report is not labelled slipway.dev/report-template: \"true\""),
        "{refused}"
    );
    assert!(refused.contains("# pitch-frames 7 vs"), "{refused}");
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", &templates(true));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (code, md) = http::request("GET", &md_url, &admin, "");
    assert_eq!(code, 200);
    assert!(
        md.starts_with("# Team: pitch-frames 7 f1=0.91\n| Version | f1 | Verdict |"),
        "{md}"
    );
    assert!(md.contains("| **7** | 0.91 | Passed |"), "{md}");
    let (code, html) = http::request("GET", &report, &admin, "");
    assert_eq!(code, 200);
    assert!(html.starts_with("<h1>frame-001.jpg</h1>"), "{html}");
    assert!(html.contains("<svg class=\"history\""), "{html}");
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
        (metrics.contains("slipway_notifications_total{outcome=\"delivered\"} 3")
            && metrics.contains("slipway_notifications_total{outcome=\"failed\"} 3"))
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

/// An Evaluation named so that its results-token Secret is someone else's Secret: the controller
/// never writes over it (nor takes it over), the external system is not called, and the planted
/// token opens nothing.
#[test]
fn a_results_token_secret_that_is_not_the_evaluations_is_never_written_over() {
    let api = ApiServer::start();
    api.install_crds();
    let receiver = http::Receiver::start(0);
    let planted = "apiVersion: v1\nkind: Secret\nmetadata: {name: pitch-frames-7-holdout-results-token}\nstringData: {token: planted-token, password: db-password-4}\n";
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", planted);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let manifest = external().replace("RECEIVER", &receiver.port.to_string());
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", &manifest);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let controller = Controller::start(&api, "controller-a");

    let message = eventually(Duration::from_secs(60), || {
        let m = get(
            &api,
            &["meval", "pitch-frames-7-holdout"],
            "{.status.conditions[0].message}",
        );
        m.contains("is not this evaluation's").then_some(m)
    });
    assert!(
        message.contains("a Secret named pitch-frames-7-holdout-results-token exists"),
        "{message}"
    );
    // The Secret is as it was: its data, and no owner.
    let secret = api.kubectl(
        &[
            "get",
            "secret",
            "pitch-frames-7-holdout-results-token",
            "-o",
            "json",
        ],
        "admin",
    );
    let secret: serde_json::Value = serde_json::from_str(&secret.stdout).unwrap();
    assert_eq!(secret["data"]["token"], "cGxhbnRlZC10b2tlbg==");
    assert_eq!(secret["data"]["password"], "ZGItcGFzc3dvcmQtNA==");
    assert!(secret["metadata"]["ownerReferences"].is_null(), "{secret}");
    assert!(
        !receiver
            .requests()
            .iter()
            .any(|(path, _, _)| path == "/ci/dispatch"),
        "the external system was called"
    );
    // The planted token opens nothing.
    let url = format!(
        "http://127.0.0.1:{}/api/v1/evaluations/default/pitch-frames-7-holdout/results",
        controller.port
    );
    let (code, answer) = http::post_json(
        &url,
        "planted-token",
        r#"{"candidate": {"metrics": {"f1": 0.99}}}"#,
    );
    assert!(code == 401 || code == 409, "{code} {answer}");
    assert_ne!(
        get(
            &api,
            &["meval", "pitch-frames-7-holdout"],
            "{.status.verdict}"
        ),
        "Passed"
    );
}

/// Issue 21 §4: an external system asked to run a suite whose baseline is an alias is told the
/// version the alias resolves to (and its artifact), as a Job would be — not "no baseline".
#[test]
fn a_webhook_runner_is_told_the_baseline_its_alias_resolves_to() {
    let api = ApiServer::start();
    api.install_crds();
    let receiver = http::Receiver::start(0);
    let model = format!(
        r#"apiVersion: slipway.dev/v1alpha1
kind: RegisteredModel
metadata: {{name: pitch-frames}}
spec:
  evaluations:
    - name: holdout
      runner:
        webhook: {{url: "http://127.0.0.1:{}/ci/dispatch"}}
      dataset: {{uri: "s3://datasets/pitch-frames/holdout/", digest: "sha256:1111111111111111111111111111111111111111111111111111111111111111"}}
      baseline: {{alias: production}}
      gates:
        - {{metric: f1, op: ">=", value: 0.8}}
"#,
        receiver.port
    );
    let manifest = [
        model,
        versions("pitch-frames", &["7", "8"], "model.json"),
        production("pitch-frames", "7"),
    ]
    .concat();
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", &manifest);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let _controller = Controller::start(&api, "controller-a");
    let dispatched = |version: &str| {
        eventually(Duration::from_secs(60), || {
            receiver
                .requests()
                .into_iter()
                .filter(|(path, _, _)| path == "/ci/dispatch")
                .map(|(_, _, body)| serde_json::from_str::<serde_json::Value>(&body).unwrap())
                .find(|b| b["version"] == version)
        })
    };
    // 7 is production's first version: compared with nothing.
    let seven = dispatched("7");
    assert_eq!(seven["baseline"], serde_json::Value::Null, "{seven}");
    let (code, answer) = http::post_json(
        seven["resultsUrl"].as_str().unwrap(),
        seven["token"].as_str().unwrap(),
        r#"{"candidate": {"metrics": {"f1": 0.85}}}"#,
    );
    assert_eq!(code, 202, "{answer}");
    // 8 is compared with what production resolves to: 7, its artifact named.
    let eight = dispatched("8");
    assert_eq!(
        eight["baseline"],
        serde_json::json!({
            "version": "7",
            "uri": "s3://models/pitch-frames/7/model.json",
            "digest": format!("sha256:{:0>64}", 7),
        }),
        "{eight}"
    );
    assert_eq!(
        get(
            &api,
            &["meval", "pitch-frames-8-holdout"],
            "{.status.baselineVersion}"
        ),
        "7"
    );
    // One someone makes of the suite as declared, naming the alias: resolved the same way.
    let mine = format!(
        "apiVersion: slipway.dev/v1alpha1\nkind: Evaluation\nmetadata: {{name: mine-8}}\nspec:\n  model: pitch-frames\n  version: \"8\"\n  suite: holdout\n  runner: {{webhook: {{url: \"http://127.0.0.1:{}/ci/dispatch\"}}}}\n  dataset: {{uri: \"s3://datasets/pitch-frames/holdout/\", digest: \"sha256:1111111111111111111111111111111111111111111111111111111111111111\"}}\n  baseline: {{alias: production}}\n  gates: [{{metric: f1, op: \">=\", value: 0.8}}]\n",
        receiver.port
    );
    let run = api.kubectl_stdin(&["create", "-f", "-"], "admin", &mine);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let theirs = eventually(Duration::from_secs(60), || {
        receiver
            .requests()
            .into_iter()
            .map(|(_, _, body)| serde_json::from_str::<serde_json::Value>(&body).unwrap())
            .find(|b| b["evaluation"] == "mine-8")
    });
    assert_eq!(theirs["baseline"]["version"], "7", "{theirs}");
}
