//! The Kubernetes-mode controllers: aliases resolve by the policies' data rules, and
//! `ModelDeployment`s with a `kubernetes` target roll out as per-version `Deployment`s behind one
//! `Service`. Decisions come from the pure core shared with `slipway run`
//! ([`crate::reconcile::promotion`], [`crate::rollout::decide`]); this file reads the cluster,
//! writes status with server-side apply and carries out the actions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};
use slipway_crd::common::Condition;
use slipway_crd::model_deployment::{DeploymentPhase, ModelDeploymentStatus, RolloutEvent};
use slipway_crd::{ModelAlias, ModelDeployment};

use super::notify;
use crate::reconcile::{Promotion, promotion};
use crate::rollout::{self, Action, Observation, RolloutState, Verdict};

/// The field manager of every write.
pub const MANAGER: &str = "slipway-controller";

/// Shared by the reconcilers.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Watched objects and catalogs.
    pub cache: Arc<super::cache::Cache>,
    /// Publishes events.
    pub recorder: Recorder,
    /// Where evaluation Jobs post their results (the controller's HTTP address as pods see it).
    pub results_url: String,
    /// Metrics.
    pub metrics: Arc<super::metrics::Metrics>,
    /// When each alias move (namespace, model, alias, version) was first observed, until its
    /// rollout's first write.
    pub moves_seen:
        std::sync::Mutex<BTreeMap<(String, String, String, String), std::time::Instant>>,
    /// Transitions already announced by this replica.
    pub announced: super::notify::Announced,
    /// The SageMaker calls (None: built without the `sagemaker` feature, or it cannot start).
    pub sagemaker: Option<super::sagemaker::Shared>,
}

/// Reconcile errors (retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A status could not be encoded.
    #[error("encoding: {0}")]
    Json(#[from] serde_json::Error),
    /// A results token could not be generated.
    #[error("cannot generate a results token: {0}")]
    Token(std::io::Error),
}

/// Drops null members: with server-side apply an omitted field is released, a null one is kept.
/// Writes an object's whole status by server-side apply, from the typed status struct (fields
/// the struct leaves out are removed from what this manager owns).
pub async fn apply_status<K, S>(api: &Api<K>, name: &str, status: &S) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: serde::Serialize,
{
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
}

pub fn compact(mut v: Value) -> Value {
    if let Value::Object(map) = &mut v {
        map.retain(|_, x| !x.is_null());
        for x in map.values_mut() {
            *x = compact(x.take());
        }
    } else if let Value::Array(items) = &mut v {
        for x in items.iter_mut() {
            *x = compact(x.take());
        }
    }
    v
}

pub(super) fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) -> Value {
    json!({
        "type": type_,
        "status": if ok { "True" } else { "False" },
        "reason": reason,
        "message": message,
        "lastTransitionTime": Utc::now(),
        "observedGeneration": generation,
    })
}

/// Keeps `lastTransitionTime` of a condition whose status did not change.
pub(super) fn keep_transition(new: &mut Value, old: &[Condition]) {
    if let Some(prev) = old.iter().find(|c| c.type_ == new["type"])
        && prev.status == new["status"]
        && let Some(t) = prev.last_transition_time
    {
        new["lastTransitionTime"] = json!(t);
    }
}

pub async fn publish<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    object: &K,
    warning: bool,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.into(),
        note: Some(note),
        action: reason.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &object.object_ref(&())).await {
        tracing::warn!(error = %e, reason, "cannot publish event");
    }
}

fn error_policy<K>(_: Arc<K>, error: &Error, _: Arc<Context>) -> Requeue {
    tracing::warn!(%error, "reconcile failed; retrying");
    Requeue::requeue(Duration::from_secs(5))
}

// ---------------------------------------------------------------- aliases

