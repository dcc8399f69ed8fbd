//! Plan diffing and rendering.

use chrono::TimeZone;

use super::*;
use crate::catalog::Resource;
use crate::policy::approvals::{Review, ReviewUser, SignOffs};
use crate::testing::{catalog, registry, result};

const HEAD: &str = "2222222222222222222222222222222222222222";

fn inputs(results_yaml: Option<&str>, approvers: &[&str]) -> PlanInputs {
    let mut results = Results::default();
    if let Some(r) = results_yaml {
        let cat = catalog(&format!("{}\n---\n{r}", registry("1")));
        results.add(cat.objects().iter().filter_map(|o| match &o.resource {
            Resource::Evaluation(e) => Some(&**e),
            _ => None,
        }));
    }
    PlanInputs {
        base: Rev {
            name: "main".into(),
            commit: "1111111111111111111111111111111111111111".into(),
        },
        head: Rev {
            name: "promote".into(),
            commit: HEAD.into(),
        },
        results,
        signoffs: SignOffs {
            reviews: approvers
                .iter()
                .map(|u| Review {
                    user: ReviewUser {
                        login: u.to_string(),
                    },
                    state: "APPROVED".into(),
                    commit_id: Some(HEAD.into()),
                    submitted_at: Some(
                        chrono::Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap(),
                    ),
                })
                .collect(),
            head: Some(HEAD.into()),
            author: Some("erin".into()),
        },
        now: chrono::Utc
            .with_ymd_and_hms(2026, 11, 26, 12, 0, 0)
            .unwrap(),
        ..PlanInputs::default()
    }
}

#[test]
fn identical_catalogs_have_no_changes() {
    let c = catalog(&registry("1"));
    let p = plan(&c, &c, &inputs(None, &[]));
    assert!(p.changes.is_empty());
    assert_eq!(p.exit_code(), exit::NO_CHANGES);
    assert!(render::text(&p).contains("No changes."));
}

#[test]
fn an_alias_move_shows_from_to_and_the_rollout() {
    let (base, head) = (catalog(&registry("1")), catalog(&registry("2")));
    let p = plan(
        &base,
        &head,
        &inputs(Some(&result("2", "Passed", 0.9, 0.88, "1")), &["alice"]),
    );
    assert_eq!(p.changes.len(), 1);
    let c = &p.changes[0];
    assert_eq!(
        (c.kind.as_str(), c.action),
        ("ModelAlias", Operation::Update)
    );
    assert_eq!((c.from.as_deref(), c.to.as_deref()), (Some("1"), Some("2")));
    assert_eq!(c.rollouts.len(), 1);
    assert_eq!(c.rollouts[0].deployment, "default/api");
    assert_eq!(
        c.rollouts[0].strategy,
        "Canary 20% (1m) → 100%, auto-rollback"
    );
    assert_eq!(p.exit_code(), exit::ALLOWED);
    let text = render::text(&p);
    assert!(
        text.contains("~ ModelAlias default/m-production  production: 1 → 2"),
        "{text}"
    );
    assert!(
        text.contains(
            "Plan: 0 to create, 1 to update, 0 to delete; 0 denied or awaiting approval."
        ),
        "{text}"
    );
}

#[test]
fn a_denied_move_exits_three_and_says_why() {
    let (base, head) = (catalog(&registry("1")), catalog(&registry("2")));
    let p = plan(&base, &head, &inputs(None, &[]));
    assert_eq!(p.summary.denied, 1);
    assert_eq!(p.exit_code(), exit::DENIED);
    let md = render::markdown(&p);
    assert!(md.starts_with(render::COMMENT_MARKER));
    assert!(
        md.contains("evaluation `eval` of m version 2 has no result"),
        "{md}"
    );
    assert!(
        md.contains(
            "| `production/ml-lead` | :hourglass: 0 / 1 | — | alice, bob, dana (group:ml-leads) |"
        ),
        "{md}"
    );
}

