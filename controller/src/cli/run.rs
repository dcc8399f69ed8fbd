//! `slipway run`: its arguments; the loop of passes is git mode's ([`crate::modes::git::passes`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::print_out;
use crate::edges::store::Store;

/// Arguments of `slipway run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The registry: a folder, or a git repository fetched on every pass with the `git`
    /// executable and its credentials (`https://…`, `ssh://…`, `git@host:org/repo`,
    /// `file:///srv/registry.git`, a path ending in `.git`).
    #[arg(default_value = ".", env = "SLIPWAY_SOURCE")]
    pub path: PathBuf,
    /// Git sources: the branch to follow.
    #[arg(long = "ref", default_value = "main", env = "SLIPWAY_REF")]
    pub reference: String,
    /// Git sources: the registry's folder within the repository.
    #[arg(
        long = "registry-path",
        default_value = "",
        env = "SLIPWAY_REGISTRY_PATH"
    )]
    pub registry_path: String,
    /// Reconcile once, until everything has settled, then exit.
    #[arg(long)]
    pub once: bool,
    /// On exit (SIGTERM, Ctrl-C, the end of `--once`), leave the local deployments' routers and
    /// model servers serving, for the next `slipway run` to adopt — a restart or an upgrade then
    /// drops no request (default: stop them). Killed outright, Slipway always leaves them serving.
    #[arg(long)]
    pub keep_serving: bool,
    /// Folder of the embedded state (SQLite database, reports, job logs).
    #[arg(long, default_value = ".slipway", env = "SLIPWAY_STATE")]
    pub state: PathBuf,
    /// Serve /healthz, /readyz, /metrics, the read API and the reports on this address, e.g. `127.0.0.1:8080`.
    #[arg(long, env = "SLIPWAY_LISTEN", value_parser = super::socket_addr)]
    pub listen: Option<std::net::SocketAddr>,
    /// A file holding the bearer token that write requests to the API (`slipway retry --state
    /// URL`) must bring; without it the API is read-only.
    #[arg(long, env = "SLIPWAY_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
    /// A file holding the secret push webhooks are signed with (GitHub, Gitea, Forgejo): a
    /// signed push to `POST /hooks/git` on --listen starts a pass at once.
    #[arg(long, env = "SLIPWAY_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// How often to look for changes when not `--once`, e.g. `30s`.
    #[arg(long, default_value = "30s", env = "SLIPWAY_INTERVAL")]
    pub interval: String,
    /// How many evaluation attempts run at once, in the background (default: the number of
    /// cores). Promotions and rollouts never wait for them.
    #[arg(long, env = "SLIPWAY_PARALLEL_EVALUATIONS", value_parser = clap::value_parser!(u16).range(1..))]
    pub parallel_evaluations: Option<u16>,
    /// `env:` variables and `file:` paths the registry's secret references may name (exact, or
    /// a prefix ending in `*`); none unless named.
    #[arg(long, env = "SLIPWAY_ALLOWED_SECRETS", value_delimiter = ',')]
    pub allowed_secrets: Vec<String>,
    /// Hosts notifications and webhook runners (their secrets, results tokens) may be sent to:
    /// exact hosts, `*.example.com`, or `*`.
    #[arg(
        long,
        env = "SLIPWAY_ALLOWED_DESTINATIONS",
        value_delimiter = ',',
        default_value = "hooks.slack.com"
    )]
    pub allowed_destinations: Vec<String>,
    /// Git sources: do not write rollbacks back (by default a rollback pushes a branch that
    /// moves the alias back to the last healthy version).
    #[arg(long, env = "SLIPWAY_NO_WRITE_BACK")]
    pub no_write_back: bool,
    /// Where written-back rollbacks open their pull requests.
    #[command(flatten)]
    pub github: super::GitHubArgs,
    /// The repository pull requests are opened on, `OWNER/NAME` (default: read from a github.com
    /// source URL).
    #[arg(long, env = "SLIPWAY_GITHUB_REPOSITORY")]
    pub github_repository: Option<String>,
    /// Where people reach this instance's UI (links in pull requests and notifications);
    /// default the `--listen` address.
    #[arg(long, env = "SLIPWAY_PUBLIC_URL")]
    pub public_url: Option<String>,
}

/// Where rollbacks written back open their pull requests: with `--github-token-file`, the
/// repository named or read from a github.com source.
fn github(args: &RunArgs, source: &str) -> anyhow::Result<Option<crate::edges::github::GitHub>> {
    let Some((api, token)) = args.github.token()? else {
        return Ok(None);
    };
    let repository = match &args.github_repository {
        Some(r) if r.split('/').count() == 2 && !r.starts_with('/') && !r.ends_with('/') => r.clone(),
        Some(r) => anyhow::bail!("--github-repository {r}: write OWNER/NAME, e.g. acme/registry"),
        None => crate::edges::github::repository_of(source).ok_or_else(|| {
            anyhow::anyhow!(
                "--github-token-file needs --github-repository OWNER/NAME: {} is not a github.com URL",
                crate::edges::source::remote::redact(source)
            )
        })?,
    };
    Ok(Some(crate::edges::github::GitHub {
        api,
        repository,
        token,
    }))
}

