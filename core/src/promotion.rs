//! The alias decision both homes and the reconcilers make once a candidate's evaluations are in:
//! wait, or decide by the policies (in a cluster, approvals are checked again here; in git mode
//! they were enforced on the pull request).

use std::collections::BTreeSet;

use serde_json::Value;
use slipway_crd::Kind;
use slipway_crd::evaluation::EvaluationPhase;
use slipway_crd::promotion_policy::Operation;

use crate::catalog::Catalog;
use crate::catalog::results::{self, Results};
use crate::events::Event;
use crate::policy::approvals::SignOffs;
use crate::policy::{ChangeFacts, DecisionInput, Members, Requester};

const FINISHED: [EvaluationPhase; 2] = [EvaluationPhase::Succeeded, EvaluationPhase::Failed];

/// Where an alias move stands, by the data rules of the policies.
#[derive(Debug)]
pub enum Promotion {
    /// The model or the target version does not exist (validation reports it).
    Unresolvable,
    /// Evaluation suites of the candidate that have not finished.
    Waiting(Vec<String>),
    /// The policies' decision: rules, and approvals where the caller gives them.
    Decided(crate::policy::Decision),
}

/// What an alias served: versions, each with the artifact digest it had then.
pub type Served = BTreeSet<(String, String)>;

/// What an alias served, by its recorded moves: each allowed move's version with the artifact
/// digest it had when the alias moved to it (a move recorded without one, before moves recorded
/// digests, counts for nothing: what it served cannot be told from a label registered again).
pub fn served(history: &[slipway_crd::model_alias::AliasMove]) -> Served {
    history
        .iter()
        .filter(|m| m.decision == slipway_crd::model_alias::AliasDecision::Allowed)
        .filter_map(|m| Some((m.to.clone(), m.artifact_digest.clone()?)))
        .collect()
}

/// Why a deployment following an alias must not serve `version` now: the alias's latest move to
/// it recorded another artifact digest than the version has (the label was registered again
/// with another artifact since the move was decided). None when they agree, or when no move
/// recorded a digest (a move made before moves named their artifact).
pub fn artifact_drift(
    history: &[slipway_crd::model_alias::AliasMove],
    model: &str,
    version: &str,
    now: &str,
) -> Option<String> {
    let moved = history
        .iter()
        .rev()
        .filter(|m| m.decision == slipway_crd::model_alias::AliasDecision::Allowed)
        .find(|m| m.to == version)?
        .artifact_digest
        .as_deref()?;
    (moved != now).then(|| {
        format!(
            "version {version} of {model} has artifact {now}, but the alias moved to it with \
             {moved}: the label was registered again with another artifact, and a version is \
             served only as it was approved; register the new artifact as a new version and \
             move the alias to it"
        )
    })
}

/// Whether moving an alias from `from` to `to`, whose artifact is `digest`, is a rollback:
/// away from the version it serves, back to one it served before with this very artifact.
pub fn is_rollback(served: &Served, from: Option<&str>, to: &str, digest: &str) -> bool {
    from.is_some_and(|f| f != to) && served.contains(&(to.to_string(), digest.to_string()))
}

