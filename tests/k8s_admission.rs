//! The admission webhook on a real kube-apiserver: policy and approvals enforced with the
//! requester's identity, approvals stamped and immutable, versions immutable, dry runs and
//! `kubectl diff` showing the decision, RBAC keeping non-approvers from approving.

mod support;

use std::time::Duration;

use support::admission::{Controller, rbac, webhook_configurations};
use support::apiserver::ApiServer;
use support::{eventually, free_port, root};

fn alias(version: &str) -> String {
    format!(
        "apiVersion: slipway.dev/v1alpha1\nkind: ModelAlias\nmetadata: {{name: pitch-frame-classifier-production, namespace: default}}\nspec: {{model: pitch-frame-classifier, alias: production, version: \"{version}\"}}\n"
    )
}

fn approval(name: &str, version: &str, extra: &str) -> String {
    format!(
        "apiVersion: slipway.dev/v1alpha1\nkind: Approval\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  target: {{kind: ModelAlias, name: pitch-frame-classifier-production}}\n  version: \"{version}\"\n  decision: approve\n{extra}"
    )
}

/// The results of version 8, set through the status subresource as the controller would.
fn record_results(api: &ApiServer) {
    let file = root().join("examples/promotion-pr/results/pitch-frames-8.yaml");
    record(api, &std::fs::read_to_string(&file).unwrap(), "8");
}

