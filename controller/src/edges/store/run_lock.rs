//! One `slipway run` per state folder. A run holds an exclusive lock on `DIR/run.lock` for as
//! long as it lives — the operating system releases it when the process ends, however it ends —
//! with its process id, start time and listen address written in. A second run on the same
//! state is refused (two runs would serve the same deployments twice and race on every
//! decision); `slipway status` asks whether a run holds the lock, so it never shows a model
//! server as serving after the run that served it ended.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Who holds a state folder.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    /// Process id.
    pub pid: u32,
    /// When the run started (RFC 3339).
    pub since: String,
    /// Where it serves its API and UI, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
}

/// Why a state folder cannot be claimed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Another run holds it.
    #[error(
        "another `slipway run` ({}) uses the state in {}; stop it first, or give this run its own --state",
        describe(.holder), .dir.display()
    )]
    Held {
        /// The state folder.
        dir: PathBuf,
        /// Who holds it, as far as its lock file says.
        holder: Option<Holder>,
    },
    /// The lock file cannot be made.
    #[error("cannot lock the state folder {}: {source}; check that it is writable, or pass another --state", .dir.display())]
    Io {
        /// The state folder.
        dir: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

fn describe(holder: &Option<Holder>) -> String {
    match holder {
        Some(h) => format!("process {}, since {}", h.pid, h.since),
        None => "its lock file says no more".into(),
    }
}

/// A claim on a state folder, held until dropped.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    holder: Holder,
}

fn lock_path(dir: &Path) -> PathBuf {
    dir.join("run.lock")
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

impl RunLock {
    /// Claims state folder `dir` (creating it) for this process.
    pub fn claim(dir: &Path) -> Result<RunLock, ClaimError> {
        let io = |source| ClaimError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(lock_path(dir))
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(ClaimError::Held {
                    dir: dir.to_path_buf(),
                    holder: read_holder(&mut file),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let mut lock = RunLock {
            file,
            holder: Holder {
                pid: std::process::id(),
                since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                listen: None,
            },
        };
        lock.write().map_err(io)?;
        Ok(lock)
    }

    /// Records where the run serves its API and UI.
    pub fn listening(&mut self, addr: &str) -> std::io::Result<()> {
        self.holder.listen = Some(addr.to_string());
        self.write()
    }

    fn write(&mut self) -> std::io::Result<()> {
        let text = serde_json::to_string(&self.holder).map_err(std::io::Error::other)?;
        self.file.set_len(0)?;
        self.file.rewind()?;
        self.file.write_all(text.as_bytes())?;
        self.file.flush()
    }
}

/// The run that holds state folder `dir` now, if one does (None also when the folder has no
/// lock file: no run has used it since runs took the lock).
pub fn holder(dir: &Path) -> Option<Holder> {
    let mut file = File::open(lock_path(dir)).ok()?;
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            None
        }
        Err(TryLockError::WouldBlock) => Some(read_holder(&mut file).unwrap_or_default()),
        Err(TryLockError::Error(_)) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_folder_is_claimed_by_one_run_and_free_once_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        assert_eq!(holder(&state), None, "no lock file: no run");
        let mut first = RunLock::claim(&state).unwrap();
        first.listening("127.0.0.1:8080").unwrap();
        let seen = holder(&state).expect("held");
        assert_eq!(seen.pid, std::process::id());
        assert_eq!(seen.listen.as_deref(), Some("127.0.0.1:8080"));
        let err = RunLock::claim(&state).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "another `slipway run` (process {}, since ",
                std::process::id()
            )) && text.ends_with("stop it first, or give this run its own --state"),
            "{text}"
        );
        drop(first);
        assert_eq!(holder(&state), None);
        // Free again: the next run claims it and says who it is.
        let again = RunLock::claim(&state).unwrap();
        assert_eq!(holder(&state).unwrap().listen, None);
        drop(again);
    }
}
