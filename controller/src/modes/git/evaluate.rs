//! Git mode's evaluations: each suite run carried out by the rules of
//! [`crate::decide::evaluation::lifecycle`] — local commands attempt by attempt in a background
//! pool, webhook runners dispatched and waited for — with reports and history. No pass waits for
//! an evaluation: promotions and rollouts of every model go on while suites run.

use crate::decide::evaluation::tasks::Task;
use crate::decide::evaluation::{self, lifecycle, results::RunResults};
use crate::edges::runners::local;
use crate::edges::store::{EvaluationRecord, StoreError, Write};
use serde_json::json;
use slipway_crd::evaluation::{EvaluationPhase, Sample};
use slipway_crd::{Evaluation, EvaluationStatus};
use std::collections::BTreeMap;

use super::*;

/// One run an attempt made in the background: its role, content address, version and outcome.
pub struct Run {
    role: &'static str,
    key: String,
    version: String,
    outcome: Result<RunResults, String>,
}

/// What a background job of the evaluations did.
pub enum Work {
    /// A local attempt: its runs.
    Runs(Vec<Run>),
    /// The request that starts an external (webhook) attempt.
    Dispatch(crate::edges::notify::Delivery),
}

/// The pool evaluation attempts and dispatches run in (`slipway run --parallel-evaluations`).
pub type EvaluationPool = crate::edges::runners::pool::Pool<Work>;

/// The pool's key of one attempt.
pub(super) fn pool_key(task: &Task, key: &str, attempt: u32) -> String {
    format!("{}/{}/{key}/{attempt}", task.namespace, task.name)
}

