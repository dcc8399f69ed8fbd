//! Git mode's loop (`slipway run`): each pass observes the source, decides with the
//! [`Reconciler`] and carries out; what the pass came to — a [`Outcome`] of the core, as in a
//! cluster — decides when the next one runs: done (the interval), waiting (a rollout's next step),
//! stalled (an invalid revision: the last good one stays in force) or transient (the source or the
//! state store failed: back off).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::http::{Metrics, Readiness, Shared};
use super::{EvaluationPool, PassReport, Reconciler};
use crate::decide::catalog::schema::Passes;
use crate::decide::catalog::{Catalog, Resource};
use crate::decide::outcome::Outcome;
mod deploying;
mod source;

use crate::edges::notify::courier::Courier;
use crate::edges::progress::Progress;
use crate::edges::serving::local::LocalTarget;
use crate::edges::source::remote::Remote;
use crate::edges::store::Store;

/// What `slipway run` was asked to do.
pub struct Settings {
    /// The registry folder, or a git repository's address.
    pub path: PathBuf,
    /// Git sources: the branch to follow.
    pub reference: String,
    /// Git sources: the registry's folder within the repository.
    pub registry_path: String,
    /// Reconcile until everything has settled, then exit.
    pub once: bool,
    /// Leave the local routers and servers serving on exit.
    pub keep_serving: bool,
    /// The state folder.
    pub state: PathBuf,
    /// How often to look for changes.
    pub interval: Duration,
    /// Evaluation attempts at once.
    pub workers: usize,
    /// Where webhook runners post their results (the HTTP API's address), if it is served.
    pub results_url: Option<String>,
    /// Whether the read API is served (then each pass publishes the catalog for it).
    pub serving: bool,
    /// The secrets the registry may use, and where messages with them may go.
    pub allowed: crate::edges::notify::Allowed,
    /// Git sources: whether rollbacks are written back (a branch, and a pull request with
    /// `github`).
    pub write_back: bool,
    /// Where pull requests are opened.
    pub github: Option<crate::edges::github::GitHub>,
    /// Where people reach the UI (links), if anywhere.
    pub public_url: Option<String>,
}

/// The loop's state between passes.
pub struct Loop {
    settings: Settings,
    stop: Arc<AtomicBool>,
    store: Arc<Store>,
    shared: Arc<Shared>,
    live: Arc<Progress>,
    /// How the source is named in logs, status and history: never with a token in it.
    source: String,
    remote: Option<Remote>,
    courier: Courier,
    pool: Arc<EvaluationPool>,
    /// Documents that passed the CRD-schema check in an earlier pass or run (not checked again).
    passes: Passes,
    fingerprint: &'static str,
    /// The last history entry counted in the metrics.
    observed: i64,
    /// Passes in a row that failed (source or store): how long to back off.
    failures: u32,
    /// After the last failure: when to try again.
    retry_in: Duration,
    /// The invalid revision last reported (said once).
    last_rejected: Option<String>,
    target: Option<LocalTarget>,
    #[cfg(feature = "sagemaker")]
    sagemaker: Option<crate::edges::serving::sagemaker::aws::SageMaker>,
    /// `--once`: what the passes so far did.
    so_far: Option<PassReport>,
    /// `--once`: the pool's finished count when a pass last ran with the pool idle.
    settled_pass: Option<u64>,
}

/// How a pass ended.
enum Next {
    /// Look again as the outcome says.
    Look(Outcome),
    /// `--once` is done: exit with this code, after printing the summary if there is one.
    Exit(Finished),
}

/// How `slipway run` ends.
pub struct Finished {
    /// The exit code.
    pub code: i32,
    /// `--once`: what the run did, for standard output.
    pub summary: Option<String>,
}

impl Finished {
    fn with(code: i32) -> Next {
        Next::Exit(Finished {
            code,
            summary: None,
        })
    }
}

/// Sleeps for `d`, waking early when `stop` is set.
fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let until = std::time::Instant::now() + d;
    while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50).min(until - std::time::Instant::now()));
    }
}

/// Whether a push webhook set `wake` (taken back) — heeded once the wait has lasted a second,
/// so that deliveries, however many, start at most one pass a second.
fn woken(wake: &AtomicBool, started: std::time::Instant) -> bool {
    started.elapsed() >= Duration::from_secs(1) && wake.swap(false, Ordering::Relaxed)
}

