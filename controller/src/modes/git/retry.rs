//! `slipway retry`: lets a rejected version be rolled out again on one deployment. Shared by the
//! CLI (on a state folder) and the HTTP API of a running instance.

use chrono::Utc;

use serde::Deserialize;
use slipway_crd::model_deployment::ModelDeploymentStatus;

use crate::decide::evaluation::lifecycle;
use crate::decide::events::Event as Happened;
use crate::decide::rollout;
use crate::edges::store::{HistoryEntry, Store, StoreError, Write};
use slipway_crd::model_deployment::RolloutEventKind;

/// Why a retry was refused.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    /// Nothing (or not that version) is rejected on the deployment.
    #[error("{0}")]
    NothingToRetry(String),
    /// No evaluation of that name has a status.
    #[error("{0}")]
    NoSuchEvaluation(String),
    /// No deployment of that name was ever rolled out.
    #[error("{0}")]
    NoSuchDeployment(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::edges::store::StoreError),
}

/// Clears `version` (or every rejected version) from the rejected set of `namespace/name` — the
/// decision is [`crate::decide::rollout::request_retry`], as for the annotation in a cluster — and
/// records it: the rollout state, the status with its `RetryRequested` history, and a history
/// entry by `actor` for each version; returns the versions cleared.
pub fn request_retry(
    store: &Store,
    namespace: &str,
    name: &str,
    version: Option<&str>,
    actor: Option<String>,
) -> Result<Vec<String>, RetryError> {
    if store.status("ModelDeployment", namespace, name)?.is_none() {
        return Err(RetryError::NoSuchDeployment(format!(
            "no deployment {namespace}/{name} has been rolled out; `slipway status` lists the deployments"
        )));
    }
    let mut record = store.rollout(namespace, name)?;
    let step = rollout::request_retry(&record.state, &format!("{namespace}/{name}"), version)
        .map_err(RetryError::NothingToRetry)?;
    let previous = store
        .status("ModelDeployment", namespace, name)?
        .and_then(|v| ModelDeploymentStatus::deserialize(v).ok())
        .unwrap_or_default();
    let now = Utc::now();
    let basis = rollout::status::Basis {
        // A retry keeps the conditions as they were; the next pass writes them from the spec.
        spec: &slipway_crd::model_deployment::ModelDeploymentSpec::default(),
        previous: &previous,
        generation: None,
        now,
    };
    let status = rollout::status::retried(&step, &basis);
    record.state = step.state.clone();
    let model = record.model.clone();
    let mut writes = vec![
        Write::Rollout {
            namespace: namespace.to_string(),
            name: name.to_string(),
            record,
        },
        Write::Status {
            kind: "ModelDeployment".into(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            status: serde_json::to_value(&status).map_err(StoreError::from)?,
        },
    ];
    let mut versions = Vec::new();
    for (kind, v, message) in step.events() {
        versions.push(v.to_string());
        writes.push(Write::History(HistoryEntry {
            id: 0,
            at: now,
            event: kind.as_str().to_string(),
            namespace: namespace.to_string(),
            model: model.clone(),
            subject: format!("ModelDeployment/{name}"),
            version: Some(v.to_string()),
            alias: None,
            actor: actor.clone(),
            revision: None,
            decision: None,
            message: format!("{name}: {message}"),
            data: serde_json::Value::Null,
        }));
    }
    store.apply(&writes)?;
    Ok(versions)
}

/// Runs evaluation `namespace/name`, which failed for good without results, again from its
/// first attempt on the next pass — the decision is [`lifecycle::retry`], as for the annotation
/// in a cluster — and records it: the status that starts a new round, and a `RetryRequested`
/// history entry by `actor`.
pub fn request_evaluation_retry(
    store: &Store,
    namespace: &str,
    name: &str,
    actor: Option<String>,
) -> Result<(), RetryError> {
    let Some(previous) = store
        .status("Evaluation", namespace, name)?
        .and_then(|v| slipway_crd::EvaluationStatus::deserialize(v).ok())
    else {
        return Err(RetryError::NoSuchEvaluation(format!(
            "no evaluation {namespace}/{name} has run; `slipway status` lists the evaluations"
        )));
    };
    let now = Utc::now();
    let status = lifecycle::retry(&previous, &format!("{namespace}/{name}"), now)
        .map_err(RetryError::NothingToRetry)?;
    // Its model and version, for the model's history: from its completion's entry.
    let subject = format!("Evaluation/{name}");
    let (model, version) = store
        .history(&crate::edges::store::HistoryFilter::default())?
        .into_iter()
        .rev()
        .find(|h| h.namespace == namespace && h.subject == subject)
        .map(|h| (h.model, h.version))
        .unwrap_or_default();
    store.apply(&[
        Write::Status {
            kind: "Evaluation".into(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            status: serde_json::to_value(&status).map_err(StoreError::from)?,
        },
        Write::History(HistoryEntry {
            id: 0,
            at: now,
            event: Happened::Rollout(RolloutEventKind::RetryRequested)
                .as_str()
                .to_string(),
            namespace: namespace.to_string(),
            model,
            subject,
            version,
            alias: None,
            actor,
            revision: None,
            decision: None,
            message: format!("{name}: may run again (round {})", status.round),
            data: serde_json::Value::Null,
        }),
    ])?;
    Ok(())
}
