//! What every Kubernetes-mode reconciler shares: the context, errors, the field manager, typed
//! status writes, conditions and events.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource};
use serde_json::{Value, json};
use slipway_crd::common::Condition;

/// The field manager of every write.
pub const MANAGER: &str = "slipway-controller";

/// Shared by the reconcilers.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Watched objects and catalogs.
    pub cache: Arc<super::cache::Cache>,
    /// Publishes events.
    pub recorder: Recorder,
    /// Where evaluation Jobs post their results (the controller's HTTP address as pods see it).
    pub results_url: String,
    /// Metrics.
    pub metrics: Arc<super::metrics::Metrics>,
    /// When each alias move (namespace, model, alias, version) was first observed, until its
    /// rollout's first write.
    pub moves_seen:
        std::sync::Mutex<BTreeMap<(String, String, String, String), std::time::Instant>>,
    /// Transitions already announced by this replica.
    pub announced: Announced,
    /// The SageMaker calls (None: built without the `sagemaker` feature, or it cannot start).
    pub sagemaker: Option<SageMakerCalls>,
}

/// Reconcile errors (retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A status could not be encoded.
    #[error("encoding: {0}")]
    Json(#[from] serde_json::Error),
    /// A results token could not be generated.
    #[error("cannot generate a results token: {0}")]
    Token(std::io::Error),
}

/// Drops null members: with server-side apply an omitted field is released, a null one is kept.
/// Writes an object's whole status by server-side apply, from the typed status struct (fields
/// the struct leaves out are removed from what this manager owns).
pub async fn apply_status<K, S>(api: &Api<K>, name: &str, status: &S) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: serde::Serialize,
{
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
}

pub fn compact(mut v: Value) -> Value {
    if let Value::Object(map) = &mut v {
        map.retain(|_, x| !x.is_null());
        for x in map.values_mut() {
            *x = compact(x.take());
        }
    } else if let Value::Array(items) = &mut v {
        for x in items.iter_mut() {
            *x = compact(x.take());
        }
    }
    v
}

pub(super) fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) -> Value {
    json!({
        "type": type_,
        "status": if ok { "True" } else { "False" },
        "reason": reason,
        "message": message,
        "lastTransitionTime": Utc::now(),
        "observedGeneration": generation,
    })
}

/// Keeps `lastTransitionTime` of a condition whose status did not change.
pub(super) fn keep_transition(new: &mut Value, old: &[Condition]) {
    if let Some(prev) = old.iter().find(|c| c.type_ == new["type"])
        && prev.status == new["status"]
        && let Some(t) = prev.last_transition_time
    {
        new["lastTransitionTime"] = json!(t);
    }
}

pub async fn publish<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    object: &K,
    warning: bool,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.into(),
        note: Some(note),
        action: reason.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &object.object_ref(&())).await {
        tracing::warn!(error = %e, reason, "cannot publish event");
    }
}

pub(super) fn error_policy<K>(_: Arc<K>, error: &Error, _: Arc<Context>) -> Requeue {
    tracing::warn!(%error, "reconcile failed; retrying");
    Requeue::requeue(Duration::from_secs(5))
}

/// The owner reference that makes `o` the controller of what Slipway creates for it.
pub fn owner<K: Resource<DynamicType = ()>>(o: &K) -> Value {
    json!([{
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "name": o.meta().name,
        "uid": o.meta().uid,
        "controller": true,
        "blockOwnerDeletion": true,
    }])
}

/// The SageMaker calls, shared by the deployments that use them (run on blocking threads).
pub type SageMakerCalls =
    Arc<std::sync::Mutex<Box<dyn crate::edges::serving::sagemaker::Endpoints + Send>>>;

/// Remembers what was announced, so that a reconcile that read a stale object does not announce
/// a transition twice. Bounded: past the bound it starts over (a rare duplicate, never a loss).
#[derive(Default)]
pub struct Announced(std::sync::Mutex<std::collections::HashSet<String>>);

impl Announced {
    const BOUND: usize = 50_000;

    /// True the first time `key` is seen.
    pub(super) fn first(&self, key: String) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= Self::BOUND {
            seen.clear();
        }
        seen.insert(key)
    }
}
