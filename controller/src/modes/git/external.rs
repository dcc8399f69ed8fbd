//! The `webhook` runner: Slipway asks an external system (a CI workflow, a batch platform) to run
//! an evaluation, and the job reports back through the results API with a per-evaluation bearer
//! token (`POST /api/v1/evaluations/{namespace}/{name}/results`).

use serde::Deserialize;
use serde_json::json;
use slipway_crd::EvaluationStatus;
use slipway_crd::common::WebhookRunner;
use slipway_crd::evaluation::EvaluationPhase;

use super::evaluate::Work;
use super::{Error, Reconciler};
use crate::decide::evaluation::{
    job, lifecycle,
    results::{self, RunResults},
    step,
};
use crate::decide::tasks::Task;
use crate::edges::notify::{Allowed, Delivery, Message, Notifier};
use crate::edges::runners::webhook::dispatch_message;
use crate::edges::store::Write;

/// Kind of the store rows that remember a dispatched evaluation.
pub const DISPATCH: &str = "EvaluationDispatch";

impl Reconciler<'_> {
    /// What became of an external attempt in flight: its request still going out, refused or
    /// lost, its results (once both runs have reported), or busy (the external system has not
    /// reported yet; the step applies the suite's timeout).
    pub(super) fn seen_external(
        &self,
        task: &Task,
        running: &EvaluationStatus,
    ) -> Result<step::Seen, Error> {
        let key = running.cache_key.clone().unwrap_or_default();
        let dispatch = self.status(DISPATCH, &task.namespace, &task.name)?;
        let dispatched = dispatch.as_ref().is_some_and(|d| {
            d["candidateKey"] == key.as_str()
                && d["baselineKey"] == json!(running.baseline_cache_key)
        });
        if !dispatched {
            return Ok(step::Seen::Nothing);
        }
        // The request that starts the attempt goes out in the background.
        if dispatch
            .as_ref()
            .is_some_and(|d| d["delivery"] == "pending")
        {
            let id = super::evaluate::pool_key(task, &key, running.attempts);
            if self.pool.is_some_and(|p| p.busy_with(&id)) {
                return Ok(step::Seen::Busy);
            }
            let delivery = match self.pool.and_then(|p| p.take(&id)) {
                Some(Work::Dispatch(d)) => d,
                // Not this process's: the one sending it stopped.
                _ => Delivery::not_attempted("the process sending the request stopped"),
            };
            if !delivery.delivered {
                return Ok(step::Seen::Failed(format!(
                    "could not start the external job: {}",
                    delivery.error.unwrap_or_default()
                )));
            }
            self.sent(task, dispatch.as_deref().cloned().unwrap_or_default())?;
        }
        Ok(self
            .stored_results(&task.namespace, running)?
            .unwrap_or(step::Seen::Busy))
    }

    /// Dispatches attempt `number` (recorded as `running`): a fresh token, the request and the
    /// Running status, recorded together before the request goes out. Returns the status the
    /// attempt leaves at once when it cannot start (a body template that does not render, a
    /// request refused without a pool), else None.
    pub(super) fn dispatch(
        &self,
        task: &Task,
        running: &EvaluationStatus,
        number: u32,
    ) -> Result<Option<EvaluationStatus>, Error> {
        let now = (self.now)();
        let (Some(base_url), Some(hook)) = (&self.results_url, task.runner.webhook.as_ref()) else {
            return Ok(None);
        };
        let key = running.cache_key.clone().unwrap_or_default();
        let token = crate::edges::http::token::generate().map_err(|e| Error::Report {
            path: "the system's random number generator".into(),
            source: e,
        })?;
        let message = match request(task, base_url, hook, &token, self.allowed) {
            Ok(m) => m,
            // It would fail the same way every time: it cannot run.
            Err(why) => return Ok(Some(lifecycle::failed(running, 0, &why, now))),
        };
        // Recorded before the request goes out (delivery pending): the results API knows the
        // token even if the results come back at once, and a restart finds the attempt.
        let record = dispatch_record(task, running, &key, &token);
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
                status: serde_json::to_value(running)?,
            },
        ])?;
        self.send_dispatch(task, running, number, &key, record, message)
    }

    /// Sends the request that starts attempt `number` of content address `key` (recorded as
    /// `record`): in the background with a pool, else at once, returning the status a refused
    /// request leaves.
    fn send_dispatch(
        &self,
        task: &Task,
        running: &EvaluationStatus,
        number: u32,
        key: &str,
        record: serde_json::Value,
        message: Message,
    ) -> Result<Option<EvaluationStatus>, Error> {
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
                if delivery.delivered {
                    self.sent(task, record)?;
                    return Ok(None);
                }
                let why = format!(
                    "could not start the external job: {}",
                    delivery.error.unwrap_or_default()
                );
                let failed = step::Observed {
                    seen: Some(step::Seen::Failed(why)),
                    ..Default::default()
                };
                let a = self.attempt(task, key);
                Ok(step::step(&self.input(task, &a, Some(running)), failed).status)
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
}

