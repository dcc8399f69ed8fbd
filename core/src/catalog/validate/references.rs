//! References between objects: what an object names exists in its catalog.

use slipway_crd::common::BaselineRef;
use slipway_crd::registered_model::EvaluationSuite;
use slipway_crd::{Evaluation, PromotionPolicy, RegisteredModel};

use super::{Checker, none_if_empty};
use crate::catalog::{Catalog, Object, Resource};
use crate::diagnostics::{Category, Diagnostic, Unloaded};
use std::collections::HashSet;

/// What an object refers to, checked against the catalog it is in.
struct Refs<'a> {
    c: Checker<'a>,
    cat: &'a Catalog,
    ns: &'a str,
    unloaded: &'a HashSet<Unloaded>,
}

/// Checks that what an object refers to exists in the catalog; a reference to a document that
/// failed to load (`unloaded`) is a consequence of its errors, not reported again.
pub fn references(obj: &Object, cat: &Catalog, unloaded: &HashSet<Unloaded>) -> Vec<Diagnostic> {
    let mut r = Refs {
        c: Checker {
            obj,
            out: Vec::new(),
        },
        cat,
        ns: obj.key.namespace.as_str(),
        unloaded,
    };
    match &obj.resource {
        Resource::ModelVersion(v) => {
            r.model_exists(&v.spec.model);
        }
        Resource::ModelAlias(a) => {
            if r.model_exists(&a.spec.model) {
                r.version_exists("spec.version", &a.spec.model, &a.spec.version);
            }
        }
        Resource::Evaluation(e) => r.evaluation(e),
        Resource::ModelDeployment(d) => {
            if r.model_exists(&d.spec.model) {
                if let Some(a) = &d.spec.alias {
                    r.alias_exists("spec.alias", &d.spec.model, a);
                }
                if let Some(v) = &d.spec.version {
                    r.version_exists("spec.version", &d.spec.model, v);
                }
                for (i, s) in d.spec.shadows.iter().enumerate() {
                    if let Some(a) = &s.alias {
                        r.alias_exists(&format!("spec.shadows[{i}].alias"), &d.spec.model, a);
                    }
                    if let Some(v) = &s.version {
                        r.version_exists(&format!("spec.shadows[{i}].version"), &d.spec.model, v);
                    }
                }
            }
        }
        Resource::RegisteredModel(m) => {
            let name = obj.key.name.as_str();
            for (i, s) in m.spec.evaluations.iter().enumerate() {
                if let Some(v) = s.baseline.as_ref().and_then(|b| b.version.as_ref()) {
                    r.version_exists(&format!("spec.evaluations[{i}].baseline.version"), name, v);
                }
            }
        }
        Resource::PromotionPolicy(p) => r.approver_groups(p),
        Resource::Approval(_) | Resource::Group(_) => {}
    }
    r.c.out
}

