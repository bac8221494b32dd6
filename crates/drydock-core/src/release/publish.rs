//! Moving channel tags: the one writer of `<product>:<channel>`, always
//! together with the ledger entry that records the move (see the
//! [module documentation](super#atomicity-record-first-then-tag-repair-on-the-next-read)).
//!
//! * [`release()`]: a green run's release (immutable tags, registry push,
//!   entry, channel tag);
//! * [`move_channel`]: a promote or a rollback (entry, channel tag);
//! * [`repair`] / [`repair_all`]: re-point tags left behind by a process
//!   that died between the two;
//! * [`ChannelLock`]: the per-channel `flock` every one of them holds.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::{Action, ChannelRef, Entry, Ledger, LedgerError, NewEntry};
use crate::engine::EngineError;
use crate::events::Event;
use crate::events::EventSender;
use crate::runtime::Runtime;

/// A check made under the channel lock right before a release is recorded
/// (its commit point): `Err(why)` refuses the release, which then records
/// nothing and leaves the channel tag where it was
/// ([`ReleaseError::Fenced`]). The runner passes one that confirms the run's
/// attempt still holds its lease, so that a stale attempt never releases.
#[derive(Clone)]
pub struct ReleaseFence(Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>);

impl ReleaseFence {
    /// A fence calling `check` (once per release, under the channel lock:
    /// keep it short and bounded in time).
    pub fn new(
        check: impl Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync + 'static,
    ) -> ReleaseFence {
        ReleaseFence(Arc::new(check))
    }

    async fn check(&self) -> Result<(), String> {
        (self.0)().await
    }
}

impl std::fmt::Debug for ReleaseFence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReleaseFence(..)")
    }
}

/// What a release wants: an image that becomes the channel's.
#[derive(Debug, Clone)]
pub struct ReleaseRequest {
    /// The product (image repository), e.g. `registry.example/shop`.
    pub product: String,
    /// The channel, e.g. `staging`.
    pub channel: String,
    /// The engine's id of the image released (`sha256:…`).
    pub image_id: String,
    /// Tags that name this image for good, applied (and pushed) before
    /// anything else: the git sha when known, then the run id.
    pub tags: Vec<String>,
    /// `<registry>/<product>`, when the release is pushed to a registry.
    pub registry_repository: Option<String>,
    /// The git commit the image was built from, if known.
    pub git_sha: Option<String>,
    /// The run that built and tested the image, if known.
    pub run_id: Option<String>,
    /// Checked under the channel lock right before the release is recorded
    /// (`None`: no check).
    pub fence: Option<ReleaseFence>,
}

/// What a release, promote or rollback moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    /// Image id.
    pub image_id: String,
    /// The product (image repository name).
    pub name: String,
    /// Local tags applied, as references (`<name>:<tag>`), the channel tag last.
    pub tags: Vec<String>,
    /// The channel moved.
    pub channel: String,
    /// References pushed to the release registry (empty without one).
    pub pushed: Vec<String>,
    /// The ledger entry that records the move.
    pub entry: Entry,
}

/// Why a channel could not be moved, and whether the move was recorded.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// An engine call before the commit point failed (or was cancelled):
    /// nothing was recorded and the channel tag did not move. Registry tags
    /// this release had made locally were put back.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The channel lock could not be taken: nothing changed.
    #[error("cannot take the lock of channel {channel} ({}): {source}", path.display())]
    Lock {
        /// The channel.
        channel: ChannelRef,
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The ledger could not be opened or refused the entry: nothing was
    /// recorded and the channel tag did not move.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The request's [`ReleaseFence`] refused the release (e.g. the runner's
    /// attempt lost its lease): nothing was recorded and the channel tag did
    /// not move.
    #[error("the release of {channel} is not recorded: {why}")]
    Fenced {
        /// The channel.
        channel: ChannelRef,
        /// Why, from the fence.
        why: String,
    },
    /// The move is recorded (it happened, as far as drydock is concerned)
    /// but the channel tag could not be moved: the next drydock command that
    /// reads the channel re-points it ([`repair`]).
    #[error(
        "{} of {} is recorded as ledger entry {} but the tag {}:{} could not be moved: {source}; the next drydock command that reads the channel re-points it",
        released.entry.action, released.name, released.entry.id, released.name, released.channel
    )]
    TagNotMoved {
        /// What was recorded.
        released: Box<Released>,
        /// Why the tag did not move.
        #[source]
        source: EngineError,
    },
}

