//! `RegisteredModel`: a model collection and its automations.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{BaselineRef, Condition, DatasetRef, Gate, RunnerSpec, SecretRef};

/// A model collection: who owns it, which evaluation suites run on every new version, and who is told what.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "slipway.dev",
    version = "v1alpha1",
    kind = "RegisteredModel",
    namespaced,
    doc = "A model collection: who owns it, which evaluation suites run on every new version, and who is told what.",
    derive = "PartialEq",
    status = "RegisteredModelStatus",
    shortname = "rmodel",
    category = "slipway",
    printcolumn = r#"{"name":"LATEST","type":"string","jsonPath":".status.latestVersion"}"#,
    printcolumn = r#"{"name":"OWNERS","type":"string","jsonPath":".spec.owners"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RegisteredModelSpec {
    /// What the model does, for people browsing the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Owners (users or `group:NAME`), shown in reports and notifications.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<String>,
    /// Evaluation suites run automatically on every new version against its baseline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evaluations: Vec<EvaluationSuite>,
    /// The metric promotions are judged by; policies read it as `model.primaryMetric`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_metric: Option<PrimaryMetric>,
    /// Where to send events about this model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<Notification>,
    /// How long a version must serve in an earlier stage, without a rollback there, before it
    /// moves on; policies read it as `model.soak` (the default set holds production moves to
    /// it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak: Option<Soak>,
    /// The model's own comparison-report templates (minijinja); the default report without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<ReportTemplates>,
}

/// A model's report templates: files of the registry folder in git mode, keys of a ConfigMap
/// (labelled `slipway.dev/report-template: "true"`) in a cluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportTemplates {
    /// The Markdown report's template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub markdown: Option<String>,
    /// The HTML report's template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// In a cluster: the ConfigMap in the model's namespace whose keys `markdown` and `html`
    /// name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<String>,
}

/// The label a ConfigMap carries to be read as a report template.
pub const REPORT_TEMPLATE_LABEL: &str = "slipway.dev/report-template";

/// A stage a version serves in first, and for how long.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Soak {
    /// The alias it serves in first, e.g. `staging`.
    pub alias: String,
    /// How long it must have served there, e.g. `24h`.
    pub duration: String,
}

/// An evaluation suite run on every new version.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationSuite {
    /// Suite name, unique within the model, e.g. `pitch-frames`.
    pub name: String,
    /// How the suite is run.
    pub runner: RunnerSpec,
    /// The evaluation dataset.
    pub dataset: DatasetRef,
    /// What the new version is compared against, usually `alias: production`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineRef>,
    /// Conditions the candidate's metrics must meet for the verdict `Passed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<Gate>,
    /// Maximum run time, e.g. `30m`; a run past it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// The metric promotions are judged by.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrimaryMetric {
    /// Evaluation suite that measures it.
    pub suite: String,
    /// Metric name in that suite's results.
    pub metric: String,
    /// Whether larger is better (default `true`; `false` for losses and error rates).
    #[serde(default = "default_true")]
    pub higher_is_better: bool,
    /// Largest tolerated regression against the baseline, in metric units (e.g. `0.01`).
    #[serde(default)]
    pub max_regression: f64,
}

fn default_true() -> bool {
    true
}

/// Events Slipway notifies about.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum NotificationEvent {
    /// A new `ModelVersion` was registered.
    VersionRegistered,
    /// An evaluation finished (passed or failed).
    EvaluationCompleted,
    /// An alias now points at another version.
    AliasMoved,
    /// An alias move was held by policy.
    PromotionBlocked,
    /// A deployment started rolling out a version.
    RolloutStarted,
    /// A rollout finished with all traffic on the new version.
    RolloutSucceeded,
    /// A rollout failed analysis and traffic went back to the last healthy version.
    RolledBack,
    /// A rollback was written back to the source (the branch and pull request that move the
    /// alias back). Channels that list `RolledBack` hear it too.
    RollbackProposed,
}

impl NotificationEvent {
    /// Every event, in order.
    pub const ALL: [NotificationEvent; 8] = [
        NotificationEvent::VersionRegistered,
        NotificationEvent::EvaluationCompleted,
        NotificationEvent::AliasMoved,
        NotificationEvent::PromotionBlocked,
        NotificationEvent::RolloutStarted,
        NotificationEvent::RolloutSucceeded,
        NotificationEvent::RolledBack,
        NotificationEvent::RollbackProposed,
    ];

    /// The name as serialised and as history entries and events say it.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationEvent::VersionRegistered => "VersionRegistered",
            NotificationEvent::EvaluationCompleted => "EvaluationCompleted",
            NotificationEvent::AliasMoved => "AliasMoved",
            NotificationEvent::PromotionBlocked => "PromotionBlocked",
            NotificationEvent::RolloutStarted => "RolloutStarted",
            NotificationEvent::RolloutSucceeded => "RolloutSucceeded",
            NotificationEvent::RolledBack => "RolledBack",
            NotificationEvent::RollbackProposed => "RollbackProposed",
        }
    }

    /// The event named `name`, if it is one.
    pub fn named(name: &str) -> Option<NotificationEvent> {
        Self::ALL.into_iter().find(|e| e.as_str() == name)
    }
}

/// One notification channel. Set exactly one of `slack` and `webhook`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// Channel name, used in history and metrics.
    pub name: String,
    /// Events sent to this channel. (Named `events`, not `on`: YAML 1.1 parsers such as
    /// kubectl's read an unquoted `on` key as the boolean `true`.)
    #[serde(alias = "on")]
    pub events: Vec<NotificationEvent>,
    /// A Slack incoming webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<SlackNotification>,
    /// A generic HTTP webhook with a templated body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookNotification>,
}

impl Notification {
    /// Whether this channel hears `event`: it lists it, or it is the written-back rollback of a
    /// `RolledBack` it lists (its follow-up, with the pull request's link).
    pub fn hears(&self, event: NotificationEvent) -> bool {
        self.events.contains(&event)
            || (event == NotificationEvent::RollbackProposed
                && self.events.contains(&NotificationEvent::RolledBack))
    }
}

/// A Slack incoming webhook.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlackNotification {
    /// The incoming-webhook URL (it is a secret).
    pub webhook_url: SecretRef,
}

/// A generic HTTP webhook.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookNotification {
    /// Target URL.
    pub url: String,
    /// minijinja template of the JSON body; sees `event`, `model`, `version`, `alias`, `message`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_template: Option<String>,
    /// Request headers; values are secret references.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, SecretRef>,
}

/// Observed state of a `RegisteredModel`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisteredModelStatus {
    /// The most recently registered version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_version: Option<String>,
    /// Alias name → version it resolves to.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aliases: BTreeMap<String, String>,
    /// Conditions, `Ready` summarising the others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Labels whose `ModelVersion` was deleted, with the artifact digest each had: such a label
    /// is never registered again with another artifact.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired_versions: Vec<RetiredVersion>,
}

/// A label whose `ModelVersion` was deleted, and its artifact.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetiredVersion {
    /// The version label.
    pub version: String,
    /// Its artifact digest.
    pub digest: String,
    /// When its `ModelVersion` was deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<DateTime<Utc>>,
}
