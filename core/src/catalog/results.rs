//! The values rules read: `candidate`, `current` and `model` as JSON, built from catalog objects.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};
use slipway_crd::{Evaluation, ModelVersion, RegisteredModel};

/// Whether `e` runs a suite as its model in `catalog` declares it
/// ([`crate::evaluation::judging`]): only such results feed policy.
///
/// Its status must have been decided under the gates and timeout its spec has now.
///
/// Its results must also be of this version's artifact: the status's content address is the
/// one of the version's registered digest, so results cannot be moved onto another version (or
/// a version re-registered with another artifact) by editing an `Evaluation`'s spec.
pub fn judges(catalog: &crate::catalog::Catalog, e: &Evaluation) -> bool {
    let ns = e
        .metadata
        .namespace
        .as_deref()
        .unwrap_or(crate::catalog::object::DEFAULT_NAMESPACE);
    let of_suite = catalog
        .model(ns, &e.spec.model)
        .is_some_and(|m| crate::evaluation::judging(m, &e.spec).is_ok());
    let of_artifact = catalog
        .version(ns, &e.spec.model, &e.spec.version)
        .is_some_and(|v| {
            let key = crate::evaluation::cache_key(
                &e.spec.model,
                &v.spec.artifact,
                &e.spec.dataset,
                &e.spec.runner,
                &e.spec.suite,
            );
            e.status
                .as_ref()
                .is_some_and(|s| s.cache_key.as_deref() == Some(key.as_str()))
        });
    // And judged by its gates and timeout as they are: a status decided under others (the
    // spec edited since, not yet decided again) does not count. One recorded before statuses
    // named what judged them counts as it did.
    let judged_now = e.status.as_ref().is_some_and(|s| {
        s.judged_by.as_deref().is_none_or(|j| {
            j == crate::evaluation::judged_by(&e.spec.gates, e.spec.timeout.as_deref())
        })
    });
    of_suite && of_artifact && judged_now
}

/// Evaluation results by (namespace, model, version), then suite; the latest result per suite wins.
/// Each evaluation is held behind a pointer: an `Evaluation` is kilobytes, and a map node holds
/// eleven of them inline (10,000 versions held 330 MB that way).
#[derive(Clone, Debug, Default)]
pub struct Results {
    // Persistent: a namespace view's copy is cheap, so one changed evaluation costs its own
    // slot, not the namespace's.
    by_version: imbl::HashMap<(String, String, String), BTreeMap<String, Arc<Evaluation>>>,
}

/// Where an evaluation's result is held: namespace, model, version, suite.
pub type Slot = (String, String, String, String);

/// The slot of an evaluation.
pub fn slot_of(e: &Evaluation) -> Slot {
    (
        e.metadata
            .namespace
            .clone()
            .unwrap_or_else(|| crate::catalog::object::DEFAULT_NAMESPACE.into()),
        e.spec.model.clone(),
        e.spec.version.clone(),
        e.spec.suite.clone(),
    )
}