/// Decides moving alias `a` (object `name` in `ns`) from the version its `status` resolves to
/// to `a.spec.version` once the candidate's evaluations have finished; a move back to a version
/// the status records it served is a rollback (`change.rollback`). Pure: the same decision in
/// git and Kubernetes mode.
/// `approvals`: the sign-offs bound to this move and who is in which group — Kubernetes mode
/// re-checks them, so a move admitted without the webhook is held; git mode gives none (they
/// were enforced on the pull request, which branch protection guards).
#[allow(clippy::too_many_arguments)]
pub fn promotion(
    catalog: &Catalog,
    results: &Results,
    ns: &str,
    name: &str,
    a: &slipway_crd::ModelAlias,
    status: &slipway_crd::model_alias::ModelAliasStatus,
    source: &str,
    now: chrono::DateTime<chrono::Utc>,
    approvals: Option<(&SignOffs, &Members<'_>)>,
) -> Promotion {
    let to = &a.spec.version;
    let resolved = status.resolved_version.as_deref();
    let (Some(model), Some(candidate)) = (
        catalog.model(ns, &a.spec.model),
        catalog.version(ns, &a.spec.model, to),
    ) else {
        return Promotion::Unresolvable;
    };
    let done: BTreeSet<String> = results
        .of(ns, &a.spec.model, to)
        .map(|r| {
            r.values()
                .filter(|e| {
                    e.status
                        .as_ref()
                        .is_some_and(|s| FINISHED.contains(&s.phase))
                })
                .map(|e| e.spec.suite.clone())
                .collect()
        })
        .unwrap_or_default();
    let pending: Vec<String> = model
        .spec
        .evaluations
        .iter()
        .map(|s| s.name.clone())
        .filter(|s| !done.contains(s))
        .collect();
    if !pending.is_empty() {
        return Promotion::Waiting(pending);
    }
    let input = DecisionInput {
        change: ChangeFacts {
            kind: Kind::ModelAlias.as_str().into(),
            name: name.to_string(),
            namespace: ns.into(),
            operation: if resolved.is_some() {
                Operation::Update
            } else {
                Operation::Create
            },
            model: Some(a.spec.model.clone()),
            alias: Some(a.spec.alias.clone()),
            from: resolved.map(str::to_string),
            to: Some(to.clone()),
            fields: Vec::new(),
            previous_alias: None,
            rollback: is_rollback(
                &served(&status.history),
                resolved,
                to,
                &candidate.spec.artifact.digest,
            ),
            experiment: false,
        },
        candidate: results::version(candidate, results),
        current: resolved
            .and_then(|r| catalog.version(ns, &a.spec.model, r))
            .map(|v| results::version(v, results))
            .unwrap_or(Value::Null),
        model: results::model(model),
        request: Requester {
            user: None,
            groups: vec![],
            source: source.into(),
        },
        now,
    };
    Promotion::Decided(catalog.policies.decide_with(&input, approvals))
}

/// Where an alias move stands, as its status says it.
#[derive(Clone, Debug, PartialEq)]
pub enum AliasStep<'a> {
    /// The alias already resolves to its version.
    Resolved,
    /// The model or the version does not exist.
    Unresolvable,
    /// Waiting for these evaluation suites of the candidate.
    Waiting(&'a [String]),
    /// The policies allowed the move, and it is made.
    Moved,
    /// The policies hold the move, for this reason.
    Held(&'a str),
}

/// What an alias status is written for.
#[derive(Clone, Debug)]
pub struct AliasFacts<'a> {
    /// `model/alias`, for messages.
    pub label: &'a str,
    /// The version the alias asks for.
    pub to: &'a str,
    /// The object's generation (Kubernetes mode), for `observedGeneration`.
    pub generation: Option<i64>,
    /// The artifact digest of the version it asks for, as registered (recorded with a move).
    pub digest: Option<&'a str>,
    /// The revision the move came from (git mode).
    pub revision: Option<&'a str>,
    /// Now.
    pub now: chrono::DateTime<chrono::Utc>,
}

/// The typed status an alias gets after `step` — the same document in both homes — and the
/// message that explains it. The resolution and the history carry forward unless the move is
/// made; the `Ready` condition keeps its transition time while its status does not change.
pub fn alias_status(
    previous: &slipway_crd::model_alias::ModelAliasStatus,
    step: &AliasStep<'_>,
    f: &AliasFacts<'_>,
) -> (slipway_crd::model_alias::ModelAliasStatus, String) {
    let (label, to) = (f.label, f.to);
    let mut status = previous.clone();
    let (ok, reason, message) = match step {
        AliasStep::Resolved => (true, "Resolved", format!("{label} resolves to {to}")),
        AliasStep::Unresolvable => (
            false,
            "Unresolvable",
            format!("{label} → {to}: the model or version does not exist"),
        ),
        AliasStep::Waiting(pending) => (
            false,
            "WaitingForEvaluations",
            format!(
                "{label} → {to}: waiting for evaluation {}",
                pending.join(", ")
            ),
        ),
        AliasStep::Moved => {
            let from = previous.resolved_version.clone();
            let message = format!("{label}: {} → {to}", from.as_deref().unwrap_or("(none)"));
            status.history.push(slipway_crd::model_alias::AliasMove {
                from: from.clone(),
                to: to.to_string(),
                artifact_digest: f.digest.map(str::to_string),
                by: None,
                at: Some(f.now),
                revision: f.revision.map(str::to_string),
                decision: slipway_crd::model_alias::AliasDecision::Allowed,
                message: None,
            });
            status.previous_version = from;
            status.resolved_version = Some(to.to_string());
            (true, "Resolved", message)
        }
        AliasStep::Held(why) => (
            false,
            "PromotionBlocked",
            format!("{label} → {to} held: {why}"),
        ),
    };
    status.conditions = vec![crate::conditions::condition(
        "Ready",
        ok,
        reason,
        &message,
        f.generation,
        &previous.conditions,
        f.now,
    )];
    (status, message)
}

/// What a home does with an alias this pass or look: the status to write (None: it says what
/// it said), what to announce (`AliasMoved`, or `PromotionBlocked` once per reason), the message,
/// and when to look again.
#[derive(Clone, Debug, PartialEq)]
pub struct AliasOutcome {
    /// The status to write, when it says something new.
    pub status: Option<slipway_crd::model_alias::ModelAliasStatus>,
    /// What the status says.
    pub message: String,
    /// The event to announce (history, notifications, a Kubernetes event).
    pub news: Option<Event>,
    /// When to look again without a change (None: only on a change).
    pub wait: Option<std::time::Duration>,
}

/// Whether an alias already rests where it asks to be: resolved to its version, and `Ready` for
/// this generation (none in git mode). Then nothing is decided or written.
pub fn settled(status: &slipway_crd::model_alias::ModelAliasStatus, f: &AliasFacts<'_>) -> bool {
    status.resolved_version.as_deref() == Some(f.to)
        && status.conditions.iter().any(|c| {
            c.type_ == "Ready" && c.status == "True" && c.observed_generation == f.generation
        })
}

/// One step of an alias, for both homes: `decided` is the promotion decision (None: the alias
/// already resolves to its version and only its status is brought up to date).
pub fn alias_step(
    status: &slipway_crd::model_alias::ModelAliasStatus,
    decided: Option<&Promotion>,
    f: &AliasFacts<'_>,
) -> AliasOutcome {
    use crate::limits::{ALIAS_HELD_POLL, ALIAS_UNRESOLVABLE_POLL, ALIAS_WAITING_POLL};
    let why;
    let (step, news, wait) = match decided {
        None => (AliasStep::Resolved, None, None),
        Some(Promotion::Unresolvable) => {
            (AliasStep::Unresolvable, None, Some(ALIAS_UNRESOLVABLE_POLL))
        }
        Some(Promotion::Waiting(pending)) => {
            (AliasStep::Waiting(pending), None, Some(ALIAS_WAITING_POLL))
        }
        Some(Promotion::Decided(d)) if d.allowed => {
            (AliasStep::Moved, Some(Event::AliasMoved), None)
        }
        Some(Promotion::Decided(d)) => {
            why = d.summary();
            (
                AliasStep::Held(&why),
                Some(Event::PromotionBlocked),
                Some(ALIAS_HELD_POLL),
            )
        }
    };
    let (next, message) = alias_status(status, &step, f);
    // A status that says something new is written (and a hold announced) once; the same words
    // are not written again. A move is always news.
    let said = |s: &slipway_crd::model_alias::ModelAliasStatus| {
        (
            s.resolved_version.clone(),
            s.conditions
                .first()
                .map(|c| (c.reason.clone(), c.message.clone(), c.observed_generation)),
        )
    };
    let changed = said(&next) != said(status) || step == AliasStep::Moved;
    AliasOutcome {
        status: changed.then_some(next),
        message,
        news: news.filter(|_| changed),
        wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_crd::model_alias::ModelAliasStatus;

    fn facts(to: &str, s: u32) -> AliasFacts<'_> {
        AliasFacts {
            label: "m/production",
            to,
            generation: Some(2),
            digest: Some("sha256:77"),
            revision: Some("git:abc"),
            now: chrono::DateTime::from_timestamp(1_800_000_000 + i64::from(s), 0).unwrap(),
        }
    }

    #[test]
    fn a_move_resolves_and_records_history_and_a_hold_keeps_the_resolution() {
        let (moved, message) = alias_status(
            &ModelAliasStatus::default(),
            &AliasStep::Moved,
            &facts("7", 0),
        );
        assert_eq!(message, "m/production: (none) → 7");
        assert_eq!(moved.resolved_version.as_deref(), Some("7"));
        assert_eq!(moved.history.len(), 1);
        assert_eq!(moved.conditions[0].reason, "Resolved");
        let (held, message) =
            alias_status(&moved, &AliasStep::Held("denied by p/r"), &facts("8", 5));
        assert_eq!(message, "m/production → 8 held: denied by p/r");
        assert_eq!(held.resolved_version.as_deref(), Some("7"));
        assert_eq!(held.history, moved.history);
        assert_eq!(held.conditions[0].status, "False");
        // Waiting after a hold: still not ready, so the transition time stays.
        let (waiting, _) = alias_status(
            &held,
            &AliasStep::Waiting(&["holdout".into()]),
            &facts("8", 9),
        );
        assert_eq!(
            waiting.conditions[0].last_transition_time,
            held.conditions[0].last_transition_time
        );
        let (again, _) = alias_status(&waiting, &AliasStep::Moved, &facts("8", 12));
        assert_eq!(
            (
                again.resolved_version.as_deref(),
                again.previous_version.as_deref()
            ),
            (Some("8"), Some("7"))
        );
        assert_ne!(
            again.conditions[0].last_transition_time,
            held.conditions[0].last_transition_time
        );
    }
}

#[cfg(test)]
mod step_tests {
    use super::*;
    use slipway_crd::model_alias::ModelAliasStatus;

    fn facts(to: &str) -> AliasFacts<'_> {
        AliasFacts {
            label: "m/production",
            to,
            generation: None,
            digest: None,
            revision: None,
            now: crate::testing::now(),
        }
    }

    fn held() -> Promotion {
        Promotion::Decided(crate::policy::Decision {
            allowed: false,
            ..Default::default()
        })
    }

    #[test]
    fn a_hold_is_written_and_announced_once_and_a_wait_is_written_once() {
        let s = ModelAliasStatus::default();
        let first = alias_step(&s, Some(&held()), &facts("8"));
        assert_eq!(first.news, Some(Event::PromotionBlocked));
        let written = first.status.unwrap();
        let again = alias_step(&written, Some(&held()), &facts("8"));
        assert_eq!((again.status, again.news), (None, None));
        let waiting = Promotion::Waiting(vec!["holdout".into()]);
        let w = alias_step(&written, Some(&waiting), &facts("8"));
        assert_eq!(
            w.message,
            "m/production → 8: waiting for evaluation holdout"
        );
        assert_eq!(
            alias_step(&w.status.unwrap(), Some(&waiting), &facts("8")).status,
            None
        );
    }

    #[test]
    fn a_move_is_always_news_and_then_the_alias_is_settled() {
        let allowed = Promotion::Decided(crate::policy::Decision {
            allowed: true,
            ..Default::default()
        });
        let moved = alias_step(&ModelAliasStatus::default(), Some(&allowed), &facts("7"));
        assert_eq!(moved.news, Some(Event::AliasMoved));
        let status = moved.status.unwrap();
        assert!(settled(&status, &facts("7")));
        assert!(!settled(&status, &facts("8")));
        // The unresolvable is said in status too, in both homes.
        let u = alias_step(&status, Some(&Promotion::Unresolvable), &facts("9"));
        assert_eq!(u.status.unwrap().conditions[0].reason, "Unresolvable");
    }
}

