//! Router overhead: the latency the local target's traffic router adds to a prediction request,
//! measured side by side with calling the model server directly, in the same run.
//!
//! `cargo run --release --example bench_router [REQUESTS]`
//!
//! Two model servers: the quickstart's `serve.py` (the real one, Python standard library) and a
//! minimal in-process hyper server that answers instantly (so the router's own cost is not hidden
//! in the model server's) — the latter also through a router in a shadow step, and through the
//! router as `slipway run` runs it: `slipway router`, a process of its own (built beside this
//! example: `cargo build --release --example bench_router --bin slipway`). For each, sequential
//! requests alternate in rounds of 200 between "direct" and "through the router" (one
//! keep-alive client each), then 16 concurrent clients measure throughput both ways, with the
//! CPU time each request costs the benchmark process (clients and instant server) and the
//! router's process (from `/proc/PID/stat`): at full CPU, the share of a direct call's
//! throughput a router can keep is at most direct CPU / (direct CPU + the router's).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use slipway::edges::serving::router::TrafficRouter;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

const QUERY: &str = "/predict?grass=0.7&lines=0.05&crowd=0.1&brightness=0.6";

async fn fast_upstream() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = service_fn(|_req: Request<hyper::body::Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                        br#"{"label": "open-play", "version": "8"}"#,
                    ))))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    port
}

async fn call(client: &HttpClient, port: u16) -> Duration {
    let started = Instant::now();
    let uri: hyper::Uri = format!("http://127.0.0.1:{port}{QUERY}").parse().unwrap();
    let response = client
        .request(Request::get(uri).body(Full::new(Bytes::new())).unwrap())
        .await
        .expect("request");
    assert!(response.status().is_success(), "{}", response.status());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(body.starts_with(b"{\"label\""));
    started.elapsed()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p / 100.0).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

fn mean(d: &[Duration]) -> f64 {
    d.iter().map(Duration::as_secs_f64).sum::<f64>() / d.len() as f64 * 1e6
}

