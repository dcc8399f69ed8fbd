//! The container image, built from the root `Containerfile` by `scripts/image.sh` with Debian's
//! buildah, then run: `slipway --version`, `slipway validate` on the example registry and
//! `slipway plan` on a git repository mounted into it. The image takes the binary this test build
//! already made (no second build), and its tag is the chart's default image.
//!
//! buildah's storage lives under `~/.cache/slipway/containers`, so the `debian:bookworm-slim` base
//! (assembled from Debian's packages, registries being out of reach) is made once per machine.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{GitRepo, root};

fn store() -> PathBuf {
    let cache = std::env::var_os("SLIPWAY_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/slipway"));
    cache.join("containers")
}

/// buildah on the test's own storage; returns (exit code, stdout, stderr).
fn buildah(args: &[&str]) -> (i32, String, String) {
    let store = store();
    let out = Command::new("buildah")
        .args(["--storage-driver", "vfs", "--root"])
        .arg(store.join("storage"))
        .arg("--runroot")
        .arg(store.join("run"))
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run buildah ({e}); scripts/test.sh installs it (apt-get install buildah mmdebstrap)")
        });
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A working container from an image, removed when dropped.
struct Container(String);

impl Container {
    fn from(image: &str) -> Container {
        let (code, out, err) = buildah(&["from", "--pull=never", image]);
        assert_eq!(code, 0, "buildah from {image}: {err}");
        Container(out.trim().to_string())
    }

    /// Runs `command` in the container with `mounts` (host path, container path, read-only);
    /// returns (exit code, stdout, stderr).
    fn run(
        &self,
        mounts: &[(&Path, &str)],
        workdir: &str,
        command: &[&str],
    ) -> (i32, String, String) {
        let volumes: Vec<String> = mounts
            .iter()
            .map(|(host, inside)| format!("{}:{inside}:ro", host.display()))
            .collect();
        let mut args = vec!["run", "--isolation", "chroot", "--workingdir", workdir];
        for v in &volumes {
            args.extend(["-v", v.as_str()]);
        }
        args.push(&self.0);
        args.push("--");
        args.extend(command);
        buildah(&args)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        buildah(&["rm", &self.0]);
    }
}

/// A registry repository (libgit2, no checkout) whose branch `pr` moves production from 7 to 8,
/// readable by the image's non-root user.
fn pull_request() -> GitRepo {
    let (repo, _, _) = support::promotion_pr();
    let chmod = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(repo.path())
        .status()
        .unwrap();
    assert!(chmod.success());
    repo
}

#[test]
fn the_image_builds_from_the_test_binary_and_runs_validate_and_plan() {
    let binary = env!("CARGO_BIN_EXE_slipway");
    let built = Command::new(root().join("scripts/image.sh"))
        .arg(binary)
        .env("SLIPWAY_IMAGE_STORE", store())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&built.stderr);
    assert!(built.status.success(), "scripts/image.sh failed:\n{said}");
    assert!(said.contains("built slipway:dev and "), "{said}");

    // The chart's default image is what the script tagged, and it is the same image.
    let manifests = support::helm::render("slipway-system", &serde_json::json!({})).unwrap();
    let chart_image = manifests
        .lines()
        .find_map(|l| l.trim().strip_prefix("image: "))
        .expect("an image in the chart's Deployment")
        .trim_matches('"')
        .to_string();
    assert!(
        chart_image.ends_with(&format!(":{}", env!("CARGO_PKG_VERSION"))),
        "the chart's default tag is the crate's version: {chart_image}"
    );
    let id = |image: &str| {
        let (code, out, err) = buildah(&[
            "inspect",
            "--type",
            "image",
            "--format",
            "{{.FromImageID}}",
            image,
        ]);
        assert_eq!(code, 0, "{image} was not built: {err}");
        out.trim().to_string()
    };
    assert_eq!(id(&chart_image), id("localhost/slipway:dev"));

    // Non-root, numeric (for runAsNonRoot), with slipway as the entrypoint.
    let (_, config, _) = buildah(&["inspect", "--type", "image", "localhost/slipway:dev"]);
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["OCIv1"]["config"]["User"], "65532:65532");
    assert_eq!(
        config["OCIv1"]["config"]["Entrypoint"],
        serde_json::json!(["/usr/local/bin/slipway"])
    );
    assert_eq!(
        config["OCIv1"]["config"]["Cmd"],
        serde_json::json!(["--help"])
    );

    let c = Container::from("localhost/slipway:dev");
    let host_version = Command::new(binary).arg("--version").output().unwrap();
    let (code, version, err) = c.run(&[], "/", &["slipway", "--version"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(version, String::from_utf8_lossy(&host_version.stdout));
    assert!(version.starts_with("slipway "), "{version}");

    // What the image holds: git and CA certificates; no compiler, no package lists or caches.
    let (code, inside, err) = c.run(
        &[],
        "/",
        &[
            "sh",
            "-c",
            "id -u; git --version; test -s /etc/ssl/certs/ca-certificates.crt && echo certificates; \
             du -skx --exclude=/usr/local/bin/slipway / 2>/dev/null | cut -f1; \
             for t in cc gcc rustc cargo make; do command -v $t; done; \
             ls -A /var/lib/apt/lists /var/cache/apt",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = inside.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines[0], "65532", "{inside}");
    assert!(lines[1].starts_with("git version "), "{inside}");
    assert_eq!(lines[2], "certificates", "{inside}");
    // debian:bookworm-slim is about 75 MB and git with perl about 50 more.
    let besides_binary_kb: u64 = lines[3].parse().unwrap();
    assert!(
        besides_binary_kb < 200_000,
        "the image holds {besides_binary_kb} kB besides slipway: {inside}"
    );
    assert_eq!(
        lines[4..],
        ["/var/cache/apt:", "/var/lib/apt/lists:"],
        "no compilers and nothing left by apt: {inside}"
    );

    let examples = root().join("examples");
    let (code, out, err) = c.run(
        &[(&examples, "/examples")],
        "/",
        &["slipway", "validate", "/examples/football-frames"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("19 objects in 6 files are valid"), "{out}");

    // A mounted checkout belongs to another user; the plan still reads it.
    let repo = pull_request();
    let results = root().join("examples/promotion-pr/results");
    let (code, out, err) = c.run(
        &[(repo.path(), "/repo"), (&results, "/results")],
        "/repo",
        &[
            "slipway",
            "plan",
            "--base",
            "main",
            "--head",
            "pr",
            "--path",
            "registry",
            "--results",
            "/results",
            "--author",
            "dana",
        ],
    );
    assert_eq!(code, 3, "awaiting a lead's approval:\n{out}{err}");
    assert!(out.contains("awaiting approval: ml-lead (0/1)"), "{out}");
    assert!(out.contains("1 to update"), "{out}");
}