#[test]
fn the_json_has_exactly_the_contract_fields() {
    let (base, head) = (catalog(&registry("1")), catalog(&registry("2")));
    let p = plan(&base, &head, &inputs(None, &["alice", "mallory"]));
    let v: serde_json::Value = serde_json::from_str(&render::json(&p)).unwrap();
    let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&v), vec!["base", "changes", "head", "summary"]);
    let c = &v["changes"][0];
    assert_eq!(
        keys(c),
        vec![
            "action",
            "alias",
            "decision",
            "from",
            "kind",
            "model",
            "name",
            "namespace",
            "to"
        ]
    );
    assert_eq!(keys(&c["decision"]), vec!["allowed", "approvals", "rules"]);
    assert_eq!(
        keys(&c["decision"]["rules"][0]),
        vec!["effect", "message", "name", "passed", "policy", "values"]
    );
    assert_eq!(
        keys(&c["decision"]["approvals"][0]),
        vec!["eligible", "have", "ignored", "name", "required"]
    );
    assert_eq!(
        c["decision"]["approvals"][0]["ignored"][0]["user"],
        "mallory"
    );
    assert_eq!(
        keys(&v["summary"]),
        vec!["create", "delete", "denied", "update"]
    );
    assert_eq!(v["base"], "1111111111111111111111111111111111111111");
}

#[test]
fn changing_a_versions_artifact_is_an_error() {
    let base = catalog(&registry("1"));
    let head = catalog(&registry("1").replace("file://2", "file://2-retrained"));
    let p = plan(&base, &head, &inputs(None, &[]));
    assert_eq!(p.exit_code(), exit::ERROR);
    assert_eq!(p.errors.len(), 1);
    let e = &p.errors[0];
    assert_eq!(e.category, crate::diagnostics::Category::Immutable);
    assert_eq!(e.field, "spec.artifact.uri");
    assert!(e.message.contains("register a new ModelVersion"));
    assert_eq!(p.changes[0].fields[0].path, "spec.artifact.uri");
}

#[test]
fn creates_and_deletes_are_counted() {
    let base = catalog(&registry("1"));
    let extra = "---\napiVersion: slipway.dev/v1alpha1\nkind: Group\nmetadata: {name: reviewers}\nspec: {members: [zoe]}\n";
    let head = catalog(&format!("{}\n{extra}", registry("1")));
    let p = plan(&base, &head, &inputs(None, &[]));
    assert_eq!((p.summary.create, p.summary.delete), (1, 0));
    assert!(render::text(&p).contains("+ Group default/reviewers"));
    let p = plan(&head, &base, &inputs(None, &[]));
    assert_eq!((p.summary.create, p.summary.delete), (0, 1));
    assert!(render::text(&p).contains("- Group default/reviewers"));
}

#[test]
fn field_diffs_name_leaf_paths() {
    let a = serde_json::json!({"steps": [{"weight": 10}], "type": "Canary"});
    let b = serde_json::json!({"steps": [{"weight": 20}], "type": "Canary", "interval": "1m"});
    let d = diff(&a, &b, "spec");
    assert_eq!(
        d.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
        vec!["spec.interval", "spec.steps[0].weight"]
    );
}

#[test]
fn huge_comments_are_truncated_with_a_note() {
    let base = catalog(&registry("1"));
    let mut many = registry("1");
    for i in 0..900 {
        many.push_str(&format!(
            "\n---\napiVersion: slipway.dev/v1alpha1\nkind: ModelVersion\nmetadata: {{name: m-x{i}}}\nspec: {{model: m, version: \"x{i}\", artifact: {{uri: file://x, digest: \"sha256:0{i}\"}}}}\n"
        ));
        many.push_str(&format!(
            "---\napiVersion: slipway.dev/v1alpha1\nkind: ModelAlias\nmetadata: {{name: m-a{i}}}\nspec: {{model: m, alias: a{i}, version: \"x{i}\"}}\n"
        ));
    }
    let head = catalog(&many);
    let p = plan(&base, &head, &inputs(None, &[]));
    let md = render::markdown(&p);
    assert!(md.len() <= render::COMMENT_LIMIT, "{}", md.len());
    assert!(md.contains("**Truncated:**"), "no truncation note");
    assert!(md.contains("more changes not shown"));
}

