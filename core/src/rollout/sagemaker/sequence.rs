//! What follows an endpoint's decision, for both homes: the heal rule, the status, what to
//! announce, the calls to make and when to look again — and the status of a step that failed.
//! The homes only observe the endpoint, make the calls, record and announce.

use std::time::Duration;

use slipway_crd::model_deployment::{ModelDeploymentStatus, SageMakerTarget};

use super::{Call, Live, Step, heal};
use crate::limits::{RESYNC, SAGEMAKER_RETRY};
use crate::rollout::status::{self, Basis, Endpoint};
use crate::rollout::{EventKind, RolloutState, metrics};
use slipway_crd::analysis::Measurement;

/// What to do after an endpoint's decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Sequenced {
    /// The state to record (before the calls are made): the step's, or as recorded when it
    /// stalled.
    pub state: RolloutState,
    /// The status after the step (or the stall, when SageMaker refused a heal before).
    pub status: ModelDeploymentStatus,
    /// Whether it says something new (else nothing to write).
    pub write: bool,
    /// Drift to announce (`OutOfSync`), when it is news.
    pub drift_news: Option<String>,
    /// The step's events, to record and announce.
    pub events: Vec<(EventKind, String, String)>,
    /// The calls to make, in order (none when the step stalled).
    pub calls: Vec<Call>,
    /// Why it stalled without calls, if it did.
    pub stalled: Option<String>,
    /// When to look again while the endpoint is changing (None: it is settled, or stalled until
    /// something changes — the home's resync looks again).
    pub wait: Option<Duration>,
}

/// Why an endpoint step failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// AWS refused (validation, limits, a missing role) or a setting is missing: nothing changes
    /// until the object or the account does; looked at again at the resync.
    Rejected,
    /// Throttled, 5xx or unreachable after retries: tried again soon.
    Unavailable,
}

/// The step's status, news and calls, given the endpoint as observed (`live`), the state as
/// recorded, the decision and what the step's metrics `measured` (in `Variants` mode; each
/// measurement is recorded in the status's analysis and is news before the decision's).
pub fn sequence(
    recorded: &RolloutState,
    step: Step,
    live: Option<&Live>,
    target: &SageMakerTarget,
    basis: &Basis,
    measured: &[(String, Measurement)],
) -> Sequenced {
    let healing_before = status::healing(basis.previous);
    let h = heal(&step.calls, healing_before, live);
    if let Some(why) = h.refused {
        // A heal SageMaker already refused is reported once, not tried again and again.
        let before = Endpoint {
            target,
            live,
            healing: healing_before,
            drift: &step.drift,
        };
        let status = status::stalled(recorded, &why, basis, Some(&before));
        return Sequenced {
            state: recorded.clone(),
            write: status != *basis.previous,
            status,
            drift_news: None,
            events: Vec::new(),
            calls: Vec::new(),
            stalled: Some(why),
            wait: None,
        };
    }
    let now = Endpoint {
        target,
        live,
        healing: h.healing.as_deref(),
        drift: &step.drift,
    };
    let mut events = metrics::news(recorded, measured);
    events.extend(step.events);
    let mut status = status::stepped(
        &step.state,
        events
            .iter()
            .map(|(kind, version, message)| (kind, version.as_str(), message.as_str())),
        basis,
        Some(&now),
    );
    status.analysis = metrics::record(basis.previous.analysis.as_ref(), recorded, measured);
    let wait = metrics::sooner(
        step.requeue_after,
        basis.spec,
        &status,
        &step.state,
        basis.now,
    );
    Sequenced {
        state: step.state,
        write: status != *basis.previous,
        drift_news: status::drift_news(basis.previous, &now),
        status,
        events,
        calls: step.calls,
        stalled: None,
        wait,
    }
}

/// The status of a step whose decision or calls failed for `why` — the state as recorded, so the
/// next look decides again — and when a controller looks again (git mode looks at its next
/// pass).
pub fn failed(
    recorded: &RolloutState,
    why: &str,
    failure: Failure,
    basis: &Basis,
    endpoint: &Endpoint,
) -> (ModelDeploymentStatus, Duration) {
    let wait = match failure {
        Failure::Rejected => RESYNC,
        Failure::Unavailable => SAGEMAKER_RETRY,
    };
    (status::stalled(recorded, why, basis, Some(endpoint)), wait)
}
