//! The `ModelDeployment` status of a rollout, built once for both homes and every target: the
//! rollout state, its history, `Ready`, and for a SageMaker endpoint what was observed of it
//! (`endpoint`, `drift`, `OutOfSync`, `Stalled`).

use chrono::{DateTime, Utc};
use slipway_crd::common::Condition;
use slipway_crd::model_deployment::{
    DeploymentPhase, EndpointStatus, ModelDeploymentSpec, ModelDeploymentStatus, SageMakerTarget,
};

use super::sagemaker::Live;
use super::{EventKind, RolloutState, record};
use crate::conditions::condition;

/// What a new status is written over.
#[derive(Clone, Copy, Debug)]
pub struct Basis<'a> {
    /// The deployment's spec (what its analysis asks of the target).
    pub spec: &'a ModelDeploymentSpec,
    /// The status as it was (its history and the conditions' transition times carry on).
    pub previous: &'a ModelDeploymentStatus,
    /// The object's `metadata.generation` (none in git mode).
    pub generation: Option<i64>,
    /// Now.
    pub now: DateTime<Utc>,
}

/// A SageMaker endpoint as last observed.
#[derive(Clone, Copy, Debug)]
pub struct Endpoint<'a> {
    /// The target.
    pub target: &'a SageMakerTarget,
    /// The endpoint as SageMaker describes it (none: not there, or not read).
    pub live: Option<&'a Live>,
    /// The config Slipway last asked SageMaker to heal to.
    pub healing: Option<&'a str>,
    /// Differences between the live endpoint and the desired state.
    pub drift: &'a [String],
}

impl Endpoint<'_> {
    /// The status's `endpoint` field.
    pub fn status(&self) -> EndpointStatus {
        EndpointStatus {
            name: self.target.endpoint_name.clone(),
            status: self.live.map(|l| l.status.clone()),
            config: self.live.map(|l| l.config.clone()),
            healing_config: self.healing.map(str::to_string),
            region: self.target.region.clone(),
            endpoint_url: self.target.endpoint_url.clone(),
        }
    }

    fn out_of_sync(&self, basis: &Basis) -> Condition {
        if self.drift.is_empty() {
            cond(
                basis,
                "OutOfSync",
                false,
                "InSync",
                "the endpoint matches the desired state",
            )
        } else {
            cond(basis, "OutOfSync", true, "Drift", &self.drift.join("; "))
        }
    }
}

/// What to announce of an endpoint's drift (an `OutOfSync` event in a cluster, a history entry
/// in git mode): news only when it drifted in a way the previous status did not show yet.
pub fn drift_news(previous: &ModelDeploymentStatus, endpoint: &Endpoint) -> Option<String> {
    (!endpoint.drift.is_empty() && endpoint.drift != previous.drift.as_slice()).then(|| {
        format!(
            "endpoint {} is out of sync: {}; healing it",
            endpoint.target.endpoint_name,
            endpoint.drift.join("; ")
        )
    })
}

/// The config a status records Slipway last asked SageMaker to heal to (what
/// [`super::sagemaker::heal`] compares a new heal with).
pub fn healing(status: &ModelDeploymentStatus) -> Option<&str> {
    status.endpoint.as_ref()?.healing_config.as_deref()
}

/// `AnalysisMeasured=False` when the deployment's analysis asks for what its target cannot
/// measure ([`super::analysis::unmeasured`]); nothing when everything it asks for is judged.
fn analysis_measured(basis: &Basis) -> Option<Condition> {
    let why = super::analysis::unmeasured(basis.spec)?;
    Some(cond(basis, "AnalysisMeasured", false, "Unmeasurable", &why))
}

/// Whether two statuses' conditions say different things (type, status, reason or message;
/// times aside): a home that has nothing else to write writes the status when they do.
pub fn conditions_differ(a: &ModelDeploymentStatus, b: &ModelDeploymentStatus) -> bool {
    let said = |s: &ModelDeploymentStatus| -> Vec<(String, String, String, String)> {
        s.conditions
            .iter()
            .map(|c| {
                (
                    c.type_.clone(),
                    c.status.clone(),
                    c.reason.clone(),
                    c.message.clone(),
                )
            })
            .collect()
    };
    said(a) != said(b)
}

fn cond(basis: &Basis, type_: &str, ok: bool, reason: &str, message: &str) -> Condition {
    condition(
        type_,
        ok,
        reason,
        message,
        basis.generation,
        &basis.previous.conditions,
        basis.now,
    )
}

