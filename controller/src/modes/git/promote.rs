//! Git mode's promotions: aliases move by [`crate::decide::promotion`], with their status and the
//! history entry that explains each move or hold written together.

use crate::decide::catalog::results::{Results, judges};
use crate::decide::catalog::{Catalog, ObjectKey, Resource};
use crate::decide::policy::Decision;
use crate::decide::promotion::{self, AliasFacts, Promotion};
use crate::edges::store::{HistoryEntry, Write};
use slipway_crd::ModelAlias;
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

    /// One step of every alias; returns the evaluations a move has compared again (their
    /// status now asks for a run).
    pub(super) fn promote(
        &self,
        catalog: &Catalog,
        results: &Results,
        out: &mut PassReport,
    ) -> Result<Vec<String>, Error> {
        let mut again = Vec::new();
        for obj in catalog.objects() {
            let Resource::ModelAlias(a) = &obj.resource else {
                continue;
            };
            again.extend(self.promote_alias(catalog, results, &obj.key, a, out)?);
        }
        // An alias removed from the registry is forgotten with its recorded moves: one made
        // again under its name (perhaps as another stage) has served nothing yet.
        let gone: Vec<Write> = self
            .store
            .statuses("ModelAlias")?
            .into_iter()
            .filter(|(ns, name, _)| {
                catalog
                    .get(&ObjectKey {
                        kind: slipway_crd::Kind::ModelAlias,
                        namespace: ns.clone(),
                        name: name.clone(),
                    })
                    .is_none()
            })
            .map(|(namespace, name, _)| Write::ForgetStatus {
                kind: "ModelAlias".into(),
                namespace,
                name,
            })
            .collect();
        if !gone.is_empty() {
            self.apply(&gone)?;
        }
        Ok(again)
    }

    /// Compares `evaluations` of namespace `ns` again (each written with its new status, and
    /// the model's history saying why); returns their names.
    fn rebaseline(
        &self,
        ns: &str,
        a: &ModelAlias,
        evaluations: &[promotion::Rebaseline],
    ) -> Result<Vec<String>, Error> {
        let mut writes = Vec::new();
        for r in evaluations {
            let mut h = self.history(
                Happened::BaselineMoved,
                ns,
                &a.spec.model,
                format!("Evaluation/{}", r.evaluation),
            );
            h.version = Some(a.spec.version.clone());
            h.message = r
                .status
                .conditions
                .first()
                .map(|c| c.message.clone())
                .unwrap_or_default();
            (self.progress)(&h.message);
            writes.push(Write::Status {
                kind: "Evaluation".into(),
                namespace: ns.into(),
                name: r.evaluation.clone(),
                status: serde_json::to_value(&r.status)?,
            });
            writes.push(Write::History(h));
        }
        self.apply(&writes)?;
        Ok(evaluations.iter().map(|r| r.evaluation.clone()).collect())
    }

    /// One step of alias `a` (object `key`): decide, tell the pass report, then write its status
    /// with the history entry that explains it.
    fn promote_alias(
        &self,
        catalog: &Catalog,
        results: &Results,
        key: &ObjectKey,
        a: &ModelAlias,
        out: &mut PassReport,
    ) -> Result<Vec<String>, Error> {
        let (ns, name) = (key.namespace.as_str(), key.name.as_str());
        let status: ModelAliasStatus = self
            .typed_status("ModelAlias", ns, name)?
            .unwrap_or_default();
        let resolved = status.resolved_version.clone();
        let to = &a.spec.version;
        let label = format!("{}/{}", a.spec.model, a.spec.alias);
        let digest = catalog
            .version(ns, &a.spec.model, to)
            .map(|v| v.spec.artifact.digest.clone());
        let facts = AliasFacts {
            label: &label,
            to,
            generation: None,
            digest: digest.as_deref(),
            revision: Some(&self.revision),
            now: (self.now)(),
        };
        // Settled: nothing to decide or write. Else one step, as in Kubernetes mode.
        if promotion::settled(&status, &facts) {
            return Ok(Vec::new());
        }
        let aliases = |alias: &str| self.resolved_alias(catalog, ns, &a.spec.model, alias);
        // Its own: made from the model's suite (not an `Evaluation` document of the registry).
        let own = |e: &slipway_crd::Evaluation| {
            let name = e.metadata.name.as_deref().unwrap_or_default();
            name == crate::decide::tasks::evaluation_name(
                &e.spec.model,
                &e.spec.version,
                &e.spec.suite,
            ) && catalog
                .get(&ObjectKey {
                    kind: slipway_crd::Kind::Evaluation,
                    namespace: ns.to_string(),
                    name: name.to_string(),
                })
                .is_none()
        };
        let histories = self.alias_histories(catalog, ns, &a.spec.model)?;
        let baselines = promotion::Baselines {
            aliases: &aliases,
            own: &own,
            histories: &histories,
        };
        let decided = (resolved.as_deref() != Some(to.as_str())).then(|| {
            promotion::promotion(
                catalog,
                results,
                ns,
                name,
                a,
                &status,
                "git",
                (self.now)(),
                None,
                &baselines,
            )
        });
        let again = match &decided {
            Some(Promotion::Rebaseline { evaluations, .. }) => {
                self.rebaseline(ns, a, evaluations)?
            }
            _ => Vec::new(),
        };
        let step = promotion::alias_step(&status, decided.as_ref(), &facts);
        if let Some(Promotion::Decided(d)) = &decided
            && let Some(t) = d.opens_at
        {
            out.opens_at = Some(out.opens_at.map_or(t, |o| o.min(t)));
        }
        report(
            out,
            decided.as_ref(),
            &step.message,
            &label,
            resolved.as_deref(),
            to,
        );
        let Some(next) = step.status else {
            return Ok(again);
        };
        let entry = match (step.news, &decided) {
            (Some(event), Some(Promotion::Decided(decision))) => {
                Some(self.decision_entry(event, key, a, decision, &step.message)?)
            }
            _ => None,
        };
        self.save_alias(ns, name, &next, entry)?;
        Ok(again)
    }

    /// The recorded moves of every alias of `model` in `ns`, by alias name, from the state.
    fn alias_histories(
        &self,
        catalog: &Catalog,
        ns: &str,
        model: &str,
    ) -> Result<promotion::stages::Histories, Error> {
        let mut out = promotion::stages::Histories::new();
        for alias in catalog.alias_names(ns, model) {
            let Some(o) = catalog.alias_object(ns, model, alias) else {
                continue;
            };
            let status: Option<ModelAliasStatus> =
                self.typed_status("ModelAlias", ns, &o.key.name)?;
            out.insert(
                alias.to_string(),
                status.map(|s| s.history).unwrap_or_default(),
            );
        }
        Ok(out)
    }

    /// The history entry of a decided move of alias `a` (object `key`) to its version, with the
    /// decision and what the alias's status says (`message`).
    fn decision_entry(
        &self,
        event: Happened,
        key: &ObjectKey,
        a: &ModelAlias,
        decision: &Decision,
        message: &str,
    ) -> Result<HistoryEntry, Error> {
        let mut h = self.history(
            event,
            &key.namespace,
            &a.spec.model,
            format!("ModelAlias/{}", key.name),
        );
        h.version = Some(a.spec.version.clone());
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
        h.message = message.to_string();
        Ok(h)
    }
}

/// Tells the pass report what became of the move of `label` (from `resolved`) to `to`: waiting
/// for evaluations, moved, or blocked by policy.
fn report(
    out: &mut PassReport,
    decided: Option<&Promotion>,
    message: &str,
    label: &str,
    resolved: Option<&str>,
    to: &str,
) {
    match decided {
        Some(Promotion::Waiting(_) | Promotion::Rebaseline { .. }) => out
            .waiting
            .push(message.replace(": waiting for evaluation ", ": waiting for ")),
        Some(Promotion::Decided(d)) if d.allowed => {
            let from = resolved.unwrap_or("(none)");
            out.moved.push(format!("{label}: {from} → {to}"));
        }
        Some(Promotion::Decided(d)) => out.blocked.push(format!("{label} → {to}: {}", d.summary())),
        _ => {}
    }
}
