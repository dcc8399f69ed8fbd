//! An operator's retry of a version a deployment rejected: decided here for both homes.

use std::time::Duration;

use slipway_crd::model_deployment::DeploymentPhase;

use super::{Action, EventKind, RolloutState, Step};

/// An operator's request to roll `version` (or, without one, every rejected version) of
/// `deployment` out again — `slipway retry` in git mode, the `slipway.dev/retry` annotation in a
/// cluster: the state with those versions no longer rejected and a `RetryRequested` event for
/// each, or why there is nothing to retry.
pub fn request_retry(
    state: &RolloutState,
    deployment: &str,
    version: Option<&str>,
) -> Result<Step, String> {
    let versions: Vec<String> = match version {
        Some(v) => vec![v.to_string()],
        None => state.rejected.iter().cloned().collect(),
    };
    if versions.is_empty() || versions.iter().any(|v| !state.rejected.contains(v)) {
        let rejected: Vec<&str> = state.rejected.iter().map(String::as_str).collect();
        return Err(format!(
            "{deployment} has {} rejected; nothing to retry{}",
            if rejected.is_empty() {
                "no version".to_string()
            } else {
                format!("versions {}", rejected.join(", "))
            },
            version
                .map(|v| format!(" for version {v}"))
                .unwrap_or_default()
        ));
    }
    let mut s = state.clone();
    let mut actions = Vec::new();
    for v in versions {
        s = retry(&s, &v);
        actions.push(Action::Event {
            kind: EventKind::RetryRequested,
            message: format!("version {v} may be rolled out again"),
            version: v,
        });
    }
    Ok(Step {
        state: s,
        actions,
        requeue_after: Some(Duration::ZERO),
    })
}

/// Gives a rejected version another chance on this deployment.
fn retry(state: &RolloutState, version: &str) -> RolloutState {
    let mut s = state.clone();
    s.rejected.remove(version);
    if s.phase == DeploymentPhase::Failed && s.candidate.as_deref() == Some(version) {
        s.candidate = None; // restart it from the first step
        s.step = 0;
        s.step_started = None;
    }
    if s.phase != DeploymentPhase::Healthy {
        s.phase = DeploymentPhase::Progressing;
    }
    s
}
