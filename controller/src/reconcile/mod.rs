//! The git-mode reconciler: register versions, run and report evaluations, and promote aliases
//! whose data rules pass — recording every step in the store's history.
//!
//! Decisions come from the pure core ([`plan`], `evaluation`, `policy`); this module sequences
//! them and carries out their effects (subprocesses, report files, store writes).

mod deploy;
pub mod external;
pub mod plan;
pub mod retry;
mod sagemaker;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use slipway_crd::evaluation::{EvaluationPhase, Sample};
use slipway_crd::{Evaluation, EvaluationSpec, EvaluationStatus, Kind};

use self::plan::Task;
use crate::catalog::{Catalog, Resource};
use crate::evaluation::{self, lifecycle, results::RunResults};
use crate::policy::context::{self, Results};
use crate::policy::{ChangeFacts, DecisionInput, Requester};
use crate::runner::local;
use crate::store::{EvaluationRecord, HistoryEntry, Store, StoreError, Write};
use slipway_crd::promotion_policy::Operation;

/// Why a pass stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A report could not be written.
    #[error("cannot write the report {path}: {source}")]
    Report {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Store(StoreError::Decode(e))
    }
}

impl Error {
    /// Short stable name for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Store(e) => e.category(),
            Error::Report { .. } => "report-io",
        }
    }
}

/// What one pass did, for progress output and tests.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Outcome {
    /// Versions seen for the first time.
    pub registered: Vec<String>,
    /// Evaluations that ran and finished (name: verdict).
    pub evaluated: Vec<String>,
    /// Evaluations whose content-addressed result already existed.
    pub reused: Vec<String>,
    /// Aliases moved (`model/alias: from → to`).
    pub moved: Vec<String>,
    /// Alias moves held by policy (`model/alias → to: why`).
    pub blocked: Vec<String>,
    /// Alias moves waiting for evaluations.
    pub waiting: Vec<String>,
    /// Rollout events (steps, successes, rollbacks).
    pub rollout_events: Vec<String>,
    /// Deployment errors (ports taken, servers that do not start).
    pub deploy_errors: Vec<String>,
}

/// The reconciler's fixed inputs.
pub struct Reconciler<'a> {
    /// The state store.
    pub store: &'a Store,
    /// The registry folder (evaluation jobs run relative to it).
    pub root: &'a Path,
    /// The state folder (reports and job folders go under it).
    pub state_dir: &'a Path,
    /// The source revision being reconciled (a git commit, or `folder`).
    pub revision: String,
    /// The clock.
    pub now: &'a dyn Fn() -> DateTime<Utc>,
    /// Progress lines (to a terminal or a log).
    pub progress: &'a dyn Fn(&str),
    /// Base URL of this instance's results API (`--listen`), for external evaluation jobs.
    pub results_url: Option<String>,
}

const FINISHED: [EvaluationPhase; 2] = [EvaluationPhase::Succeeded, EvaluationPhase::Failed];

