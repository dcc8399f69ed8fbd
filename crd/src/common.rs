//! Types shared by several kinds.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

/// A Kubernetes-style condition. `Ready` summarises the others.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. `Ready`, `Stalled`, `Reconciling`, `OutOfSync`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// One CamelCase word saying why the condition is in this state.
    #[serde(default)]
    pub reason: String,
    /// Human-readable explanation, including what to do next.
    #[serde(default)]
    pub message: String,
    /// When `status` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<DateTime<Utc>>,
    /// The `metadata.generation` this condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A dataset, pinned by content digest.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatasetRef {
    /// Where the dataset lives (`s3://…`, `gs://…`, `file://…`, or a path relative to the registry).
    pub uri: String,
    /// Content digest of the dataset, e.g. `sha256:…`. Part of every evaluation's cache key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// The version an evaluation compares against: an alias (resolved when the evaluation starts) or a fixed version.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BaselineRef {
    /// Alias of the same model, e.g. `production`. Set exactly one of `alias` and `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Version label of the same model, e.g. `"7"`. Set exactly one of `alias` and `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// Comparison operator of a gate.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum GateOp {
    /// Greater than.
    #[serde(rename = ">")]
    Gt,
    /// Greater than or equal.
    #[serde(rename = ">=")]
    Ge,
    /// Less than.
    #[serde(rename = "<")]
    Lt,
    /// Less than or equal.
    #[serde(rename = "<=")]
    Le,
}

/// What a gate's `value` is relative to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RelativeTo {
    /// `metric op value`.
    #[default]
    Absolute,
    /// `metric op baselineMetric + value` (use a negative value to allow a small regression).
    Baseline,
}

/// A pass/fail condition on one evaluation metric.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Gate {
    /// Metric name as written to the results file, e.g. `macro_f1`.
    pub metric: String,
    /// One of `>`, `>=`, `<`, `<=`.
    pub op: GateOp,
    /// Threshold, or offset from the baseline's metric when `relativeTo: baseline`.
    pub value: f64,
    /// `absolute` (default) or `baseline`.
    #[serde(default)]
    pub relative_to: RelativeTo,
}

/// How an evaluation is run. Set exactly one of `local`, `kubernetes`, `webhook`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunnerSpec {
    /// Run a command as a local subprocess (git mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalRunner>,
    /// Run a Kubernetes Job (Kubernetes mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesRunner>,
    /// Call an external system (e.g. a CI workflow) that reports back through the results API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookRunner>,
}

impl RunnerSpec {
    /// Names of the runner variants that are set.
    pub fn set_variants(&self) -> Vec<&'static str> {
        let mut set = Vec::new();
        if self.local.is_some() {
            set.push("local");
        }
        if self.kubernetes.is_some() {
            set.push("kubernetes");
        }
        if self.webhook.is_some() {
            set.push("webhook");
        }
        set
    }
}

/// A local subprocess runner.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalRunner {
    /// Program and arguments, e.g. `["python3", "evaluate.py"]`. It writes JSON results to `$SLIPWAY_RESULTS`.
    pub command: Vec<String>,
    /// Working directory, relative to the registry folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

/// A Kubernetes Job runner.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesRunner {
    /// Container image of the evaluation job.
    pub image: String,
    /// Entrypoint override.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Resource requests and limits, as in a container spec (e.g. `limits: {cpu: "2", memory: 4Gi}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Service account the Job runs as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
}

/// Container resource requests and limits.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// Requests, e.g. `cpu: 500m`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, String>,
    /// Limits, e.g. `memory: 2Gi`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, String>,
}

/// An external runner called over HTTP.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookRunner {
    /// URL to POST to, e.g. a GitHub `repository_dispatch` endpoint.
    pub url: String,
    /// minijinja template of the request body; sees `evaluation`, `resultsUrl` and `token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_template: Option<String>,
    /// Request headers; values come from secret references, never inline.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, SecretRef>,
}

/// A reference to a secret value. Secrets are never written inline in a resource.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of an environment variable of the Slipway process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// Path of a file whose content (trimmed) is the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// A key of a Kubernetes Secret in the object's namespace (Kubernetes mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
}

/// A key of a Kubernetes Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    pub name: String,
    /// Key within the Secret's data.
    pub key: String,
}

/// Schema of an optional enum for CRDs: the enum's own schema marked `nullable`.
///
/// schemars describes `Option<Enum>` as `anyOf: [Enum, {enum: [null]}]`, which the API server
/// rejects in a structural schema.
pub fn nullable_enum<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = T::json_schema(generator);
    schema.insert("nullable".into(), true.into());
    schema
}
