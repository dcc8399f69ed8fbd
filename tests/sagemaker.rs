//! The SageMaker target in git mode against the AWS wire protocol (a moto server on loopback,
//! extended with UpdateEndpoint): first deployment, a canary promotion through deployment
//! guardrails with garbage collection, an alarm that rolls the update back, drift healed, and
//! missing credentials reported; and the heal of a drifted endpoint compared between git mode and
//! Kubernetes mode (the parity table's SageMaker row).

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::moto::Moto;
use support::{eventually, slipway_env};

const REGISTRY: &str = r#"
apiVersion: slipway.dev/v1alpha1
kind: RegisteredModel
metadata: {name: pitch-frames}
spec: {owners: ["group:ml-leads"]}
---
apiVersion: slipway.dev/v1alpha1
kind: ModelVersion
metadata: {name: pitch-frames-7}
spec: {model: pitch-frames, version: "7", artifact: {uri: "s3://models/pitch-frames/7/model.tar.gz", digest: "sha256:0000000000000000000000000000000000000000000000000000000000000007"}}
---
apiVersion: slipway.dev/v1alpha1
kind: ModelVersion
metadata: {name: pitch-frames-8}
spec: {model: pitch-frames, version: "8", artifact: {uri: "s3://models/pitch-frames/8/model.tar.gz", digest: "sha256:0000000000000000000000000000000000000000000000000000000000000008"}}
---
apiVersion: slipway.dev/v1alpha1
kind: ModelVersion
metadata: {name: pitch-frames-9}
spec: {model: pitch-frames, version: "9", artifact: {uri: "s3://models/pitch-frames/9/model.tar.gz", digest: "sha256:0000000000000000000000000000000000000000000000000000000000000009"}}
---
apiVersion: slipway.dev/v1alpha1
kind: ModelDeployment
metadata: {name: pitch-frames-api}
spec:
  model: pitch-frames
  alias: production
  target:
    sagemaker:
      region: eu-west-1
      endpointName: pitch-frames
      executionRoleArn: arn:aws:iam::123456789012:role/slipway-sagemaker
      image: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/pitch-frames-server:1.4
      instanceType: ml.m5.large
      instanceCount: 2
  strategy:
    type: Canary
    steps: [{weight: 25, pause: 2s}]
    analysis: {alarms: [pitch-frames-5xx]}
"#;

fn alias(version: &str) -> String {
    format!(
        "apiVersion: slipway.dev/v1alpha1\nkind: ModelAlias\nmetadata: {{name: pitch-frames-production}}\nspec: {{model: pitch-frames, alias: production, version: \"{version}\"}}\n"
    )
}

fn setup(version: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("registry")).unwrap();
    std::fs::write(dir.path().join("registry/registry.yaml"), REGISTRY).unwrap();
    std::fs::write(dir.path().join("registry/alias.yaml"), alias(version)).unwrap();
    dir
}

fn run_once(dir: &Path, moto: &Moto) -> support::Run {
    let env = moto.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    slipway_env(
        &["run", "registry", "--once", "--state", "state"],
        dir,
        &env,
    )
}

fn endpoint(moto: &Moto) -> serde_json::Value {
    serde_json::from_str(&moto.boto(
        "e = sm.describe_endpoint(EndpointName='pitch-frames')\nc = sm.describe_endpoint_config(EndpointConfigName=e['EndpointConfigName'])\nm = sm.describe_model(ModelName=c['ProductionVariants'][0]['ModelName'])\ntags = sm.list_tags(ResourceArn=m['ModelArn'])['Tags']\nprint(json.dumps({'status': e['EndpointStatus'], 'config': e['EndpointConfigName'], 'variants': [v['VariantName'] for v in c['ProductionVariants']], 'count': e['ProductionVariants'][0].get('CurrentInstanceCount'), 'model': m['ModelName'], 'image': m['PrimaryContainer']['Image'], 'artifact': m['PrimaryContainer']['ModelDataUrl'], 'tags': {t['Key']: t['Value'] for t in tags}, 'failure': e.get('FailureReason')}))",
    ))
    .unwrap()
}

