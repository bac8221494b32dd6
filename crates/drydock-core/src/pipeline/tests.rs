//! Tests of the whole pipeline loader against a temporary repository.

use super::*;
use std::collections::BTreeMap;
use std::fs;
use std::time::Duration;

/// A temporary repository:
/// `.git/`, `images/app/Dockerfile`, `images/app/docker/Alt.Dockerfile`,
/// `images/flask-api/Dockerfile`, `images/nodf/`, `notadir.txt`, `src/`,
/// and `escape` -> a directory outside the repository (with a Dockerfile).
struct Repo {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

fn repo() -> Repo {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    for d in [
        ".git",
        "images/app/docker",
        "images/flask-api",
        "images/nodf",
        "src",
        "pipelines",
    ] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::write(
        root.join("images/app/Dockerfile"),
        "FROM scratch AS dev\nFROM scratch AS test\nFROM scratch AS production\n",
    )
    .unwrap();
    fs::write(
        root.join("images/app/docker/Alt.Dockerfile"),
        "FROM scratch AS dev\n",
    )
    .unwrap();
    fs::write(
        root.join("images/flask-api/Dockerfile"),
        "FROM scratch AS dev\nFROM scratch AS production\n",
    )
    .unwrap();
    fs::write(root.join("notadir.txt"), "x").unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("Dockerfile"), "FROM scratch\n").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
    Repo { _dir: dir, root }
}

fn vars() -> Vars {
    let env = [("HOME", "/home/ci"), ("EMPTY", "")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Vars::new(env)
        .with_builtin(
            "DRYDOCK_GIT_SHA",
            "0123456789abcdef0123456789abcdef01234567",
        )
        .with_builtin("DRYDOCK_GIT_SHORT_SHA", "0123456789ab")
        .with_builtin("DRYDOCK_GIT_BRANCH", "main")
        .with_builtin("DRYDOCK_RUN_ID", "run-1")
}

/// Drops the first newline so snippets can start on their own line.
fn yaml(s: &str) -> &str {
    s.strip_prefix('\n').unwrap_or(s)
}

fn parse(repo: &Repo, source: &str) -> Result<Pipeline, PipelineError> {
    parse_str(yaml(source), "ci.yml", &repo.root, &vars())
}

/// The first ```yaml block of docs/pipeline-format.md: the contract's example.
fn doc_example() -> String {
    let doc = include_str!("../../../../docs/pipeline-format.md");
    let start = doc.find("```yaml\n").expect("yaml block") + "```yaml\n".len();
    let end = start + doc[start..].find("```").expect("end of yaml block");
    doc[start..end].to_string()
}

#[test]
fn the_documented_example_is_valid() {
    let repo = repo();
    let p = parse(&repo, &doc_example()).unwrap_or_else(|e| panic!("{e}"));
    let root = repo.root.canonicalize().unwrap();
    assert_eq!(p.name, "flask-api");
    assert_eq!(p.repo_root, root);
    assert_eq!(p.source_path, PathBuf::from("ci.yml"));
    let build = |target: &str| BuildSpec {
        name: target.into(),
        context: root.join("images/flask-api"),
        dockerfile: "Dockerfile".into(),
        target: Some(target.into()),
        args: BTreeMap::from([(
            "APP_VERSION".to_string(),
            "0123456789abcdef0123456789abcdef01234567".to_string(),
        )]),
        trust: true,
        secrets: Vec::new(),
    };
    assert_eq!(p.builds, vec![build("dev"), build("production")]);
    let env = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let argv = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        p.services,
        vec![ServiceSpec {
            name: "db".into(),
            image: ImageSource::Image("drydock/postgres:15".into()),
            env: env(&[
                ("POSTGRES_USER", "app"),
                ("POSTGRES_PASSWORD", "app"),
                ("POSTGRES_DB", "app")
            ]),
            command: Some(argv(&["postgres", "-c", "fsync=off"])),
            entrypoint: None,
            user: None,
            workdir: None,
            mounts: Vec::new(),
            ready: Some(ReadySpec {
                probe: Probe::Postgres {
                    user: "app".into(),
                    password: Some("app".into()),
                    database: "app".into()
                },
                timeout: Duration::from_secs(60),
                interval: Duration::from_millis(250),
            }),
            compose: None,
        }]
    );
    assert_eq!(p.tiers.len(), 2);
    let t = &p.tiers[0];
    assert_eq!(t.name, "pre-build");
    assert_eq!(t.build, vec!["dev"]);
    assert_eq!(t.services, vec!["db"]);
    assert_eq!(
        t.steps,
        vec![StepSpec {
            name: "unit".into(),
            image: ImageSource::Build("dev".into()),
            run: StepRun::Command(argv(&[
                "pytest",
                "tests/unit",
                "--junitxml=/results/junit.xml"
            ])),
            entrypoint: None,
            user: None,
            env: env(&[("PYTHONDONTWRITEBYTECODE", "1")]),
            workdir: Some("/src".into()),
            mounts: vec![Mount {
                source: root.join("images/flask-api"),
                target: "/src".into(),
                read_only: true,
            }],
            copies: Vec::new(),
            needs: None,
            when: When::OnSuccess,
            retry: 0,
            allow_failure: false,
            matrix: Vec::new(),
            secrets: Vec::new(),
            cache: Vec::new(),
            reuse: None,
            timeout: Duration::from_secs(300),
            junit: Some("/results/junit.xml".into()),
            collect: vec!["/results/perf.json".into()],
            network: true,
        }]
    );
    assert_eq!(p.tiers[1].name, "package");
    assert_eq!(p.tiers[1].build, vec!["production"]);
    assert!(p.tiers[1].steps.is_empty());
    assert_eq!(
        p.release,
        Some(ReleaseSpec {
            target: "production".into(),
            name: "flask-api".into(),
            channel: "staging".into(),
            registry: None,
        })
    );
    // Pieces serialize (events embed them); durations use the file's spelling.
    let json = serde_json::to_value(&p.tiers[0].steps[0]).unwrap();
    assert_eq!(json["timeout"], "5m");
    assert_eq!(json["image"]["build"], "dev");
}

