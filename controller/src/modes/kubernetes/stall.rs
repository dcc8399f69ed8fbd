//! A reconcile refused for what the object is says so on the object: `Stalled=True` with its
//! reason (the controller's rights, a write the API server refuses, a name taken by an object
//! that is not Slipway's), and a warning event; the next reconcile that succeeds clears it. What
//! is written is decided by [`crate::decide::outcome`]; this file observes and carries it out.

use std::future::Future;
use std::sync::Arc;

use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use kube::{Resource, ResourceExt};
use serde_json::json;
use slipway_crd::common::Condition;

use super::cache::Guarded;
use super::context::{Context, Error, send};
use crate::decide::events::Event;
use crate::decide::outcome::{Outcome, stall_conditions};

/// The field manager of stall writes: it owns the `Stalled` condition it writes, and nothing
/// else.
const STALL_MANAGER: &str = "slipway-controller-stall";

/// A kind whose status has conditions.
pub(super) trait Conditioned {
    /// The object's conditions.
    fn conditions(&self) -> &[Condition];
}

macro_rules! conditioned {
    ($($kind:ty),*) => {$(
        impl Conditioned for $kind {
            fn conditions(&self) -> &[Condition] {
                self.status.as_ref().map_or(&[], |s| &s.conditions)
            }
        }
    )*};
}

conditioned!(
    slipway_crd::ModelVersion,
    slipway_crd::Evaluation,
    slipway_crd::ModelAlias,
    slipway_crd::ModelDeployment,
    slipway_crd::RegisteredModel,
    slipway_crd::Approval
);

/// Runs `reconcile` on `object`, then writes what its outcome says of the object's `Stalled`
/// condition: set when it was refused for what it is, cleared when it succeeded.
pub(super) async fn observed<K, F, Fut>(
    object: Arc<Guarded<K>>,
    ctx: Arc<Context>,
    reconcile: F,
) -> Result<Requeue, Error>
where
    K: Conditioned + Resource<DynamicType = ()>,
    F: FnOnce(Arc<Guarded<K>>, Arc<Context>) -> Fut,
    Fut: Future<Output = Result<Requeue, Error>>,
{
    let result = reconcile(object.clone(), ctx.clone()).await;
    // An object that cannot be read has no status to write to (the reconciler logged it).
    let Ok(typed) = object.0.as_deref() else {
        return result;
    };
    // A stall is written when refused for what the object is, cleared only by a success (an
    // outage or a conflict says nothing of the object).
    let refused = result.as_ref().err().map(Error::outcome);
    let stall = match &refused {
        None => None,
        Some(Outcome::Stalled(stall)) => Some(stall),
        Some(_) => return result,
    };
    // Decided on the object as read: a stall written or reworded, or one of ours to clear.
    let Some(next) = stall_conditions(
        typed.conditions(),
        stall,
        typed.meta().generation,
        chrono::Utc::now(),
    ) else {
        return result;
    };
    // Only the stall is this writer's to apply; none clears it.
    let ours: Vec<&Condition> = match stall {
        Some(_) => next.iter().filter(|c| c.type_ == "Stalled").collect(),
        None => Vec::new(),
    };
    match write(&ctx, typed, &ours).await {
        Ok(()) => {
            // Once per stall and object on this replica, however stale the copy it was decided
            // on (a no-op write of the same stall announces nothing again).
            if let Some(stall) = stall {
                let key = format!(
                    "stall {} {} {}: {}",
                    typed.meta().uid.as_deref().unwrap_or_default(),
                    typed.meta().generation.unwrap_or(0),
                    stall.reason.as_str(),
                    stall.message
                );
                if ctx.announced.first(key) {
                    send(&ctx, typed, Event::Stalled, stall.message.clone()).await;
                }
            }
        }
        Err(e) => {
            tracing::warn!(object = %typed.name_any(), error = %e, "cannot write the Stalled condition")
        }
    }
    result
}

