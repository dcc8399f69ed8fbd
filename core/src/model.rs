//! A `RegisteredModel`'s status, built once for both homes: its newest version and where its
//! aliases resolve.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use slipway_crd::registered_model::RegisteredModelStatus;

use crate::conditions::condition;

/// The status of a model with these version labels and resolved aliases (alias → version), or
/// None when `previous` already says it (nothing to write).
pub fn status(
    versions: &[&str],
    aliases: BTreeMap<String, String>,
    previous: &RegisteredModelStatus,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Option<RegisteredModelStatus> {
    let latest = versions
        .iter()
        .max_by(|a, b| crate::catalog::natural(a).cmp(&crate::catalog::natural(b)))
        .map(|v| v.to_string());
    let message = match &latest {
        Some(v) => format!(
            "{}, newest {v}; {} resolved",
            count(versions.len(), "version", "versions"),
            count(aliases.len(), "alias", "aliases")
        ),
        None => "no versions registered yet".to_string(),
    };
    let fresh = previous.latest_version == latest
        && previous.aliases == aliases
        && previous.conditions.iter().any(|c| {
            c.type_ == "Ready" && c.message == message && c.observed_generation == generation
        });
    if fresh {
        return None;
    }
    let ready = condition(
        "Ready",
        true,
        "Observed",
        &message,
        generation,
        &previous.conditions,
        now,
    );
    // The retired labels are left out: they are written by the versions' own step (a merge
    // patch of another field manager), which this apply never takes away.
    Some(RegisteredModelStatus {
        latest_version: latest,
        aliases,
        conditions: vec![ready],
        retired_versions: Vec::new(),
    })
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_version_is_by_natural_order_and_an_unchanged_status_is_not_rewritten() {
        let now = crate::testing::now();
        let aliases = BTreeMap::from([("production".to_string(), "9".to_string())]);
        let s = status(
            &["9", "10", "8"],
            aliases.clone(),
            &Default::default(),
            Some(2),
            now,
        )
        .unwrap();
        assert_eq!(s.latest_version.as_deref(), Some("10"));
        assert_eq!(
            s.conditions[0].message,
            "3 versions, newest 10; 1 alias resolved"
        );
        assert_eq!(
            status(&["9", "10", "8"], aliases.clone(), &s, Some(2), now),
            None
        );
        // A new generation of the model is observed.
        assert!(status(&["9", "10", "8"], aliases, &s, Some(3), now).is_some());
        let empty = status(&[], BTreeMap::new(), &Default::default(), None, now).unwrap();
        assert_eq!(empty.conditions[0].message, "no versions registered yet");
    }
}
