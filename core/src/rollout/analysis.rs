//! Analysis of a candidate's traffic during a step, against a deployment's thresholds.

use slipway_crd::model_deployment::{Analysis, ModelDeploymentSpec};

use super::Judgement;

/// Traffic the router observed for the candidate since the current step began.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Window {
    /// Requests answered.
    pub requests: u64,
    /// Responses with status ≥ 500 or no response.
    pub errors: u64,
    /// Latencies in milliseconds.
    pub latencies_ms: Vec<f64>,
}

/// What a deployment's `strategy.analysis` asks for that its target cannot measure, in words
/// (None: everything it asks for is judged). Status (`AnalysisMeasured=False`) and `slipway plan`
/// both say it from here, so an unmeasurable analysis is never ignored silently:
/// - the local router measures `minRequests`, `maxErrorRatio` and the latency percentile;
/// - a SageMaker endpoint is judged by its CloudWatch `alarms`;
/// - a Kubernetes target by its Deployment's health (available replicas, progress) alone.
pub fn unmeasured(spec: &ModelDeploymentSpec) -> Option<String> {
    let a = spec.strategy.analysis.as_ref()?;
    let thresholds: Vec<&str> = [
        ("minRequests", a.min_requests.is_some()),
        ("maxErrorRatio", a.max_error_ratio.is_some()),
        ("maxLatencyMs", a.max_latency_ms.is_some()),
        ("latencyPercentile", a.latency_percentile.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    let t = &spec.target;
    let (target, missing, judged_by) = if t.local.is_some() {
        let alarms = (!a.alarms.is_empty()).then_some("alarms");
        (
            "a local",
            alarms.into_iter().collect(),
            "the router's requests, errors and latency",
        )
    } else if t.kubernetes.is_some() {
        let mut all = thresholds;
        if !a.alarms.is_empty() {
            all.push("alarms");
        }
        (
            "a kubernetes",
            all,
            "its Deployment's health alone (available replicas and progress)",
        )
    } else if t.sagemaker.is_some() {
        ("a sagemaker", thresholds, "its CloudWatch alarms")
    } else {
        return None;
    };
    if missing.is_empty() {
        return None;
    }
    Some(format!(
        "strategy.analysis asks for {}, which {target} target cannot measure: its steps are judged by {judged_by}; remove {} or choose a target that measures {}",
        missing.join(", "),
        if missing.len() == 1 { "it" } else { "them" },
        if missing.len() == 1 { "it" } else { "them" },
    ))
}

/// The requests a step must see before it can pass: `minRequests`, else
/// [`MIN_REQUESTS`](crate::limits::MIN_REQUESTS) when a ratio or a latency is judged (a window
/// with no requests breaks no threshold, so it would pass on no evidence), else none.
pub fn min_requests(spec: &Analysis) -> u64 {
    spec.min_requests.unwrap_or(
        if spec.max_error_ratio.is_some() || spec.max_latency_ms.is_some() {
            crate::limits::MIN_REQUESTS
        } else {
            0
        },
    )
}

/// Judges a window against a deployment's analysis thresholds.
pub fn analyze(spec: Option<&Analysis>, window: &Window) -> Judgement {
    let Some(spec) = spec else {
        return Judgement::Pass;
    };
    let min = min_requests(spec);
    if window.requests < min {
        return Judgement::Inconclusive(format!("{} of {min} requests observed", window.requests));
    }
    if let Some(max) = spec.max_error_ratio
        && window.requests > 0
    {
        let ratio = window.errors as f64 / window.requests as f64;
        if ratio > max {
            return Judgement::Fail(format!(
                "error ratio {ratio:.3} above {max} ({} of {} requests)",
                window.errors, window.requests
            ));
        }
    }
    if let Some(max) = spec.max_latency_ms
        && !window.latencies_ms.is_empty()
    {
        let p = spec.latency_percentile.unwrap_or(99.0);
        let mut sorted = window.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        let value = sorted[rank.clamp(1, sorted.len()) - 1];
        if value > max {
            return Judgement::Fail(format!("p{p} latency {value:.1} ms above {max} ms"));
        }
    }
    Judgement::Pass
}
