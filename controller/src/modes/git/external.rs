//! The `webhook` runner: Slipway asks an external system (a CI workflow, a batch platform) to run
//! an evaluation, and the job reports back through the results API with a per-evaluation bearer
//! token (`POST /api/v1/evaluations/{namespace}/{name}/results`).

use serde::Deserialize;
use serde_json::json;
use slipway_crd::EvaluationStatus;
use slipway_crd::evaluation::EvaluationPhase;

use super::evaluate::Work;
use super::{Error, Reconciler};
use crate::decide::evaluation::tasks::Task;
use crate::decide::evaluation::{
    lifecycle,
    results::{self, RunResults},
};
use crate::edges::notify::{Delivery, Notifier, secret};
use crate::edges::runners::webhook::dispatch_message;
use crate::edges::store::Write;

/// Kind of the store rows that remember a dispatched evaluation.
pub const DISPATCH: &str = "EvaluationDispatch";

impl Reconciler<'_> {
    /// Dispatches an external evaluation once per attempt, then waits for its results. Returns
    /// the finished status when both runs have reported or the evaluation failed for good; None
    /// while waiting (or after a failed attempt whose retry the next pass dispatches).
    pub(super) fn external(
        &self,
        task: &Task,
        key: &str,
        previous: Option<&EvaluationStatus>,
    ) -> Result<Option<EvaluationStatus>, Error> {
        let attempt = |number: u32| self.attempt(task, key, number);
        let base_key = attempt(0).baseline_key;
        let dispatch = self.status(DISPATCH, &task.namespace, &task.name)?;
        let dispatched = dispatch
            .as_ref()
            .is_some_and(|d| d["candidateKey"] == key && d["baselineKey"] == json!(base_key));
        let running = previous
            .filter(|p| p.cache_key.as_deref() == Some(key))
            .filter(|p| p.phase == EvaluationPhase::Running)
            .cloned();
        let now = (self.now)();
        if dispatched && let Some(running) = running.clone().filter(|r| !lifecycle::retry_due(r)) {
            // The request that starts the attempt goes out in the background.
            if dispatch
                .as_ref()
                .is_some_and(|d| d["delivery"] == "pending")
            {
                let id = super::evaluate::pool_key(task, key, running.attempts);
                if self.pool.is_some_and(|p| p.busy_with(&id)) {
                    return Ok(None);
                }
                let delivery = match self.pool.and_then(|p| p.take(&id)) {
                    Some(Work::Dispatch(d)) => d,
                    // Not this process's: the one sending it stopped.
                    _ => Delivery {
                        delivered: false,
                        attempts: 0,
                        status: None,
                        error: Some("the process sending the request stopped".into()),
                    },
                };
                if !delivery.delivered {
                    let why = format!(
                        "could not start the external job: {}",
                        delivery.error.unwrap_or_default()
                    );
                    return self.failed_attempt(task, &running, &why);
                }
                self.sent(task, dispatch.as_deref().cloned().unwrap_or_default())?;
            }
            let candidate = self.stored_run(key)?.map(|(r, _)| r);
            let baseline = match &base_key {
                Some(k) => self.stored_run(k)?.map(|(r, _)| Some(r)),
                None => Some(None),
            };
            if let (Some(c), Some(b)) = (candidate, baseline) {
                return Ok(Some(lifecycle::finished(
                    &running,
                    &task.gates,
                    &c,
                    b.as_ref(),
                    None,
                    now,
                )));
            }
            let timeout = lifecycle::timeout(task.timeout.as_deref());
            let waited = running
                .started_at
                .and_then(|s| (now - s).to_std().ok())
                .unwrap_or_default();
            if waited <= timeout {
                return Ok(None);
            }
            let why = lifecycle::no_results_within(timeout);
            return self.failed_attempt(task, &running, &why);
        }
        // Dispatch: a fresh token, the request, and the Running status, recorded together.
        let number = running.as_ref().map_or(0, |r| r.attempts) + 1;
        let hook = task.runner.webhook.as_ref();
        let what = format!(
            "asked {} to run {} on {} version {}",
            hook.map(|h| h.url.as_str()).unwrap_or_default(),
            task.suite,
            task.model,
            task.version
        );
        let running = lifecycle::running(&attempt(number), what.clone(), now);
        let Some(base_url) = &self.results_url else {
            let why = "a webhook runner needs the results API: run `slipway run` with --listen";
            return Ok(Some(lifecycle::failed(&running, 0, why, now)));
        };
        let Some(hook) = hook else {
            return Ok(None);
        };
        let token = crate::edges::http::token::generate().map_err(|e| Error::Report {
            path: "the system's random number generator".into(),
            source: e,
        })?;
        let results_url = format!(
            "{base_url}/api/v1/evaluations/{}/{}/results",
            task.namespace, task.name
        );
        let ctx = json!({
            "evaluation": task.name, "namespace": task.namespace, "model": task.model, "version": task.version,
            "suite": task.suite,
            "candidate": {"uri": task.artifact.uri, "digest": task.artifact.digest},
            "baseline": task.baseline.as_ref().map(|(v, a)| json!({"version": v, "uri": a.uri, "digest": a.digest})),
            "dataset": task.dataset, "resultsUrl": results_url, "token": token,
        });
        let message = match dispatch_message(&task.name, hook, &ctx, &secret) {
            Ok(m) => m,
            Err(why) => return Ok(Some(lifecycle::failed(&running, 0, &why, now))),
        };
        // Recorded before the request goes out (delivery pending): the results API knows the
        // token even if the results come back at once, and a restart finds the attempt.
        let record = json!({
            "tokenHash": crate::edges::http::token::hash(&token), "candidateKey": key, "baselineKey": base_key,
            "model": task.model, "suite": task.suite, "version": task.version,
            "baselineVersion": running.baseline_version, "delivery": "pending", "what": what,
        });
        self.apply(&[
            Write::Status {
                kind: DISPATCH.into(),
                namespace: task.namespace.clone(),
                name: task.name.clone(),
                status: record.clone(),
            },
            Write::Status {
                kind: "Evaluation".into(),
                namespace: task.namespace.clone(),
                name: task.name.clone(),
                status: serde_json::to_value(&running)?,
            },
        ])?;
        let send = move || Notifier::default().deliver(&message);
        match self.pool {
            // The next passes take the outcome; nothing waits for a slow runner.
            Some(pool) => {
                let id = super::evaluate::pool_key(task, key, number);
                pool.submit(&id, move || Work::Dispatch(send()));
                Ok(None)
            }
            None => {
                let delivery = send();
                if !delivery.delivered {
                    let why = format!(
                        "could not start the external job: {}",
                        delivery.error.unwrap_or_default()
                    );
                    return self.failed_attempt(task, &running, &why);
                }
                self.sent(task, record)?;
                Ok(None)
            }
        }
    }

    /// Marks an attempt's request as delivered.
    fn sent(&self, task: &Task, mut record: serde_json::Value) -> Result<(), Error> {
        if let Some(what) = record["what"].as_str() {
            (self.progress)(&format!("{}: {what}", task.name));
        }
        record["delivery"] = "sent".into();
        self.apply(&[Write::Status {
            kind: DISPATCH.into(),
            namespace: task.namespace.clone(),
            name: task.name.clone(),
            status: record,
        }])?;
        Ok(())
    }

    /// Records a failed external attempt: the retry waits for the next pass; the last attempt's
    /// failure is returned as the finished status.
    fn failed_attempt(
        &self,
        task: &Task,
        running: &EvaluationStatus,
        why: &str,
    ) -> Result<Option<EvaluationStatus>, Error> {
        let after = lifecycle::failed_attempt(running, why, (self.now)());
        if !lifecycle::retry_due(&after) {
            return Ok(Some(after));
        }
        if let Some(c) = after.conditions.first() {
            (self.progress)(&format!("{}: {}", task.name, c.message));
        }
        self.save_evaluation(task, &after)?;
        Ok(None)
    }
}

