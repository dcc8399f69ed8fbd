//! `slipway init [DIR]`: scaffolds a registry repository — a model with one evaluation suite, its
//! first version, the production alias, the ML leads, the default policies and the pull-request
//! workflow that runs the Action. The files are checked like `slipway validate` before anything
//! is written, and nothing that exists is overwritten.

use std::path::{Path, PathBuf};

use super::print_out;
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
        template.replace("{{model}}", model).replace(
            "{{leads}}",
            &leads
                .iter()
                .map(|l| format!("\"{l}\""))
                .collect::<Vec<_>>()
                .join(", "),
        )
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
    let leads: Vec<String> = args
        .leads
        .iter()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    if leads.is_empty() {
        anyhow::bail!(
            "--leads names nobody, so no promotion could ever be approved; give the GitHub logins of your ML leads, e.g. --leads alice,bob"
        );
    }
    let files = scaffold(&args.model, &leads);
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
            leads.join(",")
        );
    }
    let mut existing = Vec::new();
    for (path, _) in &files {
        let path = args.dir.join(path);
        match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Ok(_) => existing.push(path.display().to_string()),
            Err(e) => anyhow::bail!("cannot check {}: {e}; nothing was written", path.display()),
        }
    }
    if !existing.is_empty() {
        anyhow::bail!(
            "{} already exist{}; nothing was written — scaffold another folder, or move them away first",
            existing.join(", "),
            if existing.len() == 1 { "s" } else { "" }
        );
    }
    let mut made = Made::default();
    for (path, content) in &files {
        if let Err(e) = made.write_new(&args.dir.join(path), content) {
            made.undo();
            return Err(e.context("init stopped part-way; nothing was left behind"));
        }
    }
    let registry = args.dir.join("registry");
    let mut out: String = files
        .iter()
        .map(|(path, _)| format!("created {}\n", args.dir.join(path).display()))
        .collect();
    // `slipway run`'s state stays out of git; the registry is a git repository.
    out.push_str(&ignore_state(&args.dir)?);
    out.push_str(&git_repository(&args.dir)?);
    out.push_str(&format!(
        "\nNext:\n  1. your suite's command and dataset: {} — the command writes its metrics as {{\"metrics\": {{\"NAME\": NUMBER}}, \"samples\": [...]}} to the file $SLIPWAY_RESULTS names (README: \"The evaluation job contract\")\n  2. your artifact's URI and digest: {}\n  3. your ML leads' GitHub logins: {}\n  4. where plan reads evaluation results: `results:` in {} (the address of a running `slipway run --listen`, or a folder of Evaluation documents with their status)\n  5. slipway validate {}, commit, and push: the workflow checks every pull request with `slipway plan`\n",
        registry.join("model.yaml").display(),
        registry.join("versions.yaml").display(),
        registry.join("groups.yaml").display(),
        args.dir.join(".github/workflows/slipway-plan.yml").display(),
        registry.display(),
    ));
    if leads.len() < 2 {
        out.push_str("\nNote: the default policies want a lead other than the pull request's author; with one lead, that lead's own promotions cannot be approved.\n");
    }
    print_out(&out)?;
    Ok(0)
}

/// The line `slipway run`'s default state folder needs in `DIR/.gitignore` (created, or added
/// to one that lacks it); what was done, for the output.
fn ignore_state(dir: &Path) -> anyhow::Result<String> {
    const LINE: &str = "/.slipway/";
    let path = dir.join(".gitignore");
    let now = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    };
    if now.lines().any(|l| {
        matches!(
            l.trim(),
            "/.slipway/" | ".slipway/" | ".slipway" | "/.slipway"
        )
    }) {
        return Ok(String::new());
    }
    let mut next = now.clone();
    if !next.is_empty() && !next.ends_with('\n') {
        next.push('\n');
    }
    next.push_str("# `slipway run`'s state (SQLite, reports, evaluation runs)\n");
    next.push_str(LINE);
    next.push('\n');
    std::fs::write(&path, next)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    Ok(format!(
        "{} {} (ignores {LINE})\n",
        if now.is_empty() { "created" } else { "updated" },
        path.display()
    ))
}

/// Makes DIR a git repository (branch `main`) unless it is inside one; what was done — and,
/// inside another repository's sub-folder, that GitHub runs workflows only from its root.
fn git_repository(dir: &Path) -> anyhow::Result<String> {
    if let Ok(repo) = git2::Repository::discover(dir) {
        let root = repo.workdir().and_then(|w| w.canonicalize().ok());
        let here = dir.canonicalize().ok();
        return Ok(match (root, here) {
            (Some(root), Some(here)) if root != here => format!(
                "note: {} is inside the git repository at {}: GitHub runs workflows only from {}/.github/workflows — move the workflow there and set its `path:` to {}\n",
                dir.display(),
                root.display(),
                root.display(),
                here.strip_prefix(&root)
                    .unwrap_or(&here)
                    .join("registry")
                    .display()
            ),
            _ => String::new(),
        });
    }
    let mut opts = git2::RepositoryInitOptions::new();
    opts.initial_head("main");
    git2::Repository::init_opts(dir, &opts)
        .map_err(|e| anyhow::anyhow!("cannot make {} a git repository: {e}", dir.display()))?;
    Ok(format!(
        "initialized a git repository in {} (branch main)\n",
        dir.display()
    ))
}

/// What this run created, so a failure part-way removes it again.
#[derive(Default)]
struct Made {
    files: Vec<PathBuf>,
    folders: Vec<PathBuf>,
}

impl Made {
    /// Creates `path` (and its missing folders) with `content`; fails if it appeared meanwhile.
    fn write_new(&mut self, path: &Path, content: &str) -> anyhow::Result<()> {
        use std::io::Write;
        let mut missing = Vec::new();
        let mut folder = path.parent();
        while let Some(f) = folder.filter(|f| !f.as_os_str().is_empty() && !f.exists()) {
            missing.push(f.to_path_buf());
            folder = f.parent();
        }
        for f in missing.into_iter().rev() {
            std::fs::create_dir(&f)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", f.display()))?;
            self.folders.push(f);
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
        self.files.push(path.to_path_buf());
        file.write_all(content.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
    }

    /// Removes what was created, newest first.
    fn undo(&self) {
        for f in self.files.iter().rev() {
            let _ = std::fs::remove_file(f);
        }
        for f in self.folders.iter().rev() {
            let _ = std::fs::remove_dir(f);
        }
    }
}
