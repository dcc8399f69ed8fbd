//! From a push to the first canary step (issue 23 §6, target < 2 s).
//!
//! `cargo build --release --no-default-features -p slipway --example bench_push --bin slipway
//! && target/release/examples/bench_push [RUNS]`
//!
//! Slipway: `slipway run` (the release binary beside this example) follows a git repository
//! holding the quickstart's registry, with a one-hour `--interval` and a push webhook
//! (`--webhook-secret-file`). Once production serves 7, a commit moves it to 8 and a signed
//! GitHub push delivery is posted (T0); the time until the deployment's status shows traffic on
//! version 8 — the canary's first step applied — is measured from T0.
//!
//! The peer, in the same run: the same `slipway run` without the webhook, polling the repository
//! every 5 s (`--interval 5s`), as a GitOps tool that polls does (Argo CD polls every 3 minutes
//! by default); T0 is the commit.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hmac::{KeyInit, Mac};

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.0 exchange with 127.0.0.1:`port`: status and body (0: no answer).
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: x\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if write!(s, "{head}\r\n{body}").is_err() {
        return (0, String::new());
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// The deployment's status, from the run's read API.
fn status(port: u16) -> serde_json::Value {
    let (_, body) = http(port, "GET", "/api/v1/deployments", &[], "");
    let rows: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    rows.as_array()
        .and_then(|r| r.iter().find(|d| d["name"] == "pitch-frames-api"))
        .map(|d| d["status"].clone())
        .unwrap_or_default()
}

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args([
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@example.com",
        ])
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "__pycache__" {
                copy_dir(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn sign(body: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// One run: the quickstart in a git repository, production at 7; then moved to 8 and, with
/// `webhook`, a signed push posted. Time from then to traffic on 8.
fn once(slipway: &Path, quickstart: &Path, webhook: bool) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let registry = repo.join("registry");
    copy_dir(quickstart, &registry);
    let deployments = registry.join("deployments.yaml");
    let text = std::fs::read_to_string(&deployments).unwrap();
    std::fs::write(
        &deployments,
        text.replace("port: 8765", &format!("port: {}", free_port())),
    )
    .unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "registry"]);
    std::fs::write(dir.path().join("secret"), SECRET).unwrap();
    let listen = free_port();
    let url = format!("file://{}", repo.display());
    let interval = if webhook { "1h" } else { "5s" };
    let mut args = vec![
        "run".to_string(),
        url,
        "--registry-path".into(),
        "registry".into(),
        "--state".into(),
        "state".into(),
        "--interval".into(),
        interval.into(),
        "--listen".into(),
        format!("127.0.0.1:{listen}"),
    ];
    if webhook {
        args.extend(["--webhook-secret-file".into(), "secret".into()]);
    }
    let mut run = Command::new(slipway)
        .args(&args)
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let until = |what: &dyn Fn(&serde_json::Value) -> bool, within: Duration| {
        let deadline = Instant::now() + within;
        loop {
            if what(&status(listen)) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out: {}", status(listen));
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    until(
        &|s| s["phase"] == "Healthy" && s["servingVersion"] == "7",
        Duration::from_secs(120),
    );
    // Settled: the run sleeps its interval.
    std::thread::sleep(Duration::from_secs(1));
    let aliases = registry.join("aliases.yaml");
    let text = std::fs::read_to_string(&aliases).unwrap();
    std::fs::write(&aliases, text.replace("version: \"7\"", "version: \"8\"")).unwrap();
    git(&repo, &["commit", "-q", "-am", "promote 8"]);
    let t0 = Instant::now();
    if webhook {
        let body = r#"{"ref": "refs/heads/main"}"#;
        let sig = sign(body);
        let (code, said) = http(
            listen,
            "POST",
            "/hooks/git",
            &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)],
            body,
        );
        assert_eq!(code, 202, "{said}");
    }
    until(
        &|s| s["traffic"]["8"].as_u64().is_some_and(|w| w > 0),
        Duration::from_secs(60),
    );
    let took = t0.elapsed();
    let _ = Command::new("kill")
        .args(["-TERM", &run.id().to_string()])
        .status();
    let _ = run.wait();
    took
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
    let slipway = exe.parent().unwrap().parent().unwrap().join("slipway");
    let quickstart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart");
    let (mut hooked, mut polled) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        hooked.push(once(&slipway, &quickstart, true));
        polled.push(once(&slipway, &quickstart, false));
    }
    println!("From the push to traffic on the new version, {runs} runs each:\n");
    println!("| | min [ms] | median [ms] | max [ms] | mean [ms] |");
    println!("|:---|---:|---:|---:|---:|");
    row("Slipway, push webhook (`--interval 1h`)", hooked);
    row("peer: the same run polling every 5 s, no webhook", polled);
}
