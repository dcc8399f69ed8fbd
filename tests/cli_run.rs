//! `slipway run`, `status` and `history` as a new user runs them: the quickstart in a temporary
//! copy, real evaluation subprocesses, a real SQLite state file.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{eventually, root, slipway};

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

/// A temporary copy of the quickstart registry and an empty state folder beside it.
fn quickstart() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &root().join("examples/quickstart"),
        &dir.path().join("registry"),
    );
    let path = dir.path().to_path_buf();
    (dir, path)
}

fn set_production(work: &Path, version: &str) {
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

#[test]
fn the_quickstart_registers_evaluates_reports_and_promotes() {
    let (_dir, work) = quickstart();
    let run = slipway(&["run", "registry", "--once", "--state", "state"], &work);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("promoted:\n  pitch-frames/production: (none) → 7"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr
            .contains("holdout on pitch-frames version 8 vs 7: Passed"),
        "{}",
        run.stderr
    );
    let report =
        std::fs::read_to_string(work.join("state/reports/default/pitch-frames-8-holdout.md"))
            .unwrap();
    assert!(
        report.starts_with("# pitch-frames 8 vs 7 — holdout: Passed"),
        "{report}"
    );
    assert!(
        report.contains("| macro_f1 | 0.8148 | 0.7355 | +0.0793 |"),
        "{report}"
    );
    assert!(
        work.join("state/reports/default/pitch-frames-8-holdout.html")
            .is_file()
    );

    set_production(&work, "8");
    let run = slipway(&["run", "registry", "--once", "--state", "state"], &work);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("pitch-frames/production: 7 → 8"),
        "{}",
        run.stdout
    );
    assert!(
        !run.stderr.contains("running holdout"),
        "an evaluation ran twice: {}",
        run.stderr
    );

    let status = slipway(&["status", "--state", "state"], &work);
    assert_eq!(status.code, 0);
    assert!(
        status.stdout.contains("alias production → 8"),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("version 8      registered"),
        "{}",
        status.stdout
    );

    let history = slipway(
        &[
            "history",
            "pitch-frames",
            "--alias",
            "production",
            "--state",
            "state",
        ],
        &work,
    );
    let moves: Vec<&str> = history
        .stdout
        .lines()
        .filter(|l| l.contains("AliasMoved"))
        .collect();
    assert_eq!(moves.len(), 2, "{}", history.stdout);
    assert!(moves[1].contains("pitch-frames/production: 7 → 8"));
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
            .contains("is invalid (1 errors); still serving folder:"),
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
    assert_eq!(
        slipway(&["run", "registry", "--once", "--state", "state"], &work).code,
        0
    );
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
}

#[test]
fn killing_the_reconciler_mid_evaluation_loses_nothing_and_repeats_nothing_finished() {
    let (_dir, work) = quickstart();
    // Version 8's first run hangs (until killed); every run is logged.
    let eval = work.join("registry/evaluate.py");
    let original = std::fs::read_to_string(&eval).unwrap();
    std::fs::write(
        &eval,
        original.replace(
            "def main():\n",
            "def main():\n    with open('runs.log', 'a') as f:\n        f.write(os.environ['SLIPWAY_MODEL_VERSION'] + '\\n')\n    if os.environ['SLIPWAY_MODEL_VERSION'] == '8' and not os.path.exists('hung-once'):\n        open('hung-once', 'w').close()\n        time.sleep(600)\n",
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["run", "registry", "--once", "--state", "state"])
        .current_dir(&work)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(60), || {
        work.join("registry/hung-once").exists().then_some(())
    });
    child.kill().unwrap();
    child.wait().unwrap();

    let run = slipway(&["run", "registry", "--once", "--state", "state"], &work);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let runs = std::fs::read_to_string(work.join("registry/runs.log")).unwrap();
    assert_eq!(
        runs.lines().collect::<Vec<_>>(),
        vec!["7", "8", "8"],
        "version 7 ran again after the restart"
    );
    assert!(
        run.stderr
            .contains("holdout on pitch-frames version 8 vs 7: Passed"),
        "{}",
        run.stderr
    );
    let status = slipway(&["status", "--state", "state"], &work);
    assert!(
        status.stdout.contains("alias production → 7"),
        "{}",
        status.stdout
    );
    // Both halves of the first run's work are in the history exactly once.
    let history = slipway(&["history", "pitch-frames", "--state", "state"], &work);
    assert_eq!(
        history.stdout.matches("VersionRegistered").count(),
        2,
        "{}",
        history.stdout
    );
    assert_eq!(
        history.stdout.matches("AliasMoved").count(),
        1,
        "{}",
        history.stdout
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
fn the_quickstart_artifacts_match_their_registered_digests() {
    use sha2::{Digest, Sha256};
    let dir = root().join("examples/quickstart");
    let versions = std::fs::read_to_string(dir.join("versions.yaml")).unwrap();
    let model = std::fs::read_to_string(dir.join("model.yaml")).unwrap();
    for (file, registry) in [
        ("models/pitch-frames-7.json", &versions),
        ("models/pitch-frames-8.json", &versions),
        ("data/holdout.csv", &model),
    ] {
        let digest: String = Sha256::digest(std::fs::read(dir.join(file)).unwrap())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(
            registry.contains(&format!("sha256:{digest}")),
            "{file} changed; update its digest to sha256:{digest}"
        );
    }
}
