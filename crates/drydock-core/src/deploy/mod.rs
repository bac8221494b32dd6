//! `drydock deploy`: run the image a channel points to as a long-lived
//! application behind a stable address, switch versions without dropping
//! requests, and roll back automatically when a new version is unhealthy.
//! See `docs/deploy.md`.

pub mod channel;
pub mod config;
mod validate;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::engine::{labels, ContainerSpec, Engine, EngineError, Leftover};
use crate::pipeline::{format_duration, Probe, ReadySpec};
use crate::release::{ChannelRef, Ledger};
use crate::run::ready::{probe_once, wait_ready, Backoff, Check, NotReady};
use config::{DeployConfig, DeployService, APP_ALIAS};

pub use channel::{deploy_channel, describe_entry, ChannelDeployError, Deployed, Which};

/// The proxy program (Python, standard library only), run with `python3 -c`.
pub const PROXY_SCRIPT: &str = include_str!("proxy.py");
/// The image the proxy runs in (a bootstrapped base image).
pub const PROXY_IMAGE: &str = "drydock/python:3.11";

/// Label: the image id an app container runs.
pub const IMAGE_LABEL: &str = "drydock.deploy.image";
/// Label: the ledger entry an app container was deployed from.
pub const ENTRY_LABEL: &str = "drydock.deploy.entry";
/// Label: the container's own name (to match the proxy's upstream).
pub const NAME_LABEL: &str = "drydock.deploy.name";
/// Label: digest of the configuration a container was created from.
pub const CONFIG_LABEL: &str = "drydock.deploy.config";
/// Label: the service name of a service container.
pub const SERVICE_LABEL: &str = "drydock.deploy.service";
/// Label: the product a deploy object belongs to (beside
/// [`labels::DEPLOY`], the channel). Objects of deploys made before channels
/// belonged to products carry none: see [`Scope`].
pub const PRODUCT_LABEL: &str = "drydock.deploy.product";

/// How often readiness is polled.
const POLL: Duration = Duration::from_millis(250);
/// The interval the new app's HEALTHCHECK runs at during a deploy.
const HEALTH_INTERVAL: Duration = Duration::from_secs(1);
/// Lines of a failed container's output shown in the error.
const TAIL_LINES: usize = 20;

/// How the objects of one product's deploy of a channel are named.
///
/// Since channels belong to products, names carry both
/// ([`Layout::of`]: `drydock-deploy-<key>` with [`deploy_key`]), so that two
/// products deploying `staging` on one machine never share an object. A
/// deploy made before that is named by its channel alone
/// ([`Layout::legacy`]: `drydock-deploy-<channel>`); drydock keeps finding
/// and updating it under those names, with the services and their data,
/// until `drydock undeploy` removes it (the next deploy then uses the new
/// names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Layout {
    /// The channel of the product.
    pub channel: ChannelRef,
    /// The channel network.
    pub network: String,
    /// The proxy container: the stable address.
    pub proxy: String,
    /// The start of app and service container names.
    pub prefix: String,
    /// Named by channel alone (a deploy made before products).
    pub legacy: bool,
}

impl Layout {
    /// The names of `channel`'s deploy: `drydock-deploy-<key>` (network),
    /// `…-proxy`, `…-svc-<service>`, `…-app-<entry>-<random>`.
    pub fn of(channel: &ChannelRef) -> Layout {
        Layout::named(
            channel,
            format!("drydock-deploy-{}", deploy_key(channel)),
            false,
        )
    }

    /// The names drydock gave a channel's deploy before channels belonged to
    /// products: `drydock-deploy-<channel>` and so on.
    pub fn legacy(channel: &ChannelRef) -> Layout {
        Layout::named(channel, format!("drydock-deploy-{}", channel.channel), true)
    }

    fn named(channel: &ChannelRef, prefix: String, legacy: bool) -> Layout {
        Layout {
            channel: channel.clone(),
            network: prefix.clone(),
            proxy: format!("{prefix}-proxy"),
            prefix,
            legacy,
        }
    }

    /// The container of service `service`.
    pub fn service(&self, service: &str) -> String {
        format!("{}-svc-{service}", self.prefix)
    }

    /// A fresh name for an app container deploying ledger entry `entry_id`.
    pub fn app(&self, entry_id: i64) -> String {
        format!(
            "{}-app-{entry_id}-{:04x}",
            self.prefix,
            rand::random::<u16>()
        )
    }

    /// The labels of a new object of `kind`: [`labels::deploy_labels`], and
    /// [`PRODUCT_LABEL`] unless the layout is legacy (whose objects carry
    /// none, so that they stay one deploy).
    fn labels(&self, kind: &str) -> std::collections::HashMap<String, String> {
        let mut l = labels::deploy_labels(&self.channel.channel, kind);
        if !self.legacy {
            l.insert(PRODUCT_LABEL.to_string(), self.channel.product.clone());
        }
        l
    }
}

