//! Step results reused when nothing that could change them changed.
//!
//! # The key
//! A step's result is stored under [`KeyParts::key`]: the hex SHA-256 of
//! the canonical JSON (serde_json, maps sorted: every map is a `BTreeMap`)
//! of a [`KeyParts`]. Every part and why it is there is documented on its
//! field; in short: the image **id** (not its tag), entrypoint, command
//! (a `script:` is its `sh -c` text), environment after interpolation
//! (secret values never, they are in `secrets` as digests), user, workdir,
//! network mode, the content digest of every host path the step mounts or
//! copies in, every service the step can reach (image id and
//! configuration), the digests of the secrets it gets, what the step
//! collects and how its outcome is judged (JUnit path, `collect:`, timeout,
//! retry, allow_failure), and drydock's version with [`FORMAT_VERSION`].
//!
//! Content digests of folders are those of a build context rooted at the
//! folder ([`BuildContext::tree_digest`]): the folder's own `.dockerignore`
//! is honoured as `docker build <folder>` honours it, and drydock's own
//! folder (`<repo>/.drydock/`, results included) is never read. A change
//! in a file a step mounts changes the key of exactly the steps that mount
//! (or copy in) a folder holding it.
//!
//! Not in the key, on purpose: the step's name and tier (two identical
//! steps share a result), the container name (it holds the run id), mtimes
//! and owners of files, the content of `cache:` volumes, and the `reuse:`
//! setting itself (it decides what a lookup accepts, see [`accepts`]).
//!
//! # The policy
//! See [`eligible`] and [`accepts`]; documented for users in
//! `docs/pipeline-format.md` (`reuse:`) and `drydock run --help`.
//!
//! # The store
//! `<state dir>/results/<key>/` ([`store_dir`]): `record.json` (a
//! [`Record`]), `artifacts/` (the step's collected files and JUnit report,
//! as they were copied out and masked) and `output.raw` (its raw output, as
//! the results folder's `logs/<tier>/<step>.raw`). An entry is written in a
//! temporary folder (`.tmp-…`) and renamed into place, so a crash never
//! leaves a half entry that could be replayed; an entry whose record does
//! not parse is removed when it is met. After each store, the least
//! recently used entries are removed until the store holds at most
//! [`max_bytes`] ([`DEFAULT_MAX_BYTES`], or `$DRYDOCK_RESULTS_MAX_BYTES`).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::context::BuildContext;
use crate::events::{Event, Status};
use crate::pipeline::Reuse;
use crate::plan::{NetworkPlan, PlannedStep};

/// The version of the key and record format: bumped when what a key holds
/// or how an entry is laid out changes, so that older entries never match.
pub const FORMAT_VERSION: u32 = 1;

/// The folder of the store under the state folder ([`crate::cache::state_dir`]).
pub const STORE_FOLDER: &str = "results";

/// Default bound of the store: 2 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 2 << 30;

/// Environment variable bounding the store, in bytes (e.g. `500000000`).
pub const MAX_BYTES_ENV: &str = "DRYDOCK_RESULTS_MAX_BYTES";

/// The record file of an entry.
pub const RECORD_FILE: &str = "record.json";
/// The folder of an entry's collected files.
pub const ARTIFACTS_FOLDER: &str = "artifacts";
/// An entry's raw output.
pub const OUTPUT_FILE: &str = "output.raw";

/// The file beside a raw log that counts the bytes left out of it
/// (`<file>.omitted`, as the results folder's raw logs have).
pub fn omitted_path(raw: &Path) -> PathBuf {
    let mut name = raw.as_os_str().to_owned();
    name.push(".omitted");
    PathBuf::from(name)
}

/// Temporary entries left by a crash are removed after this long.
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// The store of stored results under a state folder: `<state>/results`.
pub fn store_dir(state: &Path) -> PathBuf {
    state.join(STORE_FOLDER)
}

