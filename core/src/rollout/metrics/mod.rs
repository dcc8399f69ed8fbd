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
    AnalysisStatus, Comparison, Measurement, MeasurementVerdict as Verdict, Metric, MetricStatus,
};
use slipway_crd::model_deployment::{
    Analysis, ModelDeploymentSpec, ModelDeploymentStatus, OnInconclusive,
};

use super::{Judgement, RolloutState};

/// A comparison's false-positive rate when it sets no `alpha`.
pub const DEFAULT_ALPHA: f64 = 0.05;
/// A comparison's mixing scale τ when it sets none and its margin is 0.
pub const DEFAULT_TAU: f64 = 0.02;
/// Trials each version needs before a comparison judges, when it sets no `minTrials`.
pub const DEFAULT_MIN_TRIALS: u64 = 100;
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
    /// How long the candidate has served, as a PromQL duration (`642s`).
    pub since: &'a str,
}

impl Names<'_> {
    fn get(&self, placeholder: &str) -> Option<&str> {
        match placeholder {
            "version" => Some(self.version),
            "stableVersion" => Some(self.stable.unwrap_or_default()),
            "deployment" => Some(self.deployment),
            "namespace" => Some(self.namespace),
            "model" => Some(self.model),
            "since" => Some(self.since),
            _ => None,
        }
    }
}

/// A metric or comparison to measure now.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    /// The metric's (or comparison's) name.
    pub metric: String,
    /// What to ask its provider: one request for a metric; for a comparison the candidate's
    /// successes and trials, then the serving version's.
    pub requests: Vec<Request>,
}

/// What judges a step: a metric, or a comparison.
#[derive(Clone, Copy, Debug)]
enum Judged<'a> {
    Metric(&'a Metric),
    Comparison(&'a Comparison),
}

impl<'a> Judged<'a> {
    fn all(a: &'a Analysis) -> impl Iterator<Item = Judged<'a>> {
        let metrics = a.metrics.iter().map(Judged::Metric);
        metrics.chain(a.comparisons.iter().map(Judged::Comparison))
    }

    fn name(self) -> &'a str {
        match self {
            Judged::Metric(m) => &m.name,
            Judged::Comparison(c) => &c.name,
        }
    }

    fn every(self) -> Duration {
        let written = match self {
            Judged::Metric(m) => m.interval.as_deref(),
            Judged::Comparison(c) => c.interval.as_deref(),
        };
        written
            .and_then(|i| crate::duration::parse(i).ok())
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_INTERVAL)
    }

    /// (failureLimit, inconclusiveLimit): a comparison shown worse once rolls back.
    fn limits(self) -> (u32, Option<u32>) {
        match self {
            Judged::Metric(m) => (m.failure_limit, m.inconclusive_limit),
            Judged::Comparison(_) => (0, None),
        }
    }

    /// How long after the candidate started nothing is judged (a comparison's label delay).
    fn label_delay(self) -> Duration {
        match self {
            Judged::Comparison(c) => c
                .label_delay
                .as_deref()
                .and_then(|d| crate::duration::parse(d).ok())
                .unwrap_or(Duration::ZERO),
            Judged::Metric(_) => Duration::ZERO,
        }
    }

    fn requests(self, names: &Names) -> Option<Vec<Request>> {
        match self {
            Judged::Metric(m) => Some(vec![request(m, names)?]),
            Judged::Comparison(c) => {
                let serving = Names {
                    version: names.stable?,
                    ..*names
                };
                Some(vec![
                    provider::asked(&c.successes, names)?,
                    provider::asked(&c.trials, names)?,
                    provider::asked(&c.successes, &serving)?,
                    provider::asked(&c.trials, &serving)?,
                ])
            }
        }
    }
}

/// What a provider answered: the value, or why there is none.
pub type Reading = Result<serde_json::Value, String>;

/// A metric's interval (its own, else [`DEFAULT_INTERVAL`]).
pub fn interval(m: &Metric) -> Duration {
    Judged::Metric(m).every()
}

/// The analysis the status records of the step under way, if it is of this step since the
/// candidate was last seen ready at it (what was measured before it stopped being ready does not
/// count for the pods that came back).
fn current<'a>(
    status: Option<&'a AnalysisStatus>,
    state: &RolloutState,
) -> Option<&'a AnalysisStatus> {
    let a = status?;
    (Some(&a.version) == state.candidate.as_ref()
        && a.step as usize == state.step
        && Some(a.since) == state.step_ready)
        .then_some(a)
}

