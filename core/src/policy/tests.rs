//! Decisions of the default policy set on a small registry.

use chrono::TimeZone;
use slipway_crd::promotion_policy::Operation;

use super::approvals::{Review, ReviewUser, SignOffs};
use super::*;
use crate::catalog::Resource;
use crate::catalog::results::{self, Results};
use crate::testing::{catalog, registry, result};

const HEAD: &str = "cccccccccccccccccccccccccccccccccccccccc";

fn decide(results_yaml: &str, reviews: &[(&str, &str)], author: &str) -> Decision {
    decide_in(&registry("1"), results_yaml, reviews, author)
}

fn decide_in(
    registry: &str,
    results_yaml: &str,
    reviews: &[(&str, &str)],
    author: &str,
) -> Decision {
    let cat = catalog(registry);
    let mut results = Results::default();
    if !results_yaml.is_empty() {
        let res = catalog(&format!("{registry}\n---\n{results_yaml}"));
        results.add(res.objects().iter().filter_map(|o| match &o.resource {
            Resource::Evaluation(e) => Some(&**e),
            _ => None,
        }));
    }
    let change = ChangeFacts {
        kind: "ModelAlias".into(),
        name: "m-production".into(),
        namespace: "default".into(),
        operation: Operation::Update,
        model: Some("m".into()),
        alias: Some("production".into()),
        from: Some("1".into()),
        to: Some("2".into()),
        fields: Vec::new(),
        previous_alias: None,
        rollback: false,
        experiment: false,
    };
    let input = DecisionInput {
        change,
        candidate: results::version(cat.version("default", "m", "2").unwrap(), &results),
        current: results::version(cat.version("default", "m", "1").unwrap(), &results),
        model: results::model(cat.model("default", "m").unwrap()),
        request: Requester {
            user: Some(author.into()),
            groups: vec![],
            source: "git".into(),
        },
        now: chrono::Utc
            .with_ymd_and_hms(2026, 11, 26, 12, 0, 0)
            .unwrap(),
    };
    let signoffs = SignOffs {
        reviews: reviews
            .iter()
            .enumerate()
            .map(|(i, (u, c))| Review {
                user: ReviewUser {
                    login: u.to_string(),
                },
                state: "APPROVED".into(),
                commit_id: Some(c.to_string()),
                submitted_at: Some(
                    chrono::Utc
                        .with_ymd_and_hms(2026, 11, 25, 9, i as u32, 0)
                        .unwrap(),
                ),
            })
            .collect(),
        head: Some(HEAD.into()),
        author: Some(author.into()),
    };
    let members = |g: &str| cat.group("default", g).map(|g| g.spec.members.clone());
    cat.policies.decide(&input, &signoffs, &members)
}

fn rule<'a>(d: &'a Decision, name: &str) -> &'a RuleResult {
    d.rules
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no rule {name}: {d:#?}"))
}

#[test]
fn a_passed_candidate_with_a_lead_approval_is_allowed() {
    let d = decide(
        &result("2", "Passed", 0.90, 0.88, "1"),
        &[("alice", HEAD)],
        "erin",
    );
    assert!(d.allowed, "{d:#?}");
    assert_eq!(d.summary(), "allowed");
    let r = rule(&d, "no-primary-metric-regression");
    assert_eq!(
        r.values["candidate.evaluations[\"eval\"].metrics[\"f1\"]"],
        0.90
    );
    assert_eq!(
        r.values["candidate.evaluations[\"eval\"].baselineMetrics[\"f1\"]"],
        0.88
    );
    assert_eq!(r.values["model.primaryMetric.maxRegression"], 0.01);
}

#[test]
fn a_missing_evaluation_denies_naming_the_evaluation() {
    let d = decide("", &[("alice", HEAD)], "erin");
    assert!(!d.allowed);
    let r = rule(&d, "candidate-evaluations-passed");
    assert!(!r.passed);
    assert!(
        r.message
            .contains("evaluation `eval` of m version 2 has no result"),
        "{}",
        r.message
    );
    assert!(r.message.ends_with("(fail closed)"));
}

