//! `slipway validate`.

use std::path::Path;

use serde_json::json;

use super::{ValidateFormat, print_out};
use crate::decide::catalog::Catalog;
use crate::edges::source::{dir, git::GitRepo};

pub fn run(path: &Path, rev: Option<&str>, format: ValidateFormat) -> anyhow::Result<i32> {
    let files = match rev {
        None => {
            dir::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?
        }
        Some(rev) => {
            let repo = GitRepo::open(Path::new("."))?;
            let revision = repo.resolve(rev)?;
            repo.read(&revision, &path.to_string_lossy())?
        }
    };
    let (catalog, diags) = Catalog::from_files(&files);
    let objects = catalog.objects().len();
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
                    "✓ {}: {objects} objects in {} files are valid\n",
                    path.display(),
                    files.len()
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
