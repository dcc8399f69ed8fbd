//! The one contract between Slipway and an evaluation job, for every runner that starts a
//! process (a `local` command in git mode, a `kubernetes` Job in a cluster):
//!
//! - a **run** evaluates one model on the suite's dataset: the candidate's run, and — when the
//!   evaluation compares against a baseline whose run with the same content address never
//!   finished — the baseline's run, as a second job. A run's results are kept under its content
//!   address (artifact, dataset, runner, suite), so a version evaluated once as a candidate is
//!   never run again as a baseline;
//! - the job's environment is [`environment`]: the same names and values in both homes;
//! - the job writes its results (the results-file format of [`super::results`]) to the file
//!   `$SLIPWAY_RESULTS` and exits 0. Git mode reads the file; in a cluster `$SLIPWAY_RESULTS` is
//!   the container's termination-message file, which the kubelet copies into the pod's status
//!   (at most [`TERMINATION_LIMIT`] bytes).
//!
//! `webhook` runners (an external system) are dispatched once per attempt with both models and
//! report both runs through the results API instead (see [`super::results::posted`]).

use slipway_crd::common::DatasetRef;

use super::lifecycle::Attempt;
use super::results::{self, RunResults};
use super::step::Seen;

/// The environment variable naming the results file.
pub const RESULTS: &str = "SLIPWAY_RESULTS";

/// Where a cluster job writes its results: the container's termination-message file.
pub const TERMINATION_LOG: &str = "/dev/termination-log";

/// The most the kubelet keeps of a termination message (bytes).
pub const TERMINATION_LIMIT: usize = 4096;

/// Which model a run evaluates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// The version being evaluated.
    Candidate,
    /// The version it is compared against.
    Baseline,
}

impl Role {
    /// The wire name (`SLIPWAY_ROLE`, messages).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Candidate => "candidate",
            Role::Baseline => "baseline",
        }
    }
}

/// One run of a suite: one model on the suite's dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// Candidate or baseline.
    pub role: Role,
    /// The model version.
    pub version: String,
    /// Its artifact's URI.
    pub uri: String,
    /// Its artifact's digest.
    pub digest: String,
    /// The run's content address.
    pub key: String,
}

/// The runs an attempt is made of: the candidate's, then the baseline's — unless it is the same
/// run (another version with the same artifact), whose results then serve as both.
pub fn runs(candidate: Run, baseline: Option<Run>) -> Vec<Run> {
    let same = baseline.as_ref().is_some_and(|b| b.key == candidate.key);
    std::iter::once(candidate)
        .chain(baseline.filter(|_| !same))
        .collect()
}

/// The roles and content addresses of the runs attempt `a` is made of — [`runs`]' rule, for an
/// attempt already recorded.
pub fn roles(a: &Attempt) -> Vec<(Role, &str)> {
    let baseline = a
        .baseline_key
        .as_deref()
        .filter(|k| *k != a.key)
        .map(|k| (Role::Baseline, k));
    std::iter::once((Role::Candidate, a.key.as_str()))
        .chain(baseline)
        .collect()
}

/// The environment of a run's job, beside `SLIPWAY_RESULTS` (whose value each runner chooses)
/// and the runner's own `env`.
pub fn environment(
    model: &str,
    suite: &str,
    dataset: &DatasetRef,
    run: &Run,
) -> Vec<(&'static str, String)> {
    vec![
        ("SLIPWAY_ROLE", run.role.as_str().to_string()),
        ("SLIPWAY_MODEL", model.to_string()),
        ("SLIPWAY_SUITE", suite.to_string()),
        ("SLIPWAY_MODEL_VERSION", run.version.clone()),
        ("SLIPWAY_MODEL_URI", run.uri.clone()),
        ("SLIPWAY_MODEL_DIGEST", run.digest.clone()),
        ("SLIPWAY_DATASET_URI", dataset.uri.clone()),
        (
            "SLIPWAY_DATASET_DIGEST",
            dataset.digest.clone().unwrap_or_default(),
        ),
    ]
}

/// The name of the Job carrying `role`'s run of attempt `n` (the candidate's is the attempt's
/// Job name, `EVALUATION-N`).
pub fn job_name(evaluation: &str, round: u32, n: u32, role: Role) -> String {
    // Round 0 keeps the names Jobs had before rounds existed. A later round's suffix is
    // `ROUNDxATTEMPT`, never all digits, so it cannot be round 0 of another evaluation whose
    // name ends in `-rN` or `-N`.
    let stem = match round {
        0 => format!("{evaluation}-{n}"),
        r => format!("{evaluation}-{r}x{n}"),
    };
    let full = match role {
        Role::Candidate => stem,
        Role::Baseline => format!("{stem}-baseline"),
    };
    // A Job's name is a label value of its pods: at most 63 characters. A longer one keeps its
    // start and ends in a digest of the whole, so it stays unique.
    if full.len() <= MAX_NAME {
        return full;
    }
    use sha2::Digest as _;
    let digest = crate::hex(&sha2::Sha256::digest(full.as_bytes()));
    let keep = full
        .char_indices()
        .map(|(i, _)| i)
        .take_while(|&i| i <= MAX_NAME - 11)
        .last()
        .unwrap_or(0);
    format!(
        "{}-{}",
        full[..keep].trim_end_matches(['-', '.']),
        &digest[..10]
    )
}