#[test]
fn a_regression_beyond_the_tolerance_is_denied() {
    let d = decide(
        &result("2", "Passed", 0.85, 0.88, "1"),
        &[("alice", HEAD)],
        "erin",
    );
    let r = rule(&d, "no-primary-metric-regression");
    assert!(!r.passed);
    assert!(
        r.message.contains("primary metric is worse"),
        "{}",
        r.message
    );
    assert!(
        d.summary()
            .starts_with("denied by production/no-primary-metric-regression")
    );
}

#[test]
fn a_regression_within_the_tolerance_is_allowed() {
    let d = decide(
        &result("2", "Passed", 0.875, 0.88, "1"),
        &[("alice", HEAD)],
        "erin",
    );
    assert!(rule(&d, "no-primary-metric-regression").passed);
}

#[test]
fn a_comparison_against_another_baseline_is_denied() {
    let d = decide(
        &result("2", "Passed", 0.9, 0.88, "0"),
        &[("alice", HEAD)],
        "erin",
    );
    let r = rule(&d, "baseline-is-current-production");
    assert!(!r.passed);
    assert_eq!(r.values["current.version"], "1");
}

#[test]
fn a_failed_evaluation_is_denied() {
    let d = decide(
        &result("2", "Failed", 0.9, 0.88, "1"),
        &[("alice", HEAD)],
        "erin",
    );
    assert!(!rule(&d, "candidate-evaluations-passed").passed);
}

#[test]
fn without_a_lead_approval_the_change_awaits_approval() {
    let d = decide(&result("2", "Passed", 0.9, 0.88, "1"), &[], "erin");
    assert!(!d.allowed);
    assert_eq!(d.summary(), "awaiting approval: ml-lead (0/1)");
    assert_eq!(d.approvals[0].eligible, vec!["alice", "bob", "dana"]);
}

#[test]
fn a_leads_own_change_needs_another_lead() {
    let d = decide(
        &result("2", "Passed", 0.9, 0.88, "1"),
        &[("dana", HEAD)],
        "dana",
    );
    assert!(!d.allowed);
    assert_eq!(
        d.approvals[0].ignored[0].reason,
        "author of the change cannot approve it"
    );
}

#[test]
fn an_expression_error_denies() {
    let cat = catalog(
        r#"apiVersion: slipway.dev/v1alpha1
kind: PromotionPolicy
metadata: {name: strict}
spec:
  rules:
    - name: divides
      expression: "candidate.metrics.f1 / 0.0 > 1.0 && int(candidate.labels.team) > 0"
"#,
    );
    let input = DecisionInput {
        change: ChangeFacts {
            kind: "ModelAlias".into(),
            name: "x".into(),
            namespace: "default".into(),
            operation: Operation::Create,
            model: None,
            alias: None,
            from: None,
            to: None,
            fields: Vec::new(),
            previous_alias: None,
            rollback: false,
            experiment: false,
        },
        candidate: serde_json::json!({"metrics": {"f1": 1.0}, "labels": {"team": "vision"}}),
        current: serde_json::Value::Null,
        model: serde_json::Value::Null,
        request: Requester::default(),
        now: crate::testing::now(),
    };
    let d = cat.policies.decide(&input, &SignOffs::default(), &|_| None);
    assert!(!d.allowed);
    assert!(!d.rules[0].passed);
    assert!(
        d.rules[0].message.ends_with("(fail closed)"),
        "{}",
        d.rules[0].message
    );
}

