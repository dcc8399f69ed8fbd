//! The `sagemaker` target: a real-time endpoint serving whatever the deployment's alias points
//! at. [`rollout::sagemaker`](crate::decide::rollout::sagemaker) is pure (names, the desired endpoint, guardrails, drift, the rollout decision);
//! [`aws`] makes the calls (feature `sagemaker`).

#[cfg(feature = "sagemaker")]
pub mod aws;
use crate::decide::rollout;

use slipway_crd::model_deployment::SageMakerTarget;

/// Where the SageMaker API is: the target's overrides of the AWS configuration chain.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    /// Region (None: from the chain).
    pub region: Option<String>,
    /// API endpoint URL (None: from the chain, e.g. `AWS_ENDPOINT_URL_SAGEMAKER`).
    pub endpoint_url: Option<String>,
}

impl Location {
    /// The target's location.
    pub fn of(t: &SageMakerTarget) -> Location {
        Location {
            region: t.region.clone(),
            endpoint_url: t.endpoint_url.clone(),
        }
    }
}

/// Whose objects these are (tags on every AWS object).
#[derive(Clone, Debug)]
pub struct Owner {
    /// Namespace of the deployment.
    pub namespace: String,
    /// Deployment name.
    pub deployment: String,
    /// Model name.
    pub model: String,
}

/// A failed call.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    /// AWS refused the request (validation, limits, missing role) or a local setting is
    /// missing: retrying will not help until something changes (`Stalled`).
    #[error("{0}")]
    Rejected(String),
    /// Throttled, 5xx or unreachable after retries: tried again at the next resync.
    #[error("{0}")]
    Unavailable(String),
}

impl Error {
    /// How a home looks at the endpoint again: a refusal waits for a change, an outage is tried
    /// again soon ([`rollout::sagemaker::sequence::failed`]).
    pub fn failure(&self) -> rollout::sagemaker::sequence::Failure {
        match self {
            Error::Rejected(_) => rollout::sagemaker::sequence::Failure::Rejected,
            Error::Unavailable(_) => rollout::sagemaker::sequence::Failure::Unavailable,
        }
    }
}

/// Deletes endpoint `endpoint` and what Slipway made for it, for the deleted deployment
/// `owner` — unless the endpoint belongs to another deployment or was made by hand.
pub fn delete_owned(
    aws: &mut dyn Endpoints,
    at: &Location,
    endpoint: &str,
    owner: &Owner,
) -> Result<Vec<String>, Error> {
    if let Some(l) = aws.live(at, endpoint)? {
        rollout::sagemaker::owned_by(&l, &owner.namespace, &owner.deployment)
            .map_err(Error::Rejected)?;
    }
    aws.delete(at, endpoint)
}

/// The analysis verdict of rollback alarms: any in `ALARM` fails; a named alarm that does not
/// exist holds the step (it cannot vouch for the new version).
pub fn alarm_verdict(
    names: &[String],
    states: &[(String, String)],
) -> crate::decide::rollout::Judgement {
    use crate::decide::rollout::Judgement;
    if let Some((n, _)) = states.iter().find(|(_, s)| s == "ALARM") {
        return Judgement::Fail(format!("alarm {n} is in ALARM"));
    }
    if let Some(missing) = names.iter().find(|n| !states.iter().any(|(s, _)| s == *n)) {
        return Judgement::Inconclusive(format!("alarm {missing} does not exist"));
    }
    Judgement::Pass
}

/// The calls of the SageMaker target ([`aws::SageMaker`] over the AWS SDK).
pub trait Endpoints {
    /// The live endpoint (None: it does not exist).
    fn live(
        &mut self,
        at: &Location,
        endpoint: &str,
    ) -> Result<Option<rollout::sagemaker::Live>, Error>;
    /// Carries out one call; returns what it did.
    fn apply(
        &mut self,
        at: &Location,
        target: &SageMakerTarget,
        owner: &Owner,
        call: &rollout::sagemaker::Call,
    ) -> Result<Vec<String>, Error>;
    /// The state (`OK`, `ALARM`, `INSUFFICIENT_DATA`) of each existing alarm among `names`.
    fn alarms(&mut self, at: &Location, names: &[String]) -> Result<Vec<(String, String)>, Error>;
    /// Deletes the endpoint and every config and Model Slipway made for it.
    fn delete(&mut self, at: &Location, endpoint: &str) -> Result<Vec<String>, Error>;
}