/// `text` cut to [`MAX_VALUE`] bytes (a provider's words, a value): what a status keeps.
pub(crate) fn short(text: &str) -> String {
    crate::limits::cut(text, MAX_VALUE)
}

/// The most nested comprehensions (`all`, `exists`, `map`, `filter`) a condition may have:
/// each level multiplies the work by the size of `result`.
pub const MAX_NESTING: usize = 2;
/// The most values (numbers, strings, list items, object entries) a `result` may hold.
pub const MAX_RESULT: usize = 1000;

fn nesting(e: &cel::IdedExpr) -> usize {
    use cel::common::ast::Expr;
    match &e.expr {
        Expr::Comprehension(c) => {
            1 + [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ]
            .into_iter()
            .map(nesting)
            .max()
            .unwrap_or(0)
        }
        Expr::Call(c) => c
            .target
            .iter()
            .map(|t| nesting(t.as_ref()))
            .chain(c.args.iter().map(nesting))
            .max()
            .unwrap_or(0),
        Expr::Select(s) => nesting(&s.operand),
        Expr::List(l) => l.elements.iter().map(nesting).max().unwrap_or(0),
        _ => 0,
    }
}

fn size(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(size).sum::<usize>(),
        serde_json::Value::Object(o) => 1 + o.values().map(size).sum::<usize>(),
        _ => 1,
    }
}

/// Whether the state is in a canary step the metrics judge: a candidate under way, seen ready
/// at its step's weights (below 100%); when it was.
fn measuring(spec: &ModelDeploymentSpec, state: &RolloutState) -> Option<DateTime<Utc>> {
    state.candidate.as_ref()?;
    let started = state.step_ready?;
    let steps = super::strategy_steps(&spec.strategy);
    (steps.get(state.step).is_some_and(|s| s.weight < 100)).then_some(started)
}

/// When each metric and comparison is next due: one interval after its last measurement in
/// the step (or the step's readiness), and a comparison not before its label delay has passed
/// since the candidate started.
fn schedule<'a>(
    spec: &'a ModelDeploymentSpec,
    status: Option<&AnalysisStatus>,
    state: &RolloutState,
) -> Vec<(Judged<'a>, DateTime<Utc>)> {
    let (Some(a), Some(started)) = (&spec.strategy.analysis, measuring(spec, state)) else {
        return Vec::new();
    };
    let recorded = current(status, state);
    let span = |d: Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    Judged::all(a)
        .map(|j| {
            let last = recorded
                .and_then(|r| r.metrics.iter().find(|s| s.name == j.name()))
                .and_then(|s| s.measurements.last())
                .map_or(started, |x| x.at.max(started));
            let labelled = state
                .candidate_started
                .map_or(started, |c| c + span(j.label_delay()));
            (j, (last + span(j.every())).max(labelled))
        })
        .collect()
}

/// The metrics to measure now, with their requests.
pub fn due(
    spec: &ModelDeploymentSpec,
    previous: &ModelDeploymentStatus,
    state: &RolloutState,
    (namespace, deployment): (&str, &str),
    now: DateTime<Utc>,
) -> Vec<Query> {
    let Some(version) = &state.candidate else {
        return Vec::new();
    };
    let served = state
        .candidate_started
        .and_then(|c| (now - c).to_std().ok())
        .unwrap_or_default();
    let since = format!("{}s", served.as_secs().max(1));
    let names = Names {
        namespace,
        deployment,
        model: &spec.model,
        version,
        stable: state.stable.as_deref(),
        since: &since,
    };
    schedule(spec, previous.analysis.as_ref(), state)
        .into_iter()
        .filter(|(_, at)| *at <= now)
        .filter_map(|(j, _)| {
            Some(Query {
                metric: j.name().to_string(),
                requests: j.requests(&names)?,
            })
        })
        .collect()
}

