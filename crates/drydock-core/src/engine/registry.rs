//! Registry push and registry credentials.
//!
//! Credentials come from, in order: the environment
//! (`DRYDOCK_REGISTRY_USER` with `DRYDOCK_REGISTRY_PASSWORD` or
//! `DRYDOCK_REGISTRY_PASSWORD_FILE`), then the Docker CLI's config file
//! (`$DOCKER_CONFIG/config.json`, default `~/.docker/config.json`): an
//! `auths.<host>` entry (`auth` = base64 `user:password`, or
//! `username`/`password`), else a credential helper (`credHelpers.<host>` or
//! `credsStore`, run as `docker-credential-<name> get`). Nothing found means an
//! anonymous push.
//!
//! Secrets are never printed: [`RegistryAuth`]'s `Debug` redacts the password
//! and push errors scrub it from the registry's message.
//!
//! # The `X-Registry-Auth` encoding workaround
//!
//! The daemon decodes `X-Registry-Auth` as URL-safe base64 and, when that
//! fails, silently pushes without credentials. bollard 0.21.1 encodes it with
//! *standard* base64, so a credential JSON whose encoding contains `+` or `/`
//! (passwords with `?`, `>`, `~`…) is dropped and the push fails as
//! "unauthorized" for no visible reason. [`Engine::push_image`] therefore
//! calls bollard's `push_image` on a clone of the client carrying a request
//! modifier that replaces the header with the URL-safe encoding of the same
//! JSON (the clone shares the connection pool; the modifier only ever sees the
//! push request).

use std::fmt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine as _;
use bollard::query_parameters::PushImageOptions;
use futures::StreamExt;

use super::{Engine, EngineError};

/// Environment variable with the registry user name.
pub const ENV_USER: &str = "DRYDOCK_REGISTRY_USER";
/// Environment variable with the registry password.
pub const ENV_PASSWORD: &str = "DRYDOCK_REGISTRY_PASSWORD";
/// Environment variable naming a file that holds the registry password.
pub const ENV_PASSWORD_FILE: &str = "DRYDOCK_REGISTRY_PASSWORD_FILE";

/// The key Docker uses for Docker Hub in `config.json`.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// Credentials for one registry. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    /// The registry host (`127.0.0.1:5000`, `docker.io`).
    pub registry: String,
    credentials: Option<(String, String)>,
    /// Where the credentials came from, for messages (`DRYDOCK_REGISTRY_USER`,
    /// `/root/.docker/config.json`, `no credentials`).
    pub source: String,
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("registry", &self.registry)
            .field("username", &self.username())
            .field("password", &self.credentials.as_ref().map(|_| "<redacted>"))
            .field("source", &self.source)
            .finish()
    }
}

/// Why credentials could not be worked out.
#[derive(Debug, thiserror::Error)]
#[error("registry credentials for {registry}: {message}")]
pub struct CredentialsError {
    /// The registry host.
    pub registry: String,
    /// What is wrong (never contains a secret).
    pub message: String,
}

impl RegistryAuth {
    /// No credentials: an anonymous push.
    pub fn anonymous(registry: impl Into<String>) -> Self {
        RegistryAuth {
            registry: registry.into(),
            credentials: None,
            source: "no credentials".to_string(),
        }
    }

    /// A user name and password.
    pub fn basic(
        registry: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<String>,
        source: impl Into<String>,
    ) -> Self {
        RegistryAuth {
            registry: registry.into(),
            credentials: Some((username.into(), password.into())),
            source: source.into(),
        }
    }

    /// The user name, when there are credentials.
    pub fn username(&self) -> Option<&str> {
        self.credentials.as_ref().map(|(u, _)| u.as_str())
    }

    /// Credentials for `registry` (a host as in [`registry_host`]) from the
    /// process environment and the Docker config file.
    pub fn resolve(registry: &str) -> Result<Self, CredentialsError> {
        let config_dir = std::env::var_os("DOCKER_CONFIG")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")));
        Self::resolve_with(
            registry,
            |name| std::env::var(name).ok(),
            config_dir.as_deref(),
        )
    }

