//! The part of the Gateway API's `HTTPRoute` (`gateway.networking.k8s.io/v1`) a rollout reads
//! and writes: its rules' backends. Typed after the upstream CRD's fields (`rules[].backendRefs[]`
//! with `name`, `namespace`, `port`, `weight`, `group`, `kind`); every other field of the route
//! and of its rules — parents, hostnames, matches, filters, timeouts, whatever a newer Gateway
//! API adds — is kept as it was written, so writing the weights back never drops one.
//!
//! (The `gateway-api` crate's types are built on kube 4 while Slipway is on kube 5: an `Api` of
//! them would not take this client.)

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An HTTPRoute's spec: its rules, and everything else as written.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1",
    kind = "HTTPRoute",
    plural = "httproutes",
    namespaced
)]
pub struct HTTPRouteSpec {
    /// The routing rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<HTTPRouteRule>,
    /// Every other field, as written.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// One rule: where its requests go, and everything else as written.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
pub struct HTTPRouteRule {
    /// Its backends.
    #[serde(rename = "backendRefs", default, skip_serializing_if = "Vec::is_empty")]
    pub backend_refs: Vec<HTTPBackendRef>,
    /// Every other field, as written.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// A backend of a rule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
pub struct HTTPBackendRef {
    /// The backend's name (a Service unless `kind` says otherwise).
    pub name: String,
    /// Its namespace (default: the route's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Its port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// Its share of the rule's requests, relative to the others' (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
    /// The backend's API group (`""`: core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The backend's kind (default `Service`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Every other field (filters), as written.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, serde_json::Value>,
}
