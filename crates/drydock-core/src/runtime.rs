//! The executor's view of an engine: a small trait the real [`Engine`] implements
//! and unit tests fake.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;

use crate::engine::{
    registry_host, BuildProgress, BuildRequest, Built, ContainerSpec, ContainerState, Engine,
    EngineError, ExecAttached, ExecOutput, LogChunk, RegistryAuth,
};

/// What the executor needs from a container engine.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// A description for people (address and version).
    fn describe(&self) -> String;
    /// Whether the engine answers (a liveness ping, bounded in time).
    async fn ping(&self) -> Result<(), EngineError> {
        Ok(())
    }
    /// Creates a network for the run.
    async fn create_network(
        &self,
        name: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), EngineError>;
    /// Removes a network.
    async fn remove_network(&self, name: &str) -> Result<(), EngineError>;
    /// Creates a named volume (an existing one of that name is kept as is).
    async fn create_volume(
        &self,
        name: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), EngineError>;
    /// Whether an image exists.
    async fn image_exists(&self, reference: &str) -> Result<bool, EngineError>;
    /// Pulls an image from its registry.
    async fn pull(&self, reference: &str) -> Result<(), EngineError>;
    /// Builds (or reuses) an image.
    async fn build(
        &self,
        request: &BuildRequest,
        progress: &mut (dyn FnMut(BuildProgress) + Send),
    ) -> Result<Built, EngineError>;
    /// Creates a container and returns its id.
    async fn create(&self, spec: &ContainerSpec) -> Result<String, EngineError>;
    /// Starts a created container.
    async fn start(&self, id: &str, spec: &ContainerSpec) -> Result<(), EngineError>;
    /// Follows a container's output until it exits.
    fn logs(&self, id: &str) -> BoxStream<'static, Result<LogChunk, EngineError>>;
    /// Waits for the exit code.
    async fn wait(&self, id: &str) -> Result<i64, EngineError>;
    /// Stops with a grace period, then kills.
    async fn stop(&self, id: &str, grace: Duration) -> Result<(), EngineError>;
    /// Removes a container (forcefully).
    async fn remove(&self, id: &str) -> Result<(), EngineError>;
    /// Inspects a container.
    async fn state(&self, id: &str) -> Result<ContainerState, EngineError>;
    /// Runs a command in a running container.
    async fn exec(
        &self,
        id: &str,
        argv: &[String],
        env: &BTreeMap<String, String>,
    ) -> Result<ExecOutput, EngineError>;
    /// Runs a command in a running container as [`Runtime::exec`] does,
    /// keeping only the last `keep` bytes of its output.
    async fn exec_bounded(
        &self,
        id: &str,
        argv: &[String],
        keep: usize,
    ) -> Result<ExecOutput, EngineError> {
        let mut out = self.exec(id, argv, &BTreeMap::new()).await?;
        if out.output.len() > keep {
            let mut cut = out.output.len() - keep;
            while !out.output.is_char_boundary(cut) {
                cut += 1;
            }
            out.output.drain(..cut);
        }
        Ok(out)
    }
    /// Starts `argv` in a running container, its output streamed (see
    /// [`Engine::exec_attach`]); `user`/`workdir` override the container's.
    async fn exec_attach(
        &self,
        id: &str,
        argv: &[String],
        user: Option<&str>,
        workdir: Option<&str>,
    ) -> Result<ExecAttached, EngineError>;
    /// The exit code of an exec once its output ended; `None` while it runs
    /// (see [`Engine::exec_exit_code`]).
    async fn exec_exit_code(&self, exec_id: &str) -> Result<Option<i64>, EngineError>;
    /// An image's ENTRYPOINT and CMD; `None` when the image does not exist.
    async fn image_command(
        &self,
        _reference: &str,
    ) -> Result<Option<(Vec<String>, Vec<String>)>, EngineError> {
        Ok(Some((Vec::new(), Vec::new())))
    }
    /// The last lines of a container's output.
    async fn tail_logs(&self, id: &str, lines: usize) -> Result<String, EngineError>;
    /// Copies the host file or folder `source` into the created container
    /// `id` as `target`, owned by the container's user; `skip` lists host
    /// folders left out.
    async fn copy_in(
        &self,
        id: &str,
        source: &Path,
        target: &str,
        skip: &[std::path::PathBuf],
    ) -> Result<(), EngineError>;
    /// Copies a path out of a container into a local folder; false when absent.
    async fn copy_out(&self, id: &str, path: &str, dest: &Path) -> Result<bool, EngineError>;
    /// Tags an image.
    async fn tag(&self, image: &str, repo: &str, tag: &str) -> Result<(), EngineError>;
    /// The image id a reference points to; `None` when it does not exist.
    async fn image_id(&self, reference: &str) -> Result<Option<String>, EngineError>;
    /// Removes a tag (the image stays while other tags point to it).
    async fn untag(&self, reference: &str) -> Result<(), EngineError>;
    /// Pushes `host[:port]/path:tag` to its registry, with the credentials
    /// [`RegistryAuth::resolve`] finds for that host.
    async fn push(&self, reference: &str) -> Result<(), EngineError>;
    /// Removes every container, network and volume labelled with this run.
    async fn remove_run(&self, run_id: &str) -> Result<usize, EngineError>;
}

