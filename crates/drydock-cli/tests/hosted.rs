//! `drydock ci export`: the files it writes for the sample repository pass
//! the providers' published JSON Schemas (check-jsonschema's vendored
//! copies) and, for the Jenkinsfile, the offline declarative check of
//! scripts/check-jenkinsfile.py (a real Groovy parser); `--check` exits 1 on
//! a stale or missing file. Needs the Python tools of
//! scripts/ensure-python-tools.sh (no engine).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{text, workspace, Repo};

/// The check-jsonschema command: on PATH, else the module of python3.
fn check_jsonschema() -> Command {
    let on_path = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| dir.join("check-jsonschema").is_file())
    });
    if on_path {
        Command::new("check-jsonschema")
    } else {
        let mut c = Command::new("python3");
        c.args(["-m", "check_jsonschema"]);
        c
    }
}

fn tool_missing(what: &str, out: &std::process::Output) -> String {
    format!(
        "{what} did not run as expected (install it with `bash scripts/ensure-python-tools.sh`):\n{}",
        text(out)
    )
}

/// Validates `files` with check-jsonschema's built-in `schema`.
fn schema_check(schema: &str, files: &[PathBuf]) -> std::process::Output {
    check_jsonschema()
        .args(["--builtin-schema", schema])
        .args(files)
        .output()
        .expect("check-jsonschema (bash scripts/ensure-python-tools.sh installs it)")
}

fn jenkins_check(files: &[PathBuf]) -> std::process::Output {
    Command::new("python3")
        .arg(workspace().join("scripts/check-jenkinsfile.py"))
        .args(files)
        .output()
        .expect("python3")
}

/// `drydock ci export …` in `dir`, to the end.
fn export(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_drydock"))
        .arg("ci")
        .arg("export")
        .args(args)
        .current_dir(dir)
        .env_remove("DRYDOCK_LOG")
        .output()
        .unwrap()
}

const INSTALLS: [&[&str]; 2] = [
    &[
        "--install-git",
        "https://github.com/example/drydock",
        "--install-rev",
        "v0.1.0",
        "--channel",
        "staging",
        "--branch",
        "main",
        "--branch",
        "release/1.x",
    ],
    &[
        "--install-url",
        "https://example.com/dl/drydock-x86_64-linux",
    ],
];

