//! The life of one evaluation, decided once for both homes (pure: no I/O, no clock).
//!
//! `slipway run` (git mode, SQLite) and `slipway controller` (Kubernetes mode, status
//! subresources) both ask these functions what an evaluation is to do next and what its typed
//! status becomes; they only differ in where the status is kept and how a run is carried out.
//!
//! - A finished evaluation stands as it ran; only a new content address runs it again.
//! - An attempt that produced no results (a crash, a refused dispatch, a timeout) is retried
//!   until [`EVALUATION_ATTEMPTS`] attempts have failed; then the evaluation fails for good.
//!   While a retry is due the evaluation is `Running` (reason `Retrying`), never `Failed`, so no
//!   promotion is decided on an attempt that will be repeated.
//! - A run whose content address already has finished results reuses them ([`reusable`]).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use slipway_crd::EvaluationStatus;
use slipway_crd::common::{Condition, Gate};
use slipway_crd::evaluation::{EvaluationPhase, Verdict};

use super::results::{RunResults, RunSample, join_samples};
pub use crate::limits::EVALUATION_ATTEMPTS;
use crate::limits::EVALUATION_TIMEOUT;

/// How long one attempt may take: the suite's `timeout`, else [`EVALUATION_TIMEOUT`].
pub fn timeout(written: Option<&str>) -> Duration {
    written
        .and_then(|t| crate::duration::parse(t).ok())
        .unwrap_or(EVALUATION_TIMEOUT)
}

/// Why an attempt that reported nothing within its timeout failed.
pub fn no_results_within(timeout: Duration) -> String {
    format!("no results within the suite's timeout ({timeout:?})")
}

/// What an evaluation with content address `key` is to do, given its recorded status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// It finished (results or failed for good) with this content address: leave it.
    Stands,
    /// It finished with results under gates or a timeout that changed since: judge the same
    /// results by the suite as it is now (nothing runs again).
    Rejudge,
    /// Run attempt number `attempt` (1-based).
    Run {
        /// The attempt to start.
        attempt: u32,
    },
    /// Attempt `attempt` was started and has not finished: wait for it (a Job, an external
    /// system), or — when its runner has no trace of it — count it as failed
    /// ([`crate::evaluation::step::LOST`]).
    InFlight {
        /// The attempt in flight.
        attempt: u32,
    },
    /// Every attempt was used up by runs that never reported: fail it.
    GiveUp {
        /// Attempts made.
        attempts: u32,
    },
}

/// Decides from the recorded status whether (and which attempt) to run. `judged` is
/// [`super::judged_by`] of the suite now: a finished evaluation decided under other gates or
/// another timeout is re-judged (results) or run again from its first attempt (failed without
/// results: a raised timeout or a fixed runner deserves new attempts). One recorded before
/// `judgedBy` existed stands as it is.
pub fn next(previous: Option<&EvaluationStatus>, key: &str, judged: &str) -> Next {
    match previous.filter(|p| p.cache_key.as_deref() == Some(key)) {
        None => Next::Run { attempt: 1 },
        Some(p)
            if matches!(
                p.phase,
                EvaluationPhase::Succeeded | EvaluationPhase::Failed
            ) =>
        {
            match p.judged_by.as_deref() {
                Some(was) if was != judged && p.phase == EvaluationPhase::Succeeded => {
                    Next::Rejudge
                }
                Some(was) if was != judged => Next::Run { attempt: 1 },
                _ => Next::Stands,
            }
        }
        Some(p) if p.phase == EvaluationPhase::Running && !retry_due(p) => Next::InFlight {
            attempt: p.attempts,
        },
        Some(p) if p.attempts >= EVALUATION_ATTEMPTS => Next::GiveUp {
            attempts: p.attempts,
        },
        Some(p) => Next::Run {
            attempt: p.attempts + 1,
        },
    }
}

fn condition(status: &str, reason: &str, message: String, at: DateTime<Utc>) -> Condition {
    Condition {
        type_: "Ready".into(),
        status: status.into(),
        reason: reason.into(),
        message,
        last_transition_time: Some(at),
        observed_generation: None,
    }
}

/// What an attempt is made of, for its status.
#[derive(Clone, Debug, PartialEq)]
pub struct Attempt {
    /// The content address of the candidate's run.
    pub key: String,
    /// The content address of the baseline's run, when there is a baseline.
    pub baseline_key: Option<String>,
    /// The version the baseline resolved to.
    pub baseline_version: Option<String>,
    /// 1-based attempt number.
    pub number: u32,
    /// The round the attempt belongs to (chosen by the step, as the number is).
    pub round: u32,
}

