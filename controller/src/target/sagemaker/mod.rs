//! The `sagemaker` target: a real-time endpoint serving whatever the deployment's alias points
//! at. [`plan`] is pure (names, the desired endpoint, guardrails, drift, the rollout decision);
//! [`aws`] makes the calls (feature `sagemaker`).

#[cfg(feature = "sagemaker")]
pub mod aws;
pub mod plan;

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

/// The calls of the SageMaker target ([`aws::SageMaker`] over the AWS SDK).
pub trait Endpoints {
    /// The live endpoint (None: it does not exist).
    fn live(&mut self, at: &Location, endpoint: &str) -> Result<Option<plan::Live>, Error>;
    /// Carries out one call; returns what it did.
    fn apply(
        &mut self,
        at: &Location,
        target: &SageMakerTarget,
        owner: &Owner,
        call: &plan::Call,
    ) -> Result<Vec<String>, Error>;
    /// Deletes the endpoint and every config and Model Slipway made for it.
    fn delete(&mut self, at: &Location, endpoint: &str) -> Result<Vec<String>, Error>;
}
