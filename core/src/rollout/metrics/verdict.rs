//! What a step's metrics come to on any target: the analysis with what was just measured, its
//! verdict, the news it makes and when the next measurement is due.

use std::time::Duration;

use chrono::{DateTime, Utc};
use slipway_crd::analysis::{AnalysisStatus, Measurement};
use slipway_crd::model_deployment::{ModelDeploymentSpec, ModelDeploymentStatus};

use super::{judgement, next_due, record, said};
use crate::rollout::{Judgement, RolloutState};

/// The metrics' side of one step, on any target: the step's analysis with what was just
/// `measured` added ([`record`]), and — for a candidate under way — what its measurements make
/// of it ([`judgement`]; a pass otherwise).
pub fn step_verdict(
    spec: &ModelDeploymentSpec,
    previous: Option<&AnalysisStatus>,
    state: &RolloutState,
    measured: &[(String, Measurement)],
) -> (Option<AnalysisStatus>, Judgement) {
    let analysis = record(previous, state, measured);
    let verdict = match state.candidate {
        Some(_) => judgement(spec.strategy.analysis.as_ref(), analysis.as_ref(), state),
        None => Judgement::Pass,
    };
    (analysis, verdict)
}

/// Each measurement of a candidate under way as news for the history (`AnalysisMeasured`), in
/// the order measured; none when no candidate is under way.
pub fn news(
    state: &RolloutState,
    measured: &[(String, Measurement)],
) -> Vec<(crate::rollout::EventKind, String, String)> {
    let Some(v) = &state.candidate else {
        return Vec::new();
    };
    measured
        .iter()
        .map(|(metric, m)| {
            (
                crate::rollout::EventKind::AnalysisMeasured,
                v.clone(),
                said(metric, m),
            )
        })
        .collect()
}

/// When to look again: at `wait`, or sooner when a metric is due sooner ([`next_due`]).
pub fn sooner(
    wait: Option<Duration>,
    spec: &ModelDeploymentSpec,
    status: &ModelDeploymentStatus,
    state: &RolloutState,
    now: DateTime<Utc>,
) -> Option<Duration> {
    match (wait, next_due(spec, status, state, now)) {
        (Some(w), Some(d)) => Some(w.min(d)),
        (w, d) => w.or(d),
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
