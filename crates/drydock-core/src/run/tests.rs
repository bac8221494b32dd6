//! Scheduling tests against the fake engine.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::fake::FakeRuntime;
use super::*;
use crate::pipeline::{
    BuildSpec, ImageSource, Pipeline, Probe, ReadySpec, ReleaseSpec, ServiceSpec, StepSpec,
    TierSpec,
};

const BASE: &str = "drydock/python:3.11";

fn step(name: &str, command: &[&str]) -> StepSpec {
    StepSpec {
        name: name.to_string(),
        image: ImageSource::Image(BASE.to_string()),
        command: command.iter().map(|s| s.to_string()).collect(),
        env: BTreeMap::new(),
        workdir: None,
        mounts: Vec::new(),
        timeout: Duration::from_secs(30),
        junit: None,
        collect: Vec::new(),
        network: true,
    }
}

fn tier(name: &str, steps: Vec<StepSpec>) -> TierSpec {
    TierSpec {
        name: name.to_string(),
        build: Vec::new(),
        services: Vec::new(),
        steps,
    }
}

fn pipeline(tiers: Vec<TierSpec>) -> Pipeline {
    Pipeline {
        name: "demo".to_string(),
        build: Some(BuildSpec {
            context: PathBuf::from("/nonexistent"),
            dockerfile: "Dockerfile".to_string(),
            args: BTreeMap::new(),
            trust: false,
        }),
        services: Vec::new(),
        tiers,
        release: None,
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
}

async fn run_with(fake: FakeRuntime, pipeline: Pipeline, cancel_after: Option<Duration>) -> Ran {
    let fake = Arc::new(fake);
    let (tx, mut rx) = mpsc::channel(64);
    let collector = tokio::spawn(async move {
        let mut events = Vec::new();
        while let Some(e) = rx.recv().await {
            events.push(e);
        }
        events
    });
    let cancel = CancellationToken::new();
    if let Some(after) = cancel_after {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            cancel.cancel();
        });
    }
    let options = RunOptions {
        run_id: "r1".to_string(),
        results_dir: std::env::temp_dir().join("drydock-unit-results"),
        trust: Trust::default(),
        git: GitInfo {
            sha: Some("abc123".to_string()),
            branch: Some("main".to_string()),
        },
        stop_grace: Duration::from_secs(1),
    };
    let report = run_pipeline(&pipeline, fake.clone(), options, tx, cancel).await;
    let events = collector.await.unwrap();
    Ran {
        report,
        events,
        fake,
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
    assert!(
        !ran.fake.journal().iter().any(|j| j.contains("journey")),
        "a skipped step never starts"
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
            name: "build".into(),
            build: vec!["test".into()],
            services: vec![],
            steps: vec![],
        },
        TierSpec {
            name: "integration".into(),
            build: vec![],
            services: vec!["db".into()],
            steps: vec![StepSpec {
                image: ImageSource::Target("test".into()),
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
}

fn release_pipeline(registry: &str) -> Pipeline {
    let mut p = pipeline(vec![TierSpec {
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
            name: "lint".into(),
            build: vec!["dev".into()],
            services: vec![],
            steps: vec![StepSpec {
                image: ImageSource::Target("dev".into()),
                ..step("s", &["sleep", "300"])
            }],
        },
        TierSpec {
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
