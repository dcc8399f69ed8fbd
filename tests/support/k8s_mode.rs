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
        let log = api.dir.path().join(format!("{name}.log"));
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_slipway"))
            .envs(OPEN_BOUNDS)
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
