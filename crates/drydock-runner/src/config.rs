//! The runner's configuration file (`runner.yml`), validated with
//! `file:line:col` errors.
//!
//! ```yaml
//! listen: 127.0.0.1:8780          # default; the HTTP API, status page and webhooks
//! state_dir: /var/lib/drydock     # default: .drydock-runner beside this file
//! concurrency: 2                  # runs at once (default 2)
//! run_timeout: 30m                # per run (default 30m)
//! poll_interval: 30s              # default for repositories (default 30s)
//! requeue_interrupted: true       # re-queue runs a dead runner left (default true)
//! max_body: 1048576               # largest webhook body in bytes (default 1 MiB)
//! store: sqlite                   # default; or postgres://user@host/db, or { env: NAME } / { file: PATH }
//! name: build-1                   # this runner's name in a fleet (default: the host name)
//! lease: 30s                      # a run's lease; renewed every third of it (default 30s)
//! max_attempts: 3                 # attempts a run may lose to dead runners (default 3)
//! webhook_secret: { env: DRYDOCK_WEBHOOK_SECRET }   # or { file: /run/secrets/hook }
//! api_token: { file: /run/secrets/api-token }       # Bearer token of mutating endpoints
//! read_auth: false                # true: reading (API, pages, badges, results, /metrics) needs the token too
//! public_url: https://ci.example.com   # where people reach the runner (links in commit statuses; default http://<listen>)
//! repos:
//!   - name: app                   # [A-Za-z0-9][A-Za-z0-9_.-]*; webhooks match it, or the url
//!     url: /srv/git/app.git       # anything `git fetch` reaches
//!     pipeline: pipelines/ci.yml  # in the repository (default pipelines/ci.yml)
//!     branches: [main]            # branches run on every new commit (default: [central])
//!     central: main               # the integration branch (default main)
//!     candidates: ["ready/*"]     # merge-queue branches (default none)
//!     integrate: fast-forward     # or merge (always a merge commit)
//!     poll: 10s                   # or `off` (webhooks only); default poll_interval
//!     deploy: staging             # channel a green central run releases to (default: none)
//!     # or release and deploy it (`drydock deploy`) from the run's worktree:
//!     # deploy: { channel: staging, config: deploy/staging.yml }
//!     # commit statuses on the forge (docs/runner.md):
//!     forge: { kind: github, api: https://api.github.com, project: owner/app, token: { env: GITHUB_TOKEN } }
//!     # forge: { kind: gitlab, api: https://gitlab.example.com/api/v4, project: group/app, token: { file: … }, context: drydock }
//! ```
//!
//! Relative paths (`state_dir`, a local `url`, a secret's `file`) are
//! relative to the folder of the configuration file, whatever folder the
//! runner is started from; they are made absolute when the file is read, so
//! every path handed to git is absolute.
//!
//! Secrets are read from the environment or a file, never written in the
//! configuration, and never printed ([`Secret`]'s `Debug` is redacted).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use drydock_core::pipeline::parse_duration;
use drydock_core::yaml::{self, Kind, Node, Pos, ScalarType};

/// A secret value; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for comparing and signing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// How a green candidate lands on the central branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integrate {
    /// Fast-forward to the candidate when it is on top of the central branch;
    /// otherwise to a merge commit of both (the one tested).
    FastForward,
    /// Always a merge commit (`--no-ff`), the one tested.
    Merge,
}

/// One watched repository.
#[derive(Debug, Clone)]
pub struct RepoConfig {
    /// Name (API, page, badge, webhook matching).
    pub name: String,
    /// Where `git` fetches from and pushes to.
    pub url: String,
    /// The pipeline file, relative to the repository root.
    pub pipeline: String,
    /// Branches (glob patterns, `*` matches anything) run on every new commit.
    pub branches: Vec<String>,
    /// The integration branch.
    pub central: String,
    /// Merge-queue branch patterns.
    pub candidates: Vec<String>,
    /// How candidates land.
    pub integrate: Integrate,
    /// Poll interval; `None` when polling is off.
    pub poll: Option<Duration>,
    /// Deploy on green: what a green run of the central branch does.
    pub deploy: Option<DeployOnGreen>,
    /// Where the run's commit statuses are posted; `None`: nowhere.
    pub forge: Option<ForgeConfig>,
}

/// Deploy on green (`deploy:` of a repository).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployOnGreen {
    /// The channel the pipeline's `release:` tags and records.
    pub channel: String,
    /// The deploy config, relative to the repository root, read from the
    /// run's worktree; `None` (`deploy: <channel>`): release only, nothing
    /// is deployed.
    pub config: Option<String>,
}

impl RepoConfig {
    /// Whether a branch is a merge-queue candidate.
    pub fn is_candidate(&self, branch: &str) -> bool {
        self.candidates.iter().any(|p| glob(p, branch))
    }

    /// Whether a branch is watched at all (run or candidate).
    pub fn watches(&self, branch: &str) -> bool {
        self.is_candidate(branch) || self.branches.iter().any(|p| glob(p, branch))
    }
}

/// Where the runner keeps its queue and history (`store:`, `--store`,
/// `DRYDOCK_RUNNER_STORE`).
#[derive(Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// SQLite, `runner.sqlite` in the state folder: one runner, nothing to
    /// set up (the default).
    Sqlite,
    /// PostgreSQL at this address (`postgres://…` or `postgresql://…`),
    /// shared by a fleet of runners. It may hold a password, so it is kept
    /// as a [`Secret`] and never printed.
    Postgres(Secret),
}