fn counts(moto: &Moto) -> (usize, usize) {
    let out = moto.boto(
        "print(len(sm.list_endpoint_configs()['EndpointConfigs']), len(sm.list_models()['Models']))",
    );
    let (a, b) = out.split_once(' ').unwrap();
    (a.parse().unwrap(), b.parse().unwrap())
}

/// A real API server holding the registry with production at version 7, and `slipway
/// controller` on it with the moto server's credentials; its log goes to `log`.
fn cluster_with_controller(
    moto: &Moto,
    log: Stdio,
) -> (support::apiserver::ApiServer, std::process::Child) {
    let api = support::apiserver::ApiServer::start();
    api.install_crds();
    let run = api.kubectl_stdin(
        &["apply", "-f", "-"],
        "admin",
        &format!("{REGISTRY}\n---\n{}", alias("7")),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let env = moto.env();
    let controller = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .envs(support::OPEN_BOUNDS)
        .args(["controller", "--listen"])
        .arg(format!("127.0.0.1:{}", support::free_port()))
        .env("KUBECONFIG", &api.kubeconfig)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    (api, controller)
}

fn history(dir: &Path) -> String {
    let run = support::slipway(&["history", "pitch-frames", "--state", "state"], dir);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.stdout
}

#[test]
fn an_endpoint_is_created_promoted_through_a_canary_rolled_back_by_an_alarm_and_healed() {
    let moto = Moto::start();
    let dir = setup("7");

    // First deployment: Models, config and endpoint, tagged back to Slipway's objects.
    let run = run_once(dir.path(), &moto);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let e = endpoint(&moto);
    assert_eq!(e["status"], "InService", "{e}");
    assert_eq!(e["variants"], serde_json::json!(["v7"]));
    assert_eq!(e["count"], 2);
    assert_eq!(e["artifact"], "s3://models/pitch-frames/7/model.tar.gz");
    assert_eq!(e["tags"]["slipway.dev/deployment"], "pitch-frames-api");
    assert_eq!(e["tags"]["slipway.dev/version"], "7");
    let first_config = e["config"].as_str().unwrap().to_string();

    // Promotion: UpdateEndpoint with a canary; the run follows it to the end.
    moto.boto("cw.put_metric_alarm(AlarmName='pitch-frames-5xx', MetricName='Invocation5XXErrors', Namespace='AWS/SageMaker', Statistic='Sum', Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator='GreaterThanThreshold')");
    // Autoscaling took version 7 to 3 instances: the update keeps that capacity.
    moto.boto("sm.update_endpoint_weights_and_capacities(EndpointName='pitch-frames', DesiredWeightsAndCapacities=[{'VariantName': 'v7', 'DesiredWeight': 1.0, 'DesiredInstanceCount': 3}])");
    std::fs::write(dir.path().join("registry/alias.yaml"), alias("8")).unwrap();
    let run = run_once(dir.path(), &moto);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let e = endpoint(&moto);
    assert_eq!(e["variants"], serde_json::json!(["v8"]), "{e}");
    assert_eq!(e["count"], 3, "{e}");
    assert_ne!(e["config"].as_str().unwrap(), first_config);
    let h = history(dir.path());
    assert!(
        h.contains("RolloutStarted") && h.contains("canary 25%"),
        "{h}"
    );
    assert!(h.contains("RolloutSucceeded"), "{h}");
    // Version 7's config and Model are collected.
    assert_eq!(counts(&moto), (1, 1));

    // An alarm firing during the canary's bake: SageMaker rolls back, Slipway records a
    // rollback (never a success) and does not retry version 9.
    std::fs::write(dir.path().join("registry/alias.yaml"), alias("9")).unwrap();
    let env = moto.env();
    let child = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["run", "registry", "--once", "--state", "state"])
        .current_dir(dir.path())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(30), || {
        moto.boto("print(sm.describe_endpoint(EndpointName='pitch-frames').get('PendingDeploymentSummary', {}).get('ProductionVariants', [{}])[0].get('VariantStatus', [{}])[0].get('Status'))")
            .eq("Baking")
            .then_some(())
    });
    moto.boto("cw.set_alarm_state(AlarmName='pitch-frames-5xx', StateValue='ALARM', StateReason='5xx errors')");
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("rolled back"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e = endpoint(&moto);
    assert_eq!(e["variants"], serde_json::json!(["v8"]), "{e}");
    assert_eq!(e["status"], "InService");
    let h = history(dir.path());
    assert!(
        h.contains("RolledBack") && h.contains("pitch-frames-5xx"),
        "{h}"
    );
    let status = support::slipway(&["status", "--state", "state"], dir.path());
    assert!(
        status.stdout.contains("RolledBack"),
        "{}{}",
        status.stdout,
        status.stderr
    );
    moto.boto(
        "cw.set_alarm_state(AlarmName='pitch-frames-5xx', StateValue='OK', StateReason='fine')",
    );
    let run = run_once(dir.path(), &moto);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(endpoint(&moto)["variants"], serde_json::json!(["v8"]));

    // Drift: someone points the endpoint at a hand-made config; the next pass reports it and
    // puts the desired config back.
    moto.boto("sm.create_model(ModelName='hand-made', ExecutionRoleArn='arn:aws:iam::123456789012:role/x', PrimaryContainer={'Image': 'someone/else:2', 'ModelDataUrl': 's3://elsewhere/model.tar.gz'})\nsm.create_endpoint_config(EndpointConfigName='hand-made', ProductionVariants=[{'VariantName': 'v8', 'ModelName': 'hand-made', 'InstanceType': 'ml.m5.large', 'InitialInstanceCount': 1, 'InitialVariantWeight': 1.0}])\nsm.update_endpoint(EndpointName='pitch-frames', EndpointConfigName='hand-made')");
    std::thread::sleep(Duration::from_millis(1500));
    let run = run_once(dir.path(), &moto);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(
        said.contains("out of sync") && said.contains("someone/else:2"),
        "{said}"
    );
    assert!(history(dir.path()).contains("OutOfSync"));
    let e = endpoint(&moto);
    assert_eq!(
        e["image"], "123456789012.dkr.ecr.eu-west-1.amazonaws.com/pitch-frames-server:1.4",
        "{e}"
    );

    // Throttling is retried with backoff: two throttled calls do not fail the pass.
    let (code, _) = support::http::request(
        "POST",
        &format!("{}/slipway-test/throttle?count=2", moto.url),
        &[],
        "",
    );
    assert_eq!(code, 200);
    let run = run_once(dir.path(), &moto);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        moto.boto("print(sm.describe_endpoint(EndpointName='pitch-frames')['EndpointStatus'])"),
        "InService"
    );

    // A weight-only difference is healed with UpdateEndpointWeightsAndCapacities: no new config.
    let (configs, _) = counts(&moto);
    moto.boto("sm.update_endpoint_weights_and_capacities(EndpointName='pitch-frames', DesiredWeightsAndCapacities=[{'VariantName': 'v8', 'DesiredWeight': 0.0, 'DesiredInstanceCount': 2}])");
    let run = run_once(dir.path(), &moto);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        moto.boto("print(sm.describe_endpoint(EndpointName='pitch-frames')['ProductionVariants'][0]['CurrentWeight'])"),
        "1.0"
    );
    assert_eq!(
        counts(&moto).0,
        configs,
        "a weight change creates no config"
    );

    // Removing the deployment from the registry deletes what Slipway created.
    let without: String = REGISTRY
        .split("\n---\n")
        .filter(|doc| !doc.contains("kind: ModelDeployment"))
        .collect::<Vec<_>>()
        .join("\n---\n");
    std::fs::write(dir.path().join("registry/registry.yaml"), without).unwrap();
    let run = run_once(dir.path(), &moto);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        moto.boto("print(len(sm.list_endpoints()['Endpoints']))"),
        "0"
    );
    // Only the hand-made config and Model remain: Slipway deletes only what it named.
    assert_eq!(counts(&moto), (1, 1));
    assert!(history(dir.path()).contains("EndpointDeleted"));
}