#[test]
fn a_deployment_whose_analysis_its_target_cannot_measure_is_named_in_the_plan() {
    // The same registry, its deployment moved to a Kubernetes target with thresholds.
    let on_kubernetes = |production: &str| {
        registry(production).replace(
            "  target: {local: {command: [python3, serve.py], port: 9000}}\n  strategy: {type: Canary, steps: [{weight: 20, pause: 1m}]}",
            "  target: {kubernetes: {image: 'serve:1', replicas: 4, port: 8080}}\n  strategy: {type: Canary, steps: [{weight: 20, pause: 1m}], analysis: {maxErrorRatio: 0.01, minRequests: 50}}",
        )
    };
    assert_ne!(
        on_kubernetes("1"),
        registry("1"),
        "the fixture changed shape"
    );
    let (base, head) = (catalog(&on_kubernetes("1")), catalog(&on_kubernetes("2")));
    let p = plan(
        &base,
        &head,
        &inputs(Some(&result("2", "Passed", 0.9, 0.88, "1")), &["alice"]),
    );
    let c = &p.changes[0];
    assert_eq!(
        c.warnings,
        [
            "ModelDeployment default/api: strategy.analysis asks for minRequests, maxErrorRatio, which a kubernetes target cannot measure: its steps are judged by its Deployment's health alone (available replicas and progress); remove them or choose a target that measures them",
            // 20% of 4 replicas is less than a pod: 1 candidate pod beside all 4 of the stable.
            "ModelDeployment default/api: the 20% step runs 5 pods on a target of 4 replicas, to hold the candidate's one pod to its share; set replicas to at least 5 to avoid it"
        ]
    );
    let text = render::text(&p);
    assert!(text.contains("      ! ModelDeployment default/api: strategy.analysis asks for minRequests, maxErrorRatio"), "{text}");
    let md = render::markdown(&p);
    assert!(
        md.contains("- :warning: ModelDeployment default/api: strategy.analysis"),
        "{md}"
    );
    // Adding the thresholds to the deployment alone (a strategy-only change) says so too.
    let p = plan(
        &catalog(&registry("1")),
        &catalog(&on_kubernetes("1")),
        &inputs(None, &["alice"]),
    );
    let d = p
        .changes
        .iter()
        .find(|c| c.kind == "ModelDeployment")
        .unwrap();
    assert_eq!(d.warnings.len(), 2, "{:?}", d.warnings);
    // The local router measures them: nothing to say.
    let p = plan(
        &catalog(&registry("1")),
        &catalog(&registry("2")),
        &inputs(Some(&result("2", "Passed", 0.9, 0.88, "1")), &["alice"]),
    );
    assert!(p.changes.iter().all(|c| c.warnings.is_empty()));
}