/// The longest Job name (a label value).
const MAX_NAME: usize = 63;

/// What a `webhook` runner's request describes (its `bodyTemplate`'s context): both models, the
/// dataset, and where and with which token to report — the same keys in both homes.
pub struct Dispatch<'a> {
    /// The evaluation's name and namespace.
    pub evaluation: &'a str,
    /// Its namespace.
    pub namespace: &'a str,
    /// The model, version and suite.
    pub model: &'a str,
    /// The candidate version.
    pub version: &'a str,
    /// The suite.
    pub suite: &'a str,
    /// The candidate's artifact (URI, digest).
    pub candidate: (&'a str, &'a str),
    /// The baseline (version, URI, digest), if any.
    pub baseline: Option<(&'a str, &'a str, &'a str)>,
    /// The dataset.
    pub dataset: &'a DatasetRef,
    /// The home's results API base URL (`--listen` / `--results-url`).
    pub base_url: &'a str,
    /// The attempt's token.
    pub token: &'a str,
}

impl Dispatch<'_> {
    /// The results API URL of this evaluation.
    pub fn results_url(&self) -> String {
        format!(
            "{}/api/v1/evaluations/{}/{}/results",
            self.base_url.trim_end_matches('/'),
            self.namespace,
            self.evaluation
        )
    }

    /// The request's context.
    pub fn context(&self) -> serde_json::Value {
        serde_json::json!({
            "evaluation": self.evaluation, "namespace": self.namespace, "model": self.model,
            "version": self.version, "suite": self.suite,
            "candidate": {"uri": self.candidate.0, "digest": self.candidate.1},
            "baseline": self.baseline.map(|(v, uri, digest)| serde_json::json!({"version": v, "uri": uri, "digest": digest})),
            "dataset": self.dataset, "resultsUrl": self.results_url(), "token": self.token,
        })
    }
}

/// Reads the results a cluster job left in its termination message.
pub fn from_termination_message(message: &str) -> Result<RunResults, String> {
    if message.trim().is_empty() {
        return Err(format!(
            "it finished without writing results to ${RESULTS} ({TERMINATION_LOG})"
        ));
    }
    results::parse(message).map_err(|why| {
        if message.len() >= TERMINATION_LIMIT - 64 {
            format!(
                "{why} — in a cluster the kubelet keeps only the last {TERMINATION_LIMIT} bytes \
                 of ${RESULTS}: write fewer samples"
            )
        } else {
            why
        }
    })
}

/// What a home saw of one run of an attempt.
#[derive(Clone, Debug, PartialEq)]
pub enum RunSeen {
    /// Still running (or queued).
    Busy,
    /// Finished with results (this attempt's, or an earlier run with its content address).
    Done(RunResults),
    /// Ended without results, for this reason.
    Failed(String),
    /// Ended with results that are not valid (they do not parse): the same run would write
    /// them again.
    Invalid(String),
}

