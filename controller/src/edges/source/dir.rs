//! Reading every YAML file under a folder.

use std::path::{Path, PathBuf};

use crate::decide::catalog::SourceFile;
use crate::decide::catalog::load::is_yaml;

/// Reads `path` (a file, or every `*.yaml`/`*.yml` under a folder, skipping hidden folders).
/// File paths in the result are `path` joined with the relative path, as the user would type them.
pub fn read(path: &Path) -> std::io::Result<Vec<SourceFile>> {
    let mut files = Vec::new();
    if path.is_file() {
        files.push(SourceFile {
            path: display(path),
            content: std::fs::read(path)?,
            ..Default::default()
        });
        return Ok(files);
    }
    let mut stack = vec![path.to_path_buf()];
    let mut found: Vec<PathBuf> = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let p = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            let ty = entry.file_type()?;
            if ty.is_dir() {
                if !name.starts_with('.') {
                    stack.push(p);
                }
            } else if is_yaml(&name) {
                found.push(p);
            }
        }
    }
    found.sort();
    // Reading many small files is syscall-bound; spread it over the cores.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let chunk = found.len().div_ceil(threads).max(1);
    let parts: Vec<std::io::Result<Vec<SourceFile>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = found
            .chunks(chunk)
            .map(|c| {
                scope.spawn(move || {
                    c.iter()
                        .map(|p| {
                            Ok(SourceFile {
                                path: display(p),
                                content: std::fs::read(p)?,
                                ..Default::default()
                            })
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    for part in parts {
        files.extend(part?);
    }
    Ok(files)
}

fn display(p: &Path) -> String {
    let s = p.to_string_lossy();
    s.strip_prefix("./").unwrap_or(&s).to_string()
}
