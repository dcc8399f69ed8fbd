//! Shared helpers of the integration tests: real git repositories (git2) and the real binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub mod admission;
pub mod apiserver;
pub mod git_http;
pub mod git_mode;
pub mod http;
pub mod k8s_mode;
pub mod kubelet;
pub mod moto;
pub mod parity_homes;
pub mod prometheus;
pub mod registry;
pub mod sagemaker;

use git2::{Oid, Repository, Signature, Time};

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The output of one `slipway` run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// Runs the `slipway` binary built for these tests.
pub fn slipway(args: &[&str], cwd: &Path) -> Run {
    slipway_env(args, cwd, &[])
}

/// Runs the slipway binary with extra environment variables.
pub fn slipway_env(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(args)
        .current_dir(cwd)
        .envs(env.iter().copied())
        .output()
        .expect("run slipway");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        !run.stderr.contains("panicked"),
        "slipway panicked:\n{}",
        run.stderr
    );
    run
}

/// A git repository in a temporary folder, written through libgit2 (no checkout, no git binary).
pub struct GitRepo {
    pub dir: tempfile::TempDir,
    pub repo: Repository,
    clock: i64,
}

impl GitRepo {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Repository::init(dir.path()).expect("git init");
        GitRepo {
            dir,
            repo,
            clock: 1_764_000_000,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Commits `files` (path → content; `None` deletes) on top of `parent` and points `branch` at it.
    pub fn commit(
        &mut self,
        branch: &str,
        parent: Option<Oid>,
        files: &[(&str, Option<&str>)],
        message: &str,
    ) -> Oid {
        self.clock += 60;
        let sig = Signature::new("dana", "dana@example.com", &Time::new(self.clock, 0))
            .expect("signature");
        let parent_commit = parent.map(|p| self.repo.find_commit(p).expect("parent"));
        let mut index = git2::Index::new().expect("index");
        if let Some(p) = &parent_commit {
            index
                .read_tree(&p.tree().expect("tree"))
                .expect("read tree");
        }
        for (path, content) in files {
            match content {
                Some(c) => {
                    // `@link:TARGET` makes a symbolic link to TARGET.
                    let (mode, c) = match c.strip_prefix("@link:") {
                        Some(target) => (0o120000, target),
                        None => (0o100644, *c),
                    };
                    let blob = self.repo.blob(c.as_bytes()).expect("blob");
                    let entry = git2::IndexEntry {
                        ctime: git2::IndexTime::new(0, 0),
                        mtime: git2::IndexTime::new(0, 0),
                        dev: 0,
                        ino: 0,
                        mode,
                        uid: 0,
                        gid: 0,
                        file_size: c.len() as u32,
                        id: blob,
                        flags: 0,
                        flags_extended: 0,
                        path: path.as_bytes().to_vec(),
                    };
                    index.add(&entry).expect("add");
                }
                None => index.remove_path(Path::new(path)).expect("remove"),
            }
        }
        let tree = self
            .repo
            .find_tree(index.write_tree_to(&self.repo).expect("write tree"))
            .expect("tree");
        let parents: Vec<&git2::Commit> = parent_commit.iter().collect();
        let oid = self
            .repo
            .commit(None, &sig, &sig, message, &tree, &parents)
            .expect("commit");
        let commit = self.repo.find_commit(oid).expect("commit");
        self.repo.branch(branch, &commit, true).expect("branch");
        oid
    }
}

impl GitRepo {
    /// Commits `files` (name, content) into the folder `under` on `branch`.
    pub fn commit_under(
        &mut self,
        branch: &str,
        parent: Option<Oid>,
        under: &str,
        files: &[(String, String)],
        message: &str,
    ) -> Oid {
        let paths: Vec<(String, String)> = files
            .iter()
            .map(|(n, c)| (format!("{under}/{n}"), c.clone()))
            .collect();
        let refs: Vec<(&str, Option<&str>)> = paths
            .iter()
            .map(|(p, c)| (p.as_str(), Some(c.as_str())))
            .collect();
        self.commit(branch, parent, &refs, message)
    }
}

/// The football-frames example registry under `registry/` on `main`, and branch `pr` moving
/// production from 7 to 8: (repository, main, pr).
pub fn promotion_pr() -> (GitRepo, Oid, Oid) {
    let mut repo = GitRepo::new();
    let files = folder("examples/football-frames");
    let main = repo.commit_under("main", None, "registry", &files, "registry");
    let aliases = std::fs::read_to_string(root().join("examples/football-frames/aliases.yaml"))
        .unwrap()
        .replacen("version: \"7\"", "version: \"8\"", 1);
    let pr = repo.commit(
        "pr",
        Some(main),
        &[("registry/aliases.yaml", Some(&aliases))],
        "promote 8",
    );
    (repo, main, pr)
}

/// Polls `check` until it returns `Some`, failing the test after `timeout`.
pub fn eventually<T>(timeout: std::time::Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The files of a folder under the workspace root, as (relative path, content).
pub fn folder(rel: &str) -> Vec<(String, String)> {
    let base = root().join(rel);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&base).expect("read example folder") {
        let p = entry.expect("entry").path();
        if p.is_file() {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            out.push((name, std::fs::read_to_string(&p).expect("read")));
        }
    }
    out.sort();
    out
}

/// The Helm engine of the tests (`scripts/helm-python.sh`, via `SLIPWAY_HELM_PYTHON`).
pub mod helm {
    use std::process::Command;

    fn python() -> String {
        std::env::var("SLIPWAY_HELM_PYTHON").unwrap_or_else(|_| {
            panic!("SLIPWAY_HELM_PYTHON is not set; run the tests with scripts/test.sh, or export SLIPWAY_HELM_PYTHON=$(scripts/helm-python.sh)")
        })
    }

