//! The plan: what a change between two catalogs does, and what policy says about each part.
//!
//! Pure: takes two catalogs, evaluation results, sign-offs and the time; returns a [`Plan`].

mod between;
mod diff;
mod files;
mod identity;
mod immutability;
pub mod render;
mod rollouts;
mod secrets;
mod soak;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use slipway_crd::promotion_policy::Operation;

use crate::catalog::results::{self, Results};
use crate::catalog::{Catalog, Object, ObjectKey, Resource};
use crate::diagnostics::Diagnostic;
use crate::policy::approvals::SignOffs;
use crate::policy::{ChangeFacts, Decision, DecisionInput};
use crate::promotion::stages::Histories;
use between::{About, Between};
pub use diff::diff;
pub use files::Files;
use files::file_changes;
pub use identity::KubeIdentity;
use immutability::{immutability, relabelled};

/// A revision a plan compares.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Rev {
    /// The name given (`main`, `HEAD`).
    #[serde(skip)]
    pub name: String,
    /// Full commit id.
    pub commit: String,
}

/// One changed field of an update.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldChange {
    /// Path within the object, e.g. `spec.version`.
    pub path: String,
    /// Old value (None: added).
    pub old: Option<Value>,
    /// New value (None: removed).
    pub new: Option<Value>,
    /// The files whose content changed, when the field is unchanged but what it names is not.
    pub files: Vec<String>,
}

/// A deployment an alias move rolls out.
#[derive(Clone, Debug, PartialEq)]
pub struct Rollout {
    /// `namespace/name` of the ModelDeployment.
    pub deployment: String,
    /// `local`, `kubernetes` or `sagemaker`, with the endpoint or port.
    pub target: String,
    /// How: `Canary 10% (5m) → 50% (10m) → 100%`.
    pub strategy: String,
    /// For a SageMaker target: the AWS calls the rollout makes, in order.
    pub aws: Vec<String>,
    /// What judges each step: the thresholds, alarms and metrics of its analysis, in words.
    pub analysis: Vec<String>,
}

/// One change of the plan.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change {
    /// Kind.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// create / update / delete.
    pub action: Operation,
    /// The model concerned.
    pub model: Option<String>,
    /// The alias concerned.
    pub alias: Option<String>,
    /// Old value (alias: version; version: label).
    pub from: Option<String>,
    /// New value.
    pub to: Option<String>,
    /// An alias moves back to a version it served before (see [`PlanInputs::served`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub rollback: bool,
    /// The policy decision.
    pub decision: Decision,
    /// Changed fields of an update (not in the JSON contract).
    #[serde(skip)]
    pub fields: Vec<FieldChange>,
    /// Deployments this change rolls out (not in the JSON contract).
    #[serde(skip)]
    pub rollouts: Vec<Rollout>,
    /// Files (repository-relative) whose content changed, which the object's spec uses: the
    /// change is theirs (omitted from the JSON when empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// What the reviewer should know although policy does not decide it: a deployment whose
    /// analysis its target cannot measure (omitted from the JSON when empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// An alias move: how the candidate's signature differs from the current version's, when
    /// both declare one (omitted from the JSON when empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signature: Vec<crate::signature::Difference>,
}

/// Counts of a plan.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Objects created.
    pub create: usize,
    /// Objects updated.
    pub update: usize,
    /// Objects deleted.
    pub delete: usize,
    /// Changes denied or awaiting approval.
    pub denied: usize,
    /// Changes denied only until a time, when they become allowed by themselves (a soak that
    /// ends): not a reason to hold the merge, the reconciler makes them then.
    #[serde(skip_serializing_if = "is_zero")]
    pub held: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A plan.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    /// The base revision.
    #[serde(serialize_with = "commit_only")]
    pub base: Rev,
    /// The head revision.
    #[serde(serialize_with = "commit_only")]
    pub head: Rev,
    /// Every change, in kind order then namespace/name.
    pub changes: Vec<Change>,
    /// Counts.
    pub summary: Summary,
    /// Problems that make the plan unusable (invalid head, immutability violations); not in the JSON contract.
    #[serde(skip)]
    pub errors: Vec<Diagnostic>,
}

fn commit_only<S: serde::Serializer>(rev: &Rev, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rev.commit)
}

