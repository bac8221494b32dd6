//! The release ledger: a durable, append-only record of every image a
//! channel (`staging`, `production`, …) of a product pointed to, the rollback
//! logic built on it, and the one place that moves channel tags.
//!
//! # Products and channels
//!
//! A channel belongs to a product: the image repository a pipeline releases
//! (`release.name`, stored as each entry's [`name`](Entry::name)). Every query
//! takes both ([`ChannelRef`]): two products with a `staging` channel on one
//! machine have separate histories, tags (`<product>:staging`), rollbacks and
//! deploys. [`Ledger::products_of`] tells which products have a channel, for
//! callers that must find the product from the channel alone.
//!
//! # Who writes
//!
//! Only this module moves a channel tag, always together with its entry:
//!
//! * a green run's release ([`release()`]): tags the image `<product>:<git
//!   sha>` and `<product>:<run id>`, pushes them (and the channel tag) to the
//!   release registry if there is one, then records an [`Action::Release`]
//!   and moves `<product>:<channel>`;
//! * `drydock promote` and `drydock rollback` ([`move_channel`]) record an
//!   [`Action::Promote`] ([`NewEntry::promote`]) or an [`Action::Rollback`]
//!   ([`NewEntry::rollback`] of [`Ledger::rollback_target`]'s answer) and
//!   move the tag;
//! * anything that reads a channel first calls [`repair`], which re-points a
//!   tag left behind (see below) and says so.
//!
//! # Atomicity: record first, then tag, repair on the next read
//!
//! The ledger is the source of truth; the channel tag is a copy of its
//! current entry's image, kept for people and tools that run `<product>:<channel>`.
//! Moving a channel is: take the channel's lock ([`lock_path`], a `flock`
//! beside the ledger that every drydock process honours), record the entry
//! (one SQLite transaction: the commit point), move the tag, release the lock.
//! A process that dies at any point leaves one of two states: nothing
//! recorded (the tag was not moved either: the move never happened), or the
//! entry recorded with the tag not yet moved. The second is repaired by the
//! next command that reads the channel (`drydock releases`, `rollback`,
//! `promote`, `push`, `deploy`, a runner at start-up): [`repair`] re-points
//! the tag to the ledger's current image under the same lock and reports it
//! ([`Repair::Repointed`]). So a tag is never ahead of the ledger, and a
//! rollback never skips an image that was served. A release pushed to a
//! registry pushes its channel tag there before the commit point; see
//! [`release()`] for what that means when drydock dies in between.
//!
//! Two hooks keep the verdict of a cut-short process true: a process about
//! to exit at once (a second signal) calls [`stop_recording`] before it
//! reads the ledger to choose its exit code, so no record lands after that
//! check; a release request may carry a [`ReleaseFence`], asked under the
//! lock right before recording (the runner's: "does this attempt still hold
//! its lease?"). [`TEST_PAUSE_VAR`] widens the two windows for tests.
//!
//! # Storage
//!
//! The ledger is one SQLite file ([`Ledger::default_path`] unless told
//! otherwise) in WAL mode with `synchronous = FULL`: each
//! [`record`](Ledger::record) is one transaction, so a crash mid-write loses
//! nothing that was committed and never leaves half an entry. Writers take the
//! write lock up front and wait up to [`BUSY_TIMEOUT`] for each other, so
//! several drydock processes can record into the same file at once. Entries
//! are never updated or deleted; the schema refuses it with triggers. The
//! schema is versioned and migrated on open with `rusqlite_migration` (see
//! [`SCHEMA_VERSION`]; a version-1 ledger, from before products, keeps all
//! its entries).
//!
//! # Rollback
//!
//! A channel's history is read as a stack of states: a release or a promote
//! pushes an image; a rollback pops back to the entry it restores. Rolling
//! back without `--to` goes to the state below the current one, skipping
//! entries whose image is the one the channel has now:
//!
//! | history (oldest first)          | `rollback_target(channel, None)` |
//! |---------------------------------|----------------------------------|
//! | A, B, C                         | B                                |
//! | A, B, C, rb→B                   | A                                |
//! | A, B, C, rb→B, rb→A             | [`LedgerError::NothingToRollBackTo`] |
//! | A, B, C, rb→B, D                | B (not C: C was rolled back away from) |
//!
//! With `--to`, the target is the latest release or promote of the channel
//! whose git sha starts with the given prefix (at least
//! [`MIN_SHA_PREFIX`] characters) or whose run id equals it.

