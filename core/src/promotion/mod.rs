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
use crate::policy::{ChangeFacts, DecisionInput, Members, Requester, RuleResult};

pub mod stages;

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
    /// Suites of the candidate whose results were compared against another baseline than their
    /// declaration resolves to now: their evaluations are compared again (the home writes each
    /// one's status), and the move waits for them.
    Rebaseline {
        /// What the move waits for, as its status says it.
        pending: Vec<String>,
        /// Each evaluation to compare again, with its new status.
        evaluations: Vec<Rebaseline>,
    },
}

/// An evaluation to compare again against the baseline its suite resolves to now.
#[derive(Clone, Debug, PartialEq)]
pub struct Rebaseline {
    /// The evaluation's name (in the alias's namespace).
    pub evaluation: String,
    /// The version it is compared against now.
    pub baseline: String,
    /// Its status from now on ([`crate::evaluation::lifecycle::rebaseline`]).
    pub status: slipway_crd::EvaluationStatus,
}

/// How a home reads baselines for a move: what each alias of the model resolves to now, and
/// whether an evaluation is the home's own (made from the model's suite, so comparing it again
/// follows the suite's declaration).
pub struct Baselines<'a> {
    /// An alias of the model → the version it resolves to now.
    pub aliases: &'a dyn Fn(&str) -> Option<String>,
    /// Whether an evaluation is the one the home made for its suite.
    pub own: &'a dyn Fn(&slipway_crd::Evaluation) -> bool,
    /// The recorded moves of the model's aliases (the candidate's serving record, and its soak).
    pub histories: &'a stages::Histories,
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
/// `baselines`: a suite's result counts only if it was compared against the baseline its
/// declaration resolves to now ([`stale_baselines`]); the home's own evaluations are compared
/// again ([`Promotion::Rebaseline`]), any other is a reason to hold the move.
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
    baselines: &Baselines<'_>,
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
    let rollback = is_rollback(
        &served(&status.history),
        resolved,
        to,
        &candidate.spec.artifact.digest,
    );
    let digest = &candidate.spec.artifact.digest;
    let record_at = |t| stages::Record::of(baselines.histories, to, digest, t);
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
            rollback,
            experiment: false,
        },
        candidate: stages::with_record(results::version(candidate, results), &record_at(now)),
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
    // A rollback is not held to its old comparison; any other move only to results compared
    // against the baselines as declared now. The home's own evaluations (or ones whose own
    // declaration now resolves there) are compared again; any other holds the move.
    let stale = match rollback {
        true => Vec::new(),
        false => stale_baselines(
            model,
            to,
            results.of(ns, &a.spec.model, to),
            baselines.aliases,
        ),
    };
    let again = |s: &Stale| {
        (baselines.own)(&s.evaluation)
            || crate::tasks::baseline_version(
                s.evaluation.spec.baseline.as_ref(),
                to,
                baselines.aliases,
            )
            .as_deref()
                == Some(s.expected.as_str())
    };
    if !stale.is_empty() && stale.iter().all(again) {
        return Promotion::Rebaseline {
            pending: stale
                .iter()
                .map(|s| format!("{} (compared again against {})", s.suite, s.expected))
                .collect(),
            evaluations: stale
                .iter()
                .map(|s| {
                    let name = s.evaluation.metadata.name.clone().unwrap_or_default();
                    Rebaseline {
                        status: crate::evaluation::lifecycle::rebaseline(
                            &s.evaluation.status.clone().unwrap_or_default(),
                            &name,
                            &s.expected,
                            now,
                        ),
                        evaluation: name,
                        baseline: s.expected.clone(),
                    }
                })
                .collect(),
        };
    }
    let mut decision = catalog.policies.decide_with(&input, approvals);
    // A soak: what is left, and when the move is allowed if nothing else changes.
    let at = |t| {
        let later = stages::as_of(&input, t, &record_at(t));
        catalog.policies.decide_with(&later, approvals).allowed
    };
    let soak = stages::explain(&mut decision, model, &record_at(now), to, now);
    decision.opens_at =
        stages::opening(&decision, &catalog.policies, &input.change, now, soak, &at);
    for s in stale.iter().filter(|s| !again(s)) {
        decision.allowed = false;
        decision.opens_at = None;
        decision.rules.push(s.rule(model, to));
    }
    Promotion::Decided(decision)
}

