//! The files a spec uses, in a plan: a change to one is a change of the spec's field that names it.

use std::collections::BTreeSet;

use serde_json::Value;

use super::FieldChange;
use crate::catalog::Object;

/// The repository's files at the two revisions a plan compares.
#[derive(Clone, Debug, Default)]
pub struct Files {
    /// The registry folder (repository-relative; empty for the root).
    pub registry: String,
    /// Every file at the base revision.
    pub base: crate::files::Listing,
    /// Every file at the head revision.
    pub head: crate::files::Listing,
}

/// The files `object` uses that changed, as changes of the fields that name them.
pub(super) fn file_changes(
    object: &Object,
    files: &Files,
    documents: &BTreeSet<&str>,
) -> Vec<FieldChange> {
    let shown = |path: &str, id: &Option<String>| {
        id.as_ref()
            .map(|id| Value::String(format!("{path} @ {}", &id[..12.min(id.len())])))
    };
    crate::files::changed(
        &object.resource,
        &files.registry,
        &files.base,
        &files.head,
        documents,
    )
    .into_iter()
    .map(|c| FieldChange {
        old: shown(&c.usage.path, &c.old),
        // What changed in a folder, by name.
        new: shown(&c.usage.path, &c.new).map(|v| match (&v, c.files.as_slice()) {
            (Value::String(s), files) if files != [c.usage.path.clone()] && !files.is_empty() => {
                Value::String(format!("{s} ({} changed)", files.join(", ")))
            }
            _ => v,
        }),
        path: c.usage.field,
        files: c.files,
    })
    .collect()
}
