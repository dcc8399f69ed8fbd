//! `ModelDeployment` with a `kubernetes` target: per-version `Deployment`s behind one `Service`,
//! rolled out step by step by [`crate::decide::rollout::decide`].

use crate::decide::events::Event as Happened;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::cache::Guarded;
use chrono::Utc;
use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action as Requeue;
use slipway_crd::ModelDeployment;
use slipway_crd::model_deployment::RETRY_ANNOTATION;

use super::notify;
use super::shadows::Shares;
use super::workloads::{apply_version, delete, ensure_service, observe, pod_trouble};
use crate::decide::rollout::{self, Action, Judgement, RolloutState};

use super::context::{Context, Error, apply_status};

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

/// What a deployment should serve: its pinned version, or what its alias resolves to — from the
/// shared watch, which has every alias change before the controllers are woken by it.
pub(super) fn desired_version(ctx: &Context, md: &ModelDeployment) -> Option<String> {
    let ns = md.namespace().unwrap_or_else(|| "default".into());
    match (&md.spec.version, &md.spec.alias) {
        (Some(v), _) => Some(v.clone()),
        (None, Some(a)) => ctx.cache.resolved(&ns, &md.spec.model, a),
        _ => None,
    }
}

pub(super) async fn reconcile_deployment(
    guarded: Arc<Guarded<ModelDeployment>>,
    ctx: Arc<Context>,
) -> Result<Requeue, Error> {
    let md = match &guarded.0 {
        Ok(d) => d,
        Err(invalid) => {
            tracing::warn!(name = ?invalid.metadata.name, error = %invalid.error, "ModelDeployment cannot be read; skipping it");
            return Ok(Requeue::await_change());
        }
    };
    if let Some(requested) = md.annotations().get(RETRY_ANNOTATION) {
        return retry(&ctx, md, requested).await;
    }
    // Admitted while the webhook was not called, outside the operator's bounds: nothing is
    // created or changed for it.
    if let Some(why) = ctx
        .bounds
        .refusal(&crate::decide::catalog::Resource::ModelDeployment(
            md.clone(),
        ))
    {
        return refuse(&ctx, md, "OutsideBounds", Happened::OutsideBounds, why).await;
    }
    // What the alias moved to is the artifact it moved with: a label registered again with
    // another artifact since is not served, on any target.
    if let Some(why) = drift(&ctx, md) {
        return refuse(&ctx, md, "ArtifactChanged", Happened::Stalled, why).await;
    }
    if md.spec.target.sagemaker.is_some() {
        return hand_to_sagemaker(md, ctx).await;
    }
    let Some(target) = md.spec.target.kubernetes.clone() else {
        return Ok(Requeue::await_change());
    };
    roll_out(&ctx, md, &target).await
}

/// Why a deployment following an alias must not serve what it resolves to now (see
/// [`crate::decide::promotion::artifact_drift`]).
fn drift(ctx: &Context, md: &ModelDeployment) -> Option<String> {
    let ns = md.namespace().unwrap_or_else(|| "default".into());
    let alias = md
        .spec
        .alias
        .as_deref()
        .filter(|_| md.spec.version.is_none())?;
    let version = ctx.cache.resolved(&ns, &md.spec.model, alias)?;
    let (_, digest) = ctx.cache.artifact(&ns, &md.spec.model, &version)?;
    let history = ctx.cache.alias_history(&ns, &md.spec.model, alias);
    crate::decide::promotion::artifact_drift(&history, &md.spec.model, &version, &digest)
}

/// Records a deployment as stalled for `reason` (with an event, once) and creates or changes
/// nothing for it: one outside the operator's bounds, or one whose artifact is not the one
/// its alias moved with.
async fn refuse(
    ctx: &Arc<Context>,
    md: &ModelDeployment,
    reason: &str,
    event: Happened,
    why: String,
) -> Result<Requeue, Error> {
    let previous = md.status.clone().unwrap_or_default();
    let basis = crate::decide::rollout::status::Basis {
        spec: &md.spec,
        previous: &previous,
        generation: md.metadata.generation,
        now: chrono::Utc::now(),
    };
    let state = RolloutState::from_status(&previous);
    let next = crate::decide::rollout::status::stalled_for(reason, &state, &why, &basis, None);
    if md.status.as_ref() != Some(&next) {
        let api: Api<ModelDeployment> =
            Api::namespaced(ctx.client.clone(), &md.namespace().unwrap_or_default());
        super::context::apply_status(&api, &md.name_any(), &next).await?;
        super::context::publish(ctx, md, event, why).await;
    }
    Ok(Requeue::await_change())
}

