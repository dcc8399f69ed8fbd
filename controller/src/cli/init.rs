//! `slipway init [DIR]`: scaffolds a registry repository — a model with one evaluation suite, its
//! first version, the production alias, the ML leads, the default policies and the pull-request
//! workflow that runs the Action. The files are checked like `slipway validate` before anything
//! is written, and nothing that exists is overwritten.

use std::path::{Path, PathBuf};

use crate::decide::catalog::{Catalog, SourceFile};

/// Arguments of `slipway init`.
#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// Folder to scaffold (created when missing): the root of the registry's git repository.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Name of the model (a DNS label, e.g. `fraud-scorer`).
    #[arg(long, default_value = "my-model")]
    pub model: String,
    /// GitHub logins of the ML leads who approve promotions.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "your-github-login,another-lead"
    )]
    pub leads: Vec<String>,
}

/// The scaffold's files, relative to DIR, for `model` and `leads`.
pub fn scaffold(model: &str, leads: &[String]) -> Vec<(&'static str, String)> {
    let fill = |template: &str| {
        template
            .replace("{{model}}", model)
            .replace("{{leads}}", &leads.join(", "))
    };
    vec![
        (
            "registry/model.yaml",
            fill(include_str!("../../templates/init/model.yaml")),
        ),
        (
            "registry/versions.yaml",
            fill(include_str!("../../templates/init/versions.yaml")),
        ),
        (
            "registry/aliases.yaml",
            fill(include_str!("../../templates/init/aliases.yaml")),
        ),
        (
            "registry/groups.yaml",
            fill(include_str!("../../templates/init/groups.yaml")),
        ),
        (
            "registry/policies.yaml",
            include_str!("../../../policies/default.yaml").to_string(),
        ),
        (
            ".github/workflows/slipway-plan.yml",
            include_str!("../../templates/init/slipway-plan.yml").to_string(),
        ),
    ]
}

pub fn run(args: InitArgs) -> anyhow::Result<i32> {
    let files = scaffold(&args.model, &args.leads);
    let registry: Vec<SourceFile> = files
        .iter()
        .filter(|(path, _)| path.starts_with("registry/"))
        .map(|(path, content)| SourceFile {
            path: path.to_string(),
            content: content.clone().into_bytes(),
            id: None,
            from_api_server: false,
        })
        .collect();
    let (_, diags) = Catalog::from_files(&registry);
    if !diags.is_empty() {
        for d in &diags {
            eprintln!("{d}");
        }
        anyhow::bail!(
            "the scaffold for --model {:?} --leads {:?} would not validate (above); nothing was written — pick a DNS label for --model and GitHub logins for --leads",
            args.model,
            args.leads.join(",")
        );
    }
    let existing: Vec<String> = files
        .iter()
        .map(|(path, _)| args.dir.join(path))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !existing.is_empty() {
        anyhow::bail!(
            "{} already exist{}; nothing was written — scaffold another folder, or move them away first",
            existing.join(", "),
            if existing.len() == 1 { "s" } else { "" }
        );
    }
    for (path, content) in &files {
        write_new(&args.dir.join(path), content)?;
        println!("created {}", args.dir.join(path).display());
    }
    let registry = args.dir.join("registry");
    println!(
        "\nNext:\n  1. your suite's command and dataset: {}\n  2. your artifact's URI and digest: {}\n  3. your ML leads' GitHub logins: {}\n  4. slipway validate {}, commit, and push: the workflow checks every pull request with `slipway plan`",
        registry.join("model.yaml").display(),
        registry.join("versions.yaml").display(),
        registry.join("groups.yaml").display(),
        registry.display(),
    );
    Ok(0)
}

/// Creates `path` (and its folders) with `content`, failing if it appeared meanwhile.
fn write_new(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", parent.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    file.write_all(content.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}
