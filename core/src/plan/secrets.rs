//! Secret references a change adds: in git mode they name `slipway run`'s own variables and
//! files, so a pull request may add one only where a policy asks for a sign-off.

use std::collections::BTreeSet;

use slipway_crd::common::SecretRef;

use super::Change;
use crate::catalog::{Object, Resource};
use crate::diagnostics::{Category, Diagnostic, FieldPath};

/// Every secret reference of `resource`: (field, what it names).
fn headers(
    at: String,
    h: &std::collections::BTreeMap<String, SecretRef>,
) -> Vec<(String, &SecretRef)> {
    h.iter()
        .map(|(k, r)| (format!("{at}.headers.{k}"), r))
        .collect()
}

fn references(resource: &Resource) -> BTreeSet<(String, String)> {
    let mut refs: Vec<(String, &SecretRef)> = Vec::new();

    match resource {
        Resource::RegisteredModel(m) => {
            for (i, s) in m.spec.evaluations.iter().enumerate() {
                if let Some(w) = &s.runner.webhook {
                    refs.extend(headers(
                        format!("spec.evaluations[{i}].runner.webhook"),
                        &w.headers,
                    ));
                }
            }
            for (i, n) in m.spec.notifications.iter().enumerate() {
                if let Some(w) = &n.webhook {
                    refs.extend(headers(
                        format!("spec.notifications[{i}].webhook"),
                        &w.headers,
                    ));
                }
                if let Some(s) = &n.slack {
                    refs.push((
                        format!("spec.notifications[{i}].slack.webhookUrl"),
                        &s.webhook_url,
                    ));
                }
            }
        }
        Resource::Evaluation(e) => {
            if let Some(w) = &e.spec.runner.webhook {
                refs.extend(headers("spec.runner.webhook".into(), &w.headers));
            }
        }
        Resource::ModelDeployment(d) => {
            let metrics = d.spec.strategy.analysis.iter().flat_map(|a| &a.metrics);
            for (i, m) in metrics.enumerate() {
                if let Some(h) = &m.provider.http {
                    refs.extend(headers(
                        format!("spec.strategy.analysis.metrics[{i}].provider.http"),
                        &h.headers,
                    ));
                }
            }
            let comparisons = d.spec.strategy.analysis.iter().flat_map(|a| &a.comparisons);
            for (i, c) in comparisons.enumerate() {
                for (part, p) in [("successes", &c.successes), ("trials", &c.trials)] {
                    if let Some(h) = &p.http {
                        refs.extend(headers(
                            format!("spec.strategy.analysis.comparisons[{i}].{part}.http"),
                            &h.headers,
                        ));
                    }
                }
            }
        }
        _ => {}
    }
    refs.into_iter()
        .filter_map(|(field, r)| {
            let what = match (&r.env, &r.file, &r.secret_key_ref) {
                (Some(v), _, _) => format!("env {v}"),
                (_, Some(f), _) => format!("file {f}"),
                (_, _, Some(k)) => format!("secret {}/{}", k.name, k.key),
                _ => return None,
            };
            Some((field, what))
        })
        .collect()
}

/// An error for each secret reference `new` adds to `old` when no policy asks for a sign-off
/// of the change: whoever may change the object unreviewed could send the secret anywhere.
pub(super) fn unprotected(change: &Change, old: Option<&Object>, new: &Object) -> Vec<Diagnostic> {
    if !change.decision.approvals.is_empty() {
        return Vec::new();
    }
    let before = old.map(|o| references(&o.resource)).unwrap_or_default();
    references(&new.resource)
        .difference(&before)
        .map(|(field, what)| {
            new.origin.diagnostic(
                Some(&new.key),
                &FieldPath::parse(field),
                Category::Invalid,
                format!(
                    "adds a secret reference ({what}) that no policy asks a sign-off for: a secret \
                     may be added only under a policy with approvals (the default set's \
                     model-judging and experiments policies protect notifications and runners)"
                ),
            )
        })
        .collect()
}
