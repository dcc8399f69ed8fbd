//! Rollouts in git mode through the quickstart's router under live traffic: a canary shifts
//! traffic step by step, a broken candidate is rolled back and not tried again until retried
//! (`slipway retry` through a running instance's API), a rollout killed mid-way resumes where
//! it was, and a crashed model server is restarted while SIGTERM stops every server.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::git_mode::{
    add_broken_version, events, get, predict, quickstart, router_port, run_once_with_traffic,
    serve, set_production, signal, spawn_slipway, terminate,
};
use support::{eventually, slipway, slipway_env};

#[test]
fn a_canary_shifts_live_traffic_step_by_step() {
    let (_dir, work) = quickstart();
    assert_eq!(
        slipway(&["run", "registry", "--once", "--state", "state"], &work).code,
        0
    );
    set_production(&work, "8");
    let (run, answers) = run_once_with_traffic(&work);
    assert_eq!(run.code, 0, "{}", run.stderr);
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

/// Issue 20: a candidate went 20% → 50% → 100% with no request at all, because a window without
/// requests broke no threshold. Without traffic the canary now holds at its first step, and at
/// the progress deadline it is inconclusive: rolled back, never promoted.
#[test]
fn a_canary_that_sees_no_traffic_is_not_promoted() {
    let (_dir, work) = quickstart();
    assert_eq!(
        slipway(&["run", "registry", "--once", "--state", "state"], &work).code,
        0
    );
    let deployments = work.join("registry/deployments.yaml");
    let text = std::fs::read_to_string(&deployments).unwrap();
    assert!(text.contains("    autoRollback: true\n"), "{text}");
    std::fs::write(
        &deployments,
        text.replace(
            "    autoRollback: true\n",
            "    autoRollback: true\n    progressDeadline: 4s\n",
        ),
    )
    .unwrap();
    set_production(&work, "8");
    let run = slipway(&["run", "registry", "--once", "--state", "state"], &work);
    // Rolled back: something the registry asks for is not in place (README, exit codes).
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stdout.contains("all traffic is back on version 7"),
        "{}",
        run.stdout
    );
    let all = events(&work);
    assert!(
        !all.iter().any(|l| l.contains("50% of traffic on 8")),
        "{all:#?}"
    );
    let rolled = all
        .iter()
        .find(|l| l.contains("RolledBack"))
        .unwrap_or_else(|| panic!("{all:#?}"));
    assert!(
        rolled.contains("analysis inconclusive at 20% after 4s: 0 of 20 requests observed"),
        "{rolled}"
    );
    assert!(
        rolled.contains("all traffic is back on version 7"),
        "{rolled}"
    );
}

