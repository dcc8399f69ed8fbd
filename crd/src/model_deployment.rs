//! `ModelDeployment`: serve whatever an alias (or a pinned version) points at.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The finalizer the controller puts on a `ModelDeployment` with a SageMaker target: its
/// endpoint is deleted with it.
pub const SAGEMAKER_FINALIZER: &str = "slipway.dev/sagemaker-endpoint";

use crate::common::{Condition, Resources};

/// The annotation an operator sets on a `ModelDeployment` to roll a rejected version out again
/// (`kubectl annotate mdeploy NAME slipway.dev/retry=VERSION`; an empty value retries every
/// rejected version). The controller records the retry and removes the annotation.
pub const RETRY_ANNOTATION: &str = "slipway.dev/retry";

/// Serves the version an alias (or a pinned version) points at on a target, rolling changes out per strategy.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "slipway.dev",
    version = "v1alpha1",
    kind = "ModelDeployment",
    namespaced,
    doc = "Serves the version an alias (or a pinned version) points at on a target, rolling changes out per strategy.",
    derive = "PartialEq",
    status = "ModelDeploymentStatus",
    shortname = "mdeploy",
    category = "slipway",
    printcolumn = r#"{"name":"MODEL","type":"string","jsonPath":".spec.model"}"#,
    printcolumn = r#"{"name":"ALIAS","type":"string","jsonPath":".spec.alias"}"#,
    printcolumn = r#"{"name":"SERVING","type":"string","jsonPath":".status.servingVersion"}"#,
    printcolumn = r#"{"name":"TARGET","type":"string","jsonPath":".status.targetVersion"}"#,
    printcolumn = r#"{"name":"PHASE","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ModelDeploymentSpec {
    /// Name of the `RegisteredModel`.
    pub model: String,
    /// Alias to follow, e.g. `production`. Set exactly one of `alias` and `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Version to pin. Set exactly one of `alias` and `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Where the model is served.
    pub target: DeploymentTarget,
    /// How changes are rolled out.
    #[serde(default)]
    pub strategy: Strategy,
    /// Standing shadows: versions that get a copy of a share of live requests for as long as
    /// they are listed, with no time limit, answering nobody (local target: their agreement
    /// with the serving version is exported per version; kubernetes target with
    /// traffic.gatewayAPI: RequestMirror filters on the route).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shadows: Vec<crate::serving::Shadow>,
}

/// Serving target. Set exactly one of `local`, `kubernetes`, `sagemaker`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentTarget {
    /// Model-server processes on this machine behind Slipway's traffic router.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalTarget>,
    /// Per-version Deployments behind one Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesTarget>,
    /// An Amazon SageMaker real-time endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sagemaker: Option<SageMakerTarget>,
}

impl DeploymentTarget {
    /// Names of the target variants that are set.
    pub fn set_variants(&self) -> Vec<&'static str> {
        let mut set = Vec::new();
        if self.local.is_some() {
            set.push("local");
        }
        if self.kubernetes.is_some() {
            set.push("kubernetes");
        }
        if self.sagemaker.is_some() {
            set.push("sagemaker");
        }
        set
    }
}

/// Local model-server processes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalTarget {
    /// Program and arguments of one model server; `$PORT`, `$MODEL_URI` and `$MODEL_VERSION` are set for it.
    pub command: Vec<String>,
    /// Port of the traffic router clients call.
    pub port: u16,
    /// Health-check path of the model server, e.g. `/healthz`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_path: Option<String>,
    /// Working directory, relative to the registry folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