/// Sleeps for `d`, waking early when `stop` is set or a push webhook set `wake` ([`woken`]).
fn sleep_or_woken((stop, wake): (&AtomicBool, &AtomicBool), d: Duration) {
    let started = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) && !woken(wake, started) && started.elapsed() < d {
        std::thread::sleep(Duration::from_millis(50).min(d.saturating_sub(started.elapsed())));
    }
}

/// Sleeps for `d`, waking early when `stop` is set, a push webhook set `wake` ([`woken`]), or
/// an evaluation attempt finishes after `seen` (so its promotion is decided at once, not at the
/// next interval).
fn sleep_until_finished(
    (stop, wake): (&AtomicBool, &AtomicBool),
    pool: &EvaluationPool,
    seen: u64,
    d: Duration,
) {
    let started = std::time::Instant::now();
    let until = started + d;
    while !stop.load(Ordering::Relaxed)
        && !woken(wake, started)
        && std::time::Instant::now() < until
    {
        let slice = Duration::from_millis(100).min(until - std::time::Instant::now());
        if pool.wait_finished(seen, slice) {
            return;
        }
    }
}

/// Runs passes until `stop` is set (or, with `--once`, until everything has settled).
pub fn run(
    settings: Settings,
    stop: Arc<AtomicBool>,
    store: Arc<Store>,
    shared: Arc<Shared>,
) -> anyhow::Result<Finished> {
    let mut this = Loop::start(settings, stop, store, shared)?;
    loop {
        if this.stop.load(Ordering::Relaxed) {
            this.live.finish();
            eprintln!(
                "{}",
                if this.settings.keep_serving {
                    "stopping: routers and model servers keep serving (--keep-serving); the next `slipway run` adopts them"
                } else {
                    "stopping: routers and model servers are shut down (--keep-serving would leave them serving)"
                }
            );
            return Ok(Finished {
                code: 0,
                summary: None,
            });
        }
        let seen = this.pool.finished();
        // A push delivered before this pass is seen by it.
        this.shared.wake.store(false, Ordering::Relaxed);
        let outcome = match this.pass() {
            Ok(Next::Exit(finished)) => return Ok(finished),
            Ok(Next::Look(outcome)) => outcome,
            // Each step is one transaction: a pass that fails on the state store (locked, disk
            // full) loses nothing and is run again after a backoff (`--once` stops with it).
            Err(e) if !this.settings.once => this.failed("pass", format!("{e:#}")),
            Err(e) => return Err(e),
        };
        this.wait(&outcome, seen);
    }
}

impl Loop {
    /// Opens what the passes share: the source, the notification courier, the evaluation pool.
    fn start(
        settings: Settings,
        stop: Arc<AtomicBool>,
        store: Arc<Store>,
        shared: Arc<Shared>,
    ) -> anyhow::Result<Loop> {
        use std::io::IsTerminal;
        let live = Arc::new(Progress::new(std::io::stderr().is_terminal()));
        let source_arg = settings.path.display().to_string();
        let source = crate::edges::source::remote::redact(&source_arg);
        let remote = crate::edges::source::remote::is_git_url(&source_arg).then(|| {
            Remote::new(
                &source_arg,
                &settings.reference,
                &settings.registry_path,
                &settings.state,
            )
        });
        // Notifications go out from a thread of their own: a slow receiver delays no pass.
        let courier = {
            let live = live.clone();
            Courier::start(
                store.clone(),
                crate::edges::notify::Notifier::allowing(settings.allowed.clone()),
                Arc::new(move |line: &str| live.step(line)),
            )
        };
        let fingerprint = crate::decide::catalog::schema::fingerprint();
        Ok(Loop {
            pool: Arc::new(EvaluationPool::new(settings.workers)),
            // Metrics count what happens from now on: the history after its last entry at start.
            observed: store.last_history_id()?,
            passes: Passes::new(store.schema_passes(fingerprint)?),
            fingerprint,
            settings,
            stop,
            store,
            shared,
            live,
            source,
            remote,
            courier,
            failures: 0,
            retry_in: Duration::ZERO,
            last_rejected: None,
            target: None,
            #[cfg(feature = "sagemaker")]
            sagemaker: None,
            so_far: None,
            settled_pass: None,
        })
    }

    /// While no revision can be reconciled (unreadable, invalid), what serves keeps serving:
    /// crashed servers and routers are started again (said on the terminal; the history records
    /// restarts from passes over a valid revision).
    fn supervise_meanwhile(&mut self) {
        if let Some(target) = self.target.as_mut() {
            for (_, _, message) in target.supervise() {
                self.live.step(&message);
            }
        }
    }

