//! The generated CRDs on a real kube-apiserver: accepted, established, and serving the example registry.

mod support;

use support::apiserver::ApiServer;
use support::root;

#[test]
fn the_crds_are_accepted_and_serve_the_example_registry() {
    let api = ApiServer::start();
    let crds = root().join("charts/slipway/crds/slipway.dev.yaml");
    let run = api.kubectl(&["apply", "-f", &crds.to_string_lossy()], "admin");
    assert_eq!(run.code, 0, "{}{}\n{}", run.stdout, run.stderr, api.logs());
    assert_eq!(run.stdout.matches("created").count(), 8, "{}", run.stdout);
    let run = api.kubectl(
        &[
            "wait",
            "--for",
            "condition=Established",
            "crd",
            "--all",
            "--timeout",
            "60s",
        ],
        "admin",
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);

    // The example registry applies as custom resources, first as a server-side dry run.
    let examples = root().join("examples/football-frames");
    let run = api.kubectl(
        &[
            "apply",
            "--server-side",
            "--dry-run=server",
            "-f",
            &examples.to_string_lossy(),
        ],
        "admin",
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let run = api.kubectl(&["apply", "-f", &examples.to_string_lossy()], "admin");
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stdout.matches("created").count(), 19, "{}", run.stdout);

    // Printer columns and short names.
    let run = api.kubectl(&["get", "malias"], "admin");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let header: Vec<&str> = run
        .stdout
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "MODEL", "ALIAS", "VERSION", "RESOLVED", "AGE"]
    );
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("pitch-frame-classifier-production")
                && l.split_whitespace().take(4).collect::<Vec<_>>()
                    == [
                        "pitch-frame-classifier-production",
                        "pitch-frame-classifier",
                        "production",
                        "7"
                    ]),
        "{}",
        run.stdout
    );
    let run = api.kubectl(&["get", "slipway"], "admin");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("modelversion.slipway.dev/pitch-frame-classifier-8"),
        "{}",
        run.stdout
    );

    // Field documentation reaches `kubectl explain` (the server publishes CRD schemas to its
    // OpenAPI document asynchronously, so wait for it).
    let run = support::eventually(std::time::Duration::from_secs(30), || {
        let run = api.kubectl(&["explain", "modelalias.spec.version"], "admin");
        (run.code == 0).then_some(run)
    });
    assert!(
        run.stdout.contains("Version label the alias points at"),
        "{}",
        run.stdout
    );

    // The structural schema rejects wrong types on the server (client-side validation off).
    let bad = api.dir.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: slipway.dev/v1alpha1\nkind: ModelAlias\nmetadata: {name: bad}\nspec: {model: m, alias: a, version: [1]}\n").unwrap();
    let run = api.kubectl(
        &["apply", "--validate=false", "-f", &bad.to_string_lossy()],
        "admin",
    );
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("spec.version"), "{}", run.stderr);

    // Nested optional objects are typed: `kubectl explain` lists their fields, and a typo
    // inside one is refused by name (kubectl's strict field validation), not pruned silently.
    // (Each kind's schema reaches the OpenAPI document on its own time: wait for this one.)
    let run = support::eventually(std::time::Duration::from_secs(30), || {
        let run = api.kubectl(
            &["explain", "modeldeployment.spec.target.kubernetes"],
            "admin",
        );
        (run.code == 0).then_some(run)
    });
    for field in ["image", "port", "replicas", "resources"] {
        assert!(run.stdout.contains(field), "{field}: {}", run.stdout);
    }
    let typo = api.dir.path().join("typo.yaml");
    std::fs::write(&typo, "apiVersion: slipway.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: typo}\nspec:\n  model: m\n  alias: production\n  target: {kubernetes: {image: \"registry.example/s:1\", port: 8080, replica: 2}}\n").unwrap();
    let run = api.kubectl(&["apply", "-f", &typo.to_string_lossy()], "admin");
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stderr.contains("unknown field") && run.stderr.contains("replica"),
        "{}",
        run.stderr
    );
}
