//! The operator's bounds.

use super::*;

fn bounds() -> Bounds {
    Bounds {
        destinations: vec!["hooks.slack.com".into(), "*.ci.example.com".into()],
        images: vec![
            "registry.example.com/ml/*".into(),
            "python:3.11".into(),
            "111122223333.dkr.ecr.eu-west-1.amazonaws.com/serving:*".into(),
        ],
        service_accounts: vec!["evaluator".into()],
        max_cpu: Some(4.0),
        max_memory: Some(16.0 * 1024f64.powi(3)),
        endpoint_urls: vec!["https://api.sagemaker.eu-west-1.amazonaws.com".into()],
        execution_roles: vec!["arn:aws:iam::111122223333:role/slipway-*".into()],
        extended_resources: vec!["nvidia.com/gpu".into()],
        max_timeout: Some(std::time::Duration::from_secs(6 * 3600)),
        instance_types: vec!["ml.m5.*".into()],
        max_instance_count: Some(2),
        tolerations: vec!["nvidia.com/gpu".into(), "ml.example.com/*".into()],
    }
}

#[test]
fn the_service_accounts_a_setup_counts_on_are_the_exact_names() {
    let mut b = bounds();
    b.service_accounts = vec!["evaluator".into(), "ml-*".into(), "*".into(), String::new()];
    assert_eq!(b.named_service_accounts(), vec!["evaluator"]);
}

#[test]
fn bounds_that_keep_everything_from_running_say_so() {
    assert!(bounds().setup_warnings().is_empty());
    let closed = Bounds {
        destinations: Vec::new(),
        images: Vec::new(),
        service_accounts: Vec::new(),
        max_cpu: None,
        max_memory: None,
        endpoint_urls: Vec::new(),
        execution_roles: Vec::new(),
        extended_resources: Vec::new(),
        max_timeout: None,
        instance_types: Vec::new(),
        max_instance_count: None,
        tolerations: Vec::new(),
    };
    let said = closed.setup_warnings();
    assert_eq!(said.len(), 3, "{said:?}");
    assert!(said[0].starts_with("no image is allowed (--allowed-images)"));
    assert!(said[1].starts_with("no destination is allowed"));
    assert!(said[2].starts_with("no SageMaker execution role is allowed"));
}

#[test]
fn destinations_match_hosts_not_strings() {
    let b = bounds();
    assert!(
        b.destination("https://hooks.slack.com/services/T/B/X")
            .is_ok()
    );
    assert!(
        b.destination("https://runs.ci.example.com/dispatch")
            .is_ok()
    );
    for bad in [
        "https://hooks.slack.com.evil.net/x",
        "https://hooks.slack.com@evil.net/x",
        "https://ci.example.com/x",
        "http://169.254.169.254/latest/meta-data",
        "file:///etc/passwd",
    ] {
        assert!(b.destination(bad).is_err(), "{bad}");
    }
    assert!(
        Bounds::default()
            .destination("https://hooks.slack.com/x")
            .unwrap_err()
            .contains("(none are)")
    );
}

#[test]
fn images_service_accounts_and_resources_are_bounded() {
    let b = bounds();
    assert!(b.image("registry.example.com/ml/eval:1").is_ok());
    assert!(b.image("python:3.11").is_ok());
    assert!(b.image("python:3.12").is_err());
    assert!(b.image("registry.example.com/other/x").is_err());
    let runner: RunnerSpec = serde_json::from_value(serde_json::json!({"kubernetes": {
        "image": "docker.io/attacker/miner", "serviceAccountName": "admin",
        "resources": {"requests": {"cpu": "500m", "memory": "64Gi"}, "limits": {"cpu": "lots"}}}}))
    .unwrap();
    let mut out = Vec::new();
    b.runner("spec.runner", &runner, &mut out);
    let fields: Vec<&str> = out.iter().map(|b| b.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.runner.kubernetes.image",
            "spec.runner.kubernetes.serviceAccountName",
            "spec.runner.kubernetes.resources.requests.memory",
            "spec.runner.kubernetes.resources.limits.cpu",
        ]
    );
    assert_eq!(quantity("500m"), Some(0.5));
    assert_eq!(quantity("16Gi"), Some(16.0 * 1024f64.powi(3)));
    assert_eq!(quantity("-1"), None);
}

