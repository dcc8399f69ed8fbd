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
//!   until [`EVALUATION_ATTEMPTS`] attempts failed;
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
use crate::limits::{EVALUATION_ATTEMPTS, EVALUATION_POLL, EVALUATION_RETRY};

/// Why an attempt recorded as in flight counts as failed when its runner has no trace of it.
pub const LOST: &str = "its last attempt never finished (the process running it stopped)";

/// What the home saw of the attempt the status records as in flight.
#[derive(Clone, Debug, PartialEq)]
pub enum Seen {
    /// No trace of it: the process, Job or request carrying it is gone.
    Nothing,
    /// Its runner is still at work (a process running, a Job active, a request being sent or
    /// the external system not yet reporting).
    Busy,
    /// It reported results.
    Results {
        /// The candidate's run.
        candidate: RunResults,
        /// The baseline's run, when the evaluation has a baseline.
        baseline: Option<RunResults>,
    },
    /// It ended without results, for this reason.
    Failed(String),
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
    /// Why: `Reused`, `JobStarted` / `Dispatched` / `Started` (a local run), `Retrying`,
    /// `EvaluationFailed`.
    pub reason: &'static str,
    /// A warning (failed for good) rather than news.
    pub warning: bool,
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
        format!(
            "asked {} to run {} on {} version {}",
            hook.url, input.suite, input.model, input.version
        )
    } else if r.kubernetes.is_some() {
        format!(
            "Job {} is evaluating {} version {}",
            job_name(input.name, n),
            input.model,
            input.version
        )
    } else {
        format!("running {} locally", input.suite)
    }
}

/// The name of attempt `n`'s Job.
pub fn job_name(evaluation: &str, n: u32) -> String {
    format!("{evaluation}-{n}")
}

