//! `Group`: git-mode group membership.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A named set of people, referenced by policies as `group:NAME` in git mode.
/// (Kubernetes mode takes groups from the authenticator.)
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "slipway.dev",
    version = "v1alpha1",
    kind = "Group",
    namespaced,
    doc = "A named set of people, referenced by policies as `group:NAME` in git mode. (Kubernetes mode takes groups from the authenticator.)",
    derive = "PartialEq",
    shortname = "sgroup",
    category = "slipway",
    printcolumn = r#"{"name":"MEMBERS","type":"string","jsonPath":".spec.members"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct GroupSpec {
    /// What the group is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Logins of the members (GitHub logins in git mode).
    pub members: Vec<String>,
}
