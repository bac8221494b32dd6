//! Containers: create, start, wait, logs, exec, copy out, stop and remove.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HealthConfig, HostConfig, NetworkingConfig, PortBinding,
    RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    ContainerArchiveInfoOptions, CreateContainerOptions, DownloadFromContainerOptions,
    InspectContainerOptions, KillContainerOptions, LogsOptions, RemoveContainerOptions,
    StartContainerOptions, StopContainerOptions, WaitContainerOptions,
};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

use super::error::status_of;
use super::{Engine, EngineError};

/// The `PATH` the engine gives containers whose image sets none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A host path bound into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// Absolute host path.
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// Everything needed to create a container, in drydock's terms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerSpec {
    /// Container name (unique in the engine).
    pub name: String,
    /// Image reference or id.
    pub image: String,
    /// Command override (argv); `None` keeps the image's CMD.
    pub command: Option<Vec<String>>,
    /// Entrypoint override (argv); `None` keeps the image's ENTRYPOINT and
    /// `Some([])` clears it. As with `docker run --entrypoint`, an override
    /// also drops the image's CMD unless `command` is given.
    pub entrypoint: Option<Vec<String>>,
    /// User (`name`, `uid`, `name:group`, `uid:gid`); `None` keeps the image's USER.
    pub user: Option<String>,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// Working directory override.
    pub workdir: Option<String>,
    /// Labels (drydock's run labels and role).
    pub labels: HashMap<String, String>,
    /// Network to attach to, with the aliases to answer to there.
    pub network: Option<(String, Vec<String>)>,
    /// Host paths bound in.
    pub binds: Vec<BindMount>,
    /// Named volumes mounted (volume name, container path), read-write.
    pub volumes: Vec<(String, String)>,
    /// Poll the image's HEALTHCHECK at this interval instead of the image's own.
    pub health_interval: Option<Duration>,
    /// Container ports published on 127.0.0.1: (container port, host port; 0 = any free port).
    pub publish: Vec<(u16, u16)>,
    /// Long-lived: the engine restarts the container when it dies or the
    /// daemon restarts, unless it was stopped (`unless-stopped`).
    pub restart: bool,
}

/// Which stream a log chunk came from.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A chunk of container output (not line-aligned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    /// Where it came from.
    pub stream: LogStream,
    /// The raw bytes.
    pub bytes: Bytes,
}

/// A container's state as far as drydock cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    /// Still running.
    pub running: bool,
    /// Exit code once stopped.
    pub exit_code: Option<i64>,
    /// Health status (`starting`, `healthy`, `unhealthy`) when the container has a health check.
    pub health: Option<String>,
    /// The container's IP address on each network it is attached to.
    pub ip_addresses: BTreeMap<String, String>,
    /// The kernel's OOM killer killed a process of the container (docker's `OOMKilled`).
    pub oom_killed: bool,
}

/// Output of a command run with [`Engine::exec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit code of the command.
    pub exit_code: i64,
    /// Standard output and error, interleaved.
    pub output: String,
}

/// A command started in a running container by [`Engine::exec_attach`]:
/// its output as it comes, and the exec's id to ask its exit code
/// ([`Engine::exec_exit_code`]) once the output has ended.
pub struct ExecAttached {
    /// The engine's id of the exec instance.
    pub exec_id: String,
    /// Its standard output and error as separate frames (no TTY), ending
    /// when the command exits.
    pub output: futures::stream::BoxStream<'static, Result<LogChunk, EngineError>>,
}

