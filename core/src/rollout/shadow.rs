//! Shadow steps: a share of live requests is also sent to the candidate, whose answers are
//! compared with the serving version's and discarded. What counts as the same answer, and how
//! much of it a step needs, are decided here; the local router mirrors and records.

use serde_json::Value;

use super::StrategyStep;

#[path = "standing.rs"]
pub mod standing;

/// The most disagreeing (request, serving answer, candidate answer) samples a window keeps.
pub const SAMPLES: usize = 5;
/// The most bytes of a request or an answer a sample keeps.
pub const SAMPLE_BYTES: usize = 512;
/// The most bytes of an answer compared as JSON: larger ones are compared byte for byte (and a
/// shadow's answer is read up to this size).
pub const MAX_COMPARED: usize = 1 << 20;

/// A request's path as a sample keeps it: the query's values left out (they may carry a
/// client's data or tokens), its keys kept: `/predict?grass=…&lines=…`.
pub fn redacted(path_and_query: &str) -> String {
    match path_and_query.split_once('?') {
        None => printable(path_and_query),
        Some((path, query)) => {
            let keys: Vec<String> = query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| format!("{}=…", p.split('=').next().unwrap_or_default()))
                .collect();
            printable(&format!("{path}?{}", keys.join("&")))
        }
    }
}

/// An answer as a sample shows it: its status and body, control characters as spaces, cut to
/// [`SAMPLE_BYTES`].
pub fn shown(status: u16, body: &[u8]) -> String {
    let text = printable(String::from_utf8_lossy(body).trim_end());
    short(&format!("{status} {text}"))
}

/// `s` with its control characters (newlines, escapes) as spaces: a sample is one line.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The versions that run for copies of requests at this point of a rollout, each with its share
/// (percent): a shadow step's candidate from the moment the step starts (so that it is ready
/// when its copies begin — [`super::routing::Routing`] mirrors only then; none once it failed),
/// then `standing` (the standing shadows, [`standing::versions`]).
pub fn copied(
    strategy: &slipway_crd::model_deployment::Strategy,
    state: &super::RolloutState,
    standing: &[(String, u32)],
) -> Vec<(String, u32)> {
    let failed = state.phase == slipway_crd::model_deployment::DeploymentPhase::Failed;
    let step = state.candidate.as_ref().filter(|_| !failed).and_then(|c| {
        let mirror = super::strategy_steps(strategy).get(state.step)?.mirror;
        (mirror > 0).then(|| (c.clone(), mirror.min(100)))
    });
    step.into_iter().chain(standing.iter().cloned()).collect()
}

impl StrategyStep {
    /// The step in words, for events and failures: `20%`, or `the shadow step (50% mirrored)`.
    pub fn label(&self) -> String {
        if self.weight == 0 && self.mirror > 0 {
            format!("the shadow step ({}% mirrored)", self.mirror)
        } else {
            format!("{}%", self.weight)
        }
    }
}

/// One answer: its HTTP status and body.
#[derive(Clone, Copy, Debug)]
pub struct Answer<'a> {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: &'a [u8],
}

/// How two answers are compared: numbers at most `tolerance` apart agree; fields at the dotted
/// paths of `ignore` are left out.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Compare {
    /// Absolute tolerance for numbers.
    pub tolerance: f64,
    /// Dotted paths left out (`version`, `meta.took_ms`).
    pub ignore: Vec<String>,
}

/// Whether the candidate's answer agrees with the serving version's: the same status, and the
/// same JSON document with numbers at most `tolerance` apart (absolute) and the ignored fields
/// left out, or — when either body is not JSON — the same bytes. Why not, when it does not.
pub fn agree(serving: Answer, candidate: Answer, how: &Compare) -> Result<(), String> {
    if serving.status != candidate.status {
        return Err(format!(
            "status {} where the serving version answered {}",
            candidate.status, serving.status
        ));
    }
    let large = serving.body.len() > MAX_COMPARED || candidate.body.len() > MAX_COMPARED;
    if large {
        return (serving.body == candidate.body)
            .then_some(())
            .ok_or_else(|| "a different body (over 1 MiB: compared byte for byte)".to_string());
    }
    match (
        serde_json::from_slice::<Value>(serving.body),
        serde_json::from_slice::<Value>(candidate.body),
    ) {
        (Ok(a), Ok(b)) => same(&a, &b, how, ""),
        _ if serving.body == candidate.body => Ok(()),
        _ => Err("a different body".to_string()),
    }
}

