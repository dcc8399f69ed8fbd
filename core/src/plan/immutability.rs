//! What never changes: a `ModelVersion`'s identity, artifact, lineage and signature (also under another
//! object name), and what an `Evaluation` is of.

use serde_json::Value;

use super::{diff, show};
use crate::catalog::{Catalog, Object, Resource};
use crate::diagnostics::{Category, Diagnostic, FieldPath};

/// An error for each leaf of `fields` (path, old, new) that changed: `what` (was …, now …): `todo`.
fn unchanged(
    new: &Object,
    fields: &[(&str, Value, Value)],
    what: &str,
    todo: &str,
) -> Vec<Diagnostic> {
    fields
        .iter()
        .flat_map(|(field, a, b)| diff(a, b, field))
        .map(|d| {
            new.diagnostic(
                &FieldPath::parse(&d.path),
                Category::Immutable,
                format!(
                    "{what} (was {}, now {}): {todo}",
                    show(d.old.as_ref()),
                    show(d.new.as_ref())
                ),
            )
        })
        .collect()
}

/// A new `ModelVersion` object that takes the label of a version the base has under another
/// name (delete one, create another) with another artifact or lineage: the same immutability.
pub(super) fn relabelled(base: &Catalog, new: &Object) -> Vec<Diagnostic> {
    let Resource::ModelVersion(n) = &new.resource else {
        return Vec::new();
    };
    let ns = new.key.namespace.as_str();
    match base
        .version(ns, &n.spec.model, &n.spec.version)
        .filter(|o| o.metadata.name.as_deref() != Some(new.key.name.as_str()))
    {
        Some(o)
            if o.spec.artifact != n.spec.artifact
                || o.spec.source != n.spec.source
                || o.spec.signature != n.spec.signature =>
        {
            vec![new.diagnostic(
                &FieldPath::parse("spec.version"),
                Category::Immutable,
                format!(
                    "version {} of {} is already registered (as {}) with another artifact, lineage or signature; a version's artifact never changes: register a new version",
                    n.spec.version,
                    n.spec.model,
                    o.metadata.name.as_deref().unwrap_or("?")
                ),
            )]
        }
        _ => Vec::new(),
    }
}

/// `ModelVersion` identity, artifact and lineage never change; nor does what an `Evaluation`
/// is of (model, version, suite): its results are of that run.
pub(super) fn immutability(old: &Object, new: &Object) -> Vec<Diagnostic> {
    if let (Resource::Evaluation(o), Resource::Evaluation(n)) = (&old.resource, &new.resource) {
        return unchanged(
            new,
            &[
                (
                    "spec.model",
                    o.spec.model.as_str().into(),
                    n.spec.model.as_str().into(),
                ),
                (
                    "spec.version",
                    o.spec.version.as_str().into(),
                    n.spec.version.as_str().into(),
                ),
                (
                    "spec.suite",
                    o.spec.suite.as_str().into(),
                    n.spec.suite.as_str().into(),
                ),
            ],
            "an Evaluation's model, version and suite are immutable",
            "its results are of that run; create another Evaluation",
        );
    }
    // An alias is of one model and one name: renaming `production` away would remove it
    // without the removal's policy.
    if let (Resource::ModelAlias(o), Resource::ModelAlias(n)) = (&old.resource, &new.resource) {
        return unchanged(
            new,
            &[
                (
                    "spec.model",
                    o.spec.model.as_str().into(),
                    n.spec.model.as_str().into(),
                ),
                (
                    "spec.alias",
                    o.spec.alias.as_str().into(),
                    n.spec.alias.as_str().into(),
                ),
            ],
            "a ModelAlias's model and alias are immutable",
            "delete it and create another, which the policies decide",
        );
    }
    let (Resource::ModelVersion(o), Resource::ModelVersion(n)) = (&old.resource, &new.resource)
    else {
        return Vec::new();
    };
    unchanged(
        new,
        &[
            (
                "spec.model",
                o.spec.model.as_str().into(),
                n.spec.model.as_str().into(),
            ),
            (
                "spec.version",
                o.spec.version.as_str().into(),
                n.spec.version.as_str().into(),
            ),
            (
                "spec.artifact",
                serde_json::to_value(&o.spec.artifact).unwrap_or_default(),
                serde_json::to_value(&n.spec.artifact).unwrap_or_default(),
            ),
            (
                "spec.source",
                serde_json::to_value(&o.spec.source).unwrap_or_default(),
                serde_json::to_value(&n.spec.source).unwrap_or_default(),
            ),
            (
                "spec.signature",
                serde_json::to_value(&o.spec.signature).unwrap_or_default(),
                serde_json::to_value(&n.spec.signature).unwrap_or_default(),
            ),
        ],
        "ModelVersion fields model, version, artifact, source and signature are immutable",
        "register a new ModelVersion instead",
    )
}
