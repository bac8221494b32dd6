//! A fake engine for scheduling tests: commands are interpreted, not run.
//!
//! Step commands: `["sleep", MS]` waits MS milliseconds, `["exit", N]` exits
//! with N, `["oom"]` exits 137 with `OOMKilled` set, `["flaky", N]` fails
//! its first N attempts, `["echo", WORDS…]`
//! prints WORDS; anything else exits 0. A command
//! whose first word is `missing` cannot be started (nor exec'd). A
//! container whose entrypoint is the idle loop of steps started ahead
//! runs until stopped; commands exec'd in it behave as above (journal
//! `exec ID`). Builds of targets listed in
//! `failing_builds` fail. Services named in `never_ready` fail every probe.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::watch;

use super::Runtime;
use crate::engine::{
    BuildProgress, BuildRequest, Built, ContainerSpec, ContainerState, EngineError, ExecAttached,
    ExecOutput, LogChunk, LogStream,
};

#[derive(Default)]
pub(crate) struct FakeRuntime {
    pub images: Mutex<HashSet<String>>,
    pub failing_builds: HashSet<String>,
    pub never_ready: HashSet<String>,
    /// Every call, in order: `build x`, `create name`, `start name`, `exec name`,
    /// `stop name`, `remove name`, `tag repo:tag`.
    pub journal: Arc<Mutex<Vec<String>>>,
    /// Containers that exist.
    pub live: Mutex<HashMap<String, ContainerSpec>>,
    /// Exit signal per started container (None = running).
    pub exits: Mutex<HashMap<String, Arc<watch::Sender<Option<i64>>>>>,
    pub running_now: Arc<Mutex<usize>>,
    pub max_running: Mutex<usize>,
    pub build_delay: Duration,
    /// Tags: reference → image.
    pub tags: Mutex<HashMap<String, String>>,
    /// When set, pushes of references containing `.0` fail with message `.1`.
    pub refuse_push: Option<(String, String)>,
    /// Attempts started so far, by container name without its `-attemptN`.
    pub attempts: Mutex<HashMap<String, u32>>,
    /// When set, tagging a reference containing `.0` first cancels `.1` as
    /// two signals 10 ms apart would (a signal, then a second one).
    pub signals_on_tag: Option<(String, super::RunCancel)>,
    /// Exec ids by container.
    pub execs: Mutex<HashMap<String, Vec<String>>>,
    /// The argv exec'd last in each container.
    pub exec_argv: Mutex<HashMap<String, Vec<String>>>,
    /// When set, every exec fails to start (a container started ahead that died).
    pub refuse_exec: bool,
}

