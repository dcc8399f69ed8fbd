//! The policy engine: CEL rules and approval requirements, evaluated into structured decisions.
//!
//! Pure: the caller supplies the change, the context values, the sign-offs and the clock.

pub mod approvals;
pub mod binding;
pub mod windows;

use std::collections::BTreeMap;

use cel::{Context, ExecutionError, Value};
use chrono::{DateTime, Utc};
use serde::Serialize;
use slipway_crd::promotion_policy::{Effect, Operation};

use self::approvals::{ApprovalResult, SignOffs};
pub use crate::catalog::expr;
pub use crate::catalog::rules::{CompiledPolicy, PolicySet};

/// Where the default set lives unless the operator names another namespace: `default` (in git
/// mode, the registry's documents that name no namespace).
pub const DEFAULT_POLICY_NAMESPACE: &str = "default";

impl CompiledPolicy {
    /// Whether the policy applies to a change (of a namespace it governs: see
    /// [`PolicySet::governing`]).
    pub fn matches(&self, change: &ChangeFacts) -> bool {
        let m = &self.spec.match_;
        let any = |list: &[String], value: Option<&str>| {
            list.is_empty() || value.is_some_and(|v| list.iter().any(|x| x == v))
        };
        // A deployment that stops following an alias (pinned, or moved to another) is as much a
        // change of what that alias serves as one that starts to.
        let aliases = m.aliases.is_empty()
            || [change.alias.as_deref(), change.previous_alias.as_deref()]
                .into_iter()
                .flatten()
                .any(|a| m.aliases.iter().any(|x| x == a));
        let fields = m.fields.is_empty()
            || change.operation != Operation::Update
            || change
                .fields
                .iter()
                .any(|f| m.fields.iter().any(|p| under(f, p)));
        any(&m.kinds, Some(change.kind.as_str()))
            && (!m.experiments || change.experiment)
            && any(&m.models, change.model.as_deref())
            && aliases
            && fields
            && (m.operations.is_empty() || m.operations.contains(&change.operation))
    }
}

impl CompiledPolicy {
    /// The rule its windows make of a change at `now` ([`windows::rule`]); a window that does
    /// not read holds the change (fail closed).
    fn window_rule(
        &self,
        now: DateTime<Utc>,
        approvals: Option<(&SignOffs, &Members<'_>)>,
    ) -> RuleResult {
        let broken: Vec<&String> = self
            .windows
            .iter()
            .filter_map(|w| w.as_ref().err())
            .collect();
        if !broken.is_empty() {
            let why: Vec<&str> = broken.iter().map(|s| s.as_str()).collect();
            return RuleResult {
                policy: self.name.clone(),
                name: "window".into(),
                effect: Effect::Deny,
                passed: false,
                message: format!("{} (fail closed)", why.join("; ")),
                values: BTreeMap::new(),
                expression: String::new(),
            };
        }
        let compiled: Vec<crate::catalog::windows::Compiled> = self
            .windows
            .iter()
            .filter_map(|w| w.as_ref().ok().cloned())
            .collect();
        windows::rule(&self.name, &compiled, now, approvals)
    }

    /// When its windows next let a change through, at or after `t` (None: no windows, or none
    /// within a year).
    pub fn next_opening(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let compiled: Vec<crate::catalog::windows::Compiled> = self
            .windows
            .iter()
            .filter_map(|w| w.as_ref().ok().cloned())
            .collect();
        (!compiled.is_empty()).then(|| crate::catalog::windows::next_opening(&compiled, t))?
    }
}

/// Whether field path `field` is `prefix` or lies under it (`spec.a[0].b` is under `spec.a`).
fn under(field: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('.');
    field
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

/// What changes, in the terms policies match and rules read as `change`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChangeFacts {
    /// Kind of the changed object.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// create / update / delete.
    pub operation: Operation,
    /// Model the object belongs to.
    pub model: Option<String>,
    /// Alias name (aliases, and deployments that follow one).
    pub alias: Option<String>,
    /// Previous value (for an alias: the version it pointed at).
    pub from: Option<String>,
    /// New value.
    pub to: Option<String>,
    /// The fields an update changes (`spec.strategy.steps[0].weight`); empty otherwise.
    #[serde(default)]
    pub fields: Vec<String>,
    /// The alias a deployment followed before the change, when it differs from `alias`.
    #[serde(skip)]
    pub previous_alias: Option<String>,
    /// An alias moves back to a version it served before (its recorded moves in a cluster and
    /// in `slipway run`'s state; the alias file's history on the base branch in `slipway plan`).
    /// Rules read it as `change.rollback`: the default set does not hold a rollback to its old
    /// comparison, which was made against that version's own predecessor.
    #[serde(default)]
    pub rollback: bool,
    /// An `Evaluation` of a suite its model does not declare. Rules read it as
    /// `change.experiment`; `match.experiments` selects these changes.
    #[serde(default)]
    pub experiment: bool,
}

/// Who asks for the change.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Requester {
    /// Login or Kubernetes username.
    pub user: Option<String>,
    /// Groups of the user.
    pub groups: Vec<String>,
    /// `git` or `kubernetes`.
    pub source: String,
}