#[test]
fn exported_files_pass_their_schemas() {
    let out_dir = tempfile::tempdir().unwrap();
    // (provider, schema, files)
    let mut by_provider: Vec<(&str, Option<&str>, Vec<PathBuf>)> = vec![
        ("github", Some("vendor.github-workflows"), vec![]),
        ("gitlab", Some("vendor.gitlab-ci"), vec![]),
        ("circleci", Some("vendor.circle-ci"), vec![]),
        ("travis", Some("vendor.travis"), vec![]),
        ("jenkins", None, vec![]),
    ];
    for (provider, _, files) in &mut by_provider {
        for (i, install) in INSTALLS.iter().enumerate() {
            let mut args = vec![
                *provider,
                "--pipeline",
                "pipelines/flask-api.yml",
                "-o",
                "-",
            ];
            args.extend_from_slice(install);
            let out = export(&workspace(), &args);
            assert_eq!(out.status.code(), Some(0), "{}", text(&out));
            let generated = String::from_utf8(out.stdout.clone()).unwrap();
            assert!(generated.contains("drydock-results"), "{generated}");
            // check-jsonschema parses by extension.
            let name = match *provider {
                "jenkins" => format!("Jenkinsfile-{i}"),
                _ => format!("{provider}-{i}.yml"),
            };
            let path = out_dir.path().join(name);
            std::fs::write(&path, &generated).unwrap();
            files.push(path);
        }
    }
    for (provider, schema, files) in &by_provider {
        let out = match schema {
            Some(schema) => schema_check(schema, files),
            None => jenkins_check(files),
        };
        assert!(
            out.status.success(),
            "{provider}: {}",
            tool_missing("the validator", &out)
        );
    }

    // The validators are live: a broken file of each kind is refused.
    let github = std::fs::read_to_string(&by_provider[0].2[0]).unwrap();
    let broken = out_dir.path().join("github-broken.yml");
    std::fs::write(&broken, github.replace("runs-on:", "runs_on:")).unwrap();
    let out = schema_check("vendor.github-workflows", &[broken]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let gitlab = std::fs::read_to_string(&by_provider[1].2[0]).unwrap();
    let broken = out_dir.path().join("gitlab-broken.yml");
    std::fs::write(&broken, gitlab.replace("when: always", "when: sometimes")).unwrap();
    let out = schema_check("vendor.gitlab-ci", &[broken]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let jenkins = std::fs::read_to_string(&by_provider[4].2[0]).unwrap();
    let broken = out_dir.path().join("Jenkinsfile-broken");
    std::fs::write(&broken, jenkins.replace("steps {", "stepz {")).unwrap();
    let out = jenkins_check(std::slice::from_ref(&broken));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    std::fs::write(&broken, jenkins.trim_end().trim_end_matches('}')).unwrap();
    let out = jenkins_check(&[broken]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[test]
fn check_fails_on_a_stale_or_missing_file() {
    let repo = Repo::from_workspace(&["pipelines/flask-api.yml", "images/flask-api"]);
    let args = [
        "github",
        "--pipeline",
        "pipelines/flask-api.yml",
        "--install-git",
        "https://github.com/example/drydock",
    ];
    let with = |extra: &[&str]| {
        let mut a = args.to_vec();
        a.extend_from_slice(extra);
        export(repo.path(), &a)
    };
    let file = repo.path().join(".github/workflows/drydock.yml");

    let out = with(&["--check"]);
    assert_eq!(out.status.code(), Some(1), "missing: {}", text(&out));
    assert!(text(&out).contains("is missing"), "{}", text(&out));

    let out = with(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(file.is_file());
    let written = std::fs::read_to_string(&file).unwrap();
    let out = with(&["--check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("up to date"), "{}", text(&out));

    // Edited by hand: stale, with a diff; nothing rewritten.
    std::fs::write(&file, written.replace("ubuntu-latest", "ubuntu-22.04")).unwrap();
    let out = with(&["--check"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let shown = text(&out);
    assert!(shown.contains("-    runs-on: ubuntu-22.04"), "{shown}");
    assert!(shown.contains("+    runs-on: ubuntu-latest"), "{shown}");
    assert!(shown.contains("is stale"), "{shown}");
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .contains("ubuntu-22.04"));

    // Other options than the file was written with: stale too.
    let out = with(&["--check"]);
    assert_eq!(out.status.code(), Some(1));
    with(&[]);
    let out = with(&["--branch", "trunk", "--check"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    // Bad options: exit 2, and nothing written.
    for bad in [
        &["--branch", "ma'in"][..],
        &["--channel", "not a tag"],
        &["--output", "/tmp/elsewhere.yml"],
        &["--output", "-", "--check"],
    ] {
        let out = with(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out));
    }
    let out = export(
        repo.path(),
        &[
            "github",
            "--pipeline",
            "pipelines/nosuch.yml",
            "--install-url",
            "https://x/d",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = export(
        repo.path(),
        &["gitlab", "--pipeline", "pipelines/flask-api.yml"],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "no install option: {}",
        text(&out)
    );
    assert!(!repo.path().join(".gitlab-ci.yml").exists());

    // The run options the generated jobs use: a bad channel, or both, exit 2
    // before anything runs.
    for bad in [
        &["run", "pipelines/flask-api.yml", "--channel", "a b"][..],
        &[
            "run",
            "pipelines/flask-api.yml",
            "--channel",
            "x",
            "--no-release",
        ],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_drydock"))
            .args(bad)
            .current_dir(repo.path())
            .env("DRYDOCK_STATE_DIR", repo.state.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out));
    }

    // A non-default output path goes into the regeneration command.
    let out = with(&["--output", "ci/drydock.yml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let other = std::fs::read_to_string(repo.path().join("ci/drydock.yml")).unwrap();
    assert!(other.contains("--output ci/drydock.yml --check"), "{other}");
    let out = with(&["--output", "ci/drydock.yml", "--check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// The generated GitHub job's run step, executed by bash as the runner
/// would (its environment variables set, drydock "installed" in
/// `$HOME/.drydock/bin`) on the tiny fixture against the real engine: a
/// push to the release branch passes and releases to `--channel`, with the
/// merged JUnit copied where the upload step looks; a pull request's build
/// of a breaking change exits 1, releases nothing, and still leaves its JUnit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_github_run_step_runs_the_pipeline() {
    let repo = Repo::fixture("tiny");
    let out = export(
        repo.path(),
        &[
            "github",
            "--pipeline",
            "pipelines/tiny.yml",
            "--channel",
            "hosted-ci",
            "--install-url",
            "https://example.com/drydock",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let workflow: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo.path().join(".github/workflows/drydock.yml")).unwrap(),
    )
    .unwrap();
    let steps = workflow["jobs"]["drydock"]["steps"].as_sequence().unwrap();
    let script = steps
        .iter()
        .find(|s| s["name"].as_str() == Some("Run the pipeline"))
        .and_then(|s| s["run"].as_str())
        .expect("a run step")
        .to_string();
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".drydock/bin")).unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_drydock"),
        home.path().join(".drydock/bin/drydock"),
    )
    .unwrap();
    let github_run = format!("{}", std::process::id());
    let job = |event: &str, attempt: &str, env: &[(&str, &str)]| {
        // GitHub runs `run:` with `bash -e {0}`.
        Command::new("bash")
            .args(["-e", "-c", &script])
            .current_dir(repo.path())
            .env("HOME", home.path())
            .env("DRYDOCK_STATE_DIR", repo.state.path())
            .env("GITHUB_RUN_ID", &github_run)
            .env("GITHUB_RUN_ATTEMPT", attempt)
            .env("GITHUB_EVENT_NAME", event)
            .env("GITHUB_REF_NAME", "main")
            .envs(env.iter().copied())
            .env_remove("DRYDOCK_LOG")
            .output()
            .unwrap()
    };
    let releases = || {
        let out = Command::new(env!("CARGO_BIN_EXE_drydock"))
            .args(["releases", "hosted-ci", "--json"])
            .current_dir(repo.path())
            .env("DRYDOCK_STATE_DIR", repo.state.path())
            .output()
            .unwrap();
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap_or_default()
    };

    let green_id = format!("gh-{github_run}-1");
    let out = job("push", "1", &[]);
    common::assert_nothing_left(&green_id).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // --json: the events on stdout.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("\"event\":\"run_finished\"")),
        "{stdout}"
    );
    let junit = std::fs::read_to_string(repo.path().join("drydock-junit/junit.xml")).unwrap();
    assert!(junit.contains("<testsuite"), "{junit}");
    assert!(repo
        .path()
        .join(format!("drydock-results/{green_id}/summary.json"))
        .is_file());
    assert_eq!(
        releases().len(),
        1,
        "a push to main releases to the channel"
    );

    let red_id = format!("gh-{github_run}-2");
    std::fs::remove_dir_all(repo.path().join("drydock-junit")).unwrap();
    let out = job("pull_request", "2", &[("BREAK", "1")]);
    common::assert_nothing_left(&red_id).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(repo.path().join("drydock-junit/junit.xml").is_file());
    assert_eq!(releases().len(), 1, "a pull request releases nothing");
}
