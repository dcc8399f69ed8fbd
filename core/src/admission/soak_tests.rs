//! Admission of a production move the model's soak holds: admitted when waiting alone lets it
//! through (the reconciler makes it then), denied when it needs more than time.

use super::tests::{Namespace, cluster};
use super::*;

const DIGEST_8: &str = "sha256:9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b";

/// The example cluster whose model asks for a day in staging, where 8 has served since 09:00
/// (three hours before the request), with these approvals of the move to 8.
fn soaking(approvals: &[(&str, &str, &[&str])]) -> Namespace {
    let c = cluster(approvals);
    let mut objects = c.objects.clone();
    for o in &mut objects {
        if o["kind"] == "RegisteredModel" {
            o["spec"]["soak"] = json!({"alias": "staging", "duration": "24h"});
        }
        if o["kind"] == "ModelAlias" && o["spec"]["alias"] == "staging" {
            o["status"] = json!({"resolvedVersion": "8", "history": [
                {"to": "7", "artifactDigest": "sha256:7", "at": "2026-11-20T09:00:00Z", "decision": "allowed"},
                {"from": "7", "to": "8", "artifactDigest": DIGEST_8, "at": "2026-11-26T09:00:00Z", "decision": "allowed"},
            ]});
        }
    }
    let approvals = c
        .approvals
        .iter()
        .map(|a| serde_json::to_value(a).unwrap())
        .collect();
    Namespace::of(objects, approvals)
}

fn move_production(cluster: &Namespace) -> Verdict {
    let alias = |v: &str| {
        json!({"apiVersion": "slipway.dev/v1alpha1", "kind": "ModelAlias",
               "metadata": {"name": "pitch-frame-classifier-production", "namespace": "default",
                            "uid": "u-1", "generation": 4},
               "spec": {"model": "pitch-frame-classifier", "alias": "production", "version": v},
               "status": {"resolvedVersion": v}})
    };
    let req = Request {
        kind: "ModelAlias".into(),
        namespace: "default".into(),
        name: "pitch-frame-classifier-production".into(),
        operation: Operation::Update,
        user: "erin".into(),
        groups: vec!["ml-engineers".into()],
        object: Some(alias("8")),
        old_object: Some(alias("7")),
    };
    validate(
        &req,
        &cluster.view(),
        "2026-11-26T12:00:00Z".parse().unwrap(),
    )
}

#[test]
fn a_move_only_the_soak_holds_is_admitted_and_held_until_it_ends() {
    let verdict = move_production(&soaking(&[("alice", "8", &["ml-leads"])]));
    let Verdict::Allowed(warnings) = verdict else {
        panic!("denied: {verdict:?}");
    };
    assert_eq!(
        warnings,
        [
            "ModelAlias default/pitch-frame-classifier-production: held until 2026-11-27 09:00 UTC by production/soaked-in-staging; the controller makes the move then"
        ],
    );
    // Without the lead's approval, waiting does not let it through: denied, saying both.
    let Verdict::Denied(why) = move_production(&soaking(&[])) else {
        panic!("allowed");
    };
    assert!(
        why.contains("version 8 served in staging for 3h of 24h; earliest 2026-11-27 09:00 UTC"),
        "{why}"
    );
    assert!(why.contains("approval ml-lead: has 0 of 1"), "{why}");
}