    /// One pass: read the source, check it, reconcile, carry out, publish.
    fn pass(&mut self) -> anyhow::Result<Next> {
        let (files, revision, root) = match self.read() {
            Ok(read) => read,
            Err(why) => {
                self.supervise_meanwhile();
                return Ok(self.unreadable(why));
            }
        };
        let (catalog, diags) = Catalog::from_files_remembering(&files, &self.passes);
        self.store
            .remember_schema_passes(self.fingerprint, &self.passes.settle())?;
        if !diags.is_empty() {
            self.supervise_meanwhile();
            return self.rejected(&revision, &diags);
        }
        let catalog = Arc::new(catalog);
        let now = chrono::Utc::now;
        let live = self.live.clone();
        let progress = move |line: &str| live.step(line);
        let (store, state, pool) = (
            self.store.clone(),
            self.settings.state.clone(),
            self.pool.clone(),
        );
        let allowed = self.settings.allowed.clone();
        let reconciler = Reconciler {
            store: &store,
            root: &root,
            state_dir: &state,
            revision: revision.clone(),
            now: &now,
            progress: &progress,
            results_url: self.settings.results_url.clone(),
            pool: Some(&pool),
            statuses: Default::default(),
            allowed: &allowed,
        };
        let mut report = reconciler.reconcile(&catalog)?;
        // One target's failure (a commit that cannot be checked out for the local servers, a
        // store error) neither skips the other's rollouts nor leaves the pass unpublished.
        let local = self.deploy_local(&reconciler, &catalog, &root, &mut report);
        let remote = self.deploy_sagemaker(&reconciler, &catalog, &mut report);
        if let (Some(source), true) = (&self.remote, self.settings.write_back) {
            let to = crate::modes::git::writeback::Destination {
                remote: source,
                github: self.settings.github.as_ref(),
                public_url: self.settings.public_url.as_deref(),
            };
            reconciler.write_back(&catalog, &to, &mut report)?;
        }
        self.publish(&reconciler, &catalog, &revision)?;
        // A held move that becomes allowed by itself (a soak that ends) is looked at then; one
        // held in a pass that moved another alias (the stage it waited for) at once.
        let opens = report
            .opens_at
            .map(|t| (t - now()).to_std().unwrap_or_default() + Duration::from_secs(1));
        let moved_past_a_hold = (!report.moved.is_empty() && !report.blocked.is_empty())
            .then_some(Duration::from_secs(1));
        let requeue = [local?, remote?, opens, moved_past_a_hold]
            .into_iter()
            .flatten()
            .min();
        if self.settings.once {
            return self.once(report, &revision, reconciler, catalog);
        }
        Ok(Next::Look(match requeue {
            Some(after) => Outcome::Waiting {
                reason: "rollouts in progress, or a held move that opens",
                after,
            },
            None => Outcome::Done,
        }))
    }

    /// After a good pass: the history counted, the notifications handed over, the read API's
    /// catalog, `/readyz`, and the source's status (its last good revision, no stall).
    fn publish(
        &mut self,
        reconciler: &Reconciler,
        catalog: &Arc<Catalog>,
        revision: &str,
    ) -> anyhow::Result<()> {
        self.observe()?;
        for e in self.courier.take() {
            self.live.say(&format!("error: notifications: {e}"));
        }
        self.courier.wake(catalog.clone());
        self.shared.metrics.reconciled("git", true);
        // What the read API and the UI show; nobody reads it without `--listen`.
        if self.settings.serving {
            let mut json = catalog_json(catalog);
            let evaluations = reconciler.evaluations(catalog)?;
            json["evaluations"] =
                serde_json::to_value(evaluations.iter().map(|e| &**e).collect::<Vec<_>>())?;
            *self
                .shared
                .catalog
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = json;
        }
        self.set_ready(|r| {
            r.revision = Some(revision.to_string());
            r.rejected = None;
            r.errors.clear();
        });
        self.source_status(Some(revision), None)?;
        self.failures = 0;
        Ok(())
    }

