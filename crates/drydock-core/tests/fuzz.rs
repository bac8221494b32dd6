//! Mutation fuzzing of the YAML inputs drydock-core reads (pipelines and
//! deploy configs), bounded to run in the normal suite: every mutant must be
//! answered (a pipeline, or located diagnostics), quickly, without a panic,
//! and a mutant holding a control character or invalid UTF-8 is never valid
//! (the parser must not stop reading at a NUL and call the rest fine).

use std::path::{Path, PathBuf};
use std::time::Duration;

use drydock_core::pipeline::{self, PipelineError, Vars};

mod mutate;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Every `.yml` directly in these workspace folders.
fn seeds(dirs: &[&str]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(workspace().join(dir)) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            if f.extension().is_some_and(|e| e == "yml") && f.metadata().unwrap().len() < 64 * 1024
            {
                out.push(std::fs::read(f).unwrap());
            }
        }
    }
    out
}

fn vars() -> Vars {
    Vars::from_process_env()
        .with_builtin("DRYDOCK_RUN_ID", "fuzz")
        .with_builtin(
            "DRYDOCK_GIT_SHA",
            "0123456789abcdef0123456789abcdef01234567",
        )
        .with_builtin("DRYDOCK_GIT_SHORT_SHA", "0123456789ab")
        .with_builtin("DRYDOCK_GIT_BRANCH", "main")
}

/// Checks an answer: errors carry positions; a forbidden byte or invalid
/// UTF-8 is never accepted.
fn judge<T>(input: &[u8], result: Result<T, PipelineError>) -> Result<String, String> {
    let must_fail = mutate::has_forbidden_byte(input) || std::str::from_utf8(input).is_err();
    match result {
        Ok(_) if must_fail => {
            Err("accepted a file with a control character or invalid UTF-8".into())
        }
        Ok(_) => Ok("valid".into()),
        Err(e @ PipelineError::Io { .. }) => Err(format!("I/O error for text in memory: {e}")),
        Err(e) => {
            let diagnostics = e.diagnostics();
            if diagnostics.is_empty() || diagnostics.iter().any(|d| d.line == 0 || d.col == 0) {
                return Err(format!("an error without a location: {e}"));
            }
            let lines = input.iter().filter(|&&b| b == b'\n' || b == b'\r').count() + 1;
            if diagnostics[0].line > lines + 1 {
                return Err(format!(
                    "line {} past the end ({lines} lines): {e}",
                    diagnostics[0].line
                ));
            }
            Ok(match e {
                PipelineError::Syntax(_) => "syntax".into(),
                _ => "invalid".into(),
            })
        }
    }
}

#[test]
fn mutated_pipelines_are_answered_with_locations() {
    let mut seeds = seeds(&[
        "pipelines",
        "tests/fixtures/tiny/pipelines",
        "tests/fixtures/deploy-app/pipelines",
    ]);
    // The valid files of the bad-input corpus.
    let corpus = workspace().join("tests/fixtures/bad");
    let table = std::fs::read_to_string(corpus.join("EXPECTED.tsv")).unwrap();
    for line in table.lines().filter(|l| l.contains("\t0\t")) {
        let file = line.split('\t').next().unwrap();
        seeds.push(std::fs::read(corpus.join("files").join(file)).unwrap());
    }
    let root = workspace();
    let vars = vars();
    let report = mutate::run("pipeline", &seeds, 5_000, Duration::from_secs(5), |input| {
        judge(
            input,
            pipeline::parse_bytes(input, "fuzz.yml", &root, &vars),
        )
    });
    assert!(report.outcomes.len() >= 2, "{report:?}");
}

#[test]
fn mutated_deploy_configs_are_answered_with_locations() {
    let seeds = seeds(&["deploy"]);
    let vars = vars();
    mutate::run(
        "deploy-config",
        &seeds,
        2_000,
        Duration::from_secs(5),
        |input| {
            judge(
                input,
                drydock_core::deploy::config::parse_bytes(
                    input,
                    "deploy/staging.yml",
                    "staging",
                    &vars,
                ),
            )
        },
    );
}