mod deployments;
mod publish;
mod rollback;
mod schema;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use serde::{Deserialize, Serialize};

pub use deployments::{Deployment, NewDeployment};
pub use publish::{
    lock_path, move_channel, push_release, release, released_by_run, repair, repair_all,
    stop_recording, ChannelLock, ReleaseError, ReleaseFence, ReleaseRequest, Released, Repair,
    TEST_PAUSE_VAR,
};
pub use schema::SCHEMA_VERSION;

/// How long a ledger operation waits for another process holding the lock
/// before it fails with [`LedgerError::Sql`] (`database is locked`).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The shortest git sha prefix `rollback --to` accepts as a sha.
pub const MIN_SHA_PREFIX: usize = 7;

/// The file name of the ledger inside drydock's state directory.
const FILE_NAME: &str = "ledger.sqlite";

/// The columns of [`Entry`], in the order [`entry_from_row`] reads them.
const COLUMNS: &str = "id, channel, name, image_id, git_sha, run_id, action, reason, restores, at";

/// A channel of a product: what a channel tag `<product>:<channel>` names and
/// what the ledger keys its histories by. Two products may both have a
/// `staging` channel; they never share its history, tag or deploy.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChannelRef {
    /// The product: the image repository a pipeline releases
    /// (`release.name`, the ledger entries' `name`), e.g.
    /// `registry.example/shop`.
    pub product: String,
    /// The channel, e.g. `staging`.
    pub channel: String,
}

impl ChannelRef {
    /// The channel `channel` of `product`.
    pub fn new(product: impl Into<String>, channel: impl Into<String>) -> Self {
        ChannelRef {
            product: product.into(),
            channel: channel.into(),
        }
    }

    /// The channel tag, `<product>:<channel>`.
    pub fn tag(&self) -> String {
        format!("{}:{}", self.product, self.channel)
    }
}

impl fmt::Display for ChannelRef {
    /// `staging of registry.example/shop`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {}", self.channel, self.product)
    }
}

/// What a ledger entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A green run moved the channel to the image it built.
    Release,
    /// The channel was pointed back to an image it had before.
    Rollback,
    /// An image was moved to this channel from another one.
    Promote,
}

impl Action {
    /// The lowercase name, as stored and serialized: `release`, `rollback`,
    /// `promote`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Release => "release",
            Action::Rollback => "rollback",
            Action::Promote => "promote",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;

    /// Parses the lowercase name written by [`Action::as_str`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "release" => Ok(Action::Release),
            "rollback" => Ok(Action::Rollback),
            "promote" => Ok(Action::Promote),
            other => Err(format!("unknown ledger action {other:?}")),
        }
    }
}

impl ToSql for Action {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for Action {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value
            .as_str()?
            .parse()
            .map_err(|e: String| FromSqlError::Other(e.into()))
    }
}

/// One recorded entry of the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Ledger-wide id, increasing in recording order and never reused.
    pub id: i64,
    /// The deploy channel, e.g. `staging`.
    pub channel: String,
    /// The image repository, e.g. `registry.example/shop`.
    pub name: String,
    /// The engine's image id (`sha256:…`) the channel tag pointed to.
    pub image_id: String,
    /// The git commit the image was built from, if known.
    pub git_sha: Option<String>,
    /// The run that built (or, for a promote, tested) the image, if known.
    pub run_id: Option<String>,
    /// What happened.
    pub action: Action,
    /// Why, as given by the person who promoted or rolled back.
    pub reason: Option<String>,
    /// For a rollback: the id of the entry whose image was restored.
    pub restores: Option<i64>,
    /// When it was recorded (RFC 3339, UTC).
    pub at: String,
}

/// An entry to [`record`](Ledger::record); the ledger assigns the id and the
/// time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEntry {
    /// The deploy channel; must not be empty.
    pub channel: String,
    /// The image repository; must not be empty.
    pub name: String,
    /// The engine's image id the channel tag now points to; must not be empty.
    pub image_id: String,
    /// The git commit the image was built from, if known.
    pub git_sha: Option<String>,
    /// The run that built (or tested) the image, if known.
    pub run_id: Option<String>,
    /// What happened.
    pub action: Action,
    /// Why, if given.
    pub reason: Option<String>,
    /// For a rollback (and only then): the id of an earlier release or promote
    /// of the same channel with the same image, normally
    /// [`rollback_target`](Ledger::rollback_target)'s answer.
    pub restores: Option<i64>,
}

