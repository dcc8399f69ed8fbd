//! Rollouts in git mode judged by metrics a real Prometheus (Debian's) answers: it scrapes the
//! router's per-version counters from `slipway run`'s `/metrics`, a canary whose error ratio
//! holds is promoted, one whose ratio fails is rolled back, and every measurement is in the
//! history and the status. An `http` metric sends its header from an allowed secret.

mod support;

use std::path::Path;
use std::time::Duration;

use support::git_mode::{
    Traffic, add_broken_version, events, quickstart, serve_on, set_production, terminate,
};
use support::http::Receiver;
use support::prometheus::Prometheus;
use support::{eventually, slipway};

/// The quickstart's analysis replaced by `metrics` (YAML, indented for `analysis:`).
fn judge_by(work: &Path, metrics: &str) {
    let path = work.join("registry/deployments.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let old = "    analysis:\n      maxErrorRatio: 0.05\n      latencyPercentile: 99\n      maxLatencyMs: 250\n";
    assert!(text.contains(old), "{text}");
    std::fs::write(
        &path,
        text.replace(old, &format!("    analysis:\n      metrics:\n{metrics}")),
    )
    .unwrap();
}

fn error_ratio(prometheus: &str) -> String {
    format!(
        "        - name: error-ratio\n          interval: 1s\n          successCondition: \"result <= 0.05\"\n          provider:\n            prometheus:\n              address: {prometheus}\n              query: 'sum(slipway_router_errors_total{{deployment=\"{{{{deployment}}}}\",version=\"{{{{version}}}}\"}}) / sum(slipway_router_requests_total{{deployment=\"{{{{deployment}}}}\",version=\"{{{{version}}}}\"}})'\n"
    )
}

use support::git_mode::deployment_status as status;

#[test]
fn a_canary_is_promoted_on_a_metric_that_holds_and_rolled_back_on_one_that_fails() {
    let (_dir, work) = quickstart();
    assert_eq!(
        slipway(&["run", "registry", "--once", "--state", "state"], &work).code,
        0
    );
    let listen = support::free_port();
    let prometheus = Prometheus::scraping(&[format!("127.0.0.1:{listen}")]);
    judge_by(&work, &error_ratio(&prometheus.url()));
    set_production(&work, "8");
    let traffic = Traffic::start(&work);
    let (mut child, port) = serve_on(&work, listen, &["--allowed-destinations", "127.0.0.1"]);
    eventually(Duration::from_secs(90), || {
        events(&work)
            .iter()
            .any(|l| l.contains("RolloutSucceeded") && l.contains("all traffic on 8"))
            .then_some(())
    });
    // The router's counters, as Prometheus scraped them.
    let scraped = prometheus
        .query("slipway_router_requests_total{deployment=\"pitch-frames-api\",version=\"8\"}");
    assert_eq!(
        scraped["data"]["result"][0]["metric"]["namespace"], "default",
        "{scraped}"
    );
    let all = events(&work);
    let measured: Vec<&String> = all
        .iter()
        .filter(|l| l.contains("AnalysisMeasured"))
        .collect();
    assert!(
        measured
            .iter()
            .any(|l| l.contains("pitch-frames-api: metric error-ratio = 0.0: Success")),
        "{all:#?}"
    );
    // Each step passed on a successful measurement of its own.
    assert!(measured.len() >= 2, "{all:#?}");

    // 9 answers 500 to everything: its ratio fails, it is rolled back to 8.
    add_broken_version(&work);
    set_production(&work, "9");
    let rolled = eventually(Duration::from_secs(90), || {
        events(&work).into_iter().find(|l| l.contains("RolledBack"))
    });
    assert!(
        rolled.contains("analysis failed at 20%: 1 failed measurement(s) of metric error-ratio (failureLimit 0); last: metric error-ratio = 1.0: Failure (`result <= 0.05` is false)"),
        "{rolled}"
    );
    assert!(
        rolled.contains("all traffic is back on version 8"),
        "{rolled}"
    );
    // The status keeps the step's measurements.
    let s = status(port);
    let analysis = &s["analysis"];
    assert_eq!(analysis["version"], "9", "{s}");
    assert_eq!(analysis["metrics"][0]["name"], "error-ratio", "{s}");
    assert_eq!(analysis["metrics"][0]["failures"], 1, "{s}");
    assert_eq!(
        analysis["metrics"][0]["measurements"][0]["verdict"], "Failure",
        "{s}"
    );
    traffic.stop();
    terminate(&mut child);
}

#[test]
fn an_http_metric_carries_an_allowed_secret_and_an_unreachable_provider_never_passes() {
    let (_dir, work) = quickstart();
    assert_eq!(
        slipway(&["run", "registry", "--once", "--state", "state"], &work).code,
        0
    );
    let receiver = Receiver::start(0);
    receiver.answer_with(r#"{"data": {"accuracy": 0.93}}"#);
    let metrics = format!(
        "        - name: accuracy\n          interval: 1s\n          successCondition: \"result >= 0.9\"\n          provider:\n            http:\n              url: {}/quality?version={{{{version}}}}\n              jsonPath: data.accuracy\n              headers:\n                Authorization: {{env: QUALITY_TOKEN}}\n",
        receiver.url()
    );
    judge_by(&work, &metrics);
    set_production(&work, "8");
    let run = run_once_with_the_token(&work);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let asked = receiver.requests();
    assert!(!asked.is_empty());
    for (path, headers, _) in &asked {
        assert_eq!(path, "/quality?version=8", "{asked:?}");
        assert!(
            headers
                .to_ascii_lowercase()
                .contains("authorization: bearer quality-secret"),
            "{headers}"
        );
    }
    assert!(events(&work).iter().any(|l| l.contains("all traffic on 8")));

    // A provider nobody answers: every measurement is inconclusive, and at the progress deadline
    // the step is rolled back, never promoted.
    let path = work.join("registry/deployments.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let nobody = format!("http://127.0.0.1:{}", support::free_port());
    let text = text.replace(&receiver.url(), &nobody).replace(
        "    autoRollback: true\n",
        "    autoRollback: true\n    progressDeadline: 4s\n",
    );
    std::fs::write(&path, text).unwrap();
    set_production(&work, "7");
    let run = run_once_with_the_token(&work);
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    let all = events(&work);
    let rolled = all
        .iter()
        .find(|l| l.contains("RolledBack"))
        .unwrap_or_else(|| panic!("{all:#?}"));
    assert!(rolled.contains("analysis inconclusive at 20% after 4s: no successful measurement of metric accuracy yet"), "{rolled}");
    assert!(
        all.iter().any(|l| l.contains("AnalysisMeasured")
            && l.contains("metric accuracy = no value: Inconclusive (cannot reach")),
        "{all:#?}"
    );
}

/// `slipway run --once` under traffic, allowed loopback and the quality service's token.
fn run_once_with_the_token(work: &Path) -> support::Run {
    let traffic = Traffic::start(work);
    let run = support::slipway_env(
        &[
            "run",
            "registry",
            "--once",
            "--state",
            "state",
            "--allowed-destinations",
            "127.0.0.1",
            "--allowed-secrets",
            "QUALITY_TOKEN",
        ],
        work,
        &[("QUALITY_TOKEN", "Bearer quality-secret")],
    );
    traffic.stop();
    run
}

/// Version `10` of the quickstart model: version 8's artifact under another number (its server
/// answers as 8 does, naming itself 10).
fn add_twin_of_8(work: &Path) {
    let path = work.join("registry/versions.yaml");
    let versions = std::fs::read_to_string(&path).unwrap();
    let digest = versions
        .split("uri: models/pitch-frames-8.json")
        .nth(1)
        .and_then(|rest| rest.split("digest: ").nth(1))
        .and_then(|d| d.lines().next())
        .unwrap()
        .to_string();
    std::fs::write(
        &path,
        format!(
            "{versions}---\napiVersion: slipway.dev/v1alpha1\nkind: ModelVersion\nmetadata: {{name: pitch-frames-10}}\nspec:\n  model: pitch-frames\n  version: \"10\"\n  artifact: {{uri: models/pitch-frames-8.json, digest: {digest}}}\n"
        ),
    )
    .unwrap();
}

/// The versions whose servers the run's record of the deployment lists.
fn recorded_servers(work: &Path) -> Vec<String> {
    let record = work.join("state/logs/routers/default_pitch-frames-api.json");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(record).unwrap_or_default())
            .unwrap_or_default();
    record["servers"]
        .as_object()
        .map(|s| s.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn three_standing_shadows_answer_no_one_and_their_agreement_is_a_prometheus_series() {
    let (_dir, work) = quickstart();
    assert_eq!(
        slipway(&["run", "registry", "--once", "--state", "state"], &work).code,
        0
    );
    add_broken_version(&work);
    add_twin_of_8(&work);
    let path = work.join("registry/deployments.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let shadows = "  shadows:\n    - {version: \"8\", mirror: 100}\n    - {version: \"9\", mirror: 50}\n    - {version: \"10\", mirror: 100}\n";
    let text = text.replace(
        "      maxLatencyMs: 250\n",
        "      maxLatencyMs: 250\n      agreementIgnore: [version]\n",
    ) + shadows;
    std::fs::write(&path, &text).unwrap();
    let check = slipway(&["validate", "registry"], &work);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);

    let listen = support::free_port();
    let prometheus = Prometheus::scraping(&[format!("127.0.0.1:{listen}")]);
    let (mut child, _) = serve_on(&work, listen, &[]);
    // Traffic once the run's router serves 7 (before, its port may be another test's).
    let router = support::git_mode::router_port(&work);
    eventually(Duration::from_secs(30), || {
        (support::git_mode::predict(router).as_deref() == Some("7")).then_some(())
    });
    let traffic = Traffic::start(&work);
    let by_version = |promql: &str| -> std::collections::BTreeMap<String, f64> {
        let r = prometheus.query(promql);
        r["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let v = s["metric"]["version"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let n = s["value"][1].as_str().unwrap_or("0").parse().unwrap_or(0.0);
                (v, n)
            })
            .collect()
    };
    // Agreement = agreed / mirrored, per shadow: 8 and 10 answer as 7 does (their version field
    // aside), 9 fails every prediction.
    let agreement = eventually(Duration::from_secs(90), || {
        let a = by_version(
            "slipway_router_agreed_total{deployment=\"pitch-frames-api\"} / slipway_router_mirrored_total{deployment=\"pitch-frames-api\"}",
        );
        let mirrored = by_version("slipway_router_mirrored_total");
        (a.len() == 3 && mirrored.values().all(|n| *n >= 10.0)).then_some(a)
    });
    assert_eq!(agreement["8"], 1.0, "{agreement:?}");
    assert_eq!(agreement["10"], 1.0, "{agreement:?}");
    assert_eq!(agreement["9"], 0.0, "{agreement:?}");
    // 9 gets half the share of 8 and 10, give or take the requests in flight.
    let mirrored = by_version("slipway_router_mirrored_total");
    assert!(mirrored["9"] < mirrored["8"] * 0.75, "{mirrored:?}");
    // Shadows serve no one: no series of requests they answered.
    let served = by_version("slipway_router_requests_total");
    assert_eq!(served.keys().collect::<Vec<_>>(), ["7"], "{served:?}");
    assert_eq!(
        recorded_servers(&work),
        ["10", "7", "8", "9"],
        "a server for each shadow"
    );

    // Taking 9 off the list stops its server; the others go on.
    std::fs::write(
        &path,
        text.replace("    - {version: \"9\", mirror: 50}\n", ""),
    )
    .unwrap();
    eventually(Duration::from_secs(30), || {
        (recorded_servers(&work) == ["10", "7", "8"]).then_some(())
    });
    // `slipway status` lists the shadows as they are now.
    let status = eventually(Duration::from_secs(30), || {
        let run = slipway(&["status", "--state", "state"], &work);
        run.stdout
            .contains("shadows: 8 (100% mirrored), 10 (100% mirrored)")
            .then_some(run.stdout)
    });
    assert!(!status.contains("9 (50%"), "{status}");
    let answers = traffic.stop();
    assert!(!answers.is_empty());
    assert!(
        answers.iter().all(|a| a == "7"),
        "a client saw a shadow: {answers:?}"
    );
    terminate(&mut child);
}