/// The part of deploy object names that tells a product's channel from
/// every other: `<product>-<channel>-<hash>`, where `<product>` is the last
/// path segment of the image repository and each part is cut to 12
/// characters of `[a-z0-9-]`, and `<hash>` is 6 hex digits of SHA-256 over
/// product and channel. At most 32 characters, so that app container names
/// (which the proxy resolves as host names) stay within a DNS label's 63.
pub fn deploy_key(channel: &ChannelRef) -> String {
    fn slug(s: &str) -> String {
        let s: String = s
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        let s: String = s.trim_matches('-').chars().take(12).collect();
        let s = s.trim_end_matches('-').to_string();
        if s.is_empty() {
            "x".to_string()
        } else {
            s
        }
    }
    let product = channel
        .product
        .rsplit('/')
        .next()
        .unwrap_or(&channel.product);
    let hash = digest(&[&channel.product, &channel.channel]);
    format!(
        "{}-{}-{}",
        slug(product),
        slug(&channel.channel),
        &hash[..6]
    )
}

/// One product's deploy of a channel: its [`Layout`] and the objects it
/// has now, sorted out of every object labelled with the channel
/// ([`channel_objects`]).
///
/// An object belongs to the product when its [`PRODUCT_LABEL`] names it.
/// Objects without the label come from a deploy made before channels
/// belonged to products; they are one deploy, and belong to the product of
/// its app containers: an app's [`ENTRY_LABEL`] names a ledger entry, which
/// counts only if its image is the app's ([`IMAGE_LABEL`]), so that entries
/// of another ledger never match by accident. When no app tells, the
/// objects are [`unowned`](Scope::unowned): reported, never used or removed
/// for any product (see `drydock undeploy --unowned`).
#[derive(Debug, Clone)]
pub struct Scope {
    /// How the deploy is named (legacy when it owns objects made before products).
    pub layout: Layout,
    /// Its objects.
    pub objects: Vec<Leftover>,
    /// Objects of the channel made before products whose product could not
    /// be told.
    pub unowned: Vec<Leftover>,
}

impl Scope {
    /// Sorts `objects` (all of `channel.channel`'s) into `channel.product`'s
    /// deploy; `owner(entry id, image id)` names the product of a ledger
    /// entry whose image is that image.
    pub fn resolve(
        channel: &ChannelRef,
        objects: Vec<Leftover>,
        owner: impl Fn(i64, &str) -> Option<String>,
    ) -> Scope {
        let (labelled, legacy): (Vec<Leftover>, Vec<Leftover>) = objects
            .into_iter()
            .partition(|o| o.labels.contains_key(PRODUCT_LABEL));
        let mut mine: Vec<Leftover> = labelled
            .into_iter()
            .filter(|o| label(o, PRODUCT_LABEL) == Some(channel.product.as_str()))
            .collect();
        let owners: Vec<String> = legacy
            .iter()
            .filter(|o| o.kind == "container" && kind_of(o) == "app")
            .filter_map(|o| {
                let entry = label(o, ENTRY_LABEL)?.parse().ok()?;
                owner(entry, label(o, IMAGE_LABEL)?)
            })
            .collect();
        let (layout, unowned) = if owners.contains(&channel.product) {
            mine.extend(legacy);
            (Layout::legacy(channel), Vec::new())
        } else if owners.is_empty() {
            (Layout::of(channel), legacy)
        } else {
            // Another product's deploy from before products.
            (Layout::of(channel), Vec::new())
        };
        Scope {
            layout,
            objects: mine,
            unowned,
        }
    }

    /// [`Scope::resolve`] with the entries of `ledger`.
    pub fn with_ledger(channel: &ChannelRef, objects: Vec<Leftover>, ledger: &Ledger) -> Scope {
        Scope::resolve(channel, objects, |id, image| {
            ledger
                .entry(id)
                .ok()
                .flatten()
                .filter(|e| e.image_id == image && e.channel == channel.channel)
                .map(|e| e.name)
        })
    }
}

/// Every object labelled with `channel` ([`labels::DEPLOY`]), whatever its
/// product: the input of [`Scope::resolve`].
pub async fn channel_objects(engine: &Engine, channel: &str) -> Result<Vec<Leftover>, EngineError> {
    engine
        .labelled(&format!("{}={channel}", labels::DEPLOY))
        .await
}

/// The image a deploy runs: a ledger entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The ledger entry.
    pub entry_id: i64,
    /// Its image id.
    pub image_id: String,
    /// For messages, e.g. `release 3 (sha 1a2b3c4d, run r-…)`.
    pub describe: String,
}

