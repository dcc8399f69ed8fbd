//! Controller benchmark (DESIGN §9): how long `slipway controller` takes to converge 2,000
//! ModelVersions, 500 aliases and 200 deployments (times `SCALE`) on a real API server, against the time the API
//! server alone needs for the same writes (measured in the same run); its resident memory; and
//! promotion latency (alias move observed → first rollout write), p50/p99.
//!
//! `KUBECONFIG=… cargo run --release --example bench_controller -- SLIPWAY_BINARY` (see
//! `bench/controller.sh`, which starts etcd and kube-apiserver for it).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::{Value, json};
use slipway::modes::kubernetes::watch::Watchable;
use slipway_crd::{ModelAlias, ModelDeployment, ModelVersion, RegisteredModel};

/// Models: 100, times `SCALE` (`SCALE=10`: 20,000 versions, 5,000 aliases, 2,000 deployments).
fn models() -> usize {
    static M: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *M.get_or_init(|| {
        100 * std::env::var("SCALE")
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|&s| s > 0)
            .unwrap_or(1)
    })
}
const VERSIONS: usize = 20; // per model: 2,000
const ALIASES: usize = 5; // per model: 500
const DEPLOYMENTS: usize = 2; // per model: 200
const CONCURRENCY: usize = 16;
const NS: &str = "bench";
const BASELINE_NS: &str = "bench-baseline";

fn objects() -> Vec<Value> {
    let mut out = Vec::new();
    for m in 0..models() {
        out.push(json!({"apiVersion": "slipway.dev/v1alpha1", "kind": "RegisteredModel",
            "metadata": {"name": format!("model-{m}")},
            "spec": {"description": format!("Synthetic model {m}."), "owners": ["group:ml-leads"]}}));
        for v in 1..=VERSIONS {
            out.push(
                json!({"apiVersion": "slipway.dev/v1alpha1", "kind": "ModelVersion",
                "metadata": {"name": format!("model-{m}-{v}")},
                "spec": {"model": format!("model-{m}"), "version": v.to_string(),
                         "artifact": {"uri": format!("s3://bench/{m}/{v}/model.onnx"),
                                      "digest": format!("sha256:{:064x}", m * 1000 + v)}}}),
            );
        }
        for a in 0..ALIASES {
            out.push(
                json!({"apiVersion": "slipway.dev/v1alpha1", "kind": "ModelAlias",
                "metadata": {"name": format!("model-{m}-a{a}")},
                "spec": {"model": format!("model-{m}"), "alias": format!("a{a}"),
                         "version": (VERSIONS - a).to_string()}}),
            );
        }
        for d in 0..DEPLOYMENTS {
            out.push(json!({"apiVersion": "slipway.dev/v1alpha1", "kind": "ModelDeployment",
                "metadata": {"name": format!("model-{m}-d{d}")},
                "spec": {"model": format!("model-{m}"), "alias": format!("a{d}"),
                         "target": {"kubernetes": {"image": "registry.example/server:1", "replicas": 2, "port": 8080}},
                         "strategy": {"type": "AllAtOnce"}}}));
        }
    }
    out
}

fn resource(kind: &str) -> ApiResource {
    match kind {
        "RegisteredModel" => ApiResource::erase::<RegisteredModel>(&()),
        "ModelVersion" => ApiResource::erase::<ModelVersion>(&()),
        "ModelAlias" => ApiResource::erase::<ModelAlias>(&()),
        _ => ApiResource::erase::<ModelDeployment>(&()),
    }
}

