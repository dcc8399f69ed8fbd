//! Analysis of a candidate's traffic during a step, against a deployment's thresholds.

use slipway_crd::model_deployment::{Analysis, ModelDeploymentSpec};

use super::Judgement;

/// Traffic the router observed for the candidate since the current step began (the local
/// router's control socket carries it as JSON).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Window {
    /// Requests answered.
    pub requests: u64,
    /// Responses with status ≥ 500 or no response.
    pub errors: u64,
    /// Latencies in milliseconds: every request's, or beyond [`MAX_LATENCIES`] a uniform sample
    /// of them ([`Window::latency`] keeps it).
    pub latencies_ms: Vec<f64>,
    /// Shadow steps: mirrored requests whose answers were compared with the serving version's.
    pub compared: u64,
    /// Of those, the ones that agreed.
    pub agreed: u64,
    /// The first disagreements (at most [`super::shadow::SAMPLES`]).
    pub disagreements: Vec<super::shadow::Disagreement>,
}

/// The most latencies a window keeps: beyond, a uniform sample of this many (a percentile of
/// 10,000 samples is within a fraction of a percent of the whole window's).
pub const MAX_LATENCIES: usize = 10_000;

impl Window {
    /// Records one more latency, counted in `requests` already: kept while the window has fewer
    /// than [`MAX_LATENCIES`], else in place of a random one with probability
    /// `MAX_LATENCIES / requests` (reservoir sampling; `random` is any uniform 64-bit number).
    pub fn latency(&mut self, ms: f64, random: u64) {
        if self.latencies_ms.len() < MAX_LATENCIES {
            self.latencies_ms.push(ms);
            return;
        }
        let slot = random % self.requests.max(1);
        if let Some(l) = usize::try_from(slot)
            .ok()
            .and_then(|s| self.latencies_ms.get_mut(s))
        {
            *l = ms;
        }
    }
}

