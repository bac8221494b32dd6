//! Planning, from pipeline YAML to a plan, without an engine.

use std::fs;
use std::path::Path;

use super::*;
use crate::pipeline::{parse_str, Vars};

/// A repository with `app/Dockerfile` (stages `dev`, `production`),
/// `db/Dockerfile` (one unnamed stage) and `src/`.
fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for d in [".git", "app", "db", "src"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::write(
        root.join("app/Dockerfile"),
        "FROM drydock/python:3.11 AS dev\nFROM drydock/python:3.11 AS production\nENTRYPOINT [\"gunicorn\"]\n",
    )
    .unwrap();
    fs::write(root.join("db/Dockerfile"), "FROM drydock/postgres:15\n").unwrap();
    dir
}

fn options(release: ReleaseChoice) -> PlanOptions {
    PlanOptions {
        run_id: "r1".to_string(),
        git: GitInfo {
            sha: Some("abc123".to_string()),
            branch: Some("main".to_string()),
        },
        trust: Trust {
            ca_bundle: Some("/etc/ca.pem".into()),
            env: BTreeMap::from([("HTTPS_PROXY".to_string(), "http://proxy:3128".to_string())]),
        },
        release,
        no_retry: false,
    }
}

fn plan_of(repo: &Path, yaml: &str, release: ReleaseChoice) -> Plan {
    let pipeline = parse_str(yaml, "ci.yml", repo, &Vars::new(BTreeMap::new()))
        .unwrap_or_else(|e| panic!("{:#?}", e.diagnostics()));
    plan(&pipeline, &options(release))
}

const PIPELINE: &str = r#"
version: 1
name: shop
build:
  context: app
builds:
  db:
    context: db
services:
  db:
    build: db
  cache:
    image: redis:7
  web:
    build: production
tiers:
  - name: lint
    steps:
      - name: flake8
        build: dev
        command: [flake8]
        network: false
  - name: it
    services: [db, cache]
    steps:
      - name: pytest
        build: dev
        script:
          - pip install -e .
          - "echo 'it''s done' && pytest"
        env: { HTTPS_PROXY: "http://mine:1" }
  - name: e2e
    services: [web]
    steps:
      - name: smoke
        image: redis:7
        entrypoint: [redis-cli]
        command: [ping]
release:
  target: production
  name: shop
  channel: staging
"#;

#[test]
fn builds_are_reported_where_listed_or_first_needed() {
    let repo = repo();
    let plan = plan_of(repo.path(), PIPELINE, ReleaseChoice::AsWritten);
    let builds: Vec<(&str, Option<&str>, &str)> = plan
        .builds
        .iter()
        .map(|b| {
            (
                b.name.as_str(),
                b.target.as_deref(),
                plan.tiers[b.tier].name.as_str(),
            )
        })
        .collect();
    assert_eq!(
        builds,
        vec![
            ("dev", Some("dev"), "lint"),
            ("db", None, "it"),
            ("production", Some("production"), "e2e"),
        ]
    );
    assert_eq!(plan.tier_step_names(0), vec!["build dev", "flake8"]);
    assert_eq!(plan.tier_step_names(1), vec!["build db", "pytest"]);
    assert_eq!(plan.tier_step_names(2), vec!["build production", "smoke"]);
    assert_eq!(plan.tiers[1].needs_builds, vec![BuildId(0)]);
    assert_eq!(plan.build(BuildId(1)).tag, "drydock-build/shop:db");
    // Images are listed once, services in file order.
    assert_eq!(plan.images, vec!["redis:7"]);
    let services: Vec<(&str, ImageRef)> = plan
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.container.image))
        .collect();
    assert_eq!(
        services,
        vec![
            ("db", ImageRef::Build(BuildId(1))),
            ("cache", ImageRef::Reference(0)),
            ("web", ImageRef::Build(BuildId(2))),
        ]
    );
    assert_eq!(plan.services[0].container.name, "drydock-r1-svc-db");
}

#[test]
fn the_release_build_is_planned_even_when_no_tier_uses_it() {
    let repo = repo();
    let yaml = r#"
version: 1
name: shop
build: { context: app }
tiers:
  - name: lint
    steps: [{ name: s, build: dev, command: [x] }]
  - name: last
    steps: [{ name: t, image: alpine, command: [x] }]
release: { target: production, name: shop, channel: staging }
"#;
    let plan = plan_of(repo.path(), yaml, ReleaseChoice::AsWritten);
    let release = plan.release.as_ref().unwrap();
    let build = plan.build(release.build);
    assert_eq!(build.name, "production");
    assert_eq!(plan.tiers[build.tier].name, "last");
    assert_eq!(plan.tier_step_names(1), vec!["build production", "t"]);
}