/// Exit codes of `slipway plan` (DESIGN §4).
pub mod exit {
    /// No changes.
    pub const NO_CHANGES: i32 = 0;
    /// Error.
    pub const ERROR: i32 = 1;
    /// Changes, all allowed.
    pub const ALLOWED: i32 = 2;
    /// Some change denied or awaiting approval.
    pub const DENIED: i32 = 3;
}

impl Plan {
    /// The exit code for this plan.
    pub fn exit_code(&self) -> i32 {
        if !self.errors.is_empty() {
            exit::ERROR
        } else if self.changes.is_empty() {
            exit::NO_CHANGES
        } else if self.summary.denied > 0 {
            exit::DENIED
        } else {
            exit::ALLOWED
        }
    }
}

/// Everything a plan needs besides the two catalogs.
#[derive(Default)]
pub struct PlanInputs {
    /// Base revision.
    pub base: Rev,
    /// Head revision.
    pub head: Rev,
    /// Evaluation results (from `--results` and the head catalog).
    pub results: Results,
    /// Reviews, head commit and author.
    pub signoffs: SignOffs,
    /// Decision time.
    pub now: DateTime<Utc>,
    /// Kubernetes mode: identities come from the authenticator, not from `Group` objects.
    pub kubernetes: Option<KubeIdentity>,
    /// The versions each alias object served before: in a cluster its recorded moves (status),
    /// in git the versions its file named on the base branch. A move back to one of them is a
    /// rollback (`change.rollback`).
    pub served: BTreeMap<ObjectKey, crate::promotion::Served>,
    /// The recorded moves of each model's aliases, by (namespace, model): the serving record a
    /// soak reads (`candidate.servedIn`).
    pub histories: BTreeMap<(String, String), Histories>,
    /// The repository's files at both revisions (git mode): a change to a file a spec uses is a
    /// change of that spec. None where specs cannot name files (a cluster).
    pub files: Option<Files>,
}

/// Computes the plan from `base` to `head`. Policies and groups come from `base`.
pub fn plan(base: &Catalog, head: &Catalog, inputs: &PlanInputs) -> Plan {
    let mut keys: BTreeSet<&ObjectKey> = base.objects().iter().map(|o| &o.key).collect();
    keys.extend(head.objects().iter().map(|o| &o.key));
    let mut changes = Vec::new();
    let mut errors = Vec::new();
    // The registry's own documents are read as objects, and declared artifacts and datasets
    // are their own changes: neither is part of a command's folder.
    let registry = inputs.files.as_ref().map_or("", |f| f.registry.as_str());
    let data = crate::files::data_paths(
        base.objects().iter().chain(head.objects()).map(|o| &**o),
        registry,
    );
    let documents: BTreeSet<&str> = base
        .objects()
        .iter()
        .chain(head.objects())
        .map(|o| &*o.origin.file)
        .chain(data.iter().map(String::as_str))
        .collect();
    for key in keys {
        let (old, new) = (base.get(key), head.get(key));
        let (action, fields) = match (old, new) {
            (None, Some(n)) => {
                errors.extend(relabelled(base, n));
                (Operation::Create, Vec::new())
            }
            (Some(_), None) => (Operation::Delete, Vec::new()),
            (Some(o), Some(n)) => {
                let same = std::sync::Arc::ptr_eq(&o.origin.text, &n.origin.text)
                    || o.resource == n.resource;
                let mut fields = if same {
                    Vec::new()
                } else {
                    diff(&o.resource.spec_json(), &n.resource.spec_json(), "spec")
                };
                fields.extend(diff::retry(o, n).filter(|_| !same));
                if !fields.is_empty() {
                    errors.extend(immutability(o, n));
                }
                if let Some(files) = &inputs.files {
                    fields.extend(file_changes(n, files, &documents));
                }
                if fields.is_empty() {
                    continue;
                }
                (Operation::Update, fields)
            }
            (None, None) => continue,
        };
        let mut c = change(base, head, inputs, key, old, new, action, fields);
        let ns = key.namespace.as_str();
        if key.kind == slipway_crd::Kind::PromotionPolicy
            && action == Operation::Create
            && base.policies.governing(ns) != ns
        {
            c.warnings.push(format!(
                "namespace {ns} has no policies of its own yet: from this change on it is decided by its own policies alone, no longer by the default set of namespace {}",
                base.policies.governing(ns)
            ));
        }
        if let Some(n) = new {
            errors.extend(secrets::unprotected(&c, old, n));
        }
        changes.push(c);
    }
    let mut summary = Summary::default();
    for c in &changes {
        match c.action {
            Operation::Create => summary.create += 1,
            Operation::Update => summary.update += 1,
            Operation::Delete => summary.delete += 1,
        }
        match (c.decision.allowed, c.decision.held()) {
            (true, _) => {}
            (false, true) => summary.held += 1,
            (false, false) => summary.denied += 1,
        }
    }
    Plan {
        base: inputs.base.clone(),
        head: inputs.head.clone(),
        changes,
        summary,
        errors,
    }
}

