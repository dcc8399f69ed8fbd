//! What every Kubernetes-mode reconciler shares: the context, errors, the field manager, typed
//! status writes, conditions and events.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use kube::{Client, Resource};
use serde_json::{Value, json};

use crate::decide::outcome::{Outcome, Stall, StallReason};

/// The field manager of every write.
pub const MANAGER: &str = "slipway-controller";

/// Shared by the reconcilers.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Watched objects and catalogs.
    pub cache: Arc<super::cache::Cache>,
    /// Publishes events.
    pub recorder: Arc<super::recorder::Recorder>,
    /// Where evaluation Jobs post their results (the controller's HTTP address as pods see it).
    pub results_url: String,
    /// The operator's bounds, checked again before acting on an object.
    pub bounds: Arc<crate::decide::bounds::Bounds>,
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
    /// Failures in a row per object (`Kind namespace/name`), for the backoff of transient errors.
    pub failures: std::sync::Mutex<std::collections::HashMap<String, u32>>,
    /// Looks in a row per evaluation (`namespace/name`) whose version is not registered, for
    /// the backoff of its looks (a version's arrival wakes it at once).
    pub waiting: std::sync::Mutex<std::collections::HashMap<String, u32>>,
    /// Where rollbacks are written back to (None: nowhere).
    pub write_back: Option<Arc<super::writeback::Settings>>,
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
    /// SageMaker refused or failed a call (the reason says which and what to do).
    #[error("SageMaker: {0}")]
    SageMaker(String),
    /// kube-runtime's finalizer helper could not work on the object.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// An object of the name Slipway would write exists and is not the deployment's own.
    #[error("{0}")]
    NotOwned(String),
    /// The Gateway API route a deployment names cannot carry its split (missing, or no rule of
    /// it serves the deployment).
    #[error("{0}")]
    Route(String),
    /// kube-runtime's finalizer patch tests the finalizers it read (a JSON Patch `test`): the
    /// API server refuses it (422) when the copy was stale — another reconcile added or removed
    /// the finalizer meanwhile. A race to read again, not a refusal of the object.
    #[error("finalizer: the object changed since it was read ({0})")]
    FinalizerRace(kube::Error),
}

impl From<kube::runtime::finalizer::Error<Error>> for Error {
    /// The reconciler's own error as it was; the finalizer's patches as API errors.
    fn from(e: kube::runtime::finalizer::Error<Error>) -> Error {
        use kube::runtime::finalizer::Error as F;
        match e {
            F::ApplyFailed(e) | F::CleanupFailed(e) => e,
            F::AddFinalizer(kube::Error::Api(s)) | F::RemoveFinalizer(kube::Error::Api(s))
                if s.code == 422 =>
            {
                Error::FinalizerRace(kube::Error::Api(s))
            }
            F::AddFinalizer(e) | F::RemoveFinalizer(e) => Error::Kube(e),
            other => Error::Finalizer(other.to_string()),
        }
    }
}

/// Removes an operator's retry annotation once its request was taken (or refused).
pub async fn forget_retry<K>(api: &Api<K>, name: &str) -> Result<(), kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let forget = serde_json::json!({"metadata": {"annotations": {
        slipway_crd::model_deployment::RETRY_ANNOTATION: null
    }}});
    api.patch(
        name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&forget),
    )
    .await?;
    Ok(())
}

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

/// [`apply_status`] of a status that leaves out fields the `old` one had (results, a
/// baseline): they are removed first. Server-side apply alone would leave an emptied map as
/// null, which the schema refuses.
pub async fn replace_status<K, S>(
    api: &Api<K>,
    name: &str,
    old: Option<&S>,
    status: &S,
) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: serde::Serialize,
{
    let (old, new) = (json!(old), json!(status));
    let dropped: serde_json::Map<String, Value> = old
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| new.get(k.as_str()).is_none())
        .map(|(k, _)| (k.clone(), Value::Null))
        .collect();
    if !dropped.is_empty() {
        let patch = json!({"status": dropped});
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    apply_status(api, name, status).await
}

