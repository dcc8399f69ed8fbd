//! The source layout keeps its promises: the pure decisions are a crate (`core/`, `slipway-core`)
//! whose resolved dependencies can do no I/O, edges use no home, no source file grows past 600
//! lines, and no folder is named like build output (`target`), which standard ignore files and
//! tools skip.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file before its test module (tests may use anything).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let is_test_file = path
        .file_name()
        .is_some_and(|n| n == "tests.rs" || n == "testing.rs");
    if is_test_file {
        return String::new();
    }
    text.split("#[cfg(test)]").next().unwrap_or("").to_string()
}

/// The packages `slipway-core` links, resolved by cargo for that crate alone.
fn core_dependencies() -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(support::root())
        .args(["tree", "--offline", "--locked", "-p", "slipway-core"])
        .args(["-e", "normal", "--prefix", "none", "--format", "{p}"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_core_links_nothing_that_does_io() {
    let deps = core_dependencies();
    assert!(deps.iter().any(|d| d == "slipway-crd"), "{deps:?}");
    // Clients, runtimes, servers, stores and sources: a decision calling any of these must not
    // compile. (`http` is types only; `kube-core`, and `kube` as the API crate uses it — the
    // derive macro alone — are the API machinery without a client.)
    let forbidden = [
        "kube-client",
        "kube-runtime",
        "tokio",
        "mio",
        "hyper",
        "hyper-util",
        "ureq",
        "reqwest",
        "axum",
        "rusqlite",
        "git2",
        "tower",
        "rustls",
        "aws-config",
        "aws-sdk-sagemaker",
        "aws-smithy-runtime",
        "tracing-subscriber",
    ];
    let linked: Vec<&String> = deps
        .iter()
        .filter(|d| forbidden.contains(&d.as_str()))
        .collect();
    assert!(linked.is_empty(), "slipway-core links {linked:?}");
}

#[test]
fn the_core_reads_no_clock_file_process_or_environment_and_edges_use_no_home() {
    // std is always linked, so these few calls are checked by name.
    let mut bad = Vec::new();
    for (room, forbidden) in [
        (
            support::root().join("core/src"),
            &[
                "std::fs",
                "std::process",
                "std::env",
                "std::net::TcpStream",
                "Utc::now",
                "SystemTime::now",
                "Instant::now",
            ][..],
        ),
        (
            support::root().join("controller/src/edges"),
            &["crate::modes", "crate::cli"][..],
        ),
        // A home is reached through the command line, never the other way round.
        (
            support::root().join("controller/src/modes"),
            &["crate::cli"][..],
        ),
    ] {
        let mut files = Vec::new();
        sources(&room, &mut files);
        assert!(!files.is_empty(), "no sources under {}", room.display());
        for f in files {
            let text = code(&f);
            for word in forbidden {
                if text.contains(word) {
                    bad.push(format!("{} uses {word}", f.display()));
                }
            }
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn no_source_file_is_over_600_lines_and_no_folder_is_named_target() {
    let mut files = Vec::new();
    for room in ["controller/src", "core/src", "crd/src"] {
        sources(&support::root().join(room), &mut files);
    }
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let lines = std::fs::read_to_string(f).unwrap().lines().count();
            (lines > 600).then(|| format!("{}: {lines} lines", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "split these: {long:#?}");
    let named_target: Vec<&PathBuf> = files
        .iter()
        .filter(|f| {
            f.strip_prefix(support::root())
                .unwrap()
                .components()
                .any(|c| c.as_os_str() == "target")
        })
        .collect();
    assert!(named_target.is_empty(), "{named_target:?}");
}

/// The core's modules (a folder or a file under `core/src`) and which others each one's code
/// names (`crate::X`), comments left out.
fn core_module_uses() -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let src = support::root().join("core/src");
    let mut uses = std::collections::BTreeMap::new();
    let mut files = Vec::new();
    sources(&src, &mut files);
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "lib" {
            continue;
        }
        let entry: &mut std::collections::BTreeSet<String> =
            uses.entry(module.clone()).or_default();
        for line in code(&f).lines() {
            let line = line.split("//").next().unwrap_or("");
            for part in line.split("crate::").skip(1) {
                let name: String = part
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != module {
                    entry.insert(name);
                }
            }
        }
    }
    uses
}

#[test]
fn the_cores_modules_depend_on_each_other_without_cycles() {
    let uses = core_module_uses();
    // Depth-first search for a module that reaches itself.
    fn reaches(
        uses: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        from: &str,
        target: &str,
        path: &mut Vec<String>,
    ) -> bool {
        for next in uses.get(from).into_iter().flatten() {
            if path.contains(next) {
                continue;
            }
            path.push(next.clone());
            if next == target || reaches(uses, next, target, path) {
                return true;
            }
            path.pop();
        }
        false
    }
    let mut cycles = Vec::new();
    for module in uses.keys() {
        let mut path = vec![module.clone()];
        if reaches(&uses, module, module, &mut path) {
            cycles.push(path.join(" → "));
        }
    }
    assert!(
        cycles.is_empty(),
        "cycles between the core's modules: {cycles:#?}"
    );
    // The layering the cycles were broken into.
    let of = |m: &str| uses.get(m).cloned().unwrap_or_default();
    assert!(!of("catalog").contains("policy"), "{:?}", of("catalog"));
    assert!(
        !of("evaluation").contains("catalog"),
        "{:?}",
        of("evaluation")
    );
}
