//! The results file an evaluation job writes to `$SLIPWAY_RESULTS`, and joining a candidate's and
//! a baseline's results into one comparison.
//!
//! ```json
//! {"metrics": {"macro_f1": 0.874, "p95_latency_ms": 31.5},
//!  "samples": [{"input": "frames/001.jpg", "expected": "set-piece", "prediction": "set-piece"}]}
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;
use slipway_crd::evaluation::Sample;

/// What one run of a suite reported.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunResults {
    /// Metric name → value.
    pub metrics: BTreeMap<String, f64>,
    /// Sample predictions.
    #[serde(default)]
    pub samples: Vec<RunSample>,
}

/// One sample prediction of one run.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSample {
    /// The input (frame id, URI, text).
    pub input: String,
    /// The labelled answer.
    #[serde(default)]
    pub expected: Option<String>,
    /// What the model predicted.
    #[serde(default)]
    pub prediction: Option<String>,
}

/// Parses a results file; the error names the line, column and field.
pub fn parse(text: &str) -> Result<RunResults, String> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let inner = e.inner();
        let at = if inner.line() > 0 { format!(" at line {}, column {}", inner.line(), inner.column()) } else { String::new() };
        let field = e.path().to_string();
        let field = if field == "." { String::new() } else { format!(" (field `{field}`)") };
        format!(
            "results are not valid{at}{field}: {inner}; write {{\"metrics\": {{\"name\": number}}, \"samples\": [{{\"input\", \"expected\", \"prediction\"}}]}}"
        )
    })
}

/// What a job posts to the results API: its candidate's results and, when there is a baseline,
/// the baseline's (each in the results-file format).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostedResults {
    /// The candidate's results.
    pub candidate: RunResults,
    /// The baseline's results.
    #[serde(default)]
    pub baseline: Option<RunResults>,
}

/// Reads a results API body; `baseline` is the baseline version when the evaluation compares
/// against one (its results are then required). The error is (HTTP status, message).
pub fn posted(body: &[u8], baseline: Option<&str>) -> Result<PostedResults, (u16, String)> {
    let text = std::str::from_utf8(body).map_err(|_| (400, "the body is not UTF-8".to_string()))?;
    let posted: PostedResults = serde_json::from_str(text).map_err(|e| {
        (400, format!("the body is not valid at line {}, column {}: {e}; post {{\"candidate\": {{\"metrics\": …, \"samples\": […]}}, \"baseline\": …}}", e.line(), e.column()))
    })?;
    if let Some(version) = baseline
        && posted.baseline.is_none()
    {
        return Err((
            400,
            format!(
                "this evaluation compares against version {version}: include \"baseline\" results"
            ),
        ));
    }
    Ok(posted)
}

