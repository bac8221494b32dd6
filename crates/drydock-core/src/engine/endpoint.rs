//! Which engine to talk to, found as the docker CLI finds it, so that
//! drydock and `docker` always talk to the same engine (Docker Desktop,
//! colima, rootless, remote contexts):
//!
//! 1. `DOCKER_HOST` (with `DOCKER_TLS_VERIFY` / `DOCKER_CERT_PATH` for TLS);
//! 2. else the context named by `DOCKER_CONTEXT`;
//! 3. else the `currentContext` of the docker config file
//!    (`$DOCKER_CONFIG/config.json`, default `~/.docker/config.json`);
//! 4. else the local socket [`DEFAULT_HOST`].
//!
//! A context is read from the docker CLI's context store:
//! `$DOCKER_CONFIG/contexts/meta/<sha256 of the name>/meta.json` holds its
//! `Endpoints.docker.Host` (and `SkipTLSVerify`), and
//! `$DOCKER_CONFIG/contexts/tls/<sha256 of the name>/docker/{ca,cert,key}.pem`
//! its TLS material (as `docker context create --docker
//! host=…,ca=…,cert=…,key=…` stores them). The context `default` is the
//! local socket. This is the docker CLI's own order (`cli/command/cli.go`,
//! `resolveContextName`), minus its `--context`/`-H` flags.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Default socket when no variable or context names another engine.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// Where the endpoint came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointSource {
    /// `DOCKER_HOST`.
    DockerHost,
    /// The context named by `DOCKER_CONTEXT`.
    ContextEnv(String),
    /// The `currentContext` of the docker config file.
    CurrentContext(String),
    /// Nothing named one: the local socket.
    Default,
}

/// TLS files for a `tcp://` endpoint (PEM).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA that signed the daemon's certificate.
    pub ca: Option<PathBuf>,
    /// The client certificate.
    pub cert: Option<PathBuf>,
    /// The client key.
    pub key: Option<PathBuf>,
}

/// An engine address and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `unix://…`, `tcp://…`, `http(s)://…` or `ssh://[user@]host[:port]`.
    pub host: String,
    /// Where it came from.
    pub source: EndpointSource,
    /// TLS material, when the endpoint uses TLS.
    pub tls: Option<TlsFiles>,
    /// The context asks not to verify the daemon's certificate.
    pub skip_tls_verify: bool,
}

impl Endpoint {
    /// The local socket.
    pub fn local() -> Endpoint {
        Endpoint {
            host: DEFAULT_HOST.to_string(),
            source: EndpointSource::Default,
            tls: None,
            skip_tls_verify: false,
        }
    }

    /// The docker context it was read from, if any.
    pub fn context(&self) -> Option<&str> {
        match &self.source {
            EndpointSource::ContextEnv(c) | EndpointSource::CurrentContext(c) => Some(c),
            _ => None,
        }
    }

    /// For people: `tcp://127.0.0.1:2376 (docker context "remote", from DOCKER_CONTEXT)`.
    pub fn describe(&self) -> String {
        match &self.source {
            EndpointSource::DockerHost => format!("{} (DOCKER_HOST)", self.host),
            EndpointSource::ContextEnv(c) => {
                format!(
                    "{} (docker context \"{c}\", from DOCKER_CONTEXT)",
                    self.host
                )
            }
            EndpointSource::CurrentContext(c) => format!(
                "{} (docker context \"{c}\", the current context of the docker config)",
                self.host
            ),
            EndpointSource::Default => self.host.clone(),
        }
    }
}

/// Why no endpoint could be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// The named context is not in the context store.
    #[error("docker context \"{name}\" ({why}) does not exist: no {meta}\n  hint: `docker context ls` lists the contexts; unset DOCKER_CONTEXT or pick another")]
    UnknownContext {
        /// The context's name.
        name: String,
        /// Where the name came from.
        why: String,
        /// The metadata file looked for.
        meta: String,
    },
    /// A file of the docker configuration cannot be read or parsed.
    #[error("cannot read {path}: {message}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// The docker config folder: `$DOCKER_CONFIG`, else `~/.docker`.
pub fn config_dir(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    match env("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env("HOME").unwrap_or_default()).join(".docker"),
    }
}