async fn create_all(client: &kube::Client, ns: &str, objects: &[Value]) -> Duration {
    let started = Instant::now();
    futures::stream::iter(objects.iter().cloned())
        .map(|o| {
            let client = client.clone();
            async move {
                let ar = resource(o["kind"].as_str().unwrap());
                let api: Api<DynamicObject> = Api::namespaced_with(client, ns, &ar);
                let obj: DynamicObject = serde_json::from_value(o).unwrap();
                api.create(&PostParams::default(), &obj).await.map(|_| ())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await
        .expect("create");
    started.elapsed()
}

/// The writes the controller makes to converge, made directly by a client in another namespace:
/// a status per version; alias status + event per alias; deployment status, Service, Deployment
/// and event per deployment.
async fn baseline_writes(client: &kube::Client) -> (usize, Duration) {
    let mut writes: Vec<(String, Value)> = Vec::new();
    for m in 0..models() {
        for v in 1..=VERSIONS {
            writes.push((
                "version-status".into(),
                json!({"name": format!("model-{m}-{v}")}),
            ));
        }
        for a in 0..ALIASES {
            writes.push((
                "alias-status".into(),
                json!({"name": format!("model-{m}-a{a}"), "version": (VERSIONS - a).to_string()}),
            ));
            writes.push((
                "event".into(),
                json!({"name": format!("model-{m}-a{a}"), "id": format!("a{m}x{a}")}),
            ));
        }
        for d in 0..DEPLOYMENTS {
            let name = format!("model-{m}-d{d}");
            writes.push(("md-status".into(), json!({"name": name})));
            writes.push(("service".into(), json!({"name": name})));
            writes.push((
                "deployment".into(),
                json!({"name": name, "version": (VERSIONS - d).to_string()}),
            ));
            writes.push((
                "event".into(),
                json!({"name": name, "id": format!("d{m}x{d}")}),
            ));
        }
    }
    let n = writes.len();
    let started = Instant::now();
    let pp = PatchParams::apply("bench").force();
    futures::stream::iter(writes)
        .map(|(kind, w)| {
            let client = client.clone();
            let pp = pp.clone();
            async move {
                let name = w["name"].as_str().unwrap().to_string();
                match kind.as_str() {
                    "alias-status" => {
                        let api: Api<ModelAlias> = Api::namespaced(client, BASELINE_NS);
                        let p = json!({"apiVersion": "slipway.dev/v1alpha1", "kind": "ModelAlias",
                            "status": {"resolvedVersion": w["version"], "conditions": [{"type": "Ready", "status": "True", "reason": "Resolved", "message": "resolved"}]}});
                        api.patch_status(&name, &pp, &Patch::Apply(&p)).await.map(|_| ())
                    }
                    "version-status" => {
                        let api: Api<ModelVersion> = Api::namespaced(client, BASELINE_NS);
                        let p = json!({"apiVersion": "slipway.dev/v1alpha1", "kind": "ModelVersion",
                            "status": {"registeredAt": chrono::Utc::now(), "conditions": [{"type": "Ready", "status": "True", "reason": "Evaluated", "message": "0 of 0 evaluation suites passed"}]}});
                        api.patch_status(&name, &pp, &Patch::Apply(&p)).await.map(|_| ())
                    }
                    "md-status" => {
                        let api: Api<ModelDeployment> = Api::namespaced(client, BASELINE_NS);
                        let p = json!({"apiVersion": "slipway.dev/v1alpha1", "kind": "ModelDeployment",
                            "status": {"phase": "Progressing", "targetVersion": "20", "history": [{"event": "RolloutStarted", "message": "rolling out 20"}]}});
                        api.patch_status(&name, &pp, &Patch::Apply(&p)).await.map(|_| ())
                    }
                    "service" => {
                        let api: Api<Service> = Api::namespaced(client, BASELINE_NS);
                        let p = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                            "spec": {"selector": {"slipway.dev/deployment": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}});
                        api.patch(&name, &pp, &Patch::Apply(&p)).await.map(|_| ())
                    }
                    "deployment" => {
                        let api: Api<Deployment> = Api::namespaced(client, BASELINE_NS);
                        let dname = format!("{name}-v{}", w["version"].as_str().unwrap());
                        let labels = json!({"slipway.dev/deployment": name, "slipway.dev/version": w["version"]});
                        let p = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": dname, "labels": labels},
                            "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "model-server", "image": "registry.example/server:1", "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]}}}});
                        api.patch(&dname, &pp, &Patch::Apply(&p)).await.map(|_| ())
                    }
                    _ => {
                        let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client, BASELINE_NS);
                        let e = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
                            "metadata": {"name": format!("{name}.{}", w["id"].as_str().unwrap())},
                            "eventTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                            "reportingController": "bench", "reportingInstance": "bench", "action": "AliasMoved",
                            "reason": "AliasMoved", "type": "Normal", "note": "moved",
                            "regarding": {"kind": "ModelAlias", "namespace": BASELINE_NS, "name": name}});
                        api.create(&PostParams::default(), &serde_json::from_value(e).unwrap()).await.map(|_| ())
                    }
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await
        .expect("baseline writes");
    (n, started.elapsed())
}

