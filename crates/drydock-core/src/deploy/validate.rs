//! Validation of deploy config files (`deploy/<channel>.yml`), beside the
//! deploy it configures, with the document checker's field helpers (the
//! pipeline's [`Checker`]) and `file:line:col` diagnostics.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use crate::deploy::config::{
    AppSpec, DeployConfig, DeployService, APP_ALIAS, DEFAULT_APP_READY_TIMEOUT, DEFAULT_DRAIN,
    DEFAULT_STOP_GRACE,
};
use crate::pipeline::tree::{Kind, Node, Pos, ScalarType};
use crate::pipeline::validate::{is_repository, Checker};

const ROOT_KEYS: &[&str] = &["version", "name", "channel", "app", "services"];
const APP_KEYS: &[&str] = &[
    "port",
    "publish",
    "env",
    "command",
    "depends_on",
    "ready",
    "drain",
    "stop_grace",
];
const APP_READY_KEYS: &[&str] = &["timeout", "path"];
const SERVICE_KEYS: &[&str] = &["image", "env", "command", "ready", "publish"];

impl Checker<'_> {
    /// Validates a deploy config document that must deploy `channel`.
    pub(crate) fn check_deploy(
        mut self,
        root: &Node,
        source_path: PathBuf,
        channel: &str,
    ) -> Result<DeployConfig, Vec<(Pos, String)>> {
        let config = self.deploy_config(root, source_path, channel);
        if self.errors.is_empty() {
            if let Some(c) = config {
                return Ok(c);
            }
            self.err(root.pos, "invalid deploy config");
        }
        self.errors.sort_by_key(|e| e.0);
        self.errors.dedup();
        Err(self.errors)
    }

    fn deploy_config(
        &mut self,
        root: &Node,
        source_path: PathBuf,
        channel: &str,
    ) -> Option<DeployConfig> {
        let f = self.fields(root, Pos::START, "the deploy config", ROOT_KEYS)?;
        self.version_1(&f);
        let name = self.required(&f, "name").and_then(|n| {
            let s = self.string(n)?;
            if !is_repository(&s) {
                self.err(
                    n.pos,
                    format!("invalid image repository {s:?}: expected a name such as flask-api or registry.example/shop (no tag)"),
                );
                return None;
            }
            Some(s)
        });
        let config_channel = self.required(&f, "channel").and_then(|c| {
            let s = self.name(c, "channel", false)?;
            if s != channel {
                self.err(
                    c.pos,
                    format!("this file deploys channel `{s}`, not `{channel}`"),
                );
                return None;
            }
            Some(s)
        });
        let mut services = Vec::new();
        let mut service_pos = HashMap::new();
        if let Some(s) = f.get("services") {
            self.deploy_services(s, &mut services, &mut service_pos);
        }
        let app_key = f.key_pos("app");
        let app = self
            .required(&f, "app")
            .and_then(|a| self.app(a, app_key.unwrap_or(a.pos), &service_pos));
        Some(DeployConfig {
            source_path,
            name: name?,
            channel: config_channel?,
            app: app?,
            services,
        })
    }

    fn deploy_services(
        &mut self,
        node: &Node,
        out: &mut Vec<DeployService>,
        declared: &mut HashMap<String, Pos>,
    ) {
        for (name, pos, v, mut name_ok) in self.named_entries(node, "service", true) {
            declared.insert(name.clone(), pos);
            if name == APP_ALIAS {
                self.err(
                    pos,
                    format!("the service name `{APP_ALIAS}` is reserved: it is the stable address of the app on the channel network"),
                );
                name_ok = false;
            }
            if let Some(spec) = self.deploy_service(&name, v, pos) {
                if name_ok {
                    out.push(spec);
                }
            }
        }
    }

    fn deploy_service(&mut self, name: &str, node: &Node, key_pos: Pos) -> Option<DeployService> {
        let what = format!("service `{name}`");
        let f = self.fields(node, key_pos, &what, SERVICE_KEYS)?;
        let image = self.required(&f, "image").and_then(|i| self.image_ref(i));
        let env = match f.get("env") {
            Some(e) => self.string_map(e, "env"),
            None => Some(BTreeMap::new()),
        };
        let command = match f.get("command") {
            Some(c) => self.argv(c, "command").map(Some),
            None => Some(None),
        };
        let ready = match f.get("ready") {
            Some(r) => self.ready(r, f.key_pos("ready").unwrap_or(r.pos)).map(Some),
            None => Some(None),
        };
        let publish = match f.get("publish") {
            Some(p) => self.port_pairs(p),
            None => Some(Vec::new()),
        };
        Some(DeployService {
            name: name.to_string(),
            image: image?,
            env: env?,
            command: command?,
            ready: ready?,
            publish: publish?,
        })
    }

    /// `["HOST:CONTAINER", …]` as (host, container) pairs.
    fn port_pairs(&mut self, node: &Node) -> Option<Vec<(u16, u16)>> {
        let items = self.strings(node)?;
        let mut out = Vec::new();
        let mut ok = true;
        for (text, pos) in items {
            let parsed = text.split_once(':').and_then(|(h, c)| {
                let h: u16 = h.parse().ok().filter(|p| *p > 0)?;
                let c: u16 = c.parse().ok().filter(|p| *p > 0)?;
                Some((h, c))
            });
            match parsed {
                Some(pair) => out.push(pair),
                None => {
                    self.err(
                        pos,
                        format!("expected \"HOST:CONTAINER\" ports such as \"15432:5432\" (published on 127.0.0.1), found {text:?}"),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn port(&mut self, node: &Node, what: &str) -> Option<u16> {
        let parsed = match (&node.kind, node.scalar_type()) {
            (Kind::Scalar { text, .. }, Some(ScalarType::Int)) => {
                text.parse::<u16>().ok().filter(|p| *p > 0)
            }
            _ => None,
        };
        if parsed.is_none() {
            self.err(
                node.pos,
                format!(
                    "expected {what} as a port number 1-65535, found {}",
                    node.describe()
                ),
            );
        }
        parsed
    }

    fn app(&mut self, node: &Node, owner: Pos, services: &HashMap<String, Pos>) -> Option<AppSpec> {
        let f = self.fields(node, owner, "the app section", APP_KEYS)?;
        let port = self.required(&f, "port").and_then(|p| self.port(p, "port"));
        let publish = self
            .required(&f, "publish")
            .and_then(|p| self.port(p, "publish"));
        let env = match f.get("env") {
            Some(e) => {
                let env = self.string_map(e, "env");
                if let (Some(env), Kind::Map(entries)) = (&env, &e.kind) {
                    for (k, v) in entries {
                        let Kind::Scalar { text: key, .. } = &k.kind else {
                            continue;
                        };
                        let Some(value) = env.get(key) else { continue };
                        if let Some(host) = url_host(value) {
                            if !services.contains_key(host) && is_bare_host(host) {
                                let known = if services.is_empty() {
                                    "no services are defined".to_string()
                                } else {
                                    let mut names: Vec<&str> =
                                        services.keys().map(String::as_str).collect();
                                    names.sort();
                                    format!("services: {}", names.join(", "))
                                };
                                self.err(
                                    v.pos,
                                    format!("env {key} names host `{host}`, which is not a service of this deploy config ({known})"),
                                );
                            }
                        }
                    }
                }
                env
            }
            None => Some(BTreeMap::new()),
        };
        let command = match f.get("command") {
            Some(c) => self.argv(c, "command").map(Some),
            None => Some(None),
        };
        let depends_on = match f.get("depends_on") {
            Some(d) => self.strings(d).map(|items| {
                let mut out = Vec::new();
                for (name, pos) in items {
                    if services.contains_key(&name) {
                        out.push(name);
                    } else {
                        self.err(
                            pos,
                            format!("depends_on names unknown service `{name}` (define it under `services:`)"),
                        );
                    }
                }
                out
            }),
            None => Some(Vec::new()),
        };
        let (ready_timeout, ready_path) = match f.get("ready") {
            Some(r) => {
                let rf = self.fields(
                    r,
                    f.key_pos("ready").unwrap_or(r.pos),
                    "app ready",
                    APP_READY_KEYS,
                );
                match rf {
                    Some(rf) => {
                        let timeout = match rf.get("timeout") {
                            Some(t) => self.duration(t),
                            None => Some(DEFAULT_APP_READY_TIMEOUT),
                        };
                        let path = match rf.get("path") {
                            Some(p) => self.string(p).and_then(|s| {
                                if s.starts_with('/') {
                                    Some(Some(s))
                                } else {
                                    self.err(
                                        p.pos,
                                        format!(
                                            "expected an HTTP path starting with /, found {s:?}"
                                        ),
                                    );
                                    None
                                }
                            }),
                            None => Some(None),
                        };
                        (timeout, path)
                    }
                    None => (None, None),
                }
            }
            None => (Some(DEFAULT_APP_READY_TIMEOUT), Some(None)),
        };
        let drain = match f.get("drain") {
            Some(d) => self.duration(d),
            None => Some(DEFAULT_DRAIN),
        };
        let stop_grace = match f.get("stop_grace") {
            Some(d) => self.duration(d),
            None => Some(DEFAULT_STOP_GRACE),
        };
        Some(AppSpec {
            port: port?,
            publish: publish?,
            env: env?,
            command: command?,
            depends_on: depends_on?,
            ready_timeout: ready_timeout?,
            ready_path: ready_path?,
            drain: drain?,
            stop_grace: stop_grace?,
        })
    }
}

/// The host of a URL-like value `scheme://[user[:pass]@]host[:port][/…]`.
fn url_host(value: &str) -> Option<&str> {
    let (_, rest) = value.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.starts_with('[') {
        return None; // IPv6 literal
    }
    let host = host_port.split(':').next()?;
    (!host.is_empty()).then_some(host)
}

/// A single-label host name (no dots, not `localhost`, not interpolated):
/// on the channel network it can only be a service or the app alias.
fn is_bare_host(host: &str) -> bool {
    !host.contains('.')
        && host != "localhost"
        && host != APP_ALIAS
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_urls() {
        assert_eq!(url_host("postgresql://app:app@db:5432/app"), Some("db"));
        assert_eq!(url_host("redis://cache"), Some("cache"));
        assert_eq!(
            url_host("http://api.example.com/x"),
            Some("api.example.com")
        );
        assert_eq!(url_host("plain"), None);
        assert!(is_bare_host("db"));
        assert!(!is_bare_host("db.example"));
        assert!(!is_bare_host("localhost"));
    }
}
