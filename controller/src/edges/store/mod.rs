//! The embedded state store of git mode: one SQLite file under `--state`.
//!
//! Statuses, evaluation records, rollout progress and an append-only history. Every decision's
//! writes go through [`Store::apply`] as one transaction, and the database runs in WAL mode with
//! full synchronisation, so a process killed at any moment loses nothing it already reported and
//! never leaves half a decision behind.

mod write;
pub use write::Write;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::decide::rollout::RolloutState;

use schema::{migrate_to_2, schema_version};

pub mod run_lock;

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The state folder cannot be created or opened.
    #[error(
        "cannot open the state database {path}: {source}; check that the folder is writable, or pass another --state"
    )]
    Open {
        /// Database path.
        path: PathBuf,
        /// Cause.
        source: rusqlite::Error,
    },
    /// The state folder cannot be created.
    #[error("cannot create the state folder {path}: {source}")]
    Folder {
        /// Folder.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The database was written by a newer Slipway.
    #[error(
        "the state database {path} has schema version {found}, newer than this Slipway ({supported}); upgrade Slipway"
    )]
    TooNew {
        /// Database path.
        path: PathBuf,
        /// Version found.
        found: i64,
        /// Version supported.
        supported: i64,
    },
    /// A query failed.
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored value does not decode.
    #[error("state database holds a value that does not decode: {0}")]
    Decode(#[from] serde_json::Error),
}

impl StoreError {
    /// Short stable name for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            StoreError::Open { .. } | StoreError::Folder { .. } => "store-open",
            StoreError::TooNew { .. } => "store-version",
            StoreError::Sqlite(_) => "store-io",
            StoreError::Decode(_) => "store-decode",
        }
    }
}

/// One line of the append-only history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// Row id (0 before it is written).
    #[serde(default)]
    pub id: i64,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What happened: `AliasMoved`, `PromotionBlocked`, `EvaluationCompleted`, `RolloutStarted`, …
    pub event: String,
    /// Namespace.
    pub namespace: String,
    /// Model.
    pub model: String,
    /// The object concerned (`ModelAlias/production`, `ModelDeployment/api`, …).
    pub subject: String,
    /// The version concerned.
    pub version: Option<String>,
    /// The alias concerned.
    pub alias: Option<String>,
    /// Who caused it (git author, user, `slipway`).
    pub actor: Option<String>,
    /// The source revision it came from.
    pub revision: Option<String>,
    /// `allowed`, `denied`, `passed`, `failed`… where a decision was made.
    pub decision: Option<String>,
    /// Human-readable explanation.
    pub message: String,
    /// Structured details (decision record, traffic, metrics).
    #[serde(default)]
    pub data: serde_json::Value,
}

/// A stored evaluation run, keyed by its content address.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationRecord {
    /// Content address (see `evaluation::cache_key`).
    pub cache_key: String,
    /// Namespace.
    pub namespace: String,
    /// `Evaluation` name.
    pub name: String,
    /// Model.
    pub model: String,
    /// Version.
    pub version: String,
    /// Suite.
    pub suite: String,
    /// The full `Evaluation` status (phase, metrics, samples, gates, verdict…).
    pub status: slipway_crd::EvaluationStatus,
}