/// Stores posted results for a dispatched evaluation; the error is (HTTP status, message).
pub fn accept(
    store: &crate::edges::store::Store,
    ns: &str,
    name: &str,
    token: Option<&str>,
    body: &[u8],
) -> Result<(), (u16, String)> {
    let d = store
        .status(DISPATCH, ns, name)
        .map_err(|e| (500, e.to_string()))?
        .unwrap_or_default();
    let matches = |token: &str| {
        d["tokenHash"]
            .as_str()
            .is_some_and(|h| crate::edges::http::token::matches_hash(token, h))
    };
    // The attempt has its results once they are stored under its content address, or once
    // the evaluation is no longer running that attempt.
    let answered = || -> Result<Option<String>, (u16, String)> {
        let key = d["candidateKey"].as_str().unwrap_or_default();
        let status = store
            .status("Evaluation", ns, name)
            .map_err(|e| (500, e.to_string()))?
            .and_then(|s| EvaluationStatus::deserialize(&s).ok())
            .unwrap_or_default();
        if status.phase != EvaluationPhase::Running || status.cache_key.as_deref() != Some(key) {
            return Ok(Some(format!(
                "is {:?}, not waiting for results",
                status.phase
            )));
        }
        // Posted, and not yet taken up by a pass.
        let stored = store
            .evaluation(key)
            .map_err(|e| (500, e.to_string()))?
            .is_some_and(|r| r.status.phase == EvaluationPhase::Succeeded);
        Ok(stored.then(|| "has its results already".to_string()))
    };
    let evaluation = format!("{ns}/{name}");
    let known = d.is_object().then_some(&matches as &dyn Fn(&str) -> bool);
    results::admit(&evaluation, token, known, answered)?;
    let baseline = d["baselineKey"]
        .is_string()
        .then(|| d["baselineVersion"].as_str().unwrap_or("?"));
    let posted = results::posted(body, baseline)?;
    let record = |key: &str, version: &str, r: &RunResults| {
        Write::Evaluation(crate::edges::store::EvaluationRecord {
            cache_key: key.to_string(),
            namespace: ns.to_string(),
            name: name.to_string(),
            model: d["model"].as_str().unwrap_or_default().to_string(),
            version: version.to_string(),
            suite: d["suite"].as_str().unwrap_or_default().to_string(),
            status: EvaluationStatus {
                phase: EvaluationPhase::Succeeded,
                metrics: r.metrics.clone(),
                samples: r
                    .samples
                    .iter()
                    .map(|s| slipway_crd::evaluation::Sample {
                        input: s.input.clone(),
                        expected: s.expected.clone(),
                        candidate: s.prediction.clone(),
                        baseline: None,
                    })
                    .collect(),
                cache_key: Some(key.to_string()),
                completed_at: Some(chrono::Utc::now()),
                attempts: 1,
                ..Default::default()
            },
        })
    };
    let mut writes = vec![record(
        d["candidateKey"].as_str().unwrap_or_default(),
        d["version"].as_str().unwrap_or_default(),
        &posted.candidate,
    )];
    if let (Some(k), Some(b)) = (d["baselineKey"].as_str(), &posted.baseline) {
        writes.push(record(
            k,
            d["baselineVersion"].as_str().unwrap_or_default(),
            b,
        ));
    }
    store.apply(&writes).map_err(|e| (500, e.to_string()))?;
    Ok(())
}
