//! Issue 22 §1 on SageMaker: an endpoint in `Variants` mode is judged by the analysis' metrics
//! beside its alarms, in both homes — a CloudWatch `GetMetricData` query of the candidate's
//! variant against a real moto server. A variant whose errors hold is promoted with each
//! measurement in the history and the status; one whose errors fail is rolled back.

mod support;

use std::time::Duration;

use support::eventually;
use support::moto::Moto;
use support::sagemaker::{
    Cluster, alias, endpoint, history, put_errors, variants_judged_by_errors,
};

/// The SageMaker registry in Variants mode, judged by its variants' 5xx count in CloudWatch
/// instead of an alarm.
fn judged_by_errors() -> String {
    variants_judged_by_errors(None)
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
    let cluster = Cluster::start(&moto, &judged_by_errors());
    cluster.until("7 Healthy", Duration::from_secs(60));

    put_errors(&moto, "8", 0.0);
    cluster.move_alias("8");
    cluster.until("8 Healthy", Duration::from_secs(90));
    let messages = cluster.get("{.status.history[*].message}");
    assert!(
        messages.contains("8: metric errors = 0.0: Success"),
        "{messages}\n{}",
        cluster.said()
    );

    put_errors(&moto, "9", 3.0);
    cluster.move_alias("9");
    cluster.until("8 RolledBack", Duration::from_secs(90));
    // The status keeps the step's measurements.
    assert_eq!(cluster.get("{.status.analysis.version}"), "9");
    assert_eq!(
        cluster.get("{.status.analysis.metrics[0].measurements[0].verdict}"),
        "Failure"
    );
    eventually(Duration::from_secs(60), || {
        (endpoint(&moto)["variants"] == serde_json::json!(["v8"])).then_some(())
    });
    cluster.stop();
}