#[test]
fn plan_names_a_move_back_to_a_served_version_a_rollback_and_does_not_hold_it_to_its_old_comparison()
 {
    // Production serves 2 and moves back to 1, which was compared against its own predecessor.
    let (base, head) = (catalog(&registry("2")), catalog(&registry("1")));
    let old_result = result("1", "Passed", 0.80, 0.90, "0");
    let key = head
        .objects()
        .iter()
        .find(|o| o.key.kind == slipway_crd::Kind::ModelAlias)
        .unwrap()
        .key
        .clone();
    let mut served = inputs(Some(&old_result), &["alice"]);
    let pair = |v: &str| (v.to_string(), format!("sha256:0{v}"));
    served.served = [(key.clone(), [pair("1"), pair("2")].into())].into();
    let p = plan(&base, &head, &served);
    let c = &p.changes[0];
    assert!(c.rollback);
    assert!(c.decision.allowed, "{}", c.decision.summary());
    let text = render::text(&p);
    assert!(
        text.contains("production: 2 → 1 (rollback: production served 1 before)"),
        "{text}"
    );
    let json: Value = serde_json::from_str(&render::json(&p)).unwrap();
    assert_eq!(json["changes"][0]["rollback"], true);
    // Still approved as the set says: without the ML lead it awaits approval.
    let mut unapproved = inputs(Some(&old_result), &[]);
    unapproved.served = served.served.clone();
    let p = plan(&base, &head, &unapproved);
    assert!(!p.changes[0].decision.allowed);
    assert_eq!(p.changes[0].decision.denying_rules().count(), 0);
    // A version the alias never served is held to its comparison, and is no rollback.
    let mut never = inputs(Some(&old_result), &["alice"]);
    // (1 served with another artifact counts as never served.)
    never.served = [(key, [pair("2"), ("1".into(), "sha256:ff".into())].into())].into();
    let p = plan(&base, &head, &never);
    assert!(!p.changes[0].rollback && !p.changes[0].decision.allowed);
    let json: Value = serde_json::from_str(&render::json(&p)).unwrap();
    assert!(json["changes"][0].get("rollback").is_none());
    assert!(
        render::text(&p).contains("production: 2 → 1\n"),
        "{}",
        render::text(&p)
    );
}

#[test]
fn a_map_key_that_is_not_a_plain_name_is_quoted_in_a_path() {
    let a = serde_json::json!({"env": {"LEVEL": "info"}});
    let b =
        serde_json::json!({"env": {"LEVEL": "info", "X: (absent) → \"1\"\n    spec.image": "y"}});
    let d = diff(&a, &b, "spec");
    assert_eq!(d.len(), 1);
    assert_eq!(
        d[0].path,
        r#"spec.env["X: (absent) → \"1\"\n    spec.image"]"#
    );
    assert!(!d[0].path.contains('\n'));
    let plain = diff(&a, &serde_json::json!({"env": {"LEVEL": "debug"}}), "spec");
    assert_eq!(plain[0].path, "spec.env.LEVEL");
}

