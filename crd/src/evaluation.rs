//! `Evaluation`: one evaluation run of a version against a baseline.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{BaselineRef, Condition, DatasetRef, Gate, GateOp, RelativeTo, RunnerSpec};

/// One evaluation run of a model version against a baseline. Created from a `RegisteredModel` suite or by hand.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "slipway.dev",
    version = "v1alpha1",
    kind = "Evaluation",
    namespaced,
    doc = "One evaluation run of a model version against a baseline. Created from a `RegisteredModel` suite or by hand.",
    derive = "PartialEq",
    status = "EvaluationStatus",
    shortname = "meval",
    category = "slipway",
    printcolumn = r#"{"name":"MODEL","type":"string","jsonPath":".spec.model"}"#,
    printcolumn = r#"{"name":"VERSION","type":"string","jsonPath":".spec.version"}"#,
    printcolumn = r#"{"name":"SUITE","type":"string","jsonPath":".spec.suite"}"#,
    printcolumn = r#"{"name":"PHASE","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"VERDICT","type":"string","jsonPath":".status.verdict"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationSpec {
    /// Name of the `RegisteredModel`.
    pub model: String,
    /// Version label under evaluation (the candidate).
    pub version: String,
    /// Suite name (from the model's `evaluations`, or a free name for a hand-made evaluation).
    pub suite: String,
    /// What the candidate is compared against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineRef>,
    /// The evaluation dataset.
    pub dataset: DatasetRef,
    /// How the evaluation is run.
    pub runner: RunnerSpec,
    /// Conditions for the verdict `Passed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<Gate>,
    /// Maximum run time, e.g. `30m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// Lifecycle phase of an evaluation.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum EvaluationPhase {
    /// Not started yet.
    #[default]
    Pending,
    /// Running.
    Running,
    /// Finished and produced results (the verdict may still be `Failed`).
    Succeeded,
    /// Could not produce results (crash, timeout).
    Failed,
}

/// Outcome of the gates.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Verdict {
    /// Every gate passed.
    Passed,
    /// A gate failed, or the run failed.
    Failed,
}

impl Verdict {
    /// The name as serialised (`Passed`, `Failed`): the wire name, never `Debug` output.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Passed => "Passed",
            Verdict::Failed => "Failed",
        }
    }
}

impl EvaluationPhase {
    /// The name as serialised (`Pending`, `Running`, `Succeeded`, `Failed`).
    pub fn as_str(self) -> &'static str {
        match self {
            EvaluationPhase::Pending => "Pending",
            EvaluationPhase::Running => "Running",
            EvaluationPhase::Succeeded => "Succeeded",
            EvaluationPhase::Failed => "Failed",
        }
    }
}

/// One sample prediction, for side-by-side comparison in the report.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    /// The input (e.g. a frame id or URI).
    pub input: String,
    /// The labelled answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// The candidate's prediction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
    /// The baseline's prediction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
}

/// The result of one gate.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateResult {
    /// Metric name.
    pub metric: String,
    /// Operator.
    pub op: GateOp,
    /// Configured value.
    pub value: f64,
    /// `absolute` or `baseline`.
    #[serde(default)]
    pub relative_to: RelativeTo,
    /// The candidate's metric (absent when the results did not contain it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<f64>,
    /// The threshold the metric was compared with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Whether the gate held.
    pub passed: bool,
    /// Explanation, e.g. which metric was missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Observed state of an `Evaluation`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationStatus {
    /// `Pending`, `Running`, `Succeeded` or `Failed`.
    #[serde(default)]
    pub phase: EvaluationPhase,
    /// The candidate's metrics.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
    /// The baseline's metrics on the same dataset.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub baseline_metrics: BTreeMap<String, f64>,
    /// The version the baseline resolved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_version: Option<String>,
    /// Sample predictions of candidate and baseline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<Sample>,
    /// Result of each gate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<GateResult>,
    /// `Passed` or `Failed`, once finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::common::nullable_enum::<Verdict>")]
    pub verdict: Option<Verdict>,
    /// Content address of this run: artifact digest, dataset digest, runner spec and suite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_key: Option<String>,
    /// Digest of what judged the run (the suite's gates and timeout as the evaluation was
    /// decided): a change re-judges a finished run's results, or runs a failed one again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judged_by: Option<String>,
    /// Content address of the baseline's run (its artifact digest, dataset, runner and suite), so
    /// a later evaluation of that artifact can reuse it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_cache_key: Option<String>,
    /// Location of the comparison report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
    /// When the run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When the run finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    /// How many times the run was attempted (in this round).
    #[serde(default)]
    pub attempts: u32,
    /// How many times the evaluation started afresh (an operator's retry, a changed suite or
    /// version): its Jobs are named by round and attempt, so a new round never meets an old Job.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub round: u32,
    /// Conditions, `Ready` summarising the others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}
