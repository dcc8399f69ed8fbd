//! The HTTP server of `slipway run --listen`: health, readiness (unready with the reason on a
//! bad revision), metrics, the read API (`slipway status` and `slipway plan --results` against
//! it), reports, and the web UI walked in a real (headless Chromium) browser.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::git_mode::{files_under, get, predict, quickstart, router_port, serve, terminate};
use support::{eventually, slipway};

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
        (code == 200 && m.contains("slipway_events_total{event=\"RolloutSucceeded\"} 1"))
            .then_some(m)
    });
    assert!(
        metrics.contains("slipway_reconciles_total{controller=\"git\"}"),
        "{metrics}"
    );
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
            .contains("slipway_errors_total{kind=\"pass\",category=\"invalid-revision\"}")
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
    // Serving 7 (a deployment with nothing to serve yet is Progressing, not Healthy).
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