/// Everything a decision reads.
#[derive(Clone, Debug)]
pub struct DecisionInput {
    /// The change.
    pub change: ChangeFacts,
    /// The version being promoted (JSON, see [`context`]), or null.
    pub candidate: serde_json::Value,
    /// The version the alias points at now, or null.
    pub current: serde_json::Value,
    /// The model, or null.
    pub model: serde_json::Value,
    /// Who asks.
    pub request: Requester,
    /// The time of the decision.
    pub now: DateTime<Utc>,
}

/// The outcome of one rule.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuleResult {
    /// Policy name.
    pub policy: String,
    /// Rule name.
    pub name: String,
    /// `deny` or `warn`.
    pub effect: Effect,
    /// Whether the expression was true.
    pub passed: bool,
    /// Why it failed (empty when it passed).
    pub message: String,
    /// The values the rule read, by path.
    pub values: BTreeMap<String, serde_json::Value>,
    /// The expression (not part of the JSON contract; shown in comments).
    #[serde(skip)]
    pub expression: String,
}

/// A structured policy decision for one change.
#[derive(Clone, Debug, PartialEq, Serialize, Default)]
pub struct Decision {
    /// Whether the change may proceed now.
    pub allowed: bool,
    /// Every rule of every matching policy.
    pub rules: Vec<RuleResult>,
    /// Every approval requirement of every matching policy.
    pub approvals: Vec<ApprovalResult>,
    /// When a denied change becomes allowed without anything else changing (a soak that ends),
    /// if it does.
    #[serde(skip_serializing_if = "Option::is_none", rename = "opensAt")]
    pub opens_at: Option<DateTime<Utc>>,
}

impl Decision {
    /// Rules that deny the change.
    pub fn denying_rules(&self) -> impl Iterator<Item = &RuleResult> {
        self.rules
            .iter()
            .filter(|r| !r.passed && r.effect == Effect::Deny)
    }

    /// Denied now, but allowed later by time alone — and not by a window: a move held by a soak
    /// is admitted and made when the soak ends, one outside its windows is refused until they
    /// open (a reconciler still holds a pending move until [`Decision::opens_at`] either way).
    pub fn held(&self) -> bool {
        !self.allowed
            && self.opens_at.is_some()
            && !self
                .denying_rules()
                .any(|r| r.name == "window" && r.expression.is_empty())
    }

    /// The summary, or for a change [`Decision::held`] when and by what: `held until
    /// 2026-12-08 14:00 UTC by production/soaked-in-staging; the reconciler makes it then`.
    pub fn verdict(&self) -> String {
        match self.opens_at.filter(|_| self.held()) {
            Some(t) => {
                let by: Vec<String> = self
                    .denying_rules()
                    .map(|r| format!("{}/{}", r.policy, r.name))
                    .collect();
                format!(
                    "held until {} by {}; the reconciler makes it then",
                    t.format("%Y-%m-%d %H:%M UTC"),
                    by.join(", ")
                )
            }
            None => self.summary(),
        }
    }

    /// Approval requirements not met yet.
    pub fn missing_approvals(&self) -> impl Iterator<Item = &ApprovalResult> {
        self.approvals.iter().filter(|a| !a.satisfied())
    }

    /// A one-line summary: "allowed", "denied by …", "awaiting approval …".
    pub fn summary(&self) -> String {
        let denied: Vec<String> = self
            .denying_rules()
            .map(|r| format!("{}/{}", r.policy, r.name))
            .collect();
        let waiting: Vec<String> = self
            .missing_approvals()
            .map(|a| format!("{} ({}/{})", a.name, a.have, a.required))
            .collect();
        let until = self.opens_at.map_or(String::new(), |t| {
            format!(" until {}", t.format("%Y-%m-%d %H:%M UTC"))
        });
        match (denied.is_empty(), waiting.is_empty()) {
            (true, true) => "allowed".to_string(),
            (false, _) => format!("denied by {}{until}", denied.join(", ")),
            (true, false) => format!("awaiting approval: {}{until}", waiting.join(", ")),
        }
    }
}