    /// `--once`: more passes while evaluations run (rollouts of other models go on meanwhile),
    /// one more once the pool is idle, then the summary and the exit code.
    fn once(
        &mut self,
        report: PassReport,
        revision: &str,
        reconciler: Reconciler,
        catalog: Arc<Catalog>,
    ) -> anyhow::Result<Next> {
        let mut total = self.so_far.take().unwrap_or_default();
        total.absorb(report);
        // A job that finished since the pool was last seen idle (one this pass started, say)
        // needs its pass too, however quickly it finished.
        let pool = &self.pool;
        if pool.busy() || (pool.pending() && self.settled_pass != Some(pool.finished())) {
            self.settled_pass = (!pool.busy()).then(|| pool.finished());
            self.so_far = Some(total);
            return Ok(Next::Look(Outcome::Waiting {
                reason: "evaluations running",
                after: if self.settled_pass.is_none() {
                    Duration::from_secs(1)
                } else {
                    Duration::ZERO
                },
            }));
        }
        // `--once` ends with every notification of the run delivered (or failed).
        self.courier.flush();
        self.live.finish();
        // The process ends here: freeing the pass's catalog and statuses object by object would
        // take a tenth of a no-change pass over 10,000 evaluations (BENCHMARKS.md).
        total.stuck = self.stuck(&catalog)?;
        let code = total.exit_code(&catalog);
        std::mem::forget(reconciler);
        std::mem::forget(catalog);
        Ok(Next::Exit(Finished {
            code,
            summary: Some(summary(&total, revision, &self.settings.state)),
        }))
    }

    /// The deployments of `catalog` that stand rolled back or failed: what `--once` leaves not
    /// in place.
    fn stuck(&self, catalog: &Catalog) -> anyhow::Result<Vec<String>> {
        use slipway_crd::model_deployment::{DeploymentPhase, ModelDeploymentStatus};
        Ok(self
            .store
            .statuses_as::<ModelDeploymentStatus>("ModelDeployment")?
            .into_iter()
            .filter(|(ns, name, _)| {
                catalog.get(&crate::decide::catalog::ObjectKey {
                    kind: slipway_crd::Kind::ModelDeployment,
                    namespace: ns.clone(),
                    name: name.clone(),
                }).is_some()
            })
            .filter_map(|(ns, name, s)| {
                let phase = s.phase?;
                if !matches!(phase, DeploymentPhase::RolledBack | DeploymentPhase::Failed) {
                    return None;
                }
                let rejected = s.rejected_versions.join(", ");
                Some(format!(
                    "{ns}/{name}: {} (serving {}; rejected {}: `slipway retry {name}` tries it again)",
                    phase.as_str(),
                    s.serving_version.as_deref().unwrap_or("nothing"),
                    if rejected.is_empty() { "none" } else { &rejected },
                ))
            })
            .collect())
    }

    /// Waits as `outcome` says, waking early when an evaluation attempt finishes after `seen`
    /// (its promotion is decided at once) or the loop is stopped.
    fn wait(&self, outcome: &Outcome, seen: u64) {
        let interval = self.settings.interval;
        let after = match outcome {
            Outcome::Transient => return sleep_unless(&self.stop, self.retry_in),
            // Said once when it was rejected; the source is looked at again at the interval.
            Outcome::Stalled(_) => {
                return sleep_or_woken((&self.stop, &self.shared.wake), interval);
            }
            Outcome::Waiting { reason, after } => {
                if self.settings.once {
                    if *after > Duration::ZERO {
                        self.live
                            .waiting(&format!("{reason}: waiting for them to finish"));
                        let flags = (&*self.stop, &self.shared.wake);
                        sleep_until_finished(flags, &self.pool, seen, *after);
                    }
                    return;
                }
                (*after).min(interval)
            }
            Outcome::Done | Outcome::Conflict => interval,
        };
        if self.pool.busy() {
            self.live
                .waiting("evaluations running in the background; watching for changes");
        } else if let Some(revision) = self.shared_revision() {
            self.live
                .waiting(&format!("up to date at {revision}; watching for changes"));
        }
        sleep_until_finished((&self.stop, &self.shared.wake), &self.pool, seen, after);
    }

    /// The revision `/readyz` reports as reconciled.
    fn shared_revision(&self) -> Option<String> {
        self.shared
            .ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .revision
            .clone()
    }

    /// Counts the history entries after the last counted one in the metrics.
    fn observe(&mut self) -> anyhow::Result<()> {
        self.observed = observe(&self.store, &self.shared.metrics, self.observed)?;
        Ok(())
    }

    fn set_ready(&self, f: impl FnOnce(&mut Readiness)) {
        f(&mut self.shared.ready.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// Counts the history entries after `after` in the metrics; returns the last one's id.
fn observe(store: &Store, metrics: &Metrics, after: i64) -> anyhow::Result<i64> {
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

/// What `--once` prints when it is done.
fn summary(o: &PassReport, revision: &str, state: &Path) -> String {
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
    section("not in place", &o.stuck);
    out.push_str(&format!("state and reports in {}\n", state.display()));
    out
}
