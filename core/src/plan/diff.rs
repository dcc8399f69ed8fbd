//! Field-level differences between two specs, with paths approvers read.

use std::collections::BTreeSet;

use serde_json::Value;

use super::FieldChange;
use crate::catalog::{Catalog, Object, Resource};

/// `path` and then map key `k`: `.k` for a plain name, else `["k"]` with the key escaped — a key
/// may be anyone's text (an environment variable's name), and a path is shown to approvers.
fn segment(path: &str, k: &str) -> String {
    let plain = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/'));
    if plain {
        format!("{path}.{k}")
    } else {
        format!("{path}[{k:?}]")
    }
}

/// Leaf-level differences between two JSON values.
pub fn diff(old: &Value, new: &Value, path: &str) -> Vec<FieldChange> {
    let mut out = Vec::new();
    diff_into(Some(old), Some(new), path, &mut out);
    out
}

fn diff_into(old: Option<&Value>, new: Option<&Value>, path: &str, out: &mut Vec<FieldChange>) {
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                diff_into(a.get(k), b.get(k), &segment(path, k), out);
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff_into(Some(x), Some(y), &format!("{path}[{i}]"), out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => {
            let norm = |v: Option<&Value>| v.filter(|v| !v.is_null()).cloned();
            let (a, b) = (norm(a), norm(b));
            if a != b {
                out.push(FieldChange {
                    path: path.to_string(),
                    old: a,
                    new: b,
                    files: Vec::new(),
                });
            }
        }
    }
}

/// The operator's retry annotation set or changed from `o` to `n`: it re-rolls what is served
/// or re-runs what is judged though the spec stays, a change policies decide like a spec
/// change (taking it off, as the controller does once it acted, changes nothing).
pub(super) fn retry(o: &Object, n: &Object) -> Option<FieldChange> {
    let of = |o: &Object| crate::policy::binding::retry_of(o.resource.meta()).map(str::to_string);
    let (old, new) = (of(o), of(n));
    (new.is_some() && old != new).then(|| FieldChange {
        path: format!(
            "metadata.annotations[{:?}]",
            slipway_crd::model_deployment::RETRY_ANNOTATION
        ),
        old: old.map(Value::String),
        new: new.map(Value::String),
        files: Vec::new(),
    })
}

/// Whether `object` is an `Evaluation` of a suite its model does not declare (in the head, or
/// the base when the head has no such model).
pub(super) fn is_experiment(base: &Catalog, head: &Catalog, object: Option<&Object>) -> bool {
    let Some(Resource::Evaluation(e)) = object.map(|o| &o.resource) else {
        return false;
    };
    let ns = object.map_or("", |o| o.key.namespace.as_str());
    let model = head
        .model(ns, &e.spec.model)
        .or_else(|| base.model(ns, &e.spec.model));
    !model.is_some_and(|m| m.spec.evaluations.iter().any(|s| s.name == e.spec.suite))
}