/// Reads the live endpoint (and, in `Variants` mode during a rollout, the rollback alarms)
/// through `aws` and decides the next step in the target's mode; in `Variants` mode `metrics`
/// (what the step's measurements make of it) judges the step beside the alarms. Shared by `slipway run` and
/// `slipway controller`; the error is what AWS or the strategy refused.
/// An endpoint another deployment owns (or made by hand) is never touched ([`rollout::sagemaker::owned_by`]).
#[allow(clippy::too_many_arguments)]
pub fn next_step(
    aws: &mut dyn Endpoints,
    t: &SageMakerTarget,
    owner: &Owner,
    strategy: &slipway_crd::model_deployment::Strategy,
    state: &crate::decide::rollout::RolloutState,
    desired: Option<&str>,
    artifact: &dyn Fn(&str) -> Option<rollout::sagemaker::Artifact>,
    metrics: crate::decide::rollout::Judgement,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(Option<rollout::sagemaker::Live>, rollout::sagemaker::Step), Error> {
    use slipway_crd::model_deployment::SageMakerMode;
    let at = Location::of(t);
    let guardrails = match t.mode {
        SageMakerMode::Guardrails => {
            Some(rollout::sagemaker::guardrails(strategy).map_err(Error::Rejected)?)
        }
        SageMakerMode::Variants => None,
    };
    let live = aws.live(&at, &t.endpoint_name)?;
    if let Some(l) = &live {
        rollout::sagemaker::owned_by(l, &owner.namespace, &owner.deployment)
            .map_err(Error::Rejected)?;
    }
    let counts: std::collections::BTreeMap<String, u32> = live
        .iter()
        .flat_map(|l| &l.variants)
        // A shadow's count is its share's: not what its version would run in production.
        .filter(|v| !v.shadow)
        .map(|v| (v.name.clone(), v.instance_count))
        .collect();
    let step = match guardrails {
        Some(g) => {
            let want = |v: &str| {
                let a = artifact(v)?;
                // Autoscaling's count is kept: the version's own variant's, or the serving one's.
                let count = counts
                    .get(&rollout::sagemaker::variant_name(v))
                    .or_else(|| counts.values().max())
                    .copied();
                Some(rollout::sagemaker::desired(t, v, &a, count))
            };
            rollout::sagemaker::decide(state, desired, &want, &g, live.as_ref())
        }
        None => {
            let names = strategy
                .analysis
                .as_ref()
                .map(|a| a.alarms.clone())
                .unwrap_or_default();
            let alarms = if state.candidate.is_some() && !names.is_empty() {
                match aws.alarms(&at, &names) {
                    Ok(states) => alarm_verdict(&names, &states),
                    Err(e) => crate::decide::rollout::Judgement::Inconclusive(e.to_string()),
                }
            } else {
                crate::decide::rollout::Judgement::Pass
            };
            // The alarms and the metrics judge the step together.
            let verdict = crate::decide::rollout::metrics::worse(alarms, metrics);
            let want = |split: &std::collections::BTreeMap<String, u32>,
                        shadow: Option<(&str, u32)>| {
                rollout::sagemaker::desired_split(t, split, artifact, &counts, shadow)
            };
            let policy = crate::decide::rollout::Policy::new(
                strategy,
                crate::decide::limits::SAGEMAKER_PROGRESS_DEADLINE,
                crate::decide::limits::REMOTE_POLL,
            );
            rollout::sagemaker::decide_variants(
                state,
                desired,
                &policy,
                &want,
                live.as_ref(),
                verdict,
                now,
            )
        }
    };
    Ok((live, step))
}