async fn throughput(port: u16, clients: usize, per_client: usize) -> f64 {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        tasks.push(tokio::spawn(async move {
            let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
            for _ in 0..per_client {
                call(&client, port).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (clients * per_client) as f64 / started.elapsed().as_secs_f64()
}

/// CPU time (user + system) process `pid` has used, in seconds (`/proc/PID/stat`).
fn cpu_seconds(pid: u32, ticks_per_second: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) in parentheses: utime is the 14th field
    // of the line, stime the 15th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (tick(11) + tick(12)) / ticks_per_second
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`).
fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// How the benchmark reaches a router: in this process, or `slipway router` over its socket.
trait Routes {
    fn set(&self, weights: &BTreeMap<String, u32>, ports: &BTreeMap<String, u16>);
    fn set_routing(&self, routing: &slipway::decide::rollout::routing::Routing);
    fn port(&self) -> u16;
    /// The router's own process, when it has one.
    fn pid(&self) -> Option<u32> {
        None
    }
}

impl Routes for TrafficRouter {
    fn set(&self, weights: &BTreeMap<String, u32>, ports: &BTreeMap<String, u16>) {
        TrafficRouter::set(self, weights, ports);
    }
    fn set_routing(&self, routing: &slipway::decide::rollout::routing::Routing) {
        TrafficRouter::set_routing(self, routing);
    }
    fn port(&self) -> u16 {
        self.addr.port()
    }
}

/// `slipway router` in a process of its own.
struct RouterProcess {
    child: std::process::Child,
    port: u16,
    socket: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl RouterProcess {
    fn start() -> RouterProcess {
        use slipway::edges::serving::control::{Ask, ask_now};
        let exe = std::env::current_exe().unwrap();
        let slipway = exe.parent().unwrap().parent().unwrap().join("slipway");
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("r.sock");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(&slipway)
            .args(["router", "--port", &port.to_string(), "--control"])
            .arg(&socket)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e} (build it beside the example)", slipway.display()));
        let deadline = Instant::now() + Duration::from_secs(10);
        while ask_now(&socket, &Ask::Hello).is_err() {
            assert!(Instant::now() < deadline, "slipway router did not answer");
            std::thread::sleep(Duration::from_millis(20));
        }
        RouterProcess {
            child,
            port,
            socket,
            _dir: dir,
        }
    }
}

impl Routes for RouterProcess {
    fn set(&self, weights: &BTreeMap<String, u32>, ports: &BTreeMap<String, u16>) {
        use slipway::edges::serving::control::{Ask, ask_now};
        let set = Ask::Set {
            weights: weights.clone(),
            ports: ports.clone(),
        };
        ask_now(&self.socket, &set).expect("set");
    }
    fn set_routing(&self, routing: &slipway::decide::rollout::routing::Routing) {
        use slipway::edges::serving::control::{Ask, ask_now};
        let set = Ask::Routing {
            routing: routing.clone(),
        };
        ask_now(&self.socket, &set).expect("routing");
    }
    fn port(&self) -> u16 {
        self.port
    }
    fn pid(&self) -> Option<u32> {
        Some(self.child.id())
    }
}

impl Drop for RouterProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn measure(name: &str, upstream: u16, router: &dyn Routes, requests: usize, shadows: &[u16]) {
    let mut ports = BTreeMap::from([("8".to_string(), upstream)]);
    if !shadows.is_empty() {
        // Standing shadows: versions 9, 10, … have no weight, every request is mirrored to
        // each and its answer compared with 8's.
        let mirrored: Vec<(String, u32)> = (9..)
            .zip(shadows)
            .map(|(v, p)| {
                ports.insert(v.to_string(), *p);
                (v.to_string(), 100)
            })
            .collect();
        router.set_routing(&slipway::decide::rollout::routing::Routing {
            compare: slipway::decide::rollout::shadow::Compare {
                tolerance: 0.0,
                ignore: vec!["version".into()],
            },
            shadows: mirrored,
            ..Default::default()
        });
    }
    router.set(&BTreeMap::from([("8".to_string(), 100)]), &ports);
    let routed_port = router.port();
    let direct_client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let routed_client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    // Warm-up: connections, page faults, Python's imports.
    for _ in 0..200 {
        call(&direct_client, upstream).await;
        call(&routed_client, routed_port).await;
    }
    let (mut direct, mut routed) = (Vec::new(), Vec::new());
    while direct.len() < requests {
        for _ in 0..200 {
            direct.push(call(&direct_client, upstream).await);
        }
        for _ in 0..200 {
            routed.push(call(&routed_client, routed_port).await);
        }
    }
    direct.sort();
    routed.sort();
    // Four times the sequential count: the CPU clock ticks in hundredths of a second.
    let per_client = requests * 4 / 16;
    let hz = ticks_per_second();
    let own = std::process::id();
    let cpu = |pid: Option<u32>| pid.map_or(0.0, |p| cpu_seconds(p, hz));
    let (b0, r0) = (cpu(Some(own)), cpu(router.pid()));
    let tp_direct = throughput(upstream, 16, per_client).await;
    let (b1, r1) = (cpu(Some(own)), cpu(router.pid()));
    let tp_routed = throughput(routed_port, 16, per_client).await;
    let (b2, r2) = (cpu(Some(own)), cpu(router.pid()));
    let n = (16 * per_client) as f64;
    let us = |s: f64| s / n * 1e6;
    println!(
        "### {name}: {} sequential requests each way\n",
        direct.len()
    );
    println!("| | p50 [µs] | p90 [µs] | p99 [µs] | mean [µs] | 16 clients [req/s] |");
    println!("|:---|---:|---:|---:|---:|---:|");
    for (label, d, tp) in [
        ("direct", &direct, tp_direct),
        ("through the router", &routed, tp_routed),
    ] {
        println!(
            "| {label} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
            percentile(d, 50.0),
            percentile(d, 90.0),
            percentile(d, 99.0),
            mean(d),
            tp
        );
    }
    println!(
        "| **added by the router** | {:.0} | {:.0} | {:.0} | {:.0} | {:.0}% |\n",
        percentile(&routed, 50.0) - percentile(&direct, 50.0),
        percentile(&routed, 90.0) - percentile(&direct, 90.0),
        percentile(&routed, 99.0) - percentile(&direct, 99.0),
        mean(&routed) - mean(&direct),
        (tp_routed / tp_direct - 1.0) * 100.0
    );
    let (direct_cpu, routed_bench, routed_router) = (us(b1 - b0), us(b2 - b1), us(r2 - r1));
    let _ = r1 - r0;
    if name.contains("serve.py") {
        // The model server is a process of its own, not counted here.
    } else if router.pid().is_some() {
        let bound = direct_cpu / (routed_bench + routed_router) * 100.0;
        println!(
            "CPU per request under 16 clients: direct {direct_cpu:.1} µs (clients + server); through the router {routed_bench:.1} µs (clients + server) + {routed_router:.1} µs (the router's process). Kept: {:.0}% of direct throughput; at full CPU at most {bound:.0}%.\n",
            tp_routed / tp_direct * 100.0
        );
    } else {
        println!(
            "CPU per request under 16 clients: direct {direct_cpu:.1} µs; through the router {routed_bench:.1} µs (clients, server and router in this process). At full CPU at most {:.0}% of direct throughput.\n",
            direct_cpu / routed_bench * 100.0
        );
    }
}

fn main() {
    let requests: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let router = RouterProcess::start();

        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut python = std::process::Command::new("python3")
            .arg("serve.py")
            .current_dir(&root)
            .env("PORT", port.to_string())
            .env("MODEL_URI", "models/pitch-frames-8.json")
            .env("MODEL_VERSION", "8")
            .spawn()
            .expect("python3 serve.py");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "serve.py did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        measure(
            "quickstart serve.py (Python, one connection per request)",
            port,
            &router,
            requests / 4,
            &[],
        )
        .await;
        let _ = python.kill();
        let _ = python.wait();

        let fast = fast_upstream().await;
        measure(
            "minimal hyper server (answers instantly, keep-alive), `slipway router` in a process of its own",
            fast,
            &router,
            requests,
            &[],
        )
        .await;
        let in_process = TrafficRouter::start(0).await.expect("router");
        measure(
            "minimal hyper server, the router in this process (on the benchmark's runtime)",
            fast,
            &in_process,
            requests,
            &[],
        )
        .await;
        // Every request mirrored to one, then to three instant servers, answers compared.
        let shadows = [
            fast_upstream().await,
            fast_upstream().await,
            fast_upstream().await,
        ];
        for n in [1, 3] {
            let mirroring = TrafficRouter::start(0).await.expect("router");
            measure(
                &format!(
                    "minimal hyper server, every request also mirrored to {n} shadow(s) and compared"
                ),
                fast,
                &mirroring,
                requests,
                &shadows[..n],
            )
            .await;
            let totals = mirroring.totals();
            for v in (9..).take(n) {
                let t = totals.get(&v.to_string()).cloned().unwrap_or_default();
                println!(
                    "(shadow {v}: {} mirrored, {} agreed, {} skipped: its mirroring slots busy)\n",
                    t.mirrored, t.agreed, t.skipped
                );
            }
        }
    });
}
