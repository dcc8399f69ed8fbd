//! Exact splits through the Gateway API: the backends an HTTPRoute's rules get for a rollout's
//! weights. Pure; the Kubernetes home reads the route, asks this, and writes the route back.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use slipway_crd::gateway::{HTTPBackendRef, HTTPRouteRule};
use slipway_crd::serving::RequestMatch;

/// The Service port every Slipway Service listens on.
pub const SERVICE_PORT: i32 = 80;

/// The annotation by which a route lets deployments set its weights: their names, separated by
/// commas (only someone who may edit the route can write it).
pub const OPT_IN: &str = "slipway.dev/deployments";

/// Whether a route's annotations let `deployment` set its weights.
pub fn lets(annotations: Option<&BTreeMap<String, String>>, deployment: &str) -> bool {
    annotations
        .and_then(|a| a.get(OPT_IN))
        .is_some_and(|names| names.split(',').any(|n| n.trim() == deployment))
}

/// A reference to the Service `name` on [`SERVICE_PORT`], with the fields the Gateway API
/// defaults written out (`group: ""`, `kind: Service`): what the API server stores is what was
/// written, so a route read back compares equal and is not written again.
fn service_ref(name: &str) -> HTTPBackendRef {
    HTTPBackendRef {
        name: name.to_string(),
        port: Some(SERVICE_PORT),
        group: Some(String::new()),
        kind: Some("Service".to_string()),
        ..HTTPBackendRef::default()
    }
}

/// Whether a backend is one of the deployment's: its Service, or one of its versions', in the
/// route's namespace.
fn ours(
    b: &HTTPBackendRef,
    (deployment, namespace): (&str, &str),
    services: &BTreeMap<String, String>,
) -> bool {
    let service = b.kind.as_deref().unwrap_or("Service") == "Service"
        && b.group.as_deref().unwrap_or("").is_empty()
        && b.namespace.as_deref().is_none_or(|n| n == namespace);
    service && (b.name == deployment || services.values().any(|s| *s == b.name))
}

/// Whether some rule of the route sends requests to the deployment (its Service, or one of its
/// versions' `services`).
pub fn serves(
    rules: &[HTTPRouteRule],
    who: (&str, &str),
    services: &BTreeMap<String, String>,
) -> bool {
    rules
        .iter()
        .any(|r| r.backend_refs.iter().any(|b| ours(b, who, services)))
}

/// The route's rules with the deployment's backends replaced by one per version with traffic,
/// weighted by `weights` (percent), in each rule that sends requests to the deployment — its
/// Service `deployment`, or one of the per-version `services` (version → Service, the
/// deployment's own) in the route's `namespace` — each new backend keeping the filters of the
/// first of those it replaces; every other backend, rule and field as it was. An error when no
/// rule sends requests to the deployment (the route does not serve it: nothing to split), or
/// when no version has traffic.
pub fn weighted(
    rules: &[HTTPRouteRule],
    (deployment, namespace): (&str, &str),
    services: &BTreeMap<String, String>,
    weights: &BTreeMap<String, u32>,
) -> Result<Vec<HTTPRouteRule>, String> {
    let who = (deployment, namespace);
    let routed: Vec<HTTPBackendRef> = weights
        .iter()
        .filter(|(_, w)| **w > 0)
        .filter_map(|(v, w)| {
            Some(HTTPBackendRef {
                weight: Some(i32::try_from(*w).unwrap_or(i32::MAX)),
                ..service_ref(services.get(v)?)
            })
        })
        .collect();
    if routed.is_empty() {
        return Err("no version has traffic to route".into());
    }
    let mut found = false;
    let out = rules
        .iter()
        .map(|rule| {
            let Some(at) = rule
                .backend_refs
                .iter()
                .position(|b| ours(b, who, services))
            else {
                return rule.clone();
            };
            found = true;
            let mut rule = rule.clone();
            // Ours where the first of ours was, with its filters; the others' backends stay in
            // their places.
            let filters = rule.backend_refs[at].other.clone();
            rule.backend_refs.retain(|b| !ours(b, who, services));
            let tail = rule.backend_refs.split_off(at.min(rule.backend_refs.len()));
            rule.backend_refs
                .extend(routed.iter().cloned().map(|mut b| {
                    b.other = filters.clone();
                    b
                }));
            rule.backend_refs.extend(tail);
            rule
        })
        .collect();
    if !found {
        return Err(format!(
            "no rule of it sends requests to Service {deployment}: add `backendRefs: [{{name: {deployment}, port: {SERVICE_PORT}}}]` to the rule that serves this deployment"
        ));
    }
    Ok(out)
}