impl ReleaseError {
    /// Whether the move was cancelled before its commit point (nothing changed).
    pub fn is_cancelled(&self) -> bool {
        matches!(self, ReleaseError::Engine(EngineError::Cancelled))
    }

    /// What was recorded despite the error ([`ReleaseError::TagNotMoved`]).
    pub fn recorded(&self) -> Option<&Released> {
        match self {
            ReleaseError::TagNotMoved { released, .. } => Some(released),
            _ => None,
        }
    }
}

/// Holds an exclusive `flock` until dropped (the file stays, empty).
#[derive(Debug)]
pub struct ChannelLock {
    _file: File,
}

impl ChannelLock {
    /// Takes the exclusive lock on `path` (creating the file and its folder),
    /// calling `waiting` once when another process holds it, then blocking
    /// until it is free. Blocking: call it off the async runtime.
    pub fn acquire(path: &Path, waiting: impl FnOnce()) -> std::io::Result<ChannelLock> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                waiting();
                file.lock()?;
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        Ok(ChannelLock { _file: file })
    }
}

/// The lock file of `kind` (`release`, `deploy`) for a channel of a product:
/// `<folder of the ledger>/locks/<kind>-<channel>-<hash>.lock`, where the
/// hash (16 hex digits of SHA-256 over product and channel) keeps two
/// products' channels apart whatever characters their names hold.
pub fn lock_path(ledger: &Path, kind: &str, channel: &ChannelRef) -> PathBuf {
    let dir = ledger
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut hash = Sha256::new();
    hash.update(channel.product.as_bytes());
    hash.update([0]);
    hash.update(channel.channel.as_bytes());
    let slug: String = channel
        .channel
        .chars()
        .take(32)
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    dir.join("locks").join(format!(
        "{kind}-{slug}-{}.lock",
        &hex::encode(hash.finalize())[..16]
    ))
}

/// Takes the release lock of `channel` off the async runtime.
async fn lock(ledger: &Path, channel: &ChannelRef) -> Result<ChannelLock, ReleaseError> {
    let path = lock_path(ledger, "release", channel);
    let fail = |path: PathBuf, source| ReleaseError::Lock {
        channel: channel.clone(),
        path,
        source,
    };
    let target = path.clone();
    match tokio::task::spawn_blocking(move || ChannelLock::acquire(&target, || {})).await {
        Ok(Ok(lock)) => Ok(lock),
        Ok(Err(e)) => Err(fail(path, e)),
        Err(e) => Err(fail(path, std::io::Error::other(e.to_string()))),
    }
}

/// Runs `f` on a fresh connection to the ledger at `path`, off the async
/// runtime.
async fn with_ledger<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce(&mut Ledger) -> Result<T, LedgerError> + Send + 'static,
) -> Result<T, LedgerError> {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || f(&mut Ledger::open(&owned)?))
        .await
        .map_err(|e| LedgerError::Open {
            path: path.to_path_buf(),
            source: format!("the ledger task failed: {e}").into(),
        })?
}

/// The commit point: under the channel's lock, records `entry` in the
/// ledger at `ledger`, then moves `<name>:<channel>` to its image.
async fn commit<R: Runtime + ?Sized>(
    runtime: &R,
    ledger: &Path,
    entry: NewEntry,
    mut tags: Vec<String>,
    pushed: Vec<String>,
    fence: Option<&ReleaseFence>,
) -> Result<Released, ReleaseError> {
    let channel = ChannelRef::new(&entry.name, &entry.channel);
    let _lock = lock(ledger, &channel).await?;
    if let Some(fence) = fence {
        fence.check().await.map_err(|why| ReleaseError::Fenced {
            channel: channel.clone(),
            why,
        })?;
    }
    // `None`: this process stopped recording (`stop_recording`).
    let recorded = with_ledger(ledger, move |l| {
        let stopped = RECORDING_STOPPED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *stopped {
            return Ok(None);
        }
        l.record(entry).map(Some)
    })
    .await?;
    let Some(entry) = recorded else {
        return Err(EngineError::Cancelled.into());
    };
    test_pause("after-record").await;
    tags.push(channel.tag());
    let released = Released {
        image_id: entry.image_id.clone(),
        name: entry.name.clone(),
        tags,
        channel: entry.channel.clone(),
        pushed,
        entry,
    };
    // From here on the move has happened: a failure only leaves the tag
    // behind, which `repair` puts right.
    match runtime
        .tag(&released.image_id, &channel.product, &channel.channel)
        .await
    {
        Ok(()) => Ok(released),
        Err(source) => Err(ReleaseError::TagNotMoved {
            released: Box::new(released),
            source,
        }),
    }
}

