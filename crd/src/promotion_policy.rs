//! `PromotionPolicy`: rules and approvals for changes.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Rules (CEL conditions) and required approvals for the changes it matches.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "slipway.dev",
    version = "v1alpha1",
    kind = "PromotionPolicy",
    plural = "promotionpolicies",
    namespaced,
    doc = "Rules (CEL conditions) and required approvals for the changes it matches.",
    derive = "PartialEq",
    shortname = "ppol",
    category = "slipway",
    printcolumn = r#"{"name":"KINDS","type":"string","jsonPath":".spec.match.kinds"}"#,
    printcolumn = r#"{"name":"ALIASES","type":"string","jsonPath":".spec.match.aliases"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PromotionPolicySpec {
    /// What the policy is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Which changes the policy applies to; an empty list matches everything.
    #[serde(default, rename = "match")]
    pub match_: PolicyMatch,
    /// Conditions every matched change must meet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    /// Sign-offs every matched change needs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<ApprovalRequirement>,
    /// When the matched changes may be made: with `allow` windows, only inside one of them;
    /// never inside a `deny` window (a freeze). A change asked for outside is refused, saying
    /// the next opening; an alias move still pending when a window closes is held until then.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<Window>,
}

/// A recurring time the matched changes may (`allow`) or may not (`deny`) be made.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    /// Name, for messages, e.g. `business-hours` or `year-end-freeze`.
    pub name: String,
    /// When it opens: a cron schedule of five fields (minute, hour, day of month, month, day
    /// of week), e.g. `0 9 * * 1-5`.
    pub schedule: String,
    /// How long it stays open after each start, e.g. `8h` or `14d`.
    pub duration: String,
    /// The time zone the schedule is read in (an IANA name such as `Europe/Berlin`); UTC when
    /// unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// `allow` or `deny`.
    pub effect: WindowEffect,
    /// Why, for people (shown when it holds a change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Sign-offs that let a change through while this window holds it (e.g. an incident
    /// commander's).
    #[serde(default, rename = "override", skip_serializing_if = "Option::is_none")]
    pub override_: Option<ApprovalRequirement>,
}

/// What a window does.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WindowEffect {
    /// Changes may be made only inside allow windows.
    #[default]
    Allow,
    /// No change is made inside: a freeze.
    Deny,
}

/// Change selector. Every non-empty list must contain the change's value.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyMatch {
    /// Kinds, e.g. `ModelAlias`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<String>,
    /// Model names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// Alias names, e.g. `production`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Operations: `create`, `update`, `delete`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<Operation>,
    /// Fields, e.g. `spec.evaluations`: an update matches only when one of them (or anything
    /// under it) changes. Creates and deletes change every field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// Only experiments: `Evaluation`s of a suite their model does not declare (they run code,
    /// an image or a request no suite review covered).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub experiments: bool,
}

/// A change operation.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// The object is new.
    Create,
    /// The object changed.
    Update,
    /// The object is removed.
    Delete,
}

impl Operation {
    /// Lower-case name, as in plans.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Update => "update",
            Operation::Delete => "delete",
        }
    }
}

/// What a failing rule does.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// The change is denied.
    #[default]
    Deny,
    /// The change is allowed with a warning.
    Warn,
}

/// A CEL condition.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Rule name, unique within the policy.
    pub name: String,
    /// CEL expression that must be true. Sees `change`, `candidate`, `current`, `model`, `request`, `now`.
    pub expression: String,
    /// Shown when the rule fails: say what to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `deny` (default) or `warn`.
    #[serde(default)]
    pub effect: Effect,
}

/// A required number of sign-offs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRequirement {
    /// Requirement name, e.g. `ml-lead`.
    pub name: String,
    /// How many distinct eligible people must approve.
    #[serde(default = "default_one")]
    pub required: u32,
    /// Who is eligible: `group:NAME` or `user:LOGIN`.
    pub from: Vec<String>,
    /// Whether the change's author is excluded (default `true`).
    #[serde(default = "default_true")]
    pub exclude_author: bool,
    /// How long a sign-off counts after it was given, e.g. `24h`; unset: until it is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_after: Option<String>,
}

fn default_one() -> u32 {
    1
}

fn default_true() -> bool {
    true
}