async fn reconcile_alias(
    guarded: Arc<DeserializeGuard<ModelAlias>>,
    ctx: Arc<Context>,
) -> Result<Requeue, Error> {
    let alias = match &guarded.0 {
        Ok(a) => a,
        Err(invalid) => {
            tracing::warn!(name = ?invalid.metadata.name, error = %invalid.error, "ModelAlias cannot be read; skipping it");
            return Ok(Requeue::await_change());
        }
    };
    let ns = alias.namespace().unwrap_or_else(|| "default".into());
    let name = alias.name_any();
    let generation = alias.metadata.generation;
    let status = alias.status.clone().unwrap_or_default();
    let resolved = status.resolved_version.clone();
    let to = alias.spec.version.clone();
    let api: Api<ModelAlias> = Api::namespaced(ctx.client.clone(), &ns);
    let label = format!("{}/{}", alias.spec.model, alias.spec.alias);
    // Server-side apply drops fields this manager owned but leaves out: every apply of the
    // status carries the resolution forward.
    let kept = |conditions: Value| {
        json!({"apiVersion": "slipway.dev/v1alpha1", "kind": "ModelAlias",
            "status": {"resolvedVersion": status.resolved_version, "previousVersion": status.previous_version,
                       "history": status.history, "conditions": conditions}})
    };
    let ready = |ok: bool, reason: &str, message: &str| {
        let mut c = condition("Ready", ok, reason, message, generation);
        keep_transition(&mut c, &status.conditions);
        c
    };
    if resolved.as_deref() == Some(to.as_str()) {
        if status.conditions.iter().any(|c| {
            c.type_ == "Ready" && c.status == "True" && c.observed_generation == generation
        }) {
            return Ok(Requeue::await_change());
        }
        let patch = kept(json!([ready(
            true,
            "Resolved",
            &format!("{label} resolves to {to}")
        )]));
        api.patch_status(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&compact(patch.clone())),
        )
        .await?;
        return Ok(Requeue::await_change());
    }
    ctx.moves_seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry((
            ns.clone(),
            alias.spec.model.clone(),
            alias.spec.alias.clone(),
            to.clone(),
        ))
        .or_insert_with(std::time::Instant::now);
    let view = ctx.cache.view(&ns);
    let (catalog, results) = (&view.catalog, &view.results);
    let now = Utc::now();
    match promotion(
        catalog,
        results,
        &ns,
        &name,
        alias,
        resolved.as_deref(),
        "kubernetes",
        now,
    ) {
        Promotion::Unresolvable => {
            let message = format!("{label} → {to}: the model or version does not exist in {ns}");
            let patch = kept(json!([ready(false, "Unresolvable", &message)]));
            api.patch_status(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&compact(patch.clone())),
            )
            .await?;
            Ok(Requeue::requeue(Duration::from_secs(5)))
        }
        Promotion::Waiting(pending) => {
            let message = format!(
                "{label} → {to}: waiting for evaluation {}",
                pending.join(", ")
            );
            let patch = kept(json!([ready(false, "WaitingForEvaluations", &message)]));
            api.patch_status(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&compact(patch.clone())),
            )
            .await?;
            Ok(Requeue::requeue(Duration::from_secs(10)))
        }
        Promotion::Decided(decision) if decision.allowed => {
            let mut history = serde_json::to_value(&status.history)?;
            if let Some(h) = history.as_array_mut() {
                h.push(json!({"from": resolved, "to": to, "at": now, "decision": "allowed"}));
            }
            let message = format!(
                "{label}: {} → {to}",
                resolved.as_deref().unwrap_or("(none)")
            );
            let patch = json!({"apiVersion": "slipway.dev/v1alpha1", "kind": "ModelAlias",
                "status": {"resolvedVersion": to, "previousVersion": resolved, "history": history,
                           "conditions": [ready(true, "Resolved", &message)]}});
            api.patch_status(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&compact(patch.clone())),
            )
            .await?;
            publish(&ctx, alias, false, "AliasMoved", message.clone()).await;
            let moved = notify::entry(
                "AliasMoved",
                &ns,
                &alias.spec.model,
                format!("ModelAlias/{name}"),
                Some(to.clone()),
                Some(alias.spec.alias.clone()),
                message,
            );
            notify::notify(&ctx, alias, moved).await;
            // The approvals of this exact move record that they were used.
            let approvals: Api<slipway_crd::Approval> = Api::namespaced(ctx.client.clone(), &ns);
            for a in ctx.cache.approvals_for(&ns, &name, &to) {
                // A merge patch: it must not take approvedAt away (see reconcile_approval).
                let patch = json!({"status": {"usedBy": format!("ModelAlias/{ns}/{name} → {to}")}});
                if let Err(e) = approvals
                    .patch_status(&a, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    tracing::warn!(approval = %a, error = %e, "cannot record that the approval was used");
                }
            }
            Ok(Requeue::await_change())
        }
        Promotion::Decided(decision) => {
            let message = format!("{label} → {to} held: {}", decision.summary());
            let already = status.conditions.iter().any(|c| {
                c.type_ == "Ready" && c.reason == "PromotionBlocked" && c.message == message
            });
            let patch = kept(json!([ready(false, "PromotionBlocked", &message)]));
            api.patch_status(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&compact(patch.clone())),
            )
            .await?;
            if !already {
                publish(&ctx, alias, true, "PromotionBlocked", message.clone()).await;
                let blocked = notify::entry(
                    "PromotionBlocked",
                    &ns,
                    &alias.spec.model,
                    format!("ModelAlias/{name}"),
                    Some(to.clone()),
                    Some(alias.spec.alias.clone()),
                    message,
                );
                notify::notify(&ctx, alias, blocked).await;
            }
            Ok(Requeue::requeue(Duration::from_secs(60)))
        }
    }
}