    /// Renders the chart as release `slipway` in `namespace` with `values`: the manifests as one
    /// YAML stream, or Helm's error.
    pub fn render(namespace: &str, values: &serde_json::Value) -> Result<String, String> {
        let out = Command::new(python())
            .arg(super::root().join("tests/support/helm.py"))
            .arg("render")
            .arg(super::root().join("charts/slipway"))
            .args(["slipway", namespace])
            .arg(values.to_string())
            .output()
            .expect("run the Helm engine");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Lints the chart: (passed, findings as JSON).
    pub fn lint() -> (bool, serde_json::Value) {
        let out = Command::new(python())
            .arg(super::root().join("tests/support/helm.py"))
            .arg("lint")
            .arg(super::root().join("charts/slipway"))
            .output()
            .expect("run the Helm engine");
        let findings = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("lint output: {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.success(), findings)
    }

    /// The documents of a YAML stream whose `kind` is one of `kinds`, re-joined.
    pub fn only(stream: &str, kinds: &[&str]) -> String {
        stream
            .split("\n---")
            .filter(|doc| {
                doc.lines()
                    .any(|l| kinds.iter().any(|k| l.trim_end() == format!("kind: {k}")))
            })
            .collect::<Vec<_>>()
            .join("\n---\n")
    }
}

/// The operator's bounds for tests of other things: requests only to loopback, any image,
/// service account, SageMaker address and role (tests/security.rs sets its own).
pub const OPEN_BOUNDS: [(&str, &str); 7] = [
    ("SLIPWAY_ALLOWED_DESTINATIONS", "127.0.0.1,localhost"),
    ("SLIPWAY_ALLOWED_IMAGES", "*"),
    ("SLIPWAY_ALLOWED_SERVICE_ACCOUNTS", "*"),
    ("SLIPWAY_ALLOWED_ENDPOINT_URLS", "*"),
    ("SLIPWAY_ALLOWED_EXECUTION_ROLES", "*"),
    ("SLIPWAY_ALLOWED_INSTANCE_TYPES", "*"),
    ("SLIPWAY_ALLOWED_TOLERATIONS", "*"),
];

/// The content address of `version`'s run of the example result's suite
/// (`examples/promotion-pr/results/pitch-frames-8.yaml`: its model, dataset, runner and suite,
/// the example registry's artifact of `version`).
#[allow(dead_code)]
pub fn example_key(version: &str) -> String {
    let text =
        std::fs::read_to_string(root().join("examples/promotion-pr/results/pitch-frames-8.yaml"))
            .unwrap();
    let doc = slipway_core::catalog::yaml::read(&text).unwrap();
    let versions =
        std::fs::read_to_string(root().join("examples/football-frames/versions.yaml")).unwrap();
    let artifact: slipway_crd::model_version::Artifact = versions
        .split("\n---\n")
        .filter_map(|d| slipway_core::catalog::yaml::read(d).ok())
        .find(|v| v["spec"]["version"] == version)
        .map(|v| serde_json::from_value(v["spec"]["artifact"].clone()).unwrap())
        .expect("the version in the example");
    slipway_core::evaluation::cache_key(
        doc["spec"]["model"].as_str().unwrap(),
        &artifact,
        &serde_json::from_value(doc["spec"]["dataset"].clone()).unwrap(),
        &serde_json::from_value(doc["spec"]["runner"].clone()).unwrap(),
        doc["spec"]["suite"].as_str().unwrap(),
    )
}

/// Version 7's `pitch-frames` evaluation of the football-frames example, as Slipway records it:
/// compared against 6, its predecessor (version 8's result in `examples/promotion-pr/results`,
/// made 7's, under the content address of 7's run so it counts as 7's).
#[allow(dead_code)]
pub fn evaluation_of_seven() -> String {
    let eight =
        std::fs::read_to_string(root().join("examples/promotion-pr/results/pitch-frames-8.yaml"))
            .unwrap();
    let seven = eight
        .replace(
            "pitch-frame-classifier-8-pitch-frames",
            "pitch-frame-classifier-7-pitch-frames",
        )
        .replace("version: \"8\"", "version: \"7\"")
        .replace("baselineVersion: \"7\"", "baselineVersion: \"6\"")
        .replace("macro_f1: 0.874", "macro_f1: 0.861")
        .replace(
            "macro_f1: 0.861\n    accuracy: 0.903",
            "macro_f1: 0.842\n    accuracy: 0.9",
        );
    let doc: serde_json::Value = slipway_core::catalog::yaml::read(&seven).unwrap();
    let versions =
        std::fs::read_to_string(root().join("examples/football-frames/versions.yaml")).unwrap();
    let artifact = versions
        .split("\n---\n")
        .filter_map(|d| slipway_core::catalog::yaml::read(d).ok())
        .find(|v| v["spec"]["version"] == "7")
        .map(|v| serde_json::from_value(v["spec"]["artifact"].clone()).unwrap())
        .expect("version 7 in the example");
    let key = slipway_core::evaluation::cache_key(
        "pitch-frame-classifier",
        &artifact,
        &serde_json::from_value(doc["spec"]["dataset"].clone()).unwrap(),
        &serde_json::from_value(doc["spec"]["runner"].clone()).unwrap(),
        "pitch-frames",
    );
    let old = doc["status"]["cacheKey"].as_str().unwrap().to_string();
    assert!(seven.contains("baselineVersion: \"6\"") && seven.contains("macro_f1: 0.842"));
    seven.replace(&old, &key)
}