/// Hands a deployment with a sagemaker target to the SageMaker reconciler, with the version it
/// should serve.
async fn hand_to_sagemaker(md: &ModelDeployment, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let desired = desired_version(&ctx, md);
    super::sagemaker::reconcile(md, ctx, desired).await
}

/// Measures the metrics of `md` that are due ([`rollout::metrics::due`]), on any target: header
/// secrets from labelled Secrets of its namespace, requests only to the operator's
/// destinations; each reading judged.
pub(super) async fn measure(
    ctx: &Context,
    md: &ModelDeployment,
    previous: &slipway_crd::model_deployment::ModelDeploymentStatus,
    state: &RolloutState,
) -> Vec<(String, slipway_crd::analysis::Measurement)> {
    let ns = md.namespace().unwrap_or_else(|| "default".into());
    let name = md.name_any();
    let due = rollout::metrics::due(&md.spec, previous, state, (&ns, &name), Utc::now());
    if due.is_empty() {
        return Vec::new();
    }
    let mut refs = Vec::new();
    for r in due.iter().flat_map(|q| &q.requests) {
        if let rollout::metrics::Request::Http { headers, .. } = r {
            refs.extend(headers.values().cloned());
        }
    }
    let secrets = notify::Secrets::load(&ctx.client, &ns, refs.iter()).await;
    let bounds = ctx.bounds.clone();
    let asked = due.clone();
    let measuring = tokio::task::spawn_blocking(move || {
        let ask = |r| {
            crate::edges::providers::measure(r, &|s| secrets.resolve(s), &|url| {
                bounds.destination(url)
            })
        };
        asked
            .iter()
            .map(|q| q.requests.iter().map(ask).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    });
    let readings = measuring.await.unwrap_or_default();
    rollout::metrics::judge_all(&md.spec, &due, &readings, Utc::now())
}

/// What the phases of a Kubernetes rollout share: the deployment, its target, where it lives
/// and the version `Deployment`s it owns as the watch shows them.
struct Rollout<'a> {
    ctx: &'a Arc<Context>,
    md: &'a ModelDeployment,
    target: &'a slipway_crd::model_deployment::KubernetesTarget,
    ns: String,
    name: String,
    deployments: Api<Deployment>,
    owned: BTreeMap<String, Deployment>,
}

/// One reconcile of a deployment with a kubernetes target: observe and decide, persist, carry
/// the actions out, heal what is missing, collect garbage, announce.
async fn roll_out(
    ctx: &Arc<Context>,
    md: &ModelDeployment,
    target: &slipway_crd::model_deployment::KubernetesTarget,
) -> Result<Requeue, Error> {
    let ns = md.namespace().unwrap_or_else(|| "default".into());
    let name = md.name_any();
    let desired = desired_version(ctx, md);
    let r = Rollout {
        ctx,
        md,
        target,
        deployments: Api::namespaced(ctx.client.clone(), &ns),
        owned: ctx.cache.deployments_of(&ns, &name),
        ns,
        name,
    };
    // Copies of requests where the target cannot make them (admitted without the webhook):
    // nothing is created or changed for it.
    if let Some(why) = super::shadows::refusal(md, target) {
        return refuse(ctx, md, "TargetRefused", Happened::Stalled, why).await;
    }
    // A route that cannot carry the split stalls the deployment before any step is taken.
    super::gateway::check(ctx, md, target).await?;
    // Observe → decide (the step git mode takes too) → persist first: a restarted controller
    // resumes from the new state and re-applies it.
    let outcome = r.decide_and_persist(desired.as_deref()).await?;
    let (step, s) = (&outcome.step, &outcome.step.state);
    // Announced once recorded, as git mode's history records a step with its state: a refused
    // action after this does not lose the step's news.
    announce(ctx, md, step.events().collect()).await;

    // Carry the actions out.
    let serving_only = super::shadows::serving_only(ctx, md, target, (&r.owned, &s.traffic));
    ensure_service(ctx, md, target, serving_only).await?;
    // An A/B cohort goes to the candidate under way (not to one frozen by a failure).
    let cohort = s
        .candidate
        .as_deref()
        .filter(|_| s.phase != slipway_crd::model_deployment::DeploymentPhase::Failed);
    // Shadows: the versions that run for copies of requests, and those the route copies to.
    // The standing shadows are the step's own (`status.shadows`, decided in the core).
    let standing: Vec<(String, u32)> = (outcome.status.shadows.iter())
        .map(|x| (x.version.clone(), x.mirror))
        .collect();
    let copied = rollout::shadow::copied(&md.spec.strategy, s, &standing);
    let mirrored = super::shadows::mirrored(md, s, &standing, &r.owned);
    let (weights, applied) = r
        .carry_out(
            &step.actions,
            s.traffic.clone(),
            (s.stable.as_deref(), cohort),
            s.kept_for_inspection(),
            (&copied, &mirrored),
        )
        .await?;
    // Exact splits: the route's backends as the step left the traffic (written again if someone
    // changed them).
    super::gateway::route(ctx, md, target, &weights, cohort, &mirrored).await?;
    r.collect_garbage(s, &standing).await?;
    r.heal_missing(s, &weights, &applied, &copied).await?;
    super::writeback::write_back(ctx, md, &super::writeback::status_after(&outcome, md)).await?;
    // After the write-back: a shadow that cannot run never holds a rollback's pull request up.
    super::shadows::keep(ctx, md, target, (&r.owned, &applied), (&standing, &weights)).await?;
    Ok(Requeue::requeue(
        outcome.wait.unwrap_or(crate::decide::limits::RESYNC),
    ))
}

