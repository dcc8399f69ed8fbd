//! The CRD-schema passes the store remembers for `slipway run` (see
//! `decide::catalog::schema::Passes`): a table made by its first write, so readers of a state
//! folder never write.

use rusqlite::params;

use super::{Store, StoreError};

impl Store {
    /// Digests of the document texts known to pass the CRD-schema check of the build with this
    /// `fingerprint` (see `decide::catalog::schema::Passes`). Empty before any were remembered.
    pub fn schema_passes(&self, fingerprint: &str) -> Result<Vec<[u8; 32]>, StoreError> {
        let conn = self.conn();
        let mut stmt = match conn.prepare("SELECT digest FROM schema_passes WHERE build = ?1") {
            Ok(s) => s,
            // Not created yet (the table is made by the first write, so readers never write).
            Err(rusqlite::Error::SqliteFailure(_, Some(m))) if m.contains("no such table") => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(e.into()),
        };
        let rows = stmt.query_map([fingerprint], |r| r.get::<_, Vec<u8>>(0))?;
        let mut out = Vec::new();
        for r in rows {
            if let Ok(d) = <[u8; 32]>::try_from(r?.as_slice()) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Remembers document texts that passed the check of the build with `fingerprint`, and
    /// forgets what other builds remembered.
    pub fn remember_schema_passes(
        &self,
        fingerprint: &str,
        digests: &[[u8; 32]],
    ) -> Result<(), StoreError> {
        if digests.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_passes (
               digest BLOB PRIMARY KEY, build TEXT NOT NULL) WITHOUT ROWID;",
        )?;
        tx.execute("DELETE FROM schema_passes WHERE build != ?1", [fingerprint])?;
        {
            let mut insert =
                tx.prepare("INSERT OR IGNORE INTO schema_passes (digest, build) VALUES (?1, ?2)")?;
            for d in digests {
                insert.execute(params![d.as_slice(), fingerprint])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}