/// Expands `group:NAME` to its members (None: no such group).
pub type Members<'a> = dyn Fn(&str) -> Option<Vec<String>> + 'a;

impl PolicySet {
    /// The namespace whose policies govern changes in `ns`: its own when it has any, else the
    /// operator's default set (the policies of [`PolicySet::fallback`]), so a namespace without
    /// policies is not a namespace without rules.
    pub fn governing<'a>(&'a self, ns: &'a str) -> &'a str {
        if self.policies.iter().any(|p| p.namespace == ns) {
            ns
        } else {
            self.fallback.as_deref().unwrap_or(DEFAULT_POLICY_NAMESPACE)
        }
    }

    /// When the windows of the policies matching `change` next let it through, at or after `t`:
    /// the latest of their next openings (None: no matching policy has windows, or one does not
    /// open within a year).
    pub fn windows_open(&self, change: &ChangeFacts, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let governing = self.governing(&change.namespace);
        let mut latest = None;
        for p in self.policies.iter() {
            if p.namespace == governing && !p.windows.is_empty() && p.matches(change) {
                let opens = p.next_opening(t)?;
                latest = Some(latest.map_or(opens, |l: DateTime<Utc>| l.max(opens)));
            }
        }
        latest
    }

    /// Decides one change: every rule and every approval requirement of the matching policies.
    pub fn decide(
        &self,
        input: &DecisionInput,
        signoffs: &SignOffs,
        members: &Members<'_>,
    ) -> Decision {
        self.decide_with(input, Some((signoffs, members)))
    }

    /// Decides one change by its rules only: what the reconciler re-checks after a merge, when the
    /// approvals were already enforced on the pull request.
    pub fn decide_rules(&self, input: &DecisionInput) -> Decision {
        self.decide_with(input, None)
    }

