//! `drydock deploy`: run the image a channel points to as a long-lived
//! application behind a stable address, switch versions without dropping
//! requests, and roll back automatically when a new version is unhealthy.
//! See `docs/deploy.md`.

pub mod channel;
pub mod config;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::engine::{labels, ContainerSpec, Engine, EngineError, Leftover};
use crate::pipeline::{format_duration, Probe, ReadySpec};
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

/// How often readiness is polled.
const POLL: Duration = Duration::from_millis(250);
/// The interval the new app's HEALTHCHECK runs at during a deploy.
const HEALTH_INTERVAL: Duration = Duration::from_secs(1);
/// Lines of a failed container's output shown in the error.
const TAIL_LINES: usize = 20;

/// The network of a channel's deploy.
pub fn network_name(channel: &str) -> String {
    format!("drydock-deploy-{channel}")
}

/// The proxy container of a channel: the stable address.
pub fn proxy_name(channel: &str) -> String {
    format!("drydock-deploy-{channel}-proxy")
}

fn service_container(channel: &str, service: &str) -> String {
    format!("drydock-deploy-{channel}-svc-{service}")
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

/// What runs for a channel (`drydock deploy <channel> --status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// The channel.
    pub channel: String,
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
    channel: &str,
    args: &[&str],
) -> Result<serde_json::Value, DeployError> {
    let fail = |message: String| DeployError::Proxy {
        channel: channel.to_string(),
        message,
    };
    let mut argv = vec!["ctl"];
    argv.extend_from_slice(args);
    let out = engine
        .exec(&proxy_name(channel), &proxy_argv(&argv), &BTreeMap::new())
        .await?;
    let last = out.output.lines().last().unwrap_or("").trim();
    let reply: serde_json::Value = serde_json::from_str(last)
        .map_err(|_| fail(format!("unexpected answer: {}", out.output.trim())))?;
    if out.exit_code != 0 || reply["ok"] != serde_json::Value::Bool(true) {
        return Err(fail(format!("{args:?} refused: {}", out.output.trim())));
    }
    Ok(reply)
}

async fn proxy_status(engine: &Engine, channel: &str) -> Result<ProxyStatus, DeployError> {
    let reply = proxy_ctl(engine, channel, &["status"]).await?;
    serde_json::from_value(reply).map_err(|e| DeployError::Proxy {
        channel: channel.to_string(),
        message: format!("status: {e}"),
    })
}