impl Rollout<'_> {
    /// Observes the version the step looks at, takes the step and writes the status it leaves
    /// when anything changed.
    async fn decide_and_persist(
        &self,
        desired: Option<&str>,
    ) -> Result<rollout::step::Outcome, Error> {
        let status = self.md.status.clone().unwrap_or_default();
        let state = RolloutState::from_status(&status);
        let measured = measure(self.ctx, self.md, &status, &state).await;
        let looked = rollout::step::looked_at(&state, desired);
        let mut look = looked.map(|v| observe(self.owned.get(v)));
        // Not ready: what its pods say is the cause, for the waiting note and a failure.
        if let (Some(v), Some(l)) = (looked, look.as_mut())
            && !l.ready
            && let Some(trouble) = pod_trouble(self.ctx, &self.ns, &self.name, v).await
        {
            l.waiting = Some(match l.waiting.take() {
                Some(w) => format!("{w}; {trouble}"),
                None => trouble.clone(),
            });
            if let Judgement::Fail(why) = &mut l.judgement {
                why.push_str(&format!("; {trouble}"));
            }
        }
        // The input is let go before the status is written (its resolver is not `Sync`).
        let outcome = {
            let input = rollout::step::Input {
                spec: &self.md.spec,
                previous: &status,
                state: &state,
                desired,
                generation: self.md.metadata.generation,
                poll: crate::decide::limits::REMOTE_POLL,
                now: Utc::now(),
                measured: &measured,
                resolve: &|a| self.ctx.cache.resolved(&self.ns, &self.md.spec.model, a),
            };
            rollout::step::step(&input, look)
        };
        let api: Api<ModelDeployment> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        if outcome.write {
            apply_status(&api, &self.name, &outcome.status).await?;
        }
        Ok(outcome)
    }

    /// Carries the step's actions out in order, starting from `weights` (the state's traffic)
    /// with `stable` the version that served before; returns the weights they leave and the
    /// versions whose `Deployment` was applied. Pod counts are the traffic split
    /// ([`rollout::replicas`]): a started candidate and each step's counts are applied in an
    /// order that never gives the candidate more than its share.
    async fn carry_out(
        &self,
        actions: &[Action],
        mut weights: BTreeMap<String, u32>,
        (stable, cohort): (Option<&str>, Option<&str>),
        kept: Option<&str>,
        (copied, mirrored): (&Shares, &Shares),
    ) -> Result<(BTreeMap<String, u32>, std::collections::BTreeSet<String>), Error> {
        let mut applied = std::collections::BTreeSet::new();
        let total = self.target.replicas;
        // Pods per version: the traffic split, and the shadows' copies.
        let pods = |w: &BTreeMap<String, u32>| {
            let split = rollout::replicas::replicas_for(w, total, stable);
            rollout::replicas::with_mirrors(split, copied, total)
        };
        let serving =
            |v: &str, w: &BTreeMap<String, u32>| super::shadows::serving(self.target, v, w, copied);
        let gateway = super::gateway::route_of(self.target).is_some();
        for a in actions {
            match a {
                Action::Start(v) => {
                    // A version kept for inspection starts from a new Deployment: the kept one's
                    // conditions (ProgressDeadlineExceeded) are of the try that failed.
                    if let Some(d) = self.owned.get(v)
                        && d.spec.replicas == Some(0)
                    {
                        delete(&self.deployments, &d.name_any(), self.md).await?;
                    }
                    let mut start = starting(self.md, total, &weights, v, stable);
                    // A shadow step's candidate serves nothing: it runs for its copies.
                    if let Some((_, share)) = copied.iter().find(|(c, _)| c == v)
                        && let Some((_, n)) = start.iter_mut().find(|(x, _)| x == v)
                    {
                        *n = (*n).max(rollout::replicas::mirror_pods(*share, total));
                    }
                    for (version, pods) in start {
                        self.apply(&version, pods, serving(&version, &weights))
                            .await?;
                        applied.insert(version);
                    }
                    self.record_promotion_latency(v);
                }
                Action::Route(w) => {
                    for (v, r) in rollout::replicas::apply_order(&pods(&weights), &pods(w)) {
                        self.apply(&v, r, serving(&v, w)).await?;
                        applied.insert(v);
                    }
                    // Exact splits: the route's weights (and the cohort's rule, the shadows'
                    // copies) before any version stops.
                    let (md, target) = (self.md, self.target);
                    super::gateway::route(self.ctx, md, target, w, cohort, mirrored).await?;
                    weights = w.clone();
                }
                // The version just rolled back keeps its Deployment, scaled to 0, for people to
                // inspect until the next try; any other stopped version's goes.
                // A standing shadow that stops serving goes on as one: its share's pods.
                Action::Stop(v) if let Some((_, share)) = copied.iter().find(|(c, _)| c == v) => {
                    let pods = rollout::replicas::mirror_pods(*share, total);
                    self.apply(v, pods, Some(false).filter(|_| gateway)).await?;
                    applied.insert(v.clone());
                }
                Action::Stop(v) if kept == Some(v.as_str()) => {
                    self.apply(v, 0, serving(v, &weights)).await?
                }
                Action::Stop(v) => {
                    let doomed = version_deployment_name(&self.name, v);
                    delete(&self.deployments, &doomed, self.md).await?;
                    super::gateway::forget(self.ctx, self.md, self.target, v).await?;
                }
                Action::Event { .. } => {}
            }
        }
        Ok((weights, applied))
    }

    /// Applies version `v`'s `Deployment` with `replicas`, from its artifact as the cache has it,
    /// its pods labelled `serving` (on a target with shadows).
    async fn apply(&self, v: &str, replicas: u32, serving: Option<bool>) -> Result<(), Error> {
        let uri = self
            .ctx
            .cache
            .artifact(&self.ns, &self.md.spec.model, v)
            .map(|(uri, _)| uri);
        apply_version(self.ctx, self.md, self.target, (v, replicas), uri, serving).await
    }

    /// Records how long the alias move to `v` took to start rolling out, when its move was seen.
    fn record_promotion_latency(&self, v: &str) {
        let Some(alias) = &self.md.spec.alias else {
            return;
        };
        let seen = self
            .ctx
            .moves_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(
                self.ns.clone(),
                self.md.spec.model.clone(),
                alias.clone(),
                v.to_string(),
            ));
        if let Some(t0) = seen {
            let name = &self.name;
            let latency = t0.elapsed();
            self.ctx
                .metrics
                .promotion_latency
                .observe(latency.as_secs_f64());
            tracing::info!(deployment = %name, version = %v, latency_ms = latency.as_secs_f64() * 1000.0, "rollout started");
        }
    }

    /// Creates again the `Deployment` of every version the state runs that has none and was not
    /// just applied.
    async fn heal_missing(
        &self,
        s: &RolloutState,
        weights: &BTreeMap<String, u32>,
        applied: &std::collections::BTreeSet<String>,
        copied: &[(String, u32)],
    ) -> Result<(), Error> {
        // What the state says runs and has no Deployment (a reconcile refused between persisting
        // the state and carrying it out, or someone deleted it) is created again, as git mode
        // brings back a stopped server — except a failed candidate left frozen (no automatic
        // rollback): an operator who deleted its Deployment stopped it on purpose.
        let frozen = s.phase == slipway_crd::model_deployment::DeploymentPhase::Failed;
        let (total, stable) = (self.target.replicas, s.stable.as_deref());
        for v in s.traffic.keys().chain(s.candidate.iter()) {
            if frozen && s.candidate.as_deref() == Some(v.as_str()) {
                continue;
            }
            if !self.owned.contains_key(v) && !applied.contains(v) {
                let replicas = match weights.get(v) {
                    Some(_) => rollout::replicas::with_mirrors(
                        rollout::replicas::replicas_for(weights, total, stable),
                        copied,
                        total,
                    )
                    .get(v)
                    .copied()
                    .unwrap_or(1),
                    None => starting(self.md, total, weights, v, stable)
                        .into_iter()
                        .find_map(|(x, pods)| (x == *v).then_some(pods))
                        .unwrap_or(1),
                };
                let serving = super::shadows::serving(self.target, v, weights, copied);
                self.apply(v, replicas, serving).await?;
            }
        }
        Ok(())
    }

    /// Deletes the version `Deployment`s the state no longer runs (but the one kept for
    /// inspection, and the standing shadows').
    async fn collect_garbage(
        &self,
        s: &RolloutState,
        standing: &[(String, u32)],
    ) -> Result<(), Error> {
        // Garbage: Deployments of versions that neither serve nor roll out.
        for (v, d) in &self.owned {
            // A standing shadow runs its share's pods (kept by `shadows::keep`), even as the
            // version just rolled back.
            if standing.iter().any(|(x, _)| x == v) {
                continue;
            }
            if s.kept_for_inspection() == Some(v.as_str()) {
                // Kept without pods, whatever interrupted the step that scaled it down.
                if d.spec.replicas != Some(0) {
                    let serving = super::gateway::route_of(self.target).map(|_| true);
                    self.apply(v, 0, serving).await?;
                }
                continue;
            }
            if !s.traffic.contains_key(v) && s.candidate.as_deref() != Some(v.as_str()) {
                delete(&self.deployments, &d.name_any(), self.md).await?;
                super::gateway::forget(self.ctx, self.md, self.target, v).await?;
            }
        }
        Ok(())
    }
}