#[test]
fn an_update_that_sagemaker_fails_is_a_failed_rollout_and_a_refused_heal_is_reported() {
    let moto = Moto::start();
    let dir = setup("7");
    let run = run_once(dir.path(), &moto);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    // A new image whose containers fail their health checks, with a move to 8.
    let broken = REGISTRY.replace("pitch-frames-server:1.4", "pitch-frames-server:broken");
    std::fs::write(dir.path().join("registry/registry.yaml"), &broken).unwrap();
    std::fs::write(dir.path().join("registry/alias.yaml"), alias("8")).unwrap();
    let run = run_once(dir.path(), &moto);
    let said = format!("{}{}", run.stdout, run.stderr);
    // SageMaker returned the endpoint to 7's config: rolled back, never a success.
    let e = endpoint(&moto);
    assert_eq!(e["variants"], serde_json::json!(["v7"]), "{e}\n{said}");
    assert_eq!(e["status"], "InService");
    let h = history(dir.path());
    assert!(
        h.contains("RolledBack") && h.contains("ping health check"),
        "{h}"
    );
    assert!(!h.contains("serves version 8"), "{h}");
    assert_eq!(run.code, 0, "{said}");
    // Version 7 with the broken image cannot be healed either: the next pass reports that
    // SageMaker refused it, and does not try again and again.
    let run = run_once(dir.path(), &moto);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert_eq!(run.code, 1, "{said}");
    assert!(said.contains("did not take the healing update"), "{said}");
    let status = support::slipway(&["status", "--state", "state"], dir.path());
    assert!(
        status
            .stdout
            .contains("sagemaker endpoint pitch-frames (InService")
            && status
                .stdout
                .contains("stalled: SageMaker did not take the healing update"),
        "{}",
        status.stdout
    );
    assert_eq!(endpoint(&moto)["variants"], serde_json::json!(["v7"]));
}

