//! `ModelAlias`: a move resolves once the candidate's evaluations are in and the policies allow
//! it — rules, and the approvals bound to exactly this move ([`crate::decide::promotion`]).

use std::sync::Arc;

use super::cache::Guarded;
use chrono::Utc;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use serde_json::json;
use slipway_crd::ModelAlias;

use super::notify;
use crate::decide::plan::KubeIdentity;
use crate::decide::policy::binding::{self, Subject};
use crate::decide::promotion::{
    AliasFacts, AliasOutcome, Baselines, Promotion, alias_step, promotion,
};

use super::context::{Context, Error, apply_status};

pub(super) async fn reconcile_alias(
    guarded: Arc<Guarded<ModelAlias>>,
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
    let now = Utc::now();
    let digest = ctx
        .cache
        .artifact(&ns, &alias.spec.model, &to)
        .map(|(_, digest)| digest);
    let facts = AliasFacts {
        label: &label,
        to: &to,
        generation,
        digest: digest.as_deref(),
        revision: None,
        now,
    };
    if crate::decide::promotion::settled(&status, &facts) {
        return Ok(Requeue::await_change());
    }
    if resolved.as_deref() == Some(to.as_str()) {
        let step = alias_step(&status, None, &facts);
        if let Some(next) = &step.status {
            apply_status(&api, &name, next).await?;
        }
        return Ok(Requeue::await_change());
    }
    note_move_seen(&ctx, &ns, alias);
    let (decided, subject, bound) = decide_move(&ctx, &ns, &name, alias, &status, now);
    // One step (promotion::alias_step, both homes'): the whole typed status when it says something new
    // (server-side apply drops what this manager leaves out), the news once.
    let step = alias_step(&status, Some(&decided), &facts);
    if let Some(next) = &step.status {
        apply_status(&api, &name, next).await?;
    }
    announce_news(&ctx, alias, &ns, &name, &step).await;
    if let Promotion::Rebaseline { evaluations, .. } = &decided {
        rebaseline(&ctx, &ns, evaluations).await?;
    }
    if let Promotion::Decided(decision) = &decided
        && decision.allowed
    {
        record_approvals_used(&ctx, &ns, &subject, &bound, decision).await;
    }
    Ok(step
        .wait
        .map_or_else(Requeue::await_change, Requeue::requeue))
}

/// Remembers when the alias's move to its version was first seen, for the promotion latency.
fn note_move_seen(ctx: &Context, ns: &str, alias: &ModelAlias) {
    ctx.moves_seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry((
            ns.to_string(),
            alias.spec.model.clone(),
            alias.spec.alias.clone(),
            alias.spec.version.clone(),
        ))
        .or_insert_with(std::time::Instant::now);
}

/// Decides the alias's move from the version its `status` resolves to: the policies' verdict
/// with the approvals bound to exactly this move, and that move and those approvals.
fn decide_move(
    ctx: &Context,
    ns: &str,
    name: &str,
    alias: &ModelAlias,
    status: &slipway_crd::model_alias::ModelAliasStatus,
    now: chrono::DateTime<Utc>,
) -> (Promotion, Subject, binding::Bound) {
    let resolved = status.resolved_version.as_deref();
    let view = ctx.cache.view(ns);
    let (catalog, results) = (&view.catalog, &view.results);
    // The approvals are checked again: a move admitted while the webhook was not called is held
    // until the approvals bound to exactly this move exist.
    let subject = Subject::alias_move(
        catalog,
        ns,
        name,
        alias,
        resolved.unwrap_or_default().to_string(),
        alias.metadata.generation.unwrap_or(0),
        alias.metadata.uid.as_deref().unwrap_or_default(),
    );
    let bound = binding::bind(&subject, &ctx.cache.approvals_in(ns), None);
    let identity = KubeIdentity {
        groups: Vec::new(),
        approvers: bound.approvers.clone(),
    };
    let members = |g: &str| Some(identity.members(g, None));
    let model = alias.spec.model.as_str();
    let aliases = |a: &str| ctx.cache.resolved(ns, model, a);
    let own = |e: &slipway_crd::Evaluation| own_evaluation(catalog, ns, e);
    let histories = crate::decide::promotion::stages::cluster_histories(catalog, ns, model);
    let baselines = Baselines {
        aliases: &aliases,
        own: &own,
        histories: &histories,
    };
    let decided = promotion(
        catalog,
        results,
        ns,
        name,
        alias,
        status,
        "kubernetes",
        now,
        Some((&bound.signoffs, &members)),
        &baselines,
    );
    (decided, subject, bound)
}