#[cfg(test)]
mod rollback_tests {
    use super::*;
    use crate::catalog::Resource;
    use crate::testing::{catalog, registry, result};
    use slipway_crd::model_alias::{AliasDecision, AliasMove, ModelAliasStatus};

    /// A recorded move to `to`, with the artifact digest the fixture registers for it.
    fn moved(from: Option<&str>, to: &str, decision: AliasDecision) -> AliasMove {
        AliasMove {
            from: from.map(str::to_string),
            to: to.into(),
            artifact_digest: Some(format!("sha256:0{to}")),
            decision,
            ..AliasMove::default()
        }
    }

    /// Production asks for 1 while it serves 2, with `history`; 1 was compared against its own
    /// predecessor 0, which was better than 1 by more than the tolerance.
    fn decide(history: Vec<AliasMove>) -> crate::policy::Decision {
        let cat = catalog(&format!(
            "{}\n---\n{}",
            registry("1"),
            result("1", "Passed", 0.80, 0.90, "0")
        ));
        let mut results = Results::default();
        results.add(cat.objects().iter().filter_map(|o| match &o.resource {
            Resource::Evaluation(e) => Some(&**e),
            _ => None,
        }));
        let alias = cat
            .objects()
            .iter()
            .find_map(|o| match &o.resource {
                Resource::ModelAlias(a) => Some(a.clone()),
                _ => None,
            })
            .unwrap();
        let status = ModelAliasStatus {
            resolved_version: Some("2".into()),
            history,
            ..ModelAliasStatus::default()
        };
        let p = promotion(
            &cat,
            &results,
            "default",
            "m-production",
            &alias,
            &status,
            "git",
            crate::testing::now(),
            None,
        );
        match p {
            Promotion::Decided(d) => d,
            other => panic!("not decided: {other:?}"),
        }
    }