impl Refs<'_> {
    /// Whether a document of `kind` that failed to load is the one referred to: named `name`
    /// (when given), of `model` with `label` (when given).
    fn failed(
        &self,
        kind: &str,
        name: Option<&str>,
        model: Option<&str>,
        label: Option<&str>,
    ) -> bool {
        self.unloaded.iter().any(|u| {
            u.kind == kind
                && u.namespace == self.ns
                && name.is_none_or(|n| u.name == n)
                && model.is_none_or(|m| u.model.as_deref() == Some(m))
                && label.is_none_or(|l| u.label.as_deref() == Some(l))
        })
    }

    /// Whether the model exists in the namespace; reports it at `spec.model` when not (unless
    /// its document failed to load: then it says so itself).
    fn model_exists(&mut self, model: &str) -> bool {
        let ns = self.ns;
        if self.cat.model(ns, model).is_none() {
            if self.failed("RegisteredModel", Some(model), None, None) {
                return false;
            }
            self.c.err(
                "spec.model",
                Category::BrokenReference,
                format!("RegisteredModel `{model}` does not exist in namespace `{ns}`; add it or fix the name"),
            );
            false
        } else {
            true
        }
    }

    /// Reports at `field` when the model has no such version.
    fn version_exists(&mut self, field: &str, model: &str, version: &str) {
        if self.cat.version(self.ns, model, version).is_none()
            && !self.failed("ModelVersion", None, Some(model), Some(version))
        {
            let known = self.cat.version_labels(self.ns, model);
            self.c.err(
                field,
                Category::BrokenReference,
                format!(
                    "model `{model}` has no version `{version}` (versions: {}); add a ModelVersion or use an existing version",
                    none_if_empty(&known)
                ),
            );
        }
    }

    /// Reports at `field` when the model has no such alias.
    fn alias_exists(&mut self, field: &str, model: &str, alias: &str) {
        if self.cat.alias(self.ns, model, alias).is_none()
            && !self.failed("ModelAlias", None, Some(model), Some(alias))
        {
            let known = self.cat.alias_names(self.ns, model);
            self.c.err(
                field,
                Category::BrokenReference,
                format!("model `{model}` has no alias `{alias}` (aliases: {}); add a ModelAlias or fix the name", none_if_empty(&known)),
            );
        }
    }

    /// Checks an Evaluation's model and versions, and that one of a model's suites runs as
    /// the model declares it.
    fn evaluation(&mut self, e: &Evaluation) {
        if !self.model_exists(&e.spec.model) {
            return;
        }
        self.version_exists("spec.version", &e.spec.model, &e.spec.version);
        let cat = self.cat;
        if let Some(m) = cat.model(self.ns, &e.spec.model)
            && let Some(suite) = m.spec.evaluations.iter().find(|s| s.name == e.spec.suite)
        {
            self.as_declared(m, suite, e);
        }
        if let Some(v) = e.spec.baseline.as_ref().and_then(|b| b.version.as_ref()) {
            self.version_exists("spec.baseline.version", &e.spec.model, v);
        }
    }

    /// Checks that an Evaluation of a model's suite runs it as the model declares it, or it
    /// would pass for the model's judgement without being it.
    fn as_declared(&mut self, m: &RegisteredModel, suite: &EvaluationSuite, e: &Evaluation) {
        let advice = "an Evaluation of a model's suite runs it exactly as the model declares it; leave the Evaluation to Slipway, or name a suite of your own in spec.suite for an experiment (it runs, but never judges a promotion)";
        if let Err(why) = crate::evaluation::judging(m, &e.spec) {
            self.c.invalid("spec", format!("{why}: {advice}"));
        }
        if !self.suite_baselines(suite, e).contains(&e.spec.baseline) {
            self.c.invalid(
                "spec.baseline",
                format!(
                    "suite `{}` of model {} compares against {}, not this baseline: {advice}",
                    suite.name,
                    e.spec.model,
                    match &suite.baseline {
                        Some(BaselineRef { alias: Some(a), .. }) =>
                            format!("alias {a} (what it resolves to now)"),
                        Some(BaselineRef {
                            version: Some(v), ..
                        }) => format!("version {v}"),
                        _ => "no baseline".to_string(),
                    }
                ),
            );
        }
    }

    /// The baselines an Evaluation of the suite may name: the suite's, as written or as the
    /// version its alias resolves to now (none when that is the candidate itself).
    fn suite_baselines(&self, suite: &EvaluationSuite, e: &Evaluation) -> Vec<Option<BaselineRef>> {
        let resolved = |alias: &str| {
            self.cat.alias(self.ns, &e.spec.model, alias).map(|a| {
                a.status
                    .as_ref()
                    .and_then(|s| s.resolved_version.clone())
                    .unwrap_or_else(|| a.spec.version.clone())
            })
        };
        let pinned = |v: Option<String>| {
            v.filter(|v| *v != e.spec.version).map(|v| BaselineRef {
                alias: None,
                version: Some(v),
            })
        };
        match &suite.baseline {
            None => vec![None],
            Some(b) => match (&b.version, &b.alias) {
                (Some(v), _) => vec![Some(b.clone()), pinned(Some(v.clone()))],
                (None, Some(a)) => vec![Some(b.clone()), pinned(resolved(a))],
                (None, None) => vec![Some(b.clone())],
            },
        }
    }

    /// Reports each `group:NAME` approver of a policy whose Group does not exist.
    fn approver_groups(&mut self, p: &PromotionPolicy) {
        let ns = self.ns;
        let approvals = p
            .spec
            .approvals
            .iter()
            .enumerate()
            .map(|(i, a)| (format!("spec.approvals[{i}]"), a));
        let overrides = p.spec.windows.iter().enumerate().filter_map(|(i, w)| {
            Some((format!("spec.windows[{i}].override"), w.override_.as_ref()?))
        });
        for (at, a) in approvals.chain(overrides) {
            for (j, f) in a.from.iter().enumerate() {
                if let Some(g) = f.strip_prefix("group:")
                    && !g.is_empty()
                    && self.cat.group(ns, g).is_none()
                {
                    self.c.err(
                        &format!("{at}.from[{j}]"),
                        Category::BrokenReference,
                        format!("Group `{g}` does not exist in namespace `{ns}`; add a Group with its members"),
                    );
                }
            }
        }
    }
}
