//! The Helm chart, rendered and linted by a real Helm engine and applied to a real API server.

mod support;

use serde_json::json;
use support::apiserver::ApiServer;
use support::helm;

#[test]
fn the_chart_lints_clean() {
    let (passed, findings) = helm::lint();
    assert!(passed, "{findings:#}");
    assert_eq!(findings["errors"], json!([]), "{findings:#}");
    // Warnings (severity 2 and up) are problems too; informational notes are not.
    let serious: Vec<&serde_json::Value> = findings["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["severity"].as_u64().unwrap_or(0) >= 2)
        .collect();
    assert!(serious.is_empty(), "{serious:#?}");
}

#[test]
fn wrong_values_fail_rendering_with_a_reason() {
    let err = helm::render(
        "slipway",
        &json!({"webhook": {"certificate": {"mode": "secret", "secretName": "tls"}}}),
    )
    .unwrap_err();
    assert!(
        err.contains("webhook.certificate.caBundle is required with mode: secret"),
        "{err}"
    );
    let err = helm::render(
        "slipway",
        &json!({"roleBindings": [{"role": "admin", "group": "ml-leads"}]}),
    )
    .unwrap_err();
    assert!(
        err.contains(
            "roleBindings: role \"admin\" is not one of viewer, publisher, promoter, approver"
        ),
        "{err}"
    );
    let err = helm::render(
        "slipway",
        &json!({"webhook": {"certificate": {"mode": "maybe"}}}),
    )
    .unwrap_err();
    assert!(
        err.contains("webhook.certificate.mode must be generate or secret"),
        "{err}"
    );
}

#[test]
fn the_rendered_chart_installs_on_a_real_api_server_and_its_roles_mean_what_they_say() {
    let values = json!({
        "logFormat": "json",
        "extraEnv": [{"name": "AWS_REGION", "value": "eu-west-1"}],
        "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/slipway"}},
        "roleBindings": [
            {"role": "promoter", "group": "ml-engineers"},
            {"role": "approver", "group": "ml-leads"},
            {"role": "viewer", "group": "system:authenticated"},
        ],
    });
    let manifests = helm::render("slipway", &values).unwrap();
    // The AWS settings of SageMaker deployments reach the controller.
    assert!(
        manifests.contains("- name: AWS_REGION\n              value: eu-west-1"),
        "{manifests}"
    );
    assert!(
        manifests.contains("eks.amazonaws.com/role-arn: arn:aws:iam::123456789012:role/slipway")
    );
    let kinds: Vec<&str> = manifests
        .lines()
        .filter_map(|l| l.strip_prefix("kind: "))
        .collect();
    for (kind, n) in [
        ("ServiceAccount", 1),
        ("ClusterRole", 5),
        ("ClusterRoleBinding", 4),
        ("Role", 1),
        ("RoleBinding", 1),
        ("Deployment", 1),
        ("Service", 1),
        ("ValidatingWebhookConfiguration", 1),
        ("MutatingWebhookConfiguration", 1),
        // The default policy set, governing every namespace without policies of its own.
        ("PromotionPolicy", 10),
    ] {
        assert_eq!(
            kinds.iter().filter(|k| **k == kind).count(),
            n,
            "{kind}: {kinds:?}"
        );
    }
    for arg in [
        "- controller",
        "- --log-format=json",
        "- --webhook-listen=0.0.0.0:9443",
        "- --webhook-config=slipway",
        "- --webhook-host=slipway.slipway.svc",
        "- --webhook-secret=slipway-webhook-tls",
        "- --policy-namespace=slipway",
    ] {
        assert!(manifests.contains(arg), "{arg}\n{manifests}");
    }

    // The chart's copy of the default set is the set.
    assert_eq!(
        std::fs::read_to_string(support::root().join("charts/slipway/files/default-policies.yaml"))
            .unwrap(),
        std::fs::read_to_string(support::root().join("policies/default.yaml")).unwrap(),
        "copy policies/default.yaml to charts/slipway/files/default-policies.yaml"
    );
    let off = helm::render(
        "slipway",
        &json!({"policies": {"install": false, "namespace": "platform"}}),
    )
    .unwrap();
    assert!(
        !off.contains("kind: PromotionPolicy") && off.contains("- --policy-namespace=platform")
    );

    let api = ApiServer::start();
    api.install_crds();
    let run = api.kubectl(&["create", "namespace", "slipway"], "admin");
    assert_eq!(run.code, 0, "{}", run.stderr);
    // A server-side dry run first (what `helm install --dry-run=server` does), then for real.
    let dry = api.kubectl_stdin(
        &["apply", "--dry-run=server", "-f", "-"],
        "admin",
        &manifests,
    );
    assert_eq!(dry.code, 0, "{}{}", dry.stdout, dry.stderr);
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", &manifests);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("deployment.apps/slipway created"),
        "{}",
        run.stdout
    );

    let can = |user: &str, verb: &str, what: &str| {
        let run = api.kubectl(
            &["auth", "can-i", verb, what, "-n", "default", "--as", user],
            "admin",
        );
        run.stdout.trim() == "yes"
    };
    let groups = |user: &str, gs: &[&str]| {
        let mut args = vec!["--as".to_string(), user.to_string()];
        for g in gs {
            args.push("--as-group".into());
            args.push(g.to_string());
        }
        args
    };
    let can_as = |user: &str, gs: &[&str], verb: &str, what: &str| {
        let mut args: Vec<String> = ["auth", "can-i", verb, what, "-n", "default"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(groups(user, gs));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        api.kubectl(&args, "admin").stdout.trim() == "yes"
    };
    // Engineers promote but cannot approve; leads approve; everyone can read.
    assert!(can_as(
        "erin",
        &["ml-engineers", "system:authenticated"],
        "patch",
        "modelaliases.slipway.dev"
    ));
    assert!(!can_as(
        "erin",
        &["ml-engineers", "system:authenticated"],
        "create",
        "approvals.slipway.dev"
    ));
    assert!(can_as(
        "alice",
        &["ml-leads", "system:authenticated"],
        "create",
        "approvals.slipway.dev"
    ));
    assert!(!can_as(
        "alice",
        &["ml-leads", "system:authenticated"],
        "patch",
        "promotionpolicies.slipway.dev"
    ));
    assert!(can_as(
        "bob",
        &["system:authenticated"],
        "list",
        "modelversions.slipway.dev"
    ));
    assert!(!can_as(
        "bob",
        &["system:authenticated"],
        "create",
        "modelversions.slipway.dev"
    ));
    // The controller's service account can do its work.
    let sa = "system:serviceaccount:slipway:slipway";
    assert!(can(sa, "patch", "modelaliases.slipway.dev/status"));
    assert!(can(sa, "create", "jobs.batch"));
    // That the service account an evaluation Job is to run as exists.
    assert!(can(sa, "get", "serviceaccounts"));
    assert!(!can(sa, "create", "serviceaccounts"));
    // Its Lease and certificate live in its own namespace; other namespaces' Secrets it may
    // read by name (secretKeyRef) but never list.
    let can_in = |ns: &str, verb: &str, what: &str| {
        let run = api.kubectl(
            &["auth", "can-i", verb, what, "-n", ns, "--as", sa],
            "admin",
        );
        run.stdout.trim() == "yes"
    };
    assert!(can_in("slipway", "update", "leases.coordination.k8s.io"));
    assert!(!can(sa, "update", "leases.coordination.k8s.io"));
    assert!(can_in("slipway", "update", "secrets/slipway-webhook-tls"));
    assert!(!can_in("slipway", "update", "secrets/other"));
    assert!(can(sa, "get", "secrets"));
    assert!(!can(sa, "list", "secrets"));
    assert!(!can(sa, "watch", "secrets"));
    assert!(can(sa, "create", "tokenreviews.authentication.k8s.io"));
    // The promoter role is not folded into the built-in `edit` (aggregation is the controller
    // manager's work, which this API server runs without: the labels are what decide it).
    assert!(!manifests.contains("aggregate-to-edit"), "{manifests}");
    let folded = helm::render(
        "slipway",
        &json!({"userRoles": {"aggregatePromoterToEdit": true}}),
    )
    .unwrap();
    assert!(folded.contains("rbac.authorization.k8s.io/aggregate-to-edit: \"true\""));
    let run = api.kubectl(
        &[
            "auth",
            "can-i",
            "patch",
            "validatingwebhookconfigurations/slipway",
            "--as",
            sa,
        ],
        "admin",
    );
    assert_eq!(run.stdout.trim(), "yes", "{}", run.stderr);
    let run = api.kubectl(
        &[
            "auth",
            "can-i",
            "patch",
            "validatingwebhookconfigurations/other",
            "--as",
            sa,
        ],
        "admin",
    );
    assert_eq!(run.stdout.trim(), "no", "{}", run.stderr);

    // Watching one namespace, the controller's rights are a Role there, not cluster-wide.
    // (The policies stay as installed: with the webhook configured and no controller running,
    // a change to them could not be decided.)
    let values = json!({"watchNamespace": "models", "policies": {"install": false}});
    let manifests = helm::render("slipway", &values).unwrap();
    let run = api.kubectl(&["create", "namespace", "models"], "admin");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", &manifests);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(can_in("models", "create", "jobs.batch"));
    assert!(can_in("models", "get", "secrets"));
    assert!(!can_in("default", "create", "jobs.batch"));
    assert!(!can_in("default", "get", "secrets"));
    assert!(!can_in(
        "default",
        "patch",
        "modelaliases.slipway.dev/status"
    ));
}