/// What a deploy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The new container is live; the previous ones were stopped and removed.
    Live {
        /// The new container.
        container: String,
        /// The containers it replaced.
        replaced: Vec<String>,
    },
    /// The target was live already with the same configuration: nothing changed.
    Unchanged {
        /// The live container.
        container: String,
    },
    /// The new container never became healthy: it was removed, the previous
    /// one kept serving, nothing else changed.
    Failed {
        /// The removed container.
        container: String,
        /// Why it was refused.
        reason: String,
        /// Its last lines of output.
        log_tail: Vec<String>,
    },
}

/// Why a deploy could not be attempted or completed (infrastructure).
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// An image the deploy needs is not in the engine.
    #[error("image {image} ({what}) is not in the engine{hint}; nothing changed")]
    ImageMissing {
        /// The image id or reference.
        image: String,
        /// Whose image it is.
        what: String,
        /// Advice.
        hint: String,
    },
    /// A service never became ready.
    #[error(
        "service {service} of channel {channel} is not ready: {why}{}",
        tail_text(log_tail)
    )]
    ServiceNotReady {
        /// The channel.
        channel: String,
        /// The service.
        service: String,
        /// What the probe saw.
        why: String,
        /// Its last lines of output.
        log_tail: Vec<String>,
    },
    /// The proxy did not answer or refused the switch.
    #[error("deploy proxy of channel {channel}: {message}")]
    Proxy {
        /// The channel.
        channel: String,
        /// What went wrong.
        message: String,
    },
    /// An engine call failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

fn tail_text(lines: &[String]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let mut s = String::from("\n  last output:");
    for l in lines {
        s.push_str("\n    ");
        s.push_str(l);
    }
    s
}

/// What runs for a channel of a product (`drydock deploy <channel> --status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// The product.
    pub product: String,
    /// The channel.
    pub channel: String,
    /// Whether the deploy is named by channel alone (made before products).
    pub legacy: bool,
    /// Names (or ids) of objects of the channel made before products whose
    /// product could not be told (see [`Scope`]).
    pub unowned: Vec<String>,
    /// The stable address, when the proxy exists.
    pub address: Option<String>,
    /// Whether the proxy runs.
    pub proxy_running: bool,
    /// Where the proxy sends new connections (`container:port`).
    pub upstream: Option<String>,
    /// App containers (normally one; two during a deploy).
    pub apps: Vec<AppStatus>,
    /// Service containers.
    pub services: Vec<ServiceStatus>,
    /// Whether the channel network exists.
    pub network: bool,
}

impl Status {
    /// Whether anything of the channel's deploy exists.
    pub fn deployed(&self) -> bool {
        self.network || self.address.is_some() || !self.apps.is_empty()
    }

    /// The live app container, if any.
    pub fn live(&self) -> Option<&AppStatus> {
        self.apps.iter().find(|a| a.live)
    }
}

/// One app container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppStatus {
    /// Container name.
    pub container: String,
    /// Image id it runs.
    pub image_id: String,
    /// Ledger entry it was deployed from.
    pub entry_id: Option<i64>,
    /// Running.
    pub running: bool,
    /// Health status.
    pub health: Option<String>,
    /// The proxy sends new connections to it.
    pub live: bool,
}

/// One service container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceStatus {
    /// Service name.
    pub service: String,
    /// Container name.
    pub container: String,
    /// Running.
    pub running: bool,
}

fn digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..8])
}

fn app_digest(config: &DeployConfig) -> String {
    digest(&[&serde_json::to_string(&config.app).unwrap_or_default()])
}

fn proxy_digest(config: &DeployConfig) -> String {
    digest(&[
        PROXY_SCRIPT,
        PROXY_IMAGE,
        &config.app.port.to_string(),
        &config.app.publish.to_string(),
    ])
}

fn service_digest(service: &DeployService) -> String {
    digest(&[
        &service.image,
        &serde_json::to_string(&service.env).unwrap_or_default(),
        &serde_json::to_string(&service.command).unwrap_or_default(),
        &serde_json::to_string(&service.publish).unwrap_or_default(),
    ])
}

fn kind_of(l: &Leftover) -> &str {
    l.labels
        .get(labels::DEPLOY_KIND)
        .map(String::as_str)
        .unwrap_or("")
}

fn label<'l>(l: &'l Leftover, key: &str) -> Option<&'l str> {
    l.labels.get(key).map(String::as_str)
}

/// The proxy's answer to `ctl status`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
struct ProxyStatus {
    upstream: Option<String>,
    #[serde(default)]
    active: HashMap<String, i64>,
}

/// The environment variable holding [`PROXY_SCRIPT`] in the proxy container
/// (`docker exec` inherits it, so control commands stay short).
const PROXY_ENV: &str = "DRYDOCK_PROXY_SCRIPT";
/// Runs the script from [`PROXY_ENV`].
const PROXY_BOOT: &str = "import os; exec(os.environ['DRYDOCK_PROXY_SCRIPT'])";

fn proxy_argv(args: &[&str]) -> Vec<String> {
    ["python3", "-u", "-c", PROXY_BOOT]
        .iter()
        .chain(args)
        .map(|s| s.to_string())
        .collect()
}

