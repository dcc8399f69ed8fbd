//! Model signatures: what a version takes and returns, whether a candidate still accepts what
//! the version it replaces accepts, and the difference in words.
//!
//! A candidate is compatible with the current version when every request callers may send now
//! is one it takes, and every output callers may read now is one it returns:
//! - an input it requires must be one callers send now (required there);
//! - an input keeps its type, and its shape accepts every shape accepted now (`-1` accepts any
//!   size); an input it drops, or a new optional one, breaks no caller;
//! - an output returned now stays, with its type, never optional where it was not, and with a
//!   shape within the one returned now; a new output breaks no caller.
//!
//! Pure: `slipway plan`, admission and both reconcilers decide with this one function (the CEL
//! member function `compatibleWith`), and the plan and the report show [`diff`].

use std::collections::BTreeMap;

use serde::Serialize;
use slipway_crd::model_version::{Signature, SignatureField};

/// The types a field may have: column types, then tensor element types.
pub const TYPES: [&str; 23] = [
    "boolean", "integer", "long", "float", "double", "string", "binary", "datetime", "bool",
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16",
    "bfloat16", "float32", "float64", "str", "bytes",
];

/// Which side of a signature a field is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// What a request carries.
    Input,
    /// What a prediction carries.
    Output,
}

/// What happened to one field between the current version and the candidate.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "change")]
pub enum FieldChange {
    /// The candidate has it, the current version does not.
    Added {
        /// It is optional in the candidate.
        optional: bool,
    },
    /// The current version has it, the candidate does not.
    Removed,
    /// Another type.
    Retyped {
        /// The type now.
        from: String,
        /// The candidate's.
        to: String,
    },
    /// Another shape.
    Reshaped {
        /// The shape now (absent: any).
        from: Option<Vec<i64>>,
        /// The candidate's.
        to: Option<Vec<i64>>,
    },
    /// Optional now, required in the candidate (or the other way round).
    Optionality {
        /// Optional in the candidate.
        optional: bool,
    },
}

/// One difference between two signatures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Difference {
    /// Input or output.
    pub side: Side,
    /// The field's name.
    pub field: String,
    /// What changed.
    #[serde(flatten)]
    pub change: FieldChange,
    /// Callers of the current version break against the candidate.
    pub breaks: bool,
}

impl Difference {
    /// In words, e.g. ``input `age` retyped long → double (breaks callers)``.
    pub fn describe(&self) -> String {
        let side = match self.side {
            Side::Input => "input",
            Side::Output => "output",
        };
        let shape = |s: &Option<Vec<i64>>| match s {
            None => "any shape".to_string(),
            Some(d) => format!(
                "[{}]",
                d.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
            ),
        };
        let what = match &self.change {
            FieldChange::Added { optional: true } => "added (optional)".to_string(),
            FieldChange::Added { optional: false } => "added (required)".to_string(),
            FieldChange::Removed => "removed".to_string(),
            FieldChange::Retyped { from, to } => format!("retyped {from} → {to}"),
            FieldChange::Reshaped { from, to } => {
                format!("reshaped {} → {}", shape(from), shape(to))
            }
            FieldChange::Optionality { optional: true } => "now optional".to_string(),
            FieldChange::Optionality { optional: false } => "now required".to_string(),
        };
        let effect = if self.breaks {
            "breaks callers"
        } else {
            "compatible"
        };
        format!("{side} `{}` {what} ({effect})", self.field)
    }
}

/// The differences from `current` to `candidate`, inputs first, each side by field name.
pub fn diff(current: &Signature, candidate: &Signature) -> Vec<Difference> {
    let mut out = side(Side::Input, &current.inputs, &candidate.inputs);
    out.extend(side(Side::Output, &current.outputs, &candidate.outputs));
    out
}

/// Whether callers of `current` keep working against `candidate`.
pub fn compatible(current: &Signature, candidate: &Signature) -> bool {
    diff(current, candidate).iter().all(|d| !d.breaks)
}

