//! Issue 22 §4 on SageMaker: a shadow step of an endpoint in `Variants` mode runs the candidate
//! as a shadow variant (`ShadowProductionVariants`: a copy of the step's share of requests,
//! answers to nobody) beside the serving version's production variant, judged by the
//! candidate's metrics; a passing shadow goes on to the canary's weighted steps, a failing one
//! is rolled back and its shadow variant removed — in both homes, against a real moto server.

mod support;

use std::time::Duration;

use support::eventually;
use support::moto::Moto;
use support::sagemaker::{
    Cluster, alias, endpoint, history, put_errors, variants_judged_by_errors,
};

/// The SageMaker registry in Variants mode: a shadow step (50% copied) before a canary step,
/// judged by the variant's 5xx count in CloudWatch.
fn shadow_first() -> String {
    let steps =
        "    steps:\n      - {weight: 0, mirror: 50, pause: 6s}\n      - {weight: 50, pause: 1s}\n";
    variants_judged_by_errors(Some(steps))
}

/// The endpoint's production and shadow variants as `name=weight` lists, as DescribeEndpoint
/// shows them.
fn variants(moto: &Moto) -> (String, String) {
    let out = moto.boto(
        "e = sm.describe_endpoint(EndpointName='pitch-frames')\nshow = lambda vs: ' '.join(f\"{v['VariantName']}={v.get('CurrentWeight', 0):g}\" for v in vs)\nprint(show(e.get('ProductionVariants', [])) + '|' + show(e.get('ShadowProductionVariants', [])))",
    );
    let (p, s) = out.split_once('|').unwrap_or_default();
    (p.to_string(), s.to_string())
}

/// Watches the endpoint until `done` holds (polled between looks), collecting every distinct
/// (production, shadow) pair seen.
fn watch(moto: &Moto, done: impl Fn(&(String, String)) -> bool) -> Vec<(String, String)> {
    let mut seen: Vec<(String, String)> = Vec::new();
    eventually(Duration::from_secs(120), || {
        let now = variants(moto);
        if seen.last() != Some(&now) {
            seen.push(now.clone());
        }
        done(&now).then_some(())
    });
    seen
}

/// Whether `serving` alone took the traffic while `shadow` got copies, at some look.
fn shadow_seen(seen: &[(String, String)], serving: &str, shadow: &str) -> bool {
    seen.iter().any(|(p, s)| p == serving && s == shadow)
}

#[test]
fn in_git_mode_a_shadow_variant_comes_before_the_canary_and_leaves_on_a_failure() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("registry")).unwrap();
    std::fs::write(dir.path().join("registry/registry.yaml"), shadow_first()).unwrap();
    std::fs::write(dir.path().join("registry/alias.yaml"), alias("7")).unwrap();
    let check = support::slipway(&["validate", "registry"], dir.path());
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    let run_once = || {
        support::sagemaker::run_once_with(
            dir.path(),
            &moto,
            &["--allowed-destinations", "127.0.0.1"],
        )
    };
    let run = run_once();
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(variants(&moto), ("v7=100".to_string(), String::new()));

    // 8: a shadow copying 50% of 7's requests, then a canary, then 8 alone.
    put_errors(&moto, "8", 0.0);
    std::fs::write(dir.path().join("registry/alias.yaml"), alias("8")).unwrap();
    let seen = std::thread::scope(|s| {
        let running = s.spawn(run_once);
        let seen = watch(&moto, |(p, _)| p == "v8=100");
        let run = running.join().unwrap();
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
        seen
    });
    assert!(shadow_seen(&seen, "v7=100", "v8=50"), "{seen:?}");
    assert!(
        seen.iter().any(|(p, s)| p == "v7=50 v8=50" && s.is_empty()),
        "{seen:?}"
    );
    assert_eq!(seen.last().unwrap(), &("v8=100".to_string(), String::new()));
    let h = history(dir.path());
    assert!(h.contains("50% of requests mirrored to 8"), "{h}");
    assert!(h.contains("metric errors = 0.0: Success"), "{h}");

    // 9 fails as a shadow: rolled back before it serves anyone; its shadow variant goes.
    put_errors(&moto, "9", 3.0);
    std::fs::write(dir.path().join("registry/alias.yaml"), alias("9")).unwrap();
    let seen = std::thread::scope(|s| {
        let running = s.spawn(run_once);
        let seen = watch(&moto, |_| running.is_finished());
        let run = running.join().unwrap();
        assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
        seen
    });
    assert!(shadow_seen(&seen, "v8=100", "v9=50"), "{seen:?}");
    assert!(
        seen.iter().all(|(p, _)| p == "v8=100"),
        "9 never served: {seen:?}"
    );
    eventually(Duration::from_secs(30), || {
        let _ = run_once();
        (variants(&moto) == ("v8=100".to_string(), String::new())).then_some(())
    });
    let h = history(dir.path());
    assert!(
        h.contains("metric errors = 3.0: Failure")
            && h.contains("analysis failed at the shadow step (50% mirrored)")
            && h.contains("RolledBack"),
        "{h}"
    );
}

#[test]
fn in_a_cluster_the_same_shadow_variant_comes_before_the_canary() {
    let moto = Moto::start();
    let cluster = Cluster::start(&moto, &shadow_first());
    cluster.until("7 Healthy", Duration::from_secs(60));
    put_errors(&moto, "8", 0.0);
    cluster.move_alias("8");
    let seen = watch(&moto, |(p, _)| p == "v8=100");
    assert!(
        shadow_seen(&seen, "v7=100", "v8=50"),
        "{seen:?}\n{}",
        cluster.said()
    );
    assert!(
        seen.iter().any(|(p, s)| p == "v7=50 v8=50" && s.is_empty()),
        "{seen:?}"
    );
    cluster.until("8 Healthy", Duration::from_secs(60));
    let messages = cluster.get("{.status.history[*].message}");
    assert!(
        messages.contains("50% of requests mirrored to 8"),
        "{messages}\n{}",
        cluster.said()
    );
    assert_eq!(endpoint(&moto)["variants"], serde_json::json!(["v8"]));
    cluster.stop();
}
