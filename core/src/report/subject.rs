//! What a report is about: the evaluation, the two versions it compares, and its suite's results
//! across the model's versions. Gathered from a catalog and its results, the same way in both
//! homes.

use std::collections::BTreeMap;

use serde::Serialize;
use slipway_crd::evaluation::EvaluationPhase;
use slipway_crd::{Evaluation, ModelVersion, RegisteredModel};

use crate::catalog::Catalog;
use crate::catalog::object::DEFAULT_NAMESPACE;
use crate::catalog::results::Results;

/// What a report is about.
#[derive(Clone, Debug)]
pub struct Subject {
    /// The evaluation, with its status.
    pub evaluation: Evaluation,
    /// Its model (for its report template), when the catalog has it.
    pub model: Option<RegisteredModel>,
    /// The version it evaluated, when the catalog has it (lineage, signature).
    pub candidate: Option<ModelVersion>,
    /// The version it was compared against, when the catalog has it.
    pub baseline: Option<ModelVersion>,
    /// The suite's finished results across the model's versions, oldest version first.
    pub history: Vec<Point>,
}

/// One version's finished result of the suite.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Point {
    /// The version label.
    pub version: String,
    /// Its metrics.
    pub metrics: BTreeMap<String, f64>,
    /// `Passed` or `Failed`.
    pub verdict: Option<String>,
    /// When it finished (RFC 3339).
    pub completed_at: Option<String>,
    /// The result the report is of.
    pub this: bool,
}

impl Subject {
    /// The evaluation on its own: no versions, and a history of its own result.
    pub fn alone(e: &Evaluation) -> Subject {
        Subject {
            evaluation: e.clone(),
            history: point(e, true).into_iter().collect(),
            model: None,
            candidate: None,
            baseline: None,
        }
    }

    /// The evaluation with what `catalog` and `results` hold of its model: the versions it
    /// compares, and the suite's finished results of every version (its own from `e`, which
    /// may be newer than `results`).
    pub fn of(catalog: &Catalog, results: &Results, e: &Evaluation) -> Subject {
        let ns = e.metadata.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
        let spec = &e.spec;
        let baseline = e
            .status
            .as_ref()
            .and_then(|s| s.baseline_version.as_deref())
            .and_then(|b| catalog.version(ns, &spec.model, b))
            .cloned();
        let mut history: Vec<Point> = results
            .suite_across_versions(ns, &spec.model, &spec.suite)
            .into_iter()
            .filter(|(v, _)| *v != spec.version)
            .filter_map(|(_, other)| point(&other, false))
            .chain(point(e, true))
            .collect();
        history.sort_by(|a, b| by_label(&a.version, &b.version));
        Subject {
            evaluation: e.clone(),
            model: catalog.model(ns, &spec.model).cloned(),
            candidate: catalog.version(ns, &spec.model, &spec.version).cloned(),
            baseline,
            history,
        }
    }
}

/// An evaluation's finished result as a point of the history; None while it runs.
fn point(e: &Evaluation, this: bool) -> Option<Point> {
    let s = e.status.as_ref()?;
    matches!(
        s.phase,
        EvaluationPhase::Succeeded | EvaluationPhase::Failed
    )
    .then(|| Point {
        version: e.spec.version.clone(),
        metrics: s.metrics.clone(),
        verdict: s.verdict.map(|v| v.as_str().to_string()),
        completed_at: s.completed_at.map(|t| t.to_rfc3339()),
        this,
    })
}

/// Version labels in order: numbers by value (`9` before `10`), then other labels by text.
pub fn by_label(a: &str, b: &str) -> std::cmp::Ordering {
    let key = |s: &str| (s.parse::<u64>().map_or(u64::MAX, |n| n), s.to_string());
    key(a).cmp(&key(b))
}