/// What the attempt came to, from what was seen of each of its runs (see [`runs`]): failed if
/// any run failed (naming the role), busy while any runs, else the results.
pub fn combine(a: &Attempt, runs: Vec<(Role, RunSeen)>) -> Seen {
    let mut candidate = None;
    let mut baseline = None;
    let mut busy = false;
    for (role, seen) in runs {
        match seen {
            RunSeen::Failed(why) => {
                return Seen::Failed(format!("the {} run: {why}", role.as_str()));
            }
            RunSeen::Invalid(why) => {
                return Seen::Invalid(format!("the {} run: {why}", role.as_str()));
            }
            RunSeen::Busy => busy = true,
            RunSeen::Done(r) if role == Role::Candidate => candidate = Some(r),
            RunSeen::Done(r) => baseline = Some(r),
        }
    }
    if busy {
        return Seen::Busy;
    }
    let Some(candidate) = candidate else {
        return Seen::Failed("the candidate run left no results".into());
    };
    let baseline = match &a.baseline_key {
        None => None,
        Some(k) if *k == a.key => Some(baseline.unwrap_or_else(|| candidate.clone())),
        Some(_) if baseline.is_none() => {
            return Seen::Failed("the baseline run left no results".into());
        }
        Some(_) => baseline,
    };
    Seen::Results {
        candidate,
        baseline,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(role: Role) -> Run {
        Run {
            role,
            version: "7".into(),
            uri: "s3://m/7".into(),
            digest: "sha256:7".into(),
            key: "sha256:k".into(),
        }
    }

    #[test]
    fn every_job_gets_the_same_names() {
        let dataset = DatasetRef {
            uri: "s3://d/".into(),
            digest: None,
        };
        let env = environment("m", "holdout", &dataset, &run(Role::Baseline));
        let names: Vec<&str> = env.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "SLIPWAY_ROLE",
                "SLIPWAY_MODEL",
                "SLIPWAY_SUITE",
                "SLIPWAY_MODEL_VERSION",
                "SLIPWAY_MODEL_URI",
                "SLIPWAY_MODEL_DIGEST",
                "SLIPWAY_DATASET_URI",
                "SLIPWAY_DATASET_DIGEST"
            ]
        );
        assert_eq!(env[0].1, "baseline");
        assert_eq!(
            env[7].1, "",
            "a dataset without a digest gets an empty value"
        );
        assert_eq!(job_name("e", 0, 2, Role::Baseline), "e-2-baseline");
        assert_eq!(job_name("e", 0, 2, Role::Candidate), "e-2");
        assert_eq!(job_name("e", 1, 1, Role::Candidate), "e-1x1");
        assert_eq!(job_name("e", 2, 3, Role::Baseline), "e-2x3-baseline");
        // Round 1 of `m-8-holdout` is not round 0 of a suite named `holdout-r1` or `holdout-1`.
        assert_ne!(
            job_name("m-8-holdout", 1, 1, Role::Candidate),
            job_name("m-8-holdout-r1", 0, 1, Role::Candidate)
        );
        assert_ne!(
            job_name("m-8-holdout", 1, 1, Role::Candidate),
            job_name("m-8-holdout-1", 0, 1, Role::Candidate)
        );
        let long = "fraud-detection-transaction-scorer-2024.06.01-rc1-holdout";
        let (a, b) = (
            job_name(long, 0, 1, Role::Baseline),
            job_name(long, 0, 2, Role::Baseline),
        );
        assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
        assert_ne!(a, b);
        assert!(a.starts_with("fraud-detection"), "{a}");
    }

    #[test]
    fn termination_messages_are_read_with_reasons() {
        let ok = from_termination_message(r#"{"metrics": {"f1": 0.9}}"#).unwrap();
        assert_eq!(ok.metrics["f1"], 0.9);
        let empty = from_termination_message("  ").unwrap_err();
        assert!(empty.contains("without writing results"), "{empty}");
        // The kubelet keeps the end of a longer file.
        let long = format!(
            r#"{{"metrics": {{"f1": 0.9}}, "samples": [{{"input": "{}"}}]}}"#,
            "x".repeat(4100)
        );
        let why = from_termination_message(&long[long.len() - TERMINATION_LIMIT..]).unwrap_err();
        assert!(why.contains("write fewer samples"), "{why}");
    }

    #[test]
    fn an_attempt_is_what_its_runs_came_to() {
        let r = |f: f64| RunResults {
            metrics: [("f1".to_string(), f)].into(),
            samples: vec![],
        };
        let a = Attempt {
            key: "sha256:c".into(),
            baseline_key: Some("sha256:b".into()),
            baseline_version: Some("6".into()),
            number: 1,
            round: 0,
        };
        let both = combine(
            &a,
            vec![
                (Role::Candidate, RunSeen::Done(r(0.9))),
                (Role::Baseline, RunSeen::Done(r(0.8))),
            ],
        );
        assert_eq!(
            both,
            Seen::Results {
                candidate: r(0.9),
                baseline: Some(r(0.8))
            }
        );
        let busy = combine(
            &a,
            vec![
                (Role::Candidate, RunSeen::Done(r(0.9))),
                (Role::Baseline, RunSeen::Busy),
            ],
        );
        assert_eq!(busy, Seen::Busy);
        // A failure wins over a run still going: the attempt is over.
        let failed = combine(
            &a,
            vec![
                (Role::Candidate, RunSeen::Busy),
                (Role::Baseline, RunSeen::Failed("OOMKilled".into())),
            ],
        );
        assert_eq!(failed, Seen::Failed("the baseline run: OOMKilled".into()));
        let lost = combine(&a, vec![(Role::Candidate, RunSeen::Done(r(0.9)))]);
        assert_eq!(
            lost,
            Seen::Failed("the baseline run left no results".into())
        );
        // Another version with the same artifact: one run serves as both.
        let same = Attempt {
            baseline_key: Some("sha256:c".into()),
            ..a.clone()
        };
        assert_eq!(
            combine(&same, vec![(Role::Candidate, RunSeen::Done(r(0.9)))]),
            Seen::Results {
                candidate: r(0.9),
                baseline: Some(r(0.9))
            }
        );
        assert_eq!(roles(&same), [(Role::Candidate, "sha256:c")]);
        assert_eq!(roles(&a).len(), 2);
        let mut b = run(Role::Baseline);
        assert_eq!(runs(run(Role::Candidate), Some(b.clone())).len(), 1);
        b.key = "sha256:other".into();
        assert_eq!(runs(run(Role::Candidate), Some(b)).len(), 2);
    }
}
