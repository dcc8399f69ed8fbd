//! Where `slipway run` reads the registry from, and what a bad revision does: a folder, a git
//! repository followed commit by commit (file://, and smart HTTP with credentials never shown);
//! an invalid revision or an unreachable repository is reported and the last good state kept.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::git_mode::{QuickstartRepo, Traffic, files_under, quickstart};
use support::{eventually, slipway};

/// One pass of `slipway run --once` over the registry under `registry/` of the repository at
/// `url`, with its state in `work/state`.
fn run_once(url: &str, work: &Path) -> support::Run {
    let args = [
        "run",
        url,
        "--registry-path",
        "registry",
        "--once",
        "--state",
        "state",
    ];
    slipway(&args, work)
}

/// The source's status as `slipway run` stored it.
fn source_status(work: &Path) -> serde_json::Value {
    let db = rusqlite::Connection::open(work.join("state/state.db")).unwrap();
    let text: String = db
        .query_row("SELECT status FROM status WHERE kind = 'Source'", [], |r| {
            r.get(0)
        })
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn a_bad_revision_is_reported_and_the_last_good_state_is_kept() {
    let (_dir, work) = quickstart();
    assert_eq!(
        slipway(&["run", "registry", "--once", "--state", "state"], &work).code,
        0
    );
    let path = work.join("registry/aliases.yaml");
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        good.replace("  version: \"7\"", "  version: \"7\"\n  colour: red"),
    )
    .unwrap();
    let run = slipway(&["run", "registry", "--once", "--state", "state"], &work);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("registry/aliases.yaml:9:3: ModelAlias default/pitch-frames-production: spec.colour: unknown field"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("is invalid (1 error); still serving folder:"),
        "{}",
        run.stderr
    );
    let status = slipway(&["status", "--state", "state"], &work);
    assert!(
        status.stdout.contains("alias production → 7"),
        "{}",
        status.stdout
    );
    let history = slipway(&["history", "pitch-frames", "--state", "state"], &work);
    assert!(
        !history.stdout.contains("RevisionRejected"),
        "rejections have no model"
    );
    // The source says it is stalled on the invalid revision, and why; the last good one stays.
    let stalled = source_status(&work);
    let condition = &stalled["conditions"][0];
    assert_eq!(
        (
            &condition["type"],
            &condition["status"],
            &condition["reason"]
        ),
        (
            &serde_json::json!("Stalled"),
            &serde_json::json!("True"),
            &serde_json::json!("InvalidRevision")
        ),
        "{stalled}"
    );
    assert!(
        condition["message"]
            .as_str()
            .unwrap()
            .contains("is invalid (1 error); still serving folder:"),
        "{stalled}"
    );
    assert!(
        stalled["lastGood"].as_str().unwrap().starts_with("folder:"),
        "{stalled}"
    );

    // Documents that passed the CRD-schema check are remembered by their text; a document
    // edited into what the API server would refuse (an unquoted number where the CRD says
    // string) is checked again and refused.
    std::fs::write(&path, &good).unwrap();
    // A good revision ends the stall.
    assert_eq!(
        slipway(&["run", "registry", "--once", "--state", "state"], &work).code,
        0
    );
    let cleared = source_status(&work);
    assert_eq!(cleared["conditions"], serde_json::json!([]), "{cleared}");
    let versions = work.join("registry/versions.yaml");
    let text = std::fs::read_to_string(&versions).unwrap();
    std::fs::write(&versions, text.replace("version: \"8\"", "version: 8")).unwrap();
    let run = slipway(&["run", "registry", "--once", "--state", "state"], &work);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("registry/versions.yaml:22:12")
            && run.stderr.contains("quote it, \"8\""),
        "{}",
        run.stderr
    );
}

#[test]
fn a_git_repository_is_followed_commit_by_commit_and_a_bad_commit_changes_nothing() {
    let (_dir, work) = quickstart();
    let QuickstartRepo {
        mut repo,
        first,
        url,
        files,
    } = QuickstartRepo::new(&work);
    let run = || run_once(&url, &work);

    let out = run();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains(&format!("reconciled git:{}", &first.to_string()[..12])),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("pitch-frames/production: (none) → 7"),
        "{}",
        out.stdout
    );

    let aliases = files
        .iter()
        .find(|(p, _)| p == "aliases.yaml")
        .unwrap()
        .1
        .replace("version: \"7\"", "version: \"8\"");
    let second = repo.commit(
        "main",
        Some(first),
        &[("registry/aliases.yaml", Some(&aliases))],
        "promote 8",
    );
    // The canary to 8 passes its steps on the requests it answers.
    let traffic = Traffic::start(&work);
    let out = run();
    drop(traffic);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("pitch-frames/production: 7 → 8"),
        "{}",
        out.stdout
    );

    let broken = aliases.replace("  alias: production", "  alias: [production");
    repo.commit(
        "main",
        Some(second),
        &[("registry/aliases.yaml", Some(&broken))],
        "typo",
    );
    let out = run();
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("registry/aliases.yaml:"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains(&format!("still serving git:{}", &second.to_string()[..12])),
        "{}",
        out.stderr
    );
    let status = slipway(&["status", "--state", "state"], &work);
    assert!(
        status.stdout.contains("alias production → 8"),
        "{}",
        status.stdout
    );

    let missing = slipway(
        &[
            "run",
            "file:///nonexistent/repo.git",
            "--once",
            "--state",
            "state2",
        ],
        &work,
    );
    assert_eq!(missing.code, 1);
    assert!(
        missing
            .stderr
            .contains("cannot fetch file:///nonexistent/repo.git"),
        "{}",
        missing.stderr
    );
}