pub fn run(args: RunArgs) -> anyhow::Result<i32> {
    // The jobs and model servers it starts run as its user: not dumpable, its environment
    // (tokens, cloud credentials) cannot be read from /proc/PID/environ by them (unless they
    // hold CAP_SYS_PTRACE: run `slipway run` as an ordinary user, as the image does).
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(|e| anyhow::anyhow!("cannot keep this process's memory from its jobs: {e}"))?;
    // SIGTERM / SIGINT end the loop, so the model servers are stopped on the way out.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let interval = crate::decide::duration::parse(&args.interval)
        .map_err(|e| anyhow::anyhow!("--interval: {e}"))?;
    // A folder is read as the registry itself: a registry path inside it would be ignored.
    let source = args.path.display().to_string();
    if !args.registry_path.is_empty() && !crate::edges::source::remote::is_git_url(&source) {
        anyhow::bail!(
            "--registry-path (or SLIPWAY_REGISTRY_PATH) is for git sources (a URL, or a path ending in .git), and {source} is a folder: run `slipway run {}` instead",
            args.path.join(&args.registry_path).display()
        );
    }
    let api_token_hash = match &args.api_token_file {
        None => None,
        Some(file) => Some(crate::edges::http::token::hash(&secret_in(
            "--api-token-file",
            file,
        )?)),
    };
    let hook_secret = match &args.webhook_secret_file {
        None => None,
        Some(file) => {
            let secret = secret_in("--webhook-secret-file", file)?;
            if args.listen.is_none() {
                anyhow::bail!(
                    "--webhook-secret-file needs --listen: the webhook is POST /hooks/git on that address"
                );
            }
            if args.once {
                anyhow::bail!("--webhook-secret-file is for a run that keeps running: drop --once");
            }
            Some(secret.into_bytes())
        }
    };
    let github = github(&args, &source)?;
    // One run per state folder, held until this function returns (or the process ends).
    let mut lock = crate::edges::store::run_lock::RunLock::claim(&args.state)?;
    let store = Arc::new(Store::open(&args.state)?);
    let shared = Arc::new(crate::modes::git::http::Shared {
        store: store.clone(),
        metrics: crate::modes::git::http::Metrics::default().with_controllers(&["git"]),
        ready: std::sync::Mutex::new(crate::modes::git::http::Readiness::default()),
        state_dir: args.state.clone(),
        catalog: std::sync::Mutex::new(serde_json::Value::Null),
        api_token_hash,
        hook_secret,
        wake: std::sync::atomic::AtomicBool::new(false),
        hook_ref: format!("refs/heads/{}", args.reference),
        deliveries: std::sync::Mutex::new(Default::default()),
    });
    let mut results_url = None;
    if let Some(addr) = args.listen {
        let bound = crate::edges::http::spawn(addr, shared.clone())?;
        eprintln!("serving /healthz, /readyz, /metrics, /api/v1 and /reports on http://{bound}");
        lock.listening(&bound.to_string())?;
        results_url = Some(format!("http://{bound}"));
    }
    let public_url = args
        .public_url
        .clone()
        .or_else(|| results_url.clone())
        .map(|u| u.trim_end_matches('/').to_string());
    let settings = crate::modes::git::passes::Settings {
        path: args.path,
        reference: args.reference,
        registry_path: args.registry_path,
        once: args.once,
        keep_serving: args.keep_serving,
        state: args.state,
        interval,
        workers: args.parallel_evaluations.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            usize::from,
        ),
        serving: results_url.is_some(),
        public_url,
        results_url,
        allowed: crate::edges::notify::Allowed {
            secrets: args.allowed_secrets,
            destinations: args.allowed_destinations,
        },
        write_back: !args.no_write_back,
        github,
    };
    let finished = crate::modes::git::passes::run(settings, stop, store, shared)?;
    drop(lock);
    if let Some(summary) = finished.summary {
        print_out(&summary)?;
    }
    Ok(finished.code)
}

/// The secret in `file` (given as `flag`), its surrounding whitespace trimmed: at least 16
/// characters.
fn secret_in(flag: &str, file: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("{flag} {}: {e}", file.display()))?;
    let secret = text.trim();
    if secret.len() < 16 {
        anyhow::bail!(
            "{flag} {}: it must hold at least 16 characters (e.g. `openssl rand -hex 32`)",
            file.display()
        );
    }
    Ok(secret.to_string())
}
