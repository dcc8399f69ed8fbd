//! The `sagemaker` target in Kubernetes mode: the SageMaker step's decision and the step after it
//! ([`crate::decide::rollout::sagemaker::sequence`]) that git mode takes too, with its state in
//! the `ModelDeployment`'s status, the AWS calls on a blocking thread, and a finalizer
//! (kube-runtime's) so that deleting the `ModelDeployment` deletes the endpoint and every config
//! and Model Slipway made for it.

use crate::decide::events::Event as Happened;
use std::sync::Arc;

use chrono::Utc;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::finalizer::{self, finalizer};
use slipway_crd::ModelDeployment;
use slipway_crd::model_deployment::{ModelDeploymentStatus, SageMakerTarget};

use super::context::{Context, Error, SageMakerCalls, apply_status, publish};
use crate::decide::rollout::RolloutState;
use crate::decide::rollout::sagemaker::{Artifact, Call, Live, Step, sequence};
use crate::decide::rollout::status::{self, Basis, Endpoint};
use crate::edges::serving::sagemaker::{Endpoints, Location, Owner};

/// Finalizer on `ModelDeployment`s with a sagemaker target.
pub const FINALIZER: &str = slipway_crd::model_deployment::SAGEMAKER_FINALIZER;

async fn blocking<T: Send + 'static>(
    aws: &SageMakerCalls,
    f: impl FnOnce(&mut dyn Endpoints) -> T + Send + 'static,
) -> T {
    let aws = aws.clone();
    tokio::task::spawn_blocking(move || {
        let mut guard = aws.lock().unwrap_or_else(|p| p.into_inner());
        f(guard.as_mut())
    })
    .await
    .expect("the SageMaker call thread panicked")
}

async fn write(
    api: &Api<ModelDeployment>,
    md: &ModelDeployment,
    status: &ModelDeploymentStatus,
) -> Result<(), Error> {
    apply_status(api, &md.name_any(), status).await?;
    Ok(())
}

/// One reconcile of a `ModelDeployment` with a sagemaker target.
pub async fn reconcile(
    md: &ModelDeployment,
    ctx: Arc<Context>,
    desired: Option<String>,
) -> Result<Requeue, Error> {
    let Some(t) = md.spec.target.sagemaker.as_ref() else {
        return Ok(Requeue::await_change());
    };
    let ns = md.namespace().unwrap_or_else(|| "default".into());
    let api: Api<ModelDeployment> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(aws) = ctx.sagemaker.clone() else {
        let status = md.status.clone().unwrap_or_default();
        let basis = Basis {
            spec: &md.spec,
            previous: &status,
            generation: md.metadata.generation,
            now: Utc::now(),
        };
        let why = "this slipway was built without the `sagemaker` feature";
        let unseen = Endpoint {
            target: t,
            live: None,
            healing: None,
            drift: &[],
        };
        let state = RolloutState::from_status(&status);
        let next = status::stalled(&state, why, &basis, Some(&unseen));
        write(&api, md, &next).await?;
        return Ok(Requeue::await_change());
    };
    // kube-runtime's finalizer: added before the first step; on deletion the endpoint goes
    // first, then the finalizer.
    finalizer(&api, FINALIZER, Arc::new(md.clone()), |event| async {
        match event {
            finalizer::Event::Apply(md) => step(&md, &ctx, &aws, desired).await,
            finalizer::Event::Cleanup(md) => cleanup(&md, &ctx, &aws).await,
        }
    })
    .await
    .map_err(Error::from)
}

/// Deletes what Slipway made on SageMaker for a deleted `ModelDeployment` (the endpoint, its
/// configs and Models); an error keeps the finalizer, so the deletion is tried again.
async fn cleanup(
    md: &ModelDeployment,
    ctx: &Arc<Context>,
    aws: &SageMakerCalls,
) -> Result<Requeue, Error> {
    let Some(t) = md.spec.target.sagemaker.as_ref() else {
        return Ok(Requeue::await_change());
    };
    let (endpoint, at) = (t.endpoint_name.clone(), Location::of(t));
    let owner = owner_of(md);
    match blocking(aws, move |a| {
        crate::edges::serving::sagemaker::delete_owned(a, &at, &endpoint, &owner)
    })
    .await
    {
        Ok(deleted) => {
            let note = if deleted.is_empty() {
                format!("endpoint {} was already gone", t.endpoint_name)
            } else {
                format!("deleted {}", deleted.join(", "))
            };
            publish(ctx, md, Happened::EndpointDeleted, note).await;
            Ok(Requeue::await_change())
        }
        Err(e) => {
            let why = format!("cannot delete endpoint {}: {e}; retrying", t.endpoint_name);
            publish(ctx, md, Happened::EndpointNotDeleted, why.clone()).await;
            Err(Error::SageMaker(why))
        }
    }
}

