//! Git mode's evaluations: each suite run carried out by the rules of
//! [`crate::decide::evaluation::lifecycle`] — local commands attempt by attempt in a background
//! pool, webhook runners dispatched and waited for — with reports and history. No pass waits for
//! an evaluation: promotions and rollouts of every model go on while suites run.

use crate::decide::evaluation::{self, job, lifecycle, results::RunResults, step};
use crate::decide::events::Event as Happened;
use crate::decide::report::Format;
use crate::decide::tasks::Task;
use crate::edges::runners::local;
use crate::edges::source::dir;
use crate::edges::store::{EvaluationRecord, StoreError, Write};
use slipway_crd::EvaluationStatus;
use slipway_crd::evaluation::{EvaluationPhase, Sample};
use std::collections::BTreeMap;

use super::*;

/// One run an attempt made in the background: its role, content address, version and outcome.
pub struct Run {
    role: &'static str,
    key: String,
    version: String,
    outcome: Result<RunResults, String>,
    /// It wrote results that do not parse (the same run would write them again).
    invalid: bool,
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

    /// The results of a finished run of namespace `ns` with this content address, if any, and
    /// the evaluation that ran it.
    pub(super) fn stored_run(
        &self,
        ns: &str,
        key: &str,
    ) -> Result<Option<(RunResults, String)>, StoreError> {
        let record = self.store.evaluation(ns, key)?;
        Ok(record
            .as_ref()
            .and_then(|r| lifecycle::reusable(key, [(r.name.as_str(), &r.status)])))
    }

    /// Earlier finished results of namespace `ns` with the content addresses of `a`
    /// (candidate, and baseline if any). Within a namespace only, as in a cluster: a run of
    /// another namespace (another team's runner secrets, its own trust) is not this one's result.
    fn reusable(&self, ns: &str, a: &lifecycle::Attempt) -> Result<Option<step::Reusable>, Error> {
        let Some((candidate, from)) = self.stored_run(ns, &a.key)? else {
            return Ok(None);
        };
        let baseline = match &a.baseline_key {
            Some(k) => match self.stored_run(ns, k)? {
                Some((b, _)) => Some(b),
                None => return Ok(None),
            },
            None => None,
        };
        Ok(Some(step::Reusable {
            candidate,
            baseline,
            from,
        }))
    }

