//! The source layout keeps its promises: pure decisions (`decide/`) use no edge and no home,
//! edges use no home, no source file grows past 600 lines, and no folder is named like build
//! output (`target`), which standard ignore files and tools skip.

mod support;

use std::path::{Path, PathBuf};

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

fn src() -> PathBuf {
    support::root().join("controller/src")
}

/// The code of a file before its test module (tests may use anything).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let is_test_file = path.file_name().is_some_and(|n| n == "tests.rs");
    if is_test_file {
        return String::new();
    }
    text.split("#[cfg(test)]").next().unwrap_or("").to_string()
}

#[test]
fn decisions_use_no_edge_and_edges_use_no_home() {
    let mut bad = Vec::new();
    for (room, forbidden) in [
        (
            "decide",
            &["crate::edges", "crate::modes", "crate::cli"][..],
        ),
        ("edges", &["crate::modes", "crate::cli"][..]),
    ] {
        let mut files = Vec::new();
        sources(&src().join(room), &mut files);
        assert!(!files.is_empty(), "no sources under {room}");
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
    sources(&src(), &mut files);
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
            f.strip_prefix(src())
                .unwrap()
                .components()
                .any(|c| c.as_os_str() == "target")
        })
        .collect();
    assert!(named_target.is_empty(), "{named_target:?}");
}
