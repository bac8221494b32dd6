//! What people and tools rely on: the event stream v1 and `summary.json`
//! checked against their shipped JSON Schemas with a real validator
//! (`check-jsonschema`), log lines arriving live, the pipeline schema
//! against every fixture, `validate`'s problems, completions, the man page,
//! `--version` and help, the non-TTY view of a long step, and the engine
//! reached through a docker context.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use common::{assert_nothing_left, run_id, text, workspace, Repo};
use tokio::io::AsyncBufReadExt;

/// `check-jsonschema` (PyPI): on PATH, else installed with pip once.
fn check_jsonschema() -> PathBuf {
    fn find() -> Option<PathBuf> {
        let out = Command::new("sh")
            .args(["-c", "command -v check-jsonschema"])
            .output()
            .ok()?;
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
    }
    static FOUND: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    FOUND
        .get_or_init(|| {
            if let Some(path) = find() {
                return path;
            }
            let status = Command::new("python3")
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "check-jsonschema",
                ])
                .status()
                .expect("python3 runs");
            assert!(status.success(), "pip install check-jsonschema failed");
            find().expect("check-jsonschema on PATH after pip install")
        })
        .clone()
}

/// Validates `files` against `schema`; returns the files that failed
/// (validation errors or documents it could not load), by path.
fn schema_failures(schema: &Path, files: &[PathBuf]) -> Vec<String> {
    let mut failed = Vec::new();
    // A few hundred files per call keeps the command line short.
    for chunk in files.chunks(200) {
        let out = Command::new(check_jsonschema())
            .arg("--schemafile")
            .arg(schema)
            .args(["--output-format", "json"])
            .args(chunk)
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "check-jsonschema output is not JSON ({e}): {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        for kind in ["errors", "parse_errors"] {
            for e in report[kind].as_array().into_iter().flatten() {
                let name = e["filename"].as_str().unwrap_or_default().to_string();
                if !failed.contains(&name) {
                    failed.push(name);
                }
            }
        }
    }
    failed
}

/// Writes each line of an event stream to its own file (the validator
/// checks documents) and validates them; fails with the bad records.
fn assert_records_valid(stream: &str, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = stream
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            let path = dir.path().join(format!("{i:05}.json"));
            std::fs::write(&path, line).unwrap();
            path
        })
        .collect();
    assert!(!files.is_empty(), "{what}: no records");
    let schema = workspace().join("docs/schema/events.schema.json");
    let failed = schema_failures(&schema, &files);
    let shown: Vec<String> = failed
        .iter()
        .take(5)
        .map(|f| std::fs::read_to_string(f).unwrap_or_default())
        .collect();
    assert!(
        failed.is_empty(),
        "{what}: {} of {} records fail the schema, e.g. {shown:#?}",
        failed.len(),
        files.len()
    );
}

