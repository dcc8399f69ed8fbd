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
    printcolumn = r#"{"name":"APPROVER","type":"string","jsonPath":".spec.approver"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalSpec {
    /// The object whose change is signed off.
    pub target: TargetRef,
    /// For an alias: the version it moves to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// For an alias: the version it serves when the approval is given (none for a new alias).
    /// Stamped by Slipway's mutating webhook when left out; the approval signs off the move from
    /// exactly this version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_version: Option<String>,
    /// For an alias: the artifact digest of the version it moves to, as registered. Stamped by
    /// Slipway's mutating webhook when left out; a version re-registered with another artifact
    /// is not signed off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_digest: Option<String>,
    /// For any other kind: the change signed off — `sha256:` and the SHA-256 of the object's
    /// spec before and after the change, or `delete`. The denial names it with the fields it
    /// changes; `slipway change FILE` shows the same from a manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
    /// `approve` or `reject`.
    pub decision: ApprovalDecision,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Who signs off: stamped by Slipway's admission webhook from the requesting user. When set
    /// by the client it must equal the requesting user, or the Approval is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approver: Option<String>,
    /// The approver's groups at the time, stamped with `approver`; must be groups the requesting
    /// user has.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approver_groups: Vec<String>,
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

/// What Slipway observed of the approval.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalStatus {
    /// When it was admitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<DateTime<Utc>>,
    /// The move it was used for, once the controller made it
    /// (`ModelAlias/NS/NAME → VERSION (generation G, uid U)`); it counts for no other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_by: Option<String>,
    /// `Stalled` when the controller's reconcile of it is refused (e.g. its rights), with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<crate::common::Condition>,
}
