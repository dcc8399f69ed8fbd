//! Issue 22 §1 on SageMaker: an endpoint in `Variants` mode is judged by the analysis' metrics
//! beside its alarms, in both homes — a CloudWatch `GetMetricData` query of the candidate's
//! variant against a real moto server. A variant whose errors hold is promoted with each
//! measurement in the history and the status; one whose errors fail is rolled back.

mod support;

use std::time::Duration;

use support::eventually;
use support::moto::Moto;
use support::sagemaker::{REGISTRY, alias, cluster_with_controller, endpoint, history};

/// The SageMaker registry in Variants mode, judged by its variants' 5xx count in CloudWatch
/// instead of an alarm.
fn judged_by_errors() -> String {
    let metric = "    analysis:\n      metrics:\n        - name: errors\n          interval: 1s\n          successCondition: \"result < 1\"\n          provider:\n            cloudwatch:\n              region: eu-west-1\n              queries:\n                - id: errors\n                  metricStat:\n                    namespace: AWS/SageMaker\n                    metricName: Invocation5XXErrors\n                    stat: Sum\n                    period: 60\n                    dimensions:\n                      EndpointName: pitch-frames\n                      VariantName: \"v{{version}}\"\n";
    let registry = REGISTRY
        .replace(
            "      instanceCount: 2\n",
            "      instanceCount: 2\n      mode: Variants\n",
        )
        .replace("    analysis: {alarms: [pitch-frames-5xx]}\n", metric);
    assert!(registry.contains("mode: Variants") && registry.contains("Invocation5XXErrors"));
    registry
}

/// What SageMaker would report of version `version`'s variant: `errors` 5xx answers just now.
fn put_errors(moto: &Moto, version: &str, errors: f64) {
    let variant = format!("v{version}");
    let dims = [
        ("EndpointName", "pitch-frames"),
        ("VariantName", variant.as_str()),
    ];
    moto.put_metric("AWS/SageMaker", "Invocation5XXErrors", &dims, errors);
}

fn run_once(dir: &std::path::Path, moto: &Moto) -> support::Run {
    support::sagemaker::run_once_with(dir, moto, &["--allowed-destinations", "127.0.0.1"])
}

#[test]
fn in_git_mode_a_variant_is_promoted_on_a_metric_that_holds_and_rolled_back_on_one_that_fails() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("registry")).unwrap();
    std::fs::write(
        dir.path().join("registry/registry.yaml"),
        judged_by_errors(),
    )
    .unwrap();
    std::fs::write(dir.path().join("registry/alias.yaml"), alias("7")).unwrap();
    let check = support::slipway(&["validate", "registry"], dir.path());
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    let run = run_once(dir.path(), &moto);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(endpoint(&moto)["variants"], serde_json::json!(["v7"]));

    put_errors(&moto, "8", 0.0);
    std::fs::write(dir.path().join("registry/alias.yaml"), alias("8")).unwrap();
    let run = run_once(dir.path(), &moto);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let h = history(dir.path());
    assert!(
        h.contains("AnalysisMeasured") && h.contains("metric errors = 0.0: Success"),
        "{h}"
    );
    assert!(h.contains("RolloutSucceeded"), "{h}");
    assert_eq!(endpoint(&moto)["variants"], serde_json::json!(["v8"]));

    put_errors(&moto, "9", 3.0);
    std::fs::write(dir.path().join("registry/alias.yaml"), alias("9")).unwrap();
    let run = run_once(dir.path(), &moto);
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    let h = history(dir.path());
    assert!(
        h.contains("metric errors = 3.0: Failure")
            && h.contains("RolledBack")
            && h.contains("1 failed measurement(s) of metric errors"),
        "{h}"
    );
    eventually(Duration::from_secs(30), || {
        let _ = run_once(dir.path(), &moto);
        (endpoint(&moto)["variants"] == serde_json::json!(["v8"])).then_some(())
    });
    let status = support::slipway(&["status", "--state", "state"], dir.path());
    assert!(status.stdout.contains("rejected: 9"), "{}", status.stdout);
}

#[test]
fn in_a_cluster_a_variant_is_judged_by_the_same_metric() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("controller.log");
    let (api, mut controller) = cluster_with_controller(
        &moto,
        std::fs::File::create(&log).unwrap().into(),
        &judged_by_errors(),
    );
    let get = |path: &str| support::k8s_mode::get(&api, &["mdeploy", "pitch-frames-api"], path);
    let said = || std::fs::read_to_string(&log).unwrap_or_default();
    eventually(Duration::from_secs(60), || {
        (get("{.status.servingVersion} {.status.phase}") == "7 Healthy").then_some(())
    });

    put_errors(&moto, "8", 0.0);
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", &alias("8"));
    assert_eq!(run.code, 0, "{}", run.stderr);
    eventually(Duration::from_secs(90), || {
        (get("{.status.servingVersion} {.status.phase}") == "8 Healthy").then_some(())
    });
    let messages = get("{.status.history[*].message}");
    assert!(
        messages.contains("8: metric errors = 0.0: Success"),
        "{messages}\n{}",
        said()
    );

    put_errors(&moto, "9", 3.0);
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", &alias("9"));
    assert_eq!(run.code, 0, "{}", run.stderr);
    eventually(Duration::from_secs(90), || {
        (get("{.status.servingVersion} {.status.phase}") == "8 RolledBack").then_some(())
    });
    // The status keeps the step's measurements.
    assert_eq!(get("{.status.analysis.version}"), "9");
    assert_eq!(
        get("{.status.analysis.metrics[0].measurements[0].verdict}"),
        "Failure"
    );
    eventually(Duration::from_secs(60), || {
        (endpoint(&moto)["variants"] == serde_json::json!(["v8"])).then_some(())
    });
    support::git_mode::signal(controller.id(), "-TERM");
    let status = eventually(Duration::from_secs(20), || controller.try_wait().unwrap());
    assert!(status.success(), "{status:?}\n{}", said());
}
