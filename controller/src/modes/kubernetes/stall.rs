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
use crate::decide::outcome::stall_conditions;

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
    let Ok(typed) = &object.0 else {
        return result;
    };
    let outcome = match &result {
        Ok(_) => None,
        Err(e) => Some(e.outcome()),
    };
    let stall = outcome.as_ref().and_then(|o| o.stall());
    // Decided on the object as read: a stall written or reworded, or one of ours to clear.
    let Some(next) = stall_conditions(
        typed.conditions(),
        stall,
        typed.meta().generation,
        chrono::Utc::now(),
    ) else {
        return result;
    };
    let ours: Vec<&Condition> = next
        .iter()
        .filter(|c| c.type_ == "Stalled" && stall.is_some())
        .collect();
    match write(&ctx, typed, &ours).await {
        Ok(()) => {
            if let Some(stall) = stall {
                send(&ctx, typed, Event::Stalled, stall.message.clone()).await;
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
    let patch = json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
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
