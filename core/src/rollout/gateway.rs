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
                name: services.get(v)?.clone(),
                port: Some(SERVICE_PORT),
                weight: Some(i32::try_from(*w).unwrap_or(i32::MAX)),
                ..HTTPBackendRef::default()
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
    let mut filters = rule
        .other
        .get("filters")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
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
            name: to.to_string(),
            port: Some(SERVICE_PORT),
            other: rule
                .backend_refs
                .first()
                .map(|b| b.other.clone())
                .unwrap_or_default(),
            ..HTTPBackendRef::default()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml: serde_json::Value) -> Vec<HTTPRouteRule> {
        serde_json::from_value(yaml).unwrap()
    }

    fn services() -> BTreeMap<String, String> {
        [("7", "api-v7"), ("8", "api-v8")]
            .into_iter()
            .map(|(v, s)| (v.to_string(), s.to_string()))
            .collect()
    }

    #[test]
    fn the_rule_that_serves_the_deployment_gets_one_backend_per_version_by_weight() {
        let before = rules(serde_json::json!([
            {"matches": [{"path": {"type": "PathPrefix", "value": "/predict"}}],
             "backendRefs": [{"name": "api", "port": 80}],
             "timeouts": {"request": "10s"}},
            {"backendRefs": [{"name": "docs", "port": 80}]}
        ]));
        let weights = BTreeMap::from([("7".to_string(), 75), ("8".to_string(), 25)]);
        let after = weighted(&before, ("api", "default"), &services(), &weights).unwrap();
        let json = serde_json::to_value(&after).unwrap();
        assert_eq!(
            json[0]["backendRefs"],
            serde_json::json!([
                {"name": "api-v7", "port": 80, "weight": 75},
                {"name": "api-v8", "port": 80, "weight": 25}
            ])
        );
        // Everything else as written.
        assert_eq!(json[0]["matches"][0]["path"]["value"], "/predict");
        assert_eq!(json[0]["timeouts"]["request"], "10s");
        assert_eq!(json[1], serde_json::to_value(&before[1]).unwrap());
        // The next step rewrites the same backends; a version without traffic leaves.
        let all = BTreeMap::from([("7".to_string(), 0), ("8".to_string(), 100)]);
        let done = weighted(&after, ("api", "default"), &services(), &all).unwrap();
        assert_eq!(
            serde_json::to_value(&done).unwrap()[0]["backendRefs"],
            serde_json::json!([{"name": "api-v8", "port": 80, "weight": 100}])
        );
    }

    #[test]
    fn a_cohort_gets_a_rule_of_its_own_for_each_rule_that_serves_the_deployment_alone() {
        let before = rules(serde_json::json!([
            {"name": "predict",
             "matches": [{"path": {"type": "PathPrefix", "value": "/predict"}},
                         {"path": {"type": "Exact", "value": "/v2"}, "headers": [{"name": "X-Cohort", "value": "1"}]}],
             "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x-env", "value": "prod"}]}}],
             "backendRefs": [{"name": "api-v7", "port": 80, "weight": 90, "filters": [{"type": "URLRewrite"}]},
                             {"name": "api-v8", "port": 80, "weight": 10}],
             "timeouts": {"request": "10s"}},
            {"backendRefs": [{"name": "docs", "port": 80}]},
            {"backendRefs": [{"name": "api-v7", "port": 80}, {"name": "legacy", "port": 80}]}
        ]));
        let cohort: Vec<RequestMatch> = serde_json::from_value(serde_json::json!([
            {"header": "x-cohort", "value": "beta"},
            {"cookie": "plan", "value": "b"}
        ]))
        .unwrap();
        let who = ("api", "default");
        let after = with_cohorts(before.clone(), who, &services(), &cohort, Some("api-v8"));
        // The rules as they were, then one cohort rule: only for the rule that is all ours (a
        // rule shared with another Service's backend is not taken over).
        assert_eq!(after.len(), 4);
        assert_eq!(after[..3], before[..]);
        let json = serde_json::to_value(&after[3]).unwrap();
        assert_eq!(
            json["backendRefs"],
            serde_json::json!([{"name": "api-v8", "port": 80, "filters": [{"type": "URLRewrite"}]}])
        );
        // Each match once with the header; the match that reads it already is left out; the
        // cookie is not matched here.
        assert_eq!(
            json["matches"],
            serde_json::json!([{"path": {"type": "PathPrefix", "value": "/predict"},
                                "headers": [{"type": "Exact", "name": "x-cohort", "value": "beta"}]}])
        );
        // The marker joins the rule's own header modifier; the copy has no name.
        assert_eq!(
            json["filters"],
            serde_json::json!([{"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [
                {"name": "x-env", "value": "prod"}, {"name": COHORT_HEADER, "value": "api"}]}}])
        );
        assert!(json.get("name").is_none());
        assert_eq!(json["timeouts"]["request"], "10s");
        // Written again, the cohort rule is replaced, not added twice; without a candidate (or
        // without matches) it leaves.
        let again = with_cohorts(after.clone(), who, &services(), &cohort, Some("api-v8"));
        assert_eq!(again, after);
        assert_eq!(
            with_cohorts(after.clone(), who, &services(), &cohort, None),
            before
        );
        assert_eq!(
            with_cohorts(after.clone(), who, &services(), &[], Some("api-v8")),
            before
        );
        // Another deployment's cohort rules are not this one's; a marked rule whose backend is
        // not one of the deployment's Services is not taken for one.
        let other = with_cohorts(
            after.clone(),
            ("web", "default"),
            &services(),
            &cohort,
            None,
        );
        assert_eq!(other, after);
        let mut spoofed = after.clone();
        spoofed[3].backend_refs[0].name = "docs".into();
        assert_eq!(
            with_cohorts(spoofed.clone(), who, &services(), &[], None),
            spoofed
        );
        // A route with no room for the cohort keeps its rules.
        let full: Vec<HTTPRouteRule> = std::iter::repeat_n(before[0].clone(), 16).collect();
        assert_eq!(
            with_cohorts(full.clone(), who, &services(), &cohort, Some("api-v8")),
            full
        );
    }

    #[test]
    fn other_backends_keep_their_place_and_a_route_that_does_not_serve_the_deployment_is_refused() {
        let before = rules(serde_json::json!([
            {"backendRefs": [{"name": "legacy", "port": 80, "weight": 10},
                             {"name": "api", "namespace": "default", "port": 80, "weight": 90,
                              "filters": [{"type": "RequestHeaderModifier"}]},
                             {"name": "api", "namespace": "other", "port": 80}]}
        ]));
        let weights = BTreeMap::from([("7".to_string(), 100)]);
        let after = weighted(&before, ("api", "default"), &services(), &weights).unwrap();
        let names: Vec<&str> = after[0]
            .backend_refs
            .iter()
            .map(|b| b.name.as_str())
            .collect();
        // Another namespace's Service of the same name is not this deployment's; the route's
        // own namespace written out is; the filters stay on the new backend.
        assert_eq!(names, ["legacy", "api-v7", "api"]);
        assert_eq!(
            serde_json::to_value(&after[0].backend_refs[1]).unwrap()["filters"][0]["type"],
            "RequestHeaderModifier"
        );
        let mut opted = BTreeMap::new();
        assert!(!lets(Some(&opted), "api"));
        opted.insert(OPT_IN.to_string(), "web, api".to_string());
        assert!(lets(Some(&opted), "api") && !lets(Some(&opted), "ap") && !lets(None, "api"));
        let unrelated = rules(serde_json::json!([{"backendRefs": [{"name": "docs"}]}]));
        let why = weighted(&unrelated, ("api", "default"), &services(), &weights).unwrap_err();
        assert!(
            why.contains("no rule of it sends requests to Service api"),
            "{why}"
        );
        let none = BTreeMap::from([("7".to_string(), 0)]);
        assert!(weighted(&before, ("api", "default"), &services(), &none).is_err());
    }
}