#[test]
fn a_broken_candidate_is_rolled_back_automatically_and_not_retried() {
    let (_dir, work) = quickstart();
    set_production(&work, "8");
    add_broken_version(&work);
    assert_eq!(
        slipway(&["run", "registry", "--once", "--state", "state"], &work).code,
        0,
        "7 failing against 8 is no alias's business"
    );
    set_production(&work, "9");
    let (run, answers) = run_once_with_traffic(&work);
    // Rolled back: something the registry asks for is not in place.
    assert_eq!(run.code, 3, "{}", run.stderr);
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
    // The deployment still stands rolled back on 8: not in place, and said why.
    assert_eq!(again.code, 3, "{}", again.stderr);
    assert!(
        again.stdout.contains(
            "not in place:\n  default/pitch-frames-api: RolledBack (serving 8; rejected 9: `slipway retry pitch-frames-api` tries it again)"
        ),
        "{}",
        again.stdout
    );
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
    // An evaluation's report, as the API shows it, is where this instance serves it.
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&get(port, "/api/v1/evaluations").1).unwrap();
    let eight = rows
        .iter()
        .find(|r| r["name"] == "pitch-frames-8-holdout")
        .unwrap();
    assert_eq!(
        eight["status"]["report"],
        "/reports/default/pitch-frames-8-holdout.html"
    );
    assert_eq!(
        get(port, "/reports/default/pitch-frames-8-holdout.html").0,
        200
    );
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
    // A deployment that does not exist is not found (404), not "nothing to retry".
    let unknown = slipway_env(
        &["retry", "pitch-frames-apj", "--state", &url],
        &work,
        &[("SLIPWAY_API_TOKEN", token)],
    );
    assert_eq!(unknown.code, 1);
    assert!(
        unknown
            .stderr
            .contains("answered 404: no deployment default/pitch-frames-apj has been rolled out"),
        "{}",
        unknown.stderr
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
    let (run, _) = run_once_with_traffic(&work);
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

/// Issue 22 §8: `slipway run` killed outright mid-canary under steady traffic drops no request —
/// the router is a process of its own and keeps serving — and the next `slipway run` adopts the
/// router and the servers it finds and resumes the canary where it was; with `--keep-serving` a
/// SIGTERM (a restart, an upgrade) leaves them serving too, and without it the end of a run stops
/// them all.
#[test]
fn the_data_plane_outlives_a_killed_reconciler_and_is_adopted_by_the_next() {
    let (_dir, work) = quickstart();
    let deployments = work.join("registry/deployments.yaml");
    let text = std::fs::read_to_string(&deployments).unwrap();
    // A first step long enough to be killed in and resumed in.
    std::fs::write(&deployments, text.replacen("pause: 2s", "pause: 10s", 1)).unwrap();
    let args = ["run", "registry", "--state", "state", "--interval", "1s"];
    let mut first = spawn_slipway(&work, &args);
    let port = router_port(&work);
    eventually(Duration::from_secs(60), || {
        (predict(port).as_deref() == Some("7")).then_some(())
    });
    let router = routers_of(&work);
    assert_eq!(router.len(), 1, "{router:?}");
    let traffic = support::git_mode::Traffic::start_strict(&work);
    set_production(&work, "8");
    eventually(Duration::from_secs(60), || {
        events(&work)
            .iter()
            .any(|l| l.contains("20% of traffic on 8"))
            .then_some(())
    });
    let servers = servers_of(&work);
    assert_eq!(servers.len(), 2, "{servers:?}");
    first.kill().unwrap();
    first.wait().unwrap();
    // Nobody reconciles: the router and both servers go on serving.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(routers_of(&work), router);
    let mut second = spawn_slipway(&work, &[&args[..], &["--keep-serving"]].concat());
    eventually(Duration::from_secs(90), || {
        events(&work)
            .iter()
            .any(|l| l.contains("all traffic on 8"))
            .then_some(())
    });
    // Adopted, not started again.
    assert_eq!(routers_of(&work), router, "the router was replaced");
    let all = events(&work);
    let count = |needle: &str| all.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(count("rolling out 8"), 1, "{all:?}");
    assert_eq!(count("20% of traffic on 8"), 1, "{all:?}");
    assert_eq!(count("50% of traffic on 8"), 1, "{all:?}");
    // A restart with --keep-serving (SIGTERM) leaves version 8 serving, through the same router;
    // `status` says it serves with nobody reconciling it.
    terminate(&mut second);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(routers_of(&work), router);
    assert_eq!(predict(port).as_deref(), Some("8"));
    let status = slipway(&["status", "--state", "state"], &work);
    assert!(
        status.stdout.contains("serving 8")
            && status.stdout.contains("its router outlived `slipway run`"),
        "{}",
        status.stdout
    );
    let answers = traffic.stop();
    assert!(
        answers.iter().any(|a| a == "7") && answers.iter().any(|a| a == "8"),
        "{answers:?}"
    );
    assert!(
        answers.iter().all(|a| a == "7" || a == "8"),
        "requests failed while slipway was down: {:?}",
        answers
            .iter()
            .filter(|a| *a != "7" && *a != "8")
            .collect::<Vec<_>>()
    );
    // A run without --keep-serving adopts them and stops them all when it ends.
    let run = slipway(&["run", "registry", "--once", "--state", "state"], &work);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("adopted the router on port")
            && run.stderr.contains("and the server of version 8"),
        "{}",
        run.stderr
    );
    assert_eq!(
        routers_of(&work),
        Vec::<u32>::new(),
        "a router outlived slipway"
    );
    assert_eq!(
        servers_of(&work),
        Vec::<u32>::new(),
        "a server outlived slipway"
    );
    assert_eq!(predict(port), None);

    // Left serving, then its state folder removed: nothing could ever reach or stop them, so the
    // router stops by itself, and the servers behind it with it.
    let run = slipway(
        &[
            "run",
            "registry",
            "--once",
            "--keep-serving",
            "--state",
            "state",
        ],
        &work,
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(predict(port).as_deref(), Some("8"));
    assert_eq!(servers_of(&work).len(), 1);
    let router = routers_of(&work);
    assert_eq!(router.len(), 1);
    std::fs::rename(work.join("state"), work.join("state-gone")).unwrap();
    eventually(Duration::from_secs(20), || {
        let left: Vec<u32> = router.iter().copied().filter(|p| alive(*p)).collect();
        (left.is_empty() && servers_of(&work).is_empty()).then_some(())
    });
    assert_eq!(predict(port), None);
}

/// Whether a process runs (not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, st)| !st.starts_with('Z'))
    })
}

