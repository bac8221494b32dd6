//! What `drydock deploy` did: one row per deploy attempt of a channel, in the
//! ledger file beside the release entries (table `deployments`, append-only
//! like `entries`). Release entries say what a channel *points to*;
//! deployments say what *ran*: which entry went live, and which attempts
//! failed (and were rolled back automatically).

use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::{Ledger, LedgerError};

/// The schema of the deployments table, idempotent: run on every open.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS deployments (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    channel   TEXT NOT NULL CHECK (channel <> ''),
    entry_id  INTEGER NOT NULL REFERENCES entries(id),
    image_id  TEXT NOT NULL CHECK (image_id <> ''),
    container TEXT,
    outcome   TEXT NOT NULL CHECK (outcome IN ('live', 'failed', 'unchanged')),
    detail    TEXT,
    at        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deployments_by_channel ON deployments (channel, id);
CREATE TRIGGER IF NOT EXISTS deployments_no_update BEFORE UPDATE ON deployments
BEGIN
    SELECT RAISE(ABORT, 'the deployment log is append-only');
END;
CREATE TRIGGER IF NOT EXISTS deployments_no_delete BEFORE DELETE ON deployments
BEGIN
    SELECT RAISE(ABORT, 'the deployment log is append-only');
END;
";

/// One deploy attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// Ledger-wide id, increasing in recording order.
    pub id: i64,
    /// The channel deployed.
    pub channel: String,
    /// The ledger entry whose image was deployed.
    pub entry_id: i64,
    /// The image id deployed.
    pub image_id: String,
    /// The application container (for `live` and `unchanged`).
    pub container: Option<String>,
    /// `live` (switched to it), `unchanged` (it was live already) or
    /// `failed` (never served; the previous container kept serving).
    pub outcome: String,
    /// Why it failed, or what triggered it (`rollback`).
    pub detail: Option<String>,
    /// When it was recorded (RFC 3339, UTC).
    pub at: String,
}

/// A deploy attempt to [`record_deployment`](Ledger::record_deployment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeployment {
    /// The channel deployed.
    pub channel: String,
    /// The ledger entry whose image was deployed.
    pub entry_id: i64,
    /// The image id deployed.
    pub image_id: String,
    /// The application container.
    pub container: Option<String>,
    /// `live`, `unchanged` or `failed`.
    pub outcome: String,
    /// Why it failed, or what triggered it.
    pub detail: Option<String>,
}

impl Ledger {
    /// Appends a deploy attempt and returns it as stored.
    pub fn record_deployment(&mut self, d: NewDeployment) -> Result<Deployment, LedgerError> {
        if !matches!(d.outcome.as_str(), "live" | "failed" | "unchanged") {
            return Err(LedgerError::InvalidEntry(format!(
                "unknown deployment outcome {:?}",
                d.outcome
            )));
        }
        let at = chrono::Utc::now().to_rfc3339();
        self.conn.execute(
            "INSERT INTO deployments (channel, entry_id, image_id, container, outcome, detail, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                d.channel,
                d.entry_id,
                d.image_id,
                d.container,
                d.outcome,
                d.detail,
                at
            ],
        )?;
        Ok(Deployment {
            id: self.conn.last_insert_rowid(),
            channel: d.channel,
            entry_id: d.entry_id,
            image_id: d.image_id,
            container: d.container,
            outcome: d.outcome,
            detail: d.detail,
            at,
        })
    }

    /// Every deploy attempt of the channel, oldest first.
    pub fn deployments(&self, channel: &str) -> Result<Vec<Deployment>, LedgerError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, channel, entry_id, image_id, container, outcome, detail, at
             FROM deployments WHERE channel = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([channel], |row| {
            Ok(Deployment {
                id: row.get(0)?,
                channel: row.get(1)?,
                entry_id: row.get(2)?,
                image_id: row.get(3)?,
                container: row.get(4)?,
                outcome: row.get(5)?,
                detail: row.get(6)?,
                at: row.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::NewEntry;

    #[test]
    fn deployments_are_recorded_in_order_and_append_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::open(&dir.path().join("ledger.sqlite")).unwrap();
        let a = ledger
            .record(NewEntry::release("s", "app", "sha256:aa", None, None))
            .unwrap();
        let new = |outcome: &str| NewDeployment {
            channel: "s".into(),
            entry_id: a.id,
            image_id: a.image_id.clone(),
            container: Some("c".into()),
            outcome: outcome.into(),
            detail: None,
        };
        ledger.record_deployment(new("live")).unwrap();
        ledger.record_deployment(new("failed")).unwrap();
        assert!(ledger.record_deployment(new("maybe")).is_err());
        let all = ledger.deployments("s").unwrap();
        assert_eq!(
            all.iter().map(|d| d.outcome.as_str()).collect::<Vec<_>>(),
            ["live", "failed"]
        );
        assert!(ledger.deployments("other").unwrap().is_empty());
        assert!(ledger.conn.execute("DELETE FROM deployments", []).is_err());
        // Reopening keeps them (the schema is idempotent).
        drop(ledger);
        let ledger = Ledger::open(&dir.path().join("ledger.sqlite")).unwrap();
        assert_eq!(ledger.deployments("s").unwrap().len(), 2);
    }
}