#[test]
fn a_repository_served_over_http_is_fetched_with_git_and_credentials_are_never_shown() {
    let (_dir, work) = quickstart();
    let mut files = Vec::new();
    files_under(&work.join("registry"), "", &mut files);
    let mut repo = support::GitRepo::new();
    let refs: Vec<(&str, Option<&str>)> = files
        .iter()
        .filter(|(p, _)| p != "deployments.yaml")
        .map(|(p, c)| (p.as_str(), Some(c.as_str())))
        .collect();
    let first = repo.commit("main", None, &refs, "registry");
    let server = support::git_http::GitHttp::start(repo.path());
    let url = format!("http://127.0.0.1:{}/cgi-bin/git/.git", server.port);
    let out = slipway(&["run", &url, "--once", "--state", "state"], &work);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains(&format!("reconciled git:{}", &first.to_string()[..12])),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("pitch-frames/production: (none) → 7"),
        "{}",
        out.stdout
    );

    // The server goes away: the error names the URL without its token, and nothing is torn down.
    drop(server);
    let port = url.split(':').nth(2).unwrap().split('/').next().unwrap();
    let secret = format!("http://bot:s3cret-token@127.0.0.1:{port}/cgi-bin/git/.git");
    let out = slipway(&["run", &secret, "--once", "--state", "state"], &work);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "cannot fetch http://bot:***@127.0.0.1:{port}/cgi-bin/git/.git"
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("keeping the last good revision"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("s3cret"), "{}", out.stderr);
    let status = slipway(&["status", "--state", "state"], &work);
    assert!(
        status.stdout.contains("alias production → 7"),
        "{}",
        status.stdout
    );
}

/// Another process holds the state store's write lock longer than its busy timeout (5 s): the
/// pass that needs it fails, `/readyz` says why, and `slipway run` backs off and runs the pass
/// again once the lock is gone — it does not stop.
#[test]
fn a_locked_state_store_is_waited_out_and_the_run_goes_on() {
    use support::git_mode::{get, serve, terminate};
    let (_dir, work) = quickstart();
    assert_eq!(
        slipway(&["run", "registry", "--once", "--state", "state"], &work).code,
        0
    );
    let (mut child, port) = serve(&work, &[]);
    eventually(Duration::from_secs(60), || {
        (get(port, "/readyz").0 == 200).then_some(())
    });
    let mut locker = Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys, time\nc = sqlite3.connect(sys.argv[1], isolation_level=None)\nc.execute('BEGIN EXCLUSIVE')\nprint('locked', flush=True)\ntime.sleep(9)\nc.execute('COMMIT')\n",
            "state/state.db",
        ])
        .current_dir(&work)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(locker.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");
    // A new revision (a comment) makes the next pass write.
    let aliases = work.join("registry/aliases.yaml");
    let text = std::fs::read_to_string(&aliases).unwrap();
    std::fs::write(&aliases, format!("{text}# touched\n")).unwrap();
    let (code, body) = eventually(Duration::from_secs(30), || {
        let (code, body) = get(port, "/readyz");
        (code == 503 && body.contains("locked")).then_some((code, body))
    });
    assert!(body.contains("\"rejected\":\"pass\""), "{code} {body}");
    assert!(child.try_wait().unwrap().is_none(), "slipway run stopped");
    assert!(locker.wait().unwrap().success());
    // The lock is gone: the pass runs again and the new revision is in force.
    let body = eventually(Duration::from_secs(60), || {
        let (code, body) = get(port, "/readyz");
        (code == 200).then_some(body)
    });
    assert!(body.contains("\"rejected\":null"), "{body}");
    terminate(&mut child);
}

/// A commit is checked out only when something runs from it, and a checkout that fails is the
/// source's failure, not the evaluation's: no attempt is recorded against the suite, and once
/// the cause is gone the same commit evaluates and promotes as usual.
#[test]
fn a_checkout_that_fails_counts_no_evaluation_attempt() {
    let (_dir, work) = quickstart();
    // Kept to the end: the repository lives as long as it.
    let source = QuickstartRepo::new(&work);
    let run = || run_once(&source.url, &work);
    // A file where the checkouts folder goes: nothing can be checked out.
    std::fs::create_dir_all(work.join("state")).unwrap();
    std::fs::write(work.join("state/checkouts"), "in the way").unwrap();

    let out = run();
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("cannot check out commit"),
        "{}",
        out.stderr
    );
    let evaluations = || -> i64 {
        let db = rusqlite::Connection::open(work.join("state/state.db")).unwrap();
        db.query_row(
            "SELECT COUNT(*) FROM status WHERE kind = 'Evaluation'",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_eq!(evaluations(), 0, "no evaluation attempt was recorded");

    std::fs::remove_file(work.join("state/checkouts")).unwrap();
    let out = run();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("pitch-frames/production: (none) → 7"),
        "{}",
        out.stdout
    );
    assert!(evaluations() > 0, "the suites ran and were recorded");
    assert!(
        !files_in(&work.join("state/checkouts")).is_empty(),
        "checked out to run the suites"
    );
}

fn files_in(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}