#[test]
fn defaults_interpolation_and_ordering() {
    let repo = repo();
    let p = parse(
        &repo,
        r#"
version: 1
name: "app-${DRYDOCK_GIT_BRANCH}"
build:
  context: images/app
  dockerfile: docker/Alt.Dockerfile
  trust: false
  args: { HOME_DIR: "${HOME}", TAG: "${NOPE:-latest}", EMPTY_DEFAULT: "${EMPTY:-x}", PRICE: "5$ and $$5" }
services:
  zeta:
    image: redis:7
  alpha:
    build: dev
    ready:
      exec: [true-ish]
  hc:
    image: "${REGISTRY:-docker.io}/library/nginx"
    ready: { healthcheck: true, timeout: 2m, interval: 1s }
tiers:
  - name: first
    build: [dev]
    services: [zeta, hc]
    steps:
      - name: a
        image: alpine
        command: [sh, -c, "echo $$HOME ${HOME}"]
        network: false
        mounts: [src:/src, ".:/repo"]
  - name: second
    services: [alpha]
    steps:
      - name: a
        build: dev
        command: ["${DRYDOCK_RUN_ID}"]
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let root = repo.root.canonicalize().unwrap();
    assert_eq!(p.name, "app-main");
    let b = p.build("dev").unwrap().clone();
    assert_eq!(b.dockerfile, "docker/Alt.Dockerfile");
    assert!(!b.trust);
    assert_eq!(b.args["HOME_DIR"], "/home/ci");
    assert_eq!(b.args["TAG"], "latest");
    assert_eq!(b.args["EMPTY_DEFAULT"], "x");
    assert_eq!(b.args["PRICE"], "5$ and $5");
    let names: Vec<_> = p.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["zeta", "alpha", "hc"], "file order is kept");
    assert_eq!(p.services[0].ready, None);
    assert_eq!(p.services[0].command, None);
    assert_eq!(p.services[1].image, ImageSource::Build("dev".into()));
    assert_eq!(
        p.services[1].ready.as_ref().unwrap().probe,
        Probe::Exec(vec!["true-ish".into()])
    );
    assert_eq!(
        p.services[2].image,
        ImageSource::Image("docker.io/library/nginx".into())
    );
    assert_eq!(
        p.services[2].ready,
        Some(ReadySpec {
            probe: Probe::Healthcheck,
            timeout: Duration::from_secs(120),
            interval: Duration::from_secs(1)
        })
    );
    let s = &p.tiers[0].steps[0];
    assert_eq!(s.command().unwrap()[2], "echo $HOME /home/ci");
    assert_eq!(s.timeout, DEFAULT_STEP_TIMEOUT);
    assert!(!s.network);
    assert_eq!(s.workdir, None);
    assert_eq!(
        s.mounts,
        vec![
            Mount {
                source: root.join("src"),
                target: "/src".into(),
                read_only: true,
            },
            Mount {
                source: root.clone(),
                target: "/repo".into(),
                read_only: true,
            },
        ]
    );
    assert_eq!(*p.tiers[1].steps[0].command().unwrap(), vec!["run-1"]);
    assert!(p.release.is_none());
}

/// A small valid pipeline the error cases below start from.
const BASE: &str = r#"
version: 1
name: app
build:
  context: images/app
tiers:
  - name: t
    build: [dev]
    steps:
      - name: s
        build: dev
        command: [echo, hi]
"#;

#[test]
fn base_is_valid() {
    parse(&repo(), BASE).unwrap();
}