impl StoreSpec {
    /// Reads `sqlite` or a `postgres://`/`postgresql://` address.
    pub fn parse(text: &str) -> Result<StoreSpec, String> {
        let text = text.trim();
        if text == "sqlite" {
            Ok(StoreSpec::Sqlite)
        } else if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Ok(StoreSpec::Postgres(Secret(text.to_string())))
        } else {
            Err("expected `sqlite` or a postgres:// address".into())
        }
    }
}

impl std::fmt::Debug for StoreSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreSpec::Sqlite => f.write_str("Sqlite"),
            StoreSpec::Postgres(_) => f.write_str("Postgres(<redacted>)"),
        }
    }
}

/// A runner name: `[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 63 characters.
pub fn valid_runner_name(name: &str) -> bool {
    name.len() <= 63
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// The runner's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// HTTP address (127.0.0.1 by default).
    pub listen: SocketAddr,
    /// Database, git mirrors, worktrees and results live here.
    pub state_dir: PathBuf,
    /// Runs at once.
    pub concurrency: usize,
    /// Per-run deadline.
    pub run_timeout: Duration,
    /// Time a stopped container gets before it is killed.
    pub stop_grace: Duration,
    /// Re-queue runs left running by a runner that died.
    pub requeue_interrupted: bool,
    /// Largest webhook body accepted.
    pub max_body: usize,
    /// Shared secret of webhooks (none: webhooks are refused).
    pub webhook_secret: Option<Secret>,
    /// Bearer token of mutating endpoints (none: they are refused).
    pub api_token: Option<Secret>,
    /// Whether reading (the API, the status page, badges, results and
    /// `/metrics`) needs the API token too; `/healthz` and `/readyz` never do.
    pub read_auth: bool,
    /// The runner's address for people (links in commit statuses), without
    /// a trailing `/`; `None`: `http://<listen address>`.
    pub public_url: Option<String>,
    /// Watched repositories.
    pub repos: Vec<RepoConfig>,
    /// Where the queue and history live.
    pub store: StoreSpec,
    /// This runner's name (unique in a fleet); `None`: the host name.
    pub name: Option<String>,
    /// How long a claimed run's lease holds without a heartbeat; the
    /// worker renews it every third of it.
    pub lease: Duration,
    /// Attempts a run may lose (its runner died or lost the store) before
    /// it ends `errored`.
    pub max_attempts: u32,
}

impl Config {
    /// A repository by name.
    pub fn repo(&self, name: &str) -> Option<&RepoConfig> {
        self.repos.iter().find(|r| r.name == name)
    }

    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = yaml::read_limited(path).map_err(|e| ConfigError {
            message: format!("{}: cannot read: {e}", path.display()),
        })?;
        Self::parse_bytes(&bytes, path, &|name| std::env::var(name).ok())
    }

    /// [`Config::parse`] of the bytes of a configuration file: UTF-8 only,
    /// no control characters, at most [`yaml::MAX_FILE_BYTES`] (see
    /// [`drydock_core::yaml`]); every refusal is located.
    pub fn parse_bytes(
        bytes: &[u8],
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let source = yaml::check_bytes(bytes).map_err(|e| ConfigError {
            message: format!(
                "{}:{}:{}: {}",
                path.display(),
                e.pos.line,
                e.pos.col,
                e.message
            ),
        })?;
        Self::parse(source, path, env)
    }

    /// Validates configuration text; `env` looks up environment variables.
    pub fn parse(
        source: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let err = |pos: Pos, m: String| ConfigError {
            message: format!("{file}:{}:{}: {m}", pos.line, pos.col),
        };
        let root = match yaml::parse(source) {
            Ok(Some(root)) => root,
            Ok(None) => return Err(err(Pos::START, "the configuration is empty".into())),
            Err(e) => return Err(err(e.pos, e.message)),
        };
        // Relative paths in the file are relative to the file's folder, made
        // absolute here: git runs in other folders (`git -C <mirror> …`).
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let base = absolute.parent().unwrap_or(Path::new("/")).to_path_buf();
        let mut c = Checker {
            errors: Vec::new(),
            env,
            base: base.clone(),
        };
        let config = c.config(&root, &absolute, &base);
        match (config, c.errors.into_iter().min_by_key(|(p, _)| *p)) {
            (_, Some((pos, m))) => Err(err(pos, m)),
            (Some(config), None) => Ok(config),
            (None, None) => Err(err(root.pos, "invalid configuration".into())),
        }
    }
}

/// A configuration problem, `FILE:LINE:COL: MESSAGE`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    /// The located message.
    pub message: String,
}

/// Glob match where `*` matches any run of characters (including `/`) and
/// every other character is itself: the branch patterns of `branches:` and
/// `candidates:` (`ready/*`), by `globset`. Its other syntax (`?`, `[…]`,
/// `{a,b}`) is escaped and a backslash is not an escape, so a branch name
/// holding `{` or `}` (git allows them) matches only itself. Matching is by a compiled regular
/// expression: linear in the text, whatever the pattern (a pattern such as
/// `*a*a*a*a*b` against a long branch name from a webhook stays fast).
pub fn glob(pattern: &str, text: &str) -> bool {
    let escaped: Vec<String> = pattern.split('*').map(globset::escape).collect();
    match globset::GlobBuilder::new(&escaped.join("*"))
        .literal_separator(false)
        .backslash_escape(false)
        .build()
    {
        Ok(glob) => glob.compile_matcher().is_match(text),
        // Unreachable with every special character escaped; a pattern that
        // cannot be compiled matches nothing.
        Err(_) => false,
    }
}

