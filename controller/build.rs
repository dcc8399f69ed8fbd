//! Records the git commit the binary is built from, for `slipway --version` (`unknown` outside a
//! git checkout, e.g. from a source archive).

use std::process::Command;

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(&root)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=SLIPWAY_GIT_COMMIT={commit}");
    // A new commit moves HEAD (or the branch it names); a fresh clone has packed refs.
    for path in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        let p = root.join(path);
        if p.exists() {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
}
