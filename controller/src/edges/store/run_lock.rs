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
        // A `slipway status` holds a shared lock for an instant: a claim waits that out.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(ClaimError::Held {
                        dir: dir.to_path_buf(),
                        holder: read_holder(&mut file),
                    });
                }
                // A file system without locks (some network mounts): run, and say so.
                Err(TryLockError::Error(e)) if e.kind() == std::io::ErrorKind::Unsupported => {
                    eprintln!(
                        "warning: the state folder {} cannot be locked ({e}); make sure no other `slipway run` uses it",
                        dir.display()
                    );
                    break;
                }
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
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

impl Drop for RunLock {
    fn drop(&mut self) {
        // Said no more once it ends (the lock goes with the file's closing).
        let _ = self.file.set_len(0);
    }
}

/// Whether a run holds a state folder.
#[derive(Clone, Debug, PartialEq)]
pub enum Holding {
    /// No run holds it (or no run has used it since runs took the lock).
    Free,
    /// This run holds it.
    Held(Holder),
    /// It cannot be told (the lock file cannot be read or locked).
    Unknown,
}

/// Whether a run holds state folder `dir` now.
pub fn holding(dir: &Path) -> Holding {
    let mut file = match File::open(lock_path(dir)) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Holding::Free,
        Err(_) => return Holding::Unknown,
    };
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            Holding::Free
        }
        Err(TryLockError::WouldBlock) => Holding::Held(read_holder(&mut file).unwrap_or_default()),
        Err(TryLockError::Error(_)) => Holding::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_folder_is_claimed_by_one_run_and_free_once_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        assert_eq!(holding(&state), Holding::Free, "no lock file: no run");
        let mut first = RunLock::claim(&state).unwrap();
        first.listening("127.0.0.1:8080").unwrap();
        let Holding::Held(seen) = holding(&state) else {
            panic!("not held")
        };
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
        assert_eq!(holding(&state), Holding::Free);
        assert_eq!(std::fs::read_to_string(state.join("run.lock")).unwrap(), "");
        // Free again: the next run claims it and says who it is.
        let again = RunLock::claim(&state).unwrap();
        let Holding::Held(seen) = holding(&state) else {
            panic!("not held")
        };
        assert_eq!(seen.listen, None);
        // A reader holding its shared lock for an instant does not turn a run away.
        let reader = File::open(state.join("run.lock")).unwrap();
        drop(again);
        reader.lock_shared().unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(reader);
        });
        RunLock::claim(&state).expect("claimed once the reader let go");
        releaser.join().unwrap();
    }
}
