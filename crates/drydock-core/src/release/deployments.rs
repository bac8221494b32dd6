//! What `drydock deploy` did: one row per deploy attempt of a channel, in the
//! ledger file beside the release entries (table `deployments`, append-only
//! like `entries`; see [`schema`](super::schema)). Release entries say what a
//! channel *points to*; deployments say what *ran*: which entry went live,
//! and which attempts failed (and were rolled back automatically). A
//! deployment belongs to the product of the entry it deployed.

use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::{Ledger, LedgerError};

/// One deploy attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// Ledger-wide id, increasing in recording order.
    pub id: i64,
    /// The product deployed (the deployed entry's `name`).
    pub product: String,
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
    /// Appends a deploy attempt and returns it as stored. Refuses
    /// ([`LedgerError::InvalidEntry`]) an unknown outcome and an entry that
    /// does not exist or is not of `d.channel`.
    pub fn record_deployment(&mut self, d: NewDeployment) -> Result<Deployment, LedgerError> {
        if !matches!(d.outcome.as_str(), "live" | "failed" | "unchanged") {
            return Err(LedgerError::InvalidEntry(format!(
                "unknown deployment outcome {:?}",
                d.outcome
            )));
        }
        let product = match self.entry(d.entry_id)? {
            Some(entry) if entry.channel == d.channel => entry.name,
            Some(entry) => {
                return Err(LedgerError::InvalidEntry(format!(
                    "deployment of channel `{}` deploys entry {} of channel `{}`",
                    d.channel, d.entry_id, entry.channel
                )))
            }
            None => {
                return Err(LedgerError::InvalidEntry(format!(
                    "deployment of entry {}, which does not exist",
                    d.entry_id
                )))
            }
        };
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
            product,
            channel: d.channel,
            entry_id: d.entry_id,
            image_id: d.image_id,
            container: d.container,
            outcome: d.outcome,
            detail: d.detail,
            at,
        })
    }

    /// Every deploy attempt of the channel of that product, oldest first.
    pub fn deployments(
        &self,
        product: &str,
        channel: &str,
    ) -> Result<Vec<Deployment>, LedgerError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT d.id, e.name, d.channel, d.entry_id, d.image_id, d.container, d.outcome, d.detail, d.at
             FROM deployments AS d JOIN entries AS e ON e.id = d.entry_id
             WHERE e.name = ?1 AND d.channel = ?2 ORDER BY d.id",
        )?;
        let rows = stmt.query_map([product, channel], |row| {
            Ok(Deployment {
                id: row.get(0)?,
                product: row.get(1)?,
                channel: row.get(2)?,
                entry_id: row.get(3)?,
                image_id: row.get(4)?,
                container: row.get(5)?,
                outcome: row.get(6)?,
                detail: row.get(7)?,
                at: row.get(8)?,
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
        let all = ledger.deployments("app", "s").unwrap();
        assert_eq!(
            all.iter().map(|d| d.outcome.as_str()).collect::<Vec<_>>(),
            ["live", "failed"]
        );
        assert!(all.iter().all(|d| d.product == "app"));
        assert!(ledger.deployments("app", "other").unwrap().is_empty());
        // Another product's `s` is another channel.
        let b = ledger
            .record(NewEntry::release("s", "other-app", "sha256:bb", None, None))
            .unwrap();
        ledger
            .record_deployment(NewDeployment {
                entry_id: b.id,
                image_id: b.image_id.clone(),
                ..new("live")
            })
            .unwrap();
        assert_eq!(ledger.deployments("app", "s").unwrap().len(), 2);
        assert_eq!(ledger.deployments("other-app", "s").unwrap().len(), 1);
        // A deployment of another channel's entry is refused.
        let mut elsewhere = new("live");
        elsewhere.channel = "production".into();
        assert!(matches!(
            ledger.record_deployment(elsewhere),
            Err(LedgerError::InvalidEntry(_))
        ));
        assert!(ledger.conn.execute("DELETE FROM deployments", []).is_err());
        // Reopening keeps them (the schema is idempotent).
        drop(ledger);
        let ledger = Ledger::open(&dir.path().join("ledger.sqlite")).unwrap();
        assert_eq!(ledger.deployments("app", "s").unwrap().len(), 2);
    }
}
