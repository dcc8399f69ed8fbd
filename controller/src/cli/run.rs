//! `slipway run`: the reconciler in git mode, on a folder.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::print_out;
use crate::decide::catalog::{Catalog, Resource};
use crate::edges::serving::local::LocalTarget;
use crate::edges::source::dir;
use crate::edges::store::{HistoryEntry, Store, Write};
use crate::modes::git::{EvaluationPool, Reconciler};

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
    /// Folder of the embedded state (SQLite database, reports, job logs).
    #[arg(long, default_value = ".slipway", env = "SLIPWAY_STATE")]
    pub state: PathBuf,
    /// Serve /healthz, /readyz, /metrics, the read API and the reports on this address, e.g. `127.0.0.1:8080`.
    #[arg(long, env = "SLIPWAY_LISTEN")]
    pub listen: Option<std::net::SocketAddr>,
    /// A file holding the bearer token that write requests to the API (`slipway retry --state
    /// URL`) must bring; without it the API is read-only.
    #[arg(long, env = "SLIPWAY_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
    /// How often to look for changes when not `--once`, e.g. `30s`.
    #[arg(long, default_value = "30s", env = "SLIPWAY_INTERVAL")]
    pub interval: String,
    /// How many evaluation attempts run at once, in the background (default: the number of
    /// cores). Promotions and rollouts never wait for them.
    #[arg(long, env = "SLIPWAY_PARALLEL_EVALUATIONS", value_parser = clap::value_parser!(u16).range(1..))]
    pub parallel_evaluations: Option<u16>,
}

/// A revision id for a folder: the digest of its files' paths and contents.
fn folder_revision(files: &[crate::decide::catalog::SourceFile]) -> String {
    let mut h = Sha256::new();
    for f in files {
        h.update(f.path.as_bytes());
        h.update([0]);
        h.update(&f.content);
        h.update([0]);
    }
    format!("folder:{}", crate::decide::hex(&h.finalize()[..6]))
}

/// Sleeps for `d`, waking early when `stop` is set.
fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let until = std::time::Instant::now() + d;
    while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50).min(until - std::time::Instant::now()));
    }
}

/// Sleeps for `d`, waking early when `stop` is set or an evaluation attempt finishes after
/// `seen` (so its promotion is decided at once, not at the next interval).
fn sleep_until_finished(stop: &AtomicBool, pool: &EvaluationPool, seen: u64, d: Duration) {
    let until = std::time::Instant::now() + d;
    while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < until {
        let slice = Duration::from_millis(100).min(until - std::time::Instant::now());
        if pool.wait_finished(seen, slice) {
            return;
        }
    }
}