async fn proxy_ctl(
    engine: &Engine,
    layout: &Layout,
    args: &[&str],
) -> Result<serde_json::Value, DeployError> {
    let fail = |message: String| DeployError::Proxy {
        channel: layout.channel.to_string(),
        message,
    };
    let mut argv = vec!["ctl"];
    argv.extend_from_slice(args);
    let out = engine
        .exec(&layout.proxy, &proxy_argv(&argv), &BTreeMap::new())
        .await?;
    let last = out.output.lines().last().unwrap_or("").trim();
    let reply: serde_json::Value = serde_json::from_str(last)
        .map_err(|_| fail(format!("unexpected answer: {}", out.output.trim())))?;
    if out.exit_code != 0 || reply["ok"] != serde_json::Value::Bool(true) {
        return Err(fail(format!("{args:?} refused: {}", out.output.trim())));
    }
    Ok(reply)
}

async fn proxy_status(engine: &Engine, layout: &Layout) -> Result<ProxyStatus, DeployError> {
    let reply = proxy_ctl(engine, layout, &["status"]).await?;
    serde_json::from_value(reply).map_err(|e| DeployError::Proxy {
        channel: layout.channel.to_string(),
        message: format!("status: {e}"),
    })
}

/// Probes `host:port` (HTTP `path`, or TCP without one) from inside the proxy
/// container, i.e. over the path traffic takes. `Err` says what it saw.
async fn probe_from_proxy(
    engine: &Engine,
    layout: &Layout,
    host: &str,
    port: u16,
    path: Option<&str>,
) -> Result<(), String> {
    let port = port.to_string();
    let argv = proxy_argv(&["probe", host, &port, path.unwrap_or("-")]);
    match engine.exec(&layout.proxy, &argv, &BTreeMap::new()).await {
        Ok(out) if out.exit_code == 0 => Ok(()),
        Ok(out) => Err(out.output.trim().to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// What runs for the deploy of `scope` (see [`Scope`]).
pub async fn status(engine: &Engine, scope: &Scope) -> Result<Status, EngineError> {
    let layout = &scope.layout;
    let objects = &scope.objects;
    let mut status = Status {
        product: layout.channel.product.clone(),
        channel: layout.channel.channel.clone(),
        legacy: layout.legacy,
        unowned: scope
            .unowned
            .iter()
            .map(|o| label(o, NAME_LABEL).unwrap_or(&o.id).to_string())
            .collect(),
        address: None,
        proxy_running: false,
        upstream: None,
        apps: Vec::new(),
        services: Vec::new(),
        network: objects
            .iter()
            .any(|o| o.kind == "network" && kind_of(o) == "network"),
    };
    for o in objects.iter().filter(|o| o.kind == "container") {
        let state = match engine.container_state(&o.id).await {
            Ok(s) => s,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        match kind_of(o) {
            "proxy" => {
                status.proxy_running = state.running;
                status.address =
                    label(o, "drydock.deploy.publish").map(|p| format!("http://127.0.0.1:{p}"));
                if state.running {
                    status.upstream = proxy_status(engine, layout)
                        .await
                        .ok()
                        .and_then(|s| s.upstream);
                }
            }
            "service" => status.services.push(ServiceStatus {
                service: label(o, SERVICE_LABEL).unwrap_or("?").to_string(),
                container: label(o, NAME_LABEL).unwrap_or(&o.id).to_string(),
                running: state.running,
            }),
            "app" => status.apps.push(AppStatus {
                container: label(o, NAME_LABEL).unwrap_or(&o.id).to_string(),
                image_id: label(o, IMAGE_LABEL).unwrap_or("?").to_string(),
                entry_id: label(o, ENTRY_LABEL).and_then(|e| e.parse().ok()),
                running: state.running,
                health: state.health,
                live: false,
            }),
            _ => {}
        }
    }
    if let Some(upstream) = &status.upstream {
        let host = upstream
            .rsplit_once(':')
            .map_or(upstream.as_str(), |(h, _)| h);
        for app in &mut status.apps {
            app.live = app.container == host;
        }
    }
    status.apps.sort_by(|a, b| a.container.cmp(&b.container));
    status.services.sort_by(|a, b| a.service.cmp(&b.service));
    Ok(status)
}

/// Removes everything of the deploy of `scope` (app, proxy, services,
/// network), and with `unowned` also the channel's objects made before
/// products whose product could not be told; returns how many objects went.
pub async fn undeploy(engine: &Engine, scope: &Scope, unowned: bool) -> Result<usize, EngineError> {
    let mut objects = scope.objects.clone();
    if unowned {
        objects.extend(scope.unowned.iter().cloned());
    }
    engine.remove_leftovers(&objects).await
}

/// Deploys `target` for `config.channel` of `config.name`, into the deploy
/// `scope` (found with [`channel_objects`] and [`Scope::resolve`] for that
/// product and channel): see the module documentation and
/// `docs/deploy.md`. `progress` receives one line per stage.
///
/// Before anything changes, every image needed is checked
/// ([`DeployError::ImageMissing`]). A new container that does not become
/// healthy within the deadline is removed and reported as
/// [`Outcome::Failed`]: the previous container keeps serving.
pub async fn deploy(
    engine: &Engine,
    config: &DeployConfig,
    scope: &Scope,
    target: &Target,
    progress: &(dyn Fn(String) + Send + Sync),
) -> Result<Outcome, DeployError> {
    let layout = &scope.layout;
    let channel = &layout.channel;
    let network = layout.network.clone();
    let proxy = layout.proxy.clone();
    let app_hash = app_digest(config);

    // ----- what exists; preconditions (nothing changes before this passes) --
    if engine.image(&target.image_id).await?.is_none() {
        return Err(DeployError::ImageMissing {
            image: target.image_id.clone(),
            what: format!("{} of channel {channel}", target.describe),
            hint: " (removed behind the ledger's back?)\n  hint: deploy or roll back to a release whose image exists (`drydock releases`)".to_string(),
        });
    }
    let healthcheck = engine.image_healthcheck(&target.image_id).await?;
    let containers: Vec<&Leftover> = scope
        .objects
        .iter()
        .filter(|o| o.kind == "container")
        .collect();
    let find = |kind: &str, name: &str| {
        containers
            .iter()
            .find(|o| kind_of(o) == kind && label(o, NAME_LABEL) == Some(name))
            .copied()
    };
    let proxy_obj = find("proxy", &proxy);
    let proxy_ok = match proxy_obj {
        Some(p) => {
            label(p, CONFIG_LABEL) == Some(proxy_digest(config).as_str())
                && engine.container_state(&p.id).await?.running
        }
        None => false,
    };
    for service in &config.services {
        if find("service", &layout.service(&service.name)).is_none()
            && engine.image(&service.image).await?.is_none()
        {
            return Err(DeployError::ImageMissing {
                image: service.image.clone(),
                what: format!("service {}", service.name),
                hint: String::new(),
            });
        }
    }
    if !proxy_ok && engine.image(PROXY_IMAGE).await?.is_none() {
        return Err(DeployError::ImageMissing {
            image: PROXY_IMAGE.to_string(),
            what: "the deploy proxy".to_string(),
            hint: "\n  hint: `drydock images bootstrap` builds it".to_string(),
        });
    }
    let upstream = if proxy_ok {
        proxy_status(engine, layout).await?.upstream
    } else {
        None
    };
    let live_name = upstream
        .as_deref()
        .map(|u| u.rsplit_once(':').map_or(u, |(h, _)| h).to_string());
    let apps: Vec<&Leftover> = containers
        .iter()
        .filter(|o| kind_of(o) == "app")
        .copied()
        .collect();
    if let Some(live) = apps
        .iter()
        .find(|a| label(a, NAME_LABEL).map(str::to_string) == live_name)
    {
        if label(live, IMAGE_LABEL) == Some(target.image_id.as_str())
            && label(live, CONFIG_LABEL) == Some(app_hash.as_str())
            && engine.container_state(&live.id).await?.running
            && apps.len() == 1
        {
            return Ok(Outcome::Unchanged {
                container: live_name.unwrap_or_default(),
            });
        }
    }

    // ----- network, services, proxy -------------------------------------------
    if !engine.network_exists(&network).await? {
        progress(format!("creating network {network}"));
        engine
            .create_network(&network, layout.labels("network"))
            .await?;
    }
    for service in &config.services {
        ensure_service(engine, layout, service, &containers, progress).await?;
    }
    if !proxy_ok {
        if let Some(p) = proxy_obj {
            progress(format!(
                "replacing proxy {proxy} (its configuration changed or it stopped)"
            ));
            engine.remove_container(&p.id).await?;
        }
        start_proxy(engine, layout, config).await?;
        progress(format!(
            "proxy {proxy} serves http://127.0.0.1:{}",
            config.app.publish
        ));
    }

    // ----- the new container ---------------------------------------------------
    let name = layout.app(target.entry_id);
    let mut app_labels = layout.labels("app");
    app_labels.insert(IMAGE_LABEL.to_string(), target.image_id.clone());
    app_labels.insert(ENTRY_LABEL.to_string(), target.entry_id.to_string());
    app_labels.insert(NAME_LABEL.to_string(), name.clone());
    app_labels.insert(CONFIG_LABEL.to_string(), app_hash);
    let spec = ContainerSpec {
        name: name.clone(),
        image: target.image_id.clone(),
        command: config.app.command.clone(),
        env: config.app.env.clone(),
        labels: app_labels,
        network: Some((network.clone(), Vec::new())),
        health_interval: healthcheck.is_some().then_some(HEALTH_INTERVAL),
        ..Default::default()
    };
    let id = engine.create_container(&spec).await?;
    if let Err(e) = engine.start_container(&id, &spec).await {
        let _ = engine.remove_container(&id).await;
        return match e {
            EngineError::CommandNotFound { .. } => Ok(Outcome::Failed {
                container: name,
                reason: e.to_string(),
                log_tail: Vec::new(),
            }),
            other => Err(other.into()),
        };
    }
    progress(format!(
        "started {name} ({}); waiting up to {} for it to become healthy ({})",
        target.describe,
        format_duration(config.app.ready_timeout),
        match (&healthcheck, &config.app.ready_path) {
            (Some(_), _) => "its image's HEALTHCHECK".to_string(),
            (None, Some(path)) => format!("GET {path} through the channel network"),
            (None, None) => "TCP connect through the channel network".to_string(),
        }
    ));
    let started = Instant::now();
    if let Err(reason) =
        wait_healthy(engine, layout, config, &id, &name, healthcheck.is_some()).await
    {
        let log_tail = engine
            .tail_logs(&id, TAIL_LINES)
            .await
            .map(crate::engine::render_lines)
            .unwrap_or_default();
        let _ = engine.remove_container(&id).await;
        return Ok(Outcome::Failed {
            container: name,
            reason,
            log_tail,
        });
    }
    progress(format!(
        "{name} is healthy after {:.1}s",
        started.elapsed().as_secs_f64()
    ));

    // ----- switch ----------------------------------------------------------------
    let new_upstream = format!("{name}:{}", config.app.port);
    if let Err(e) = proxy_ctl(engine, layout, &["set", &new_upstream]).await {
        let _ = engine.remove_container(&id).await;
        return Err(e);
    }
    progress(format!(
        "switched http://127.0.0.1:{} to {name}",
        config.app.publish
    ));
    engine.keep_running(&id).await?;

    // ----- drain and stop the previous containers -------------------------------
    let mut replaced = Vec::new();
    for old in apps {
        let old_name = label(old, NAME_LABEL).unwrap_or(&old.id).to_string();
        let old_upstream = format!("{old_name}:{}", config.app.port);
        let deadline = Instant::now() + config.app.drain;
        loop {
            let active = proxy_status(engine, layout)
                .await
                .map(|s| s.active.get(&old_upstream).copied().unwrap_or(0))
                .unwrap_or(0);
            if active <= 0 || Instant::now() >= deadline {
                if active > 0 {
                    progress(format!(
                        "{old_name} still has {active} connections after {}: stopping it anyway",
                        format_duration(config.app.drain)
                    ));
                }
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        engine
            .stop_container(&old.id, config.app.stop_grace)
            .await?;
        engine.remove_container(&old.id).await?;
        progress(format!("stopped and removed {old_name}"));
        replaced.push(old_name);
    }
    Ok(Outcome::Live {
        container: name,
        replaced,
    })
}

/// Waits until the new app container is healthy (its HEALTHCHECK, when it
/// has one) and answers over the path traffic will take (through the proxy,
/// at `ready_path` when it has no HEALTHCHECK).
async fn wait_healthy(
    engine: &Engine,
    layout: &Layout,
    config: &DeployConfig,
    id: &str,
    name: &str,
    has_healthcheck: bool,
) -> Result<(), String> {
    let waited = wait_ready(
        engine,
        id,
        Instant::now(),
        config.app.ready_timeout,
        Backoff::fixed(POLL),
        TAIL_LINES,
        |state| async move {
            if has_healthcheck {
                match state.health.as_deref() {
                    Some("healthy") => {}
                    Some("unhealthy") => {
                        return Check::Failed("its health check failed (status unhealthy)".into())
                    }
                    other => {
                        return Check::NotYet(format!(
                            "health status {}",
                            other.unwrap_or("unknown")
                        ))
                    }
                }
            }
            // Also reachable over the path traffic will take.
            let path = if has_healthcheck {
                None
            } else {
                config.app.ready_path.as_deref()
            };
            match probe_from_proxy(engine, layout, name, config.app.port, path).await {
                Ok(()) => Check::Ready,
                Err(why) => Check::NotYet(why),
            }
        },
    )
    .await;
    match waited {
        Ok(_) => Ok(()),
        Err(NotReady::Exited { code, .. }) => {
            Err(format!("it exited with code {code} before it was healthy"))
        }
        Err(NotReady::Failed { why, .. }) => Err(why),
        Err(NotReady::TimedOut { last, .. }) => Err(format!(
            "not healthy within {}: {last}",
            format_duration(config.app.ready_timeout)
        )),
        Err(NotReady::Engine(e)) => Err(e),
    }
}

async fn start_proxy(
    engine: &Engine,
    layout: &Layout,
    config: &DeployConfig,
) -> Result<(), DeployError> {
    let name = layout.proxy.clone();
    let mut proxy_labels = layout.labels("proxy");
    proxy_labels.insert(NAME_LABEL.to_string(), name.clone());
    proxy_labels.insert(CONFIG_LABEL.to_string(), proxy_digest(config));
    proxy_labels.insert(
        "drydock.deploy.publish".to_string(),
        config.app.publish.to_string(),
    );
    let port = config.app.port.to_string();
    let spec = ContainerSpec {
        name: name.clone(),
        image: PROXY_IMAGE.to_string(),
        command: Some(proxy_argv(&["serve", &port])),
        env: BTreeMap::from([(PROXY_ENV.to_string(), PROXY_SCRIPT.to_string())]),
        labels: proxy_labels,
        network: Some((layout.network.clone(), vec![APP_ALIAS.to_string()])),
        publish: vec![(config.app.port, config.app.publish)],
        restart: true,
        ..Default::default()
    };
    let id = engine.create_container(&spec).await?;
    if let Err(e) = engine.start_container(&id, &spec).await {
        let _ = engine.remove_container(&id).await;
        return Err(DeployError::Proxy {
            channel: layout.channel.to_string(),
            message: format!(
                "cannot start it (is 127.0.0.1:{} free?): {e}",
                config.app.publish
            ),
        });
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match proxy_status(engine, layout).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                let _ = engine.remove_container(&id).await;
                return Err(e);
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn ensure_service(
    engine: &Engine,
    layout: &Layout,
    service: &DeployService,
    containers: &[&Leftover],
    progress: &(dyn Fn(String) + Send + Sync),
) -> Result<(), DeployError> {
    let name = layout.service(&service.name);
    let channel = &layout.channel;
    let hash = service_digest(service);
    let existing = containers
        .iter()
        .find(|o| kind_of(o) == "service" && label(o, NAME_LABEL) == Some(name.as_str()));
    let id = match existing {
        Some(o) => {
            if label(o, CONFIG_LABEL) != Some(hash.as_str()) {
                progress(format!(
                    "warning: service {} differs from its definition in the deploy config; it is kept (with its data) — `drydock undeploy {} --product {}` recreates everything",
                    service.name, channel.channel, channel.product
                ));
            }
            if !engine.container_state(&o.id).await?.running {
                progress(format!("starting stopped service {}", service.name));
                let spec = ContainerSpec {
                    name: name.clone(),
                    image: service.image.clone(),
                    ..Default::default()
                };
                engine.start_container(&o.id, &spec).await?;
            }
            o.id.clone()
        }
        None => {
            let mut service_labels = layout.labels("service");
            service_labels.insert(NAME_LABEL.to_string(), name.clone());
            service_labels.insert(SERVICE_LABEL.to_string(), service.name.clone());
            service_labels.insert(CONFIG_LABEL.to_string(), hash);
            let spec = ContainerSpec {
                name: name.clone(),
                image: service.image.clone(),
                command: service.command.clone(),
                env: service.env.clone(),
                labels: service_labels,
                network: Some((layout.network.clone(), vec![service.name.clone()])),
                health_interval: matches!(
                    service.ready.as_ref().map(|r| &r.probe),
                    Some(Probe::Healthcheck)
                )
                .then_some(Duration::from_millis(500)),
                publish: service.publish.iter().map(|(h, c)| (*c, *h)).collect(),
                restart: true,
                ..Default::default()
            };
            let id = engine.create_container(&spec).await?;
            if let Err(e) = engine.start_container(&id, &spec).await {
                let _ = engine.remove_container(&id).await;
                return Err(e.into());
            }
            progress(format!("started service {} ({name})", service.name));
            id
        }
    };
    if let Some(ready) = &service.ready {
        wait_service_ready(engine, &channel.to_string(), service, &id, ready).await?;
    }
    Ok(())
}

async fn wait_service_ready(
    engine: &Engine,
    channel: &str,
    service: &DeployService,
    id: &str,
    ready: &ReadySpec,
) -> Result<(), DeployError> {
    let not_ready = |why: String, log_tail: Vec<String>| DeployError::ServiceNotReady {
        channel: channel.to_string(),
        service: service.name.clone(),
        why,
        log_tail,
    };
    let waited = wait_ready(
        engine,
        id,
        Instant::now(),
        ready.timeout,
        Backoff {
            first: ready.interval,
            max: Duration::from_secs(2),
        },
        TAIL_LINES,
        |state| {
            let (alias, probe) = (&service.name, &ready.probe);
            async move { probe_once(engine, id, alias, probe, state.health.as_deref()).await }
        },
    )
    .await;
    match waited {
        Ok(_) => Ok(()),
        Err(e) => {
            let (why, log_tail) = e.reason(ready.timeout);
            Err(not_ready(why, log_tail))
        }
    }
}

/// Takes the deploy lock of `channel` (a `flock` on
/// [`lock_path`](crate::release::lock_path)`(ledger, "deploy", channel)`,
/// beside the ledger), so that two deploys of one product's channel never
/// interleave; deploys of two products' channels of the same name do not
/// wait for each other. Calls `waiting` once when another process holds it,
/// then blocks until it is free (call it off the async runtime).
pub fn lock_channel(
    ledger: &std::path::Path,
    channel: &ChannelRef,
    waiting: impl FnOnce(),
) -> std::io::Result<crate::release::ChannelLock> {
    crate::release::ChannelLock::acquire(
        &crate::release::lock_path(ledger, "deploy", channel),
        waiting,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(kind: &'static str, id: &str, pairs: &[(&str, &str)]) -> Leftover {
        Leftover {
            kind,
            id: id.to_string(),
            labels: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn names_keep_two_products_apart_and_fit_a_dns_label() {
        let a = Layout::of(&ChannelRef::new("flask-api", "staging"));
        let b = Layout::of(&ChannelRef::new("other-app", "staging"));
        assert_ne!(a.network, b.network);
        assert_ne!(a.proxy, b.proxy);
        assert!(
            a.proxy.starts_with("drydock-deploy-flask-api-staging-"),
            "{}",
            a.proxy
        );
        // Products whose last segment and channel slug alike still differ.
        let c = Layout::of(&ChannelRef::new(
            "registry.example/team/flask-api",
            "staging",
        ));
        assert_ne!(a.prefix, c.prefix);
        let long = Layout::of(&ChannelRef::new(
            "registry.example:5000/a/very-long-product-name-indeed",
            "a-channel-with/odd:chars_and_more",
        ));
        let app = long.app(123_456);
        assert!(app.len() <= 63, "{app} ({})", app.len());
        assert!(
            app.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "{app}"
        );
        let legacy = Layout::legacy(&ChannelRef::new("flask-api", "staging"));
        assert_eq!(legacy.network, "drydock-deploy-staging");
        assert_eq!(legacy.proxy, "drydock-deploy-staging-proxy");
        assert_eq!(legacy.service("db"), "drydock-deploy-staging-svc-db");
        assert!(!legacy.labels("app").contains_key(PRODUCT_LABEL));
        assert_eq!(a.labels("app")[PRODUCT_LABEL], "flask-api");
        assert_eq!(a.labels("app")[labels::DEPLOY], "staging");
    }

    /// A channel's objects: B's (labelled), a deploy from before products
    /// whose app runs entry 1 (image `img-a`), and nothing else.
    fn staging_objects() -> Vec<Leftover> {
        let legacy = |kind, id: &str, extra: &[(&str, &str)]| {
            let mut pairs = vec![(labels::DEPLOY, "staging"), (labels::DEPLOY_KIND, kind)];
            pairs.extend_from_slice(extra);
            object(
                if kind == "network" {
                    "network"
                } else {
                    "container"
                },
                id,
                &pairs,
            )
        };
        vec![
            legacy("network", "n-old", &[]),
            legacy(
                "proxy",
                "p-old",
                &[(NAME_LABEL, "drydock-deploy-staging-proxy")],
            ),
            legacy(
                "app",
                "a-old",
                &[(ENTRY_LABEL, "1"), (IMAGE_LABEL, "img-a")],
            ),
            object(
                "container",
                "b-app",
                &[
                    (labels::DEPLOY, "staging"),
                    (labels::DEPLOY_KIND, "app"),
                    (PRODUCT_LABEL, "other-app"),
                ],
            ),
        ]
    }

    #[test]
    fn a_deploy_from_before_products_belongs_to_the_product_of_its_app() {
        // Entry 1 is flask-api's release of img-a in this ledger.
        let owner =
            |id: i64, image: &str| (id == 1 && image == "img-a").then(|| "flask-api".to_string());
        let a = ChannelRef::new("flask-api", "staging");
        let b = ChannelRef::new("other-app", "staging");
        let mine = Scope::resolve(&a, staging_objects(), owner);
        assert!(mine.layout.legacy);
        assert_eq!(mine.layout.proxy, "drydock-deploy-staging-proxy");
        let ids: Vec<&str> = mine.objects.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(ids, ["n-old", "p-old", "a-old"]);
        let theirs = Scope::resolve(&b, staging_objects(), owner);
        assert!(!theirs.layout.legacy);
        let ids: Vec<&str> = theirs.objects.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(ids, ["b-app"]);
        assert!(theirs.unowned.is_empty());
        // A ledger that cannot tell (another ledger's entry 1, or another
        // image): the old objects are nobody's, and reported as such.
        let nobody = Scope::resolve(&a, staging_objects(), |_, _| None);
        assert!(!nobody.layout.legacy);
        assert!(nobody.objects.is_empty());
        assert_eq!(nobody.unowned.len(), 3);
    }
}
