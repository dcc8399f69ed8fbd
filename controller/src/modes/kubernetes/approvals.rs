//! `Approval`: its status records when it was given and which move used it.

use std::sync::Arc;

use chrono::Utc;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action as Requeue;
use serde_json::json;

use super::context::{Context, Error};

/// An `Approval`'s status records when it was admitted.
pub(super) async fn reconcile_approval(
    guarded: Arc<DeserializeGuard<slipway_crd::Approval>>,
    ctx: Arc<Context>,
) -> Result<Requeue, Error> {
    let Ok(approval) = &guarded.0 else {
        return Ok(Requeue::await_change());
    };
    if approval
        .status
        .as_ref()
        .is_some_and(|s| s.approved_at.is_some())
    {
        return Ok(Requeue::await_change());
    }
    let ns = approval.namespace().unwrap_or_else(|| "default".into());
    let at = approval
        .metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| {
            chrono::DateTime::from_timestamp(
                t.0.as_second(),
                t.0.subsec_nanosecond().unsigned_abs(),
            )
        })
        .unwrap_or_else(Utc::now);
    let patch = json!({"status": {"approvedAt": at}});
    Api::<slipway_crd::Approval>::namespaced(ctx.client.clone(), &ns)
        .patch_status(
            &approval.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(Requeue::await_change())
}

// ---------------------------------------------------------------- models
