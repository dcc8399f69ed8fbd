//! What a change rolls out: the deployment's target and strategy in words, and for a SageMaker
//! target the AWS calls the rollout makes.

use slipway_crd::model_deployment::{ModelDeployment, StrategyType};

use super::Rollout;
use crate::catalog::Catalog;

/// The AWS calls that roll `version` out to a SageMaker target (names as the target makes them).
fn aws_calls(d: &ModelDeployment, head: &Catalog, version: Option<&str>) -> Vec<String> {
    use crate::rollout::sagemaker as sm;
    let (Some(t), Some(v)) = (&d.spec.target.sagemaker, version) else {
        return Vec::new();
    };
    let ns = d
        .metadata
        .namespace
        .as_deref()
        .unwrap_or(crate::catalog::object::DEFAULT_NAMESPACE);
    let Some(mv) = head.version(ns, &d.spec.model, v) else {
        return vec![format!("nothing: version {v} does not exist")];
    };
    let artifact = sm::Artifact {
        uri: mv.spec.artifact.uri.clone(),
        digest: mv.spec.artifact.digest.clone(),
    };
    let want = sm::desired(t, v, &artifact, None);
    let mut out = Vec::new();
    for var in &want.variants {
        out.push(format!(
            "CreateModel {} (image {}, model data {})",
            var.model, var.image, var.artifact
        ));
    }
    out.push(format!(
        "CreateEndpointConfig {}: {}",
        want.config,
        want.variants
            .iter()
            .map(|var| format!(
                "variant {} = {} × {} (instance count kept if autoscaled), weight {}",
                var.name, var.instance_count, var.instance_type, var.weight
            ))
            .collect::<Vec<_>>()
            .join("; ")
    ));
    if t.mode == slipway_crd::model_deployment::SageMakerMode::Variants {
        let steps = crate::rollout::strategy_steps(&d.spec.strategy);
        if let Some(shadow) = steps.first().filter(|s| s.mirror > 0) {
            out.push(format!(
                "UpdateEndpoint {} → a config with the serving version's variant and {} as a shadow variant ({}% of requests copied to it, answered by none), for the shadow step",
                want.endpoint, want.variants[0].name, shadow.mirror
            ));
            out.push(format!(
                "UpdateEndpoint {} → a config with the serving version's variant and {} at the next step's weights, once the shadow step passed",
                want.endpoint, want.variants[0].name
            ));
        } else {
            out.push(format!(
                "UpdateEndpoint {} → a config with the serving version's variant and {} at weight 0",
                want.endpoint, want.variants[0].name
            ));
        }
        out.push(format!(
            "UpdateEndpointWeightsAndCapacities {} at each step of the strategy (no new config), held while the analysis alarms stay OK and its metrics pass",
            want.endpoint
        ));
        let alone = std::collections::BTreeMap::from([(v.to_string(), 100)]);
        let last = sm::desired_split(
            t,
            &alone,
            &|_| Some(artifact.clone()),
            &Default::default(),
            None,
        );
        out.push(format!(
            "UpdateEndpoint {} → {} ({} alone) once it takes all traffic",
            want.endpoint,
            last.map(|l| l.config).unwrap_or_default(),
            want.variants[0].name
        ));
        out.push(format!(
            "after success: delete the superseded EndpointConfigs and Models of {}",
            want.endpoint
        ));
        return out;
    }
    match sm::guardrails(&d.spec.strategy) {
        Ok(g) => out.push(format!(
            "UpdateEndpoint {} → {} ({}; CreateEndpoint if it does not exist yet)",
            want.endpoint,
            want.config,
            g.describe()
        )),
        Err(e) => out.push(format!("cannot roll out: {e}")),
    }
    out.push(format!(
        "after success: delete the superseded EndpointConfigs and Models of {}",
        want.endpoint
    ));
    out
}

