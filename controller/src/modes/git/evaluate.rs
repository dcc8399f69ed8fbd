//! Git mode's evaluations: each suite run carried out by the rules of
//! [`crate::decide::evaluation::lifecycle`] — local commands attempt by attempt within the pass,
//! webhook runners dispatched and waited for — with reports and history.

use crate::decide::evaluation::tasks::Task;
use crate::decide::evaluation::{self, lifecycle, results::RunResults};
use crate::edges::runners::local;
use crate::edges::store::{EvaluationRecord, StoreError, Write};
use serde_json::json;
use slipway_crd::evaluation::{EvaluationPhase, Sample};
use slipway_crd::{Evaluation, EvaluationSpec, EvaluationStatus};
use std::collections::BTreeMap;

use super::*;

impl Reconciler<'_> {
    pub(super) fn evaluation_status(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<EvaluationStatus>, StoreError> {
        Ok(self
            .store
            .status("Evaluation", ns, name)?
            .map(serde_json::from_value)
            .transpose()?)
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

    pub(super) fn run_once(
        &self,
        task: &Task,
        version: &str,
        artifact_uri: &str,
        digest: &str,
        role: &str,
    ) -> Result<Result<RunResults, String>, StoreError> {
        let key = evaluation::cache_key(digest, &task.dataset, &task.runner, &task.suite);
        if let Some((results, _)) = self.stored_run(&key)? {
            return Ok(Ok(results));
        }
        let Some(spec) = &task.runner.local else {
            let kind = task.runner.set_variants().join(", ");
            return Ok(Err(format!(
                "the {kind} runner does not run in git mode yet; use a local runner"
            )));
        };
        let env = BTreeMap::from([
            ("SLIPWAY_ROLE".to_string(), role.to_string()),
            ("SLIPWAY_MODEL".to_string(), task.model.clone()),
            ("SLIPWAY_MODEL_VERSION".to_string(), version.to_string()),
            ("SLIPWAY_MODEL_URI".to_string(), artifact_uri.to_string()),
            ("SLIPWAY_MODEL_DIGEST".to_string(), digest.to_string()),
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
        let job = local::Job {
            spec,
            root: self.root,
            work_dir,
            env,
            timeout: lifecycle::timeout(task.timeout.as_deref()),
        };
        match local::run(&job) {
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
                    cache_key: Some(key.clone()),
                    completed_at: Some((self.now)()),
                    attempts: 1,
                    ..Default::default()
                };
                self.store.apply(&[Write::Evaluation(EvaluationRecord {
                    cache_key: key,
                    namespace: task.namespace.clone(),
                    name: task.name.clone(),
                    model: task.model.clone(),
                    version: version.to_string(),
                    suite: task.suite.clone(),
                    status,
                })])?;
                Ok(Ok(results))
            }
            Err(e) => Ok(Err(e.to_string())),
        }
    }

    /// The attempt an evaluation of `task` with content address `key` makes.
    pub(super) fn attempt(&self, task: &Task, key: &str, number: u32) -> lifecycle::Attempt {
        lifecycle::Attempt {
            key: key.to_string(),
            baseline_key: task.baseline.as_ref().map(|(_, a)| {
                evaluation::cache_key(&a.digest, &task.dataset, &task.runner, &task.suite)
            }),
            baseline_version: task.baseline.as_ref().map(|b| b.0.clone()),
            number,
        }
    }

    pub(super) fn save_evaluation(
        &self,
        task: &Task,
        status: &EvaluationStatus,
    ) -> Result<(), Error> {
        self.store.apply(&[Write::Status {
            kind: "Evaluation".into(),
            namespace: task.namespace.clone(),
            name: task.name.clone(),
            status: serde_json::to_value(status)?,
        }])?;
        Ok(())
    }

    /// Runs a local suite's attempts back to back (from attempt `first`) until one produces
    /// results or every attempt has failed; returns the finished status.
    pub(super) fn run_local(
        &self,
        task: &Task,
        key: &str,
        first: u32,
    ) -> Result<EvaluationStatus, Error> {
        let mut number = first;
        loop {
            let what = format!("running {} locally", task.suite);
            let running = lifecycle::running(&self.attempt(task, key, number), what, (self.now)());
            self.save_evaluation(task, &running)?;
            let candidate = self.run_once(
                task,
                &task.version,
                &task.artifact.uri,
                &task.artifact.digest,
                "candidate",
            )?;
            let baseline = match (&candidate, &task.baseline) {
                (Ok(_), Some((v, a))) => {
                    Some(self.run_once(task, v, &a.uri, &a.digest, "baseline")?)
                }
                _ => None,
            };
            let why = match (candidate, baseline) {
                (Ok(c), None) => {
                    return Ok(lifecycle::finished(
                        &running,
                        &task.gates,
                        &c,
                        None,
                        None,
                        (self.now)(),
                    ));
                }
                (Ok(c), Some(Ok(b))) => {
                    return Ok(lifecycle::finished(
                        &running,
                        &task.gates,
                        &c,
                        Some(&b),
                        None,
                        (self.now)(),
                    ));
                }
                (Err(e), _) => format!("candidate run failed: {e}"),
                (_, Some(Err(e))) => format!("baseline run failed: {e}"),
            };
            let after = lifecycle::failed_attempt(&running, &why, (self.now)());
            if !lifecycle::retry_due(&after) {
                return Ok(after);
            }
            if let Some(c) = after.conditions.first() {
                (self.progress)(&format!("{}: {}", task.name, c.message));
            }
            self.save_evaluation(task, &after)?;
            number += 1;
        }
    }

    pub(super) fn evaluate(&self, task: &Task, out: &mut Outcome) -> Result<(), Error> {
        let key = evaluation::cache_key(
            &task.artifact.digest,
            &task.dataset,
            &task.runner,
            &task.suite,
        );
        let baseline_version = task.baseline.as_ref().map(|b| b.0.clone());
        let previous = self.evaluation_status(&task.namespace, &task.name)?;
        // A finished evaluation stands as it ran (against the baseline of its time); only a
        // change of what it is made of (its content address) runs it again.
        let external = task.runner.webhook.is_some();
        let next = match lifecycle::next(previous.as_ref(), &key) {
            // A local run in flight at the start of a pass: the process running it stopped.
            lifecycle::Next::InFlight { attempt } if !external => lifecycle::interrupted(attempt),
            next => next,
        };
        // Only an evaluation that has not started may take earlier results.
        let fresh = next == lifecycle::Next::Run { attempt: 1 };
        let first = match next {
            lifecycle::Next::Stands => return Ok(()),
            lifecycle::Next::Run { attempt } | lifecycle::Next::InFlight { attempt } => {
                Some(attempt)
            }
            lifecycle::Next::GiveUp { .. } => None,
        };
        let reused = self
            .store
            .evaluation(&key)?
            .is_some_and(|r| r.status.phase == EvaluationPhase::Succeeded);
        let reused_status = match fresh {
            true => self.reuse(task, &key)?,
            false => None,
        };
        let mut status = match (reused_status, first) {
            (Some(reused), _) => reused,
            (None, None) => {
                let p = previous.clone().unwrap_or_default();
                lifecycle::failed(
                    &p,
                    p.attempts,
                    "its last attempt never finished (the process running it stopped)",
                    (self.now)(),
                )
            }
            (None, Some(_)) if external => {
                match self.external(task, &key, previous.as_ref())? {
                    Some(finished) => finished,
                    None => return Ok(()), // dispatched; waiting for the job to report
                }
            }
            (None, Some(first)) => self.run_local(task, &key, first)?,
        };
        let object = Evaluation {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(task.name.clone()),
                namespace: Some(task.namespace.clone()),
                ..Default::default()
            },
            spec: EvaluationSpec {
                model: task.model.clone(),
                version: task.version.clone(),
                suite: task.suite.clone(),
                dataset: task.dataset.clone(),
                runner: task.runner.clone(),
                gates: task.gates.clone(),
                timeout: task.timeout.clone(),
                baseline: None,
            },
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
        self.store.apply(&[
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
