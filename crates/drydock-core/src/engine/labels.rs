//! Labels that mark everything drydock creates, so it can always be found and removed.

use std::collections::HashMap;

/// Prefix of every drydock label.
pub const PREFIX: &str = "drydock.";
/// Present (value `true`) on every object drydock creates.
pub const MANAGED: &str = "drydock.managed";
/// The run that created the object.
pub const RUN: &str = "drydock.run";
/// The pipeline name.
pub const PIPELINE: &str = "drydock.pipeline";
/// `step`, `service`, `network`, `probe`, `test`, `build`.
pub const ROLE: &str = "drydock.role";
/// Process id of the drydock process that owns the run.
pub const PID: &str = "drydock.pid";
/// Host name of the machine that owns the run.
pub const HOST: &str = "drydock.host";
/// Start time of the owner process (clock ticks since boot, `/proc/<pid>/stat`
/// field 22): tells the owner from another process that reuses its pid.
pub const STARTED: &str = "drydock.started";
/// Content digest of a build (context + Dockerfile + args + target), on images.
pub const DIGEST: &str = "drydock.digest";
/// On the long-lived objects of a deploy: the channel they serve.
pub const DEPLOY: &str = "drydock.deploy";
/// On the long-lived objects of a deploy: `app`, `proxy`, `service` or `network`.
pub const DEPLOY_KIND: &str = "drydock.deploy.kind";
/// On a pipeline cache volume (`cache:`): the pipeline it belongs to. Cache
/// volumes carry no [`MANAGED`] label and no owner: no sweep removes them;
/// `drydock gc --caches` does.
pub const CACHE: &str = "drydock.cache";
/// On a pipeline cache volume: the container path it caches.
pub const CACHE_PATH: &str = "drydock.cache.path";

/// The [`ROLE`] of a deploy's long-lived objects. They have no owner process
/// (no [`PID`], [`RUN`]): the sweep never treats them as stale; only
/// `drydock undeploy` removes them.
pub const ROLE_DEPLOY: &str = "deploy";

/// The host value of deploy objects: never a machine's host name.
pub const DEPLOY_HOST: &str = "(deploy)";

/// The labels of a long-lived deploy object of `channel`: role
/// [`ROLE_DEPLOY`], [`DEPLOY`] and [`DEPLOY_KIND`].
///
/// A container inherits its image's labels, and images built by a run carry
/// that run's labels ([`RUN`], [`PID`], [`MANAGED`]…): a deployed container
/// would look like the leftover of a dead run and be swept by `drydock gc`
/// or the next `drydock run` (of any drydock version). So the owner labels
/// are overridden: [`RUN`], [`PIPELINE`], [`PID`] and [`STARTED`] empty, and
/// [`HOST`] set to [`DEPLOY_HOST`], which every drydock treats as "owned by
/// another machine, leave alone". [`MANAGED`] is not set here (an inherited
/// one may remain); this version's sweep also skips [`ROLE_DEPLOY`] objects
/// outright. Only `drydock undeploy` removes them.
pub fn deploy_labels(channel: &str, kind: &str) -> HashMap<String, String> {
    HashMap::from([
        (ROLE.to_string(), ROLE_DEPLOY.to_string()),
        (DEPLOY.to_string(), channel.to_string()),
        (DEPLOY_KIND.to_string(), kind.to_string()),
        (RUN.to_string(), String::new()),
        (PIPELINE.to_string(), String::new()),
        (PID.to_string(), String::new()),
        (STARTED.to_string(), String::new()),
        (HOST.to_string(), DEPLOY_HOST.to_string()),
    ])
}

/// Whether an object with these labels belongs to a deploy (never stale).
pub fn is_deploy(object_labels: &HashMap<String, String>) -> bool {
    object_labels.get(ROLE).map(String::as_str) == Some(ROLE_DEPLOY)
}

/// The label set of one run; objects add their role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLabels {
    /// Run id.
    pub run_id: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Owner process id.
    pub pid: u32,
    /// Owner host name.
    pub host: String,
    /// Owner process start time ([`STARTED`]), when it could be read.
    pub started: Option<String>,
}

impl RunLabels {
    /// Labels for a run owned by this process.
    pub fn for_this_process(run_id: &str, pipeline: &str) -> Self {
        RunLabels {
            run_id: run_id.to_string(),
            pipeline: pipeline.to_string(),
            pid: std::process::id(),
            host: host_name(),
            started: process_start_time(std::process::id()),
        }
    }

    /// The labels for an object with the given role.
    pub fn with_role(&self, role: &str) -> HashMap<String, String> {
        let mut labels = HashMap::from([
            (MANAGED.to_string(), "true".to_string()),
            (RUN.to_string(), self.run_id.clone()),
            (PIPELINE.to_string(), self.pipeline.clone()),
            (ROLE.to_string(), role.to_string()),
            (PID.to_string(), self.pid.to_string()),
            (HOST.to_string(), self.host.clone()),
        ]);
        if let Some(started) = &self.started {
            labels.insert(STARTED.to_string(), started.clone());
        }
        labels
    }
}

/// Start time of process `pid` in clock ticks since boot (field 22 of
/// `/proc/<pid>/stat`); `None` when it cannot be read.
pub fn process_start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let after_name = stat.get(stat.rfind(')')? + 1..)?;
    after_name
        .split_whitespace()
        .nth(22 - 3)
        .map(str::to_string)
}

/// This machine's host name (from /proc or `HOSTNAME`), `unknown` when neither answers.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_has_the_prefix_and_the_run() {
        let labels = RunLabels::for_this_process("r1", "p").with_role("step");
        assert!(labels.keys().all(|k| k.starts_with(PREFIX)));
        assert_eq!(labels[RUN], "r1");
        assert_eq!(labels[ROLE], "step");
        assert_eq!(labels[PID], std::process::id().to_string());
        assert_eq!(
            labels.get(STARTED),
            process_start_time(std::process::id()).as_ref()
        );
        assert!(labels[STARTED].parse::<u64>().is_ok(), "{labels:?}");
    }
}
