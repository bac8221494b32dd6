//! Readiness: the one deadline loop that waits for a container to be ready,
//! used by run services ([`super::service`]) and by deploys (the app behind
//! the proxy and its services, [`crate::deploy`]).
//!
//! A wait asks the engine for the container's state, gives up at once when
//! the container stopped, otherwise runs the caller's check (see [`Check`];
//! the probe kinds of a pipeline or deploy config are run by
//! [`probe_once`]), and sleeps between attempts with a backoff that doubles
//! from [`Backoff::first`] up to [`Backoff::max`], never past the deadline.
//! When the wait fails, the last lines of the container's output come with
//! the reason, as testcontainers' wait strategies and compose's
//! `depends_on: service_healthy` report them.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use super::Runtime;
use crate::engine::ContainerState;
use crate::pipeline::Probe;

/// What one look at a running container found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Check {
    /// Ready: the wait ends.
    Ready,
    /// Not yet (what the probe saw): try again until the deadline.
    NotYet(String),
    /// It will never be ready (e.g. health status `unhealthy`): the wait
    /// ends now.
    Failed(String),
}

/// The pauses between attempts: `first`, doubling up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    /// The first pause.
    pub first: Duration,
    /// The longest pause.
    pub max: Duration,
}

impl Backoff {
    /// The same pause every time.
    pub(crate) fn fixed(every: Duration) -> Self {
        Backoff {
            first: every,
            max: every,
        }
    }
}

/// Why a container did not become ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NotReady {
    /// It stopped with this exit code (`-1` when the engine did not say).
    Exited {
        /// Its exit code.
        code: i64,
        /// Its last lines of output.
        log_tail: Vec<String>,
    },
    /// The check said it never will be.
    Failed {
        /// What the check saw.
        why: String,
        /// Its last lines of output.
        log_tail: Vec<String>,
    },
    /// The deadline passed.
    TimedOut {
        /// What the last check saw.
        last: String,
        /// Its last lines of output.
        log_tail: Vec<String>,
    },
    /// The engine could not be asked.
    Engine(String),
}

impl NotReady {
    /// Why, for people, after the thing's name: `exited with code 1 before
    /// it was ready`, `not ready after 30s: psql said: …`; the log tail
    /// comes apart.
    pub(crate) fn reason(self, timeout: Duration) -> (String, Vec<String>) {
        match self {
            NotReady::Exited { code, log_tail } => (
                format!("exited with code {code} before it was ready"),
                log_tail,
            ),
            NotReady::TimedOut {
                last: why,
                log_tail,
            }
            | NotReady::Failed { why, log_tail } => (
                format!(
                    "not ready after {}: {why}",
                    crate::pipeline::format_duration(timeout)
                ),
                log_tail,
            ),
            NotReady::Engine(e) => (e, Vec::new()),
        }
    }
}

