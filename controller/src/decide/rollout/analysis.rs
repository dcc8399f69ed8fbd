//! Analysis of a candidate's traffic during a step, against a deployment's thresholds.

use slipway_crd::model_deployment::Analysis;

use super::Verdict;

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

/// Judges a window against a deployment's analysis thresholds.
pub fn analyze(spec: Option<&Analysis>, window: &Window) -> Verdict {
    let Some(spec) = spec else {
        return Verdict::Pass;
    };
    if let Some(min) = spec.min_requests
        && window.requests < min
    {
        return Verdict::Inconclusive(format!("{} of {min} requests observed", window.requests));
    }
    if let Some(max) = spec.max_error_ratio
        && window.requests > 0
    {
        let ratio = window.errors as f64 / window.requests as f64;
        if ratio > max {
            return Verdict::Fail(format!(
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
            return Verdict::Fail(format!("p{p} latency {value:.1} ms above {max} ms"));
        }
    }
    Verdict::Pass
}