impl Error {
    /// A short, stable name for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => "conflict",
            Error::FinalizerRace(_) => "conflict",
            Error::Kube(kube::Error::Api(s)) if s.code == 429 || s.code >= 500 => "api-unavailable",
            Error::Kube(kube::Error::Api(s)) if s.code == 401 || s.code == 403 => "forbidden",
            Error::Kube(kube::Error::Api(_)) => "api-refused",
            Error::Kube(_) => "api-unreachable",
            Error::Json(_) => "encoding",
            Error::Token(_) => "token",
            Error::SageMaker(_) => "sagemaker",
            Error::Finalizer(_) => "finalizer",
            Error::NotOwned(_) => "not-owned",
            Error::Route(_) => "route",
        }
    }

    /// What a reconcile that failed with this error came to, decided from the error itself
    /// (not from its metric name), as Flux tells them apart: a conflict reads again at once, an
    /// outage backs off, and what only a change of the object or of the controller's rights can
    /// cure stalls (written on the object, looked at again on a change or at the resync).
    pub fn outcome(&self) -> Outcome {
        let stalled = |reason: StallReason, what_to_do: &str| {
            Outcome::Stalled(Stall {
                reason,
                message: format!(
                    "{self}; {what_to_do} (looked at again when it changes, or within {} minutes)",
                    crate::decide::limits::RESYNC.as_secs() / 60
                ),
            })
        };
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => Outcome::Conflict,
            Error::FinalizerRace(_) => Outcome::Conflict,
            Error::Kube(kube::Error::Api(s)) if s.code == 429 || s.code >= 500 => {
                Outcome::Transient
            }
            // A quota or another admission webhook answers 403 too: that is no missing right.
            Error::Kube(kube::Error::Api(s))
                if (s.code == 401 || s.code == 403)
                    && !s.message.contains("exceeded quota")
                    && !s.message.contains("admission webhook") =>
            {
                stalled(
                    StallReason::Forbidden,
                    "grant the controller's service account these rights (the Helm chart's RBAC has them)",
                )
            }
            Error::Kube(kube::Error::Api(_)) => stalled(
                StallReason::Refused,
                "the API server (or a quota or admission policy of the cluster) refused what Slipway wrote for this object: change the object or that policy, or report it",
            ),
            Error::Kube(_) | Error::Token(_) | Error::SageMaker(_) => Outcome::Transient,
            Error::Json(_) => stalled(StallReason::Unencodable, "change the object, or report it"),
            Error::Finalizer(_) => stalled(StallReason::Finalizer, "report it"),
            // The error says what to do.
            Error::NotOwned(_) => stalled(StallReason::NotOwned, "Slipway waits"),
            Error::Route(_) => stalled(StallReason::TargetRefused, "Slipway waits"),
        }
    }

    /// When to try again after the `failures`-th failure in a row of one object.
    pub fn requeue_after(&self, failures: u32) -> Duration {
        self.outcome().requeue(failures)
    }
}

/// The key of an object in [`Context::failures`].
pub fn failure_key(kind: &str, namespace: Option<&str>, name: &str) -> String {
    format!("{kind} {}/{name}", namespace.unwrap_or("-"))
}

/// Drops null members: with server-side apply an omitted field is released, a null one is kept.
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

pub async fn publish<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    object: &K,
    what: crate::decide::events::Event,
    note: String,
) {
    // What git mode records in its history is counted here, as it counts it there (what is
    // also announced is counted once, by the announcement: see `notify::announce`).
    if what.in_history() {
        ctx.metrics.happened(what.as_str());
    }
    send(ctx, object, what, note).await;
}

