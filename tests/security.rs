//! The security suite (issue 11, SECURITY.md): each way someone holding the promoter role could
//! get an unapproved change into production, or reach the controller's secrets, tried against
//! the real peers — and the allowed path next to it.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::apiserver::ApiServer;
use support::{eventually, free_port, root};

/// Version 8's artifact digest as registered in the examples.
const DIGEST_8: &str = "sha256:9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b";
/// Version 7's.
const DIGEST_7: &str = "sha256:0f3e9b7a2c4d6e8f1a3b5c7d9e0f2a4b6c8d0e1f3a5b7c9d1e3f5a7b9c0d2e4f";
const PRODUCTION: &str = "pitch-frame-classifier-production";

/// `slipway controller` without the admission webhook; killed on drop.
struct Controller {
    child: Child,
    log: std::path::PathBuf,
}

impl Controller {
    fn start(api: &ApiServer) -> Controller {
        let log = api.dir.path().join("controller.log");
        let child = Command::new(env!("CARGO_BIN_EXE_slipway"))
            .args(["controller", "--listen"])
            .arg(format!("127.0.0.1:{}", free_port()))
            .env("KUBECONFIG", &api.kubeconfig)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Controller { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn apply(api: &ApiServer, user: &str, yaml: &str) {
    let run = api.kubectl_stdin(&["apply", "-f", "-"], user, yaml);
    assert_eq!(run.code, 0, "{}\n{yaml}", run.stderr);
}

fn get(api: &ApiServer, what: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend(what);
    let path = format!("jsonpath={path}");
    args.extend(["-o", &path]);
    api.kubectl(&args, "admin").stdout
}

/// The example registry (no deployments), version 8's results, production resolved to 7 and
/// the default policies, as a cluster would have them.
fn registry(api: &ApiServer) {
    api.install_crds();
    let examples = root().join("examples/football-frames");
    for file in ["model.yaml", "versions.yaml", "aliases.yaml", "policies.yaml"] {
        let run = api.kubectl(
            &["apply", "-f", &examples.join(file).to_string_lossy()],
            "admin",
        );
        assert_eq!(run.code, 0, "{file}: {}", run.stderr);
    }
    // Version 8's results against 7, and (for a move back) 7's against 8, as the controller
    // would have recorded them.
    let eight = std::fs::read_to_string(root().join("examples/promotion-pr/results/pitch-frames-8.yaml")).unwrap();
    let seven = eight
        .replace("-8-pitch-frames", "-7-pitch-frames")
        .replace("version: \"8\"", "version: \"7\"")
        .replace("baselineVersion: \"7\"", "baselineVersion: \"8\"")
        .replace("macro_f1: 0.861", "macro_f1: 0.874");
    for (name, text) in [("8", eight), ("7", seven)] {
        apply(api, "admin", &text);
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let status = serde_json::json!({"status": serde_json::to_value(&doc["status"]).unwrap()});
        let evaluation = format!("pitch-frame-classifier-{name}-pitch-frames");
        status_patch(api, "evaluation", &evaluation, &status);
    }
    status_patch(
        api,
        "modelalias",
        PRODUCTION,
        &serde_json::json!({"status": {"resolvedVersion": "7"}}),
    );
}

fn status_patch(api: &ApiServer, kind: &str, name: &str, patch: &serde_json::Value) {
    let run = api.kubectl(
        &[
            "patch",
            kind,
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch.to_string(),
        ],
        "admin",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
}

fn production(version: &str) -> String {
    format!(
        "apiVersion: slipway.dev/v1alpha1\nkind: ModelAlias\nmetadata: {{name: {PRODUCTION}, namespace: default}}\nspec: {{model: pitch-frame-classifier, alias: production, version: \"{version}\"}}\n"
    )
}

/// An approval as alice would make it, written out in full (no mutating webhook here).
fn approval(name: &str, from: &str, to: &str, digest: &str) -> String {
    format!(
        "apiVersion: slipway.dev/v1alpha1\nkind: Approval\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  target: {{kind: ModelAlias, name: {PRODUCTION}}}\n  version: \"{to}\"\n  fromVersion: \"{from}\"\n  artifactDigest: \"{digest}\"\n  decision: approve\n  approver: alice\n  approverGroups: [ml-leads]\n"
    )
}

fn ready(api: &ApiServer) -> String {
    get(
        api,
        &["malias", PRODUCTION],
        "{.status.resolvedVersion} {.status.conditions[0].reason}: {.status.conditions[0].message}",
    )
}

/// With the webhook bypassed (not installed, `failurePolicy: Ignore`, down), a move the policies
/// want approved is held by the controller until an approval of exactly that move exists; the
/// approval is then used up, and the same move later needs a new one.
#[test]
fn a_move_admitted_without_the_webhook_is_held_until_that_exact_move_is_approved() {
    let api = ApiServer::start();
    registry(&api);
    let controller = Controller::start(&api);
    eventually(Duration::from_secs(30), || {
        ready(&api).starts_with("7 Resolved").then_some(())
    });

    apply(&api, "admin", &production("8"));
    let held = eventually(Duration::from_secs(30), || {
        let r = ready(&api);
        r.contains("PromotionBlocked").then_some(r)
    });
    assert_eq!(
        held,
        "7 PromotionBlocked: pitch-frame-classifier/production → 8 held: awaiting approval: ml-lead (0/1)",
        "{}",
        controller.log()
    );
    // An approval of another move (from another version) does not release it.
    apply(&api, "admin", &approval("from-9", "9", "8", DIGEST_8));
    std::thread::sleep(Duration::from_secs(2));
    assert!(ready(&api).starts_with("7 PromotionBlocked"));
    apply(&api, "admin", &approval("alice-8", "7", "8", DIGEST_8));
    eventually(Duration::from_secs(30), || {
        ready(&api).starts_with("8 Resolved").then_some(())
    });
    let used = get(&api, &["approval", "alice-8"], "{.status.usedBy}");
    let uid = get(&api, &["malias", PRODUCTION], "{.metadata.uid}");
    assert!(
        used.starts_with(&format!(
            "ModelAlias/default/{PRODUCTION} → 8 (generation 2, uid {uid})"
        )),
        "{used}"
    );
    assert!(get(&api, &["approval", "from-9"], "{.status.usedBy}").is_empty());

    // Back to 7 (approved), then to 8 again: alice-8 signed off 7 → 8 once, and was used.
    apply(&api, "admin", &approval("alice-7", "8", "7", DIGEST_7));
    apply(&api, "admin", &production("7"));
    eventually(Duration::from_secs(30), || {
        ready(&api).starts_with("7 Resolved").then_some(())
    });
    apply(&api, "admin", &production("8"));
    eventually(Duration::from_secs(30), || {
        ready(&api)
            .starts_with("7 PromotionBlocked")
            .then_some(())
    });
}
