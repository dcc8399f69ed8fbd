//! `ModelVersion`: an immutable artifact record.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, DatasetRef};

/// The finalizer the controller puts on every `ModelVersion`: before the version goes, its
/// model's status records the label and artifact digest as retired (a label means one artifact,
/// even after its version is deleted).
pub const RETIRE_FINALIZER: &str = "slipway.dev/retire";

/// The name a `ModelVersion` of `model` with label `version` has in a cluster: two
/// registrations of one label then meet at the API server, which admits only one.
pub fn object_name(model: &str, version: &str) -> String {
    format!("{model}-{version}")
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// One trained artifact of a model. `artifact` and `source` never change after creation.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "slipway.dev",
    version = "v1alpha1",
    kind = "ModelVersion",
    namespaced,
    doc = "One trained artifact of a model. `artifact` and `source` never change after creation.",
    derive = "PartialEq",
    status = "ModelVersionStatus",
    shortname = "mver",
    category = "slipway",
    printcolumn = r#"{"name":"MODEL","type":"string","jsonPath":".spec.model"}"#,
    printcolumn = r#"{"name":"VERSION","type":"string","jsonPath":".spec.version"}"#,
    printcolumn = r#"{"name":"READY","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ModelVersionSpec {
    /// Name of the `RegisteredModel` this version belongs to.
    pub model: String,
    /// Version label, unique within the model, e.g. `"8"`.
    pub version: String,
    /// The trained artifact. Immutable.
    pub artifact: Artifact,
    /// Lineage: how the artifact was produced. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// Training metrics reported by the training run.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
    /// What changed in this version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Free-form labels, readable by policies as `candidate.labels`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// What the model takes and returns, readable by policies as `candidate.signature`
    /// (`candidate.signature.compatibleWith(current.signature)`). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Signature>,
}

/// The inputs a model takes and the outputs it returns.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Signature {
    /// Fields a request carries.
    #[serde(default)]
    pub inputs: Vec<SignatureField>,
    /// Fields a prediction carries.
    #[serde(default)]
    pub outputs: Vec<SignatureField>,
}

/// One input or output of a signature.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignatureField {
    /// Name, unique among the inputs (or the outputs).
    pub name: String,
    /// Type: a column type (`boolean`, `integer`, `long`, `float`, `double`, `string`,
    /// `binary`, `datetime`) or a tensor's element type (`bool`, `int8` … `int64`, `uint8` …
    /// `uint64`, `float16`, `bfloat16`, `float32`, `float64`, `str`, `bytes`).
    #[serde(rename = "type")]
    pub type_: String,
    /// A tensor's shape, `-1` for a dimension of any size; absent: any shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<Vec<i64>>,
    /// An input callers may leave out, or an output a prediction may lack.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// A model artifact.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// Where the artifact lives (`s3://…`, `file://…`, or a path relative to the registry).
    pub uri: String,
    /// Content digest, e.g. `sha256:…`. Part of every evaluation's cache key.
    pub digest: String,
    /// Serialization format, e.g. `onnx`, `pickle`, `safetensors`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

/// Lineage of a version.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// URL of the training run (experiment tracker, CI job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// Commit of the training code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Training dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<DatasetRef>,
}

/// Observed state of a `ModelVersion`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelVersionStatus {
    /// When Slipway first saw this version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_at: Option<DateTime<Utc>>,
    /// Latest result of each evaluation suite.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evaluations: Vec<EvaluationSummary>,
    /// Conditions, `Ready` summarising the others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// The latest result of one suite for a version.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationSummary {
    /// Suite name.
    pub suite: String,
    /// Name of the `Evaluation` object.
    pub evaluation: String,
    /// `Pending`, `Running`, `Succeeded` or `Failed`.
    pub phase: crate::evaluation::EvaluationPhase,
    /// `Passed` or `Failed`, once finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<crate::evaluation::Verdict>,
}
