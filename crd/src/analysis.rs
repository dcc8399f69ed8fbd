//! Metric analysis of a rollout: queries a metric provider answers at every step, judged by CEL
//! conditions, and the measurements a `ModelDeployment`'s status keeps of them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::SecretRef;

/// One metric measured during every canary step (before the step's weight reaches 100%).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    /// Name, unique within the analysis (history, status and reports say it).
    pub name: String,
    /// Time between measurements, e.g. `30s` (default `1m`). The first is taken one interval
    /// after the candidate is ready at its step's weights, so the step has had traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// CEL over `result` (the provider's answer): true is a successful measurement, e.g.
    /// `result < 0.01`.
    pub success_condition: String,
    /// CEL over `result`: true is a failed measurement. Without it, a measurement that is not a
    /// success is a failure; with it, one that is neither is inconclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_condition: Option<String>,
    /// Failed measurements a step tolerates; one more rolls back (default 0).
    #[serde(default)]
    pub failure_limit: u32,
    /// Inconclusive measurements (no data, a provider that cannot be reached, a condition that
    /// cannot be evaluated) a step tolerates; one more is handled as the analysis' `onInconclusive`
    /// says, at once. Unset: they only hold the step, until the progress deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inconclusive_limit: Option<u32>,
    /// Where the value comes from. Set exactly one of `prometheus` and `http`.
    pub provider: MetricProvider,
}

/// Where a metric's value comes from. Set exactly one.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricProvider {
    /// A Prometheus instant query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusMetric>,
    /// A JSON document fetched over HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpMetric>,
    /// CloudWatch metric data queries (`GetMetricData`), with the credentials of the AWS
    /// configuration chain Slipway runs with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloudwatch: Option<CloudWatchMetric>,
}

/// A Prometheus instant query (`GET {address}/api/v1/query`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusMetric {
    /// The server, e.g. `http://prometheus.monitoring:9090`.
    pub address: String,
    /// PromQL; `{{version}}`, `{{stableVersion}}`, `{{deployment}}`, `{{namespace}}` and
    /// `{{model}}` are replaced (escaped for a PromQL string). `result` is the number of a
    /// scalar or a one-sample vector, a list of numbers for several samples.
    pub query: String,
}

/// A JSON document fetched with `GET`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpMetric {
    /// The URL; the same placeholders as a Prometheus query are replaced (URL-encoded).
    pub url: String,
    /// Where `result` is in the answer: a path of keys and indexes, e.g. `data.accuracy` or
    /// `items.0.value` (default: the whole document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_path: Option<String>,
    /// Request headers; values come from secret references, never inline.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, SecretRef>,
}

/// CloudWatch metric data queries. `result` is the newest value of the query that returns data
/// (the one with `returnData: true`, else the last); no data point in the window is no reading.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudWatchMetric {
    /// The AWS region (default: the configuration chain's, `AWS_REGION`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// How far back the data is read, ending now (default `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// The queries (1 to 10): a metric's statistic, or metric math over other queries' ids.
    pub queries: Vec<CloudWatchQuery>,
}

/// One metric data query.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudWatchQuery {
    /// Its id (a lower-case letter, then letters, digits and `_`), for expressions to name.
    pub id: String,
    /// Metric math over other queries (`errors / invocations`); no placeholders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    /// A metric's statistic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_stat: Option<CloudWatchMetricStat>,
    /// Whether `result` is this query's value (default: only the last query's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_data: Option<bool>,
}

/// A metric and the statistic read of it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudWatchMetricStat {
    /// The metric's namespace, e.g. `AWS/SageMaker`.
    pub namespace: String,
    /// The metric, e.g. `Invocation5XXErrors`.
    pub metric_name: String,
    /// Its dimensions (name → value); values may use the placeholders of a Prometheus query
    /// (`{{version}}`, `{{deployment}}`, …), replaced as they are.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dimensions: BTreeMap<String, String>,
    /// The period in seconds (1, 5, 10, 30 or a multiple of 60; default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<u32>,
    /// The statistic: `Sum`, `Average`, `Minimum`, `Maximum`, `SampleCount`, or a percentile
    /// such as `p99`.
    pub stat: String,
}

/// What a measurement found.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum MeasurementVerdict {
    /// The success condition held.
    Success,
    /// The failure condition held (or, without one, the success condition did not).
    Failure,
    /// No answer, no data, or a condition that could not be evaluated.
    #[default]
    Inconclusive,
}

impl MeasurementVerdict {
    /// The name as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            MeasurementVerdict::Success => "Success",
            MeasurementVerdict::Failure => "Failure",
            MeasurementVerdict::Inconclusive => "Inconclusive",
        }
    }
}

/// One measurement of a metric.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Measurement {
    /// When it was taken.
    pub at: DateTime<Utc>,
    /// The provider's answer, as JSON text (none when there was no answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// What it found.
    pub verdict: MeasurementVerdict,
    /// Why it is inconclusive or failed (the provider's error, the condition that held).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The measurements of one metric during a step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricStatus {
    /// The metric.
    pub name: String,
    /// Successful measurements in the step.
    #[serde(default)]
    pub successes: u32,
    /// Failed measurements in the step.
    #[serde(default)]
    pub failures: u32,
    /// Inconclusive measurements in the step.
    #[serde(default)]
    pub inconclusives: u32,
    /// The newest measurements, newest last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurements: Vec<Measurement>,
}

/// The metric analysis of the current (or last) canary step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisStatus {
    /// The version measured.
    pub version: String,
    /// The step's index.
    pub step: u32,
    /// When the candidate was seen ready at the step's weights (the measurements count from here).
    pub since: DateTime<Utc>,
    /// Each metric's measurements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricStatus>,
}

/// The candidate compared with the serving version on a rate the application reports (a
/// label-based accuracy, a conversion rate), by a sequential test whose false-positive rate
/// holds however often it is looked at.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    /// Name, unique among the analysis' metrics and comparisons.
    pub name: String,
    /// Time between looks, e.g. `1m` (default `1m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// How long after a prediction its outcome arrives, e.g. `10m` (default none): nothing is
    /// judged before the candidate has served this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_delay: Option<String>,
    /// How much lower than the serving version's rate the candidate's may be (absolute; default
    /// 0: not lower at all).
    #[serde(default)]
    pub margin: f64,
    /// The false-positive rate, however often the test looks (default 0.05).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// The scale of differences the test is tuned to find fastest (its mixing τ; default the
    /// margin, or 0.02 when the margin is 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tau: Option<f64>,
    /// Trials each version needs before anything is judged (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_trials: Option<u64>,
    /// A version's successes (e.g. correct labelled predictions); `{{version}}` is the version
    /// asked about, `{{since}}` how long the candidate has served (`642s`).
    pub successes: MetricProvider,
    /// A version's trials (e.g. labelled predictions), over the same window.
    pub trials: MetricProvider,
}
