//! The Kubernetes-mode controllers' wiring: one controller per kind over shared watches, each
//! reconciler in a file of its own ([`super::aliases`], [`super::approvals`], [`super::models`],
//! [`super::deployments`], [`super::evaluations`], [`super::sagemaker`]).

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Controller;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use slipway_crd::{ModelAlias, ModelDeployment};

use super::aliases::reconcile_alias;
use super::approvals::reconcile_approval;
use super::cache::DEPLOYMENT_LABEL;
use super::context::{Context, MANAGER, error_policy, failure_key};
use super::deployments::reconcile_deployment;
use super::models::{model_of, reconcile_model};

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

/// Runs the controllers until `shutdown` resolves.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    client: Client,
    namespace: Option<String>,
    identity: String,
    results_url: String,
    metrics: Arc<super::metrics::Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let ctx = Arc::new(Context {
        client: client.clone(),
        cache: {
            let cache = super::cache::Cache::start(&client, namespace.as_deref());
            cache.ready().await;
            cache
        },
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.into(),
                instance: Some(identity),
            },
        ),
        results_url,
        metrics,
        moves_seen: Default::default(),
        announced: Default::default(),
        failures: Default::default(),
        sagemaker: sagemaker_calls(),
    });
    fn scoped<K>(client: &Client, namespace: &Option<String>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let aliases: Api<DeserializeGuard<ModelAlias>> = scoped(&client, &namespace);
    let mds: Api<DeserializeGuard<ModelDeployment>> = scoped(&client, &namespace);
    let deps: Api<Deployment> = scoped(&client, &namespace);
    let plain_aliases: Api<ModelAlias> = scoped(&client, &namespace);
    let versions: Api<DeserializeGuard<slipway_crd::ModelVersion>> = scoped(&client, &namespace);
    let evaluations: Api<DeserializeGuard<slipway_crd::Evaluation>> = scoped(&client, &namespace);
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = scoped(&client, &namespace);
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    // An evaluation that finishes may let its model's held alias moves through.
    let alias_cache = ctx.cache.clone();
    let evaluation_events: Api<slipway_crd::Evaluation> = scoped(&client, &namespace);
    let alias_controller = {
        let (store, stream) = super::cache::primary(aliases, watcher::Config::default());
        Controller::for_stream(stream, store)
    }
    .watches(
        evaluation_events,
        watcher::Config::default(),
        move |e: slipway_crd::Evaluation| {
            let ns = e.namespace().unwrap_or_else(|| "default".into());
            alias_cache
                .aliases(&ns)
                .into_iter()
                .filter(|a| a["spec"]["model"].as_str() == Some(e.spec.model.as_str()))
                .filter_map(|a| {
                    Some(
                        ObjectRef::<DeserializeGuard<ModelAlias>>::new(
                            a["metadata"]["name"].as_str()?,
                        )
                        .within(&ns),
                    )
                })
                .collect::<Vec<_>>()
        },
    )
    .trigger_backoff(super::cache::QuickBackoff::default())
    .graceful_shutdown_on(wait(shutdown_rx.clone()))
    .run(reconcile_alias, error_policy, ctx.clone())
    .for_each(counted(ctx.clone(), "aliases"));
    let deployment_controller = {
        let (store, stream) = super::cache::primary(mds, watcher::Config::default());
        Controller::for_stream(stream, store)
    };
    let store = deployment_controller.store();
    let deployment_controller = deployment_controller
        .owns(deps, watcher::Config::default().labels(DEPLOYMENT_LABEL))
        .watches(
            plain_aliases,
            watcher::Config::default(),
            move |alias: ModelAlias| {
                let ns = alias.namespace();
                store
                    .state()
                    .into_iter()
                    .filter(|d| match &d.0 {
                        Ok(d) => {
                            d.namespace() == ns
                                && d.spec.model == alias.spec.model
                                && d.spec.alias.as_deref() == Some(alias.spec.alias.as_str())
                        }
                        Err(_) => false,
                    })
                    .map(|d| ObjectRef::from_obj(&*d))
                    .collect::<Vec<_>>()
            },
        )
        .trigger_backoff(super::cache::QuickBackoff::default())
        .graceful_shutdown_on(wait(shutdown_rx.clone()))
        .run(reconcile_deployment, error_policy, ctx.clone())
        .for_each(counted(ctx.clone(), "deployments"));
    let owned_evaluations: Api<slipway_crd::Evaluation> = scoped(&client, &namespace);
    let version_controller = {
        let (store, stream) = super::cache::primary(versions, watcher::Config::default());
        Controller::for_stream(stream, store)
    }
    .owns(owned_evaluations, watcher::Config::default())
    .trigger_backoff(super::cache::QuickBackoff::default())
    .graceful_shutdown_on(wait(shutdown_rx.clone()))
    .run(
        super::versions::reconcile_version,
        error_policy,
        ctx.clone(),
    )
    .for_each(|_| async {});
    let evaluation_controller = {
        let (store, stream) = super::cache::primary(evaluations, watcher::Config::default());
        Controller::for_stream(stream, store)
    }
    .owns(
        jobs,
        watcher::Config::default().labels("slipway.dev/evaluation"),
    )
    .trigger_backoff(super::cache::QuickBackoff::default())
    .graceful_shutdown_on(wait(shutdown_rx.clone()))
    .run(
        super::evaluations::reconcile_evaluation,
        error_policy,
        ctx.clone(),
    )
    .for_each(|_| async {});
    let models: Api<DeserializeGuard<slipway_crd::RegisteredModel>> = scoped(&client, &namespace);
    let model_versions: Api<slipway_crd::ModelVersion> = scoped(&client, &namespace);
    let model_aliases: Api<ModelAlias> = scoped(&client, &namespace);
    let model_controller = {
        let (store, stream) = super::cache::primary(models, watcher::Config::default());
        Controller::for_stream(stream, store)
    }
    .watches(
        model_versions,
        watcher::Config::default(),
        |v: slipway_crd::ModelVersion| model_of(v.namespace(), &v.spec.model),
    )
    .watches(
        model_aliases,
        watcher::Config::default(),
        |a: ModelAlias| model_of(a.namespace(), &a.spec.model),
    )
    .trigger_backoff(super::cache::QuickBackoff::default())
    .graceful_shutdown_on(wait(shutdown_rx.clone()))
    .run(reconcile_model, error_policy, ctx.clone())
    .for_each(counted(ctx.clone(), "models"));
    let approvals: Api<DeserializeGuard<slipway_crd::Approval>> = scoped(&client, &namespace);
    let approval_controller = {
        let (store, stream) = super::cache::primary(approvals, watcher::Config::default());
        Controller::for_stream(stream, store)
    }
    .trigger_backoff(super::cache::QuickBackoff::default())
    .graceful_shutdown_on(wait(shutdown_rx.clone()))
    .run(reconcile_approval, error_policy, ctx.clone())
    .for_each(counted(ctx.clone(), "approvals"));
    let stop = async move {
        shutdown.await;
        let _ = shutdown_tx.send(true);
    };
    tokio::join!(
        approval_controller,
        model_controller,
        alias_controller,
        deployment_controller,
        version_controller,
        evaluation_controller,
        stop
    );
}