/// PIDs of the routers of this test's state folder.
fn routers_of(work: &Path) -> Vec<u32> {
    let state = work.join("state").canonicalize().unwrap();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(") ")
            .is_some_and(|(_, s)| s.starts_with('Z'));
        if cmdline.contains("\0router\0") && cmdline.contains(&*state.to_string_lossy()) && !zombie
        {
            pids.push(pid);
        }
    }
    pids
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
    // The router killed too: started again on its port, with the weights it had.
    let router = routers_of(&work);
    assert_eq!(router.len(), 1, "{router:?}");
    signal(router[0], "-KILL");
    eventually(Duration::from_secs(30), || {
        events(&work)
            .iter()
            .any(|l| l.contains("the router on port") && l.contains("started again"))
            .then_some(())
    });
    eventually(Duration::from_secs(30), || {
        (predict(port).as_deref() == Some("7")).then_some(())
    });
    assert_ne!(routers_of(&work), router);

    terminate(&mut child);
    assert_eq!(
        servers_of(&work),
        Vec::<u32>::new(),
        "model servers outlived slipway"
    );
    assert_eq!(
        routers_of(&work),
        Vec::<u32>::new(),
        "the router outlived slipway"
    );
}

#[test]
fn a_deployment_whose_port_is_taken_is_stalled_until_the_port_is_free() {
    let (_dir, work) = quickstart();
    // Somebody else listens on the deployment's router port.
    let taken = std::net::TcpListener::bind(("127.0.0.1", router_port(&work))).unwrap();
    let run = slipway(&["run", "registry", "--once", "--state", "state"], &work);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stdout.contains("deployment errors:"), "{}", run.stdout);
    let status = slipway(&["status", "--state", "state"], &work);
    assert!(
        status.stdout.contains("    stalled: ")
            && status.stdout.contains(&format!("{}", router_port(&work))),
        "{}",
        status.stdout
    );
    // Said once: a second pass with the port still taken writes nothing new.
    let run = slipway(&["run", "registry", "--once", "--state", "state"], &work);
    assert_eq!(run.code, 1, "{}", run.stderr);
    // Freed: the next pass rolls out, and the stall is gone.
    drop(taken);
    let run = slipway(&["run", "registry", "--once", "--state", "state"], &work);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let status = slipway(&["status", "--state", "state"], &work);
    assert!(!status.stdout.contains("stalled:"), "{}", status.stdout);
    assert!(status.stdout.contains("last served 7"), "{}", status.stdout);
}

