//! One step of a rollout on a `local` or `kubernetes` target, for both homes: given the
//! deployment, its status and what the target shows of the version under way, it returns the
//! decision ([`super::decide`]), the status to write (and whether anything changed), and when to
//! look again. The homes only look at their target, persist, carry the actions out and announce.
//! (A SageMaker endpoint steps through [`super::sagemaker`].)

use std::time::Duration;

use chrono::{DateTime, Utc};
use slipway_crd::model_deployment::{DeploymentPhase, ModelDeploymentSpec, ModelDeploymentStatus};

use super::{Judgement, Observation, Policy, RolloutState, Step};
use crate::limits::PROGRESS_DEADLINE;

/// What the home sees of a version on its target.
#[derive(Clone, Debug, PartialEq)]
pub struct Look {
    /// Its servers are up and pass their health check (all replicas available).
    pub ready: bool,
    /// What the target judges of it: the router's window against the thresholds (local), the
    /// Deployment's progress (kubernetes).
    pub judgement: Judgement,
    /// While it is not ready: what it waits for, as the target says (`pitch-frames-api-v8: 0/1
    /// replicas available`), for the status to say.
    pub waiting: Option<String>,
}

/// What a rollout step is given.
#[derive(Clone, Copy)]
pub struct Input<'a> {
    /// The deployment's spec.
    pub spec: &'a ModelDeploymentSpec,
    /// Its status as recorded.
    pub previous: &'a ModelDeploymentStatus,
    /// The rollout state as recorded.
    pub state: &'a RolloutState,
    /// The version it should serve (pinned, or what its alias resolves to).
    pub desired: Option<&'a str>,
    /// The object's `metadata.generation` (none in git mode).
    pub generation: Option<i64>,
    /// How often to look again while waiting on this target.
    pub poll: Duration,
    /// Now.
    pub now: DateTime<Utc>,
    /// The metrics measured for this step ([`super::metrics::due`], judged by
    /// [`super::metrics::judge`]): metric name and measurement.
    pub measured: &'a [(String, slipway_crd::analysis::Measurement)],
    /// The version an alias of the deployment's model names now (the standing shadows').
    pub resolve: &'a dyn Fn(&str) -> Option<String>,
}

/// What the home is to do.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The decision: the state to persist and the actions to carry out, in order.
    pub step: Step,
    /// The status after it.
    pub status: ModelDeploymentStatus,
    /// Whether anything changed (state, actions, a new generation, what the conditions say):
    /// else there is nothing to write.
    pub write: bool,
    /// When to look again (None: only on a change, or at the home's resync).
    pub wait: Option<Duration>,
}

/// The version a step looks at: the one rolling out, else the one to serve.
pub fn looked_at<'a>(state: &'a RolloutState, desired: Option<&'a str>) -> Option<&'a str> {
    state.candidate.as_deref().or(desired)
}

/// One step: `look` is what the target shows of [`looked_at`] (None: nothing to look at).
pub fn step(input: &Input, look: Option<Look>) -> Outcome {
    let state = input.state;
    let waiting = look
        .as_ref()
        .filter(|l| !l.ready)
        .and_then(|l| l.waiting.clone());
    let observation = match look {
        Some(l) => Observation {
            candidate_ready: l.ready,
            waiting: waiting.clone(),
            // The target's judgement counts for a candidate under way; the first version of a
            // deployment goes live once healthy.
            analysis: if state.candidate.is_some() {
                l.judgement
            } else {
                Judgement::Pass
            },
        },
        None => Observation {
            candidate_ready: false,
            waiting: None,
            analysis: Judgement::Pass,
        },
    };
    // The step's metrics, with what was just measured, judge it beside the target.
    let (analysis, metrics) = super::metrics::step_verdict(
        input.spec,
        input.previous.analysis.as_ref(),
        state,
        input.measured,
    );
    let held = match &metrics {
        super::Judgement::Inconclusive(why) => Some(why.clone()),
        _ => None,
    };
    let mut observation = observation;
    observation.analysis = super::metrics::worse(observation.analysis, metrics);
    let policy = Policy::new(&input.spec.strategy, PROGRESS_DEADLINE, input.poll);
    let mut step = super::decide(state, input.desired, &policy, &observation, input.now);
    // Each measurement is news for the history, before what the decision made of it.
    let measured =
        super::metrics::news(state, input.measured)
            .into_iter()
            .map(|(kind, version, message)| super::Action::Event {
                kind,
                version,
                message,
            });
    step.actions.splice(0..0, measured);
    let basis = super::status::Basis {
        spec: input.spec,
        previous: input.previous,
        generation: input.generation,
        now: input.now,
    };
    let mut status = super::status::stepped(&step.state, step.events(), &basis, None);
    status.analysis = analysis;
    status.shadows =
        super::shadow::standing::versions(&input.spec.shadows, input.resolve, &step.state)
            .into_iter()
            .map(|(version, mirror)| slipway_crd::serving::ShadowStatus { version, mirror })
            .collect();
    // A candidate under way that is not ready yet: its Ready condition says what it waits for.
    if let (Some(why), Some(_)) = (&waiting, &step.state.candidate)
        && let Some(ready) = status.conditions.iter_mut().find(|c| c.type_ == "Ready")
    {
        ready.message = format!("{}; waiting for {why}", ready.message);
    }
    // A step its metrics hold (nothing measured yet, no success, no answer): Ready says which
    // and why, for `kubectl get` and `slipway status` — only the metrics' reasons, which change
    // with a measurement, not with every request.
    if let (Some(why), Some(_), true) = (&held, &step.state.candidate, waiting.is_none())
        && step.state.step == state.step
        && step.state.phase == DeploymentPhase::Progressing
        && let Some(ready) = status.conditions.iter_mut().find(|c| c.type_ == "Ready")
    {
        ready.message = format!("{}; held by its analysis: {why}", ready.message);
    }
    let write = step.state != *state
        || !step.actions.is_empty()
        || input.previous.observed_generation != input.generation
        || input.previous.shadows != status.shadows
        || super::status::conditions_differ(input.previous, &status);
    // Waiting on a candidate that is still progressing: look again at the target's pace. A
    // rollout that failed without rollback is frozen where it stopped: nothing to look at until
    // something changes.
    let progressing =
        step.state.candidate.is_some() && step.state.phase == DeploymentPhase::Progressing;
    let wait = step
        .requeue_after
        .or_else(|| progressing.then_some(input.poll));
    let wait = super::metrics::sooner(wait, input.spec, &status, &step.state, input.now);
    Outcome {
        step,
        status,
        write,
        wait,
    }
}
