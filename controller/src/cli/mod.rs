//! The command line: argument parsing and the commands' edges (files, git, stdout).

mod bounds;
mod change;
mod controller;
mod deployment_text;
mod init;
mod inspect;
mod manual;
mod plan;
mod run;
mod validate;

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use slipway_crd::Kind;

/// Slipway: a GitOps-style declarative model registry and deploy controller.
#[derive(Parser, Debug)]
#[command(
    name = "slipway",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("SLIPWAY_GIT_COMMIT"), ")"),
    about,
    long_about = None
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats of `validate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ValidateFormat {
    /// One line per error, `file:line:column: Kind ns/name: field: message`.
    Text,
    /// `{"valid", "objects", "errors": [...]}`.
    Json,
}

/// Output formats of `plan`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    /// Terraform-like `+ ~ -` lines and a summary line.
    Text,
    /// One pull-request comment, marked `<!-- slipway:plan -->`.
    Markdown,
    /// The JSON contract (see the README).
    Json,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Scaffold a registry repository in DIR: a model, its first version, the production alias,
    /// the ML leads, the default policies and the pull-request workflow.
    Init(init::InitArgs),
    /// Check every YAML file under PATH: schema, references, invariants, policy expressions.
    Validate {
        /// Folder or file to check (in git mode: a folder within the repository).
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Read PATH from this git revision instead of the working tree.
        #[arg(long)]
        rev: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ValidateFormat::Text)]
        format: ValidateFormat,
    },
    /// Diff the registry at two git revisions and evaluate policy for every change.
    Plan(PlanArgs),
    /// Run the reconciler in git mode on a registry folder or git repository: register,
    /// evaluate, report, promote, and deploy (local model servers behind a router, SageMaker).
    Run(run::RunArgs),
    /// What is registered, how it evaluated, and where each alias points (from `slipway run`'s state).
    Status(inspect::StatusArgs),
    /// The history of a model's aliases, evaluations and versions; `--at TIME` shows what served then.
    History(inspect::HistoryArgs),
    /// Give a version that was rolled back on a deployment another chance, or (`--evaluation`)
    /// run an evaluation that failed without results again.
    Retry(inspect::RetryArgs),
    /// What approving a change signs: each object's `spec.change` digest (the one an admission
    /// denial names) and, field by field, what it stands for — against the cluster's objects, or
    /// another file with `--before`.
    Change(change::ChangeArgs),
    /// Run in Kubernetes mode: the admission webhook that enforces policy and approvals with the
    /// requester's identity.
    Controller(Box<controller::ControllerArgs>),
    /// Print every CustomResourceDefinition as YAML.
    Crds,
    /// Print the JSON Schema of a kind (or of all kinds) for editors and linters.
    Schema {
        /// Kind, plural or short name; all kinds when absent.
        kind: Option<String>,
    },
    /// Print a shell completion script: `slipway completions bash > /etc/bash_completion.d/slipway`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `slipway man > /usr/local/share/man/man1/slipway.1`, or
    /// write a page for every command: `slipway man --dir /usr/local/share/man/man1`.
    Man {
        /// Write `slipway.1` and `slipway-COMMAND.1` for every command into this folder.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// The traffic router of one local deployment, as a process of its own (`slipway run`
    /// starts, adopts and stops it; not for use by hand).
    #[command(hide = true)]
    Router {
        /// The port it serves on 127.0.0.1.
        #[arg(long)]
        port: u16,
        /// The Unix socket it answers `slipway run` on.
        #[arg(long)]
        control: PathBuf,
    },
}

pub(crate) use crate::edges::progress::colour;

/// Arguments of `slipway plan`.
#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    /// Base revision (the target branch); policies and groups are read from it.
    #[arg(long)]
    pub base: String,
    /// Head revision (the pull request).
    #[arg(long, default_value = "HEAD")]
    pub head: String,
    /// The git repository.
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// Folder of the registry within the repository.
    #[arg(long, default_value = "")]
    pub path: String,
    /// GitHub "list reviews for a pull request" JSON.
    #[arg(long)]
    pub reviews: Option<PathBuf>,
    /// Login of the pull request's author.
    #[arg(long, env = "SLIPWAY_AUTHOR")]
    pub author: Option<String>,
    /// Evaluation results: a folder of Evaluation documents with status, or the URL of a running
    /// `slipway run --listen` (e.g. `http://127.0.0.1:8080`).
    #[arg(long)]
    pub results: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// The namespace whose policies decide the changes of a namespace without policies of its
    /// own (the registry's documents without a namespace are in `default`).
    #[arg(long, env = "SLIPWAY_POLICY_NAMESPACE", default_value = "default")]
    pub policy_namespace: String,
    /// Decision time (RFC 3339) instead of now, for reproducible output.
    #[arg(long, hide = true)]
    pub now: Option<chrono::DateTime<chrono::Utc>>,
}