pub(super) fn rollout(d: &ModelDeployment, head: &Catalog, version: Option<&str>) -> Rollout {
    let t = &d.spec.target;
    let target = if let Some(l) = &t.local {
        format!("local router on port {}", l.port)
    } else if let Some(k) = &t.kubernetes {
        match k.traffic.as_ref().and_then(|t| t.gateway_api.as_ref()) {
            Some(g) => format!(
                "kubernetes, {} replicas of {}, split exactly by HTTPRoute {}",
                k.replicas, k.image, g.http_route
            ),
            None => format!("kubernetes, {} replicas of {}", k.replicas, k.image),
        }
    } else if let Some(s) = &t.sagemaker {
        format!(
            "sagemaker endpoint {} ({} × {})",
            s.endpoint_name, s.instance_count, s.instance_type
        )
    } else {
        "no target".to_string()
    };
    let s = &d.spec.strategy;
    let strategy = match s.type_ {
        StrategyType::AllAtOnce => "AllAtOnce".to_string(),
        StrategyType::Canary => {
            let mut parts: Vec<String> = s
                .steps
                .iter()
                .map(|st| {
                    let at = match st.mirror {
                        Some(m) if st.weight == 0 => format!("shadow {m}%"),
                        _ => format!("{}%", st.weight),
                    };
                    match &st.pause {
                        Some(p) => format!("{at} ({p})"),
                        None => at,
                    }
                })
                .collect();
            if s.steps.last().is_none_or(|st| st.weight < 100) {
                parts.push("100%".into());
            }
            format!("Canary {}", parts.join(" → "))
        }
        StrategyType::Linear => format!(
            "Linear +{}% every {}",
            s.step_weight.unwrap_or(0),
            s.interval.as_deref().unwrap_or("?")
        ),
    };
    let rollback = if s.auto_rollback {
        ", auto-rollback"
    } else {
        ""
    };
    let ns = d
        .metadata
        .namespace
        .as_deref()
        .unwrap_or(crate::catalog::object::DEFAULT_NAMESPACE);
    Rollout {
        deployment: format!("{ns}/{}", d.metadata.name.as_deref().unwrap_or("?")),
        target,
        strategy: format!(
            "{strategy}{rollback}{}{}",
            routes(s),
            standing(&d.spec.shadows)
        ),
        aws: aws_calls(d, head, version),
        analysis: judged_by(s)
            .into_iter()
            .map(|line| match &t.sagemaker {
                // Under guardrails SageMaker shifts the traffic; no metric can stop it.
                Some(sm)
                    if line.starts_with("metric ")
                        && !crate::rollout::sagemaker::judged_by_metrics(sm) =>
                {
                    format!("{line} — not measured under SageMaker guardrails (mode: Variants is)")
                }
                _ => line,
            })
            .collect(),
    }
}

/// The request rules of `s`, in words (empty without any): the cohorts sent to the candidate,
/// the key users stay on one version by.
fn routes(s: &slipway_crd::model_deployment::Strategy) -> String {
    let key = |k: &slipway_crd::serving::RequestKey| match (&k.header, &k.cookie) {
        (Some(h), _) => format!("header {h}"),
        (None, Some(c)) => format!("cookie {c}"),
        (None, None) => "?".to_string(),
    };
    let mut out = String::new();
    for m in &s.match_ {
        out.push_str(&format!("; {} = {:?} → candidate", key(&m.key()), m.value));
    }
    if let Some(k) = &s.sticky_by {
        out.push_str(&format!("; users sticky by {}", key(k)));
    }
    out
}

/// The standing shadows, in words (empty without any): `; shadows: version 3 (10% mirrored),
/// alias challenger (25% mirrored)`.
fn standing(shadows: &[slipway_crd::serving::Shadow]) -> String {
    let each: Vec<String> = shadows
        .iter()
        .map(|s| {
            let what = match (&s.version, &s.alias) {
                (Some(v), _) => format!("version {v}"),
                (None, Some(a)) => format!("alias {a}"),
                (None, None) => "?".to_string(),
            };
            format!("{what} ({}% mirrored)", s.mirror)
        })
        .collect();
    if each.is_empty() {
        String::new()
    } else {
        format!("; shadows: {}", each.join(", "))
    }
}

