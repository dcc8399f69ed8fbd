//! The `local` evaluation runner: the suite's command as a subprocess, with a timeout.
//!
//! The job gets a clean environment: the job contract's
//! ([`crate::decide::evaluation::job::environment`], and `SLIPWAY_RESULTS`, where to write its
//! results JSON), `PATH` and `HOME`, and the suite's own `env` — never the rest of `slipway run`'s
//! environment (its Slack and AWS credentials). It runs in a process group of its own, killed as
//! a whole when the run ends (on timeout, and any process it left behind). Its output goes to a
//! log file next to the results, capped at [`LOG_LIMIT`] bytes (the first part and the last
//! [`LOG_TAIL`] bytes are kept).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use slipway_crd::common::LocalRunner;

use crate::decide::evaluation::job;
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

/// The most output of one run kept in its log.
pub const LOG_LIMIT: u64 = 4 << 20;
/// Past the limit, how much of the end of the output is kept.
pub const LOG_TAIL: usize = 64 << 10;

/// The variables of `slipway run`'s own environment a job gets.
const PASSED_THROUGH: [&str; 2] = ["PATH", "HOME"];

/// The variables of this process a command started for a spec keeps ([`PASSED_THROUGH`]).
pub fn passed_through() -> impl Iterator<Item = (&'static str, std::ffi::OsString)> {
    PASSED_THROUGH
        .into_iter()
        .filter_map(|var| Some((var, std::env::var_os(var)?)))
}

/// A log that keeps the first [`LOG_LIMIT`] bytes and the last [`LOG_TAIL`].
struct CappedLog {
    file: std::fs::File,
    written: u64,
    dropped: u64,
    tail: std::collections::VecDeque<u8>,
}

impl CappedLog {
    fn write(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        let room = LOG_LIMIT.saturating_sub(self.written) as usize;
        let head = bytes.len().min(room);
        self.file.write_all(&bytes[..head])?;
        self.written += head as u64;
        bytes = &bytes[head..];
        self.dropped += bytes.len() as u64;
        self.tail.extend(bytes);
        let excess = self.tail.len().saturating_sub(LOG_TAIL);
        self.tail.drain(..excess);
        Ok(())
    }

    fn finish(mut self) -> std::io::Result<()> {
        use std::io::Write;
        if self.dropped > 0 {
            let kept = self.tail.len() as u64;
            writeln!(
                self.file,
                "\n[slipway: the output passed {LOG_LIMIT} bytes; {} bytes were dropped, the last {kept} follow]",
                self.dropped - kept
            )?;
            let (a, b) = self.tail.as_slices();
            self.file.write_all(a)?;
            self.file.write_all(b)?;
        }
        Ok(())
    }
}

/// Copies `from` into `log` until it closes.
fn pump(
    mut from: impl Read + Send + 'static,
    log: std::sync::Arc<std::sync::Mutex<CappedLog>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
            if log.write(&buf[..n]).is_err() {
                break;
            }
        }
    })
}

/// Kills the job's process group (its children and theirs), if any of it is left.
fn kill_group(child: &std::process::Child) {
    let pid = rustix::process::Pid::from_child(child);
    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
}

/// Runs the job and reads its results.
pub fn run(job: &Job<'_>) -> Result<RunResults, RunError> {
    std::fs::create_dir_all(&job.work_dir)?;
    // The job runs in another folder: give it absolute paths.
    let work_dir = std::fs::canonicalize(&job.work_dir)?;
    let results_path = work_dir.join("results.json");
    let log_path = work_dir.join("output.log");
    let _ = std::fs::remove_file(&results_path);
    let log = std::sync::Arc::new(std::sync::Mutex::new(CappedLog {
        file: std::fs::File::create(&log_path)?,
        written: 0,
        dropped: 0,
        tail: Default::default(),
    }));
    let mut child = start(job, &results_path)?;
    let pumps: Vec<_> = [
        child.stdout.take().map(|o| pump(o, log.clone())),
        child.stderr.take().map(|e| pump(e, log.clone())),
    ]
    .into_iter()
    .flatten()
    .collect();
    let status = wait_until(&mut child, Instant::now() + job.timeout)?;
    stop_and_collect(&mut child, pumps, log)?;
    let Some(status) = status else {
        return Err(RunError::Timeout {
            timeout: job.timeout,
            log: log_path.display().to_string(),
        });
    };
    if !status.success() {
        return Err(RunError::Failed {
            status: status.to_string(),
            tail: tail(&log_path, 20),
            log: log_path.display().to_string(),
        });
    }
    read_results(&results_path)
}

/// Starts the job's command in a process group of its own, in its working folder, with only
/// the passed-through variables, its own and the contract's, and its output piped.
fn start(job: &Job<'_>, results_path: &Path) -> Result<std::process::Child, RunError> {
    let program = job.spec.command.first().cloned().unwrap_or_default();
    let cwd = match &job.spec.working_dir {
        Some(d) => job.root.join(d),
        None => job.root.to_path_buf(),
    };
    let mut command = Command::new(&program);
    command
        .args(job.spec.command.iter().skip(1))
        .current_dir(&cwd)
        .env_clear();
    command.envs(passed_through());
    std::os::unix::process::CommandExt::process_group(&mut command, 0)
        // The suite's own settings first: the contract's variables are Slipway's to set.
        .envs(&job.spec.env)
        .envs(&job.env)
        .env(job::RESULTS, results_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| RunError::Start {
            program: format!("{program} (in {})", cwd.display()),
            source,
        })
}

