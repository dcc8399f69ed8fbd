//! Rollbacks written back to git: a canary of a registry served over smart HTTP rolls back, and
//! `slipway run` pushes a branch that moves the alias back (a commit on the reconciled one that
//! changes that one value), opens the pull request on a local server answering GitHub's
//! endpoint (the exact request asserted), says so in history, status and a notification, does
//! it once, and is quiet once the change is merged.

mod support;

use std::path::Path;

use support::git_http::GitHttp;
use support::git_mode::{Traffic, add_broken_version, files_under, quickstart, set_production};
use support::http::Receiver;
use support::{GitRepo, slipway_env};

/// Commits every file of `work/registry` under `registry/` on `main` (on top of `parent`).
fn commit_registry(
    repo: &mut GitRepo,
    work: &Path,
    parent: Option<git2::Oid>,
    m: &str,
) -> git2::Oid {
    let mut files = Vec::new();
    files_under(&work.join("registry"), "", &mut files);
    let paths: Vec<(String, &str)> = files
        .iter()
        .map(|(p, c)| (format!("registry/{p}"), c.as_str()))
        .collect();
    let refs: Vec<(&str, Option<&str>)> =
        paths.iter().map(|(p, c)| (p.as_str(), Some(*c))).collect();
    let commit = repo.commit("main", parent, &refs, m);
    // The smart-HTTP server's pushes run as `nobody` (see GitHttp): the new objects' folders too.
    let _ = std::process::Command::new("chmod")
        .args(["-R", "a+rwX"])
        .arg(repo.path())
        .status();
    commit
}

#[test]
fn a_rollback_is_pushed_as_a_branch_with_a_pull_request_and_announced() {
    let (_dir, work) = quickstart();
    // A channel that hears RolledBack hears the written-back rollback too.
    let slack = Receiver::start(0);
    let model = work.join("registry/model.yaml");
    let mut text = std::fs::read_to_string(&model).unwrap();
    text.push_str("  notifications:\n    - name: ml-platform\n      events: [RolledBack]\n      slack:\n        webhookUrl: {env: SLIPWAY_TEST_SLACK_URL}\n");
    std::fs::write(&model, text).unwrap();
    let mut repo = GitRepo::new();
    let first = commit_registry(&mut repo, &work, None, "registry");
    let server = GitHttp::start(repo.path());
    let url = format!("http://127.0.0.1:{}/cgi-bin/git/.git", server.port);
    let github = Receiver::start(0);
    github.answer_status(
        "201 Created",
        r#"{"number": 7, "html_url": "https://github.com/acme/registry/pull/7"}"#,
    );
    let token = work.join("github-token");
    std::fs::write(&token, "ghp_test_token\n").unwrap();
    let slack_url = format!("{}/slack", slack.url());
    let run = |work: &Path| {
        let traffic = Traffic::start(work);
        let out = slipway_env(
            &[
                "run",
                &url,
                "--registry-path",
                "registry",
                "--once",
                "--state",
                "state",
                "--github-token-file",
                token.to_str().unwrap(),
                "--github-api-url",
                &github.url(),
                "--github-repository",
                "acme/registry",
                "--allowed-secrets",
                "SLIPWAY_TEST_SLACK_URL",
                "--allowed-destinations",
                "127.0.0.1",
            ],
            work,
            &[("SLIPWAY_TEST_SLACK_URL", slack_url.as_str())],
        );
        traffic.stop();
        out
    };
    let out = run(&work);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);

    // Version 9 answers every prediction with an error: its canary is rolled back to 7.
    add_broken_version(&work);
    set_production(&work, "9");
    let second = commit_registry(&mut repo, &work, Some(first), "promote 9");
    let out = run(&work);
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    let branch = "slipway/rollback/default/pitch-frames-api/9";
    assert!(
        out.stdout
            .contains(&format!("the rollback is written back: branch {branch}")),
        "{}",
        out.stdout
    );

    // The branch: one commit on the reconciled one, changing the alias's version alone.
    let pushed = repo
        .repo
        .find_branch(branch, git2::BranchType::Local)
        .expect("the branch was pushed")
        .get()
        .peel_to_commit()
        .unwrap();
    assert_eq!(pushed.parent_id(0).unwrap(), second);
    let diff = repo
        .repo
        .diff_tree_to_tree(
            Some(&pushed.parent(0).unwrap().tree().unwrap()),
            Some(&pushed.tree().unwrap()),
            None,
        )
        .unwrap();
    let mut changed = Vec::new();
    diff.print(git2::DiffFormat::Patch, |_, _, line| {
        if matches!(line.origin(), '+' | '-') {
            changed.push(format!(
                "{}{}",
                line.origin(),
                String::from_utf8_lossy(line.content()).trim_end()
            ));
        }
        true
    })
    .unwrap();
    assert_eq!(changed, ["-  version: \"9\"", "+  version: \"7\""]);
    let message = pushed.message().unwrap();
    assert!(
        message.starts_with(
            "Roll pitch-frames production back to 7 (pitch-frames-api rejected 9)\n\n"
        ),
        "{message}"
    );
    assert!(message.contains("analysis failed at 20%"), "{message}");

    // The pull request, exactly as GitHub's API takes it.
    let asked = github.requests();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(github.methods(), ["POST"]);
    let (path, headers, body) = &asked[0];
    assert_eq!(path, "/repos/acme/registry/pulls");
    let headers = headers.to_ascii_lowercase();
    assert!(
        headers.contains("authorization: bearer ghp_test_token"),
        "{headers}"
    );
    assert!(
        headers.contains("accept: application/vnd.github+json"),
        "{headers}"
    );
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["head"], branch);
    assert_eq!(body["base"], "main");
    assert_eq!(
        body["title"],
        "Roll pitch-frames production back to 7 (pitch-frames-api rejected 9)"
    );
    assert!(
        body["body"].as_str().unwrap().contains(
            "Slipway rolled ModelDeployment default/pitch-frames-api back: analysis failed"
        ),
        "{body}"
    );

    // History, status and the notification carry the link; the token is nowhere.
    let history = slipway_env(&["history", "pitch-frames", "--state", "state"], &work, &[]);
    let proposed = history
        .stdout
        .lines()
        .find(|l| l.contains("RollbackProposed"))
        .unwrap_or_else(|| panic!("{}", history.stdout))
        .to_string();
    assert!(
        proposed.contains("pull request https://github.com/acme/registry/pull/7"),
        "{proposed}"
    );
    let status = slipway_env(&["status", "--state", "state"], &work, &[]);
    assert!(!status.stdout.contains("ghp_test_token"));
    assert!(
        status.stdout.contains(
            "rollback of 9 written back to the source: pull request https://github.com/acme/registry/pull/7"
        ),
        "{}",
        status.stdout
    );
    let heard: Vec<String> = slack.requests().into_iter().map(|(_, _, b)| b).collect();
    assert!(
        heard.iter().any(|b| b.contains("RollbackProposed")
            && b.contains("https://github.com/acme/registry/pull/7")),
        "{heard:?}"
    );
    assert!(heard.iter().any(|b| b.contains("RolledBack")), "{heard:?}");

    // Once: another pass pushes nothing and opens nothing (the deployment is still rolled
    // back: `--once` says so with exit code 3).
    let out = run(&work);
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    assert_eq!(github.requests().len(), 1);

    // Merged: the source says 7 again; nothing to roll out, nothing to propose.
    repo.repo
        .branch("main", &pushed, true)
        .expect("merge the proposal");
    let out = run(&work);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(!out.stdout.contains("written back"), "{}", out.stdout);
    assert_eq!(github.requests().len(), 1);
}

