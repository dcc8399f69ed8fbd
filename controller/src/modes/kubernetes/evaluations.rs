//! `Evaluation`s in Kubernetes mode: each step is [`crate::decide::evaluation::step`] — the one
//! both homes take — and this file observes (the attempt's Job, earlier results, bounds), carries
//! out (a token, a Job for the `kubernetes` runner, a request to an external system for the
//! `webhook` runner, which reports through the results API with the attempt's token), writes the
//! status and announces.

use crate::decide::events::Event as Happened;
use std::sync::Arc;

use super::cache::Guarded;
use chrono::Utc;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use serde_json::json;
use slipway_crd::evaluation::EvaluationPhase;
use slipway_crd::model_deployment::RETRY_ANNOTATION;
use slipway_crd::{Evaluation, EvaluationStatus};

use super::context::{Context, Error, MANAGER, publish, replace_status};
use super::evaluation_jobs::{runs, seen, start_job, stored_run};
use super::notify;
use crate::decide::evaluation::{job, lifecycle, step};
use crate::edges::notify::Notifier;
use crate::edges::runners::webhook::dispatch_message;

use super::context::owner;

/// Name of the Secret holding an evaluation's results token.
pub fn token_secret(evaluation: &str) -> String {
    format!("{evaluation}-results-token")
}

/// Annotation recording that an evaluation's completion was announced.
pub const NOTIFIED: &str = "slipway.dev/notified";

/// What the step sees of an evaluation: its names, runner, gates and content addresses.
pub(super) fn input<'a>(
    e: &'a Evaluation,
    name: &'a str,
    a: &'a lifecycle::Attempt,
    previous: Option<&'a EvaluationStatus>,
) -> step::Input<'a> {
    step::Input {
        name,
        suite: &e.spec.suite,
        model: &e.spec.model,
        version: &e.spec.version,
        runner: &e.spec.runner,
        gates: &e.spec.gates,
        timeout: e.spec.timeout.as_deref(),
        attempt: a,
        previous,
        now: Utc::now(),
    }
}

/// Announces a finished evaluation once per content address (event and notifications), then
/// marks it (the annotation holds the content address announced).
async fn completed(
    ctx: &Arc<Context>,
    e: &Evaluation,
    a: &lifecycle::Attempt,
) -> Result<(), Error> {
    let status = e.status.clone().unwrap_or_default();
    // Announced for this content address and what judged it (results judged again by changed
    // gates are announced again, as git mode records them again), or, before the annotation
    // named one, at all.
    let key = match (&status.cache_key, &status.judged_by) {
        (Some(k), Some(j)) => format!("{k} {j}"),
        (k, _) => k.clone().unwrap_or_default(),
    };
    if e.annotations()
        .get(NOTIFIED)
        .is_some_and(|v| *v == key || v == "EvaluationCompleted")
    {
        return Ok(());
    }
    let ns = e.namespace().unwrap_or_else(|| "default".into());
    let name = e.name_any();
    let Some(done) = step::completion(&input(e, &name, a, Some(&status)), &status) else {
        return Ok(());
    };
    let mut entry = notify::entry(
        Happened::EvaluationCompleted,
        &ns,
        &e.spec.model,
        format!("Evaluation/{name}"),
        Some(e.spec.version.clone()),
        None,
        done.message,
    );
    entry.decision = Some(done.decision);
    entry.data = done.data;
    notify::notify(ctx, e, entry).await;
    let api: Api<Evaluation> = Api::namespaced(ctx.client.clone(), &ns);
    let mark = json!({"metadata": {"annotations": {NOTIFIED: key}}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&mark))
        .await?;
    Ok(())
}

