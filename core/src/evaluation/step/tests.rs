//! The evaluation step, rule by rule.
use super::*;
use crate::events::Event;
use crate::limits::EVALUATION_ATTEMPTS;
use slipway_crd::common::{GateOp, RelativeTo};
use slipway_crd::evaluation::Verdict;
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
                round: 0,
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
    assert_eq!(s.notes[0].event, Event::JobStarted);
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
    assert_eq!(s.notes[0].event, Event::Reused);
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
    assert_eq!(s.notes[0].event, Event::Retrying);
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
        format!(
            "evaluation failed after 3 attempt(s): BackoffLimitExceeded; {}",
            lifecycle::RETRY_HINT
        )
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
    // The last attempt lost: the evaluation fails for good.
    let mut status = after;
    for n in 2..=EVALUATION_ATTEMPTS {
        status = step(&f.input(Some(&status), 10), Observed::default())
            .status
            .unwrap();
        assert_eq!(status.attempts, n);
        status = step(&f.input(Some(&status), 11), seen(Seen::Nothing))
            .status
            .unwrap();
    }
    assert_eq!(status.phase, EvaluationPhase::Failed);
    assert!(status.conditions[0].message.contains(LOST), "{status:?}");
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
        (s.notes[0].event, s.notes[0].event.is_warning()),
        (Event::EvaluationFailed, true)
    );
    // It stands: the next look neither fails it again nor announces it again.
    assert_eq!(status.cache_key.as_deref(), Some("sha256:c"));
    let observed = Observed {
        cannot_run: Some("the local runner runs only in git mode".into()),
        ..Default::default()
    };
    assert_eq!(step(&f.input(Some(&status), 5), observed), Step::default());
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

#[test]
fn a_local_attempt_its_runner_holds_is_not_timed_out_here_and_a_webhook_url_stays_out_of_status() {
    let f = Fixture::new(json!({"local": {"command": ["python3", "e.py"]}}));
    let first = step(&f.input(None, 0), Observed::default()).status.unwrap();
    // Queued behind other attempts long past the suite's timeout: still waited for.
    let s = step(&f.input(Some(&first), 3600), seen(Seen::Held));
    assert_eq!((s.status, s.wait), (None, Some(EVALUATION_POLL)));
    let f = Fixture::new(json!({"webhook": {"url": "https://ci.example/run?token=SECRET"}}));
    let s = step(&f.input(None, 0), Observed::default());
    let message = &s.status.unwrap().conditions[0].message;
    assert_eq!(
        message,
        "asked ci.example to run holdout on m version 8 (attempt 1 of 3)"
    );
}

/// Issue 20: after three failed attempts the result was final — raising the timeout the error
/// advised changed nothing, and nothing could run it again. Now a changed timeout (or gates, or
/// runner) decides it again, and an operator's retry starts a new round whose Jobs are new.
#[test]
fn a_failed_evaluation_runs_again_after_a_changed_suite_or_a_retry() {
    let f = job();
    // Three attempts that never reported.
    let mut status = step(&f.input(None, 0), Observed::default()).status.unwrap();
    for n in 1..=EVALUATION_ATTEMPTS {
        let s = step(
            &f.input(Some(&status), 10 * i64::from(n)),
            seen(Seen::Failed("crashed".into())),
        );
        status = s.status.unwrap();
        if n < EVALUATION_ATTEMPTS {
            status = step(
                &f.input(Some(&status), 10 * i64::from(n) + 1),
                Observed::default(),
            )
            .status
            .unwrap();
        }
    }
    assert_eq!(status.phase, EvaluationPhase::Failed);
    assert!(status.judged_by.is_some());
    // The same suite: it stands.
    assert_eq!(
        step(&f.input(Some(&status), 100), Observed::default()),
        Step::default()
    );
    // A raised timeout: a new round from attempt 1, its Job named for the round.
    let mut raised = f.input(Some(&status), 100);
    raised.timeout = Some("10m");
    let again = step(&raised, Observed::default());
    assert_eq!(again.start, Some(1));
    let running = again.status.unwrap();
    assert_eq!((running.attempts, running.round), (1, 1));
    assert!(
        running.conditions[0]
            .message
            .contains("Job m-8-holdout-1x1 "),
        "{:?}",
        running.conditions
    );

    // An operator's retry of the failed evaluation (same suite): a new round too.
    let retried = lifecycle::retry(&status, "ns/m-8-holdout", at(200)).unwrap();
    assert_eq!(
        (retried.phase, retried.round, retried.attempts),
        (EvaluationPhase::Pending, 1, 0)
    );
    let s = step(&f.input(Some(&retried), 201), Observed::default());
    assert_eq!(s.start, Some(1));
    assert_eq!(s.status.unwrap().round, 1);
}

#[test]
fn a_run_with_results_is_not_retried_but_is_judged_again_by_new_gates() {
    let f = job();
    let running = step(&f.input(None, 0), Observed::default()).status.unwrap();
    let done = step(
        &f.input(Some(&running), 5),
        seen(Seen::Results {
            candidate: results(0.7),
            baseline: Some(results(0.6)),
        }),
    )
    .status
    .unwrap();
    assert_eq!(done.verdict, Some(Verdict::Failed));
    let refused = lifecycle::retry(&done, "ns/m-8-holdout", at(6)).unwrap_err();
    assert!(
        refused.contains("a run that produced results is not run again"),
        "{refused}"
    );
    // The suite's gate lowered to 0.6: the same results, judged again — nothing runs.
    let mut lowered = Fixture::new(json!({"kubernetes": {"image": "eval:1"}}));
    lowered.gates[0].value = 0.6;
    let s = step(&lowered.input(Some(&done), 10), Observed::default());
    assert_eq!(s.start, None);
    let rejudged = s.status.unwrap();
    assert_eq!(rejudged.verdict, Some(Verdict::Passed));
    assert_eq!(rejudged.metrics, done.metrics);
    assert_eq!(rejudged.attempts, done.attempts);
    assert!(
        rejudged.conditions[0].message.contains("judged again"),
        "{:?}",
        rejudged.conditions
    );
    // And then it stands.
    assert_eq!(
        step(&lowered.input(Some(&rejudged), 11), Observed::default()),
        Step::default()
    );
}

#[test]
fn results_that_do_not_parse_fail_at_once() {
    let f = job();
    let running = step(&f.input(None, 0), Observed::default()).status.unwrap();
    let s = step(
        &f.input(Some(&running), 5),
        seen(Seen::Invalid(
            "results.json: expected value at line 1 column 1".into(),
        )),
    );
    let status = s.status.unwrap();
    assert_eq!(
        (status.phase, status.attempts),
        (EvaluationPhase::Failed, 1)
    );
    assert!(
        status.conditions[0].message.contains("not retried"),
        "{:?}",
        status.conditions
    );
}
