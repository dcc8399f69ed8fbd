//! The sequential test of a comparison (pure): is the candidate's rate lower than the serving
//! version's by more than a margin? Answered with an always-valid confidence sequence — the
//! mixture sequential probability ratio test (mSPRT) of Johari, Koomen, Pekelis and Walsh,
//! "Always Valid Inference" (2017/2022) — for the difference of two proportions under the
//! normal approximation, with a normal mixing distribution N(0, τ²):
//!
//! ```text
//! θ̂ = p̂c − p̂s,   V = p̂c(1 − p̂c)/nc + p̂s(1 − p̂s)/ns
//! θ̂ ± √( V(V + τ²)/τ² · (2 ln(1/α) + ln((V + τ²)/V)) )
//! ```
//!
//! The interval covers the true difference at every look at once with probability at least
//! 1 − α, so looking after every new label does not inflate the false-positive rate as a fixed-
//! sample test's repeated p-values would: "worse" (the interval entirely below −margin) is said of
//! a candidate that is not worse with probability at most α, and "not worse" (entirely above)
//! likewise. Rates are smoothed (`(x + ½)/(n + 1)`) so an arm with no failures has variance.

/// Successes and trials of one version.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Counts {
    /// Successes (e.g. correct labelled predictions).
    pub successes: f64,
    /// Trials (e.g. labelled predictions).
    pub trials: f64,
}

/// What the test says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The candidate's rate is lower than the serving version's by more than the margin.
    Worse,
    /// It is not: lower by at most the margin (or higher).
    NotWorse,
    /// Not yet known: keep looking.
    Undecided,
}

/// The test's parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Test {
    /// The false-positive rate, however often it looks.
    pub alpha: f64,
    /// The mixing scale τ.
    pub tau: f64,
    /// How much lower the candidate's rate may be.
    pub margin: f64,
}

/// The estimate of candidate − serving, its always-valid interval and the decision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Outcome {
    /// p̂c − p̂s.
    pub estimate: f64,
    /// The interval's lower end.
    pub lower: f64,
    /// Its upper end.
    pub upper: f64,
    /// What it decides.
    pub decision: Decision,
}

/// The test of `candidate` against `serving`.
pub fn compare(candidate: Counts, serving: Counts, test: Test) -> Result<Outcome, String> {
    for (who, c) in [("candidate", candidate), ("serving version", serving)] {
        if !(c.trials.is_finite() && c.successes.is_finite())
            || c.trials <= 0.0
            || c.successes < 0.0
            || c.successes > c.trials
        {
            return Err(format!(
                "the {who}'s counts are not successes out of trials ({} of {})",
                c.successes, c.trials
            ));
        }
    }
    let rate = |c: Counts| c.successes / c.trials;
    let smoothed = |c: Counts| (c.successes + 0.5) / (c.trials + 1.0);
    let variance = |c: Counts| {
        let p = smoothed(c);
        p * (1.0 - p) / c.trials
    };
    let estimate = rate(candidate) - rate(serving);
    let v = variance(candidate) + variance(serving);
    let tau2 = test.tau * test.tau;
    let half =
        (v * (v + tau2) / tau2 * (2.0 * (1.0 / test.alpha).ln() + ((v + tau2) / v).ln())).sqrt();
    let (lower, upper) = (estimate - half, estimate + half);
    let decision = if upper < -test.margin {
        Decision::Worse
    } else if lower > -test.margin {
        Decision::NotWorse
    } else {
        Decision::Undecided
    };
    Ok(Outcome {
        estimate,
        lower,
        upper,
        decision,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(successes: f64, trials: f64) -> Counts {
        Counts { successes, trials }
    }

    const TEST: Test = Test {
        alpha: 0.05,
        tau: 0.02,
        margin: 0.01,
    };

    #[test]
    fn a_clearly_worse_candidate_is_worse_and_a_clearly_better_one_not_worse() {
        let worse = compare(counts(8_000.0, 10_000.0), counts(9_000.0, 10_000.0), TEST).unwrap();
        assert_eq!(worse.decision, Decision::Worse, "{worse:?}");
        assert!((worse.estimate + 0.1).abs() < 1e-9);
        assert!(worse.lower < worse.estimate && worse.estimate < worse.upper);
        let better = compare(counts(9_200.0, 10_000.0), counts(9_000.0, 10_000.0), TEST).unwrap();
        assert_eq!(better.decision, Decision::NotWorse, "{better:?}");
        // Little data: nothing is known yet.
        let early = compare(counts(45.0, 50.0), counts(46.0, 50.0), TEST).unwrap();
        assert_eq!(early.decision, Decision::Undecided, "{early:?}");
        // Counts that are not counts are an error, never a decision.
        assert!(compare(counts(5.0, 0.0), counts(1.0, 2.0), TEST).is_err());
        assert!(compare(counts(5.0, 4.0), counts(1.0, 2.0), TEST).is_err());
        assert!(compare(counts(f64::NAN, 4.0), counts(1.0, 2.0), TEST).is_err());
    }

    /// A small deterministic generator (SplitMix64) for the simulations.
    struct Rng(u64);
    impl Rng {
        fn uniform(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// The runs in which the test ever says "worse" of a candidate exactly as good as the
    /// serving version, looking after every batch of 50 labels each, up to 5,000.
    fn ever_worse(runs: usize, seed: u64, test: Test) -> usize {
        let mut rng = Rng(seed);
        let p = 0.9;
        (0..runs)
            .filter(|_| {
                let (mut c, mut s) = (counts(0.0, 0.0), counts(0.0, 0.0));
                for _ in 0..100 {
                    for _ in 0..50 {
                        c.trials += 1.0;
                        s.trials += 1.0;
                        c.successes += f64::from(u8::from(rng.uniform() < p));
                        s.successes += f64::from(u8::from(rng.uniform() < p));
                    }
                    if compare(c, s, test).unwrap().decision == Decision::Worse {
                        return true;
                    }
                }
                false
            })
            .count()
    }

    /// Looking 100 times does not inflate the false-positive rate beyond α (a naive z-test
    /// looked at as often says "worse" of an equal candidate several times as often).
    #[test]
    fn looking_after_every_batch_keeps_the_false_positive_rate_under_alpha() {
        let test = Test {
            margin: 0.0,
            ..TEST
        };
        let runs = 400;
        let fp = ever_worse(runs, 7, test);
        assert!(
            (fp as f64) / (runs as f64) <= test.alpha,
            "{fp} of {runs} equal candidates called worse"
        );
        // The naive test on the same data: a 95% z-interval, looked at after every batch.
        let mut rng = Rng(7);
        let naive = (0..runs)
            .filter(|_| {
                let (mut c, mut s) = (counts(0.0, 0.0), counts(0.0, 0.0));
                (0..100).any(|_| {
                    for _ in 0..50 {
                        c.trials += 1.0;
                        s.trials += 1.0;
                        c.successes += f64::from(u8::from(rng.uniform() < 0.9));
                        s.successes += f64::from(u8::from(rng.uniform() < 0.9));
                    }
                    let (pc, ps) = (c.successes / c.trials, s.successes / s.trials);
                    let se = (pc * (1.0 - pc) / c.trials + ps * (1.0 - ps) / s.trials).sqrt();
                    pc - ps + 1.96 * se < 0.0
                })
            })
            .count();
        assert!(naive > 2 * fp.max(10), "naive {naive}, sequential {fp}");
    }
}