impl Results {
    /// Adds evaluations that have a status; later-completed results replace earlier ones.
    pub fn add<'a>(&mut self, evaluations: impl IntoIterator<Item = &'a Evaluation>) {
        self.add_shared(evaluations.into_iter().map(|e| Arc::new(e.clone())));
    }

    /// Adds the evaluations that judge their version — run as the model in `catalog` declares
    /// the suite ([`crate::evaluation::judging`]); any other is left out.
    pub fn add_judging<'a>(
        &mut self,
        catalog: &crate::catalog::Catalog,
        evaluations: impl IntoIterator<Item = &'a Evaluation>,
    ) {
        self.add(evaluations.into_iter().filter(|e| judges(catalog, e)));
    }

    /// These results with the `slots` read again from `catalog`'s evaluations (those that judge),
    /// everything else shared: what one changed evaluation costs a namespace's view.
    pub fn amended(&self, catalog: &crate::catalog::Catalog, slots: &[Slot]) -> Results {
        let mut next = self.clone();
        for (ns, model, version, suite) in slots {
            let key = (ns.clone(), model.clone(), version.clone());
            if let Some(suites) = next.by_version.get_mut(&key) {
                suites.remove(suite);
                if suites.is_empty() {
                    next.by_version.remove(&key);
                }
            }
        }
        let wanted = |e: &Evaluation| {
            let ns = e
                .metadata
                .namespace
                .as_deref()
                .unwrap_or(crate::catalog::object::DEFAULT_NAMESPACE);
            slots.iter().any(|(n, m, v, s)| {
                e.spec.version == *v && e.spec.model == *m && e.spec.suite == *s && ns == n
            })
        };
        next.add_judging(
            catalog,
            catalog.objects().iter().filter_map(|o| match &o.resource {
                crate::catalog::Resource::Evaluation(e) if wanted(e) => Some(&**e),
                _ => None,
            }),
        );
        next
    }

    /// [`Results::add`] for evaluations already behind a pointer (nothing is copied).
    pub fn add_shared(&mut self, evaluations: impl IntoIterator<Item = Arc<Evaluation>>) {
        for e in evaluations {
            let Some(status) = &e.status else { continue };
            let ns = e
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| crate::catalog::object::DEFAULT_NAMESPACE.into());
            let suites = self
                .by_version
                .entry((ns, e.spec.model.clone(), e.spec.version.clone()))
                .or_default();
            let newer = match suites
                .get(&e.spec.suite)
                .and_then(|old| old.status.as_ref())
            {
                Some(old) => status.completed_at >= old.completed_at,
                None => true,
            };
            if newer {
                suites.insert(e.spec.suite.clone(), e.clone());
            }
        }
    }

    /// The results of one model's versions only (a copy).
    pub fn of_model(&self, ns: &str, model: &str) -> Results {
        Results {
            by_version: self
                .by_version
                .iter()
                .filter(|((n, m, _), _)| n == ns && m == model)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// Every evaluation held (the latest per version and suite).
    pub fn all(&self) -> impl Iterator<Item = &Evaluation> {
        self.by_version
            .values()
            .flat_map(|suites| suites.values().map(|e| &**e))
    }

    /// The results of `suite` of every version of `model` in `ns`, by version label.
    pub fn suite_across_versions(
        &self,
        ns: &str,
        model: &str,
        suite: &str,
    ) -> Vec<(String, Arc<Evaluation>)> {
        self.by_version
            .iter()
            .filter(|((n, m, _), _)| n == ns && m == model)
            .filter_map(|((_, _, v), suites)| Some((v.clone(), suites.get(suite)?.clone())))
            .collect()
    }

    /// The results of one version, by suite.
    pub fn of(
        &self,
        ns: &str,
        model: &str,
        version: &str,
    ) -> Option<&BTreeMap<String, Arc<Evaluation>>> {
        self.by_version
            .get(&(ns.to_string(), model.to_string(), version.to_string()))
    }
}

/// `candidate` / `current`: a version with its evaluation results keyed by suite.
pub fn version(v: &ModelVersion, results: &Results) -> Value {
    let ns = v
        .metadata
        .namespace
        .as_deref()
        .unwrap_or(crate::catalog::object::DEFAULT_NAMESPACE);
    let mut evaluations = serde_json::Map::new();
    if let Some(suites) = results.of(ns, &v.spec.model, &v.spec.version) {
        for (suite, e) in suites {
            let s = e.status.clone().unwrap_or_default();
            evaluations.insert(
                suite.clone(),
                json!({
                    "name": e.metadata.name,
                    "phase": s.phase,
                    "verdict": s.verdict,
                    "metrics": s.metrics,
                    "baselineMetrics": s.baseline_metrics,
                    "baselineVersion": s.baseline_version,
                    "gates": s.gates,
                    "completedAt": s.completed_at,
                }),
            );
        }
    }
    let spec = &v.spec;
    let mut out = json!({
        "name": v.metadata.name,
        "model": spec.model,
        "version": spec.version,
        "artifact": spec.artifact,
        "source": spec.source,
        "metrics": spec.metrics,
        "labels": spec.labels,
        "description": spec.description,
        "evaluations": evaluations,
    });
    // Absent, not null, when unset: `has(current.signature)` then reads false.
    if let (Some(s), Some(o)) = (&spec.signature, out.as_object_mut()) {
        o.insert("signature".into(), json!(s));
    }
    out
}

/// `model`: the registered model, with `evaluations` as the list of suite names.
pub fn model(m: &RegisteredModel) -> Value {
    let mut out = json!({
        "name": m.metadata.name,
        "namespace": m.metadata.namespace,
        "description": m.spec.description,
        "owners": m.spec.owners,
        "evaluations": m.spec.evaluations.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
    });
    // Absent, not null, when unset: a rule that reads it then fails closed naming the field.
    if let (Some(p), Some(o)) = (&m.spec.primary_metric, out.as_object_mut()) {
        o.insert(
            "primaryMetric".into(),
            serde_json::to_value(p).unwrap_or(Value::Null),
        );
    }
    if let (Some(soak), Some(o)) = (&m.spec.soak, out.as_object_mut()) {
        o.insert(
            "soak".into(),
            // As CEL's `duration()` reads it (`7d` is not CEL), beside what was written.
            json!({
                "alias": soak.alias,
                "duration": crate::duration::parse(&soak.duration)
                    .map(|d| format!("{}s", d.as_secs()))
                    .unwrap_or_default(),
                "written": soak.duration,
            }),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_crd::EvaluationStatus;
    use slipway_crd::evaluation::{EvaluationPhase, EvaluationSpec};

    /// A hostile edit of an `Evaluation`'s gates (to match a suite that changed, or not) does not
    /// carry the verdict decided under the old gates into policy before it is decided again.
    #[test]
    fn a_status_decided_under_other_gates_does_not_judge() {
        let cat = crate::testing::catalog(&crate::testing::registry("1"));
        let suite = cat.model("default", "m").unwrap().spec.evaluations[0].clone();
        let artifact = cat
            .version("default", "m", "2")
            .unwrap()
            .spec
            .artifact
            .clone();
        let spec = EvaluationSpec {
            model: "m".into(),
            version: "2".into(),
            suite: suite.name.clone(),
            baseline: None,
            dataset: suite.dataset.clone(),
            runner: suite.runner.clone(),
            gates: suite.gates.clone(),
            timeout: suite.timeout.clone(),
        };
        let key = crate::evaluation::cache_key(
            &spec.model,
            &artifact,
            &spec.dataset,
            &spec.runner,
            &spec.suite,
        );
        let judged = crate::evaluation::judged_by(&spec.gates, spec.timeout.as_deref());
        let mut e = Evaluation::new("m-2-eval", spec);
        e.metadata.namespace = Some("default".into());
        let with = |judged_by: Option<String>| EvaluationStatus {
            phase: EvaluationPhase::Succeeded,
            cache_key: Some(key.clone()),
            judged_by,
            ..Default::default()
        };
        e.status = Some(with(Some(judged)));
        assert!(judges(&cat, &e));
        e.status = Some(with(Some("sha256:other-gates".into())));
        assert!(!judges(&cat, &e));
        // Recorded before statuses named what judged them: as it counted before.
        e.status = Some(with(None));
        assert!(judges(&cat, &e));
    }
}