/// Kubernetes Deployments.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesTarget {
    /// Model-server image.
    pub image: String,
    /// Total replicas across versions; canary weights are realised as replica ratios.
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    /// Container port.
    pub port: u16,
    /// Container resources (`nvidia.com/gpu` and other extended resources within the operator's
    /// bounds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The container's command (the image's entrypoint when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// The container's arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// When a pod takes traffic: an HTTP GET of a health path on the container port. Without it
    /// a pod counts as ready as soon as its process starts, loaded or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<crate::serving::Readiness>,
    /// Node labels the pods must run on, e.g. `nvidia.com/gpu.product: NVIDIA-A10G`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pods tolerate (their keys within the operator's `--allowed-tolerations`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<crate::serving::Toleration>,
    /// Secrets of the namespace the image is pulled with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<String>,
    /// How traffic is split between versions: by the ratio of their replicas (the default), or
    /// exactly, by a Gateway API HTTPRoute's backend weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<crate::serving::KubernetesTraffic>,
}

fn default_replicas() -> u32 {
    1
}

/// An Amazon SageMaker endpoint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SageMakerTarget {
    /// AWS region; defaults to the standard AWS configuration chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Endpoint name.
    pub endpoint_name: String,
    /// IAM role SageMaker assumes to pull the image and artifact.
    pub execution_role_arn: String,
    /// Inference container image.
    pub image: String,
    /// Instance type, e.g. `ml.m5.large`.
    pub instance_type: String,
    /// Initial instance count per variant.
    #[serde(default = "default_replicas")]
    pub instance_count: u32,
    /// SageMaker API endpoint URL for private (VPC) endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// Who shifts traffic: `Guardrails` (default; SageMaker's blue/green deployment guardrails)
    /// or `Variants` (both versions as production variants, Slipway shifts their weights).
    #[serde(default)]
    pub mode: SageMakerMode,
}

/// How a SageMaker endpoint's traffic moves to a new version.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum SageMakerMode {
    /// `UpdateEndpoint` with a blue/green `DeploymentConfig`: SageMaker shifts traffic (one
    /// canary step, or linear) and rolls back on the analysis' alarms.
    #[default]
    Guardrails,
    /// Old and new version as two production variants; Slipway shifts weights step by step with
    /// `UpdateEndpointWeightsAndCapacities` and rolls back when an analysis alarm fires.
    Variants,
}

/// What an analysis still inconclusive at its deadline does.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum OnInconclusive {
    /// Handled as a failed analysis: rolled back (or stopped, without `autoRollback`).
    #[default]
    Rollback,
    /// The step holds its weights and waits for data; it never passes without it.
    Hold,
}

fn is_default<T: Default + PartialEq>(t: &T) -> bool {
    *t == T::default()
}

/// Rollout strategy type.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum StrategyType {
    /// Switch all traffic at once (after the new version is healthy).
    #[default]
    AllAtOnce,
    /// Shift traffic through explicit `steps`.
    Canary,
    /// Shift `stepWeight` percent every `interval`.
    Linear,
}

/// How a change is rolled out.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Strategy {
    /// `AllAtOnce` (default), `Canary` or `Linear`.
    #[serde(default, rename = "type")]
    pub type_: StrategyType,
    /// Canary steps: percent of traffic on the new version and how long to hold it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
    /// Linear: percent added per step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_weight: Option<u32>,
    /// Linear: time between steps, e.g. `2m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// What must hold during each step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
    /// On failed analysis, send all traffic back to the last healthy version (default `true`).
    #[serde(default = "default_true")]
    pub auto_rollback: bool,
    /// How long a new version may take to become healthy before its rollout fails, e.g. `5m`
    /// (default 10 minutes; 30 minutes on SageMaker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline: Option<String>,
    /// Requests that go to the version being rolled out from its first step on, whatever the
    /// step's weight (an A/B cohort): any rule that matches sends the request there (local
    /// target).
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub match_: Vec<crate::serving::RequestMatch>,
    /// Keeps each user on one version for the whole rollout: the hash of this header or cookie
    /// picks the version, the candidate taking the first `weight` of 100 buckets, so a user who
    /// reached it stays there as its weight grows (local target). Requests without the key are
    /// split by weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky_by: Option<crate::serving::RequestKey>,
}

fn default_true() -> bool {
    true
}

