//! Issue 23 §6: a push webhook starts a pass at once. `slipway run` follows a git repository
//! with a one-hour `--interval`; a commit moving the alias is picked up only when a push
//! delivery signed with the secret of `--webhook-secret-file` arrives — in GitHub's format
//! (`X-Hub-Signature-256`) and in Gitea's (`X-Gitea-Signature`). Unsigned deliveries, and ones
//! signed with another secret, start nothing.

mod support;

use std::time::Duration;

use hmac::{KeyInit, Mac};
use support::git_mode::{QuickstartRepo, quickstart, spawn_slipway};
use support::{eventually, free_port, http::request};

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn sign(secret: &str, body: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn a_signed_push_starts_a_pass_at_once_and_an_unsigned_one_nothing() {
    let (_dir, work) = quickstart();
    let QuickstartRepo {
        mut repo,
        first,
        url,
        files,
    } = QuickstartRepo::new(&work);
    std::fs::write(work.join("hook-secret"), format!("{SECRET}\n")).unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let args = [
        "run",
        &url,
        "--registry-path",
        "registry",
        "--state",
        "state",
        "--interval",
        "1h",
        "--listen",
        &listen,
        "--webhook-secret-file",
        "hook-secret",
    ];
    let _run = spawn_slipway(&work, &args);
    let base = format!("http://{listen}");
    let revision = || {
        let (_, body) = request("GET", &format!("{base}/readyz"), &[], "");
        serde_json::from_str::<serde_json::Value>(&body).unwrap_or_default()["revision"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let at = |commit: &git2::Oid| revision().contains(&commit.to_string()[..12]);
    eventually(Duration::from_secs(60), || at(&first).then_some(()));
    // Settled (7 serves, nothing left to wait for): the run sleeps its hour.
    let settled = |version: &str| {
        let st = support::git_mode::deployment_status(port);
        (st["phase"] == "Healthy" && st["servingVersion"] == version).then_some(())
    };
    eventually(Duration::from_secs(60), || settled("7"));
    std::thread::sleep(Duration::from_secs(1));

    // Production moves to 8 in git; with a one-hour interval nothing looks at it yet.
    let aliases = files
        .iter()
        .find(|(p, _)| p == "aliases.yaml")
        .unwrap()
        .1
        .clone();
    let moved = aliases.replace("version: \"7\"", "version: \"8\"");
    let second = repo.commit(
        "main",
        Some(first),
        &[("registry/aliases.yaml", Some(&moved))],
        "promote 8",
    );
    let hook = format!("{base}/hooks/git");
    let body = r#"{"ref": "refs/heads/main", "after": "x"}"#;
    // A push to another branch, signed: not this run's, nothing starts.
    let other = r#"{"ref": "refs/heads/feature"}"#;
    let signature = format!("sha256={}", sign(SECRET, other));
    let (code, said) = request(
        "POST",
        &hook,
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &signature),
        ],
        other,
    );
    assert_eq!(code, 202, "{said}");
    assert!(said.contains("ignored"), "{said}");
    // Unsigned, signed with another secret, or for another body: refused, and no pass.
    let (code, said) = request("POST", &hook, &[("X-GitHub-Event", "push")], body);
    assert_eq!(code, 401, "{said}");
    assert!(said.contains("no signature"), "{said}");
    let forged = format!("sha256={}", sign("not-the-secret-at-all!", body));
    let (code, _) = request(
        "POST",
        &hook,
        &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &forged)],
        body,
    );
    assert_eq!(code, 401);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        at(&first),
        "no pass without a valid signature: {}",
        revision()
    );

    // GitHub's format: the pass starts at once.
    let github = format!("sha256={}", sign(SECRET, body));
    let delivered = [
        ("X-GitHub-Event", "push"),
        ("X-Hub-Signature-256", github.as_str()),
        ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    ];
    let (code, said) = request("POST", &hook, &delivered, body);
    assert_eq!(code, 202, "{said}");
    eventually(Duration::from_secs(10), || at(&second).then_some(()));
    let moving = support::git_mode::deployment_status(port);
    assert_eq!(moving["lastDesiredVersion"], "8", "{moving}");
    // A ping is answered, and starts nothing.
    let (code, said) = request(
        "POST",
        &hook,
        &[("X-GitHub-Event", "ping"), ("X-Hub-Signature-256", &github)],
        body,
    );
    assert_eq!((code, said.trim()), (200, "pong"));

    // Settled on 8: the same delivery sent again (a replay) starts nothing.
    // (The canary's steps pass on the requests it answers.)
    let traffic = support::git_mode::Traffic::start(&work);
    eventually(Duration::from_secs(60), || settled("8"));
    drop(traffic);
    std::thread::sleep(Duration::from_secs(1));
    // Gitea's format.
    let back = repo.commit(
        "main",
        Some(second),
        &[("registry/aliases.yaml", Some(&aliases))],
        "back to 7",
    );
    let (code, said) = request("POST", &hook, &delivered, body);
    assert_eq!(code, 202, "{said}");
    assert!(said.contains("taken already"), "{said}");
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        at(&second),
        "a replayed delivery starts nothing: {}",
        revision()
    );
    let gitea = sign(SECRET, body);
    let (code, said) = request(
        "POST",
        &hook,
        &[("X-Gitea-Event", "push"), ("X-Gitea-Signature", &gitea)],
        body,
    );
    assert_eq!(code, 202, "{said}");
    eventually(Duration::from_secs(10), || at(&back).then_some(()));
}

#[test]
fn without_a_secret_the_webhook_is_off_and_a_short_secret_is_refused() {
    let (_dir, work) = quickstart();
    std::fs::write(work.join("short"), "abc\n").unwrap();
    let run = support::slipway(
        &[
            "run",
            "registry",
            "--once",
            "--state",
            "state",
            "--listen",
            "127.0.0.1:0",
            "--webhook-secret-file",
            "short",
        ],
        &work,
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("at least 16 characters"),
        "{}",
        run.stderr
    );
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let args = [
        "run",
        "registry",
        "--state",
        "state",
        "--interval",
        "1h",
        "--listen",
        &listen,
    ];
    let _run = spawn_slipway(&work, &args);
    let hook = format!("http://{listen}/hooks/git");
    let (code, said) = eventually(Duration::from_secs(30), || {
        let r = request("POST", &hook, &[], "{}");
        (r.0 != 0).then_some(r)
    });
    assert_eq!(code, 404, "{said}");
    assert!(said.contains("--webhook-secret-file"), "{said}");
}
