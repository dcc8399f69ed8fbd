//! A `ModelVersion`'s status: its evaluations, one line per suite, and whether they passed.

use chrono::{DateTime, Utc};
use slipway_crd::evaluation::Verdict;
use slipway_crd::model_version::{EvaluationSummary, ModelVersionStatus};

/// The status a version gets from its model's `suites` (how many) and the evaluations held for
/// it (suite, evaluation); `Ready` once every suite passed, `EvaluationFailed` as soon as one
/// failed. The condition keeps its transition time while its status does not change.
pub fn version_status<'a>(
    previous: &ModelVersionStatus,
    suites: usize,
    evaluations: impl IntoIterator<Item = (&'a str, &'a slipway_crd::Evaluation)>,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> ModelVersionStatus {
    let summaries: Vec<EvaluationSummary> = evaluations
        .into_iter()
        .map(|(suite, e)| {
            let st = e.status.clone().unwrap_or_default();
            EvaluationSummary {
                suite: suite.to_string(),
                evaluation: e.metadata.name.clone().unwrap_or_default(),
                phase: st.phase,
                verdict: st.verdict,
            }
        })
        .collect();
    let verdict = |v: Verdict| summaries.iter().filter(|s| s.verdict == Some(v)).count();
    let (failed, passed) = (verdict(Verdict::Failed), verdict(Verdict::Passed));
    let (ok, reason, message) = if failed > 0 {
        (
            false,
            "EvaluationFailed",
            "an evaluation of this version failed; see its report".to_string(),
        )
    } else if passed >= suites {
        (
            true,
            "Evaluated",
            format!("{passed} of {suites} evaluation suites passed"),
        )
    } else {
        (
            false,
            "Evaluating",
            format!("{passed} of {suites} evaluation suites passed so far"),
        )
    };
    ModelVersionStatus {
        registered_at: previous.registered_at.or(Some(now)),
        evaluations: summaries,
        conditions: vec![crate::conditions::condition(
            "Ready",
            ok,
            reason,
            &message,
            generation,
            &previous.conditions,
            now,
        )],
    }
}

/// Whether two version statuses say the same (times aside).
pub fn same(a: &ModelVersionStatus, b: &ModelVersionStatus) -> bool {
    let words = |s: &ModelVersionStatus| {
        s.conditions
            .iter()
            .map(|c| (c.reason.clone(), c.message.clone(), c.observed_generation))
            .collect::<Vec<_>>()
    };
    a.evaluations == b.evaluations
        && words(a) == words(b)
        && a.registered_at.is_some() == b.registered_at.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_crd::evaluation::EvaluationPhase;
    use slipway_crd::{Evaluation, EvaluationSpec, EvaluationStatus};

    fn eval(name: &str, verdict: Option<Verdict>) -> Evaluation {
        let mut e = Evaluation::new(name, EvaluationSpec::default());
        e.status = Some(EvaluationStatus {
            phase: if verdict.is_some() {
                EvaluationPhase::Succeeded
            } else {
                EvaluationPhase::Running
            },
            verdict,
            ..Default::default()
        });
        e
    }

    #[test]
    fn a_version_is_ready_when_every_suite_passed_and_not_before() {
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let (a, b) = (
            eval("m-8-holdout", Some(Verdict::Passed)),
            eval("m-8-latency", None),
        );
        let s = version_status(
            &Default::default(),
            2,
            [("holdout", &a), ("latency", &b)],
            Some(1),
            t,
        );
        assert_eq!(
            (
                s.conditions[0].reason.as_str(),
                s.conditions[0].status.as_str()
            ),
            ("Evaluating", "False")
        );
        assert_eq!(s.evaluations.len(), 2);
        assert_eq!(s.registered_at, Some(t));
        let b = eval("m-8-latency", Some(Verdict::Passed));
        let later = t + chrono::Duration::seconds(5);
        let s2 = version_status(&s, 2, [("holdout", &a), ("latency", &b)], Some(1), later);
        assert_eq!(s2.conditions[0].reason, "Evaluated");
        assert_eq!(s2.registered_at, Some(t), "registration time is kept");
        assert!(!same(&s, &s2));
        let c = eval("m-8-latency", Some(Verdict::Failed));
        let s3 = version_status(&s2, 2, [("holdout", &a), ("latency", &c)], Some(1), later);
        assert_eq!(s3.conditions[0].reason, "EvaluationFailed");
    }
}