impl Attempt {
    /// The attempt `status` records (its content addresses as they were when it started, not as
    /// the spec says now).
    pub fn recorded(status: &EvaluationStatus) -> Attempt {
        Attempt {
            key: status.cache_key.clone().unwrap_or_default(),
            baseline_key: status.baseline_cache_key.clone(),
            baseline_version: status.baseline_version.clone(),
            number: status.attempts,
            round: status.round,
        }
    }
}

/// The status of an attempt that has started; `what` says what is running it (a Job, a
/// dispatched external system, a local command).
pub fn running(a: &Attempt, what: String, now: DateTime<Utc>) -> EvaluationStatus {
    EvaluationStatus {
        phase: EvaluationPhase::Running,
        cache_key: Some(a.key.clone()),
        baseline_cache_key: a.baseline_key.clone(),
        baseline_version: a.baseline_version.clone(),
        started_at: Some(now),
        attempts: a.number,
        round: a.round,
        conditions: vec![condition(
            "False",
            "Running",
            format!("{what} (attempt {} of {EVALUATION_ATTEMPTS})", a.number),
            now,
        )],
        ..Default::default()
    }
}

/// After attempt `running.attempts` produced no results: the status it leaves (a retry is due,
/// or the evaluation failed for good). The same rule for crashes, refusals and timeouts.
pub fn failed_attempt(
    running: &EvaluationStatus,
    why: &str,
    now: DateTime<Utc>,
) -> EvaluationStatus {
    let attempt = running.attempts.max(1);
    if attempt < EVALUATION_ATTEMPTS {
        return EvaluationStatus {
            phase: EvaluationPhase::Running,
            attempts: attempt,
            conditions: vec![condition(
                "False",
                "Retrying",
                format!("attempt {attempt} of {EVALUATION_ATTEMPTS} failed: {why}; retrying"),
                now,
            )],
            ..running.clone()
        };
    }
    failed(running, attempt, why, now)
}

/// The status of an evaluation that failed for good after `attempts` attempts (0: it cannot run).
pub fn failed(
    running: &EvaluationStatus,
    attempts: u32,
    why: &str,
    now: DateTime<Utc>,
) -> EvaluationStatus {
    let message = if attempts > 0 {
        format!("evaluation failed after {attempts} attempt(s): {why}; {RETRY_HINT}")
    } else {
        format!("evaluation cannot run: {why}")
    };
    EvaluationStatus {
        phase: EvaluationPhase::Failed,
        verdict: Some(Verdict::Failed),
        attempts,
        completed_at: Some(now),
        conditions: vec![condition("False", "RunFailed", message, now)],
        ..running.clone()
    }
}

/// The results of a finished run judged by `gates` (the suite changed them since): the same
/// metrics, baseline and samples, new gate results and verdict.
pub fn rejudged(
    previous: &EvaluationStatus,
    gates: &[Gate],
    now: DateTime<Utc>,
) -> EvaluationStatus {
    let baseline = previous
        .baseline_version
        .as_ref()
        .map(|_| &previous.baseline_metrics);
    let (results, verdict, judged) = judged(gates, &previous.metrics, baseline);
    // When the run finished stays as it was (its duration is the run's, not its age).
    EvaluationStatus {
        verdict: Some(verdict),
        gates: results,
        conditions: vec![condition(
            "True",
            verdict.as_str(),
            format!(
                "{judged} (the same results, judged again by the suite's gates and timeout as they are now)"
            ),
            now,
        )],
        ..previous.clone()
    }
}

/// An operator's request to run an evaluation that failed for good again (`slipway retry
/// --evaluation` in git mode, the `slipway.dev/retry` annotation in a cluster): the status that
/// starts its attempts afresh, or why there is nothing to retry. Only an evaluation that ended
/// without results is retried: a run that produced results stands on them (retrying it until it
/// passes would be choosing among runs), and changes with its content address or gates.
pub fn retry(
    previous: &EvaluationStatus,
    name: &str,
    now: DateTime<Utc>,
) -> Result<EvaluationStatus, String> {
    if previous.phase != EvaluationPhase::Failed {
        let state = match (previous.phase, previous.verdict) {
            (EvaluationPhase::Succeeded, Some(v)) => {
                format!(
                    "finished with results ({}): a run that produced results is not run again; change the suite or the version to evaluate anew",
                    v.as_str()
                )
            }
            (EvaluationPhase::Running, _) => {
                "running: it is retried by itself while attempts are left".to_string()
            }
            (EvaluationPhase::Pending, _)
                if previous.conditions.iter().any(|c| c.reason == "RetryRequested") =>
            {
                "already asked to run again: it runs on the next pass (`slipway run`; in a cluster, at once)".to_string()
            }
            _ => "not failed".to_string(),
        };
        return Err(format!("evaluation {name} is {state}; nothing to retry"));
    }
    Ok(EvaluationStatus {
        phase: EvaluationPhase::Pending,
        round: previous.round.saturating_add(1),
        conditions: vec![condition(
            "False",
            "RetryRequested",
            format!(
                "an operator asked for {name} to run again after: {}",
                previous
                    .conditions
                    .first()
                    .map(|c| c.message.as_str())
                    .unwrap_or("its failure")
            ),
            now,
        )],
        ..EvaluationStatus::default()
    })
}

