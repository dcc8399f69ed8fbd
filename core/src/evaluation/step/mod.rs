//! One step of an evaluation, for every runner (local command, Kubernetes Job, webhook) and both
//! homes: given what is recorded (the status), what the home observed of the attempt in flight
//! and of earlier results, it returns the status to write, the attempt to start, what to announce
//! and when to look again. The homes only observe, persist and carry out.
//!
//! The rules (see [`super::lifecycle`] for the status each one leaves):
//! - a finished evaluation stands until its content address changes (a changed artifact,
//!   dataset, runner or suite runs it again, in both homes);
//! - before its first attempt, finished results with the same content addresses (candidate and
//!   baseline) finish it at once;
//! - an attempt in flight is waited for until the suite's `timeout`, looking at it at most every
//!   [`EVALUATION_POLL`]; one that ends without results, or whose runner lost it, is retried
//!   until [`crate::limits::EVALUATION_ATTEMPTS`] attempts failed;
//! - an evaluation that cannot run in this home (a runner it does not have, outside the
//!   operator's bounds, no results API) fails at once and says why.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use slipway_crd::EvaluationStatus;
use slipway_crd::common::{Gate, RunnerSpec};
use slipway_crd::evaluation::EvaluationPhase;

use super::lifecycle::{self, Attempt, Next};
use super::results::RunResults;
use crate::events::Event;
use crate::limits::{EVALUATION_POLL, EVALUATION_RETRY};

/// Why an attempt recorded as in flight counts as failed when its runner has no trace of it.
pub const LOST: &str = "its last attempt never finished (the process running it stopped)";

/// What the home saw of the attempt the status records as in flight.
#[derive(Clone, Debug, PartialEq)]
pub enum Seen {
    /// No trace of it: the process, Job or request carrying it is gone.
    Nothing,
    /// Its runner is still at work (a Job active, a request being sent or the external system
    /// not yet reporting): waited for until the suite's timeout.
    Busy,
    /// Its runner holds it and stops it at the timeout itself (a local process, queued or
    /// running, killed at the suite's timeout): waited for, without a deadline here — a queued
    /// attempt has not started its clock.
    Held,
    /// It reported results.
    Results {
        /// The candidate's run.
        candidate: RunResults,
        /// The baseline's run, when the evaluation has a baseline.
        baseline: Option<RunResults>,
    },
    /// It ended without results, for this reason.
    Failed(String),
    /// It ended with results that are not valid (they do not parse, or break the contract):
    /// the same run would write them again, so the evaluation fails at once, not after every
    /// attempt.
    Invalid(String),
}

/// Finished results with the same content addresses as the attempt, and where they came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Reusable {
    /// The candidate's run.
    pub candidate: RunResults,
    /// The baseline's run (None: no baseline).
    pub baseline: Option<RunResults>,
    /// The evaluation that ran the candidate's run.
    pub from: String,
}

/// What an evaluation is and what is recorded of it.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    /// `namespace/name`-free name of the evaluation (for the Job name).
    pub name: &'a str,
    /// The suite, model and version, for messages.
    pub suite: &'a str,
    /// The model.
    pub model: &'a str,
    /// The candidate version.
    pub version: &'a str,
    /// The runner.
    pub runner: &'a RunnerSpec,
    /// The gates.
    pub gates: &'a [Gate],
    /// The suite's `timeout` as written.
    pub timeout: Option<&'a str>,
    /// The content addresses of this evaluation (the attempt number is chosen here).
    pub attempt: &'a Attempt,
    /// The recorded status.
    pub previous: Option<&'a EvaluationStatus>,
    /// Now.
    pub now: DateTime<Utc>,
}

/// What the home observed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// The attempt in flight, if the status records one.
    pub seen: Option<Seen>,
    /// Earlier finished results with the same content addresses (looked at before the first
    /// attempt only).
    pub reusable: Option<Reusable>,
    /// Why the evaluation cannot run in this home at all.
    pub cannot_run: Option<String>,
}

/// Something to tell people (a Kubernetes event; a progress line in git mode).
#[derive(Clone, Debug, PartialEq)]
pub struct Note {
    /// What: `Reused`, `JobStarted` / `Dispatched` / `Started` (a local run), `Retrying`,
    /// `EvaluationFailed` (a warning).
    pub event: Event,
    /// What happened.
    pub message: String,
}

/// What the home is to do.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Step {
    /// The status to write (None: it stays as recorded).
    pub status: Option<EvaluationStatus>,
    /// Start this attempt (1-based): a Job, a request, a local run. The status to write with
    /// it is `status` (Running, attempt `n`).
    pub start: Option<u32>,
    /// What to announce.
    pub notes: Vec<Note>,
    /// When to look again without a change (None: only on a change).
    pub wait: Option<Duration>,
}