/// Runs the CLI; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Init(args) => init::run(args),
        Command::Validate { path, rev, format } => validate::run(&path, rev.as_deref(), format),
        Command::Plan(args) => plan::run(args),
        Command::Run(args) => run::run(args),
        Command::Status(args) => inspect::status(args),
        Command::History(args) => inspect::history(args),
        Command::Retry(args) => inspect::retry(args),
        Command::Controller(args) => controller::run(*args),
        Command::Change(args) => change::run(args),
        Command::Crds => {
            print_out(&crds_yaml()?)?;
            Ok(0)
        }
        Command::Router { port, control } => {
            crate::edges::serving::control::run(port, &control)?;
            Ok(0)
        }
        Command::Schema { kind } => {
            let value = match kind {
                Some(k) => {
                    let kind = Kind::parse(&k).ok_or_else(|| {
                        anyhow::anyhow!(
                            "unknown kind `{k}`; one of: {}",
                            Kind::ALL.map(Kind::as_str).join(", ")
                        )
                    })?;
                    kind.json_schema()
                }
                None => serde_json::Value::Object(
                    Kind::ALL
                        .into_iter()
                        .map(|k| (k.as_str().to_string(), k.json_schema()))
                        .collect(),
                ),
            };
            print_out(&format!("{}\n", serde_json::to_string_pretty(&value)?))?;
            Ok(0)
        }
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(
                shell,
                &mut manual::visible(&<Cli as clap::CommandFactory>::command()),
                "slipway",
                &mut out,
            );
            print_out(&String::from_utf8_lossy(&out))?;
            Ok(0)
        }
        Command::Man { dir: None } => {
            print_out(&String::from_utf8_lossy(&manual::top_page()?))?;
            Ok(0)
        }
        Command::Man { dir: Some(dir) } => {
            for path in manual::write_pages(&dir)? {
                eprintln!("wrote {}", path.display());
            }
            Ok(0)
        }
    }
}

/// All CRDs as one multi-document YAML stream (what `charts/slipway/crds/` holds).
pub fn crds_yaml() -> anyhow::Result<String> {
    let mut out = String::from("# Generated by `slipway crds`; do not edit.\n");
    for crd in slipway_crd::crds() {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd)?);
    }
    Ok(out)
}

/// Writes to stdout, treating a closed pipe (`| head`) as success.
pub(crate) fn print_out(s: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}

/// Reads a listen address (`127.0.0.1:8080`); a bare port says what to write instead.
pub fn socket_addr(given: &str) -> Result<std::net::SocketAddr, String> {
    given.parse().map_err(|e| match given.parse::<u16>() {
        Ok(port) => format!(
            "`{given}` is a port, not an address: write `127.0.0.1:{port}` (this machine only) or `0.0.0.0:{port}` (every interface)"
        ),
        Err(_) => format!("`{given}` is not an address like `127.0.0.1:8080`: {e}"),
    })
}

#[cfg(test)]
mod listen_tests {
    #[test]
    fn a_bare_port_says_which_address_to_write() {
        assert_eq!(
            super::socket_addr("24090").unwrap_err(),
            "`24090` is a port, not an address: write `127.0.0.1:24090` (this machine only) or `0.0.0.0:24090` (every interface)"
        );
        assert_eq!(super::socket_addr("127.0.0.1:24090").unwrap().port(), 24090);
        assert!(
            super::socket_addr("localhost")
                .unwrap_err()
                .contains("not an address")
        );
    }
}

/// Where written-back rollbacks open their pull requests (both homes): GitHub's API and a token.
#[derive(clap::Args, Debug)]
pub struct GitHubArgs {
    /// A file holding a GitHub token with pull-request write access (and contents write access
    /// for pushes to https repositories on GitHub): a rollback written back opens a pull request
    /// from its branch.
    #[arg(long, env = "SLIPWAY_GITHUB_TOKEN_FILE")]
    pub github_token_file: Option<std::path::PathBuf>,
    /// GitHub's API (GitHub Enterprise: `https://HOST/api/v3`).
    #[arg(
        long,
        env = "SLIPWAY_GITHUB_API_URL",
        default_value = "https://api.github.com"
    )]
    pub github_api_url: String,
}

impl GitHubArgs {
    /// (API, token) when a token file is given, read and trimmed.
    pub fn token(&self) -> anyhow::Result<Option<(String, String)>> {
        let Some(file) = &self.github_token_file else {
            return Ok(None);
        };
        let token = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("--github-token-file {}: {e}", file.display()))?;
        Ok(Some((
            self.github_api_url.clone(),
            token.trim().to_string(),
        )))
    }
}
