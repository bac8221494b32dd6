//! Differential test of `pipeline::compose::load_service` (and through it of
//! `pipeline::dotenv`) against the real Docker Compose: for every service of
//! the fixtures under
//! `tests/fixtures/compose/` (and of the repository's own
//! `docker-compose.yml`), the image, build, environment, command, entrypoint,
//! user, working directory, healthcheck and mounts drydock resolves must be
//! what `docker-compose config` resolves, with the same environment.
//!
//! The reference is Debian's `docker-compose` (1.29); it is installed with
//! apt-get when missing (it runs offline and never contacts the engine). The
//! fixtures use only what 1.29 and v2 read alike; where they differ
//! (docs/compose-import.md lists it) drydock follows v2 and the unit tests
//! pin v2's behaviour. String commands are split with Python's `shlex.split`,
//! as 1.29 does when it creates the container.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use drydock_core::pipeline::compose::{load_service, ComposeService};
use serde_yaml::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// The docker-compose binary, installed with apt-get if missing; `Err` says
/// why it is not available.
fn docker_compose() -> Result<&'static Path, &'static str> {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            if let Some(p) = on_path("docker-compose") {
                return Ok(p);
            }
            if on_path("apt-get").is_none() {
                return Err("docker-compose is not installed and apt-get is not available".into());
            }
            eprintln!("compose differential: installing Debian's docker-compose with apt-get");
            let run = |args: &[&str]| {
                Command::new("apt-get")
                    .args(args)
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .output()
                    .map_err(|e| format!("apt-get: {e}"))
                    .and_then(|o| {
                        if o.status.success() {
                            Ok(())
                        } else {
                            Err(format!(
                                "apt-get {}: {}",
                                args.join(" "),
                                String::from_utf8_lossy(&o.stderr).trim()
                            ))
                        }
                    })
            };
            run(&["update", "-qq"])
                .and_then(|()| run(&["install", "-y", "-qq", "docker-compose"]))
                .map_err(|e| format!("docker-compose could not be installed: {e}"))?;
            on_path("docker-compose").ok_or_else(|| "docker-compose is still not on PATH".into())
        })
        .as_deref()
        .map_err(String::as_str)
}

/// What `docker-compose config` prints, with `env` as the whole environment
/// (plus PATH).
fn compose_config(bin: &Path, file: &Path, env: &[(&str, &str)]) -> Value {
    let out = Command::new(bin)
        .arg("-f")
        .arg(file)
        .arg("--project-directory")
        .arg(file.parent().unwrap())
        .arg("config")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", "/nonexistent")
        .envs(env.iter().copied())
        .output()
        .expect("run docker-compose");
    assert!(
        out.status.success(),
        "docker-compose config {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_yaml::from_slice(&out.stdout).expect("docker-compose config prints YAML")
}

/// Python's `shlex.split`, which compose 1.29 applies to string commands.
fn shlex_split(s: &str) -> Vec<String> {
    let python = if Path::new("/usr/bin/python3").is_file() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let out = Command::new(python)
        .args([
            "-c",
            "import json, shlex, sys; print(json.dumps(shlex.split(sys.argv[1])))",
            s,
        ])
        .output()
        .expect("run python3");
    assert!(out.status.success(), "shlex.split({s:?})");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A scalar of `config`'s output as the string compose passes on (`config`
/// writes `$` as `$$` so that its output can be read again).
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.replace("$$", "$")),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_mapping().and_then(|m| m.get(key))
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(m) = v.and_then(Value::as_mapping) {
        for (k, v) in m {
            // `KEY: null`: value-less and unset, which the engine drops.
            if let (Some(k), Some(v)) = (k.as_str(), text(v)) {
                out.insert(k.to_string(), v);
            }
        }
    }
    out
}

fn argv(v: Option<&Value>) -> Option<Vec<String>> {
    match v? {
        Value::String(s) => Some(shlex_split(&s.replace("$$", "$"))),
        Value::Sequence(items) => Some(items.iter().filter_map(text).collect()),
        Value::Null => None,
        other => panic!("unexpected command {other:?}"),
    }
}