/// Judges what the providers answered to `due` (`readings[i]`: the answers to `due[i]`'s
/// requests, in order), by the metrics' conditions and the comparisons' test.
pub fn judge_all(
    spec: &ModelDeploymentSpec,
    due: &[Query],
    readings: &[Vec<Reading>],
    now: DateTime<Utc>,
) -> Vec<(String, Measurement)> {
    let Some(a) = &spec.strategy.analysis else {
        return Vec::new();
    };
    due.iter()
        .zip(readings)
        .filter_map(|(q, r)| {
            let m = match Judged::all(a).find(|j| j.name() == q.metric)? {
                Judged::Metric(m) => judge(m, r.first()?, now),
                Judged::Comparison(c) => compared(c, r, now),
            };
            Some((q.metric.clone(), m))
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

/// Compiles a metric's condition (it reads `result`; at most [`MAX_NESTING`] nested
/// comprehensions).
pub fn compile(source: &str) -> Result<Program, String> {
    let program = crate::catalog::expr::compile_over(source, &["result"])?.program;
    if nesting(program.expression()) > MAX_NESTING {
        return Err(format!(
            "a condition may nest at most {MAX_NESTING} comprehensions (all, exists, map, filter)"
        ));
    }
    Ok(program)
}

fn holds(source: &str, result: &serde_json::Value) -> Result<bool, String> {
    let program = compile(source)?;
    if size(result) > MAX_RESULT {
        return Err(format!(
            "the answer holds {} values, more than a condition reads ({MAX_RESULT}); aggregate it",
            size(result)
        ));
    }
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
        Err(why) => return measurement(None, Verdict::Inconclusive, Some(short(why))),
    };
    // What the status shows of the answer: its value, kept short.
    let value = Some(short(&result.to_string()));
    if let Some(f) = &m.failure_condition {
        match holds(f, result) {
            Ok(true) => {
                return measurement(value, Verdict::Failure, Some(format!("`{f}` holds")));
            }
            Ok(false) => {}
            Err(why) => return measurement(value, Verdict::Inconclusive, Some(short(&why))),
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
        Err(why) => measurement(value, Verdict::Inconclusive, Some(short(&why))),
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
            since: state.step_ready?,
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
    let Some(a) = analysis.filter(|a| !a.metrics.is_empty() || !a.comparisons.is_empty()) else {
        return Judgement::Pass;
    };
    let recorded = current(status, state);
    let mut waiting = Vec::new();
    for j in Judged::all(a) {
        let (name, (failure_limit, inconclusive_limit)) = (j.name(), j.limits());
        let s = recorded
            .and_then(|r| r.metrics.iter().find(|s| s.name == name))
            .cloned()
            .unwrap_or_default();
        let last = s.measurements.last().map(|x| said(name, x));
        if s.failures > failure_limit {
            if let Judged::Comparison(_) = j {
                let why = s.measurements.last().and_then(|m| m.message.clone());
                return Judgement::Fail(format!(
                    "comparison {name} shows the candidate worse than the serving version: {}",
                    why.unwrap_or_default()
                ));
            }
            return Judgement::Fail(format!(
                "{} failed measurement(s) of metric {name} (failureLimit {failure_limit}); last: {}",
                s.failures,
                last.unwrap_or_default()
            ));
        }
        if let Some(limit) = inconclusive_limit
            && s.inconclusives > limit
        {
            let why = format!(
                "{} inconclusive measurement(s) of metric {name} (inconclusiveLimit {limit}); last: {}",
                s.inconclusives,
                last.clone().unwrap_or_default()
            );
            return match a.on_inconclusive {
                OnInconclusive::Rollback => Judgement::Fail(why),
                OnInconclusive::Hold => Judgement::Inconclusive(why),
            };
        }
        if s.successes == 0 {
            let delay = j.label_delay();
            waiting.push(match (last, j) {
                (Some(l), _) => format!("no successful measurement of metric {name} yet ({l})"),
                (None, Judged::Comparison(_)) if !delay.is_zero() => format!(
                    "comparison {name} not measured yet (its labels come {} after a prediction)",
                    crate::duration::format(delay)
                ),
                (None, _) => format!("metric {name} not measured yet in this step"),
            });
        }
    }
    if waiting.is_empty() {
        Judgement::Pass
    } else {
        Judgement::Inconclusive(waiting.join("; "))
    }
}

mod checks;
mod verdict;
pub use verdict::{news, sooner, step_verdict, worse};
mod comparison;
pub use checks::problems;
pub use comparison::compared;
mod provider;
pub mod sequential;
pub use provider::{
    CLOUDWATCH_WINDOW, PLACEHOLDERS, Request, cloudwatch_problems, cloudwatch_result, json_path,
    prometheus_result, render, request, unknown_placeholders, url_component,
};

#[cfg(test)]
#[path = "cloudwatch_tests.rs"]
mod cloudwatch_tests;
#[cfg(test)]
mod tests;
