//! Scheduling tests against the fake engine.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::fake::FakeRuntime;
use super::*;
use crate::pipeline::{
    BuildSpec, ImageSource, Pipeline, Probe, ReadySpec, ReleaseSpec, ServiceSpec, StepRun,
    StepSpec, TierSpec,
};
use crate::trust::Trust;

const BASE: &str = "drydock/python:3.11";

fn step(name: &str, command: &[&str]) -> StepSpec {
    StepSpec {
        name: name.to_string(),
        image: ImageSource::Image(BASE.to_string()),
        run: StepRun::Command(command.iter().map(|s| s.to_string()).collect()),
        entrypoint: None,
        user: None,
        env: BTreeMap::new(),
        workdir: None,
        mounts: Vec::new(),
        copies: Vec::new(),
        needs: None,
        when: Default::default(),
        retry: 0,
        allow_failure: false,
        matrix: Vec::new(),
        secrets: Vec::new(),
        cache: Vec::new(),
        reuse: None,
        timeout: Duration::from_secs(30),
        junit: None,
        collect: Vec::new(),
        network: true,
    }
}

fn tier(name: &str, steps: Vec<StepSpec>) -> TierSpec {
    TierSpec {
        when: Default::default(),
        name: name.to_string(),
        build: Vec::new(),
        services: Vec::new(),
        steps,
    }
}

fn pipeline(tiers: Vec<TierSpec>) -> Pipeline {
    Pipeline {
        name: "demo".to_string(),
        builds: ["dev", "production", "test"]
            .into_iter()
            .map(|target| BuildSpec {
                name: target.to_string(),
                context: PathBuf::from("/nonexistent"),
                dockerfile: "Dockerfile".to_string(),
                target: Some(target.to_string()),
                args: BTreeMap::new(),
                trust: false,
                secrets: Vec::new(),
            })
            .collect(),
        services: Vec::new(),
        tiers,
        release: None,
        secrets: Vec::new(),
        source_path: PathBuf::from("pipelines/demo.yml"),
        repo_root: PathBuf::from("/"),
    }
}

fn db_service() -> ServiceSpec {
    ServiceSpec {
        name: "db".to_string(),
        image: ImageSource::Image("drydock/postgres:15".to_string()),
        env: BTreeMap::new(),
        command: None,
        entrypoint: None,
        user: None,
        workdir: None,
        mounts: Vec::new(),
        compose: None,
        ready: Some(ReadySpec {
            probe: Probe::Postgres {
                user: "app".into(),
                password: Some("app".into()),
                database: "app".into(),
            },
            timeout: Duration::from_millis(300),
            interval: Duration::from_millis(10),
        }),
    }
}

struct Ran {
    report: RunReport,
    events: Vec<Event>,
    fake: Arc<FakeRuntime>,
    /// The run's release ledger (in a folder removed with `Ran`).
    ledger: PathBuf,
    _state: tempfile::TempDir,
}

async fn run_with(fake: FakeRuntime, pipeline: Pipeline, cancel_after: Option<Duration>) -> Ran {
    run_cancelled_by(fake, pipeline, cancel_after, RunCancel::new()).await
}

/// [`run_with`], cancelling through `cancel` (which the fake may also use).
async fn run_cancelled_by(
    fake: FakeRuntime,
    pipeline: Pipeline,
    cancel_after: Option<Duration>,
    cancel: RunCancel,
) -> Ran {
    let fake = Arc::new(fake);
    let (tx, mut rx) = mpsc::channel(64);
    let collector = tokio::spawn(async move {
        let mut events = Vec::new();
        while let Some(e) = rx.recv().await {
            events.push(e);
        }
        events
    });
    if let Some(after) = cancel_after {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            cancel.cancel(CancelReason::Signal);
        });
    }
    let state = tempfile::tempdir().unwrap();
    let options = RunOptions {
        run_id: "r1".to_string(),
        results_dir: std::env::temp_dir().join("drydock-unit-results"),
        trust: Trust::default(),
        git: GitInfo {
            sha: Some("abc123".to_string()),
            branch: Some("main".to_string()),
        },
        stop_grace: Duration::from_secs(1),
        release: ReleaseChoice::AsWritten,
        no_retry: false,
        ledger: state.path().join("ledger.sqlite"),
        release_fence: None,
        results_store: None,
        no_reuse: false,
    };
    let ledger = options.ledger.clone();
    let plan = crate::plan::plan(&pipeline, &options.plan_options());
    let report = run_plan(&plan, fake.clone(), options.exec_options(), tx, cancel).await;
    let events = collector.await.unwrap();
    Ran {
        report,
        events,
        fake,
        ledger,
        _state: state,
    }
}

fn finished_steps(events: &[Event]) -> Vec<(String, Status)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::StepFinished { step, status, .. } => Some((step.clone(), *status)),
            Event::StepSkipped { step, .. } => Some((step.clone(), Status::Skipped)),
            _ => None,
        })
        .collect()
}

