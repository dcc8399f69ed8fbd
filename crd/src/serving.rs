//! What makes a Kubernetes target's model-server pod ready, and where it may run.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A readiness probe: an HTTP GET of `path` on the container port; a pod takes traffic (and a
/// rollout step counts) once it answers 2xx or 3xx.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    /// The health path, e.g. `/v2/health/ready`.
    pub path: String,
    /// Seconds before the first probe (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay_seconds: Option<u32>,
    /// Seconds between probes (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<u32>,
    /// Failed probes in a row that take a pod out of traffic (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<u32>,
}

/// A taint the pods tolerate (Kubernetes' `Toleration`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Toleration {
    /// The taint's key (none, with `operator: Exists`: every taint — only where the operator
    /// allows `*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `Equal` (default) or `Exists`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// The taint's value (`Equal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute` (none: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
    /// With `NoExecute`: how long a pod stays once the taint appears.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<i64>,
}

/// Where a request carries a key: one header or one cookie (set exactly one).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestKey {
    /// A header's name, e.g. `x-user-id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// A cookie's name, e.g. `session`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
}

/// Requests that go to the version being rolled out whatever the step's weight (an A/B cohort):
/// the header or cookie has exactly this value.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestMatch {
    /// A header's name, e.g. `x-cohort`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// A cookie's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// The value that matches, exactly.
    pub value: String,
}

impl RequestMatch {
    /// The header or cookie it reads.
    pub fn key(&self) -> RequestKey {
        RequestKey {
            header: self.header.clone(),
            cookie: self.cookie.clone(),
        }
    }
}

/// How a `kubernetes` target splits traffic between versions.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
pub struct KubernetesTraffic {
    /// Exact splits through the Gateway API: each version gets a Service of its own
    /// (`DEPLOYMENT-vVERSION`, port 80), and the HTTPRoute's rules that send requests to the
    /// deployment's Service (or to those per-version Services) get one backend per version,
    /// weighted by each step's percentages.
    #[serde(
        rename = "gatewayAPI",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub gateway_api: Option<GatewayApiTraffic>,
}

/// The Gateway API route whose backend weights a rollout sets.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayApiTraffic {
    /// The HTTPRoute, in the deployment's namespace; a rule of it names the deployment's Service
    /// as a backend (`backendRefs: [{name: DEPLOYMENT, port: 80}]`).
    pub http_route: String,
}

/// A standing shadow: a version that gets a copy of a share of live requests for as long as it
/// is listed and answers nobody — its answers compared with the serving version's on a local
/// target, copied through the route's RequestMirror on a kubernetes one. Set exactly one of
/// `version` and `alias`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Shadow {
    /// The version mirrored to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// An alias whose version is mirrored to (the shadow follows the alias, e.g. `challenger`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Percent of live requests also sent to it (1–100).
    pub mirror: u32,
}

/// A standing shadow as it is now: the version its entry names (an alias read as the version
/// it names), and its share.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShadowStatus {
    /// The version that gets the copies.
    pub version: String,
    /// Percent of live requests copied to it.
    pub mirror: u32,
}