#[allow(clippy::too_many_arguments)]
fn change(
    base: &Catalog,
    head: &Catalog,
    inputs: &PlanInputs,
    key: &ObjectKey,
    old: Option<&Object>,
    new: Option<&Object>,
    action: Operation,
    fields: Vec<FieldChange>,
) -> Change {
    let ns = key.namespace.as_str();
    let either = new.or(old).map(|o| &o.resource);
    let model = either.and_then(Resource::model).map(str::to_string);
    let at = Between {
        base,
        head,
        ns,
        inputs,
    };
    let about = match either {
        Some(Resource::ModelAlias(a)) => at.alias_move(key, a, old, new),
        Some(Resource::ModelVersion(v)) => at.version(v, old, new),
        Some(Resource::ModelDeployment(d)) => at.deployment(d, old, new, &fields),
        _ => About::default(),
    };
    let model_json = model
        .as_deref()
        .and_then(|m| base.model(ns, m).or_else(|| head.model(ns, m)))
        .map(results::model)
        .unwrap_or(Value::Null);
    let facts = ChangeFacts {
        kind: key.kind.as_str().to_string(),
        name: key.name.clone(),
        namespace: key.namespace.clone(),
        operation: action,
        model: model.clone(),
        alias: about.alias.clone(),
        from: about.from.clone(),
        to: about.to.clone(),
        fields: fields.iter().map(|f| f.path.clone()).collect(),
        previous_alias: about.previous_alias,
        rollback: about.rollback,
        experiment: diff::is_experiment(base, head, new.or(old)),
    };
    let signature = crate::signature::between(&about.current, &about.candidate);
    let input = DecisionInput {
        change: facts,
        candidate: about.candidate,
        current: about.current,
        model: model_json,
        request: at.requester(),
        now: inputs.now,
    };
    let members = |g: &str| match &inputs.kubernetes {
        Some(k) => Some(k.members(g, input.request.user.as_deref())),
        None => base
            .group(base.policies.governing(ns), g)
            .map(|g| g.spec.members.clone()),
    };
    let mut decision = base.policies.decide(&input, &inputs.signoffs, &members);
    // A soak: what is left, and when the move is allowed if nothing else changes.
    if let (Some((record, digest)), Some(name), Some(to)) =
        (&about.serving, model.as_deref(), &about.to)
    {
        let at = (ns, name);
        soak::explain(
            &mut decision,
            base,
            inputs,
            &input,
            &members,
            at,
            (to, digest),
            record,
        );
    }
    let mut warnings = about.warnings;
    // In git mode the author comes from `--author`: without it, `excludeAuthor` excludes no one.
    if inputs.kubernetes.is_none() && inputs.signoffs.author.is_none() {
        warnings.extend(
            decision
                .approvals
                .iter()
                .filter(|a| a.exclude_author)
                .map(|a| {
                    format!(
                        "{}/{}: no --author given, so `excludeAuthor` cannot keep the pull request's author from approving their own change; pass --author (the Action passes the pull request's author)",
                        a.policy, a.name
                    )
                }),
        );
    }
    Change {
        kind: key.kind.as_str().to_string(),
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        action,
        model,
        alias: about.alias,
        from: about.from,
        to: about.to,
        rollback: about.rollback,
        decision,
        files: fields
            .iter()
            .flat_map(|f| f.files.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        fields,
        rollouts: about.rollouts,
        warnings,
        signature,
    }
}

/// Renders an optional JSON value compactly.
pub fn show(v: Option<&Value>) -> String {
    match v {
        None => "(absent)".to_string(),
        Some(Value::String(s)) => format!("{s:?}"),
        Some(v) => v.to_string(),
    }
}

#[cfg(test)]
mod tests;