/// The store's size bound in bytes: `$DRYDOCK_RESULTS_MAX_BYTES` when it
/// is a whole number, else [`DEFAULT_MAX_BYTES`].
pub fn max_bytes() -> u64 {
    std::env::var(MAX_BYTES_ENV)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_MAX_BYTES)
}

/// Everything a step's result may depend on. Serialized to JSON (field
/// order fixed, maps sorted) and hashed by [`KeyParts::key`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyParts {
    /// [`FORMAT_VERSION`]: older entries never match after a format change.
    pub format: u32,
    /// drydock's version (`CARGO_PKG_VERSION` of drydock-core): how a step
    /// runs and is judged may change between releases.
    pub drydock: String,
    /// The image id the step runs (`sha256:…`, resolved from its tag or
    /// build): a rebuilt or re-pulled image is another image.
    pub image_id: String,
    /// The ENTRYPOINT override (`None`: the image's, which the id covers).
    pub entrypoint: Option<Vec<String>>,
    /// The command argv (a `script:` is `sh -c <its text>`).
    pub command: Option<Vec<String>>,
    /// The environment after interpolation, proxy and CA settings included;
    /// secret values are not here (see `secrets`).
    pub env: BTreeMap<String, String>,
    /// The user override.
    pub user: Option<String>,
    /// The working directory override.
    pub workdir: Option<String>,
    /// The network mode: `none`, `bridge` or `run` (the run network, with
    /// the services).
    pub network: String,
    /// Bind mounts by container path: read-only or not, and the content
    /// digest of the host path ([`path_digest`]).
    pub mounts: BTreeMap<String, MountPart>,
    /// Copies by container path: the content digest of the host path.
    pub copies: BTreeMap<String, String>,
    /// The services the step can reach, by name (every service of the run
    /// when the step is on the run network, none otherwise).
    pub services: BTreeMap<String, ServicePart>,
    /// The secrets the step gets, by name: how (`env`/`file`) and the
    /// SHA-256 of the value (never the value).
    pub secrets: BTreeMap<String, SecretPart>,
    /// The JUnit report path it is judged by.
    pub junit: Option<String>,
    /// The paths it collects.
    pub collect: Vec<String>,
    /// Its timeout in milliseconds (a shorter one may time it out).
    pub timeout_ms: u64,
    /// Its `retry:` (more attempts may turn a failure into a flaky pass).
    pub retry: u32,
    /// Its `allow_failure:`.
    pub allow_failure: bool,
}

/// A bind mount in a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountPart {
    /// Mounted read-only.
    pub read_only: bool,
    /// The content digest of the host path ([`path_digest`]).
    pub digest: String,
}

/// A service a step can reach, in a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServicePart {
    /// The image id it runs.
    pub image_id: String,
    /// ENTRYPOINT override.
    pub entrypoint: Option<Vec<String>>,
    /// CMD override.
    pub command: Option<Vec<String>>,
    /// Environment.
    pub env: BTreeMap<String, String>,
    /// User override.
    pub user: Option<String>,
    /// Working directory override.
    pub workdir: Option<String>,
    /// Its mounts, as a step's.
    pub mounts: BTreeMap<String, MountPart>,
    /// Its readiness probe, as JSON (`None`: none).
    pub ready: Option<String>,
}

/// A secret in a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretPart {
    /// How the step gets it (`env` or `file`).
    pub expose: String,
    /// Hex SHA-256 of the value.
    pub sha256: String,
}

impl KeyParts {
    /// The key: hex SHA-256 of the canonical JSON of these parts.
    pub fn key(&self) -> String {
        // Serializing plain strings, numbers and sorted maps cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(&json))
    }
}

/// Hex SHA-256 of a secret's value (what a key holds of it).
pub fn secret_digest(value: &[u8]) -> String {
    hex::encode(Sha256::digest(value))
}

