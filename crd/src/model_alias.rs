//! `ModelAlias`: a movable named pointer. Moving it is a promotion.

use chrono::{DateTime, Utc};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::Condition;

/// A named pointer (`production`, `staging`, `champion`…) to one version of a model.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "slipway.dev",
    version = "v1alpha1",
    kind = "ModelAlias",
    plural = "modelaliases",
    namespaced,
    doc = "A named pointer (`production`, `staging`, `champion`…) to one version of a model.",
    derive = "PartialEq",
    status = "ModelAliasStatus",
    shortname = "malias",
    category = "slipway",
    printcolumn = r#"{"name":"MODEL","type":"string","jsonPath":".spec.model"}"#,
    printcolumn = r#"{"name":"ALIAS","type":"string","jsonPath":".spec.alias"}"#,
    printcolumn = r#"{"name":"VERSION","type":"string","jsonPath":".spec.version"}"#,
    printcolumn = r#"{"name":"RESOLVED","type":"string","jsonPath":".status.resolvedVersion"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ModelAliasSpec {
    /// Name of the `RegisteredModel`.
    pub model: String,
    /// Alias name, unique within the model, e.g. `production`.
    pub alias: String,
    /// Version label the alias points at, e.g. `"8"`.
    pub version: String,
}

/// Observed state of a `ModelAlias`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelAliasStatus {
    /// The version the alias resolves to now (it lags `spec.version` while a move is held by policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_version: Option<String>,
    /// The version it resolved to before the last move.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_version: Option<String>,
    /// Every move, newest last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<AliasMove>,
    /// Conditions, `Ready` summarising the others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// The decision on an alias move.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AliasDecision {
    /// The policies allowed it.
    #[default]
    Allowed,
    /// The policies denied it.
    Denied,
}

impl AliasDecision {
    /// The name as serialised (`allowed`, `denied`).
    pub fn as_str(self) -> &'static str {
        match self {
            AliasDecision::Allowed => "allowed",
            AliasDecision::Denied => "denied",
        }
    }
}

/// One recorded alias move.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AliasMove {
    /// Version before the move (absent on creation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Version after the move.
    pub to: String,
    /// The artifact digest of `to` when the alias moved to it: a version label registered again
    /// with another artifact is not what served (a move back to it is no rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_digest: Option<String>,
    /// Who made the change (git author or Kubernetes user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// When the move was decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    /// Git revision or Kubernetes resourceVersion the move came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// `allowed` or `denied`.
    pub decision: AliasDecision,
    /// Summary of the policy decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
