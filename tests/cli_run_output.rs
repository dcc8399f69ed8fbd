//! What `slipway run`, `status` and `history` tell the user: a live progress line on a terminal
//! and plain lines in logs, `status` without state saying what to do, and `history --at` saying
//! what served at a time.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::git_mode::{quickstart, run_once_with_traffic, set_production};
use support::slipway;

#[test]
fn a_terminal_gets_a_live_progress_line_and_logs_get_plain_lines() {
    let (_dir, work) = quickstart();
    // `script` gives the run a pseudo-terminal and records everything it draws.
    let typescript = work.join("typescript");
    let command = format!(
        "{} run registry --once --state state",
        env!("CARGO_BIN_EXE_slipway")
    );
    let status = Command::new("script")
        .args(["-qfec", &command])
        .arg(&typescript)
        .current_dir(&work)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("script (util-linux) runs");
    assert!(status.success());
    let drawn = std::fs::read_to_string(&typescript).unwrap();
    // The live line is redrawn in place (carriage return + erase line) with the activity…
    assert!(drawn.contains("\r\x1b[2K"), "{drawn}");
    assert!(
        drawn.contains("running holdout on pitch-frames version 8 (candidate)"),
        "{drawn}"
    );
    // …every finished step stays on screen, and the summary follows.
    assert!(
        drawn.contains("  pitch-frames-api: all traffic on 7"),
        "{drawn}"
    );
    assert!(drawn.contains("reconciled folder:"), "{drawn}");

    // Without a terminal: one plain line per step, no escape sequences.
    let (_dir2, work2) = quickstart();
    let out = slipway(&["run", "registry", "--once", "--state", "state"], &work2);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains('\x1b'), "{}", out.stderr);
    assert!(
        out.stderr
            .lines()
            .any(|l| l == "running holdout on pitch-frames version 8 (candidate)"),
        "{}",
        out.stderr
    );
}

#[test]
fn status_without_state_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let run = slipway(&["status", "--state", "nowhere"], dir.path());
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("no state in nowhere; run `slipway run --state nowhere` first"),
        "{}",
        run.stderr
    );
}

#[test]
fn history_at_a_time_says_what_served_then() {
    let (_dir, work) = quickstart();
    assert_eq!(
        slipway(&["run", "registry", "--once", "--state", "state"], &work).code,
        0
    );
    std::thread::sleep(Duration::from_millis(1100));
    let between = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    std::thread::sleep(Duration::from_millis(1100));
    set_production(&work, "8");
    assert_eq!(run_once_with_traffic(&work).0.code, 0);
    let then = slipway(
        &[
            "history",
            "pitch-frames",
            "--at",
            &between,
            "--state",
            "state",
        ],
        &work,
    );
    assert!(
        then.stdout.contains("  production → 7 (since"),
        "{}",
        then.stdout
    );
    // Each line says who and from which revision apart from its message.
    let all = slipway(&["history", "pitch-frames", "--state", "state"], &work);
    assert!(
        all.stdout
            .contains("pitch-frames/production: (none) → 7  (by slipway, revision folder:"),
        "{}",
        all.stdout
    );
    let now = slipway(
        &[
            "history",
            "pitch-frames",
            "--at",
            "2100-01-01T00:00:00Z",
            "--state",
            "state",
        ],
        &work,
    );
    assert!(
        now.stdout.contains("  production → 8 (since"),
        "{}",
        now.stdout
    );
    let before = slipway(
        &[
            "history",
            "pitch-frames",
            "--at",
            "2000-01-01T00:00:00Z",
            "--state",
            "state",
        ],
        &work,
    );
    assert!(
        before
            .stdout
            .contains("no alias of pitch-frames pointed anywhere"),
        "{}",
        before.stdout
    );
    // A misspelt model is named as such, with the fix, and fails (issue 20).
    for args in [
        &["status", "pitch-frame", "--state", "state"][..],
        &["history", "pitch-frame", "--state", "state"][..],
    ] {
        let typo = slipway(args, &work);
        assert_eq!(typo.code, 1, "{args:?}: {}", typo.stdout);
        assert!(
            typo.stderr.contains(
                "no model pitch-frame in this state (did you mean pitch-frames?); models: pitch-frames"
            ),
            "{args:?}: {}",
            typo.stderr
        );
    }
}