impl std::fmt::Debug for ExecAttached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecAttached")
            .field("exec_id", &self.exec_id)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Creates a container; a missing image is [`EngineError::ImageMissing`].
    pub async fn create_container(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        let networking_config = spec
            .network
            .as_ref()
            // Aliases only exist on user-defined networks.
            .filter(|(_, aliases)| !aliases.is_empty())
            .map(|(network, aliases)| NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    network.clone(),
                    EndpointSettings {
                        aliases: Some(aliases.clone()),
                        ..Default::default()
                    },
                )])),
            });
        let binds: Vec<String> = spec
            .binds
            .iter()
            .map(|b| {
                let mode = if b.read_only { "ro" } else { "rw" };
                format!("{}:{}:{mode}", b.source.display(), b.target)
            })
            .chain(
                spec.volumes
                    .iter()
                    .map(|(volume, target)| format!("{volume}:{target}:rw")),
            )
            .collect();
        let port_bindings: HashMap<String, Option<Vec<PortBinding>>> = spec
            .publish
            .iter()
            .map(|(container, host)| {
                (
                    format!("{container}/tcp"),
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".to_string()),
                        host_port: Some(if *host == 0 {
                            String::new()
                        } else {
                            host.to_string()
                        }),
                    }]),
                )
            })
            .collect();
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: spec.command.clone(),
            entrypoint: spec.entrypoint.clone(),
            user: spec.user.clone(),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            working_dir: spec.workdir.clone(),
            labels: Some(spec.labels.clone()),
            exposed_ports: (!spec.publish.is_empty()).then(|| {
                spec.publish
                    .iter()
                    .map(|(c, _)| format!("{c}/tcp"))
                    .collect()
            }),
            healthcheck: spec.health_interval.map(|interval| HealthConfig {
                interval: Some(interval.as_nanos() as i64),
                timeout: Some(Duration::from_secs(5).as_nanos() as i64),
                ..Default::default()
            }),
            host_config: Some(HostConfig {
                binds: (!binds.is_empty()).then_some(binds),
                network_mode: spec.network.as_ref().map(|(n, _)| n.clone()),
                port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
                init: Some(true),
                restart_policy: spec.restart.then_some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                    maximum_retry_count: None,
                }),
                ..Default::default()
            }),
            networking_config,
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        match self.quick.create_container(Some(options), body).await {
            Ok(response) => Ok(response.id),
            Err(source) if status_of(&source) == Some(404) => Err(EngineError::ImageMissing {
                image: spec.image.clone(),
                hint: String::new(),
            }),
            Err(source) => Err(EngineError::api(
                format!("create container {}", spec.name),
                source,
            )),
        }
    }

    /// Starts a created container; a command that cannot be executed is
    /// [`EngineError::CommandNotFound`].
    ///
    /// Containers run with `init: true`: the engine starts docker-init
    /// (tini), which execs the command itself, so a missing program does not
    /// fail the start (the container would exit 127 instead). The program is
    /// therefore looked up in the created container's filesystem first (an
    /// absolute path as is, a bare name along the image's `PATH`, a relative
    /// path from its working directory); when it is certainly absent the
    /// container is not started and `CommandNotFound` is returned.
    pub async fn start_container(&self, id: &str, spec: &ContainerSpec) -> Result<(), EngineError> {
        if let Some((argv, message)) = self.missing_program(id).await {
            return Err(EngineError::CommandNotFound {
                command: argv,
                image: spec.image.clone(),
                message,
            });
        }
        match self
            .docker
            .start_container(id, None::<StartContainerOptions>)
            .await
        {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 400 | 500,
                message,
            }) if message.contains("executable file not found")
                || message.contains("no such file or directory")
                || message.contains("permission denied") =>
            {
                Err(EngineError::CommandNotFound {
                    command: spec
                        .entrypoint
                        .iter()
                        .flatten()
                        .chain(spec.command.iter().flatten())
                        .cloned()
                        .collect(),
                    image: spec.image.clone(),
                    message: tidy_start_error(&message),
                })
            }
            Err(source) => Err(EngineError::api(
                format!("start container {}", spec.name),
                source,
            )),
        }
    }

    /// The container's argv and a message when its program certainly does not
    /// exist in the container; `None` when it exists or cannot be checked.
    async fn missing_program(&self, id: &str) -> Option<(Vec<String>, String)> {
        let config = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .ok()?
            .config?;
        let argv: Vec<String> = match config.entrypoint.filter(|e| !e.is_empty()) {
            Some(entrypoint) => entrypoint
                .into_iter()
                .chain(config.cmd.unwrap_or_default())
                .collect(),
            None => config.cmd.unwrap_or_default(),
        };
        let program = argv.first()?.clone();
        let candidates: Vec<String> = if program.starts_with('/') {
            vec![program.clone()]
        } else if program.contains('/') {
            let workdir = config.working_dir.filter(|w| !w.is_empty());
            let workdir = workdir.as_deref().unwrap_or("/").trim_end_matches('/');
            vec![format!("{workdir}/{program}")]
        } else {
            let path = config
                .env
                .unwrap_or_default()
                .iter()
                .find_map(|e| e.strip_prefix("PATH=").map(str::to_string))
                .unwrap_or_else(|| DEFAULT_PATH.to_string());
            path.split(':')
                .filter(|dir| dir.starts_with('/'))
                .map(|dir| format!("{}/{program}", dir.trim_end_matches('/')))
                .collect()
        };
        let stats = futures::future::join_all(candidates.into_iter().map(|path| {
            self.quick
                .get_container_archive_info(id, Some(ContainerArchiveInfoOptions { path }))
        }))
        .await;
        let mut missing = true;
        for stat in stats {
            match stat {
                // Go's os.ModeDir: a directory is not a program.
                Ok(stat) if stat.file_mode & (1 << 31) == 0 => return None,
                Ok(_) => {}
                Err(e) if status_of(&e) == Some(404) => {}
                // Cannot tell: let the engine decide.
                Err(_) => missing = false,
            }
        }
        let message = if program.contains('/') {
            format!("\"{program}\": no such file or directory")
        } else {
            format!("\"{program}\": executable file not found in $PATH")
        };
        missing.then_some((argv, message))
    }

    /// Waits for a container to stop and returns its exit code.
    pub async fn wait_container(&self, id: &str) -> Result<i64, EngineError> {
        let mut stream = self.quick.wait_container(id, None::<WaitContainerOptions>);
        match stream.next().await {
            Some(Ok(response)) => Ok(response.status_code),
            // The engine reports a non-zero exit as an error carrying the code.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(source)) => Err(EngineError::api(format!("wait container {id}"), source)),
            None => Err(EngineError::api(
                format!("wait container {id}"),
                bollard::errors::Error::IOError {
                    err: std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "wait ended early"),
                },
            )),
        }
    }

    /// Streams a container's output from its start; with `follow` the stream
    /// ends when the container exits.
    pub fn logs(
        &self,
        id: &str,
        follow: bool,
    ) -> impl Stream<Item = Result<LogChunk, EngineError>> + Send + 'static {
        let options = LogsOptions {
            follow,
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        let op = format!("logs of {id}");
        self.quick
            .logs(id, Some(options))
            .filter_map(move |item| std::future::ready(log_chunk(item, &op)))
    }

    /// The last `lines` lines of a container's output, as text.
    pub async fn tail_logs(&self, id: &str, lines: usize) -> Result<String, EngineError> {
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            tail: lines.to_string(),
            ..Default::default()
        };
        let mut stream = self.quick.logs(id, Some(options));
        let mut text = String::new();
        while let Some(item) = stream.next().await {
            let chunk = item.map_err(|e| EngineError::api(format!("logs of {id}"), e))?;
            text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
        Ok(text)
    }

    /// Inspects a container's state.
    pub async fn container_state(&self, id: &str) -> Result<ContainerState, EngineError> {
        let info = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| EngineError::api(format!("inspect container {id}"), e))?;
        let state = info.state.unwrap_or_default();
        let ip_addresses = info
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(name, endpoint)| {
                endpoint
                    .ip_address
                    .filter(|ip| !ip.is_empty())
                    .map(|ip| (name, ip))
            })
            .collect();
        Ok(ContainerState {
            running: state.running.unwrap_or(false),
            exit_code: state.exit_code,
            health: state
                .health
                .and_then(|h| h.status)
                .map(|s| s.to_string())
                .filter(|s| !s.is_empty() && s != "none"),
            ip_addresses,
            oom_killed: state.oom_killed.unwrap_or(false),
        })
    }

    /// Makes a container long-lived after the fact: restart policy
    /// `unless-stopped` (see [`ContainerSpec::restart`]).
    pub async fn keep_running(&self, id: &str) -> Result<(), EngineError> {
        let body = bollard::models::ContainerUpdateBody {
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            ..Default::default()
        };
        self.quick
            .update_container(id, body)
            .await
            .map_err(|e| EngineError::api(format!("update restart policy of {id}"), e))
    }

    /// A container's name (without the leading `/`) and the image id it runs.
    pub async fn container_name_and_image(
        &self,
        id: &str,
    ) -> Result<(String, String), EngineError> {
        let info = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| EngineError::api(format!("inspect container {id}"), e))?;
        Ok((
            info.name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            info.image.unwrap_or_default(),
        ))
    }

    /// The host port a published container port was bound to.
    pub async fn published_port(
        &self,
        id: &str,
        container_port: u16,
    ) -> Result<Option<u16>, EngineError> {
        let info = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| EngineError::api(format!("inspect container {id}"), e))?;
        let port = info
            .network_settings
            .and_then(|n| n.ports)
            .and_then(|ports| {
                ports
                    .get(&format!("{container_port}/tcp"))
                    .cloned()
                    .flatten()
            })
            .and_then(|bindings| bindings.into_iter().find_map(|b| b.host_port))
            .and_then(|p| p.parse().ok());
        Ok(port)
    }

    /// Stops a container: SIGTERM (or the image's stop signal), then SIGKILL after `grace`.
    /// A container that is already gone or stopped is not an error.
    pub async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), EngineError> {
        let options = StopContainerOptions {
            t: Some(grace.as_secs() as i32),
            ..Default::default()
        };
        match self
            .with_deadline(grace)
            .stop_container(id, Some(options))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if matches!(status_of(&e), Some(304 | 404)) => Ok(()),
            Err(e) => Err(EngineError::api(format!("stop container {id}"), e)),
        }
    }

    /// Sends SIGKILL; a container that is gone or not running is not an error.
    pub async fn kill_container(&self, id: &str) -> Result<(), EngineError> {
        let options = KillContainerOptions {
            signal: "SIGKILL".to_string(),
        };
        match self.quick.kill_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if matches!(status_of(&e), Some(404 | 409)) => Ok(()),
            Err(e) => Err(EngineError::api(format!("kill container {id}"), e)),
        }
    }

    /// Removes a container (forcefully, with its anonymous volumes); gone already is fine.
    pub async fn remove_container(&self, id: &str) -> Result<(), EngineError> {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        match self.quick.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if matches!(status_of(&e), Some(404)) => Ok(()),
            // 409: removal already in progress.
            Err(e) if matches!(status_of(&e), Some(409)) => Ok(()),
            Err(e) => Err(EngineError::api(format!("remove container {id}"), e)),
        }
    }

    /// Runs `argv` inside a running container and returns its exit code and output.
    pub async fn exec(
        &self,
        id: &str,
        argv: &[String],
        env: &BTreeMap<String, String>,
    ) -> Result<ExecOutput, EngineError> {
        self.exec_bounded(id, argv, env, usize::MAX).await
    }

    /// Runs `argv` in the running container `id` as [`Engine::exec`] does
    /// (the container's user, working directory and environment, plus
    /// `env`), keeping only the last `keep` bytes of its output (cut at a
    /// line start when one is in reach): a command that prints gigabytes
    /// costs `keep` bytes of memory.
    pub async fn exec_bounded(
        &self,
        id: &str,
        argv: &[String],
        env: &BTreeMap<String, String>,
        keep: usize,
    ) -> Result<ExecOutput, EngineError> {
        use bollard::exec::{CreateExecOptions, StartExecResults};
        let op = || format!("exec {argv:?} in {id}");
        let exec = self
            .docker
            .create_exec(
                id,
                CreateExecOptions {
                    cmd: Some(argv.to_vec()),
                    env: Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| EngineError::api(op(), e))?;
        let mut output: Vec<u8> = Vec::new();
        let mut cut_some = false;
        match self
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(|e| EngineError::api(op(), e))?
        {
            StartExecResults::Attached {
                output: mut stream, ..
            } => {
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| EngineError::api(op(), e))?;
                    output.extend_from_slice(&chunk.into_bytes());
                    if output.len() > keep.saturating_mul(2) {
                        let cut = output.len() - keep;
                        output.drain(..cut);
                        cut_some = true;
                    }
                }
            }
            StartExecResults::Detached => {}
        }
        if output.len() > keep {
            let cut = output.len() - keep;
            output.drain(..cut);
            cut_some = true;
        }
        if cut_some {
            // Start at a line start when one is in reach.
            if let Some(newline) = output.iter().position(|b| *b == b'\n') {
                output.drain(..=newline);
            }
        }
        let inspect = self
            .docker
            .inspect_exec(&exec.id)
            .await
            .map_err(|e| EngineError::api(op(), e))?;
        Ok(ExecOutput {
            exit_code: inspect.exit_code.unwrap_or(-1),
            output: String::from_utf8_lossy(&output).into_owned(),
        })
    }

    /// Starts `argv` in the running container `id` as `docker exec` does
    /// (no TTY, no stdin), as `user` in `workdir` when given (else the
    /// container's own, which a step's container was created with), with
    /// the container's environment. The output streams as
    /// [`LogChunk`]s split into stdout and stderr, as [`Engine::logs`] does
    /// for a container's main process. A stopped container is an
    /// [`EngineError::Api`] (409).
    pub async fn exec_attach(
        &self,
        id: &str,
        argv: &[String],
        user: Option<&str>,
        workdir: Option<&str>,
    ) -> Result<ExecAttached, EngineError> {
        use bollard::exec::{CreateExecOptions, StartExecResults};
        let op = format!("exec {argv:?} in {id}");
        let exec = self
            .quick
            .create_exec(
                id,
                CreateExecOptions {
                    cmd: Some(argv.to_vec()),
                    user: user.map(str::to_string),
                    working_dir: workdir.map(str::to_string),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| EngineError::api(op.clone(), e))?;
        let output = match self
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(|e| EngineError::api(op.clone(), e))?
        {
            StartExecResults::Attached { output, .. } => output
                .filter_map(move |item| std::future::ready(log_chunk(item, &op)))
                .boxed(),
            StartExecResults::Detached => futures::stream::empty().boxed(),
        };
        Ok(ExecAttached {
            exec_id: exec.id,
            output,
        })
    }

    /// The exit code of an exec started by [`Engine::exec_attach`]; `None`
    /// while it runs. The engine sets it once the output has been drained.
    pub async fn exec_exit_code(&self, exec_id: &str) -> Result<Option<i64>, EngineError> {
        let inspect = self
            .quick
            .inspect_exec(exec_id)
            .await
            .map_err(|e| EngineError::api(format!("inspect exec {exec_id}"), e))?;
        Ok(if inspect.running == Some(true) {
            None
        } else {
            inspect.exit_code
        })
    }

    /// Copies `container_path` (file or folder) out of a container, running or
    /// stopped, into the folder `dest`. Returns false when the path does not exist.
    pub async fn copy_out(
        &self,
        id: &str,
        container_path: &str,
        dest: &Path,
    ) -> Result<bool, EngineError> {
        let io = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| EngineError::Io {
                action,
                path,
                source,
            }
        };
        tokio::fs::create_dir_all(dest)
            .await
            .map_err(io("create folder", dest))?;
        let tar_path = dest.join(".drydock-copy.tar");
        let mut file = tokio::fs::File::create(&tar_path)
            .await
            .map_err(io("create", &tar_path))?;
        let mut stream = self.quick.download_from_container(
            id,
            Some(DownloadFromContainerOptions {
                path: container_path.to_string(),
            }),
        );
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => file
                    .write_all(&bytes)
                    .await
                    .map_err(io("write", &tar_path))?,
                Err(e) if status_of(&e) == Some(404) => {
                    drop(file);
                    let _ = tokio::fs::remove_file(&tar_path).await;
                    return Ok(false);
                }
                Err(e) => {
                    drop(file);
                    let _ = tokio::fs::remove_file(&tar_path).await;
                    return Err(EngineError::api(
                        format!("copy {container_path} out of {id}"),
                        e,
                    ));
                }
            }
        }
        file.flush().await.map_err(io("write", &tar_path))?;
        drop(file);
        let dest_owned = dest.to_path_buf();
        let tar_owned = tar_path.clone();
        let unpacked = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&tar_owned)?;
            let mut archive = tar::Archive::new(file);
            archive.set_preserve_permissions(false);
            archive.set_overwrite(true);
            archive.unpack(&dest_owned)
        })
        .await
        .unwrap_or_else(|join| Err(std::io::Error::other(join)));
        let _ = tokio::fs::remove_file(&tar_path).await;
        unpacked.map_err(io("unpack into", dest))?;
        Ok(true)
    }
}

