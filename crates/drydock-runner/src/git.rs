//! Git through the `git` command line, with argument arrays only (never a
//! shell): branch names, commit messages and paths are data.
//!
//! Each repository has a bare mirror under the state folder, fetched from its
//! URL; each run gets a detached worktree of the exact commit it tests.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// A git command that failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("git {command}: {message}")]
pub struct GitError {
    /// The subcommand (`fetch`, `worktree add`…).
    pub command: String,
    /// Its stderr (trimmed), or why it could not start.
    pub message: String,
}

/// Runs `git` with `args` (each one argv element) in `dir`; returns stdout.
pub async fn git<I, S>(dir: Option<&Path>, args: I) -> Result<String, GitError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let name = args
        .iter()
        .map(|a| a.to_string_lossy())
        .find(|a| !a.starts_with('-') && !a.contains('='))
        .unwrap_or_default()
        .to_string();
    let mut cmd = tokio::process::Command::new("git");
    if let Some(dir) = dir {
        cmd.arg("-C").arg(dir);
    }
    cmd.args(&args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = cmd.output().await.map_err(|e| GitError {
        command: name.clone(),
        message: format!("cannot start git: {e}"),
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(GitError {
            command: name,
            message: stderr.trim().lines().last().unwrap_or("failed").to_string(),
        })
    }
}

/// `path` made absolute against the current folder (without resolving
/// symlinks); as given when the current folder cannot be read.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Whether `s` looks like a full object name.
pub fn is_sha(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// The branches of a remote and their heads (`git ls-remote --heads`).
pub async fn ls_remote(url: &str) -> Result<Vec<(String, String)>, GitError> {
    let out = git(None, ["ls-remote", "--heads", "--end-of-options", url]).await?;
    Ok(out
        .lines()
        .filter_map(|line| {
            let (sha, name) = line.split_once('\t')?;
            let branch = name.strip_prefix("refs/heads/")?;
            is_sha(sha).then(|| (branch.to_string(), sha.to_string()))
        })
        .collect())
}

/// A bare mirror of a repository.
#[derive(Debug, Clone)]
pub struct Mirror {
    /// The bare repository.
    pub path: PathBuf,
    /// Where it is fetched from and pushed to.
    pub url: String,
}

impl Mirror {
    /// Creates the bare repository when missing. A relative `path` is made
    /// absolute (against the current folder): git commands run with
    /// `-C <mirror>` would resolve it against the mirror otherwise.
    pub async fn ensure(path: PathBuf, url: &str) -> Result<Mirror, GitError> {
        let path = absolute(&path);
        if !path.join("HEAD").is_file() {
            if let Some(parent) = path.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            git(
                None,
                [
                    OsStr::new("init"),
                    OsStr::new("--bare"),
                    OsStr::new("--quiet"),
                    path.as_os_str(),
                ],
            )
            .await?;
        }
        Ok(Mirror {
            path,
            url: url.to_string(),
        })
    }

    async fn git<I, S>(&self, args: I) -> Result<String, GitError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        git(Some(&self.path), args).await
    }

    /// Fetches every branch of the remote into the mirror.
    pub async fn fetch(&self) -> Result<(), GitError> {
        self.git([
            "fetch",
            "--prune",
            "--no-tags",
            "--quiet",
            "--end-of-options",
            &self.url,
            "+refs/heads/*:refs/heads/*",
        ])
        .await
        .map(drop)
    }

    /// The commit a branch of the mirror points to.
    pub async fn branch_head(&self, branch: &str) -> Option<String> {
        let refname = format!("refs/heads/{branch}^{{commit}}");
        self.git([
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &refname,
        ])
        .await
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| is_sha(s))
    }

    /// Whether the mirror holds this commit.
    pub async fn has_commit(&self, sha: &str) -> bool {
        is_sha(sha)
            && self
                .git([
                    "cat-file",
                    "-e",
                    "--end-of-options",
                    &format!("{sha}^{{commit}}"),
                ])
                .await
                .is_ok()
    }

    /// Whether `ancestor` is `descendant` or one of its ancestors.
    pub async fn is_ancestor(&self, ancestor: &str, descendant: &str) -> bool {
        self.git(["merge-base", "--is-ancestor", ancestor, descendant])
            .await
            .is_ok()
    }

    /// Adds a detached worktree of `sha` at `dir` (made absolute first: git
    /// runs in the mirror, where a relative path means something else).
    pub async fn add_worktree(&self, dir: &Path, sha: &str) -> Result<(), GitError> {
        let dir = &absolute(dir);
        if !is_sha(sha) {
            return Err(GitError {
                command: "worktree add".into(),
                message: format!("{sha:?} is not a commit id"),
            });
        }
        self.git([
            OsStr::new("worktree"),
            OsStr::new("add"),
            OsStr::new("--detach"),
            OsStr::new("--quiet"),
            OsStr::new("--"),
            dir.as_os_str(),
            OsStr::new(sha),
        ])
        .await
        .map(drop)
    }

    /// Removes a worktree (and its folder), then prunes stale entries.
    pub async fn remove_worktree(&self, dir: &Path) {
        let dir = &absolute(dir);
        let _ = self
            .git([
                OsStr::new("worktree"),
                OsStr::new("remove"),
                OsStr::new("--force"),
                OsStr::new("--"),
                dir.as_os_str(),
            ])
            .await;
        let _ = std::fs::remove_dir_all(dir);
        let _ = self.git(["worktree", "prune"]).await;
    }

    /// Pushes `sha` to `branch` of the remote, never forcing: a branch that
    /// moved meanwhile refuses the push.
    pub async fn push(&self, sha: &str, branch: &str) -> Result<(), GitError> {
        let refspec = format!("{sha}:refs/heads/{branch}");
        self.git([
            "push",
            "--quiet",
            "--porcelain",
            "--end-of-options",
            &self.url,
            &refspec,
        ])
        .await
        .map(drop)
    }
}

/// Merges `sha` into the worktree's HEAD (a merge commit); returns the new
/// HEAD. A conflict aborts the merge and is an error.
pub async fn merge_in_worktree(
    worktree: &Path,
    sha: &str,
    message: &str,
    no_ff: bool,
) -> Result<String, GitError> {
    let mut args = vec![
        "-c",
        "user.name=drydock runner",
        "-c",
        "user.email=runner@drydock.invalid",
        "merge",
        "--no-edit",
        "--quiet",
        "-m",
        message,
    ];
    if no_ff {
        args.push("--no-ff");
    }
    args.extend(["--end-of-options", sha]);
    if let Err(e) = git(Some(worktree), &args).await {
        let _ = git(Some(worktree), ["merge", "--abort"]).await;
        return Err(e);
    }
    let head = git(Some(worktree), ["rev-parse", "HEAD"]).await?;
    Ok(head.trim().to_string())
}