impl NewEntry {
    /// A release of `image_id` to `channel` by a green run.
    pub fn release(
        channel: impl Into<String>,
        name: impl Into<String>,
        image_id: impl Into<String>,
        git_sha: Option<String>,
        run_id: Option<String>,
    ) -> Self {
        NewEntry {
            channel: channel.into(),
            name: name.into(),
            image_id: image_id.into(),
            git_sha,
            run_id,
            action: Action::Release,
            reason: None,
            restores: None,
        }
    }

    /// A rollback of `target`'s channel to `target`'s image: keeps its name,
    /// git sha and run id and sets [`restores`](NewEntry::restores) to its id.
    pub fn rollback(target: &Entry, reason: Option<String>) -> Self {
        NewEntry {
            channel: target.channel.clone(),
            name: target.name.clone(),
            image_id: target.image_id.clone(),
            git_sha: target.git_sha.clone(),
            run_id: target.run_id.clone(),
            action: Action::Rollback,
            reason,
            restores: Some(target.id),
        }
    }

    /// A promote of `source`'s image (typically another channel's
    /// [`current`](Ledger::current) entry) to `channel`: keeps its name, git
    /// sha and run id.
    pub fn promote(source: &Entry, channel: impl Into<String>, reason: Option<String>) -> Self {
        NewEntry {
            channel: channel.into(),
            name: source.name.clone(),
            image_id: source.image_id.clone(),
            git_sha: source.git_sha.clone(),
            run_id: source.run_id.clone(),
            action: Action::Promote,
            reason,
            restores: None,
        }
    }
}

