//! The Kubernetes-mode controllers' wiring: one controller per kind over shared watches, each
//! reconciler in a file of its own ([`super::aliases`], [`super::approvals`], [`super::models`],
//! [`super::deployments`], [`super::evaluations`], [`super::sagemaker`]).

use super::watch::{ChangeFilter, Changes};
use std::sync::Arc;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use slipway_crd::{Evaluation, ModelAlias, ModelDeployment, ModelVersion};

use super::aliases::reconcile_alias;
use super::approvals::reconcile_approval;
use super::cache::{Cache, Guarded};
use super::context::{Context, MANAGER, error_policy, failure_key};
use super::deployments::reconcile_deployment;
use super::models::{model_of, reconcile_model};
use super::stall::observed;
use crate::decide::limits::{MODEL_DEBOUNCE, RECONCILES_IN_FLIGHT};

/// Counts each reconcile result of one controller; a success ends its object's run of failures.
fn counted<K, A, E>(
    ctx: Arc<Context>,
    controller: &'static str,
) -> impl FnMut(Result<(ObjectRef<K>, A), E>) -> std::future::Ready<()>
where
    K: kube::Resource,
    K::DynamicType: Clone + std::hash::Hash + Eq,
{
    move |result| {
        if let Ok((object, _)) = &result {
            let key = failure_key(
                &K::kind(&object.dyntype),
                object.namespace.as_deref(),
                &object.name,
            );
            ctx.failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
        }
        ctx.metrics.reconciled(controller, result.is_ok());
        std::future::ready(())
    }
}

#[cfg(feature = "sagemaker")]
fn sagemaker_calls() -> Option<super::context::SageMakerCalls> {
    match crate::edges::serving::sagemaker::aws::SageMaker::new() {
        Ok(s) => Some(Arc::new(std::sync::Mutex::new(Box::new(s)))),
        Err(e) => {
            tracing::error!(error = %e, "cannot start the SageMaker client runtime");
            None
        }
    }
}

#[cfg(not(feature = "sagemaker"))]
fn sagemaker_calls() -> Option<super::context::SageMakerCalls> {
    None
}

/// Each controller's settings: at most [`RECONCILES_IN_FLIGHT`] reconciles at once.
fn limited() -> kube::runtime::controller::Config {
    kube::runtime::controller::Config::default().concurrency(RECONCILES_IN_FLIGHT)
}

/// Resolves once the shutdown is signalled.
async fn stopped(mut rx: Shutdown) {
    let _ = rx.wait_for(|s| *s).await;
}

/// The shutdown signal every controller waits on.
type Shutdown = tokio::sync::watch::Receiver<bool>;

/// Runs the controllers over the shared watches of `cache` until `shutdown` resolves.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    client: Client,
    cache: Arc<Cache>,
    namespace: Option<String>,
    identity: String,
    bounds: Arc<crate::decide::bounds::Bounds>,
    results_url: String,
    metrics: Arc<super::metrics::Metrics>,
    write_back: Option<Arc<super::writeback::Settings>>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    cache.ready().await;
    let ctx = Arc::new(Context {
        client: client.clone(),
        cache: cache.clone(),
        recorder: Arc::new(super::recorder::Recorder::new(
            client.clone(),
            MANAGER,
            &identity,
        )),
        results_url,
        bounds,
        metrics,
        moves_seen: Default::default(),
        announced: Default::default(),
        failures: Default::default(),
        waiting: Default::default(),
        sagemaker: sagemaker_calls(),
        write_back,
    });
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let stop = async move {
        shutdown.await;
        let _ = shutdown_tx.send(true);
    };
    tokio::join!(
        approvals(&ctx, shutdown_rx.clone()),
        super::approvals::record_withdrawals(ctx.clone(), shutdown_rx.clone()),
        models(&ctx, shutdown_rx.clone()),
        aliases(&ctx, shutdown_rx.clone()),
        deployments(&ctx, shutdown_rx.clone()),
        versions(&ctx, shutdown_rx.clone()),
        evaluations(&ctx, jobs, shutdown_rx),
        stop
    );
}