/// An operator's retry (the [`RETRY_ANNOTATION`] on the object, for every target): decided by
/// [`rollout::request_retry`] as `slipway retry` is in git mode, recorded in status with an
/// event (a warning when there is nothing to retry), then the annotation is removed.
async fn retry(
    ctx: &Arc<Context>,
    md: &ModelDeployment,
    requested: &str,
) -> Result<Requeue, Error> {
    let ns = md.namespace().unwrap_or_else(|| "default".into());
    let name = md.name_any();
    let api: Api<ModelDeployment> = Api::namespaced(ctx.client.clone(), &ns);
    let status = md.status.clone().unwrap_or_default();
    let state = RolloutState::from_status(&status);
    let version = Some(requested.trim()).filter(|v| !v.is_empty());
    match rollout::request_retry(&state, &format!("{ns}/{name}"), version) {
        Ok(step) => {
            let basis = rollout::status::Basis {
                spec: &md.spec,
                previous: &status,
                generation: md.metadata.generation,
                now: Utc::now(),
            };
            apply_status(&api, &name, &rollout::status::retried(&step, &basis)).await?;
            announce(ctx, md, step.events().collect()).await;
        }
        Err(why) => super::context::publish(ctx, md, Happened::NothingToRetry, why).await,
    }
    super::context::forget_retry(&api, &name).await?;
    Ok(Requeue::requeue(Duration::ZERO))
}