/// The content digest of a host path a step mounts or copies in
/// (blocking: call from `spawn_blocking`): for a folder,
/// [`BuildContext::tree_digest`] with `never` (absolute paths never read,
/// e.g. `<repo>/.drydock`) left out; for a file, `file:` + SHA-256 of its
/// permission bits and content; `missing` when it does not exist (the
/// engine then creates an empty folder, as `docker run -v` does).
///
/// # Errors
/// When the path cannot be read.
pub fn path_digest(path: &Path, never: &[PathBuf]) -> Result<String, String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok("missing".to_string()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    if meta.is_dir() {
        let mut context = BuildContext::new(path, "");
        context.never_send = never.to_vec();
        return context
            .tree_digest()
            .map(|d| format!("tree:{d}"))
            .map_err(|e| e.to_string());
    }
    use std::os::unix::fs::PermissionsExt;
    let mut h = Sha256::new();
    h.update((meta.permissions().mode() & 0o7777).to_le_bytes());
    let mut file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    io::copy(&mut file, &mut h).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(format!("file:{}", hex::encode(h.finalize())))
}

/// The network mode of a planned container, as a key holds it.
pub fn network_mode(network: &NetworkPlan) -> &'static str {
    match network {
        NetworkPlan::Run { .. } => "run",
        NetworkPlan::Bridge => "bridge",
        NetworkPlan::None => "none",
    }
}

/// Whether a stored result may stand in for `step` at all, or why not.
///
/// - `reuse: false`: never.
/// - `reuse: true` or `reuse: always`: yes, whatever its network, mounts
///   and caches (the pipeline's author vouches that nothing outside the key
///   changes the result).
/// - no `reuse:` (the default): only when the result depends on nothing
///   outside the key: `network: false` (no services, no internet), no
///   writable mount (what it writes to the checkout would not be written
///   by a replay) and no `cache:` volume (its content is not in the key).
///
/// # Errors
/// Why the step is not reusable, for people.
pub fn eligible(step: &PlannedStep) -> Result<(), &'static str> {
    match step.reuse {
        Some(Reuse::Never) => Err("reuse: false"),
        Some(Reuse::Passed | Reuse::Always) => Ok(()),
        None if !matches!(step.container.network, NetworkPlan::None) => {
            Err("it has network access (set `reuse: true` to reuse it)")
        }
        None if step.container.binds.iter().any(|b| !b.read_only) => {
            Err("it has a writable mount (set `reuse: true` to reuse it)")
        }
        None if !step.cache.is_empty() => {
            Err("it uses a cache volume (set `reuse: true` to reuse it)")
        }
        None => Ok(()),
    }
}

/// Whether a result that ended with `status` (`allowed_failure`: it failed
/// but may) is stored and replayed for `step`: a passed result always; a
/// flaky pass (passed on a retry), a failure, a time-out or an allowed
/// failure only with `reuse: always` (a step that failed runs again until
/// asked otherwise; a flaky one may fail next time). Errored, cancelled and
/// skipped steps say nothing about the step and are never stored.
pub fn accepts(step: &PlannedStep, status: Status, allowed_failure: bool) -> bool {
    match status {
        Status::Passed if !allowed_failure => true,
        Status::Passed | Status::Flaky | Status::Failed | Status::TimedOut => {
            step.reuse == Some(Reuse::Always)
        }
        Status::Errored | Status::Cancelled | Status::Skipped => false,
    }
}

/// What an entry's `record.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// [`FORMAT_VERSION`] of the writer.
    pub format: u32,
    /// The entry's key (its folder name).
    pub key: String,
    /// The run the result comes from.
    pub run_id: String,
    /// When it was stored (RFC 3339, UTC).
    pub stored_at: String,
    /// The pipeline, tier and step it was stored for (for people).
    pub pipeline: String,
    /// Tier name.
    pub tier: String,
    /// Step name.
    pub step: String,
    /// How it ended.
    pub status: Status,
    /// How long it took when it ran, in milliseconds.
    pub duration_ms: u64,
    /// Bytes of the entry's files (record excluded).
    pub bytes: u64,
    /// The JUnit report, relative to the entry's `artifacts/` folder.
    pub junit: Option<String>,
    /// The step's [`Event::StepFinished`] as it was sent (masked).
    pub finished: Event,
}

