//! Tests of [`super`]: the route's rules as each function leaves them.
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
            {"group": "", "kind": "Service", "name": "api-v7", "port": 80, "weight": 75},
            {"group": "", "kind": "Service", "name": "api-v8", "port": 80, "weight": 25}
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
        serde_json::json!([{"group": "", "kind": "Service", "name": "api-v8", "port": 80, "weight": 100}])
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
        serde_json::json!([{"group": "", "kind": "Service", "name": "api-v8", "port": 80, "weight": 1, "filters": [{"type": "URLRewrite"}]}])
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
fn copies_go_to_each_shadow_from_the_rules_that_are_the_deployments_alone() {
    let before = rules(serde_json::json!([
        {"filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x-env", "value": "prod"}]}}],
         "backendRefs": [{"name": "api-v7", "port": 80, "weight": 100}]},
        {"backendRefs": [{"name": "api-v7", "port": 80}, {"name": "legacy", "port": 80}]},
        {"backendRefs": [{"name": "docs", "port": 80}],
         "filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "api-v8", "namespace": "other", "port": 80}}}]}
    ]));
    let who = ("api", "default");
    let mirrors = [("api-v8".to_string(), 50), ("api-v6".to_string(), 100)];
    let mut services = services();
    services.insert("6".into(), "api-v6".into());
    let after = with_mirrors(before.clone(), who, &services, &mirrors);
    let json = serde_json::to_value(&after).unwrap();
    // After the rule's own filter, one mirror per shadow; the percent left out at 100.
    assert_eq!(
        json[0]["filters"],
        serde_json::json!([
            {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x-env", "value": "prod"}]}},
            {"type": "RequestMirror", "requestMirror": {"backendRef": {"group": "", "kind": "Service", "name": "api-v8", "port": 80}, "percent": 50}},
            {"type": "RequestMirror", "requestMirror": {"backendRef": {"group": "", "kind": "Service", "name": "api-v6", "port": 80}}}
        ])
    );
    // A rule shared with another Service, and another namespace's mirror, are left alone.
    assert_eq!(after[1..], before[1..]);
    let named = |s: &str| names(&after, s, "default");
    assert!(named("api-v6") && named("api-v7") && !named("api-v9"));
    // Another namespace's Service of the same name is not named by a mirror to it.
    assert!(!names(&before[2..], "api-v8", "default"));
    // A gateway that dropped the share copies everything: found out.
    let mut dropped = after.clone();
    let f = dropped[0].other.get_mut("filters").unwrap();
    f[1]["requestMirror"]
        .as_object_mut()
        .unwrap()
        .remove("percent");
    assert_eq!(lost_percent(&dropped, "default", &mirrors), ["api-v8"]);
    assert!(lost_percent(&after, "default", &mirrors).is_empty());
    // Written again: the same; with fewer shadows, the others' filters leave.
    assert_eq!(with_mirrors(after.clone(), who, &services, &mirrors), after);
    let one = with_mirrors(after.clone(), who, &services, &mirrors[1..]);
    assert_eq!(
        serde_json::to_value(&one).unwrap()[0]["filters"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(with_mirrors(after, who, &services, &[]), before);
    // A rule with no room for the copies gets none.
    let mut full = before.clone();
    full[0].other.insert(
        "filters".into(),
        serde_json::json!(vec![serde_json::json!({"type": "ExtensionRef"}); 15]),
    );
    assert_eq!(with_mirrors(full.clone(), who, &services, &mirrors), full);
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