    /// [`resolve`](Self::resolve) with the environment and the Docker config
    /// folder given explicitly (for tests and callers with their own environment).
    pub fn resolve_with(
        registry: &str,
        env: impl Fn(&str) -> Option<String>,
        docker_config_dir: Option<&Path>,
    ) -> Result<Self, CredentialsError> {
        let fail = |message: String| CredentialsError {
            registry: registry.to_string(),
            message,
        };
        let env = |name: &str| env(name).filter(|v| !v.is_empty());
        let user = env(ENV_USER);
        let password = match (env(ENV_PASSWORD), env(ENV_PASSWORD_FILE)) {
            (Some(_), Some(_)) => {
                return Err(fail(format!(
                    "both {ENV_PASSWORD} and {ENV_PASSWORD_FILE} are set; set one"
                )))
            }
            (Some(p), None) => Some(p),
            (None, Some(file)) => {
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| fail(format!("cannot read {ENV_PASSWORD_FILE} {file}: {e}")))?;
                Some(text.trim_end_matches(['\r', '\n']).to_string())
            }
            (None, None) => None,
        };
        match (user, password) {
            (Some(user), Some(password)) => {
                return Ok(Self::basic(registry, user, password, ENV_USER))
            }
            (Some(_), None) => {
                return Err(fail(format!(
                    "{ENV_USER} is set but neither {ENV_PASSWORD} nor {ENV_PASSWORD_FILE} is"
                )))
            }
            (None, Some(_)) => {
                return Err(fail(format!(
                    "a registry password is set but {ENV_USER} is not"
                )))
            }
            (None, None) => {}
        }
        let Some(dir) = docker_config_dir else {
            return Ok(Self::anonymous(registry));
        };
        let path = dir.join("config.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::anonymous(registry))
            }
            Err(e) => return Err(fail(format!("cannot read {}: {e}", path.display()))),
        };
        let config: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| fail(format!("{} is not valid JSON: {e}", path.display())))?;
        let source = path.display().to_string();

        let entry = config
            .get("auths")
            .and_then(|a| a.as_object())
            .and_then(|auths| {
                auths
                    .iter()
                    .find(|(key, _)| config_key_host(key) == registry)
                    .map(|(_, v)| v)
            });
        if let Some(entry) = entry {
            let field = |name: &str| {
                entry
                    .get(name)
                    .and_then(|v| v.as_str())
                    .filter(|s| !s.is_empty())
            };
            if let Some(auth) = field("auth") {
                let decoded = STANDARD
                    .decode(auth.trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        fail(format!(
                            "auths.{registry}.auth in {source} is not base64 of user:password"
                        ))
                    })?;
                let (user, password) = decoded.split_once(':').ok_or_else(|| {
                    fail(format!(
                        "auths.{registry}.auth in {source} is not base64 of user:password"
                    ))
                })?;
                return Ok(Self::basic(registry, user, password, source));
            }
            if let (Some(user), Some(password)) = (field("username"), field("password")) {
                return Ok(Self::basic(registry, user, password, source));
            }
        }
        let helper = config
            .get("credHelpers")
            .and_then(|h| h.as_object())
            .and_then(|h| {
                h.iter()
                    .find(|(key, _)| config_key_host(key) == registry)
                    .map(|(_, v)| v)
            })
            .or_else(|| config.get("credsStore"))
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty());
        match helper {
            Some(helper) => credential_helper(registry, helper, &env).map_err(fail),
            None => Ok(Self::anonymous(registry)),
        }
    }

    /// The JSON Docker expects in `X-Registry-Auth`, URL-safe base64 encoded.
    fn header_value(&self) -> String {
        let json = match &self.credentials {
            Some((username, password)) => serde_json::json!({
                "username": username,
                "password": password,
                "serveraddress": self.registry,
            }),
            None => serde_json::json!({}),
        };
        URL_SAFE.encode(json.to_string())
    }

    /// `text` with the password (if any) replaced by `***`.
    fn scrub(&self, text: &str) -> String {
        match &self.credentials {
            Some((_, password)) if !password.is_empty() => text.replace(password.as_str(), "***"),
            _ => text.to_string(),
        }
    }
}

/// The host part of a `config.json` key (`https://127.0.0.1:5000/v2/` → `127.0.0.1:5000`).
fn config_key_host(key: &str) -> String {
    if key == DOCKER_HUB_KEY {
        return "docker.io".to_string();
    }
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        other => other.to_string(),
    }
}