/// What [`store`] is given of a finished step.
#[derive(Debug)]
pub struct StoreRequest<'a> {
    /// The store folder ([`store_dir`]).
    pub store: &'a Path,
    /// The key.
    pub key: &'a str,
    /// The record (its `bytes` is filled in).
    pub record: Record,
    /// The step's artifacts folder in the run's results (may not exist).
    pub artifacts: &'a Path,
    /// The step's raw output file in the run's results (may not exist).
    pub output: &'a Path,
    /// The store's bound in bytes.
    pub max_bytes: u64,
}

/// Stores an entry (blocking): written under a temporary name and renamed
/// into place, then the store is trimmed to its bound ([`evict`]). An entry
/// already stored under the key is replaced.
///
/// # Errors
/// When the files cannot be written; nothing half-written is left.
pub fn store(request: StoreRequest<'_>) -> io::Result<()> {
    let StoreRequest {
        store,
        key,
        mut record,
        artifacts,
        output,
        max_bytes,
    } = request;
    std::fs::create_dir_all(store)?;
    let temp = tempfile::Builder::new().prefix(".tmp-").tempdir_in(store)?;
    let mut bytes = 0;
    if artifacts.is_dir() {
        bytes += copy_tree(artifacts, &temp.path().join(ARTIFACTS_FOLDER))?;
    }
    if output.is_file() {
        bytes += std::fs::copy(output, temp.path().join(OUTPUT_FILE))?;
        let omitted = omitted_path(output);
        if omitted.is_file() {
            bytes += std::fs::copy(&omitted, omitted_path(&temp.path().join(OUTPUT_FILE)))?;
        }
    }
    record.bytes = bytes;
    let json = serde_json::to_vec_pretty(&record).map_err(io::Error::other)?;
    std::fs::write(temp.path().join(RECORD_FILE), json)?;
    let target = store.join(key);
    if target.exists() {
        let _ = std::fs::remove_dir_all(&target);
    }
    let temp = temp.keep();
    if let Err(e) = std::fs::rename(&temp, &target) {
        let _ = std::fs::remove_dir_all(&temp);
        // Another run stored the same key in between: its entry stands.
        if !target.join(RECORD_FILE).is_file() {
            return Err(e);
        }
    }
    evict(store, max_bytes)?;
    Ok(())
}

/// The entry stored under `key`, with its folder, if one parses (blocking).
/// An entry whose record cannot be read or parsed, or holds another key or
/// format, is removed. A found entry is marked used now (for [`evict`]).
pub fn lookup(store: &Path, key: &str) -> Option<(Record, PathBuf)> {
    let dir = store.join(key);
    let path = dir.join(RECORD_FILE);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if dir.exists() {
                let _ = std::fs::remove_dir_all(&dir);
            }
            return None;
        }
        Err(_) => return None,
    };
    match serde_json::from_slice::<Record>(&text) {
        Ok(record) if record.key == key && record.format == FORMAT_VERSION => {
            touch(&path);
            Some((record, dir))
        }
        _ => {
            tracing::warn!("removing unreadable stored result {}", dir.display());
            let _ = std::fs::remove_dir_all(&dir);
            None
        }
    }
}