fn side(side: Side, now: &[SignatureField], next: &[SignatureField]) -> Vec<Difference> {
    let by_name = |fs: &[SignatureField]| {
        fs.iter()
            .map(|f| (f.name.clone(), f.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    let (now, next) = (by_name(now), by_name(next));
    let names = now
        .keys()
        .chain(next.keys())
        .collect::<std::collections::BTreeSet<_>>();
    let input = side == Side::Input;
    let mut out = Vec::new();
    let mut push = |field: &str, change, breaks| {
        out.push(Difference {
            side,
            field: field.to_string(),
            change,
            breaks,
        })
    };
    for name in names {
        match (now.get(name), next.get(name)) {
            (None, Some(b)) => push(
                name,
                FieldChange::Added {
                    optional: b.optional,
                },
                input && !b.optional,
            ),
            (Some(a), None) => push(name, FieldChange::Removed, !input && !a.optional),
            (Some(a), Some(b)) => {
                if a.type_ != b.type_ {
                    let (from, to) = (a.type_.clone(), b.type_.clone());
                    push(name, FieldChange::Retyped { from, to }, true);
                }
                if a.shape != b.shape {
                    // An input's new shape must accept the old; an output's must fit in it.
                    let breaks = if input {
                        !within(&a.shape, &b.shape)
                    } else {
                        !within(&b.shape, &a.shape)
                    };
                    let (from, to) = (a.shape.clone(), b.shape.clone());
                    push(name, FieldChange::Reshaped { from, to }, breaks);
                }
                if a.optional != b.optional {
                    // Callers may leave out an optional input; they may rely on a required output.
                    let breaks = if input { a.optional } else { !a.optional };
                    let optional = b.optional;
                    push(name, FieldChange::Optionality { optional }, breaks);
                }
            }
            (None, None) => {}
        }
    }
    out
}

/// Every shape `narrow` admits is one `wide` admits (absent, or `-1`, admits any size).
fn within(narrow: &Option<Vec<i64>>, wide: &Option<Vec<i64>>) -> bool {
    match (narrow, wide) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(n), Some(w)) => {
            n.len() == w.len() && n.iter().zip(w).all(|(n, w)| *w == -1 || n == w)
        }
    }
}

/// Why a candidate (policy JSON, `candidate`) is not compatible with the current version
/// (`current`): the fields that break callers, or that it declares no signature; None when the
/// current version declares none, or nothing breaks.
pub fn explain(candidate: &serde_json::Value, current: &serde_json::Value) -> Option<String> {
    read(current)?;
    if read(candidate).is_none() {
        return Some("the candidate declares no signature; the version it replaces does".into());
    }
    let breaking: Vec<String> = between(current, candidate)
        .iter()
        .filter(|d| d.breaks)
        .map(Difference::describe)
        .collect();
    (!breaking.is_empty()).then(|| breaking.join("; "))
}

/// The differences from the current version to the candidate (policy JSON), when both declare
/// a signature.
pub fn between(current: &serde_json::Value, candidate: &serde_json::Value) -> Vec<Difference> {
    match (read(current), read(candidate)) {
        (Some(now), Some(next)) => diff(&now, &next),
        _ => Vec::new(),
    }
}

/// The `signature` of a version's policy JSON.
fn read(version: &serde_json::Value) -> Option<Signature> {
    serde_json::from_value(version.get("signature")?.clone()).ok()
}

/// What is wrong with a signature, as (field path below `at`, message).
pub fn problems(at: &str, s: &Signature) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (list, fields) in [("inputs", &s.inputs), ("outputs", &s.outputs)] {
        let mut seen = std::collections::BTreeSet::new();
        for (i, f) in fields.iter().enumerate() {
            let path = format!("{at}.{list}[{i}]");
            // Names are shown in pull-request comments and reports: plain text only.
            let plain = |c: char| c.is_alphanumeric() || " _.:/()-".contains(c);
            if f.name.trim().is_empty() {
                out.push((
                    format!("{path}.name"),
                    "the field's name is empty".to_string(),
                ));
            } else if f.name.chars().count() > 128 || !f.name.chars().all(plain) {
                out.push((
                    format!("{path}.name"),
                    "a field's name is at most 128 letters, digits, spaces and `_.:/()-`; rename it"
                        .to_string(),
                ));
            } else if !seen.insert(f.name.as_str()) {
                out.push((
                    format!("{path}.name"),
                    format!(
                        "`{}` is named twice among the {list}; name each once",
                        f.name
                    ),
                ));
            }
            if !TYPES.contains(&f.type_.as_str()) {
                out.push((
                    format!("{path}.type"),
                    format!(
                        "`{}` is not a type Slipway knows; use one of {}",
                        f.type_,
                        TYPES.join(", ")
                    ),
                ));
            }
            if let Some((i, d)) = f
                .shape
                .as_ref()
                .and_then(|s| s.iter().enumerate().find(|(_, d)| **d < -1 || **d == 0))
            {
                out.push((
                    format!("{path}.shape[{i}]"),
                    format!("{d} is not a size; write a positive size, or -1 for any"),
                ));
            }
        }
    }
    out
}

/// The CEL member function `a.compatibleWith(b)`: whether signature `a` (the candidate's)
/// accepts what signature `b` (the current version's) does. Fails the rule (closed) when either
/// is not a signature.
pub fn compatible_with(
    cel::extractors::This(this): cel::extractors::This<cel::Value>,
    other: cel::Value,
) -> Result<cel::Value, cel::ExecutionError> {
    let read = |v: &cel::Value, which: &str| {
        v.json()
            .ok()
            .and_then(|j| serde_json::from_value::<Signature>(j).ok())
            .ok_or_else(|| {
                cel::ExecutionError::function_error(
                    "compatibleWith",
                    format!("{which} is not a signature (inputs and outputs)"),
                )
            })
    };
    let (candidate, current) = (read(&this, "the receiver")?, read(&other, "the argument")?);
    Ok(cel::Value::Bool(compatible(&current, &candidate)))
}

#[cfg(test)]
#[path = "signature_tests.rs"]
mod tests;