/// What carries attempt `n` out, in words.
pub fn carried_by(input: &Input, n: u32) -> String {
    let r = input.runner;
    if let Some(hook) = &r.webhook {
        // The host only: a URL may carry a token, and statuses and events are read more
        // widely than the spec.
        let host = crate::bounds::origin(&hook.url)
            .map(|(_, host, _)| host)
            .unwrap_or_else(|_| "its webhook runner".into());
        format!(
            "asked {host} to run {} on {} version {}",
            input.suite, input.model, input.version
        )
    } else if r.kubernetes.is_some() {
        format!(
            "Job {} is evaluating {} version {}",
            super::job::job_name(input.name, round(input), n, super::job::Role::Candidate),
            input.model,
            input.version
        )
    } else {
        format!("running {} locally", input.suite)
    }
}

fn first_message(s: &EvaluationStatus) -> String {
    s.conditions
        .first()
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// The step an evaluation takes now. Every status it writes records what judged it
/// ([`super::judged_by`]), so a later change of the suite's gates or timeout is seen.
pub fn step(input: &Input, observed: Observed) -> Step {
    let previous = input.previous.cloned().unwrap_or_default();
    let judged = super::judged_by(input.gates, input.timeout);
    let mut step = match lifecycle::next(input.previous, &input.attempt.key, &judged) {
        Next::Stands => Step::default(),
        Next::Rejudge => rejudge(input, &previous),
        Next::GiveUp { attempts } => ended(lifecycle::failed(&previous, attempts, LOST, input.now)),
        Next::Run { attempt } => run(input, observed, attempt),
        Next::InFlight { .. } => in_flight(input, &previous, observed.seen.unwrap_or(Seen::Busy)),
    };
    if let Some(s) = step.status.as_mut() {
        s.judged_by = Some(judged);
    }
    step
}

/// The results of a finished run judged by the suite's gates as they are now.
fn rejudge(input: &Input, previous: &EvaluationStatus) -> Step {
    let done = lifecycle::rejudged(previous, input.gates, input.now);
    let message = first_message(&done);
    let mut s = ended(done);
    s.notes.push(Note {
        event: Event::Reused,
        message,
    });
    s
}

/// The attempt numbered `n` with this evaluation's content addresses, in its round.
fn numbered(input: &Input, n: u32) -> Attempt {
    Attempt {
        number: n,
        round: round(input),
        ..input.attempt.clone()
    }
}

/// The round of the attempt due: the recorded one while its attempts go on (or none were made
/// in it yet, as after a retry), the next one when the evaluation starts afresh from a status
/// that made attempts (a changed content address, suite or timeout).
fn round(input: &Input) -> u32 {
    match input.previous {
        None => 0,
        Some(p)
            if p.attempts == 0
                || (p.cache_key.as_deref() == Some(input.attempt.key.as_str())
                    && p.phase == EvaluationPhase::Running) =>
        {
            p.round
        }
        Some(p) => p.round.saturating_add(1),
    }
}

/// Attempt `attempt` is due: it fails at once when the evaluation cannot run in this home,
/// finishes at once with reusable results before a first attempt, and otherwise starts.
fn run(input: &Input, observed: Observed, attempt: u32) -> Step {
    if let Some(why) = observed.cannot_run {
        // Recorded with its content address, so it stands until that changes (and is
        // not failed, recorded and announced again on every look).
        let a = numbered(input, attempt);
        let base = lifecycle::running(&a, carried_by(input, attempt), input.now);
        return ended(lifecycle::failed(&base, attempt - 1, &why, input.now));
    }
    if attempt == 1
        && let Some(r) = observed.reusable
    {
        return reuse(input, &r);
    }
    start(input, attempt)
}

/// Finishes the evaluation with earlier results that have the same content addresses, and
/// announces the reuse.
fn reuse(input: &Input, r: &Reusable) -> Step {
    let a = numbered(input, 1);
    let running = lifecycle::running(&a, "reusing earlier results".into(), input.now);
    let done = lifecycle::finished(
        &running,
        input.gates,
        &r.candidate,
        r.baseline.as_ref(),
        Some(&r.from),
        input.now,
    );
    let message = first_message(&done);
    let mut s = ended(done);
    s.notes.push(Note {
        event: Event::Reused,
        message,
    });
    s
}

/// An attempt is in flight and the home saw `seen` of it: it is waited for (a busy one until
/// the suite's timeout), finishes with its results, or fails.
fn in_flight(input: &Input, previous: &EvaluationStatus, seen: Seen) -> Step {
    match seen {
        Seen::Busy => {
            let timeout = lifecycle::timeout(input.timeout);
            let waited = previous
                .started_at
                .and_then(|s| (input.now - s).to_std().ok())
                .unwrap_or_default();
            if waited > timeout {
                return failed_attempt(input, previous, &lifecycle::no_results_within(timeout));
            }
            Step {
                wait: Some(
                    timeout
                        .saturating_sub(waited)
                        .min(EVALUATION_POLL)
                        .max(EVALUATION_RETRY),
                ),
                ..Step::default()
            }
        }
        Seen::Held => Step {
            wait: Some(EVALUATION_POLL),
            ..Step::default()
        },
        Seen::Results {
            candidate,
            baseline,
        } => ended(lifecycle::finished(
            previous,
            input.gates,
            &candidate,
            baseline.as_ref(),
            None,
            input.now,
        )),
        Seen::Failed(why) => failed_attempt(input, previous, &why),
        Seen::Invalid(why) => ended(lifecycle::failed(
            previous,
            previous.attempts.max(1),
            &format!("{why} (not retried: the same run would write the same results)"),
            input.now,
        )),
        Seen::Nothing => failed_attempt(input, previous, LOST),
    }
}

/// The status of attempt `n` and the order to start it.
fn start(input: &Input, n: u32) -> Step {
    let a = numbered(input, n);
    let running = lifecycle::running(&a, carried_by(input, n), input.now);
    let timeout = lifecycle::timeout(input.timeout);
    let event = if input.runner.webhook.is_some() {
        Event::Dispatched
    } else if input.runner.kubernetes.is_some() {
        Event::JobStarted
    } else {
        Event::Started
    };
    Step {
        notes: vec![Note {
            event,
            message: first_message(&running),
        }],
        status: Some(running),
        start: Some(n),
        wait: Some(timeout.min(EVALUATION_POLL)),
    }
}

/// After an attempt that produced no results: a retry due soon, or failed for good.
fn failed_attempt(input: &Input, running: &EvaluationStatus, why: &str) -> Step {
    let after = lifecycle::failed_attempt(running, why, input.now);
    if !lifecycle::retry_due(&after) {
        return ended(after);
    }
    Step {
        notes: vec![Note {
            event: Event::Retrying,
            message: first_message(&after),
        }],
        status: Some(after),
        wait: Some(EVALUATION_RETRY),
        ..Step::default()
    }
}

/// A finished status (results, or failed for good): written, and announced when it failed.
fn ended(status: EvaluationStatus) -> Step {
    let notes = if status.phase == EvaluationPhase::Failed {
        vec![Note {
            event: Event::EvaluationFailed,
            message: first_message(&status),
        }]
    } else {
        Vec::new()
    };
    Step {
        status: Some(status),
        notes,
        ..Step::default()
    }
}

/// The `EvaluationCompleted` announcement of a finished evaluation: one text and one set of
/// data keys in both homes (`evaluation`, `suite`, `verdict`, `metrics`, `baselineVersion`,
/// `baselineMetrics`, `report`, `seconds`).
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    /// The message.
    pub message: String,
    /// The verdict in lower case (`passed`, `failed`).
    pub decision: String,
    /// The data a webhook template sees.
    pub data: serde_json::Value,
}