/// A git branch name the runner accepts: what `git check-ref-format --branch`
/// accepts, and never starting with `-` (so it can never look like an option).
pub fn valid_branch(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with(['-', '/', '.'])
        && !name.ends_with(['/', '.'])
        && !name.ends_with(".lock")
        && !name.contains("..")
        && !name.contains("@{")
        && !name.contains("//")
        && !name.contains("/.")
        && name != "@"
        && !name
            .chars()
            .any(|c| c.is_ascii_control() || " ~^:?*[\\\x7f".contains(c))
}

/// A repository URL as git will see it from any folder: a local path
/// (no `scheme://`, and no `host:` before the first `/`, git's own rule for
/// telling scp-like addresses from paths) is made absolute against `base`.
pub fn absolute_url(base: &Path, url: &str) -> String {
    let scp_like = url
        .split('/')
        .next()
        .is_some_and(|first| first.contains(':'));
    if url.contains("://") || scp_like || Path::new(url).is_absolute() {
        return url.to_string();
    }
    base.join(url).to_string_lossy().into_owned()
}

/// An `http://` or `https://` URL with a host, without a trailing `/`,
/// query or fragment, and without spaces, quotes or control characters;
/// `None` otherwise.
fn http_url(s: &str) -> Option<String> {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))?;
    let host = rest.split('/').next().unwrap_or("");
    let ok = !host.is_empty()
        && s.len() <= 500
        && !s.contains(['?', '#'])
        && s.chars()
            .all(|c| c.is_ascii_graphic() && !"\"'<>\\`".contains(c));
    ok.then(|| s.trim_end_matches('/').to_string())
}

/// Reads a secret file: UTF-8, at most 64 KiB (a device or a huge file
/// given by mistake is refused rather than read without end).
fn read_secret(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    const MAX: u64 = 64 * 1024;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX {
        return Err(std::io::Error::other("larger than 64 KiB; not a secret"));
    }
    String::from_utf8(bytes).map_err(|_| std::io::Error::other("not UTF-8 text"))
}

struct Checker<'a> {
    errors: Vec<(Pos, String)>,
    env: &'a dyn Fn(&str) -> Option<String>,
    base: PathBuf,
}

fn scalar(node: &Node) -> Option<&str> {
    match &node.kind {
        Kind::Scalar { text, .. } => Some(text),
        _ => None,
    }
}