/// Applies `conditions` (the stall, or none to clear it) as this file's own field manager: the
/// conditions are a map by type, so the reconciler's status writes keep the stall and this one
/// leaves theirs alone.
async fn write<K>(ctx: &Context, object: &K, conditions: &[&Condition]) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()>,
{
    let resource = ApiResource::erase::<K>(&());
    let api: Api<DynamicObject> = match object.namespace() {
        Some(ns) => Api::namespaced_with(ctx.client.clone(), &ns, &resource),
        None => Api::all_with(ctx.client.clone(), &resource),
    };
    // The uid is a precondition: a stall decided on an object deleted meanwhile does not land
    // on a new one of the same name.
    let patch = json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": {"uid": object.meta().uid},
        "status": {"conditions": conditions},
    });
    api.patch_status(
        &object.name_any(),
        &PatchParams::apply(STALL_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::cache::Guarded;
    use super::*;
    use crate::modes::kubernetes::mock;
    use serde_json::Value;
    use slipway_crd::ModelDeployment;

    fn deployment(conditions: Value) -> Value {
        json!({
            "apiVersion": "slipway.dev/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": "pitch-frames-api", "namespace": "default", "generation": 3, "uid": "u-1"},
            "spec": {"model": "pitch-frames", "alias": "production",
                     "target": {"kubernetes": {"image": "img", "port": 8080}}},
            "status": {"conditions": conditions},
        })
    }

    fn guarded(conditions: Value) -> Arc<Guarded<ModelDeployment>> {
        mock::guarded(deployment(conditions))
    }

    async fn refused(_: Arc<Guarded<ModelDeployment>>, _: Arc<Context>) -> Result<Requeue, Error> {
        Err(Error::NotOwned(
            "Service default/pitch-frames-api exists and is not ModelDeployment pitch-frames-api's"
                .into(),
        ))
    }

    async fn succeeded(
        _: Arc<Guarded<ModelDeployment>>,
        _: Arc<Context>,
    ) -> Result<Requeue, Error> {
        Ok(Requeue::await_change())
    }

    async fn unreachable(
        _: Arc<Guarded<ModelDeployment>>,
        _: Arc<Context>,
    ) -> Result<Requeue, Error> {
        Err(Error::Token(std::io::Error::other("no entropy")))
    }

    #[tokio::test]
    async fn a_refused_reconcile_writes_its_stall_once_and_a_success_clears_it() {
        let (ctx, mut api) = mock::context();
        let task = tokio::spawn(observed(guarded(json!([])), ctx.clone(), refused));
        let patch = api.answer(200, deployment(json!([]))).await;
        assert_eq!(patch.method, "PATCH");
        assert!(
            patch.uri.starts_with(
                "/apis/slipway.dev/v1alpha1/namespaces/default/modeldeployments/pitch-frames-api/status?"
            ),
            "{}",
            patch.uri
        );
        assert!(
            patch.uri.contains("fieldManager=slipway-controller-stall")
                && patch.uri.contains("force=true"),
            "{}",
            patch.uri
        );
        // Only the stall, under its own manager: the reconciler's conditions are not touched.
        let written = patch.body["status"]["conditions"].clone();
        assert_eq!(written.as_array().map(Vec::len), Some(1), "{written}");
        let stall = &written[0];
        assert_eq!(
            (
                &stall["type"],
                &stall["status"],
                &stall["reason"],
                &stall["observedGeneration"]
            ),
            (
                &json!("Stalled"),
                &json!("True"),
                &json!("NotOwned"),
                &json!(3)
            )
        );
        let message = stall["message"].as_str().unwrap();
        assert!(
            message.starts_with("Service default/pitch-frames-api exists and is not ModelDeployment pitch-frames-api's; "),
            "{message}"
        );
        assert!(matches!(task.await.unwrap(), Err(Error::NotOwned(_))));
        // Announced once, as a warning.
        let event = api.answer(201, json!({})).await;
        assert_eq!(event.method, "POST", "{event:?}");
        assert_eq!(event.body["reason"], "Stalled", "{event:?}");
        assert_eq!(event.body["type"], "Warning", "{event:?}");

        // Refused again while the object says so already: nothing written, nothing announced.
        let stalled = json!([stall]);
        assert!(
            observed(guarded(stalled.clone()), ctx.clone(), refused)
                .await
                .is_err()
        );
        api.quiet().await;
        // An outage is no stall: the stall stays as it was (it is not cleared by a failure).
        assert!(
            observed(guarded(stalled.clone()), ctx.clone(), unreachable)
                .await
                .is_err()
        );
        api.quiet().await;
        // A success clears it: the stall manager lets go of its condition.
        let task = tokio::spawn(observed(guarded(stalled.clone()), ctx.clone(), succeeded));
        let clear = api.answer(200, deployment(json!([]))).await;
        assert_eq!(clear.method, "PATCH");
        assert_eq!(clear.body["status"]["conditions"], json!([]));
        task.await.unwrap().unwrap();
        // Nothing of ours on the object: a success writes nothing.
        assert!(
            observed(guarded(json!([])), ctx.clone(), succeeded)
                .await
                .is_ok()
        );
        api.quiet().await;
    }
}
