//! Reading every YAML file under a folder.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::decide::catalog::SourceFile;
use crate::decide::catalog::load::is_yaml;

/// How long a registry folder must be left alone before a run reads it as a revision: an editor
/// (or a script) that empties a file and then writes it is not read in between.
pub const SETTLE: Duration = Duration::from_millis(300);

/// Reads `path` (a file, or every `*.yaml`/`*.yml` under a folder, skipping hidden folders).
/// File paths in the result are `path` joined with the relative path, as the user would type them.
pub fn read(path: &Path) -> std::io::Result<Vec<SourceFile>> {
    let (found, _) = yaml_files(path, false)?;
    read_all(&found)
}

/// [`read`] once nothing under `path` has changed for `settle`: a file emptied and not yet
/// written again would read as a registry without its objects (a deployment gone is stopped).
/// What changed less than `settle` ago is waited for and read again, unchanged since; a folder
/// that never settles is read as it is after ten tries (validation judges what was read).
pub fn read_settled(path: &Path, settle: Duration) -> std::io::Result<Vec<SourceFile>> {
    let mut tries = 0;
    loop {
        let (found, before) = yaml_files(path, true)?;
        // A time in the future (a clock set back) cannot say how recent the change was.
        let age = SystemTime::now().duration_since(before).unwrap_or(settle);
        if age < settle && tries < 10 {
            tries += 1;
            std::thread::sleep(settle - age);
            continue;
        }
        let files = read_all(&found)?;
        let (again, after) = yaml_files(path, true)?;
        if (again == found && after == before) || tries >= 10 {
            return Ok(files);
        }
        tries += 1;
    }
}

/// The YAML files under `path` (or `path`, a file), sorted, and (with `times`) when the newest
/// of them or of the folders holding them last changed (a file removed or renamed changes its
/// folder).
fn yaml_files(path: &Path, times: bool) -> std::io::Result<(Vec<PathBuf>, SystemTime)> {
    let meta = std::fs::metadata(path)?;
    let mut newest = if times {
        meta.modified()?
    } else {
        SystemTime::UNIX_EPOCH
    };
    if meta.is_file() {
        return Ok((vec![path.to_path_buf()], newest));
    }
    let mut stack = vec![path.to_path_buf()];
    let mut found: Vec<PathBuf> = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let p = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            let ty = entry.file_type()?;
            let counted = if ty.is_dir() {
                let visible = !name.starts_with('.');
                if visible {
                    stack.push(p);
                }
                visible
            } else if is_yaml(&name) {
                found.push(p);
                true
            } else {
                false
            };
            if counted && times {
                newest = newest.max(entry.metadata()?.modified()?);
            }
        }
    }
    found.sort();
    Ok((found, newest))
}

/// Reads these files, the path of each as the user would type it.
fn read_all(found: &[PathBuf]) -> std::io::Result<Vec<SourceFile>> {
    let mut files = Vec::new();
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

/// What `path` holds on disk (a file, or a folder's files, hidden ones too), if anything.
pub fn content(path: &Path) -> std::io::Result<Option<crate::decide::files::Content>> {
    use crate::decide::files::Content;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return Ok(Some(Content::File(std::fs::read(path)?)));
    }
    let mut files = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let p = entry?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(path)
                    .unwrap_or(&p)
                    .to_string_lossy()
                    .to_string();
                files.push((rel, std::fs::read(&p)?));
            }
        }
    }
    Ok(Some(Content::Folder(files)))
}

/// Verifies a local file (or folder) a spec's `uri` names under the registry folder `root`
/// against its declared `digest`, before anything uses it; other URIs and undeclared digests
/// pass. A local file that is not there fails: what it should hold cannot be checked.
pub fn verify(root: &Path, field: &str, uri: &str, digest: Option<&str>) -> Result<(), String> {
    use crate::decide::files;
    let Some(declared) = digest else {
        return Ok(());
    };
    // An absolute local path (outside the repository) is verified where it is; any other
    // local path in the registry's folder.
    let (shown, full, where_) = if let Some(absolute) =
        uri.strip_prefix("file://").filter(|p| p.starts_with('/'))
    {
        (absolute, absolute.to_string(), "")
    } else {
        let Some(path) = files::local_path(uri) else {
            return Ok(());
        };
        let root = root
            .canonicalize()
            .map_err(|e| format!("{}: {e}", root.display()))?;
        let Some(full) = files::join(&root.to_string_lossy(), path) else {
            return Err(format!(
                "{field}: {uri} lies outside the registry's folder; a local file it declares a digest for must be in it"
            ));
        };
        (path, full, " in the registry's folder")
    };
    match content(Path::new(&full)) {
        Ok(Some(c)) => files::verify(field, shown, declared, &c.digest()),
        Ok(None) if where_.is_empty() => Err(format!(
            "{field}: {shown} does not exist, so its declared digest {declared} cannot be verified"
        )),
        Ok(None) => Err(format!(
            "{field}: {shown} does not exist{where_}, so its declared digest {declared} cannot be verified; add the file, or fix the URI"
        )),
        Err(e) => Err(format!("{field}: cannot read {shown}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ages every file and folder under `dir` by a minute.
    fn age(dir: &Path) {
        let old = SystemTime::now() - Duration::from_secs(60);
        for p in [dir.to_path_buf(), dir.join("a.yaml"), dir.join("sub")] {
            std::fs::File::open(&p).unwrap().set_modified(old).unwrap();
        }
    }

    #[test]
    fn a_file_emptied_and_then_written_is_read_once_written() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a.yaml"), "kind: A\n").unwrap();
        age(dir.path());
        // An editor that truncates, then writes a moment later.
        let file = dir.path().join("a.yaml");
        std::fs::File::create(&file).unwrap();
        let writer = std::thread::spawn({
            let file = file.clone();
            move || {
                std::thread::sleep(Duration::from_millis(150));
                std::fs::write(&file, "kind: B\n").unwrap();
            }
        });
        assert_eq!(read(dir.path()).unwrap()[0].content, b"");
        let files = read_settled(dir.path(), Duration::from_millis(400)).unwrap();
        writer.join().unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].content, b"kind: B\n");
    }

    #[test]
    fn a_file_moved_into_a_subfolder_is_a_change_of_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a.yaml"), "kind: A\n").unwrap();
        age(dir.path());
        let settled = read_settled(dir.path(), Duration::from_millis(400)).unwrap();
        assert_eq!(settled.len(), 1);
        // Moved into place under a subfolder (its folder changes, not the file's own time).
        let staged = dir.path().join(".b.yaml.tmp");
        std::fs::write(&staged, "kind: B\n").unwrap();
        std::fs::File::open(&staged)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(60))
            .unwrap();
        std::fs::rename(&staged, dir.path().join("sub/b.yaml")).unwrap();
        let (_, newest) = yaml_files(dir.path(), true).unwrap();
        assert!(
            SystemTime::now().duration_since(newest).unwrap() < Duration::from_secs(5),
            "the subfolder's change counts"
        );
        let files = read_settled(dir.path(), Duration::from_millis(400)).unwrap();
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths.len(), 2, "{paths:?}");
        assert!(paths[1].ends_with("sub/b.yaml"), "{paths:?}");
    }
}