fn records(stream: &str) -> Vec<serde_json::Value> {
    stream
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Every step announced by `run_started` gets exactly one terminal event
/// (`step_finished` or `step_skipped`), every tier one `tier_finished`, and
/// the stream ends with `run_finished`.
fn assert_every_planned_step_ends_once(records: &[serde_json::Value]) {
    let started = records
        .iter()
        .find(|r| r["event"] == "run_started")
        .expect("run_started");
    let mut ends: HashMap<(String, String), usize> = HashMap::new();
    let mut tiers: HashMap<String, usize> = HashMap::new();
    for r in records {
        match r["event"].as_str().unwrap() {
            "step_finished" | "step_skipped" => {
                *ends
                    .entry((
                        r["tier"].as_str().unwrap().to_string(),
                        r["step"].as_str().unwrap().to_string(),
                    ))
                    .or_default() += 1;
            }
            "tier_finished" => {
                *tiers
                    .entry(r["tier"].as_str().unwrap().to_string())
                    .or_default() += 1
            }
            _ => {}
        }
    }
    let mut planned = 0;
    for tier in started["tiers"].as_array().unwrap() {
        let name = tier["name"].as_str().unwrap();
        assert_eq!(tiers.get(name), Some(&1), "tier {name}: {records:#?}");
        for step in tier["steps"].as_array().unwrap() {
            planned += 1;
            let key = (name.to_string(), step.as_str().unwrap().to_string());
            assert_eq!(ends.get(&key), Some(&1), "step {key:?}");
        }
    }
    assert_eq!(ends.len(), planned, "no step ends that was not planned");
    assert_eq!(records.last().unwrap()["event"], "run_finished");
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128
}

// ------------------------------------------------------------ no engine

#[test]
fn the_shipped_schemas_are_the_generated_ones() {
    for which in ["pipeline", "events", "summary"] {
        let out = Command::new(env!("CARGO_BIN_EXE_drydock"))
            .args(["schema", which])
            .output()
            .unwrap();
        assert!(out.status.success());
        let shipped =
            std::fs::read_to_string(workspace().join(format!("docs/schema/{which}.schema.json")))
                .unwrap();
        assert!(
            String::from_utf8_lossy(&out.stdout) == shipped,
            "docs/schema/{which}.schema.json is stale: run \
             `cargo run -- schema {which} > docs/schema/{which}.schema.json`"
        );
    }
}

/// Every pipeline drydock accepts passes the schema; every corpus file that
/// drydock refuses for a key or a shape (an unknown key, a missing key, a
/// list where a mapping belongs, a number where a string belongs, a bad
/// duration or name) fails it: the schema tells editors what `validate`
/// tells the terminal.
#[test]
fn the_pipeline_schema_accepts_what_drydock_accepts_and_refuses_wrong_keys_and_shapes() {
    let root = workspace().canonicalize().unwrap();
    let schema = root.join("docs/schema/pipeline.schema.json");
    let validate = |path: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_drydock"))
            .args(["validate", "--json"])
            .arg(path)
            .current_dir(&root)
            .output()
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{}: {e}: {}", path.display(), text_of(&out)));
        json
    };
    fn text_of(out: &std::process::Output) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
    // Good pipelines: the sample, every fixture drydock accepts, and the
    // corpus files that must pass.
    let mut candidates: Vec<PathBuf> = vec![root.join("pipelines/flask-api.yml")];
    for fixture in std::fs::read_dir(root.join("tests/fixtures")).unwrap() {
        let dir = fixture.unwrap().path().join("pipelines");
        if let Ok(entries) = std::fs::read_dir(&dir) {
            candidates.extend(entries.map(|e| e.unwrap().path()));
        }
    }
    // The corpus but its size-limit files (over 64 KiB: limits, not shapes).
    let corpus: Vec<PathBuf> = std::fs::read_dir(root.join("tests/fixtures/bad/files"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.metadata().unwrap().len() < 64 << 10)
        .collect();
    let mut good = Vec::new();
    let mut shape_errors = Vec::new();
    // What the validator says about keys and shapes (the schema's business).
    let shape = regex_lite(&[
        "unknown key `",
        "is missing the required key",
        "expected a mapping",
        "expected a list",
        "expected a string",
        "expected true or false",
        "expected a duration",
        "invalid pipeline name",
        "invalid step name",
        "invalid tier name",
        "version must be",
    ]);
    // A few at a time: each is a process of its own.
    let all: Vec<&PathBuf> = candidates.iter().chain(&corpus).collect();
    let answers: Vec<(PathBuf, serde_json::Value)> = std::thread::scope(|scope| {
        let workers: Vec<_> = all
            .chunks(all.len().div_ceil(3))
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|p| ((*p).clone(), validate(p)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    for (path, json) in &answers {
        if json["valid"] == true {
            good.push(path.clone());
        } else if corpus.contains(path) {
            let problems = json["problems"].as_array().cloned().unwrap_or_default();
            if !problems.is_empty()
                && problems
                    .iter()
                    .all(|p| shape(p["message"].as_str().unwrap_or_default()))
            {
                shape_errors.push(path.clone());
            }
        }
    }
    assert!(good.len() >= 20, "{} good pipelines", good.len());
    assert!(
        shape_errors.len() >= 25,
        "{} corpus files with key/shape errors: {shape_errors:#?}",
        shape_errors.len()
    );
    let failed: Vec<String> = schema_failures(&schema, &good)
        .into_iter()
        // The validator's YAML parser (ruamel, YAML 1.1) reads U+0085 (NEL)
        // as a line break where YAML 1.2 (drydock) does not: such a file
        // cannot be loaded there at all, which says nothing of the schema.
        .filter(|f| {
            !std::fs::read_to_string(f)
                .unwrap_or_default()
                .contains('\u{85}')
        })
        .collect();
    assert!(
        failed.is_empty(),
        "pipelines drydock accepts fail the schema: {failed:#?}"
    );
    let failed = schema_failures(&schema, &shape_errors);
    let passed: Vec<&PathBuf> = shape_errors
        .iter()
        .filter(|p| !failed.iter().any(|f| Path::new(f) == p.as_path()))
        // YAML 1.1 parsers (the validator's) apply merge keys (`<<:`), which
        // drydock refuses as an unknown key: the schema never sees one.
        .filter(|p| {
            !std::fs::read_to_string(p)
                .unwrap_or_default()
                .contains("<<:")
        })
        .collect();
    assert!(
        passed.is_empty(),
        "files with key or shape errors pass the schema: {passed:#?}"
    );
}

/// A matcher for any of the phrases.
fn regex_lite(phrases: &'static [&'static str]) -> impl Fn(&str) -> bool {
    move |message| phrases.iter().any(|p| message.contains(p))
}

#[test]
fn validate_shows_every_problem_with_a_code_frame_and_json_objects() {
    let root = workspace().canonicalize().unwrap();
    let file = "tests/fixtures/interfaces/pipelines/three-mistakes.yml";
    let out = Command::new(env!("CARGO_BIN_EXE_drydock"))
        .args(["validate", file])
        .current_dir(&root)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("3 problems"), "{stderr}");
    for (at, says, frame) in [
        ("8:16", "unknown service `dbb`", " 8 │     services: [dbb]"),
        (
            "12:9",
            "did you mean `command`?",
            " 12 │         comand: [\"true\"]",
        ),
        (
            "13:18",
            "expected a duration",
            " 13 │         timeout: 5 minutes",
        ),
    ] {
        assert!(
            stderr.contains(&format!("{file}:{at}: ")) && stderr.contains(says),
            "{at} {says}: {stderr}"
        );
        assert!(stderr.contains(frame), "frame {frame:?}: {stderr}");
    }
    assert!(
        !stderr.contains("needs `command`"),
        "a misspelt key is not also missing: {stderr}"
    );
    assert!(!stderr.contains('\x1b'), "NO_COLOR: {stderr}");

    let out = Command::new(env!("CARGO_BIN_EXE_drydock"))
        .args(["validate", "--json", file])
        .current_dir(&root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["valid"], false);
    let problems = json["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 3, "{json:#}");
    let at: Vec<(u64, u64)> = problems
        .iter()
        .map(|p| (p["line"].as_u64().unwrap(), p["col"].as_u64().unwrap()))
        .collect();
    assert_eq!(at, [(8, 16), (12, 9), (13, 18)]);
    assert!(problems.iter().all(|p| p["file"] == file));

    let out = Command::new(env!("CARGO_BIN_EXE_drydock"))
        .args(["validate", "--json", "pipelines/flask-api.yml"])
        .current_dir(&root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["valid"], true);
    assert_eq!(json["pipeline"], "flask-api");
}

#[test]
fn completions_load_in_bash_and_complete_subcommands_and_the_man_page_renders() {
    let drydock = env!("CARGO_BIN_EXE_drydock");
    let script = format!(
        r#"source <("{drydock}" completions bash) || exit 9
COMP_WORDS=(drydock va); COMP_CWORD=1; COMP_LINE="drydock va"; COMP_POINT=${{#COMP_LINE}}
_drydock drydock va drydock
echo "one:${{COMPREPLY[*]}}"
COMP_WORDS=(drydock ""); COMP_CWORD=1; COMP_LINE="drydock "; COMP_POINT=${{#COMP_LINE}}
_drydock drydock "" drydock
echo "all:${{COMPREPLY[*]}}"
COMP_WORDS=(drydock run --ti); COMP_CWORD=2; COMP_LINE="drydock run --ti"; COMP_POINT=${{#COMP_LINE}}
_drydock drydock --ti run
echo "flag:${{COMPREPLY[*]}}"
"#
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout.contains("one:validate\n"), "{stdout}");
    let all = stdout.lines().find(|l| l.starts_with("all:")).unwrap();
    for command in [
        "run",
        "validate",
        "plan",
        "schema",
        "completions",
        "man",
        "gc",
    ] {
        assert!(
            all.split_whitespace().any(|w| w.ends_with(command)),
            "{all}"
        );
    }
    assert!(stdout.contains("flag:--timestamps"), "{stdout}");

    // The man page renders with man(1) itself.
    let out = Command::new("sh")
        .args(["-c", &format!("\"{drydock}\" man | MANWIDTH=80 man -l -")])
        .env("MANPAGER", "cat")
        .output()
        .unwrap();
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    assert!(page.contains("NAME") && page.contains("drydock"), "{page}");
    assert!(
        page.contains("SUBCOMMANDS") || page.contains("validate"),
        "{page}"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(drydock)
        .args(["man", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(dir.path().join("drydock-run.1").is_file());
}

#[test]
fn version_names_the_commit_and_help_gives_examples_environment_and_value_names() {
    let drydock = env!("CARGO_BIN_EXE_drydock");
    let out = Command::new(drydock).arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&out.stdout);
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(workspace())
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    assert!(version.starts_with("drydock 0."), "{version}");
    assert!(
        version.contains("commit "),
        "the commit (or `commit unknown` outside git): {version}"
    );
    if !head.is_empty() {
        // Built from this checkout (the commit may have moved since the build).
        assert!(
            version.contains("commit ") && !version.contains("unknown"),
            "{version}"
        );
    }
    let help = |args: &[&str]| {
        let out = Command::new(drydock).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let run = help(&["run", "--help"]);
    for phrase in [
        "Examples:",
        "Environment:",
        "DOCKER_HOST",
        "DOCKER_CONTEXT",
        "DRYDOCK_STATE_DIR",
        "DRYDOCK_BUILDER",
        "DRYDOCK_CA_BUNDLE",
        "DRYDOCK_LOG",
        "NO_COLOR",
        "--stop-grace <SECONDS>",
    ] {
        assert!(
            run.contains(phrase),
            "{phrase} missing from run --help:\n{run}"
        );
    }
    // Every option's value has a name that says what to give, never the
    // field's name shouted (`--stop-grace <STOP_GRACE>`).
    let root = help(&["--help"]);
    let commands: Vec<String> = root
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() >= 14, "{commands:?}");
    for command in &commands {
        let text = help(&[command, "--help"]);
        assert!(
            text.contains("Examples:"),
            "{command} --help has no examples"
        );
        for line in text.lines() {
            let line = line.trim_start();
            if let Some(rest) = line.strip_prefix("--") {
                let flag = rest.split([' ', '<', ',']).next().unwrap_or_default();
                if !flag.contains('-') {
                    continue;
                }
                let shouted = format!("<{}>", flag.replace('-', "_").to_uppercase());
                assert!(!line.contains(&shouted), "{command}: {line}");
            }
        }
    }
}

// ------------------------------------------------------------ real engine

/// `run --json` on a step that prints a line a second: each line arrives
/// within 100 ms of being printed (measured against the time the step
/// printed), every record and `events.ndjson` pass the shipped schema, as
/// does `summary.json`; every planned step ends once. A configuration
/// error (exit 2) and an unreachable engine (exit 3) still write a
/// schema-valid stream ending in `run_finished` with the error.
#[tokio::test]
async fn the_event_stream_is_live_versioned_complete_and_schema_valid() {
    let repo = Repo::fixture("interfaces");
    let id = run_id("stream");
    let mut command = repo.drydock(&["run", "--json", "pipelines/ticks.yml", "--run-id", &id]);
    command.stdout(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut stream = String::new();
    let mut ticks: Vec<(i128, i128)> = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        let arrived = now_ns();
        let record: serde_json::Value = serde_json::from_str(&line).unwrap();
        if record["event"] == "log" {
            let text = record["line"].as_str().unwrap_or_default();
            if let Some(rest) = text.strip_prefix("tick ") {
                let printed: i128 = rest.split(' ').nth(1).unwrap().parse().unwrap();
                ticks.push((printed, arrived));
            }
        }
        stream.push_str(&line);
        stream.push('\n');
    }
    let status = child.wait().await.unwrap();
    assert_eq!(status.code(), Some(1), "{stream}");
    assert_nothing_left(&id).await;

    assert_eq!(ticks.len(), 5, "{stream}");
    eprintln!(
        "tick latencies (ms): {:?}",
        ticks
            .iter()
            .map(|(p, a)| ((a - p) as f64 / 1e5).round() / 10.0)
            .collect::<Vec<_>>()
    );
    for (i, (printed, arrived)) in ticks.iter().enumerate() {
        let latency_ms = (arrived - printed) as f64 / 1e6;
        assert!(
            (-50.0..100.0).contains(&latency_ms),
            "tick {} arrived {latency_ms:.1} ms after it was printed",
            i + 1
        );
    }
    eprintln!(
        "tick arrival spacing (ms): {:?}",
        ticks
            .windows(2)
            .map(|p| ((p[1].1 - p[0].1) as f64 / 1e5).round() / 10.0)
            .collect::<Vec<_>>()
    );
    for pair in ticks.windows(2) {
        let spacing_ms = (pair[1].1 - pair[0].1) as f64 / 1e6;
        assert!(
            spacing_ms > 800.0,
            "lines arrive as printed, not in a batch: {spacing_ms:.0} ms apart"
        );
    }

    let all = records(&stream);
    for r in &all {
        assert_eq!(r["v"], 1);
        assert_eq!(r["run_id"], id.as_str());
        assert!(r["ts"].as_str().unwrap().ends_with('Z'));
    }
    assert_every_planned_step_ends_once(&all);
    let skipped = all
        .iter()
        .find(|r| r["event"] == "step_skipped")
        .expect("the last tier is skipped");
    assert!(skipped["reason"].as_str().is_some());
    let last = all.last().unwrap();
    assert_eq!(last["outcome"], "failed");
    assert_eq!(last["failure"]["kind"], "step_failed");
    assert_records_valid(&stream, "run --json");

    let results = repo.path().join(".drydock/results").join(&id);
    let ndjson = std::fs::read_to_string(results.join("events.ndjson")).unwrap();
    assert_records_valid(&ndjson, "events.ndjson");
    assert_eq!(
        records(&ndjson).len(),
        all.len(),
        "events.ndjson holds the same records"
    );
    let failed = schema_failures(
        &workspace().join("docs/schema/summary.schema.json"),
        &[results.join("summary.json")],
    );
    assert!(failed.is_empty(), "summary.json fails its schema");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(results.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["tiers"][1]["name"], "broken");
    assert_eq!(summary["tiers"][1]["status"], "failed");

    // Exit 2: only `run_finished`, with every problem located.
    let out = repo
        .run(
            &[
                "run",
                "--json",
                "pipelines/three-mistakes.yml",
                "--run-id",
                &id,
            ],
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_records_valid(&stdout, "invalid configuration");
    let all = records(&stdout);
    assert_eq!(all.len(), 1, "{stdout}");
    let failure = &all[0]["failure"];
    assert_eq!(all[0]["event"], "run_finished");
    assert_eq!(all[0]["outcome"], "invalid");
    assert_eq!(failure["kind"], "invalid_configuration");
    assert_eq!(failure["location"]["line"], 8);
    assert_eq!(failure["location"]["col"], 16);
    assert_eq!(failure["problems"].as_array().unwrap().len(), 3);

    // Exit 3 before the run starts: the plan's steps are skipped with the
    // reason, and `run_finished` says what failed.
    let out = repo
        .run(
            &["run", "--json", "pipelines/ticks.yml", "--run-id", &id],
            &[("DOCKER_HOST", "unix:///tmp/drydock-no-engine-here.sock")],
        )
        .await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_records_valid(&stdout, "unreachable engine");
    let all = records(&stdout);
    assert_every_planned_step_ends_once(&all);
    let last = all.last().unwrap();
    assert_eq!(last["outcome"], "errored");
    assert_eq!(last["failure"]["kind"], "infrastructure");
    assert!(
        last["failure"]["message"]
            .as_str()
            .unwrap()
            .contains("drydock-no-engine-here.sock"),
        "{last}"
    );
}

/// Without a terminal, a long step shows its start line and a "still
/// running" line per interval (a 65-second step with the default 30s
/// interval, scaled down: 6.5 seconds with 3s), with `--timestamps`, and no
/// colour codes (stdout and stderr are pipes).
#[tokio::test]
async fn a_long_step_without_a_terminal_shows_it_started_and_is_still_running() {
    let repo = Repo::fixture("interfaces");
    let id = run_id("slow-step");
    let out = repo
        .run(
            &[
                "run",
                "pipelines/slow-step.yml",
                "--run-id",
                &id,
                "--progress-interval",
                "3s",
                "--timestamps",
            ],
            &[],
        )
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_nothing_left(&id).await;
    let lines: Vec<&str> = stdout.lines().collect();
    let position = |needle: &str| lines.iter().position(|l| l.contains(needle));
    let started = position("nap started (drydock/debian:bookworm)").expect("a start line");
    let running: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("nap still running ("))
        .map(|(i, _)| i)
        .collect();
    assert!(running.len() >= 2, "two still-running lines:\n{stdout}");
    assert!(lines[running[0]].contains("still running (3s)"), "{stdout}");
    assert!(lines[running[1]].contains("still running (6s)"), "{stdout}");
    let finished = lines
        .iter()
        .position(|l| l.contains("✔ nap"))
        .expect("a finish line");
    assert!(started < running[0] && running[1] < finished, "{stdout}");
    // --timestamps: every line starts with the RFC 3339 UTC time.
    for line in lines.iter().filter(|l| !l.is_empty()) {
        let stamp = line.split(' ').next().unwrap();
        assert!(
            stamp.len() == 24 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
            "{line:?}"
        );
    }
    assert!(
        !stdout.contains('\x1b') && !String::from_utf8_lossy(&out.stderr).contains('\x1b'),
        "no colour codes without a terminal:\n{}",
        text(&out)
    );
}

/// A TCP proxy on 127.0.0.1 to the local engine's socket, counting the
/// connections it carried.
async fn socket_proxy() -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("tcp://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut engine) =
                    tokio::net::UnixStream::connect("/var/run/docker.sock").await
                {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                }
            });
        }
    });
    (address, count, task)
}

/// A docker context as `docker context create NAME --docker host=HOST` stores it.
fn write_context(config: &Path, name: &str, host: &str) {
    let digest = drydock_core::engine::endpoint::context_digest(name);
    let meta = config.join("contexts/meta").join(digest);
    std::fs::create_dir_all(&meta).unwrap();
    std::fs::write(
        meta.join("meta.json"),
        serde_json::json!({
            "Name": name,
            "Metadata": {"Description": "drydock test"},
            "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": false}}
        })
        .to_string(),
    )
    .unwrap();
}

/// The docker config's current context points at a `tcp://127.0.0.1` proxy
/// of the local socket: drydock follows it (as `docker` would) and says so
/// in the run header; `DOCKER_CONTEXT` picks another one; a context where
/// nothing answers, or one that does not exist, is exit 3 naming it. The
/// tracing log written to a pipe has no colour codes.
#[tokio::test]
async fn the_engine_is_found_through_docker_contexts_like_the_docker_cli() {
    let repo = Repo::fixture("interfaces");
    let config = tempfile::tempdir().unwrap();
    let (proxy, connections, task) = socket_proxy().await;
    write_context(config.path(), "drydock-test-proxy", &proxy);
    // A closed port: bind one, then drop it.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("tcp://{}", l.local_addr().unwrap())
    };
    write_context(config.path(), "drydock-test-dead", &dead);
    // The local engine's own socket, as `docker context create` stores it.
    write_context(
        config.path(),
        "drydock-test-socket",
        "unix:///var/run/docker.sock",
    );
    std::fs::write(
        config.path().join("config.json"),
        r#"{"currentContext": "drydock-test-proxy"}"#,
    )
    .unwrap();
    let drydock = |args: &[&str], env: &[(&str, &str)]| {
        let mut command = repo.drydock(args);
        command
            .env("DOCKER_CONFIG", config.path())
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .envs(env.iter().copied());
        command
    };

    let id = run_id("context");
    let out = drydock(
        &["run", "pipelines/hello.yml", "--run-id", &id],
        &[
            ("DRYDOCK_BUILDER", "no-such-builder"),
            ("DRYDOCK_LOG", "warn"),
        ],
    )
    .output()
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains(&format!(
            "{proxy} via docker context \"drydock-test-proxy\""
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("(Docker "),
        "the header names the flavour: {stdout}"
    );
    assert!(
        connections.load(Ordering::SeqCst) > 0,
        "the proxy carried the run"
    );
    // The unknown builder is warned about through tracing: plain text in a pipe.
    assert!(stderr.contains("no-such-builder"), "{stderr}");
    assert!(!stderr.contains('\x1b'), "{stderr:?}");
    assert_nothing_left(&id).await;

    // DOCKER_CONTEXT wins over the config's current context: a run through
    // the socket's context, the proxy untouched.
    let before = connections.load(Ordering::SeqCst);
    let out = drydock(
        &["run", "--logs", "pipelines/hello.yml", "--run-id", &id],
        &[("DOCKER_CONTEXT", "drydock-test-socket")],
    )
    .output()
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("unix:///var/run/docker.sock via docker context \"drydock-test-socket\""),
        "{stdout}"
    );
    assert!(stdout.contains("hello from a context"), "{stdout}");
    assert_eq!(connections.load(Ordering::SeqCst), before);
    assert_nothing_left(&id).await;

    // A dead DOCKER_CONTEXT: exit 3 naming it, nothing tried elsewhere.
    let out = drydock(
        &["run", "--json", "pipelines/hello.yml", "--run-id", &id],
        &[("DOCKER_CONTEXT", "drydock-test-dead")],
    )
    .output()
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&dead) && stderr.contains("docker context \"drydock-test-dead\""),
        "{stderr}"
    );
    assert_eq!(connections.load(Ordering::SeqCst), before);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let last = records(&stdout).pop().unwrap();
    assert_eq!(last["failure"]["kind"], "infrastructure");
    assert!(
        last["failure"]["message"]
            .as_str()
            .unwrap()
            .contains("drydock-test-dead"),
        "{last}"
    );

    let out = drydock(
        &["run", "pipelines/hello.yml", "--run-id", &id],
        &[("DOCKER_CONTEXT", "drydock-test-missing")],
    )
    .output()
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("docker context \"drydock-test-missing\"")
            && stderr.contains("does not exist"),
        "{stderr}"
    );

    // DOCKER_HOST wins over every context.
    let out = drydock(
        &["run", "pipelines/hello.yml", "--run-id", &id],
        &[("DOCKER_HOST", "unix:///var/run/docker.sock")],
    )
    .output()
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("via docker context"));
    assert_nothing_left(&id).await;
    task.abort();
}