/// A rule's filters, as written (none: empty).
fn filters_of(rule: &HTTPRouteRule) -> Vec<Value> {
    rule.other
        .get("filters")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The header a cohort rule sets on the requests it sends, naming the deployment: how the
/// rules Slipway added are known again (and what a model server sees of a cohort).
pub const COHORT_HEADER: &str = "x-slipway-cohort";

/// Whether `rule` is a cohort rule Slipway added for `deployment`: its filters set
/// [`COHORT_HEADER`] to the deployment, and its one backend is one of the deployment's
/// per-version `services`.
fn is_cohort(rule: &HTTPRouteRule, deployment: &str, services: &BTreeMap<String, String>) -> bool {
    let filters = rule.other.get("filters").and_then(Value::as_array);
    let marked = filters.into_iter().flatten().any(|f| {
        f["type"] == "RequestHeaderModifier"
            && f["requestHeaderModifier"]["set"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|h| h["name"] == COHORT_HEADER && h["value"] == deployment)
    });
    let backend = match rule.backend_refs.as_slice() {
        [b] => services.values().any(|s| *s == b.name),
        _ => false,
    };
    marked && backend
}

/// The most rules a route may have, and matches a rule may have (the Gateway API's bounds): a
/// cohort that would not fit is left out, and the weights are written alone.
const MAX_RULES: usize = 16;
const MAX_MATCHES: usize = 64;

/// The cohort rule for `rule` (one whose every backend is the deployment's): its matches (or
/// every path) each with one cohort's header added — a match that already reads that header is
/// left as it is — its filters with [`COHORT_HEADER`] set, no name, and `to` as its only
/// backend with the filters of the rule's first backend. None when no match is left or too
/// many.
fn cohort_rule(
    rule: &HTTPRouteRule,
    deployment: &str,
    matches: &[RequestMatch],
    to: &str,
) -> Option<HTTPRouteRule> {
    let own: Vec<Value> = match rule.other.get("matches").and_then(Value::as_array) {
        Some(m) if !m.is_empty() => m.clone(),
        _ => vec![json!({"path": {"type": "PathPrefix", "value": "/"}})],
    };
    let mut cohort_matches = Vec::new();
    for m in &own {
        let headers = m["headers"].as_array().cloned().unwrap_or_default();
        for c in matches {
            // Cookies are refused on this target (`validate`): RegularExpression header
            // matches are optional in the Gateway API.
            let Some(name) = &c.header else { continue };
            let read = |h: &Value| {
                h["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            };
            if headers.iter().any(read) {
                continue;
            }
            let mut m = m.clone();
            let mut with = headers.clone();
            with.push(json!({"type": "Exact", "name": name, "value": c.value}));
            m["headers"] = Value::Array(with);
            cohort_matches.push(m);
        }
    }
    if cohort_matches.is_empty() || cohort_matches.len() > MAX_MATCHES {
        return None;
    }
    let marker = json!({"name": COHORT_HEADER, "value": deployment});
    let mut filters = filters_of(rule);
    // One RequestHeaderModifier per rule: the marker joins the rule's own, if it has one.
    match filters
        .iter_mut()
        .find(|f| f["type"] == "RequestHeaderModifier")
    {
        Some(f) => {
            let mut set = f["requestHeaderModifier"]["set"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            set.retain(|h| {
                !h["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(COHORT_HEADER))
            });
            set.push(marker);
            f["requestHeaderModifier"]["set"] = Value::Array(set);
        }
        None => filters.push(json!({"type": "RequestHeaderModifier",
            "requestHeaderModifier": {"set": [marker]}})),
    }
    let mut other = rule.other.clone();
    other.remove("name");
    other.insert("matches".into(), Value::Array(cohort_matches));
    other.insert("filters".into(), Value::Array(filters));
    Some(HTTPRouteRule {
        backend_refs: vec![HTTPBackendRef {
            weight: Some(1),
            other: rule
                .backend_refs
                .first()
                .map(|b| b.other.clone())
                .unwrap_or_default(),
            ..service_ref(to)
        }],
        other,
    })
}

/// The route's rules with the A/B cohort of `deployment` (the strategy's header `matches`) sent
/// to the Service `to` (the candidate's; None: no cohort now — no candidate with pods to take
/// it). Cohort rules added before are taken out; then each rule whose every backend is the
/// deployment's gets a cohort rule ([`cohort_rule`]), added at the end of the list: a rule
/// with more header matches takes precedence over its own rule in every gateway, and a tie with
/// anyone else's rule goes to theirs (it comes first). Left out when the route would have more
/// than 16 rules.
pub fn with_cohorts(
    rules: Vec<HTTPRouteRule>,
    (deployment, namespace): (&str, &str),
    services: &BTreeMap<String, String>,
    matches: &[RequestMatch],
    to: Option<&str>,
) -> Vec<HTTPRouteRule> {
    let who = (deployment, namespace);
    let mut out: Vec<HTTPRouteRule> = rules
        .into_iter()
        .filter(|r| !is_cohort(r, deployment, services))
        .collect();
    let Some(to) = to.filter(|_| !matches.is_empty()) else {
        return out;
    };
    let cohorts: Vec<HTTPRouteRule> = out
        .iter()
        .filter(|r| {
            !r.backend_refs.is_empty() && r.backend_refs.iter().all(|b| ours(b, who, services))
        })
        .filter_map(|r| cohort_rule(r, deployment, matches, to))
        .collect();
    if out.len() + cohorts.len() <= MAX_RULES {
        out.extend(cohorts);
    }
    out
}

/// Whether `f` is a RequestMirror filter to one of the deployment's per-version `services` in
/// the route's `namespace`: one Slipway writes, and takes out again.
fn is_our_mirror(f: &Value, namespace: &str, services: &BTreeMap<String, String>) -> bool {
    let b = &f["requestMirror"]["backendRef"];
    f["type"] == "RequestMirror"
        && b["kind"].as_str().unwrap_or("Service") == "Service"
        && b["group"].as_str().unwrap_or("").is_empty()
        && b["namespace"].as_str().is_none_or(|n| n == namespace)
        && b["name"]
            .as_str()
            .is_some_and(|n| services.values().any(|s| s == n))
}

/// The most filters a rule may have (the Gateway API's bound): a rule that would have more
/// gets no copies.
const MAX_FILTERS: usize = 16;

/// The route's rules with the deployment's copies of requests: each rule whose every backend is
/// the deployment's (but a cohort rule) gets one RequestMirror filter per `(Service, percent)`
/// of `mirrors`, after its own filters — `percent` left out at 100. The RequestMirror filters to
/// the deployment's per-version `services` written before are taken out first, from the rules
/// that send requests to the deployment (another deployment's rules are not this one's).
pub fn with_mirrors(
    rules: Vec<HTTPRouteRule>,
    (deployment, namespace): (&str, &str),
    services: &BTreeMap<String, String>,
    mirrors: &[(String, u32)],
) -> Vec<HTTPRouteRule> {
    let who = (deployment, namespace);
    rules
        .into_iter()
        .map(|mut rule| {
            let mut filters = filters_of(&rule);
            let had = filters.len();
            if rule.backend_refs.iter().any(|b| ours(b, who, services)) {
                filters.retain(|f| !is_our_mirror(f, namespace, services));
            }
            let all_ours = !rule.backend_refs.is_empty()
                && rule.backend_refs.iter().all(|b| ours(b, who, services))
                && !is_cohort(&rule, deployment, services);
            let added =
                all_ours && !mirrors.is_empty() && filters.len() + mirrors.len() <= MAX_FILTERS;
            if added {
                filters.extend(mirrors.iter().map(|(service, percent)| {
                    let mut m = json!({"backendRef": {"group": "", "kind": "Service", "name": service, "port": SERVICE_PORT}});
                    if *percent < 100 {
                        m["percent"] = json!(percent);
                    }
                    json!({"type": "RequestMirror", "requestMirror": m})
                }));
            }
            if added || filters.len() != had {
                if filters.is_empty() {
                    rule.other.remove("filters");
                } else {
                    rule.other.insert("filters".into(), Value::Array(filters));
                }
            }
            rule
        })
        .collect()
}

/// Whether some rule of the route names the Service `service` of the route's `namespace`: as a
/// backend, or as where a RequestMirror filter sends its copies.
pub fn names(rules: &[HTTPRouteRule], service: &str, namespace: &str) -> bool {
    let one = BTreeMap::from([(String::new(), service.to_string())]);
    rules.iter().any(|r| {
        r.backend_refs
            .iter()
            .any(|b| ours(b, ("", namespace), &one))
            || r.other
                .get("filters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|f| is_our_mirror(f, namespace, &one))
    })
}

/// The Services of `mirrors` (Service of the route's `namespace`, percent below 100) whose
/// RequestMirror filter in `rules` lost its `percent`: a route whose CRD predates percentage
/// mirroring (GEP-3171) keeps no share, and its gateway would copy every request.
pub fn lost_percent(
    rules: &[HTTPRouteRule],
    namespace: &str,
    mirrors: &[(String, u32)],
) -> Vec<String> {
    let filters: Vec<&Value> = rules
        .iter()
        .filter_map(|r| r.other.get("filters").and_then(Value::as_array))
        .flatten()
        .filter(|f| f["type"] == "RequestMirror")
        .collect();
    mirrors
        .iter()
        .filter(|(service, percent)| {
            let one = BTreeMap::from([(String::new(), service.clone())]);
            *percent < 100
                && filters.iter().any(|f| {
                    is_our_mirror(f, namespace, &one) && f["requestMirror"].get("percent").is_none()
                })
        })
        .map(|(service, _)| service.clone())
        .collect()
}

#[cfg(test)]
#[path = "gateway_tests.rs"]
mod tests;
