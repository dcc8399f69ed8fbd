//! The two homes the parity suite runs its scenarios against (`tests/parity.rs`): git mode
//! (`slipway run` on a registry folder) and Kubernetes mode (`slipway controller` on a real
//! kube-apiserver, with the test playing the kubelet), behind one `Home` trait.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use super::apiserver::ApiServer;
use super::http::{post_json, request};
use super::kubelet::Kubelet;
use super::{OPEN_BOUNDS, free_port};

/// A home under test.
pub trait Home {
    fn name(&self) -> &'static str;
    /// Writes (git: a file in the registry) or applies (cluster: `kubectl apply`) documents.
    fn apply(&mut self, file: &str, docs: &str);
    /// An evaluation's status, once it has one.
    fn evaluation(&self, name: &str) -> Option<Value> {
        self.evaluation_in("default", name)
    }
    /// An evaluation's status in namespace `ns`.
    fn evaluation_in(&self, ns: &str, name: &str) -> Option<Value>;
    /// Makes namespace `ns` exist (a cluster creates it; a registry folder needs nothing).
    fn namespace(&mut self, _ns: &str) {}
    /// An alias's status.
    fn alias(&self, name: &str) -> Option<Value>;
    /// A `RegisteredModel`'s status.
    fn model(&self, name: &str) -> Option<Value>;
    /// A version's status.
    fn version(&self, name: &str) -> Option<Value>;
    /// The alias decisions recorded (`AliasMoved` / `PromotionBlocked`) for an alias.
    fn alias_events(&self, name: &str) -> Vec<String>;
    /// A `ModelDeployment` of `pitch-frames`' production alias on this home's target (git mode:
    /// local processes; Kubernetes mode: Deployments, with the test playing the kubelet), rolled
    /// out by the same Canary strategy.
    fn deployment(&self) -> String;
    /// A deployment's status.
    fn deployment_status(&self, name: &str) -> Option<Value>;
    /// Keeps `version`'s servers from ever becoming healthy (git mode: its health check answers
    /// 503; Kubernetes mode: its pods never become available), or lets them again.
    fn hold(&mut self, version: &str, held: bool);
    /// An operator's retry of `version` on a deployment (git mode: the retry API with the
    /// instance's token; Kubernetes mode: the `slipway.dev/retry` annotation).
    fn retry(&self, deployment: &str, version: &str);
    /// What the home's log says, for failure messages.
    fn log(&self) -> String;
    /// The port of the home's HTTP server.
    fn port(&self) -> u16;
    /// The home's `/metrics` text.
    fn metrics(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.port());
        request("GET", &url, &[], "").1
    }
    /// The runner (YAML, indented for a suite) of jobs that record their environment and report
    /// `f1` 0.9 (git mode: a `local` command; Kubernetes mode: a `kubernetes` Job).
    fn job_runner(&self) -> String;
    /// The `SLIPWAY_*` environment (`SLIPWAY_RESULTS` aside) of the job of `evaluation`'s
    /// first attempt's `role` run, once it ran (Kubernetes mode: the test plays the Job).
    fn job_environment(
        &self,
        evaluation: &str,
        role: &str,
    ) -> std::collections::BTreeMap<String, String>;
}

/// The strategy both homes roll out with.
pub const CANARY: &str = "strategy: {type: Canary, steps: [{weight: 25, pause: 1s}, {weight: 50, pause: 1s}], autoRollback: true, progressDeadline: 3s}";

/// The token of git mode's retry API.
pub const API_TOKEN: &str = "parity-operator-token-0123456789";

/// Git mode: `slipway run` on a registry folder, with the results API.
pub struct GitHome {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
}

impl GitHome {
    pub fn start() -> GitHome {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("registry")).unwrap();
        let port = free_port();
        std::fs::write(dir.path().join("api-token"), API_TOKEN).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_slipway"))
            .args(["run", "registry", "--state", "state", "--interval", "200ms"])
            .args(["--api-token-file", "api-token"])
            .args(["--allowed-destinations", "127.0.0.1"])
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("run.log")).unwrap())
            .spawn()
            .unwrap();
        GitHome { dir, child, port }
    }

    fn rows(&self, kind: &str) -> Vec<Value> {
        let (_, body) = request(
            "GET",
            &format!("http://127.0.0.1:{}/api/v1/{kind}", self.port),
            &[],
            "",
        );
        serde_json::from_str::<Vec<Value>>(&body).unwrap_or_default()
    }

    fn status(&self, kind: &str, name: &str) -> Option<Value> {
        self.status_in(kind, "default", name)
    }

    fn status_in(&self, kind: &str, ns: &str, name: &str) -> Option<Value> {
        self.rows(kind)
            .into_iter()
            .find(|r| r["name"] == name && r["namespace"] == ns)
            .map(|r| r["status"].clone())
    }
}

