//! Unit tests of the compose loader: the realistic fixture under
//! `tests/fixtures/compose/flask-pg`, then small projects written to a
//! temporary folder, one case per rule.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/compose/flask-pg")
        .canonicalize()
        .expect("fixture folder")
}

fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| map.get(k).cloned()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A throw-away repository holding `files` (path, content).
fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, content) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    dir
}

fn load(
    dir: &Path,
    service: &str,
    env: &[(&str, &str)],
) -> Result<ComposeService, Vec<Diagnostic>> {
    load_service(
        &dir.join("docker-compose.yml"),
        "docker-compose.yml",
        dir,
        service,
        &vars(env),
    )
}

fn load_ok(files: &[(&str, &str)], service: &str, env: &[(&str, &str)]) -> ComposeService {
    let dir = project(files);
    load(dir.path(), service, env).unwrap_or_else(|e| {
        panic!(
            "{service}: {}",
            e.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

const FIXTURE_ENV: &[(&str, &str)] = &[
    ("CI", "true"),
    ("PIP_INDEX_URL", "https://pypi.example/simple"),
];

#[test]
fn fixture_db_is_built_from_its_dockerfile() {
    let root = fixture_dir();
    let db = load(&root, "db", FIXTURE_ENV).unwrap();
    assert_eq!(db.name, "db");
    assert_eq!(db.image, None);
    assert_eq!(
        db.build,
        Some(ComposeBuild {
            context: root.join("db"),
            dockerfile: "Dockerfile".into(),
            target: None,
            args: BTreeMap::new(),
        })
    );
    // ${POSTGRES_PASSWORD:-app} comes from the project's .env.
    assert_eq!(
        db.environment,
        map(&[
            ("POSTGRES_DB", "app"),
            ("POSTGRES_PASSWORD", "app-dev"),
            ("POSTGRES_USER", "app"),
        ])
    );
    assert_eq!(
        db.command,
        Some(strings(&[
            "postgres",
            "-c",
            "fsync=off",
            "-c",
            "log_statement=all"
        ]))
    );
    assert_eq!(db.entrypoint, None);
    assert!(db.binds.is_empty());
    assert_eq!(db.ephemeral, ["/var/lib/postgresql/data"]);
    assert_eq!(
        db.healthcheck,
        Some(ComposeHealthcheck {
            test: strings(&["/bin/sh", "-c", "pg_isready -U app -d app"]),
            interval: Some(Duration::from_secs(2)),
            timeout: Some(Duration::from_secs(5)),
            retries: Some(30),
            start_period: Some(Duration::from_secs(90)),
            start_interval: None,
        })
    );
    let notes = db.notes.join("\n");
    assert!(
        notes.contains("docker-compose.yml:40:5: `ports` is not applied"),
        "{notes}"
    );
    assert!(
        notes.contains("docker-compose.yml:50:5: `restart` is not applied"),
        "{notes}"
    );
    assert_eq!(db.notes.len(), 2, "{notes}");
}

#[test]
fn fixture_app_services_share_the_anchor() {
    let root = fixture_dir();
    let env_file = [
        ("API_BASE", "http://localhost:5000/api"),
        ("EMPTY", ""),
        ("FLASK_ENV", "testing"),
        ("GREETING", "hello\nworld"),
        ("LOG_LEVEL", "debug"),
        ("SECRET_KEY", "not-a-secret $NOT_EXPANDED"),
        ("TZ", "UTC"),
    ];
    let app_env = [
        ("DATABASE_URL", "postgresql://app:app-dev@db:5432/app"),
        ("FLASK_APP", "app"),
        ("PYTHONUNBUFFERED", "1"),
        (
            "TEST_DATABASE_URL",
            "postgresql://app:app-dev@db:5432/app_test",
        ),
    ];
    let build = ComposeBuild {
        context: root.clone(),
        dockerfile: "Dockerfile".into(),
        target: None,
        args: map(&[
            ("PIP_INDEX_URL", "https://pypi.example/simple"),
            ("PYTHON_VERSION", "3.12"),
        ]),
    };
    let binds = vec![
        ComposeBind {
            source: root.join("app"),
            target: "/srv/app/app".into(),
            read_only: true,
        },
        ComposeBind {
            source: root.join("tests"),
            target: "/srv/app/tests".into(),
            read_only: false,
        },
    ];

    let web = load(&root, "web", FIXTURE_ENV).unwrap();
    assert_eq!(web.image.as_deref(), Some("flask-pg:dev"));
    assert_eq!(web.build.as_ref(), Some(&build));
    let mut want: BTreeMap<String, String> = map(&env_file);
    want.extend(map(&app_env));
    assert_eq!(web.environment, want);
    assert_eq!(
        web.command,
        Some(strings(&[
            "flask", "run", "--host", "0.0.0.0", "--port", "5000"
        ]))
    );
    assert_eq!(web.binds, binds);
    assert!(web.ephemeral.is_empty());
    assert_eq!(web.healthcheck, None);
    assert_eq!(
        (web.user.as_deref(), web.working_dir.as_deref()),
        (None, None)
    );

    let tests = load(&root, "tests", FIXTURE_ENV).unwrap();
    assert_eq!(tests.build.as_ref(), Some(&build));
    let mut want: BTreeMap<String, String> = map(&env_file);
    want.extend(map(&app_env));
    // `CI:` takes the variable from the environment; `HOME_FROM_ENV:` is
    // unset and left out.
    want.extend(map(&[
        ("PYTEST_ADDOPTS", "-p no:cacheprovider"),
        ("CI", "true"),
    ]));
    assert_eq!(tests.environment, want);
    assert_eq!(tests.entrypoint, Some(strings(&["python", "-m"])));
    assert_eq!(
        tests.command,
        Some(strings(&["pytest", "-q", "-k", "not slow", "tests"]))
    );
    assert_eq!(tests.user.as_deref(), Some("1000:1000"));
    assert_eq!(tests.working_dir.as_deref(), Some("/srv/app"));
    assert_eq!(tests.binds, binds);
    assert_eq!(tests.healthcheck, None);
    let notes = tests.notes.join("\n");
    for key in ["depends_on", "profiles"] {
        assert!(
            notes.contains(&format!("`{key}` is not applied")),
            "{notes}"
        );
    }
}

#[test]
fn the_environment_wins_over_dot_env() {
    let root = fixture_dir();
    let env = [("POSTGRES_PASSWORD", "from-env"), ("DB_PORT", "1")];
    let db = load(&root, "db", &env).unwrap();
    assert_eq!(db.environment["POSTGRES_PASSWORD"], "from-env");
    // Unset build args are left out, as compose v2 does (1.29 passes '').
    let web = load(&root, "web", &[]).unwrap();
    assert_eq!(web.build.unwrap().args, map(&[("PYTHON_VERSION", "3.12")]));
    assert!(web
        .notes
        .iter()
        .any(|n| n.contains("build arg PIP_INDEX_URL has no value")));
}

#[test]
fn default_compose_file_follows_compose_order() {
    let cases: &[(&[&str], Option<&str>)] = &[
        (&[], None),
        (&["docker-compose.yaml"], Some("docker-compose.yaml")),
        (
            &["docker-compose.yml", "docker-compose.yaml"],
            Some("docker-compose.yml"),
        ),
        (&["compose.yml", "docker-compose.yml"], Some("compose.yml")),
        (
            &["compose.yaml", "compose.yml", "docker-compose.yml"],
            Some("compose.yaml"),
        ),
        (&["Compose.yaml", "compose.json"], None),
    ];
    for (files, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        for f in *files {
            std::fs::write(dir.path().join(f), "services: {}\n").unwrap();
        }
        let got = default_compose_file(dir.path());
        assert_eq!(got, want.map(|w| dir.path().join(w)), "{files:?}");
    }
}

const DB_DOCKERFILE: (&str, &str) = ("db/Dockerfile", "FROM postgres:16\n");

/// Valid compose files: (what, files, environment, check of every service).
type Check = fn(&ComposeService);
type Files<'a> = &'a [(&'a str, &'a str)];
type RuleCase<'a> = (&'a str, Files<'a>, Files<'a>, Check);

#[test]
fn rules_one_case_each() {
    let cases: &[RuleCase] = &[
        (
            "environment as a KEY=VALUE list, value-less keys from the lookup",
            &[(
                "docker-compose.yml",
                "services:\n  s:\n    image: alpine\n    environment:\n      - A=1\n      - B=x=y\n      - C=\n      - FROM_ENV\n      - UNSET\n      - D=${FROM_ENV}-$$HOME\n",
            )],
            &[("FROM_ENV", "env")],
            |s| {
                assert_eq!(
                    s.environment,
                    map(&[("A", "1"), ("B", "x=y"), ("C", ""), ("FROM_ENV", "env"), ("D", "env-$HOME")])
                )
            },
        ),
        (
            "environment values: numbers and booleans as compose v2 writes them",
            &[(
                "docker-compose.yml",
                "services:\n  s:\n    image: alpine\n    environment:\n      INT: 5432\n      OCTAL: 010\n      HEX: 0x1F\n      FLOAT: 3.10\n      BIG: 1e6\n      BOOL: true\n      YES: yes\n      QUOTED: \"010\"\n      NULL_UNSET: null\n",
            )],
            &[],
            |s| {
                assert_eq!(
                    s.environment,
                    map(&[
                        ("INT", "5432"),
                        ("OCTAL", "8"),
                        ("HEX", "31"),
                        ("FLOAT", "3.1"),
                        ("BIG", "1e+06"),
                        ("BOOL", "true"),
                        ("YES", "yes"),
                        ("QUOTED", "010"),
                    ])
                )
            },
        ),
        (
            "env_file forms, order and precedence; an unset value-less key removes the file's value",
            &[
                (
                    "docker-compose.yml",
                    "services:\n  s:\n    image: alpine\n    env_file:\n      - a.env\n      - path: ./conf/b.env\n      - path: missing.env\n        required: false\n    environment:\n      SHARED: from-environment\n      DROPPED:\n",
                ),
                ("a.env", "A=1\nSHARED=from-a\nOVER=a\nDROPPED=a\n"),
                ("conf/b.env", "OVER=b\nB=${A}-${SERVICE_ONLY:-d}\n"),
            ],
            &[],
            |s| {
                assert_eq!(
                    s.environment,
                    map(&[("A", "1"), ("B", "1-d"), ("OVER", "b"), ("SHARED", "from-environment")])
                );
                assert!(s.notes.iter().any(|n| n.contains("\"missing.env\" (required: false) does not exist")), "{:?}", s.notes);
            },
        ),
        (
            "env_file as a string; interpolation in it sees the project environment first",
            &[
                ("docker-compose.yml", "services:\n  s:\n    image: alpine\n    env_file: .env.ci\n"),
                (".env.ci", "X=file\nY=$X\nZ=${DOTENV_ONLY}\n"),
                (".env", "DOTENV_ONLY=from-dotenv\nX=from-dotenv\n"),
            ],
            &[],
            |s| assert_eq!(s.environment, map(&[("X", "file"), ("Y", "from-dotenv"), ("Z", "from-dotenv")])),
        ),
        (
            "volumes: short and long syntax, tmpfs",
            &[
                (
                    "docker-compose.yml",
                    "services:\n  s:\n    image: alpine\n    volumes:\n      - .:/src\n      - ./conf/app.ini:/etc/app.ini:ro\n      - data:/data:rw\n      - /anonymous\n      - type: bind\n        source: ./conf\n        target: /conf\n        read_only: true\n      - type: volume\n        target: /cache\n      - type: volume\n        source: data\n        target: /data2\n      - type: tmpfs\n        target: /tmp\n        tmpfs:\n          size: 1000\n    tmpfs:\n      - /run:size=64m\nvolumes:\n  data:\n    name: my-data\n",
                ),
                ("conf/app.ini", "[app]\n"),
            ],
            &[],
            |s| {
                let binds: Vec<(&str, bool)> = s.binds.iter().map(|b| (b.target.as_str(), b.read_only)).collect();
                assert_eq!(binds, [("/src", false), ("/etc/app.ini", true), ("/conf", true)]);
                assert!(s.binds[1].source.ends_with("conf/app.ini"));
                assert_eq!(s.ephemeral, ["/data", "/anonymous", "/cache", "/data2", "/tmp", "/run"]);
            },
        ),
        (
            "x-* fields ignored, merge keys, command and entrypoint cleared",
            &[(
                "docker-compose.yml",
                "x-common: &common\n  image: alpine\n  x-note: ignored\n  environment: {A: '1'}\nservices:\n  s:\n    <<: *common\n    x-local: {anything: [1, 2]}\n    command: []\n    entrypoint: \"\"\n",
            )],
            &[],
            |s| {
                assert_eq!(s.image.as_deref(), Some("alpine"));
                assert_eq!(s.environment, map(&[("A", "1")]));
                assert_eq!(s.command, Some(vec![]));
                assert_eq!(s.entrypoint, Some(vec![]));
                assert!(s.notes.is_empty(), "{:?}", s.notes);
            },
        ),
        (
            "interpolation operators and unset variables",
            &[(
                "docker-compose.yml",
                "services:\n  s:\n    image: \"postgres:${PG:-16}\"\n    user: ${UID-1000}\n    working_dir: /w${SUB:+/sub}\n    command: [echo, \"${NOPE}\", \"${EMPTY-kept}\", $$HOME]\n",
            )],
            &[("SUB", "yes"), ("EMPTY", "")],
            |s| {
                assert_eq!(s.image.as_deref(), Some("postgres:16"));
                assert_eq!(s.user.as_deref(), Some("1000"));
                assert_eq!(s.working_dir.as_deref(), Some("/w/sub"));
                assert_eq!(s.command, Some(strings(&["echo", "", "", "$HOME"])));
                assert_eq!(s.notes.len(), 1, "{:?}", s.notes);
                assert!(s.notes[0].starts_with("docker-compose.yml:6:21: variable NOPE is not set"), "{:?}", s.notes);
            },
        ),
        (
            "keys that are notes name their key and line; false is harmless for refused booleans",
            &[(
                "docker-compose.yml",
                "services:\n  s:\n    image: x\n    container_name: fixed\n    networks:\n      default:\n        aliases: [database]\n    links: ['other:alias']\n    labels: {a: b}\n    stdin_open: true\n    tty: true\n    privileged: false\n    init: \"no\"\n    read_only: false\n    ports:\n    entrypoint:\n    scale: 1\n    deploy:\n      restart_policy: {condition: on-failure}\n",
            )],
            &[],
            |s| {
                let notes = s.notes.join("\n");
                assert!(notes.contains("docker-compose.yml:4:5: `container_name` is not applied"), "{notes}");
                assert!(notes.contains("the aliases database do not resolve"), "{notes}");
                assert!(notes.contains("the aliases alias do not resolve"), "{notes}");
                assert!(notes.contains("`deploy.restart_policy` is not applied"), "{notes}");
                assert_eq!(s.notes.len(), 7, "{notes}");
            },
        ),
    ];
    for (what, files, env, check) in cases {
        let dir = project(files);
        let names: Vec<String> = {
            let text = std::fs::read_to_string(dir.path().join("docker-compose.yml")).unwrap();
            let root = tree::parse(&text).unwrap().unwrap();
            let root = merge::resolve(root).unwrap();
            let Kind::Map(es) = &root.kind else { panic!() };
            let services = &es
                .iter()
                .find(|(k, _)| matches!(&k.kind, Kind::Scalar { text, .. } if text == "services"))
                .unwrap()
                .1;
            let Kind::Map(ss) = &services.kind else {
                panic!()
            };
            ss.iter()
                .map(|(k, _)| match &k.kind {
                    Kind::Scalar { text, .. } => text.clone(),
                    _ => panic!(),
                })
                .collect()
        };
        for name in names {
            let svc =
                load(dir.path(), &name, env).unwrap_or_else(|e| panic!("{what}: {name}: {e:?}"));
            check(&svc);
        }
    }
}

#[test]
fn build_and_healthcheck_details() {
    let files = [
        (
            "docker-compose.yml",
            "services:\n  t:\n    build:\n      context: db\n      target: base\n      args:\n        - VERSION=16\n        - FROM_ENV\n        - UNSET\n",
        ),
        DB_DOCKERFILE,
    ];
    let t = load_ok(&files, "t", &[("FROM_ENV", "e")]);
    let b = t.build.unwrap();
    assert!(b.context.ends_with("db"));
    assert_eq!(b.target.as_deref(), Some("base"));
    assert_eq!(b.args, map(&[("VERSION", "16"), ("FROM_ENV", "e")]));

    let files = [(
        "docker-compose.yml",
        "services:\n  a:\n    image: x\n    healthcheck:\n      test: curl -f http://localhost/ || exit 1\n      interval: 1m30s\n      timeout: 500ms\n      retries: \"5\"\n      start_interval: 1.5s\n  b:\n    image: x\n    healthcheck:\n      test: [CMD, pg_isready, -U, app]\n      interval: 0s\n      retries: 0\n  c:\n    image: x\n    healthcheck:\n      interval: 10s\n  d:\n    image: x\n    healthcheck:\n      test: [NONE]\n",
    )];
    let dir = project(&files);
    let hc = |name: &str| load(dir.path(), name, &[]).unwrap().healthcheck;
    assert_eq!(
        hc("a"),
        Some(ComposeHealthcheck {
            test: strings(&["/bin/sh", "-c", "curl -f http://localhost/ || exit 1"]),
            interval: Some(Duration::from_secs(90)),
            timeout: Some(Duration::from_millis(500)),
            retries: Some(5),
            start_period: None,
            start_interval: Some(Duration::from_millis(1500)),
        })
    );
    let b = hc("b").unwrap();
    assert_eq!(b.test, strings(&["pg_isready", "-U", "app"]));
    assert_eq!((b.interval, b.retries), (None, None));
    let c = hc("c").unwrap();
    assert!(
        c.test.is_empty(),
        "timings only: the image's HEALTHCHECK command"
    );
    assert_eq!(c.interval, Some(Duration::from_secs(10)));
    assert_eq!(hc("d"), None);
}

#[test]
fn override_files_are_noted() {
    let files = [
        ("docker-compose.yml", "services:\n  s:\n    image: x\n"),
        (
            "docker-compose.override.yml",
            "services:\n  s:\n    ports: ['80:80']\n",
        ),
    ];
    let s = load_ok(&files, "s", &[]);
    assert!(
        s.notes[0].contains("docker-compose.override.yml exists next to the compose file"),
        "{:?}",
        s.notes
    );
}

/// Invalid compose files: (files, service, expected first problem as
/// `file:line:col` and a part of its message).
#[test]
fn errors_are_located_and_clear() {
    let one = |body: &str| format!("services:\n  s:\n    image: x\n{body}");
    type ErrorCase<'a> = (Vec<(&'a str, String)>, &'a str, &'a str, &'a str);
    let cases: Vec<ErrorCase> = vec![
        (
            vec![("docker-compose.yml", "services:\n  db: {image: x}\n  web: {image: y}\n".into())],
            "wbe",
            "docker-compose.yml:1:1",
            "no service \"wbe\" in the compose file (did you mean \"web\"?): it defines: db, web",
        ),
        (
            vec![("docker-compose.yml", "version: '3'\n".into())],
            "s",
            "docker-compose.yml:1:1",
            "has no `services` section",
        ),
        (vec![("docker-compose.yml", "".into())], "s", "docker-compose.yml:1:1", "the compose file is empty"),
        (
            vec![("docker-compose.yml", "services:\n  s: [\n".into())],
            "s",
            "docker-compose.yml:",
            "",
        ),
        (
            vec![("docker-compose.yml", "services: {}\n---\nservices: {}\n".into())],
            "s",
            "docker-compose.yml:2:1",
            "the file must hold a single YAML document",
        ),
        (vec![("docker-compose.yml", one("    privileged: true\n"))], "s", "docker-compose.yml:4:5", "compose key `privileged` cannot be reproduced by drydock"),
        (vec![("docker-compose.yml", one("    cap_add: [NET_ADMIN]\n"))], "s", "docker-compose.yml:4:5", "`cap_add` cannot be reproduced"),
        (vec![("docker-compose.yml", one("    devices: ['/dev/fuse']\n"))], "s", "docker-compose.yml:4:5", "host devices"),
        (vec![("docker-compose.yml", one("    network_mode: host\n"))], "s", "docker-compose.yml:4:5", "`network_mode` cannot be reproduced"),
        (vec![("docker-compose.yml", one("    pid: host\n"))], "s", "docker-compose.yml:4:5", "`pid`"),
        (vec![("docker-compose.yml", one("    ipc: host\n"))], "s", "docker-compose.yml:4:5", "`ipc`"),
        (vec![("docker-compose.yml", one("    extends: {service: base}\n"))], "s", "docker-compose.yml:4:5", "`extends`"),
        (vec![("docker-compose.yml", one("    secrets: [token]\n"))], "s", "docker-compose.yml:4:5", "`secrets`"),
        (vec![("docker-compose.yml", one("    configs: [conf]\n"))], "s", "docker-compose.yml:4:5", "`configs`"),
        (vec![("docker-compose.yml", one("    sysctls: {net.core.somaxconn: 1024}\n"))], "s", "docker-compose.yml:4:5", "`sysctls`"),
        (vec![("docker-compose.yml", one("    ulimits: {nofile: 1024}\n"))], "s", "docker-compose.yml:4:5", "`ulimits`"),
        (vec![("docker-compose.yml", one("    shm_size: 256m\n"))], "s", "docker-compose.yml:4:5", "`shm_size`"),
        (vec![("docker-compose.yml", one("    platform: linux/arm64\n"))], "s", "docker-compose.yml:4:5", "`platform`"),
        (vec![("docker-compose.yml", one("    init: true\n"))], "s", "docker-compose.yml:4:5", "`init`"),
        (vec![("docker-compose.yml", one("    deploy:\n      resources:\n        limits: {memory: 1g}\n"))], "s", "docker-compose.yml:5:7", "`deploy.resources` cannot be reproduced"),
        (vec![("docker-compose.yml", one("    deploy:\n      replicas: 3\n"))], "s", "docker-compose.yml:5:7", "`deploy.replicas`"),
        (vec![("docker-compose.yml", one("    scale: 2\n"))], "s", "docker-compose.yml:4:5", "one container per service"),
        (vec![("docker-compose.yml", one("    imgae: y\n"))], "s", "docker-compose.yml:4:5", "unknown key `imgae` in service \"s\" (did you mean `image`?)"),
        (vec![("docker-compose.yml", one("    image: y\n"))], "s", "docker-compose.yml:4:5", "duplicate key `image` in service \"s\" (first given at 3:5)"),
        (vec![("docker-compose.yml", "services:\n  s:\n    environment: {A: 1}\n".into())], "s", "docker-compose.yml:2:3", "service \"s\" has neither `image` nor `build`"),
        (vec![("docker-compose.yml", "services:\n  s:\n".into())], "s", "docker-compose.yml:2:3", "service \"s\" is empty"),
        (vec![("docker-compose.yml", one("    volumes: ['../outside:/x']\n"))], "s", "docker-compose.yml:4:15", "bind source \"../outside\""),
        (vec![("docker-compose.yml", one("    volumes: ['./missing:/x']\n"))], "s", "docker-compose.yml:4:15", "bind source \"./missing\" does not exist"),
        (vec![("docker-compose.yml", one("    volumes: ['~/.aws:/root/.aws:ro']\n"))], "s", "docker-compose.yml:4:15", "is in a home folder"),
        (vec![("docker-compose.yml", one("    volumes: ['/etc/passwd:/x']\n"))], "s", "docker-compose.yml:4:15", "is outside the repository root"),
        (vec![("docker-compose.yml", one("    volumes: ['.:relative']\n"))], "s", "docker-compose.yml:4:15", "must be an absolute container path"),
        (vec![("docker-compose.yml", one("    volumes: ['.:/x:rx']\n"))], "s", "docker-compose.yml:4:15", "unknown volume option \"rx\""),
        (vec![("docker-compose.yml", one("    volumes: ['.:/x', '.:/x/']\n"))], "s", "docker-compose.yml:4:23", "container path \"/x/\" is mounted twice"),
        (vec![("docker-compose.yml", one("    volumes: ['data:/x']\n"))], "s", "docker-compose.yml:4:15", "named volume \"data\" is not declared"),
        (vec![("docker-compose.yml", one("    volumes: ['data:/x']\nvolumes:\n  data:\n    external: true\n"))], "s", "docker-compose.yml:7:5", "`volumes.data.external` cannot be reproduced"),
        (vec![("docker-compose.yml", one("    volumes: ['data:/x']\nvolumes:\n  data:\n    driver_opts: {type: none, o: bind, device: /srv}\n"))], "s", "docker-compose.yml:7:5", "driver options"),
        (vec![("docker-compose.yml", one("    volumes:\n      - type: npipe\n        source: x\n        target: /x\n"))], "s", "docker-compose.yml:5:15", "type: npipe"),
        (vec![("docker-compose.yml", one("    volumes:\n      - source: .\n        target: /x\n"))], "s", "docker-compose.yml:5:9", "needs `type`"),
        (vec![("docker-compose.yml", one("    environment:\n      - A=1\n      - A=1\n"))], "s", "docker-compose.yml:6:9", "duplicate entry \"A=1\""),
        (vec![("docker-compose.yml", one("    environment:\n      - 'A =1'\n"))], "s", "docker-compose.yml:5:9", "trailing space"),
        (vec![("docker-compose.yml", one("    environment: {A: [1]}\n"))], "s", "docker-compose.yml:4:22", "expected a string, number or boolean for A"),
        (vec![("docker-compose.yml", one("    environment: A=1\n"))], "s", "docker-compose.yml:4:18", "expected environment as a mapping or a list"),
        (vec![("docker-compose.yml", one("    command: ${NEED:?set NEED first}\n"))], "s", "docker-compose.yml:4:14", "required variable NEED is missing a value: set NEED first"),
        (vec![("docker-compose.yml", one("    command: echo ${1}\n"))], "s", "docker-compose.yml:4:14", "invalid interpolation"),
        (vec![("docker-compose.yml", one("    command: npm test && npm run lint\n"))], "s", "docker-compose.yml:4:14", "uses shell syntax ('&')"),
        (vec![("docker-compose.yml", one("    command: {a: b}\n"))], "s", "docker-compose.yml:4:14", "expected command as a list or a string"),
        (vec![("docker-compose.yml", one("    working_dir: app\n"))], "s", "docker-compose.yml:4:18", "working_dir must be an absolute container path"),
        (vec![("docker-compose.yml", one("    healthcheck:\n      test: [CMD]\n"))], "s", "docker-compose.yml:5:13", "CMD needs a command"),
        (vec![("docker-compose.yml", one("    healthcheck:\n      test: [pg_isready]\n"))], "s", "docker-compose.yml:5:13", "must start with CMD, CMD-SHELL or NONE"),
        (vec![("docker-compose.yml", one("    healthcheck:\n      test: x\n      interval: 5 seconds\n"))], "s", "docker-compose.yml:6:17", "healthcheck interval: expected a duration"),
        (vec![("docker-compose.yml", one("    healthcheck:\n      test: x\n      interval: 10\n"))], "s", "docker-compose.yml:6:17", "expected interval as a string"),
        (vec![("docker-compose.yml", one("    healthcheck:\n      test: x\n      timeout: 100us\n"))], "s", "docker-compose.yml:6:16", "at least 1ms"),
        (vec![("docker-compose.yml", one("    healthcheck:\n      test: x\n      retries: -1\n"))], "s", "docker-compose.yml:6:16", "expected retries as a whole number"),
        (vec![("docker-compose.yml", one("    healthcheck:\n      tset: x\n"))], "s", "docker-compose.yml:5:7", "unknown key `tset` in healthcheck (did you mean `test`?)"),
        (vec![("docker-compose.yml", "services:\n  s:\n    build: https://github.com/x/y.git\n".into())], "s", "docker-compose.yml:3:12", "is remote"),
        (vec![("docker-compose.yml", "services:\n  s:\n    build: ./nope\n".into())], "s", "docker-compose.yml:3:12", "build context \"./nope\" does not exist"),
        (vec![("docker-compose.yml", "services:\n  s:\n    build: .\n".into())], "s", "docker-compose.yml:3:12", "dockerfile \"Dockerfile\" does not exist"),
        (vec![("docker-compose.yml", "services:\n  s:\n    build:\n      context: db\n      dockerfile: /abs/Dockerfile\n".into()), ("db/Dockerfile", "FROM x\n".into())], "s", "docker-compose.yml:5:19", "dockerfile must be a path relative to the build context"),
        (vec![("docker-compose.yml", "services:\n  s:\n    build:\n      context: db\n      ssh: [default]\n".into()), ("db/Dockerfile", "FROM x\n".into())], "s", "docker-compose.yml:5:7", "`build.ssh` cannot be reproduced"),
        (vec![("docker-compose.yml", "services:\n  s:\n    build:\n      context: db\n      dockerfil: D\n".into()), ("db/Dockerfile", "FROM x\n".into())], "s", "docker-compose.yml:5:7", "unknown key `dockerfil` in build (did you mean `dockerfile`?)"),
        (vec![("docker-compose.yml", one("    env_file: missing.env\n"))], "s", "docker-compose.yml:4:15", "env_file \"missing.env\" does not exist"),
        (vec![("docker-compose.yml", one("    env_file: [{path: a.env, format: raw}]\n")), ("a.env", "A=1\n".into())], "s", "docker-compose.yml:4:38", "env_file format \"raw\" is not supported"),
        (vec![("docker-compose.yml", one("    env_file: a.env\n")), ("a.env", "A=1\nB='open\n".into())], "s", "a.env:2:3", "unterminated quoted value"),
        (vec![("docker-compose.yml", one("    env_file: a.env\n")), ("a.env", "A=${NEED:?}\n".into())], "s", "a.env:1:3", "required variable NEED is missing a value"),
        (vec![("docker-compose.yml", one("    image: ${X\n")), (".env", "BAD LINE=1\n".into())], "s", ".env:1:4", "cannot contain blanks"),
        (vec![("docker-compose.yml", "x: &x [1]\nservices:\n  s:\n    <<: *x\n".into())], "s", "docker-compose.yml:1:8", "a merge key `<<` takes mappings"),
    ];
    for (files, service, at, want) in cases {
        let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
        let dir = project(&files);
        let errs = match load(dir.path(), service, &[]) {
            Ok(s) => panic!("{files:?}: loaded {s:?}"),
            Err(e) => e,
        };
        let first = errs[0].to_string();
        assert!(
            first.starts_with(at) && first.contains(want),
            "{files:?}\nwant {at}: ...{want}...\ngot:\n{}",
            errs.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[test]
fn every_problem_is_reported_in_file_order() {
    let files = [(
        "docker-compose.yml",
        "services:\n  s:\n    image: x\n    privileged: true\n    cap_add: [ALL]\n    volumes: ['./nope:/x']\n    restart: always\n",
    )];
    let dir = project(&files);
    let errs = load(dir.path(), "s", &[]).unwrap_err();
    let at: Vec<(usize, usize)> = errs.iter().map(|d| (d.line, d.col)).collect();
    assert_eq!(at, [(4, 5), (5, 5), (6, 15)], "{errs:?}");
}

#[test]
fn paths_outside_the_repository_are_refused_even_through_symlinks() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.env"), "TOKEN=x\n").unwrap();
    let dir = project(&[(
        "docker-compose.yml",
        "services:\n  s:\n    image: x\n    env_file: link.env\n    volumes: ['./linkdir:/x']\n",
    )]);
    std::os::unix::fs::symlink(
        outside.path().join("secret.env"),
        dir.path().join("link.env"),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("linkdir")).unwrap();
    let errs = load(dir.path(), "s", &[]).unwrap_err();
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs.iter()
            .all(|e| e.message.contains("is outside the repository root")),
        "{errs:?}"
    );
}

#[test]
fn oversized_and_binary_compose_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docker-compose.yml");
    std::fs::write(&path, vec![b'#'; MAX_COMPOSE_FILE_BYTES as usize + 1]).unwrap();
    let errs = load(dir.path(), "s", &[]).unwrap_err();
    assert!(
        errs[0].message.contains("larger than 1048576 bytes"),
        "{errs:?}"
    );
    std::fs::write(&path, b"services:\n  s: {image: \xff}\n").unwrap();
    let errs = load(dir.path(), "s", &[]).unwrap_err();
    assert_eq!((errs[0].line, errs[0].col), (2, 14), "{errs:?}");
    assert!(errs[0].message.contains("invalid UTF-8"), "{errs:?}");
}

#[test]
fn go_durations_and_numbers() {
    let durations = [
        ("0", Some(0)),
        ("10s", Some(10_000_000_000)),
        ("1m30s", Some(90_000_000_000)),
        ("500ms", Some(500_000_000)),
        ("1.5s", Some(1_500_000_000)),
        (".5s", Some(500_000_000)),
        ("1h", Some(3_600_000_000_000)),
        ("1s1s", Some(2_000_000_000)),
        ("100us", Some(100_000)),
        ("100µs", Some(100_000)),
        ("3ns", Some(3)),
        ("+2s", Some(2_000_000_000)),
        ("", None),
        ("10", None),
        ("s", None),
        ("1d", None),
        ("-1s", None),
        ("1.s", Some(1_000_000_000)),
        ("1 s", None),
    ];
    for (text, want) in durations {
        let got = parse_go_duration(text).ok().map(|d| d.as_nanos() as u64);
        assert_eq!(got, want, "{text:?}");
    }
    let numbers = [
        ("5432", ScalarType::Int, "5432"),
        ("-7", ScalarType::Int, "-7"),
        ("+7", ScalarType::Int, "7"),
        ("010", ScalarType::Int, "8"),
        ("0o17", ScalarType::Int, "15"),
        ("0x1F", ScalarType::Int, "31"),
        ("99999999999999999999999", ScalarType::Int, "1e+23"),
        ("3.10", ScalarType::Float, "3.1"),
        ("1.0", ScalarType::Float, "1"),
        ("1e6", ScalarType::Float, "1e+06"),
        ("123456.5", ScalarType::Float, "123456.5"),
        ("0.0001", ScalarType::Float, "0.0001"),
        ("0.00001", ScalarType::Float, "1e-05"),
        (".inf", ScalarType::Float, "+Inf"),
        ("-.inf", ScalarType::Float, "-Inf"),
        (".nan", ScalarType::Float, "NaN"),
    ];
    for (text, ty, want) in numbers {
        assert_eq!(go_number(text, ty), want, "{text:?}");
    }
}