#[test]
fn plan_lists_the_aws_changes_of_a_promotion() {
    let mut repo = support::GitRepo::new();
    let seven = alias("7");
    let eight = alias("8");
    let main = repo.commit(
        "main",
        None,
        &[
            ("registry/registry.yaml", Some(REGISTRY)),
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
fn the_controller_rolls_sagemaker_deployments_out_and_deletes_the_endpoint_with_the_object() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("controller.log");
    let (api, mut controller) =
        cluster_with_controller(&moto, std::fs::File::create(&log).unwrap().into());
    let get = |path: &str| {
        api.kubectl(
            &[
                "get",
                "mdeploy",
                "pitch-frames-api",
                "-o",
                &format!("jsonpath={path}"),
            ],
            "admin",
        )
        .stdout
    };
    let controller_log = || std::fs::read_to_string(&log).unwrap_or_default();

    // The first version serves; the object carries the finalizer and the endpoint's state.
    eventually(Duration::from_secs(60), || {
        (get("{.status.servingVersion} {.status.endpoint.status}") == "7 InService").then_some(())
    });
    assert_eq!(
        get("{.metadata.finalizers[0]}"),
        "slipway.dev/sagemaker-endpoint"
    );
    assert_eq!(endpoint(&moto)["variants"], serde_json::json!(["v7"]));
    assert_eq!(
        endpoint(&moto)["tags"]["slipway.dev/namespace"],
        "default",
        "{}",
        controller_log()
    );

    // An alias move rolls out through the canary guardrails.
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", &alias("8"));
    assert_eq!(run.code, 0, "{}", run.stderr);
    eventually(Duration::from_secs(60), || {
        (get("{.status.servingVersion} {.status.phase}") == "8 Healthy").then_some(())
    });
    assert_eq!(endpoint(&moto)["variants"], serde_json::json!(["v8"]));
    let events = get("{.status.history[*].event}");
    assert!(
        events.contains("RolloutStarted") && events.contains("RolloutSucceeded"),
        "{events}"
    );
    assert_eq!(
        counts(&moto),
        (1, 1),
        "version 7's config and Model are collected"
    );

    // Drift shows in status and is healed.
    moto.boto("sm.update_endpoint_weights_and_capacities(EndpointName='pitch-frames', DesiredWeightsAndCapacities=[{'VariantName': 'v8', 'DesiredWeight': 0.0, 'DesiredInstanceCount': 2}])");
    let _ = api.kubectl(
        &[
            "annotate",
            "mdeploy",
            "pitch-frames-api",
            "touch=1",
            "--overwrite",
        ],
        "admin",
    );
    eventually(Duration::from_secs(60), || {
        (moto.boto("print(sm.describe_endpoint(EndpointName='pitch-frames')['ProductionVariants'][0]['CurrentWeight'])") == "1.0")
            .then_some(())
    });

    // Deleting the ModelDeployment deletes the endpoint, its configs and Models, then the object.
    let run = api.kubectl(
        &["delete", "mdeploy", "pitch-frames-api", "--wait=false"],
        "admin",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    eventually(Duration::from_secs(60), || {
        (api.kubectl(&["get", "mdeploy", "pitch-frames-api"], "admin")
            .code
            != 0)
            .then_some(())
    });
    assert_eq!(
        moto.boto("print(len(sm.list_endpoints()['Endpoints']))"),
        "0"
    );
    assert_eq!(counts(&moto), (0, 0), "{}", controller_log());
    let _ = controller.kill();
    let _ = controller.wait();
}

#[test]
fn in_variants_mode_slipway_shifts_weights_without_new_configs_and_rolls_back_on_an_alarm() {
    let moto = Moto::start();
    let dir = setup("7");
    let variants = REGISTRY
        .replace(
            "      instanceCount: 2\n",
            "      instanceCount: 2\n      mode: Variants\n",
        )
        .replace(
            "steps: [{weight: 25, pause: 2s}]",
            "steps: [{weight: 25, pause: 2s}, {weight: 50, pause: 2s}]",
        );
    std::fs::write(dir.path().join("registry/registry.yaml"), &variants).unwrap();
    let run = run_once(dir.path(), &moto);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(endpoint(&moto)["variants"], serde_json::json!(["v7"]));
    moto.boto("cw.put_metric_alarm(AlarmName='pitch-frames-5xx', MetricName='Invocation5XXErrors', Namespace='AWS/SageMaker', Statistic='Sum', Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator='GreaterThanThreshold')");

    // Both versions as variants; the weights move step by step on one config.
    let split = "e = sm.describe_endpoint(EndpointName='pitch-frames')\nprint(json.dumps([e['EndpointConfigName'], {v['VariantName']: v.get('CurrentWeight') for v in e['ProductionVariants']}]))";
    let watch = |alias_version: &str| {
        std::fs::write(dir.path().join("registry/alias.yaml"), alias(alias_version)).unwrap();
        let env = moto.env();
        Command::new(env!("CARGO_BIN_EXE_slipway"))
            .args(["run", "registry", "--once", "--state", "state"])
            .current_dir(dir.path())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let child = watch("8");
    let mut seen: Vec<(String, serde_json::Value)> = Vec::new();
    eventually(Duration::from_secs(60), || {
        let (config, weights): (String, serde_json::Value) =
            serde_json::from_str(&moto.boto(split)).unwrap();
        if seen.last().map(|(c, w)| (c, w)) != Some((&config, &weights)) {
            seen.push((config, weights.clone()));
        }
        (weights == serde_json::json!({"v8": 100.0})).then_some(())
    });
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let at = |w7: f64, w8: f64| {
        seen.iter()
            .find(|(_, w)| *w == serde_json::json!({"v7": w7, "v8": w8}))
            .map(|(c, _)| c.clone())
    };
    let c25 = at(75.0, 25.0).unwrap_or_else(|| panic!("no 75/25 split: {seen:?}"));
    let c50 = at(50.0, 50.0).unwrap_or_else(|| panic!("no 50/50 split: {seen:?}"));
    assert_eq!(c25, c50, "weight-only steps create no config: {seen:?}");
    let h = history(dir.path());
    assert!(
        h.contains("StepStarted") && h.contains("RolloutSucceeded"),
        "{h}"
    );
    // The settled endpoint keeps only what it uses.
    eventually(Duration::from_secs(10), || {
        let _ = run_once(dir.path(), &moto);
        (counts(&moto) == (1, 1)).then_some(())
    });

    // An alarm during a step: weights go back, the candidate's variant goes, and 9 is rejected.
    let child = watch("9");
    eventually(Duration::from_secs(60), || {
        let (_, weights): (String, serde_json::Value) =
            serde_json::from_str(&moto.boto(split)).unwrap();
        (weights["v9"].as_f64().unwrap_or(0.0) > 0.0).then_some(())
    });
    moto.boto("cw.set_alarm_state(AlarmName='pitch-frames-5xx', StateValue='ALARM', StateReason='5xx errors')");
    let out = child.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    eventually(Duration::from_secs(30), || {
        let (_, weights): (String, serde_json::Value) =
            serde_json::from_str(&moto.boto(split)).unwrap();
        (weights == serde_json::json!({"v8": 100.0})).then_some(())
    });
    let h = history(dir.path());
    assert!(
        h.contains("RolledBack") && h.contains("pitch-frames-5xx"),
        "{h}\n{said}"
    );
    let status = support::slipway(&["status", "--state", "state"], dir.path());
    assert!(status.stdout.contains("rejected: 9"), "{}", status.stdout);
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

/// A SageMaker deployment's status without its times: phase, versions, traffic, history,
/// conditions, what was observed of the endpoint, and the drift.
fn deployment_facts(d: &serde_json::Value) -> serde_json::Value {
    let list = |field: &str, keys: &[&str]| -> Vec<serde_json::Value> {
        d[field]
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| serde_json::json!(keys.iter().map(|k| &x[*k]).collect::<Vec<_>>()))
            .collect()
    };
    let e = &d["endpoint"];
    serde_json::json!({
        "phase": d["phase"], "servingVersion": d["servingVersion"], "traffic": d["traffic"],
        "history": list("history", &["event", "traffic", "message"]),
        "conditions": list("conditions", &["type", "status", "reason", "message"]),
        "endpoint": [&e["name"], &e["status"], &e["config"], &e["region"], &e["healingConfig"]],
        "drift": d["drift"],
    })
}

/// What one home showed of a heal: the status serving, the `OutOfSync` announcements (git mode:
/// history entries; Kubernetes mode: events), and the status once healed.
type Heal = (serde_json::Value, Vec<String>, serde_json::Value);

/// Drifts the endpoint: all its weight off the only variant.
fn drift(moto: &Moto) {
    moto.boto("sm.update_endpoint_weights_and_capacities(EndpointName='pitch-frames', DesiredWeightsAndCapacities=[{'VariantName': 'v7', 'DesiredWeight': 0.0, 'DesiredInstanceCount': 2}])");
}

fn weight(moto: &Moto) -> String {
    moto.boto("print(sm.describe_endpoint(EndpointName='pitch-frames')['ProductionVariants'][0]['CurrentWeight'])")
}

fn healed(d: &serde_json::Value) -> bool {
    d["drift"].is_null()
        && d["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "OutOfSync" && c["status"] == "False")
}

fn heal_in_git(moto: &Moto) -> Heal {
    let dir = setup("7");
    let port = support::free_port();
    let env = moto.env();
    let mut child = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["run", "registry", "--state", "state", "--interval", "300ms"])
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .current_dir(dir.path())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = || {
        let (_, body) = support::http::request(
            "GET",
            &format!("http://127.0.0.1:{port}/api/v1/deployments"),
            &[],
            "",
        );
        serde_json::from_str::<Vec<serde_json::Value>>(&body)
            .unwrap_or_default()
            .into_iter()
            .find(|r| r["name"] == "pitch-frames-api")
            .map(|r| r["status"].clone())
    };
    let serving = eventually(Duration::from_secs(60), || {
        status().filter(|d| d["servingVersion"] == "7" && d["endpoint"]["status"] == "InService")
    });
    drift(moto);
    let after = eventually(Duration::from_secs(60), || {
        (weight(moto) == "1.0")
            .then(status)
            .flatten()
            .filter(|d| healed(d) && d["endpoint"]["status"] == "InService")
    });
    let _ = child.kill();
    let _ = child.wait();
    let said: Vec<String> = history(dir.path())
        .lines()
        .filter(|l| l.contains("OutOfSync"))
        .filter_map(|l| l.split_once("pitch-frames-api: "))
        .map(|(_, m)| m.rsplit_once(" by ").map_or(m, |(m, _)| m).to_string())
        .collect();
    (deployment_facts(&serving), said, deployment_facts(&after))
}

fn heal_in_cluster(moto: &Moto) -> Heal {
    let (api, mut controller) = cluster_with_controller(moto, Stdio::null());
    let status = || {
        let run = api.kubectl(
            &["get", "mdeploy", "pitch-frames-api", "-o", "json"],
            "admin",
        );
        serde_json::from_str::<serde_json::Value>(&run.stdout)
            .ok()
            .map(|o| o["status"].clone())
    };
    let serving = eventually(Duration::from_secs(60), || {
        status().filter(|d| d["servingVersion"] == "7" && d["endpoint"]["status"] == "InService")
    });
    drift(moto);
    // A settled endpoint is looked at again within a minute; a touch makes it now.
    let run = api.kubectl(
        &["annotate", "mdeploy", "pitch-frames-api", "touch=1"],
        "admin",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let after = eventually(Duration::from_secs(60), || {
        (weight(moto) == "1.0")
            .then(status)
            .flatten()
            .filter(|d| healed(d) && d["endpoint"]["status"] == "InService")
    });
    let run = api.kubectl(
        &[
            "get",
            "events",
            "--field-selector",
            "reason=OutOfSync",
            "-o",
            "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}",
        ],
        "admin",
    );
    let said = run.stdout.lines().map(str::to_string).collect();
    let _ = controller.kill();
    let _ = controller.wait();
    (deployment_facts(&serving), said, deployment_facts(&after))
}

/// The parity table's SageMaker row (`tests/parity.rs` has the rest): an endpoint drifts (its
/// weight moved by hand) and each home notices, announces it once, heals it with
/// `UpdateEndpointWeightsAndCapacities`, and records the same status before and after.
#[test]
fn both_homes_heal_a_drifted_endpoint_alike() {
    let in_git = heal_in_git(&Moto::start());
    let in_cluster = heal_in_cluster(&Moto::start());
    assert_eq!(
        in_git.1,
        [
            "endpoint pitch-frames is out of sync: variant v7: takes 0% of traffic, should take 100%; healing it"
        ],
        "{in_git:#?}"
    );
    assert_eq!(
        in_git.0, in_cluster.0,
        "serving: git mode, then Kubernetes mode"
    );
    assert_eq!(
        in_git.1, in_cluster.1,
        "announcements: git mode, then Kubernetes mode"
    );
    assert_eq!(
        in_git.2, in_cluster.2,
        "healed: git mode, then Kubernetes mode"
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