/// What judges each step of `s`, in words: the router's thresholds, the alarms, each metric
/// (provider, query, conditions, interval, limits).
fn judged_by(s: &slipway_crd::model_deployment::Strategy) -> Vec<String> {
    let Some(a) = &s.analysis else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut thresholds = Vec::new();
    if let Some(r) = a.max_error_ratio {
        thresholds.push(format!("error ratio ≤ {r}"));
    }
    if let Some(ms) = a.max_latency_ms {
        thresholds.push(format!(
            "p{} latency ≤ {ms} ms",
            a.latency_percentile.unwrap_or(99.0)
        ));
    }
    if let Some(m) = a.min_agreement {
        thresholds.push(format!(
            "shadow agreement ≥ {m} (numbers within {})",
            a.agreement_tolerance.unwrap_or(0.0)
        ));
    }
    let min = crate::rollout::analysis::min_requests(a);
    if min > 0 {
        thresholds.push(format!("at least {min} requests per step"));
    }
    if !thresholds.is_empty() {
        out.push(format!("thresholds: {}", thresholds.join(", ")));
    }
    if !a.alarms.is_empty() {
        out.push(format!("CloudWatch alarms: {}", a.alarms.join(", ")));
    }
    for m in &a.metrics {
        let provider = match (&m.provider.prometheus, &m.provider.http) {
            _ if m.provider.cloudwatch.is_some() => {
                let c = m.provider.cloudwatch.as_ref();
                let queries: Vec<String> = c
                    .iter()
                    .flat_map(|c| &c.queries)
                    .map(|q| match (&q.metric_stat, &q.expression) {
                        (Some(s), _) => {
                            format!("{}={} {}/{}", q.id, s.stat, s.namespace, s.metric_name)
                        }
                        (None, Some(e)) => format!("{}=`{e}`", q.id),
                        (None, None) => q.id.clone(),
                    })
                    .collect();
                let region = c
                    .and_then(|c| c.region.as_deref())
                    .unwrap_or("the default region");
                format!("cloudwatch ({region}) {}", queries.join(", "))
            }
            (Some(p), _) => format!(
                "prometheus {} `{}`",
                p.address,
                p.query.split_whitespace().collect::<Vec<_>>().join(" ")
            ),
            (None, Some(h)) => match &h.json_path {
                Some(path) => format!("http {} at {path}", h.url),
                None => format!("http {}", h.url),
            },
            (None, None) => "no provider".to_string(),
        };
        let mut conditions = format!("success `{}`", m.success_condition);
        if let Some(f) = &m.failure_condition {
            conditions.push_str(&format!(", failure `{f}`"));
        }
        let inconclusive = match m.inconclusive_limit {
            Some(l) => format!("; more than {l} inconclusive: {:?}", a.on_inconclusive),
            None => String::new(),
        };
        out.push(format!(
            "metric {}: {provider} every {}; {conditions}; rolls back after {} failed measurement(s) in a step{inconclusive}",
            m.name,
            crate::duration::format(crate::rollout::metrics::interval(m)),
            m.failure_limit + 1
        ));
    }
    for c in &a.comparisons {
        let delay = c
            .label_delay
            .as_deref()
            .map(|d| format!(", labels {d} after a prediction"))
            .unwrap_or_default();
        out.push(format!(
            "comparison {}: candidate against the serving version on successes / trials, every {}{delay}; rolls back once an always-valid {}% interval (mSPRT) shows it lower by more than {}",
            c.name,
            c.interval.as_deref().unwrap_or("1m"),
            (1.0 - c.alpha.unwrap_or(crate::rollout::metrics::DEFAULT_ALPHA)) * 100.0,
            c.margin
        ));
    }
    out
}

/// A deployment's analysis its target cannot measure, named for the plan.
pub(super) fn warnings_of(d: &slipway_crd::model_deployment::ModelDeployment) -> Vec<String> {
    let ns = d
        .metadata
        .namespace
        .as_deref()
        .unwrap_or(crate::catalog::object::DEFAULT_NAMESPACE);
    let name = d.metadata.name.as_deref().unwrap_or("?");
    let mut out: Vec<String> = crate::rollout::analysis::unmeasured(&d.spec)
        .into_iter()
        .collect();
    if let Some((weight, replicas, pods)) = crate::rollout::replicas::surge(&d.spec) {
        out.push(format!(
            "the {weight}% step runs {pods} pods on a target of {replicas} replicas, to hold the candidate's one pod to its share; set replicas to at least {} to avoid it",
            100u32.div_ceil(weight)
        ));
    }
    out.into_iter()
        .map(|why| format!("ModelDeployment {ns}/{name}: {why}"))
        .collect()
}