/// One canary step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// Percent of traffic (0–100) on the new version; 0 for a shadow step (with `mirror`).
    pub weight: u32,
    /// How long to hold this step while analysis passes, e.g. `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<String>,
    /// A shadow step (`weight: 0`): percent of live requests also sent to the new version,
    /// whose answers are discarded — compared with the serving version's on a local target;
    /// through the route's RequestMirror (kubernetes with traffic.gatewayAPI) or as a shadow
    /// variant (sagemaker in mode Variants) judged by the analysis' metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<u32>,
}

/// Analysis thresholds evaluated during each step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Analysis {
    /// Largest tolerated ratio of 5xx responses from the new version (0–1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_ratio: Option<f64>,
    /// Latency percentile to check, e.g. `99`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_percentile: Option<f64>,
    /// Largest tolerated latency at that percentile, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency_ms: Option<f64>,
    /// Requests the new version must answer in each step before the step can pass (default 20
    /// when `maxErrorRatio` or `maxLatencyMs` is set: a step never passes on no evidence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u64>,
    /// What a step whose analysis is still inconclusive at the progress deadline (counted from
    /// the step's start) does: `Rollback` (default; handled as a failed analysis) or `Hold`
    /// (stays at its weights, never passing, until enough data arrives or the alias moves).
    #[serde(default, skip_serializing_if = "is_default")]
    pub on_inconclusive: OnInconclusive,
    /// Shadow steps: the smallest share (0–1) of mirrored requests whose answers must agree
    /// with the serving version's (same status; the same JSON within `agreementTolerance`, or
    /// the same bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_agreement: Option<f64>,
    /// Shadow steps: how far apart two numbers in the answers may be and still agree (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement_tolerance: Option<f64>,
    /// Shadow steps: fields of a JSON answer left out of the comparison, as dotted paths
    /// (`version`, `meta.took_ms`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agreement_ignore: Vec<String>,
    /// CloudWatch alarms that roll a SageMaker deployment back when they fire.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<String>,
    /// Metrics measured from a provider during every canary step; a failed one rolls back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<crate::analysis::Metric>,
    /// The candidate compared with the serving version by a sequential test; one shown worse
    /// rolls back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub comparisons: Vec<crate::analysis::Comparison>,
}

/// Rollout phase of a deployment.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum DeploymentPhase {
    /// Rolling out a new version.
    #[default]
    Progressing,
    /// Serving the desired version with all traffic.
    Healthy,
    /// Serving, but a health check fails.
    Degraded,
    /// The last rollout failed analysis and was rolled back.
    RolledBack,
    /// Could not roll out (bad spec, target error).
    Failed,
}

impl DeploymentPhase {
    /// The name as serialised (`Progressing`, `Healthy`, …): the wire name, never `Debug` output.
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentPhase::Progressing => "Progressing",
            DeploymentPhase::Healthy => "Healthy",
            DeploymentPhase::Degraded => "Degraded",
            DeploymentPhase::RolledBack => "RolledBack",
            DeploymentPhase::Failed => "Failed",
        }
    }
}

/// A SageMaker endpoint as Slipway last saw it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointStatus {
    /// Endpoint name.
    pub name: String,
    /// SageMaker's status: `Creating`, `Updating`, `InService`, `RollingBack`, `Failed`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The EndpointConfig it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// The config Slipway last asked SageMaker to heal to (a refused heal is not repeated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healing_config: Option<String>,
    /// Region and API endpoint URL overrides, kept for deleting the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// API endpoint URL override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
}

