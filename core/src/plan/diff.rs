//! Field-level differences between two specs, with paths approvers read.

use std::collections::BTreeSet;

use serde_json::Value;

use super::FieldChange;

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
                    file: None,
                });
            }
        }
    }
}