    /// Decides one change by its rules and, when given, its approval requirements.
    pub fn decide_with(
        &self,
        input: &DecisionInput,
        approvals: Option<(&SignOffs, &Members<'_>)>,
    ) -> Decision {
        let governing = self.governing(&input.change.namespace);
        let matching: Vec<&CompiledPolicy> = self
            .policies
            .iter()
            .filter(|p| p.namespace == governing && p.matches(&input.change))
            .collect();
        if matching.is_empty() {
            return Decision {
                allowed: true,
                ..Decision::default()
            };
        }
        let ctx = build_context(input);
        let mut decision = Decision::default();
        for policy in matching {
            for (rule, compiled) in policy.spec.rules.iter().zip(&policy.rules) {
                let (values, missing) = expr::read_values(compiled, &ctx);
                let outcome = compiled.program.execute(&ctx);
                let (passed, message) = match outcome {
                    Ok(Value::Bool(true)) => (true, String::new()),
                    Ok(Value::Bool(false)) => (
                        false,
                        unfinished(&values, input).unwrap_or_else(|| {
                            rule.message
                                .clone()
                                .unwrap_or_else(|| format!("`{}` is false", rule.expression.trim()))
                        }),
                    ),
                    Ok(other) => (
                        false,
                        format!("expression returned {other:?}, not a boolean (fail closed)"),
                    ),
                    Err(err) => (false, explain_error(&err, &missing, input)),
                };
                let message = match passed || !rule.expression.contains("compatibleWith(") {
                    true => message,
                    false => crate::signature::explain(&input.candidate, &input.current)
                        .map_or(message.clone(), |why| format!("{message} ({why})")),
                };
                decision.rules.push(RuleResult {
                    policy: policy.name.clone(),
                    name: rule.name.clone(),
                    effect: rule.effect,
                    passed,
                    message,
                    values,
                    expression: rule.expression.trim().to_string(),
                });
            }
            if !policy.windows.is_empty() {
                decision
                    .rules
                    .push(policy.window_rule(input.now, approvals));
            }
            if let Some((signoffs, members)) = approvals {
                for req in &policy.spec.approvals {
                    decision.approvals.push(approvals::evaluate(
                        &policy.name,
                        req,
                        signoffs,
                        members,
                        input.now,
                    ));
                }
            }
        }
        decision.allowed = decision.denying_rules().next().is_none()
            && decision.missing_approvals().next().is_none();
        decision
    }
}

fn build_context(input: &DecisionInput) -> Context<'static, 'static> {
    let mut ctx = Context::default();
    let json = |v: &serde_json::Value| cel::to_value(v).unwrap_or(Value::Null);
    let change = serde_json::to_value(&input.change).unwrap_or_default();
    let request = serde_json::to_value(&input.request).unwrap_or_default();
    ctx.add_variable_from_value("change", json(&change));
    ctx.add_variable_from_value("candidate", json(&input.candidate));
    ctx.add_variable_from_value("current", json(&input.current));
    ctx.add_variable_from_value("model", json(&input.model));
    ctx.add_variable_from_value("request", json(&request));
    ctx.add_variable_from_value("now", Value::Timestamp(input.now.fixed_offset()));
    // Cannot fail: a name of the standard library would be a conflict, and this one is not.
    let _ = ctx.add_function("servedIn", served_in);
    let _ = ctx.add_function("compatibleWith", crate::signature::compatible_with);
    ctx
}

/// `candidate.servedIn("staging")`: how long the candidate served in an alias, with the artifact
/// it has now (a duration; zero when it never did) — its `serving.served` record.
fn served_in(
    cel::extractors::This(this): cel::extractors::This<Value>,
    alias: std::sync::Arc<String>,
) -> Value {
    use cel::objects::KeyRef;
    let field = |v: &Value, k: &str| match v {
        Value::Map(m) => m.get(&KeyRef::String(k)).cloned(),
        _ => None,
    };
    let seconds = field(&this, "serving")
        .and_then(|s| field(&s, "served"))
        .and_then(|s| field(&s, alias.as_str()));
    let seconds = match seconds {
        Some(Value::Int(n)) => n,
        Some(Value::UInt(n)) => i64::try_from(n).unwrap_or(i64::MAX),
        _ => 0,
    };
    Value::Duration(chrono::Duration::seconds(seconds))
}

/// When a rule that failed read an evaluation of the candidate that has not finished, what to
/// say instead of the rule's own message (which speaks of a verdict there is not yet).
fn unfinished(
    values: &BTreeMap<String, serde_json::Value>,
    input: &DecisionInput,
) -> Option<String> {
    let evaluations = input.candidate.get("evaluations")?.as_object()?;
    let read = |suite: &str| {
        let prefix = format!("candidate.evaluations[{}]", serde_json::Value::from(suite));
        values.keys().any(|k| k.starts_with(&prefix))
    };
    let finished = |e: &serde_json::Value| {
        matches!(
            e.get("phase").and_then(|p| p.as_str()),
            Some("Succeeded" | "Failed")
        )
    };
    // A suite the rule read that finished and did not pass is the reason: the rule's message
    // stands.
    if evaluations.iter().any(|(suite, e)| {
        read(suite) && finished(e) && e.get("verdict").and_then(|v| v.as_str()) != Some("Passed")
    }) {
        return None;
    }
    let (suite, e) = evaluations
        .iter()
        .find(|(suite, e)| read(suite) && !finished(e))?;
    let phase = e.get("phase").and_then(|p| p.as_str()).unwrap_or("Pending");
    let (model, version) = candidate_label(input);
    Some(format!(
        "evaluation `{suite}` of {model} version {version} has not finished ({phase}): there is no verdict yet; ask again once it has finished (its status and report say how it went)"
    ))
}

/// The candidate's model and version, for messages.
fn candidate_label(input: &DecisionInput) -> (&str, &str) {
    let field = |k: &str| {
        input
            .candidate
            .get(k)
            .and_then(|m| m.as_str())
            .unwrap_or("?")
    };
    (field("model"), field("version"))
}

/// Explains an evaluation error, naming what was missing.
fn explain_error(err: &ExecutionError, missing: &[String], input: &DecisionInput) -> String {
    let mut why = if let ExecutionError::NoSuchKey(key) = err {
        let suites = input.model.get("evaluations").and_then(|s| s.as_array());
        let is_suite = suites.is_some_and(|s| s.iter().any(|x| x.as_str() == Some(key.as_str())));
        let has_result = input
            .candidate
            .get("evaluations")
            .and_then(|e| e.get(key.as_str()))
            .is_some();
        if is_suite && !has_result {
            let (model, version) = candidate_label(input);
            format!(
                "evaluation `{key}` of {model} version {version} has no result; run it (or pass its Evaluation with --results) and re-check"
            )
        } else if !missing.is_empty() {
            missing.join("; ")
        } else {
            format!("field `{key}` is missing")
        }
    } else if !missing.is_empty() {
        format!("{}; {}", missing.join("; "), err)
    } else {
        err.to_string()
    };
    why.push_str(" (fail closed)");
    why
}

#[cfg(test)]
mod tests;