impl Drop for GitHome {
    /// Stops `slipway run` as an operator would (SIGTERM: it stops the model servers it
    /// started), killing it only if it has not exited within 20 s — a SIGKILL left the
    /// rollout scenario's model server running after every test run.
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Home for GitHome {
    fn name(&self) -> &'static str {
        "git mode"
    }

    fn port(&self) -> u16 {
        self.port
    }

    fn job_runner(&self) -> String {
        let out = self.dir.path().join("jobs");
        std::fs::create_dir_all(&out).unwrap();
        format!(
            r#"        local:
          command:
            - sh
            - -c
            - |
              env | grep '^SLIPWAY_' | grep -v '^SLIPWAY_RESULTS=' | sort > "$OUT/$SLIPWAY_MODEL_VERSION-$SLIPWAY_ROLE.env"
              echo '{{"metrics": {{"f1": 0.9}}}}' > "$SLIPWAY_RESULTS"
          env: {{OUT: "{}"}}
"#,
            out.display()
        )
    }

    fn job_environment(
        &self,
        evaluation: &str,
        role: &str,
    ) -> std::collections::BTreeMap<String, String> {
        // The version is the evaluation name's second-to-last part (`MODEL-VERSION-SUITE`).
        let version = evaluation.rsplit('-').nth(1).unwrap();
        let file = self
            .dir
            .path()
            .join("jobs")
            .join(format!("{version}-{role}.env"));
        let text = super::eventually(std::time::Duration::from_secs(60), || {
            std::fs::read_to_string(&file)
                .ok()
                .filter(|t| !t.is_empty())
        });
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn apply(&mut self, file: &str, docs: &str) {
        let path: PathBuf = self.dir.path().join("registry").join(file);
        // Write then rename, so a pass never reads half a file.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, docs).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }

    fn evaluation_in(&self, ns: &str, name: &str) -> Option<Value> {
        self.status_in("evaluations", ns, name)
    }

    fn alias(&self, name: &str) -> Option<Value> {
        self.status("aliases", name)
    }

    fn model(&self, name: &str) -> Option<Value> {
        self.status("models", name).filter(|s| !s.is_null())
    }

    fn version(&self, name: &str) -> Option<Value> {
        self.status("versions", name)
    }

    fn alias_events(&self, name: &str) -> Vec<String> {
        let (_, body) = request(
            "GET",
            &format!("http://127.0.0.1:{}/api/v1/history", self.port),
            &[],
            "",
        );
        let entries: Vec<Value> = serde_json::from_str(&body).unwrap_or_default();
        entries
            .into_iter()
            .filter(|e| e["subject"] == format!("ModelAlias/{name}"))
            .filter_map(|e| e["event"].as_str().map(str::to_string))
            .collect()
    }

    fn deployment(&self) -> String {
        // A server that answers every request (health included) with 200 — 503 while a
        // `hold-VERSION` file is next to it.
        let server = self.dir.path().join("serve.py");
        std::fs::write(
            &server,
            "import http.server, os\n\nHOLD = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'hold-' + os.environ['MODEL_VERSION'])\n\nclass H(http.server.BaseHTTPRequestHandler):\n    def do_GET(self):\n        self.send_response(503 if os.path.exists(HOLD) else 200)\n        self.end_headers()\n        self.wfile.write(b'ok')\n    def log_message(self, *a):\n        pass\n\nhttp.server.ThreadingHTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n",
        )
        .unwrap();
        format!(
            "apiVersion: slipway.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {{name: pitch-frames-api}}\nspec:\n  model: pitch-frames\n  alias: production\n  target: {{local: {{command: [python3, {:?}], port: {}, healthPath: /healthz}}}}\n  {CANARY}\n",
            server.display().to_string(),
            free_port()
        )
    }

    fn deployment_status(&self, name: &str) -> Option<Value> {
        self.status("deployments", name)
    }

    fn hold(&mut self, version: &str, held: bool) {
        let marker = self.dir.path().join(format!("hold-{version}"));
        if held {
            std::fs::write(marker, "").unwrap();
        } else {
            std::fs::remove_file(marker).unwrap();
        }
    }

    fn retry(&self, deployment: &str, version: &str) {
        let url = format!(
            "http://127.0.0.1:{}/api/v1/deployments/default/{deployment}/retry",
            self.port
        );
        let (code, body) = post_json(&url, API_TOKEN, &json!({"version": version}).to_string());
        assert_eq!(code, 200, "{body}");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("run.log")).unwrap_or_default()
    }
}

/// Kubernetes mode: `slipway controller` on a real API server.
pub struct ClusterHome {
    api: ApiServer,
    child: Child,
    log: PathBuf,
    kubelet: Kubelet,
    port: u16,
}

impl ClusterHome {
    pub fn start() -> ClusterHome {
        let api = ApiServer::start();
        api.install_crds();
        api.create_service_account("evaluator");
        let log = api.dir.path().join("controller.log");
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_slipway"))
            .envs(OPEN_BOUNDS)
            .args(["controller", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .env("KUBECONFIG", &api.kubeconfig)
            .env("POD_NAME", "parity")
            .env("SLIPWAY_LOG", "info,kube=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let kubelet = Kubelet::start(&api.kubeconfig, "default");
        ClusterHome {
            api,
            child,
            log,
            kubelet,
            port,
        }
    }

    fn status(&self, kind: &str, name: &str) -> Option<Value> {
        self.status_in(kind, "default", name)
    }

    fn status_in(&self, kind: &str, ns: &str, name: &str) -> Option<Value> {
        let run = self
            .api
            .kubectl(&["get", kind, name, "-n", ns, "-o", "json"], "admin");
        let object: Value = serde_json::from_str(&run.stdout).ok()?;
        Some(object["status"].clone()).filter(|s| !s.is_null())
    }
}

impl Drop for ClusterHome {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Home for ClusterHome {
    fn name(&self) -> &'static str {
        "Kubernetes mode"
    }

    fn port(&self) -> u16 {
        self.port
    }

    fn job_runner(&self) -> String {
        "        kubernetes: {image: registry.example/eval:1, serviceAccountName: evaluator}\n"
            .into()
    }

    fn job_environment(
        &self,
        evaluation: &str,
        role: &str,
    ) -> std::collections::BTreeMap<String, String> {
        let name = match role {
            "baseline" => format!("{evaluation}-1-baseline"),
            _ => format!("{evaluation}-1"),
        };
        let job = super::k8s_mode::wait_for_job(&self.api, &name);
        super::k8s_mode::finish_job(&self.api, &name, r#"{"metrics": {"f1": 0.9}}"#);
        job["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["name"] != "SLIPWAY_RESULTS")
            .map(|e| {
                let value = e["value"].as_str().unwrap_or_default();
                (e["name"].as_str().unwrap().to_string(), value.to_string())
            })
            .collect()
    }

    fn apply(&mut self, _file: &str, docs: &str) {
        let run = self.api.kubectl_stdin(&["apply", "-f", "-"], "admin", docs);
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    }

    fn evaluation_in(&self, ns: &str, name: &str) -> Option<Value> {
        self.status_in("meval", ns, name)
    }

    fn namespace(&mut self, ns: &str) {
        let run = self.api.kubectl(&["create", "namespace", ns], "admin");
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    }

    fn alias(&self, name: &str) -> Option<Value> {
        self.status("malias", name)
    }

    fn model(&self, name: &str) -> Option<Value> {
        self.status("registeredmodel", name)
    }

    fn version(&self, name: &str) -> Option<Value> {
        self.status("mver", name)
    }

    fn alias_events(&self, name: &str) -> Vec<String> {
        let selector = format!("involvedObject.kind=ModelAlias,involvedObject.name={name}");
        let run = self.api.kubectl(
            &["get", "events", "--field-selector", &selector, "-o", "json"],
            "admin",
        );
        let list: Value = serde_json::from_str(&run.stdout).unwrap_or(Value::Null);
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["reason"].as_str().map(str::to_string))
            .collect()
    }

    fn deployment(&self) -> String {
        format!(
            "apiVersion: slipway.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {{name: pitch-frames-api}}\nspec:\n  model: pitch-frames\n  alias: production\n  target: {{kubernetes: {{image: \"registry.example/pitch-frames-server:1.4\", replicas: 4, port: 8080}}}}\n  {CANARY}\n"
        )
    }

    fn deployment_status(&self, name: &str) -> Option<Value> {
        self.status("mdeploy", name)
    }

    fn hold(&mut self, version: &str, held: bool) {
        let mut starting = self.kubelet.starting.lock().unwrap();
        if held {
            starting.insert(version.to_string());
        } else {
            starting.remove(version);
        }
    }

    fn retry(&self, deployment: &str, version: &str) {
        let annotation = format!("slipway.dev/retry={version}");
        let run = self
            .api
            .kubectl(&["annotate", "mdeploy", deployment, &annotation], "admin");
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