// ---------------------------------------------------------------- approvals

/// An `Approval`'s status records when it was admitted.
async fn reconcile_approval(
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

/// A `RegisteredModel`'s status: its newest version and where its aliases resolve.
async fn reconcile_model(
    guarded: Arc<DeserializeGuard<slipway_crd::RegisteredModel>>,
    ctx: Arc<Context>,
) -> Result<Requeue, Error> {
    let Ok(model) = &guarded.0 else {
        return Ok(Requeue::await_change());
    };
    let ns = model.namespace().unwrap_or_else(|| "default".into());
    let name = model.name_any();
    let (mut versions, aliases) = ctx.cache.model_summary(&ns, &name);
    versions.sort_by(|a, b| crate::catalog::natural(a).cmp(&crate::catalog::natural(b)));
    let latest = versions.last().cloned();
    let old = model.status.clone().unwrap_or_default();
    let message = match &latest {
        Some(v) => format!(
            "{} versions, newest {v}; {} aliases resolved",
            versions.len(),
            aliases.len()
        ),
        None => "no versions registered yet".to_string(),
    };
    let fresh = old.latest_version == latest
        && old.aliases == aliases
        && old.conditions.iter().any(|c| {
            c.type_ == "Ready"
                && c.message == message
                && c.observed_generation == model.metadata.generation
        });
    if !fresh {
        let mut ready = condition(
            "Ready",
            true,
            "Observed",
            &message,
            model.metadata.generation,
        );
        keep_transition(&mut ready, &old.conditions);
        let patch = json!({"apiVersion": "slipway.dev/v1alpha1", "kind": "RegisteredModel",
            "status": {"latestVersion": latest, "aliases": aliases, "conditions": [ready]}});
        Api::<slipway_crd::RegisteredModel>::namespaced(ctx.client.clone(), &ns)
            .patch_status(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&compact(patch)),
            )
            .await?;
        // The watch that woke this may be ahead of the cache: look once more shortly.
        return Ok(Requeue::requeue(Duration::from_secs(2)));
    }
    // Unchanged — possibly because the watch that woke this is ahead of the cache (CI caught a
    // model summary left stale that way): look again soon; a reconcile with nothing to write is
    // a few map lookups.
    Ok(Requeue::requeue(Duration::from_secs(10)))
}

/// The `RegisteredModel` an object with `spec.model` belongs to.
fn model_of(
    ns: Option<String>,
    spec_model: &str,
) -> Option<ObjectRef<DeserializeGuard<slipway_crd::RegisteredModel>>> {
    Some(ObjectRef::new(spec_model).within(&ns.unwrap_or_else(|| "default".into())))
}

