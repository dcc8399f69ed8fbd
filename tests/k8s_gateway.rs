//! Issue 22 §3: exact splits in a cluster through the Gateway API, on a real kube-apiserver
//! with an HTTPRoute CRD installed (the real group, version and kind; its schema left open —
//! the upstream CRD files cannot be fetched here, and the controller keeps every field it does
//! not model). Each step's percentages are the route's backend weights, one Service per
//! version; the route's other rules and fields are kept; a route that does not serve the
//! deployment stalls it with the reason.

mod support;

use std::time::Duration;

use support::apiserver::ApiServer;
use support::k8s_mode::{Controller, get, move_alias};
use support::kubelet::Kubelet;
use support::registry::{production, versions};

const ROUTE_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: httproutes.gateway.networking.k8s.io
  # A *.k8s.io group needs it, as the upstream CRDs carry it.
  annotations: {api-approved.kubernetes.io: "https://github.com/kubernetes-sigs/gateway-api/pull/3328"}
spec:
  group: gateway.networking.k8s.io
  names: {kind: HTTPRoute, listKind: HTTPRouteList, plural: httproutes, singular: httproute}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
            status: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;

fn registry(route: &str, strategy: &str) -> String {
    let model = r#"
apiVersion: slipway.dev/v1alpha1
kind: RegisteredModel
metadata: {name: pitch-frames}
spec:
  description: Football frame classifier.
  owners: ["group:ml-leads"]
"#;
    let deployment = format!(
        r#"---
apiVersion: slipway.dev/v1alpha1
kind: ModelDeployment
metadata: {{name: pitch-frames-api}}
spec:
  model: pitch-frames
  alias: production
  target:
    kubernetes:
      image: "registry.example/pitch-frames-server:1.4"
      replicas: 2
      port: 8080
      traffic: {{gatewayAPI: {{httpRoute: {route}}}}}
  strategy:
    type: Canary
    steps:
      - {{weight: 10, pause: 3s}}
      - {{weight: 35, pause: 3s}}
    autoRollback: true
{strategy}"#
    );
    [
        model.to_string(),
        versions("pitch-frames", &["7", "8"], "model.json"),
        production("pitch-frames", "7"),
        deployment,
    ]
    .concat()
}

const ROUTE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: pitch-frames
  # Whoever may edit the route lets the deployment set its weights.
  annotations: {slipway.dev/deployments: pitch-frames-api}
spec:
  parentRefs: [{name: public-gateway}]
  hostnames: [frames.example.com]
  rules:
    - matches: [{path: {type: PathPrefix, value: /predict}}]
      backendRefs: [{name: pitch-frames-api, port: 80}]
      timeouts: {request: 10s}
    - matches: [{path: {type: PathPrefix, value: /docs}}]
      backendRefs: [{name: docs, port: 80}]
"#;

/// The first rule's backends as `service=weight` pairs.
fn backends(api: &ApiServer) -> String {
    get(
        api,
        &["httproute", "pitch-frames"],
        r#"{range .spec.rules[0].backendRefs[*]}{.name}={.weight} {end}"#,
    )
    .trim()
    .to_string()
}

fn setup(route: &str, annotated: bool) -> (ApiServer, Kubelet) {
    setup_with(route, annotated, "")
}

/// [`setup`], with `strategy` (YAML lines) added to the deployment's strategy.
fn setup_with(route: &str, annotated: bool, strategy: &str) -> (ApiServer, Kubelet) {
    setup_registry(annotated, &registry(route, strategy))
}

/// The route's CRD, the route and the `registry` (YAML) on a new API server, and a kubelet.
fn setup_registry(annotated: bool, registry: &str) -> (ApiServer, Kubelet) {
    let api = ApiServer::start();
    api.install_crds();
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", ROUTE_CRD);
    assert_eq!(run.code, 0, "{}", run.stderr);
    support::eventually(Duration::from_secs(30), || {
        (api.kubectl(&["get", "httproutes"], "admin").code == 0).then_some(())
    });
    let written = if annotated {
        ROUTE.to_string()
    } else {
        ROUTE.replace(
            "  annotations: {slipway.dev/deployments: pitch-frames-api}\n",
            "",
        )
    };
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", &written);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", registry);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let kubelet = Kubelet::start(&api.kubeconfig, "default");
    (api, kubelet)
}