#[test]
fn the_release_choice_overrides_the_pipeline() {
    let repo = repo();
    let cases = [
        (ReleaseChoice::AsWritten, Some("staging")),
        (ReleaseChoice::Channel("prod".into()), Some("prod")),
        (ReleaseChoice::Off, None),
    ];
    for (choice, channel) in cases {
        let plan = plan_of(repo.path(), PIPELINE, choice.clone());
        assert_eq!(
            plan.release.as_ref().map(|r| r.channel.as_str()),
            channel,
            "{choice:?}"
        );
        if let Some(r) = &plan.release {
            assert_eq!(r.tags, vec!["abc123", "r1"]);
            assert_eq!(r.name, "shop");
        }
    }
}

#[test]
fn networks_trust_and_environment_follow_the_step() {
    let repo = repo();
    let plan = plan_of(repo.path(), PIPELINE, ReleaseChoice::AsWritten);
    let step = |name: &str| plan.steps.iter().find(|s| s.name == name).unwrap();

    // No network: none of the run's trust settings.
    let flake8 = &step("flake8").container;
    assert_eq!(flake8.network, NetworkPlan::None);
    assert!(flake8.env.is_empty());
    assert!(flake8.binds.is_empty());

    // A tier with services: the run network, the CA and proxies, the
    // step's own env winning.
    let pytest = &step("pytest").container;
    assert_eq!(
        pytest.network,
        NetworkPlan::Run {
            aliases: vec!["pytest".into()]
        }
    );
    assert_eq!(pytest.env["HTTPS_PROXY"], "http://mine:1");
    assert_eq!(pytest.env["PIP_CERT"], STEP_CA_PATH);
    assert!(pytest
        .binds
        .iter()
        .any(|b| b.target == STEP_CA_PATH && b.read_only));

    let smoke = &step("smoke").container;
    assert_eq!(smoke.name, "drydock-r1-e2e-smoke");
    assert_eq!(smoke.entrypoint, Some(vec!["redis-cli".to_string()]));
    assert_eq!(smoke.command, Some(vec!["ping".to_string()]));
}

#[test]
fn scripts_run_in_sh_with_the_entrypoint_cleared_unless_given() {
    let repo = repo();
    let plan = plan_of(repo.path(), PIPELINE, ReleaseChoice::AsWritten);
    let pytest = &plan
        .steps
        .iter()
        .find(|s| s.name == "pytest")
        .unwrap()
        .container;
    assert_eq!(pytest.entrypoint, Some(Vec::new()));
    let command = pytest.command.as_ref().unwrap();
    assert_eq!(&command[..2], ["sh", "-c"]);
    assert!(command[2].starts_with("set -e\n"), "{}", command[2]);

    let yaml = r#"
version: 1
name: shop
tiers:
  - name: t
    steps:
      - name: s
        image: alpine
        entrypoint: [docker-entrypoint.sh]
        script: [make]
"#;
    let plan = plan_of(repo.path(), yaml, ReleaseChoice::AsWritten);
    let c = &plan.steps[0].container;
    assert_eq!(c.entrypoint, Some(vec!["docker-entrypoint.sh".to_string()]));
    assert_eq!(c.command.as_ref().unwrap()[..2], ["sh", "-c"]);
}

/// The generated script, run by the host's `sh`: each line is echoed before
/// it runs (quotes and all), and the first failing line stops the script.
#[test]
fn a_script_echoes_each_line_and_stops_at_the_first_failure() {
    let lines: Vec<String> = [
        "echo \"one\"",
        "echo 'it'\\''s' $((1+1))",
        "printf 'multi\\n'\necho line",
        "false",
        "echo never",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(script_text(&lines))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout,
        "$ echo \"one\"\none\n$ echo 'it'\\''s' $((1+1))\nit's 2\n$ printf 'multi\\n' # (multi-line command)\nmulti\nline\n$ false\n"
    );
}

#[test]
fn the_plan_serializes_and_renders() {
    let repo = repo();
    let plan = plan_of(repo.path(), PIPELINE, ReleaseChoice::AsWritten);
    let json = serde_json::to_value(&plan).unwrap();
    assert_eq!(json["builds"][1]["target"], serde_json::Value::Null);
    assert_eq!(json["steps"][0]["timeout"], "10m");
    assert_eq!(json["services"][1]["container"]["image"]["reference"], 0);
    assert!(json["labels"].get("drydock.role").is_none());
    let text = render(&plan);
    for expected in [
        "db: last stage of db/Dockerfile (context db), reported by tier it",
        "step pytest: build dev, entrypoint [], script, mount /etc/ca.pem:/etc/drydock/ca.crt:ro, run network",
        "release: build production tagged shop:abc123, shop:r1, shop:staging (channel)",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
}