/// Rollbacks written back: the repositories and the token reach the controller, with a
/// writable /tmp for the fetched repositories (the root filesystem stays read-only).
#[test]
fn write_back_values_reach_the_controller() {
    let values = json!({"writeBack": {
        "repositories": ["https://github.com/acme/registry.git", "https://git.internal/ml/r.git=acme/r"],
        "githubTokenSecret": "slipway-github",
    }});
    let manifests = helm::render("slipway", &values).unwrap();
    let deployment = helm::only(&manifests, &["Deployment"]);
    for want in [
        "- name: SLIPWAY_WRITE_BACK_REPOSITORIES\n              value: \"https://github.com/acme/registry.git,https://git.internal/ml/r.git=acme/r\"",
        "- name: SLIPWAY_GITHUB_TOKEN_FILE\n              value: /var/run/slipway/github/token",
        "- name: tmp\n              mountPath: /tmp",
        "- name: tmp\n          emptyDir: {sizeLimit: 1Gi}",
        "secretName: slipway-github",
        "readOnlyRootFilesystem: true",
    ] {
        assert!(deployment.contains(want), "{want}\n{deployment}");
    }
    // Without repositories: none of it.
    let plain = helm::only(
        &helm::render("slipway", &json!({})).unwrap(),
        &["Deployment"],
    );
    assert!(!plain.contains("WRITE_BACK"), "{plain}");
    assert!(!plain.contains("mountPath: /tmp"), "{plain}");
}