/// compose's duration strings as 1.29 prints them (`90s`, `500ms`, `1m30s`).
fn duration(v: Option<&Value>) -> Option<Duration> {
    let s = text(v?)?;
    let mut total = Duration::ZERO;
    let mut rest = s.as_str();
    while !rest.is_empty() {
        let n = rest.bytes().take_while(u8::is_ascii_digit).count();
        let value: u64 = rest[..n].parse().unwrap();
        rest = &rest[n..];
        let u = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        total += match &rest[..u] {
            "h" => Duration::from_secs(value * 3600),
            "m" => Duration::from_secs(value * 60),
            "s" => Duration::from_secs(value),
            "ms" => Duration::from_millis(value),
            other => panic!("unit {other} in {s}"),
        };
        rest = &rest[u..];
    }
    (!total.is_zero()).then_some(total)
}

/// (context, dockerfile, target, args)
type Build = (PathBuf, String, Option<String>, BTreeMap<String, String>);
/// (test, [interval, timeout, start_period], retries)
type Health = (Vec<String>, [Option<Duration>; 3], Option<u32>);

/// The fields both sides resolve, in one comparable shape.
#[derive(Debug, PartialEq)]
struct Resolved {
    image: Option<String>,
    build: Option<Build>,
    environment: BTreeMap<String, String>,
    command: Option<Vec<String>>,
    entrypoint: Option<Vec<String>>,
    user: Option<String>,
    working_dir: Option<String>,
    healthcheck: Option<Health>,
    binds: BTreeSet<(PathBuf, String, bool)>,
    ephemeral: BTreeSet<String>,
}

fn from_drydock(s: &ComposeService) -> Resolved {
    Resolved {
        image: s.image.clone(),
        build: s.build.as_ref().map(|b| {
            (
                b.context.clone(),
                b.dockerfile.clone(),
                b.target.clone(),
                b.args.clone(),
            )
        }),
        environment: s.environment.clone(),
        command: s.command.clone(),
        entrypoint: s.entrypoint.clone(),
        user: s.user.clone(),
        working_dir: s.working_dir.clone(),
        healthcheck: s.healthcheck.as_ref().map(|h| {
            (
                h.test.clone(),
                [h.interval, h.timeout, h.start_period],
                h.retries,
            )
        }),
        binds: s
            .binds
            .iter()
            .map(|b| (b.source.clone(), b.target.clone(), b.read_only))
            .collect(),
        ephemeral: s.ephemeral.iter().cloned().collect(),
    }
}

fn from_compose(s: &Value) -> Resolved {
    let build = get(s, "build").map(|b| {
        (
            PathBuf::from(text(get(b, "context").unwrap()).unwrap()),
            get(b, "dockerfile")
                .and_then(text)
                .unwrap_or_else(|| "Dockerfile".into()),
            get(b, "target").and_then(text),
            string_map(get(b, "args")),
        )
    });
    let healthcheck = get(s, "healthcheck").and_then(|h| {
        let test = match get(h, "test") {
            Some(Value::String(t)) => vec!["/bin/sh".into(), "-c".into(), t.replace("$$", "$")],
            Some(Value::Sequence(items)) => {
                let words: Vec<String> = items.iter().filter_map(text).collect();
                match words.first().map(String::as_str) {
                    Some("NONE") => return None,
                    Some("CMD") => words[1..].to_vec(),
                    Some("CMD-SHELL") => ["/bin/sh", "-c"]
                        .iter()
                        .map(|s| s.to_string())
                        .chain(words[1..].iter().cloned())
                        .collect(),
                    _ => words,
                }
            }
            _ => Vec::new(),
        };
        let retries = get(h, "retries")
            .and_then(Value::as_u64)
            .filter(|r| *r > 0)
            .map(|r| r as u32);
        Some((
            test,
            [
                duration(get(h, "interval")),
                duration(get(h, "timeout")),
                duration(get(h, "start_period")),
            ],
            retries,
        ))
    });
    let mut binds = BTreeSet::new();
    let mut ephemeral = BTreeSet::new();
    for v in get(s, "volumes")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        match v {
            Value::String(spec) => {
                let parts: Vec<&str> = spec.split(':').collect();
                match parts.as_slice() {
                    [t] => {
                        ephemeral.insert(t.to_string());
                    }
                    [src, t, rest @ ..] => {
                        let ro = rest
                            .first()
                            .is_some_and(|m| m.split(',').any(|o| o == "ro"));
                        if src.starts_with('/') {
                            binds.insert((PathBuf::from(src), t.to_string(), ro));
                        } else {
                            ephemeral.insert(t.to_string());
                        }
                    }
                    [] => unreachable!(),
                }
            }
            Value::Mapping(_) => {
                let target = text(get(v, "target").unwrap()).unwrap();
                if text(get(v, "type").unwrap()).as_deref() == Some("bind") {
                    let ro = get(v, "read_only")
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    binds.insert((
                        PathBuf::from(text(get(v, "source").unwrap()).unwrap()),
                        target,
                        ro,
                    ));
                } else {
                    ephemeral.insert(target);
                }
            }
            other => panic!("unexpected volume {other:?}"),
        }
    }
    for t in get(s, "tmpfs")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        ephemeral.insert(text(t).unwrap().split(':').next().unwrap().to_string());
    }
    Resolved {
        image: get(s, "image").and_then(text),
        build,
        environment: string_map(get(s, "environment")),
        command: argv(get(s, "command")),
        entrypoint: argv(get(s, "entrypoint")),
        user: get(s, "user").and_then(text),
        working_dir: get(s, "working_dir").and_then(text),
        healthcheck,
        binds,
        ephemeral,
    }
}

