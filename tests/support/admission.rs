//! The admission webhook on a real API server: the controller serving it, the webhook
//! configurations calling it, and the chart's user roles bound as a platform team would.

use std::process::{Child, Command, Stdio};

use super::apiserver::ApiServer;
use super::free_port;

/// `slipway controller`, serving the webhook when given a port; killed on drop.
pub struct Controller {
    child: Child,
    log: std::path::PathBuf,
}

impl Controller {
    pub fn start(api: &ApiServer, webhook_port: u16, bounds: &[(&str, &str)]) -> Controller {
        Controller::spawn(api, Some(webhook_port), bounds, &[])
    }

    /// The controller without the webhook (as when the webhook is not called).
    pub fn without_webhook(api: &ApiServer, bounds: &[(&str, &str)]) -> Controller {
        Controller::spawn(api, None, bounds, &[])
    }

    /// A replica serving the webhook on `webhook_port` with `extra` arguments.
    pub fn replica(
        api: &ApiServer,
        webhook_port: u16,
        bounds: &[(&str, &str)],
        extra: &[&str],
    ) -> Controller {
        Controller::spawn(api, Some(webhook_port), bounds, extra)
    }

    fn spawn(
        api: &ApiServer,
        webhook_port: Option<u16>,
        bounds: &[(&str, &str)],
        extra: &[&str],
    ) -> Controller {
        let log = api
            .dir
            .path()
            .join(format!("controller-{}.log", webhook_port.unwrap_or(0)));
        let mut command = Command::new(env!("CARGO_BIN_EXE_slipway"));
        command
            .envs(bounds.iter().copied())
            .args(["controller", "--listen"])
            .arg(format!("127.0.0.1:{}", free_port()));
        if let Some(port) = webhook_port {
            command
                .arg("--webhook-listen")
                .arg(format!("127.0.0.1:{port}"))
                .args(["--webhook-config", "slipway"]);
        }
        command.args(extra);
        let child = command
            .env("KUBECONFIG", &api.kubeconfig)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Controller { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Webhook configurations calling 127.0.0.1:PORT for every Slipway resource.
pub fn webhook_configurations(port: u16) -> String {
    let rules = "  rules:\n  - apiGroups: [slipway.dev]\n    apiVersions: [v1alpha1]\n    operations: [CREATE, UPDATE, DELETE]\n    resources: [\"*\"]\n    scope: Namespaced\n";
    let common = "  sideEffects: None\n  admissionReviewVersions: [v1]\n  failurePolicy: Fail\n  timeoutSeconds: 10\n";
    format!(
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {{name: slipway}}\nwebhooks:\n- name: validate.slipway.dev\n  clientConfig: {{url: \"https://127.0.0.1:{port}/validate\"}}\n{rules}{common}---\napiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata: {{name: slipway}}\nwebhooks:\n- name: stamp.slipway.dev\n  clientConfig: {{url: \"https://127.0.0.1:{port}/mutate\"}}\n  rules:\n  - apiGroups: [slipway.dev]\n    apiVersions: [v1alpha1]\n    operations: [CREATE]\n    resources: [approvals, modelversions]\n    scope: Namespaced\n{common}"
    )
}

/// The chart's ready-made roles, bound as a platform team would: engineers and leads promote,
/// leads approve.
pub fn rbac() -> String {
    let values = serde_json::json!({"roleBindings": [
        {"role": "promoter", "group": "ml-engineers"},
        {"role": "promoter", "group": "ml-leads"},
        {"role": "approver", "group": "ml-leads"},
    ]});
    let manifests = super::helm::render("slipway", &values).expect("render the chart");
    super::helm::only(&manifests, &["ClusterRole", "ClusterRoleBinding"])
}

/// Waits until the controller has written its certificate into the webhook configurations.
pub fn wait_for_ca_bundle(api: &ApiServer) {
    for kind in [
        "validatingwebhookconfiguration",
        "mutatingwebhookconfiguration",
    ] {
        super::eventually(std::time::Duration::from_secs(30), || {
            let run = api.kubectl(
                &[
                    "get",
                    kind,
                    "slipway",
                    "-o",
                    "jsonpath={.webhooks[0].clientConfig.caBundle}",
                ],
                "admin",
            );
            (!run.stdout.is_empty()).then_some(())
        });
    }
}