/// The status that has evaluation `name` compared again, against version `baseline` — what its
/// suite's baseline resolves to now, which it was not compared against (a move waits for it,
/// [`crate::promotion::Promotion::Rebaseline`]): its attempts start afresh, as after a retry,
/// and runs stored with the same content addresses are reused.
pub fn rebaseline(
    previous: &EvaluationStatus,
    name: &str,
    baseline: &str,
    now: DateTime<Utc>,
) -> EvaluationStatus {
    let was = previous
        .baseline_version
        .as_deref()
        .map_or("no baseline".to_string(), |v| format!("version {v}"));
    EvaluationStatus {
        phase: EvaluationPhase::Pending,
        round: previous.round.saturating_add(1),
        conditions: vec![condition(
            "False",
            "BaselineMoved",
            format!(
                "{name} is compared again, against version {baseline}: its suite's baseline \
                 resolves there now, and it was compared against {was}"
            ),
            now,
        )],
        ..EvaluationStatus::default()
    }
}

/// What to do about an evaluation that failed for good without results.
pub const RETRY_HINT: &str = "fix the cause, then ask for a new run: `slipway retry --evaluation NAME` in git mode, the `slipway.dev/retry` annotation in a cluster";

/// Whether a retry of a `Running` status is due (its last attempt failed).
pub fn retry_due(status: &EvaluationStatus) -> bool {
    status.phase == EvaluationPhase::Running
        && status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.reason == "Retrying")
}

/// The status of a finished run: the gates judged on the candidate's (and baseline's) results.
/// `reused` names where the results came from when they were not run for this evaluation.
pub fn finished(
    running: &EvaluationStatus,
    gates: &[Gate],
    candidate: &RunResults,
    baseline: Option<&RunResults>,
    reused: Option<&str>,
    now: DateTime<Utc>,
) -> EvaluationStatus {
    let (results, verdict, mut message) =
        judged(gates, &candidate.metrics, baseline.map(|b| &b.metrics));
    if let Some(from) = reused {
        message = format!("{message} (results reused from {from}: same content address)");
    }
    EvaluationStatus {
        phase: EvaluationPhase::Succeeded,
        verdict: Some(verdict),
        metrics: candidate.metrics.clone(),
        baseline_metrics: baseline.map(|b| b.metrics.clone()).unwrap_or_default(),
        samples: join_samples(&candidate.samples, baseline.map_or(&[][..], |b| &b.samples)),
        gates: results,
        completed_at: Some(now),
        conditions: vec![condition("True", verdict.as_str(), message, now)],
        ..running.clone()
    }
}

/// The gates' results, the verdict and what the `Ready` condition says of them ("N gates
/// passed", or the failing gates' messages), for a run's metrics.
fn judged(
    gates: &[Gate],
    metrics: &BTreeMap<String, f64>,
    baseline: Option<&BTreeMap<String, f64>>,
) -> (Vec<slipway_crd::evaluation::GateResult>, Verdict, String) {
    let (results, verdict) = super::judge(gates, metrics, baseline);
    let message = match verdict {
        Verdict::Passed => format!("{} gates passed", results.len()),
        Verdict::Failed => results
            .iter()
            .filter(|g| !g.passed)
            .filter_map(|g| g.message.as_deref())
            .collect::<Vec<_>>()
            .join("; "),
    };
    (results, verdict, message)
}

