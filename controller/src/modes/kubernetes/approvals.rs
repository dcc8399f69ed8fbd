//! `Approval`: its status records when it was given and which move used it.

use std::sync::Arc;

use super::cache::Guarded;
use chrono::Utc;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use serde_json::json;

use super::context::{Context, Error};

/// An `Approval`'s status records when it was admitted.
pub(super) async fn reconcile_approval(
    guarded: Arc<Guarded<slipway_crd::Approval>>,
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

/// Records every `Approval` withdrawn (deleted) as an `ApprovalWithdrawn` event on it: whose
/// sign-off or veto it was and what it signed. (Who deleted it is in the webhook's decision log:
/// only its approver or an operator may.)
pub(super) async fn record_withdrawals(
    ctx: Arc<Context>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use futures::StreamExt;
    let store = ctx.cache.approvals.store();
    let mut changes = ctx.cache.approvals.changes().boxed();
    loop {
        let next = tokio::select! {
            _ = stop.changed() => break,
            next = changes.next() => next,
        };
        let Some(o) = next else { break };
        let Ok(a) = &o.0 else { continue };
        let gone = store
            .get(&kube::runtime::reflector::ObjectRef::from_obj(&*o))
            .is_none();
        if gone {
            let spec = &a.spec;
            let what = match spec.decision {
                slipway_crd::approval::ApprovalDecision::Reject => "rejection",
                _ => "approval",
            };
            let signed = match &spec.change {
                Some(c) => format!("the change {c}"),
                None => format!("the move to {}", spec.version),
            };
            let note = format!(
                "{}'s {what} of {} {} ({signed}) was withdrawn",
                spec.approver.as_deref().unwrap_or("?"),
                spec.target.kind,
                spec.target.name
            );
            super::context::publish(
                &ctx,
                &**a,
                crate::decide::events::Event::ApprovalWithdrawn,
                note,
            )
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::cache::Guarded;
    use super::*;
    use crate::modes::kubernetes::mock;
    use serde_json::Value;

    fn approval(status: Value) -> Value {
        json!({
            "apiVersion": "slipway.dev/v1alpha1", "kind": "Approval",
            "metadata": {"name": "alice-8", "namespace": "team-a",
                         "creationTimestamp": "2026-11-28T10:00:00Z"},
            "spec": {"target": {"kind": "ModelAlias", "name": "pitch-frames-production"},
                     "version": "8", "decision": "approve"},
            "status": status,
        })
    }

    fn guarded(status: Value) -> Arc<Guarded<slipway_crd::Approval>> {
        mock::guarded(approval(status))
    }

    #[tokio::test]
    async fn an_approval_records_when_it_was_admitted_once() {
        let (ctx, mut api) = mock::context();
        let task = tokio::spawn(reconcile_approval(guarded(json!({})), ctx.clone()));
        let written = approval(json!({"approvedAt": "2026-11-28T10:00:00Z"}));
        let patch = api.answer(200, written).await;
        assert_eq!(patch.method, "PATCH");
        assert!(
            patch.uri.starts_with(
                "/apis/slipway.dev/v1alpha1/namespaces/team-a/approvals/alice-8/status?"
            ),
            "{}",
            patch.uri
        );
        // A merge patch of approvedAt alone: usedBy, written when a move uses it, stays.
        assert_eq!(
            patch.body,
            json!({"status": {"approvedAt": "2026-11-28T10:00:00Z"}})
        );
        task.await.unwrap().unwrap();
        // Recorded: never written again.
        let recorded = guarded(json!({"approvedAt": "2026-11-28T10:00:00Z"}));
        reconcile_approval(recorded, ctx).await.unwrap();
        api.quiet().await;
    }

    #[tokio::test]
    async fn a_refused_write_is_an_error_the_controller_can_classify() {
        let (ctx, mut api) = mock::context();
        let task = tokio::spawn(reconcile_approval(guarded(json!({})), ctx));
        let forbidden = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "approvals.slipway.dev \"alice-8\" is forbidden", "reason": "Forbidden", "code": 403});
        api.answer(403, forbidden).await;
        let error = task.await.unwrap().unwrap_err();
        let stall = error.outcome().stall().cloned().expect("a stall");
        assert_eq!(stall.reason.as_str(), "Forbidden");
        assert!(
            stall.message.contains("grant the controller"),
            "{}",
            stall.message
        );
    }
}