/// A rollback written back to the source.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackProposal {
    /// The rejected version the source asked for.
    pub version: String,
    /// The version the change moves back to.
    pub back_to: String,
    /// When it was proposed (or last tried).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    /// The branch pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Its commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The pull request opened for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<String>,
    /// Why it could not be proposed (tried again after five minutes, then backing off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How many times it was tried.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Observed state of a `ModelDeployment`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelDeploymentStatus {
    /// Rollout phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::common::nullable_enum::<DeploymentPhase>")]
    pub phase: Option<DeploymentPhase>,
    /// Version holding the majority of traffic / last healthy version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_version: Option<String>,
    /// Version being rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_version: Option<String>,
    /// Version → percent of traffic.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub traffic: BTreeMap<String, u32>,
    /// Index of the current step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step: Option<u32>,
    /// Versions rolled back on this deployment; not retried until the alias moves again or `slipway retry`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected_versions: Vec<String>,
    /// When the current step's traffic was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started_at: Option<DateTime<Utc>>,
    /// When the version being rolled out was first seen ready at the current step's traffic
    /// (the step's pause and metrics count from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_ready_at: Option<DateTime<Utc>>,
    /// When the version being rolled out was started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_started_at: Option<DateTime<Utc>>,
    /// The version the deployment's alias (or pin) asked for at the last decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_desired_version: Option<String>,
    /// Rollout steps, newest last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<RolloutEvent>,
    /// The metric analysis of the current (or last) canary step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<crate::analysis::AnalysisStatus>,
    /// The change proposed to the source after the last rollback (a git source): the branch
    /// that moves the alias back, and its pull request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal: Option<RollbackProposal>,
    /// The SageMaker endpoint, as last seen (sagemaker target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<Box<EndpointStatus>>,
    /// Differences between the live endpoint and the desired state (condition `OutOfSync`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<String>,
    /// The standing shadows (`spec.shadows`) as they are now: each entry's version, its share
    /// (an entry whose version serves or rolls out, or whose alias names none, is left out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shadows: Vec<crate::serving::ShadowStatus>,
    /// Conditions, `Ready` summarising the others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// What happened in a rollout (status history, history entries, events and notifications use
/// these names).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum RolloutEventKind {
    /// A rollout of a new version began.
    #[default]
    RolloutStarted,
    /// Traffic moved to the next step's weights.
    StepStarted,
    /// All traffic is on the new version.
    RolloutSucceeded,
    /// Analysis failed; traffic went back to the stable version.
    RolledBack,
    /// Analysis failed without automatic rollback; the rollout stopped where it was.
    RolloutFailed,
    /// The alias moved again during a rollout; the old candidate was withdrawn.
    RolloutSuperseded,
    /// An operator asked for a rejected version to be rolled out again.
    RetryRequested,
    /// A metric of the analysis was measured (its value and verdict).
    AnalysisMeasured,
    /// A rollback was written back to the source: a branch that moves the alias back (and a
    /// pull request).
    RollbackProposed,
    /// A rollback could not be written back to the source (why is in the message).
    RollbackProposalFailed,
}

impl RolloutEventKind {
    /// The name as serialised: the wire name, never `Debug` output.
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutEventKind::RolloutStarted => "RolloutStarted",
            RolloutEventKind::StepStarted => "StepStarted",
            RolloutEventKind::RolloutSucceeded => "RolloutSucceeded",
            RolloutEventKind::RolledBack => "RolledBack",
            RolloutEventKind::RolloutFailed => "RolloutFailed",
            RolloutEventKind::RolloutSuperseded => "RolloutSuperseded",
            RolloutEventKind::RetryRequested => "RetryRequested",
            RolloutEventKind::AnalysisMeasured => "AnalysisMeasured",
            RolloutEventKind::RollbackProposed => "RollbackProposed",
            RolloutEventKind::RollbackProposalFailed => "RollbackProposalFailed",
        }
    }

    /// Whether people should hear of it as a warning (the rollout did not go as asked).
    pub fn is_warning(self) -> bool {
        matches!(
            self,
            RolloutEventKind::RolledBack
                | RolloutEventKind::RolloutFailed
                | RolloutEventKind::RollbackProposalFailed
        )
    }
}

/// One rollout step that happened.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutEvent {
    /// When it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    /// What happened, e.g. `StepStarted`, `RolledBack`.
    pub event: RolloutEventKind,
    /// Version → percent after the event.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub traffic: BTreeMap<String, u32>,
    /// Explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