/// The results of a finished run with content address `key`, from any finished evaluation that
/// ran it — as its candidate or as its baseline — and where they came from.
pub fn reusable<'a>(
    key: &str,
    evaluations: impl IntoIterator<Item = (&'a str, &'a EvaluationStatus)>,
) -> Option<(RunResults, String)> {
    let run = |metrics: &BTreeMap<String, f64>, samples: Vec<RunSample>| RunResults {
        metrics: metrics.clone(),
        samples,
    };
    for (name, s) in evaluations {
        if s.phase != EvaluationPhase::Succeeded {
            continue;
        }
        if s.cache_key.as_deref() == Some(key) {
            let samples = s
                .samples
                .iter()
                .filter(|x| x.candidate.is_some())
                .map(|x| RunSample {
                    input: x.input.clone(),
                    expected: x.expected.clone(),
                    prediction: x.candidate.clone(),
                })
                .collect();
            return Some((run(&s.metrics, samples), name.to_string()));
        }
        if s.baseline_cache_key.as_deref() == Some(key) && !s.baseline_metrics.is_empty() {
            let samples = s
                .samples
                .iter()
                .filter(|x| x.baseline.is_some())
                .map(|x| RunSample {
                    input: x.input.clone(),
                    expected: x.expected.clone(),
                    prediction: x.baseline.clone(),
                })
                .collect();
            return Some((run(&s.baseline_metrics, samples), name.to_string()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_crd::common::{GateOp, RelativeTo};

    fn at(s: u32) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + i64::from(s), 0).unwrap()
    }

    fn attempt(n: u32) -> Attempt {
        Attempt {
            key: "sha256:c".into(),
            baseline_key: Some("sha256:b".into()),
            baseline_version: Some("7".into()),
            number: n,
            round: 0,
        }
    }

    fn results(f1: f64) -> RunResults {
        RunResults {
            metrics: BTreeMap::from([("f1".to_string(), f1)]),
            samples: vec![RunSample {
                input: "frame-1".into(),
                expected: Some("goal".into()),
                prediction: Some("goal".into()),
            }],
        }
    }

    #[test]
    fn a_new_content_address_runs_its_first_attempt() {
        assert_eq!(next(None, "sha256:c", "j"), Next::Run { attempt: 1 });
        let other = running(&attempt(2), "job".into(), at(0));
        assert_eq!(
            next(Some(&other), "sha256:other", "j"),
            Next::Run { attempt: 1 }
        );
    }

    #[test]
    fn a_timed_out_attempt_is_retried_until_the_third_fails_for_good() {
        let mut s = running(&attempt(1), "job".into(), at(0));
        for n in 1..EVALUATION_ATTEMPTS {
            s = failed_attempt(&s, "no results within the suite's timeout (60s)", at(n));
            assert_eq!(s.phase, EvaluationPhase::Running, "attempt {n}");
            assert!(retry_due(&s));
            assert_eq!(
                next(Some(&s), "sha256:c", "j"),
                Next::Run { attempt: n + 1 }
            );
            s = running(&attempt(n + 1), "job".into(), at(n));
        }
        let s = failed_attempt(&s, "no results within the suite's timeout (60s)", at(9));
        assert_eq!(s.phase, EvaluationPhase::Failed);
        assert_eq!(s.attempts, EVALUATION_ATTEMPTS);
        assert_eq!(s.verdict, Some(Verdict::Failed));
        assert_eq!(
            s.conditions[0].message,
            format!(
                "evaluation failed after 3 attempt(s): no results within the suite's timeout (60s); {RETRY_HINT}"
            )
        );
        assert_eq!(next(Some(&s), "sha256:c", "j"), Next::Stands);
    }

    #[test]
    fn an_attempt_in_flight_is_waited_for() {
        let s = running(&attempt(EVALUATION_ATTEMPTS), "local".into(), at(0));
        assert_eq!(
            next(Some(&s), "sha256:c", "j"),
            Next::InFlight {
                attempt: EVALUATION_ATTEMPTS
            }
        );
    }

    #[test]
    fn finished_results_are_judged_and_reusable_from_either_side() {
        let gates = [Gate {
            metric: "f1".into(),
            op: GateOp::Ge,
            value: -0.01,
            relative_to: RelativeTo::Baseline,
        }];
        let r = running(&attempt(1), "job".into(), at(0));
        let s = finished(&r, &gates, &results(0.9), Some(&results(0.8)), None, at(5));
        assert_eq!(s.verdict, Some(Verdict::Passed));
        assert_eq!(s.conditions[0].reason, "Passed");
        assert_eq!(s.attempts, 1);
        let all = [("m-8-holdout", &s)];
        let (cand, from) = reusable("sha256:c", all).unwrap();
        assert_eq!((cand.metrics["f1"], from.as_str()), (0.9, "m-8-holdout"));
        assert_eq!(cand.samples[0].prediction.as_deref(), Some("goal"));
        let (base, _) = reusable("sha256:b", all).unwrap();
        assert_eq!(base.metrics["f1"], 0.8);
        assert!(reusable("sha256:nope", all).is_none());
        // A run that did not finish is never reused.
        assert!(reusable("sha256:c", [("x", &r)]).is_none());
    }

    #[test]
    fn the_timeout_defaults_to_an_hour() {
        assert_eq!(timeout(None), Duration::from_secs(3600));
        assert_eq!(timeout(Some("90s")), Duration::from_secs(90));
        assert_eq!(timeout(Some("soon")), Duration::from_secs(3600));
    }
}