/// What a deployment's `strategy.analysis` asks for that its target cannot measure, in words
/// (None: everything it asks for is judged). Status (`AnalysisMeasured=False`) and `slipway plan`
/// both say it from here, so an unmeasurable analysis is never ignored silently:
/// - the local router measures `minRequests`, `maxErrorRatio` and the latency percentile;
/// - a SageMaker endpoint is judged by its CloudWatch `alarms`, and in `Variants` mode by
///   `metrics` too;
/// - a Kubernetes target by its Deployment's health (available replicas, progress);
/// - `metrics` (a provider's queries) judge local and Kubernetes targets.
pub fn unmeasured(spec: &ModelDeploymentSpec) -> Option<String> {
    let a = spec.strategy.analysis.as_ref()?;
    let thresholds: Vec<&str> = [
        ("minRequests", a.min_requests.is_some()),
        ("maxErrorRatio", a.max_error_ratio.is_some()),
        ("maxLatencyMs", a.max_latency_ms.is_some()),
        ("latencyPercentile", a.latency_percentile.is_some()),
        ("minAgreement", a.min_agreement.is_some()),
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
            if a.metrics.is_empty() {
                "its Deployment's health alone (available replicas and progress)"
            } else {
                "its Deployment's health (available replicas and progress) and its metrics"
            },
        )
    } else if let Some(sm) = &t.sagemaker {
        let mut all = thresholds;
        let metrics = super::sagemaker::judged_by_metrics(sm);
        if !metrics && !a.metrics.is_empty() {
            all.push("metrics");
        }
        let judged_by = if metrics {
            "its CloudWatch alarms and its metrics"
        } else {
            "its CloudWatch alarms (under guardrails SageMaker shifts the traffic itself; mode: Variants is judged by metrics too)"
        };
        ("a sagemaker", all, judged_by)
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
        if spec.max_error_ratio.is_some()
            || spec.max_latency_ms.is_some()
            || spec.min_agreement.is_some()
        {
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
    if let Some(why) = super::shadow::judge(
        spec.min_agreement,
        min,
        window.compared,
        window.agreed,
        &window.disagreements,
    ) {
        return Judgement::Fail(why);
    }
    Judgement::Pass
}

#[cfg(test)]
mod tests {
    use super::super::{RolloutState, status};
    use super::*;
    use chrono::{TimeZone, Utc};

    /// Issue 22 §8: a window's latencies travel between processes, so a busy window keeps a
    /// uniform sample of them, not every one: its percentiles stay those of the whole window.
    #[test]
    fn a_busy_window_keeps_a_uniform_sample_of_its_latencies() {
        let mut w = Window::default();
        let mut random: u64 = 0x2545_F491_4F6C_DD1D;
        for i in 0..100_000u64 {
            w.requests += 1;
            random ^= random << 13;
            random ^= random >> 7;
            random ^= random << 17;
            // Latencies 0..1000 ms, evenly.
            w.latency((i % 1000) as f64, random);
        }
        assert_eq!(w.latencies_ms.len(), MAX_LATENCIES);
        let mut sorted = w.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let p = |q: f64| sorted[((sorted.len() - 1) as f64 * q) as usize];
        assert!((p(0.5) - 500.0).abs() < 20.0, "p50 {}", p(0.5));
        assert!((p(0.99) - 990.0).abs() < 10.0, "p99 {}", p(0.99));
    }
    use slipway_crd::model_deployment::DeploymentPhase;

    #[test]
    fn analysis_judges_errors_latency_and_volume() {
        let spec = Analysis {
            max_error_ratio: Some(0.01),
            latency_percentile: Some(99.0),
            max_latency_ms: Some(80.0),
            min_requests: Some(100),
            alarms: vec![],
            ..Analysis::default()
        };
        let mut window = Window {
            requests: 50,
            errors: 0,
            latencies_ms: vec![10.0; 50],
            ..Window::default()
        };
        assert!(matches!(
            analyze(Some(&spec), &window),
            Judgement::Inconclusive(_)
        ));
        window.requests = 200;
        window.latencies_ms = vec![10.0; 200];
        assert_eq!(analyze(Some(&spec), &window), Judgement::Pass);
        window.errors = 5;
        assert_eq!(
            analyze(Some(&spec), &window),
            Judgement::Fail("error ratio 0.025 above 0.01 (5 of 200 requests)".into())
        );
        window.errors = 0;
        window.latencies_ms[199] = 500.0;
        window.latencies_ms[198] = 400.0;
        window.latencies_ms[197] = 300.0;
        assert_eq!(
            analyze(Some(&spec), &window),
            Judgement::Fail("p99 latency 300.0 ms above 80 ms".into())
        );
        assert_eq!(analyze(None, &window), Judgement::Pass);
    }

    /// Issue 20: a candidate that answered 500 to every request went 25% → 50% → 100% because its
    /// windows held no requests, and a window with none breaks no threshold. A step now needs
    /// requests before it can pass, by default when a ratio or latency is judged.
    #[test]
    fn a_window_without_requests_never_passes_a_judged_step() {
        let spec = Analysis {
            max_error_ratio: Some(0.05),
            ..Analysis::default()
        };
        let empty = Window::default();
        assert_eq!(
            analyze(Some(&spec), &empty),
            Judgement::Inconclusive("0 of 20 requests observed".into())
        );
        let enough = Window {
            requests: 20,
            errors: 0,
            latencies_ms: vec![5.0; 20],
            ..Window::default()
        };
        assert_eq!(analyze(Some(&spec), &enough), Judgement::Pass);
        // Only alarms (SageMaker's): nothing counted here, nothing to wait for.
        let alarms = Analysis {
            alarms: vec!["errors".into()],
            ..Analysis::default()
        };
        assert_eq!(analyze(Some(&alarms), &empty), Judgement::Pass);
        // An explicit minimum is the deployment's own.
        let one = Analysis {
            min_requests: Some(1),
            ..spec
        };
        assert!(matches!(
            analyze(Some(&one), &empty),
            Judgement::Inconclusive(_)
        ));
    }

    #[test]
    fn an_analysis_its_target_cannot_measure_is_said_in_the_status_of_every_target() {
        let spec = |target: serde_json::Value, analysis: serde_json::Value| {
            serde_json::from_value::<slipway_crd::model_deployment::ModelDeploymentSpec>(
                serde_json::json!({"model": "m", "alias": "production", "target": target,
                                   "strategy": {"type": "Canary", "steps": [{"weight": 25}], "analysis": analysis}}),
            )
            .unwrap()
        };
        let local = serde_json::json!({"local": {"command": ["serve"], "port": 9000}});
        let kube =
            serde_json::json!({"kubernetes": {"image": "serve:1", "replicas": 4, "port": 8080}});
        let sm = serde_json::json!({"sagemaker": {"endpointName": "e", "region": "eu-west-1", "image": "i",
                                                  "instanceType": "ml.m5.large", "executionRoleArn": "arn:aws:iam::1:role/x"}});
        let thresholds = serde_json::json!({"maxErrorRatio": 0.01, "maxLatencyMs": 200.0});
        let alarms = serde_json::json!({"alarms": ["errors-high"]});
        // The local router measures thresholds, SageMaker measures alarms: nothing to say.
        assert_eq!(unmeasured(&spec(local.clone(), thresholds.clone())), None);
        assert_eq!(unmeasured(&spec(sm.clone(), alarms.clone())), None);
        assert_eq!(
            unmeasured(&spec(local, alarms.clone())).as_deref(),
            Some(
                "strategy.analysis asks for alarms, which a local target cannot measure: its steps are judged by the router's requests, errors and latency; remove it or choose a target that measures it"
            )
        );
        assert!(
            unmeasured(&spec(sm.clone(), thresholds.clone()))
                .unwrap()
                .starts_with(
                    "strategy.analysis asks for maxErrorRatio, maxLatencyMs, which a sagemaker target"
                )
        );
        // Metrics judge a SageMaker endpoint in Variants mode, not under guardrails.
        let metric = serde_json::json!({"metrics": [{"name": "errors", "successCondition": "result < 1",
            "provider": {"http": {"url": "http://quality/errors"}}}]});
        let mut variants = sm.clone();
        variants["sagemaker"]["mode"] = "Variants".into();
        assert_eq!(unmeasured(&spec(variants, metric.clone())), None);
        let guarded = unmeasured(&spec(sm.clone(), metric)).unwrap();
        assert!(guarded.starts_with("strategy.analysis asks for metrics, which a sagemaker target cannot measure: its steps are judged by its CloudWatch alarms (under guardrails"), "{guarded}");
        let k = spec(kube, thresholds);
        let why = unmeasured(&k).unwrap();
        assert!(why.contains("a kubernetes target cannot measure: its steps are judged by its Deployment's health alone"), "{why}");

        // The status of every step says so, beside Ready, and a stall says so too.
        let previous = slipway_crd::model_deployment::ModelDeploymentStatus::default();
        let basis = status::Basis {
            spec: &k,
            previous: &previous,
            generation: Some(2),
            now: Utc.with_ymd_and_hms(2026, 11, 26, 20, 0, 0).unwrap(),
        };
        let state = RolloutState {
            stable: Some("7".into()),
            phase: DeploymentPhase::Healthy,
            traffic: [("7".to_string(), 100)].into(),
            ..Default::default()
        };
        for s in [
            status::stepped(&state, [], &basis, None),
            status::stalled_for("OutsideBounds", &state, "no", &basis, None),
        ] {
            let c = s
                .conditions
                .iter()
                .find(|c| c.type_ == "AnalysisMeasured")
                .expect("an AnalysisMeasured condition");
            assert_eq!(
                (c.status.as_str(), c.reason.as_str(), c.message.as_str()),
                ("False", "Unmeasurable", why.as_str())
            );
        }
    }
}
