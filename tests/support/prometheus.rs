//! A real Prometheus (Debian's `prometheus`, installed by `scripts/test.sh`) on a free loopback
//! port, scraping given targets every second, its data in a temporary folder.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{eventually, free_port};

/// A running Prometheus; dropping it stops it.
pub struct Prometheus {
    child: Child,
    /// Where it answers queries.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> PathBuf {
    let path = std::env::var_os("SLIPWAY_PROMETHEUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/test.sh (it installs Debian's prometheus)",
        path.display()
    );
    path
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (`127.0.0.1:PORT`, path `/metrics`) every second.
    pub fn scraping(targets: &[String]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let listed: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: slipway\n    static_configs:\n      - targets: [{}]\n",
            listed.join(", ")
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let child = Command::new(binary())
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let p = Prometheus {
            child,
            port,
            _dir: dir,
        };
        eventually(Duration::from_secs(30), || {
            (super::http::request("GET", &format!("{}/-/ready", p.url()), &[], "").0 == 200)
                .then_some(())
        });
        p
    }

    /// Its address.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The answer of an instant query, as JSON.
    pub fn query(&self, promql: &str) -> serde_json::Value {
        let encoded: String = promql
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (_, body) = super::http::request(
            "GET",
            &format!("{}/api/v1/query?query={encoded}", self.url()),
            &[],
            "",
        );
        serde_json::from_str(&body).unwrap_or_default()
    }
}
