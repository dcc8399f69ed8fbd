//! `ModelVersion`: it gets one `Evaluation` per suite of its model (the same task list as git
//! mode, [`crate::decide::tasks`]), and its status summarises them.

use crate::decide::events::Event as Happened;
use std::sync::Arc;

use super::cache::Guarded;
use chrono::Utc;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use serde_json::json;
use slipway_crd::{Evaluation, ModelVersion};

use super::context::{Context, Error, MANAGER, apply_status, compact};
use super::notify;
use crate::decide::evaluation::summary;
use crate::decide::tasks;

use super::context::owner;

/// A `ModelVersion` gets one `Evaluation` per suite of its model, against the baseline the suite
/// names as resolved now.
pub async fn reconcile_version(
    guarded: Arc<Guarded<ModelVersion>>,
    ctx: Arc<Context>,
) -> Result<Requeue, Error> {
    let Ok(version) = &guarded.0 else {
        return Ok(Requeue::await_change());
    };
    let ns = version.namespace().unwrap_or_else(|| "default".into());
    if version.metadata.deletion_timestamp.is_some() {
        super::retire::retire(&ctx, &ns, version).await?;
        return Ok(Requeue::await_change());
    }
    if super::retire::hold(&ctx, &ns, version).await? {
        // Its change brings the version back, as it is now (so its status and registration
        // are written from one fresh read, once).
        return Ok(Requeue::await_change());
    }
    let view = ctx.cache.view(&ns);
    let catalog = &view.catalog;
    if catalog
        .version(&ns, &version.spec.model, &version.spec.version)
        .is_none()
    {
        // Newer than the catalog: look again once it has caught up.
        return Ok(Requeue::requeue(crate::decide::limits::CACHE_CATCH_UP));
    }
    let waiting = create_evaluations(&ctx, &ns, version, catalog).await?;
    let verdict = summarise(&ctx, &ns, version, &view).await?;
    // Until every suite has a verdict, look again soon (the catalog may trail the watch).
    Ok(Requeue::requeue(if verdict && !waiting {
        crate::decide::limits::RESYNC
    } else {
        crate::decide::limits::DEPENDENT_POLL
    }))
}

/// Creates the version's missing `Evaluation`s, one per suite; returns whether one waits for
/// its baseline alias to resolve.
async fn create_evaluations(
    ctx: &Context,
    ns: &str,
    version: &ModelVersion,
    catalog: &crate::decide::catalog::Catalog,
) -> Result<bool, Error> {
    // Aliases come from the watch: the catalog is not rebuilt for alias changes.
    let resolved = |ns: &str, model: &str, alias: &str| ctx.cache.resolved(ns, model, alias);
    let api: Api<Evaluation> = Api::namespaced(ctx.client.clone(), ns);
    let mut waiting = false;
    let mut taken = Vec::new();
    // This version's evaluations only: a reconcile does not grow with the namespace.
    for t in tasks::of_version(catalog, ns, version, &resolved) {
        let key = crate::decide::catalog::ObjectKey {
            kind: slipway_crd::Kind::Evaluation,
            namespace: ns.to_string(),
            name: t.name.clone(),
        };
        // One that exists keeps its baseline (pinned when it was made); it is brought up to
        // the suite as declared now (runner, dataset, gates, timeout), so a suite's change is
        // decided again here as on git mode's next pass.
        let baseline = match catalog.get(&key).map(|o| &o.resource) {
            // One of that name that is not the controller's (made before the version, by
            // someone else) is never taken over: it is left as it is, and said so.
            Some(crate::decide::catalog::Resource::Evaluation(e))
                if !super::aliases::own_evaluation(catalog, ns, e) =>
            {
                taken.push(t.name.clone());
                continue;
            }
            Some(crate::decide::catalog::Resource::Evaluation(e)) => {
                if e.spec.runner == t.runner
                    && e.spec.dataset == t.dataset
                    && e.spec.gates == t.gates
                    && e.spec.timeout == t.timeout
                {
                    continue;
                }
                e.spec.baseline.clone().map(|b| json!(b))
            }
            Some(_) => continue,
            None if awaits_baseline(ctx, ns, catalog, &t) => {
                waiting = true;
                continue;
            }
            None => t.baseline.as_ref().map(|(v, _)| json!({"version": v})),
        };
        let object = json!({
            "apiVersion": "slipway.dev/v1alpha1", "kind": "Evaluation",
            "metadata": {"name": t.name, "ownerReferences": owner(version),
                         "labels": {"slipway.dev/model": t.model, "slipway.dev/version": t.version}},
            "spec": {
                "model": t.model, "version": t.version, "suite": t.suite,
                "baseline": baseline,
                "dataset": t.dataset, "runner": t.runner, "gates": t.gates, "timeout": t.timeout,
            }
        });
        api.patch(
            &t.name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&compact(object)),
        )
        .await?;
        tracing::info!(evaluation = %t.name, namespace = %ns, "evaluation applied");
    }
    if !taken.is_empty() {
        let note = format!(
            "Evaluation {} exists and is not Slipway's own for this version (it was not made by \
             the controller): it is not taken over, and counts only if it runs the suite as \
             declared against its baseline; delete it to have Slipway make its own",
            taken.join(", ")
        );
        super::context::publish(ctx, version, Happened::Stalled, note).await;
    }
    Ok(waiting)
}