// ---------------------------------------------------------------- deployments

/// Label of every object a `ModelDeployment` owns.
pub const DEPLOYMENT_LABEL: &str = "slipway.dev/deployment";
/// Label of the version a per-version `Deployment` serves.
pub const VERSION_LABEL: &str = "slipway.dev/version";

/// The name of the `Deployment` serving `version` for `deployment`.
pub fn version_deployment_name(deployment: &str, version: &str) -> String {
    let v: String = version
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let mut name = format!("{deployment}-v{}", v.trim_matches('-'));
    name.truncate(63);
    name.trim_end_matches('-').to_string()
}

/// Replicas per version for traffic weights: the share of `total` each weight asks for, at
/// least one for every version with traffic, the largest share absorbing rounding.
pub fn replicas_for(weights: &BTreeMap<String, u32>, total: u32) -> BTreeMap<String, u32> {
    let total = total.max(1);
    let mut out: BTreeMap<String, u32> = weights
        .iter()
        .filter(|(_, w)| **w > 0)
        .map(|(v, w)| {
            (
                v.clone(),
                ((total * w) as f64 / 100.0).round().max(1.0) as u32,
            )
        })
        .collect();
    let sum: u32 = out.values().sum();
    if let Some((_, biggest)) = weights
        .iter()
        .filter(|(_, w)| **w > 0)
        .max_by_key(|(_, w)| **w)
        && let Some((v, _)) = weights.iter().find(|(_, w)| *w == biggest)
        && let Some(r) = out.get_mut(v)
    {
        *r = (*r + total).saturating_sub(sum).max(1);
    }
    out
}

pub(super) fn state_of(status: &ModelDeploymentStatus) -> RolloutState {
    RolloutState {
        stable: status.serving_version.clone(),
        candidate: status.target_version.clone(),
        step: status.current_step.unwrap_or(0) as usize,
        step_started: status.step_started_at,
        candidate_started: status.candidate_started_at,
        phase: status.phase.unwrap_or_default(),
        rejected: status.rejected_versions.iter().cloned().collect(),
        last_desired: status.last_desired_version.clone(),
        traffic: status.traffic.clone(),
    }
}

/// Health of a version's `Deployment` as a rollout observation.
fn observe(d: Option<&Deployment>) -> (bool, Verdict) {
    let Some(d) = d else {
        return (false, Verdict::Inconclusive("no Deployment yet".into()));
    };
    let spec_replicas = d.spec.replicas.unwrap_or(1);
    let status = d.status.clone().unwrap_or_default();
    let current = status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0);
    let ready =
        current && spec_replicas > 0 && status.available_replicas.unwrap_or(0) >= spec_replicas;
    for c in status.conditions.unwrap_or_default() {
        if c.type_.as_deref() == Some("Progressing") && c.status.as_deref() == Some("False") {
            return (
                false,
                Verdict::Fail(format!(
                    "{} is not progressing ({}: {})",
                    d.name_any(),
                    c.reason.unwrap_or_default(),
                    c.message.unwrap_or_default()
                )),
            );
        }
        if c.type_.as_deref() == Some("ReplicaFailure") && c.status.as_deref() == Some("True") {
            return (
                false,
                Verdict::Fail(format!(
                    "{} cannot create pods ({})",
                    d.name_any(),
                    c.message.unwrap_or_default()
                )),
            );
        }
    }
    (ready, Verdict::Pass)
}

/// What a deployment should serve: its pinned version, or what its alias resolves to (read
/// from the API: the watch that woke the reconcile may be ahead of the cache).
async fn desired_version(ctx: &Context, md: &ModelDeployment) -> Result<Option<String>, Error> {
    let ns = md.namespace().unwrap_or_else(|| "default".into());
    Ok(match (&md.spec.version, &md.spec.alias) {
        (Some(v), _) => Some(v.clone()),
        (None, Some(a)) => match ctx.cache.alias_name(&ns, &md.spec.model, a) {
            Some(alias_name) => Api::<ModelAlias>::namespaced(ctx.client.clone(), &ns)
                .get_opt(&alias_name)
                .await?
                .and_then(|x| x.status.and_then(|s| s.resolved_version)),
            None => None,
        },
        _ => None,
    })
}

