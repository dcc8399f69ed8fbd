//! `Evaluation`s in Kubernetes mode: attempt by attempt as [`crate::decide::evaluation::lifecycle`]
//! decides (the rules git mode follows), each attempt a Job (`kubernetes` runner) or a request to
//! an external system (`webhook` runner) that reports through the results API with the attempt's
//! token; earlier results with the same content address are reused instead of run.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action as Requeue;
use serde_json::json;
use slipway_crd::evaluation::EvaluationPhase;
use slipway_crd::{Evaluation, EvaluationStatus};

use super::context::{Context, Error, MANAGER, apply_status, compact, publish};
use super::notify;
use crate::decide::evaluation::lifecycle;
use crate::edges::notify::Notifier;
use crate::edges::runners::webhook::dispatch_message;

use super::context::owner;

/// Name of the Secret holding an evaluation's results token.
pub fn token_secret(evaluation: &str) -> String {
    format!("{evaluation}-results-token")
}

/// Annotation recording that an evaluation's completion was announced.
pub const NOTIFIED: &str = "slipway.dev/notified";

/// Announces a finished evaluation once (event and notifications), then marks it.
async fn completed(ctx: &Arc<Context>, e: &Evaluation) -> Result<(), Error> {
    if e.annotations().contains_key(NOTIFIED) {
        return Ok(());
    }
    let ns = e.namespace().unwrap_or_else(|| "default".into());
    let name = e.name_any();
    let status = e.status.clone().unwrap_or_default();
    let verdict = status.verdict.map(|v| format!("{v:?}")).unwrap_or_default();
    let detail = status
        .conditions
        .first()
        .map(|c| c.message.clone())
        .unwrap_or_default();
    let mut entry = notify::entry(
        "EvaluationCompleted",
        &ns,
        &e.spec.model,
        format!("Evaluation/{name}"),
        Some(e.spec.version.clone()),
        None,
        format!(
            "{} on {} version {}: {verdict} — {detail}",
            e.spec.suite, e.spec.model, e.spec.version
        ),
    );
    entry.decision = Some(verdict.to_lowercase());
    entry.data = json!({
        "evaluation": name, "suite": e.spec.suite, "verdict": verdict,
        "metrics": status.metrics, "baselineVersion": status.baseline_version,
        "baselineMetrics": status.baseline_metrics, "report": status.report,
    });
    notify::notify(ctx, e, entry).await;
    let api: Api<Evaluation> = Api::namespaced(ctx.client.clone(), &ns);
    let mark = json!({"metadata": {"annotations": {NOTIFIED: "EvaluationCompleted"}}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&mark))
        .await?;
    Ok(())
}

/// Writes an evaluation's status; announces a failure for good.
async fn save(ctx: &Arc<Context>, e: &Evaluation, status: &EvaluationStatus) -> Result<(), Error> {
    let ns = e.namespace().unwrap_or_else(|| "default".into());
    let api: Api<Evaluation> = Api::namespaced(ctx.client.clone(), &ns);
    apply_status(&api, &e.name_any(), status).await?;
    if status.phase == EvaluationPhase::Failed {
        let message = status
            .conditions
            .first()
            .map(|c| c.message.clone())
            .unwrap_or_default();
        publish(ctx, e, true, "EvaluationFailed", message).await;
    }
    Ok(())
}