/// The request that asks the external system to run `task`, reporting to `base_url` with `token`.
fn request(
    task: &Task,
    base_url: &str,
    hook: &WebhookRunner,
    token: &str,
    allowed: &Allowed,
) -> Result<Message, String> {
    let dispatch = job::Dispatch {
        evaluation: &task.name,
        namespace: &task.namespace,
        model: &task.model,
        version: &task.version,
        suite: &task.suite,
        candidate: (&task.artifact.uri, &task.artifact.digest),
        baseline: task
            .baseline
            .as_ref()
            .map(|(v, a)| (v.as_str(), a.uri.as_str(), a.digest.as_str())),
        dataset: &task.dataset,
        base_url,
        token,
    };
    let ctx = dispatch.context();
    // The request carries the results token and the header secrets: only to the operator's
    // destinations, with only the secrets the operator lets the registry use.
    let message = dispatch_message(&task.name, hook, &ctx, &|r| allowed.resolve(r))?;
    allowed.destination(&message.url)?;
    Ok(message)
}

/// What the store remembers of a dispatched attempt: its token's hash, what it runs and how its
/// request went (pending until it is sent).
fn dispatch_record(
    task: &Task,
    running: &EvaluationStatus,
    key: &str,
    token: &str,
) -> serde_json::Value {
    let what = running
        .conditions
        .first()
        .map(|c| c.message.clone())
        .unwrap_or_default();
    json!({
        "tokenHash": crate::edges::http::token::hash(token), "candidateKey": key,
        "baselineKey": running.baseline_cache_key,
        "model": task.model, "suite": task.suite, "version": task.version,
        "baselineVersion": running.baseline_version, "delivery": "pending", "what": what,
    })
}

/// Stores posted results for a dispatched evaluation; the error is (HTTP status, message).
pub fn accept(
    store: &crate::edges::store::Store,
    ns: &str,
    name: &str,
    token: Option<&str>,
    body: &[u8],
) -> Result<(), (u16, String)> {
    let attempt = Dispatched {
        store,
        ns,
        name,
        d: store
            .status(DISPATCH, ns, name)
            .map_err(|e| (500, e.to_string()))?
            .unwrap_or_default(),
    };
    let d = &attempt.d;
    let matches = |token: &str| {
        d["tokenHash"]
            .as_str()
            .is_some_and(|h| crate::edges::http::token::matches_hash(token, h))
    };
    let evaluation = format!("{ns}/{name}");
    let known = d.is_object().then_some(&matches as &dyn Fn(&str) -> bool);
    results::admit(&evaluation, token, known, || attempt.answered())?;
    let baseline = d["baselineKey"]
        .is_string()
        .then(|| d["baselineVersion"].as_str().unwrap_or("?"));
    let posted = results::posted(body, baseline)?;
    store
        .apply(&attempt.writes(&posted))
        .map_err(|e| (500, e.to_string()))?;
    Ok(())
}

/// An attempt whose results are posted: the store, its evaluation, and what its dispatch
/// recorded (`d`).
struct Dispatched<'a> {
    store: &'a crate::edges::store::Store,
    ns: &'a str,
    name: &'a str,
    d: serde_json::Value,
}

impl Dispatched<'_> {
    /// Why the attempt takes no more results, if it does not.
    fn answered(&self) -> Result<Option<String>, (u16, String)> {
        let (store, ns, name, d) = (self.store, self.ns, self.name, &self.d);
        // The attempt has its results once they are stored under its content address, or once
        // the evaluation is no longer running that attempt.
        let key = d["candidateKey"].as_str().unwrap_or_default();
        let status = store
            .status("Evaluation", ns, name)
            .map_err(|e| (500, e.to_string()))?
            .and_then(|s| EvaluationStatus::deserialize(&s).ok())
            .unwrap_or_default();
        if status.phase != EvaluationPhase::Running || status.cache_key.as_deref() != Some(key) {
            return Ok(Some(format!(
                "is {}, not waiting for results",
                status.phase.as_str()
            )));
        }
        // Between attempts (the last one failed, the next one not dispatched yet): nothing is
        // waiting, as in a cluster.
        if lifecycle::retry_due(&status) {
            return Ok(Some("is between attempts, not waiting for results".into()));
        }
        // Posted, and not yet taken up by a pass.
        let stored = store
            .evaluation(ns, key)
            .map_err(|e| (500, e.to_string()))?
            .is_some_and(|r| r.status.phase == EvaluationPhase::Succeeded);
        Ok(stored.then(|| "has its results already".to_string()))
    }

    /// The store writes of the posted results: the candidate's run, and the baseline's when the
    /// attempt compares.
    fn writes(&self, posted: &results::PostedResults) -> Vec<Write> {
        let d = &self.d;
        let mut writes = vec![self.record(
            d["candidateKey"].as_str().unwrap_or_default(),
            d["version"].as_str().unwrap_or_default(),
            &posted.candidate,
        )];
        if let (Some(k), Some(b)) = (d["baselineKey"].as_str(), &posted.baseline) {
            writes.push(self.record(k, d["baselineVersion"].as_str().unwrap_or_default(), b));
        }
        writes
    }

    /// A succeeded run of `version` with results `r`, stored under its content address `key`.
    fn record(&self, key: &str, version: &str, r: &RunResults) -> Write {
        let d = &self.d;
        Write::Evaluation(crate::edges::store::EvaluationRecord {
            cache_key: key.to_string(),
            namespace: self.ns.to_string(),
            name: self.name.to_string(),
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
    }
}