/// Waits until `check` says the running container `id` is ready, at most
/// `timeout` from `since` (the moment the container was started), keeping
/// `tail_lines` lines of output for a failure. Returns how long it took
/// since `since`.
pub(crate) async fn wait_ready<R, F, Fut>(
    runtime: &R,
    id: &str,
    since: Instant,
    timeout: Duration,
    backoff: Backoff,
    tail_lines: usize,
    mut check: F,
) -> Result<Duration, NotReady>
where
    R: Runtime + ?Sized,
    F: FnMut(ContainerState) -> Fut,
    Fut: Future<Output = Check>,
{
    let deadline = since + timeout;
    let mut pause = backoff.first;
    let tail = || async {
        runtime
            .tail_logs(id, tail_lines)
            .await
            .map(crate::engine::render_lines)
            .unwrap_or_default()
    };
    loop {
        let state = runtime
            .state(id)
            .await
            .map_err(|e| NotReady::Engine(e.to_string()))?;
        if !state.running {
            return Err(NotReady::Exited {
                code: state.exit_code.unwrap_or(-1),
                log_tail: tail().await,
            });
        }
        let last = match check(state).await {
            Check::Ready => return Ok(since.elapsed()),
            Check::Failed(why) => {
                return Err(NotReady::Failed {
                    why,
                    log_tail: tail().await,
                })
            }
            Check::NotYet(why) => why,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(NotReady::TimedOut {
                last,
                log_tail: tail().await,
            });
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(backoff.max);
    }
}

/// Runs one readiness probe of a pipeline or deploy config against the
/// container `id`, which answers to `alias` on its network; `health` is its
/// current health status. A probe that fails says what it saw
/// ([`Check::NotYet`]).
pub(crate) async fn probe_once<R: Runtime + ?Sized>(
    runtime: &R,
    id: &str,
    alias: &str,
    probe: &Probe,
    health: Option<&str>,
) -> Check {
    let seen: Result<(), String> = match probe {
        Probe::Healthcheck => match health {
            Some("healthy") => Ok(()),
            Some(other) => Err(format!("health status {other}")),
            None => Err("the image has no HEALTHCHECK".to_string()),
        },
        Probe::Exec(argv) => match runtime.exec(id, argv, &BTreeMap::new()).await {
            Err(e) => Err(e.to_string()),
            Ok(out) if out.exit_code == 0 => Ok(()),
            Ok(out) => Err(format!(
                "{argv:?} exited with {}: {}",
                out.exit_code,
                out.output.trim()
            )),
        },
        Probe::Postgres {
            user,
            password,
            database,
        } => {
            // Over the network, by alias (TCP, not the socket), with a real
            // login and query.
            let argv: Vec<String> = [
                "psql", "-h", alias, "-U", user, "-d", database, "-tAc", "SELECT 1",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let mut env = BTreeMap::from([("PGCONNECT_TIMEOUT".to_string(), "3".to_string())]);
            if let Some(password) = password {
                env.insert("PGPASSWORD".to_string(), password.clone());
            }
            match runtime.exec(id, &argv, &env).await {
                Err(e) => Err(e.to_string()),
                Ok(out) if out.exit_code == 0 && out.output.trim() == "1" => Ok(()),
                Ok(out) => Err(format!("psql said: {}", out.output.trim())),
            }
        }
    };
    match seen {
        Ok(()) => Check::Ready,
        Err(why) => Check::NotYet(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::fake::FakeRuntime;
    use std::sync::atomic::{AtomicU32, Ordering};

    async fn started(fake: &FakeRuntime) -> String {
        let spec = crate::engine::ContainerSpec {
            name: "svc".into(),
            image: "drydock/python:3.11".into(),
            ..Default::default()
        };
        let id = fake.create(&spec).await.unwrap();
        fake.start(&id, &spec).await.unwrap();
        id
    }

    /// Table: what the checks say in turn → how the wait ends.
    #[tokio::test]
    async fn the_loop_ends_as_the_checks_say() {
        type Case = (&'static str, Vec<Check>, Result<u32, &'static str>);
        let cases: Vec<Case> = vec![
            ("ready at once", vec![Check::Ready], Ok(1)),
            (
                "ready on the third look",
                vec![
                    Check::NotYet("a".into()),
                    Check::NotYet("b".into()),
                    Check::Ready,
                ],
                Ok(3),
            ),
            (
                "failed stops at once",
                vec![Check::NotYet("a".into()), Check::Failed("unhealthy".into())],
                Err("failed unhealthy"),
            ),
            (
                "never ready times out with the last reason",
                vec![Check::NotYet("still starting".into()); 1000],
                Err("timed out still starting"),
            ),
        ];
        for (name, answers, expected) in cases {
            let fake = FakeRuntime::with_images(&["drydock/python:3.11"]);
            let id = started(&fake).await;
            let looks = AtomicU32::new(0);
            let result = wait_ready(
                &fake,
                &id,
                Instant::now(),
                Duration::from_millis(60),
                Backoff::fixed(Duration::from_millis(5)),
                5,
                |_state| {
                    let n = looks.fetch_add(1, Ordering::SeqCst) as usize;
                    let answer = answers[n.min(answers.len() - 1)].clone();
                    async move { answer }
                },
            )
            .await;
            let got = match result {
                Ok(_) => Ok(looks.load(Ordering::SeqCst)),
                Err(NotReady::Failed { why, .. }) => Err(format!("failed {why}")),
                Err(NotReady::TimedOut { last, .. }) => Err(format!("timed out {last}")),
                Err(other) => Err(format!("{other:?}")),
            };
            assert_eq!(got, expected.map_err(String::from), "{name}");
        }
    }

    /// A container that stopped is not waited for: its exit code is told.
    #[tokio::test]
    async fn a_stopped_container_ends_the_wait_with_its_exit_code() {
        let fake = FakeRuntime::with_images(&["drydock/python:3.11"]);
        let id = started(&fake).await;
        fake.remove(&id).await.unwrap();
        let result = wait_ready(
            &fake,
            &id,
            Instant::now(),
            Duration::from_secs(5),
            Backoff::fixed(Duration::from_millis(5)),
            5,
            |_state| async { Check::NotYet("never asked".into()) },
        )
        .await;
        assert!(matches!(result, Err(NotReady::Exited { .. })), "{result:?}");
    }
}
