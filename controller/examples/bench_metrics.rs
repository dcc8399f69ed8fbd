//! What one analysis measurement costs: judging a reading (the core's CEL conditions), and a
//! whole measurement against a real Prometheus (Debian's `prometheus` on loopback, answering an
//! instant query) — side by side with the same query sent with a bare HTTP client (the peer:
//! what any client pays to ask Prometheus).
//!
//! `cargo run --release --example bench_metrics [MEASUREMENTS]`

use std::time::{Duration, Instant};

use slipway::decide::rollout::metrics::{self, Names, Request};

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p / 100.0).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

fn row(label: &str, mut d: Vec<Duration>) {
    d.sort();
    let mean = d.iter().map(Duration::as_secs_f64).sum::<f64>() / d.len() as f64 * 1e6;
    println!(
        "| {label} | {:.1} | {:.1} | {:.1} | {:.1} |",
        percentile(&d, 50.0),
        percentile(&d, 90.0),
        percentile(&d, 99.0),
        mean
    );
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000);
    let metric: slipway_crd::analysis::Metric = serde_json::from_value(serde_json::json!({
        "name": "error-ratio", "successCondition": "result <= 0.05", "failureCondition": "result > 0.2",
        "provider": {"prometheus": {"address": "http://127.0.0.1:0",
                                    "query": "sum(rate(errors{version=\"{{version}}\"}[1m]))"}}
    }))
    .unwrap();
    let now = chrono::Utc::now();
    println!("| | p50 [µs] | p90 [µs] | p99 [µs] | mean [µs] |");
    println!("|:---|---:|---:|---:|---:|");
    // Judging alone: a reading against the success and failure conditions.
    let mut judged = Vec::with_capacity(n);
    for i in 0..n {
        let reading = Ok(serde_json::json!(i as f64 / n as f64));
        let t = Instant::now();
        std::hint::black_box(metrics::judge(&metric, &reading, now));
        judged.push(t.elapsed());
    }
    row("judge a reading (2 CEL conditions)", judged);
    let mut native = Vec::with_capacity(n);
    for i in 0..n {
        let x = std::hint::black_box(i as f64 / n as f64);
        let t = Instant::now();
        std::hint::black_box(x > 0.2 || x <= 0.05);
        native.push(t.elapsed());
    }
    row("the same comparison in Rust (peer)", native);

    // A whole measurement against a real Prometheus.
    let dir = std::env::temp_dir().join(format!("bench-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("p.yml"), "global: {scrape_interval: 1m}\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut prometheus = std::process::Command::new("prometheus")
        .arg(format!("--config.file={}", dir.join("p.yml").display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("prometheus (Debian's package)");
    let address = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while ureq::get(format!("{address}/-/ready")).call().is_err() {
        assert!(Instant::now() < deadline, "prometheus did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let names = Names {
        namespace: "default",
        deployment: "api",
        model: "m",
        version: "8",
        stable: Some("7"),
        since: "60s",
    };
    let query = "vector(0.01) + 0 * sum(rate(errors{version=\"8\"}[1m]) or vector(0))";
    let request = Request::Prometheus {
        address: address.clone(),
        query: query.into(),
    };
    let _ = names;
    let (mut whole, mut bare) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let agent = ureq::Agent::new_with_defaults();
    for _ in 0..n / 10 {
        let _ = slipway::edges::providers::measure(&request, &|_| Err("none".into()), &|_| Ok(()));
    }
    for _ in 0..n {
        let t = Instant::now();
        let reading =
            slipway::edges::providers::measure(&request, &|_| Err("none".into()), &|_| Ok(()));
        let m = metrics::judge(&metric, &reading, now);
        assert_eq!(
            m.verdict,
            slipway_crd::analysis::MeasurementVerdict::Success,
            "{m:?}"
        );
        whole.push(t.elapsed());
        let t = Instant::now();
        let text = agent
            .get(format!("{address}/api/v1/query"))
            .query("query", query)
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        std::hint::black_box(text);
        bare.push(t.elapsed());
    }
    row(
        "a measurement: ask Prometheus, read, judge (Slipway)",
        whole,
    );
    row("the same query with a keep-alive HTTP client (peer)", bare);
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