/// Issue 20: `slipway run . --registry-path registry` ignored the registry path of a folder
/// source, and every evaluation then failed: the combination is refused, with what to run.
#[test]
fn a_registry_path_for_a_folder_source_is_refused() {
    let (_dir, work) = quickstart();
    let run = slipway(
        &[
            "run",
            ".",
            "--registry-path",
            "registry",
            "--once",
            "--state",
            "state",
        ],
        &work,
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "--registry-path (or SLIPWAY_REGISTRY_PATH) is for git sources (a URL, or a path ending in .git), and . is a folder: run `slipway run ./registry` instead"
        ),
        "{}",
        run.stderr
    );
    assert!(
        !work.join("state").exists(),
        "a refused run left state behind"
    );
}

#[test]
fn status_says_when_no_run_serves_the_state_and_when_the_newest_revision_was_rejected() {
    let (_dir, work) = quickstart();
    let once = || slipway(&["run", "registry", "--once", "--state", "state"], &work);
    assert_eq!(once().code, 0);
    let status = || slipway(&["status", "--state", "state"], &work).stdout;
    // `--once` stopped the model servers when it exited: not "Healthy … at http://…".
    let after = status();
    assert!(
        after.contains("  default/pitch-frames-api  Stopped  last served 7  traffic {7: 100%}  (at http://127.0.0.1:")
            && after.contains("until `slipway run` ended; run it again to serve)"),
        "{after}"
    );
    // While a run holds the state it serves, and a second run on the same state is refused.
    let (mut live, _port) = support::git_mode::serve(&work, &[]);
    let serving = support::eventually(Duration::from_secs(30), || {
        let s = status();
        s.contains("  default/pitch-frames-api  Healthy  serving 7")
            .then_some(s)
    });
    assert!(serving.contains("  at http://127.0.0.1:"), "{serving}");
    let second = once();
    assert_eq!(second.code, 1, "{}", second.stdout);
    assert!(
        second.stderr.contains(&format!(
            "another `slipway run` (process {}, since ",
            live.id()
        )) && second
            .stderr
            .contains("stop it first, or give this run its own --state"),
        "{}",
        second.stderr
    );
    support::git_mode::terminate(&mut live);
    assert!(status().contains("Stopped  last served 7"));

    // A newest revision that does not validate: rejected (exit 1), and `status` says so until a
    // valid one comes.
    let broken = work.join("registry/broken.yaml");
    std::fs::write(
        &broken,
        "apiVersion: slipway.dev/v1alpha1\nkind: ModelVersion\nmetadata: {name: x}\nspec: {model: pitch-frames}\n",
    )
    .unwrap();
    assert_eq!(once().code, 1);
    let rejected = status();
    assert!(
        rejected.contains("source ")
            && rejected.contains("  newest revision rejected: revision folder:")
            && rejected.contains("still serving folder:"),
        "{rejected}"
    );
    std::fs::remove_file(&broken).unwrap();
    assert_eq!(once().code, 0);
    assert!(!status().contains("rejected"), "{}", status());
}

#[test]
fn run_once_exits_3_when_an_evaluation_fails() {
    let (_dir, work) = quickstart();
    // The suite's script is broken: both versions fail, production cannot be promoted.
    let script = work.join("registry/evaluate.py");
    assert!(script.is_file());
    std::fs::write(&script, "raise SystemExit('broken on purpose')\n").unwrap();
    let run = slipway(&["run", "registry", "--once", "--state", "state"], &work);
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("  pitch-frames-7-holdout: Failed"),
        "{}",
        run.stdout
    );
}
