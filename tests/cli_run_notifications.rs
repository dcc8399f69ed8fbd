//! Notifications in git mode: Slack and webhook channels receive the events they ask for, a
//! failed delivery is retried, redirects are not followed, nothing is sent twice, no secret leaks
//! into output or history, and the read API shows where messages go only with the API token.

mod support;

use std::process::Command;
use std::time::Duration;

use support::git_mode::{quickstart, serve, terminate};
use support::http::Receiver;
use support::{eventually, slipway};

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
    - name: exfiltrate
      events: [RolloutSucceeded]
      webhook:
        url: http://127.0.0.1:{port}/exfil
        headers:
          X-Key: {{env: CONTROLLER_SECRET}}
    - name: elsewhere
      events: [RolloutSucceeded]
      webhook:
        url: http://localhost:{port}/elsewhere
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
        // The operator lets the registry use these secrets, and send to this host only.
        .arg("--allowed-secrets")
        .arg(format!("SLIPWAY_TEST_SLACK_URL,{}", token_file.display()))
        .args(["--allowed-destinations", "127.0.0.1"])
        .env("SLIPWAY_TEST_SLACK_URL", &secret_url)
        .env("CONTROLLER_SECRET", "do-not-send-me")
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
    // A variable the operator did not allow is never read, a host not allowed never called.
    assert!(
        history.contains("not sent to exfiltrate after 0 attempts: header X-Key: environment variable CONTROLLER_SECRET is not among the secrets the operator lets the registry use"),
        "{history}"
    );
    assert!(
        history.contains("not sent to elsewhere after 0 attempts: host localhost is not among the destinations the operator allows (127.0.0.1)"),
        "{history}"
    );
    assert!(
        !got.iter().any(|r| r.0 == "/exfil" || r.0 == "/elsewhere"),
        "{got:#?}"
    );
    for text in [stdout.as_ref(), stderr.as_ref(), history.as_str()] {
        assert!(!text.contains("do-not-send-me"), "{text}");
    }
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