/// Marks a record used now (its mtime is the entry's last use).
fn touch(path: &Path) {
    if let Ok(file) = std::fs::File::options().write(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

/// One entry found by [`entries`].
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its folder.
    pub dir: PathBuf,
    /// Its bytes (files and record).
    pub bytes: u64,
    /// Its last use.
    pub used: SystemTime,
}

/// The entries of a store, removing on the way those whose record does not
/// parse and temporary folders older than an hour (left by a crash).
///
/// # Errors
/// When the store folder cannot be listed (a missing store has no entries).
pub fn entries(store: &Path) -> io::Result<Vec<Entry>> {
    let list = match std::fs::read_dir(store) {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for item in list {
        let item = item?;
        let name = item.file_name().to_string_lossy().into_owned();
        let dir = item.path();
        if name.starts_with(".tmp-") {
            let stale = item
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|age| age > STALE_TEMP);
            if stale {
                let _ = std::fs::remove_dir_all(&dir);
            }
            continue;
        }
        let record = dir.join(RECORD_FILE);
        let parsed = std::fs::read(&record)
            .ok()
            .and_then(|t| serde_json::from_slice::<Record>(&t).ok());
        let (Some(parsed), Ok(meta)) = (parsed, std::fs::metadata(&record)) else {
            tracing::warn!("removing unreadable stored result {}", dir.display());
            let _ = std::fs::remove_dir_all(&dir);
            continue;
        };
        out.push(Entry {
            dir,
            bytes: parsed.bytes + meta.len(),
            used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        });
    }
    Ok(out)
}

/// Removes the least recently used entries until the store holds at most
/// `max_bytes`. Returns how many were removed.
///
/// # Errors
/// When the store cannot be listed.
pub fn evict(store: &Path, max_bytes: u64) -> io::Result<usize> {
    let mut all = entries(store)?;
    all.sort_by_key(|e| e.used);
    let mut total: u64 = all.iter().map(|e| e.bytes).sum();
    let mut removed = 0;
    for entry in all {
        if total <= max_bytes {
            break;
        }
        if std::fs::remove_dir_all(&entry.dir).is_ok() {
            total = total.saturating_sub(entry.bytes);
            removed += 1;
        }
    }
    Ok(removed)
}

/// What [`clear`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cleared {
    /// Entries removed.
    pub entries: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// Removes every stored result (`drydock gc --results`), temporary folders
/// included. A missing store is empty.
///
/// # Errors
/// When the store cannot be listed or an entry cannot be removed.
pub fn clear(store: &Path) -> io::Result<Cleared> {
    let mut cleared = Cleared::default();
    let list = match std::fs::read_dir(store) {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(cleared),
        Err(e) => return Err(e),
    };
    for item in list {
        let path = item?.path();
        let bytes = tree_bytes(&path);
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
        cleared.entries += 1;
        cleared.bytes += bytes;
    }
    Ok(cleared)
}

/// Bytes of the regular files under `path` (symlinks not followed).
fn tree_bytes(path: &Path) -> u64 {
    walkdir_bytes(path).unwrap_or(0)
}

fn walkdir_bytes(path: &Path) -> io::Result<u64> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return Ok(if meta.is_file() { meta.len() } else { 0 });
    }
    let mut total = 0;
    for item in std::fs::read_dir(path)? {
        total += walkdir_bytes(&item?.path()).unwrap_or(0);
    }
    Ok(total)
}

/// Copies the folder `from` to `to` (created), regular files and folders
/// only (symlinks are kept as links); returns the bytes copied.
///
/// # Errors
/// When a file cannot be read or written.
pub fn copy_tree(from: &Path, to: &Path) -> io::Result<u64> {
    std::fs::create_dir_all(to)?;
    let mut bytes = 0;
    for item in std::fs::read_dir(from)? {
        let item = item?;
        let kind = item.file_type()?;
        let target = to.join(item.file_name());
        if kind.is_dir() {
            bytes += copy_tree(&item.path(), &target)?;
        } else if kind.is_symlink() {
            let link = std::fs::read_link(item.path())?;
            let _ = std::fs::remove_file(&target);
            std::os::unix::fs::symlink(link, &target)?;
        } else if kind.is_file() {
            bytes += std::fs::copy(item.path(), &target)?;
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests;