#[test]
fn sagemaker_addresses_are_https_and_listed_and_roles_are_listed() {
    let b = bounds();
    let target = |url: Option<&str>, role: &str| slipway_crd::model_deployment::SageMakerTarget {
        endpoint_url: url.map(str::to_string),
        execution_role_arn: role.into(),
        image: "111122223333.dkr.ecr.eu-west-1.amazonaws.com/serving:1".into(),
        instance_type: "ml.m5.large".into(),
        instance_count: 2,
        ..Default::default()
    };
    let role = "arn:aws:iam::111122223333:role/slipway-serving";
    assert!(b.sagemaker(&target(None, role)).is_empty());
    assert!(
        b.sagemaker(&target(
            Some("https://api.sagemaker.eu-west-1.amazonaws.com"),
            role
        ))
        .is_empty()
    );
    let plain = b.sagemaker(&target(
        Some("http://api.sagemaker.eu-west-1.amazonaws.com"),
        role,
    ));
    assert!(plain[0].message.contains("plain HTTP"), "{plain:?}");
    let other = b.sagemaker(&target(Some("https://attacker.example.com"), role));
    assert!(other[0].message.contains("not among"), "{other:?}");
    let admin = b.sagemaker(&target(None, "arn:aws:iam::111122223333:role/admin"));
    assert_eq!(admin[0].field, "spec.target.sagemaker.executionRoleArn");
    let theirs = b.sagemaker(&slipway_crd::model_deployment::SageMakerTarget {
        image: "999999999999.dkr.ecr.eu-west-1.amazonaws.com/miner:1".into(),
        ..target(None, role)
    });
    assert_eq!(theirs[0].field, "spec.target.sagemaker.image");
    // Instance types and counts are bounded too: the bill is the operator's.
    let big = b.sagemaker(&slipway_crd::model_deployment::SageMakerTarget {
        instance_type: "ml.p5.48xlarge".into(),
        instance_count: 3,
        ..target(None, role)
    });
    let fields: Vec<&str> = big.iter().map(|b| b.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.target.sagemaker.instanceType",
            "spec.target.sagemaker.instanceCount"
        ]
    );
}

#[test]
fn what_is_not_written_is_bounded_too() {
    let b = bounds();
    // A container without limits gets the bounds as its limits; written ones stay.
    let r: Resources =
        serde_json::from_value(serde_json::json!({"limits": {"memory": "1Gi"}})).unwrap();
    let limited = b.limited(Some(&r));
    assert_eq!(limited.limits["cpu"], "4000m");
    assert_eq!(limited.limits["memory"], "1Gi");
    assert_eq!(
        b.limited(None).limits["memory"],
        format!("{}", 16u64 * 1024 * 1024 * 1024)
    );
    assert!(Bounds::default().limited(None).limits.is_empty());
    // Extended resources are refused unless allowed; timeouts are capped.
    let model: slipway_crd::RegisteredModel = serde_json::from_value(serde_json::json!({
        "apiVersion": "slipway.dev/v1alpha1", "kind": "RegisteredModel",
        "metadata": {"name": "m", "namespace": "default"},
        "spec": {"evaluations": [{"name": "s", "timeout": "720h",
            "runner": {"kubernetes": {"image": "python:3.11",
                "resources": {"limits": {"cpu": "2", "nvidia.com/gpu": "1", "example.com/fpga": "1"}}}},
            "dataset": {"uri": "s3://d/"}}]}
    }))
    .unwrap();
    let said = b
        .refusal(&Resource::RegisteredModel(std::sync::Arc::new(model)))
        .unwrap();
    assert!(!said.contains("limits.nvidia.com/gpu:"), "{said}");
    assert!(
        said.contains("spec.evaluations[0].runner.kubernetes.resources.limits.example.com/fpga: example.com/fpga is not among the extended resources the operator allows (nvidia.com/gpu)"),
        "{said}"
    );
    assert!(
        said.contains("spec.evaluations[0].timeout: 720h is longer than the operator allows an evaluation attempt to run (21600s; --max-timeout)"),
        "{said}"
    );
}

#[test]
fn a_limit_of_zero_is_no_way_around_the_bounds() {
    let model: slipway_crd::RegisteredModel = serde_json::from_value(serde_json::json!({
        "apiVersion": "slipway.dev/v1alpha1", "kind": "RegisteredModel",
        "metadata": {"name": "m", "namespace": "default"},
        "spec": {"evaluations": [{"name": "s",
            "runner": {"kubernetes": {"image": "python:3.11",
                "resources": {"limits": {"cpu": "0", "memory": "0"}}}},
            "dataset": {"uri": "s3://d/"}}]}
    }))
    .unwrap();
    let said = bounds()
        .refusal(&Resource::RegisteredModel(std::sync::Arc::new(model)))
        .unwrap();
    assert!(
        said.contains("limits.cpu: a limit of 0 is no limit to Kubernetes")
            && said.contains("limits.memory: a limit of 0 is no limit"),
        "{said}"
    );
    // A tiny bound is rounded up, never to 0.
    let tiny = Bounds {
        max_cpu: Some(0.0001),
        ..Bounds::default()
    };
    assert_eq!(tiny.limited(None).limits["cpu"], "1m");
}