#[test]
fn each_step_is_the_routes_exact_weights_over_one_service_per_version() {
    let (api, _kubelet) = setup("pitch-frames", true);
    let controller = Controller::start(&api, "controller-a");
    let wait = |want: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            let now = backends(&api);
            if now == want {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "route backends {now:?}, want {want:?}\n{}",
                controller.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait("pitch-frames-api-v7=100");
    assert_eq!(
        get(&api, &["svc", "pitch-frames-api-v7"], "{.spec.selector}"),
        r#"{"slipway.dev/deployment":"pitch-frames-api","slipway.dev/version":"7"}"#
    );
    // Every step, exactly — not the 1-of-2-replicas ratio a Service alone would give.
    move_alias(&api, "8");
    // (The first step may be written before the first look after the move.)
    let mut seen = vec!["pitch-frames-api-v7=100".to_string()];
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !seen.contains(&"pitch-frames-api-v8=100".to_string()) {
        let now = backends(&api);
        if seen.last() != Some(&now) {
            seen.push(now);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{seen:?}\n{}",
            controller.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        seen,
        [
            "pitch-frames-api-v7=100",
            "pitch-frames-api-v7=90 pitch-frames-api-v8=10",
            "pitch-frames-api-v7=65 pitch-frames-api-v8=35",
            "pitch-frames-api-v8=100",
        ]
    );
    // The route's other rule and fields are as written.
    let route = api.kubectl(&["get", "httproute", "pitch-frames", "-o", "json"], "admin");
    let route: serde_json::Value = serde_json::from_str(&route.stdout).unwrap();
    assert_eq!(route["spec"]["hostnames"][0], "frames.example.com");
    assert_eq!(route["spec"]["parentRefs"][0]["name"], "public-gateway");
    assert_eq!(route["spec"]["rules"][0]["timeouts"]["request"], "10s");
    assert_eq!(
        route["spec"]["rules"][0]["matches"][0]["path"]["value"],
        "/predict"
    );
    assert_eq!(
        route["spec"]["rules"][1]["backendRefs"],
        serde_json::json!([{"name": "docs", "port": 80}])
    );
    // 7 no longer serves: its Service goes.
    support::eventually(Duration::from_secs(30), || {
        (api.kubectl(&["get", "svc", "pitch-frames-api-v7"], "admin")
            .code
            != 0)
            .then_some(())
    });
}

/// The deployment's stall message once it names `needle`.
fn stalled_with(api: &ApiServer, controller: &Controller, needle: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let stalled = get(
            api,
            &["mdeploy", "pitch-frames-api"],
            r#"{.status.conditions[?(@.type=="Stalled")].message}"#,
        );
        if stalled.contains(needle) {
            return stalled;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no stall naming {needle}: {stalled}\n{}",
            controller.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_route_that_is_missing_stalls_the_deployment_with_the_reason() {
    let (api, _kubelet) = setup("missing-route", true);
    let controller = Controller::start(&api, "controller-a");
    let stalled = stalled_with(&api, &controller, "HTTPRoute default/missing-route");
    assert!(stalled.contains("does not exist"), "{stalled}");
    // No step is taken without the route: nothing serves.
    assert_eq!(backends(&api), "pitch-frames-api=");
}

/// The hostile review: a promoter could name another team's route in the namespace and have the
/// controller (which may update any HTTPRoute) rewrite it. A route is written only when it says
/// which deployments may set its weights.
#[test]
fn a_route_that_does_not_let_the_deployment_set_its_weights_is_left_alone() {
    let (api, _kubelet) = setup("pitch-frames", false);
    let controller = Controller::start(&api, "controller-a");
    let stalled = stalled_with(&api, &controller, "does not let ModelDeployment");
    assert!(
        stalled.contains("slipway.dev/deployments: pitch-frames-api"),
        "{stalled}"
    );
    assert_eq!(backends(&api), "pitch-frames-api=");
}

/// An A/B cohort through the route: while the candidate has traffic, a rule of its own — the
/// serving rule's matches with the cohort's header, the candidate's Service alone — is added
/// after the route's rules; it leaves with the rollout.
#[test]
fn a_cohort_goes_to_the_candidate_through_a_rule_of_its_own() {
    let (api, _kubelet) = setup_with(
        "pitch-frames",
        true,
        "    match: [{header: x-cohort, value: beta}]\n",
    );
    let controller = Controller::start(&api, "controller-a");
    let rules = || -> serde_json::Value {
        let r = api.kubectl(&["get", "httproute", "pitch-frames", "-o", "json"], "admin");
        serde_json::from_str::<serde_json::Value>(&r.stdout).unwrap_or_default()["spec"]["rules"]
            .clone()
    };
    support::eventually(Duration::from_secs(90), || {
        (backends(&api) == "pitch-frames-api-v7=100").then_some(())
    });
    assert_eq!(
        rules().as_array().map(Vec::len),
        Some(2),
        "no cohort without a candidate"
    );
    move_alias(&api, "8");
    let during = support::eventually(Duration::from_secs(90), || {
        let r = rules();
        (r.as_array().map(Vec::len) == Some(3)).then_some(r)
    });
    // The route's rules as they were (the first weighted), then the cohort's.
    let weighted: Vec<&str> = during[0]["backendRefs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["name"].as_str())
        .collect();
    assert_eq!(weighted, ["pitch-frames-api-v7", "pitch-frames-api-v8"]);
    assert_eq!(during[1]["backendRefs"][0]["name"], "docs");
    let cohort = &during[2];
    assert_eq!(
        cohort["backendRefs"],
        serde_json::json!([{"group": "", "kind": "Service", "name": "pitch-frames-api-v8", "port": 80, "weight": 1}]),
        "{during}\n{}",
        controller.log()
    );
    assert_eq!(
        cohort["matches"],
        serde_json::json!([{"path": {"type": "PathPrefix", "value": "/predict"},
                            "headers": [{"type": "Exact", "name": "x-cohort", "value": "beta"}]}])
    );
    assert_eq!(
        cohort["filters"][0]["requestHeaderModifier"]["set"][0],
        serde_json::json!({"name": "x-slipway-cohort", "value": "pitch-frames-api"})
    );
    assert_eq!(cohort["timeouts"]["request"], "10s");
    // Promoted: the cohort rule leaves; every request goes to 8 by the one weighted rule.
    support::eventually(Duration::from_secs(120), || {
        let r = rules();
        (r.as_array().map(Vec::len) == Some(2)
            && r[0]["backendRefs"]
                == serde_json::json!([{"group": "", "kind": "Service", "name": "pitch-frames-api-v8", "port": 80, "weight": 100}]))
        .then_some(())
    });
}

/// §4 in a cluster: a shadow step's candidate and a standing shadow each run pods for their share
/// of copies and get them through RequestMirror filters on the route's serving rule (the
/// gateway answers nobody from them); the step's copies stop when its weights move on, and a
/// standing shadow taken off the list leaves the route, its Deployment and its Service.
#[test]
fn shadows_get_copies_through_the_routes_mirror_filters() {
    // Four replicas: the shadow's quarter is one pod, the next step's half two.
    let registry = registry("pitch-frames", "")
        .replace("      replicas: 2\n", "      replicas: 4\n")
        .replace(
            "      - {weight: 10, pause: 3s}\n      - {weight: 35, pause: 3s}\n",
            "      - {weight: 0, mirror: 25, pause: 3s}\n      - {weight: 50, pause: 8s}\n",
        )
        .replace(
            "  strategy:\n",
            "  shadows: [{version: \"6\", mirror: 20}]\n  strategy:\n",
        )
        + &versions("pitch-frames", &["6"], "model.json");
    assert!(registry.contains("replicas: 4") && registry.contains("mirror: 25"));
    let (api, _kubelet) = setup_registry(true, &registry);
    let controller = Controller::start(&api, "controller-a");
    let mirrors = || -> Vec<String> {
        let r = api.kubectl(&["get", "httproute", "pitch-frames", "-o", "json"], "admin");
        let r: serde_json::Value = serde_json::from_str(&r.stdout).unwrap_or_default();
        let filters = r["spec"]["rules"][0]["filters"].as_array().cloned();
        filters
            .unwrap_or_default()
            .iter()
            .filter(|f| f["type"] == "RequestMirror")
            .map(|f| {
                let m = &f["requestMirror"];
                format!(
                    "{}@{}",
                    m["backendRef"]["name"].as_str().unwrap_or("?"),
                    m["percent"]
                )
            })
            .collect()
    };
    let shadow = ["pitch-frames-api-v6@20".to_string()];
    support::eventually(Duration::from_secs(90), || {
        (backends(&api) == "pitch-frames-api-v7=100" && mirrors() == shadow).then_some(())
    });
    // The standing shadow's pods: 20% of 2 replicas, rounded up; its own Service. They are not
    // behind the deployment's Service: it selects serving pods only.
    assert_eq!(
        get(&api, &["deploy", "pitch-frames-api-v6"], "{.spec.replicas}"),
        "1"
    );
    let label = |d: &str| {
        get(
            &api,
            &["deploy", d],
            r#"{.spec.template.metadata.labels.slipway\.dev/serving}"#,
        )
    };
    assert_eq!(label("pitch-frames-api-v6"), "false");
    assert_eq!(label("pitch-frames-api-v7"), "true");
    let shadows = || {
        get(
            &api,
            &["mdeploy", "pitch-frames-api"],
            "{range .status.shadows[*]}{.version}={.mirror} {end}",
        )
    };
    assert_eq!(shadows().trim(), "6=20", "the status lists the shadow");
    support::eventually(Duration::from_secs(30), || {
        (get(&api, &["svc", "pitch-frames-api"], "{.spec.selector}")
            == r#"{"slipway.dev/deployment":"pitch-frames-api","slipway.dev/serving":"true"}"#)
            .then_some(())
    });
    assert_eq!(
        get(&api, &["svc", "pitch-frames-api-v6"], "{.spec.selector}"),
        r#"{"slipway.dev/deployment":"pitch-frames-api","slipway.dev/version":"6"}"#
    );
    move_alias(&api, "8");
    // The shadow step: 8 runs for its copies, the route answers from 7 alone.
    let step = support::eventually(Duration::from_secs(90), || {
        let m = mirrors();
        (m.len() == 2).then_some((m, backends(&api)))
    });
    assert_eq!(
        step,
        (
            vec!["pitch-frames-api-v8@25".to_string(), shadow[0].clone()],
            "pitch-frames-api-v7=100".to_string()
        ),
        "{}",
        controller.log()
    );
    assert_eq!(
        get(&api, &["deploy", "pitch-frames-api-v8"], "{.spec.replicas}"),
        "1"
    );
    assert_eq!(
        label("pitch-frames-api-v8"),
        "false",
        "a shadow answers nobody"
    );
    // The next step gives 8 its weight; its copies stop, the standing shadow's go on, and its
    // pods serve — as many as the step's half needs (not the shadow's one).
    support::eventually(Duration::from_secs(90), || {
        (backends(&api) == "pitch-frames-api-v7=50 pitch-frames-api-v8=50").then_some(())
    });
    assert_eq!(mirrors(), shadow);
    assert_eq!(label("pitch-frames-api-v8"), "true");
    let replicas = || get(&api, &["deploy", "pitch-frames-api-v8"], "{.spec.replicas}");
    assert_eq!(replicas(), "2");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(replicas(), "2", "kept at the step's count");
    support::eventually(Duration::from_secs(120), || {
        (backends(&api) == "pitch-frames-api-v8=100").then_some(())
    });
    assert_eq!(mirrors(), shadow);
    // Taken off the list: its copies, Deployment and Service go.
    let run = api.kubectl(
        &[
            "patch",
            "mdeploy",
            "pitch-frames-api",
            "--type=json",
            "-p",
            r#"[{"op": "remove", "path": "/spec/shadows"}]"#,
        ],
        "admin",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    support::eventually(Duration::from_secs(60), || {
        shadows().trim().is_empty().then_some(())
    });
    support::eventually(Duration::from_secs(60), || {
        let gone = |what: &[&str]| api.kubectl(what, "admin").code != 0;
        (mirrors().is_empty()
            && gone(&["get", "deploy", "pitch-frames-api-v6"])
            && gone(&["get", "svc", "pitch-frames-api-v6"]))
        .then_some(())
    });
}

/// The hostile review: shadows on a target that cannot mirror, admitted without the webhook,
/// must not run as pods behind the deployment's Service (answering users by replica ratio).
#[test]
fn shadows_where_the_target_cannot_mirror_stall_the_deployment() {
    let registry = registry("pitch-frames", "")
        .replace(
            "      traffic: {gatewayAPI: {httpRoute: pitch-frames}}\n",
            "",
        )
        .replace(
            "  strategy:\n",
            "  shadows: [{version: \"8\", mirror: 100}]\n  strategy:\n",
        );
    assert!(!registry.contains("gatewayAPI") && registry.contains("shadows:"));
    let (api, _kubelet) = setup_registry(true, &registry);
    let controller = Controller::start(&api, "controller-a");
    let stalled = stalled_with(&api, &controller, "spec.shadows");
    assert!(stalled.contains("traffic.gatewayAPI"), "{stalled}");
    assert_eq!(
        api.kubectl(&["get", "deploy", "-o", "name"], "admin")
            .stdout
            .trim(),
        "",
        "nothing runs"
    );
}