fn tier_statuses(events: &[Event]) -> Vec<(String, Status)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::TierFinished { tier, status, .. } => Some((tier.clone(), *status)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn the_first_failing_tier_stops_the_run_and_later_tiers_are_skipped() {
    let ran = run_with(
        FakeRuntime::with_images(&[BASE]),
        pipeline(vec![
            tier("lint", vec![step("flake8", &["true"])]),
            tier(
                "unit",
                vec![step("ok", &["true"]), step("broken", &["exit", "1"])],
            ),
            tier("e2e", vec![step("journey", &["true"])]),
        ]),
        None,
    )
    .await;
    assert_eq!(ran.report.outcome, Outcome::Failed);
    assert_eq!(ran.report.outcome.exit_code(), 1);
    assert_eq!(
        tier_statuses(&ran.events),
        vec![
            ("lint".to_string(), Status::Passed),
            ("unit".to_string(), Status::Failed),
            ("e2e".to_string(), Status::Skipped)
        ]
    );
    assert!(finished_steps(&ran.events).contains(&("journey".to_string(), Status::Skipped)));
    // It may have been started ahead, but its command never runs.
    assert!(
        !ran.fake.journal().iter().any(|j| j.contains("journey")
            && !j.starts_with("create")
            && !j.starts_with("start")
            && !j.starts_with("remove")),
        "a skipped step never runs: {:?}",
        ran.fake.journal()
    );
    assert_eq!(ran.fake.live_containers(), 0);
}

#[tokio::test]
async fn steps_of_a_tier_run_concurrently() {
    let ran = run_with(
        FakeRuntime::with_images(&[BASE]),
        pipeline(vec![tier(
            "unit",
            vec![
                step("a", &["sleep", "150"]),
                step("b", &["sleep", "150"]),
                step("c", &["sleep", "150"]),
            ],
        )]),
        None,
    )
    .await;
    assert_eq!(ran.report.outcome, Outcome::Passed);
    assert_eq!(*ran.fake.max_running.lock().unwrap(), 3);
}

/// (command, timeout, expected status, expected outcome)
#[tokio::test]
async fn step_endings_map_to_statuses_and_outcomes() {
    let cases: Vec<(&[&str], u64, Status, Outcome)> = vec![
        (&["true"], 5_000, Status::Passed, Outcome::Passed),
        (&["exit", "2"], 5_000, Status::Failed, Outcome::Failed),
        (&["sleep", "10000"], 50, Status::TimedOut, Outcome::Failed),
        (&["missing"], 5_000, Status::Failed, Outcome::Failed),
    ];
    for (command, timeout_ms, status, outcome) in cases {
        let mut s = step("s", command);
        s.timeout = Duration::from_millis(timeout_ms);
        let ran = run_with(
            FakeRuntime::with_images(&[BASE]),
            pipeline(vec![tier("t", vec![s])]),
            None,
        )
        .await;
        assert_eq!(
            finished_steps(&ran.events),
            vec![("s".to_string(), status)],
            "{command:?}"
        );
        assert_eq!(ran.report.outcome, outcome, "{command:?}");
        assert_eq!(ran.fake.live_containers(), 0, "{command:?}");
    }
}

/// Exit 137 says whether the OOM killer or someone else's SIGKILL ended the step.
#[tokio::test]
async fn a_killed_step_says_whether_the_oom_killer_did_it() {
    for (command, says) in [
        (&["oom"][..], "OOM killer (exit 137, OOMKilled)"),
        (
            &["exit", "137"][..],
            "killed by SIGKILL (exit 137), not by the OOM killer",
        ),
        (&["exit", "3"][..], "exited with code 3"),
    ] {
        let ran = run_with(
            FakeRuntime::with_images(&[BASE]),
            pipeline(vec![tier("t", vec![step("s", command)])]),
            None,
        )
        .await;
        let error = ran
            .events
            .iter()
            .find_map(|e| match e {
                Event::StepFinished { error, .. } => error.clone(),
                _ => None,
            })
            .unwrap();
        assert!(error.contains(says), "{command:?}: {error}");
    }
}

#[tokio::test]
async fn a_missing_image_is_an_infrastructure_error_before_anything_starts() {
    let ran = run_with(
        FakeRuntime::with_images(&[]),
        pipeline(vec![tier("t", vec![step("s", &["true"])])]),
        None,
    )
    .await;
    assert_eq!(ran.report.outcome, Outcome::Errored);
    assert_eq!(ran.report.outcome.exit_code(), 3);
    let error = ran.report.error.unwrap();
    assert!(
        error.contains("drydock/python:3.11") && error.contains("drydock images bootstrap"),
        "{error}"
    );
    assert!(ran.fake.journal().is_empty(), "{:?}", ran.fake.journal());

    // A registry image that is absent is pulled; a failed pull is the same error class.
    let mut registry_step = step("s", &["true"]);
    registry_step.image = ImageSource::Image("registry.example/team/tool:1".to_string());
    let ran = run_with(
        FakeRuntime::with_images(&[]),
        pipeline(vec![tier("t", vec![registry_step])]),
        None,
    )
    .await;
    assert_eq!(ran.report.outcome, Outcome::Errored);
    assert!(ran.report.error.unwrap().contains("pulling it failed"));
    assert_eq!(
        ran.fake.journal(),
        vec!["pull registry.example/team/tool:1"]
    );
}

#[tokio::test]
async fn services_start_while_the_image_builds() {
    let mut p = pipeline(vec![
        TierSpec {
            when: Default::default(),
            name: "build".into(),
            build: vec!["test".into()],
            services: vec![],
            steps: vec![],
        },
        TierSpec {
            when: Default::default(),
            name: "integration".into(),
            build: vec![],
            services: vec!["db".into()],
            steps: vec![StepSpec {
                image: ImageSource::Build("test".into()),
                ..step("it", &["true"])
            }],
        },
    ]);
    p.services.push(db_service());
    let fake = FakeRuntime {
        build_delay: Duration::from_millis(100),
        ..FakeRuntime::with_images(&[BASE, "drydock/postgres:15"])
    };
    let ran = run_with(fake, p, None).await;
    assert_eq!(
        ran.report.outcome,
        Outcome::Passed,
        "{:?}",
        ran.report.error
    );
    let journal = ran.fake.journal();
    let position = |entry: &str| journal.iter().position(|j| j.starts_with(entry)).unwrap();
    assert!(
        position("start drydock-r1-svc-db") < position("built test"),
        "{journal:?}"
    );
    assert!(ran
        .events
        .iter()
        .any(|e| matches!(e, Event::ServiceReady { service, .. } if service == "db")));
    assert_eq!(ran.fake.live_containers(), 0);
}

#[tokio::test]
async fn a_service_that_never_gets_ready_errors_its_tier_within_the_deadline() {
    let mut p = pipeline(vec![TierSpec {
        when: Default::default(),
        name: "integration".into(),
        build: vec![],
        services: vec!["db".into()],
        steps: vec![step("it", &["true"])],
    }]);
    p.services.push(db_service());
    let fake = FakeRuntime {
        never_ready: HashSet::from(["db".to_string()]),
        ..FakeRuntime::with_images(&[BASE, "drydock/postgres:15"])
    };
    let ran = run_with(fake, p, None).await;
    assert_eq!(ran.report.outcome, Outcome::Errored);
    let error = ran.report.error.unwrap();
    assert!(
        error.contains("not ready after 300ms") && error.contains("connection refused"),
        "{error}"
    );
    assert!(ran.events.iter().any(
        |e| matches!(e, Event::ServiceFailed { log_tail, .. } if log_tail == &["last words"])
    ));
    assert_eq!(
        finished_steps(&ran.events),
        vec![("it".to_string(), Status::Skipped)]
    );
    assert_eq!(ran.fake.live_containers(), 0);
}

#[tokio::test]
async fn a_failed_build_fails_its_tier_and_names_the_instruction() {
    let p = pipeline(vec![
        TierSpec {
            when: Default::default(),
            name: "build".into(),
            build: vec!["production".into(), "test".into()],
            services: vec![],
            steps: vec![],
        },
        tier("after", vec![step("s", &["true"])]),
    ]);
    let fake = FakeRuntime {
        failing_builds: HashSet::from(["production".to_string()]),
        ..FakeRuntime::with_images(&[BASE])
    };
    let ran = run_with(fake, p, None).await;
    assert_eq!(ran.report.outcome, Outcome::Failed);
    assert!(ran.events.iter().any(|e| matches!(e, Event::StepFinished { error: Some(error), .. } if error.contains("at `RUN false`"))));
    // The summary names the cause found in the build's output.
    assert!(ran.events.iter().any(|e| matches!(e, Event::StepFinished { cause, .. } if cause == &["E: Unable to locate package nope"])));
    assert_eq!(
        finished_steps(&ran.events),
        vec![
            ("build production".to_string(), Status::Failed),
            ("build test".to_string(), Status::Skipped),
            ("s".to_string(), Status::Skipped)
        ]
    );
}

#[tokio::test]
async fn cancelling_stops_running_steps_and_removes_everything() {
    let ran = run_with(
        FakeRuntime::with_images(&[BASE]),
        pipeline(vec![
            tier("slow", vec![step("s", &["sleep", "10000"])]),
            tier("next", vec![step("n", &["true"])]),
        ]),
        Some(Duration::from_millis(100)),
    )
    .await;
    assert_eq!(ran.report.outcome, Outcome::Interrupted);
    assert_eq!(ran.report.outcome.exit_code(), 130);
    assert!(ran
        .fake
        .journal()
        .iter()
        .any(|j| j == "stop drydock-r1-slow-s"));
    assert_eq!(
        finished_steps(&ran.events),
        vec![
            ("s".to_string(), Status::Cancelled),
            ("n".to_string(), Status::Skipped)
        ]
    );
    assert_eq!(ran.fake.live_containers(), 0);
}

#[tokio::test]
async fn a_green_run_tags_the_release_target_by_sha_run_and_channel() {
    let mut p = pipeline(vec![TierSpec {
        when: Default::default(),
        name: "build".into(),
        build: vec!["production".into()],
        services: vec![],
        steps: vec![],
    }]);
    p.release = Some(ReleaseSpec {
        target: "production".into(),
        name: "demo".into(),
        channel: "staging".into(),
        registry: None,
    });
    let ran = run_with(FakeRuntime::with_images(&[BASE]), p, None).await;
    assert_eq!(ran.report.outcome, Outcome::Passed);
    let released = ran.report.released.unwrap();
    assert_eq!(
        released.tags,
        vec!["demo:abc123", "demo:r1", "demo:staging"]
    );
    assert_eq!(released.image_id, "img-production");
    let tags: Vec<_> = ran
        .fake
        .journal()
        .into_iter()
        .filter(|j| j.starts_with("tag "))
        .collect();
    assert_eq!(tags.len(), 3);
    // The release is recorded in the ledger, which the channel tag follows.
    let ledger = crate::release::Ledger::open(&ran.ledger).unwrap();
    let entry = ledger.current("demo", "staging").unwrap().unwrap();
    assert_eq!(entry, released.entry);
    assert_eq!(
        (entry.git_sha.as_deref(), entry.run_id.as_deref()),
        (Some("abc123"), Some("r1"))
    );
}

/// Two signals 10 ms apart while a green run releases: the run either
/// released — then it passed (exit 0, no "interrupted"), the ledger records
/// it and the channel tag follows — or it released nothing at all (exit 130,
/// no entry, the channel tag where it was).
#[tokio::test]
async fn signals_during_the_release_never_split_tag_and_ledger() {
    // (where the signals come, registry?, released?)
    let cases = [
        ("demo:abc123", None, true),  // immutable tags: the release goes on
        ("demo:staging", None, true), // after the commit point
        ("5000/demo:abc123", Some("127.0.0.1:5000"), false), // a cancellable push
        ("5000/demo:staging", Some("127.0.0.1:5000"), false),
    ];
    for (at, registry, releases) in cases {
        let mut p = release_pipeline(registry.unwrap_or("x"));
        if registry.is_none() {
            p.release.as_mut().unwrap().registry = None;
        }
        let cancel = RunCancel::new();
        let mut fake = FakeRuntime::with_images(&[BASE]);
        fake.tags
            .get_mut()
            .unwrap()
            .insert("demo:staging".into(), "img-previous".into());
        fake.signals_on_tag = Some((at.to_string(), cancel.clone()));
        let ran = run_cancelled_by(fake, p, None, cancel).await;
        let ledger = crate::release::Ledger::open(&ran.ledger).unwrap();
        let current = ledger.current("demo", "staging").unwrap();
        let tag = ran.fake.tags.lock().unwrap()["demo:staging"].clone();
        let finished = ran.events.last().unwrap().clone();
        if releases {
            assert_eq!(
                ran.report.outcome,
                Outcome::Passed,
                "{at}: {:?}",
                ran.report
            );
            assert_eq!(ran.report.outcome.exit_code(), 0);
            assert_eq!(ran.report.error, None, "{at}");
            assert_eq!(current.unwrap().image_id, "img-production", "{at}");
            assert_eq!(tag, "img-production", "{at}");
            assert!(
                matches!(
                    finished,
                    Event::RunFinished {
                        outcome: Outcome::Passed,
                        error: None,
                        ..
                    }
                ),
                "{at}: {finished:?}"
            );
        } else {
            assert_eq!(
                ran.report.outcome,
                Outcome::Interrupted,
                "{at}: {:?}",
                ran.report
            );
            assert_eq!(ran.report.outcome.exit_code(), 130);
            assert!(ran.report.released.is_none(), "{at}");
            assert_eq!(current, None, "{at}");
            assert_eq!(tag, "img-previous", "{at}");
        }
        assert_eq!(ran.fake.live_containers(), 0);
    }
}

fn release_pipeline(registry: &str) -> Pipeline {
    let mut p = pipeline(vec![TierSpec {
        when: Default::default(),
        name: "build".into(),
        build: vec!["production".into()],
        services: vec![],
        steps: vec![],
    }]);
    p.release = Some(ReleaseSpec {
        target: "production".into(),
        name: "demo".into(),
        channel: "staging".into(),
        registry: Some(registry.into()),
    });
    p
}

#[tokio::test]
async fn a_green_run_pushes_to_the_registry_before_moving_the_channel() {
    let ran = run_with(
        FakeRuntime::with_images(&[BASE]),
        release_pipeline("127.0.0.1:5000/team"),
        None,
    )
    .await;
    assert_eq!(
        ran.report.outcome,
        Outcome::Passed,
        "{:?}",
        ran.report.error
    );
    let released = ran.report.released.unwrap();
    let pushed = vec![
        "127.0.0.1:5000/team/demo:abc123",
        "127.0.0.1:5000/team/demo:r1",
        "127.0.0.1:5000/team/demo:staging",
    ];
    assert_eq!(released.pushed, pushed);
    let journal: Vec<String> = ran
        .fake
        .journal()
        .into_iter()
        .filter(|j| j.starts_with("tag ") || j.starts_with("push "))
        .collect();
    assert_eq!(
        journal,
        vec![
            "tag img-production demo:abc123",
            "tag img-production demo:r1",
            "tag img-production 127.0.0.1:5000/team/demo:abc123",
            "push 127.0.0.1:5000/team/demo:abc123",
            "tag img-production 127.0.0.1:5000/team/demo:r1",
            "push 127.0.0.1:5000/team/demo:r1",
            "tag img-production 127.0.0.1:5000/team/demo:staging",
            "push 127.0.0.1:5000/team/demo:staging",
            "tag img-production demo:staging",
        ]
    );
    let events: Vec<&str> = ran
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Pushed {
                reference,
                registry,
            } => {
                assert_eq!(registry, "127.0.0.1:5000");
                Some(reference.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(events, pushed);
    let pushed_at = ran
        .events
        .iter()
        .rposition(|e| matches!(e, Event::Pushed { .. }))
        .unwrap();
    let released_at = ran
        .events
        .iter()
        .position(|e| matches!(e, Event::Released { .. }))
        .unwrap();
    assert!(pushed_at < released_at);
}

#[tokio::test]
async fn a_refused_push_errors_the_run_and_moves_no_channel() {
    let mut fake = FakeRuntime::with_images(&[BASE]);
    // An earlier release left the registry's channel tag on another image.
    fake.tags
        .get_mut()
        .unwrap()
        .insert("127.0.0.1:5000/demo:staging".into(), "img-previous".into());
    fake.tags
        .get_mut()
        .unwrap()
        .insert("demo:staging".into(), "img-previous".into());
    fake.refuse_push = Some((
        ":staging".into(),
        "unauthorized: authentication required".into(),
    ));
    let ran = run_with(fake, release_pipeline("127.0.0.1:5000"), None).await;
    assert_eq!(ran.report.outcome, Outcome::Errored);
    assert_eq!(ran.report.outcome.exit_code(), 3);
    assert!(ran.report.released.is_none());
    let error = ran.report.error.unwrap();
    assert!(error.contains("authentication failed"), "{error}");
    assert!(error.contains("127.0.0.1:5000/demo:staging"), "{error}");
    assert!(!ran
        .events
        .iter()
        .any(|e| matches!(e, Event::Released { .. })));
    let tags = ran.fake.tags.lock().unwrap().clone();
    // Nothing moved: both channel tags point where they did; the registry
    // tags this run made locally are gone.
    assert_eq!(tags["demo:staging"], "img-previous");
    assert_eq!(tags["127.0.0.1:5000/demo:staging"], "img-previous");
    assert!(!tags.contains_key("127.0.0.1:5000/demo:abc123"));
    assert!(!tags.contains_key("127.0.0.1:5000/demo:r1"));
    assert!(matches!(
        ran.events.last(),
        Some(Event::RunFinished {
            outcome: Outcome::Errored,
            error: Some(_),
            ..
        })
    ));
}

#[tokio::test]
async fn step_output_arrives_as_log_events_and_the_run_is_bracketed() {
    let ran = run_with(
        FakeRuntime::with_images(&[BASE]),
        pipeline(vec![tier(
            "t",
            vec![step("hello", &["echo", "hello", "world"])],
        )]),
        None,
    )
    .await;
    assert!(matches!(ran.events.first(), Some(Event::RunStarted { .. })));
    assert!(matches!(
        ran.events.last(),
        Some(Event::RunFinished {
            outcome: Outcome::Passed,
            ..
        })
    ));
    assert!(ran
        .events
        .iter()
        .any(|e| matches!(e, Event::Log { line, .. } if line == "hello world")));
}

#[tokio::test]
async fn later_tiers_images_build_while_earlier_tiers_steps_run() {
    let p = pipeline(vec![
        TierSpec {
            when: Default::default(),
            name: "lint".into(),
            build: vec!["dev".into()],
            services: vec![],
            steps: vec![StepSpec {
                image: ImageSource::Build("dev".into()),
                ..step("s", &["sleep", "300"])
            }],
        },
        TierSpec {
            when: Default::default(),
            name: "build".into(),
            build: vec!["production".into()],
            services: vec![],
            steps: vec![],
        },
    ]);
    let ran = run_with(FakeRuntime::with_images(&[BASE]), p, None).await;
    assert_eq!(
        ran.report.outcome,
        Outcome::Passed,
        "{:?}",
        ran.report.error
    );
    let journal = ran.fake.journal();
    let position = |entry: &str| journal.iter().position(|j| j == entry).unwrap();
    assert!(
        position("built production") < position("exited drydock-r1-lint-s"),
        "{journal:?}"
    );
    // Each build is still reported by its own tier, in order.
    let builds: Vec<(String, String)> = ran
        .events
        .iter()
        .filter_map(|e| match e {
            Event::StepFinished { tier, step, .. } => Some((tier.clone(), step.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        builds,
        vec![
            ("lint".to_string(), "build dev".to_string()),
            ("lint".to_string(), "s".to_string()),
            ("build".to_string(), "build production".to_string())
        ]
    );
}

#[tokio::test]
async fn a_failing_tier_stops_the_builds_ahead_of_it() {
    let p = pipeline(vec![
        tier("unit", vec![step("broken", &["exit", "1"])]),
        TierSpec {
            when: Default::default(),
            name: "build".into(),
            build: vec!["production".into(), "test".into()],
            services: vec![],
            steps: vec![],
        },
    ]);
    let fake = FakeRuntime {
        build_delay: Duration::from_millis(500),
        ..FakeRuntime::with_images(&[BASE])
    };
    let ran = run_with(fake, p, None).await;
    assert_eq!(ran.report.outcome, Outcome::Failed);
    let journal = ran.fake.journal();
    assert!(
        journal.contains(&"build production".to_string()),
        "{journal:?}"
    );
    assert!(
        !journal
            .iter()
            .any(|j| j.starts_with("built") || j == "build test"),
        "{journal:?}"
    );
}

// ----- needs, when, retry, allow_failure --------------------------------------

fn position(events: &[Event], matches: impl Fn(&Event) -> bool) -> usize {
    events
        .iter()
        .position(matches)
        .unwrap_or_else(|| panic!("no such event in {events:#?}"))
}

fn need(tier: &str, step: &str) -> crate::pipeline::NeedSpec {
    crate::pipeline::NeedSpec {
        tier: tier.into(),
        step: step.into(),
    }
}

#[tokio::test]
async fn a_step_with_needs_starts_before_an_unrelated_slow_step_of_an_earlier_tier_ends() {
    let mut follow = step("follow", &["sleep", "10"]);
    follow.needs = Some(vec![need("build", "fast")]);
    let ran = run_with(
        FakeRuntime::with_images(&[BASE]),
        pipeline(vec![
            tier(
                "build",
                vec![
                    step("fast", &["sleep", "10"]),
                    step("slow", &["sleep", "400"]),
                ],
            ),
            tier("test", vec![follow, step("after", &["true"])]),
        ]),
        None,
    )
    .await;
    assert_eq!(
        ran.report.outcome,
        Outcome::Passed,
        "{:?}",
        ran.report.error
    );
    let follow_started = position(
        &ran.events,
        |e| matches!(e, Event::StepStarted { step, .. } if step == "follow"),
    );
    let slow_finished = position(
        &ran.events,
        |e| matches!(e, Event::StepFinished { step, .. } if step == "slow"),
    );
    let after_started = position(
        &ran.events,
        |e| matches!(e, Event::StepStarted { step, .. } if step == "after"),
    );
    assert!(follow_started < slow_finished, "{:#?}", ran.events);
    // A step without needs still waits for every earlier tier.
    assert!(after_started > slow_finished);
    // Each tier is announced once and finishes after its steps.
    assert_eq!(
        tier_statuses(&ran.events),
        vec![
            ("build".to_string(), Status::Passed),
            ("test".to_string(), Status::Passed)
        ]
    );
}

#[tokio::test]
async fn a_failed_need_skips_its_dependents_with_the_reason() {
    let mut dependent = step("dependent", &["true"]);
    dependent.needs = Some(vec![need("build", "broken")]);
    let ran = run_with(
        FakeRuntime::with_images(&[BASE]),
        pipeline(vec![
            tier("build", vec![step("broken", &["exit", "2"])]),
            tier("test", vec![dependent]),
        ]),
        None,
    )
    .await;
    assert_eq!(ran.report.outcome, Outcome::Failed);
    let reason = ran
        .events
        .iter()
        .find_map(|e| match e {
            Event::StepSkipped { step, reason, .. } if step == "dependent" => reason.clone(),
            _ => None,
        })
        .unwrap();
    assert!(reason.contains("build/broken failed"), "{reason}");
}

#[tokio::test]
async fn when_decides_what_runs_after_a_failure() {
    let with_when = |name: &str, when: crate::pipeline::When| {
        let mut s = step(name, &["true"]);
        s.when = when;
        s
    };
    use crate::pipeline::When;
    for (broken, expected) in [
        (
            true,
            vec![
                ("s", Status::Failed),
                ("skipped-on-success", Status::Skipped),
                ("on-failure", Status::Passed),
                ("always", Status::Passed),
            ],
        ),
        (
            false,
            vec![
                ("s", Status::Passed),
                ("skipped-on-success", Status::Passed),
                ("on-failure", Status::Skipped),
                ("always", Status::Passed),
            ],
        ),
    ] {
        let first = if broken {
            step("s", &["exit", "1"])
        } else {
            step("s", &["true"])
        };
        let ran = run_with(
            FakeRuntime::with_images(&[BASE]),
            pipeline(vec![
                tier("t", vec![first]),
                tier(
                    "after",
                    vec![
                        with_when("skipped-on-success", When::OnSuccess),
                        with_when("on-failure", When::OnFailure),
                        with_when("always", When::Always),
                    ],
                ),
            ]),
            None,
        )
        .await;
        let mut got = finished_steps(&ran.events);
        got.sort_by(|a, b| a.0.cmp(&b.0));
        let mut expected: Vec<(String, Status)> = expected
            .into_iter()
            .map(|(s, st)| (s.to_string(), st))
            .collect();
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got, expected, "broken={broken}");
        assert_eq!(
            ran.report.outcome,
            if broken {
                Outcome::Failed
            } else {
                Outcome::Passed
            }
        );
    }
}

#[tokio::test]
async fn always_steps_run_after_a_cancel_and_the_run_stays_interrupted() {
    let mut always = step("dump-logs", &["echo", "dumped"]);
    always.when = crate::pipeline::When::Always;
    let ran = run_with(
        FakeRuntime::with_images(&[BASE]),
        pipeline(vec![
            tier("slow", vec![step("s", &["sleep", "10000"])]),
            tier("next", vec![step("n", &["true"])]),
            tier("report", vec![always]),
        ]),
        Some(Duration::from_millis(100)),
    )
    .await;
    assert_eq!(ran.report.outcome, Outcome::Interrupted);
    assert_eq!(ran.report.cancel_reason, Some(CancelReason::Signal));
    assert_eq!(
        finished_steps(&ran.events),
        vec![
            ("s".to_string(), Status::Cancelled),
            ("n".to_string(), Status::Skipped),
            ("dump-logs".to_string(), Status::Passed),
        ]
    );
    assert!(ran
        .events
        .iter()
        .any(|e| matches!(e, Event::Log { line, .. } if line == "dumped")));
    assert_eq!(ran.fake.live_containers(), 0);
}

#[tokio::test]
async fn a_step_passing_on_a_retry_is_flaky_and_its_failed_attempt_is_reported() {
    let mut flaky = step("flaky", &["flaky", "1"]);
    flaky.retry = 1;
    let mut hopeless = step("hopeless", &["exit", "1"]);
    hopeless.retry = 2;
    hopeless.allow_failure = true;
    let ran = run_with(
        FakeRuntime::with_images(&[BASE]),
        pipeline(vec![tier("t", vec![flaky, hopeless])]),
        None,
    )
    .await;
    assert_eq!(
        ran.report.outcome,
        Outcome::Passed,
        "{:?}",
        ran.report.error
    );
    let retries: Vec<(String, u32)> = ran
        .events
        .iter()
        .filter_map(|e| match e {
            Event::StepRetrying { step, attempt, .. } => Some((step.clone(), *attempt)),
            _ => None,
        })
        .collect();
    let mut retries_sorted = retries.clone();
    retries_sorted.sort();
    assert_eq!(
        retries_sorted,
        vec![
            ("flaky".to_string(), 1),
            ("hopeless".to_string(), 1),
            ("hopeless".to_string(), 2)
        ]
    );
    let finished: Vec<(String, Status, u32, bool)> = ran
        .events
        .iter()
        .filter_map(|e| match e {
            Event::StepFinished {
                step,
                status,
                attempts,
                allowed_failure,
                ..
            } => Some((step.clone(), *status, *attempts, *allowed_failure)),
            _ => None,
        })
        .collect();
    assert!(finished.contains(&("flaky".to_string(), Status::Flaky, 2, false)));
    assert!(finished.contains(&("hopeless".to_string(), Status::Failed, 3, true)));
    assert_eq!(
        tier_statuses(&ran.events),
        vec![("t".to_string(), Status::Passed)]
    );
    // Each attempt had its own container, all removed.
    assert!(ran
        .fake
        .journal()
        .iter()
        .any(|j| j == "create drydock-r1-t-flaky-attempt2"));
    assert_eq!(ran.fake.live_containers(), 0);
}

/// A planned one-tier, one-step pipeline on the fake engine's base image,
/// with run id `run_id` and its results folder and ledger under `dir`
/// (for the session's tests).
pub(crate) fn one_step_plan(
    run_id: &str,
    dir: &std::path::Path,
) -> (crate::plan::Plan, RunOptions) {
    let pipeline = pipeline(vec![tier("unit", vec![step("pytest", &["pytest"])])]);
    let options = RunOptions {
        run_id: run_id.to_string(),
        results_dir: dir.join("results").join(run_id),
        trust: Trust::default(),
        git: GitInfo::default(),
        stop_grace: Duration::from_secs(1),
        release: ReleaseChoice::Off,
        no_retry: false,
        ledger: dir.join("ledger.sqlite"),
        release_fence: None,
        results_store: None,
        no_reuse: false,
    };
    (
        crate::plan::plan(&pipeline, &options.plan_options()),
        options,
    )
}

/// The step's `timings` in its `step_finished`.
fn timings_of(events: &[Event], name: &str) -> Option<crate::events::StepTimings> {
    events.iter().find_map(|e| match e {
        Event::StepFinished { step, timings, .. } if step == name => *timings,
        _ => None,
    })
}

#[tokio::test]
async fn a_later_tiers_containers_start_ahead_and_their_commands_run_through_exec() {
    let ran = run_with(
        FakeRuntime::with_images(&[BASE]),
        pipeline(vec![
            tier("lint", vec![step("slow", &["sleep", "300"])]),
            tier(
                "unit",
                vec![
                    step("quick", &["true"]),
                    step("talk", &["echo", "hello", "there"]),
                ],
            ),
        ]),
        None,
    )
    .await;
    assert_eq!(
        ran.report.outcome,
        Outcome::Passed,
        "{:?}",
        ran.report.error
    );
    let journal = ran.fake.journal();
    let position = |entry: &str| {
        journal
            .iter()
            .position(|j| j == entry)
            .unwrap_or_else(|| panic!("no {entry} in {journal:?}"))
    };
    // The next tier's containers exist and run (idle) before its turn…
    let slow_ended = position("exited drydock-r1-lint-slow");
    let slow = timings_of(&ran.events, "slow").expect("timings");
    for name in ["quick", "talk"] {
        assert!(position(&format!("create drydock-r1-unit-{name}-ahead")) < slow_ended);
        assert!(position(&format!("start drydock-r1-unit-{name}-ahead")) < slow_ended);
        // …and its commands run in them through exec at its turn.
        assert!(position(&format!("exec drydock-r1-unit-{name}-ahead")) > slow_ended);
        // Each step's container is its own and is removed after it.
        assert!(position(&format!("remove drydock-r1-unit-{name}-ahead")) > slow_ended);
        let timings = timings_of(&ran.events, name).expect("timings");
        assert!(timings.started_ahead, "{timings:?}");
    }
    // A step runnable at once takes the ordinary path (nothing to gain).
    assert!(!slow.started_ahead);
    // Nothing is created at the step's turn.
    assert!(
        !journal.iter().any(|j| j == "create drydock-r1-unit-quick"),
        "{journal:?}"
    );
    // The exec's output streams as a container's logs do.
    assert!(ran.events.iter().any(|e| matches!(e,
        Event::Log { step, line, .. } if step == "talk" && line == "hello there")));
    // The ordinary path reports its own breakdown.
    assert!(slow.command_ms >= 300, "{slow:?}");
    assert_eq!(ran.fake.live_containers(), 0);
}

#[tokio::test]
async fn at_most_max_ahead_containers_wait_idle_at_once() {
    let many: Vec<StepSpec> = (0..7)
        .map(|i| step(&format!("s{i}"), &["sleep", "50"]))
        .collect();
    let ran = run_with(
        FakeRuntime::with_images(&[BASE]),
        pipeline(vec![
            tier("lint", vec![step("slow", &["sleep", "300"])]),
            tier("unit", many),
        ]),
        None,
    )
    .await;
    assert_eq!(
        ran.report.outcome,
        Outcome::Passed,
        "{:?}",
        ran.report.error
    );
    let journal = ran.fake.journal();
    // Idle containers: created ahead, not yet exec'd into (nor removed).
    let mut idle = std::collections::HashSet::new();
    let mut most = 0;
    for entry in &journal {
        if let Some(name) = entry
            .strip_prefix("create ")
            .filter(|n| n.ends_with("-ahead"))
        {
            idle.insert(name.to_string());
        } else if let Some(name) = entry
            .strip_prefix("exec ")
            .or_else(|| entry.strip_prefix("remove "))
        {
            idle.remove(name);
        }
        most = most.max(idle.len());
    }
    assert_eq!(most, ahead::MAX_AHEAD, "{journal:?}");
    // The others run in containers created at their turn; every step ran.
    assert_eq!(
        finished_steps(&ran.events)
            .iter()
            .filter(|(_, s)| *s == Status::Passed)
            .count(),
        8
    );
    assert!(
        journal
            .iter()
            .any(|j| j.starts_with("create drydock-r1-unit-s") && !j.ends_with("-ahead")),
        "{journal:?}"
    );
    assert_eq!(ran.fake.live_containers(), 0);
}

#[tokio::test]
async fn containers_started_ahead_for_a_skipped_tier_are_removed_unused() {
    let ran = run_with(
        FakeRuntime::with_images(&[BASE]),
        pipeline(vec![
            tier(
                "unit",
                vec![
                    step("slow", &["sleep", "200"]),
                    step("broken", &["exit", "1"]),
                ],
            ),
            tier("e2e", vec![step("journey", &["true"])]),
        ]),
        None,
    )
    .await;
    assert_eq!(ran.report.outcome, Outcome::Failed);
    let journal = ran.fake.journal();
    let position = |entry: &str| journal.iter().position(|j| j == entry);
    let created = position("create drydock-r1-e2e-journey-ahead").expect("started ahead");
    let removed = position("remove drydock-r1-e2e-journey-ahead").expect("removed");
    assert!(created < removed);
    // Removed as soon as its tier was skipped, before the run's sweep.
    let slow_ended = position("exited drydock-r1-unit-slow").expect("slow ran");
    assert!(removed < slow_ended, "{journal:?}");
    assert!(!journal
        .iter()
        .any(|j| j.starts_with("exec") && j.contains("journey")));
    assert!(finished_steps(&ran.events).contains(&("journey".to_string(), Status::Skipped)));
    assert_eq!(ran.fake.live_containers(), 0);
}

#[tokio::test]
async fn a_container_started_ahead_that_cannot_exec_falls_back_to_a_fresh_one() {
    let ran = run_with(
        FakeRuntime {
            refuse_exec: true,
            ..FakeRuntime::with_images(&[BASE])
        },
        pipeline(vec![
            tier("lint", vec![step("slow", &["sleep", "100"])]),
            tier("unit", vec![step("talk", &["echo", "hi"])]),
        ]),
        None,
    )
    .await;
    assert_eq!(
        ran.report.outcome,
        Outcome::Passed,
        "{:?}",
        ran.report.error
    );
    let journal = ran.fake.journal();
    assert!(
        journal.iter().any(|j| j == "start drydock-r1-unit-talk"),
        "{journal:?}"
    );
    assert!(
        journal
            .iter()
            .any(|j| j == "remove drydock-r1-unit-talk-ahead"),
        "{journal:?}"
    );
    let timings = timings_of(&ran.events, "talk").expect("timings");
    assert!(!timings.started_ahead);
    assert!(ran.events.iter().any(|e| matches!(e,
        Event::Log { step, line, .. } if step == "talk" && line == "hi")));
    assert_eq!(ran.fake.live_containers(), 0);
}

#[tokio::test]
async fn a_step_started_ahead_is_stopped_by_a_cancel_and_its_kills_are_explained() {
    // Cancelled while its command runs through exec.
    let ran = run_with(
        FakeRuntime::with_images(&[BASE]),
        pipeline(vec![
            tier("first", vec![step("quick", &["sleep", "100"])]),
            tier("slow", vec![step("s", &["sleep", "10000"])]),
            tier("next", vec![step("n", &["true"])]),
        ]),
        Some(Duration::from_millis(400)),
    )
    .await;
    assert_eq!(ran.report.outcome, Outcome::Interrupted);
    let journal = ran.fake.journal();
    assert!(
        journal.iter().any(|j| j == "exec drydock-r1-slow-s-ahead"),
        "{journal:?}"
    );
    assert!(
        journal.iter().any(|j| j == "stop drydock-r1-slow-s-ahead"),
        "{journal:?}"
    );
    assert!(finished_steps(&ran.events).contains(&("s".to_string(), Status::Cancelled)));
    assert!(timings_of(&ran.events, "s").expect("timings").started_ahead);
    assert_eq!(ran.fake.live_containers(), 0);

    // Exit 137 through exec: the OOM killer when the engine says so; else
    // both causes are named (the engine may not mark an exec's OOM kill).
    for (command, says) in [
        (&["oom"][..], "OOM killer (exit 137, OOMKilled)"),
        (
            &["exit", "137"][..],
            "by the kernel's OOM killer (a process",
        ),
        (&["exit", "3"][..], "exited with code 3"),
    ] {
        let ran = run_with(
            FakeRuntime::with_images(&[BASE]),
            pipeline(vec![
                tier("first", vec![step("quick", &["sleep", "100"])]),
                tier("t", vec![step("s", command)]),
            ]),
            None,
        )
        .await;
        assert!(timings_of(&ran.events, "s").expect("timings").started_ahead);
        let error = ran
            .events
            .iter()
            .find_map(|e| match e {
                Event::StepFinished { step, error, .. } if step == "s" => error.clone(),
                _ => None,
            })
            .unwrap();
        assert!(error.contains(says), "{command:?}: {error}");
    }
}

/// Runs `pipeline` on `fake` as run `run_id`, storing and looking up step
/// results in `store` (see `crate::reuse`).
async fn run_storing(
    fake: Arc<FakeRuntime>,
    pipeline: &Pipeline,
    run_id: &str,
    store: &std::path::Path,
    no_reuse: bool,
) -> (RunReport, Vec<Event>) {
    let results = tempfile::tempdir().unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let collector = tokio::spawn(async move {
        let mut events = Vec::new();
        while let Some(e) = rx.recv().await {
            events.push(e);
        }
        events
    });
    let options = RunOptions {
        run_id: run_id.to_string(),
        results_dir: results.path().to_path_buf(),
        trust: Trust::default(),
        git: GitInfo::default(),
        stop_grace: Duration::from_secs(1),
        release: ReleaseChoice::Off,
        no_retry: false,
        ledger: results.path().join("ledger.sqlite"),
        release_fence: None,
        results_store: Some(store.to_path_buf()),
        no_reuse,
    };
    let plan = crate::plan::plan(pipeline, &options.plan_options());
    let report = run_plan(&plan, fake, options.exec_options(), tx, RunCancel::new()).await;
    (report, collector.await.unwrap())
}

/// `(step, reused_from)` of every finished step.
fn reused(events: &[Event]) -> Vec<(String, Option<String>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::StepFinished {
                step, reused_from, ..
            } => Some((step.clone(), reused_from.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_passed_step_without_network_is_replayed_without_a_container() {
    let fake = FakeRuntime::with_images(&[BASE]);
    fake.tags
        .lock()
        .unwrap()
        .insert(BASE.to_string(), "sha256:base".to_string());
    let fake = Arc::new(fake);
    let offline = |name: &str, command: &[&str]| StepSpec {
        network: false,
        ..step(name, command)
    };
    let mut flaky = offline("flaky", &["flaky", "1"]);
    flaky.retry = 1;
    let networked = step("online", &["echo", "net"]);
    let pipeline = pipeline(vec![tier(
        "t",
        vec![
            offline("hello", &["echo", "hi"]),
            offline("bad", &["exit", "1"]),
            flaky,
            networked,
        ],
    )]);
    let state = tempfile::tempdir().unwrap();
    let store = crate::reuse::store_dir(state.path());
    let created = |fake: &FakeRuntime, run: &str, step: &str| {
        fake.journal()
            .iter()
            .any(|j| j.starts_with("create ") && j.contains(run) && j.contains(step))
    };

    let (first, events) = run_storing(fake.clone(), &pipeline, "first", &store, false).await;
    assert_eq!(first.outcome, Outcome::Failed);
    assert!(reused(&events).iter().all(|(_, from)| from.is_none()));

    let (_, events) = run_storing(fake.clone(), &pipeline, "second", &store, false).await;
    let by_step: HashMap<String, Option<String>> = reused(&events).into_iter().collect();
    assert_eq!(by_step["hello"].as_deref(), Some("first"), "{events:?}");
    assert!(
        !created(&fake, "second", "hello"),
        "no container for a replay"
    );
    let replayed_line = events
        .iter()
        .any(|e| matches!(e, Event::Log { step, line, .. } if step == "hello" && line == "hi"));
    assert!(replayed_line, "its output is replayed: {events:?}");
    for step in ["bad", "flaky", "online"] {
        assert_eq!(by_step[step], None, "{step} runs again");
        assert!(created(&fake, "second", step), "{step}");
    }

    let (_, events) = run_storing(fake.clone(), &pipeline, "third", &store, true).await;
    assert!(reused(&events).iter().all(|(_, from)| from.is_none()));
    assert!(created(&fake, "third", "hello"), "--no-reuse runs it");

    // Another image id behind the same tag is another key.
    fake.tags
        .lock()
        .unwrap()
        .insert(BASE.to_string(), "sha256:rebuilt".to_string());
    let (_, events) = run_storing(fake.clone(), &pipeline, "fourth", &store, false).await;
    let by_step: HashMap<String, Option<String>> = reused(&events).into_iter().collect();
    assert_eq!(by_step["hello"], None);
    assert!(created(&fake, "fourth", "hello"));
}
