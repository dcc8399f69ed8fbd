//! How long a rollback takes to reach git: from the rollback decision to the pushed branch
//! (the core's proposal, a commit on the fetched mirror, `git push` over smart HTTP to a real
//! `git http-backend`), and to the opened pull request (a local server answering GitHub's
//! endpoint with 201) — side by side with the peer: what a person's runbook does by hand
//! (`git clone --depth 1`, edit, `git commit`, `git push`) against the same server.
//!
//! `cargo run --release --example bench_writeback [RUNS]` (needs `git` and `python3`).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use slipway::decide::rollout::writeback;
use slipway::edges::github::GitHub;
use slipway::edges::source::remote::Remote;

const ALIAS: &str = "apiVersion: slipway.dev/v1alpha1\nkind: ModelAlias\nmetadata:\n  name: pitch-frames-production\nspec:\n  model: pitch-frames\n  alias: production\n  version: \"9\"\n";
const DEPLOYMENT: &str = "apiVersion: slipway.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: pitch-frames-api}\nspec:\n  model: pitch-frames\n  alias: production\n  target: {local: {command: [python3, serve.py], port: 9000}}\n";

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "b")
        .env("GIT_AUTHOR_EMAIL", "b@x")
        .env("GIT_COMMITTER_NAME", "b")
        .env("GIT_COMMITTER_EMAIL", "b@x")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}

/// A GitHub stand-in: answers every request 201 with a pull request's address.
fn github() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let answer = r#"{"html_url": "https://github.com/acme/registry/pull/1"}"#;
            let _ = (&stream).write_all(
                format!("HTTP/1.1 201 Created\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}", answer.len()).as_bytes(),
            );
        }
    });
    port
}

fn row(label: &str, mut d: Vec<Duration>) {
    d.sort();
    let ms = |x: &Duration| x.as_secs_f64() * 1000.0;
    let mean = d.iter().map(ms).sum::<f64>() / d.len() as f64;
    println!(
        "| {label} | {:.0} | {:.0} | {:.0} |",
        ms(&d[d.len() / 2]),
        ms(&d[d.len() - 1]),
        mean
    );
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    // The served repository (bare), with the promoting commit.
    let served = dir.path().join("repos/registry.git");
    std::fs::create_dir_all(&served).unwrap();
    git(&served, &["init", "--quiet", "--bare", "-b", "main"]);
    let work = dir.path().join("seed");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "--quiet", "-b", "main"]);
    std::fs::write(work.join("aliases.yaml"), ALIAS).unwrap();
    std::fs::write(work.join("deployments.yaml"), DEPLOYMENT).unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "--quiet", "-m", "promote 9"]);
    git(
        &work,
        &["push", "--quiet", served.to_str().unwrap(), "main"],
    );
    // `git http-backend` behind Python's CGI server.
    let cgi = dir.path().join("www/cgi-bin");
    std::fs::create_dir_all(&cgi).unwrap();
    std::fs::write(
        cgi.join("git"),
        "#!/bin/sh\nexec git -c safe.directory=* -c http.receivepack=true http-backend\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(cgi.join("git"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let _ = Command::new("chmod")
        .args(["-R", "a+rwX"])
        .arg(dir.path())
        .status();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--cgi",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .current_dir(dir.path().join("www"))
        .env("GIT_PROJECT_ROOT", dir.path().join("repos"))
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("http://127.0.0.1:{port}/cgi-bin/git/registry.git");
    let gh = GitHub {
        api: format!("http://127.0.0.1:{}", github()),
        repository: "acme/registry".into(),
        token: "t".into(),
    };
    // Slipway's mirror, fetched as a pass does before the rollback.
    let remote = Remote::new(&url, "main", "", &dir.path().join("state"));
    let snapshot = remote.fetch().unwrap();
    let commit = snapshot.revision.commit.clone();
    let (catalog, _) = slipway::decide::catalog::Catalog::from_files(&snapshot.files);
    let d = catalog
        .objects()
        .iter()
        .find_map(|o| match &o.resource {
            slipway::decide::catalog::Resource::ModelDeployment(d) => Some((**d).clone()),
            _ => None,
        })
        .unwrap();
    let wanted = writeback::Wanted {
        version: "9".into(),
        back_to: "8".into(),
        why: "analysis failed at 20%".into(),
    };
    let (mut pushed, mut opened, mut by_hand) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let t = Instant::now();
        let mut p = writeback::propose(
            &catalog,
            ("default", "default"),
            &d,
            &wanted,
            &|f| remote.file(&commit, f),
            None,
        )
        .unwrap();
        p.branch = format!("{}-{i}", p.branch);
        remote
            .push_change(&commit, &p.file, &p.content, &p.branch, &p.message)
            .unwrap();
        pushed.push(t.elapsed());
        gh.open_pull_request(&p.branch, "main", p.title(), &p.body())
            .unwrap();
        opened.push(t.elapsed());

        // The peer: the same change by hand.
        let hand = dir.path().join(format!("hand-{i}"));
        let t = Instant::now();
        git(
            dir.path(),
            &[
                "clone",
                "--quiet",
                "--depth",
                "1",
                "--branch",
                "main",
                &url,
                hand.to_str().unwrap(),
            ],
        );
        let text = std::fs::read_to_string(hand.join("aliases.yaml")).unwrap();
        std::fs::write(hand.join("aliases.yaml"), text.replace("\"9\"", "\"8\"")).unwrap();
        git(&hand, &["commit", "--quiet", "-am", "roll back"]);
        git(
            &hand,
            &[
                "push",
                "--quiet",
                "origin",
                &format!("HEAD:refs/heads/by-hand-{i}"),
            ],
        );
        by_hand.push(t.elapsed());
    }
    let _ = server.kill();
    let _ = server.wait();
    println!("| {runs} runs | p50 [ms] | max [ms] | mean [ms] |");
    println!("|:---|---:|---:|---:|");
    row(
        "Slipway: rollback → branch pushed (proposal, commit, git push)",
        pushed,
    );
    row("Slipway: rollback → pull request opened", opened);
    row(
        "by hand: clone --depth 1, edit, commit, push (peer)",
        by_hand,
    );
}
