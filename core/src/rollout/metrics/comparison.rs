//! What a comparison's readings make of it: the sequential test ([`super::sequential`]) of the
//! candidate's rate against the serving version's.

use chrono::{DateTime, Utc};
use slipway_crd::analysis::{Comparison, Measurement, MeasurementVerdict as Verdict};

use super::{DEFAULT_ALPHA, DEFAULT_MIN_TRIALS, DEFAULT_TAU, Reading, sequential, short};

/// What a comparison's four readings (candidate successes, trials; serving successes, trials)
/// make of it: the estimate of candidate − serving and its always-valid interval; `Failure`
/// when the candidate is shown worse by more than the margin, `Success` when shown not worse,
/// else inconclusive.
pub fn compared(c: &Comparison, readings: &[Reading], now: DateTime<Utc>) -> Measurement {
    let inconclusive = |why: String| Measurement {
        at: now,
        value: None,
        verdict: Verdict::Inconclusive,
        message: Some(why),
    };
    let mut n = [0.0; 4];
    for (i, what) in [
        "candidate's successes",
        "candidate's trials",
        "serving version's successes",
        "serving version's trials",
    ]
    .iter()
    .enumerate()
    {
        match readings.get(i) {
            Some(Ok(v)) => match v.as_f64() {
                Some(x) => n[i] = x,
                None => return inconclusive(short(&format!("the {what} are not a number: {v}"))),
            },
            Some(Err(why)) => return inconclusive(short(&format!("the {what}: {why}"))),
            None => return inconclusive(format!("the {what} were not asked")),
        }
    }
    let (candidate, serving) = (
        sequential::Counts {
            successes: n[0],
            trials: n[1],
        },
        sequential::Counts {
            successes: n[2],
            trials: n[3],
        },
    );
    let min = c.min_trials.unwrap_or(DEFAULT_MIN_TRIALS) as f64;
    if candidate.trials < min || serving.trials < min {
        return inconclusive(format!(
            "{} and {} trials of the {min} each version needs",
            candidate.trials, serving.trials
        ));
    }
    let alpha = c.alpha.unwrap_or(DEFAULT_ALPHA);
    let test = sequential::Test {
        alpha,
        tau: c.tau.unwrap_or(if c.margin > 0.0 {
            c.margin
        } else {
            DEFAULT_TAU
        }),
        margin: c.margin,
    };
    let o = match sequential::compare(candidate, serving, test) {
        Ok(o) => o,
        Err(why) => return inconclusive(why),
    };
    let (verdict, word) = match o.decision {
        sequential::Decision::Worse => (Verdict::Failure, "worse"),
        sequential::Decision::NotWorse => (Verdict::Success, "not worse"),
        sequential::Decision::Undecided => (Verdict::Inconclusive, "undecided"),
    };
    Measurement {
        at: now,
        value: Some(format!("{:.4}", o.estimate)),
        verdict,
        message: Some(format!(
            "candidate − serving = {:.4} ({} of {} vs {} of {}), {}% always-valid interval [{:.4}, {:.4}], margin {}: {word}",
            o.estimate,
            candidate.successes,
            candidate.trials,
            serving.successes,
            serving.trials,
            (1.0 - alpha) * 100.0,
            o.lower,
            o.upper,
            c.margin
        )),
    }
}