/// The context store's folder name for a context: the hex SHA-256 of its name.
pub fn context_digest(name: &str) -> String {
    hex::encode(Sha256::digest(name.as_bytes()))
}

fn read_json(path: &Path) -> Result<Option<serde_json::Value>, EndpointError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| EndpointError::Config {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(EndpointError::Config {
            path: path.display().to_string(),
            message: e.to_string(),
        }),
    }
}

fn existing(path: PathBuf) -> Option<PathBuf> {
    path.is_file().then_some(path)
}

/// Finds the engine as the docker CLI would, reading variables with `env`
/// (`std::env::var` in [`resolve_from_env`]).
///
/// # Errors
/// A context that does not exist, or a config or context file that cannot
/// be read.
pub fn resolve(env: &dyn Fn(&str) -> Option<String>) -> Result<Endpoint, EndpointError> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    if let Some(host) = set("DOCKER_HOST") {
        let tls = set("DOCKER_TLS_VERIFY").map(|_| {
            let dir = set("DOCKER_CERT_PATH")
                .map(PathBuf::from)
                .unwrap_or_else(|| config_dir(env));
            TlsFiles {
                ca: existing(dir.join("ca.pem")),
                cert: existing(dir.join("cert.pem")),
                key: existing(dir.join("key.pem")),
            }
        });
        return Ok(Endpoint {
            host,
            source: EndpointSource::DockerHost,
            tls,
            skip_tls_verify: false,
        });
    }
    let config = config_dir(env);
    let (name, source) = match set("DOCKER_CONTEXT") {
        Some(name) => (name.clone(), EndpointSource::ContextEnv(name)),
        None => {
            let path = config.join("config.json");
            let current = read_json(&path)?
                .and_then(|c| c.get("currentContext")?.as_str().map(str::to_string))
                .filter(|c| !c.is_empty());
            match current {
                Some(name) => (name.clone(), EndpointSource::CurrentContext(name)),
                None => return Ok(Endpoint::local()),
            }
        }
    };
    if name == "default" {
        return Ok(Endpoint::local());
    }
    let digest = context_digest(&name);
    let meta_path = config.join("contexts/meta").join(&digest).join("meta.json");
    let why = match &source {
        EndpointSource::ContextEnv(_) => "from DOCKER_CONTEXT",
        _ => "the currentContext of the docker config",
    };
    let Some(meta) = read_json(&meta_path)? else {
        return Err(EndpointError::UnknownContext {
            name,
            why: why.to_string(),
            meta: meta_path.display().to_string(),
        });
    };
    let docker = &meta["Endpoints"]["docker"];
    let Some(host) = docker["Host"].as_str().filter(|h| !h.is_empty()) else {
        return Err(EndpointError::Config {
            path: meta_path.display().to_string(),
            message: format!(
                "docker context \"{name}\" has no docker endpoint (Endpoints.docker.Host)"
            ),
        });
    };
    let tls_dir = config.join("contexts/tls").join(&digest).join("docker");
    let tls = TlsFiles {
        ca: existing(tls_dir.join("ca.pem")),
        cert: existing(tls_dir.join("cert.pem")),
        key: existing(tls_dir.join("key.pem")),
    };
    let has_tls = tls != TlsFiles::default();
    Ok(Endpoint {
        host: host.to_string(),
        source,
        tls: has_tls.then_some(tls),
        skip_tls_verify: docker["SkipTLSVerify"].as_bool().unwrap_or(false),
    })
}

