//! Git mode's promotions: aliases move by [`crate::decide::promotion`], with their status and the
//! history entry that explains each move or hold written together.

use crate::decide::catalog::{Catalog, Resource};
use crate::decide::policy::context::Results;
use crate::decide::promotion::{Promotion, promotion};
use crate::edges::store::{HistoryEntry, Write};
use serde_json::{Value, json};

use super::*;

impl Reconciler<'_> {
    pub(super) fn results_of(&self, catalog: &Catalog) -> Result<Results, Error> {
        let mut results = Results::default();
        results.add(self.evaluations(catalog)?.iter());
        Ok(results)
    }

    /// Writes an alias's new status and the history entry that explains it, together.
    pub(super) fn save_alias(
        &self,
        ns: &str,
        name: &str,
        status: Value,
        entry: HistoryEntry,
    ) -> Result<(), Error> {
        (self.progress)(&entry.message);
        self.store.apply(&[
            Write::Status {
                kind: "ModelAlias".into(),
                namespace: ns.into(),
                name: name.into(),
                status,
            },
            Write::History(entry),
        ])?;
        Ok(())
    }

    pub(super) fn promote(&self, catalog: &Catalog, out: &mut Outcome) -> Result<(), Error> {
        let results = self.results_of(catalog)?;
        for obj in catalog.objects() {
            let Resource::ModelAlias(a) = &obj.resource else {
                continue;
            };
            let ns = obj.key.namespace.as_str();
            let status = self
                .store
                .status("ModelAlias", ns, &obj.key.name)?
                .unwrap_or(Value::Null);
            let resolved = status
                .get("resolvedVersion")
                .and_then(Value::as_str)
                .map(str::to_string);
            let to = &a.spec.version;
            if resolved.as_deref() == Some(to.as_str()) {
                continue;
            }
            let label = format!("{}/{}", a.spec.model, a.spec.alias);
            let decision = match promotion(
                catalog,
                &results,
                ns,
                &obj.key.name,
                a,
                resolved.as_deref(),
                "git",
                (self.now)(),
            ) {
                Promotion::Unresolvable => continue,
                Promotion::Waiting(pending) => {
                    out.waiting.push(format!(
                        "{label} → {to}: waiting for {}",
                        pending.join(", ")
                    ));
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
                h.message = format!("{label}: {from} → {to}");
                let mut history = status
                    .get("history")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                history.push(json!({"from": resolved, "to": to, "at": h.at, "revision": self.revision, "decision": "allowed"}));
                let new_status =
                    json!({"resolvedVersion": to, "previousVersion": resolved, "history": history});
                self.save_alias(ns, &obj.key.name, new_status, h)?;
                out.moved.push(format!("{label}: {from} → {to}"));
            } else {
                let why = decision.summary();
                h.message = format!("{label} → {to} held: {why}");
                out.blocked.push(format!("{label} → {to}: {why}"));
                // Record a hold once per (version, revision), not on every pass.
                let held = status.get("held").cloned().unwrap_or(Value::Null);
                let this = json!({"version": to, "revision": self.revision});
                if held != this {
                    let mut new_status = if status.is_object() {
                        status.clone()
                    } else {
                        json!({})
                    };
                    new_status["held"] = this;
                    new_status["heldMessage"] = Value::String(why);
                    self.save_alias(ns, &obj.key.name, new_status, h)?;
                }
            }
        }
        Ok(())
    }
}