/// The status after a decision: `state`, the history with `events` appended (each with the
/// traffic after the step), `Ready` — true when a settled, healthy version serves (and, for an
/// endpoint, nothing drifted) — and for an endpoint its observation, `OutOfSync` and
/// `Stalled=False`.
pub fn stepped<'e>(
    state: &RolloutState,
    events: impl IntoIterator<Item = (&'e EventKind, &'e str, &'e str)>,
    basis: &Basis,
    endpoint: Option<&Endpoint>,
) -> ModelDeploymentStatus {
    let mut history = basis.previous.history.clone();
    record(&mut history, &state.traffic, events, basis.now);
    let settled = state.candidate.is_none() && state.phase == DeploymentPhase::Healthy;
    let serving = state.stable.is_some() || state.candidate.is_some();
    let in_sync = endpoint.is_none_or(|e| e.drift.is_empty());
    let message = match (&state.candidate, &state.stable, endpoint) {
        (Some(c), _, Some(e)) => format!("rolling out {c} on endpoint {}", e.target.endpoint_name),
        (Some(c), _, None) => format!(
            "rolling out {c}: step {} of the strategy, traffic {:?}",
            state.step, state.traffic
        ),
        (None, Some(v), Some(e)) => format!("endpoint {} serves {v}", e.target.endpoint_name),
        (None, Some(v), None) => format!("{v} serves all traffic"),
        (None, None, _) => "nothing to serve yet".into(),
    };
    let reason = if serving {
        state.phase.as_str().to_string()
    } else {
        "NothingToServe".to_string()
    };
    let mut conditions = vec![cond(
        basis,
        "Ready",
        settled && serving && in_sync,
        &reason,
        &message,
    )];
    if let Some(e) = endpoint {
        conditions.push(e.out_of_sync(basis));
        conditions.push(cond(
            basis,
            "Stalled",
            false,
            "Progressing",
            "SageMaker calls succeed",
        ));
    }
    conditions.extend(analysis_measured(basis));
    state.to_status(ModelDeploymentStatus {
        history,
        analysis: basis.previous.analysis.clone(),
        proposal: basis.previous.proposal.clone(),
        endpoint: endpoint.map(|e| Box::new(e.status())),
        drift: endpoint.map(|e| e.drift.to_vec()).unwrap_or_default(),
        conditions,
        observed_generation: basis.generation,
        ..Default::default()
    })
}

/// The status after an operator's retry ([`super::request_retry`]): its state and its
/// `RetryRequested` history on top of the status as it was (conditions and an endpoint's
/// observation stay until the next decision looks again).
pub fn retried(retry: &super::Step, basis: &Basis) -> ModelDeploymentStatus {
    let mut status = basis.previous.clone();
    record(
        &mut status.history,
        &retry.state.traffic,
        retry.events(),
        basis.now,
    );
    status.observed_generation = basis.generation.or(status.observed_generation);
    retry.state.to_status(status)
}

/// The status of a rollout that cannot go on for `why` (the calls failed or were refused):
/// `state` as recorded, the history as it was, `Ready=False` and `Stalled=True` with the reason
/// (`SageMakerError`), and for an endpoint its observation and `OutOfSync`.
pub fn stalled(
    state: &RolloutState,
    why: &str,
    basis: &Basis,
    endpoint: Option<&Endpoint>,
) -> ModelDeploymentStatus {
    stalled_for("SageMakerError", state, why, basis, endpoint)
}

/// [`stalled`] with the `Stalled` condition's reason, e.g. `OutsideBounds` for a target the
/// operator's bounds do not allow (nothing is created or changed for it).
pub fn stalled_for(
    reason: &str,
    state: &RolloutState,
    why: &str,
    basis: &Basis,
    endpoint: Option<&Endpoint>,
) -> ModelDeploymentStatus {
    let mut conditions = vec![cond(basis, "Ready", false, "Stalled", why)];
    conditions.extend(endpoint.map(|e| e.out_of_sync(basis)));
    conditions.push(cond(basis, "Stalled", true, reason, why));
    conditions.extend(analysis_measured(basis));
    state.to_status(ModelDeploymentStatus {
        history: basis.previous.history.clone(),
        analysis: basis.previous.analysis.clone(),
        proposal: basis.previous.proposal.clone(),
        endpoint: endpoint.map(|e| Box::new(e.status())),
        drift: endpoint.map(|e| e.drift.to_vec()).unwrap_or_default(),
        conditions,
        observed_generation: basis.generation,
        ..Default::default()
    })
}

