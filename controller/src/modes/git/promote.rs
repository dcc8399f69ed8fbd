//! Git mode's promotions: aliases move by [`crate::decide::promotion`], with their status and the
//! history entry that explains each move or hold written together.

use crate::decide::catalog::results::{Results, judges};
use crate::decide::catalog::{Catalog, Resource};
use crate::decide::promotion::{self, AliasFacts, Promotion};
use crate::edges::store::{HistoryEntry, Write};
use slipway_crd::model_alias::{AliasDecision, ModelAliasStatus};

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
        out: &mut PassReport,
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
            // Settled: nothing to decide or write. Else one step, as in Kubernetes mode.
            if promotion::settled(&status, &facts) {
                continue;
            }
            let decided = (resolved.as_deref() != Some(to.as_str())).then(|| {
                promotion::promotion(
                    catalog,
                    results,
                    ns,
                    &obj.key.name,
                    a,
                    resolved.as_deref(),
                    "git",
                    (self.now)(),
                    None,
                )
            });
            let step = promotion::alias_step(&status, decided.as_ref(), &facts);
            match &decided {
                Some(Promotion::Waiting(_)) => out.waiting.push(
                    step.message
                        .replace(": waiting for evaluation ", ": waiting for "),
                ),
                Some(Promotion::Decided(d)) if d.allowed => {
                    let from = resolved.clone().unwrap_or_else(|| "(none)".into());
                    out.moved.push(format!("{label}: {from} → {to}"));
                }
                Some(Promotion::Decided(d)) => {
                    out.blocked.push(format!("{label} → {to}: {}", d.summary()))
                }
                _ => {}
            }
            let Some(next) = step.status else {
                continue;
            };
            let entry = match (step.news, &decided) {
                (Some(event), Some(Promotion::Decided(decision))) => {
                    let mut h = self.history(
                        event,
                        ns,
                        &a.spec.model,
                        format!("ModelAlias/{}", obj.key.name),
                    );
                    h.version = Some(to.clone());
                    h.alias = Some(a.spec.alias.clone());
                    h.decision = Some(
                        if decision.allowed {
                            AliasDecision::Allowed
                        } else {
                            AliasDecision::Denied
                        }
                        .as_str()
                        .into(),
                    );
                    h.data = serde_json::to_value(decision)?;
                    h.message = step.message.clone();
                    Some(h)
                }
                _ => None,
            };
            self.save_alias(ns, &obj.key.name, &next, entry)?;
        }
        Ok(())
    }
}
