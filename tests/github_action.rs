//! The GitHub Action's script (`action/slipway_pr.py`, run by `action.yml`) against a local
//! server that answers the GitHub REST endpoints it calls, asserting the exact requests: the
//! first run creates the sticky comment and fails the check (awaiting approval), the second,
//! after a lead approved, updates the same comment and passes.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use support::{GitRepo, root};

/// One request the stub received: method, path, authorization header, JSON body.
type Seen = (String, String, String, Value);

/// The few GitHub endpoints the script calls, for repository acme/registry, pull request 7.
struct GitHub {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    reviews: Arc<Mutex<Value>>,
    comments: Arc<Mutex<Vec<Value>>>,
}

impl GitHub {
    fn start() -> GitHub {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let reviews = Arc::new(Mutex::new(json!([])));
        let comments: Arc<Mutex<Vec<Value>>> = Arc::new(Mutex::new(Vec::new()));
        let (s, r, c) = (seen.clone(), reviews.clone(), comments.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap_or(0);
                let mut parts = line.split_whitespace();
                let (method, path) = (
                    parts.next().unwrap_or("").to_string(),
                    parts.next().unwrap_or("").to_string(),
                );
                let (mut length, mut auth) = (0, String::new());
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    let lower = h.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if lower.starts_with("authorization:") {
                        auth = h["authorization:".len()..].trim().to_string();
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap_or(());
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                s.lock()
                    .unwrap()
                    .push((method.clone(), path.clone(), auth, body.clone()));
                let (status, answer) = match (method.as_str(), path.as_str()) {
                    ("GET", "/repos/acme/registry/pulls/7/reviews?per_page=100") => {
                        ("200 OK", r.lock().unwrap().clone())
                    }
                    ("GET", "/repos/acme/registry/issues/7/comments?per_page=100") => {
                        ("200 OK", Value::Array(c.lock().unwrap().clone()))
                    }
                    ("POST", "/repos/acme/registry/issues/7/comments") => {
                        let made = json!({"id": 101, "body": body["body"]});
                        c.lock().unwrap().push(made.clone());
                        ("201 Created", made)
                    }
                    ("PATCH", "/repos/acme/registry/issues/comments/101") => {
                        let mut all = c.lock().unwrap();
                        all[0]["body"] = body["body"].clone();
                        ("200 OK", all[0].clone())
                    }
                    _ => ("404 Not Found", json!({"message": "Not Found"})),
                };
                let text = answer.to_string();
                let _ = stream.write_all(
                    format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                        text.len()
                    )
                    .as_bytes(),
                );
            }
        });
        GitHub {
            port,
            seen,
            reviews,
            comments,
        }
    }

    fn take(&self) -> Vec<(String, String)> {
        let seen = std::mem::take(&mut *self.seen.lock().unwrap());
        for (_, path, auth, _) in &seen {
            assert_eq!(auth, "Bearer test-token", "{path}");
        }
        seen.into_iter().map(|(m, p, _, _)| (m, p)).collect()
    }
}

/// A registry repository whose pull request (branch `pr`, base `origin/main`) moves
/// production from 7 to 8; returns it and the head commit.
fn registry() -> (GitRepo, String) {
    let (repo, main, head) = support::promotion_pr();
    repo.repo
        .reference(
            "refs/remotes/origin/main",
            main,
            true,
            "as actions/checkout fetches it",
        )
        .unwrap();
    (repo, head.to_string())
}

/// Runs the action's script as the composite step does; returns (exit code, stdout).
fn run_action(
    repo: &GitRepo,
    github: &GitHub,
    event: &Value,
    summary: &std::path::Path,
) -> (i32, String) {
    let event_file = repo.path().join("event.json");
    std::fs::write(&event_file, event.to_string()).unwrap();
    let out = std::process::Command::new("python3")
        .arg(root().join("action/slipway_pr.py"))
        .current_dir(repo.path())
        .env(
            "GITHUB_API_URL",
            format!("http://127.0.0.1:{}", github.port),
        )
        .env("GITHUB_REPOSITORY", "acme/registry")
        .env("GITHUB_EVENT_PATH", &event_file)
        .env("GITHUB_STEP_SUMMARY", summary)
        .env("GITHUB_TOKEN", "test-token")
        .env("INPUT_PATH", "registry")
        .env(
            "INPUT_RESULTS",
            root().join("examples/promotion-pr/results"),
        )
        .env("INPUT_FORMAT", "markdown")
        .env("INPUT_SLIPWAY", env!("CARGO_BIN_EXE_slipway"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn the_action_creates_then_updates_one_comment_and_fails_a_plan_awaiting_approval() {
    let github = GitHub::start();
    let (repo, head) = registry();
    let summary = repo.path().join("summary.md");
    let event = json!({"pull_request": {
        "number": 7, "base": {"ref": "main"}, "head": {"sha": head}, "user": {"login": "dana"}}});

    // No review yet: the plan awaits a lead's approval; the comment is created; the step fails.
    let (code, said) = run_action(&repo, &github, &event, &summary);
    assert_eq!(code, 1, "{said}");
    assert!(
        said.contains(
            "::error::A change is denied or awaiting approval: awaiting approval: ml-lead (0/1)"
        ),
        "{said}"
    );
    assert_eq!(
        github.take(),
        [
            ("GET", "/repos/acme/registry/pulls/7/reviews?per_page=100"),
            ("GET", "/repos/acme/registry/issues/7/comments?per_page=100"),
            ("POST", "/repos/acme/registry/issues/7/comments"),
        ]
        .map(|(m, p)| (m.to_string(), p.to_string()))
    );
    let first = github.comments.lock().unwrap()[0]["body"].clone();
    let first = first.as_str().unwrap();
    assert!(first.starts_with("<!-- slipway:plan -->"), "{first}");
    assert!(
        first.contains("awaiting approval: ml-lead (0/1)"),
        "{first}"
    );
    assert!(std::fs::read_to_string(&summary).unwrap().contains(first));

    // alice approves the head commit: the same comment is updated and the step passes.
    *github.reviews.lock().unwrap() = json!([{
        "id": 1, "user": {"login": "alice"}, "state": "APPROVED", "commit_id": head,
        "submitted_at": chrono::Utc::now().to_rfc3339()}]);
    let (code, said) = run_action(&repo, &github, &event, &summary);
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("updated the plan comment 101"), "{said}");
    assert_eq!(
        github.take(),
        [
            ("GET", "/repos/acme/registry/pulls/7/reviews?per_page=100"),
            ("GET", "/repos/acme/registry/issues/7/comments?per_page=100"),
            ("PATCH", "/repos/acme/registry/issues/comments/101"),
        ]
        .map(|(m, p)| (m.to_string(), p.to_string()))
    );
    let comments = github.comments.lock().unwrap().clone();
    assert_eq!(comments.len(), 1, "one sticky comment");
    let body = comments[0]["body"].as_str().unwrap();
    assert!(body.contains("**Decision:** allowed"), "{body}");
    assert!(!body.contains("awaiting approval"), "{body}");
}