fn first_message(s: &EvaluationStatus) -> String {
    s.conditions
        .first()
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// The step an evaluation takes now.
pub fn step(input: &Input, observed: Observed) -> Step {
    let previous = input.previous.cloned().unwrap_or_default();
    match lifecycle::next(input.previous, &input.attempt.key) {
        Next::Stands => Step::default(),
        Next::GiveUp { attempts } => ended(lifecycle::failed(&previous, attempts, LOST, input.now)),
        Next::Run { attempt } => {
            if let Some(why) = observed.cannot_run {
                return ended(lifecycle::failed(&previous, attempt - 1, &why, input.now));
            }
            if attempt == 1
                && let Some(r) = observed.reusable
            {
                let a = Attempt {
                    number: 1,
                    ..input.attempt.clone()
                };
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
                    reason: "Reused",
                    warning: false,
                    message,
                });
                return s;
            }
            start(input, attempt)
        }
        Next::InFlight { attempt } => match observed.seen.unwrap_or(Seen::Busy) {
            Seen::Busy => {
                let timeout = lifecycle::timeout(input.timeout);
                let waited = previous
                    .started_at
                    .and_then(|s| (input.now - s).to_std().ok())
                    .unwrap_or_default();
                if waited > timeout {
                    return failed_attempt(
                        input,
                        &previous,
                        &lifecycle::no_results_within(timeout),
                    );
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
            Seen::Results {
                candidate,
                baseline,
            } => ended(lifecycle::finished(
                &previous,
                input.gates,
                &candidate,
                baseline.as_ref(),
                None,
                input.now,
            )),
            Seen::Failed(why) => failed_attempt(input, &previous, &why),
            Seen::Nothing => {
                debug_assert!(attempt <= EVALUATION_ATTEMPTS);
                failed_attempt(input, &previous, LOST)
            }
        },
    }
}

/// The status of attempt `n` and the order to start it.
fn start(input: &Input, n: u32) -> Step {
    let a = Attempt {
        number: n,
        ..input.attempt.clone()
    };
    let running = lifecycle::running(&a, carried_by(input, n), input.now);
    let timeout = lifecycle::timeout(input.timeout);
    let reason = if input.runner.webhook.is_some() {
        "Dispatched"
    } else if input.runner.kubernetes.is_some() {
        "JobStarted"
    } else {
        "Started"
    };
    Step {
        notes: vec![Note {
            reason,
            warning: false,
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
            reason: "Retrying",
            warning: false,
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
            reason: "EvaluationFailed",
            warning: true,
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
mod tests {
    use super::*;
    use slipway_crd::common::{GateOp, RelativeTo};
    use std::collections::BTreeMap;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap_or_default()
    }

    fn results(f1: f64) -> RunResults {
        RunResults {
            metrics: BTreeMap::from([("f1".to_string(), f1)]),
            samples: Vec::new(),
        }
    }

    struct Fixture {
        runner: RunnerSpec,
        gates: Vec<Gate>,
        attempt: Attempt,
    }

    impl Fixture {
        fn new(runner: serde_json::Value) -> Fixture {
            Fixture {
                runner: serde_json::from_value(runner).unwrap(),
                gates: vec![Gate {
                    metric: "f1".into(),
                    op: GateOp::Ge,
                    value: 0.8,
                    relative_to: RelativeTo::Absolute,
                }],
                attempt: Attempt {
                    key: "sha256:c".into(),
                    baseline_key: Some("sha256:b".into()),
                    baseline_version: Some("7".into()),
                    number: 0,
                },
            }
        }

        fn input<'a>(&'a self, previous: Option<&'a EvaluationStatus>, now: i64) -> Input<'a> {
            Input {
                name: "m-8-holdout",
                suite: "holdout",
                model: "m",
                version: "8",
                runner: &self.runner,
                gates: &self.gates,
                timeout: Some("60s"),
                attempt: &self.attempt,
                previous,
                now: at(now),
            }
        }
    }

    fn job() -> Fixture {
        Fixture::new(json!({"kubernetes": {"image": "eval:1"}}))
    }

    fn seen(s: Seen) -> Observed {
        Observed {
            seen: Some(s),
            ..Default::default()
        }
    }

    #[test]
    fn a_new_evaluation_starts_its_first_attempt_and_waits_at_most_a_poll() {
        let f = job();
        let s = step(&f.input(None, 0), Observed::default());
        assert_eq!(s.start, Some(1));
        let status = s.status.unwrap();
        assert_eq!(
            (status.phase, status.attempts),
            (EvaluationPhase::Running, 1)
        );
        assert_eq!(
            status.conditions[0].message,
            "Job m-8-holdout-1 is evaluating m version 8 (attempt 1 of 3)"
        );
        assert_eq!(s.notes[0].reason, "JobStarted");
        assert_eq!(s.wait, Some(Duration::from_secs(30)));
    }

    #[test]
    fn earlier_results_finish_it_before_any_attempt_and_say_so() {
        let f = job();
        let observed = Observed {
            reusable: Some(Reusable {
                candidate: results(0.9),
                baseline: Some(results(0.85)),
                from: "m-8-other".into(),
            }),
            ..Default::default()
        };
        let s = step(&f.input(None, 0), observed);
        assert_eq!(s.start, None);
        let status = s.status.unwrap();
        assert_eq!(status.phase, EvaluationPhase::Succeeded);
        assert!(
            status.conditions[0]
                .message
                .contains("results reused from m-8-other")
        );
        assert_eq!(s.notes[0].reason, "Reused");
        assert_eq!(s.wait, None);
    }

    #[test]
    fn an_attempt_is_waited_for_until_its_timeout_then_retried_and_the_third_failure_is_final() {
        let f = job();
        let first = step(&f.input(None, 0), Observed::default()).status.unwrap();
        // Busy within the timeout: wait for what is left, at most a poll.
        let s = step(&f.input(Some(&first), 50), seen(Seen::Busy));
        assert_eq!((s.status, s.wait), (None, Some(Duration::from_secs(10))));
        // Past it: the attempt failed; a retry is due at once.
        let s = step(&f.input(Some(&first), 61), seen(Seen::Busy));
        let retrying = s.status.unwrap();
        assert!(lifecycle::retry_due(&retrying));
        assert_eq!(s.notes[0].reason, "Retrying");
        assert_eq!(s.wait, Some(EVALUATION_RETRY));
        let mut status = retrying;
        for n in 2..=EVALUATION_ATTEMPTS {
            let s = step(&f.input(Some(&status), 100), Observed::default());
            assert_eq!(s.start, Some(n));
            status = s.status.unwrap();
            let s = step(
                &f.input(Some(&status), 101),
                seen(Seen::Failed("BackoffLimitExceeded".into())),
            );
            status = s.status.unwrap();
        }
        assert_eq!(status.phase, EvaluationPhase::Failed);
        assert_eq!(
            status.conditions[0].message,
            "evaluation failed after 3 attempt(s): BackoffLimitExceeded"
        );
        // Final: it stands until its content address changes.
        assert_eq!(
            step(&f.input(Some(&status), 200), Observed::default()),
            Step::default()
        );
    }

    #[test]
    fn a_lost_attempt_counts_as_failed_and_results_finish_it() {
        let f = job();
        let first = step(&f.input(None, 0), Observed::default()).status.unwrap();
        let s = step(&f.input(Some(&first), 5), seen(Seen::Nothing));
        let after = s.status.unwrap();
        assert!(after.conditions[0].message.contains(LOST), "{after:?}");
        let second = step(&f.input(Some(&after), 6), Observed::default())
            .status
            .unwrap();
        let done = step(
            &f.input(Some(&second), 9),
            seen(Seen::Results {
                candidate: results(0.9),
                baseline: Some(results(0.85)),
            }),
        );
        let status = done.status.unwrap();
        assert_eq!(
            (status.phase, status.attempts),
            (EvaluationPhase::Succeeded, 2)
        );
        assert!(done.notes.is_empty());
    }

    #[test]
    fn what_cannot_run_here_fails_at_once_without_an_attempt() {
        let f = Fixture::new(json!({"local": {"command": ["python3", "e.py"]}}));
        let observed = Observed {
            cannot_run: Some("the local runner runs only in git mode".into()),
            ..Default::default()
        };
        let s = step(&f.input(None, 0), observed);
        let status = s.status.unwrap();
        assert_eq!(
            (status.phase, status.attempts),
            (EvaluationPhase::Failed, 0)
        );
        assert_eq!(
            status.conditions[0].message,
            "evaluation cannot run: the local runner runs only in git mode"
        );
        assert_eq!(
            (s.notes[0].reason, s.notes[0].warning),
            ("EvaluationFailed", true)
        );
    }

    #[test]
    fn the_completion_says_the_baseline_and_why_a_verdict_failed() {
        let f = Fixture::new(json!({"webhook": {"url": "https://ci.example/run"}}));
        let first = step(&f.input(None, 0), Observed::default()).status.unwrap();
        let failed = step(
            &f.input(Some(&first), 3),
            seen(Seen::Results {
                candidate: results(0.7),
                baseline: Some(results(0.85)),
            }),
        )
        .status
        .unwrap();
        let c = completion(&f.input(None, 3), &failed).unwrap();
        assert!(
            c.message
                .starts_with("holdout on m version 8 vs 7: Failed — f1"),
            "{}",
            c.message
        );
        assert_eq!(c.decision, "failed");
        assert_eq!(c.data["seconds"], 3.0);
        let keys: Vec<&String> = c.data.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "baselineMetrics",
                "baselineVersion",
                "evaluation",
                "metrics",
                "report",
                "seconds",
                "suite",
                "verdict"
            ]
        );
        assert_eq!(completion(&f.input(None, 3), &first), None);
    }
}