/// The VS Code problem matchers read what drydock, flake8 and pytest print
/// (through drydock's failure tails too), and the sample pipeline is wired
/// to the schema. JavaScript's and Python's regular expressions agree on
/// the constructs used, so Python checks them.
#[test]
fn the_vscode_problem_matchers_read_real_output() {
    let root = workspace().canonicalize().unwrap();
    let tasks: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join(".vscode/tasks.json")).unwrap())
            .unwrap();
    let mut matchers: HashMap<String, String> = HashMap::new();
    for task in tasks["tasks"].as_array().unwrap() {
        for m in task["problemMatcher"].as_array().into_iter().flatten() {
            matchers.insert(
                m["owner"].as_str().unwrap().to_string(),
                m["pattern"]["regexp"].as_str().unwrap().to_string(),
            );
        }
    }
    let out = Command::new(env!("CARGO_BIN_EXE_drydock"))
        .args([
            "validate",
            "tests/fixtures/interfaces/pipelines/three-mistakes.yml",
        ])
        .current_dir(&root)
        .output()
        .unwrap();
    let drydock_lines = String::from_utf8_lossy(&out.stderr).into_owned();
    let cases = [
        ("drydock", drydock_lines.as_str(), 3),
        (
            "flake8",
            "      │ ./tests/unit/test_x.py:1:1: F401 'os' imported but unused\n\
             tasksapi/app.py:12:80: E501 line too long (81 > 79 characters)\n",
            2,
        ),
        (
            "pytest",
            "      │ tests/unit/test_deliberately_broken.py:5: AssertionError\n",
            1,
        ),
    ];
    for (owner, text, expected) in cases {
        let regexp = matchers
            .get(owner)
            .unwrap_or_else(|| panic!("no {owner} matcher"));
        let script = "import re,sys\nr=re.compile(sys.argv[1])\nprint(sum(1 for l in sys.stdin.read().splitlines() if r.match(l)))";
        let mut child = Command::new("python3")
            .args(["-c", script, regexp])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let n: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        assert_eq!(n, expected, "{owner} matcher {regexp:?} on:\n{text}");
    }
    let settings = std::fs::read_to_string(root.join(".vscode/settings.json")).unwrap();
    assert!(settings.contains("docs/schema/pipeline.schema.json"));
    let sample = std::fs::read_to_string(root.join("pipelines/flask-api.yml")).unwrap();
    assert!(
        sample.starts_with("# yaml-language-server: $schema=../docs/schema/pipeline.schema.json")
    );
}