    /// The runs an attempt still needs (those without finished results under their content
    /// address), as one job for the pool: the candidate's, then — if it produced results — the
    /// baseline's.
    fn local_job(&self, task: &Task) -> Result<impl FnOnce() -> Vec<Run> + Send + 'static, Error> {
        let mut wanted = Vec::new();
        let run = |role, version: &str, artifact: &slipway_crd::model_version::Artifact| job::Run {
            role,
            version: version.to_string(),
            uri: artifact.uri.clone(),
            digest: artifact.digest.clone(),
            key: evaluation::cache_key(
                &task.model,
                artifact,
                &task.dataset,
                &task.runner,
                &task.suite,
            ),
        };
        let baseline = task
            .baseline
            .as_ref()
            .map(|(v, a)| run(job::Role::Baseline, v, a));
        for run in job::runs(
            run(job::Role::Candidate, &task.version, &task.artifact),
            baseline,
        ) {
            if self.stored_run(&task.namespace, &run.key)?.is_some() {
                continue;
            }
            let (role, key, version) = (run.role, run.key.clone(), run.version.clone());
            let env: BTreeMap<String, String> =
                job::environment(&task.model, &task.suite, &task.dataset, &run)
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect();
            // Per evaluation: another evaluation may be running the same run (a version's own
            // suite and, at once, another version's baseline, or another namespace's evaluation
            // of the same name); neither overwrites the other.
            let work_dir = self
                .state_dir
                .join("runs")
                .join(key.trim_start_matches("sha256:"))
                .join(&task.namespace)
                .join(&task.name);
            (self.progress)(&format!(
                "running {} on {} version {version} ({})",
                task.suite,
                task.model,
                role.as_str()
            ));
            // What the run reads is verified against its declared digests before it starts.
            let checks = [
                (
                    "spec.artifact.uri",
                    run.uri.clone(),
                    Some(run.digest.clone()),
                ),
                (
                    "dataset.uri",
                    task.dataset.uri.clone(),
                    task.dataset.digest.clone(),
                ),
            ];
            wanted.push((role.as_str(), key, version, env, work_dir, checks));
        }
        let spec = task.runner.local.clone();
        let kinds = task.runner.set_variants().join(", ");
        // A local job runs in the revision's files: a git commit is checked out when first
        // needed, and a checkout that fails is the pass's error, not the job's.
        let root = match &spec {
            Some(_) => Some(self.root.path().map_err(Error::Checkout)?),
            None => None,
        };
        let timeout = lifecycle::timeout(task.timeout.as_deref());
        Ok(move || {
            let mut runs = Vec::new();
            for (role, key, version, env, work_dir, checks) in wanted {
                let verified = |root: &std::path::Path| {
                    checks.iter().try_for_each(|(field, uri, digest)| {
                        dir::verify(root, field, uri, digest.as_deref())
                    })
                };
                let (outcome, invalid) = match (&spec, &root) {
                    (Some(_), Some(root)) if let Err(e) = verified(root) => (Err(e), false),
                    (Some(spec), Some(root)) => match local::run(&local::Job {
                        spec,
                        root,
                        work_dir,
                        env,
                        timeout,
                    }) {
                        Ok(results) => (Ok(results), false),
                        Err(e) => {
                            let invalid = matches!(e, local::RunError::BadResults { .. });
                            (Err(e.to_string()), invalid)
                        }
                    },
                    _ => (
                        Err(format!(
                            "the {kinds} runner does not run in git mode yet; use a local runner"
                        )),
                        false,
                    ),
                };
                let failed = outcome.is_err();
                runs.push(Run {
                    role,
                    key,
                    version,
                    outcome,
                    invalid,
                });
                if failed {
                    break;
                }
            }
            runs
        })
    }

    /// Records an attempt's finished runs under their content addresses; returns what the
    /// attempt came to (its results, or why it failed).
    fn settle(
        &self,
        task: &Task,
        running: &EvaluationStatus,
        runs: Vec<Run>,
    ) -> Result<step::Seen, Error> {
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
                // Results that do not parse would be written the same way again.
                Err(e) if run.invalid => {
                    failure = Some(step::Seen::Invalid(format!("{} run failed: {e}", run.role)))
                }
                Err(e) => {
                    failure = Some(step::Seen::Failed(format!("{} run failed: {e}", run.role)))
                }
            }
        }
        if let Some(seen) = failure {
            return Ok(seen);
        }
        Ok(self
            .stored_results(&task.namespace, running)?
            .unwrap_or_else(|| {
                step::Seen::Failed("a run's results went missing from the store".into())
            }))
    }

    /// What an evaluation of `task` with content address `key` is made of (the step chooses the
    /// attempt's number).
    pub(super) fn attempt(&self, task: &Task, key: &str) -> lifecycle::Attempt {
        lifecycle::Attempt {
            key: key.to_string(),
            baseline_key: task.baseline.as_ref().map(|(_, a)| {
                evaluation::cache_key(&task.model, a, &task.dataset, &task.runner, &task.suite)
            }),
            baseline_version: task.baseline.as_ref().map(|b| b.0.clone()),
            number: 0,
            round: 0,
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

    /// What the step sees of `task`: names, runner, gates, content addresses, recorded status.
    pub(super) fn input<'a>(
        &self,
        task: &'a Task,
        a: &'a lifecycle::Attempt,
        previous: Option<&'a EvaluationStatus>,
    ) -> step::Input<'a> {
        step::Input {
            name: &task.name,
            suite: &task.suite,
            model: &task.model,
            version: &task.version,
            runner: &task.runner,
            gates: &task.gates,
            timeout: task.timeout.as_deref(),
            attempt: a,
            previous,
            now: (self.now)(),
        }
    }

    /// Why `task` cannot run in git mode at all, if it cannot.
    fn cannot_run(&self, task: &Task) -> Option<String> {
        if task.runner.webhook.is_some() && self.results_url.is_none() {
            return Some(
                "a webhook runner needs the results API: run `slipway run` with --listen".into(),
            );
        }
        if task.runner.local.is_none() && task.runner.webhook.is_none() {
            let kinds = task.runner.set_variants().join(", ");
            return Some(format!(
                "the {kinds} runner does not run in git mode yet; use a local or webhook runner"
            ));
        }
        None
    }

    /// What became of a local attempt in flight: still running in the pool, its runs (recorded
    /// under their content addresses), or no trace (the process running it stopped).
    fn seen_local(&self, task: &Task, running: &EvaluationStatus) -> Result<step::Seen, Error> {
        let key = running.cache_key.clone().unwrap_or_default();
        let id = pool_key(task, &key, running.attempts);
        match self.pool {
            // Queued or running: the process is killed at the suite's timeout by its runner.
            Some(pool) if pool.busy_with(&id) => Ok(step::Seen::Held),
            Some(pool) => match pool.take(&id) {
                Some(Work::Runs(runs)) => self.settle(task, running, runs),
                Some(Work::Dispatch(_)) | None => Ok(step::Seen::Nothing),
            },
            None => Ok(step::Seen::Nothing),
        }
    }

    /// Finished results of both runs of `running` (candidate, and baseline if any), from the
    /// store; None while one is missing.
    pub(super) fn stored_results(
        &self,
        ns: &str,
        running: &EvaluationStatus,
    ) -> Result<Option<step::Seen>, Error> {
        let key = running.cache_key.clone().unwrap_or_default();
        let Some((candidate, _)) = self.stored_run(ns, &key)? else {
            return Ok(None);
        };
        let baseline = match &running.baseline_cache_key {
            Some(k) => match self.stored_run(ns, k)? {
                Some((b, _)) => Some(b),
                None => return Ok(None),
            },
            None => None,
        };
        Ok(Some(step::Seen::Results {
            candidate,
            baseline,
        }))
    }

    /// Takes one evaluation forward by [`step::step`] — the step Kubernetes mode takes too:
    /// observe (the attempt in flight, earlier results, whether it can run here), decide, carry
    /// out (record, start a local attempt in the pool or dispatch an external one), write; a
    /// finished evaluation gets its report and its `EvaluationCompleted` history entry.
    pub(super) fn evaluate(&self, task: &Task, out: &mut PassReport) -> Result<(), Error> {
        let key = evaluation::cache_key(
            &task.model,
            &task.artifact,
            &task.dataset,
            &task.runner,
            &task.suite,
        );
        let stored = self.evaluation_status(&task.namespace, &task.name)?;
        // The step's first rule, asked before anything is copied or hashed: a finished
        // evaluation stands (a no-change pass over 10,000 evaluations is mostly this).
        let judged = evaluation::judged_by(&task.gates, task.timeout.as_deref());
        if lifecycle::next(stored.as_deref(), &key, &judged) == lifecycle::Next::Stands {
            return Ok(());
        }
        let a = self.attempt(task, &key);
        let mut previous = stored.map(|s| (*s).clone());
        let external = task.runner.webhook.is_some();
        // What an attempt run inline (no pool: tests) came to, for the next step.
        let mut inline: Option<step::Seen> = None;
        // A retry is started at once; a few steps per attempt at most.
        for _ in 0..3 * lifecycle::EVALUATION_ATTEMPTS {
            let recorded = previous
                .as_ref()
                .filter(|p| p.cache_key.as_deref() == Some(key.as_str()));
            let started = recorded.filter(|s| s.attempts > 0);
            let in_flight =
                started.filter(|s| s.phase == EvaluationPhase::Running && !lifecycle::retry_due(s));
            let seen = match (inline.take(), in_flight) {
                (Some(seen), _) => Some(seen),
                (None, Some(s)) if external => Some(self.seen_external(task, s)?),
                (None, Some(s)) => Some(self.seen_local(task, s)?),
                (None, None) => None,
            };
            let observed = step::Observed {
                seen,
                reusable: match (recorded, started) {
                    (_, Some(_)) => None,
                    _ => self.reusable(&task.namespace, &a)?,
                },
                cannot_run: self.cannot_run(task),
            };
            let next = step::step(&self.input(task, &a, previous.as_ref()), observed);
            let Some(status) = next.status else {
                return Ok(());
            };
            let reused = next.notes.iter().any(|n| n.event == Happened::Reused);
            if matches!(
                status.phase,
                EvaluationPhase::Succeeded | EvaluationPhase::Failed
            ) {
                return self.finish(task, &a, status, reused, out);
            }
            for n in next.notes.iter().filter(|n| n.event == Happened::Retrying) {
                (self.progress)(&format!("{}: {}", task.name, n.message));
            }
            let status = match next.start {
                Some(number) if external => match self.dispatch(task, &status, number)? {
                    Some(after) if after.phase == EvaluationPhase::Failed => {
                        return self.finish(task, &a, after, false, out);
                    }
                    Some(after) => {
                        self.save_evaluation(task, &after)?;
                        after
                    }
                    None => status,
                },
                Some(number) => {
                    inline = self.start_local(task, &status, number)?;
                    status
                }
                None => {
                    self.save_evaluation(task, &status)?;
                    status
                }
            };
            // A retry is due now, or an attempt ran inline and its outcome is to be taken.
            if !lifecycle::retry_due(&status) && inline.is_none() {
                return Ok(());
            }
            previous = Some(status);
        }
        Ok(())
    }

    /// Records attempt `number` as running, then starts it in the background pool; without one
    /// (tests) it runs inline and what it came to is returned for the next step.
    fn start_local(
        &self,
        task: &Task,
        running: &EvaluationStatus,
        number: u32,
    ) -> Result<Option<step::Seen>, Error> {
        // Built first, with the revision's files on disk: when they cannot be, the pass fails
        // and backs off before any attempt is recorded.
        let job = self.local_job(task)?;
        // Recorded before it starts: a restart finds the attempt and counts it.
        self.save_evaluation(task, running)?;
        let key = running.cache_key.clone().unwrap_or_default();
        match self.pool {
            // Not queued only when that very attempt is already queued or done: nothing to add.
            Some(pool) => {
                pool.submit(&pool_key(task, &key, number), move || Work::Runs(job()));
                Ok(None)
            }
            None => Ok(Some(self.settle(task, running, job())?)),
        }
    }

    /// Writes a finished evaluation: its reports, its status and its `EvaluationCompleted`
    /// history entry (one text and one set of data keys with Kubernetes mode:
    /// [`step::completion`]).
    fn finish(
        &self,
        task: &Task,
        a: &lifecycle::Attempt,
        mut status: EvaluationStatus,
        reused: bool,
        out: &mut PassReport,
    ) -> Result<(), Error> {
        // Written at the end of the pass (`write_reports`), with the results it ends with.
        let html = self.report_path(&task.namespace, &task.name, Format::Html);
        status.report = Some(html.display().to_string());
        out.reports
            .push((task.namespace.clone(), task.name.clone()));
        let Some(done) = step::completion(&self.input(task, a, None), &status) else {
            return Ok(());
        };
        let mut h = self.history(
            Happened::EvaluationCompleted,
            &task.namespace,
            &task.model,
            format!("Evaluation/{}", task.name),
        );
        h.version = Some(task.version.clone());
        h.decision = Some(done.decision);
        h.message = done.message;
        h.data = done.data;
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
        let verdict = status.verdict.map_or("Failed", |v| v.as_str());
        out.evaluated.push(format!("{}: {verdict}", task.name));
        if status.verdict != Some(slipway_crd::evaluation::Verdict::Passed) {
            out.failed_evaluations.push((
                task.namespace.clone(),
                task.model.clone(),
                task.version.clone(),
            ));
        }
        Ok(())
    }
}