/// Git mode's record of one `ModelDeployment` beyond its status: the rollout state a pass resumes
/// from, the model it serves (kept after the object is removed, for history and clean-up) and
/// the address the local router serves it at. (Stored in the `rollouts` table; records written
/// before the model and address were kept read with them empty.)
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct DeploymentRecord {
    /// The rollout state.
    #[serde(flatten)]
    pub state: RolloutState,
    /// The model.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
    /// Where the local router serves it (`HOST:PORT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// Filter for [`Store::history`].
#[derive(Clone, Debug, Default)]
pub struct HistoryFilter {
    /// Only this model.
    pub model: Option<String>,
    /// Only this alias.
    pub alias: Option<String>,
    /// Only entries at or before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only entries written after this row id, in write order.
    pub after_id: Option<i64>,
}

/// The SQLite state store.
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl Store {
    /// Opens an existing `DIR/state.db` to read it (`slipway status`, `history`): nothing is
    /// written — an older schema is read as it is (what readers query is the same), and only
    /// `slipway run` upgrades it.
    pub fn open_reader(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join("state.db");
        let conn = Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        schema_version(&conn, &path)?;
        Ok(Store {
            conn: Mutex::new(conn),
            path,
        })
    }

    /// Opens (creating if needed, upgrading an older schema) `DIR/state.db`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Folder {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join("state.db");
        let conn = Connection::open(&path).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let found = schema_version(&conn, &path)?;
        // Readers of an existing database (status, history) must not write: only create the schema
        // when it is missing, and take the write lock up front so concurrent openers wait for it
        // instead of failing on a lock upgrade.
        if found == 1 {
            migrate_to_2(&conn)?;
        }
        if found >= 1 {
            return Ok(Store {
                conn: Mutex::new(conn),
                path,
            });
        }
        conn.execute_batch(
            "BEGIN IMMEDIATE;
             CREATE TABLE IF NOT EXISTS status (
               kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL, status TEXT NOT NULL,
               PRIMARY KEY (kind, namespace, name));
             CREATE TABLE IF NOT EXISTS rollouts (
               namespace TEXT NOT NULL, name TEXT NOT NULL, state TEXT NOT NULL,
               PRIMARY KEY (namespace, name));
             CREATE TABLE IF NOT EXISTS evaluations (
               cache_key TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
               model TEXT NOT NULL, version TEXT NOT NULL, suite TEXT NOT NULL, status TEXT NOT NULL,
               PRIMARY KEY (namespace, cache_key));
             CREATE INDEX IF NOT EXISTS evaluations_by_version ON evaluations (namespace, model, version);
             CREATE TABLE IF NOT EXISTS history (
               id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, event TEXT NOT NULL,
               namespace TEXT NOT NULL, model TEXT NOT NULL, subject TEXT NOT NULL, version TEXT,
               alias TEXT, actor TEXT, revision TEXT, decision TEXT, message TEXT NOT NULL, data TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS history_by_model ON history (namespace, model, alias, at);
             -- History is append-only: refuse to rewrite it, even by hand.
             CREATE TRIGGER IF NOT EXISTS history_no_update BEFORE UPDATE ON history
               BEGIN SELECT RAISE(ABORT, 'history is append-only'); END;
             CREATE TRIGGER IF NOT EXISTS history_no_delete BEFORE DELETE ON history
               BEGIN SELECT RAISE(ABORT, 'history is append-only'); END;
             PRAGMA user_version = 2;
             COMMIT;",
        )?;
        Ok(Store {
            conn: Mutex::new(conn),
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions roll back).
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies writes in one transaction: all or nothing.
    pub fn apply(&self, writes: &[Write]) -> Result<Vec<i64>, StoreError> {
        let mut conn = self.conn();
        // IMMEDIATE: take the write lock at BEGIN, so a concurrent writer makes us wait (busy
        // timeout) rather than fail on a read-to-write upgrade.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut ids = Vec::new();
        for w in writes {
            match w {
                Write::Status {
                    kind,
                    namespace,
                    name,
                    status,
                } => {
                    tx.execute(
                        "INSERT INTO status (kind, namespace, name, status) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (kind, namespace, name) DO UPDATE SET status = excluded.status",
                        params![kind, namespace, name, status.to_string()],
                    )?;
                }
                Write::Rollout {
                    namespace,
                    name,
                    record,
                } => {
                    tx.execute(
                        "INSERT INTO rollouts (namespace, name, state) VALUES (?1, ?2, ?3)
                         ON CONFLICT (namespace, name) DO UPDATE SET state = excluded.state",
                        params![namespace, name, serde_json::to_string(record)?],
                    )?;
                }
                Write::ForgetStatus {
                    kind,
                    namespace,
                    name,
                } => {
                    tx.execute(
                        "DELETE FROM status WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
                        params![kind, namespace, name],
                    )?;
                }
                Write::ForgetDeployment { namespace, name } => {
                    tx.execute(
                        "DELETE FROM status WHERE kind = 'ModelDeployment' AND namespace = ?1 AND name = ?2",
                        params![namespace, name],
                    )?;
                    tx.execute(
                        "DELETE FROM rollouts WHERE namespace = ?1 AND name = ?2",
                        params![namespace, name],
                    )?;
                }
                Write::Evaluation(r) => {
                    tx.execute(
                        "INSERT INTO evaluations (cache_key, namespace, name, model, version, suite, status)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                         ON CONFLICT (namespace, cache_key) DO UPDATE SET status = excluded.status, name = excluded.name",
                        params![r.cache_key, r.namespace, r.name, r.model, r.version, r.suite, serde_json::to_string(&r.status)?],
                    )?;
                }
                Write::History(h) => {
                    tx.execute(
                        "INSERT INTO history (at, event, namespace, model, subject, version, alias, actor, revision, decision, message, data)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                        params![
                            h.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                            h.event,
                            h.namespace,
                            h.model,
                            h.subject,
                            h.version,
                            h.alias,
                            h.actor,
                            h.revision,
                            h.decision,
                            h.message,
                            h.data.to_string()
                        ],
                    )?;
                    ids.push(tx.last_insert_rowid());
                }
            }
        }
        tx.commit()?;
        Ok(ids)
    }

    /// An object's status.
    pub fn status(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let text: Option<String> = self
            .conn()
            .query_row(
                "SELECT status FROM status WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
                params![kind, namespace, name],
                |r| r.get(0),
            )
            .optional()?;
        Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
    }

    /// Every status of a kind, as (namespace, name, status), sorted.
    pub fn statuses(
        &self,
        kind: &str,
    ) -> Result<Vec<(String, String, serde_json::Value)>, StoreError> {
        self.statuses_as(kind)
    }

    /// The (namespace, name) of every object of `kind` with a status.
    pub fn status_keys(&self, kind: &str) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT namespace, name FROM status WHERE kind = ?1")?;
        let rows = stmt.query_map([kind], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// [`Store::statuses`], each decoded straight into `T`.
    pub fn statuses_as<T: serde::de::DeserializeOwned>(
        &self,
        kind: &str,
    ) -> Result<Vec<(String, String, T)>, StoreError> {
        self.named_rows(
            "SELECT namespace, name, status FROM status WHERE kind = ?1 ORDER BY namespace, name",
            params![kind],
        )
    }

    /// Every deployment's record, by namespace and name.
    pub fn rollouts(&self) -> Result<Vec<(String, String, DeploymentRecord)>, StoreError> {
        self.named_rows(
            "SELECT namespace, name, state FROM rollouts ORDER BY namespace, name",
            params![],
        )
    }

    /// Rows of (namespace, name, JSON document) from `sql`, the document decoded.
    fn named_rows<T: serde::de::DeserializeOwned>(
        &self,
        sql: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<(String, String, T)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(sql)?;
        let rows = stmt.query_map(args, |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (ns, name, text) = row?;
            out.push((ns, name, serde_json::from_str(&text)?));
        }
        Ok(out)
    }

    /// A deployment's record (default when it never rolled out).
    pub fn rollout(&self, namespace: &str, name: &str) -> Result<DeploymentRecord, StoreError> {
        let text: Option<String> = self
            .conn()
            .query_row(
                "SELECT state FROM rollouts WHERE namespace = ?1 AND name = ?2",
                params![namespace, name],
                |r| r.get(0),
            )
            .optional()?;
        Ok(text
            .map(|t| serde_json::from_str(&t))
            .transpose()?
            .unwrap_or_default())
    }

    /// The evaluation of `namespace` with a content address.
    pub fn evaluation(
        &self,
        namespace: &str,
        cache_key: &str,
    ) -> Result<Option<EvaluationRecord>, StoreError> {
        let row = self
            .conn()
            .query_row(
                "SELECT cache_key, namespace, name, model, version, suite, status FROM evaluations
                 WHERE namespace = ?1 AND cache_key = ?2",
                params![namespace, cache_key],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, String>(6)?,
                    ))
                },
            )
            .optional()?;
        row.map(
            |(cache_key, namespace, name, model, version, suite, status)| {
                Ok(EvaluationRecord {
                    cache_key,
                    namespace,
                    name,
                    model,
                    version,
                    suite,
                    status: serde_json::from_str(&status)?,
                })
            },
        )
        .transpose()
    }

    /// History entries, oldest first.
    /// The id of the newest history entry (0 when there is none).
    pub fn last_history_id(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn()
            .query_row("SELECT COALESCE(MAX(id), 0) FROM history", [], |r| r.get(0))?)
    }

    pub fn history(&self, filter: &HistoryFilter) -> Result<Vec<HistoryEntry>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, at, event, namespace, model, subject, version, alias, actor, revision, decision, message, data
             FROM history
             WHERE (?1 IS NULL OR model = ?1) AND (?2 IS NULL OR alias = ?2) AND (?3 IS NULL OR at <= ?3)
               AND (?4 IS NULL OR id > ?4)
             ORDER BY CASE WHEN ?4 IS NULL THEN at ELSE '' END, id",
        )?;
        let until = filter
            .until
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
        let rows = stmt.query_map(
            params![filter.model, filter.alias, until, filter.after_id],
            |r| {
                Ok((
                    r.get::<_, String>(1)?,
                    HistoryEntry {
                        id: r.get(0)?,
                        at: DateTime::<Utc>::MIN_UTC,
                        event: r.get(2)?,
                        namespace: r.get(3)?,
                        model: r.get(4)?,
                        subject: r.get(5)?,
                        version: r.get(6)?,
                        alias: r.get(7)?,
                        actor: r.get(8)?,
                        revision: r.get(9)?,
                        decision: r.get(10)?,
                        message: r.get(11)?,
                        data: serde_json::Value::Null,
                    },
                    r.get::<_, String>(12)?,
                ))
            },
        )?;
        let mut out = Vec::new();
        for row in rows {
            let (at, mut entry, data) = row?;
            entry.at = DateTime::parse_from_rfc3339(&at)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or(entry.at);
            entry.data = serde_json::from_str(&data)?;
            out.push(entry);
        }
        Ok(out)
    }

    /// The version an alias pointed at, at a time: the last `AliasMoved` at or before it.
    pub fn alias_at(
        &self,
        model: &str,
        alias: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<HistoryEntry>, StoreError> {
        let filter = HistoryFilter {
            model: Some(model.into()),
            alias: Some(alias.into()),
            until: Some(at),
            after_id: None,
        };
        Ok(self
            .history(&filter)?
            .into_iter()
            .rev()
            .find(|h| h.event == "AliasMoved"))
    }
}

mod passes;
mod schema;

#[cfg(test)]
mod tests;