/// One step of a `ModelDeployment` with a sagemaker target that carries the finalizer.
async fn step(
    md: &ModelDeployment,
    ctx: &Arc<Context>,
    aws: &SageMakerCalls,
    desired: Option<String>,
) -> Result<Requeue, Error> {
    let Some(t) = md.spec.target.sagemaker.clone() else {
        return Ok(Requeue::await_change());
    };
    let ns = md.namespace().unwrap_or_else(|| "default".into());
    let name = md.name_any();
    let api: Api<ModelDeployment> = Api::namespaced(ctx.client.clone(), &ns);
    let status = md.status.clone().unwrap_or_default();
    let state = RolloutState::from_status(&status);
    let basis = Basis {
        spec: &md.spec,
        previous: &status,
        generation: md.metadata.generation,
        now: Utc::now(),
    };
    // The endpoint as observed: no live description (not read yet, or not there).
    let unseen = |drift| Endpoint {
        target: &t,
        live: None,
        healing: None,
        drift,
    };

    let owner = owner_of(md);
    // In Variants mode the step's metrics judge it beside the alarms (the step git mode takes
    // too).
    let measured = if crate::decide::rollout::sagemaker::judged_by_metrics(&t) {
        super::deployments::measure(ctx, md, &status, &state).await
    } else {
        Vec::new()
    };
    let (_, metrics) = crate::decide::rollout::metrics::step_verdict(
        &md.spec,
        status.analysis.as_ref(),
        &state,
        &measured,
    );
    let judged = (desired, metrics);
    let (live, step) = match next_step(ctx, aws, md, &t, &owner, &state, judged).await {
        Ok(x) => x,
        Err(e) => {
            let why = e.to_string();
            let (next, wait) =
                sequence::failed(&state, &why, e.failure(), &basis, &unseen(&status.drift));
            write(&api, md, &next).await?;
            publish(ctx, md, Happened::SageMakerError, why).await;
            return Ok(Requeue::requeue(wait));
        }
    };
    // The step git mode takes too: heal rule, status, news, calls, when to look again.
    let done = sequence::sequence(&state, step, live.as_ref(), &t, &basis, &measured);
    record(ctx, &api, md, &done).await?;

    // Carry the calls out, in order; the state is already recorded.
    if !done.calls.is_empty()
        && let Err(e) = make_calls(aws, &done.calls, &t, owner, &name).await
    {
        let why = e.to_string();
        publish(ctx, md, Happened::SageMakerError, why.clone()).await;
        // The calls did not happen: the state goes back to before this step, so the
        // next look decides again.
        let before = Endpoint {
            target: &t,
            live: live.as_ref(),
            healing: status::healing(&status),
            drift: &done.status.drift,
        };
        let (next, wait) = sequence::failed(&state, &why, e.failure(), &basis, &before);
        write(&api, md, &next).await?;
        return Ok(Requeue::requeue(wait));
    }
    // Settled: look again at the endpoint's resync (drift is found); stalled: at the resync.
    let resync = match done.stalled {
        Some(_) => crate::decide::limits::RESYNC,
        None => crate::decide::limits::SAGEMAKER_RESYNC,
    };
    Ok(Requeue::requeue(done.wait.unwrap_or(resync)))
}

/// Who owns what Slipway makes on SageMaker for `md`: its namespace, name and model.
fn owner_of(md: &ModelDeployment) -> Owner {
    Owner {
        namespace: md.namespace().unwrap_or_else(|| "default".into()),
        deployment: md.name_any(),
        model: md.spec.model.clone(),
    }
}

/// Reads the live endpoint and decides the next step from it, on the calls' thread.
async fn next_step(
    ctx: &Context,
    aws: &SageMakerCalls,
    md: &ModelDeployment,
    t: &SageMakerTarget,
    owner: &Owner,
    state: &RolloutState,
    (desired, metrics): (Option<String>, crate::decide::rollout::Judgement),
) -> Result<(Option<Live>, Step), crate::edges::serving::sagemaker::Error> {
    // The decision needs the live endpoint (a blocking AWS call): made on the calls' thread.
    let (cache, model, ns_for) = (
        ctx.cache.clone(),
        md.spec.model.clone(),
        owner.namespace.clone(),
    );
    let (target, strategy, state_now) = (t.clone(), md.spec.strategy.clone(), state.clone());
    let me = owner.clone();
    blocking(aws, move |a| {
        let artifact = |v: &str| {
            cache
                .artifact(&ns_for, &model, v)
                .map(|(uri, digest)| Artifact { uri, digest })
        };
        crate::edges::serving::sagemaker::next_step(
            a,
            &target,
            &me,
            &strategy,
            &state_now,
            desired.as_deref(),
            &artifact,
            metrics,
            Utc::now(),
        )
    })
    .await
}

/// Records a sequenced step: writes its status when it says something new, announces drift
/// that is news and the step's events.
async fn record(
    ctx: &Arc<Context>,
    api: &Api<ModelDeployment>,
    md: &ModelDeployment,
    done: &sequence::Sequenced,
) -> Result<(), Error> {
    if done.write {
        write(api, md, &done.status).await?;
    }
    if let Some(note) = &done.drift_news {
        publish(ctx, md, Happened::OutOfSync, note.clone()).await;
    }
    let events = done
        .events
        .iter()
        .map(|(kind, version, message)| (kind, version.as_str(), message.as_str()))
        .collect();
    super::deployments::announce(ctx, md, events).await;
    Ok(())
}

/// Makes the step's calls in order on the calls' thread, logging what each reported.
async fn make_calls(
    aws: &SageMakerCalls,
    calls: &[Call],
    t: &SageMakerTarget,
    owner: Owner,
    name: &str,
) -> Result<(), crate::edges::serving::sagemaker::Error> {
    let (calls, target, where_) = (calls.to_vec(), t.clone(), Location::of(t));
    let notes = blocking(aws, move |a| {
        let mut notes = Vec::new();
        for call in &calls {
            notes.extend(a.apply(&where_, &target, &owner, call)?);
        }
        Ok::<_, crate::edges::serving::sagemaker::Error>(notes)
    })
    .await?;
    for n in notes {
        tracing::info!(deployment = %name, "{n}");
    }
    Ok(())
}
