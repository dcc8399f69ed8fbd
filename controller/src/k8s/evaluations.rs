//! Evaluations in Kubernetes mode: every `ModelVersion` gets the `Evaluation`s its model's suites
//! call for (the same task list as git mode, [`crate::reconcile::plan::tasks`]); an `Evaluation`
//! with the `kubernetes` runner runs as a Job that reports through the results API with a
//! per-evaluation token kept in a Secret; gates give the verdict ([`crate::evaluation::judge`]).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action as Requeue;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use slipway_crd::evaluation::{EvaluationPhase, Verdict};
use slipway_crd::{Evaluation, EvaluationStatus, ModelVersion};

use super::controller::{Context, Error, MANAGER, apply_status, compact, publish};
use super::notify;
use crate::catalog::Resource as CatalogResource;
use crate::evaluation::lifecycle;
use crate::notify::Notifier;
use crate::reconcile::external::{Posted, dispatch_message};
use crate::reconcile::plan::tasks;

fn owner<K: Resource<DynamicType = ()>>(o: &K) -> Value {
    json!([{
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "name": o.meta().name,
        "uid": o.meta().uid,
        "controller": true,
        "blockOwnerDeletion": true,
    }])
}

/// Name of the Secret holding an evaluation's results token.
pub fn token_secret(evaluation: &str) -> String {
    format!("{evaluation}-results-token")
}