/// `ModelAlias`: an evaluation that finishes may let its model's held alias moves through; so
/// may an approval of the move.
fn aliases(ctx: &Arc<Context>, stop: Shutdown) -> impl std::future::Future<Output = ()> {
    let cache = ctx.cache.clone();
    let alias_cache = cache.clone();
    Controller::for_shared_stream(cache.aliases.changes(), cache.aliases.store())
        .watches_shared_stream(
            cache.evaluations.changes(),
            move |e: Arc<Guarded<Evaluation>>| {
                let Ok(e) = &e.0 else {
                    return Vec::new();
                };
                let ns = e.namespace().unwrap_or_else(|| "default".into());
                alias_cache
                    .aliases_of(&ns, &e.spec.model)
                    .into_iter()
                    .map(|name| ObjectRef::<Guarded<ModelAlias>>::new(&name).within(&ns))
                    .collect()
            },
        )
        // An approval may release a move held for it.
        .watches_shared_stream(
            cache.approvals.changes(),
            |a: Arc<Guarded<slipway_crd::Approval>>| {
                let Ok(a) = &a.0 else {
                    return None;
                };
                let ns = crate::decide::policy::binding::target_namespace(a);
                (a.spec.target.kind == "ModelAlias")
                    .then(|| ObjectRef::<Guarded<ModelAlias>>::new(&a.spec.target.name).within(ns))
            },
        )
        .with_config(limited())
        .trigger_backoff(super::cache::QuickBackoff::default())
        .graceful_shutdown_on(stopped(stop))
        .run(
            |o, c| observed(o, c, reconcile_alias),
            error_policy,
            ctx.clone(),
        )
        .for_each(counted(ctx.clone(), "aliases"))
}

/// `ModelDeployment`: a deployment follows its alias, and owns its workloads and services. Its
/// own status writes do not start it again (each reconcile's outcome says when to look again; a
/// look started by a status write it made mid-step would act on that step's intermediate state).
/// The deployments of `model` in `ns` (those that follow `alias`, when given), as the watch
/// has them.
fn deployments_of(
    store: &kube::runtime::reflector::Store<Guarded<ModelDeployment>>,
    ns: Option<String>,
    model: &str,
    alias: Option<&str>,
) -> Vec<ObjectRef<Guarded<ModelDeployment>>> {
    store
        .state()
        .into_iter()
        .filter(|d| {
            d.0.as_ref().is_ok_and(|d| {
                d.namespace() == ns
                    && d.spec.model == model
                    && alias.is_none_or(|a| d.spec.alias.as_deref() == Some(a))
            })
        })
        .map(|d| ObjectRef::from_obj(&*d))
        .collect()
}

fn deployments(ctx: &Arc<Context>, stop: Shutdown) -> impl std::future::Future<Output = ()> {
    let cache = &ctx.cache;
    let store = cache.deployments.store();
    let requests = ChangeFilter::new(&cache.deployments, Changes::of_requests());
    let requested = cache
        .deployments
        .changes()
        .filter(move |d| std::future::ready(requests.counts(d)));
    Controller::for_shared_stream(requested, cache.deployments.store())
        .owns_shared_stream(cache.workloads.changes())
        .owns_shared_stream(cache.services.changes())
        .watches_shared_stream(
            cache.aliases.changes(),
            move |alias: Arc<Guarded<ModelAlias>>| {
                let Ok(alias) = &alias.0 else {
                    return Vec::new();
                };
                let a = &alias.spec;
                deployments_of(&store, alias.namespace(), &a.model, Some(&a.alias))
            },
        )
        // A version registered (again) is looked at by the deployments of its model: one
        // whose label now names another artifact than its alias moved with stalls.
        // (Its spec only: its status and metadata — the retire finalizer — change nothing a
        // deployment serves.)
        .watches_shared_stream(cache.versions.changes(), {
            let store = cache.deployments.store();
            let version_specs = ChangeFilter::new(&cache.versions, Changes::of_spec());
            move |version: Arc<Guarded<ModelVersion>>| {
                if !version_specs.counts(&version) {
                    return Vec::new();
                }
                let Ok(v) = &version.0 else {
                    return Vec::new();
                };
                deployments_of(&store, v.namespace(), &v.spec.model, None)
            }
        })
        .with_config(limited())
        .trigger_backoff(super::cache::QuickBackoff::default())
        .graceful_shutdown_on(stopped(stop))
        .run(
            |o, c| observed(o, c, reconcile_deployment),
            error_policy,
            ctx.clone(),
        )
        .for_each(counted(ctx.clone(), "deployments"))
}