#[test]
fn services_resolve_as_docker_compose_config_resolves_them() {
    let bin = match docker_compose() {
        Ok(bin) => bin,
        Err(why) => {
            eprintln!("SKIPPED compose differential test: {why}");
            return;
        }
    };
    let root = repo_root();
    let fixtures = root.join("tests/fixtures/compose");
    // (compose file, environment): each run sets every variable the file's
    // value-less build args name, because 1.29 passes an unset one as ''
    // where v2 (and drydock) leave it out.
    let proxies = [
        ("HTTP_PROXY", "http://proxy:3128"),
        ("HTTPS_PROXY", "http://proxy:3128"),
        ("NO_PROXY", "localhost"),
        ("PIP_INDEX_URL", "https://pypi.example/simple"),
        ("PIP_EXTRA_INDEX_URL", "https://extra.example/simple"),
        ("PIP_TRUSTED_HOST", "pypi.example"),
    ];
    let runs: Vec<(PathBuf, Vec<(&str, &str)>)> = vec![
        (
            fixtures.join("flask-pg/docker-compose.yml"),
            vec![
                ("CI", "true"),
                ("PIP_INDEX_URL", "https://pypi.example/simple"),
            ],
        ),
        (
            fixtures.join("flask-pg/docker-compose.yml"),
            vec![
                ("POSTGRES_PASSWORD", "from-environment"),
                ("WEB_PORT", "8080"),
                ("PIP_INDEX_URL", ""),
            ],
        ),
        (
            fixtures.join("variants/compose.yaml"),
            vec![
                ("FROM_SHELL", "shell"),
                ("REQUIRED_VAR", "req"),
                ("EMPTY_VAR", ""),
                ("DB_PASSWORD", "pw"),
                ("CACHE_TTL", "60"),
                ("PY_VERSION", "3.11"),
            ],
        ),
        (
            fixtures.join("dotenv/compose.yaml"),
            vec![("FROM_ENV", "from-env"), ("ONLY_IN_ENV", "only")],
        ),
        (root.join("docker-compose.yml"), proxies.to_vec()),
    ];
    let mut compared = 0;
    let mut mismatches = Vec::new();
    for (file, env) in &runs {
        let config = compose_config(bin, file, env);
        let services = get(&config, "services")
            .and_then(Value::as_mapping)
            .expect("services");
        let lookup = |k: &str| {
            env.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        };
        for (name, theirs) in services {
            let name = name.as_str().unwrap();
            let label = file.strip_prefix(&root).unwrap().display().to_string();
            let ours = load_service(file, &label, &root, name, &lookup).unwrap_or_else(|e| {
                panic!(
                    "{label}: {name}: {}",
                    e.iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            });
            let (ours, theirs) = (from_drydock(&ours), from_compose(theirs));
            compared += 1;
            eprintln!(
                "compose differential: {label} {name} ({} variables, {} binds, {} run paths): {}",
                ours.environment.len(),
                ours.binds.len(),
                ours.ephemeral.len(),
                if ours == theirs { "same" } else { "DIFFERENT" }
            );
            if ours != theirs {
                mismatches.push(format!(
                    "{label}: service {name}\n  drydock:        {ours:?}\n  docker-compose: {theirs:?}"
                ));
            }
        }
    }
    assert!(compared >= 10, "compared only {compared} services");
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