/// What the benchmark watches to see the controller converge: the objects of the namespace, kept
/// current by watches (one initial list each), so observing puts no polling load on the API
/// server the controller and the peer are measured against.
struct Observed {
    versions: reflector::Store<ModelVersion>,
    aliases: reflector::Store<ModelAlias>,
    deployments: reflector::Store<Deployment>,
    services: reflector::Store<Service>,
}

fn observe<K: Watchable>(api: Api<K>, config: watcher::Config) -> reflector::Store<K> {
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config)).default_backoff();
    tokio::spawn(stream.for_each(|_| async {}));
    reader
}

impl Observed {
    async fn start(client: &kube::Client) -> Observed {
        let managed = || watcher::Config::default().labels("slipway.dev/deployment");
        let observed = Observed {
            versions: observe(Api::namespaced(client.clone(), NS), Default::default()),
            aliases: observe(Api::namespaced(client.clone(), NS), Default::default()),
            deployments: observe(Api::namespaced(client.clone(), NS), managed()),
            services: observe(Api::namespaced(client.clone(), NS), managed()),
        };
        let _ = observed.versions.wait_until_ready().await;
        let _ = observed.aliases.wait_until_ready().await;
        let _ = observed.deployments.wait_until_ready().await;
        let _ = observed.services.wait_until_ready().await;
        observed
    }

    /// Versions with a status, aliases resolved to their spec, Deployments and Services.
    fn converged(&self) -> (usize, usize, usize, usize) {
        let ready = self
            .versions
            .state()
            .iter()
            .filter(|v| v.status.as_ref().is_some_and(|s| !s.conditions.is_empty()))
            .count();
        let resolved = self
            .aliases
            .state()
            .iter()
            .filter(|a| {
                a.status.as_ref().and_then(|s| s.resolved_version.as_ref()) == Some(&a.spec.version)
            })
            .count();
        (
            ready,
            resolved,
            self.deployments.state().len(),
            self.services.state().len(),
        )
    }
}

/// User + system CPU seconds a process has used (`/proc/PID/stat`, clock ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

fn rss_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The API server's request counts by (verb, resource/subresource), from its `/metrics`.
async fn requests(client: &kube::Client) -> BTreeMap<(String, String), f64> {
    let req = axum::http::Request::get("/metrics")
        .body(Vec::new())
        .unwrap();
    let text = client.request_text(req).await.unwrap_or_default();
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let label = |name: &str| {
            line.split(&format!("{name}=\"")[..])
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or_default()
                .to_string()
        };
        let group = label("group");
        if group != "slipway.dev"
            && group != "apps"
            && label("resource") != "services"
            && group != "events.k8s.io"
        {
            continue;
        }
        let Some(n) = line.rsplit(' ').next().and_then(|n| n.parse::<f64>().ok()) else {
            continue;
        };
        let sub = label("subresource");
        let what = if sub.is_empty() {
            label("resource")
        } else {
            format!("{}/{sub}", label("resource"))
        };
        *out.entry((label("verb"), what)).or_insert(0.0) += n;
    }
    out
}

/// What `after` counted more than `before`, largest first.
fn difference(
    before: &BTreeMap<(String, String), f64>,
    after: &BTreeMap<(String, String), f64>,
) -> Vec<(String, f64)> {
    let mut d: Vec<(String, f64)> = after
        .iter()
        .map(|(k, v)| {
            (
                format!("{} {}", k.0, k.1),
                v - before.get(k).copied().unwrap_or(0.0),
            )
        })
        .filter(|(_, v)| *v > 0.0)
        .collect();
    d.sort_by(|a, b| b.1.total_cmp(&a.1));
    d
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p / 100.0).round() as usize]
}

