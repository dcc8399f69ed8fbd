//! `Approval`: a sign-off on one exact change.

use chrono::{DateTime, Utc};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A sign-off (or rejection) of one exact change: a target object and the value it is moving to. Immutable.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "slipway.dev",
    version = "v1alpha1",
    kind = "Approval",
    namespaced,
    doc = "A sign-off (or rejection) of one exact change: a target object and the value it is moving to. Immutable.",
    derive = "PartialEq",
    status = "ApprovalStatus",
    shortname = "appr",
    category = "slipway",
    printcolumn = r#"{"name":"TARGET","type":"string","jsonPath":".spec.target.name"}"#,
    printcolumn = r#"{"name":"VERSION","type":"string","jsonPath":".spec.version"}"#,
    printcolumn = r#"{"name":"DECISION","type":"string","jsonPath":".spec.decision"}"#,
    printcolumn = r#"{"name":"APPROVER","type":"string","jsonPath":".status.approver"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalSpec {
    /// The object whose change is signed off.
    pub target: TargetRef,
    /// The proposed value (for an alias: the version it moves to).
    pub version: String,
    /// `approve` or `reject`.
    pub decision: ApprovalDecision,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A reference to an object.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    /// Kind, e.g. `ModelAlias`.
    pub kind: String,
    /// Object name.
    pub name: String,
    /// Namespace; defaults to the approval's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Approve or reject.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalDecision {
    /// Sign off.
    #[default]
    Approve,
    /// Object.
    Reject,
}

/// Stamped by Slipway from the request, never by the client.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalStatus {
    /// Username of whoever created the approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approver: Option<String>,
    /// Groups of the approver at the time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approver_groups: Vec<String>,
    /// When it was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<DateTime<Utc>>,
}
