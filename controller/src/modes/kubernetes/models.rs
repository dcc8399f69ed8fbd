//! `RegisteredModel`: its status shows the newest version and what its aliases resolve to
//! ([`crate::decide::model::status`], which git mode writes too).

use std::sync::Arc;

use super::cache::Guarded;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::reflector::ObjectRef;

use super::context::{Context, Error, apply_status};

/// A `RegisteredModel`'s status: its newest version and where its aliases resolve.
pub(super) async fn reconcile_model(
    guarded: Arc<Guarded<slipway_crd::RegisteredModel>>,
    ctx: Arc<Context>,
) -> Result<Requeue, Error> {
    let Ok(model) = &guarded.0 else {
        return Ok(Requeue::await_change());
    };
    let ns = model.namespace().unwrap_or_else(|| "default".into());
    let name = model.name_any();
    let (versions, aliases) = ctx.cache.model_summary(&ns, &name);
    let labels: Vec<&str> = versions.iter().map(String::as_str).collect();
    let old = model.status.clone().unwrap_or_default();
    let generation = model.metadata.generation;
    if let Some(next) =
        crate::decide::model::status(&labels, aliases, &old, generation, chrono::Utc::now())
    {
        let api = Api::<slipway_crd::RegisteredModel>::namespaced(ctx.client.clone(), &ns);
        apply_status(&api, &name, &next).await?;
        // The watch that woke this may be ahead of the cache: look once more shortly.
        return Ok(Requeue::requeue(crate::decide::limits::DEPENDENT_POLL));
    }
    // Unchanged — possibly because the watch that woke this is ahead of the cache (CI caught a
    // model summary left stale that way): look again soon; a reconcile with nothing to write is
    // a few map lookups.
    Ok(Requeue::requeue(crate::decide::limits::MODEL_RESYNC))
}

/// The `RegisteredModel` an object with `spec.model` belongs to.
pub(super) fn model_of(
    ns: Option<String>,
    spec_model: &str,
) -> Option<ObjectRef<Guarded<slipway_crd::RegisteredModel>>> {
    Some(ObjectRef::new(spec_model).within(&ns.unwrap_or_else(|| "default".into())))
}
