//! `slipway validate`.

use std::path::Path;

use serde_json::json;

use super::{ValidateFormat, print_out};
use crate::decide::catalog::Catalog;
use crate::edges::source::{dir, git::GitRepo};

/// A file named on its own is checked with the folder it is in: what it refers to is looked up
/// there (the registry it belongs to), and only its own problems are reported. Returns the
/// folder's files (the file under the path the user gave) and the folder, or None when the
/// folder cannot be read (then the file is checked alone).
fn with_its_folder(
    path: &Path,
) -> Option<(Vec<crate::decide::catalog::SourceFile>, std::path::PathBuf)> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let mut files = dir::read(&folder).ok()?;
    let me = path.canonicalize().ok()?;
    let mine = files
        .iter()
        .position(|f| Path::new(&f.path).canonicalize().ok().as_ref() == Some(&me))?;
    // First: where the folder defines an object of the file's again, the file's is the one
    // checked (the other copy's problem is the folder's).
    let mut me = files.remove(mine);
    me.path = path.display().to_string();
    files.insert(0, me);
    Some((files, folder))
}

/// The declared digests (artifacts, datasets) that the registry's files do not match: on disk,
/// or at revision `rev`. A file that is not there is not verified here (it may be produced
/// later); `slipway run` verifies it before anything uses it.
fn verify_digests(
    catalog: &Catalog,
    path: &Path,
    rev: Option<&str>,
    folder: Option<&Path>,
) -> anyhow::Result<Vec<crate::decide::diagnostics::Diagnostic>> {
    use crate::decide::files::{mismatch, pinned};
    if let Some(rev) = rev {
        let repo = GitRepo::open(Path::new("."))?;
        let listing = repo.listing(&repo.resolve(rev)?)?;
        let registry = path.to_string_lossy().trim_matches('/').to_string();
        return super::plan::verify_digests(&repo, catalog, &listing, &registry);
    }
    let mut out = Vec::new();
    let folder = folder.unwrap_or(path);
    let Ok(registry) = folder.canonicalize() else {
        return Ok(out);
    };
    for object in catalog.objects() {
        for usage in pinned(object, &registry.to_string_lossy()) {
            let content = dir::content(Path::new(&usage.path))
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", usage.path))?;
            if let Some(content) = content {
                out.extend(mismatch(object, &usage, &content).map(|mut d| {
                    // Say the path as the registry names it, not the absolute one.
                    let shown = Path::new(&usage.path)
                        .strip_prefix(&registry)
                        .map(|p| folder.join(p).display().to_string())
                        .unwrap_or_else(|_| usage.path.clone());
                    d.message = d.message.replacen(&usage.path, &shown, 1);
                    d
                }));
            }
        }
    }
    Ok(out)
}

pub fn run(path: &Path, rev: Option<&str>, format: ValidateFormat) -> anyhow::Result<i32> {
    let single = rev.is_none() && path.is_file();
    let (files, scope) = match rev {
        None if single => match with_its_folder(path) {
            Some((files, folder)) => (files, Some(folder)),
            None => (
                dir::read(path)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
                None,
            ),
        },
        None => (
            dir::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
            None,
        ),
        Some(rev) => {
            let repo = GitRepo::open(Path::new("."))?;
            let revision = repo.resolve(rev)?;
            (repo.read(&revision, &path.to_string_lossy())?, None)
        }
    };
    let (catalog, mut diags) = if scope.is_some() {
        // A file on its own: a reference to an object of another file that does not load is
        // this file's problem too (validating the folder reports that file's error instead).
        let (objects, mut diags) = crate::decide::catalog::load_files(&files);
        let (catalog, more) = Catalog::build(objects);
        diags.extend(more);
        (catalog, diags)
    } else {
        Catalog::from_files(&files)
    };
    diags.extend(verify_digests(&catalog, path, rev, scope.as_deref())?);
    let mut objects = catalog.objects().len();
    let mut files = files;
    if scope.is_some() {
        // Only the named file's own problems and objects count.
        let me = path.display().to_string();
        diags.retain(|d| d.file == me);
        objects = catalog
            .objects()
            .iter()
            .filter(|o| *o.origin.file == *me)
            .count();
        files.retain(|f| f.path == me);
    }
    if let Some(folder) = &scope {
        // What it refers to and the folder does not have may live elsewhere in the registry.
        for d in diags
            .iter_mut()
            .filter(|d| d.category == crate::decide::diagnostics::Category::BrokenReference)
        {
            d.message.push_str(&format!(
                " (references are looked up in {}; validate the whole registry folder to look them up there)",
                folder.display()
            ));
        }
    }
    // Nothing of Slipway's under a folder is a mistake (a wrong path in CI), not a success; a
    // file named on its own may hold only comments.
    let folder = rev.is_some() || path.is_dir();
    let empty = (folder && objects == 0 && diags.is_empty()).then(|| {
        format!(
            "no Slipway objects in {} ({} YAML file{} read): point validate at the registry folder (documents with `apiVersion: slipway.dev/v1alpha1`)",
            path.display(),
            files.len(),
            if files.len() == 1 { "" } else { "s" }
        )
    });
    match format {
        ValidateFormat::Json => {
            let mut out = json!({"valid": diags.is_empty() && empty.is_none(), "files": files.len(), "objects": objects, "errors": diags});
            if let Some(f) = &scope {
                out["referencesFrom"] = json!(f.display().to_string());
            }
            if let Some(why) = &empty {
                out["error"] = json!(why);
            }
            print_out(&format!("{}\n", serde_json::to_string_pretty(&out)?))?;
        }
        ValidateFormat::Text => {
            let mut out = String::new();
            for d in &diags {
                out.push_str(&format!("{d}\n"));
            }
            if let Some(why) = &empty {
                out.push_str(&format!("✗ {why}\n"));
            } else if diags.is_empty() {
                out.push_str(&format!(
                    "✓ {}: {objects} object{} in {} file{} {} valid{}\n",
                    path.display(),
                    if objects == 1 { "" } else { "s" },
                    files.len(),
                    if files.len() == 1 { "" } else { "s" },
                    if objects == 1 { "is" } else { "are" },
                    scope
                        .as_ref()
                        .map(|f| format!(" (references looked up in {})", f.display()))
                        .unwrap_or_default()
                ));
            } else {
                let bad_files: std::collections::BTreeSet<&str> =
                    diags.iter().map(|d| d.file.as_str()).collect();
                out.push_str(&format!(
                    "✗ {}: {} error{} in {} file{}\n",
                    path.display(),
                    diags.len(),
                    if diags.len() == 1 { "" } else { "s" },
                    bad_files.len(),
                    if bad_files.len() == 1 { "" } else { "s" }
                ));
            }
            print_out(&out)?;
        }
    }
    Ok(if diags.is_empty() && empty.is_none() {
        0
    } else {
        1
    })
}
