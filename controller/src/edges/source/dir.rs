//! Reading every YAML file under a folder.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::decide::catalog::SourceFile;
use crate::decide::catalog::load::is_yaml;

/// How long a registry folder is watched for a write in progress before a run takes a new
/// revision of it: an editor (or a script) that empties a file and then writes it is not read in
/// between.
pub const SETTLE: Duration = Duration::from_millis(300);

/// [`read`], letting a folder being written settle: when what is read is new (`unchanged` says
/// it is not the revision in force), it is read again `settle` later until two reads agree — a
/// file emptied and not yet written again would read as a registry without its objects (and a
/// deployment gone is stopped). At most ten reads; file times are not consulted (a clock set
/// differently, or a file server's, cannot make a half-written file look settled).
pub fn read_settled(
    path: &Path,
    settle: Duration,
    unchanged: &dyn Fn(&[SourceFile]) -> bool,
) -> std::io::Result<Vec<SourceFile>> {
    let mut files = read(path)?;
    if unchanged(&files) {
        return Ok(files);
    }
    let same = |a: &[SourceFile], b: &[SourceFile]| {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.path == y.path && x.content == y.content)
    };
    for _ in 0..10 {
        std::thread::sleep(settle);
        let again = read(path)?;
        if same(&again, &files) {
            return Ok(again);
        }
        files = again;
    }
    Ok(files)
}

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

/// The text of file `rel` of the registry folder `root`: refused when the path leaves the folder
/// (`..`, an absolute path, a symbolic link that points out of it), is or passes through a
/// hidden file or folder (`.git`, a `.slipway` state folder, where credentials and logs are),
/// is not a file, or is larger than `max` bytes.
pub fn read_within(root: &Path, rel: &str, max: u64) -> Result<String, String> {
    let root = root
        .canonicalize()
        .map_err(|e| format!("{}: {e}", root.display()))?;
    let outside = || format!("{rel} lies outside the registry's folder; name a file in it");
    let hidden = || {
        format!(
            "{rel} is, or is in, a hidden file or folder; Slipway does not read those for reports"
        )
    };
    let is_hidden = |p: &Path| {
        p.strip_prefix(&root).map_or(true, |p| {
            p.components()
                .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
        })
    };
    let full = crate::decide::files::join(&root.to_string_lossy(), rel).ok_or_else(outside)?;
    if !Path::new(&full).starts_with(&root) {
        return Err(outside());
    }
    if is_hidden(Path::new(&full)) {
        return Err(hidden());
    }
    let real = Path::new(&full)
        .canonicalize()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                format!("{rel} does not exist in the registry's folder")
            }
            _ => format!("cannot read {rel}: {e}"),
        })?;
    if !real.starts_with(&root) {
        return Err(outside());
    }
    if is_hidden(&real) {
        return Err(hidden());
    }
    let meta = std::fs::metadata(&real).map_err(|e| format!("cannot read {rel}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{rel} is not a file"));
    }
    if meta.len() > max {
        return Err(format!(
            "{rel} is larger than {} KiB; Slipway does not read it",
            max >> 10
        ));
    }
    std::fs::read_to_string(&real).map_err(|e| format!("cannot read {rel}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An editor that empties a file and writes it a moment later: a new revision is read
    /// again until two reads agree, so the emptied file is never what is taken.
    #[test]
    fn a_file_emptied_and_then_written_is_read_once_written() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.yaml");
        std::fs::write(&file, "kind: A\n").unwrap();
        std::fs::File::create(&file).unwrap();
        let writer = std::thread::spawn({
            let file = file.clone();
            move || {
                std::thread::sleep(Duration::from_millis(150));
                std::fs::write(&file, "kind: B\n").unwrap();
            }
        });
        let files = read_settled(dir.path(), Duration::from_millis(400), &|_| false).unwrap();
        writer.join().unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].content, b"kind: B\n");
    }

    /// The revision in force is taken as it is read (no wait when nothing changed).
    #[test]
    fn the_revision_in_force_is_read_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), "").unwrap();
        let writer = std::thread::spawn({
            let file = dir.path().join("a.yaml");
            move || {
                std::thread::sleep(Duration::from_millis(150));
                std::fs::write(&file, "kind: B\n").unwrap();
            }
        });
        let files = read_settled(dir.path(), Duration::from_millis(400), &|_| true).unwrap();
        writer.join().unwrap();
        assert_eq!(files[0].content, b"", "read once, before the write");
    }

    /// A file of the folder is read; `..`, absolute paths, links out of it, folders and big
    /// files are not.
    #[test]
    fn a_template_is_read_only_from_within_the_folder() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "token").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("registry");
        std::fs::create_dir_all(root.join("reports")).unwrap();
        std::fs::write(root.join("reports/team.md.j2"), "# {{ model }}").unwrap();
        std::fs::write(root.join("big.j2"), "x".repeat(2048)).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.join("link.j2")).unwrap();
        std::os::unix::fs::symlink("reports/team.md.j2", root.join("inside.j2")).unwrap();
        assert_eq!(
            read_within(&root, "reports/team.md.j2", 1024).unwrap(),
            "# {{ model }}"
        );
        assert_eq!(
            read_within(&root, "inside.j2", 1024).unwrap(),
            "# {{ model }}"
        );
        let refused = |rel: &str| read_within(&root, rel, 1024).unwrap_err();
        assert_eq!(
            refused("link.j2"),
            "link.j2 lies outside the registry's folder; name a file in it"
        );
        assert!(refused("../../etc/passwd").contains("outside the registry's folder"));
        assert!(refused("/etc/passwd").contains("outside the registry's folder"));
        assert_eq!(refused("reports"), "reports is not a file");
        assert_eq!(
            refused("nope.j2"),
            "nope.j2 does not exist in the registry's folder"
        );
        assert!(refused("big.j2").starts_with("big.j2 is larger than 1 KiB"));
        // Hidden files and folders (`.git`, a state folder) are not read, not even by a link.
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::write(root.join(".git/config"), "extraheader = token").unwrap();
        std::os::unix::fs::symlink(".git/config", root.join("config.j2")).unwrap();
        assert!(refused(".git/config").contains("hidden file or folder"));
        assert!(refused("config.j2").contains("hidden file or folder"));
    }
}
