//! From a failing metric to all traffic on the last healthy version (issue 22 §1, target: one
//! interval + < 1 s).
//!
//! `cargo build --release --no-default-features -p slipway --example bench_rollback --bin slipway
//! && target/release/examples/bench_rollback [RUNS]`
//!
//! Slipway: `slipway run` (the release binary beside this example) on a copy of the quickstart,
//! its canary of version 8 held at 50% and judged by an `http` metric (`interval: 1s`) that this
//! benchmark serves. Once the canary has passed a measurement, the metric turns bad (T0); a
//! client calls the router every 2 ms, and the time from T0 to the first answer after which
//! version 8 never answers again is the time to all traffic on version 7.
//!
//! The peer, in the same run: the fastest hand-rolled rollback at the same interval — a loop
//! that asks the same metric every second and, when it is bad, sends all traffic to 7 through
//! the same router (`slipway router`, a process of its own, serving the same two `serve.py`
//! servers).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const QUERY: &str = "/predict?grass=0.7&lines=0.05&crowd=0.1&brightness=0.6";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The metric: `{"bad": 0}` until `bad` is set, then `{"bad": 1}` (HTTP/1.0, one answer per
/// connection).
fn metric_server(bad: Arc<AtomicBool>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let body = format!("{{\"bad\": {}}}", u8::from(bad.load(Ordering::SeqCst)));
            let _ = write!(
                s,
                "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// The version that answered one prediction through `port` (None: no answer).
fn answered_by(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {QUERY} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    answer
        .lines()
        .find_map(|l| l.strip_prefix("x-slipway-version: "))
        .map(|v| v.trim().to_string())
}

/// Waits until `port` answers from `version`.
fn wait_for(port: u16, version: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while answered_by(port).as_deref() != Some(version) {
        assert!(
            Instant::now() < deadline,
            "version {version} never answered"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Turns the metric bad and times, from then, the first answer after which version 8 never
/// answered again (watching for 4 s after 8's last answer).
fn time_to_stable(router: u16, bad: &AtomicBool) -> Duration {
    let t0 = Instant::now();
    bad.store(true, Ordering::SeqCst);
    let mut last_8 = t0;
    let mut first_after: Option<Instant> = None;
    while last_8.elapsed() < Duration::from_secs(4) && t0.elapsed() < Duration::from_secs(30) {
        let at = Instant::now();
        match answered_by(router).as_deref() {
            Some("8") => {
                last_8 = at;
                first_after = None;
            }
            Some(_) if first_after.is_none() => first_after = Some(at),
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    first_after.expect("version 8 kept answering") - t0
}

/// One Slipway run: the quickstart with production at 7, moved to 8 (canary at 50%, judged by
/// the metric on `metric`), then the metric turns bad.
fn slipway_once(slipway: &Path, quickstart: &Path, metric: u16, bad: &AtomicBool) -> Duration {
    bad.store(false, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry");
    copy_dir(quickstart, &registry);
    let router = free_port();
    let deployments = registry.join("deployments.yaml");
    let text = std::fs::read_to_string(&deployments).unwrap();
    let analysis = "    analysis:\n      maxErrorRatio: 0.05\n      latencyPercentile: 99\n      maxLatencyMs: 250\n";
    assert!(text.contains(analysis));
    let judged = format!(
        "    analysis:\n      metrics:\n        - name: bad\n          interval: 1s\n          successCondition: \"result < 1\"\n          provider:\n            http:\n              url: http://127.0.0.1:{metric}/bad\n              jsonPath: bad\n"
    );
    let text = text
        .replace("port: 8765", &format!("port: {router}"))
        .replace(
            "      - weight: 20\n        pause: 2s\n      - weight: 50\n        pause: 2s\n",
            "      - weight: 50\n        pause: 1h\n",
        )
        .replace(analysis, &judged);
    assert!(text.contains("pause: 1h") && text.contains("name: bad"));
    std::fs::write(&deployments, text).unwrap();
    let mut run = Command::new(slipway)
        .args([
            "run",
            "registry",
            "--state",
            "state",
            "--interval",
            "1s",
            "--allowed-destinations",
            "127.0.0.1",
        ])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(router, "7", Duration::from_secs(120));
    let aliases = registry.join("aliases.yaml");
    let text = std::fs::read_to_string(&aliases).unwrap();
    std::fs::write(&aliases, text.replace("version: \"7\"", "version: \"8\"")).unwrap();
    wait_for(router, "8", Duration::from_secs(120));
    // A passing measurement first: the canary is judged and holds.
    std::thread::sleep(Duration::from_secs(3));
    let took = time_to_stable(router, bad);
    let _ = Command::new("kill")
        .args(["-TERM", &run.id().to_string()])
        .status();
    let _ = run.wait();
    took
}

/// A model server of the quickstart for `version` on a free port.
fn serve_py(quickstart: &Path, version: &str) -> (Child, u16) {
    let port = free_port();
    let child = Command::new("python3")
        .arg("serve.py")
        .current_dir(quickstart)
        .env("PORT", port.to_string())
        .env("MODEL_URI", format!("models/pitch-frames-{version}.json"))
        .env("MODEL_VERSION", version)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "serve.py did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, port)
}

/// The peer: `slipway router` serving 7 and 8 at 50/50, and a loop asking the metric every
/// second that sends all traffic to 7 once it is bad.
fn peer_once(slipway: &Path, quickstart: &Path, metric: u16, bad: &AtomicBool) -> Duration {
    use slipway::edges::serving::control::{Ask, ask_now};
    bad.store(false, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("r.sock");
    let router = free_port();
    let mut child = Command::new(slipway)
        .args(["router", "--port", &router.to_string(), "--control"])
        .arg(&socket)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ask_now(&socket, &Ask::Hello).is_err() {
        assert!(Instant::now() < deadline, "slipway router did not answer");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (mut s7, p7) = serve_py(quickstart, "7");
    let (mut s8, p8) = serve_py(quickstart, "8");
    let ports: std::collections::BTreeMap<String, u16> =
        [("7".to_string(), p7), ("8".to_string(), p8)].into();
    let set = |w7: u32, w8: u32| Ask::Set {
        weights: [("7".to_string(), w7), ("8".to_string(), w8)].into(),
        ports: ports.clone(),
    };
    ask_now(&socket, &set(50, 50)).expect("set");
    wait_for(router, "8", Duration::from_secs(10));
    let done = Arc::new(AtomicBool::new(false));
    let (stop, sock, back) = (done.clone(), socket.clone(), set(100, 0));
    let watcher = std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            let body = http_get(metric, "/bad");
            if body.contains("\"bad\": 1") {
                let _ = ask_now(&sock, &back);
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    // Started at a random point of the loop's second, as a metric turns bad at any time.
    std::thread::sleep(Duration::from_millis(u64::from(std::process::id() % 1000)));
    let took = time_to_stable(router, bad);
    done.store(true, Ordering::SeqCst);
    let _ = watcher.join();
    let _ = ask_now(&socket, &Ask::Stop);
    for c in [&mut child, &mut s7, &mut s8] {
        let _ = c.kill();
        let _ = c.wait();
    }
    took
}

fn http_get(port: u16, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn row(label: &str, mut times: Vec<Duration>) {
    times.sort();
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    let mean = times.iter().map(ms).sum::<f64>() / times.len() as f64;
    println!(
        "| {label} | {:.0} | {:.0} | {:.0} | {:.0} |",
        ms(&times[0]),
        ms(&times[times.len() / 2]),
        ms(times.last().unwrap()),
        mean
    );
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let exe = std::env::current_exe().unwrap();
    let slipway: PathBuf = exe.parent().unwrap().parent().unwrap().join("slipway");
    assert!(
        slipway.exists(),
        "{}: build it beside the example",
        slipway.display()
    );
    let quickstart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart");
    let bad = Arc::new(AtomicBool::new(false));
    let metric = metric_server(bad.clone());
    let (mut ours, mut peer) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        ours.push(slipway_once(&slipway, &quickstart, metric, &bad));
        peer.push(peer_once(&slipway, &quickstart, metric, &bad));
    }
    println!(
        "### From a failing metric to all traffic on the last healthy version: {runs} runs, interval 1 s\n"
    );
    println!("| | min [ms] | p50 [ms] | max [ms] | mean [ms] |");
    println!("|:---|---:|---:|---:|---:|");
    row("Slipway: `slipway run`, metric `interval: 1s`", ours);
    row(
        "peer: a loop asking the metric every second, then all traffic to 7",
        peer,
    );
}