/// Announces a rollout's events (a Kubernetes event, the notifications, the count), as git mode
/// records them in its history.
pub(super) async fn announce(
    ctx: &Arc<Context>,
    md: &ModelDeployment,
    events: Vec<(&rollout::EventKind, &str, &str)>,
) {
    let ns = md.namespace().unwrap_or_else(|| "default".into());
    let name = md.name_any();
    for (kind, version, note) in events {
        let happened = notify::entry(
            Happened::Rollout(*kind),
            &ns,
            &md.spec.model,
            format!("ModelDeployment/{name}"),
            Some(version.to_string()),
            md.spec.alias.clone(),
            format!("{name}: {note}"),
        );
        notify::announce(ctx, md, note.to_string(), happened).await;
    }
}

/// The pod counts to apply while version `v` starts beside `weights`: its strategy's first
/// share ([`rollout::replicas::starting`]).
fn starting(
    md: &ModelDeployment,
    total: u32,
    weights: &BTreeMap<String, u32>,
    v: &str,
    stable: Option<&str>,
) -> Vec<(String, u32)> {
    let first = rollout::strategy_steps(&md.spec.strategy)[0].weight;
    rollout::replicas::starting(weights, v, first, total, stable)
}

#[cfg(test)]
mod tests {
    use super::*;

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
