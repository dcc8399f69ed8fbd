//! SageMaker rollouts in git mode against the AWS wire protocol (a moto server on loopback,
//! extended with UpdateEndpoint): first deployment, a canary promotion through deployment
//! guardrails with garbage collection, an alarm that rolls the update back, an update SageMaker
//! fails, drift healed, throttling retried, the endpoint deleted with its deployment, and
//! Variants mode shifting weights on one config.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::eventually;
use support::moto::Moto;
use support::sagemaker::{REGISTRY, alias, counts, endpoint, history, run_once, setup};

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
    // Still rolled back (9 is not tried again until asked): not in place, exit 3.
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stdout.contains("not in place:"), "{}", run.stdout);
    assert_eq!(endpoint(&moto)["variants"], serde_json::json!(["v8"]));

    // Drift: someone points the endpoint at a hand-made config; the next pass reports it and
    // puts the desired config back.
    moto.boto("sm.create_model(ModelName='hand-made', ExecutionRoleArn='arn:aws:iam::123456789012:role/x', PrimaryContainer={'Image': 'someone/else:2', 'ModelDataUrl': 's3://elsewhere/model.tar.gz'})\nsm.create_endpoint_config(EndpointConfigName='hand-made', ProductionVariants=[{'VariantName': 'v8', 'ModelName': 'hand-made', 'InstanceType': 'ml.m5.large', 'InitialInstanceCount': 1, 'InitialVariantWeight': 1.0}])\nsm.update_endpoint(EndpointName='pitch-frames', EndpointConfigName='hand-made')");
    std::thread::sleep(Duration::from_millis(1500));
    let run = run_once(dir.path(), &moto);
    // (Every run below exits 3: the deployment stands rolled back from 9 while the alias asks
    // for it.)
    assert_eq!(run.code, 3, "{}", run.stderr);
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
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        moto.boto("print(sm.describe_endpoint(EndpointName='pitch-frames')['EndpointStatus'])"),
        "InService"
    );

    // A weight-only difference is healed with UpdateEndpointWeightsAndCapacities: no new config.
    let (configs, _) = counts(&moto);
    moto.boto("sm.update_endpoint_weights_and_capacities(EndpointName='pitch-frames', DesiredWeightsAndCapacities=[{'VariantName': 'v8', 'DesiredWeight': 0.0, 'DesiredInstanceCount': 2}])");
    let run = run_once(dir.path(), &moto);
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
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
    // A removed deployment is in place by being gone.
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
    assert_eq!(run.code, 3, "rolled back: {said}");
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