/// Runs `docker-credential-<helper> get` (found on the `PATH` of `env`).
fn credential_helper(
    registry: &str,
    helper: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<RegistryAuth, String> {
    let program = format!("docker-credential-{helper}");
    let path = env("PATH").unwrap_or_default();
    let binary = std::env::split_paths(&path)
        .map(|d| d.join(&program))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "the Docker config names the credential helper {program}, which is not on PATH\n  hint: install it, or set {ENV_USER} and {ENV_PASSWORD}"
            )
        })?;
    let server = if registry == "docker.io" {
        DOCKER_HUB_KEY
    } else {
        registry
    };
    let mut child = std::process::Command::new(&binary)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // "credentials not found in native keychain" means: no credentials.
        if stdout.contains("credentials not found") {
            return Ok(RegistryAuth::anonymous(registry));
        }
        return Err(format!(
            "{program} get failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let value: serde_json::Value = serde_json::from_str(&stdout)
        .map_err(|_| format!("{program} get did not answer with JSON"))?;
    let field = |name: &str| value.get(name).and_then(|v| v.as_str()).unwrap_or("");
    let (user, secret) = (field("Username"), field("Secret"));
    if secret.is_empty() {
        return Ok(RegistryAuth::anonymous(registry));
    }
    Ok(RegistryAuth::basic(registry, user, secret, program))
}

/// The registry host of an image reference: its first path component when
/// that looks like a host (contains `.` or `:`, or is `localhost`), else
/// `docker.io`.
pub fn registry_host(reference: &str) -> String {
    match reference.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_string()
        }
        _ => "docker.io".to_string(),
    }
}

/// How many times a push whose response stream broke (a transport error,
/// not an answer of the registry) is tried before it fails.
const PUSH_ATTEMPTS: u32 = 3;

/// What kind of push failure it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushFailure {
    /// The registry refused the credentials (or there were none).
    Authentication,
    /// The registry could not be reached.
    Unreachable,
    /// The registry speaks plain HTTP but the engine wanted HTTPS.
    Insecure,
    /// The image to push is not in the engine.
    ImageMissing,
    /// Anything else the registry or the engine refused.
    Refused,
}

impl PushFailure {
    /// Sorts an engine or registry message.
    pub fn classify(message: &str) -> Self {
        let m = message.to_ascii_lowercase();
        if m.contains("does not exist locally") || m.contains("no such image") {
            PushFailure::ImageMissing
        } else if m.contains("http response to https client") {
            PushFailure::Insecure
        } else if m.contains("connection refused")
            || m.contains("no such host")
            || m.contains("dial tcp")
            || m.contains("i/o timeout")
            || m.contains("network is unreachable")
            || m.contains("no route to host")
            || m.contains("connection reset")
        {
            // Before the status words: the registry's address, which every
            // message names, may hold "401" (port 40137).
            PushFailure::Unreachable
        } else if m.contains("unauthorized")
            || m.contains("authentication required")
            || m.contains("no basic auth credentials")
            || m.split(|c: char| !c.is_ascii_alphanumeric())
                .any(|word| word == "401")
            || m.contains("access to the resource is denied")
        {
            PushFailure::Authentication
        } else {
            PushFailure::Refused
        }
    }

    /// A short description for people.
    pub fn describe(self) -> &'static str {
        match self {
            PushFailure::Authentication => "authentication failed",
            PushFailure::Unreachable => "the registry is unreachable",
            PushFailure::Insecure => "the registry speaks plain HTTP",
            PushFailure::ImageMissing => "the image is not in the engine",
            PushFailure::Refused => "the registry refused the push",
        }
    }
}

impl Engine {
    /// Pushes `reference` (`host[:port]/path:tag`) to its registry with
    /// `auth`, streaming the push to the end. Every failure becomes
    /// [`EngineError::Push`]; none of them contains the password.
    pub async fn push_image(
        &self,
        reference: &str,
        auth: &RegistryAuth,
    ) -> Result<(), EngineError> {
        let (repo, tag) = super::split_tag(reference);
        let registry = registry_host(reference);
        let fail = |message: &str| {
            let message = auth.scrub(message);
            let kind = PushFailure::classify(&message);
            EngineError::Push {
                reference: reference.to_string(),
                registry: registry.clone(),
                kind,
                message: explain(kind, &message, auth),
            }
        };
        let mut header = http::HeaderValue::from_str(&auth.header_value())
            .expect("base64 is a valid header value");
        header.set_sensitive(true);
        // See the module docs: replace bollard's standard-base64 header.
        let docker = self
            .docker
            .clone()
            .with_request_modifier(move |mut request| {
                request
                    .headers_mut()
                    .insert("X-Registry-Auth", header.clone());
                request
            });
        let options = PushImageOptions {
            tag: Some(tag.to_string()),
            ..Default::default()
        };
        // bollard's JSON-lines decoder now and then reports "bytes remaining
        // on stream" when the daemon closes the push stream (seen in CI on
        // a push that otherwise went through). That is the transport, not
        // the registry: once the final digest has arrived the push is done;
        // before it, the push is repeated (a push is idempotent: layers the
        // registry has are skipped), at most `PUSH_ATTEMPTS` times.
        let mut attempt = 1;
        loop {
            let mut stream = docker.push_image(repo, Some(options.clone()), None);
            let mut digest = false;
            let mut transport = None;
            while let Some(item) = stream.next().await {
                match item {
                    Ok(info) => {
                        // The last status line: "<tag>: digest: sha256:… size: N".
                        digest |= info
                            .status
                            .as_deref()
                            .is_some_and(|status| status.contains("digest: sha256:"));
                    }
                    Err(bollard::errors::Error::DockerStreamError { error }) => {
                        return Err(fail(&error))
                    }
                    Err(bollard::errors::Error::DockerResponseServerError { message, .. }) => {
                        return Err(fail(&message))
                    }
                    Err(bollard::errors::Error::IOError { err }) => {
                        transport = Some(err.to_string());
                        break;
                    }
                    Err(other) => return Err(fail(&other.to_string())),
                }
            }
            match transport {
                None => return Ok(()),
                Some(error) if digest => {
                    tracing::debug!(%error, "end of the push stream after the digest");
                    return Ok(());
                }
                Some(error) if attempt < PUSH_ATTEMPTS => {
                    tracing::warn!(%error, attempt, "push stream broke; pushing again");
                    attempt += 1;
                }
                Some(error) => return Err(fail(&error)),
            }
        }
    }
}

