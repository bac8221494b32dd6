//! Finding and removing what drydock created, by label.

use std::collections::HashMap;

use bollard::query_parameters::{ListContainersOptions, ListNetworksOptions, ListVolumesOptions};

use super::error::status_of;
use super::labels;
use super::{Engine, EngineError};

/// One labelled object found in the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// `container`, `network` or `volume`.
    pub kind: &'static str,
    /// Id or name used to remove it.
    pub id: String,
    /// Its labels.
    pub labels: HashMap<String, String>,
}

impl Leftover {
    /// The run that created it.
    pub fn run_id(&self) -> Option<&str> {
        self.labels.get(labels::RUN).map(String::as_str)
    }
}

impl Engine {
    /// Every container, network and volume carrying `label` (`key` or `key=value`).
    pub async fn labelled(&self, label: &str) -> Result<Vec<Leftover>, EngineError> {
        let filters = HashMap::from([("label".to_string(), vec![label.to_string()])]);
        let mut found = Vec::new();
        let containers = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters.clone()),
                ..Default::default()
            }))
            .await
            .map_err(|e| EngineError::api("list containers", e))?;
        found.extend(containers.into_iter().map(|c| Leftover {
            kind: "container",
            id: c.id.unwrap_or_default(),
            labels: c.labels.unwrap_or_default(),
        }));
        let networks = self
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(filters.clone()),
            }))
            .await
            .map_err(|e| EngineError::api("list networks", e))?;
        found.extend(networks.into_iter().map(|n| Leftover {
            kind: "network",
            id: n.id.unwrap_or_default(),
            labels: n.labels.unwrap_or_default(),
        }));
        let volumes = self
            .docker
            .list_volumes(Some(ListVolumesOptions {
                filters: Some(filters),
            }))
            .await
            .map_err(|e| EngineError::api("list volumes", e))?;
        found.extend(
            volumes
                .volumes
                .unwrap_or_default()
                .into_iter()
                .map(|v| Leftover {
                    kind: "volume",
                    id: v.name,
                    labels: v.labels,
                }),
        );
        Ok(found)
    }

    /// Removes the given objects: containers first, then networks and volumes.
    /// Returns how many were removed; keeps going past individual failures and
    /// reports the first one.
    pub async fn remove_leftovers(&self, leftovers: &[Leftover]) -> Result<usize, EngineError> {
        let mut removed = 0;
        let mut first_error = None;
        // Containers first (concurrently: a forced removal takes ~100 ms each),
        // then the networks and volumes they used.
        for kind in ["container", "network", "volume"] {
            let results = futures::future::join_all(
                leftovers
                    .iter()
                    .filter(|l| l.kind == kind)
                    .map(|item| self.remove_one(item)),
            )
            .await;
            for result in results {
                match result {
                    Ok(()) => removed += 1,
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(removed),
        }
    }

    async fn remove_one(&self, item: &Leftover) -> Result<(), EngineError> {
        match item.kind {
            "container" => self.remove_container(&item.id).await,
            "network" => self.remove_network(&item.id).await,
            _ => match self
                .docker
                .remove_volume(
                    &item.id,
                    None::<bollard::query_parameters::RemoveVolumeOptions>,
                )
                .await
            {
                Ok(()) => Ok(()),
                Err(e) if status_of(&e) == Some(404) => Ok(()),
                Err(e) => Err(EngineError::api(format!("remove volume {}", item.id), e)),
            },
        }
    }

    /// Removes everything labelled with this run id.
    pub async fn remove_run(&self, run_id: &str) -> Result<usize, EngineError> {
        let leftovers = self.labelled(&format!("{}={run_id}", labels::RUN)).await?;
        self.remove_leftovers(&leftovers).await
    }
}

/// Whether the drydock process that owns an object is still alive. Objects of
/// another host are assumed alive (their owner cannot be checked from here).
///
/// A live pid owns the object when its start time matches the object's
/// [`labels::STARTED`] label (a different start time means the pid was
/// reused). Objects without that label (made by older drydock versions) fall
/// back to checking that the process's command line mentions `drydock`; that
/// heuristic misjudges programs embedding the library under another name (test
/// binaries, for one), which is why the start time is recorded.
///
/// Deploy objects ([`labels::is_deploy`]) have no owner process and always
/// count as alive.
pub fn owner_alive(object_labels: &HashMap<String, String>) -> bool {
    if labels::is_deploy(object_labels) {
        return true;
    }
    let this_host = labels::host_name();
    if object_labels
        .get(labels::HOST)
        .is_some_and(|h| *h != this_host)
    {
        return true;
    }
    let Some(pid) = object_labels
        .get(labels::PID)
        .and_then(|p| p.parse::<i32>().ok())
    else {
        return false;
    };
    if pid == std::process::id() as i32 {
        return true;
    }
    // SAFETY: kill with signal 0 only checks that the process exists.
    let exists = unsafe { libc::kill(pid, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !exists {
        return false;
    }
    if let Some(started) = object_labels.get(labels::STARTED) {
        // Unreadable /proc entry: cannot tell, keep the object.
        return labels::process_start_time(pid as u32).is_none_or(|now| now == *started);
    }
    // A recycled pid that is not a drydock process does not own anything.
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmd| String::from_utf8_lossy(&cmd).contains("drydock"))
        .unwrap_or(true)
}

impl Engine {
    /// Leftovers of runs whose drydock process is gone (or all with `all`).
    /// The long-lived objects of deploys ([`labels::is_deploy`]) are never
    /// stale, not even with `all`: `drydock undeploy` removes them.
    pub async fn stale(&self, all: bool) -> Result<Vec<Leftover>, EngineError> {
        let found = self.labelled(labels::MANAGED).await?;
        Ok(found
            .into_iter()
            .filter(|l| !labels::is_deploy(&l.labels) && (all || !owner_alive(&l.labels)))
            .collect())
    }

    /// Removes the leftovers of dead runs; returns how many objects went.
    pub async fn reap_dead_runs(&self) -> Result<usize, EngineError> {
        let stale = self.stale(false).await?;
        if stale.is_empty() {
            return Ok(0);
        }
        self.remove_leftovers(&stale).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_follows_the_owner_process() {
        let mine = labels::RunLabels::for_this_process("r", "p").with_role("step");
        assert!(owner_alive(&mine));
        let mut dead = mine.clone();
        // Pids are below 2^22 on Linux: this one cannot exist.
        dead.insert(labels::PID.to_string(), "9999999".to_string());
        assert!(!owner_alive(&dead));
        let mut elsewhere = dead.clone();
        elsewhere.insert(labels::HOST.to_string(), "another-host".to_string());
        assert!(
            owner_alive(&elsewhere),
            "objects of other hosts are left alone"
        );
    }

    #[test]
    fn deploy_objects_are_never_stale() {
        let deploy = labels::deploy_labels("staging", "app");
        assert!(labels::is_deploy(&deploy));
        assert!(!deploy.contains_key(labels::MANAGED));
        // Inherited image labels of a dead run are masked.
        assert_eq!(deploy[labels::PID], "");
        assert_eq!(deploy[labels::RUN], "");
        assert!(owner_alive(&deploy), "no owner process, yet alive");
        // What a drydock without deploy support sees: another host's object.
        let mut old_view = deploy.clone();
        old_view.remove(labels::ROLE);
        old_view.insert(labels::MANAGED.to_string(), "true".to_string());
        assert!(owner_alive(&old_view), "{old_view:?}");
        // Even labels that would otherwise look dead keep a deploy object alive.
        let mut odd = deploy.clone();
        odd.insert(labels::MANAGED.to_string(), "true".to_string());
        odd.insert(labels::PID.to_string(), "9999999".to_string());
        assert!(owner_alive(&odd));
        let run = labels::RunLabels::for_this_process("r", "p").with_role("step");
        assert!(!labels::is_deploy(&run));
    }

    #[test]
    fn a_live_pid_owns_only_objects_with_its_start_time() {
        // The parent process is alive and is not this one; its command line
        // need not mention drydock (cargo, a shell, a test runner).
        let parent = std::os::unix::process::parent_id();
        let started = labels::process_start_time(parent).expect("parent start time");
        let mut object = labels::RunLabels::for_this_process("r", "p").with_role("step");
        object.insert(labels::PID.to_string(), parent.to_string());
        object.insert(labels::STARTED.to_string(), started);
        assert!(owner_alive(&object), "same pid, same start time");
        object.insert(labels::STARTED.to_string(), "1".to_string());
        assert!(
            !owner_alive(&object),
            "same pid, another start time: reused"
        );
    }
}
