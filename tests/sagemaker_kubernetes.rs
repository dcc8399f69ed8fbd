//! The SageMaker target in Kubernetes mode (moto on loopback, a real kube-apiserver):
//! `slipway controller` rolls endpoints out, heals drift and deletes the endpoint with its
//! ModelDeployment; and the heal of a drifted endpoint compared between git mode and Kubernetes
//! mode (the parity table's SageMaker row).

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::eventually;
use support::moto::Moto;
use support::sagemaker::{
    REGISTRY, alias, cluster_with_controller, counts, endpoint, history, setup,
};

#[test]
fn the_controller_rolls_sagemaker_deployments_out_and_deletes_the_endpoint_with_the_object() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("controller.log");
    let (api, mut controller) = cluster_with_controller(
        &moto,
        std::fs::File::create(&log).unwrap().into(),
        &REGISTRY,
    );
    let get = |path: &str| support::k8s_mode::get(&api, &["mdeploy", "pitch-frames-api"], path);
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
    // Stopped as Kubernetes stops it: SIGTERM, a clean exit, no panic (dropping the SageMaker
    // client's runtime inside the controller's own used to panic on every stop).
    support::git_mode::signal(controller.id(), "-TERM");
    let status = eventually(Duration::from_secs(20), || controller.try_wait().unwrap());
    assert!(status.success(), "{status:?}\n{}", controller_log());
    assert!(
        !controller_log().contains("panicked"),
        "{}",
        controller_log()
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
    // Conditions are a map by type: their order is the API server's.
    let mut conditions = list("conditions", &["type", "status", "reason", "message"]);
    conditions.sort_by_key(|c| c[0].as_str().unwrap_or_default().to_string());
    serde_json::json!({
        "phase": d["phase"], "servingVersion": d["servingVersion"], "traffic": d["traffic"],
        "history": list("history", &["event", "traffic", "message"]),
        "conditions": conditions,
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

/// `slipway run` on the registry in `dir` with the moto server's credentials, every 300 ms,
/// serving its read API; the child and the API's port.
fn git_home(moto: &Moto, dir: &std::path::Path) -> (std::process::Child, u16) {
    let port = support::free_port();
    let env = moto.env();
    let child = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["run", "registry", "--state", "state", "--interval", "300ms"])
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (child, port)
}

/// The deployment's status as git mode's read API serves it.
fn git_status(port: u16) -> Option<serde_json::Value> {
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
}

/// The deployment's status in the cluster.
fn cluster_status(api: &support::apiserver::ApiServer) -> Option<serde_json::Value> {
    let run = api.kubectl(
        &["get", "mdeploy", "pitch-frames-api", "-o", "json"],
        "admin",
    );
    serde_json::from_str::<serde_json::Value>(&run.stdout)
        .ok()
        .map(|o| o["status"].clone())
}

fn heal_in_git(moto: &Moto) -> Heal {
    let dir = setup("7");
    let (mut child, port) = git_home(moto, dir.path());
    let status = || git_status(port);
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
        .map(|(_, m)| m.rsplit_once("  (by ").map_or(m, |(m, _)| m).to_string())
        .collect();
    (deployment_facts(&serving), said, deployment_facts(&after))
}

fn heal_in_cluster(moto: &Moto) -> Heal {
    let (api, mut controller) = cluster_with_controller(moto, Stdio::null(), &REGISTRY);
    let status = || cluster_status(&api);
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

/// What one home showed of a refusal: the status while AWS refuses the endpoint's config (an
/// instance type it does not know), and once the registry is fixed, the status serving.
type Refusal = (serde_json::Value, serde_json::Value);

/// The stalled status, without AWS's request id (it differs per call).
fn stalled_facts(d: &serde_json::Value) -> serde_json::Value {
    let mut facts = deployment_facts(d);
    for c in facts["conditions"].as_array_mut().into_iter().flatten() {
        if let Some(m) = c[3].as_str() {
            c[3] = m.split(", request id").next().unwrap_or(m).into();
        }
    }
    facts
}

fn stalled(d: &serde_json::Value) -> bool {
    d["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Stalled" && c["status"] == "True")
}

fn bogus() -> String {
    REGISTRY.replace("instanceType: ml.m5.large", "instanceType: ml.bogus.large")
}

fn refusal_in_git(moto: &Moto) -> Refusal {
    let dir = setup("7");
    std::fs::write(dir.path().join("registry/registry.yaml"), bogus()).unwrap();
    let (mut child, port) = git_home(moto, dir.path());
    let status = || git_status(port);
    let refused = eventually(Duration::from_secs(60), || status().filter(stalled));
    std::fs::write(dir.path().join("registry/registry.yaml"), &*REGISTRY).unwrap();
    let serving = eventually(Duration::from_secs(60), || {
        status().filter(|d| d["servingVersion"] == "7" && d["endpoint"]["status"] == "InService")
    });
    let _ = child.kill();
    let _ = child.wait();
    (stalled_facts(&refused), deployment_facts(&serving))
}

fn refusal_in_cluster(moto: &Moto) -> Refusal {
    let (api, mut controller) = cluster_with_controller(moto, Stdio::null(), &bogus());
    let status = || cluster_status(&api);
    let refused = eventually(Duration::from_secs(60), || status().filter(stalled));
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", &REGISTRY);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let serving = eventually(Duration::from_secs(60), || {
        status().filter(|d| d["servingVersion"] == "7" && d["endpoint"]["status"] == "InService")
    });
    let _ = controller.kill();
    let _ = controller.wait();
    (stalled_facts(&refused), deployment_facts(&serving))
}

/// The parity table's SageMaker refusal: what AWS refuses stalls the deployment in both homes
/// with the same status (`Stalled=True`, AWS's message), and once the spec is fixed both go on
/// to the same serving status.
#[test]
fn both_homes_stall_a_refused_endpoint_alike_and_go_on_once_it_is_fixed() {
    let in_git = refusal_in_git(&Moto::start());
    let in_cluster = refusal_in_cluster(&Moto::start());
    let conditions = in_git.0["conditions"].to_string();
    assert!(
        conditions.contains("ml.bogus.large") && conditions.contains("SageMakerError"),
        "{in_git:#?}"
    );
    assert_eq!(
        in_git.0, in_cluster.0,
        "refused: git mode, then Kubernetes mode"
    );
    assert_eq!(
        in_git.1, in_cluster.1,
        "serving: git mode, then Kubernetes mode"
    );
}
