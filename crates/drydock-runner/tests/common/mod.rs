//! Helpers for runner tests: real git repositories (a bare "origin" and a
//! working clone made by the test), a tiny pipeline on drydock/debian:bookworm,
//! and a minimal HTTP client.

#![allow(dead_code)]

pub mod pg;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const SECRET: &str = "hook-secret-5f1d2c9a7e";
pub const TOKEN: &str = "api-token-93ab17c4d2";

/// Runs git (argument array) in `dir`; returns trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The tiny pipeline: one tier, one step running `command` (a JSON argv).
pub fn pipeline(command: &str) -> String {
    format!(
        "version: 1\nname: runner-fixture\ntiers:\n  - name: check\n    steps:\n      - name: probe\n        image: drydock/debian:bookworm\n        command: {command}\n        network: false\n"
    )
}

/// A bare origin and a clone with a passing pipeline on `main`.
pub struct Origin {
    pub dir: tempfile::TempDir,
}

impl Origin {
    pub fn new() -> Origin {
        let origin = Origin {
            dir: tempfile::tempdir().unwrap(),
        };
        let root = origin.dir.path();
        git(root, &["init", "-q", "--bare", "-b", "main", "origin.git"]);
        git(root, &["clone", "-q", "origin.git", "work"]);
        git(&origin.work(), &["checkout", "-q", "-b", "main"]);
        origin.write("pipelines/ci.yml", &pipeline(r#"["true"]"#));
        origin.commit("initial");
        git(&origin.work(), &["push", "-q", "origin", "main"]);
        origin
    }

    pub fn bare(&self) -> PathBuf {
        self.dir.path().join("origin.git")
    }

    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    pub fn write(&self, path: &str, text: &str) {
        let p = self.work().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// Commits everything; returns the sha.
    pub fn commit(&self, message: &str) -> String {
        git(&self.work(), &["add", "-A"]);
        git(
            &self.work(),
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        git(&self.work(), &["rev-parse", "HEAD"])
    }

    /// A new branch from `from` with one commit changing `file`; pushed. Returns its sha.
    pub fn push_branch(
        &self,
        branch: &str,
        from: &str,
        file: &str,
        text: &str,
        message: &str,
    ) -> String {
        git(&self.work(), &["fetch", "-q", "origin"]);
        git(&self.work(), &["checkout", "-q", "-B", branch, from]);
        self.write(file, text);
        let sha = self.commit(message);
        let refspec = format!("HEAD:refs/heads/{branch}");
        git(&self.work(), &["push", "-q", "origin", &refspec]);
        sha
    }

    /// The origin's head of a branch.
    pub fn head(&self, branch: &str) -> String {
        git(
            &self.bare(),
            &["rev-parse", &format!("refs/heads/{branch}")],
        )
    }

    /// A runner configuration for this origin.
    pub fn config(&self, state: &Path, poll: &str, extra_repo: &str) -> String {
        format!(
            "listen: 127.0.0.1:0\nstate_dir: {state}\nconcurrency: 2\nrun_timeout: 2m\nstop_grace: 1s\nmax_body: 65536\nwebhook_secret: {{ env: DRYDOCK_TEST_HOOK_SECRET }}\napi_token: {{ env: DRYDOCK_TEST_API_TOKEN }}\nrepos:\n  - name: app\n    url: {url}\n    branches: [main, 'feature/*']\n    candidates: ['ready/*']\n    poll: {poll}\n{extra_repo}",
            state = state.display(),
            url = self.bare().display(),
        )
    }
}

/// Waits for `check` to give a value, polling every 100 ms.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A response: status and body.
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// One HTTP/1.1 request (Connection: close); de-chunks the body.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = rest;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || tail.len() < n {
                break;
            }
            out.push_str(&tail[..n]);
            rest = tail[n..].trim_start_matches("\r\n");
        }
        out
    } else {
        rest.to_string()
    };
    Reply { status, body }
}

/// Containers labelled with this run id (any state).
pub fn containers_of(run_id: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=drydock.run={run_id}"),
        ])
        .output()
        .expect("docker runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}
