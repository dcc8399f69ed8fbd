//! Exact splits through the Gateway API: the backends an HTTPRoute's rules get for a rollout's
//! weights. Pure; the Kubernetes home reads the route, asks this, and writes the route back.

use std::collections::BTreeMap;

use slipway_crd::gateway::{HTTPBackendRef, HTTPRouteRule};

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