/// Sends an event on `object` (not counted: see [`publish`]).
pub(super) async fn send<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    object: &K,
    what: crate::decide::events::Event,
    note: String,
) {
    let reason = what.as_str();
    // In the log too: an event series keeps its first words, the log every one.
    let regarding = object.meta().name.clone().unwrap_or_default();
    if what.is_warning() {
        tracing::warn!(reason, object = %regarding, "{note}");
    } else {
        tracing::info!(reason, object = %regarding, "{note}");
    }
    let type_ = if what.is_warning() {
        super::recorder::Type::Warning
    } else {
        super::recorder::Type::Normal
    };
    // Sent in the background: a reconcile's slot is not held for a request nobody waits on.
    let (recorder, reference) = (ctx.recorder.clone(), object.object_ref(&()));
    tokio::spawn(async move {
        if let Err(e) = recorder.publish(&reference, type_, reason, &note).await {
            tracing::warn!(error = %e, reason, "cannot publish event");
        }
    });
}

/// Decides the requeue of a failed reconcile from what failed (see [`Retry`]), counts it by
/// category, and logs it with the object.
pub(super) fn error_policy<K>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Requeue
where
    K: Resource,
    K::DynamicType: Default,
{
    let kind = K::kind(&Default::default()).to_string();
    let name = obj.meta().name.clone().unwrap_or_default();
    let key = failure_key(&kind, obj.meta().namespace.as_deref(), &name);
    let failures = {
        let mut all = ctx.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = all.entry(key.clone()).or_insert(0);
        *n += 1;
        *n
    };
    let after = error.requeue_after(failures);
    ctx.metrics.failed(&kind, error.category());
    tracing::warn!(object = %key, category = error.category(), failures, retry_in = ?after, %error, "reconcile failed");
    Requeue::requeue(after)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> Error {
        Error::Kube(kube::Error::Api(Box::new(
            kube::core::Status::failure("x", "y").with_code(code),
        )))
    }

    #[test]
    fn errors_decide_how_they_are_retried() {
        let reason = |e: &Error| e.outcome().stall().map(|s| s.reason);
        assert_eq!(api(409).outcome(), Outcome::Conflict);
        assert_eq!(api(503).outcome(), Outcome::Transient);
        assert_eq!(api(429).outcome(), Outcome::Transient);
        assert_eq!(reason(&api(403)), Some(StallReason::Forbidden));
        assert_eq!(reason(&api(422)), Some(StallReason::Refused));
        // The finalizer's JSON Patch `test` failing on a stale copy (CI saw a SageMaker
        // deployment stalled as "Refused" for it): read again, not stalled.
        let stale = |code: u16| {
            Error::from(kube::runtime::finalizer::Error::<Error>::AddFinalizer(
                kube::Error::Api(Box::new(
                    kube::core::Status::failure("the test operation failed", "Invalid")
                        .with_code(code),
                )),
            ))
        };
        assert_eq!(stale(422).outcome(), Outcome::Conflict);
        assert_eq!(stale(422).category(), "conflict");
        assert_eq!(reason(&stale(403)), Some(StallReason::Forbidden));
        let json = serde_json::from_str::<u32>("x").unwrap_err();
        assert_eq!(reason(&Error::Json(json)), Some(StallReason::Unencodable));
        // A quota or another admission webhook is no missing right.
        let quota = Error::Kube(kube::Error::Api(Box::new(
            kube::core::Status::failure(
                "deployments.apps \"x\" is forbidden: exceeded quota: team",
                "Forbidden",
            )
            .with_code(403),
        )));
        assert_eq!(reason(&quota), Some(StallReason::Refused));
        let taken = Error::NotOwned("Deployment default/x is not Slipway's".into());
        let stall = taken.outcome().stall().cloned().expect("a stall");
        assert_eq!(stall.reason, StallReason::NotOwned);
        assert!(
            stall
                .message
                .starts_with("Deployment default/x is not Slipway's; "),
            "{}",
            stall.message
        );
        assert_eq!(api(422).category(), "api-refused");
    }

    #[test]
    fn transient_errors_back_off_exponentially_up_to_a_bound() {
        let e = api(500);
        let waits: Vec<u64> = (1..=4).map(|n| e.requeue_after(n).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8]);
        assert_eq!(
            e.requeue_after(40),
            crate::decide::limits::ERROR_BACKOFF_MAX
        );
        assert_eq!(api(403).requeue_after(1), crate::decide::limits::RESYNC);
        assert!(api(409).requeue_after(7) < Duration::from_secs(1));
    }
}