impl RolloutState {
    /// The `ModelDeployment` status recording this state, on top of `base` (which keeps what
    /// the state does not hold: history, endpoint, drift, conditions); the inverse of
    /// [`RolloutState::from_status`]. Both homes' Kubernetes and SageMaker paths write it.
    pub fn to_status(
        &self,
        base: slipway_crd::model_deployment::ModelDeploymentStatus,
    ) -> slipway_crd::model_deployment::ModelDeploymentStatus {
        slipway_crd::model_deployment::ModelDeploymentStatus {
            phase: Some(self.phase),
            serving_version: self.stable.clone(),
            target_version: self.candidate.clone(),
            traffic: self.traffic.clone(),
            current_step: self.candidate.as_ref().map(|_| self.step as u32),
            step_started_at: self.step_started,
            step_ready_at: self.step_ready,
            candidate_started_at: self.candidate_started,
            last_desired_version: self.last_desired.clone(),
            rejected_versions: self.rejected.iter().cloned().collect(),
            ..base
        }
    }

    /// The state a `ModelDeployment`'s status records.
    pub fn from_status(
        status: &slipway_crd::model_deployment::ModelDeploymentStatus,
    ) -> RolloutState {
        RolloutState {
            stable: status.serving_version.clone(),
            candidate: status.target_version.clone(),
            step: status.current_step.unwrap_or(0) as usize,
            step_started: status.step_started_at,
            step_ready: status.step_ready_at,
            candidate_started: status.candidate_started_at,
            phase: status.phase.unwrap_or_default(),
            rejected: status.rejected_versions.iter().cloned().collect(),
            last_desired: status.last_desired_version.clone(),
            traffic: status.traffic.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> SageMakerTarget {
        serde_json::from_value(serde_json::json!({
            "endpointName": "pitch-frames", "region": "eu-west-1",
            "image": "img", "instanceType": "ml.m5.large", "executionRoleArn": "arn:aws:iam::1:role/x"
        }))
        .unwrap()
    }

    #[test]
    fn a_step_records_history_ready_and_the_endpoint_and_a_stall_keeps_the_transition_times() {
        let t0: DateTime<Utc> = "2026-11-30T10:00:00Z".parse().unwrap();
        let state = RolloutState {
            stable: Some("7".into()),
            phase: DeploymentPhase::Healthy,
            traffic: [("7".to_string(), 100)].into(),
            ..Default::default()
        };
        let previous = ModelDeploymentStatus::default();
        let spec = ModelDeploymentSpec::default();
        let basis = Basis {
            spec: &spec,
            previous: &previous,
            generation: Some(3),
            now: t0,
        };
        let t = target();
        let live = Live {
            status: "InService".into(),
            config: "pitch-frames-7".into(),
            variants: Vec::new(),
            failure: None,
            pending: None,
            owner: None,
        };
        let endpoint = Endpoint {
            target: &t,
            live: Some(&live),
            healing: None,
            drift: &[],
        };
        let kind = EventKind::RolloutSucceeded;
        let s = stepped(&state, [(&kind, "7", "7 serves")], &basis, Some(&endpoint));
        assert_eq!(s.serving_version.as_deref(), Some("7"));
        assert_eq!(s.history.len(), 1);
        assert_eq!(s.observed_generation, Some(3));
        let e = s.endpoint.as_deref().unwrap();
        assert_eq!(
            (e.name.as_str(), e.status.as_deref(), e.region.as_deref()),
            ("pitch-frames", Some("InService"), Some("eu-west-1"))
        );
        let types: Vec<(&str, &str)> = s
            .conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str()))
            .collect();
        assert_eq!(
            types,
            [
                ("Ready", "True"),
                ("OutOfSync", "False"),
                ("Stalled", "False")
            ]
        );

        // Later the calls fail: Ready turns False (new transition time), OutOfSync stays False
        // (its time is kept), the history is kept.
        let t1 = t0 + chrono::Duration::minutes(5);
        let basis = Basis {
            spec: &spec,
            previous: &s,
            generation: Some(3),
            now: t1,
        };
        let stuck = stalled(&state, "throttled", &basis, Some(&endpoint));
        let at = |type_: &str| {
            let c = stuck.conditions.iter().find(|c| c.type_ == type_).unwrap();
            (c.status.clone(), c.last_transition_time.unwrap())
        };
        assert_eq!(at("Ready"), ("False".to_string(), t1));
        assert_eq!(at("OutOfSync"), ("False".to_string(), t0));
        assert_eq!(at("Stalled"), ("True".to_string(), t1));
        assert_eq!(stuck.history, s.history);

        // Without an endpoint (kubernetes and local targets): Ready only.
        let plain = stepped(&state, [], &basis, None);
        assert_eq!(plain.conditions.len(), 1);
        assert!(plain.endpoint.is_none());
        assert_eq!(plain.conditions[0].message, "7 serves all traffic");
    }
}