/// The attempt an evaluation makes: its content addresses (candidate and baseline runs).
fn attempt(ctx: &Context, e: &Evaluation, number: u32) -> lifecycle::Attempt {
    let ns = e.namespace().unwrap_or_else(|| "default".into());
    let key = |version: &str| {
        let (uri, digest) = ctx.cache.artifact(&ns, &e.spec.model, version)?;
        Some(crate::decide::evaluation::cache_key(
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
    let baseline_version = e.spec.baseline.as_ref().and_then(|b| b.version.clone());
    lifecycle::Attempt {
        key: key(&e.spec.version).unwrap_or_default(),
        baseline_key: baseline_version.as_deref().and_then(key),
        baseline_version,
        number,
    }
}

/// Finishes an evaluation at once from earlier results with the same content addresses (any
/// finished evaluation in the namespace that ran the candidate's or the baseline's run).
fn reuse(ctx: &Context, e: &Evaluation, a: &lifecycle::Attempt) -> Option<EvaluationStatus> {
    let ns = e.namespace().unwrap_or_else(|| "default".into());
    let view = ctx.cache.view(&ns);
    let own = e.name_any();
    let finished = || {
        view.results
            .all()
            .filter(|x| x.metadata.name.as_deref() != Some(own.as_str()))
            .filter_map(|x| Some((x.metadata.name.as_deref()?, x.status.as_ref()?)))
    };
    let (candidate, from) = lifecycle::reusable(&a.key, finished())?;
    let baseline = match &a.baseline_key {
        Some(k) => Some(lifecycle::reusable(k, finished())?.0),
        None => None,
    };
    let running = lifecycle::running(a, "reusing earlier results".into(), Utc::now());
    Some(lifecycle::finished(
        &running,
        &e.spec.gates,
        &candidate,
        baseline.as_ref(),
        Some(&from),
        Utc::now(),
    ))
}

/// Asks a `webhook` runner's external system to run the evaluation, with the token from the
/// evaluation's Secret; the error says why the request failed.
async fn dispatch(
    ctx: &Arc<Context>,
    e: &Evaluation,
    hook: &slipway_crd::common::WebhookRunner,
    token: &str,
) -> Result<(), String> {
    let ns = e.namespace().unwrap_or_else(|| "default".into());
    let name = e.name_any();
    let artifact = |v: &str| ctx.cache.artifact(&ns, &e.spec.model, v);
    let (uri, digest) = artifact(&e.spec.version).unwrap_or_default();
    let baseline = e
        .spec
        .baseline
        .as_ref()
        .and_then(|b| b.version.clone())
        .and_then(|v| artifact(&v).map(|(u, d)| json!({"version": v, "uri": u, "digest": d})));
    let context = json!({
        "evaluation": name, "namespace": ns, "model": e.spec.model, "version": e.spec.version,
        "suite": e.spec.suite, "candidate": {"uri": uri, "digest": digest}, "baseline": baseline,
        "dataset": e.spec.dataset, "token": token,
        "resultsUrl": format!("{}/api/v1/evaluations/{ns}/{name}/results", ctx.results_url),
    });
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

/// The failure of a Job, if it failed.
fn job_failure(job: &Job) -> Option<String> {
    let s = job.status.as_ref()?;
    let cond = s
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Failed" && c.status == "True");
    match cond {
        Some(c) => Some(format!(
            "{} ({})",
            c.reason.clone().unwrap_or_else(|| "Failed".into()),
            c.message.clone().unwrap_or_default()
        )),
        None if s.failed.unwrap_or(0) > 0 => Some("its pod failed".into()),
        None => None,
    }
}

/// An `Evaluation` runs as a Job (`kubernetes` runner) or is dispatched to an external system
/// (`webhook` runner), attempt by attempt as [`lifecycle`] decides; earlier results with the
/// same content address are reused instead.
pub async fn reconcile_evaluation(
    guarded: Arc<DeserializeGuard<Evaluation>>,
    ctx: Arc<Context>,
) -> Result<Requeue, Error> {
    let Ok(e) = &guarded.0 else {
        return Ok(Requeue::await_change());
    };
    let status = e.status.clone().unwrap_or_default();
    if matches!(
        status.phase,
        EvaluationPhase::Succeeded | EvaluationPhase::Failed
    ) {
        completed(&ctx, e).await?;
        return Ok(Requeue::await_change());
    }
    let ns = e.namespace().unwrap_or_else(|| "default".into());
    let name = e.name_any();
    let kubernetes = e.spec.runner.kubernetes.clone();
    let webhook = e.spec.runner.webhook.clone();
    let now = Utc::now();
    if kubernetes.is_none() && webhook.is_none() {
        let why = "the local runner runs only in git mode (`slipway run`): give this suite a \
                   `kubernetes` runner (a Job) or a `webhook` runner (an external system)";
        save(
            &ctx,
            e,
            &lifecycle::failed(&status, status.attempts, why, now),
        )
        .await?;
        return Ok(Requeue::await_change());
    }
    // Admitted while the webhook was not called, outside the operator's bounds: never run.
    if let Some(why) = ctx
        .bounds
        .refusal(&crate::decide::catalog::Resource::Evaluation(e.clone()))
    {
        save(
            &ctx,
            e,
            &lifecycle::failed(&status, status.attempts, &why, now),
        )
        .await?;
        return Ok(Requeue::await_change());
    }
    let timeout = lifecycle::timeout(e.spec.timeout.as_deref());
    let first = attempt(&ctx, e, 1);
    if first.key.is_empty() {
        // The version is newer than the cache: look again once it has caught up.
        return Ok(Requeue::requeue(Duration::from_secs(1)));
    }
    // Nothing started yet: earlier results with the same content address finish it at once.
    if status.attempts == 0
        && let Some(reused) = reuse(&ctx, e, &first)
    {
        save(&ctx, e, &reused).await?;
        publish(
            &ctx,
            e,
            false,
            "Reused",
            reused
                .conditions
                .first()
                .map(|c| c.message.clone())
                .unwrap_or_default(),
        )
        .await;
        return Ok(Requeue::await_change());
    }

    // The attempt in flight, if any, and whether it is over.
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let in_flight = status.attempts > 0 && !lifecycle::retry_due(&status);
    if in_flight {
        let job_name = format!("{name}-{}", status.attempts);
        let failure = match &kubernetes {
            Some(_) => match jobs.get_opt(&job_name).await? {
                Some(job) => job_failure(&job),
                None => Some(format!("its Job {job_name} is gone")),
            },
            None => None,
        };
        let started = status.started_at.unwrap_or(now);
        let waited = (now - started).to_std().unwrap_or_default();
        let failure =
            failure.or_else(|| (waited > timeout).then(|| lifecycle::no_results_within(timeout)));
        let Some(why) = failure else {
            let left = timeout.saturating_sub(waited);
            return Ok(Requeue::requeue(
                left.min(crate::decide::limits::EVALUATION_POLL)
                    .max(Duration::from_secs(1)),
            ));
        };
        let after = lifecycle::failed_attempt(&status, &why, now);
        save(&ctx, e, &after).await?;
        return Ok(if lifecycle::retry_due(&after) {
            Requeue::requeue(Duration::from_secs(1))
        } else {
            Requeue::await_change()
        });
    }

    // Start the next attempt, with a token of its own: only the Job (which mounts it), the
    // external system (which receives it) and the controller read it, and writing it ends the
    // previous attempt's token.
    let number = status.attempts + 1;
    let a = attempt(&ctx, e, number);
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
    secrets
        .patch(
            &secret_name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&secret),
        )
        .await?;
    let started = if let Some(hook) = &webhook {
        match dispatch(&ctx, e, hook, &token).await {
            Ok(()) => format!(
                "asked {} to run {} on {} version {}",
                hook.url, e.spec.suite, e.spec.model, e.spec.version
            ),
            Err(why) => {
                let running = lifecycle::running(&a, "dispatching".into(), now);
                let why = format!("could not start the external job: {why}");
                let after = lifecycle::failed_attempt(&running, &why, now);
                save(&ctx, e, &after).await?;
                return Ok(if lifecycle::retry_due(&after) {
                    Requeue::requeue(Duration::from_secs(1))
                } else {
                    Requeue::await_change()
                });
            }
        }
    } else if let Some(runner) = &kubernetes {
        let job_name = format!("{name}-{number}");
        start_job(&ctx, e, runner, &job_name, &secret_name, timeout).await?;
        format!(
            "Job {job_name} is evaluating {} version {}",
            e.spec.model, e.spec.version
        )
    } else {
        return Ok(Requeue::await_change());
    };
    let running = lifecycle::running(&a, started, now);
    save(&ctx, e, &running).await?;
    let message = running
        .conditions
        .first()
        .map(|c| c.message.clone())
        .unwrap_or_default();
    let reason = if webhook.is_some() {
        "Dispatched"
    } else {
        "JobStarted"
    };
    publish(&ctx, e, false, reason, message).await;
    Ok(Requeue::requeue(
        timeout.min(crate::decide::limits::EVALUATION_POLL),
    ))
}

/// Creates attempt `job_name`'s Job: the runner's image and command, with the candidate, the
/// baseline, the dataset and where to post results in its environment.
async fn start_job(
    ctx: &Arc<Context>,
    e: &Evaluation,
    runner: &slipway_crd::common::KubernetesRunner,
    job_name: &str,
    secret_name: &str,
    timeout: Duration,
) -> Result<(), Error> {
    let ns = e.namespace().unwrap_or_else(|| "default".into());
    let name = e.name_any();
    let artifact = |v: &str| ctx.cache.artifact(&ns, &e.spec.model, v);
    let (candidate_uri, candidate_digest) = artifact(&e.spec.version).unwrap_or_default();
    let baseline_version = e.spec.baseline.as_ref().and_then(|b| b.version.clone());
    let baseline = baseline_version.as_deref().and_then(artifact);
    let mut env = vec![
        json!({"name": "SLIPWAY_RESULTS_URL", "value": format!("{}/api/v1/evaluations/{ns}/{name}/results", ctx.results_url)}),
        json!({"name": "SLIPWAY_RESULTS_TOKEN", "valueFrom": {"secretKeyRef": {"name": secret_name, "key": "token"}}}),
        json!({"name": "SLIPWAY_MODEL", "value": e.spec.model}),
        json!({"name": "SLIPWAY_MODEL_VERSION", "value": e.spec.version}),
        json!({"name": "SLIPWAY_MODEL_URI", "value": candidate_uri}),
        json!({"name": "SLIPWAY_MODEL_DIGEST", "value": candidate_digest}),
        json!({"name": "SLIPWAY_SUITE", "value": e.spec.suite}),
        json!({"name": "SLIPWAY_DATASET_URI", "value": e.spec.dataset.uri}),
        json!({"name": "SLIPWAY_DATASET_DIGEST", "value": e.spec.dataset.digest}),
    ];
    if let (Some(v), Some((uri, digest))) = (&baseline_version, &baseline) {
        env.push(json!({"name": "SLIPWAY_BASELINE_VERSION", "value": v}));
        env.push(json!({"name": "SLIPWAY_BASELINE_URI", "value": uri}));
        env.push(json!({"name": "SLIPWAY_BASELINE_DIGEST", "value": digest}));
    }
    let mut container = json!({"name": "evaluate", "image": runner.image, "env": env});
    if !runner.command.is_empty() {
        container["command"] = json!(runner.command);
    }
    if !runner.args.is_empty() {
        container["args"] = json!(runner.args);
    }
    if let Some(r) = &runner.resources {
        container["resources"] = serde_json::to_value(r)?;
    }
    let object = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": job_name, "ownerReferences": owner(e),
                     "labels": {"slipway.dev/evaluation": name}},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": timeout.as_secs().max(1),
            "template": {
                "metadata": {"labels": {"slipway.dev/evaluation": name}},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": runner.service_account_name,
                    "containers": [container],
                }
            }
        }
    });
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    jobs.patch(
        job_name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&compact(object)),
    )
    .await?;
    Ok(())
}