/// A source that refuses the branch (a hook, as branch protection would): the rollback stands,
/// the history says why the write-back failed, and the status records it to try again later.
#[test]
fn a_refused_push_is_reported_and_the_rollback_stands() {
    let (_dir, work) = quickstart();
    let mut repo = GitRepo::new();
    let first = commit_registry(&mut repo, &work, None, "registry");
    let hook = repo.path().join(".git/hooks/pre-receive");
    std::fs::create_dir_all(hook.parent().unwrap()).unwrap();
    std::fs::write(
        &hook,
        "#!/bin/sh\necho 'branches under slipway/ need an admin' >&2\nexit 1\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let url = format!("file://{}", repo.path().display());
    let run = |work: &Path| {
        let traffic = Traffic::start(work);
        let out = slipway_env(
            &[
                "run",
                &url,
                "--registry-path",
                "registry",
                "--once",
                "--state",
                "state",
            ],
            work,
            &[],
        );
        traffic.stop();
        out
    };
    assert_eq!(run(&work).code, 0);
    add_broken_version(&work);
    set_production(&work, "9");
    commit_registry(&mut repo, &work, Some(first), "promote 9");
    let out = run(&work);
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("the rollback could not be written back to the source (cannot push branch slipway/rollback/default/pitch-frames-api/9")
            && out.stdout.contains("branches under slipway/ need an admin")
            && out.stdout.contains("tried again in 5 minutes"),
        "{}",
        out.stdout
    );
    assert!(
        repo.repo
            .find_branch(
                "slipway/rollback/default/pitch-frames-api/9",
                git2::BranchType::Local
            )
            .is_err()
    );
    let history = slipway_env(&["history", "pitch-frames", "--state", "state"], &work, &[]);
    assert!(
        history.stdout.contains("RollbackProposalFailed"),
        "{}",
        history.stdout
    );
    // Not tried again on the next pass (it waits five minutes).
    let out = run(&work);
    assert!(
        !out.stdout.contains("could not be written back"),
        "{}",
        out.stdout
    );
}