impl Reconciler<'_> {
    fn history(&self, event: &str, ns: &str, model: &str, subject: String) -> HistoryEntry {
        HistoryEntry {
            id: 0,
            at: (self.now)(),
            event: event.into(),
            namespace: ns.into(),
            model: model.into(),
            subject,
            version: None,
            alias: None,
            actor: Some("slipway".into()),
            revision: Some(self.revision.clone()),
            decision: None,
            message: String::new(),
            data: Value::Null,
        }
    }

    /// One pass over a valid catalog.
    ///
    /// Evaluations whose baseline alias is about to be promoted for the first time wait for that
    /// promotion, so that (for example) version 8 is compared with production = 7 on the very
    /// first run; the pass alternates evaluating and promoting until nothing more can move.
    pub fn reconcile(&self, catalog: &Catalog) -> Result<Outcome, Error> {
        let mut out = Outcome::default();
        self.register(catalog, &mut out)?;
        let mut done: BTreeSet<String> = BTreeSet::new();
        loop {
            let resolved =
                |ns: &str, model: &str, alias: &str| self.resolved_alias(catalog, ns, model, alias);
            let ready: Vec<Task> = plan::tasks(catalog, &resolved)
                .into_iter()
                .filter(|t| !done.contains(&t.name) && !self.awaits_baseline(catalog, t))
                .collect();
            for task in &ready {
                self.evaluate(task, &mut out)?;
                done.insert(task.name.clone());
            }
            let moved = out.moved.len();
            out.waiting.clear();
            out.blocked.clear();
            self.promote(catalog, &mut out)?;
            if ready.is_empty() && out.moved.len() == moved {
                break;
            }
        }
        Ok(out)
    }

    /// Whether a task's baseline alias has never been promoted but is about to be (to another version).
    fn awaits_baseline(&self, catalog: &Catalog, task: &Task) -> bool {
        let Some(model) = catalog.model(&task.namespace, &task.model) else {
            return false;
        };
        let Some(alias) = model
            .spec
            .evaluations
            .iter()
            .find(|s| s.name == task.suite)
            .and_then(|s| s.baseline.as_ref())
            .and_then(|b| b.alias.as_deref())
        else {
            return false;
        };
        let Some(wanted) = catalog.alias(&task.namespace, &task.model, alias) else {
            return false;
        };
        wanted.spec.version != task.version
            && self
                .resolved_alias(catalog, &task.namespace, &task.model, alias)
                .is_none()
    }

    fn register(&self, catalog: &Catalog, out: &mut Outcome) -> Result<(), Error> {
        for obj in catalog.objects() {
            let Resource::ModelVersion(v) = &obj.resource else {
                continue;
            };
            let ns = &obj.key.namespace;
            if self
                .store
                .status("ModelVersion", ns, &obj.key.name)?
                .is_some()
            {
                continue;
            }
            let mut h = self.history(
                "VersionRegistered",
                ns,
                &v.spec.model,
                format!("ModelVersion/{}", obj.key.name),
            );
            h.version = Some(v.spec.version.clone());
            h.message = format!(
                "{} version {} registered ({})",
                v.spec.model, v.spec.version, v.spec.artifact.uri
            );
            self.store.apply(&[
                Write::Status {
                    kind: "ModelVersion".into(),
                    namespace: ns.clone(),
                    name: obj.key.name.clone(),
                    status: json!({"registeredAt": h.at}),
                },
                Write::History(h),
            ])?;
            (self.progress)(&format!(
                "registered {} version {}",
                v.spec.model, v.spec.version
            ));
            out.registered
                .push(format!("{}/{}", v.spec.model, v.spec.version));
        }
        Ok(())
    }

    /// The version an alias resolves to: as last promoted, else (never promoted) nothing.
    fn resolved_alias(
        &self,
        catalog: &Catalog,
        ns: &str,
        model: &str,
        alias: &str,
    ) -> Option<String> {
        let obj = catalog.objects().iter().find(|o| {
            matches!(&o.resource, Resource::ModelAlias(a) if o.key.namespace == ns && a.spec.model == model && a.spec.alias == alias)
        })?;
        let status = self.store.status("ModelAlias", ns, &obj.key.name).ok()??;
        status
            .get("resolvedVersion")
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    fn evaluation_status(
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
    fn stored_run(&self, key: &str) -> Result<Option<(RunResults, String)>, StoreError> {
        let record = self.store.evaluation(key)?;
        Ok(record
            .as_ref()
            .and_then(|r| lifecycle::reusable(key, [(r.name.as_str(), &r.status)])))
    }

    /// Finishes an evaluation at once when every run it needs (candidate, and baseline if any)
    /// already has finished results with the same content address — the rule Kubernetes mode
    /// applies too.
    fn reuse(&self, task: &Task, key: &str) -> Result<Option<EvaluationStatus>, Error> {
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

    fn run_once(
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
    fn attempt(&self, task: &Task, key: &str, number: u32) -> lifecycle::Attempt {
        lifecycle::Attempt {
            key: key.to_string(),
            baseline_key: task.baseline.as_ref().map(|(_, a)| {
                evaluation::cache_key(&a.digest, &task.dataset, &task.runner, &task.suite)
            }),
            baseline_version: task.baseline.as_ref().map(|b| b.0.clone()),
            number,
        }
    }

    fn save_evaluation(&self, task: &Task, status: &EvaluationStatus) -> Result<(), Error> {
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
    fn run_local(&self, task: &Task, key: &str, first: u32) -> Result<EvaluationStatus, Error> {
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

    fn evaluate(&self, task: &Task, out: &mut Outcome) -> Result<(), Error> {
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
            (&md, crate::report::markdown(&object)),
            (&html, crate::report::html(&object)),
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

    /// The evaluations of the revision, as documents with the status the store has for them.
    pub fn evaluations(&self, catalog: &Catalog) -> Result<Vec<Evaluation>, Error> {
        let resolved =
            |ns: &str, model: &str, alias: &str| self.resolved_alias(catalog, ns, model, alias);
        let mut evaluations = Vec::new();
        for t in plan::tasks(catalog, &resolved) {
            if let Some(status) = self.evaluation_status(&t.namespace, &t.name)? {
                let mut e = Evaluation::new(
                    &t.name,
                    EvaluationSpec {
                        model: t.model,
                        version: t.version,
                        suite: t.suite,
                        ..Default::default()
                    },
                );
                e.metadata.namespace = Some(t.namespace);
                e.status = Some(status);
                evaluations.push(e);
            }
        }
        Ok(evaluations)
    }

    fn results_of(&self, catalog: &Catalog) -> Result<Results, Error> {
        let mut results = Results::default();
        results.add(self.evaluations(catalog)?.iter());
        Ok(results)
    }

    /// Writes an alias's new status and the history entry that explains it, together.
    fn save_alias(
        &self,
        ns: &str,
        name: &str,
        status: Value,
        entry: HistoryEntry,
    ) -> Result<(), Error> {
        (self.progress)(&entry.message);
        self.store.apply(&[
            Write::Status {
                kind: "ModelAlias".into(),
                namespace: ns.into(),
                name: name.into(),
                status,
            },
            Write::History(entry),
        ])?;
        Ok(())
    }

    fn promote(&self, catalog: &Catalog, out: &mut Outcome) -> Result<(), Error> {
        let results = self.results_of(catalog)?;
        for obj in catalog.objects() {
            let Resource::ModelAlias(a) = &obj.resource else {
                continue;
            };
            let ns = obj.key.namespace.as_str();
            let status = self
                .store
                .status("ModelAlias", ns, &obj.key.name)?
                .unwrap_or(Value::Null);
            let resolved = status
                .get("resolvedVersion")
                .and_then(Value::as_str)
                .map(str::to_string);
            let to = &a.spec.version;
            if resolved.as_deref() == Some(to.as_str()) {
                continue;
            }
            let label = format!("{}/{}", a.spec.model, a.spec.alias);
            let decision = match promotion(
                catalog,
                &results,
                ns,
                &obj.key.name,
                a,
                resolved.as_deref(),
                "git",
                (self.now)(),
            ) {
                Promotion::Unresolvable => continue,
                Promotion::Waiting(pending) => {
                    out.waiting.push(format!(
                        "{label} → {to}: waiting for {}",
                        pending.join(", ")
                    ));
                    continue;
                }
                Promotion::Decided(decision) => decision,
            };
            let from = resolved.clone().unwrap_or_else(|| "(none)".into());
            let mut h = self.history(
                if decision.allowed {
                    "AliasMoved"
                } else {
                    "PromotionBlocked"
                },
                ns,
                &a.spec.model,
                format!("ModelAlias/{}", obj.key.name),
            );
            h.version = Some(to.clone());
            h.alias = Some(a.spec.alias.clone());
            h.decision = Some(
                if decision.allowed {
                    "allowed"
                } else {
                    "denied"
                }
                .into(),
            );
            h.data = serde_json::to_value(&decision)?;
            if decision.allowed {
                h.message = format!("{label}: {from} → {to}");
                let mut history = status
                    .get("history")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                history.push(json!({"from": resolved, "to": to, "at": h.at, "revision": self.revision, "decision": "allowed"}));
                let new_status =
                    json!({"resolvedVersion": to, "previousVersion": resolved, "history": history});
                self.save_alias(ns, &obj.key.name, new_status, h)?;
                out.moved.push(format!("{label}: {from} → {to}"));
            } else {
                let why = decision.summary();
                h.message = format!("{label} → {to} held: {why}");
                out.blocked.push(format!("{label} → {to}: {why}"));
                // Record a hold once per (version, revision), not on every pass.
                let held = status.get("held").cloned().unwrap_or(Value::Null);
                let this = json!({"version": to, "revision": self.revision});
                if held != this {
                    let mut new_status = if status.is_object() {
                        status.clone()
                    } else {
                        json!({})
                    };
                    new_status["held"] = this;
                    new_status["heldMessage"] = Value::String(why);
                    self.save_alias(ns, &obj.key.name, new_status, h)?;
                }
            }
        }
        Ok(())
    }
}

/// Where an alias move stands, by the data rules of the policies.
#[derive(Debug)]
pub enum Promotion {
    /// The model or the target version does not exist (validation reports it).
    Unresolvable,
    /// Evaluation suites of the candidate that have not finished.
    Waiting(Vec<String>),
    /// The rules' decision (approvals are enforced before: on the pull request, or at admission).
    Decided(crate::policy::Decision),
}

/// Decides moving alias `a` (object `name` in `ns`) from `resolved` to `a.spec.version` once the
/// candidate's evaluations have finished. Pure: the same decision in git and Kubernetes mode.
#[allow(clippy::too_many_arguments)]
pub fn promotion(
    catalog: &Catalog,
    results: &Results,
    ns: &str,
    name: &str,
    a: &slipway_crd::ModelAlias,
    resolved: Option<&str>,
    source: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Promotion {
    let to = &a.spec.version;
    let (Some(model), Some(candidate)) = (
        catalog.model(ns, &a.spec.model),
        catalog.version(ns, &a.spec.model, to),
    ) else {
        return Promotion::Unresolvable;
    };
    let done: BTreeSet<String> = results
        .of(ns, &a.spec.model, to)
        .map(|r| {
            r.values()
                .filter(|e| {
                    e.status
                        .as_ref()
                        .is_some_and(|s| FINISHED.contains(&s.phase))
                })
                .map(|e| e.spec.suite.clone())
                .collect()
        })
        .unwrap_or_default();
    let pending: Vec<String> = model
        .spec
        .evaluations
        .iter()
        .map(|s| s.name.clone())
        .filter(|s| !done.contains(s))
        .collect();
    if !pending.is_empty() {
        return Promotion::Waiting(pending);
    }
    let input = DecisionInput {
        change: ChangeFacts {
            kind: Kind::ModelAlias.as_str().into(),
            name: name.to_string(),
            namespace: ns.into(),
            operation: if resolved.is_some() {
                Operation::Update
            } else {
                Operation::Create
            },
            model: Some(a.spec.model.clone()),
            alias: Some(a.spec.alias.clone()),
            from: resolved.map(str::to_string),
            to: Some(to.clone()),
        },
        candidate: context::version(candidate, results),
        current: resolved
            .and_then(|r| catalog.version(ns, &a.spec.model, r))
            .map(|v| context::version(v, results))
            .unwrap_or(Value::Null),
        model: context::model(model),
        request: Requester {
            user: None,
            groups: vec![],
            source: source.into(),
        },
        now,
    };
    Promotion::Decided(catalog.policies.decide_rules(&input))
}

#[cfg(test)]
mod tests;
