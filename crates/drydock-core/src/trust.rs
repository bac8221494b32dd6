//! Trust stores and proxies: a CA bundle and proxy / pip index settings handed
//! to builds and networked steps, never kept in an image.
//!
//! Builds get the bundle through [`crate::engine::BuildRequest::ca_bundle`]:
//! with BuildKit as a secret mounted over the system CA bundle in every
//! `RUN`; with either builder as the context file [`TRUST_CONTEXT_PATH`] for
//! a Dockerfile that copies it into a builder stage (and never next to a
//! whole-context copy). The settings go as build arguments. Steps get the
//! bundle mounted read-only at [`STEP_CA_PATH`] with `PIP_CERT`,
//! `REQUESTS_CA_BUNDLE` and `SSL_CERT_FILE` pointing at it. `docs/trust.md`
//! has the rules and what was measured.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where the CA bundle lands inside a build context, for Dockerfiles that
/// copy it (the engine adds it only then, see `docs/trust.md`).
pub const TRUST_CONTEXT_PATH: &str = ".drydock-trust/ca.crt";
/// Where the CA bundle is mounted in a step container.
pub const STEP_CA_PATH: &str = "/etc/drydock/ca.crt";

/// Environment names passed through to builds (as build args) and steps.
pub const PASSED_THROUGH: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_TRUSTED_HOST",
];

/// The trust and proxy settings of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trust {
    /// A PEM CA bundle to trust, if any.
    pub ca_bundle: Option<PathBuf>,
    /// Proxy and pip index settings.
    pub env: BTreeMap<String, String>,
}

impl Trust {
    /// From the environment: the CA bundle from `DRYDOCK_CA_BUNDLE`, else
    /// `PIP_CERT`; the settings named in [`PASSED_THROUGH`] that are set.
    pub fn from_env() -> Self {
        let ca_bundle = ["DRYDOCK_CA_BUNDLE", "PIP_CERT"]
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
            .map(PathBuf::from);
        let env = PASSED_THROUGH
            .iter()
            .filter_map(|name| {
                std::env::var(name)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .map(|v| (name.to_string(), v))
            })
            .collect();
        Trust { ca_bundle, env }
    }

    /// Environment for a step container that uses the network.
    pub fn step_env(&self) -> BTreeMap<String, String> {
        let mut env = self.env.clone();
        if self.ca_bundle.is_some() {
            for name in ["PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"] {
                env.insert(name.to_string(), STEP_CA_PATH.to_string());
            }
        }
        env
    }

    /// The CA bundle's bytes, for [`crate::engine::BuildRequest::ca_bundle`].
    /// An unreadable bundle is an error naming its path.
    pub fn ca_bytes(&self) -> std::io::Result<Option<Vec<u8>>> {
        match &self.ca_bundle {
            Some(path) => std::fs::read(path).map(Some).map_err(|e| {
                std::io::Error::new(e.kind(), format!("CA bundle {}: {e}", path.display()))
            }),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_get_the_ca_under_every_common_name_only_when_configured() {
        let without = Trust::default();
        assert!(without.step_env().is_empty());
        let with = Trust {
            ca_bundle: Some("/x.pem".into()),
            env: BTreeMap::from([("HTTPS_PROXY".to_string(), "http://p:3128".to_string())]),
        };
        let env = with.step_env();
        assert_eq!(env["PIP_CERT"], STEP_CA_PATH);
        assert_eq!(env["SSL_CERT_FILE"], STEP_CA_PATH);
        assert_eq!(env["HTTPS_PROXY"], "http://p:3128");
    }
}
