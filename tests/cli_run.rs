//! `slipway run`, `status` and `history` as a new user runs them: the quickstart in a temporary
//! copy, real evaluation subprocesses, a real SQLite state file.

mod support;

use support::free_port;
use support::http::{Receiver, post_json};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{eventually, root, slipway, slipway_env};

/// Starts `slipway ARGS` in `work` in the background, its output discarded.
fn spawn_slipway(work: &Path, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(args)
        .current_dir(work)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Starts `slipway run registry` (every second, serving HTTP on a free port, with `extra`
/// arguments); returns it and the port.
fn serve(work: &Path, extra: &[&str]) -> (std::process::Child, u16) {
    let port = free_port();
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
fn terminate(child: &mut std::process::Child) {
    signal(child.id(), "-TERM");
    let status = eventually(Duration::from_secs(20), || child.try_wait().unwrap());
    assert!(status.success(), "{status:?}");
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
fn quickstart() -> (tempfile::TempDir, PathBuf) {
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

fn router_port(work: &Path) -> u16 {
    std::fs::read_to_string(work.join("port"))
        .unwrap()
        .parse()
        .unwrap()
}

/// GET /predict through the router; the answering version, or the HTTP status on errors.
fn predict(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(
        b"GET /predict?grass=0.7&lines=0.05&crowd=0.1&brightness=0.6 HTTP/1.0\r\nHost: x\r\n\r\n",
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

/// Runs `slipway run --once` in the background while sending requests through the router;
/// returns the exit code and every answer seen.
fn run_with_traffic(work: &Path) -> (i32, Vec<String>) {
    let mut child = spawn_slipway(work, &["run", "registry", "--once", "--state", "state"]);
    let port = router_port(work);
    let mut answers = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "slipway run did not settle"
        );
        if let Some(a) = predict(port) {
            answers.push(a);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (code, answers)
}

fn events(work: &Path) -> Vec<String> {
    let h = slipway(&["history", "pitch-frames", "--state", "state"], work);
    h.stdout.lines().map(str::to_string).collect()
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
            .contains("is invalid (2 errors); still serving folder:"),
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

    // Documents that passed the CRD-schema check are remembered by their text; a document
    // edited into what the API server would refuse (an unquoted number where the CRD says
    // string) is checked again and refused.
    std::fs::write(&path, &good).unwrap();
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
            "def main():\n    with open('runs.log', 'a') as f:\n        f.write(os.environ['SLIPWAY_MODEL_VERSION'] + '\\n')\n    if os.environ['SLIPWAY_MODEL_VERSION'] == '8' and not os.path.exists('hung-once'):\n        open('hung-once', 'w').close()\n        time.sleep(90)\n",
        ),
    )
    .unwrap();
    let mut child = spawn_slipway(&work, &["run", "registry", "--once", "--state", "state"]);
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

#[test]
fn a_canary_shifts_live_traffic_step_by_step() {
    let (_dir, work) = quickstart();
    assert_eq!(
        slipway(&["run", "registry", "--once", "--state", "state"], &work).code,
        0
    );
    set_production(&work, "8");
    let (code, answers) = run_with_traffic(&work);
    assert_eq!(code, 0);
    assert!(
        answers.iter().any(|a| a == "7") && answers.iter().any(|a| a == "8"),
        "{answers:?}"
    );
    // While `slipway run` starts, its router answers 503 until the servers it resumes are healthy;
    // from the first answer on, no request may fail.
    let first = answers
        .iter()
        .position(|a| a == "7")
        .expect("version 7 served");
    assert!(
        answers[..first].iter().all(|a| a.starts_with("503")),
        "{answers:?}"
    );
    assert!(
        answers[first..].iter().all(|a| a == "7" || a == "8"),
        "errors during the canary: {answers:?}"
    );
    let steps: Vec<String> = events(&work)
        .into_iter()
        .filter(|l| l.contains("traffic on 8"))
        .collect();
    assert_eq!(steps.len(), 4, "{steps:?}");
    for (line, want) in steps.iter().zip([
        "20% of traffic on 8",
        "50% of traffic on 8",
        "100% of traffic on 8",
        "all traffic on 8",
    ]) {
        assert!(line.contains(want), "{line} should say {want}");
    }
}

/// Adds version 9: the same centroids as 8 (so it passes evaluation) but a model file its server
/// cannot serve, so every prediction through it fails.
fn add_broken_version(work: &Path) {
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

#[test]
fn a_broken_candidate_is_rolled_back_automatically_and_not_retried() {
    let (_dir, work) = quickstart();
    set_production(&work, "8");
    add_broken_version(&work);
    assert_eq!(
        slipway(&["run", "registry", "--once", "--state", "state"], &work).code,
        0
    );
    set_production(&work, "9");
    let (code, answers) = run_with_traffic(&work);
    assert_eq!(code, 0);
    assert!(
        answers.iter().any(|a| a.starts_with("500 from 9")),
        "version 9 never answered: {answers:?}"
    );
    let all = events(&work);
    let rolled: Vec<&String> = all.iter().filter(|l| l.contains("RolledBack")).collect();
    assert_eq!(rolled.len(), 1, "{all:?}");
    assert!(
        rolled[0].contains("analysis failed at 20%: error ratio"),
        "{}",
        rolled[0]
    );
    assert!(
        rolled[0].contains("all traffic is back on version 8"),
        "{}",
        rolled[0]
    );

    // The alias still says 9, but the deployment does not try it again.
    let again = slipway(&["run", "registry", "--once", "--state", "state"], &work);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        !again.stderr.contains("rolling out 9"),
        "retried: {}",
        again.stderr
    );
    assert_eq!(
        events(&work)
            .iter()
            .filter(|l| l.contains("RolloutStarted"))
            .count(),
        2
    );

    // A running instance answers status/history/retry through its API; retrying needs its token.
    let token = "0123456789abcdef0123456789abcdef";
    std::fs::write(work.join("token"), format!("{token}\n")).unwrap();
    let (mut child, port) = serve(&work, &["--api-token-file", "token"]);
    let url = format!("http://127.0.0.1:{port}");
    eventually(Duration::from_secs(60), || {
        (get(port, "/readyz").0 == 200).then_some(())
    });
    let status = slipway(&["status", "--state", &url], &work);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(
        status.stdout.contains("alias production → 9"),
        "{}",
        status.stdout
    );
    assert!(status.stdout.contains("rejected: 9"), "{}", status.stdout);
    let history = slipway(&["history", "pitch-frames", "--state", &url], &work);
    let rolled_back = events(&work)
        .into_iter()
        .find(|l| l.contains("RolledBack"))
        .unwrap();
    assert!(history.stdout.contains(&rolled_back), "{}", history.stdout);
    let then = slipway(
        &[
            "history",
            "pitch-frames",
            "--at",
            "2000-01-01T00:00:00Z",
            "--state",
            &url,
        ],
        &work,
    );
    assert!(
        then.stdout
            .contains("no alias of pitch-frames pointed anywhere"),
        "{}",
        then.stdout
    );

    let no_token = slipway(&["retry", "pitch-frames-api", "--state", &url], &work);
    assert_eq!(no_token.code, 1);
    assert!(
        no_token.stderr.contains("SLIPWAY_API_TOKEN"),
        "{}",
        no_token.stderr
    );
    let wrong = slipway_env(
        &["retry", "pitch-frames-api", "--state", &url],
        &work,
        &[("SLIPWAY_API_TOKEN", "not-the-token")],
    );
    assert_eq!(wrong.code, 1);
    assert!(wrong.stderr.contains("answered 401"), "{}", wrong.stderr);
    let nothing = slipway_env(
        &[
            "retry",
            "pitch-frames-api",
            "--version",
            "8",
            "--state",
            &url,
        ],
        &work,
        &[("SLIPWAY_API_TOKEN", token)],
    );
    assert_eq!(nothing.code, 1);
    assert!(
        nothing.stderr.contains("nothing to retry for version 8"),
        "{}",
        nothing.stderr
    );
    let retried = slipway_env(
        &["retry", "pitch-frames-api", "--state", &url],
        &work,
        &[("SLIPWAY_API_TOKEN", token)],
    );
    assert_eq!(retried.code, 0, "{}", retried.stderr);
    assert!(
        retried
            .stdout
            .contains("default/pitch-frames-api: 9 will be rolled out again"),
        "{}",
        retried.stdout
    );
    // The instance picks the retry up on its next pass.
    eventually(Duration::from_secs(30), || {
        let h = slipway(&["history", "pitch-frames", "--state", &url], &work).stdout;
        (h.contains("RetryRequested") && h.matches("RolloutStarted").count() == 3).then_some(())
    });
    terminate(&mut child);
}

#[test]
fn a_rollout_killed_mid_way_resumes_where_it_was() {
    let (_dir, work) = quickstart();
    assert_eq!(
        slipway(&["run", "registry", "--once", "--state", "state"], &work).code,
        0
    );
    set_production(&work, "8");
    let mut child = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["run", "registry", "--once", "--state", "state"])
        .current_dir(&work)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.join("run.log")).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !events(&work)
        .iter()
        .any(|l| l.contains("20% of traffic on 8"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no canary step within 120 s; slipway said:\n{}\nhistory:\n{}",
            std::fs::read_to_string(work.join("run.log")).unwrap_or_default(),
            events(&work).join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let run = slipway(&["run", "registry", "--once", "--state", "state"], &work);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let all = events(&work);
    let count = |needle: &str| all.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(count("rolling out 8"), 1, "{all:?}");
    assert_eq!(count("20% of traffic on 8"), 1, "{all:?}");
    assert_eq!(count("all traffic on 8"), 1, "{all:?}");
    // The servers the killed process left behind were stopped by the next one.
    assert_eq!(
        servers_of(&work),
        Vec::<u32>::new(),
        "orphaned model servers"
    );
}

/// PIDs of the quickstart model servers running from this test's registry copy.
fn servers_of(work: &Path) -> Vec<u32> {
    let registry = work.join("registry").canonicalize().unwrap();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cwd = std::fs::read_link(entry.path().join("cwd")).ok();
        if String::from_utf8_lossy(&cmdline).contains("serve.py")
            && cwd.as_deref() == Some(registry.as_path())
        {
            pids.push(pid);
        }
    }
    pids
}

fn signal(pid: u32, sig: &str) {
    assert!(
        Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
}

#[test]
fn a_crashed_server_is_restarted_and_sigterm_stops_every_server() {
    let (_dir, work) = quickstart();
    let mut child = spawn_slipway(
        &work,
        &["run", "registry", "--state", "state", "--interval", "1s"],
    );
    let port = router_port(&work);
    eventually(Duration::from_secs(60), || {
        (predict(port).as_deref() == Some("7")).then_some(())
    });
    let before = servers_of(&work);
    assert_eq!(before.len(), 1, "{before:?}");
    signal(before[0], "-KILL");
    eventually(Duration::from_secs(30), || {
        events(&work)
            .iter()
            .any(|l| l.contains("ServerRestarted") && l.contains("restarted on port"))
            .then_some(())
    });
    eventually(Duration::from_secs(30), || {
        (predict(port).as_deref() == Some("7")).then_some(())
    });
    assert!(
        events(&work)
            .iter()
            .any(|l| l.contains("model server of version 7 exited"))
    );

    terminate(&mut child);
    assert_eq!(
        servers_of(&work),
        Vec::<u32>::new(),
        "model servers outlived slipway"
    );
}

#[test]
fn notifications_reach_slack_and_webhooks_with_retries_and_no_leaked_secrets() {
    let (_dir, work) = quickstart();
    let receiver = Receiver::start(1);
    let token_file = work.join("dispatch-token");
    std::fs::write(&token_file, "s3cr3t-token\n").unwrap();
    let model = work.join("registry/model.yaml");
    let mut text = std::fs::read_to_string(&model).unwrap();
    text.push_str(&format!(
        r#"  notifications:
    - name: ml-platform
      events: [EvaluationCompleted, AliasMoved, RolledBack]
      slack:
        webhookUrl: {{env: SLIPWAY_TEST_SLACK_URL}}
    - name: analytics-dispatch
      events: [RolloutSucceeded]
      webhook:
        url: http://127.0.0.1:{port}/dispatch
        headers:
          Authorization: {{file: {token}}}
        bodyTemplate: '{{"event_type": "{{{{ event }}}}", "client_payload": {{"version": "{{{{ version }}}}", "traffic": {{{{ data.traffic }}}}}}}}'
    - name: moved-away
      events: [RolloutSucceeded]
      webhook:
        url: http://127.0.0.1:{port}/redirect
        headers:
          Authorization: {{file: {token}}}
"#,
        port = receiver.port,
        token = token_file.display()
    ));
    std::fs::write(&model, text).unwrap();
    let secret_url = format!(
        "http://127.0.0.1:{}/services/T000/B000/XXXXSECRET",
        receiver.port
    );
    let out = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["run", "registry", "--once", "--state", "state"])
        .env("SLIPWAY_TEST_SLACK_URL", &secret_url)
        .current_dir(&work)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");

    let got = receiver.requests();
    let slack: Vec<&(String, String, String)> = got
        .iter()
        .filter(|r| r.0 == "/services/T000/B000/XXXXSECRET")
        .collect();
    // Two evaluations and one alias move; the first delivery was answered 500 and retried.
    assert_eq!(slack.len(), 4, "{got:#?}");
    let blocks: Vec<serde_json::Value> = slack
        .iter()
        .map(|r| serde_json::from_str(&r.2).unwrap())
        .collect();
    assert!(blocks.iter().all(|b| b["blocks"][0]["type"] == "header"));
    assert!(blocks.iter().any(|b| {
        b["text"]
            .as_str()
            .unwrap()
            .starts_with("AliasMoved: pitch-frames/production: (none) → 7")
    }));
    let dispatch: Vec<&(String, String, String)> =
        got.iter().filter(|r| r.0 == "/dispatch").collect();
    assert_eq!(dispatch.len(), 1, "{got:#?}");
    assert!(
        dispatch[0]
            .1
            .to_ascii_lowercase()
            .contains("authorization: s3cr3t-token"),
        "{}",
        dispatch[0].1
    );
    // Values are escaped for JSON strings; an object is written as JSON.
    assert_eq!(
        dispatch[0].2,
        r#"{"event_type": "RolloutSucceeded", "client_payload": {"version": "7", "traffic": {"7":100}}}"#
    );

    let history = slipway(&["history", "pitch-frames", "--state", "state"], &work).stdout;
    assert!(
        history.contains("EvaluationCompleted sent to ml-platform (2 attempts)"),
        "{history}"
    );
    assert_eq!(
        history.matches("NotificationDelivered").count(),
        4,
        "{history}"
    );
    // A receiver that redirects gets the message once; its secret goes nowhere else.
    assert!(
        history.contains("the receiver answered HTTP 307 (a redirect): Slipway does not follow redirects with secrets"),
        "{history}"
    );
    assert!(!got.iter().any(|r| r.0 == "/stolen"), "{got:#?}");
    for text in [stdout.as_ref(), stderr.as_ref(), history.as_str()] {
        assert!(
            !text.contains("XXXXSECRET") && !text.contains("s3cr3t"),
            "a secret leaked:\n{text}"
        );
    }
    // Nothing is sent twice on the next pass.
    assert_eq!(
        slipway(&["run", "registry", "--once", "--state", "state"], &work).code,
        0
    );
    assert_eq!(receiver.requests().len(), got.len());

    // The read API shows where messages go (and the secret references) only with the API token.
    std::fs::write(work.join("token"), "0123456789abcdef0123456789abcdef\n").unwrap();
    let (mut child, port) = serve(&work, &["--api-token-file", "token"]);
    let url = format!("http://127.0.0.1:{port}/api/v1/models");
    let models = |auth: &[(&str, &str)]| -> serde_json::Value {
        eventually(Duration::from_secs(30), || {
            let (code, body) = support::http::request("GET", &url, auth, "");
            (code == 200)
                .then(|| serde_json::from_str::<serde_json::Value>(&body).ok())
                .flatten()
                .filter(|m| m[0]["spec"]["notifications"].is_array())
        })
    };
    let open = models(&[]);
    let channel = &open[0]["spec"]["notifications"][1];
    assert_eq!(
        channel,
        &serde_json::json!({"name": "analytics-dispatch", "events": ["RolloutSucceeded"], "redacted": true})
    );
    assert!(!open.to_string().contains("dispatch-token"), "{open}");
    let full = models(&[("Authorization", "Bearer 0123456789abcdef0123456789abcdef")]);
    assert_eq!(
        full[0]["spec"]["notifications"][1]["webhook"]["url"],
        format!("http://127.0.0.1:{}/dispatch", receiver.port)
    );
    terminate(&mut child);
}

/// Every file under a folder, as (relative path, content).
fn files_under(base: &Path, rel: &str, out: &mut Vec<(String, String)>) {
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

#[test]
fn a_git_repository_is_followed_commit_by_commit_and_a_bad_commit_changes_nothing() {
    let (_dir, work) = quickstart();
    let mut files = Vec::new();
    files_under(&work.join("registry"), "", &mut files);
    let mut repo = support::GitRepo::new();
    let first = repo.commit_under("main", None, "registry", &files, "registry");
    let url = format!("file://{}", repo.path().display());
    let run = || {
        slipway(
            &[
                "run",
                &url,
                "--registry-path",
                "registry",
                "--once",
                "--state",
                "state",
            ],
            &work,
        )
    };

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
    let out = run();
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

/// A smart-HTTP git server (`git http-backend` behind Python's CGI server) for the repositories
/// under `root`; killed on drop.
struct GitHttp {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl GitHttp {
    fn start(root: &Path) -> GitHttp {
        let dir = tempfile::tempdir().unwrap();
        let cgi = dir.path().join("cgi-bin");
        std::fs::create_dir(&cgi).unwrap();
        // CGI scripts may run as another user; allow any repository owner.
        std::fs::write(
            cgi.join("git"),
            "#!/bin/sh\nexec git -c safe.directory=* http-backend\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(cgi.join("git"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let port = free_port();
        let child = Command::new("python3")
            .args(["-m", "http.server", "--cgi", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .current_dir(dir.path())
            .env("GIT_PROJECT_ROOT", root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        eventually(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        GitHttp {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for GitHttp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    let server = GitHttp::start(repo.path());
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

/// GET a path from a local HTTP server: (status, body).
fn get(port: u16, path: &str) -> (u16, String) {
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

#[test]
fn the_http_server_reports_health_readiness_metrics_state_and_reports() {
    let (_dir, work) = quickstart();
    let (mut child, port) = serve(&work, &[]);
    eventually(Duration::from_secs(60), || {
        (get(port, "/readyz").0 == 200).then_some(())
    });
    assert_eq!(get(port, "/healthz"), (200, "ok\n".to_string()));

    // The deployment settles over the next passes (one rollout step per pass); generous, as
    // passes slow down while other suites build images beside this one.
    let metrics = eventually(Duration::from_secs(90), || {
        let (code, m) = get(port, "/metrics");
        (code == 200 && m.contains("slipway_rollout_events_total{kind=\"RolloutSucceeded\"} 1"))
            .then_some(m)
    });
    assert!(metrics.contains("slipway_reconciles_total "), "{metrics}");
    assert!(
        metrics.contains("slipway_evaluation_duration_seconds_count 2"),
        "{metrics}"
    );

    let (code, deployments) = get(port, "/api/v1/deployments");
    assert_eq!(code, 200);
    let d: serde_json::Value = serde_json::from_str(&deployments).unwrap();
    assert_eq!(d[0]["status"]["phase"], "Healthy");
    assert_eq!(d[0]["status"]["servingVersion"], "7");
    // The status is the CRD's type (as in Kubernetes mode: Ready and the rollout history), the
    // model and the router's address come from git mode's record beside it.
    let ready = &d[0]["status"]["conditions"][0];
    assert_eq!(
        (&ready["type"], &ready["status"]),
        (&"Ready".into(), &"True".into()),
        "{d}"
    );
    assert!(
        d[0]["status"]["history"]
            .as_array()
            .is_some_and(|h| !h.is_empty()),
        "{d}"
    );
    assert!(d[0]["status"].get("address").is_none(), "{d}");
    assert_eq!(d[0]["model"], "pitch-frames");
    assert!(
        d[0]["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{d}"
    );
    let url = format!("http://127.0.0.1:{port}");
    let status = slipway(&["status", "--state", &url], &work);
    assert!(
        status.stdout.contains(&format!(
            "Healthy  serving 7  traffic {{7: 100%}}  at http://{}",
            d[0]["address"].as_str().unwrap()
        )),
        "{}",
        status.stdout
    );
    let (_, models) = get(port, "/api/v1/models");
    let m: serde_json::Value = serde_json::from_str(&models).unwrap();
    assert_eq!(m[0]["name"], "pitch-frames");
    assert_eq!(m[0]["spec"]["primaryMetric"]["metric"], "macro_f1");
    let (_, history) = get(port, "/api/v1/history?model=pitch-frames&alias=production");
    let h: serde_json::Value = serde_json::from_str(&history).unwrap();
    assert_eq!(h[0]["event"], "AliasMoved");
    let (code, report) = get(port, "/reports/default/pitch-frames-8-holdout.html");
    assert_eq!(code, 200);
    assert!(report.contains("<svg"));
    assert_eq!(get(port, "/reports/default/..%2F..%2Fstate.db").0, 404);

    // `slipway plan --results URL` reads the evaluation results of this running instance.
    let mut files = Vec::new();
    files_under(&work.join("registry"), "", &mut files);
    let mut repo = support::GitRepo::new();
    let refs: Vec<(&str, Option<&str>)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), Some(c.as_str())))
        .collect();
    let base = repo.commit("main", None, &refs, "registry");
    let aliases_text = std::fs::read_to_string(work.join("registry/aliases.yaml")).unwrap();
    let promoted = aliases_text.replace("version: \"7\"", "version: \"8\"");
    repo.commit(
        "main",
        Some(base),
        &[("aliases.yaml", Some(&promoted))],
        "promote 8",
    );
    let rule = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec![
            "plan", "--base", "main~1", "--head", "main", "--format", "json",
        ];
        args.extend_from_slice(extra);
        let out = slipway(&args, repo.path());
        assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
        let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        let change = plan["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["kind"] == "ModelAlias")
            .unwrap()
            .clone();
        change["decision"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "candidate-evaluations-passed")
            .unwrap()
            .clone()
    };
    assert_eq!(rule(&[])["passed"], false);
    let url = format!("http://127.0.0.1:{port}");
    let with_results = rule(&["--results", &url]);
    assert_eq!(with_results["passed"], true, "{with_results}");
    let gone = slipway(
        &[
            "plan",
            "--base",
            "main~1",
            "--head",
            "main",
            "--results",
            "http://127.0.0.1:1",
        ],
        repo.path(),
    );
    assert_eq!(gone.code, 1);
    assert!(
        gone.stderr
            .contains("is `slipway run --listen` running there?"),
        "{}",
        gone.stderr
    );
    assert_eq!(get(port, "/api/v1/secrets").0, 404);

    // A bad revision makes the instance unready, with the reason, while it keeps serving.
    let aliases = work.join("registry/aliases.yaml");
    let good = std::fs::read_to_string(&aliases).unwrap();
    std::fs::write(
        &aliases,
        good.replace("  alias: production", "  alias: [production"),
    )
    .unwrap();
    let body = eventually(Duration::from_secs(30), || {
        let (code, body) = get(port, "/readyz");
        (code == 503).then_some(body)
    });
    assert!(body.contains("aliases.yaml"), "{body}");
    assert_eq!(predict(router_port(&work)).as_deref(), Some("7"));
    std::fs::write(&aliases, good).unwrap();
    eventually(Duration::from_secs(30), || {
        (get(port, "/readyz").0 == 200).then_some(())
    });
    assert!(
        get(port, "/metrics")
            .1
            .contains("slipway_failures_total{kind=\"invalid-revision\"}")
    );

    terminate(&mut child);
}

#[test]
fn an_external_job_runs_the_evaluation_and_reports_through_the_results_api() {
    let (_dir, work) = quickstart();
    let receiver = Receiver::start(0);
    let model = work.join("registry/model.yaml");
    let text = std::fs::read_to_string(&model).unwrap().replace(
        "        local:\n          command: [\"python3\", \"evaluate.py\"]\n",
        &format!(
            "        webhook:\n          url: http://127.0.0.1:{}/dispatch\n",
            receiver.port
        ),
    );
    assert!(text.contains("webhook:"));
    std::fs::write(&model, text).unwrap();
    let (mut child, port) = serve(&work, &[]);
    let dispatch_for = |version: &str| {
        eventually(Duration::from_secs(60), || {
            receiver.requests().into_iter().find_map(|(_, _, body)| {
                let v: serde_json::Value = serde_json::from_str(&body).ok()?;
                (v["version"] == version).then_some(v)
            })
        })
    };
    let results = |f1: f64| {
        format!(
            r#"{{"metrics": {{"macro_f1": {f1}, "p95_latency_ms": 1.0}}, "samples": [{{"input": "frames/day-0001.jpg", "expected": "open-play", "prediction": "open-play"}}]}}"#
        )
    };

    // Version 7 first (it becomes production), with no baseline.
    let d7 = dispatch_for("7");
    assert_eq!(d7["baseline"], serde_json::Value::Null);
    assert_eq!(d7["candidate"]["uri"], "models/pitch-frames-7.json");
    let url7 = d7["resultsUrl"].as_str().unwrap().to_string();
    assert_eq!(
        url7,
        format!(
            "http://127.0.0.1:{port}/api/v1/evaluations/default/pitch-frames-7-holdout/results"
        )
    );
    let (code, body) = post_json(
        &url7,
        "not-the-token",
        &format!(r#"{{"candidate": {}}}"#, results(0.74)),
    );
    assert_eq!(code, 401, "{body}");
    let (code, body) = post_json(
        &url7,
        d7["token"].as_str().unwrap(),
        r#"{"candidate": {"metric": {}}}"#,
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("unknown field `metric`"), "{body}");
    let (code, body) = post_json(
        &url7,
        d7["token"].as_str().unwrap(),
        &format!(r#"{{"candidate": {}}}"#, results(0.74)),
    );
    assert_eq!(code, 202, "{body}");

    // Then version 8, compared against production = 7: the job must report both.
    let d8 = dispatch_for("8");
    assert_eq!(d8["baseline"]["version"], "7");
    let url8 = d8["resultsUrl"].as_str().unwrap().to_string();
    let token8 = d8["token"].as_str().unwrap().to_string();
    let (code, body) = post_json(
        &url8,
        &token8,
        &format!(r#"{{"candidate": {}}}"#, results(0.81)),
    );
    assert_eq!(code, 400);
    assert!(body.contains("include \\\"baseline\\\" results"), "{body}");
    let (code, _) = post_json(
        &url8,
        &token8,
        &format!(
            r#"{{"candidate": {}, "baseline": {}}}"#,
            results(0.81),
            results(0.74)
        ),
    );
    assert_eq!(code, 202);
    eventually(Duration::from_secs(30), || {
        events(&work)
            .iter()
            .any(|l| l.contains("holdout on pitch-frames version 8 vs 7: Passed"))
            .then_some(())
    });
    let report =
        std::fs::read_to_string(work.join("state/reports/default/pitch-frames-8-holdout.md"))
            .unwrap();
    assert!(
        report.contains("| macro_f1 | 0.81 | 0.74 | +0.0700 |"),
        "{report}"
    );
    assert!(
        !events(&work)
            .iter()
            .any(|l| l.contains(d8["token"].as_str().unwrap())),
        "the token leaked into the history"
    );

    terminate(&mut child);
}

/// The DOM of a page after headless Chromium loaded it.
fn chromium_dom(url: &str) -> String {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("Chromium is not installed; scripts/test.sh installs Debian's chromium package");
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_web_ui_walks_from_models_to_versions_reports_aliases_and_traffic_in_a_real_browser() {
    let (_dir, work) = quickstart();
    let (mut child, port) = serve(&work, &[]);
    let base = format!("http://127.0.0.1:{port}");
    // Serving 7 (a deployment with nothing to serve yet is Healthy too).
    eventually(Duration::from_secs(60), || {
        let (_, body) = get(port, "/api/v1/deployments");
        body.contains("\"servingVersion\":\"7\"").then_some(())
    });

    let index = chromium_dom(&format!("{base}/"));
    assert!(
        index.contains("<a href=\"/ui/default/pitch-frames\">pitch-frames</a>"),
        "{index}"
    );
    assert!(index.contains("<code>production → 7</code>"), "{index}");
    assert!(index.contains("7: 100%"), "{index}");

    let page = chromium_dom(&format!("{base}/ui/default/pitch-frames"));
    assert!(page.contains("models/pitch-frames-8.json"), "{page}");
    assert!(
        page.contains("run: python3 train.py --version 8 --with-night"),
        "{page}"
    );
    assert!(page.contains("pitch-frames-8-holdout: Passed"), "{page}");
    assert!(
        page.contains("<td>AliasMoved</td><td>production</td><td>7</td>"),
        "{page}"
    );

    let report = chromium_dom(&format!(
        "{base}/reports/default/pitch-frames-8-holdout.html"
    ));
    assert!(report.contains("<svg id=\"chart\""), "{report}");
    assert!(
        report.contains("pitch-frames <strong>8</strong> vs 7"),
        "{report}"
    );
    assert!(chromium_dom(&format!("{base}/ui/default/nope")).contains("no model default/nope"));

    terminate(&mut child);
}

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

/// A model whose suite runs until the test opens a gate: an evaluation as long as the test wants.
fn add_gated_model(work: &Path) -> PathBuf {
    let gate = work.join("gate");
    let docs = format!(
        r#"apiVersion: slipway.dev/v1alpha1
kind: RegisteredModel
metadata: {{name: slow-model}}
spec:
  owners: ["group:ml-leads"]
  evaluations:
    - name: holdout
      runner:
        local:
          command: ["sh", "-c", "while [ ! -e \"$GATE\" ]; do sleep 0.1; done; echo '{{\"metrics\": {{\"f1\": 0.9}}}}' > \"$SLIPWAY_RESULTS\""]
          env: {{GATE: "{}"}}
      dataset: {{uri: "file://data/holdout.csv"}}
      gates:
        - {{metric: f1, op: ">=", value: 0.5}}
      timeout: 10m
---
apiVersion: slipway.dev/v1alpha1
kind: ModelVersion
metadata: {{name: slow-model-1}}
spec: {{model: slow-model, version: "1", artifact: {{uri: "file://models/slow-1", digest: "sha256:5151515151515151515151515151515151515151515151515151515151515151"}}}}
"#,
        gate.display()
    );
    std::fs::write(work.join("registry/slow.yaml"), docs).unwrap();
    gate
}

fn evaluation_phase(port: u16, name: &str) -> Option<String> {
    let (_, body) = get(port, "/api/v1/evaluations");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&body).ok()?;
    rows.iter()
        .find(|r| r["name"] == name)
        .and_then(|r| r["status"]["phase"].as_str().map(str::to_string))
}

/// A model whose webhook runner and notification channel point at a server that accepts
/// connections and never answers (each request waits out its 10 s timeout, with retries).
fn add_hanging_model(work: &Path) -> std::net::TcpListener {
    let hang = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hang.local_addr().unwrap().port();
    let docs = format!(
        r#"apiVersion: slipway.dev/v1alpha1
kind: RegisteredModel
metadata: {{name: hanging-model}}
spec:
  owners: ["group:ml-leads"]
  evaluations:
    - name: holdout
      runner: {{webhook: {{url: "http://127.0.0.1:{port}/dispatch"}}}}
      dataset: {{uri: "file://data/holdout.csv"}}
      gates:
        - {{metric: f1, op: ">=", value: 0.5}}
      timeout: 10m
  notifications:
    - name: hanging
      events: [VersionRegistered]
      webhook: {{url: "http://127.0.0.1:{port}/notify"}}
---
apiVersion: slipway.dev/v1alpha1
kind: ModelVersion
metadata: {{name: hanging-model-1}}
spec: {{model: hanging-model, version: "1", artifact: {{uri: "file://models/hanging-1", digest: "sha256:6161616161616161616161616161616161616161616161616161616161616161"}}}}
"#
    );
    std::fs::write(work.join("registry/hanging.yaml"), docs).unwrap();
    hang
}

#[test]
fn a_long_evaluation_elsewhere_holds_up_no_promotion_and_no_canary() {
    let (_dir, work) = quickstart();
    let gate = add_gated_model(&work);
    // And requests that hang: an evaluation's dispatch and a notification, both off the pass.
    let hang = add_hanging_model(&work);
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let holder = held.clone();
    std::thread::spawn(move || {
        for conn in hang.incoming().flatten() {
            holder.lock().unwrap().push(conn);
        }
    });
    let (mut child, port) = serve(&work, &["--parallel-evaluations", "3"]);
    // Production is promoted to 7 and rolled out while slow-model's evaluation runs on.
    eventually(Duration::from_secs(90), || {
        let (_, m) = get(port, "/metrics");
        m.contains("slipway_rollout_events_total{kind=\"RolloutSucceeded\"} 1")
            .then_some(())
    });
    assert_eq!(
        evaluation_phase(port, "slow-model-1-holdout").as_deref(),
        Some("Running")
    );
    // A canary to 8, all its steps, while that evaluation is still running.
    set_production(&work, "8");
    eventually(Duration::from_secs(90), || {
        let (_, m) = get(port, "/metrics");
        m.contains("slipway_rollout_events_total{kind=\"RolloutSucceeded\"} 2")
            .then_some(())
    });
    let moved = events(&work);
    assert!(
        moved
            .iter()
            .any(|l| l.contains("AliasMoved") && l.contains("7 → 8")),
        "{moved:#?}"
    );
    assert_eq!(
        evaluation_phase(port, "slow-model-1-holdout").as_deref(),
        Some("Running"),
        "the canary finished while the other model's evaluation was still running"
    );
    // The hanging dispatch and notification were sent and are still waiting for an answer.
    assert!(held.lock().unwrap().len() >= 2, "both requests were made");
    assert_eq!(
        evaluation_phase(port, "hanging-model-1-holdout").as_deref(),
        Some("Running")
    );
    let (_, history) = get(port, "/api/v1/history");
    assert!(
        !history.contains("Notification/hanging"),
        "the hanging notification has not given up yet: {history}"
    );
    // The evaluation finishes when its job does, and is recorded at once.
    std::fs::write(&gate, "").unwrap();
    eventually(Duration::from_secs(30), || {
        (evaluation_phase(port, "slow-model-1-holdout").as_deref() == Some("Succeeded"))
            .then_some(())
    });
    terminate(&mut child);
}
