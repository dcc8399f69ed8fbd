//! The alias decision both homes and the reconcilers make once a candidate's evaluations are in:
//! wait, or decide by the policies' data rules (approvals are enforced before, on the pull
//! request or at admission).

use std::collections::BTreeSet;

use serde_json::Value;
use slipway_crd::Kind;
use slipway_crd::evaluation::EvaluationPhase;
use slipway_crd::promotion_policy::Operation;

use crate::decide::catalog::Catalog;
use crate::decide::policy::context::{self, Results};
use crate::decide::policy::{ChangeFacts, DecisionInput, Requester};

const FINISHED: [EvaluationPhase; 2] = [EvaluationPhase::Succeeded, EvaluationPhase::Failed];

/// Where an alias move stands, by the data rules of the policies.
#[derive(Debug)]
pub enum Promotion {
    /// The model or the target version does not exist (validation reports it).
    Unresolvable,
    /// Evaluation suites of the candidate that have not finished.
    Waiting(Vec<String>),
    /// The rules' decision (approvals are enforced before: on the pull request, or at admission).
    Decided(crate::decide::policy::Decision),
}

/// Decides moving alias `a` (object `name` in `ns`) from `resolved` to `a.spec.version` once the
/// candidate's evaluations have finished. Pure: the same decision in git and Kubernetes mode.
#[allow(clippy::too_many_arguments)]
pub fn promotion(
    catalog: &Catalog,
    results: &Results,
    ns: &str,
    name: &str,
    a: &slipway_crd::ModelAlias,
    resolved: Option<&str>,
    source: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Promotion {
    let to = &a.spec.version;
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
        },
        candidate: context::version(candidate, results),
        current: resolved
            .and_then(|r| catalog.version(ns, &a.spec.model, r))
            .map(|v| context::version(v, results))
            .unwrap_or(Value::Null),
        model: context::model(model),
        request: Requester {
            user: None,
            groups: vec![],
            source: source.into(),
        },
        now,
    };
    Promotion::Decided(catalog.policies.decide_rules(&input))
}