/// What an evaluation is made of: its content addresses (candidate and baseline runs).
fn attempt(ctx: &Context, e: &Evaluation) -> lifecycle::Attempt {
    let ns = e.namespace().unwrap_or_else(|| "default".into());
    let key = |version: &str| {
        let (uri, digest) = ctx.cache.artifact(&ns, &e.spec.model, version)?;
        Some(crate::decide::evaluation::cache_key(
            &e.spec.model,
            &slipway_crd::model_version::Artifact {
                uri,
                digest,
                format: None,
            },
            &e.spec.dataset,
            &e.spec.runner,
            &e.spec.suite,
        ))
    };
    // Named by version, or by an alias resolved now — as git mode reads it.
    let baseline_version =
        crate::decide::tasks::baseline_version(e.spec.baseline.as_ref(), &e.spec.version, |a| {
            ctx.cache.resolved(&ns, &e.spec.model, a)
        });
    lifecycle::Attempt {
        key: key(&e.spec.version).unwrap_or_default(),
        baseline_key: baseline_version.as_deref().and_then(key),
        baseline_version,
        // The step chooses the attempt's number.
        number: 0,
        round: 0,
    }
}

/// Earlier finished results with the same content addresses in the namespace (any finished
/// evaluation that ran the candidate's or the baseline's run).
fn reusable(ctx: &Context, e: &Evaluation, a: &lifecycle::Attempt) -> Option<step::Reusable> {
    let (candidate, from) = stored_run(ctx, e, &a.key)?;
    let baseline = match &a.baseline_key {
        Some(k) => Some(stored_run(ctx, e, k)?.0),
        None => None,
    };
    Some(step::Reusable {
        candidate,
        baseline,
        from,
    })
}

/// Asks a `webhook` runner's external system to run the evaluation, with the token from the
/// evaluation's Secret; the error says why the request failed.
async fn dispatch(
    ctx: &Arc<Context>,
    e: &Evaluation,
    a: &lifecycle::Attempt,
    hook: &slipway_crd::common::WebhookRunner,
    token: &str,
) -> Result<(), String> {
    let ns = e.namespace().unwrap_or_else(|| "default".into());
    let name = e.name_any();
    let artifact = |v: &str| ctx.cache.artifact(&ns, &e.spec.model, v);
    let (uri, digest) = artifact(&e.spec.version).unwrap_or_default();
    // The attempt's baseline: a version named, or the alias resolved when the attempt began —
    // the same one its Jobs would run and its results are checked against.
    let baseline = a
        .baseline_version
        .clone()
        .and_then(|v| artifact(&v).map(|(u, d)| (v, u, d)));
    let context = job::Dispatch {
        evaluation: &name,
        namespace: &ns,
        model: &e.spec.model,
        version: &e.spec.version,
        suite: &e.spec.suite,
        candidate: (&uri, &digest),
        baseline: baseline
            .as_ref()
            .map(|(v, u, d)| (v.as_str(), u.as_str(), d.as_str())),
        dataset: &e.spec.dataset,
        base_url: &ctx.results_url,
        token,
    }
    .context();
    let loaded = notify::Secrets::load(&ctx.client, &ns, hook.headers.values()).await;
    let message = dispatch_message(&name, hook, &context, &|r| loaded.resolve(r))?;
    // The request carries the attempt's token and the headers' secrets.
    ctx.bounds.destination(&message.url)?;
    let delivery = tokio::task::spawn_blocking(move || Notifier::default().deliver(&message))
        .await
        .map_err(|err| format!("delivery task failed: {err}"))?;
    match delivery.error {
        None => Ok(()),
        Some(why) => Err(why),
    }
}

/// Why an evaluation cannot run in a cluster at all, if it cannot.
fn cannot_run(ctx: &Context, e: &Arc<Evaluation>) -> Option<String> {
    if e.spec.runner.kubernetes.is_none() && e.spec.runner.webhook.is_none() {
        return Some(
            "the local runner runs only in git mode (`slipway run`): give this suite a \
             `kubernetes` runner (a Job) or a `webhook` runner (an external system)"
                .to_string(),
        );
    }
    // Admitted while the webhook was not called, outside the operator's bounds: never run.
    ctx.bounds
        .refusal(&crate::decide::catalog::Resource::Evaluation(e.clone()))
}