#[test]
fn a_warn_rule_does_not_deny() {
    let cat = catalog(
        r#"apiVersion: slipway.dev/v1alpha1
kind: PromotionPolicy
metadata: {name: soft}
spec:
  rules:
    - {name: labelled, expression: "has(candidate.labels.owner)", effect: warn, message: add an owner label}
"#,
    );
    let input = DecisionInput {
        change: ChangeFacts {
            kind: "ModelVersion".into(),
            name: "x".into(),
            namespace: "default".into(),
            operation: Operation::Create,
            model: None,
            alias: None,
            from: None,
            to: None,
            fields: Vec::new(),
            previous_alias: None,
            rollback: false,
            experiment: false,
        },
        candidate: serde_json::json!({"labels": {}}),
        current: serde_json::Value::Null,
        model: serde_json::Value::Null,
        request: Requester::default(),
        now: crate::testing::now(),
    };
    let d = cat.policies.decide(&input, &SignOffs::default(), &|_| None);
    assert!(d.allowed);
    assert!(!d.rules[0].passed);
    assert_eq!(d.rules[0].message, "add an owner label");
}

#[test]
fn a_rule_that_reads_an_unfinished_evaluation_says_it_is_still_running() {
    let running = result("2", "Passed", 0.90, 0.88, "1")
        .replace("phase: Succeeded", "phase: Running")
        .replace("  verdict: Passed\n", "");
    let d = decide(&running, &[("alice", HEAD)], "erin");
    assert!(!d.allowed);
    let r = rule(&d, "candidate-evaluations-passed");
    assert!(!r.passed);
    assert_eq!(
        r.message,
        "evaluation `eval` of m version 2 has not finished (Running): there is no verdict yet; ask again once it has finished (its status and report say how it went)"
    );
    // A finished one that failed keeps the rule's own advice.
    let failed = decide(
        &result("2", "Failed", 0.90, 0.88, "1"),
        &[("alice", HEAD)],
        "erin",
    );
    assert!(
        rule(&failed, "candidate-evaluations-passed")
            .message
            .starts_with("An evaluation suite of the candidate did not pass")
    );
}

/// The registry with signatures on versions 1 (production) and 2 (the candidate).
fn with_signatures(one: Option<&str>, two: Option<&str>) -> String {
    let mut r = registry("1");
    for (v, sig) in [("1", one), ("2", two)] {
        if let Some(sig) = sig {
            let at = format!("digest: \"sha256:0{v}\"}}");
            r = r.replacen(&at, &format!("{at}, signature: {sig}"), 1);
        }
    }
    r
}

const SIG_1: &str = "{inputs: [{name: x, type: double}], outputs: [{name: label, type: string}]}";

#[test]
fn a_candidate_must_take_what_production_takes() {
    let passed = result("2", "Passed", 0.90, 0.88, "1");
    let reviews = [("alice", HEAD)];
    let decide = |one, two| decide_in(&with_signatures(one, two), &passed, &reviews, "erin");
    // Compatible: a new optional input and a new output.
    let compatible = "{inputs: [{name: x, type: double}, {name: z, type: long, optional: true}], outputs: [{name: label, type: string}, {name: p, type: double}]}";
    let d = decide(Some(SIG_1), Some(compatible));
    assert!(rule(&d, "compatible-signature").passed, "{d:#?}");
    assert!(d.allowed, "{d:#?}");
    // Production declares none: nothing to compare.
    assert!(rule(&decide(None, Some(compatible)), "compatible-signature").passed);
    assert!(rule(&decide(None, None), "compatible-signature").passed);
    // Retyped input, removed output: denied, naming each field.
    let breaking = "{inputs: [{name: x, type: float}], outputs: []}";
    let d = decide(Some(SIG_1), Some(breaking));
    let r = rule(&d, "compatible-signature");
    assert!(!r.passed && !d.allowed);
    assert!(
        r.message.ends_with(
            "(input `x` retyped double → float (breaks callers); output `label` removed (breaks callers))"
        ),
        "{}",
        r.message
    );
    // A candidate that declares none, when production does.
    let r = rule(&decide(Some(SIG_1), None), "compatible-signature").clone();
    assert!(!r.passed);
    assert!(
        r.message.contains("the candidate declares no signature"),
        "{}",
        r.message
    );
}