#[test]
fn git_mode_reads_only_the_secrets_the_operator_names() {
    let r = |env: Option<&str>, file: Option<&str>| SecretRef {
        env: env.map(str::to_string),
        file: file.map(str::to_string),
        ..Default::default()
    };
    let allowed = vec!["SLACK_*".to_string(), "/run/secrets/*".to_string()];
    assert!(Bounds::secret_source(&allowed, &r(Some("SLACK_URL"), None)).is_ok());
    assert!(Bounds::secret_source(&allowed, &r(None, Some("/run/secrets/token"))).is_ok());
    let aws = Bounds::secret_source(&allowed, &r(Some("AWS_SECRET_ACCESS_KEY"), None));
    assert!(
        aws.unwrap_err()
            .contains("is not among the secrets the operator lets the registry use")
    );
    let escaped = Bounds::secret_source(
        &allowed,
        &r(None, Some("/run/secrets/../../home/op/.aws/credentials")),
    );
    assert!(escaped.unwrap_err().contains("`..`"));
}

/// Issue 22: a metric's provider is asked by the controller, so it goes only where the operator
/// allows, and its headers carry Secrets only (not the controller's environment or files).
#[test]
fn a_metric_provider_is_a_destination_and_its_headers_secrets() {
    let d: slipway_crd::ModelDeployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "slipway.dev/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "api", "namespace": "ml"},
        "spec": {"model": "m", "alias": "production",
                 "target": {"local": {"command": ["serve"], "port": 9000}},
                 "strategy": {"type": "Canary", "steps": [{"weight": 20}], "analysis": {"metrics": [
                     {"name": "errors", "successCondition": "result < 0.1",
                      "provider": {"prometheus": {"address": "http://169.254.169.254", "query": "up"}}},
                     {"name": "accuracy", "successCondition": "result > 0.9",
                      "provider": {"http": {"url": "https://q.ci.example.com/a",
                                            "headers": {"Authorization": {"env": "AWS_SECRET_ACCESS_KEY"}}}}}]}}}
    }))
    .unwrap();
    let fields: Vec<String> = bounds()
        .check(&Resource::ModelDeployment(d.into()))
        .into_iter()
        .map(|b| format!("{}: {}", b.field, b.message))
        .collect();
    assert_eq!(fields.len(), 2, "{fields:#?}");
    assert!(
        fields[0].starts_with("spec.strategy.analysis.metrics[0].provider.prometheus.url: host 169.254.169.254 is not among the destinations"),
        "{fields:#?}"
    );
    assert!(
        fields[1].starts_with("spec.strategy.analysis.metrics[1].provider.http.headers.Authorization: env: and file: secret references"),
        "{fields:#?}"
    );
}

/// Issue 22 §9: a model server may tolerate only the taints the operator names — a toleration
/// is how a pod gets onto control-plane nodes or another team's GPUs.
#[test]
fn tolerations_are_within_the_operators_taint_keys() {
    let d = |tolerations: serde_json::Value| -> slipway_crd::ModelDeployment {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "slipway.dev/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": "api", "namespace": "ml"},
            "spec": {"model": "m", "alias": "production",
                     "target": {"kubernetes": {"image": "python:3.11", "port": 8080,
                                               "tolerations": tolerations}}}
        }))
        .unwrap()
    };
    let said = |t| -> Vec<String> {
        bounds()
            .check(&Resource::ModelDeployment(d(t).into()))
            .into_iter()
            .map(|b| format!("{}: {}", b.field, b.message))
            .collect()
    };
    assert!(
        said(serde_json::json!([
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "ml.example.com/team", "value": "vision"}
        ]))
        .is_empty()
    );
    let refused = said(serde_json::json!([
        {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"},
        {"operator": "Exists"}
    ]));
    assert_eq!(refused.len(), 2, "{refused:#?}");
    assert!(refused[0].starts_with("spec.target.kubernetes.tolerations[0]: taint node-role.kubernetes.io/control-plane is not among"), "{refused:#?}");
    assert!(refused[1].starts_with("spec.target.kubernetes.tolerations[1]: a toleration without a key tolerates every taint"), "{refused:#?}");
}