async fn reconcile_deployment(
    guarded: Arc<DeserializeGuard<ModelDeployment>>,
    ctx: Arc<Context>,
) -> Result<Requeue, Error> {
    let md = match &guarded.0 {
        Ok(d) => d,
        Err(invalid) => {
            tracing::warn!(name = ?invalid.metadata.name, error = %invalid.error, "ModelDeployment cannot be read; skipping it");
            return Ok(Requeue::await_change());
        }
    };
    if md.spec.target.sagemaker.is_some() {
        let desired = desired_version(&ctx, md).await?;
        return super::sagemaker::reconcile(md, ctx, desired).await;
    }
    let Some(target) = md.spec.target.kubernetes.clone() else {
        return Ok(Requeue::await_change());
    };
    let ns = md.namespace().unwrap_or_else(|| "default".into());
    let name = md.name_any();
    let status = md.status.clone().unwrap_or_default();
    let state = state_of(&status);
    let desired = desired_version(&ctx, md).await?;
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let owned: BTreeMap<String, Deployment> = ctx.cache.deployments_of(&ns, &name);
    let observation = match state.candidate.as_ref().or(desired.as_ref()) {
        Some(c) => {
            let (ready, analysis) = observe(owned.get(c));
            Observation {
                candidate_ready: ready,
                analysis: if state.candidate.is_some() {
                    analysis
                } else {
                    Verdict::Pass
                },
            }
        }
        None => Observation {
            candidate_ready: false,
            analysis: Verdict::Pass,
        },
    };
    let policy = rollout::Policy {
        strategy: &md.spec.strategy,
        progress_deadline: crate::limits::PROGRESS_DEADLINE,
        poll: crate::limits::REMOTE_POLL,
    };
    let step = rollout::decide(
        &state,
        desired.as_deref(),
        &policy,
        &observation,
        Utc::now(),
    );

    // Persist first: a restarted controller resumes from the new state and re-applies it.
    let s = &step.state;
    let mut history = status.history.clone();
    let mut events = Vec::new();
    for a in &step.actions {
        if let Action::Event {
            kind,
            version,
            message,
        } = a
        {
            history.push(RolloutEvent {
                at: Some(Utc::now()),
                event: format!("{kind:?}"),
                traffic: s.traffic.clone(),
                message: Some(format!("{version}: {message}")),
            });
            events.push((format!("{kind:?}"), version.clone(), message.clone()));
        }
    }
    let excess = history.len().saturating_sub(50);
    history.drain(..excess);
    let settled = s.candidate.is_none() && s.phase == DeploymentPhase::Healthy;
    let serving = s.stable.is_some() || s.candidate.is_some();
    let mut ready = condition(
        "Ready",
        settled && serving,
        &if serving {
            format!("{:?}", s.phase)
        } else {
            "NothingToServe".to_string()
        },
        &match (&s.candidate, &s.stable) {
            (Some(c), _) => format!(
                "rolling out {c}: step {} of the strategy, traffic {:?}",
                s.step, s.traffic
            ),
            (None, Some(v)) => format!("{v} serves all traffic"),
            (None, None) => "nothing to serve yet".into(),
        },
        md.metadata.generation,
    );
    keep_transition(&mut ready, &status.conditions);
    let patch = json!({
        "apiVersion": "slipway.dev/v1alpha1", "kind": "ModelDeployment",
        "status": {
            "phase": s.phase,
            "servingVersion": s.stable,
            "targetVersion": s.candidate,
            "traffic": s.traffic,
            "currentStep": s.candidate.as_ref().map(|_| s.step),
            "stepStartedAt": s.step_started,
            "candidateStartedAt": s.candidate_started,
            "lastDesiredVersion": s.last_desired,
            "rejectedVersions": s.rejected,
            "history": history,
            "conditions": [ready],
            "observedGeneration": md.metadata.generation,
        }
    });
    let api: Api<ModelDeployment> = Api::namespaced(ctx.client.clone(), &ns);
    if step.state != state
        || !step.actions.is_empty()
        || status.observed_generation != md.metadata.generation
    {
        api.patch_status(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&compact(patch.clone())),
        )
        .await?;
    }

    // Carry the actions out.
    ensure_service(&ctx, md, &target).await?;
    let version_uri = |v: &str| {
        ctx.cache
            .artifact(&ns, &md.spec.model, v)
            .map(|(uri, _)| uri)
    };
    let mut weights = s.traffic.clone();
    for a in &step.actions {
        match a {
            Action::Start(v) => {
                // A new version starts with the replicas of its first share (at least one).
                let first = replicas_for(
                    &BTreeMap::from([(
                        v.clone(),
                        rollout::plan_steps(&md.spec.strategy)[0].weight,
                    )]),
                    target.replicas,
                );
                let replicas = weights
                    .get(v)
                    .map(|_| replicas_for(&weights, target.replicas)[v])
                    .unwrap_or(first[v]);
                apply_version(&ctx, md, &target, v, replicas, version_uri(v)).await?;
                if let Some(alias) = &md.spec.alias {
                    let seen = ctx
                        .moves_seen
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&(ns.clone(), md.spec.model.clone(), alias.clone(), v.clone()));
                    if let Some(t0) = seen {
                        let latency = t0.elapsed();
                        ctx.metrics.promotion_latency.observe(latency.as_secs_f64());
                        tracing::info!(deployment = %name, version = %v, latency_ms = latency.as_secs_f64() * 1000.0, "rollout started");
                    }
                }
            }
            Action::Route(w) => {
                weights = w.clone();
                let replicas = replicas_for(w, target.replicas);
                for (v, r) in &replicas {
                    apply_version(&ctx, md, &target, v, *r, version_uri(v)).await?;
                }
            }
            Action::Stop(v) => {
                let _ = deployments
                    .delete(
                        &version_deployment_name(&name, v),
                        &DeleteParams::background(),
                    )
                    .await;
            }
            Action::Event { .. } => {}
        }
    }
    // Garbage: Deployments of versions that neither serve nor roll out.
    for (v, d) in &owned {
        if !s.traffic.contains_key(v) && s.candidate.as_deref() != Some(v.as_str()) {
            let _ = deployments
                .delete(&d.name_any(), &DeleteParams::background())
                .await;
        }
    }
    for (reason, version, note) in events {
        let warning = matches!(reason.as_str(), "RolledBack" | "RolloutFailed");
        publish(&ctx, md, warning, &reason, note.clone()).await;
        let happened = notify::entry(
            &reason,
            &ns,
            &md.spec.model,
            format!("ModelDeployment/{name}"),
            Some(version),
            md.spec.alias.clone(),
            format!("{name}: {note}"),
        );
        notify::notify(&ctx, md, happened).await;
    }
    Ok(match step.requeue_after {
        Some(d) => Requeue::requeue(d),
        None if s.candidate.is_some() => Requeue::requeue(Duration::from_secs(2)),
        None => Requeue::requeue(crate::limits::RESYNC),
    })
}

