//! What Slipway says about a SageMaker deployment before or instead of changing it: `plan` lists
//! the AWS changes, `validate` refuses a multi-step canary, missing credentials or region are
//! reported clearly, what AWS refuses is a stall with AWS's message, and an endpoint Slipway did
//! not make for this deployment is never touched.

mod support;

use support::moto::Moto;
use support::sagemaker::{REGISTRY, alias, run_once, setup};
use support::slipway_env;

#[test]
fn plan_lists_the_aws_changes_of_a_promotion() {
    let mut repo = support::GitRepo::new();
    let seven = alias("7");
    let eight = alias("8");
    let main = repo.commit(
        "main",
        None,
        &[
            ("registry/registry.yaml", Some(REGISTRY.as_str())),
            ("registry/alias.yaml", Some(&seven)),
        ],
        "register",
    );
    repo.commit(
        "pr",
        Some(main),
        &[("registry/alias.yaml", Some(&eight))],
        "promote 8",
    );
    let run = support::slipway(
        &[
            "plan", "--base", "main", "--head", "pr", "--path", "registry",
        ],
        repo.path(),
    );
    let out = run.stdout;
    for needle in [
        "AWS: CreateModel pitch-frames-v8-",
        "model data s3://models/pitch-frames/8/model.tar.gz",
        "AWS: CreateEndpointConfig pitch-frames-",
        "variant v8 = 2 × ml.m5.large",
        "AWS: UpdateEndpoint pitch-frames → pitch-frames-",
        "canary 25% of capacity, bake 2s, rollback on alarms pitch-frames-5xx",
    ] {
        assert!(out.contains(needle), "{needle}\n{out}\n{}", run.stderr);
    }
}

#[test]
fn a_multi_step_canary_on_sagemaker_is_refused_by_validate() {
    let dir = setup("7");
    let two = REGISTRY.replace(
        "steps: [{weight: 25, pause: 2s}]",
        "steps: [{weight: 25, pause: 2s}, {weight: 50, pause: 2s}]",
    );
    std::fs::write(dir.path().join("registry/registry.yaml"), two).unwrap();
    let run = support::slipway(&["validate", "registry"], dir.path());
    assert_ne!(run.code, 0);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(
        said.contains("spec.strategy.steps") && said.contains("keep one step below 100%"),
        "{said}"
    );
}

#[test]
fn missing_credentials_are_reported_clearly() {
    let dir = setup("7");
    let run = slipway_env(
        &["run", "registry", "--once", "--state", "state"],
        dir.path(),
        &[
            ("AWS_ACCESS_KEY_ID", ""),
            ("AWS_SECRET_ACCESS_KEY", ""),
            ("AWS_PROFILE", "nobody"),
            ("AWS_CONFIG_FILE", "/nonexistent"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_ENDPOINT_URL_SAGEMAKER", "http://127.0.0.1:9"),
        ],
    );
    assert_ne!(run.code, 0);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        all.contains("credentials") && all.contains("AWS_ACCESS_KEY_ID"),
        "{all}"
    );
}

#[test]
fn a_missing_region_is_reported_clearly() {
    let dir = setup("7");
    let no_region = REGISTRY.replace("      region: eu-west-1\n", "");
    std::fs::write(dir.path().join("registry/registry.yaml"), no_region).unwrap();
    let run = slipway_env(
        &["run", "registry", "--once", "--state", "state"],
        dir.path(),
        &[
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", ""),
            ("AWS_DEFAULT_REGION", ""),
            ("AWS_CONFIG_FILE", "/nonexistent"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_ENDPOINT_URL_SAGEMAKER", "http://127.0.0.1:9"),
        ],
    );
    assert_ne!(run.code, 0);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        all.contains("region") && all.contains("AWS_REGION"),
        "{all}"
    );
}

#[test]
fn what_aws_refuses_is_a_stall_with_aws_message() {
    let moto = Moto::start();
    let dir = setup("7");
    let bogus = REGISTRY.replace("instanceType: ml.m5.large", "instanceType: ml.bogus.large");
    std::fs::write(dir.path().join("registry/registry.yaml"), bogus).unwrap();
    let run = run_once(dir.path(), &moto);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert_eq!(run.code, 1, "{said}");
    assert!(
        said.contains("CreateEndpointConfig")
            && said.contains("ValidationException")
            && said.contains("ml.bogus.large"),
        "{said}"
    );
    let status = support::slipway(&["status", "--state", "state"], dir.path());
    assert!(
        status.stdout.contains("stalled: CreateEndpointConfig"),
        "{}",
        status.stdout
    );
}

/// An endpoint of the same name that Slipway did not make for this deployment — by hand, or
/// for another deployment (another namespace's) — is never touched; tagged over to this
/// deployment, it is taken over.
#[test]
fn an_endpoint_another_deployment_owns_or_made_by_hand_is_never_touched() {
    let moto = Moto::start();
    moto.boto("sm.create_model(ModelName='hand-made', ExecutionRoleArn='arn:aws:iam::123456789012:role/x', PrimaryContainer={'Image': 'someone/else:2', 'ModelDataUrl': 's3://elsewhere/model.tar.gz'})\nsm.create_endpoint_config(EndpointConfigName='hand-made', ProductionVariants=[{'VariantName': 'v1', 'ModelName': 'hand-made', 'InstanceType': 'ml.m5.large', 'InitialInstanceCount': 1, 'InitialVariantWeight': 1.0}])\nsm.create_endpoint(EndpointName='pitch-frames', EndpointConfigName='hand-made')");
    let dir = setup("7");
    let tag = |ns: &str, name: &str| {
        moto.boto(&format!("arn = sm.describe_endpoint(EndpointName='pitch-frames')['EndpointArn']\nsm.delete_tags(ResourceArn=arn, TagKeys=['slipway.dev/namespace', 'slipway.dev/deployment'])\nsm.add_tags(ResourceArn=arn, Tags=[{{'Key': 'slipway.dev/namespace', 'Value': '{ns}'}}, {{'Key': 'slipway.dev/deployment', 'Value': '{name}'}}])"));
    };
    let config = || {
        moto.boto("print(sm.describe_endpoint(EndpointName='pitch-frames')['EndpointConfigName'])")
            .trim()
            .to_string()
    };
    let run = run_once(dir.path(), &moto);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(
        said.contains(
            "the endpoint was not made by Slipway (it has no slipway.dev/deployment tag)"
        ) && said.contains(
            "tagging it slipway.dev/namespace=default and slipway.dev/deployment=pitch-frames-api"
        ),
        "{said}"
    );
    assert_eq!(config(), "hand-made");
    tag("team-b", "pitch-frames-api");
    let run = run_once(dir.path(), &moto);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(
        said.contains("the endpoint belongs to ModelDeployment team-b/pitch-frames-api"),
        "{said}"
    );
    assert_eq!(config(), "hand-made");
    // Handed over by its owner: now it is this deployment's to roll out.
    tag("default", "pitch-frames-api");
    let run = run_once(dir.path(), &moto);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_ne!(config(), "hand-made");
}
