//! `slipway retry`: lets a rejected version be rolled out again on one deployment. Shared by the
//! CLI (on a state folder) and the HTTP API of a running instance.

use chrono::Utc;

use crate::edges::store::{HistoryEntry, Store, Write};

/// Why a retry was refused.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    /// Nothing (or not that version) is rejected on the deployment.
    #[error("{0}")]
    NothingToRetry(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::edges::store::StoreError),
}

/// Clears `version` (or every rejected version) from the rejected set of `namespace/name`, with a
/// `RetryRequested` history entry by `actor`; returns the versions cleared.
pub fn request_retry(
    store: &Store,
    namespace: &str,
    name: &str,
    version: Option<&str>,
    actor: Option<String>,
) -> Result<Vec<String>, RetryError> {
    let mut record = store.rollout(namespace, name)?;
    let state = &record.state;
    let versions: Vec<String> = match version {
        Some(v) => vec![v.to_string()],
        None => state.rejected.iter().cloned().collect(),
    };
    if versions.is_empty() || versions.iter().any(|v| !state.rejected.contains(v)) {
        let rejected: Vec<&str> = state.rejected.iter().map(String::as_str).collect();
        return Err(RetryError::NothingToRetry(format!(
            "{namespace}/{name} has {} rejected; nothing to retry{}",
            if rejected.is_empty() {
                "no version".to_string()
            } else {
                format!("versions {}", rejected.join(", "))
            },
            version
                .map(|v| format!(" for version {v}"))
                .unwrap_or_default()
        )));
    }
    let model = record.model.clone();
    let mut writes = Vec::new();
    for v in &versions {
        record.state = crate::decide::rollout::retry(&record.state, v);
        writes.push(Write::History(HistoryEntry {
            id: 0,
            at: Utc::now(),
            event: "RetryRequested".into(),
            namespace: namespace.to_string(),
            model: model.clone(),
            subject: format!("ModelDeployment/{name}"),
            version: Some(v.clone()),
            alias: None,
            actor: actor.clone(),
            revision: None,
            decision: None,
            message: format!("{name}: version {v} may be rolled out again"),
            data: serde_json::Value::Null,
        }));
    }
    writes.insert(
        0,
        Write::Rollout {
            namespace: namespace.to_string(),
            name: name.to_string(),
            record,
        },
    );
    store.apply(&writes)?;
    Ok(versions)
}
