//! The `local` evaluation runner: the suite's command as a subprocess, with a timeout.
//!
//! The job gets `SLIPWAY_RESULTS` (where to write its results JSON), the model under test
//! (`SLIPWAY_MODEL_URI`, `SLIPWAY_MODEL_DIGEST`, `SLIPWAY_MODEL_VERSION`), the dataset
//! (`SLIPWAY_DATASET_URI`, `SLIPWAY_DATASET_DIGEST`), `SLIPWAY_ROLE` (`candidate` or `baseline`)
//! and the suite's own `env`. Its output goes to a log file next to the results.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use slipway_crd::common::LocalRunner;

use crate::decide::evaluation::results::{self, RunResults};

/// Why a run produced no results.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The command could not be started.
    #[error(
        "cannot start `{program}`: {source}; check the suite's runner.local.command and workingDir"
    )]
    Start {
        /// Program.
        program: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The command ran past its timeout and was killed.
    #[error(
        "killed after the {timeout:?} timeout; raise the suite's `timeout` or speed the job up (log: {log})"
    )]
    Timeout {
        /// The timeout.
        timeout: Duration,
        /// Log file.
        log: String,
    },
    /// The command failed.
    #[error("exited with {status}; last output:\n{tail}\n(log: {log})")]
    Failed {
        /// Exit status.
        status: String,
        /// Last lines of output.
        tail: String,
        /// Log file.
        log: String,
    },
    /// The command succeeded but wrote no results.
    #[error(
        "finished without writing results to $SLIPWAY_RESULTS ({path}); the job must write its metrics there"
    )]
    NoResults {
        /// Expected path.
        path: String,
    },
    /// The results do not parse.
    #[error("{path}: {message}")]
    BadResults {
        /// Results path.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// I/O around the run.
    #[error("evaluation I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl RunError {
    /// Short stable name for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            RunError::Start { .. } => "eval-start",
            RunError::Timeout { .. } => "eval-timeout",
            RunError::Failed { .. } => "eval-failed",
            RunError::NoResults { .. } | RunError::BadResults { .. } => "eval-results",
            RunError::Io(_) => "eval-io",
        }
    }
}

/// One run to make.
pub struct Job<'a> {
    /// The suite's runner.
    pub spec: &'a LocalRunner,
    /// Folder relative paths are resolved against (the registry folder).
    pub root: &'a Path,
    /// Folder for the results file and the log (created).
    pub work_dir: PathBuf,
    /// `SLIPWAY_*` variables describing the model and dataset.
    pub env: BTreeMap<String, String>,
    /// Maximum run time.
    pub timeout: Duration,
}

