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
    match format {
        ValidateFormat::Json => {
            let out = json!({"valid": diags.is_empty(), "files": files.len(), "objects": objects, "errors": diags});
            print_out(&format!("{}\n", serde_json::to_string_pretty(&out)?))?;
        }
        ValidateFormat::Text => {
            let mut out = String::new();
            for d in &diags {
                out.push_str(&format!("{d}\n"));
            }
            if diags.is_empty() {
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
    Ok(if diags.is_empty() { 0 } else { 1 })
}