#[async_trait]
impl Runtime for Engine {
    fn describe(&self) -> String {
        Engine::describe(self)
    }
    async fn ping(&self) -> Result<(), EngineError> {
        Engine::ping(self).await
    }
    async fn create_network(
        &self,
        name: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), EngineError> {
        Engine::create_network(self, name, labels).await.map(|_| ())
    }
    async fn remove_network(&self, name: &str) -> Result<(), EngineError> {
        Engine::remove_network(self, name).await
    }
    async fn create_volume(
        &self,
        name: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), EngineError> {
        Engine::create_volume(self, name, labels).await
    }
    async fn image_exists(&self, reference: &str) -> Result<bool, EngineError> {
        Ok(self.image(reference).await?.is_some())
    }
    async fn pull(&self, reference: &str) -> Result<(), EngineError> {
        self.pull_image(reference).await
    }
    async fn build(
        &self,
        request: &BuildRequest,
        progress: &mut (dyn FnMut(BuildProgress) + Send),
    ) -> Result<Built, EngineError> {
        Engine::build(self, request, progress).await
    }
    async fn create(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        self.create_container(spec).await
    }
    async fn start(&self, id: &str, spec: &ContainerSpec) -> Result<(), EngineError> {
        self.start_container(id, spec).await
    }
    fn logs(&self, id: &str) -> BoxStream<'static, Result<LogChunk, EngineError>> {
        Engine::logs(self, id, true).boxed()
    }
    async fn wait(&self, id: &str) -> Result<i64, EngineError> {
        self.wait_container(id).await
    }
    async fn stop(&self, id: &str, grace: Duration) -> Result<(), EngineError> {
        self.stop_container(id, grace).await
    }
    async fn remove(&self, id: &str) -> Result<(), EngineError> {
        self.remove_container(id).await
    }
    async fn state(&self, id: &str) -> Result<ContainerState, EngineError> {
        self.container_state(id).await
    }
    async fn exec(
        &self,
        id: &str,
        argv: &[String],
        env: &BTreeMap<String, String>,
    ) -> Result<ExecOutput, EngineError> {
        Engine::exec(self, id, argv, env).await
    }
    async fn exec_bounded(
        &self,
        id: &str,
        argv: &[String],
        keep: usize,
    ) -> Result<ExecOutput, EngineError> {
        Engine::exec_bounded(self, id, argv, &BTreeMap::new(), keep).await
    }
    async fn exec_attach(
        &self,
        id: &str,
        argv: &[String],
        user: Option<&str>,
        workdir: Option<&str>,
    ) -> Result<ExecAttached, EngineError> {
        Engine::exec_attach(self, id, argv, user, workdir).await
    }
    async fn exec_exit_code(&self, exec_id: &str) -> Result<Option<i64>, EngineError> {
        Engine::exec_exit_code(self, exec_id).await
    }
    async fn image_command(
        &self,
        reference: &str,
    ) -> Result<Option<(Vec<String>, Vec<String>)>, EngineError> {
        Ok(self
            .image(reference)
            .await?
            .map(|info| (info.entrypoint, info.cmd)))
    }
    async fn tail_logs(&self, id: &str, lines: usize) -> Result<String, EngineError> {
        Engine::tail_logs(self, id, lines).await
    }
    async fn copy_in(
        &self,
        id: &str,
        source: &Path,
        target: &str,
        skip: &[std::path::PathBuf],
    ) -> Result<(), EngineError> {
        self.copy_into(id, source, target, skip).await
    }
    async fn copy_out(&self, id: &str, path: &str, dest: &Path) -> Result<bool, EngineError> {
        Engine::copy_out(self, id, path, dest).await
    }
    async fn tag(&self, image: &str, repo: &str, tag: &str) -> Result<(), EngineError> {
        self.tag_image(image, repo, tag).await
    }
    async fn image_id(&self, reference: &str) -> Result<Option<String>, EngineError> {
        Ok(self.image(reference).await?.map(|info| info.id))
    }
    async fn untag(&self, reference: &str) -> Result<(), EngineError> {
        self.remove_image(reference, false).await
    }
    async fn push(&self, reference: &str) -> Result<(), EngineError> {
        let auth = RegistryAuth::resolve(&registry_host(reference))?;
        self.push_image(reference, &auth).await
    }
    async fn remove_run(&self, run_id: &str) -> Result<usize, EngineError> {
        Engine::remove_run(self, run_id).await
    }
}
