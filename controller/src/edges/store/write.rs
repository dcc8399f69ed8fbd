//! The writes a decision makes of the state store.

use super::{DeploymentRecord, EvaluationRecord, HistoryEntry};

/// One write of a decision; [`Store::apply`] makes a list of them atomic.
#[derive(Clone, Debug)]
pub enum Write {
    /// Replace an object's status.
    Status {
        /// Kind.
        kind: String,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Status JSON.
        status: serde_json::Value,
    },
    /// Replace a deployment's record (rollout state, model, address).
    Rollout {
        /// Namespace.
        namespace: String,
        /// Deployment name.
        name: String,
        /// The record.
        record: DeploymentRecord,
    },
    /// Insert or replace an evaluation record.
    Evaluation(EvaluationRecord),
    /// Append to the history.
    History(HistoryEntry),
    /// Forget the status of an object that no longer exists (an alias's recorded moves: one
    /// made again under that name starts with none, as in a cluster).
    ForgetStatus {
        /// Kind.
        kind: String,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// Forget a deployment that no longer exists: its status and rollout state.
    ForgetDeployment {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
}