/// The rule a result breaks when it was compared against another baseline than its suite's
/// declaration resolves to now.
pub const STALE_BASELINE: &str = "compared-against-declared-baseline";

/// A suite's result compared against another baseline than its declaration resolves to now.
#[derive(Clone, Debug)]
pub struct Stale {
    /// The suite.
    pub suite: String,
    /// Its result.
    pub evaluation: std::sync::Arc<slipway_crd::Evaluation>,
    /// The version its declaration resolves to now.
    pub expected: String,
}

impl Stale {
    /// The failed rule that holds a move on this result.
    pub fn rule(&self, model: &slipway_crd::RegisteredModel, candidate: &str) -> RuleResult {
        let name = model.metadata.name.as_deref().unwrap_or_default();
        let expected = &self.expected;
        let against = self
            .evaluation
            .status
            .as_ref()
            .and_then(|s| s.baseline_version.as_deref())
            .map_or("no baseline".to_string(), |v| format!("version {v}"));
        let declared = model
            .spec
            .evaluations
            .iter()
            .find(|s| s.name == self.suite)
            .and_then(|s| s.baseline.as_ref())
            .and_then(|b| b.alias.as_deref())
            .map_or(format!("version {expected}"), |a| {
                format!("alias {a}, version {expected} now")
            });
        RuleResult {
            policy: "slipway".into(),
            name: STALE_BASELINE.into(),
            effect: slipway_crd::promotion_policy::Effect::Deny,
            passed: false,
            message: format!(
                "suite `{}` of {name} version {candidate} has its result from evaluation {}, \
                 compared against {against}, but the suite's baseline is {declared}: that \
                 result does not count; delete that evaluation (Slipway then compares its own \
                 against {expected})",
                self.suite,
                self.evaluation.metadata.name.as_deref().unwrap_or_default(),
            ),
            values: std::collections::BTreeMap::from([
                (
                    format!("candidate.evaluations.{}.baselineVersion", self.suite),
                    Value::from(against),
                ),
                (
                    "declared baseline".to_string(),
                    Value::from(expected.clone()),
                ),
            ]),
            expression: String::new(),
        }
    }
}

/// The suites of `model` whose result for version `candidate` (`suites`, by suite) was compared
/// against another baseline than the suite's declaration resolves to now (`aliases`: an alias of
/// the model → its version). Such a result does not count: a hand-made evaluation against a
/// weaker version, or one that ran before the baseline alias moved (or with no baseline at
/// all), cannot carry a move.
pub fn stale_baselines(
    model: &slipway_crd::RegisteredModel,
    candidate: &str,
    suites: Option<&std::collections::BTreeMap<String, std::sync::Arc<slipway_crd::Evaluation>>>,
    aliases: &dyn Fn(&str) -> Option<String>,
) -> Vec<Stale> {
    model
        .spec
        .evaluations
        .iter()
        .filter_map(|suite| {
            let expected =
                crate::tasks::baseline_version(suite.baseline.as_ref(), candidate, aliases)?;
            let evaluation = suites?.get(&suite.name)?.clone();
            // Only a comparison made is judged so (one that failed without results did not
            // compare, and fails the move by its verdict).
            let status = evaluation.status.as_ref()?;
            let compared = status.phase == EvaluationPhase::Succeeded;
            let recorded = status.baseline_version.as_deref();
            (compared && recorded != Some(expected.as_str())).then(|| Stale {
                suite: suite.name.clone(),
                evaluation,
                expected,
            })
        })
        .collect()
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
        Some(Promotion::Waiting(pending) | Promotion::Rebaseline { pending, .. }) => {
            (AliasStep::Waiting(pending), None, Some(ALIAS_WAITING_POLL))
        }
        Some(Promotion::Decided(d)) if d.allowed => {
            (AliasStep::Moved, Some(Event::AliasMoved), None)
        }
        Some(Promotion::Decided(d)) => {
            why = d.summary();
            // A soak that ends: looked at again then (a second past it), if that is sooner.
            let opens = d
                .opens_at
                .and_then(|t| (t - f.now).to_std().ok())
                .map(|w| w + std::time::Duration::from_secs(1));
            (
                AliasStep::Held(&why),
                Some(Event::PromotionBlocked),
                Some(opens.map_or(ALIAS_HELD_POLL, |w| w.min(ALIAS_HELD_POLL))),
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
mod tests;