/// Why a `kubernetes`-runner evaluation's Job cannot start: its service account does not exist.
async fn missing_service_account(ctx: &Context, e: &Evaluation) -> Result<Option<String>, Error> {
    let Some(sa) = e
        .spec
        .runner
        .kubernetes
        .as_ref()
        .and_then(|k| k.service_account_name.as_deref())
    else {
        return Ok(None);
    };
    let ns = e.namespace().unwrap_or_else(|| "default".into());
    Ok(super::service_accounts::missing_for_job(&ctx.client, &ns, sa, &e.name_any()).await?)
}

/// An operator's retry (the [`RETRY_ANNOTATION`] on an `Evaluation` that failed without
/// results): decided by [`lifecycle::retry`] as `slipway retry --evaluation` is in git mode,
/// written to status with an event (a warning when there is nothing to retry), then the
/// annotation is removed; the next look starts a new round of attempts.
async fn retry(ctx: &Arc<Context>, e: &Evaluation) -> Result<Requeue, Error> {
    let ns = e.namespace().unwrap_or_else(|| "default".into());
    let name = e.name_any();
    let api: Api<Evaluation> = Api::namespaced(ctx.client.clone(), &ns);
    let previous = e.status.clone().unwrap_or_default();
    match lifecycle::retry(&previous, &format!("{ns}/{name}"), Utc::now()) {
        Ok(status) => {
            replace_status(&api, &name, Some(&previous), &status).await?;
            let note = format!("{name}: may run again (round {})", status.round);
            publish(
                ctx,
                e,
                Happened::Rollout(slipway_crd::model_deployment::RolloutEventKind::RetryRequested),
                note,
            )
            .await;
        }
        Err(why) => publish(ctx, e, Happened::NothingToRetry, why).await,
    }
    super::context::forget_retry(&api, &name).await?;
    Ok(Requeue::requeue(std::time::Duration::ZERO))
}

/// An `Evaluation` runs as a Job (`kubernetes` runner) or is dispatched to an external system
/// (`webhook` runner): observe (the attempt in flight, earlier results, whether it can run
/// here) → [`step::step`] → carry out (token, Job or request) → write the status → announce.
pub async fn reconcile_evaluation(
    guarded: Arc<Guarded<Evaluation>>,
    ctx: Arc<Context>,
) -> Result<Requeue, Error> {
    let Ok(e) = &guarded.0 else {
        return Ok(Requeue::await_change());
    };
    if e.annotations().contains_key(RETRY_ANNOTATION) {
        return retry(&ctx, e).await;
    }
    let status = e.status.clone();
    let name = e.name_any();
    let a = attempt(&ctx, e);
    let key = format!("{}/{name}", e.namespace().unwrap_or_default());
    if a.key.is_empty() {
        // The version is newer than the cache, or not registered at all: look again, less and
        // less often (1 s, doubling, up to the resync) — the version's registration wakes it.
        let mut waiting = ctx.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let n = waiting.entry(key).or_insert(0);
        let after = crate::decide::limits::CACHE_CATCH_UP
            .saturating_mul(1 << (*n).min(16))
            .min(crate::decide::limits::RESYNC);
        *n += 1;
        return Ok(Requeue::requeue(after));
    }
    ctx.waiting
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&key);
    let recorded = status
        .as_ref()
        .filter(|s| s.cache_key.as_deref() == Some(a.key.as_str()));
    let judged = crate::decide::evaluation::judged_by(&e.spec.gates, e.spec.timeout.as_deref());
    if lifecycle::next(status.as_ref(), &a.key, &judged) == lifecycle::Next::Stands {
        completed(&ctx, e, &a).await?;
        return Ok(Requeue::await_change());
    }

    // Observe: the attempt in flight, earlier results (before the first attempt only).
    let started = recorded.filter(|s| s.attempts > 0);
    let in_flight =
        started.filter(|s| s.phase == EvaluationPhase::Running && !lifecycle::retry_due(s));
    let observed = step::Observed {
        seen: match in_flight {
            Some(s) => Some(seen(&ctx, e, s).await?),
            None => None,
        },
        reusable: match started {
            None => reusable(&ctx, e, &a),
            Some(_) => None,
        },
        cannot_run: match cannot_run(&ctx, e) {
            // A Job about to start needs its service account (looked up only then).
            None if in_flight.is_none() => missing_service_account(&ctx, e).await?,
            why => why,
        },
    };
    let mut next = step::step(&input(e, &name, &a, status.as_ref()), observed);

    // Carry out: a new attempt gets a token of its own, then its Job or request.
    if let Some(number) = next.start
        && let Some(running) = next.status.clone()
        && let Err(why) = start(&ctx, e, &a, number, running.round).await?
    {
        let failed = step::Observed {
            seen: Some(step::Seen::Failed(format!(
                "could not start the attempt: {why}"
            ))),
            ..Default::default()
        };
        next = step::step(&input(e, &name, &a, Some(&running)), failed);
    }
    if let Some(s) = &next.status {
        let ns = e.namespace().unwrap_or_else(|| "default".into());
        let api: Api<Evaluation> = Api::namespaced(ctx.client.clone(), &ns);
        replace_status(&api, &name, status.as_ref(), s).await?;
    }
    for note in next.notes {
        publish(&ctx, &**e, note.event, note.message).await;
    }
    Ok(next
        .wait
        .map_or_else(Requeue::await_change, Requeue::requeue))
}