fn owner(md: &ModelDeployment) -> Value {
    json!([{
        "apiVersion": "slipway.dev/v1alpha1",
        "kind": "ModelDeployment",
        "name": md.name_any(),
        "uid": md.metadata.uid,
        "controller": true,
        "blockOwnerDeletion": true,
    }])
}

async fn ensure_service(
    ctx: &Context,
    md: &ModelDeployment,
    target: &slipway_crd::model_deployment::KubernetesTarget,
) -> Result<(), Error> {
    let name = md.name_any();
    let api: Api<Service> = Api::namespaced(
        ctx.client.clone(),
        &md.namespace().unwrap_or_else(|| "default".into()),
    );
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "ownerReferences": owner(md),
                     "labels": {DEPLOYMENT_LABEL: name, "app.kubernetes.io/managed-by": "slipway"}},
        "spec": {
            "selector": {DEPLOYMENT_LABEL: name},
            "ports": [{"name": "http", "port": 80, "targetPort": target.port, "protocol": "TCP"}],
        }
    });
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&service),
    )
    .await?;
    Ok(())
}

async fn apply_version(
    ctx: &Context,
    md: &ModelDeployment,
    target: &slipway_crd::model_deployment::KubernetesTarget,
    version: &str,
    replicas: u32,
    uri: Option<String>,
) -> Result<(), Error> {
    let name = md.name_any();
    let ns = md.namespace().unwrap_or_else(|| "default".into());
    let deployment = version_deployment_name(&name, version);
    let mut env: Vec<Value> = vec![
        json!({"name": "MODEL_VERSION", "value": version}),
        json!({"name": "MODEL_NAME", "value": md.spec.model}),
        json!({"name": "PORT", "value": target.port.to_string()}),
    ];
    if let Some(uri) = uri {
        env.push(json!({"name": "MODEL_URI", "value": uri}));
    }
    env.extend(
        target
            .env
            .iter()
            .map(|(k, v)| json!({"name": k, "value": v})),
    );
    let labels = json!({DEPLOYMENT_LABEL: name, VERSION_LABEL: version, "app.kubernetes.io/managed-by": "slipway"});
    let mut container = json!({
        "name": "model-server",
        "image": target.image,
        "ports": [{"name": "http", "containerPort": target.port, "protocol": "TCP"}],
        "env": env,
    });
    if let Some(r) = &target.resources {
        container["resources"] = serde_json::to_value(r)?;
    }
    let object = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": deployment, "ownerReferences": owner(md), "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {DEPLOYMENT_LABEL: name, VERSION_LABEL: version}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [container]},
            },
        }
    });
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    api.patch(
        &deployment,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&object),
    )
    .await?;
    Ok(())
}