impl Reconciler<'_> {
    pub(super) fn evaluation_status(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<std::rc::Rc<EvaluationStatus>>, StoreError> {
        self.statuses.evaluation(self.store, ns, name)
    }

    /// The results of a finished run with this content address, if any, and the evaluation
    /// that ran it.
    pub(super) fn stored_run(&self, key: &str) -> Result<Option<(RunResults, String)>, StoreError> {
        let record = self.store.evaluation(key)?;
        Ok(record
            .as_ref()
            .and_then(|r| lifecycle::reusable(key, [(r.name.as_str(), &r.status)])))
    }

    /// Finishes an evaluation at once when every run it needs (candidate, and baseline if any)
    /// already has finished results with the same content address — the rule Kubernetes mode
    /// applies too.
    pub(super) fn reuse(&self, task: &Task, key: &str) -> Result<Option<EvaluationStatus>, Error> {
        let a = self.attempt(task, key, 1);
        let Some((candidate, from)) = self.stored_run(key)? else {
            return Ok(None);
        };
        let baseline = match &a.baseline_key {
            Some(k) => match self.stored_run(k)? {
                Some((b, _)) => Some(b),
                None => return Ok(None),
            },
            None => None,
        };
        let running = lifecycle::running(&a, "reusing earlier results".into(), (self.now)());
        Ok(Some(lifecycle::finished(
            &running,
            &task.gates,
            &candidate,
            baseline.as_ref(),
            Some(&from),
            (self.now)(),
        )))
    }

    /// The runs an attempt still needs (those without finished results under their content
    /// address), as one job for the pool: the candidate's, then — if it produced results — the
    /// baseline's.
    fn local_job(&self, task: &Task) -> Result<impl FnOnce() -> Vec<Run> + Send + 'static, Error> {
        let mut wanted = Vec::new();
        let roles = std::iter::once(("candidate", task.version.clone(), task.artifact.clone()))
            .chain(task.baseline.clone().map(|(v, a)| ("baseline", v, a)));
        for (role, version, artifact) in roles {
            let key = evaluation::cache_key(&artifact, &task.dataset, &task.runner, &task.suite);
            if self.stored_run(&key)?.is_some() {
                continue;
            }
            let env = BTreeMap::from([
                ("SLIPWAY_ROLE".to_string(), role.to_string()),
                ("SLIPWAY_MODEL".to_string(), task.model.clone()),
                ("SLIPWAY_MODEL_VERSION".to_string(), version.clone()),
                ("SLIPWAY_MODEL_URI".to_string(), artifact.uri.clone()),
                ("SLIPWAY_MODEL_DIGEST".to_string(), artifact.digest.clone()),
                ("SLIPWAY_DATASET_URI".to_string(), task.dataset.uri.clone()),
                (
                    "SLIPWAY_DATASET_DIGEST".to_string(),
                    task.dataset.digest.clone().unwrap_or_default(),
                ),
            ]);
            let work_dir = self
                .state_dir
                .join("runs")
                .join(key.trim_start_matches("sha256:"));
            (self.progress)(&format!(
                "running {} on {} version {version} ({role})",
                task.suite, task.model
            ));
            wanted.push((role, key, version, env, work_dir));
        }
        let spec = task.runner.local.clone();
        let kinds = task.runner.set_variants().join(", ");
        let root = self.root.to_path_buf();
        let timeout = lifecycle::timeout(task.timeout.as_deref());
        Ok(move || {
            let mut runs = Vec::new();
            for (role, key, version, env, work_dir) in wanted {
                let outcome = match &spec {
                    Some(spec) => local::run(&local::Job {
                        spec,
                        root: &root,
                        work_dir,
                        env,
                        timeout,
                    })
                    .map_err(|e| e.to_string()),
                    None => Err(format!(
                        "the {kinds} runner does not run in git mode yet; use a local runner"
                    )),
                };
                let failed = outcome.is_err();
                runs.push(Run {
                    role,
                    key,
                    version,
                    outcome,
                });
                if failed {
                    break;
                }
            }
            runs
        })
    }

    /// Records an attempt's finished runs under their content addresses; returns the status the
    /// attempt leaves (finished, a retry due, or failed for good).
    fn settle(
        &self,
        task: &Task,
        running: &EvaluationStatus,
        runs: Vec<Run>,
    ) -> Result<EvaluationStatus, Error> {
        let mut failure = None;
        for run in runs {
            match run.outcome {
                Ok(results) => {
                    let status = EvaluationStatus {
                        phase: EvaluationPhase::Succeeded,
                        metrics: results.metrics.clone(),
                        samples: results
                            .samples
                            .iter()
                            .map(|s| Sample {
                                input: s.input.clone(),
                                expected: s.expected.clone(),
                                candidate: s.prediction.clone(),
                                baseline: None,
                            })
                            .collect(),
                        cache_key: Some(run.key.clone()),
                        completed_at: Some((self.now)()),
                        attempts: 1,
                        ..Default::default()
                    };
                    self.apply(&[Write::Evaluation(EvaluationRecord {
                        cache_key: run.key,
                        namespace: task.namespace.clone(),
                        name: task.name.clone(),
                        model: task.model.clone(),
                        version: run.version,
                        suite: task.suite.clone(),
                        status,
                    })])?;
                }
                Err(e) => failure = Some(format!("{} run failed: {e}", run.role)),
            }
        }
        let now = (self.now)();
        if let Some(why) = failure {
            return Ok(lifecycle::failed_attempt(running, &why, now));
        }
        let key = running.cache_key.clone().unwrap_or_default();
        let candidate = self.stored_run(&key)?.map(|(r, _)| r);
        let baseline = match &running.baseline_cache_key {
            Some(k) => self.stored_run(k)?.map(|(r, _)| Some(r)),
            None => Some(None),
        };
        Ok(match (candidate, baseline) {
            (Some(c), Some(b)) => {
                lifecycle::finished(running, &task.gates, &c, b.as_ref(), None, now)
            }
            _ => lifecycle::failed_attempt(
                running,
                "a run's results went missing from the store",
                now,
            ),
        })
    }

    /// The attempt an evaluation of `task` with content address `key` makes.
    pub(super) fn attempt(&self, task: &Task, key: &str, number: u32) -> lifecycle::Attempt {
        lifecycle::Attempt {
            key: key.to_string(),
            baseline_key: task
                .baseline
                .as_ref()
                .map(|(_, a)| evaluation::cache_key(a, &task.dataset, &task.runner, &task.suite)),
            baseline_version: task.baseline.as_ref().map(|b| b.0.clone()),
            number,
        }
    }

    pub(super) fn save_evaluation(
        &self,
        task: &Task,
        status: &EvaluationStatus,
    ) -> Result<(), Error> {
        self.apply(&[Write::Status {
            kind: "Evaluation".into(),
            namespace: task.namespace.clone(),
            name: task.name.clone(),
            status: serde_json::to_value(status)?,
        }])?;
        Ok(())
    }

    /// Carries a local suite's attempts forward from `next`: an attempt is recorded as running,
    /// then runs in the background pool; a later pass takes its outcome. Returns the finished
    /// status, or None while an attempt is in flight. Without a pool (tests), attempts run inline.
    pub(super) fn run_local(
        &self,
        task: &Task,
        key: &str,
        previous: Option<&EvaluationStatus>,
        next: lifecycle::Next,
    ) -> Result<Option<EvaluationStatus>, Error> {
        let mut next = next;
        loop {
            let after = match next {
                lifecycle::Next::Stands => return Ok(None),
                lifecycle::Next::GiveUp { attempts } => {
                    let p = previous.cloned().unwrap_or_default();
                    return Ok(Some(lifecycle::failed(
                        &p,
                        attempts,
                        "its last attempt never finished (the process running it stopped)",
                        (self.now)(),
                    )));
                }
                lifecycle::Next::Run { attempt } => {
                    let what = format!("running {} locally", task.suite);
                    let a = self.attempt(task, key, attempt);
                    let running = lifecycle::running(&a, what, (self.now)());
                    // Recorded before it starts: a restart finds the attempt and runs it again.
                    self.save_evaluation(task, &running)?;
                    let job = self.local_job(task)?;
                    match self.pool {
                        Some(pool) => {
                            pool.submit(&pool_key(task, key, attempt), move || Work::Runs(job()));
                            return Ok(None);
                        }
                        None => self.settle(task, &running, job())?,
                    }
                }
                lifecycle::Next::InFlight { attempt } => {
                    let running = previous.cloned().unwrap_or_default();
                    let id = pool_key(task, key, attempt);
                    match self.pool {
                        Some(pool) if pool.busy_with(&id) => return Ok(None),
                        Some(pool) => match pool.take(&id) {
                            Some(Work::Runs(runs)) => self.settle(task, &running, runs)?,
                            // Not this process's: the one running it stopped.
                            Some(Work::Dispatch(_)) | None => {
                                next = lifecycle::interrupted(attempt);
                                continue;
                            }
                        },
                        None => {
                            next = lifecycle::interrupted(attempt);
                            continue;
                        }
                    }
                }
            };
            if !lifecycle::retry_due(&after) {
                return Ok(Some(after));
            }
            if let Some(c) = after.conditions.first() {
                (self.progress)(&format!("{}: {}", task.name, c.message));
            }
            self.save_evaluation(task, &after)?;
            next = lifecycle::Next::Run {
                attempt: after.attempts + 1,
            };
        }
    }

    pub(super) fn evaluate(&self, task: &Task, out: &mut Outcome) -> Result<(), Error> {
        let key = evaluation::cache_key(&task.artifact, &task.dataset, &task.runner, &task.suite);
        let baseline_version = task.baseline.as_ref().map(|b| b.0.clone());
        let previous = self.evaluation_status(&task.namespace, &task.name)?;
        // A finished evaluation stands as it ran (against the baseline of its time); only a
        // change of what it is made of (its content address) runs it again.
        let external = task.runner.webhook.is_some();
        let next = lifecycle::next(previous.as_deref(), &key);
        if next == lifecycle::Next::Stands {
            return Ok(());
        }
        // Only an evaluation that has not started may take earlier results.
        let fresh = next == lifecycle::Next::Run { attempt: 1 };
        let reused = self
            .store
            .evaluation(&key)?
            .is_some_and(|r| r.status.phase == EvaluationPhase::Succeeded);
        let reused_status = match fresh {
            true => self.reuse(task, &key)?,
            false => None,
        };
        let finished = match reused_status {
            Some(reused) => Some(reused),
            // Dispatched, or waiting for the external job to report.
            None if external => self.external(task, &key, previous.as_deref())?,
            // Running in the background, or finished.
            None => self.run_local(task, &key, previous.as_deref(), next)?,
        };
        let Some(mut status) = finished else {
            return Ok(());
        };
        let object = Evaluation {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(task.name.clone()),
                namespace: Some(task.namespace.clone()),
                ..Default::default()
            },
            spec: task.spec(),
            status: Some(status.clone()),
        };
        let report_dir = self.state_dir.join("reports").join(&task.namespace);
        std::fs::create_dir_all(&report_dir).map_err(|source| Error::Report {
            path: report_dir.display().to_string(),
            source,
        })?;
        let md = report_dir.join(format!("{}.md", task.name));
        let html = report_dir.join(format!("{}.html", task.name));
        for (path, body) in [
            (&md, crate::decide::report::markdown(&object)),
            (&html, crate::decide::report::html(&object)),
        ] {
            std::fs::write(path, body).map_err(|source| Error::Report {
                path: path.display().to_string(),
                source,
            })?;
        }
        status.report = Some(html.display().to_string());
        let verdict = status.verdict.map(|v| format!("{v:?}")).unwrap_or_default();
        let mut h = self.history(
            "EvaluationCompleted",
            &task.namespace,
            &task.model,
            format!("Evaluation/{}", task.name),
        );
        h.version = Some(task.version.clone());
        h.decision = Some(verdict.to_lowercase());
        // A run that failed says why; a finished one names its baseline.
        h.message = match status
            .conditions
            .first()
            .filter(|_| status.phase == EvaluationPhase::Failed)
        {
            Some(c) => format!(
                "{} on {} version {}: {verdict} — {}",
                task.suite, task.model, task.version, c.message
            ),
            None => format!(
                "{} on {} version {} vs {}: {verdict}",
                task.suite,
                task.model,
                task.version,
                baseline_version.as_deref().unwrap_or("no baseline")
            ),
        };
        let seconds = status
            .completed_at
            .zip(status.started_at)
            .map(|(c, s)| (c - s).num_milliseconds() as f64 / 1000.0);
        h.data = json!({"metrics": status.metrics, "baselineMetrics": status.baseline_metrics, "report": status.report, "seconds": seconds});
        (self.progress)(&h.message);
        self.apply(&[
            Write::Status {
                kind: "Evaluation".into(),
                namespace: task.namespace.clone(),
                name: task.name.clone(),
                status: serde_json::to_value(&status)?,
            },
            Write::History(h),
        ])?;
        if reused {
            out.reused.push(task.name.clone());
        }
        out.evaluated.push(format!("{}: {verdict}", task.name));
        Ok(())
    }
}