/// Compares two JSON values at dotted path `at` (empty: the root), naming the first place they
/// differ.
fn same(a: &Value, b: &Value, how: &Compare, at: &str) -> Result<(), String> {
    let child = |k: &str| {
        if at.is_empty() {
            k.to_string()
        } else {
            format!("{at}.{k}")
        }
    };
    let shown = if at.is_empty() { "$" } else { at };
    match (a, b) {
        // Integers exactly (an id above 2^53 is not a float).
        (Value::Number(x), Value::Number(y)) if int(x).is_some() && int(y).is_some() => {
            let (x, y) = (int(x).unwrap_or(0), int(y).unwrap_or(0));
            if (x - y).unsigned_abs() as f64 <= how.tolerance {
                Ok(())
            } else {
                Err(format!(
                    "{shown}: {y} where the serving version answered {x}"
                ))
            }
        }
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            if (x - y).abs() <= how.tolerance || x == y {
                Ok(())
            } else {
                Err(format!(
                    "{shown}: {y} where the serving version answered {x}"
                ))
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .try_for_each(|(i, (x, y))| same(x, y, how, &format!("{shown}[{i}]"))),
        (Value::Object(x), Value::Object(y)) => {
            let kept = |m: &serde_json::Map<String, Value>| -> Vec<String> {
                m.keys()
                    .filter(|k| !how.ignore.contains(&child(k)))
                    .cloned()
                    .collect()
            };
            let (kx, ky) = (kept(x), kept(y));
            if kx != ky {
                return Err(format!(
                    "{shown}: fields {ky:?} where the serving version answered {kx:?}"
                ));
            }
            kx.iter()
                .try_for_each(|k| same(&x[k], &y[k], how, &child(k)))
        }
        _ if a == b => Ok(()),
        _ => Err(format!(
            "{shown}: {} where the serving version answered {}",
            short(&b.to_string()),
            short(&a.to_string())
        )),
    }
}

/// An integer as a wide one.
fn int(n: &serde_json::Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

/// At most [`SAMPLE_BYTES`] of `s` (cut at a character boundary, marked with `…`).
pub fn short(s: &str) -> String {
    crate::limits::cut(s, SAMPLE_BYTES)
}

/// A disagreement kept for the report.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Disagreement {
    /// The request (`GET /predict?…`, and its body).
    pub request: String,
    /// The serving version's answer.
    pub serving: String,
    /// The candidate's answer.
    pub candidate: String,
    /// Where they differ.
    pub why: String,
}

/// What a shadow step's mirrored requests came to: a failure when agreement is below
/// `min_agreement` once `min_requests` were compared, else None (the other thresholds judge the
/// candidate's answers like served ones).
pub fn judge(
    min_agreement: Option<f64>,
    min_requests: u64,
    compared: u64,
    agreed: u64,
    samples: &[Disagreement],
) -> Option<String> {
    let min = min_agreement?;
    if compared < min_requests.max(1) {
        return None;
    }
    let share = agreed as f64 / compared as f64;
    (share < min).then(|| {
        let mut why = format!(
            "agreement with the serving version {share:.3} below {min} ({agreed} of {compared} mirrored requests)"
        );
        if let Some(d) = samples.first() {
            why.push_str(&format!(
                "; e.g. {}: {} (serving {}, candidate {})",
                d.request, d.why, d.serving, d.candidate
            ));
        }
        why
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_is_named_by_its_share_or_as_the_shadow_step() {
        let step = |weight, mirror| StrategyStep {
            weight,
            mirror,
            hold: std::time::Duration::ZERO,
        };
        assert_eq!(step(0, 50).label(), "the shadow step (50% mirrored)");
        assert_eq!(step(10, 0).label(), "10%");
    }

    fn within(tolerance: f64) -> Compare {
        Compare {
            tolerance,
            ignore: vec!["version".into()],
        }
    }

    fn a(status: u16, body: &str) -> Answer<'_> {
        Answer {
            status,
            body: body.as_bytes(),
        }
    }

    #[test]
    fn answers_agree_on_status_and_json_within_the_tolerance() {
        let serving = a(
            200,
            r#"{"label": "open-play", "score": 0.91, "top": [1, 2], "version": "7"}"#,
        );
        let check = |body: &str, tolerance: f64| agree(serving, a(200, body), &within(tolerance));
        // Keys in another order, another version field (ignored): the same answer.
        assert_eq!(
            check(
                r#"{"version": "8", "top": [1, 2], "score": 0.91, "label": "open-play"}"#,
                0.0
            ),
            Ok(())
        );
        assert_eq!(
            check(
                r#"{"label": "open-play", "score": 0.905, "top": [1, 2]}"#,
                0.01
            ),
            Ok(())
        );
        assert_eq!(
            check(
                r#"{"label": "open-play", "score": 0.8, "top": [1, 2]}"#,
                0.01
            ),
            Err("score: 0.8 where the serving version answered 0.91".into())
        );
        assert_eq!(
            check(r#"{"label": "crowd", "score": 0.91, "top": [1, 2]}"#, 0.5),
            Err("label: \"crowd\" where the serving version answered \"open-play\"".into())
        );
        assert_eq!(
            check(
                r#"{"label": "open-play", "score": 0.91, "top": [1, 3]}"#,
                0.5
            ),
            Err("top[1]: 3 where the serving version answered 2".into())
        );
        assert_eq!(
            check(r#"{"label": "open-play", "score": 0.91}"#, 0.0),
            Err(r#"$: fields ["label", "score"] where the serving version answered ["label", "score", "top"]"#.into())
        );
        // Not ignored, the version field differs.
        let strict = Compare::default();
        assert_eq!(
            agree(
                serving,
                a(
                    200,
                    r#"{"label": "open-play", "score": 0.91, "top": [1, 2], "version": "8"}"#
                ),
                &strict
            ),
            Err("version: \"8\" where the serving version answered \"7\"".into())
        );
        assert_eq!(
            agree(serving, a(500, "boom"), &within(0.0)),
            Err("status 500 where the serving version answered 200".into())
        );
        // Not JSON: the same bytes.
        assert_eq!(
            agree(a(200, "open-play\n"), a(200, "open-play\n"), &within(0.0)),
            Ok(())
        );
        assert_eq!(
            agree(a(200, "open-play"), a(200, "crowd"), &within(0.0)),
            Err("a different body".into())
        );
        // Large integers exactly.
        assert!(
            agree(
                a(200, "9007199254740993"),
                a(200, "9007199254740992"),
                &within(0.0)
            )
            .is_err()
        );
        assert_eq!(
            agree(
                a(200, "9007199254740993"),
                a(200, "9007199254740993"),
                &within(0.0)
            ),
            Ok(())
        );
        // Samples keep no query values and no control characters.
        assert_eq!(
            redacted("/predict?token=SECRET&x=1"),
            "/predict?token=…&x=…"
        );
        assert_eq!(redacted("/healthz"), "/healthz");
        assert_eq!(shown(200, b"{\"a\":\n1}\n"), "200 {\"a\": 1}");
    }

    #[test]
    fn a_shadow_fails_below_its_agreement_once_it_has_the_requests() {
        let d = Disagreement {
            request: "GET /predict?x=1".into(),
            serving: "\"a\"".into(),
            candidate: "\"b\"".into(),
            why: "$: \"b\" where the serving version answered \"a\"".into(),
        };
        assert_eq!(judge(Some(0.9), 20, 10, 1, &[]), None, "too few yet");
        assert_eq!(judge(Some(0.9), 20, 20, 19, &[]), None);
        let why = judge(Some(0.9), 20, 20, 17, std::slice::from_ref(&d)).unwrap();
        assert!(why.starts_with("agreement with the serving version 0.850 below 0.9 (17 of 20 mirrored requests); e.g. GET /predict?x=1"), "{why}");
        assert_eq!(judge(None, 20, 20, 0, &[]), None);
        assert_eq!(short(&"é".repeat(400)).chars().count(), 257);
    }
}