/// Counts each reconcile result of one controller.
fn counted<T, E>(
    ctx: Arc<Context>,
    controller: &'static str,
) -> impl FnMut(Result<T, E>) -> std::future::Ready<()> {
    move |result| {
        ctx.metrics.reconciled(controller, result.is_ok());
        std::future::ready(())
    }
}

#[cfg(feature = "sagemaker")]
fn sagemaker_calls() -> Option<super::sagemaker::Shared> {
    match crate::target::sagemaker::aws::SageMaker::new() {
        Ok(s) => Some(Arc::new(std::sync::Mutex::new(Box::new(s)))),
        Err(e) => {
            tracing::error!(error = %e, "cannot start the SageMaker client runtime");
            None
        }
    }
}

#[cfg(not(feature = "sagemaker"))]
fn sagemaker_calls() -> Option<super::sagemaker::Shared> {
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
        super::evaluations::reconcile_version,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_ratios_follow_the_weights_and_keep_every_version_alive() {
        let w = |pairs: &[(&str, u32)]| -> BTreeMap<String, u32> {
            pairs.iter().map(|(v, p)| (v.to_string(), *p)).collect()
        };
        assert_eq!(
            replicas_for(&w(&[("7", 90), ("8", 10)]), 10),
            w(&[("7", 9), ("8", 1)])
        );
        assert_eq!(
            replicas_for(&w(&[("7", 50), ("8", 50)]), 4),
            w(&[("7", 2), ("8", 2)])
        );
        // 10% of 3 replicas rounds to 0: the canary keeps one pod, the stable version the rest.
        assert_eq!(
            replicas_for(&w(&[("7", 90), ("8", 10)]), 3),
            w(&[("7", 2), ("8", 1)])
        );
        assert_eq!(replicas_for(&w(&[("8", 100)]), 3), w(&[("8", 3)]));
        assert_eq!(replicas_for(&w(&[("7", 0), ("8", 100)]), 2), w(&[("8", 2)]));
    }

    #[test]
    fn version_deployments_have_valid_names() {
        assert_eq!(
            version_deployment_name("pitch-frames-api", "8"),
            "pitch-frames-api-v8"
        );
        assert_eq!(
            version_deployment_name("api", "2026.11_RC1"),
            "api-v2026-11-rc1"
        );
        assert!(version_deployment_name(&"x".repeat(70), "1").len() <= 63);
    }
}