pub fn run(args: RunArgs) -> anyhow::Result<i32> {
    // SIGTERM / SIGINT end the loop, so the model servers are stopped on the way out.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let interval = crate::decide::duration::parse(&args.interval)
        .map_err(|e| anyhow::anyhow!("--interval: {e}"))?;
    let api_token_hash = match &args.api_token_file {
        None => None,
        Some(file) => {
            let token = std::fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("--api-token-file {}: {e}", file.display()))?;
            let token = token.trim();
            if token.len() < 16 {
                anyhow::bail!(
                    "--api-token-file {}: the token must be at least 16 characters (e.g. `openssl rand -hex 32`)",
                    file.display()
                );
            }
            Some(crate::edges::http::token::hash(token))
        }
    };
    let store = Arc::new(Store::open(&args.state)?);
    let shared = Arc::new(crate::modes::git::http::Shared {
        store: store.clone(),
        metrics: crate::modes::git::http::Metrics::default().with_controllers(&["git"]),
        ready: std::sync::Mutex::new(crate::modes::git::http::Readiness::default()),
        state_dir: args.state.clone(),
        catalog: std::sync::Mutex::new(serde_json::Value::Null),
        api_token_hash,
    });
    let mut results_url = None;
    if let Some(addr) = args.listen {
        let bound = crate::edges::http::spawn(addr, shared.clone())?;
        eprintln!("serving /healthz, /readyz, /metrics, /api/v1 and /reports on http://{bound}");
        results_url = Some(format!("http://{bound}"));
    }
    let set_ready = |f: &dyn Fn(&mut crate::modes::git::http::Readiness)| {
        let mut r = shared.ready.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut r);
    };
    let live = Arc::new(super::progress::Progress::new(
        std::io::stderr().is_terminal(),
    ));
    let progress = |line: &str| live.step(line);
    let source_arg = args.path.display().to_string();
    // How the source is named in logs, status and history: never with a token in it.
    let source = crate::edges::source::remote::redact(&source_arg);
    let remote = crate::edges::source::remote::is_git_url(&source_arg).then(|| {
        crate::edges::source::remote::Remote::new(
            &source_arg,
            &args.reference,
            &args.registry_path,
            &args.state,
        )
    });
    let last_good = || -> Option<String> {
        let s = store.status("Source", "default", &source).ok()??;
        Some(format!(
            "{} (reconciled {})",
            s.get("lastGood")?.as_str()?,
            s.get("at")?.as_str()?
        ))
    };
    let mut last_rejected: Option<String> = None;
    // Passes in a row that failed (source or store): how long to back off.
    let mut failures = 0u32;
    let mut target: Option<LocalTarget> = None;
    #[cfg(feature = "sagemaker")]
    let mut sagemaker: Option<crate::edges::serving::sagemaker::aws::SageMaker> = None;
    // Notifications go out from a thread of their own: a slow receiver delays no pass.
    let courier = {
        let live = live.clone();
        crate::edges::notify::courier::Courier::start(
            store.clone(),
            crate::edges::notify::Notifier::default(),
            Arc::new(move |line: &str| live.step(line)),
        )
    };
    let workers = args.parallel_evaluations.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        usize::from,
    );
    let pool = EvaluationPool::new(workers);
    // Metrics count what happens from now on: the history after its last entry at start.
    let mut observed = store.last_history_id()?;
    // `--once`: what the passes so far did, and whether a pass after the pool went idle ran.
    let mut so_far: Option<crate::modes::git::Outcome> = None;
    // The pool's finished count when a pass last ran with the pool idle (`--once`).
    let mut settled_pass: Option<u64> = None;
    // Documents that passed the CRD-schema check in an earlier pass, or an earlier run, are not
    // checked again: read from the store once, then kept up to date in memory.
    let fingerprint = crate::decide::catalog::schema::fingerprint();
    let mut passes = crate::decide::catalog::schema::Passes::new(store.schema_passes(fingerprint)?);
    // A pass that fails on the state store (locked, disk full, I/O) loses nothing — each step is
    // one transaction — so it is run again after a backoff instead of stopping `slipway run`
    // (`--once` still stops, with the error).
    macro_rules! or_back_off {
        ($pass:lifetime, $e:expr) => {
            match $e {
                Ok(v) => v,
                Err(e) if !args.once => {
                    let e: anyhow::Error = e.into();
                    failures += 1;
                    let wait = crate::decide::limits::backoff(failures);
                    let why = format!("{e:#}");
                    shared.metrics.reconciled("git", false);
                    shared.metrics.failed("pass", "pass");
                    set_ready(&|r| {
                        r.rejected = Some("pass".into());
                        r.errors = vec![why.clone()];
                    });
                    live.say(&format!("error: {why}; trying the pass again in {wait:?}"));
                    sleep_unless(&stop, wait);
                    continue $pass;
                }
                Err(e) => return Err(e.into()),
            }
        };
    }
    'pass: loop {
        if stop.load(Ordering::Relaxed) {
            live.finish();
            eprintln!("stopping: model servers are shut down");
            return Ok(0);
        }
        let read = match &remote {
            None => dir::read(&args.path)
                .map(|files| {
                    let revision = folder_revision(&files);
                    (files, revision, args.path.clone())
                })
                .map_err(|e| format!("cannot read {}: {e}", args.path.display())),
            Some(remote) => remote
                .fetch()
                .map(|snap| {
                    let revision = format!("git:{}", &snap.revision.commit[..12]);
                    (snap.files, revision, snap.root)
                })
                .map_err(|e| e.to_string()),
        };
        let (files, revision, root) = match read {
            Ok(read) => read,
            Err(why) => {
                shared.metrics.reconciled("git", false);
                shared.metrics.failed("pass", "fetch");
                set_ready(&|r| {
                    r.rejected = Some("fetch".into());
                    r.errors = vec![why.clone()];
                });
                // An unreadable folder or a broken or unreachable repository changes nothing
                // that runs: keep the last good revision and look again, backing off.
                failures += 1;
                let wait = crate::decide::limits::backoff(failures).min(interval);
                live.say(&format!(
                    "error: {why}; keeping the last good revision, trying again in {wait:?}"
                ));
                if args.once {
                    return Ok(1);
                }
                sleep_unless(&stop, wait);
                continue;
            }
        };
        let (catalog, diags) = Catalog::from_files_remembering(&files, &passes);
        or_back_off!('pass, store.remember_schema_passes(fingerprint, &passes.settle()));
        if !diags.is_empty() {
            shared.metrics.reconciled("git", false);
            shared.metrics.failed("pass", "invalid-revision");
            let errors: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
            set_ready(&|r| {
                r.rejected = Some(revision.clone());
                r.errors = errors.clone();
            });
            // Keep serving the last good revision; say so once per bad revision.
            if last_rejected.as_ref() != Some(&revision) {
                for d in &diags {
                    live.say(&format!("error: {d}"));
                }
                let message = format!(
                    "revision {revision} is invalid ({} errors); {}",
                    diags.len(),
                    match last_good() {
                        Some(g) => format!("still serving {g}"),
                        None => "nothing reconciled yet".to_string(),
                    }
                );
                live.say(&message);
                store.apply(&[Write::History(HistoryEntry {
                    id: 0,
                    at: chrono::Utc::now(),
                    event: crate::decide::events::Event::RevisionRejected
                        .as_str()
                        .into(),
                    namespace: "default".into(),
                    model: String::new(),
                    subject: source.clone(),
                    version: None,
                    alias: None,
                    actor: Some("slipway".into()),
                    revision: Some(revision.clone()),
                    decision: Some("rejected".into()),
                    message,
                    data: serde_json::to_value(&diags)?,
                })])?;
                last_rejected = Some(revision);
                // Counted now: no pass reads the history while the revision stays invalid.
                observed = or_back_off!('pass, observe(&store, &shared.metrics, observed));
            }
            if args.once {
                return Ok(1);
            }
            sleep_unless(&stop, interval);
            continue;
        }
        let catalog = Arc::new(catalog);
        let now = chrono::Utc::now;
        let reconciler = Reconciler {
            store: &store,
            root: &root,
            state_dir: &args.state,
            revision: revision.clone(),
            now: &now,
            progress: &progress,
            results_url: results_url.clone(),
            pool: Some(&pool),
            statuses: Default::default(),
        };
        let seen = pool.finished();
        let mut outcome = or_back_off!('pass, reconciler.reconcile(&catalog));
        let has_local = catalog
            .objects()
            .iter()
            .any(|o| matches!(&o.resource, Resource::ModelDeployment(d) if d.spec.target.local.is_some()));
        let mut requeue = None;
        if has_local {
            if target.is_none() {
                target = Some(LocalTarget::new(&root, &args.state.join("logs"))?);
            }
            if let Some(t) = target.as_mut() {
                t.set_root(&root);
            }
            if let Some(t) = target.as_mut() {
                requeue = or_back_off!('pass, reconciler.deploy(&catalog, t, &mut outcome));
                // --once: keep stepping the rollouts until every deployment has settled.
                while args.once
                    && !stop.load(Ordering::Relaxed)
                    && let Some(wait) = requeue
                {
                    live.waiting("rollouts in progress: waiting for the next step");
                    sleep_unless(&stop, wait.min(Duration::from_secs(1)));
                    requeue = or_back_off!('pass, reconciler.deploy(&catalog, t, &mut outcome));
                }
            }
        }
        // Declared SageMaker deployments, or removed ones whose endpoints are still to delete.
        let has_sagemaker = catalog.objects().iter().any(
            |o| matches!(&o.resource, Resource::ModelDeployment(d) if d.spec.target.sagemaker.is_some()),
        ) || store
            .statuses("ModelDeployment")?
            .iter()
            .any(|(_, _, s)| s["endpoint"].is_object());
        if has_sagemaker {
            #[cfg(feature = "sagemaker")]
            {
                if sagemaker.is_none() {
                    sagemaker = Some(crate::edges::serving::sagemaker::aws::SageMaker::new()?);
                }
                if let Some(aws) = sagemaker.as_mut() {
                    let mut wait = or_back_off!('pass, reconciler.deploy_sagemaker(&catalog, aws, &mut outcome));
                    // --once: follow the endpoint updates until they settle.
                    while args.once
                        && !stop.load(Ordering::Relaxed)
                        && let Some(w) = wait
                    {
                        live.waiting("SageMaker updates in progress: waiting for the endpoint");
                        sleep_unless(&stop, w.min(Duration::from_secs(1)));
                        wait = or_back_off!('pass, reconciler.deploy_sagemaker(&catalog, aws, &mut outcome));
                    }
                    requeue = match (requeue, wait) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
            }
            #[cfg(not(feature = "sagemaker"))]
            outcome.deploy_errors.push(
                "this slipway was built without the `sagemaker` feature: SageMaker deployments \
                 are not rolled out (build with default features)"
                    .into(),
            );
        }
        // The history since the last pass, counted (deliveries included, as the courier records
        // them); this pass's history handed to the courier.
        observed = or_back_off!('pass, observe(&store, &shared.metrics, observed));
        for e in courier.take() {
            live.say(&format!("error: notifications: {e}"));
        }
        courier.wake(catalog.clone());
        shared.metrics.reconciled("git", true);
        // What the read API and the UI show; nobody reads it without `--listen`.
        if args.listen.is_some() {
            let mut json = catalog_json(&catalog);
            let evaluations = or_back_off!('pass, reconciler.evaluations(&catalog));
            json["evaluations"] =
                serde_json::to_value(evaluations.iter().map(|e| &**e).collect::<Vec<_>>())?;
            *shared.catalog.lock().unwrap_or_else(|p| p.into_inner()) = json;
        }
        set_ready(&|r| {
            r.revision = Some(revision.clone());
            r.rejected = None;
            r.errors.clear();
        });
        or_back_off!('pass, store.apply(&[Write::Status {
            kind: "Source".into(),
            namespace: "default".into(),
            name: source.clone(),
            status: serde_json::json!({"lastGood": revision, "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)}),
        }]));
        failures = 0;
        if args.once {
            let mut total = so_far.take().unwrap_or_default();
            total.absorb(outcome);
            // Evaluations still running: take their outcomes in further passes (rollouts of
            // other models went on meanwhile), and once the pool is idle, one more pass.
            // A job that finished since the pool was last seen idle (one this pass started,
            // say) needs its pass too, however quickly it finished.
            if pool.busy() || (pool.pending() && settled_pass != Some(pool.finished())) {
                settled_pass = (!pool.busy()).then(|| pool.finished());
                if settled_pass.is_none() {
                    live.waiting("evaluations running: waiting for them to finish");
                    sleep_until_finished(&stop, &pool, seen, Duration::from_secs(1));
                }
                so_far = Some(total);
                continue;
            }
            let outcome = total;
            // `--once` ends with every notification of the run delivered (or failed).
            courier.flush();
            live.finish();
            print_out(&summary(&outcome, &revision, &args.state))?;
            // The process ends here: freeing the pass's catalog and statuses object by object
            // would take a tenth of a no-change pass over 10,000 evaluations (BENCHMARKS.md).
            std::mem::forget(reconciler);
            std::mem::forget(catalog);
            return Ok(if outcome.deploy_errors.is_empty() {
                0
            } else {
                1
            });
        }
        if pool.busy() {
            live.waiting("evaluations running in the background; watching for changes");
        } else {
            live.waiting(&format!("up to date at {revision}; watching for changes"));
        }
        sleep_until_finished(
            &stop,
            &pool,
            seen,
            requeue.map_or(interval, |r| r.min(interval)),
        );
    }
}

/// Counts the history entries after `after` in the metrics; returns the last one's id.
fn observe(
    store: &Store,
    metrics: &crate::modes::git::http::Metrics,
    after: i64,
) -> anyhow::Result<i64> {
    let entries = store.history(&crate::edges::store::HistoryFilter {
        after_id: Some(after),
        ..Default::default()
    })?;
    for e in &entries {
        metrics.observe(e);
    }
    Ok(entries.last().map_or(after, |h| h.id))
}

/// The objects the web UI shows, as JSON.
fn catalog_json(catalog: &Catalog) -> serde_json::Value {
    let mut out = serde_json::json!({"models": [], "versions": [], "aliases": []});
    for o in catalog.objects() {
        let list = match &o.resource {
            Resource::RegisteredModel(_) => "models",
            Resource::ModelVersion(_) => "versions",
            Resource::ModelAlias(_) => "aliases",
            _ => continue,
        };
        if let Some(items) = out[list].as_array_mut() {
            items.push(serde_json::json!({"namespace": o.key.namespace, "name": o.key.name, "spec": o.resource.spec_json()}));
        }
    }
    out
}

fn summary(o: &crate::modes::git::Outcome, revision: &str, state: &Path) -> String {
    let mut out = format!("reconciled {revision}\n");
    let mut section = |title: &str, items: &[String]| {
        if !items.is_empty() {
            out.push_str(&format!("{title}:\n"));
            for i in items {
                out.push_str(&format!("  {i}\n"));
            }
        }
    };
    section("registered", &o.registered);
    section("evaluated", &o.evaluated);
    section("promoted", &o.moved);
    section("held by policy", &o.blocked);
    section("waiting", &o.waiting);
    section("rollouts", &o.rollout_events);
    section("deployment errors", &o.deploy_errors);
    out.push_str(&format!("state and reports in {}\n", state.display()));
    out
}