/// Whether results posted for `evaluation` (`ns/name`) are taken, decided alike in both homes.
/// The token comes first: a missing token, an evaluation that is not there and a wrong token
/// all answer 401 with the same words, so the API tells a caller without the attempt's token
/// nothing, not even that the evaluation exists. `token_matches` is `None` when no attempt of
/// that evaluation takes results. Then the attempt: once it has its results (`answered` says
/// how, asked only of a caller with the token), a second post is refused with 409 — a token is good for one set of results.
pub fn admit(
    evaluation: &str,
    token: Option<&str>,
    token_matches: Option<&dyn Fn(&str) -> bool>,
    answered: impl FnOnce() -> Result<Option<String>, (u16, String)>,
) -> Result<(), (u16, String)> {
    let refused = || {
        (
            401,
            format!(
                "send `Authorization: Bearer TOKEN` with the token of an attempt of {evaluation} that waits for results"
            ),
        )
    };
    let token = token.ok_or_else(refused)?;
    if !token_matches.is_some_and(|m| m(token)) {
        return Err(refused());
    }
    match answered()? {
        Some(how) => Err((
            409,
            format!("{evaluation} {how}; an attempt's token is good for one set of results"),
        )),
        None => Ok(()),
    }
}
/// Joins candidate and baseline samples by input, in the candidate's order (then baseline-only inputs).
pub fn join_samples(candidate: &[RunSample], baseline: &[RunSample]) -> Vec<Sample> {
    let by_input: BTreeMap<&str, &RunSample> =
        baseline.iter().map(|s| (s.input.as_str(), s)).collect();
    let mut out: Vec<Sample> = candidate
        .iter()
        .map(|c| {
            let b = by_input.get(c.input.as_str());
            Sample {
                input: c.input.clone(),
                expected: c
                    .expected
                    .clone()
                    .or_else(|| b.and_then(|b| b.expected.clone())),
                candidate: c.prediction.clone(),
                baseline: b.and_then(|b| b.prediction.clone()),
            }
        })
        .collect();
    let seen: std::collections::BTreeSet<&str> =
        candidate.iter().map(|c| c.input.as_str()).collect();
    out.extend(
        baseline
            .iter()
            .filter(|b| !seen.contains(b.input.as_str()))
            .map(|b| Sample {
                input: b.input.clone(),
                expected: b.expected.clone(),
                candidate: None,
                baseline: b.prediction.clone(),
            }),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_checked_before_anything_is_said_of_the_attempt() {
        let good = |t: &str| t == "right";
        let asked = std::cell::Cell::new(false);
        let answered = || {
            asked.set(true);
            Ok(Some("is Succeeded, not waiting for results".to_string()))
        };
        let refusals = [
            admit("ns/e", None, Some(&good), answered),
            admit("ns/e", Some("wrong"), Some(&good), answered),
            admit("ns/e", Some("right"), None, answered),
        ];
        for r in &refusals {
            assert_eq!(
                r, &refusals[0],
                "an unknown evaluation answers as a wrong token"
            );
            assert_eq!(r.as_ref().unwrap_err().0, 401);
        }
        assert!(
            !asked.get(),
            "nothing about the attempt is read before the token holds"
        );
        let (code, message) = admit("ns/e", Some("right"), Some(&good), answered).unwrap_err();
        assert_eq!(code, 409);
        assert!(message.contains("good for one set of results"), "{message}");
        assert_eq!(
            admit("ns/e", Some("right"), Some(&good), || Ok(None)),
            Ok(())
        );
    }

    #[test]
    fn a_results_file_parses() {
        let r = parse(r#"{"metrics": {"f1": 0.9}, "samples": [{"input": "a", "expected": "x", "prediction": "y"}]}"#).unwrap();
        assert_eq!(r.metrics["f1"], 0.9);
        assert_eq!(r.samples[0].prediction.as_deref(), Some("y"));
    }

    #[test]
    fn bad_results_say_where_and_what_to_write() {
        let err = parse("{\"metrics\": {\"f1\": \"high\"}}").unwrap_err();
        assert!(err.contains("field `metrics.f1`"), "{err}");
        assert!(err.contains("line 1"), "{err}");
        let err = parse("{\"metric\": {}}").unwrap_err();
        assert!(err.contains("unknown field `metric`"), "{err}");
        assert!(
            parse("not json")
                .unwrap_err()
                .contains("write {\"metrics\"")
        );
    }

    #[test]
    fn samples_join_on_their_input() {
        let c = vec![
            RunSample {
                input: "a".into(),
                expected: Some("x".into()),
                prediction: Some("x".into()),
            },
            RunSample {
                input: "b".into(),
                expected: Some("y".into()),
                prediction: Some("y".into()),
            },
        ];
        let b = vec![
            RunSample {
                input: "b".into(),
                expected: Some("y".into()),
                prediction: Some("z".into()),
            },
            RunSample {
                input: "c".into(),
                expected: None,
                prediction: Some("q".into()),
            },
        ];
        let j = join_samples(&c, &b);
        assert_eq!(j.len(), 3);
        assert_eq!(
            (j[1].candidate.as_deref(), j[1].baseline.as_deref()),
            (Some("y"), Some("z"))
        );
        assert_eq!(j[0].baseline, None);
        assert_eq!(
            (j[2].input.as_str(), j[2].candidate.as_deref()),
            ("c", None)
        );
    }
}