/// Waits for the job to exit until `deadline`; None when it is still running then.
fn wait_until(
    child: &mut std::process::Child,
    deadline: Instant,
) -> std::io::Result<Option<std::process::ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills what is left of the job and writes the output it gave into its log.
fn stop_and_collect(
    child: &mut std::process::Child,
    pumps: Vec<std::thread::JoinHandle<()>>,
    log: std::sync::Arc<std::sync::Mutex<CappedLog>>,
) -> std::io::Result<()> {
    // Nothing the job started outlives the run (and the output pipes close).
    kill_group(child);
    let _ = child.wait();
    // A process that left the group may hold the pipes open: wait for the output a little, not
    // for ever.
    let waited = Instant::now();
    while pumps.iter().any(|p| !p.is_finished()) && waited.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(10));
    }
    for p in pumps.into_iter().filter(|p| p.is_finished()) {
        let _ = p.join();
    }
    if let Ok(log) = std::sync::Arc::try_unwrap(log) {
        log.into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .finish()?;
    }
    Ok(())
}

/// Reads and parses the results the job wrote.
fn read_results(results_path: &Path) -> Result<RunResults, RunError> {
    let mut text = String::new();
    match std::fs::File::open(results_path) {
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

    /// Runs `script` with python3 in `dir`: the outcome and the log.
    fn run_in(
        dir: &Path,
        script: &str,
        timeout: Duration,
    ) -> (Result<RunResults, RunError>, String) {
        std::fs::write(dir.join("eval.py"), script).unwrap();
        let spec = LocalRunner {
            command: vec!["python3".into(), "eval.py".into()],
            ..Default::default()
        };
        let work = dir.join("work");
        let job = Job {
            spec: &spec,
            root: dir,
            work_dir: work.clone(),
            env: [("SLIPWAY_ROLE".to_string(), "candidate".to_string())].into(),
            timeout,
        };
        let out = run(&job);
        (
            out,
            std::fs::read_to_string(work.join("output.log")).unwrap_or_default(),
        )
    }

    #[test]
    fn a_job_sees_only_its_own_environment() {
        // The test's own environment has variables a job must not see (cargo sets these).
        assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        let dir = tempfile::tempdir().unwrap();
        // `env` itself (no shell or interpreter shim adding its own) prints what it was given.
        let spec = LocalRunner {
            command: vec!["/usr/bin/env".into()],
            env: [("SUITE_SETTING".to_string(), "on".to_string())].into(),
            ..Default::default()
        };
        let job = Job {
            spec: &spec,
            root: dir.path(),
            work_dir: dir.path().join("work"),
            env: [("SLIPWAY_ROLE".to_string(), "candidate".to_string())].into(),
            timeout: Duration::from_secs(30),
        };
        assert!(matches!(run(&job), Err(RunError::NoResults { .. })));
        let log = std::fs::read_to_string(dir.path().join("work/output.log")).unwrap();
        let mut seen: Vec<&str> = log
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, _)| k)
            .collect();
        seen.sort();
        let mut want = vec!["SLIPWAY_RESULTS", "SLIPWAY_ROLE", "SUITE_SETTING"];
        want.extend(
            PASSED_THROUGH
                .iter()
                .filter(|v| std::env::var_os(v).is_some()),
        );
        want.sort();
        assert_eq!(seen, want, "{log}");
    }

    #[test]
    fn a_timed_out_job_is_killed_with_everything_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("child.pid");
        let (out, _) = run_in(
            dir.path(),
            &format!(
                "import subprocess, time\np = subprocess.Popen(['sleep', '300'])\nopen({:?}, 'w').write(str(p.pid))\ntime.sleep(300)\n",
                pid_file.display().to_string()
            ),
            Duration::from_secs(2),
        );
        assert!(matches!(out, Err(RunError::Timeout { .. })), "{out:?}");
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        // Killed processes may linger as zombies of the init process for a moment.
        let gone = (0..100).any(|_| {
            let state = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()));
            let alive = state.is_ok_and(|s| !s.contains(") Z "));
            if alive {
                std::thread::sleep(Duration::from_millis(20));
            }
            !alive
        });
        assert!(gone, "the job's child {pid} outlived the run");
    }

    #[test]
    fn a_chatty_job_keeps_a_capped_log_with_its_last_words() {
        let dir = tempfile::tempdir().unwrap();
        let (out, log) = run_in(
            dir.path(),
            "import sys\nfor i in range(6 * 1024):\n    sys.stdout.write('x' * 1023 + '\\n')\nsys.stdout.write('THE END\\n')\nsys.exit(3)\n",
            Duration::from_secs(60),
        );
        assert!(
            log.len() as u64 <= LOG_LIMIT + LOG_TAIL as u64 + 200,
            "{}",
            log.len()
        );
        assert!(log.contains("bytes were dropped"), "no truncation note");
        assert!(log.trim_end().ends_with("THE END"));
        let Err(RunError::Failed { tail, .. }) = out else {
            panic!("{out:?}");
        };
        assert!(tail.trim_end().ends_with("THE END"), "{tail}");
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