/// The environment variable that widens a release's windows for tests of
/// interrupts: `<point>:<milliseconds>`, where `<point>` is `before-commit`
/// (after the tags and pushes, before the channel lock) or
/// `after-record` (between recording the entry and moving the channel
/// tag). Neither pause is cancellable, as the windows they widen are not:
/// a signal there lets the release go on, a process that exits there
/// leaves what a crash at that moment would. Anything else is ignored. Not
/// for production use: it only makes a release slower.
pub const TEST_PAUSE_VAR: &str = "DRYDOCK_TEST_RELEASE_PAUSE";

/// Sleeps as [`TEST_PAUSE_VAR`] asks at `point` (at most 60 s). Not
/// cancellable: it widens a window, it changes nothing else.
async fn test_pause(point: &str) {
    let Ok(value) = std::env::var(TEST_PAUSE_VAR) else {
        return;
    };
    if let Some(ms) = value
        .split_once(':')
        .filter(|(p, _)| *p == point)
        .and_then(|(_, ms)| ms.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
    }
}

/// Whether this process stopped recording moves ([`stop_recording`]); held
/// while a move is being recorded.
static RECORDING_STOPPED: std::sync::Mutex<bool> = std::sync::Mutex::new(false);

/// From now on this process records no release, promote or rollback (each
/// ends [`ReleaseError::is_cancelled`], nothing recorded, the tag not
/// moved). Waits at most `wait` for one being written to the ledger to
/// finish; returns `false` when it did not in time (it may still land).
///
/// A process about to exit at once (a second signal) calls it before
/// reading the ledger ([`released_by_run`]), so that what it reports — the
/// run released or not — is final. Blocking: call it off the async runtime.
pub fn stop_recording(wait: Duration) -> bool {
    let deadline = std::time::Instant::now() + wait;
    loop {
        match RECORDING_STOPPED.try_lock() {
            Ok(mut stopped) => {
                *stopped = true;
                return true;
            }
            Err(std::sync::TryLockError::Poisoned(p)) => {
                *p.into_inner() = true;
                return true;
            }
            Err(std::sync::TryLockError::WouldBlock) => {
                if std::time::Instant::now() >= deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// Releases `request.image_id` to `request.channel` of `request.product`,
/// recording it in the ledger at `ledger`:
///
/// 1. tags `<product>:<tag>` for each of `request.tags`;
/// 2. with a registry, pushes `<registry>/<product>:<tag>` for each tag and
///    then for the channel ([`push_release`]; `cancel` stops it; events go to
///    `events`);
/// 3. the commit point: under the channel lock, checks `request.fence`
///    (refused: [`ReleaseError::Fenced`], nothing recorded), records an
///    [`Action::Release`] entry, then moves `<product>:<channel>`.
///
/// `cancel` stops the release before it starts and during the pushes
/// ([`ReleaseError::is_cancelled`]); that or a failure in steps 1–2 records
/// nothing and leaves the channel tag where it was. Local tags are not
/// cancelled (a release under way completes), nor is step 3 (two short local
/// operations): a release that got there happened — unless the process
/// stopped recording first ([`stop_recording`]), when nothing is recorded.
///
/// With a registry, its channel tag is pushed before the commit point (a
/// refused push must change nothing): if drydock dies between that push and
/// the commit, the registry's `<channel>` is ahead of the ledger until the
/// next release or `drydock push`. Rollbacks and promotes never touch
/// registries.
pub async fn release<R: Runtime + ?Sized>(
    runtime: &R,
    ledger: &Path,
    request: &ReleaseRequest,
    cancel: &CancellationToken,
    events: Option<&EventSender>,
) -> Result<Released, ReleaseError> {
    if cancel.is_cancelled() {
        return Err(EngineError::Cancelled.into());
    }
    for tag in &request.tags {
        runtime
            .tag(&request.image_id, &request.product, tag)
            .await?;
    }
    let pushed = match &request.registry_repository {
        Some(repository) => {
            let mut tags = request.tags.clone();
            tags.push(request.channel.clone());
            push_release(
                runtime,
                &request.image_id,
                repository,
                &tags,
                cancel,
                events,
            )
            .await?
        }
        None => Vec::new(),
    };
    test_pause("before-commit").await;
    let tags = request
        .tags
        .iter()
        .map(|t| format!("{}:{t}", request.product))
        .collect();
    commit(
        runtime,
        ledger,
        NewEntry::release(
            request.channel.clone(),
            request.product.clone(),
            request.image_id.clone(),
            request.git_sha.clone(),
            request.run_id.clone(),
        ),
        tags,
        pushed,
        request.fence.as_ref(),
    )
    .await
}

/// Records `entry` (a promote or a rollback: [`NewEntry::promote`],
/// [`NewEntry::rollback`]) in the ledger at `ledger` and moves its channel
/// tag `<name>:<channel>` to its image, under the channel lock: see the
/// [module documentation](super#atomicity-record-first-then-tag-repair-on-the-next-read).
/// The ledger checks the entry ([`Ledger::record`]); nothing changes when it
/// refuses it.
pub async fn move_channel<R: Runtime + ?Sized>(
    runtime: &R,
    ledger: &Path,
    entry: NewEntry,
) -> Result<Released, ReleaseError> {
    commit(runtime, ledger, entry, Vec::new(), Vec::new(), None).await
}

/// What [`repair`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// The channel has no entries: nothing to compare.
    Unknown,
    /// The tag points to the ledger's current image.
    InSync,
    /// The tag was elsewhere (or absent) and now points to the current
    /// entry's image.
    Repointed {
        /// The channel.
        channel: ChannelRef,
        /// The image the tag pointed to before, if it existed.
        was: Option<String>,
        /// The ledger's current entry, whose image the tag now has.
        entry: Entry,
    },
    /// The tag is not on the current entry's image, and that image is no
    /// longer in the engine: nothing could be done.
    ImageMissing {
        /// The channel.
        channel: ChannelRef,
        /// The image the tag points to, if it exists.
        was: Option<String>,
        /// The ledger's current entry.
        entry: Entry,
    },
}

impl Repair {
    /// One line for people when something was (or could not be) done.
    pub fn message(&self) -> Option<String> {
        let short = |id: &str| {
            let hex = id.trim_start_matches("sha256:");
            hex[..hex.len().min(12)].to_string()
        };
        let was = |was: &Option<String>| match was {
            Some(id) => format!("pointed to {}", short(id)),
            None => "did not exist".to_string(),
        };
        match self {
            Repair::Unknown | Repair::InSync => None,
            Repair::Repointed { channel, was: w, entry } => Some(format!(
                "channel tag {} {}, not to what the ledger records (a move was interrupted); re-pointed to {} of {} ({} {}, run {})",
                channel.tag(),
                was(w),
                short(&entry.image_id),
                channel,
                entry.action,
                entry.id,
                entry.run_id.as_deref().unwrap_or("-")
            )),
            Repair::ImageMissing { channel, was: w, entry } => Some(format!(
                "channel tag {} {}, but the ledger's current {} {} has image {}, which is no longer in the engine: the tag was left as it is (roll back or release again)",
                channel.tag(),
                was(w),
                entry.action,
                entry.id,
                short(&entry.image_id)
            )),
        }
    }
}

/// Makes `<product>:<channel>` point to the ledger's current image of the
/// channel, under the channel lock (so never in the middle of a move), and
/// says what it found. This is the second half of the ledger's atomicity:
/// every command that reads a channel calls it first.
pub async fn repair<R: Runtime + ?Sized>(
    runtime: &R,
    ledger: &Path,
    channel: &ChannelRef,
) -> Result<Repair, ReleaseError> {
    let _lock = lock(ledger, channel).await?;
    let (product, name) = (channel.product.clone(), channel.channel.clone());
    let Some(entry) = with_ledger(ledger, move |l| l.current(&product, &name)).await? else {
        return Ok(Repair::Unknown);
    };
    let was = runtime.image_id(&channel.tag()).await?;
    if was.as_deref() == Some(entry.image_id.as_str()) {
        return Ok(Repair::InSync);
    }
    if !runtime.image_exists(&entry.image_id).await? {
        return Ok(Repair::ImageMissing {
            channel: channel.clone(),
            was,
            entry,
        });
    }
    runtime
        .tag(&entry.image_id, &channel.product, &channel.channel)
        .await?;
    Ok(Repair::Repointed {
        channel: channel.clone(),
        was,
        entry,
    })
}

/// [`repair`] of every channel of every product in the ledger (a runner at
/// start-up). One channel's error does not stop the others.
pub async fn repair_all<R: Runtime + ?Sized>(
    runtime: &R,
    ledger: &Path,
) -> Result<Vec<(ChannelRef, Result<Repair, ReleaseError>)>, ReleaseError> {
    let channels = with_ledger(ledger, |l| l.channels()).await?;
    let mut found = Vec::new();
    for channel in channels {
        let repaired = repair(runtime, ledger, &channel).await;
        found.push((channel, repaired));
    }
    Ok(found)
}

/// The release recorded by run `run_id` in the ledger at `ledger`, read
/// without writing anything and waiting at most 200 ms for the file: what
/// a process about to be cut short (a second signal) checks to report the
/// run consistently. `None` when there is none or the ledger cannot be read.
pub fn released_by_run(ledger: &Path, run_id: &str) -> Option<Entry> {
    let conn = rusqlite::Connection::open_with_flags(
        ledger,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ok()?;
    conn.busy_timeout(Duration::from_millis(200)).ok()?;
    let ledger = Ledger {
        conn,
        path: ledger.to_path_buf(),
    };
    ledger
        .release_of_run(run_id)
        .ok()
        .flatten()
        .filter(|e| e.action == Action::Release)
}

/// Tags `image_id` as `<repository>:<tag>` and pushes each, in order (put
/// the channel last), sending an [`Event::Pushed`] to `events` after each.
/// Returns the references pushed. On failure or cancellation, the local
/// `<repository>:<tag>` tags are put back to what they pointed to before (or
/// removed) and the error is returned; references already pushed stay in the
/// registry.
pub async fn push_release<R: Runtime + ?Sized>(
    runtime: &R,
    image_id: &str,
    repository: &str,
    tags: &[String],
    cancel: &CancellationToken,
    events: Option<&EventSender>,
) -> Result<Vec<String>, EngineError> {
    let registry = crate::engine::registry_host(repository);
    let mut previous: Vec<(String, Option<String>)> = Vec::new();
    let mut pushed = Vec::new();
    let mut result = Ok(());
    for tag in tags {
        let reference = format!("{repository}:{tag}");
        let step = async {
            previous.push((reference.clone(), runtime.image_id(&reference).await?));
            runtime.tag(image_id, repository, tag).await?;
            if cancel.is_cancelled() {
                return Err(EngineError::Cancelled);
            }
            tokio::select! {
                pushed = runtime.push(&reference) => pushed,
                _ = cancel.cancelled() => Err(EngineError::Cancelled),
            }
        };
        if let Err(e) = step.await {
            result = Err(e);
            break;
        }
        if let Some(events) = events {
            let _ = events
                .send(Event::Pushed {
                    reference: reference.clone(),
                    registry: registry.clone(),
                })
                .await;
        }
        pushed.push(reference);
    }
    if let Err(e) = result {
        for (reference, before) in previous.into_iter().rev() {
            let restored = match &before {
                Some(id) if id != image_id => {
                    let (repo, tag) = crate::engine::split_tag(&reference);
                    runtime.tag(id, repo, tag).await
                }
                Some(_) => Ok(()),
                None => runtime.untag(&reference).await,
            };
            if let Err(err) = restored {
                tracing::warn!("could not restore local tag {reference}: {err}");
            }
        }
        return Err(e);
    }
    Ok(pushed)
}
