//! The state database's schema version: what this Slipway reads, and the upgrade from an older
//! one.

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

/// 2: evaluations are kept per namespace (a content address run in one namespace is not
/// another's result).
pub(super) const SCHEMA_VERSION: i64 = 2;

/// The schema version of an opened database; a newer one than this Slipway's is refused.
pub(super) fn schema_version(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(found)
}

/// Schema 1 → 2: evaluations keyed by (namespace, content address) instead of the content address
/// alone. The reuse cache starts empty: schema 1 kept one run per content address for every
/// namespace, and a row may hold another namespace's results under its own (runs are run again
/// when next needed; finished evaluations keep their statuses). Checked again under the write lock
/// (another process may have migrated meanwhile).
pub(super) fn migrate_to_2(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("BEGIN IMMEDIATE;")?;
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found != 1 {
        conn.execute_batch("COMMIT;")?;
        return Ok(());
    }
    let migrated = conn.execute_batch(
        "CREATE TABLE evaluations_by_namespace (
           cache_key TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
           model TEXT NOT NULL, version TEXT NOT NULL, suite TEXT NOT NULL, status TEXT NOT NULL,
           PRIMARY KEY (namespace, cache_key));
         DROP TABLE evaluations;
         ALTER TABLE evaluations_by_namespace RENAME TO evaluations;
         CREATE INDEX evaluations_by_version ON evaluations (namespace, model, version);
         PRAGMA user_version = 2;
         COMMIT;",
    );
    if migrated.is_err() {
        let _ = conn.execute_batch("ROLLBACK;");
    }
    Ok(migrated?)
}
