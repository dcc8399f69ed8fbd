//! Admission benchmark (issue 10): `kubectl apply` of 200 new `ModelVersion`s into a namespace
//! already holding 100, 1,000 and 10,000 Slipway objects, through Slipway's validating webhook
//! and without it (the peer: the same API server and client alone), in one run. Also the
//! webhook's resident memory at each size.
//!
//! `KUBECONFIG=… cargo run --release --example bench_admission -- SLIPWAY_BINARY` (see
//! `bench/admission.sh`, which starts etcd and kube-apiserver for it).

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, PostParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};
use slipway_crd::{ModelVersion, RegisteredModel};

const SIZES: [usize; 3] = [100, 1_000, 10_000];
const APPLIED: usize = 200;
const PER_MODEL: usize = 100;
const CONCURRENCY: usize = 16;

fn model(m: usize) -> Value {
    json!({"apiVersion": "slipway.dev/v1alpha1", "kind": "RegisteredModel",
        "metadata": {"name": format!("model-{m}")},
        "spec": {"description": format!("Synthetic model {m}."), "owners": ["group:ml-leads"]}})
}

fn version(m: usize, v: usize) -> Value {
    json!({"apiVersion": "slipway.dev/v1alpha1", "kind": "ModelVersion",
        "metadata": {"name": format!("model-{m}-{v}")},
        "spec": {"model": format!("model-{m}"), "version": v.to_string(),
                 "artifact": {"uri": format!("s3://bench/{m}/{v}/model.onnx"),
                              "digest": format!("sha256:{:064x}", m * 100_000 + v)}}})
}

/// `size` objects: one model per hundred objects and its versions.
fn namespace_objects(size: usize) -> Vec<Value> {
    let models = size.div_ceil(PER_MODEL);
    let mut out = Vec::with_capacity(size);
    for m in 0..models {
        out.push(model(m));
        for v in 1..PER_MODEL {
            if out.len() < size {
                out.push(version(m, v));
            }
        }
    }
    out
}