/// Probes `host:port` (HTTP `path`, or TCP without one) from inside the proxy
/// container, i.e. over the path traffic takes. `Err` says what it saw.
async fn probe_from_proxy(
    engine: &Engine,
    channel: &str,
    host: &str,
    port: u16,
    path: Option<&str>,
) -> Result<(), String> {
    let port = port.to_string();
    let argv = proxy_argv(&["probe", host, &port, path.unwrap_or("-")]);
    match engine
        .exec(&proxy_name(channel), &argv, &BTreeMap::new())
        .await
    {
        Ok(out) if out.exit_code == 0 => Ok(()),
        Ok(out) => Err(out.output.trim().to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// What runs for `channel`.
pub async fn status(engine: &Engine, channel: &str) -> Result<Status, EngineError> {
    let objects = engine
        .labelled(&format!("{}={channel}", labels::DEPLOY))
        .await?;
    let mut status = Status {
        channel: channel.to_string(),
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
                    status.upstream = proxy_status(engine, channel)
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

/// Removes everything of `channel`'s deploy (app, proxy, services, network);
/// returns how many objects went.
pub async fn undeploy(engine: &Engine, channel: &str) -> Result<usize, EngineError> {
    let objects = engine
        .labelled(&format!("{}={channel}", labels::DEPLOY))
        .await?;
    engine.remove_leftovers(&objects).await
}

/// Deploys `target` for `config.channel`: see the module documentation and
/// `docs/deploy.md`. `progress` receives one line per stage.
///
/// Before anything changes, every image needed is checked
/// ([`DeployError::ImageMissing`]). A new container that does not become
/// healthy within the deadline is removed and reported as
/// [`Outcome::Failed`]: the previous container keeps serving.
pub async fn deploy(
    engine: &Engine,
    config: &DeployConfig,
    target: &Target,
    progress: &(dyn Fn(String) + Send + Sync),
) -> Result<Outcome, DeployError> {
    let channel = config.channel.as_str();
    let network = network_name(channel);
    let proxy = proxy_name(channel);
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
    let objects = engine
        .labelled(&format!("{}={channel}", labels::DEPLOY))
        .await?;
    let containers: Vec<&Leftover> = objects.iter().filter(|o| o.kind == "container").collect();
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
        if find("service", &service_container(channel, &service.name)).is_none()
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
        proxy_status(engine, channel).await?.upstream
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
            .create_network(&network, labels::deploy_labels(channel, "network"))
            .await?;
    }
    for service in &config.services {
        ensure_service(engine, channel, service, &containers, progress).await?;
    }
    if !proxy_ok {
        if let Some(p) = proxy_obj {
            progress(format!(
                "replacing proxy {proxy} (its configuration changed or it stopped)"
            ));
            engine.remove_container(&p.id).await?;
        }
        start_proxy(engine, config).await?;
        progress(format!(
            "proxy {proxy} serves http://127.0.0.1:{}",
            config.app.publish
        ));
    }

    // ----- the new container ---------------------------------------------------
    let name = format!(
        "drydock-deploy-{channel}-app-{}-{:04x}",
        target.entry_id,
        rand::random::<u16>()
    );
    let mut app_labels = labels::deploy_labels(channel, "app");
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
    if let Err(reason) = wait_healthy(engine, config, &id, &name, healthcheck.is_some()).await {
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
    if let Err(e) = proxy_ctl(engine, channel, &["set", &new_upstream]).await {
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
            let active = proxy_status(engine, channel)
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

async fn wait_healthy(
    engine: &Engine,
    config: &DeployConfig,
    id: &str,
    name: &str,
    has_healthcheck: bool,
) -> Result<(), String> {
    let channel = config.channel.as_str();
    let deadline = Instant::now() + config.app.ready_timeout;
    let mut last = String::from("no answer yet");
    let mut healthy = false;
    loop {
        let state = engine
            .container_state(id)
            .await
            .map_err(|e| e.to_string())?;
        if !state.running {
            return Err(format!(
                "it exited with code {} before it was healthy",
                state.exit_code.unwrap_or(-1)
            ));
        }
        if has_healthcheck && !healthy {
            match state.health.as_deref() {
                Some("healthy") => healthy = true,
                Some("unhealthy") => {
                    return Err("its health check failed (status unhealthy)".to_string())
                }
                other => last = format!("health status {}", other.unwrap_or("unknown")),
            }
        }
        if healthy || !has_healthcheck {
            // Also reachable over the path traffic will take.
            let path = if has_healthcheck {
                None
            } else {
                config.app.ready_path.as_deref()
            };
            match probe_from_proxy(engine, channel, name, config.app.port, path).await {
                Ok(()) => return Ok(()),
                Err(why) => last = why,
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "not healthy within {}: {last}",
                format_duration(config.app.ready_timeout)
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn start_proxy(engine: &Engine, config: &DeployConfig) -> Result<(), DeployError> {
    let channel = config.channel.as_str();
    let name = proxy_name(channel);
    let mut proxy_labels = labels::deploy_labels(channel, "proxy");
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
        network: Some((network_name(channel), vec![APP_ALIAS.to_string()])),
        publish: vec![(config.app.port, config.app.publish)],
        restart: true,
        ..Default::default()
    };
    let id = engine.create_container(&spec).await?;
    if let Err(e) = engine.start_container(&id, &spec).await {
        let _ = engine.remove_container(&id).await;
        return Err(DeployError::Proxy {
            channel: channel.to_string(),
            message: format!(
                "cannot start it (is 127.0.0.1:{} free?): {e}",
                config.app.publish
            ),
        });
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match proxy_status(engine, channel).await {
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
    channel: &str,
    service: &DeployService,
    containers: &[&Leftover],
    progress: &(dyn Fn(String) + Send + Sync),
) -> Result<(), DeployError> {
    let name = service_container(channel, &service.name);
    let hash = service_digest(service);
    let existing = containers
        .iter()
        .find(|o| kind_of(o) == "service" && label(o, NAME_LABEL) == Some(name.as_str()));
    let id = match existing {
        Some(o) => {
            if label(o, CONFIG_LABEL) != Some(hash.as_str()) {
                progress(format!(
                    "warning: service {} differs from its definition in the deploy config; it is kept (with its data) — `drydock undeploy {channel}` recreates everything",
                    service.name
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
            let mut service_labels = labels::deploy_labels(channel, "service");
            service_labels.insert(NAME_LABEL.to_string(), name.clone());
            service_labels.insert(SERVICE_LABEL.to_string(), service.name.clone());
            service_labels.insert(CONFIG_LABEL.to_string(), hash);
            let spec = ContainerSpec {
                name: name.clone(),
                image: service.image.clone(),
                command: service.command.clone(),
                env: service.env.clone(),
                labels: service_labels,
                network: Some((network_name(channel), vec![service.name.clone()])),
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
        wait_service_ready(engine, channel, service, &id, ready).await?;
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
    let deadline = Instant::now() + ready.timeout;
    let mut backoff = ready.interval;
    let not_ready = |why: String, log_tail: Vec<String>| DeployError::ServiceNotReady {
        channel: channel.to_string(),
        service: service.name.clone(),
        why,
        log_tail,
    };
    loop {
        let state = engine.container_state(id).await?;
        let result: Result<(), String> = if !state.running {
            Err(format!(
                "it exited with code {}",
                state.exit_code.unwrap_or(-1)
            ))
        } else {
            crate::run::probe_once(
                engine,
                id,
                &service.name,
                &ready.probe,
                state.health.as_deref(),
            )
            .await
        };
        match result {
            Ok(()) => return Ok(()),
            Err(why) if !state.running || Instant::now() >= deadline => {
                let tail = engine
                    .tail_logs(id, TAIL_LINES)
                    .await
                    .map(crate::engine::render_lines)
                    .unwrap_or_default();
                return Err(not_ready(
                    format!("not ready after {}: {why}", format_duration(ready.timeout)),
                    tail,
                ));
            }
            Err(_) => {}
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Holds the per-channel deploy lock until dropped.
#[derive(Debug)]
pub struct ChannelLock {
    _file: std::fs::File,
}

/// Takes the exclusive lock of `channel` (a `flock` on
/// `<state_dir>/deploy-<channel>.lock`), so that two deploys of one channel
/// never interleave. Calls `waiting` once when another process holds it,
/// then blocks until it is free.
pub fn lock_channel(
    state_dir: &std::path::Path,
    channel: &str,
    waiting: impl FnOnce(),
) -> std::io::Result<ChannelLock> {
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all(state_dir)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(state_dir.join(format!("deploy-{channel}.lock")))?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(err);
        }
        waiting();
        // SAFETY: as above, blocking this time.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(ChannelLock { _file: file })
}
