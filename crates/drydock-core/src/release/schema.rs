//! The ledger's schema and its migrations, applied with
//! [`rusqlite_migration`] (the schema version is SQLite's `PRAGMA
//! user_version`: 0 for a new file, then one more per migration applied).
//!
//! | version | what it holds |
//! |---------|---------------|
//! | 1 | `entries` (append-only release entries) and `deployments` (append-only deploy attempts), keyed by channel |
//! | 2 | a channel belongs to a product, the entry's `name`: an index on `(name, channel, id)`; triggers refusing a rollback that restores another product's or channel's entry and a deployment of another channel's entry |
//!
//! Migrations never rewrite or drop an entry: version 1 ledgers keep every
//! row and read as per-product histories from version 2 on (rows always
//! carried the product in `name`).
//!
//! Every migration is written so that running it on a file another process
//! has just migrated fails cleanly (its transaction is rolled back) or
//! changes nothing: [`migrate`] then finds the file at the latest version and
//! carries on. This is how two processes opening a ledger of an older
//! version at once both succeed.

use rusqlite::Connection;
use rusqlite_migration::{Migrations, M};

/// Version 1: the schema drydock used before products (the same statements,
/// so that an existing version-1 file is left exactly as it is).
const V1: &str = "
CREATE TABLE IF NOT EXISTS entries (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    channel  TEXT NOT NULL CHECK (channel <> ''),
    name     TEXT NOT NULL CHECK (name <> ''),
    image_id TEXT NOT NULL CHECK (image_id <> ''),
    git_sha  TEXT,
    run_id   TEXT,
    action   TEXT NOT NULL CHECK (action IN ('release', 'rollback', 'promote')),
    reason   TEXT,
    restores INTEGER REFERENCES entries(id),
    at       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_channel ON entries (channel, id);
CREATE TRIGGER IF NOT EXISTS entries_no_update BEFORE UPDATE ON entries
BEGIN
    SELECT RAISE(ABORT, 'the release ledger is append-only');
END;
CREATE TRIGGER IF NOT EXISTS entries_no_delete BEFORE DELETE ON entries
BEGIN
    SELECT RAISE(ABORT, 'the release ledger is append-only');
END;
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

/// Version 2: channels belong to products. Entries always carried their
/// product (`name`); this version indexes by it and makes the database
/// itself refuse the cross-product records version 1 allowed.
const V2: &str = "
CREATE INDEX IF NOT EXISTS entries_by_product ON entries (name, channel, id);
CREATE TRIGGER IF NOT EXISTS entries_restore_own_product BEFORE INSERT ON entries
WHEN NEW.restores IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'a rollback restores an entry of its own product and channel')
    WHERE NOT EXISTS (
        SELECT 1 FROM entries AS e
        WHERE e.id = NEW.restores AND e.name = NEW.name AND e.channel = NEW.channel
    );
END;
CREATE TRIGGER IF NOT EXISTS deployments_own_channel BEFORE INSERT ON deployments
BEGIN
    SELECT RAISE(ABORT, 'a deployment deploys an entry of its own channel')
    WHERE NOT EXISTS (
        SELECT 1 FROM entries AS e WHERE e.id = NEW.entry_id AND e.channel = NEW.channel
    );
END;
";

/// The schema version this code writes.
pub const SCHEMA_VERSION: usize = 2;

/// The migrations, oldest first (index `i` takes the file to version `i + 1`).
fn migrations() -> Migrations<'static> {
    Migrations::new(vec![M::up(V1), M::up(V2)])
}

/// The file's schema version (`PRAGMA user_version`).
pub(super) fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
}

/// Brings the file to [`SCHEMA_VERSION`], each migration in one transaction.
/// A file of a newer version is refused (a newer drydock wrote it), and so
/// is one whose version is not a number this code knows.
pub(super) fn migrate(
    conn: &mut Connection,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let found = version(conn)?;
    if found > SCHEMA_VERSION as i64 {
        return Err(format!(
            "the ledger has schema version {found}, newer than this drydock's {SCHEMA_VERSION}: upgrade drydock"
        )
        .into());
    }
    if found < 0 {
        return Err(format!("the ledger has an invalid schema version {found}").into());
    }
    match migrations().to_latest(conn) {
        Ok(()) => Ok(()),
        // Another process migrated the file between our reading its version
        // and our transaction: it is where it should be.
        Err(_) if version(conn)? == SCHEMA_VERSION as i64 => Ok(()),
        Err(e) => Err(format!("cannot migrate the ledger from schema version {found}: {e}").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_migrations_are_valid() {
        migrations().validate().unwrap();
    }

    #[test]
    fn migrating_twice_changes_nothing() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(version(&conn).unwrap(), SCHEMA_VERSION as i64);
        // As if another process had migrated after we read the version.
        conn.pragma_update(None, "user_version", 1).unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(version(&conn).unwrap(), SCHEMA_VERSION as i64);
    }
}
