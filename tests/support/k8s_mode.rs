//! Kubernetes mode (`slipway controller`) on a real API server: the controller process without
//! the webhook, reads through `kubectl -o jsonpath`, alias moves, and evaluation results tokens.

use std::process::{Child, Command, Stdio};

use super::apiserver::ApiServer;
use super::{OPEN_BOUNDS, free_port, http};

/// A `slipway controller` process (no webhook); killed on drop.
pub struct Controller {
    child: Child,
    log: std::path::PathBuf,
    pub port: u16,
}

impl Controller {
    pub fn start(api: &ApiServer, name: &str) -> Controller {
        Controller::start_with(api, name, &[])
    }

    /// [`Controller::start`] with more environment (flags as `SLIPWAY_…` variables).
    pub fn start_with(api: &ApiServer, name: &str, env: &[(&str, &str)]) -> Controller {
        let log = api.dir.path().join(format!("{name}.log"));
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_slipway"))
            .envs(OPEN_BOUNDS)
            .envs(env.iter().copied())
            .args(["controller", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .env("KUBECONFIG", &api.kubeconfig)
            .env("POD_NAME", name)
            .env("SLIPWAY_LOG", "info,kube=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Controller { child, log, port }
    }

    pub fn metrics(&self) -> String {
        http::request(
            "GET",
            &format!("http://127.0.0.1:{}/metrics", self.port),
            &[],
            "",
        )
        .1
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn get(api: &ApiServer, what: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    let jsonpath = format!("jsonpath={path}");
    args.extend(["-o", &jsonpath]);
    api.kubectl(&args, "admin").stdout
}

pub fn move_alias(api: &ApiServer, version: &str) {
    let patch = format!(r#"{{"spec":{{"version":"{version}"}}}}"#);
    let run = api.kubectl(
        &[
            "patch",
            "malias",
            "pitch-frames-production",
            "--type=merge",
            "-p",
            &patch,
        ],
        "admin",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
}

pub fn token_of(api: &ApiServer, evaluation: &str) -> String {
    let b64 = get(
        api,
        &["secret", &format!("{evaluation}-results-token")],
        "{.data.token}",
    );
    use base64::Engine as _;
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .unwrap(),
    )
    .unwrap()
}

/// Waits for Job `job` to exist and returns it.
pub fn wait_for_job(api: &ApiServer, job: &str) -> serde_json::Value {
    crate::support::eventually(std::time::Duration::from_secs(60), || {
        let run = api.kubectl(&["get", "job", job, "-o", "json"], "admin");
        (run.code == 0).then(|| serde_json::from_str(&run.stdout).unwrap())
    })
}

/// Plays the Job controller and the kubelet for an evaluation Job whose container wrote
/// `results` to `$SLIPWAY_RESULTS` (its termination-message file) and exited 0: a pod the Job
/// controls, terminated with that message, and the Job complete.
pub fn finish_job(api: &ApiServer, job: &str, results: &str) {
    claim_job(api, job, &format!("{job}-pod"), results, |_| {});
    complete_job(api, job);
}

/// A pod named `pod` that names Job `job` its controller (as the Job controller's, or anyone's,
/// would), its spec the Job's template changed by `tweak`, terminated with `results`.
pub fn claim_job(
    api: &ApiServer,
    job: &str,
    pod: &str,
    results: &str,
    tweak: impl FnOnce(&mut serde_json::Value),
) {
    let j = wait_for_job(api, job);
    let mut spec = j["spec"]["template"]["spec"].clone();
    tweak(&mut spec);
    let object = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": pod, "labels": {"job-name": job},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job,
                                 "uid": j["metadata"]["uid"], "controller": true}],
        },
        "spec": spec,
    });
    let run = api.kubectl_stdin(&["create", "-f", "-"], "admin", &object.to_string());
    assert_eq!(run.code, 0, "{}", run.stderr);
    let status = serde_json::json!({"status": {"phase": "Succeeded", "containerStatuses": [{
        "name": "evaluate", "image": j["spec"]["template"]["spec"]["containers"][0]["image"],
        "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 0, "reason": "Completed", "message": results}},
    }]}});
    pod_status(api, pod, &status);
}

/// Writes pod `pod`'s status, as the kubelet would.
fn pod_status(api: &ApiServer, pod: &str, status: &serde_json::Value) {
    let run = api.kubectl(
        &[
            "patch",
            "pod",
            pod,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ],
        "admin",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// Marks Job `job` complete, as the Job controller would.
pub fn complete_job(api: &ApiServer, job: &str) {
    job_status(
        api,
        job,
        r#"{"status":{"succeeded":1,"conditions":[{"type":"Complete","status":"True"}]}}"#,
    );
}

/// Marks Job `job` failed, its one pod's container having exited with `code`, as the Job
/// controller and the kubelet would.
pub fn fail_job(api: &ApiServer, job: &str, code: i32) {
    let pod = format!("{job}-pod");
    claim_job(api, job, &pod, "", |_| {});
    let status = serde_json::json!({"status": {"phase": "Failed", "containerStatuses": [{
        "name": "evaluate", "image": "", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": code, "reason": "Error",
                                 "message": "Traceback (most recent call last): FileNotFoundError: holdout.csv"}},
    }]}});
    pod_status(api, &pod, &status);
    job_status(
        api,
        job,
        r#"{"status":{"failed":1,"conditions":[{"type":"Failed","status":"True","reason":"BackoffLimitExceeded","message":"Job has reached the specified backoff limit"}]}}"#,
    );
}

fn job_status(api: &ApiServer, job: &str, status: &str) {
    let run = api.kubectl(
        &[
            "patch",
            "job",
            job,
            "--subresource=status",
            "--type=merge",
            "-p",
            status,
        ],
        "admin",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// A cluster for rollout tests: the API server with the CRDs, `objects` applied, the test's
/// kubelet and one controller.
pub fn cluster_with(objects: &str) -> (ApiServer, super::kubelet::Kubelet, Controller) {
    let api = ApiServer::start();
    api.install_crds();
    let run = api.kubectl_stdin(&["apply", "-f", "-"], "admin", objects);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let kubelet = super::kubelet::Kubelet::start(&api.kubeconfig, "default");
    let controller = Controller::start(&api, "controller-a");
    (api, kubelet, controller)
}

/// Waits (90 s at most) until ModelDeployment pitch-frames-api is Healthy serving `version`.
pub fn serving(api: &ApiServer, version: &str) {
    let want = format!("Healthy {version}");
    super::eventually(std::time::Duration::from_secs(90), || {
        (get(
            api,
            &["mdeploy", "pitch-frames-api"],
            "{.status.phase} {.status.servingVersion}",
        ) == want)
            .then_some(())
    })
}

/// ModelDeployment pitch-frames-api's status.
pub fn deployment_status(api: &ApiServer) -> serde_json::Value {
    let out = api.kubectl(
        &["get", "mdeploy", "pitch-frames-api", "-o", "json"],
        "admin",
    );
    serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap_or_default()["status"].clone()
}
