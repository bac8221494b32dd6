//! Helpers for tests that run the `drydock` binary the way a user does, against
//! the real engine, in throw-away git repositories.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use drydock_core::engine::{Engine, Leftover};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A throw-away git repository and a private drydock state folder.
pub struct Repo {
    pub dir: tempfile::TempDir,
    pub state: tempfile::TempDir,
}

impl Repo {
    /// A repository holding a copy of `tests/fixtures/<name>`, committed.
    pub fn fixture(name: &str) -> Repo {
        let repo = Repo::empty();
        copy_tree(&workspace().join("tests/fixtures").join(name), repo.path());
        repo.commit("fixture");
        repo
    }

    /// A repository holding copies of the given workspace paths, committed.
    pub fn from_workspace(paths: &[&str]) -> Repo {
        let repo = Repo::empty();
        for path in paths {
            let source = workspace().join(path);
            let target = repo.path().join(path);
            if source.is_dir() {
                copy_tree(&source, &target);
            } else {
                std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                std::fs::copy(&source, &target).unwrap();
            }
        }
        repo.commit("copy of the workspace");
        repo
    }

    /// An empty repository (git initialised, nothing committed).
    pub fn empty_for_tests() -> Repo {
        Repo::empty()
    }

    fn empty() -> Repo {
        let repo = Repo {
            dir: tempfile::tempdir().unwrap(),
            state: tempfile::tempdir().unwrap(),
        };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn git(&self, args: &[&str]) {
        let status = std::process::Command::new("git")
            .args([
                "-c",
                "user.name=drydock tests",
                "-c",
                "user.email=tests@drydock.invalid",
            ])
            .args(args)
            .current_dir(self.path())
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    }

    pub fn commit(&self, message: &str) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
    }

    /// The `drydock` command in this repository, with a private state folder.
    pub fn drydock(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_drydock"));
        command
            .args(args)
            .current_dir(self.path())
            .env("DRYDOCK_STATE_DIR", self.state.path())
            .env_remove("DRYDOCK_LOG")
            .kill_on_drop(true);
        command
    }

    /// Runs `drydock args…` to the end.
    pub async fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = self.drydock(args);
        command.envs(env.iter().copied());
        command.output().await.unwrap()
    }
}

/// Text of both output streams, for assertion messages.
pub fn text(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        if matches!(
            name_str.as_ref(),
            "__pycache__" | ".pytest_cache" | ".drydock-trust" | ".venv"
        ) {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The engine, or a clear failure.
pub async fn engine() -> Engine {
    Engine::connect()
        .await
        .expect("these tests need a Docker Engine (see README: .ci/run starts one)")
}

/// Removes whatever the run left, then returns what was there.
pub async fn sweep_run(run_id: &str) -> Vec<Leftover> {
    let engine = engine().await;
    let found = engine
        .labelled(&format!("drydock.run={run_id}"))
        .await
        .unwrap();
    if !found.is_empty() {
        engine.remove_leftovers(&found).await.unwrap();
    }
    found
}

/// Fails unless the engine holds nothing of the run (and cleans it up if it does).
pub async fn assert_nothing_left(run_id: &str) {
    let left = sweep_run(run_id).await;
    assert!(
        left.is_empty(),
        "run {run_id} left objects behind: {left:?}"
    );
}

/// A run id unique to this test process and name.
pub fn run_id(name: &str) -> String {
    format!("t{}-{name}", std::process::id())
}