impl Checker<'_> {
    fn fail(&mut self, pos: Pos, m: impl Into<String>) {
        self.errors.push((pos, m.into()));
    }

    fn map<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [(Node, Node)]> {
        match &node.kind {
            Kind::Map(entries) => Some(entries),
            _ => {
                self.fail(
                    node.pos,
                    format!("{what}: expected a mapping, found {}", node.describe()),
                );
                None
            }
        }
    }

    fn string(&mut self, node: &Node, key: &str) -> Option<String> {
        match node.scalar_type() {
            Some(ScalarType::Str) => scalar(node).map(str::to_string),
            _ => {
                self.fail(
                    node.pos,
                    format!("`{key}`: expected a string, found {}", node.describe()),
                );
                None
            }
        }
    }

    fn int(&mut self, node: &Node, key: &str, min: u64) -> Option<u64> {
        let value = (node.scalar_type() == Some(ScalarType::Int))
            .then(|| scalar(node).and_then(|t| t.parse::<u64>().ok()))
            .flatten();
        match value {
            Some(v) if v >= min => Some(v),
            _ => {
                self.fail(
                    node.pos,
                    format!(
                        "`{key}`: expected an integer of at least {min}, found {}",
                        node.describe()
                    ),
                );
                None
            }
        }
    }

    fn boolean(&mut self, node: &Node, key: &str) -> Option<bool> {
        match node.scalar_type() {
            Some(ScalarType::Bool(b)) => Some(b),
            _ => {
                self.fail(
                    node.pos,
                    format!("`{key}`: expected true or false, found {}", node.describe()),
                );
                None
            }
        }
    }

    fn duration(&mut self, node: &Node, key: &str) -> Option<Duration> {
        let text = self.string(node, key)?;
        match parse_duration(&text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.fail(node.pos, format!("`{key}`: {e}"));
                None
            }
        }
    }

    fn strings(&mut self, node: &Node, key: &str) -> Option<Vec<String>> {
        let Kind::Seq(items) = &node.kind else {
            self.fail(
                node.pos,
                format!(
                    "`{key}`: expected a list of strings, found {}",
                    node.describe()
                ),
            );
            return None;
        };
        let mut out = Vec::new();
        for item in items {
            out.push(self.string(item, key)?);
        }
        Some(out)
    }

    fn secret(&mut self, node: &Node, key: &str) -> Option<Secret> {
        let entries = self.map(node, key)?;
        if entries.len() != 1 {
            self.fail(
                node.pos,
                format!("`{key}`: expected exactly one of `env: NAME` or `file: PATH` (secrets are never written in the configuration)"),
            );
            return None;
        }
        let (k, v) = &entries[0];
        let name = self.string(v, key)?;
        let value = match scalar(k) {
            Some("env") => match (self.env)(&name) {
                Some(v) => v,
                None => {
                    self.fail(
                        v.pos,
                        format!("`{key}`: environment variable {name} is not set"),
                    );
                    return None;
                }
            },
            Some("file") => {
                let path = self.base.join(&name);
                match read_secret(&path) {
                    Ok(v) => v,
                    Err(e) => {
                        self.fail(
                            v.pos,
                            format!("`{key}`: cannot read {}: {e}", path.display()),
                        );
                        return None;
                    }
                }
            }
            _ => {
                self.fail(
                    k.pos,
                    format!(
                        "`{key}`: unknown source {}, expected `env` or `file`",
                        k.describe()
                    ),
                );
                return None;
            }
        };
        let value = value.trim().to_string();
        if value.len() < 8 {
            self.fail(
                v.pos,
                format!("`{key}`: the secret is empty or shorter than 8 characters"),
            );
            return None;
        }
        Some(Secret(value))
    }

    fn config(&mut self, root: &Node, path: &Path, base: &Path) -> Option<Config> {
        let entries = self.map(root, "the configuration")?;
        let mut config = Config {
            path: path.to_path_buf(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8780)),
            state_dir: base.join(".drydock-runner"),
            concurrency: 2,
            run_timeout: Duration::from_secs(30 * 60),
            stop_grace: Duration::from_secs(10),
            requeue_interrupted: true,
            max_body: 1 << 20,
            webhook_secret: None,
            api_token: None,
            read_auth: false,
            public_url: None,
            repos: Vec::new(),
            store: StoreSpec::Sqlite,
            name: None,
            lease: Duration::from_secs(30),
            max_attempts: 3,
        };
        let mut poll_interval = Duration::from_secs(30);
        let mut repos_node = None;
        let mut seen = std::collections::HashSet::new();
        for (k, v) in entries {
            let Some(key) = scalar(k) else {
                self.fail(k.pos, "keys must be strings");
                continue;
            };
            if !seen.insert(key.to_string()) {
                self.fail(k.pos, format!("`{key}` is given twice"));
                continue;
            }
            match key {
                "listen" => {
                    if let Some(s) = self.string(v, key) {
                        match s.parse() {
                            Ok(a) => config.listen = a,
                            Err(_) => self.fail(
                                v.pos,
                                format!("`listen`: expected ADDRESS:PORT like 127.0.0.1:8780, found {s:?}"),
                            ),
                        }
                    }
                }
                "state_dir" => {
                    if let Some(s) = self.string(v, key) {
                        config.state_dir = base.join(s);
                    }
                }
                "concurrency" => {
                    if let Some(n) = self.int(v, key, 1) {
                        config.concurrency = n as usize;
                    }
                }
                "run_timeout" => {
                    if let Some(d) = self.duration(v, key) {
                        config.run_timeout = d;
                    }
                }
                "stop_grace" => {
                    if let Some(d) = self.duration(v, key) {
                        config.stop_grace = d;
                    }
                }
                "poll_interval" => {
                    if let Some(d) = self.duration(v, key) {
                        poll_interval = d;
                    }
                }
                "requeue_interrupted" => {
                    if let Some(b) = self.boolean(v, key) {
                        config.requeue_interrupted = b;
                    }
                }
                "max_body" => {
                    if let Some(n) = self.int(v, key, 1024) {
                        config.max_body = n as usize;
                    }
                }
                "webhook_secret" => config.webhook_secret = self.secret(v, key),
                "api_token" => config.api_token = self.secret(v, key),
                "read_auth" => {
                    if let Some(b) = self.boolean(v, key) {
                        config.read_auth = b;
                    }
                }
                "public_url" => {
                    if let Some(s) = self.string(v, key) {
                        match http_url(&s) {
                            Some(url) => config.public_url = Some(url),
                            None => self.fail(
                                v.pos,
                                format!("`public_url`: expected an http:// or https:// URL, found {s:?}"),
                            ),
                        }
                    }
                }
                "repos" => repos_node = Some(v),
                "store" => {
                    let text = match v.kind {
                        Kind::Map(_) => self.secret(v, key).map(|s| s.0),
                        _ => self.string(v, key),
                    };
                    if let Some(text) = text {
                        match StoreSpec::parse(&text) {
                            Ok(spec) => config.store = spec,
                            Err(e) => self.fail(v.pos, format!("`store`: {e}")),
                        }
                    }
                }
                "name" => {
                    if let Some(s) = self.string(v, key) {
                        if valid_runner_name(&s) {
                            config.name = Some(s);
                        } else {
                            self.fail(v.pos, format!("`name`: {s:?} must match [A-Za-z0-9][A-Za-z0-9_.-]* (at most 63 characters)"));
                        }
                    }
                }
                "lease" => {
                    if let Some(d) = self.duration(v, key) {
                        if d < Duration::from_secs(1) {
                            self.fail(v.pos, "`lease`: at least 1s");
                        } else {
                            config.lease = d;
                        }
                    }
                }
                "max_attempts" => {
                    if let Some(n) = self.int(v, key, 1) {
                        config.max_attempts = n.min(1000) as u32;
                    }
                }
                other => self.fail(
                    k.pos,
                    format!("unknown key `{other}` (expected listen, state_dir, concurrency, run_timeout, stop_grace, poll_interval, requeue_interrupted, max_body, webhook_secret, api_token, read_auth, public_url, store, name, lease, max_attempts or repos)"),
                ),
            }
        }
        if config.read_auth && config.api_token.is_none() && !seen.contains("api_token") {
            self.fail(
                root.pos,
                "`read_auth: true` needs `api_token` (the token reading requires)",
            );
        }
        let Some(repos) = repos_node else {
            self.fail(root.pos, "missing `repos`: the repositories to watch");
            return None;
        };
        let Kind::Seq(items) = &repos.kind else {
            self.fail(
                repos.pos,
                format!("`repos`: expected a list, found {}", repos.describe()),
            );
            return None;
        };
        for item in items {
            if let Some(repo) = self.repo(item, poll_interval) {
                if config.repos.iter().any(|r| r.name == repo.name) {
                    self.fail(
                        item.pos,
                        format!("repository `{}` is listed twice", repo.name),
                    );
                }
                config.repos.push(repo);
            }
        }
        Some(config)
    }

    fn branch_list(&mut self, node: &Node, key: &str) -> Option<Vec<String>> {
        let list = self.strings(node, key)?;
        for b in &list {
            if !valid_branch(&b.replace('*', "x")) {
                self.fail(
                    node.pos,
                    format!("`{key}`: {b:?} is not a valid branch name or pattern"),
                );
                return None;
            }
        }
        Some(list)
    }

    fn channel(&mut self, node: &Node, key: &str) -> Option<String> {
        let s = self.string(node, key)?;
        let ok = !s.is_empty()
            && s.len() <= 128
            && !s.starts_with(['.', '-'])
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !ok {
            self.fail(
                node.pos,
                format!("`{key}`: {s:?} is not a valid channel (an image tag)"),
            );
            return None;
        }
        Some(s)
    }

    /// `deploy: <channel>` (release only) or
    /// `deploy: { channel: <channel>, config: <file> }` (release and deploy).
    fn deploy(&mut self, node: &Node) -> Option<DeployOnGreen> {
        if !matches!(node.kind, Kind::Map(_)) {
            let channel = self.channel(node, "deploy")?;
            return Some(DeployOnGreen {
                channel,
                config: None,
            });
        }
        let entries = self.map(node, "`deploy`")?;
        let mut channel = None;
        let mut config = None;
        let mut channel_given = false;
        for (k, v) in entries {
            match scalar(k).unwrap_or("") {
                "channel" => {
                    channel_given = true;
                    channel = self.channel(v, "deploy.channel");
                }
                "config" => {
                    let s = self.string(v, "deploy.config")?;
                    if s.is_empty() || s.starts_with('/') || s.split('/').any(|c| c == "..") {
                        self.fail(
                            v.pos,
                            "`deploy.config`: expected a path inside the repository, e.g. deploy/staging.yml",
                        );
                        return None;
                    }
                    config = Some(s);
                }
                other => {
                    self.fail(
                        k.pos,
                        format!("unknown `deploy` key `{other}` (expected channel or config)"),
                    );
                    return None;
                }
            }
        }
        let Some(channel) = channel else {
            if !channel_given {
                self.fail(node.pos, "`deploy`: missing `channel`");
            }
            return None;
        };
        let Some(config) = config else {
            self.fail(
                node.pos,
                format!("`deploy`: missing `config`, the deploy config to run (e.g. deploy/{channel}.yml); write `deploy: {channel}` to release without deploying"),
            );
            return None;
        };
        Some(DeployOnGreen {
            channel,
            config: Some(config),
        })
    }

    /// `forge: { kind: github|gitlab, api: URL, project: P, token: SECRET,
    /// context: NAME }`.
    fn forge(&mut self, node: &Node) -> Option<ForgeConfig> {
        let entries = self.map(node, "forge")?;
        let (mut kind, mut api, mut project, mut token) = (None, None, None, None);
        let mut context = "drydock".to_string();
        for (k, v) in entries {
            let key = scalar(k).unwrap_or("");
            match key {
                "kind" => match self.string(v, "forge.kind").as_deref() {
                    Some("github") => kind = Some(ForgeKind::Github),
                    Some("gitlab") => kind = Some(ForgeKind::Gitlab),
                    Some(other) => self.fail(
                        v.pos,
                        format!("`forge.kind`: expected github or gitlab, found {other:?}"),
                    ),
                    None => {}
                },
                "api" => {
                    if let Some(s) = self.string(v, "forge.api") {
                        match http_url(&s) {
                            Some(url) => api = Some(url),
                            None => self.fail(
                                v.pos,
                                format!("`forge.api`: expected an http:// or https:// URL, found {s:?}"),
                            ),
                        }
                    }
                }
                "project" => {
                    if let Some(s) = self.string(v, "forge.project") {
                        let ok = !s.is_empty()
                            && s.len() <= 255
                            && !s.starts_with('/')
                            && !s.ends_with('/')
                            && !s.split('/').any(|c| c.is_empty() || c == "." || c == "..")
                            && s.chars().all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c));
                        if ok {
                            project = Some(s);
                        } else {
                            self.fail(
                                v.pos,
                                format!("`forge.project`: expected owner/repo (GitHub) or a project id or group/project path (GitLab), found {s:?}"),
                            );
                        }
                    }
                }
                "token" => token = self.secret(v, "forge.token"),
                "context" => {
                    if let Some(s) = self.string(v, "forge.context") {
                        if s.is_empty() || s.len() > 100 || s.chars().any(char::is_control) {
                            self.fail(v.pos, "`forge.context`: expected a short name (1 to 100 characters)");
                        } else {
                            context = s;
                        }
                    }
                }
                other => self.fail(
                    k.pos,
                    format!("unknown `forge` key `{other}` (expected kind, api, project, token or context)"),
                ),
            }
        }
        let given: Vec<&str> = entries.iter().filter_map(|(k, _)| scalar(k)).collect();
        let missing: Vec<&str> = ["kind", "api", "project", "token"]
            .into_iter()
            .filter(|k| !given.contains(k))
            .collect();
        if !missing.is_empty() {
            self.fail(node.pos, format!("`forge`: missing {}", missing.join(", ")));
            return None;
        }
        Some(ForgeConfig {
            kind: kind?,
            api: api?,
            project: project?,
            token: token?,
            context,
        })
    }

    fn repo(&mut self, node: &Node, poll_interval: Duration) -> Option<RepoConfig> {
        let entries = self.map(node, "a repository")?;
        let mut name = None;
        let mut url = None;
        let mut repo = RepoConfig {
            name: String::new(),
            url: String::new(),
            pipeline: "pipelines/ci.yml".into(),
            branches: Vec::new(),
            central: "main".into(),
            candidates: Vec::new(),
            integrate: Integrate::FastForward,
            poll: Some(poll_interval),
            deploy: None,
            forge: None,
        };
        let mut branches = None;
        for (k, v) in entries {
            let key = scalar(k).unwrap_or("");
            match key {
                "name" => {
                    if let Some(s) = self.string(v, key) {
                        let ok = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                            && s.chars()
                                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
                        if ok {
                            name = Some(s);
                        } else {
                            self.fail(v.pos, format!("`name`: {s:?} must match [A-Za-z0-9][A-Za-z0-9_.-]*"));
                        }
                    }
                }
                "url" => {
                    if let Some(s) = self.string(v, key) {
                        if s.is_empty() || s.starts_with('-') {
                            self.fail(v.pos, "`url`: expected a path or URL git can fetch");
                        } else {
                            url = Some(absolute_url(&self.base, &s));
                        }
                    }
                }
                "pipeline" => {
                    if let Some(s) = self.string(v, key) {
                        if s.is_empty() || s.starts_with('/') || s.split('/').any(|c| c == "..") {
                            self.fail(v.pos, "`pipeline`: expected a path inside the repository");
                        } else {
                            repo.pipeline = s;
                        }
                    }
                }
                "branches" => branches = self.branch_list(v, key),
                "candidates" => {
                    if let Some(c) = self.branch_list(v, key) {
                        repo.candidates = c;
                    }
                }
                "central" => {
                    if let Some(s) = self.string(v, key) {
                        if valid_branch(&s) {
                            repo.central = s;
                        } else {
                            self.fail(v.pos, format!("`central`: {s:?} is not a valid branch name"));
                        }
                    }
                }
                "integrate" => match self.string(v, key).as_deref() {
                    Some("fast-forward") => repo.integrate = Integrate::FastForward,
                    Some("merge") => repo.integrate = Integrate::Merge,
                    Some(other) => self.fail(
                        v.pos,
                        format!("`integrate`: expected fast-forward or merge, found {other:?}"),
                    ),
                    None => {}
                },
                "poll" => {
                    if scalar(v) == Some("off") {
                        repo.poll = None;
                    } else if let Some(d) = self.duration(v, key) {
                        repo.poll = Some(d);
                    }
                }
                "deploy" => repo.deploy = self.deploy(v),
                "forge" => repo.forge = self.forge(v),
                other => self.fail(
                    k.pos,
                    format!("unknown repository key `{other}` (expected name, url, pipeline, branches, central, candidates, integrate, poll, deploy or forge)"),
                ),
            }
        }
        match (name, url) {
            (Some(n), Some(u)) => {
                repo.name = n;
                repo.url = u;
            }
            (None, _) => {
                self.fail(node.pos, "a repository needs a `name`");
                return None;
            }
            (_, None) => {
                self.fail(node.pos, "a repository needs a `url`");
                return None;
            }
        }
        repo.branches = branches.unwrap_or_else(|| vec![repo.central.clone()]);
        Some(repo)
    }
}

