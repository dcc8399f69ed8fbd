//! The README's Kubernetes walkthrough, run as written against a real API server: the chart's
//! roles, the webhook and the controllers; the test plays the kubelet and the evaluation Jobs.
//! It prints what each `kubectl` shows (`cargo nextest run --no-capture -E 'binary(k8s_walkthrough)'`).

mod support;

use support::free_port;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::apiserver::ApiServer;
use support::k8s_mode::finish_job;
use support::kubelet::Kubelet;
use support::{eventually, root};

fn show(api: &ApiServer, user: &str, args: &[&str]) -> support::Run {
    let run = api.kubectl(args, user);
    eprintln!(
        "$ kubectl --context {user} {}\n{}{}",
        args.join(" "),
        run.stdout,
        run.stderr
    );
    run
}

fn jsonpath(api: &ApiServer, what: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    let p = format!("jsonpath={path}");
    args.extend(["-o", &p]);
    api.kubectl(&args, "admin").stdout
}

#[test]
fn the_readme_walkthrough() {
    let api = ApiServer::start();
    api.install_crds();
    let values = serde_json::json!({"roleBindings": [
        {"role": "promoter", "group": "ml-engineers"},
        {"role": "promoter", "group": "ml-leads"},
        {"role": "approver", "group": "ml-leads"},
    ]});
    let rbac = support::helm::only(
        &support::helm::render("slipway", &values).unwrap(),
        &["ClusterRole", "ClusterRoleBinding"],
    );
    assert_eq!(
        api.kubectl_stdin(&["apply", "-f", "-"], "admin", &rbac)
            .code,
        0
    );
    let (listen, webhook) = (free_port(), free_port());
    let configs = format!(
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {{name: slipway}}\nwebhooks:\n- name: validate.slipway.dev\n  clientConfig: {{url: \"https://127.0.0.1:{webhook}/validate\"}}\n  rules: [{{apiGroups: [slipway.dev], apiVersions: [v1alpha1], operations: [CREATE, UPDATE, DELETE], resources: [\"*\"], scope: Namespaced}}]\n  sideEffects: None\n  admissionReviewVersions: [v1]\n  failurePolicy: Fail\n---\napiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata: {{name: slipway}}\nwebhooks:\n- name: stamp.slipway.dev\n  clientConfig: {{url: \"https://127.0.0.1:{webhook}/mutate\"}}\n  rules: [{{apiGroups: [slipway.dev], apiVersions: [v1alpha1], operations: [CREATE], resources: [approvals], scope: Namespaced}}]\n  sideEffects: None\n  admissionReviewVersions: [v1]\n  failurePolicy: Fail\n"
    );
    assert_eq!(
        api.kubectl_stdin(&["apply", "-f", "-"], "admin", &configs)
            .code,
        0
    );
    let log = api.dir.path().join("controller.log");
    let mut controller = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .envs(support::OPEN_BOUNDS)
        .args(["controller", "--listen", &format!("127.0.0.1:{listen}")])
        .args([
            "--webhook-listen",
            &format!("127.0.0.1:{webhook}"),
            "--webhook-config",
            "slipway",
        ])
        .env("KUBECONFIG", &api.kubeconfig)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(30), || {
        (!jsonpath(
            &api,
            &["validatingwebhookconfiguration", "slipway"],
            "{.webhooks[0].clientConfig.caBundle}",
        )
        .is_empty())
        .then_some(())
    });
    let _kubelet = Kubelet::start(&api.kubeconfig, "default");
    let dir = root().join("examples/kubernetes");
    let file = |f: &str| dir.join(f).to_string_lossy().into_owned();

    // The platform team bootstraps the model, version 7, production and its deployment; the
    // policies follow once production serves 7 (the controller checks a move against the
    // policies again before it makes it, approvals included).
    // The account its evaluation Jobs run as (examples/kubernetes/model.yaml).
    let run = show(&api, "admin", &["create", "serviceaccount", "evaluator"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for f in [
        "model.yaml",
        "version-7.yaml",
        "production.yaml",
        "deployment.yaml",
    ] {
        let run = show(&api, "admin", &["apply", "-f", &file(f)]);
        assert_eq!(run.code, 0, "{f}");
        assert!(!run.stderr.contains("Warning"), "{}", run.stderr);
    }
    show(&api, "admin", &["get", "meval,jobs"]);
    // Until production resolves (it waits for 7's evaluation), the deployment has nothing to serve.
    eventually(Duration::from_secs(30), || {
        (jsonpath(
            &api,
            &["mdeploy", "pitch-frames-api"],
            "{.status.phase} {.status.conditions[0].status} {.status.conditions[0].reason}",
        ) == "Progressing False NothingToServe")
            .then_some(())
    });
    // The Job writes its results file; the test plays the kubelet that keeps it.
    finish_job(
        &api,
        "pitch-frames-7-holdout-1",
        r#"{"metrics": {"macro_f1": 0.842}}"#,
    );
    eventually(Duration::from_secs(60), || {
        (jsonpath(
            &api,
            &["mdeploy", "pitch-frames-api"],
            "{.status.phase} {.status.servingVersion}",
        ) == "Healthy 7")
            .then_some(())
    });
    let run = show(&api, "admin", &["apply", "-f", &file("policies.yaml")]);
    assert_eq!(run.code, 0);
    assert!(!run.stderr.contains("Warning"), "{}", run.stderr);

    // erin publishes version 8; its evaluation runs against production (7).
    assert_eq!(
        show(&api, "erin", &["apply", "-f", &file("version-8.yaml")]).code,
        0
    );
    // Version 7's run of the suite finished: only version 8 runs.
    finish_job(
        &api,
        "pitch-frames-8-holdout-1",
        r#"{"metrics": {"macro_f1": 0.863}}"#,
    );
    eventually(Duration::from_secs(30), || {
        (jsonpath(
            &api,
            &["meval", "pitch-frames-8-holdout"],
            "{.status.verdict}",
        ) == "Passed")
            .then_some(())
    });
    eventually(Duration::from_secs(30), || {
        (jsonpath(
            &api,
            &["mver", "pitch-frames-8"],
            "{.status.conditions[0].reason}",
        ) == "Evaluated")
            .then_some(())
    });
    let versions = show(&api, "admin", &["get", "mver,meval"]);
    assert!(
        versions
            .stdout
            .lines()
            .any(|l| l.starts_with("modelversion.slipway.dev/pitch-frames-8")
                && l.contains(" True ")),
        "{}",
        versions.stdout
    );

    // erin moves production: denied until a lead approves.
    let denied = show(
        &api,
        "erin",
        &["apply", "-f", &file("promote/production-8.yaml")],
    );
    assert_ne!(denied.code, 0);
    assert!(
        denied.stderr.contains("has 0 of 1 required approvals"),
        "{}",
        denied.stderr
    );
    let forbidden = show(
        &api,
        "erin",
        &["create", "-f", &file("promote/approval.yaml")],
    );
    assert!(forbidden.stderr.contains("forbidden"));
    assert_eq!(
        show(
            &api,
            "alice",
            &["create", "-f", &file("promote/approval.yaml")]
        )
        .code,
        0
    );
    show(&api, "admin", &["get", "appr"]);
    assert_eq!(
        show(
            &api,
            "erin",
            &["apply", "-f", &file("promote/production-8.yaml")]
        )
        .code,
        0
    );

    // The controller resolves the move and canaries 8 in: 25%, 50%, 100%.
    eventually(Duration::from_secs(90), || {
        (jsonpath(
            &api,
            &["mdeploy", "pitch-frames-api"],
            "{.status.phase} {.status.servingVersion}",
        ) == "Healthy 8")
            .then_some(())
    });
    eventually(Duration::from_secs(30), || {
        (jsonpath(
            &api,
            &["rmodel", "pitch-frames"],
            "{.status.latestVersion} {.status.aliases.production}",
        ) == "8 8")
            .then_some(())
    });
    show(&api, "admin", &["get", "rmodel,malias,mdeploy"]);
    eventually(Duration::from_secs(30), || {
        (jsonpath(
            &api,
            &["appr", "pitch-frames-production-8"],
            "{.status.usedBy}",
        )
        .starts_with("ModelAlias/default/pitch-frames-production → 8 (generation "))
        .then_some(())
    });
    assert!(
        !jsonpath(
            &api,
            &["appr", "pitch-frames-production-8"],
            "{.status.approvedAt}"
        )
        .is_empty()
    );
    let history = jsonpath(
        &api,
        &["mdeploy", "pitch-frames-api"],
        "{range .status.history[*]}{.event} {.traffic}{\"\\n\"}{end}",
    );
    eprintln!("{history}");
    assert!(
        history.contains("StepStarted {\"7\":75,\"8\":25}"),
        "{history}"
    );
    assert!(
        history.contains("RolloutSucceeded {\"8\":100}"),
        "{history}"
    );
    show(
        &api,
        "admin",
        &[
            "get",
            "deploy,svc",
            "-l",
            "slipway.dev/deployment=pitch-frames-api",
        ],
    );
    let _ = controller.kill();
    let _ = controller.wait();
}