/// Whether `e` is the evaluation the controller made for its version's suite: controlled by that
/// `ModelVersion` (users cannot set owner references on Slipway's kinds), not one of that name.
pub(super) fn own_evaluation(
    catalog: &crate::decide::catalog::Catalog,
    ns: &str,
    e: &slipway_crd::Evaluation,
) -> bool {
    let Some(uid) = catalog
        .version(ns, &e.spec.model, &e.spec.version)
        .and_then(|v| v.metadata.uid.as_deref())
    else {
        return false;
    };
    e.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.kind == "ModelVersion" && o.uid == uid)
}

/// Compares evaluations again for a move ([`Promotion::Rebaseline`]): the controller's own is
/// pinned to the baseline its suite resolves to now; each gets its new status and an event.
async fn rebaseline(
    ctx: &Context,
    ns: &str,
    evaluations: &[crate::decide::promotion::Rebaseline],
) -> Result<(), Error> {
    let api: Api<slipway_crd::Evaluation> = Api::namespaced(ctx.client.clone(), ns);
    let view = ctx.cache.view(ns);
    for r in evaluations {
        let Some(e) = api.get_opt(&r.evaluation).await? else {
            continue;
        };
        // Decided on the cache: still a finished comparison against another version, as read
        // now? (An attempt already under way, or a comparison already made, is left alone.)
        let fresh = e.status.clone().unwrap_or_default();
        if fresh.phase != slipway_crd::evaluation::EvaluationPhase::Succeeded
            || fresh.baseline_version.as_deref() == Some(r.baseline.as_str())
        {
            continue;
        }
        let status = crate::decide::evaluation::lifecycle::rebaseline(
            &fresh,
            &r.evaluation,
            &r.baseline,
            chrono::Utc::now(),
        );
        if own_evaluation(&view.catalog, ns, &e) {
            // A merge patch: the rest of the spec stays as the version's reconciler applied it.
            let pin = json!({"spec": {"baseline": {"version": r.baseline, "alias": null}}});
            api.patch(&r.evaluation, &PatchParams::default(), &Patch::Merge(&pin))
                .await?;
        }
        super::context::replace_status(&api, &r.evaluation, Some(&fresh), &status).await?;
        let note = status
            .conditions
            .first()
            .map(|c| c.message.clone())
            .unwrap_or_default();
        super::context::publish(ctx, &e, crate::decide::events::Event::BaselineMoved, note).await;
    }
    Ok(())
}

/// Announces the step's news, when it has any: an event on the alias and the notifications.
async fn announce_news(
    ctx: &Arc<Context>,
    alias: &ModelAlias,
    ns: &str,
    name: &str,
    step: &AliasOutcome,
) {
    if let Some(event) = step.news {
        let happened = notify::entry(
            event,
            ns,
            &alias.spec.model,
            format!("ModelAlias/{name}"),
            Some(alias.spec.version.clone()),
            Some(alias.spec.alias.clone()),
            step.message.clone(),
        );
        notify::announce(ctx, alias, step.message.clone(), happened).await;
    }
}

/// Records on the approvals that admitted an allowed move that they were used.
async fn record_approvals_used(
    ctx: &Context,
    ns: &str,
    subject: &Subject,
    bound: &binding::Bound,
    decision: &crate::decide::policy::Decision,
) {
    // The approvals that admitted this move record that they were used: they count for
    // no other.
    let approvals: Api<slipway_crd::Approval> = Api::namespaced(ctx.client.clone(), ns);
    let used = subject.move_id.clone().unwrap_or_default();
    let counted = decision
        .approvals
        .iter()
        .flat_map(|a| &a.approved_by)
        .flat_map(|user| bound.names.get(user).into_iter().flatten());
    for a in counted {
        // A merge patch: it must not take approvedAt away (see reconcile_approval).
        let patch = json!({"status": {"usedBy": used}});
        if let Err(e) = approvals
            .patch_status(a, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(approval = %a, error = %e, "cannot record that the approval was used");
        }
    }
}