/// Which forge API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForgeKind {
    /// GitHub's (or GitHub Enterprise's) REST API.
    Github,
    /// GitLab's REST API v4.
    Gitlab,
}

impl ForgeKind {
    /// `github` or `gitlab`.
    pub fn as_str(self) -> &'static str {
        match self {
            ForgeKind::Github => "github",
            ForgeKind::Gitlab => "gitlab",
        }
    }
}

/// A repository's forge (`forge:` in the runner configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForgeConfig {
    /// Which API.
    pub kind: ForgeKind,
    /// The API's base URL without a trailing `/` (`https://api.github.com`,
    /// `https://gitlab.example.com/api/v4`).
    pub api: String,
    /// GitHub: `owner/repo`; GitLab: the project's numeric id or its path
    /// (`group/project`, URL-encoded when posting).
    pub project: String,
    /// The access token (GitHub: a token allowed to write commit statuses;
    /// GitLab: a token with the `api` scope).
    pub token: Secret,
    /// The status's name on the commit (GitHub `context`, GitLab `name`);
    /// default `drydock`.
    pub context: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<Config, ConfigError> {
        Config::parse(src, Path::new("/etc/runner.yml"), &|n| {
            (n == "HOOK").then(|| "s3cret-value".to_string())
        })
    }

    #[test]
    fn valid_configuration_with_defaults() {
        let c = parse(
            "webhook_secret: { env: HOOK }\nrepos:\n  - name: app\n    url: /srv/app.git\n    candidates: ['ready/*']\n    poll: 2s\n",
        )
        .unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8780");
        assert_eq!(c.state_dir, Path::new("/etc/.drydock-runner"));
        let r = &c.repos[0];
        assert_eq!(r.branches, ["main"]);
        assert!(r.is_candidate("ready/x/y"));
        assert!(!r.is_candidate("main"));
        assert_eq!(r.poll, Some(Duration::from_secs(2)));
        assert_eq!(c.webhook_secret.unwrap().expose(), "s3cret-value");
        assert!(
            !format!("{:?}", parse("webhook_secret: { env: HOOK }\nrepos: []\n"))
                .contains("s3cret")
        );
    }

    #[test]
    fn errors_are_located() {
        let cases = [
            (
                "repos: []\nconcurency: 2\n",
                "/etc/runner.yml:2:1: unknown key `concurency`",
            ),
            (
                "repos:\n  - name: app\n",
                "/etc/runner.yml:2:5: a repository needs a `url`",
            ),
            (
                "repos: []\nrun_timeout: 5 minutes\n",
                "/etc/runner.yml:2:14: `run_timeout`",
            ),
            (
                "repos: []\nwebhook_secret: { env: NOPE }\n",
                "/etc/runner.yml:2:24: `webhook_secret`: environment variable NOPE is not set",
            ),
            (
                "repos: []\nwebhook_secret: hunter22\n",
                "/etc/runner.yml:2:17: webhook_secret: expected a mapping",
            ),
            (
                "repos:\n  - name: app\n    url: x\n    integrate: rebase\n",
                "/etc/runner.yml:4:16: `integrate`",
            ),
            (
                "concurrency: 0\nrepos: []\n",
                "/etc/runner.yml:1:14: `concurrency`",
            ),
            ("repos: [\n", "/etc/runner.yml:"),
        ];
        for (src, want) in cases {
            let e = parse(src).unwrap_err().to_string();
            assert!(e.starts_with(want), "{src:?}: {e}");
        }
    }

    #[test]
    fn forge_read_auth_and_public_url() {
        let c = parse(
            "api_token: { env: HOOK }\nread_auth: true\npublic_url: https://ci.example.com/\nrepos:\n  - name: app\n    url: /srv/app.git\n    forge: { kind: gitlab, api: 'https://gitlab.example.com/api/v4/', project: group/app, token: { env: HOOK } }\n",
        )
        .unwrap();
        assert!(c.read_auth);
        assert_eq!(c.public_url.as_deref(), Some("https://ci.example.com"));
        let forge = c.repos[0].forge.as_ref().unwrap();
        assert_eq!(forge.kind, ForgeKind::Gitlab);
        assert_eq!(forge.api, "https://gitlab.example.com/api/v4");
        assert_eq!(forge.project, "group/app");
        assert_eq!(forge.context, "drydock");
        assert!(!format!("{c:?}").contains("s3cret"));
        let repo = |forge: &str| {
            parse(&format!(
                "repos:\n  - name: app\n    url: /srv/app.git\n    forge: {forge}\n"
            ))
            .map(|c| c.repos[0].forge.clone())
            .map_err(|e| e.to_string())
        };
        let bad = [
            ("{ kind: bitbucket, api: 'https://x', project: a/b, token: { env: HOOK } }", "`forge.kind`: expected github or gitlab"),
            ("{ kind: github, api: 'ftp://x', project: a/b, token: { env: HOOK } }", "`forge.api`: expected an http"),
            ("{ kind: github, api: 'https://x', project: '../b', token: { env: HOOK } }", "`forge.project`"),
            ("{ kind: github, api: 'https://x', project: a/b, token: { env: NOPE } }", "environment variable NOPE is not set"),
            ("{ kind: github, api: 'https://x', project: a/b }", "`forge`: missing token"),
            ("{ kind: github, api: 'https://x', project: a/b, token: { env: HOOK }, colour: red }", "unknown `forge` key `colour`"),
        ];
        for (forge, want) in bad {
            let e = repo(forge).unwrap_err();
            assert!(e.contains(want), "{forge}: {e}");
        }
        let e = parse("read_auth: true\nrepos: []\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`read_auth: true` needs `api_token`"), "{e}");
        let e = parse("public_url: 'ci.example.com'\nrepos: []\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`public_url`"), "{e}");
    }

    #[test]
    fn deploy_on_green_shapes() {
        let repo = |deploy: &str| {
            parse(&format!(
                "repos:\n  - name: app\n    url: x\n    deploy: {deploy}\n"
            ))
            .map(|c| c.repos[0].deploy.clone())
        };
        assert_eq!(
            repo("staging").unwrap(),
            Some(DeployOnGreen {
                channel: "staging".into(),
                config: None
            })
        );
        assert_eq!(
            repo("{ channel: staging, config: deploy/staging.yml }").unwrap(),
            Some(DeployOnGreen {
                channel: "staging".into(),
                config: Some("deploy/staging.yml".into())
            })
        );
        let cases = [
            ("'-x'", "4:13: `deploy`: \"-x\" is not a valid channel"),
            ("{ channel: staging }", "4:13: `deploy`: missing `config`"),
            (
                "{ config: deploy/x.yml }",
                "4:13: `deploy`: missing `channel`",
            ),
            (
                "{ channel: 'a b', config: deploy/x.yml }",
                "4:24: `deploy.channel`: \"a b\" is not a valid channel",
            ),
            (
                "{ channel: staging, config: ../x.yml }",
                "4:41: `deploy.config`: expected a path inside the repository",
            ),
            (
                "{ channel: staging, config: deploy/x.yml, confg: y }",
                "4:55: unknown `deploy` key `confg`",
            ),
            ("[staging]", "4:13: `deploy`: expected a string"),
        ];
        for (deploy, want) in cases {
            let e = repo(deploy).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("/etc/runner.yml:{want}")),
                "{deploy}: {e}"
            );
        }
    }

    #[test]
    fn store_name_lease_and_attempts() {
        let c = parse("repos: []\n").unwrap();
        assert_eq!(c.store, StoreSpec::Sqlite);
        assert_eq!(
            (c.name.clone(), c.lease, c.max_attempts),
            (None, Duration::from_secs(30), 3)
        );
        let c = parse(
            "repos: []\nstore: postgres://ci:pw@db.internal/drydock\nname: build-2\nlease: 10s\nmax_attempts: 5\n",
        )
        .unwrap();
        assert_eq!(
            c.store,
            StoreSpec::Postgres(Secret::new("postgres://ci:pw@db.internal/drydock"))
        );
        assert!(
            !format!("{c:?}").contains("pw@"),
            "the address is never printed"
        );
        assert_eq!(c.name.as_deref(), Some("build-2"));
        assert_eq!((c.lease, c.max_attempts), (Duration::from_secs(10), 5));
        let c = parse("repos: []\nstore: { env: HOOK }\n");
        assert!(c
            .unwrap_err()
            .to_string()
            .contains("`store`: expected `sqlite` or a postgres:// address"),);
        let cases = [
            (
                "store: mysql://x\n",
                "2:8: `store`: expected `sqlite` or a postgres://",
            ),
            ("name: -x\n", "2:7: `name`"),
            ("lease: 100ms\n", "2:8: `lease`: at least 1s"),
            (
                "max_attempts: 0\n",
                "2:15: `max_attempts`: expected an integer of at least 1",
            ),
        ];
        for (line, want) in cases {
            let e = parse(&format!("repos: []\n{line}"))
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(&format!("/etc/runner.yml:{want}")),
                "{line}: {e}"
            );
        }
        assert!(valid_runner_name("r1.example-host_2"));
        assert!(!valid_runner_name(&"x".repeat(64)));
    }

    #[test]
    fn branch_names() {
        assert!(valid_branch("ready/$(touch${IFS}/tmp/pwned)"));
        assert!(valid_branch("main"));
        for bad in ["-x", "a b", "a..b", "x.lock", "a:b", "", "a//b", "@"] {
            assert!(!valid_branch(bad), "{bad}");
        }
        assert!(glob("ready/*", "ready/a/b"));
        assert!(!glob("ready/*", "main"));
        let cases = [
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("a*", "a", true),
            ("*a", "ba", true),
            ("*a", "ab", false),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("**x", "yyx", true),
            ("r*/*z", "r/a/b/z", true),
            ("main", "main", true),
            ("main", "mainx", false),
            // globset's own syntax is literal here.
            ("feat{a,b}", "feat{a,b}", true),
            ("feat{a,b}", "feata", false),
            ("x\\*", "x\\y", true),
        ];
        for (p, t, want) in cases {
            assert_eq!(glob(p, t), want, "{p} {t}");
        }
        // Exponential for a naive backtracking matcher; instant here.
        let started = std::time::Instant::now();
        let pattern = format!("{}b", "*a".repeat(30));
        assert!(!glob(&pattern, &"a".repeat(255)));
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
    }

    #[test]
    fn relative_paths_are_relative_to_the_file_and_absolute() {
        let env = |_: &str| None;
        let src = "state_dir: state\nrepos:\n  - name: app\n    url: ../git/app.git\n  - name: b\n    url: git@example.com:b.git\n  - name: c\n    url: https://example.com/c.git\n";
        let c = Config::parse(src, Path::new("runner.yml"), &env).unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(c.state_dir, cwd.join("state"));
        assert!(c.path.is_absolute());
        assert_eq!(c.repos[0].url, cwd.join("../git/app.git").to_string_lossy());
        assert_eq!(c.repos[1].url, "git@example.com:b.git");
        assert_eq!(c.repos[2].url, "https://example.com/c.git");
        let c = Config::parse(src, Path::new("conf/runner.yml"), &env).unwrap();
        assert_eq!(c.state_dir, cwd.join("conf/state"));
        let c = parse("repos: []\n").unwrap();
        assert_eq!(c.state_dir, Path::new("/etc/.drydock-runner"));
    }

    #[test]
    fn hostile_bytes_are_refused_with_a_location() {
        let env = |_: &str| None;
        let path = Path::new("/etc/runner.yml");
        let cases: &[(&[u8], &str)] = &[
            (
                b"repos: []\n# \0\nconcurency: 2\n",
                "/etc/runner.yml:2:3: the control character U+0000",
            ),
            (
                b"repos: []\nx: \xff\n",
                "/etc/runner.yml:2:4: invalid UTF-8",
            ),
            (
                b"\xff\xfer\0e\0",
                "/etc/runner.yml:1:1: the file is encoded in UTF-16LE",
            ),
        ];
        for (bytes, want) in cases {
            let e = Config::parse_bytes(bytes, path, &env)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(want), "{bytes:?}: {e}");
        }
        assert!(Config::parse_bytes(b"\xef\xbb\xbfrepos: []\n", path, &env).is_ok());
        let deep = format!("repos:\n  {}x\n", "- ".repeat(50_000));
        let e = Config::parse(&deep, path, &env).unwrap_err().to_string();
        assert!(e.contains("nested deeper than 64"), "{e}");
    }
}