#[tokio::main]
async fn main() {
    let binary = std::env::args()
        .nth(1)
        .expect("usage: bench_controller SLIPWAY_BINARY");
    let client = kube::Client::try_default().await.expect("KUBECONFIG");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in [NS, BASELINE_NS] {
        let n: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        let _ = namespaces.create(&PostParams::default(), &n).await;
    }
    let objects = objects();
    // The same objects in both namespaces (the baseline's aliases and deployments need them).
    let t_create = create_all(&client, NS, &objects).await;
    let t_create_b = create_all(&client, BASELINE_NS, &objects).await;
    println!(
        "created {} objects: {:.2} s (and {:.2} s again in {BASELINE_NS}), {CONCURRENCY} at a time",
        objects.len(),
        t_create.as_secs_f64(),
        t_create_b.as_secs_f64()
    );
    let before_peer = requests(&client).await;
    let (writes, t_baseline) = baseline_writes(&client).await;
    let after_peer = requests(&client).await;
    println!(
        "API server alone: the controller's {writes} writes, {CONCURRENCY} at a time: {:.2} s",
        t_baseline.as_secs_f64()
    );

    let observed = Observed::start(&client).await;
    let log = std::env::temp_dir().join("bench-controller-process.log");
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let started = Instant::now();
    let mut child = std::process::Command::new(&binary)
        .args([
            "controller",
            "--namespace",
            NS,
            "--listen",
            &listen.to_string(),
        ])
        .env("SLIPWAY_LOG", "info,kube=warn")
        .env("SLIPWAY_ALLOWED_IMAGES", "*")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("slipway controller");
    let target = (
        models() * VERSIONS,
        models() * ALIASES,
        models() * DEPLOYMENTS,
        models() * DEPLOYMENTS,
    );
    loop {
        let state = observed.converged();
        if state == target {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "not converged: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t_converge = started.elapsed();
    let after_converge = requests(&client).await;
    let cpu = cpu_seconds(child.id());
    let (rss, hwm) = rss_kb(child.id());
    println!(
        "slipway controller converged {} versions, {} aliases, {} deployments: {:.2} s ({:.2}× the API server alone)",
        target.0,
        target.1,
        target.2,
        t_converge.as_secs_f64(),
        t_converge.as_secs_f64() / t_baseline.as_secs_f64()
    );
    println!(
        "resident memory after converging: {} MB (peak {} MB)",
        rss / 1024,
        hwm / 1024
    );
    let show = |d: Vec<(String, f64)>| {
        let total: f64 = d.iter().map(|(_, n)| n).sum();
        let top: Vec<String> = d.iter().map(|(k, n)| format!("{k} {n}")).collect();
        format!("{total} ({})", top.join(", "))
    };
    println!(
        "controller CPU time while converging (user + system): {cpu:.2} s of {:.2} s on 2 cores",
        t_converge.as_secs_f64()
    );
    println!(
        "API requests of the peer: {}",
        show(difference(&before_peer, &after_peer))
    );
    println!(
        "API requests while converging (the controller, and this benchmark's four watches): {}",
        show(difference(&after_peer, &after_converge))
    );

    // Promotion latency: move one alias at a time and time the first rollout write.
    let aliases: Api<ModelAlias> = Api::namespaced(client.clone(), NS);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let mut external = Vec::new();
    for m in 0..models() {
        let to = (VERSIONS - 10).to_string();
        let patch = json!({"spec": {"version": to}});
        let t0 = Instant::now();
        aliases
            .patch(
                &format!("model-{m}-a0"),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .unwrap();
        let name = format!("model-{m}-d0-v{to}");
        loop {
            if deployments.get_opt(&name).await.unwrap().is_some() {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "{name} never appeared"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        external.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let mut internal: Vec<f64> = text
        .lines()
        .filter(|l| l.contains("rollout started"))
        .filter_map(|l| {
            l.split("latency_ms=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    // The first 200 are the initial rollouts; the promotions are the rest.
    let internal: Vec<f64> = internal.split_off(internal.len().saturating_sub(models()));
    let mut sorted_int = internal.clone();
    sorted_int.sort_by(f64::total_cmp);
    external.sort_by(f64::total_cmp);
    let versions: BTreeSet<usize> = (0..models()).collect();
    println!(
        "promotion latency over {} alias moves, inside the controller (move observed → first rollout write): p50 {:.1} ms, p99 {:.1} ms",
        sorted_int.len(),
        percentile(&sorted_int, 50.0),
        percentile(&sorted_int, 99.0)
    );
    println!(
        "promotion latency seen by a client ({} moves: alias PATCH sent → new Deployment readable): p50 {:.1} ms, p99 {:.1} ms",
        versions.len(),
        percentile(&external, 50.0),
        percentile(&external, 99.0)
    );
}