impl FakeRuntime {
    pub fn with_images(images: &[&str]) -> Self {
        FakeRuntime {
            images: Mutex::new(images.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    fn log(&self, entry: String) {
        self.journal.lock().unwrap().push(entry);
    }

    pub fn journal(&self) -> Vec<String> {
        self.journal.lock().unwrap().clone()
    }

    pub fn live_containers(&self) -> usize {
        self.live.lock().unwrap().len()
    }

    fn finish(&self, id: &str, code: i64) {
        let execs = self
            .execs
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .unwrap_or_default();
        for exec in execs {
            self.finish(&exec, code);
        }
        if let Some(tx) = self.exits.lock().unwrap().get(id) {
            exit(tx, &self.running_now, code);
        }
    }

    /// How a command behaves: (delay in ms, exit code).
    fn behaviour(&self, argv: &[String], id: &str) -> (u64, i64) {
        match argv.first().map(String::as_str) {
            Some("sleep") => (argv.get(1).and_then(|s| s.parse().ok()).unwrap_or(0), 0),
            Some("exit") => (0, argv.get(1).and_then(|s| s.parse().ok()).unwrap_or(1)),
            Some("oom") => (0, 137),
            // ["flaky", N]: the first N attempts fail.
            Some("flaky") => {
                let base = id.split("-attempt").next().unwrap_or(id);
                let base = base.trim_end_matches("-ahead").to_string();
                let mut attempts = self.attempts.lock().unwrap();
                let n = attempts.entry(base).or_insert(0);
                *n += 1;
                let failing: u32 = argv.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
                (0, if *n <= failing { 1 } else { 0 })
            }
            _ => (0, 0),
        }
    }

    /// Registers a running process (a container or an exec) and ends it
    /// after `delay` ms with `code`.
    fn run_process(&self, id: &str, delay: u64, code: i64, ends: bool) {
        let tx = Arc::new(watch::channel(None).0);
        self.exits
            .lock()
            .unwrap()
            .insert(id.to_string(), tx.clone());
        {
            let mut running = self.running_now.lock().unwrap();
            *running += 1;
            let mut max = self.max_running.lock().unwrap();
            *max = (*max).max(*running);
        }
        if ends {
            let running_now = self.running_now.clone();
            let journal = self.journal.clone();
            let id = id.to_string();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                journal.lock().unwrap().push(format!("exited {id}"));
                exit(&tx, &running_now, code);
            });
        }
    }
}

fn exit(tx: &watch::Sender<Option<i64>>, running_now: &Mutex<usize>, code: i64) {
    if tx.send_if_modified(|state| {
        state.is_none() && {
            *state = Some(code);
            true
        }
    }) {
        let mut running = running_now.lock().unwrap();
        *running = running.saturating_sub(1);
    }
}

fn words(spec: &ContainerSpec) -> Vec<String> {
    spec.entrypoint
        .iter()
        .flatten()
        .chain(spec.command.iter().flatten())
        .cloned()
        .collect()
}

#[async_trait]
impl Runtime for FakeRuntime {
    fn describe(&self) -> String {
        "fake engine".to_string()
    }
    async fn create_network(
        &self,
        name: &str,
        _labels: HashMap<String, String>,
    ) -> Result<(), EngineError> {
        self.log(format!("network {name}"));
        Ok(())
    }
    async fn create_volume(
        &self,
        name: &str,
        _labels: HashMap<String, String>,
    ) -> Result<(), EngineError> {
        self.log(format!("volume {name}"));
        Ok(())
    }
    async fn remove_network(&self, _name: &str) -> Result<(), EngineError> {
        Ok(())
    }
    async fn image_exists(&self, reference: &str) -> Result<bool, EngineError> {
        Ok(self.images.lock().unwrap().contains(reference))
    }
    async fn pull(&self, reference: &str) -> Result<(), EngineError> {
        self.log(format!("pull {reference}"));
        Err(EngineError::ImageMissing {
            image: reference.to_string(),
            hint: ": no registry in the fake".to_string(),
        })
    }
    async fn build(
        &self,
        request: &BuildRequest,
        progress: &mut (dyn FnMut(BuildProgress) + Send),
    ) -> Result<Built, EngineError> {
        let target = request.target.clone().unwrap_or_default();
        self.log(format!("build {target}"));
        progress(BuildProgress::Step("Step 1/1 : RUN true".to_string()));
        tokio::time::sleep(self.build_delay).await;
        self.log(format!("built {target}"));
        if self.failing_builds.contains(&target) {
            progress(BuildProgress::Output(
                "E: Unable to locate package nope".to_string(),
            ));
            return Err(EngineError::Build {
                what: target,
                step: Some("RUN false".to_string()),
                message: "The command '/bin/sh -c false' returned a non-zero code: 1".to_string(),
            });
        }
        Ok(Built {
            image_id: format!("img-{target}"),
            digest: "d".to_string(),
            reused: false,
        })
    }
    async fn create(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        let known =
            self.images.lock().unwrap().contains(&spec.image) || spec.image.starts_with("img-");
        if !known {
            return Err(EngineError::ImageMissing {
                image: spec.image.clone(),
                hint: String::new(),
            });
        }
        self.log(format!("create {}", spec.name));
        self.live
            .lock()
            .unwrap()
            .insert(spec.name.clone(), spec.clone());
        Ok(spec.name.clone())
    }
    async fn start(&self, id: &str, spec: &ContainerSpec) -> Result<(), EngineError> {
        let argv = words(spec);
        if argv.first().map(String::as_str) == Some("missing") {
            return Err(EngineError::CommandNotFound {
                command: argv,
                image: spec.image.clone(),
                message: "executable file not found in $PATH".to_string(),
            });
        }
        self.log(format!("start {id}"));
        let is_service = spec.labels.get("drydock.role").map(String::as_str) == Some("service");
        let idle = spec.entrypoint.as_ref() == Some(&super::ahead::idle_argv());
        let (delay, code) = if is_service || idle {
            (0, 0)
        } else {
            self.behaviour(&argv, id)
        };
        self.run_process(id, delay, code, !(is_service || idle));
        Ok(())
    }
    async fn exec_attach(
        &self,
        id: &str,
        argv: &[String],
        _user: Option<&str>,
        _workdir: Option<&str>,
    ) -> Result<ExecAttached, EngineError> {
        let running = self
            .exits
            .lock()
            .unwrap()
            .get(id)
            .is_some_and(|tx| tx.borrow().is_none());
        if self.refuse_exec || !running || argv.first().map(String::as_str) == Some("missing") {
            return Err(EngineError::CommandNotFound {
                command: argv.to_vec(),
                image: String::new(),
                message: "exec refused by the fake".to_string(),
            });
        }
        self.log(format!("exec {id}"));
        let exec_id = format!("{id}#exec");
        self.exec_argv
            .lock()
            .unwrap()
            .insert(id.to_string(), argv.to_vec());
        self.execs
            .lock()
            .unwrap()
            .entry(id.to_string())
            .or_default()
            .push(exec_id.clone());
        let (delay, code) = self.behaviour(argv, id);
        self.run_process(&exec_id, delay, code, true);
        let mut rx = self
            .exits
            .lock()
            .unwrap()
            .get(&exec_id)
            .map(|tx| tx.subscribe())
            .expect("just registered");
        let text = if argv.first().map(String::as_str) == Some("echo") {
            format!("{}\n", argv[1..].join(" "))
        } else {
            String::new()
        };
        let output = futures::stream::once(async move {
            while rx.borrow().is_none() {
                if rx.changed().await.is_err() {
                    break;
                }
            }
            (!text.is_empty()).then(|| {
                Ok(LogChunk {
                    stream: LogStream::Stdout,
                    bytes: Bytes::from(text),
                })
            })
        })
        .filter_map(futures::future::ready)
        .boxed();
        Ok(ExecAttached { exec_id, output })
    }
    async fn exec_exit_code(&self, exec_id: &str) -> Result<Option<i64>, EngineError> {
        Ok(self
            .exits
            .lock()
            .unwrap()
            .get(exec_id)
            .and_then(|tx| *tx.borrow()))
    }
    fn logs(&self, id: &str) -> BoxStream<'static, Result<LogChunk, EngineError>> {
        let spec = self
            .live
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .unwrap_or_default();
        let argv = words(&spec);
        let text = if argv.first().map(String::as_str) == Some("echo") {
            format!("{}\n", argv[1..].join(" "))
        } else {
            String::new()
        };
        futures::stream::iter((!text.is_empty()).then(|| {
            Ok(LogChunk {
                stream: LogStream::Stdout,
                bytes: Bytes::from(text),
            })
        }))
        .boxed()
    }
    async fn wait(&self, id: &str) -> Result<i64, EngineError> {
        let rx = self.exits.lock().unwrap().get(id).map(|tx| tx.subscribe());
        let Some(mut rx) = rx else { return Ok(0) };
        loop {
            if let Some(code) = *rx.borrow() {
                return Ok(code);
            }
            if rx.changed().await.is_err() {
                return Ok(137);
            }
        }
    }
    async fn stop(&self, id: &str, _grace: Duration) -> Result<(), EngineError> {
        self.log(format!("stop {id}"));
        self.finish(id, 143);
        Ok(())
    }
    async fn remove(&self, id: &str) -> Result<(), EngineError> {
        self.log(format!("remove {id}"));
        self.finish(id, 137);
        self.live.lock().unwrap().remove(id);
        Ok(())
    }
    async fn state(&self, id: &str) -> Result<ContainerState, EngineError> {
        let live = self.live.lock().unwrap();
        let exec_argv = self.exec_argv.lock().unwrap();
        let oom_killed = live
            .get(id)
            .map(words)
            .into_iter()
            .chain(exec_argv.get(id).cloned())
            .any(|argv| argv.first().map(String::as_str) == Some("oom"));
        Ok(ContainerState {
            running: live.contains_key(id),
            exit_code: None,
            health: None,
            ip_addresses: BTreeMap::new(),
            oom_killed,
        })
    }
    async fn exec(
        &self,
        id: &str,
        _argv: &[String],
        _env: &BTreeMap<String, String>,
    ) -> Result<ExecOutput, EngineError> {
        let never = self
            .never_ready
            .iter()
            .any(|name| id.ends_with(&format!("-svc-{name}")));
        Ok(if never {
            ExecOutput {
                exit_code: 2,
                output: "connection refused".to_string(),
            }
        } else {
            ExecOutput {
                exit_code: 0,
                output: "1\n".to_string(),
            }
        })
    }
    async fn tail_logs(&self, _id: &str, _lines: usize) -> Result<String, EngineError> {
        Ok("last words\n".to_string())
    }
    async fn copy_in(
        &self,
        id: &str,
        source: &Path,
        target: &str,
        _skip: &[std::path::PathBuf],
    ) -> Result<(), EngineError> {
        self.log(format!("copy {} {id}:{target}", source.display()));
        Ok(())
    }
    async fn copy_out(&self, _id: &str, _path: &str, _dest: &Path) -> Result<bool, EngineError> {
        Ok(false)
    }
    async fn tag(&self, image: &str, repo: &str, tag: &str) -> Result<(), EngineError> {
        if let Some((pattern, cancel)) = &self.signals_on_tag {
            if format!("{repo}:{tag}").contains(pattern.as_str()) {
                cancel.cancel(super::CancelReason::Signal);
                tokio::time::sleep(Duration::from_millis(10)).await;
                cancel.cancel(super::CancelReason::SecondSignal);
            }
        }
        self.log(format!("tag {image} {repo}:{tag}"));
        self.tags
            .lock()
            .unwrap()
            .insert(format!("{repo}:{tag}"), image.to_string());
        Ok(())
    }
    async fn image_id(&self, reference: &str) -> Result<Option<String>, EngineError> {
        Ok(self.tags.lock().unwrap().get(reference).cloned())
    }
    async fn untag(&self, reference: &str) -> Result<(), EngineError> {
        self.log(format!("untag {reference}"));
        self.tags.lock().unwrap().remove(reference);
        Ok(())
    }
    async fn push(&self, reference: &str) -> Result<(), EngineError> {
        self.log(format!("push {reference}"));
        match &self.refuse_push {
            Some((pattern, message)) if reference.contains(pattern.as_str()) => {
                let kind = crate::engine::PushFailure::classify(message);
                Err(EngineError::Push {
                    reference: reference.to_string(),
                    registry: crate::engine::registry_host(reference),
                    kind,
                    message: format!("{}: {message}", kind.describe()),
                })
            }
            _ => Ok(()),
        }
    }
    async fn remove_run(&self, _run_id: &str) -> Result<usize, EngineError> {
        let ids: Vec<String> = self.live.lock().unwrap().keys().cloned().collect();
        for id in &ids {
            self.finish(id, 137);
        }
        self.live.lock().unwrap().clear();
        Ok(ids.len())
    }
}