/// Issue 22 §7: the plan says what judges a rollout's steps — thresholds and each metric with
/// its provider, query and conditions — in text and in the pull-request comment.
#[test]
fn the_plan_describes_the_metrics_that_judge_a_rollout() {
    let with_metric = |production: &str| {
        registry(production).replace(
            "  strategy: {type: Canary, steps: [{weight: 20, pause: 1m}]}",
            "  strategy: {type: Canary, steps: [{weight: 20, pause: 1m}], analysis: {maxErrorRatio: 0.01, metrics: [{name: errors, interval: 30s, successCondition: 'result < 0.05', failureCondition: 'result > 0.2', failureLimit: 2, inconclusiveLimit: 3, provider: {prometheus: {address: 'http://prometheus:9090', query: 'sum(errors{version=\"{{version}}\"})'}}}]}}",
        )
    };
    assert_ne!(with_metric("1"), registry("1"), "the fixture changed shape");
    let p = plan(
        &catalog(&with_metric("1")),
        &catalog(&with_metric("2")),
        &inputs(Some(&result("2", "Passed", 0.9, 0.88, "1")), &["alice"]),
    );
    let r = &p.changes[0].rollouts[0];
    assert_eq!(
        r.analysis,
        [
            "thresholds: error ratio ≤ 0.01, at least 20 requests per step",
            "metric errors: prometheus http://prometheus:9090 `sum(errors{version=\"{{version}}\"})` every 30s; success `result < 0.05`, failure `result > 0.2`; rolls back after 3 failed measurement(s) in a step; more than 3 inconclusive: Rollback",
        ]
    );
    assert!(render::text(&p).contains("          judged by metric errors: prometheus"));
    // Request rules are part of the strategy's line.
    let routed = |production: &str| {
        registry(production).replace(
            "  strategy: {type: Canary, steps: [{weight: 20, pause: 1m}]}",
            "  strategy: {type: Canary, steps: [{weight: 20, pause: 1m}], match: [{header: x-cohort, value: beta}], stickyBy: {cookie: session}}",
        )
    };
    let p2 = plan(
        &catalog(&routed("1")),
        &catalog(&routed("2")),
        &inputs(Some(&result("2", "Passed", 0.9, 0.88, "1")), &["alice"]),
    );
    assert_eq!(
        p2.changes[0].rollouts[0].strategy,
        "Canary 20% (1m) → 100%, auto-rollback; header x-cohort = \"beta\" → candidate; users sticky by cookie session"
    );
    // A shadow step, and the agreement that judges it.
    let shadowed = |production: &str| {
        registry(production).replace(
            "  strategy: {type: Canary, steps: [{weight: 20, pause: 1m}]}",
            "  strategy: {type: Canary, steps: [{weight: 0, mirror: 50, pause: 1h}, {weight: 20, pause: 1m}], analysis: {minAgreement: 0.98, agreementTolerance: 0.001}}\n  shadows: [{version: '1', mirror: 10}, {version: '2', mirror: 5}]",
        )
    };
    let p3 = plan(
        &catalog(&shadowed("1")),
        &catalog(&shadowed("2")),
        &inputs(Some(&result("2", "Passed", 0.9, 0.88, "1")), &["alice"]),
    );
    let r = &p3.changes[0].rollouts[0];
    assert_eq!(
        r.strategy,
        "Canary shadow 50% (1h) → 20% (1m) → 100%, auto-rollback; shadows: version 1 (10% mirrored), version 2 (5% mirrored)"
    );
    assert_eq!(
        r.analysis,
        [
            "thresholds: shadow agreement ≥ 0.98 (numbers within 0.001), at least 20 requests per step"
        ]
    );
    assert!(render::markdown(&p).contains("  - judged by metric errors: prometheus"));
    assert!(
        p.changes[0].warnings.is_empty(),
        "{:?}",
        p.changes[0].warnings
    );
}

/// The hostile review: a pull request that adds a secret reference to a deployment's metric
/// headers is held to a sign-off like any other secret reference.
#[test]
fn a_secret_added_to_a_metrics_headers_needs_a_sign_off() {
    let with_header = |production: &str, header: bool| {
        let headers = if header {
            ", headers: {Authorization: {env: QUALITY_TOKEN}}"
        } else {
            ""
        };
        registry(production).replace(
            "  strategy: {type: Canary, steps: [{weight: 20, pause: 1m}]}",
            &format!("  strategy: {{type: Canary, steps: [{{weight: 20, pause: 1m}}], analysis: {{metrics: [{{name: q, successCondition: 'result > 0.9', provider: {{http: {{url: 'http://q/'{headers}}}}}}}]}}}}"),
        )
    };
    assert_ne!(
        with_header("1", true),
        registry("1"),
        "the fixture changed shape"
    );
    let (base, head) = (
        catalog(&with_header("1", false)),
        catalog(&with_header("1", true)),
    );
    let p = plan(&base, &head, &inputs(None, &[]));
    let mut c = p
        .changes
        .iter()
        .find(|c| c.kind == "ModelDeployment")
        .unwrap()
        .clone();
    // Its policy asks for a sign-off here; without one, the new reference is an error.
    assert!(!c.decision.approvals.is_empty());
    c.decision.approvals.clear();
    let object = |cat: &crate::catalog::Catalog| {
        cat.objects()
            .iter()
            .find(|o| matches!(o.resource, Resource::ModelDeployment(_)))
            .unwrap()
            .clone()
    };
    let errors = super::secrets::unprotected(&c, Some(&object(&base)), &object(&head));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0]
            .field
            .contains("metrics[0].provider.http.headers.Authorization")
            && errors[0].message.contains("env QUALITY_TOKEN"),
        "{errors:?}"
    );
}