#[test]
fn a_server_starts_with_a_clean_environment_and_never_on_an_artifact_that_is_not_its_digest() {
    let (_dir, work) = quickstart();
    let reg = work.join("registry");
    let deployments = std::fs::read_to_string(reg.join("deployments.yaml")).unwrap();
    let wrapped = deployments.replace(
        "command: [\"python3\", \"serve.py\"]",
        "command: [\"sh\", \"-c\", \"env > served.env; exec python3 serve.py\"]",
    );
    assert_ne!(deployments, wrapped, "the fixture changed shape");
    std::fs::write(reg.join("deployments.yaml"), wrapped).unwrap();
    let run = slipway_env(
        &["run", "registry", "--once", "--state", "state"],
        &work,
        &[
            ("CONTROLLER_SECRET", "do-not-leak"),
            ("AWS_SECRET_ACCESS_KEY", "nope"),
        ],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let env = std::fs::read_to_string(reg.join("served.env")).unwrap();
    assert!(
        env.contains("MODEL_URI=models/pitch-frames-7.json"),
        "{env}"
    );
    assert!(env.contains("PORT="), "{env}");
    assert!(
        !env.contains("do-not-leak") && !env.contains("AWS_SECRET_ACCESS_KEY"),
        "the reconciler's environment reached the model server: {env}"
    );

    // The artifact production serves is altered on disk: the next start refuses to serve it.
    let artifact = reg.join("models/pitch-frames-7.json");
    let mut bytes = std::fs::read(&artifact).unwrap();
    bytes.extend_from_slice(b"\n ");
    std::fs::write(&artifact, &bytes).unwrap();
    std::fs::remove_file(reg.join("served.env")).unwrap();
    let run = slipway(&["run", "registry", "--once", "--state", "state"], &work);
    assert_ne!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let both = format!("{}{}", run.stdout, run.stderr);
    assert!(
        both.contains("will not serve default/pitch-frames-api version 7: models/pitch-frames-7.json has digest sha256:")
            && both.contains("is declared: the artifact is not what was registered"),
        "{both}"
    );
    assert!(!reg.join("served.env").exists(), "a server was started");
}

use support::git_mode::deployment_status as deployment;

/// Which version each of 100 users reaches (by `x-user`), asked twice: a user gets one answer.
fn versions_of_users(router: u16) -> Vec<String> {
    (0..100)
        .map(|i| {
            let header = format!("x-user: user-{i}\r\n");
            let first = support::git_mode::predict_as(router, &header).unwrap();
            let again = support::git_mode::predict_as(router, &header).unwrap();
            assert_eq!(first, again, "user-{i} was moved between versions");
            first
        })
        .collect()
}

#[test]
fn an_ab_cohort_reaches_the_candidate_and_a_sticky_user_stays_on_one_version() {
    let (_dir, work) = quickstart();
    assert_eq!(
        slipway(&["run", "registry", "--once", "--state", "state"], &work).code,
        0
    );
    let path = work.join("registry/deployments.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("pause: 2s", "pause: 12s")
        .replace(
            "    autoRollback: true\n",
            "    autoRollback: true\n    match:\n      - header: x-cohort\n        value: beta\n    stickyBy:\n      header: x-user\n",
        );
    std::fs::write(&path, text).unwrap();
    set_production(&work, "8");
    let traffic = support::git_mode::Traffic::start(&work);
    let (mut child, port) = serve(&work, &[]);
    let router = router_port(&work);
    let at = |weight: u32| {
        eventually(Duration::from_secs(60), || {
            (deployment(port)["traffic"]["8"] == weight).then_some(())
        })
    };
    at(20);
    // The cohort is on the candidate, whatever its share.
    for _ in 0..10 {
        assert_eq!(
            support::git_mode::predict_as(router, "x-cohort: beta\r\n").as_deref(),
            Some("8")
        );
    }
    let at20 = versions_of_users(router);
    assert_eq!(
        deployment(port)["traffic"]["8"],
        20,
        "the step moved on mid-probe"
    );
    at(50);
    let at50 = versions_of_users(router);
    let on = |v: &[String]| v.iter().filter(|x| *x == "8").count();
    assert!((8..=35).contains(&on(&at20)), "{at20:?}");
    assert!((35..=65).contains(&on(&at50)), "{at50:?}");
    // Every user who reached the candidate at 20% is still on it at 50%.
    for (i, (a, b)) in at20.iter().zip(&at50).enumerate() {
        assert!(
            a != "8" || b == "8",
            "user-{i} left the candidate: {a} → {b}"
        );
    }
    eventually(Duration::from_secs(60), || {
        events(&work)
            .iter()
            .any(|l| l.contains("RolloutSucceeded") && l.contains("all traffic on 8"))
            .then_some(())
    });
    assert!(versions_of_users(router).iter().all(|v| v == "8"));
    traffic.stop();
    terminate(&mut child);
}

#[test]
fn a_shadow_answers_no_one_and_is_judged_by_agreeing_with_the_serving_version() {
    let (_dir, work) = quickstart();
    assert_eq!(
        slipway(&["run", "registry", "--once", "--state", "state"], &work).code,
        0
    );
    let path = work.join("registry/deployments.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let steps = "    steps:\n      - weight: 20\n";
    assert!(text.contains(steps), "{text}");
    let text = text
        .replace(
            steps,
            "    steps:\n      - weight: 0\n        mirror: 100\n        pause: 2s\n      - weight: 20\n",
        )
        .replace(
            "      maxLatencyMs: 250\n",
            "      maxLatencyMs: 250\n      minAgreement: 0.9\n      agreementIgnore: [version]\n",
        );
    std::fs::write(&path, text).unwrap();
    let check = slipway(&["validate", "registry"], &work);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);

    // 8 answers as 7 does (its version field aside): its shadow passes, then its canary.
    set_production(&work, "8");
    let (run, answers) = run_once_with_traffic(&work);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let all = events(&work);
    assert!(
        all.iter()
            .any(|l| l.contains("100% of requests mirrored to 8 (a shadow: it answers no one)")),
        "{all:#?}"
    );
    assert!(
        all.iter().any(|l| l.contains("all traffic on 8")),
        "{all:#?}"
    );
    // (503s: the run's router before it resumed serving 7.)
    let served: Vec<&String> = answers.iter().filter(|a| !a.starts_with("503 ")).collect();
    assert!(served.iter().all(|a| *a == "7" || *a == "8"), "{answers:?}");

    // 9 fails every prediction: in its shadow it answers no client, and it is rolled back on
    // its agreement (the error ratio left out, so that agreement judges).
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("      maxErrorRatio: 0.05\n", "")).unwrap();
    add_broken_version(&work);
    set_production(&work, "9");
    let (run, answers) = run_once_with_traffic(&work);
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    let served: Vec<&String> = answers.iter().filter(|a| !a.starts_with("503 ")).collect();
    assert!(!served.is_empty());
    assert!(
        served.iter().all(|a| *a == "8"),
        "a client saw the shadow: {answers:?}"
    );
    let rolled = events(&work)
        .into_iter()
        .find(|l| l.contains("RolledBack") && l.contains("9"))
        .unwrap();
    assert!(
        rolled.contains("analysis failed at the shadow step (100% mirrored): agreement with the serving version 0.000 below 0.9 (0 of ")
            && rolled.contains(" mirrored requests); e.g. GET /predict?grass=…&lines=…&crowd=…&brightness=…: status 500 where the serving version answered 200 (serving 200 {\"label\": \"open-play\", \"version\": \"8\"}, candidate 500 {\"error\": \"cannot use model kind"),
        "{rolled}"
    );
}