/// The registry's message with what it means and what to do.
fn explain(kind: PushFailure, message: &str, auth: &RegistryAuth) -> String {
    let hint = match kind {
        PushFailure::Authentication => match auth.username() {
            Some(user) => format!(
                "the registry did not accept user {user:?} (credentials from {}); check the password",
                auth.source
            ),
            None => format!(
                "no credentials were found for {}; set {ENV_USER} and {ENV_PASSWORD}, or `docker login {}`",
                auth.registry, auth.registry
            ),
        },
        PushFailure::Unreachable => {
            "check that the registry is running and its address is right".to_string()
        }
        PushFailure::Insecure => format!(
            "add {:?} to the engine's insecure-registries (127.0.0.0/8 is insecure by default), or serve it over HTTPS",
            auth.registry
        ),
        PushFailure::ImageMissing => "tag the image before pushing it".to_string(),
        PushFailure::Refused => String::new(),
    };
    let mut text = format!("{}: {}", kind.describe(), message.trim());
    if !hint.is_empty() {
        text.push_str("\n  hint: ");
        text.push_str(&hint);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn config_dir(json: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), json).unwrap();
        dir
    }

    #[test]
    fn registry_host_of_references() {
        assert_eq!(registry_host("127.0.0.1:5000/app:1"), "127.0.0.1:5000");
        assert_eq!(registry_host("localhost/ns/app:1"), "localhost");
        assert_eq!(registry_host("reg.example.com/app"), "reg.example.com");
        assert_eq!(registry_host("drydock/app:1"), "docker.io");
        assert_eq!(registry_host("app:1"), "docker.io");
    }

    #[test]
    fn environment_comes_first() {
        let dir = config_dir(r#"{"auths":{"127.0.0.1:5000":{"auth":"dTpw"}}}"#);
        let auth = RegistryAuth::resolve_with(
            "127.0.0.1:5000",
            env_of(&[(ENV_USER, "ci"), (ENV_PASSWORD, "s3cr?t>~")]),
            Some(dir.path()),
        )
        .unwrap();
        assert_eq!(auth.username(), Some("ci"));
        assert_eq!(auth.source, ENV_USER);
    }

    #[test]
    fn password_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "hunter2\n").unwrap();
        let auth = RegistryAuth::resolve_with(
            "r:1",
            env_of(&[
                (ENV_USER, "ci"),
                (ENV_PASSWORD_FILE, file.to_str().unwrap()),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(auth, RegistryAuth::basic("r:1", "ci", "hunter2", ENV_USER));
    }

    #[test]
    fn half_set_environment_is_an_error() {
        let err = RegistryAuth::resolve_with("r:1", env_of(&[(ENV_USER, "ci")]), None).unwrap_err();
        assert!(err.to_string().contains(ENV_PASSWORD), "{err}");
        let err = RegistryAuth::resolve_with("r:1", env_of(&[(ENV_PASSWORD, "pw-secret")]), None)
            .unwrap_err();
        assert!(!err.to_string().contains("pw-secret"), "{err}");
    }

    #[test]
    fn docker_config_auth_field() {
        // "user:pa?>~ss" in standard base64.
        let encoded = STANDARD.encode("user:pa?>~ss");
        let dir = config_dir(&format!(
            r#"{{"auths":{{"http://127.0.0.1:5000/v2/":{{"auth":"{encoded}"}}}}}}"#
        ));
        let auth =
            RegistryAuth::resolve_with("127.0.0.1:5000", env_of(&[]), Some(dir.path())).unwrap();
        assert_eq!(auth.username(), Some("user"));
        assert_eq!(
            auth.credentials,
            Some(("user".to_string(), "pa?>~ss".to_string()))
        );
        // Another host: anonymous.
        let other =
            RegistryAuth::resolve_with("127.0.0.1:6000", env_of(&[]), Some(dir.path())).unwrap();
        assert_eq!(other.username(), None);
    }

    #[test]
    fn docker_config_username_password_and_hub_key() {
        let dir = config_dir(
            r#"{"auths":{"https://index.docker.io/v1/":{"username":"hub","password":"pw"}}}"#,
        );
        let auth = RegistryAuth::resolve_with("docker.io", env_of(&[]), Some(dir.path())).unwrap();
        assert_eq!(auth.username(), Some("hub"));
    }

    #[test]
    fn missing_credential_helper_is_a_clear_error() {
        let dir = config_dir(r#"{"auths":{"r:1":{}},"credsStore":"nonexistent-helper"}"#);
        let err = RegistryAuth::resolve_with(
            "r:1",
            env_of(&[("PATH", "/nonexistent")]),
            Some(dir.path()),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("docker-credential-nonexistent-helper"),
            "{text}"
        );
        assert!(text.contains(ENV_USER), "{text}");
    }

    #[test]
    fn credential_helper_is_run() {
        let bin = tempfile::tempdir().unwrap();
        let helper = bin.path().join("docker-credential-fake");
        std::fs::write(
            &helper,
            "#!/bin/sh\nread server\necho \"{\\\"ServerURL\\\":\\\"$server\\\",\\\"Username\\\":\\\"h-$server\\\",\\\"Secret\\\":\\\"s\\\"}\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let dir = config_dir(r#"{"credHelpers":{"r:1":"fake"}}"#);
        let auth = RegistryAuth::resolve_with(
            "r:1",
            env_of(&[("PATH", bin.path().to_str().unwrap())]),
            Some(dir.path()),
        )
        .unwrap();
        assert_eq!(auth.username(), Some("h-r:1"));
        assert_eq!(auth.source, "docker-credential-fake");
    }

    #[test]
    fn debug_redacts_the_password() {
        let auth = RegistryAuth::basic("r:1", "ci", "pa?>~ss-secret", ENV_USER);
        let text = format!("{auth:?}");
        assert!(!text.contains("pa?>~ss-secret"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
    }

    #[test]
    fn header_is_url_safe_base64_json() {
        // `?>~` make standard base64 use `+` and `/`.
        let auth = RegistryAuth::basic("r:1", "u", "??>>~~", ENV_USER);
        let value = auth.header_value();
        assert!(!value.contains('+') && !value.contains('/'), "{value}");
        let json: serde_json::Value =
            serde_json::from_slice(&URL_SAFE.decode(&value).unwrap()).unwrap();
        assert_eq!(json["password"], "??>>~~");
        assert_eq!(json["serveraddress"], "r:1");
        assert!(STANDARD.encode(json.to_string()).contains(['+', '/']));
    }

    #[test]
    fn classification() {
        use PushFailure::*;
        for (message, kind) in [
            ("unauthorized: authentication required", Authentication),
            ("no basic auth credentials", Authentication),
            (
                "Get \"http://127.0.0.1:1/v2/\": dial tcp 127.0.0.1:1: connect: connection refused",
                Unreachable,
            ),
            // A port that holds "401" is not an HTTP status.
            (
                "Get \"http://127.0.0.1:40137/v2/\": dial tcp 127.0.0.1:40137: connect: connection refused",
                Unreachable,
            ),
            ("manifest push: status 401", Authentication),
            ("received unexpected HTTP status: 500 Internal Server Error (registry 127.0.0.1:40137)", Refused),
            (
                "Get \"https://r:1/v2/\": http: server gave HTTP response to HTTPS client",
                Insecure,
            ),
            (
                "An image does not exist locally with the tag: r:1/x",
                ImageMissing,
            ),
            ("manifest invalid", Refused),
        ] {
            assert_eq!(PushFailure::classify(message), kind, "{message}");
        }
    }

    #[test]
    fn explain_scrubs_nothing_secret() {
        let auth = RegistryAuth::basic("r:1", "ci", "topsecret", ENV_USER);
        let message = auth.scrub("echoed topsecret back");
        assert!(!message.contains("topsecret"));
        let text = explain(PushFailure::Authentication, &message, &auth);
        assert!(text.starts_with("authentication failed: "), "{text}");
        assert!(text.contains("\"ci\""), "{text}");
    }
}