/// Records `evaluation` (an `Evaluation` document with its status) of `version`: the object,
/// then its status through the status subresource.
fn record(api: &ApiServer, evaluation: &str, version: &str) {
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", evaluation);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc: serde_json::Value = slipway_core::catalog::yaml::read(evaluation).unwrap();
    let status = serde_json::json!({"status": serde_json::to_value(&doc["status"]).unwrap()});
    let run = api.kubectl(
        &[
            "patch",
            "evaluation",
            &format!("pitch-frame-classifier-{version}-pitch-frames"),
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ],
        "admin",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn promotions_are_decided_at_admission_with_the_requesters_identity() {
    let api = ApiServer::start();
    api.install_crds();
    // The example registry and its results, before any policy exists.
    let examples = root().join("examples/football-frames");
    for file in [
        "model.yaml",
        "versions.yaml",
        "aliases.yaml",
        "deployments.yaml",
    ] {
        let run = api.kubectl(
            &["apply", "-f", &examples.join(file).to_string_lossy()],
            "admin",
        );
        assert_eq!(run.code, 0, "{file}: {}", run.stderr);
    }
    record_results(&api);
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", &rbac());
    assert_eq!(run.code, 0, "{}", run.stderr);

    let port = free_port();
    let run = api.kubectl_stdin(
        &["apply", "-f", "-"],
        "admin",
        &webhook_configurations(port),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let controller = Controller::start(&api, port, &support::OPEN_BOUNDS);
    // The controller publishes its generated certificate as the configurations' caBundle…
    support::admission::wait_for_ca_bundle(&api);
    // …and publishes it again when a configuration is replaced without it (a Helm upgrade).
    let run = api.kubectl_stdin(
        &["replace", "-f", "-"],
        "admin",
        &webhook_configurations(port),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    support::admission::wait_for_ca_bundle(&api);
    let policies = examples.join("policies.yaml");
    let run = api.kubectl(&["apply", "-f", &policies.to_string_lossy()], "admin");
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, controller.log());

    // erin is no ML lead; moving production without a lead's approval is denied, and says why.
    let denied = api.kubectl_stdin(&["apply", "-f", "-"], "erin", &alias("8"));
    assert_ne!(denied.code, 0, "{}", denied.stdout);
    for needle in [
        "denied the request",
        "ModelAlias default/pitch-frame-classifier-production: moving pitch-frame-classifier/production from 7 to 8 (requested by erin) is not allowed",
        "policy production, approval ml-lead: has 0 of 1 required approvals",
        "someone in group:ml-leads other than erin creates an Approval",
    ] {
        assert!(
            denied.stderr.contains(needle),
            "{needle}\n{}",
            denied.stderr
        );
    }
    // A server-side dry run and `kubectl diff` show the same decision, without side effects.
    let dry = api.kubectl_stdin(
        &["apply", "--dry-run=server", "-f", "-"],
        "erin",
        &alias("8"),
    );
    assert_ne!(dry.code, 0);
    assert!(
        dry.stderr.contains("has 0 of 1 required approvals"),
        "{}",
        dry.stderr
    );
    let diff = api.kubectl_stdin(&["diff", "-f", "-"], "erin", &alias("8"));
    // (kubectl diff exits 1 for "differences", above 1 for errors such as a denial.)
    assert!(diff.code > 1, "{}{}", diff.stdout, diff.stderr);
    assert!(
        diff.stderr.contains("requested by erin) is not allowed"),
        "{}",
        diff.stderr
    );

    // RBAC: erin may not approve at all.
    let forbidden = api.kubectl_stdin(&["create", "-f", "-"], "erin", &approval("erin-8", "8", ""));
    assert_ne!(forbidden.code, 0);
    assert!(
        forbidden.stderr.contains("forbidden"),
        "{}",
        forbidden.stderr
    );

    // An approval cannot be made in someone else's name.
    let forged = api.kubectl_stdin(
        &["create", "-f", "-"],
        "alice",
        &approval("forged", "8", "  approver: dana\n"),
    );
    assert_ne!(forged.code, 0);
    assert!(
        forged
            .stderr
            .contains("spec.approver is \"dana\" but the request comes from \"alice\""),
        "{}",
        forged.stderr
    );

    // dana is a lead, but cannot approve her own move.
    let run = api.kubectl_stdin(&["create", "-f", "-"], "dana", &approval("dana-8", "8", ""));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let own = api.kubectl_stdin(&["apply", "-f", "-"], "dana", &alias("8"));
    assert_ne!(own.code, 0);
    assert!(
        own.stderr
            .contains("dana does not count (author of the change cannot approve it)"),
        "{}",
        own.stderr
    );

    // alice approves; the webhook stamps her identity; erin's move now goes through.
    let run = api.kubectl_stdin(
        &["create", "-f", "-"],
        "alice",
        &approval("alice-8", "8", ""),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let who = api.kubectl(
        &[
            "get",
            "approval",
            "alice-8",
            "-o",
            "jsonpath={.spec.approver} {.spec.approverGroups}",
        ],
        "admin",
    );
    assert!(
        who.stdout.starts_with("alice [\"ml-leads\""),
        "{}",
        who.stdout
    );
    let approvals = api.kubectl(&["get", "appr"], "admin");
    assert!(
        approvals
            .stdout
            .lines()
            .any(|l| l.starts_with("alice-8") && l.contains("alice")),
        "{}",
        approvals.stdout
    );
    let allowed = api.kubectl_stdin(&["apply", "-f", "-"], "erin", &alias("8"));
    assert_eq!(allowed.code, 0, "{}", allowed.stderr);
    let version = api.kubectl(
        &[
            "get",
            "malias",
            "pitch-frame-classifier-production",
            "-o",
            "jsonpath={.spec.version}",
        ],
        "admin",
    );
    assert_eq!(version.stdout, "8");
    let resolved = |v: &str| {
        eventually(Duration::from_secs(30), || {
            let run = api.kubectl(
                &[
                    "get",
                    "malias",
                    "pitch-frame-classifier-production",
                    "-o",
                    "jsonpath={.status.resolvedVersion}",
                ],
                "admin",
            );
            (run.stdout == v).then_some(())
        })
    };
    resolved("8");

    // The incident: production moves back to 7, which it served before. 7 was compared against
    // its own predecessor, not against 8; a rollback is not held to that comparison, but still
    // needs a lead's approval.
    let seven = support::evaluation_of_seven();
    record(&api, &seven, "7");
    let waiting = api.kubectl_stdin(&["apply", "-f", "-"], "erin", &alias("7"));
    assert_ne!(waiting.code, 0, "{}", waiting.stdout);
    assert!(
        waiting
            .stderr
            .contains("moving pitch-frame-classifier/production from 8 to 7 (requested by erin) is not allowed"),
        "{}",
        waiting.stderr
    );
    assert!(
        waiting.stderr.contains("has 0 of 1 required approvals")
            && !waiting.stderr.contains("candidate-evaluations-passed")
            && !waiting.stderr.contains("baseline-is-current-production")
            && !waiting.stderr.contains("no-primary-metric-regression"),
        "{}",
        waiting.stderr
    );
    let run = api.kubectl_stdin(
        &["create", "-f", "-"],
        "alice",
        &approval("alice-7", "7", ""),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let back = api.kubectl_stdin(&["apply", "-f", "-"], "erin", &alias("7"));
    assert_eq!(back.code, 0, "{}", back.stderr);
    resolved("7");

    // Approvals are immutable.
    let changed = api.kubectl(
        &[
            "patch",
            "approval",
            "alice-8",
            "--type=merge",
            "-p",
            r#"{"spec":{"version":"9"}}"#,
        ],
        "admin",
    );
    assert_ne!(changed.code, 0);
    assert!(
        changed.stderr.contains("Approvals are immutable"),
        "{}",
        changed.stderr
    );

    // A version's artifact cannot be changed, even by the admin.
    let moved = api.kubectl(
        &[
            "patch",
            "modelversion",
            "pitch-frame-classifier-8",
            "--type=merge",
            "-p",
            r#"{"spec":{"artifact":{"uri":"s3://elsewhere/model.onnx"}}}"#,
        ],
        "admin",
    );
    assert_ne!(moved.code, 0);
    assert!(moved.stderr.contains("spec.artifact.uri: ModelVersion fields model, version, artifact, source and signature are immutable"), "{}", moved.stderr);
    let labelled = api.kubectl(
        &[
            "label",
            "modelversion",
            "pitch-frame-classifier-8",
            "reviewed=yes",
        ],
        "admin",
    );
    assert_eq!(labelled.code, 0, "{}", labelled.stderr);
    // Nobody hands a version's life to another object (whose deletion would make the garbage
    // collector delete it, freeing its label), or keeps it from being deleted.
    for (patch, said) in [
        (
            r#"{"metadata":{"ownerReferences":[{"apiVersion":"v1","kind":"ConfigMap","name":"short-lived","uid":"6f1e3c2a-0000-4000-8000-000000000001"}]}}"#,
            "metadata.ownerReferences: an owner reference to ConfigMap short-lived",
        ),
        (
            r#"{"metadata":{"finalizers":["example.com/keep"]}}"#,
            "metadata.finalizers: adding \"example.com/keep\"",
        ),
    ] {
        let run = api.kubectl(
            &[
                "patch",
                "modelversion",
                "pitch-frame-classifier-8",
                "--type=merge",
                "-p",
                patch,
            ],
            "admin",
        );
        assert_ne!(run.code, 0, "{patch}");
        assert!(run.stderr.contains(said), "{}", run.stderr);
    }

    // erin pins the production deployment to 7: denied, and the denial shows what the
    // `spec.change` it asks approvers to sign stands for; `slipway change` shows the same from
    // the manifest, against the cluster, before alice signs it.
    let deployments = std::fs::read_to_string(examples.join("deployments.yaml")).unwrap();
    let production = deployments.split("\n---\n").next().unwrap();
    let pinned = production.replace("  alias: production\n", "  version: \"7\"\n");
    assert_ne!(pinned, production);
    let denied = api.kubectl_stdin(&["apply", "-f", "-"], "erin", &pinned);
    assert_ne!(denied.code, 0, "{}", denied.stdout);
    assert!(
        denied.stderr.contains(
            r#"the change it signs: spec.alias: "production" → (absent); spec.version: (absent) → "7""#
        ),
        "{}",
        denied.stderr
    );
    let at = denied.stderr.find("spec.change \"sha256:").unwrap() + "spec.change \"".len();
    let digest = denied.stderr[at..at + 71].to_string();
    let manifest = api.dir.path().join("pinned.yaml");
    std::fs::write(&manifest, &pinned).unwrap();
    let shown = std::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["change", &manifest.to_string_lossy()])
        .env("KUBECONFIG", &api.kubeconfig)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    assert_eq!(
        stdout,
        format!(
            "ModelDeployment default/pitch-frames-api\n  spec.change: {digest}\n    spec.alias: \"production\" → (absent)\n    spec.version: (absent) → \"7\"\n"
        )
    );
    let signed = format!(
        "apiVersion: slipway.dev/v1alpha1\nkind: Approval\nmetadata: {{name: alice-pin-7, namespace: default}}\nspec:\n  target: {{kind: ModelDeployment, name: pitch-frames-api}}\n  change: \"{digest}\"\n  decision: approve\n"
    );
    let run = api.kubectl_stdin(&["create", "-f", "-"], "alice", &signed);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "erin", &pinned);
    assert_eq!(run.code, 0, "{}", run.stderr);

    // A version a deployment pins (or an alias resolves to) cannot be deleted, even by the admin:
    // its label, once free, could be registered again with another artifact.
    let run = api.kubectl(&["delete", "mver", "pitch-frame-classifier-7"], "admin");
    assert_ne!(run.code, 0);
    assert!(
        run.stderr
            .contains("version 7 of pitch-frame-classifier is in use by")
            && run.stderr.contains("ModelDeployment pitch-frames-api"),
        "{}",
        run.stderr
    );
    // Only its approver withdraws an approval: dana, a lead too, cannot delete alice's.
    let run = api.kubectl(&["delete", "approval", "alice-pin-7"], "dana");
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains(
            "Approval default/alice-pin-7: only its approver, \"alice\", withdraws it (an approval is its author's signature); ask them, or someone in system:masters"
        ),
        "{}",
        run.stderr
    );
    let run = api.kubectl(&["delete", "approval", "alice-pin-7"], "alice");
    assert_eq!(run.code, 0, "{}", run.stderr);
    // Every withdrawal is recorded: an event on the approval, and the decision in the log.
    let recorded = support::eventually(std::time::Duration::from_secs(30), || {
        let run = api.kubectl(
            &[
                "get",
                "events",
                "--field-selector",
                "reason=ApprovalWithdrawn,involvedObject.name=alice-pin-7",
                "-o",
                "jsonpath={.items[*].message}",
            ],
            "admin",
        );
        (!run.stdout.is_empty()).then_some(run.stdout)
    });
    assert!(
        recorded.starts_with(
            "alice's approval of ModelDeployment pitch-frames-api (the change sha256:"
        ),
        "{recorded}"
    );

    // A version 9 whose signature retypes production's input: admission names what breaks.
    let versions = std::fs::read_to_string(examples.join("versions.yaml")).unwrap();
    let nine = support::registry::example_nine(
        &versions,
        &[("{name: frame, type: uint8", "{name: frame, type: float32")],
    );
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", &nine);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let denied = api.kubectl_stdin(
        &["apply", "--dry-run=server", "-f", "-"],
        "alice",
        &alias("9"),
    );
    assert_ne!(denied.code, 0, "{}", denied.stdout);
    assert!(
        denied.stderr.contains("rule compatible-signature")
            && denied
                .stderr
                .contains("(input `frame` retyped uint8 → float32 (breaks callers))"),
        "{}",
        denied.stderr
    );
}

/// What `slipway validate` says of a file or folder, and what the API server says of a
/// server-side dry run of it in namespace `ns`: accepted or not, with the reasons.
fn verdicts(api: &ApiServer, path: &std::path::Path, ns: &str) -> ((bool, String), (bool, String)) {
    let ours = support::slipway(&["validate", &path.to_string_lossy()], &root());
    let theirs = api.kubectl(
        &[
            "apply",
            "--dry-run=server",
            "-n",
            ns,
            "-f",
            &path.to_string_lossy(),
        ],
        "admin",
    );
    // A file of comments only holds no object: valid for both (kubectl just has nothing to send).
    let accepted = theirs.code == 0 || theirs.stderr.contains("no objects passed to apply");
    (
        (ours.code == 0, ours.stdout),
        (accepted, format!("{}{}", theirs.stdout, theirs.stderr)),
    )
}

/// Where `kubectl` itself (its YAML reader, before any request) differs from `validate`, and why
/// these are not differences of the API server's.
const CLIENT_DIFFERENCES: [(&str, &str); 3] = [
    // kubectl's YAML reader keeps the last of repeated keys; API servers since 1.25 refuse them
    // under kubectl's default `--validate=strict` (server-side field validation), which this
    // 1.20 test server predates. `validate` refuses them, as those servers do.
    ("duplicate-key.yaml", "repeated key"),
    ("duplicate-metadata-key.yaml", "repeated key"),
    // kubectl's reader stops at the document-end marker `...` of a file without objects.
    ("empty-but-comments.yaml", "no objects"),
];

#[test]
fn validate_and_the_api_server_accept_exactly_the_same_documents() {
    let api = ApiServer::start();
    api.install_crds();
    let port = free_port();
    // The webhook judges namespace `corpus` (one document at a time, as `validate` does); the
    // examples' namespace gets the CRD schemas only, since a dry run of a folder checks each
    // object against an empty namespace and the webhook would (rightly) refuse references to
    // objects that the same folder creates.
    let hooks = webhook_configurations(port).replace(
        "  sideEffects: None\n",
        "  sideEffects: None\n  namespaceSelector: {matchLabels: {slipway.dev/admission: \"on\"}}\n",
    );
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", &hooks);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for (ns, label) in [("corpus", "on"), ("examples", "off")] {
        let run = api.kubectl(&["create", "namespace", ns], "admin");
        assert_eq!(run.code, 0, "{}", run.stderr);
        let run = api.kubectl(
            &[
                "label",
                "namespace",
                ns,
                &format!("slipway.dev/admission={label}"),
            ],
            "admin",
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    let controller = Controller::start(&api, port, &support::OPEN_BOUNDS);
    // The webhook answers: a document only it refuses (a policy whose CEL does not compile).
    let probe = root().join("tests/corpus/bad-cel.yaml");
    eventually(Duration::from_secs(60), || {
        let (_, (accepted, why)) = verdicts(&api, &probe, "corpus");
        (!accepted && why.contains("admission webhook")).then_some(())
    });

    let mut corpus: Vec<std::path::PathBuf> = std::fs::read_dir(root().join("tests/corpus"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    corpus.sort();
    let mut refused = 0;
    let mut disagree = Vec::new();
    let mut client_side = Vec::new();
    let inputs = corpus.iter().map(|p| (p.clone(), "corpus")).chain(
        ["examples/football-frames", "examples/quickstart"]
            .into_iter()
            .map(|f| (root().join(f), "examples")),
    );
    for (path, ns) in inputs {
        let ((ours, why), (theirs, their_why)) = verdicts(&api, &path, ns);
        if !ours {
            refused += 1;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if ours != theirs {
            let line = format!(
                "{name}: validate {} / API server {}\n  validate: {why}\n  kubectl: {their_why}",
                if ours { "accepts" } else { "refuses" },
                if theirs { "accepts" } else { "refuses" },
            );
            match CLIENT_DIFFERENCES.iter().find(|(f, _)| *f == name) {
                Some(_) => client_side.push(name),
                None => disagree.push(line),
            }
        }
    }
    assert!(
        disagree.is_empty(),
        "{}\n{}",
        disagree.join("\n"),
        controller.log()
    );
    // The known client-side differences are still there (if kubectl changes, revisit them).
    let mut expected: Vec<String> = CLIENT_DIFFERENCES
        .iter()
        .map(|(f, _)| f.to_string())
        .collect();
    expected.sort();
    client_side.sort();
    assert_eq!(client_side, expected);
    // The corpus is bad input except its one file of comments; the examples are valid.
    assert_eq!(refused, corpus.len() - 1);
}