/// What to announce of a finished evaluation (None: it has not finished).
pub fn completion(input: &Input, status: &EvaluationStatus) -> Option<Completion> {
    if !matches!(
        status.phase,
        EvaluationPhase::Succeeded | EvaluationPhase::Failed
    ) {
        return None;
    }
    let verdict = status
        .verdict
        .map(|v| v.as_str())
        .unwrap_or("Failed")
        .to_string();
    let detail = first_message(status);
    let (suite, model, version) = (input.suite, input.model, input.version);
    let message = if status.phase == EvaluationPhase::Failed {
        format!("{suite} on {model} version {version}: {verdict} — {detail}")
    } else {
        let against = status.baseline_version.as_deref().unwrap_or("no baseline");
        match status.verdict {
            Some(slipway_crd::evaluation::Verdict::Passed) => {
                format!("{suite} on {model} version {version} vs {against}: {verdict}")
            }
            _ => format!("{suite} on {model} version {version} vs {against}: {verdict} — {detail}"),
        }
    };
    let seconds = status
        .completed_at
        .zip(status.started_at)
        .map(|(c, s)| (c - s).num_milliseconds() as f64 / 1000.0);
    Some(Completion {
        message,
        decision: verdict.to_lowercase(),
        data: json!({
            "evaluation": input.name, "suite": suite, "verdict": verdict,
            "metrics": status.metrics, "baselineVersion": status.baseline_version,
            "baselineMetrics": status.baseline_metrics, "report": status.report,
            "seconds": seconds,
        }),
    })
}

#[cfg(test)]
mod tests;