async fn fill(client: &kube::Client, ns: &str, objects: Vec<Value>) -> Duration {
    let started = Instant::now();
    futures::stream::iter(objects)
        .map(|o| {
            let client = client.clone();
            async move {
                let ar = if o["kind"] == "RegisteredModel" {
                    ApiResource::erase::<RegisteredModel>(&())
                } else {
                    ApiResource::erase::<ModelVersion>(&())
                };
                let api: Api<DynamicObject> = Api::namespaced_with(client, ns, &ar);
                let obj: DynamicObject = serde_json::from_value(o).unwrap();
                api.create(&PostParams::default(), &obj).await.map(|_| ())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await
        .expect("filling the namespace");
    started.elapsed()
}

/// `kubectl apply` of a file of 200 new versions of model 0 (labels from `first`); its time.
fn apply(ns: &str, first: usize, dir: &std::path::Path) -> Duration {
    let path = dir.join(format!("{ns}-{first}.yaml"));
    let mut f = std::fs::File::create(&path).unwrap();
    for v in first..first + APPLIED {
        writeln!(
            f,
            "---\n{}",
            serde_saphyr::to_string(&version(0, v)).unwrap()
        )
        .unwrap();
    }
    drop(f);
    let started = Instant::now();
    let out = Command::new("kubectl")
        .args(["apply", "-n", ns, "-f"])
        .arg(&path)
        .stdout(Stdio::null())
        .output()
        .expect("kubectl");
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "kubectl apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn kubectl_apply_stdin(yaml: &str) {
    let mut child = Command::new("kubectl")
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn webhook_configuration(port: u16) -> String {
    format!(
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {{name: slipway-bench}}\nwebhooks:\n- name: validate.slipway.dev\n  clientConfig: {{url: \"https://127.0.0.1:{port}/validate\"}}\n  rules:\n  - apiGroups: [slipway.dev]\n    apiVersions: [v1alpha1]\n    operations: [CREATE, UPDATE, DELETE]\n    resources: [\"*\"]\n    scope: Namespaced\n  sideEffects: None\n  admissionReviewVersions: [v1]\n  failurePolicy: Fail\n  timeoutSeconds: 10\n"
    )
}

fn rss_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// The upper bound of the webhook's median decision time (ms), from its `/metrics` histogram.
fn decision_ms(port: u16) -> f64 {
    use std::io::Read as _;
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        conn,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    let value = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    let count = value("slipway_admission_seconds_count");
    // The median's bucket: the first whose cumulative count reaches half of all decisions.
    text.lines()
        .filter(|l| l.starts_with("slipway_admission_seconds_bucket{le=\""))
        .filter_map(|l| {
            let le = l.split('"').nth(1)?.parse::<f64>().ok()?;
            let n = l.split_whitespace().nth(1)?.parse::<f64>().ok()?;
            Some((le, n))
        })
        .find(|(_, n)| *n >= count / 2.0)
        .map_or(f64::NAN, |(le, _)| le * 1000.0)
}

#[tokio::main]
async fn main() {
    let slipway = std::env::args()
        .nth(1)
        .expect("usage: bench_admission SLIPWAY_BINARY");
    let client = kube::Client::try_default().await.expect("KUBECONFIG");
    let dir = tempfile::tempdir().unwrap();
    println!(
        "kubectl apply of {APPLIED} new ModelVersions (one file) into a namespace holding N objects"
    );
    println!(
        "{:>7} {:>12} {:>14} {:>8} {:>20} {:>12} {:>16}",
        "N",
        "without (s)",
        "webhook (s)",
        "ratio",
        "p50 decision ≤ (ms)",
        "filled in",
        "webhook RSS (MB)"
    );
    for size in SIZES {
        let ns = format!("size-{size}");
        let namespaces: Api<Namespace> = Api::all(client.clone());
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
            )
            .await
            .unwrap();
        let filled = fill(&client, &ns, namespace_objects(size)).await;

        // The peer first: the API server and kubectl alone.
        let without = apply(&ns, 1_000, dir.path());

        // Then the same through the webhook (webhook only: no controllers competing for the cores).
        let port = free_port();
        let metrics_port = free_port();
        kubectl_apply_stdin(&webhook_configuration(port));
        let log = dir.path().join(format!("controller-{size}.log"));
        let mut controller = Command::new(&slipway)
            .env("SLIPWAY_ALLOWED_IMAGES", "*")
            .args(["controller", "--webhook-only", "--listen"])
            .arg(format!("127.0.0.1:{metrics_port}"))
            .arg("--webhook-listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(["--webhook-config", "slipway-bench"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("slipway controller");
        // Ready when a server-side dry run goes through the webhook.
        let probe = dir.path().join("probe.yaml");
        std::fs::write(
            &probe,
            serde_saphyr::to_string(&version(0, 99_999)).unwrap(),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let ok = Command::new("kubectl")
                .args(["apply", "--dry-run=server", "-n", &ns, "-f"])
                .arg(&probe)
                .output()
                .is_ok_and(|o| o.status.success());
            if ok
                && std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .contains("admission decision")
            {
                break;
            }
            assert!(Instant::now() < deadline, "the webhook did not answer");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let with = apply(&ns, 2_000, dir.path());
        let decisions = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("admission decision")
            .count();
        assert!(decisions > APPLIED, "only {decisions} decisions logged");
        let rss = rss_kb(controller.id(), "VmHWM:");
        let decided = decision_ms(metrics_port);
        let _ = controller.kill();
        let _ = controller.wait();
        let _ = Command::new("kubectl")
            .args(["delete", "validatingwebhookconfiguration", "slipway-bench"])
            .output();
        println!(
            "{size:>7} {:>12.2} {:>14.2} {:>7.2}× {:>20.2} {:>10.1} s {:>16.1}",
            without.as_secs_f64(),
            with.as_secs_f64(),
            with.as_secs_f64() / without.as_secs_f64(),
            decided,
            filled.as_secs_f64(),
            rss as f64 / 1024.0
        );
    }
}
