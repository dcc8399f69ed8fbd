//! Metric analysis of a canary step (pure), for both homes and every target: which metrics are
//! due ([`due`]), the request each one makes of its provider, what a provider's answer reads as
//! ([`prometheus_result`], [`json_path`]), what a reading is judged ([`judge`]), the step's record
//! of its measurements ([`record`]) and what they make of the step ([`judgement`]). The homes only
//! send the requests (`edges::providers`) and hand the readings to [`super::step::step`].
//!
//! The rules: a metric is measured every `interval` during a canary step below 100%, the first
//! one interval after the step's weights were applied. A failed measurement beyond `failureLimit`
//! rolls back; an inconclusive one (no data, no answer, a condition that cannot be evaluated)
//! never counts as a success — beyond `inconclusiveLimit` it is handled as `onInconclusive`
//! says; and a step passes only once each metric has had a successful measurement in it.

use std::time::Duration;

use cel::{Context, Program, Value};
use chrono::{DateTime, Utc};
use slipway_crd::analysis::{
    AnalysisStatus, Measurement, MeasurementVerdict as Verdict, Metric, MetricStatus,
};
use slipway_crd::model_deployment::{
    Analysis, ModelDeploymentSpec, ModelDeploymentStatus, OnInconclusive,
};

use super::{Judgement, RolloutState};

/// Time between measurements when a metric sets no `interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Measurements of a metric the status keeps (the counts cover them all).
pub const KEPT: usize = 20;
/// The longest value a measurement records, in bytes.
pub const MAX_VALUE: usize = 200;
/// What a query's placeholders stand for.
#[derive(Clone, Copy, Debug)]
pub struct Names<'a> {
    /// The deployment's namespace.
    pub namespace: &'a str,
    /// The deployment's name.
    pub deployment: &'a str,
    /// The model.
    pub model: &'a str,
    /// The version under way.
    pub version: &'a str,
    /// The version serving beside it.
    pub stable: Option<&'a str>,
}

impl Names<'_> {
    fn get(&self, placeholder: &str) -> Option<&str> {
        match placeholder {
            "version" => Some(self.version),
            "stableVersion" => Some(self.stable.unwrap_or_default()),
            "deployment" => Some(self.deployment),
            "namespace" => Some(self.namespace),
            "model" => Some(self.model),
            _ => None,
        }
    }
}

/// A metric to measure now.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    /// The metric's name.
    pub metric: String,
    /// What to ask its provider.
    pub request: Request,
}

/// What a provider answered: the value, or why there is none.
pub type Reading = Result<serde_json::Value, String>;

/// A metric's interval (its own, else [`DEFAULT_INTERVAL`]).
pub fn interval(m: &Metric) -> Duration {
    m.interval
        .as_deref()
        .and_then(|i| crate::duration::parse(i).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_INTERVAL)
}

/// The analysis the status records of the step under way, if it is of this step.
fn current<'a>(
    status: Option<&'a AnalysisStatus>,
    state: &RolloutState,
) -> Option<&'a AnalysisStatus> {
    let a = status?;
    (Some(&a.version) == state.candidate.as_ref()
        && a.step as usize == state.step
        && Some(a.since) == state.step_started)
        .then_some(a)
}

/// Whether the state is in a canary step the metrics judge: a candidate under way, seen ready
/// at its step's weights (below 100%); when it was.
fn measuring(spec: &ModelDeploymentSpec, state: &RolloutState) -> Option<DateTime<Utc>> {
    state.candidate.as_ref()?;
    let started = state.step_ready?;
    let steps = super::strategy_steps(&spec.strategy);
    (steps.get(state.step).is_some_and(|s| s.weight < 100)).then_some(started)
}

/// When each metric is next due (metric, instant).
fn schedule<'a>(
    spec: &'a ModelDeploymentSpec,
    status: Option<&AnalysisStatus>,
    state: &RolloutState,
) -> Vec<(&'a Metric, DateTime<Utc>)> {
    let (Some(a), Some(started)) = (&spec.strategy.analysis, measuring(spec, state)) else {
        return Vec::new();
    };
    let recorded = current(status, state);
    a.metrics
        .iter()
        .map(|m| {
            let last = recorded
                .and_then(|r| r.metrics.iter().find(|s| s.name == m.name))
                .and_then(|s| s.measurements.last())
                .map_or(started, |x| x.at.max(started));
            let every = chrono::Duration::from_std(interval(m)).unwrap_or(chrono::Duration::MAX);
            (m, last + every)
        })
        .collect()
}

/// The metrics to measure now, with their requests.
pub fn due(
    spec: &ModelDeploymentSpec,
    previous: &ModelDeploymentStatus,
    state: &RolloutState,
    names: &Names,
    now: DateTime<Utc>,
) -> Vec<Query> {
    schedule(spec, previous.analysis.as_ref(), state)
        .into_iter()
        .filter(|(_, at)| *at <= now)
        .filter_map(|(m, _)| {
            Some(Query {
                metric: m.name.clone(),
                request: request(m, names)?,
            })
        })
        .collect()
}