/// Whether task `t` has no baseline yet because its suite's baseline alias has not resolved.
fn awaits_baseline(
    ctx: &Context,
    ns: &str,
    catalog: &crate::decide::catalog::Catalog,
    t: &tasks::Task,
) -> bool {
    // A baseline alias that exists but has not resolved yet (its first move is still being
    // decided): wait for it rather than evaluate without a baseline.
    let baseline_alias = catalog
        .model(ns, &t.model)
        .and_then(|m| m.spec.evaluations.iter().find(|s| s.name == t.suite))
        .and_then(|s| s.baseline.as_ref())
        .filter(|b| b.version.is_none())
        .and_then(|b| b.alias.clone());
    let Some(a) = baseline_alias else {
        return false;
    };
    t.baseline.is_none()
        && ctx
            .cache
            .alias_target(ns, &t.model, &a)
            .is_some_and(|target| target != t.version)
        && ctx.cache.resolved(ns, &t.model, &a).is_none()
}

/// Writes the version's status from its evaluations when it changed (announcing a first
/// registration); returns whether every suite has a verdict (passed, or one failed).
async fn summarise(
    ctx: &Arc<Context>,
    ns: &str,
    version: &ModelVersion,
    view: &crate::decide::catalog::View,
) -> Result<bool, Error> {
    // The version's status: its evaluations and whether they passed.
    let suites = view
        .catalog
        .model(ns, &version.spec.model)
        .map(|m| m.spec.evaluations.len())
        .unwrap_or(0);
    let old = version.status.clone().unwrap_or_default();
    let held = view
        .results
        .of(ns, &version.spec.model, &version.spec.version);
    let next = summary::version_status(
        &old,
        suites,
        held.into_iter()
            .flatten()
            .map(|(suite, e)| (suite.as_str(), &**e)),
        version.metadata.generation,
        Utc::now(),
    );
    let ok = next.conditions.iter().any(|c| c.status == "True");
    let failed = next
        .conditions
        .iter()
        .any(|c| c.reason == "EvaluationFailed");
    if !summary::same(&old, &next) {
        let versions: Api<ModelVersion> = Api::namespaced(ctx.client.clone(), ns);
        apply_status(&versions, &version.name_any(), &next).await?;
        if old.registered_at.is_none() {
            announce_registered(ctx, ns, version).await;
        }
    }
    Ok(ok || failed)
}

/// Notifies that the version was registered.
async fn announce_registered(ctx: &Arc<Context>, ns: &str, version: &ModelVersion) {
    let v = &version.spec;
    let registered = notify::entry(
        Happened::VersionRegistered,
        ns,
        &v.model,
        format!("ModelVersion/{}", version.name_any()),
        Some(v.version.clone()),
        None,
        format!(
            "{} version {} registered ({})",
            v.model, v.version, v.artifact.uri
        ),
    );
    notify::notify(ctx, version, registered).await;
}