/// Runs the job and reads its results.
pub fn run(job: &Job<'_>) -> Result<RunResults, RunError> {
    std::fs::create_dir_all(&job.work_dir)?;
    // The job runs in another folder: give it absolute paths.
    let work_dir = std::fs::canonicalize(&job.work_dir)?;
    let results_path = work_dir.join("results.json");
    let log_path = work_dir.join("output.log");
    let _ = std::fs::remove_file(&results_path);
    let log = std::fs::File::create(&log_path)?;
    let program = job.spec.command.first().cloned().unwrap_or_default();
    let cwd = match &job.spec.working_dir {
        Some(d) => job.root.join(d),
        None => job.root.to_path_buf(),
    };
    let mut child = Command::new(&program)
        .args(job.spec.command.iter().skip(1))
        .current_dir(&cwd)
        .envs(&job.env)
        .envs(&job.spec.env)
        .env("SLIPWAY_RESULTS", &results_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .map_err(|source| RunError::Start {
            program: format!("{program} (in {})", cwd.display()),
            source,
        })?;
    let deadline = Instant::now() + job.timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(RunError::Timeout {
                timeout: job.timeout,
                log: log_path.display().to_string(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if !status.success() {
        return Err(RunError::Failed {
            status: status.to_string(),
            tail: tail(&log_path, 20),
            log: log_path.display().to_string(),
        });
    }
    let mut text = String::new();
    match std::fs::File::open(&results_path) {
        Ok(mut f) => f.read_to_string(&mut text)?,
        Err(_) => {
            return Err(RunError::NoResults {
                path: results_path.display().to_string(),
            });
        }
    };
    results::parse(&text).map_err(|message| RunError::BadResults {
        path: results_path.display().to_string(),
        message,
    })
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_work_dir_works_from_another_working_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("registry")).unwrap();
        std::fs::write(
            dir.path().join("registry/eval.py"),
            "import json, os\njson.dump({'metrics': {'f1': 1.0}}, open(os.environ['SLIPWAY_RESULTS'], 'w'))\n",
        )
        .unwrap();
        let spec = LocalRunner {
            command: vec!["python3".into(), "eval.py".into()],
            ..Default::default()
        };
        // Relative to the test's own working directory, as `--state state` would be.
        let rel = pathdiff(dir.path().join("state/run"));
        let job = Job {
            spec: &spec,
            root: &dir.path().join("registry"),
            work_dir: rel,
            env: BTreeMap::new(),
            timeout: Duration::from_secs(30),
        };
        assert_eq!(run(&job).unwrap().metrics["f1"], 1.0);
    }

    /// `path` relative to the current directory.
    fn pathdiff(path: PathBuf) -> PathBuf {
        let cwd = std::env::current_dir().unwrap();
        let ups = cwd.components().count() - 1;
        let mut rel = PathBuf::new();
        for _ in 0..ups {
            rel.push("..");
        }
        rel.join(path.strip_prefix("/").unwrap())
    }

    fn job<'a>(spec: &'a LocalRunner, root: &'a Path, timeout: Duration) -> Job<'a> {
        Job {
            spec,
            root,
            work_dir: root.join("work"),
            env: BTreeMap::from([("SLIPWAY_MODEL_VERSION".to_string(), "8".to_string())]),
            timeout,
        }
    }

    fn python(root: &Path, script: &str) -> LocalRunner {
        std::fs::write(root.join("eval.py"), script).unwrap();
        LocalRunner {
            command: vec!["python3".into(), "eval.py".into()],
            ..Default::default()
        }
    }

    #[test]
    fn a_job_writes_results_and_sees_its_environment() {
        let dir = tempfile::tempdir().unwrap();
        let spec = python(
            dir.path(),
            "import json, os\njson.dump({'metrics': {'f1': 0.5 + int(os.environ['SLIPWAY_MODEL_VERSION']) / 100}}, open(os.environ['SLIPWAY_RESULTS'], 'w'))\n",
        );
        let r = run(&job(&spec, dir.path(), Duration::from_secs(30))).unwrap();
        assert!((r.metrics["f1"] - 0.58).abs() < 1e-9);
    }

    #[test]
    fn a_failing_job_reports_its_last_output() {
        let dir = tempfile::tempdir().unwrap();
        let spec = python(
            dir.path(),
            "import sys\nprint('loading frames')\nsys.exit('dataset not found: s3://x')\n",
        );
        let err = run(&job(&spec, dir.path(), Duration::from_secs(30))).unwrap_err();
        assert_eq!(err.category(), "eval-failed");
        assert!(
            err.to_string().contains("dataset not found: s3://x"),
            "{err}"
        );
    }

    #[test]
    fn a_job_past_its_timeout_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let spec = python(dir.path(), "import time\ntime.sleep(30)\n");
        let started = Instant::now();
        let err = run(&job(&spec, dir.path(), Duration::from_millis(300))).unwrap_err();
        assert_eq!(err.category(), "eval-timeout");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn missing_or_bad_results_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let spec = python(dir.path(), "print('done')\n");
        assert!(matches!(
            run(&job(&spec, dir.path(), Duration::from_secs(30))),
            Err(RunError::NoResults { .. })
        ));
        let spec = python(
            dir.path(),
            "import os\nopen(os.environ['SLIPWAY_RESULTS'], 'w').write('{\"metrics\": {\"f1\": \"?\"}}')\n",
        );
        let err = run(&job(&spec, dir.path(), Duration::from_secs(30))).unwrap_err();
        assert!(err.to_string().contains("field `metrics.f1`"), "{err}");
    }

    #[test]
    fn a_missing_program_is_a_start_error() {
        let dir = tempfile::tempdir().unwrap();
        let spec = LocalRunner {
            command: vec!["no-such-program-slipway".into()],
            ..Default::default()
        };
        let err = run(&job(&spec, dir.path(), Duration::from_secs(5))).unwrap_err();
        assert_eq!(err.category(), "eval-start");
    }
}