    #[test]
    fn a_move_back_to_a_version_the_alias_served_is_a_rollback_and_not_held_to_its_old_comparison()
    {
        use AliasDecision::{Allowed, Denied};
        let back = decide(vec![
            moved(None, "1", Allowed),
            moved(Some("1"), "2", Allowed),
        ]);
        assert!(back.allowed, "{}", back.summary());
        // Still checked: every rule ran, and the candidate passed its suites.
        assert!(back.rules.iter().all(|r| r.passed));
        assert!(
            back.rules
                .iter()
                .any(|r| r.name == "candidate-evaluations-passed")
        );
        // Never served (a denied move is not service), served with another artifact under the
        // same label, or recorded without a digest (before moves recorded them): held for its
        // comparison.
        let other_artifact = AliasMove {
            artifact_digest: Some("sha256:ff".into()),
            ..moved(None, "1", Allowed)
        };
        let unknown_artifact = AliasMove {
            artifact_digest: None,
            ..moved(None, "1", Allowed)
        };
        for history in [
            vec![moved(None, "2", Allowed)],
            vec![moved(None, "2", Allowed), moved(Some("2"), "1", Denied)],
            vec![other_artifact, moved(Some("1"), "2", Allowed)],
            vec![unknown_artifact, moved(Some("1"), "2", Allowed)],
        ] {
            let d = decide(history);
            assert!(!d.allowed);
            let denied: Vec<&str> = d.denying_rules().map(|r| r.name.as_str()).collect();
            assert_eq!(
                denied,
                [
                    "baseline-is-current-production",
                    "no-primary-metric-regression"
                ]
            );
        }
    }