/// `ModelVersion`: a model's suites are its versions' evaluations, so a suite added or changed
/// reaches every version (as git mode's next pass does) — a spec change, not the model's status
/// writes.
fn versions(ctx: &Arc<Context>, stop: Shutdown) -> impl std::future::Future<Output = ()> {
    let cache = &ctx.cache;
    let version_cache = cache.clone();
    let model_specs = ChangeFilter::new(&cache.models, Changes::of_spec());
    Controller::for_shared_stream(cache.versions.changes(), cache.versions.store())
        .owns_shared_stream(cache.evaluations.changes())
        .watches_shared_stream(
            cache.models.changes(),
            move |m: Arc<Guarded<slipway_crd::RegisteredModel>>| {
                if !model_specs.counts(&m) {
                    return Vec::new();
                }
                let ns = m.namespace().unwrap_or_else(|| "default".into());
                let name = m.name_any();
                version_cache
                    .versions_of(&ns, &name)
                    .into_iter()
                    .map(|v| ObjectRef::<Guarded<slipway_crd::ModelVersion>>::new(&v).within(&ns))
                    .collect::<Vec<_>>()
            },
        )
        .with_config(limited())
        .trigger_backoff(super::cache::QuickBackoff::default())
        .graceful_shutdown_on(stopped(stop))
        .run(
            |o, c| observed(o, c, super::versions::reconcile_version),
            error_policy,
            ctx.clone(),
        )
        .for_each(counted(ctx.clone(), "versions"))
}

/// `Evaluation`: owns the Jobs of its attempts.
fn evaluations(
    ctx: &Arc<Context>,
    jobs: Api<k8s_openapi::api::batch::v1::Job>,
    stop: Shutdown,
) -> impl std::future::Future<Output = ()> {
    let cache = &ctx.cache;
    let evaluations = cache.evaluations.store();
    let specs = ChangeFilter::new(&cache.versions, Changes::of_spec());
    Controller::for_shared_stream(cache.evaluations.changes(), cache.evaluations.store())
        .owns(
            jobs,
            watcher::Config::default().labels("slipway.dev/evaluation"),
        )
        // A version registered (or changed) wakes its evaluations: one that waited for it
        // starts at once, whatever its backoff.
        .watches_shared_stream(
            cache.versions.changes(),
            move |v: Arc<Guarded<slipway_crd::ModelVersion>>| {
                let Ok(version) = &v.0 else { return Vec::new() };
                if !specs.counts(&v) {
                    return Vec::new();
                }
                let ns = version.namespace();
                evaluations
                    .state()
                    .into_iter()
                    .filter(|e| {
                        e.0.as_ref().is_ok_and(|e| {
                            e.namespace() == ns
                                && e.spec.model == version.spec.model
                                && e.spec.version == version.spec.version
                        })
                    })
                    .map(|e| kube::runtime::reflector::ObjectRef::from_obj(&*e))
                    .collect()
            },
        )
        .with_config(limited())
        .trigger_backoff(super::cache::QuickBackoff::default())
        .graceful_shutdown_on(stopped(stop))
        .run(
            |o, c| observed(o, c, super::evaluations::reconcile_evaluation),
            error_policy,
            ctx.clone(),
        )
        .for_each(counted(ctx.clone(), "evaluations"))
}

/// `RegisteredModel`: its status sums up its versions and aliases.
fn models(ctx: &Arc<Context>, stop: Shutdown) -> impl std::future::Future<Output = ()> {
    let cache = &ctx.cache;
    Controller::for_shared_stream(cache.models.changes(), cache.models.store())
        .watches_shared_stream(cache.versions.changes(), {
            // Only a version's creation, spec change or deletion changes its model's summary —
            // not its status writes (2,000 of them while a namespace converges).
            let specs = ChangeFilter::new(&cache.versions, Changes::of_spec());
            move |v: Arc<Guarded<slipway_crd::ModelVersion>>| {
                let Ok(version) = &v.0 else { return None };
                specs
                    .counts(&v)
                    .then(|| model_of(version.namespace(), &version.spec.model))
                    .flatten()
            }
        })
        .watches_shared_stream(
            cache.aliases.changes(),
            |a: Arc<Guarded<ModelAlias>>| match &a.0 {
                Ok(a) => model_of(a.namespace(), &a.spec.model),
                Err(_) => None,
            },
        )
        // A burst of changes of its versions and aliases (a namespace being applied, aliases
        // resolving) is one write, not one each.
        .with_config(limited().debounce(MODEL_DEBOUNCE))
        .trigger_backoff(super::cache::QuickBackoff::default())
        .graceful_shutdown_on(stopped(stop))
        .run(
            |o, c| observed(o, c, reconcile_model),
            error_policy,
            ctx.clone(),
        )
        .for_each(counted(ctx.clone(), "models"))
}

/// `Approval`: records when it was admitted.
fn approvals(ctx: &Arc<Context>, stop: Shutdown) -> impl std::future::Future<Output = ()> {
    let cache = &ctx.cache;
    Controller::for_shared_stream(cache.approvals.changes(), cache.approvals.store())
        .with_config(limited())
        .trigger_backoff(super::cache::QuickBackoff::default())
        .graceful_shutdown_on(stopped(stop))
        .run(
            |o, c| observed(o, c, reconcile_approval),
            error_policy,
            ctx.clone(),
        )
        .for_each(counted(ctx.clone(), "approvals"))
}