/// Starts attempt `number`: a Job per run not finished elsewhere (`kubernetes` runner), or —
/// for a `webhook` runner — a token of its own (only the external system, which receives it,
/// and the controller read it; writing it ends the previous attempt's token), then its
/// request. `Ok(Err(why))`: the external system refused or could not be reached.
async fn start(
    ctx: &Arc<Context>,
    e: &Evaluation,
    a: &lifecycle::Attempt,
    number: u32,
    round: u32,
) -> Result<Result<(), String>, Error> {
    if let Some(runner) = &e.spec.runner.kubernetes {
        let timeout = lifecycle::timeout(e.spec.timeout.as_deref());
        for run in runs(ctx, e, a) {
            if stored_run(ctx, e, &run.key).is_none()
                && let Err(why) = start_job(ctx, e, runner, &run, round, number, timeout).await?
            {
                return Ok(Err(why));
            }
        }
        return Ok(Ok(()));
    }
    let Some(hook) = &e.spec.runner.webhook else {
        return Ok(Ok(()));
    };
    let ns = e.namespace().unwrap_or_else(|| "default".into());
    let name = e.name_any();
    let secret_name = token_secret(&name);
    let token = crate::edges::http::token::generate().map_err(Error::Token)?;
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(secret_name.clone()),
            owner_references: Some(serde_json::from_value(owner(e))?),
            labels: Some([("slipway.dev/evaluation".to_string(), name.clone())].into()),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(
            [(
                "token".to_string(),
                k8s_openapi::ByteString(token.clone().into_bytes()),
            )]
            .into(),
        ),
        ..Default::default()
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    // Written only when it is this evaluation's own: a Secret of that name that is not (someone
    // named an Evaluation after it) is never written over, nor taken over by an owner reference.
    let not_ours = || {
        format!(
            "a Secret named {secret_name} exists and is not this evaluation's (no owner reference \
             to it): Slipway does not write its results token over it; rename the Evaluation or \
             remove that Secret"
        )
    };
    match secrets.get_opt(&secret_name).await? {
        Some(s) if !super::evaluation_jobs::controlled_by(&s.metadata, e) => {
            return Ok(Err(not_ours()));
        }
        Some(_) => {
            secrets
                .patch(
                    &secret_name,
                    &PatchParams::apply(MANAGER).force(),
                    &Patch::Apply(&secret),
                )
                .await?;
        }
        None => match secrets
            .create(&kube::api::PostParams::default(), &secret)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(Err(not_ours())),
            Err(err) => return Err(err.into()),
        },
    }
    Ok(dispatch(ctx, e, a, hook, &token).await)
}