/// The engine wraps the OCI runtime's message in a lot of text; keep the useful tail.
fn tidy_start_error(message: &str) -> String {
    message
        .rsplit_once("exec: ")
        .map(|(_, tail)| tail.trim_end_matches(": unknown").to_string())
        .unwrap_or_else(|| message.to_string())
}

/// One item of a container's or an exec's attached output, as drydock's
/// [`LogChunk`] (a TTY's `Console` output counts as stdout; stdin echoes
/// are dropped); `op` names the call for an error.
fn log_chunk(
    item: Result<bollard::container::LogOutput, bollard::errors::Error>,
    op: &str,
) -> Option<Result<LogChunk, EngineError>> {
    use bollard::container::LogOutput;
    match item {
        Ok(LogOutput::StdErr { message }) => Some(Ok(LogChunk {
            stream: LogStream::Stderr,
            bytes: message,
        })),
        Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => Some(Ok(LogChunk {
            stream: LogStream::Stdout,
            bytes: message,
        })),
        Ok(LogOutput::StdIn { .. }) => None,
        Err(source) => Some(Err(EngineError::api(op.to_string(), source))),
    }
}

#[cfg(test)]
mod tests {
    use super::tidy_start_error;

    #[test]
    fn start_errors_keep_the_runtime_reason() {
        let raw = "OCI runtime create failed: container_linux.go:380: starting container process caused: exec: \"nope\": executable file not found in $PATH: unknown";
        assert_eq!(
            tidy_start_error(raw),
            "\"nope\": executable file not found in $PATH"
        );
        assert_eq!(tidy_start_error("other"), "other");
    }
}