/// A `ModelVersion` gets one `Evaluation` per suite of its model, against the baseline the suite
/// names as resolved now.
pub async fn reconcile_version(
    guarded: Arc<DeserializeGuard<ModelVersion>>,
    ctx: Arc<Context>,
) -> Result<Requeue, Error> {
    let Ok(version) = &guarded.0 else {
        return Ok(Requeue::await_change());
    };
    let ns = version.namespace().unwrap_or_else(|| "default".into());
    let view = ctx.cache.view(&ns);
    let catalog = &view.catalog;
    if catalog
        .version(&ns, &version.spec.model, &version.spec.version)
        .is_none()
    {
        // Newer than the catalog: look again once it has caught up.
        return Ok(Requeue::requeue(Duration::from_secs(1)));
    }
    // Aliases come from the watch: the catalog is not rebuilt for alias changes.
    let resolved = |ns: &str, model: &str, alias: &str| ctx.cache.resolved(ns, model, alias);
    let existing: std::collections::BTreeSet<String> = catalog
        .objects()
        .iter()
        .filter(|o| matches!(o.resource, CatalogResource::Evaluation(_)))
        .map(|o| o.key.name.clone())
        .collect();
    let api: Api<Evaluation> = Api::namespaced(ctx.client.clone(), &ns);
    let mut waiting = false;
    for t in tasks(catalog, &resolved) {
        if t.model != version.spec.model
            || t.version != version.spec.version
            || existing.contains(&t.name)
        {
            continue;
        }
        // A baseline alias that exists but has not resolved yet (its first move is still being
        // decided): wait for it rather than evaluate without a baseline (as in git mode).
        let baseline_alias = catalog
            .model(&ns, &t.model)
            .and_then(|m| m.spec.evaluations.iter().find(|s| s.name == t.suite))
            .and_then(|s| s.baseline.as_ref())
            .filter(|b| b.version.is_none())
            .and_then(|b| b.alias.clone());
        if t.baseline.is_none()
            && let Some(a) = baseline_alias
            && ctx
                .cache
                .alias_target(&ns, &t.model, &a)
                .is_some_and(|target| target != t.version)
            && ctx.cache.resolved(&ns, &t.model, &a).is_none()
        {
            waiting = true;
            continue;
        }
        let object = json!({
            "apiVersion": "slipway.dev/v1alpha1", "kind": "Evaluation",
            "metadata": {"name": t.name, "ownerReferences": owner(version),
                         "labels": {"slipway.dev/model": t.model, "slipway.dev/version": t.version}},
            "spec": {
                "model": t.model, "version": t.version, "suite": t.suite,
                "baseline": t.baseline.as_ref().map(|(v, _)| json!({"version": v})),
                "dataset": t.dataset, "runner": t.runner, "gates": t.gates, "timeout": t.timeout,
            }
        });
        api.patch(
            &t.name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&compact(object)),
        )
        .await?;
        tracing::info!(evaluation = %t.name, namespace = %ns, "evaluation created");
    }

    // The version's status: its evaluations and whether they passed.
    let mut summaries = Vec::new();
    if let Some(by_suite) = view
        .results
        .of(&ns, &version.spec.model, &version.spec.version)
    {
        for (suite, e) in by_suite {
            let st = e.status.clone().unwrap_or_default();
            summaries.push(json!({
                "suite": suite,
                "evaluation": e.metadata.name,
                "phase": format!("{:?}", st.phase),
                "verdict": st.verdict.map(|v| format!("{v:?}")),
            }));
        }
    }
    let suites = catalog
        .model(&ns, &version.spec.model)
        .map(|m| m.spec.evaluations.len())
        .unwrap_or(0);
    let failed = summaries.iter().any(|s| s["verdict"] == "Failed");
    let passed = summaries
        .iter()
        .filter(|s| s["verdict"] == "Passed")
        .count();
    let (ok, reason, message) = if failed {
        (
            false,
            "EvaluationFailed",
            "an evaluation of this version failed; see its report".to_string(),
        )
    } else if passed >= suites {
        (
            true,
            "Evaluated",
            format!("{passed} of {suites} evaluation suites passed"),
        )
    } else {
        (
            false,
            "Evaluating",
            format!("{passed} of {suites} evaluation suites passed so far"),
        )
    };
    let old = version.status.clone().unwrap_or_default();
    let unchanged = old.conditions.iter().any(|c| {
        c.type_ == "Ready"
            && c.reason == reason
            && c.message == message
            && c.observed_generation == version.metadata.generation
    }) && serde_json::to_value(&old.evaluations).ok()
        == Some(Value::Array(summaries.clone()));
    if !unchanged {
        let patch = json!({"apiVersion": "slipway.dev/v1alpha1", "kind": "ModelVersion",
        "status": {
            "registeredAt": old.registered_at.unwrap_or_else(Utc::now),
            "evaluations": summaries,
            "conditions": [{"type": "Ready", "status": if ok { "True" } else { "False" },
                            "reason": reason, "message": message,
                            "lastTransitionTime": Utc::now(),
                            "observedGeneration": version.metadata.generation}],
        }});
        let versions: Api<ModelVersion> = Api::namespaced(ctx.client.clone(), &ns);
        versions
            .patch_status(
                &version.name_any(),
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&compact(patch)),
            )
            .await?;
        if old.registered_at.is_none() {
            let v = &version.spec;
            let registered = notify::entry(
                "VersionRegistered",
                &ns,
                &v.model,
                format!("ModelVersion/{}", version.name_any()),
                Some(v.version.clone()),
                None,
                format!(
                    "{} version {} registered ({})",
                    v.model, v.version, v.artifact.uri
                ),
            );
            notify::notify(&ctx, version, registered).await;
        }
    }
    // Until every suite has a verdict, look again soon (the catalog may trail the watch).
    Ok(Requeue::requeue(if (ok || failed) && !waiting {
        crate::limits::RESYNC
    } else {
        Duration::from_secs(2)
    }))
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
        let (_, digest) = ctx.cache.artifact(&ns, &e.spec.model, version)?;
        Some(crate::evaluation::cache_key(
            &digest,
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
                left.min(crate::limits::EVALUATION_POLL)
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
    let token = crate::token::generate().map_err(Error::Token)?;
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
        timeout.min(crate::limits::EVALUATION_POLL),
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

/// The comparison report of an evaluation, rendered from its status (`format` is `html` or
/// `md`); the error is (HTTP status, message).
pub async fn report(
    client: &kube::Client,
    ns: &str,
    name: &str,
    format: &str,
) -> Result<String, (u16, String)> {
    let api: Api<Evaluation> = Api::namespaced(client.clone(), ns);
    let e = api
        .get_opt(name)
        .await
        .map_err(|e| (500, format!("cannot read the cluster: {e}")))?
        .ok_or((404, format!("no evaluation {ns}/{name}")))?;
    match format {
        "html" => Ok(crate::report::html(&e)),
        "md" => Ok(crate::report::markdown(&e)),
        other => Err((
            404,
            format!("no report format {other:?}: ask for {name}.html or {name}.md"),
        )),
    }
}

/// Accepts a Job's results for `ns/name`: checks the bearer token against the evaluation's
/// Secret, judges the gates and writes the evaluation's status. The error is (HTTP status,
/// message).
pub async fn accept(
    client: &kube::Client,
    reports_url: &str,
    ns: &str,
    name: &str,
    token: Option<&str>,
    body: &[u8],
) -> Result<Verdict, (u16, String)> {
    let evaluations: Api<Evaluation> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let api_error = |e: kube::Error| (500, format!("cannot read the cluster: {e}"));
    let e = evaluations
        .get_opt(name)
        .await
        .map_err(api_error)?
        .ok_or((404, format!("no evaluation {ns}/{name}")))?;
    let status = e.status.clone().unwrap_or_default();
    if status.phase != EvaluationPhase::Running {
        return Err((
            409,
            format!(
                "evaluation {ns}/{name} is {:?}, not waiting for results",
                status.phase
            ),
        ));
    }
    let token = token.ok_or((401, "missing `Authorization: Bearer TOKEN`".to_string()))?;
    let expected = secrets
        .get_opt(&token_secret(name))
        .await
        .map_err(api_error)?
        .and_then(|s| s.data)
        .and_then(|d| d.get("token").map(|b| b.0.clone()))
        .ok_or((500, format!("the token Secret of {ns}/{name} is missing")))?;
    if !crate::token::matches(token.as_bytes(), &expected) {
        return Err((401, "the token does not match this evaluation".into()));
    }
    let text = std::str::from_utf8(body).map_err(|_| (400, "the body is not UTF-8".to_string()))?;
    let posted: Posted = serde_json::from_str(text).map_err(|err| {
        (400, format!("the body is not valid at line {}, column {}: {err}; post {{\"candidate\": {{\"metrics\": …, \"samples\": […]}}, \"baseline\": …}}", err.line(), err.column()))
    })?;
    if status.baseline_version.is_some() && posted.baseline.is_none() {
        return Err((
            400,
            format!(
                "this evaluation compares against version {}: include \"baseline\" results",
                status.baseline_version.as_deref().unwrap_or("?")
            ),
        ));
    }
    let mut finished = lifecycle::finished(
        &status,
        &e.spec.gates,
        &posted.candidate,
        posted.baseline.as_ref(),
        None,
        Utc::now(),
    );
    finished.report = Some(format!("{reports_url}/reports/{ns}/{name}.html"));
    let verdict = finished.verdict.unwrap_or(Verdict::Failed);
    apply_status(&evaluations, name, &finished)
        .await
        .map_err(|e| (500, format!("cannot record the results: {e}")))?;
    Ok(verdict)
}