/// (yaml, line, col, message substring)
const INVALID: &[(&str, usize, usize, &str)] = &[
    // --- shape of the document
    ("", 1, 1, "the pipeline file is empty"),
    ("- a\n- b\n", 1, 1, "expected a mapping for the pipeline file, found a list"),
    (
        "version: 1\nname: app\ncolour: blue\ntiers: []\n",
        3,
        1,
        "unknown key `colour` in the pipeline file (expected one of: version, name",
    ),
    ("name: app\ntiers:\n  - name: t\n    build: [x]\n", 1, 1, "missing the required key `version`"),
    ("version: 1\ntiers: []\n", 1, 1, "missing the required key `name`"),
    ("version: 1\nname: app\n", 1, 1, "missing the required key `tiers`"),
    ("version: 2\nname: app\ntiers: []\n", 1, 10, "unsupported version: expected 1, found the integer 2"),
    ("version: \"1\"\nname: app\ntiers: []\n", 1, 10, "expected 1, found the string \"1\""),
    ("version: 1\nname: Flask\ntiers: []\n", 2, 7, "invalid pipeline name \"Flask\": expected [a-z0-9][a-z0-9_.-]*"),
    ("version: 1\nname: -app\ntiers: []\n", 2, 7, "invalid pipeline name \"-app\""),
    ("version: 1\nname: 42\ntiers: []\n", 2, 7, "expected a string, found the integer 42 (quote it to use it as text: \"42\")"),
    ("version: 1\nname: [a]\ntiers: []\n", 2, 7, "expected a string, found a list"),
    ("version: 1\nname: app\ntiers: []\n", 3, 8, "a pipeline needs at least one tier"),
    ("version: 1\nname: app\ntiers: {}\n", 3, 8, "expected a list of tiers, found a mapping"),
    ("version: 1\nversion: 1\nname: app\ntiers: []\n", 2, 1, "duplicate key `version` (first given at 1:1)"),
    // --- tiers and steps
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    services: []\n",
        4,
        5,
        "tier `t` has neither `build` nor `steps` (it needs one or both)",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps: []\n",
        4,
        5,
        "tier `t` has neither `build` nor `steps`",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: bad name\n    steps: [{name: s, image: a, command: [x]}]\n",
        4,
        11,
        "invalid tier name \"bad name\": expected [A-Za-z0-9][A-Za-z0-9_.-]*",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - steps: [{name: s, image: a, command: [x]}]\n",
        4,
        5,
        "tier is missing the required key `name`",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - {name: t, steps: [{name: s, image: a, command: [x]}]}\n  - {name: t, steps: [{name: s, image: a, command: [x]}]}\n",
        5,
        12,
        "duplicate tier name `t` (first defined at 4:12)",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - {name: s, image: a, command: [x]}\n      - {name: s, image: b, command: [x]}\n",
        7,
        16,
        "duplicate step name `s` in tier `t` (first defined at 6:16)",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        comand: [x]\n        command: [x]\n",
        8,
        9,
        "unknown key `comand` in a step of tier `t` (did you mean `command`? expected one of: name, build, image",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n",
        6,
        9,
        "step `s` needs `command` (an argv such as [pytest, -q]) or `script` (shell lines)",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        command: []\n",
        8,
        18,
        "command must not be empty",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        command: make test\n",
        8,
        18,
        "expected command as a list (an argv such as [pytest, -q]), found the string \"make test\"",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        command: [sleep, 5]\n",
        8,
        26,
        "expected a string, found the integer 5 (quote it",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        command: [x]\n",
        6,
        9,
        "step `s` needs exactly one of `image` (an image reference) or `build` (the name of a build)",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        build: dev\n        command: [x]\n",
        8,
        9,
        "step `s` has both `image` and `build`: give exactly one",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps: {name: s}\n",
        5,
        12,
        "expected a list of steps, found a mapping",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        command: [x]\n        timeout: 5 minutes\n",
        9,
        18,
        "expected a duration like 30s, 5m or 1h30m, found \"5 minutes\"",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        command: [x]\n        timeout: 0s\n",
        9,
        18,
        "a duration must be greater than zero, found \"0s\"",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        command: [x]\n        timeout: 30\n",
        9,
        18,
        "expected a duration like 30s, 5m or 1h30m, found \"30\"",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        command: [x]\n        network: yes\n",
        9,
        18,
        "expected true or false, found the string \"yes\"",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        command: [x]\n        env: {PORT: 5432}\n",
        9,
        21,
        "expected a string, found the integer 5432 (quote it to use it as text: \"5432\")",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        command: [x]\n        env: {BAD-NAME: x}\n",
        9,
        15,
        "invalid name `BAD-NAME` in env: expected [A-Za-z_][A-Za-z0-9_]*",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        command: [x]\n        workdir: src\n",
        9,
        18,
        "workdir must be an absolute container path (starting with /), found \"src\"",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        command: [x]\n        collect: [/ok, results]\n",
        9,
        24,
        "collect entry must be an absolute container path",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: \"my image\"\n        command: [x]\n",
        7,
        16,
        "invalid image reference \"my image\": it contains ' '",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        command: [x]\n        timeout:\n",
        9,
        9,
        "expected a duration like 30s, 5m or 1h30m, found nothing (null)",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        command: [x]\n        timeout: \"${STEP_TIMEOUT:-5 min}\"\n",
        9,
        18,
        "expected a duration like 30s, 5m or 1h30m, found \"5 min\"",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        command: [x]\n        env: {\"${KEY}\": x}\n",
        9,
        15,
        "invalid name `${KEY}` in env",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        command: [x]\n        env: {A: x, A: y}\n",
        9,
        21,
        "duplicate key `A` (first given at 9:15)",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        name: s2\n        image: alpine\n        command: [x]\n",
        7,
        9,
        "duplicate key `name` (first given at 6:9)",
    ),
    // --- mounts
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        command: [x]\n        mounts: [nowhere:/src]\n",
        9,
        18,
        "mount source \"nowhere\" does not exist",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        command: [x]\n        mounts: [\"../outside:/src\"]\n",
        9,
        18,
        "mount source \"../outside\" is outside the repository root",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        command: [x]\n        mounts: [\"escape:/src\"]\n",
        9,
        18,
        "mount source \"escape\" is outside the repository root",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        command: [x]\n        mounts: [\"/etc:/src\"]\n",
        9,
        18,
        "mount source \"/etc\" must be relative to the repository root",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        command: [x]\n        mounts: [\"src:rel\"]\n",
        9,
        18,
        "mount target \"rel\" must be an absolute container path",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        command: [x]\n        mounts:\n          - src\n",
        10,
        13,
        "expected a mount like repo/path:/container/path, found \"src\"",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        command: [x]\n        mounts: [\"src:/src:rx\"]\n",
        9,
        18,
        "unknown mount mode \"rx\": expected `ro` (the default) or `rw`",
    ),
    // --- build section and targets
    (
        "version: 1\nname: app\nbuild:\n  context: images/none\ntiers:\n  - {name: t, build: [dev]}\n",
        4,
        12,
        "build context \"images/none\" does not exist",
    ),
    (
        "version: 1\nname: app\nbuild:\n  context: notadir.txt\ntiers:\n  - {name: t, build: [dev]}\n",
        4,
        12,
        "build context \"notadir.txt\" is not a directory",
    ),
    (
        "version: 1\nname: app\nbuild:\n  context: images/../../outside\ntiers:\n  - {name: t, build: [dev]}\n",
        4,
        12,
        "is outside the repository root",
    ),
    (
        "version: 1\nname: app\nbuild:\n  context: escape\ntiers:\n  - {name: t, build: [dev]}\n",
        4,
        12,
        "build context \"escape\" is outside the repository root",
    ),
    (
        "version: 1\nname: app\nbuild:\n  context: images/nodf\ntiers:\n  - {name: t, build: [dev]}\n",
        4,
        12,
        "dockerfile \"Dockerfile\" not found in the build context",
    ),
    (
        "version: 1\nname: app\nbuild:\n  context: images/app\n  dockerfile: ../flask-api/Dockerfile\ntiers:\n  - {name: t, build: [dev]}\n",
        5,
        15,
        "is outside the build context",
    ),
    (
        "version: 1\nname: app\nbuild:\n  dockerfile: Dockerfile\ntiers:\n  - {name: t, build: [dev]}\n",
        3,
        1,
        "the build section is missing the required key `context`",
    ),
    (
        "version: 1\nname: app\nbuild:\n  context: images/app\n  trust: 1\ntiers:\n  - {name: t, build: [dev]}\n",
        5,
        10,
        "expected true or false, found the integer 1",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    build: [dev]\n",
        5,
        13,
        "unknown build `dev` (the pipeline declares no builds: add a `builds:` section)",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - {name: s, build: dev, command: [x]}\n",
        6,
        26,
        "unknown build `dev` (the pipeline declares no builds: add a `builds:` section)",
    ),
    (
        "version: 1\nname: app\nbuild: {context: images/app}\ntiers:\n  - name: t\n    steps:\n      - {name: s, build: test, command: [x]}\n  - name: u\n    build: [test]\n",
        7,
        26,
        "step `s` uses build `test` before it is built (a later tier lists it, at 9:13;",
    ),
    (
        "version: 1\nname: app\nbuild: {context: images/app}\ntiers:\n  - name: t\n    build: [dev]\n    steps:\n      - {name: s, build: nosuch, command: [x]}\n",
        8,
        26,
        "has no stage named `nosuch` (its stages: `dev` (line 1), `test` (line 2), `production` (line 3))",
    ),
    (
        "version: 1\nname: app\nbuild: {context: images/app}\ntiers:\n  - {name: t, build: [dev]}\n  - {name: u, build: [dev]}\n",
        6,
        23,
        "build `dev` is already listed at 5:23",
    ),
    (
        "version: 1\nname: app\nbuild: {context: images/app}\ntiers:\n  - {name: t, build: [\"no good\"]}\n",
        5,
        23,
        "invalid build name \"no good\"",
    ),
    // --- services
    (
        "version: 1\nname: app\nservices:\n  db: {image: postgres}\n  db: {image: postgres}\ntiers:\n  - {name: t, services: [db], steps: [{name: s, image: a, command: [x]}]}\n",
        5,
        3,
        "duplicate service `db` (first defined at 4:3)",
    ),
    (
        "version: 1\nname: app\nservices:\n  db: {image: postgres}\ntiers:\n  - {name: t, steps: [{name: s, image: a, command: [x]}]}\n",
        4,
        3,
        "service `db` is not used by any tier",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    services: [db]\n    steps: [{name: s, image: a, command: [x]}]\n",
        5,
        16,
        "unknown service `db` (not defined under `services:`)",
    ),
    (
        "version: 1\nname: app\nservices:\n  db: {image: postgres}\ntiers:\n  - name: t\n    services: [db, db]\n    steps: [{name: s, image: a, command: [x]}]\n",
        7,
        20,
        "service `db` is listed twice in tier `t`",
    ),
    (
        "version: 1\nname: app\nservices:\n  \"bad name\": {image: postgres}\ntiers:\n  - {name: t, steps: [{name: s, image: a, command: [x]}]}\n",
        4,
        3,
        "invalid service name \"bad name\"",
    ),
    (
        "version: 1\nname: app\nservices:\n  db: {env: {A: b}}\ntiers:\n  - {name: t, services: [db], steps: [{name: s, image: a, command: [x]}]}\n",
        4,
        3,
        "service `db` needs exactly one of `image` (an image reference) or `build` (the name of a build)",
    ),
    (
        "version: 1\nname: app\nservices:\n  db:\n    image: postgres\n    command: []\ntiers:\n  - {name: t, services: [db], steps: [{name: s, image: a, command: [x]}]}\n",
        6,
        14,
        "command must not be empty",
    ),
    (
        "version: 1\nname: app\nbuild: {context: images/app}\nservices:\n  api: {build: test}\ntiers:\n  - name: t\n    services: [api]\n    steps: [{name: s, image: a, command: [x]}]\n  - {name: u, build: [test]}\n",
        8,
        16,
        "service `api` runs build `test`, which is only built by a later tier (at 10:23)",
    ),
    (
        "version: 1\nname: app\nbuild: {context: images/app}\nservices:\n  api: {build: api}\ntiers:\n  - name: t\n    services: [api]\n    build: [dev]\n",
        5,
        16,
        "unknown build `api`: it is not a `builds:` entry, and",
    ),
    (
        "version: 1\nname: app\nservices:\n  api: {build: api}\ntiers:\n  - name: t\n    services: [api]\n    steps: [{name: s, image: a, command: [x]}]\n",
        4,
        16,
        "unknown build `api` (the pipeline declares no builds: add a `builds:` section)",
    ),
    (
        "version: 1\nname: app\nservices:\n  db:\n    image: postgres\n    ready:\n      timeout: 5s\ntiers:\n  - {name: t, services: [db], steps: [{name: s, image: a, command: [x]}]}\n",
        6,
        5,
        "ready needs exactly one probe: `postgres`, `exec` or `healthcheck`",
    ),
    (
        "version: 1\nname: app\nservices:\n  db:\n    image: postgres\n    ready:\n      exec: [pg_isready]\n      healthcheck: true\ntiers:\n  - {name: t, services: [db], steps: [{name: s, image: a, command: [x]}]}\n",
        8,
        7,
        "ready takes exactly one probe, found `exec` and `healthcheck`",
    ),
    (
        "version: 1\nname: app\nservices:\n  db:\n    image: postgres\n    ready: {healthcheck: false}\ntiers:\n  - {name: t, services: [db], steps: [{name: s, image: a, command: [x]}]}\n",
        6,
        26,
        "`healthcheck: false` is not a probe",
    ),
    (
        "version: 1\nname: app\nservices:\n  db:\n    image: postgres\n    ready:\n      postgres: {user: app}\ntiers:\n  - {name: t, services: [db], steps: [{name: s, image: a, command: [x]}]}\n",
        7,
        7,
        "the postgres probe is missing the required key `database`",
    ),
    (
        "version: 1\nname: app\nservices:\n  db:\n    image: postgres\n    ready:\n      exec: []\ntiers:\n  - {name: t, services: [db], steps: [{name: s, image: a, command: [x]}]}\n",
        7,
        13,
        "exec must not be empty",
    ),
    (
        "version: 1\nname: app\nservices:\n  db:\n    image: postgres\n    ready: {exec: [x], timeout: 1s, interval: 2s}\ntiers:\n  - {name: t, services: [db], steps: [{name: s, image: a, command: [x]}]}\n",
        6,
        47,
        "ready interval (2s) must not exceed the ready timeout (1s)",
    ),
    (
        "version: 1\nname: app\nservices:\n  db:\n    image: postgres\n    ready: {exec: [x], interval: 0ms}\ntiers:\n  - {name: t, services: [db], steps: [{name: s, image: a, command: [x]}]}\n",
        6,
        34,
        "a duration must be greater than zero",
    ),
    (
        "version: 1\nname: app\nservices: [db]\ntiers:\n  - {name: t, steps: [{name: s, image: a, command: [x]}]}\n",
        3,
        11,
        "expected a mapping of service names to services, found a list",
    ),
    // --- release
    (
        "version: 1\nname: app\nbuild: {context: images/app}\ntiers:\n  - {name: t, build: [dev]}\nrelease: {target: nosuch, name: app, channel: staging}\n",
        6,
        19,
        "unknown build `nosuch`",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - {name: t, steps: [{name: s, image: a, command: [x]}]}\nrelease: {target: production, name: app, channel: staging}\n",
        5,
        19,
        "unknown build `production` (the pipeline declares no builds: add a `builds:` section)",
    ),
    (
        "version: 1\nname: app\nbuild: {context: images/app}\ntiers:\n  - {name: t, build: [dev]}\nrelease:\n  target: dev\n  name: app\n",
        6,
        1,
        "the release section is missing the required key `channel`",
    ),
    (
        "version: 1\nname: app\nbuild: {context: images/app}\ntiers:\n  - {name: t, build: [dev]}\nrelease: {target: dev, name: App, channel: staging}\n",
        6,
        30,
        "invalid image repository name \"App\"",
    ),
    (
        "version: 1\nname: app\nbuild: {context: images/app}\ntiers:\n  - {name: t, build: [dev]}\nrelease: {target: dev, name: app, channel: \"not ok\"}\n",
        6,
        44,
        "invalid channel \"not ok\"",
    ),
    (
        "version: 1\nname: app\nbuild: {context: images/app}\ntiers:\n  - {name: t, build: [dev]}\nrelease: {target: dev, name: app, channel: s, registry: myregistry}\n",
        6,
        57,
        "invalid registry \"myregistry\"",
    ),
    (
        "version: 1\nname: app\nbuild: {context: images/app}\ntiers:\n  - {name: t, build: [dev]}\nrelease: {target: dev, name: app, channel: s, registry: \"127.0.0.1:5000/Team\"}\n",
        6,
        57,
        "invalid registry \"127.0.0.1:5000/Team\"",
    ),
    (
        "version: 1\nname: app\nbuild: {context: images/app}\ntiers:\n  - {name: t, build: [dev]}\nrelease: {target: dev, name: app, channel: s, registry: \"http://127.0.0.1:5000\"}\n",
        6,
        57,
        "invalid registry",
    ),
    (
        "version: 1\nname: app\nbuild: {context: images/app}\ntiers:\n  - {name: t, build: [dev]}\nrelease: {target: dev, name: reg.example.com/app, channel: s, registry: \"127.0.0.1:5000\"}\n",
        6,
        73,
        "already names a registry host",
    ),
    // --- interpolation
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: \"repo/${NOPE}\"\n        command: [x]\n",
        7,
        16,
        "variable NOPE is not set (use ${NOPE:-default} to give a default)",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        command: [echo, \"${HOME\"]\n",
        8,
        25,
        "unterminated variable reference",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        command: [echo, \"${9x}\"]\n",
        8,
        25,
        "bad variable reference `${9x}`",
    ),
    (
        "version: 1\nname: \"${NOPE}\"\ntiers: []\n",
        2,
        7,
        "variable NOPE is not set",
    ),
    // --- what the engine would refuse at run time is refused here
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: Drydock/Python:3.11\n        command: [x]\n",
        7,
        16,
        "invalid image reference \"Drydock/Python:3.11\": repository names must be lowercase",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: \"::::\"\n        command: [x]\n",
        7,
        16,
        "invalid image reference \"::::\"",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: \"alpine:-bad\"\n        command: [x]\n",
        7,
        16,
        "invalid image reference \"alpine:-bad\"",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        command: [x]\n        mounts: [\"src:/\"]\n",
        9,
        18,
        "mount target \"/\" cannot be `/`",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        command: [x]\n        mounts: [\"src:/proc\"]\n",
        9,
        18,
        "mount target \"/proc\" is under /proc or /sys",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        command: [x]\n        copy: [\"src:/app/../etc\"]\n",
        9,
        16,
        "copy target \"/app/../etc\" must not contain `.` or `..` components",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        command: [x]\n        mounts: [\"src:/a\", \".:/a\"]\n",
        9,
        28,
        "mount target \"/a\" is given twice (first at 9:18)",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        command: [\"a\\0b\"]\n",
        8,
        19,
        "a NUL character cannot appear in a value",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        command: [x]\n        env: {A: \"x\\0\"}\n",
        9,
        18,
        "a NUL character cannot appear in a value",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: sssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssss\n        image: alpine\n        command: [x]\n",
        6,
        15,
        "step name is 65 characters long; names have at most 63",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        command: [x]\n        script: [y]\n",
        9,
        9,
        "step `s` has both `command` and `script`",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        entrypoint: []\n",
        6,
        9,
        "step `s` needs `command`, `script` or a non-empty `entrypoint`",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        command: [x]\n        user: \"bad user\"\n",
        9,
        15,
        "invalid user \"bad user\"",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        command: [x]\n        env_file: nowhere.env\n",
        9,
        19,
        "env_file \"nowhere.env\" does not exist",
    ),
    (
        "version: 1\nname: app\nbuilds:\n  app: {context: images/app, target: nosuch}\ntiers:\n  - name: t\n    steps: [{name: s, build: app, command: [x]}]\n",
        4,
        38,
        "target `nosuch` is not a stage of",
    ),
    (
        "version: 1\nname: app\nbuilds:\n  app: {context: images/app}\n  unused: {context: images/app}\ntiers:\n  - name: t\n    steps: [{name: s, build: app, command: [x]}]\n",
        5,
        3,
        "build `unused` is not used by any step, service, tier or the release",
    ),
    (
        "version: 1\nname: app\nbuilds:\n  app: {context: images/app}\ntiers:\n  - name: t\n    steps: [{name: s, build: ap, command: [x]}]\n",
        7,
        30,
        "unknown build `ap` (did you mean `app`? declared builds: app)",
    ),
    // --- needs, when, retry, matrix, secrets, cache
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - {name: a, image: x, command: [x], needs: [nope]}\n",
        6,
        51,
        "unknown step `nope` in tier `t`",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - {name: a, image: x, command: [x], needs: [z/a]}\n",
        6,
        51,
        "unknown tier `z` in need \"z/a\"",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - {name: a, image: x, command: [x], needs: [b]}\n      - {name: b, image: x, command: [x], needs: [a]}\n",
        7,
        51,
        "the needs form a cycle",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - {name: a, image: x, command: [x], needs: [u/b]}\n  - name: u\n    steps:\n      - {name: b, image: x, command: [x]}\n",
        6,
        51,
        "(a step without `needs` waits for every earlier tier)",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - {name: a, image: x, command: [x], when: sometimes}\n",
        6,
        49,
        "unknown `when` \"sometimes\"",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    when: allways\n    steps:\n      - {name: a, image: x, command: [x]}\n",
        5,
        11,
        "unknown `when` \"allways\" (did you mean `always`?)",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - {name: a, image: x, command: [x], retry: 6}\n",
        6,
        50,
        "retry must be a whole number from 0 to 5",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - {name: a, image: x, command: [x], matrix: {PY: []}}\n",
        6,
        56,
        "matrix variable `PY` has no values",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - {name: a, image: x, command: [x], matrix: {}}\n",
        6,
        51,
        "a matrix needs at least one variable",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - {name: a, image: x, command: [x], matrix: {PY: [3.11]}}\n",
        6,
        57,
        "expected a string, found the number 3.11 (quote it",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - {name: a, image: x, command: [x], secrets: [TOKEN]}\n",
        6,
        53,
        "unknown secret `TOKEN` (the pipeline has no `secrets:` section)",
    ),
    (
        "version: 1\nname: app\nsecrets:\n  TOKEN: {env: DRYDOCK_TEST_UNSET_SECRET}\ntiers:\n  - name: t\n    steps:\n      - {name: a, image: x, command: [x], secrets: [TOKEN]}\n",
        4,
        16,
        "secret `TOKEN` comes from the environment variable DRYDOCK_TEST_UNSET_SECRET, which is not set",
    ),
    (
        "version: 1\nname: app\nsecrets:\n  TOKEN: hunter2\ntiers:\n  - name: t\n    steps:\n      - {name: a, image: x, command: [x]}\n",
        4,
        10,
        "must name where its value comes from",
    ),
    (
        "version: 1\nname: app\nsecrets:\n  KEY: {file: src/key}\ntiers:\n  - name: t\n    steps:\n      - {name: a, image: x, command: [x]}\n",
        4,
        15,
        "the file must be absolute or start with ~/",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - {name: a, image: x, command: [x], cache: [relative]}\n",
        6,
        51,
        "cache path \"relative\" must be an absolute container path",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - {name: a, image: x, command: [x], reuse: sometimes}\n",
        6,
        50,
        "expected true, false or always (reuse a stored result even when it failed), found",
    ),
    (
        "version: 1\nname: app\nreuse: 3\ntiers:\n  - name: t\n    steps:\n      - {name: a, image: x, command: [x]}\n",
        3,
        8,
        "expected true, false or always",
    ),
    (
        "version: 1\nname: app\ntiers:\n  - name: t\n    steps:\n      - name: s\n        image: alpine\n        script:\n          - echo ok\n          - curl -H Accept: json x\n",
        10,
        13,
        "YAML reads it as a mapping: quote the whole line",
    ),
];

#[test]
fn reuse_is_the_steps_else_the_pipelines() {
    use crate::pipeline::Reuse;
    let repo = repo();
    let steps = "tiers:\n  - name: t\n    steps:\n      - {name: a, image: x, command: [x]}\n      - {name: b, image: x, command: [x], reuse: false}\n      - {name: c, image: x, command: [x], reuse: always}\n      - {name: d, image: x, command: [x], reuse: true}\n";
    for (top, expected) in [
        (
            "",
            [
                None,
                Some(Reuse::Never),
                Some(Reuse::Always),
                Some(Reuse::Passed),
            ],
        ),
        (
            "reuse: true\n",
            [
                Some(Reuse::Passed),
                Some(Reuse::Never),
                Some(Reuse::Always),
                Some(Reuse::Passed),
            ],
        ),
        (
            "reuse: false\n",
            [
                Some(Reuse::Never),
                Some(Reuse::Never),
                Some(Reuse::Always),
                Some(Reuse::Passed),
            ],
        ),
    ] {
        let p = parse(&repo, &format!("version: 1\nname: app\n{top}{steps}"))
            .unwrap_or_else(|e| panic!("{top}: {e}"));
        let got: Vec<Option<Reuse>> = p.tiers[0].steps.iter().map(|s| s.reuse).collect();
        assert_eq!(got, expected, "{top:?}");
    }
}

#[test]
fn release_registry_is_parsed() {
    let repo = repo();
    for (given, expected) in [
        ("127.0.0.1:5000", "127.0.0.1:5000"),
        ("localhost:5000/team/", "localhost:5000/team"),
        ("registry.example.com/ci", "registry.example.com/ci"),
        ("localhost", "localhost"),
    ] {
        let p = parse(
            &repo,
            &format!("version: 1\nname: app\nbuild: {{context: images/app}}\ntiers:\n  - {{name: t, build: [dev]}}\nrelease: {{target: dev, name: drydock/app, channel: s, registry: \"{given}\"}}\n"),
        )
        .unwrap_or_else(|e| panic!("{given}: {e}"));
        let release = p.release.unwrap();
        assert_eq!(release.registry.as_deref(), Some(expected));
        assert_eq!(
            release.registry_repository().unwrap(),
            format!("{expected}/drydock/app")
        );
    }
}

#[test]
fn invalid_pipelines_are_reported_with_file_line_col() {
    let repo = repo();
    let mut failures = Vec::new();
    for (i, (source, line, col, want)) in INVALID.iter().enumerate() {
        match parse_str(source, "ci.yml", &repo.root, &vars()) {
            Ok(_) => failures.push(format!("case {i}: accepted:\n{source}")),
            Err(e) => {
                let shown = e.to_string();
                let expected_prefix = format!("ci.yml:{line}:{col}: ");
                if !matches!(e, PipelineError::Invalid { .. })
                    || !shown.starts_with(&expected_prefix)
                    || !shown.contains(want)
                    || e.location() != Some((*line, *col))
                {
                    failures.push(format!(
                        "case {i}: want {expected_prefix}...{want}\n  got {shown}\n  all: {:?}\n{source}",
                        e.diagnostics().iter().map(|d| d.to_string()).collect::<Vec<_>>()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn yaml_syntax_errors_have_positions() {
    let repo = repo();
    let cases: &[(&str, usize, usize)] = &[
        ("version: 1\nname: [app\n", 3, 1),
        ("version: 1\n  name: app\n", 2, 7),
        ("version: 1\nname: \"app\n", 2, 7),
        ("a: 1\n---\nb: 2\n", 2, 1),
        ("version: 1\nname: *nope\n", 2, 7),
    ];
    for (source, line, col) in cases {
        let e = parse_str(source, "ci.yml", &repo.root, &vars()).unwrap_err();
        assert!(matches!(e, PipelineError::Syntax(_)), "{source:?}: {e}");
        assert_eq!(e.location(), Some((*line, *col)), "{source:?}: {e}");
        assert!(
            e.to_string().starts_with(&format!("ci.yml:{line}:{col}: ")),
            "{e}"
        );
    }
}

#[test]
fn every_problem_is_collected_in_file_order() {
    let repo = repo();
    let e = parse(
        &repo,
        r#"
version: 1
name: app
tiers:
  - name: t
    steps:
      - name: s
        image: alpine
        command: [x]
        timeout: forever
        oops: 1
  - name: u
"#,
    )
    .unwrap_err();
    let all: Vec<String> = e.diagnostics().iter().map(|d| d.to_string()).collect();
    assert_eq!(all.len(), 3, "{all:#?}");
    assert!(
        all[0].starts_with("ci.yml:9:18: expected a duration"),
        "{all:#?}"
    );
    assert!(
        all[1].starts_with("ci.yml:10:9: unknown key `oops`"),
        "{all:#?}"
    );
    assert!(
        all[2].starts_with("ci.yml:11:5: tier `u` has neither"),
        "{all:#?}"
    );
    assert_eq!(e.to_string(), all[0]);
    assert_eq!(e.message(), all[0].trim_start_matches("ci.yml:9:18: "));
}

/// A need naming no step is reported with the other problems, also when
/// its own step or the step it names was refused; a need of a refused step
/// that names a declared step is not a problem.
#[test]
fn unknown_needs_are_reported_beside_other_problems() {
    let repo = repo();
    let e = parse(
        &repo,
        r#"
version: 1
name: app
tiers:
  - name: lint
    steps:
      - name: flake8
        image: alpine
        comand: [x]
  - name: unit
    steps:
      - name: pytest
        image: alpine
        command: [x]
        needs: [lint/flake9, lint/flake8]
        timeout: 2 minutes
      - name: other
        image: alpine
        command: [x]
        needs: [lint/flake8, nope/x]
"#,
    )
    .unwrap_err();
    let all: Vec<String> = e.diagnostics().iter().map(|d| d.to_string()).collect();
    assert_eq!(all.len(), 4, "{all:#?}");
    assert!(
        all[0].starts_with("ci.yml:8:9: unknown key `comand`"),
        "{all:#?}"
    );
    assert!(
        all[1].starts_with("ci.yml:14:17: unknown step `flake9` in tier `lint`")
            && all[1].contains("did you mean `flake8`?"),
        "{all:#?}"
    );
    assert!(
        all[2].starts_with("ci.yml:15:18: expected a duration"),
        "{all:#?}"
    );
    assert!(
        all[3].starts_with("ci.yml:19:30: unknown tier `nope`"),
        "{all:#?}"
    );
}

/// A build whose declaration is refused (here: a target its Dockerfile
/// lacks) is reported once, where it is declared, not again as "unknown"
/// where a service or step uses it.
#[test]
fn a_refused_build_is_not_reported_again_where_it_is_used() {
    let repo = repo();
    let e = parse(
        &repo,
        r#"
version: 1
name: app
builds:
  db: {context: images/app, target: nosuch}
services:
  db: {build: db}
tiers:
  - name: t
    services: [db]
    steps: [{name: s, build: db, command: [x]}]
"#,
    )
    .unwrap_err();
    let all: Vec<String> = e.diagnostics().iter().map(|d| d.to_string()).collect();
    assert_eq!(all.len(), 1, "{all:#?}");
    assert!(
        all[0].contains("target `nosuch` is not a stage of"),
        "{all:#?}"
    );
}

#[test]
fn load_reads_the_file_and_names_it() {
    let repo = repo();
    let path = repo.root.join("pipelines/ci.yml");
    fs::write(&path, yaml(BASE)).unwrap();
    let p = load(&path, &repo.root, &vars()).unwrap();
    assert_eq!(p.source_path, path);
    assert_eq!(p.tiers[0].steps[0].image, ImageSource::Build("dev".into()));

    fs::write(&path, yaml(BASE).replace("version: 1", "version: 3")).unwrap();
    let e = load(&path, &repo.root, &vars()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("{}:1:10: unsupported version", path.display())),
        "{e}"
    );

    let missing = repo.root.join("pipelines/nope.yml");
    let e = load(&missing, &repo.root, &vars()).unwrap_err();
    assert!(matches!(e, PipelineError::Io { .. }), "{e}");
    assert!(e.to_string().contains("nope.yml"), "{e}");
    assert_eq!(e.location(), None);

    let e = load(&path, &repo.root.join("no-such-root"), &vars()).unwrap_err();
    assert!(matches!(e, PipelineError::Io { .. }), "{e}");
}

#[test]
fn repo_root_is_found_from_git_then_pipelines_then_the_file_dir() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    // .git directory, pipeline nested below.
    fs::create_dir_all(base.join("a/.git")).unwrap();
    fs::create_dir_all(base.join("a/pipelines/sub")).unwrap();
    // .git file (a worktree), no pipelines folder.
    fs::create_dir_all(base.join("b/ci")).unwrap();
    fs::write(base.join("b/.git"), "gitdir: elsewhere\n").unwrap();
    // No git: the parent of the `pipelines` folder.
    fs::create_dir_all(base.join("c/pipelines/nested")).unwrap();
    // Neither: the file's own folder.
    fs::create_dir_all(base.join("d/e")).unwrap();
    let cases = [
        ("a/pipelines/ci.yml", "a"),
        ("a/pipelines/sub/ci.yml", "a"),
        ("b/ci/pipeline.yml", "b"),
        ("c/pipelines/ci.yml", "c"),
        ("c/pipelines/nested/ci.yml", "c"),
        ("d/e/ci.yml", "d/e"),
    ];
    for (file, want) in cases {
        assert_eq!(find_repo_root(&base.join(file)), base.join(want), "{file}");
    }
    // A relative path is made absolute against the current directory.
    let rel = find_repo_root(Path::new("pipelines/ci.yml"));
    assert!(rel.is_absolute(), "{}", rel.display());
}

#[test]
fn error_display_is_file_line_col_message() {
    let d = Diagnostic {
        file: "pipelines/ci.yml".into(),
        line: 3,
        col: 7,
        message: "boom".into(),
    };
    assert_eq!(d.to_string(), "pipelines/ci.yml:3:7: boom");
    let e = PipelineError::Invalid {
        first: d.clone(),
        all: vec![d],
    };
    assert_eq!(e.to_string(), "pipelines/ci.yml:3:7: boom");
    assert_eq!(e.location(), Some((3, 7)));
}

#[test]
fn anchors_tags_and_literal_dollars() {
    let repo = repo();
    let p = parse(
        &repo,
        r#"
version: 1
name: app
tiers:
  - name: t
    steps:
      - name: a
        image: alpine
        command: &cmd [sleep, !!str 5, "costs 5$", "$$HOME"]
        env: &env { A: "1" }
      - name: b
        image: alpine
        command: *cmd
        env: *env
        timeout: 90s
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let steps = &p.tiers[0].steps;
    assert_eq!(
        *steps[0].command().unwrap(),
        ["sleep", "5", "costs 5$", "$HOME"]
    );
    assert_eq!(steps[1].command(), steps[0].command());
    assert_eq!(steps[1].env, steps[0].env);
    assert_eq!(steps[1].timeout, Duration::from_secs(90));
}

#[test]
fn a_matrix_expands_into_named_steps_with_their_variables() {
    let repo = repo();
    let p = parse(
        &repo,
        r#"
version: 1
name: app
build:
  context: images/app
  args: { PY: "${PY:-3.9}" }
tiers:
  - name: t
    steps:
      - name: unit
        build: dev
        image_note: x
"#
        .replace("        image_note: x\n", "        command: [\"python${PY}\", \"${DB}\"]\n        matrix: { PY: [\"3.11\", \"3.12\"], DB: [\"15\", \"16\"] }\n        env: { DB: \"mine\" }\n      - name: report\n        image: alpine\n        command: [x]\n        needs: [unit]\n      - name: plain\n        build: dev\n        command: [x]\n")
        .as_str(),
    )
    .unwrap_or_else(|e| panic!("{:#?}", e.diagnostics()));
    let steps = &p.tiers[0].steps;
    let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "unit [PY=3.11, DB=15]",
            "unit [PY=3.11, DB=16]",
            "unit [PY=3.12, DB=15]",
            "unit [PY=3.12, DB=16]",
            "report",
            "plain"
        ]
    );
    assert_eq!(
        *steps[1].command().unwrap(),
        vec!["python3.11".to_string(), "16".to_string()]
    );
    assert_eq!(steps[3].env["PY"], "3.12");
    assert_eq!(steps[3].env["DB"], "mine", "the step's own env wins");
    assert_eq!(steps[3].base_name(), "unit");
    // A need on the matrix step waits for every combination.
    let needs: Vec<&str> = steps[4]
        .needs
        .as_ref()
        .unwrap()
        .iter()
        .map(|n| n.step.as_str())
        .collect();
    assert_eq!(needs, names[..4]);
    // The build's args take each combination's variables: two arg sets, two
    // builds besides the plain one.
    let builds: Vec<(&str, &str)> = p
        .builds
        .iter()
        .map(|b| (b.name.as_str(), b.args["PY"].as_str()))
        .collect();
    assert_eq!(
        builds,
        [
            ("dev", "3.9"),
            ("dev [PY=3.11]", "3.11"),
            ("dev [PY=3.12]", "3.12")
        ]
    );
    assert_eq!(steps[0].image, ImageSource::Build("dev [PY=3.11]".into()));
    assert_eq!(steps[5].image, ImageSource::Build("dev".into()));
}

#[test]
fn secrets_name_their_source_never_a_value() {
    let repo = repo();
    let key = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key.path(), "s3cr3t").unwrap();
    let vars = vars().with_builtin("MY_TOKEN", "abc");
    let source = format!(
        "version: 1\nname: app\nsecrets:\n  TOKEN: {{env: MY_TOKEN}}\n  KEY: {{file: {}, as: file}}\ntiers:\n  - name: t\n    steps:\n      - {{name: a, image: x, command: [x], secrets: [TOKEN, KEY]}}\n",
        key.path().display()
    );
    let p = parse_str(&source, "ci.yml", &repo.root, &vars).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.secrets.len(), 2);
    assert_eq!(p.secrets[0].source, SecretSource::Env("MY_TOKEN".into()));
    assert_eq!(p.secrets[1].expose, SecretExpose::File);
    assert_eq!(p.tiers[0].steps[0].secrets, vec!["TOKEN", "KEY"]);
    let json = serde_json::to_string(&p).unwrap();
    assert!(!json.contains("abc") && !json.contains("s3cr3t"), "{json}");
}