/// What went wrong with the ledger.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The ledger file could not be created, opened or set up.
    #[error("cannot open the release ledger at {}: {source}", path.display())]
    Open {
        /// The ledger file.
        path: PathBuf,
        /// Why (an I/O, SQLite or schema-version error).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// A query or write failed, e.g. the database stayed locked longer than
    /// [`BUSY_TIMEOUT`].
    #[error("release ledger: {0}")]
    Sql(#[from] rusqlite::Error),
    /// The channel of that product has no entries.
    #[error("channel `{}` of {} has no releases in the ledger", .0.channel, .0.product)]
    UnknownChannel(ChannelRef),
    /// Nothing older than the current state of the channel has another image.
    #[error("nothing to roll back to: channel `{}` of {} has no earlier image", .0.channel, .0.product)]
    NothingToRollBackTo(ChannelRef),
    /// `rollback --to` named a release the channel never had.
    #[error("channel `{}` of {} has no release with git sha or run id `{wanted}` (a sha prefix needs at least {MIN_SHA_PREFIX} characters)", channel.channel, channel.product)]
    NoSuchRelease {
        /// The channel.
        channel: ChannelRef,
        /// The sha prefix or run id asked for.
        wanted: String,
    },
    /// [`record`](Ledger::record) was handed an inconsistent entry (empty
    /// field, or a `restores` that does not fit the rules on
    /// [`NewEntry::restores`]).
    #[error("invalid ledger entry: {0}")]
    InvalidEntry(String),
}

/// The release ledger: an open connection to the ledger file.
///
/// One `Ledger` per thread; any number of them, in any number of processes,
/// may share a file.
#[derive(Debug)]
pub struct Ledger {
    conn: Connection,
    path: PathBuf,
}

impl Ledger {
    /// Opens the ledger at `path`, creating its parent directories, the file
    /// and the schema if needed (safe to race with other processes doing the
    /// same). Sets WAL mode and a [`BUSY_TIMEOUT`] so that concurrent writers
    /// wait for each other instead of failing.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        let fail = |source: Box<dyn std::error::Error + Send + Sync>| LedgerError::Open {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| fail(e.into()))?;
        }
        let mut conn = Connection::open(path).map_err(|e| fail(e.into()))?;
        setup(&mut conn).map_err(fail)?;
        Ok(Ledger {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Where the ledger lives unless told otherwise:
    /// `$DRYDOCK_STATE_DIR/ledger.sqlite`, else
    /// `$XDG_DATA_HOME/drydock/ledger.sqlite`, else
    /// `~/.local/share/drydock/ledger.sqlite` (`.drydock/ledger.sqlite` in the
    /// current directory when there is no home either). Empty variables count
    /// as unset, and so does a relative `XDG_DATA_HOME`, as the XDG spec asks.
    pub fn default_path() -> PathBuf {
        default_path_from(|name| std::env::var_os(name).map(PathBuf::from))
    }

    /// The file this ledger was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `entry` in one transaction, stamped with the current time, and
    /// returns it as stored.
    ///
    /// Refuses ([`LedgerError::InvalidEntry`]) an empty channel, name or image
    /// id, a rollback without `restores`, a `restores` on anything else, and a
    /// `restores` that is not an earlier release or promote of the same
    /// channel with the same image id.
    pub fn record(&mut self, entry: NewEntry) -> Result<Entry, LedgerError> {
        for (field, value) in [
            ("channel", &entry.channel),
            ("name", &entry.name),
            ("image_id", &entry.image_id),
        ] {
            if value.trim().is_empty() {
                return Err(LedgerError::InvalidEntry(format!("{field} is empty")));
            }
        }
        // IMMEDIATE: take the write lock (waiting for it) before reading, so a
        // racing writer cannot make this transaction fail half-way.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        match (entry.action, entry.restores) {
            (Action::Rollback, None) => {
                return Err(LedgerError::InvalidEntry(
                    "a rollback must name the entry it restores".into(),
                ))
            }
            (Action::Rollback, Some(id)) => {
                let restored = tx
                    .query_row(
                        &format!("SELECT {COLUMNS} FROM entries WHERE id = ?1"),
                        [id],
                        entry_from_row,
                    )
                    .optional()?;
                check_restored(&entry, id, restored.as_ref())?;
            }
            (action, Some(_)) => {
                return Err(LedgerError::InvalidEntry(format!(
                    "only a rollback restores an entry, not a {action}"
                )))
            }
            (_, None) => {}
        }
        let at = chrono::Utc::now().to_rfc3339();
        tx.execute(
            "INSERT INTO entries (channel, name, image_id, git_sha, run_id, action, reason, restores, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                entry.channel,
                entry.name,
                entry.image_id,
                entry.git_sha,
                entry.run_id,
                entry.action,
                entry.reason,
                entry.restores,
                at,
            ],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(Entry {
            id,
            channel: entry.channel,
            name: entry.name,
            image_id: entry.image_id,
            git_sha: entry.git_sha,
            run_id: entry.run_id,
            action: entry.action,
            reason: entry.reason,
            restores: entry.restores,
            at,
        })
    }

    /// The channel's latest entry (what its tag points to now), or `None` if
    /// the channel of that product has none.
    pub fn current(&self, product: &str, channel: &str) -> Result<Option<Entry>, LedgerError> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM entries WHERE name = ?1 AND channel = ?2 ORDER BY id DESC LIMIT 1"
            ))?
            .query_row([product, channel], entry_from_row)
            .optional()?)
    }

    /// The entry with this id, in any channel of any product.
    pub fn entry(&self, id: i64) -> Result<Option<Entry>, LedgerError> {
        Ok(self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM entries WHERE id = ?1"))?
            .query_row([id], entry_from_row)
            .optional()?)
    }

    /// Every entry of the channel of that product, oldest first; empty for
    /// an unknown channel.
    pub fn history(&self, product: &str, channel: &str) -> Result<Vec<Entry>, LedgerError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM entries WHERE name = ?1 AND channel = ?2 ORDER BY id"
        ))?;
        let rows = stmt.query_map([product, channel], entry_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every channel that has entries, sorted by product, then channel.
    pub fn channels(&self) -> Result<Vec<ChannelRef>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT DISTINCT name, channel FROM entries ORDER BY name, channel")?;
        let rows = stmt.query_map([], |row| {
            Ok(ChannelRef::new(
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The products that have entries in a channel of this name, sorted:
    /// how a caller that knows only the channel finds its product (exactly
    /// one) or learns that it must ask (several).
    pub fn products_of(&self, channel: &str) -> Result<Vec<String>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT DISTINCT name FROM entries WHERE channel = ?1 ORDER BY name")?;
        let rows = stmt.query_map([channel], |row| row.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The release recorded by run `run_id` (the latest, should there be
    /// several), if any: whether a run's release reached its commit point.
    pub fn release_of_run(&self, run_id: &str) -> Result<Option<Entry>, LedgerError> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM entries WHERE run_id = ?1 AND action = 'release' ORDER BY id DESC LIMIT 1"
            ))?
            .query_row([run_id], entry_from_row)
            .optional()?)
    }

    /// The entry whose image `drydock rollback <channel> [--to <to>]` should
    /// restore in the channel of `product`. Only computes: the caller hands
    /// [`NewEntry::rollback`] of the answer to [`move_channel`].
    ///
    /// * Without `to`: the state before the current one (see the
    ///   [module documentation](self#rollback)), skipping entries with the
    ///   channel's current image; [`LedgerError::NothingToRollBackTo`] when
    ///   there is none.
    /// * With `to`: the latest release or promote of the channel whose git
    ///   sha starts with `to` (case-insensitive, at least [`MIN_SHA_PREFIX`]
    ///   characters) or whose run id equals `to`;
    ///   [`LedgerError::NoSuchRelease`] when there is none. This may be the
    ///   image the channel already has.
    ///
    /// [`LedgerError::UnknownChannel`] if the channel has no entries.
    pub fn rollback_target(
        &self,
        product: &str,
        channel: &str,
        to: Option<&str>,
    ) -> Result<Entry, LedgerError> {
        let history = self.history(product, channel)?;
        rollback::target(&ChannelRef::new(product, channel), &history, to).cloned()
    }

    /// The image ids referenced by each channel's last `last_n` entries
    /// (each product's channels counted apart), sorted and without
    /// duplicates: a garbage collector must keep these images so that
    /// rollbacks stay possible. `last_n = 0` returns nothing; `1` keeps only
    /// what the channels point to now.
    pub fn referenced_images(&self, last_n: usize) -> Result<Vec<String>, LedgerError> {
        let last_n = i64::try_from(last_n).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT image_id FROM (
                 SELECT image_id,
                        ROW_NUMBER() OVER (PARTITION BY name, channel ORDER BY id DESC) AS nth
                 FROM entries
             )
             WHERE nth <= ?1
             ORDER BY image_id",
        )?;
        let rows = stmt.query_map([last_n], |row| row.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// The rules on [`NewEntry::restores`] for a rollback `entry` restoring entry
/// `id`, found as `restored`.
fn check_restored(entry: &NewEntry, id: i64, restored: Option<&Entry>) -> Result<(), LedgerError> {
    let invalid = |why: String| Err(LedgerError::InvalidEntry(why));
    let Some(restored) = restored else {
        return invalid(format!(
            "rollback restores entry {id}, which does not exist"
        ));
    };
    if restored.channel != entry.channel || restored.name != entry.name {
        return invalid(format!(
            "rollback of channel `{}` of {} restores entry {id} of channel `{}` of {}",
            entry.channel, entry.name, restored.channel, restored.name
        ));
    }
    if restored.action == Action::Rollback {
        return invalid(format!(
            "rollback restores entry {id}, which is itself a rollback (restore the entry it restored)"
        ));
    }
    if restored.image_id != entry.image_id {
        return invalid(format!(
            "rollback to image {} restores entry {id}, which has image {}",
            entry.image_id, restored.image_id
        ));
    }
    Ok(())
}

/// Pragmas and schema of a freshly opened connection.
fn setup(conn: &mut Connection) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Switching to WAL needs an exclusive lock: another process opening the
    // same new file may hold it for a moment, and SQLite reports that as busy
    // without always waiting, so retry until the timeout.
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |row| {
            row.get::<_, String>(0)
        }) {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => break,
            Ok(mode) => {
                return Err(format!("cannot switch to WAL mode (journal mode is {mode})").into())
            }
            Err(e) if is_busy(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e.into()),
        }
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    // Migrations take the write lock up front, like every writer.
    conn.set_transaction_behavior(TransactionBehavior::Immediate);
    schema::migrate(conn)
}

/// Whether `e` is SQLite's "database is busy / locked".
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Reads an [`Entry`] from a row selected with [`COLUMNS`].
fn entry_from_row(row: &Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        id: row.get(0)?,
        channel: row.get(1)?,
        name: row.get(2)?,
        image_id: row.get(3)?,
        git_sha: row.get(4)?,
        run_id: row.get(5)?,
        action: row.get(6)?,
        reason: row.get(7)?,
        restores: row.get(8)?,
        at: row.get(9)?,
    })
}

/// [`Ledger::default_path`] with the environment read through `var`.
fn default_path_from(var: impl Fn(&str) -> Option<PathBuf>) -> PathBuf {
    let var = |name: &str| var(name).filter(|v| !v.as_os_str().is_empty());
    if let Some(dir) = var("DRYDOCK_STATE_DIR") {
        return dir.join(FILE_NAME);
    }
    if let Some(dir) = var("XDG_DATA_HOME").filter(|d| d.is_absolute()) {
        return dir.join("drydock").join(FILE_NAME);
    }
    match var("HOME") {
        Some(home) => home.join(".local/share/drydock").join(FILE_NAME),
        None => PathBuf::from(".drydock").join(FILE_NAME),
    }
}