/// [`resolve`] with the process environment.
///
/// # Errors
/// As [`resolve`].
pub fn resolve_from_env() -> Result<Endpoint, EndpointError> {
    resolve(&|name| std::env::var(name).ok())
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

    /// A context store as `docker context create` writes it.
    fn context(config: &Path, name: &str, host: &str, tls: bool) {
        let digest = context_digest(name);
        let meta = config.join("contexts/meta").join(&digest);
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(
            meta.join("meta.json"),
            serde_json::json!({
                "Name": name,
                "Metadata": {},
                "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": false}}
            })
            .to_string(),
        )
        .unwrap();
        if tls {
            let dir = config.join("contexts/tls").join(&digest).join("docker");
            std::fs::create_dir_all(&dir).unwrap();
            for f in ["ca.pem", "cert.pem", "key.pem"] {
                std::fs::write(dir.join(f), "pem").unwrap();
            }
        }
    }

    #[test]
    fn the_digest_is_the_docker_clis() {
        // `docker context create foo` stores it under sha256("foo").
        assert_eq!(
            context_digest("foo"),
            "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
        );
    }

    #[test]
    fn docker_host_then_docker_context_then_current_context_then_the_socket() {
        let config = tempfile::tempdir().unwrap();
        let dir = config.path().to_str().unwrap();
        context(config.path(), "remote", "tcp://10.0.0.5:2376", true);
        context(
            config.path(),
            "colima",
            "unix:///home/u/.colima/docker.sock",
            false,
        );
        std::fs::write(
            config.path().join("config.json"),
            r#"{"auths":{},"currentContext":"colima"}"#,
        )
        .unwrap();

        let e = resolve(&env_of(&[
            ("DOCKER_CONFIG", dir),
            ("DOCKER_HOST", "tcp://1.2.3.4:2375"),
            ("DOCKER_CONTEXT", "remote"),
        ]))
        .unwrap();
        assert_eq!(e.host, "tcp://1.2.3.4:2375");
        assert_eq!(e.source, EndpointSource::DockerHost);
        assert_eq!(e.tls, None);

        let e = resolve(&env_of(&[
            ("DOCKER_CONFIG", dir),
            ("DOCKER_CONTEXT", "remote"),
        ]))
        .unwrap();
        assert_eq!(e.host, "tcp://10.0.0.5:2376");
        assert_eq!(e.context(), Some("remote"));
        let tls = e.tls.unwrap();
        assert!(tls.ca.unwrap().ends_with("docker/ca.pem"));
        assert!(tls.cert.is_some() && tls.key.is_some());

        let e = resolve(&env_of(&[("DOCKER_CONFIG", dir)])).unwrap();
        assert_eq!(e.host, "unix:///home/u/.colima/docker.sock");
        assert_eq!(e.source, EndpointSource::CurrentContext("colima".into()));
        assert!(e.describe().contains("\"colima\""), "{}", e.describe());

        let e = resolve(&env_of(&[
            ("DOCKER_CONFIG", dir),
            ("DOCKER_CONTEXT", "default"),
        ]))
        .unwrap();
        assert_eq!(e.host, DEFAULT_HOST);

        let empty = tempfile::tempdir().unwrap();
        let e = resolve(&env_of(&[(
            "DOCKER_CONFIG",
            empty.path().to_str().unwrap(),
        )]))
        .unwrap();
        assert_eq!(e, Endpoint::local());
        // An empty DOCKER_HOST is unset, as for the docker CLI.
        let e = resolve(&env_of(&[
            ("DOCKER_CONFIG", empty.path().to_str().unwrap()),
            ("DOCKER_HOST", ""),
        ]))
        .unwrap();
        assert_eq!(e, Endpoint::local());
    }

    #[test]
    fn docker_tls_verify_takes_the_cert_path() {
        let certs = tempfile::tempdir().unwrap();
        for f in ["ca.pem", "cert.pem", "key.pem"] {
            std::fs::write(certs.path().join(f), "pem").unwrap();
        }
        let e = resolve(&env_of(&[
            ("DOCKER_HOST", "tcp://h:2376"),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", certs.path().to_str().unwrap()),
        ]))
        .unwrap();
        assert_eq!(e.tls.unwrap().key, Some(certs.path().join("key.pem")));
    }

    #[test]
    fn an_unknown_context_is_an_error_naming_it() {
        let config = tempfile::tempdir().unwrap();
        let err = resolve(&env_of(&[
            ("DOCKER_CONFIG", config.path().to_str().unwrap()),
            ("DOCKER_CONTEXT", "nowhere"),
        ]))
        .unwrap_err();
        assert!(
            err.to_string().contains("docker context \"nowhere\""),
            "{err}"
        );
        assert!(err.to_string().contains("DOCKER_CONTEXT"), "{err}");
        std::fs::write(config.path().join("config.json"), "{not json").unwrap();
        let err = resolve(&env_of(&[(
            "DOCKER_CONFIG",
            config.path().to_str().unwrap(),
        )]))
        .unwrap_err();
        assert!(err.to_string().contains("config.json"), "{err}");
    }
}
