//! Issue 22 §1: a rollout judged by a CloudWatch metric — `GetMetricData` against a real moto
//! server, with the AWS configuration chain `slipway run` runs with. A canary whose metric holds
//! is promoted; one whose metric fails is rolled back with the value in the history; and the
//! CloudWatch API is a destination the operator must allow, like any provider's.

mod support;

use support::git_mode::{add_broken_version, events, quickstart, set_production};
use support::moto::Moto;
use support::slipway;

/// The quickstart's analysis replaced by a CloudWatch metric: the newest `Errors` sum of the
/// version (dimension `Version`) must be under 1; a step without a success within `deadline`
/// is rolled back.
fn put_errors(moto: &Moto, version: &str, errors: f64) {
    moto.put_metric("Pitch/Serving", "Errors", &[("Version", version)], errors);
}

fn run_once(work: &std::path::Path, moto: &Moto, destinations: &str) -> support::Run {
    support::sagemaker::run_once_with(work, moto, &["--allowed-destinations", destinations])
}

fn judge_by_cloudwatch(work: &std::path::Path, deadline: &str) {
    let path = work.join("registry/deployments.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let old = "    analysis:\n      maxErrorRatio: 0.05\n      latencyPercentile: 99\n      maxLatencyMs: 250\n";
    assert!(text.contains(old), "{text}");
    let metric = "    analysis:\n      metrics:\n        - name: errors\n          interval: 1s\n          successCondition: \"result < 1\"\n          provider:\n            cloudwatch:\n              region: eu-west-1\n              queries:\n                - id: errors\n                  metricStat:\n                    namespace: Pitch/Serving\n                    metricName: Errors\n                    stat: Sum\n                    period: 60\n                    dimensions:\n                      Version: \"{{version}}\"\n";
    let text = text.replace(old, metric).replace(
        "    autoRollback: true\n",
        &format!("    autoRollback: true\n    progressDeadline: {deadline}\n"),
    );
    std::fs::write(&path, text).unwrap();
}

#[test]
fn a_canary_is_judged_by_a_cloudwatch_metric() {
    let moto = Moto::start();
    let (_dir, work) = quickstart();
    assert_eq!(
        slipway(&["run", "registry", "--once", "--state", "state"], &work).code,
        0
    );
    judge_by_cloudwatch(&work, "60s");
    put_errors(&moto, "8", 0.0);
    set_production(&work, "8");
    let run = run_once(&work, &moto, "127.0.0.1");
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let all = events(&work);
    assert!(
        all.iter()
            .any(|l| l.contains("AnalysisMeasured") && l.contains("metric errors = 0.0: Success")),
        "{all:#?}"
    );
    assert!(
        all.iter().any(|l| l.contains("all traffic on 8")),
        "{all:#?}"
    );

    // 9 reports errors: its metric fails, it is rolled back to 8.
    add_broken_version(&work);
    put_errors(&moto, "9", 5.0);
    set_production(&work, "9");
    let run = run_once(&work, &moto, "127.0.0.1");
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    let all = events(&work);
    let rolled = all
        .iter()
        .find(|l| l.contains("RolledBack"))
        .unwrap_or_else(|| panic!("{all:#?}"));
    assert!(
        rolled.contains("metric errors = 5.0: Failure (`result < 1` is false)"),
        "{rolled}"
    );
}

#[test]
fn the_cloudwatch_api_is_a_destination_the_operator_allows() {
    let moto = Moto::start();
    let (_dir, work) = quickstart();
    assert_eq!(
        slipway(&["run", "registry", "--once", "--state", "state"], &work).code,
        0
    );
    judge_by_cloudwatch(&work, "4s");
    put_errors(&moto, "8", 0.0);
    set_production(&work, "8");
    // The operator allows another host only: never asked, inconclusive, rolled back.
    let run = run_once(&work, &moto, "prometheus.example.com");
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    let all = events(&work);
    assert!(
        all.iter().any(|l| l.contains("AnalysisMeasured")
            && l.contains("Inconclusive")
            && l.contains("127.0.0.1")),
        "{all:#?}"
    );
    assert!(
        all.iter().any(|l| l.contains("RolledBack")
            && l.contains("no successful measurement of metric errors")),
        "{all:#?}"
    );
    assert!(
        !all.iter().any(|l| l.contains("all traffic on 8")),
        "{all:#?}"
    );
}
