//! Which evaluations a catalog calls for (pure).

use slipway_crd::common::{BaselineRef, DatasetRef, Gate, RunnerSpec};
use slipway_crd::model_version::Artifact;

use crate::catalog::{Catalog, Resource};

/// One evaluation to have: a suite of a model run on a version, against a baseline version.
#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    /// Namespace.
    pub namespace: String,
    /// Name of the `Evaluation` (explicit, or `MODEL-VERSION-SUITE` for suites of the model).
    pub name: String,
    /// Model.
    pub model: String,
    /// Candidate version.
    pub version: String,
    /// Suite.
    pub suite: String,
    /// How to run it.
    pub runner: RunnerSpec,
    /// Dataset.
    pub dataset: DatasetRef,
    /// Gates.
    pub gates: Vec<Gate>,
    /// Timeout as written (`30m`).
    pub timeout: Option<String>,
    /// The candidate's artifact.
    pub artifact: Artifact,
    /// The baseline version and its artifact (None: no baseline, or it is the candidate itself).
    pub baseline: Option<(String, Artifact)>,
}

impl Task {
    /// The `Evaluation` spec of this task: the suite as the model declares it, its baseline
    /// pinned to the version it resolved to.
    pub fn spec(&self) -> slipway_crd::evaluation::EvaluationSpec {
        slipway_crd::evaluation::EvaluationSpec {
            model: self.model.clone(),
            version: self.version.clone(),
            suite: self.suite.clone(),
            baseline: self.baseline.as_ref().map(|(v, _)| BaselineRef {
                alias: None,
                version: Some(v.clone()),
            }),
            dataset: self.dataset.clone(),
            runner: self.runner.clone(),
            gates: self.gates.clone(),
            timeout: self.timeout.clone(),
        }
    }
}

/// Name of the `Evaluation` Slipway creates for a suite of a version.
pub fn evaluation_name(model: &str, version: &str, suite: &str) -> String {
    let raw = format!("{model}-{version}-{suite}").to_ascii_lowercase();
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Every evaluation the catalog calls for. `resolved(namespace, model, alias)` is the version an
/// alias resolves to now (as promoted, not as merely requested).
pub fn all(catalog: &Catalog, resolved: &dyn Fn(&str, &str, &str) -> Option<String>) -> Vec<Task> {
    let mut out = Vec::new();
    for obj in catalog.objects() {
        let ns = obj.key.namespace.as_str();
        match &obj.resource {
            Resource::ModelVersion(v) => out.extend(of_version(catalog, ns, v, resolved)),
            Resource::Evaluation(e) => {
                let Some(v) = catalog.version(ns, &e.spec.model, &e.spec.version) else {
                    continue;
                };
                out.push(Task {
                    namespace: ns.to_string(),
                    name: obj.key.name.clone(),
                    model: e.spec.model.clone(),
                    version: e.spec.version.clone(),
                    suite: e.spec.suite.clone(),
                    runner: e.spec.runner.clone(),
                    dataset: e.spec.dataset.clone(),
                    gates: e.spec.gates.clone(),
                    timeout: e.spec.timeout.clone(),
                    artifact: v.spec.artifact.clone(),
                    baseline: baseline_of(
                        catalog,
                        resolved,
                        ns,
                        &e.spec.model,
                        &e.spec.version,
                        e.spec.baseline.as_ref(),
                    ),
                });
            }
            _ => {}
        }
    }
    out
}

/// The evaluations the suites of its model call for on version `v` of namespace `ns` (what
/// [`all`] has for it, without looking at the rest of the catalog).
pub fn of_version(
    catalog: &Catalog,
    ns: &str,
    v: &slipway_crd::ModelVersion,
    resolved: &dyn Fn(&str, &str, &str) -> Option<String>,
) -> Vec<Task> {
    let Some(model) = catalog.model(ns, &v.spec.model) else {
        return Vec::new();
    };
    model
        .spec
        .evaluations
        .iter()
        .map(|suite| Task {
            namespace: ns.to_string(),
            name: evaluation_name(&v.spec.model, &v.spec.version, &suite.name),
            model: v.spec.model.clone(),
            version: v.spec.version.clone(),
            suite: suite.name.clone(),
            runner: suite.runner.clone(),
            dataset: suite.dataset.clone(),
            gates: suite.gates.clone(),
            timeout: suite.timeout.clone(),
            artifact: v.spec.artifact.clone(),
            baseline: baseline_of(
                catalog,
                resolved,
                ns,
                &v.spec.model,
                &v.spec.version,
                suite.baseline.as_ref(),
            ),
        })
        .collect()
}

/// The baseline version `b` names for `candidate` — its version, or what its alias resolves to
/// now (`resolved`) — unless it is the candidate itself. Both homes read a baseline so.
pub fn baseline_version(
    b: Option<&BaselineRef>,
    candidate: &str,
    resolved: impl FnOnce(&str) -> Option<String>,
) -> Option<String> {
    let b = b?;
    let version = match (&b.version, &b.alias) {
        (Some(v), _) => Some(v.clone()),
        (None, Some(a)) => resolved(a),
        _ => None,
    }?;
    (version != candidate).then_some(version)
}

/// The baseline (version and artifact) `b` names for `candidate`, unless it is the candidate.
fn baseline_of(
    catalog: &Catalog,
    resolved: &dyn Fn(&str, &str, &str) -> Option<String>,
    ns: &str,
    model: &str,
    candidate: &str,
    b: Option<&BaselineRef>,
) -> Option<(String, Artifact)> {
    let version = baseline_version(b, candidate, |a| resolved(ns, model, a))?;
    catalog
        .version(ns, model, &version)
        .map(|v| (version, v.spec.artifact.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{catalog, registry};

    #[test]
    fn every_version_gets_every_suite_against_the_resolved_baseline() {
        let cat = catalog(&registry("1"));
        let t = all(&cat, &|_, _, alias| {
            (alias == "production").then(|| "1".to_string())
        });
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].name, "m-1-eval");
        assert_eq!(t[0].baseline, None, "version 1 is production itself");
        assert_eq!(t[1].name, "m-2-eval");
        assert_eq!(t[1].baseline.as_ref().map(|b| b.0.as_str()), Some("1"));
        assert_eq!(t[1].artifact.digest, "sha256:02");
    }

    #[test]
    fn without_a_resolved_baseline_there_is_none() {
        let cat = catalog(&registry("1"));
        assert!(
            all(&cat, &|_, _, _| None)
                .iter()
                .all(|t| t.baseline.is_none())
        );
    }

    #[test]
    fn names_are_valid_object_names() {
        assert_eq!(
            evaluation_name("Frames", "8.1_rc", "pitch frames"),
            "frames-8.1-rc-pitch-frames"
        );
    }
}
