//! Git mode's promotions: aliases move by [`crate::decide::promotion`], with their status and the
//! history entry that explains each move or hold written together.

use crate::decide::catalog::{Catalog, Resource};
use crate::decide::policy::context::{Results, judges};
use crate::decide::promotion::{AliasFacts, AliasStep, Promotion, alias_status, promotion};
use crate::edges::store::{HistoryEntry, Write};
use slipway_crd::model_alias::ModelAliasStatus;

use super::*;

impl Reconciler<'_> {
    pub(super) fn results_of(&self, catalog: &Catalog) -> Result<Results, Error> {
        let mut results = Results::default();
        // Only evaluations that run a suite as its model declares it feed policy.
        results.add_shared(
            self.evaluations(catalog)?
                .iter()
                .filter(|e| judges(catalog, e))
                .cloned(),
        );
        Ok(results)
    }

    /// Writes an alias's new status, with the history entry that explains it when there is one.
    fn save_alias(
        &self,
        ns: &str,
        name: &str,
        status: &ModelAliasStatus,
        entry: Option<HistoryEntry>,
    ) -> Result<(), Error> {
        let mut writes = vec![Write::Status {
            kind: "ModelAlias".into(),
            namespace: ns.into(),
            name: name.into(),
            status: serde_json::to_value(status)?,
        }];
        if let Some(entry) = entry {
            (self.progress)(&entry.message);
            writes.push(Write::History(entry));
        }
        self.apply(&writes)?;
        Ok(())
    }

    pub(super) fn promote(
        &self,
        catalog: &Catalog,
        results: &Results,
        out: &mut Outcome,
    ) -> Result<(), Error> {
        for obj in catalog.objects() {
            let Resource::ModelAlias(a) = &obj.resource else {
                continue;
            };
            let ns = obj.key.namespace.as_str();
            let status: ModelAliasStatus = self
                .typed_status("ModelAlias", ns, &obj.key.name)?
                .unwrap_or_default();
            let resolved = status.resolved_version.clone();
            let to = &a.spec.version;
            let label = format!("{}/{}", a.spec.model, a.spec.alias);
            let facts = AliasFacts {
                label: &label,
                to,
                generation: None,
                revision: Some(&self.revision),
                now: (self.now)(),
            };
            // A status that says something new is written; the same words are not written again.
            let changed = |next: &ModelAliasStatus| {
                next.resolved_version != status.resolved_version
                    || next.conditions.first().map(|c| (&c.reason, &c.message))
                        != status.conditions.first().map(|c| (&c.reason, &c.message))
            };
            if resolved.as_deref() == Some(to.as_str()) {
                // Settled (as Kubernetes mode does): a Ready alias keeps the words of its move.
                if status
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
                {
                    continue;
                }
                let (next, _) = alias_status(&status, &AliasStep::Resolved, &facts);
                if changed(&next) {
                    self.save_alias(ns, &obj.key.name, &next, None)?;
                }
                continue;
            }
            let decision = match promotion(
                catalog,
                results,
                ns,
                &obj.key.name,
                a,
                resolved.as_deref(),
                "git",
                (self.now)(),
                None,
            ) {
                Promotion::Unresolvable => continue,
                Promotion::Waiting(pending) => {
                    let (next, message) =
                        alias_status(&status, &AliasStep::Waiting(&pending), &facts);
                    if changed(&next) {
                        self.save_alias(ns, &obj.key.name, &next, None)?;
                    }
                    out.waiting
                        .push(message.replace(": waiting for evaluation ", ": waiting for "));
                    continue;
                }
                Promotion::Decided(decision) => decision,
            };
            let from = resolved.clone().unwrap_or_else(|| "(none)".into());
            let mut h = self.history(
                if decision.allowed {
                    "AliasMoved"
                } else {
                    "PromotionBlocked"
                },
                ns,
                &a.spec.model,
                format!("ModelAlias/{}", obj.key.name),
            );
            h.version = Some(to.clone());
            h.alias = Some(a.spec.alias.clone());
            h.decision = Some(
                if decision.allowed {
                    "allowed"
                } else {
                    "denied"
                }
                .into(),
            );
            h.data = serde_json::to_value(&decision)?;
            if decision.allowed {
                let (next, message) = alias_status(&status, &AliasStep::Moved, &facts);
                h.message = message;
                self.save_alias(ns, &obj.key.name, &next, Some(h))?;
                out.moved.push(format!("{label}: {from} → {to}"));
            } else {
                let why = decision.summary();
                out.blocked.push(format!("{label} → {to}: {why}"));
                let (next, message) = alias_status(&status, &AliasStep::Held(&why), &facts);
                // A hold is recorded once, not on every pass.
                if changed(&next) {
                    h.message = message;
                    self.save_alias(ns, &obj.key.name, &next, Some(h))?;
                }
            }
        }
        Ok(())
    }
}
