//! Git mode (`slipway run`) as a new user runs it: a temporary copy of the quickstart, the
//! binary in the background (served on a free port, stopped with SIGTERM), its router and read
//! API asked over loopback, and its history read back.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{eventually, free_port, root, slipway};

/// A `slipway` process a test started: stopped with SIGTERM when dropped still running (a
/// failing test leaves no `slipway run`, router or model server behind), killed if it does not
/// exit within 10 s.
pub struct Running(pub std::process::Child);

impl std::ops::Deref for Running {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !matches!(self.0.try_wait(), Ok(None)) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if !matches!(self.0.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `slipway ARGS` in `work` in the background, its output discarded.
pub fn spawn_slipway(work: &Path, args: &[&str]) -> Running {
    Running(
        Command::new(env!("CARGO_BIN_EXE_slipway"))
            .args(args)
            .current_dir(work)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Starts `slipway run registry` (every second, serving HTTP on a free port, with `extra`
/// arguments); returns it and the port.
pub fn serve(work: &Path, extra: &[&str]) -> (Running, u16) {
    serve_on(work, free_port(), extra)
}

/// [`serve`] on a port of the caller's (a scraper configured before it starts).
pub fn serve_on(work: &Path, port: u16, extra: &[&str]) -> (Running, u16) {
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec![
        "run",
        "registry",
        "--state",
        "state",
        "--interval",
        "1s",
        "--listen",
        &listen,
    ];
    args.extend_from_slice(extra);
    (spawn_slipway(work, &args), port)
}

/// Sends SIGTERM and requires a clean exit within 20 s.
pub fn terminate(child: &mut std::process::Child) {
    signal(child.id(), "-TERM");
    let status = eventually(Duration::from_secs(20), || child.try_wait().unwrap());
    assert!(status.success(), "{status:?}");
}

pub fn signal(pid: u32, sig: &str) {
    assert!(
        Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
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

/// A temporary copy of the quickstart registry (its router on a free port) and an empty state
/// folder beside it.
pub fn quickstart() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &root().join("examples/quickstart"),
        &dir.path().join("registry"),
    );
    let port = free_port();
    let deployments = dir.path().join("registry/deployments.yaml");
    let text = std::fs::read_to_string(&deployments)
        .unwrap()
        .replace("port: 8765", &format!("port: {port}"));
    std::fs::write(&deployments, text).unwrap();
    std::fs::write(dir.path().join("port"), port.to_string()).unwrap();
    let path = dir.path().to_path_buf();
    (dir, path)
}

pub fn router_port(work: &Path) -> u16 {
    std::fs::read_to_string(work.join("port"))
        .unwrap()
        .parse()
        .unwrap()
}

/// GET /predict through the router; the answering version, or the HTTP status on errors.
pub fn predict(port: u16) -> Option<String> {
    predict_as(port, "")
}

/// [`predict`] with extra header lines (each ending in `\r\n`).
pub fn predict_as(port: u16, headers: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(
        format!("GET /predict?grass=0.7&lines=0.05&crowd=0.1&brightness=0.6 HTTP/1.0\r\nHost: x\r\n{headers}\r\n")
            .as_bytes(),
    )
    .ok()?;
    let mut response = String::new();
    s.read_to_string(&mut response).ok()?;
    let status = response.get(9..12)?.to_string();
    let version = response
        .lines()
        .find_map(|l| l.strip_prefix("x-slipway-version: "))
        .map(|v| v.trim().to_string());
    Some(match (status.as_str(), version) {
        ("200", Some(v)) => v,
        (code, v) => format!("{code} from {}", v.unwrap_or_default()),
    })
}

/// Requests through the quickstart's router every 10 ms, on a thread of its own until stopped:
/// a canary step passes only on requests it saw (the quickstart's analysis asks for 20 per
/// step), as it would in production.
pub struct Traffic {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl Traffic {
    /// Starts sending through the router of the quickstart copy `work`.
    pub fn start(work: &Path) -> Traffic {
        Traffic::sending(work, false)
    }

    /// [`Traffic::start`], a request that gets no answer at all (refused, cut, timed out)
    /// recorded as `no answer`.
    pub fn start_strict(work: &Path) -> Traffic {
        Traffic::sending(work, true)
    }

    fn sending(work: &Path, strict: bool) -> Traffic {
        let port = router_port(work);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut answers = Vec::new();
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                match predict(port) {
                    Some(a) => answers.push(a),
                    None if strict => answers.push("no answer".into()),
                    None => {}
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            answers
        });
        Traffic {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sending; every answer seen, in order.
    pub fn stop(mut self) -> Vec<String> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// `slipway run registry --once --state state` in `work` while [`Traffic`] goes through its
/// router; the run's output and every answer seen.
pub fn run_once_with_traffic(work: &Path) -> (super::Run, Vec<String>) {
    let traffic = Traffic::start(work);
    let run = slipway(&["run", "registry", "--once", "--state", "state"], work);
    (run, traffic.stop())
}

pub fn events(work: &Path) -> Vec<String> {
    let h = slipway(&["history", "pitch-frames", "--state", "state"], work);
    h.stdout.lines().map(str::to_string).collect()
}

pub fn set_production(work: &Path, version: &str) {
    let path = work.join("registry/aliases.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("  version: ") {
            out.push_str(&format!("  version: \"{version}\"\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    std::fs::write(path, out).unwrap();
}

/// Every file under a folder, as (relative path, content).
pub fn files_under(base: &Path, rel: &str, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(base.join(rel)).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        if entry.file_type().unwrap().is_dir() {
            if name != "__pycache__" {
                files_under(base, &path, out);
            }
        } else {
            out.push((path, std::fs::read_to_string(entry.path()).unwrap()));
        }
    }
}

/// GET a path from a local HTTP server: (status, body).
pub fn get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    if s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .is_err()
    {
        return (0, String::new());
    }
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    let status = response
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Adds version 9: the same centroids as 8 (so it passes evaluation) but a model file its server
/// cannot serve, so every prediction through it fails.
pub fn add_broken_version(work: &Path) {
    use sha2::{Digest, Sha256};
    let reg = work.join("registry");
    let good = std::fs::read_to_string(reg.join("models/pitch-frames-8.json")).unwrap();
    let broken = good.replace(
        "\"kind\": \"nearest-centroid\"",
        "\"kind\": \"nearest-centroid-v2\"",
    );
    assert_ne!(good, broken);
    std::fs::write(reg.join("models/pitch-frames-9.json"), &broken).unwrap();
    // The evaluation reads any centroid model; only the server insists on the kind it knows.
    let eval = std::fs::read_to_string(reg.join("evaluate.py")).unwrap();
    assert!(
        !eval.contains("nearest-centroid\""),
        "evaluate.py must not check the model kind"
    );
    let digest: String = Sha256::digest(broken.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut versions = std::fs::read_to_string(reg.join("versions.yaml")).unwrap();
    versions.push_str(&format!(
        "---\napiVersion: slipway.dev/v1alpha1\nkind: ModelVersion\nmetadata: {{name: pitch-frames-9}}\nspec:\n  model: pitch-frames\n  version: \"9\"\n  artifact: {{uri: models/pitch-frames-9.json, digest: \"sha256:{digest}\"}}\n"
    ));
    std::fs::write(reg.join("versions.yaml"), versions).unwrap();
}

/// The quickstart deployment's status as `slipway run --listen` on `port` serves it.
pub fn deployment_status(port: u16) -> serde_json::Value {
    let rows: serde_json::Value =
        serde_json::from_str(&get(port, "/api/v1/deployments").1).unwrap_or_default();
    rows.as_array()
        .and_then(|r| r.iter().find(|d| d["name"] == "pitch-frames-api"))
        .map(|d| d["status"].clone())
        .unwrap_or_default()
}

/// A source a run follows: the quickstart's registry of `work` ([`quickstart`]) committed under
/// `registry/` on `main` of a new git repository. The repository, its first commit, its
/// `file://` URL and the files as committed (path under `registry/`, text).
pub struct QuickstartRepo {
    pub repo: super::GitRepo,
    pub first: git2::Oid,
    pub url: String,
    pub files: Vec<(String, String)>,
}

impl QuickstartRepo {
    pub fn new(work: &Path) -> QuickstartRepo {
        let mut files = Vec::new();
        files_under(&work.join("registry"), "", &mut files);
        let mut repo = super::GitRepo::new();
        let first = repo.commit_under("main", None, "registry", &files, "registry");
        let url = format!("file://{}", repo.path().display());
        QuickstartRepo {
            repo,
            first,
            url,
            files,
        }
    }
}
