//! A real kube-apiserver + etcd on loopback, from `KUBEBUILDER_ASSETS` (`scripts/kube-assets.sh`
//! builds and caches them), with token-file users, RBAC and a kubeconfig for `kubectl`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Run, free_port};

/// Users of the token file: (token, user, groups).
pub const USERS: [(&str, &str, &str); 4] = [
    ("admin-token", "admin", "system:masters"),
    ("alice-token", "alice", "ml-leads"),
    ("dana-token", "dana", "ml-engineers,ml-leads"),
    ("erin-token", "erin", "ml-engineers"),
];

pub struct ApiServer {
    etcd: Child,
    apiserver: Child,
    apiserver_args: Vec<String>,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

fn assets() -> PathBuf {
    let dir = std::env::var("KUBEBUILDER_ASSETS").unwrap_or_else(|_| {
        panic!("KUBEBUILDER_ASSETS is not set; run the tests with scripts/test.sh, or export KUBEBUILDER_ASSETS=$(scripts/kube-assets.sh)")
    });
    let dir = PathBuf::from(dir);
    for bin in ["kube-apiserver", "etcd"] {
        assert!(dir.join(bin).is_file(), "{} has no {bin}", dir.display());
    }
    dir
}

fn spawn_apiserver(assets: &Path, args: &[String], dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("kube-apiserver.log"))
        .expect("log file");
    Command::new(assets.join("kube-apiserver"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start kube-apiserver")
}

impl ApiServer {
    /// Stops kube-apiserver (etcd keeps the data) and starts it again on the same port; returns
    /// once it is ready.
    pub fn restart_apiserver(&mut self, down_for: Duration) {
        let _ = self.apiserver.kill();
        let _ = self.apiserver.wait();
        std::thread::sleep(down_for);
        self.apiserver = spawn_apiserver(&assets(), &self.apiserver_args, self.dir.path());
        self.wait_ready();
    }

    fn wait_ready(&self) {
        // Two cores shared with several API servers of parallel tests: a start can take long.
        let deadline = Instant::now() + Duration::from_secs(150);
        loop {
            let run = self.kubectl(&["get", "--raw", "/readyz"], "admin");
            if run.code == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "kube-apiserver not ready in 150 s:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Starts etcd and kube-apiserver and waits until the API server is ready.
    pub fn start() -> Self {
        let assets = assets();
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let (etcd_port, peer_port, api_port) = (free_port(), free_port(), free_port());
        let log = |name: &str| std::fs::File::create(d.join(name)).expect("log file");
        let etcd = Command::new(assets.join("etcd"))
            .args(["--data-dir", &d.join("etcd").to_string_lossy()])
            .args([
                "--listen-client-urls",
                &format!("http://127.0.0.1:{etcd_port}"),
            ])
            .args([
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{etcd_port}"),
            ])
            .args([
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer_port}"),
            ])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer_port}"),
            ])
            .args([
                "--initial-cluster",
                &format!("default=http://127.0.0.1:{peer_port}"),
            ])
            .stdout(Stdio::null())
            .stderr(log("etcd.log"))
            .spawn()
            .expect("start etcd");
        let tokens: String = USERS
            .iter()
            .map(|(t, u, g)| format!("{t},{u},{u},\"{g}\"\n"))
            .collect();
        std::fs::write(d.join("tokens.csv"), tokens).expect("token file");
        let key = d.join("sa.key");
        let status = Command::new("openssl")
            .args(["genrsa", "-out", &key.to_string_lossy(), "2048"])
            .stderr(Stdio::null())
            .status()
            .expect("openssl");
        assert!(status.success(), "openssl genrsa failed");
        let apiserver_args: Vec<String> = [
            "--etcd-servers".to_string(),
            format!("http://127.0.0.1:{etcd_port}"),
            "--bind-address".into(),
            "127.0.0.1".into(),
            "--advertise-address".into(),
            "127.0.0.1".into(),
            "--secure-port".into(),
            api_port.to_string(),
            "--cert-dir".into(),
            d.join("certs").to_string_lossy().into_owned(),
            "--token-auth-file".into(),
            d.join("tokens.csv").to_string_lossy().into_owned(),
            "--authorization-mode".into(),
            "RBAC".into(),
            "--service-account-key-file".into(),
            key.to_string_lossy().into_owned(),
            "--service-account-signing-key-file".into(),
            key.to_string_lossy().into_owned(),
            "--service-account-issuer".into(),
            "https://kubernetes.default.svc".into(),
            "--service-cluster-ip-range".into(),
            "10.96.0.0/24".into(),
            "--disable-admission-plugins".into(),
            "ServiceAccount".into(),
        ]
        .into();
        let apiserver = spawn_apiserver(&assets, &apiserver_args, d);
        let kubeconfig = d.join("kubeconfig");
        let users: String = USERS
            .iter()
            .map(|(t, u, _)| format!("- name: {u}\n  user:\n    token: {t}\n"))
            .collect();
        let contexts: String = USERS
            .iter()
            .map(|(_, u, _)| format!("- name: {u}\n  context:\n    cluster: test\n    user: {u}\n    namespace: default\n"))
            .collect();
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: https://127.0.0.1:{api_port}\n    insecure-skip-tls-verify: true\nusers:\n{users}contexts:\n{contexts}current-context: admin\n"
            ),
        )
        .expect("kubeconfig");
        let server = ApiServer {
            etcd,
            apiserver,
            apiserver_args,
            dir,
            kubeconfig,
        };
        server.wait_ready();
        server
    }

    /// Runs kubectl as one of [`USERS`].
    pub fn kubectl(&self, args: &[&str], user: &str) -> Run {
        self.kubectl_in(args, user, Path::new("."))
    }

    /// Runs kubectl as a user from a working directory.
    pub fn kubectl_in(&self, args: &[&str], user: &str, cwd: &Path) -> Run {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            // A discovery cache of its own: another server may have used this port before.
            .arg("--cache-dir")
            .arg(self.dir.path().join("kube-cache"))
            .args(["--context", user])
            .args(args)
            .current_dir(cwd)
            .output()
            .expect("run kubectl");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Starts kubectl as a user in the background (e.g. `get --watch`), its output piped.
    #[allow(dead_code)]
    pub fn kubectl_spawn(&self, args: &[&str], user: &str) -> std::process::Child {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("kube-cache"))
            .args(["--context", user])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run kubectl")
    }

    /// Runs kubectl as a user with `input` on stdin (e.g. `apply -f -`).
    pub fn kubectl_stdin(&self, args: &[&str], user: &str, input: &str) -> Run {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("kube-cache"))
            .args(["--context", user])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        let out = child.wait_with_output().expect("kubectl output");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Applies Slipway's CRDs and waits until they are established.
    pub fn install_crds(&self) {
        let crds = super::root().join("charts/slipway/crds/slipway.dev.yaml");
        let run = self.kubectl(&["apply", "-f", &crds.to_string_lossy()], "admin");
        assert_eq!(run.code, 0, "{}{}\n{}", run.stdout, run.stderr, self.logs());
        let run = self.kubectl(
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
    }

    /// Creates the service account `name` in `default` (no controller manager runs here to
    /// make even `default`'s own).
    pub fn create_service_account(&self, name: &str) {
        let run = self.kubectl(
            &["create", "serviceaccount", name, "-n", "default"],
            "admin",
        );
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    }

    /// The tail of both servers' logs, for failure messages.
    pub fn logs(&self) -> String {
        ["etcd.log", "kube-apiserver.log"]
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                format!(
                    "--- {f}\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        for child in [&mut self.apiserver, &mut self.etcd] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