/// How long until the next metric is due after a decision left `state` and `status`.
pub fn next_due(
    spec: &ModelDeploymentSpec,
    status: &ModelDeploymentStatus,
    state: &RolloutState,
    now: DateTime<Utc>,
) -> Option<Duration> {
    schedule(spec, status.analysis.as_ref(), state)
        .into_iter()
        .map(|(_, at)| (at - now).to_std().unwrap_or(Duration::ZERO))
        .min()
}

/// Every number in `v` as a double, so `result < 1` and `result < 0.5` compare alike.
fn doubles(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        serde_json::Value::Array(a) => a.iter().map(doubles).collect(),
        serde_json::Value::Object(o) => o
            .iter()
            .map(|(k, v)| (k.clone(), doubles(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
        other => other.clone(),
    }
}

/// Compiles a metric's condition (it reads `result`).
pub fn compile(source: &str) -> Result<Program, String> {
    crate::catalog::expr::compile_over(source, &["result"]).map(|c| c.program)
}

fn holds(source: &str, result: &serde_json::Value) -> Result<bool, String> {
    let program = compile(source)?;
    let mut ctx = Context::default();
    ctx.add_variable_from_value(
        "result",
        cel::to_value(doubles(result)).unwrap_or(Value::Null),
    );
    match program.execute(&ctx) {
        Ok(Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("`{source}` returned {other:?}, not a boolean")),
        Err(e) => Err(format!("`{source}` cannot be evaluated: {e}")),
    }
}

/// What `reading` is judged by `m`'s conditions, at `now`.
pub fn judge(m: &Metric, reading: &Reading, now: DateTime<Utc>) -> Measurement {
    let measurement = |value: Option<String>, verdict, message: Option<String>| Measurement {
        at: now,
        value,
        verdict,
        message,
    };
    let result = match reading {
        Ok(v) => v,
        Err(why) => return measurement(None, Verdict::Inconclusive, Some(why.clone())),
    };
    // What the status shows of the answer: its value, kept short.
    let mut text = result.to_string();
    if text.len() > MAX_VALUE {
        let mut end = MAX_VALUE;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    let value = Some(text);
    if let Some(f) = &m.failure_condition {
        match holds(f, result) {
            Ok(true) => {
                return measurement(value, Verdict::Failure, Some(format!("`{f}` holds")));
            }
            Ok(false) => {}
            Err(why) => return measurement(value, Verdict::Inconclusive, Some(why)),
        }
    }
    let s = &m.success_condition;
    match holds(s, result) {
        Ok(true) => measurement(value, Verdict::Success, None),
        Ok(false) if m.failure_condition.is_some() => measurement(
            value,
            Verdict::Inconclusive,
            Some(format!("neither `{s}` nor the failure condition holds")),
        ),
        Ok(false) => measurement(value, Verdict::Failure, Some(format!("`{s}` is false"))),
        Err(why) => measurement(value, Verdict::Inconclusive, Some(why)),
    }
}

/// The step's analysis with `measured` (metric, measurement) added: the status's record when it
/// is of this step, else a new one.
pub fn record(
    previous: Option<&AnalysisStatus>,
    state: &RolloutState,
    measured: &[(String, Measurement)],
) -> Option<AnalysisStatus> {
    let mut a = match current(previous, state) {
        Some(a) => a.clone(),
        None if measured.is_empty() => return previous.cloned(),
        None => AnalysisStatus {
            version: state.candidate.clone()?,
            step: state.step as u32,
            since: state.step_started?,
            metrics: Vec::new(),
        },
    };
    for (name, m) in measured {
        let i = match a.metrics.iter().position(|s| &s.name == name) {
            Some(i) => i,
            None => {
                a.metrics.push(MetricStatus {
                    name: name.clone(),
                    ..Default::default()
                });
                a.metrics.len() - 1
            }
        };
        let s = &mut a.metrics[i];
        match m.verdict {
            Verdict::Success => s.successes += 1,
            Verdict::Failure => s.failures += 1,
            Verdict::Inconclusive => s.inconclusives += 1,
        }
        s.measurements.push(m.clone());
        let excess = s.measurements.len().saturating_sub(KEPT);
        s.measurements.drain(..excess);
    }
    Some(a)
}

/// A measurement in words, for history: `error-rate = 0.02: Failure (`result < 0.01` is false)`.
pub fn said(metric: &str, m: &Measurement) -> String {
    let value = m.value.as_deref().unwrap_or("no value");
    let why = m
        .message
        .as_deref()
        .map(|w| format!(" ({w})"))
        .unwrap_or_default();
    format!("metric {metric} = {value}: {}{why}", m.verdict.as_str())
}

/// What the step's measurements make of it (Pass when the analysis has no metrics).
pub fn judgement(
    analysis: Option<&Analysis>,
    status: Option<&AnalysisStatus>,
    state: &RolloutState,
) -> Judgement {
    let Some(a) = analysis.filter(|a| !a.metrics.is_empty()) else {
        return Judgement::Pass;
    };
    let recorded = current(status, state);
    let mut waiting = Vec::new();
    for m in &a.metrics {
        let s = recorded
            .and_then(|r| r.metrics.iter().find(|s| s.name == m.name))
            .cloned()
            .unwrap_or_default();
        let last = s.measurements.last().map(|x| said(&m.name, x));
        if s.failures > m.failure_limit {
            return Judgement::Fail(format!(
                "{} failed measurement(s) of metric {} (failureLimit {}); last: {}",
                s.failures,
                m.name,
                m.failure_limit,
                last.unwrap_or_default()
            ));
        }
        if let Some(limit) = m.inconclusive_limit
            && s.inconclusives > limit
        {
            let why = format!(
                "{} inconclusive measurement(s) of metric {} (inconclusiveLimit {limit}); last: {}",
                s.inconclusives,
                m.name,
                last.clone().unwrap_or_default()
            );
            return match a.on_inconclusive {
                OnInconclusive::Rollback => Judgement::Fail(why),
                OnInconclusive::Hold => Judgement::Inconclusive(why),
            };
        }
        if s.successes == 0 {
            waiting.push(match last {
                Some(l) => format!("no successful measurement of metric {} yet ({l})", m.name),
                None => format!("metric {} not measured yet in this step", m.name),
            });
        }
    }
    if waiting.is_empty() {
        Judgement::Pass
    } else {
        Judgement::Inconclusive(waiting.join("; "))
    }
}

/// The worse of two judgements (a failure, else an inconclusive one, else a pass).
pub fn worse(a: Judgement, b: Judgement) -> Judgement {
    match (a, b) {
        (Judgement::Fail(x), _) | (_, Judgement::Fail(x)) => Judgement::Fail(x),
        (Judgement::Inconclusive(x), _) | (_, Judgement::Inconclusive(x)) => {
            Judgement::Inconclusive(x)
        }
        _ => Judgement::Pass,
    }
}

/// What is wrong with a deployment's metrics (field, message): names unique, one provider
/// each, conditions that compile, intervals that parse, placeholders that exist, URLs.
pub fn problems(a: &Analysis) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (i, m) in a.metrics.iter().enumerate() {
        let at = |f: &str| format!("spec.strategy.analysis.metrics[{i}].{f}");
        if m.name.trim().is_empty() {
            out.push((at("name"), "a metric needs a name".to_string()));
        } else if !seen.insert(m.name.as_str()) {
            out.push((at("name"), format!("metric {} is named twice", m.name)));
        }
        if let Some(iv) = &m.interval
            && let Err(e) = crate::duration::parse(iv).and_then(|d| {
                if d.is_zero() {
                    Err("an interval of 0 measures without pause; give e.g. `30s`".into())
                } else {
                    Ok(d)
                }
            })
        {
            out.push((at("interval"), e));
        }
        for (field, source) in [
            ("successCondition", Some(&m.success_condition)),
            ("failureCondition", m.failure_condition.as_ref()),
        ] {
            if let Some(src) = source
                && let Err(e) = compile(src)
            {
                out.push((at(field), e));
            }
        }
        let p = &m.provider;
        let (field, url, template) = match (&p.prometheus, &p.http) {
            (Some(pr), None) => ("provider.prometheus", &pr.address, &pr.query),
            (None, Some(h)) => ("provider.http", &h.url, &h.url),
            _ => {
                out.push((
                    at("provider"),
                    "set exactly one of prometheus and http".to_string(),
                ));
                continue;
            }
        };
        let unknown = unknown_placeholders(template);
        if !unknown.is_empty() {
            out.push((
                at(field),
                format!(
                    "unknown placeholder(s) {}; a query can use {}",
                    unknown.join(", "),
                    PLACEHOLDERS.map(|p| format!("{{{{{p}}}}}")).join(", ")
                ),
            ));
        }
        let probe = render(
            url,
            &Names {
                namespace: "n",
                deployment: "d",
                model: "m",
                version: "1",
                stable: Some("0"),
            },
            provider::url_component,
        );
        if let Err(e) = crate::bounds::origin(&probe) {
            out.push((at(field), e));
        }
    }
    out
}

mod provider;
pub use provider::{
    PLACEHOLDERS, Request, json_path, prometheus_result, render, request, unknown_placeholders,
};

#[cfg(test)]
mod tests;