    #[test]
    fn a_rollback_is_a_move_away_from_what_is_served_to_what_was() {
        let served = served(&[
            moved(None, "1", AliasDecision::Allowed),
            moved(Some("1"), "2", AliasDecision::Allowed),
            moved(Some("2"), "3", AliasDecision::Denied),
        ]);
        let pair = |v: &str| (v.to_string(), format!("sha256:0{v}"));
        assert_eq!(served, BTreeSet::from([pair("1"), pair("2")]));
        assert!(is_rollback(&served, Some("2"), "1", "sha256:01"));
        assert!(!is_rollback(&served, Some("2"), "1", "sha256:ff"));
        assert!(!is_rollback(&served, Some("2"), "2", "sha256:02"));
        assert!(!is_rollback(&served, Some("2"), "3", "sha256:03"));
        assert!(!is_rollback(&served, None, "1", "sha256:01"));
    }

    #[test]
    fn a_deployment_serves_a_version_only_with_the_artifact_its_alias_moved_with() {
        let history = [
            moved(None, "1", AliasDecision::Allowed),
            moved(Some("1"), "2", AliasDecision::Allowed),
        ];
        assert_eq!(artifact_drift(&history, "m", "2", "sha256:02"), None);
        let why = artifact_drift(&history, "m", "2", "sha256:ff").unwrap();
        assert!(
            why.starts_with(
                "version 2 of m has artifact sha256:ff, but the alias moved to it with sha256:02"
            ),
            "{why}"
        );
        // A version no move recorded is not this check's to judge.
        assert_eq!(artifact_drift(&history, "m", "3", "sha256:ff"), None);
    }
}
