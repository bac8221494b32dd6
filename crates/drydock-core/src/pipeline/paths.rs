//! Path rules shared by every file drydock reads (pipeline, compose files,
//! deploy configs): host paths stay inside the repository, container paths
//! are absolute. Each returns the message for people; the caller adds where
//! (`file:line:col`).

use std::path::{Path, PathBuf};

/// Resolves the host path `raw`, relative to the folder `base` (the
/// repository root, or a compose file's folder): it must not be empty, and
/// must exist and stay inside `repo_root` (see [`inside_repo`]).
pub(crate) fn resolve(
    base: &Path,
    raw: &str,
    repo_root: &Path,
    what: &str,
) -> Result<PathBuf, String> {
    if raw.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    inside_repo(&base.join(raw), raw, repo_root, what)
}

/// Resolves the host path `joined` (the text `raw` of a file, already joined
/// to the folder it is relative to) through symlinks: it must exist and stay
/// inside `repo_root` (canonical). Returns the canonical path.
pub(crate) fn inside_repo(
    joined: &Path,
    raw: &str,
    repo_root: &Path,
    what: &str,
) -> Result<PathBuf, String> {
    let canonical = match joined.canonicalize() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "{what} {raw:?} does not exist (looked for {})",
                joined.display()
            ))
        }
        Err(e) => return Err(format!("{what} {raw:?} cannot be resolved: {e}")),
    };
    if !canonical.starts_with(repo_root) {
        return Err(format!(
            "{what} {raw:?} is outside the repository root {} (it resolves to {}): drydock reads only repository paths",
            repo_root.display(),
            canonical.display()
        ));
    }
    Ok(canonical)
}

/// A path inside a container must be absolute (as `docker run -v` and
/// compose's long volume syntax require).
pub(crate) fn container_path(raw: &str, what: &str) -> Result<(), String> {
    if raw.starts_with('/') {
        Ok(())
    } else {
        Err(format!(
            "{what} must be an absolute container path (starting with /), found {raw:?}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_paths_must_exist_and_stay_inside_the_repository() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("repo")).unwrap();
        std::fs::write(root.join("repo/a.txt"), "").unwrap();
        std::fs::write(root.join("outside.txt"), "").unwrap();
        std::os::unix::fs::symlink(root.join("outside.txt"), root.join("repo/link")).unwrap();
        let repo = root.join("repo");
        let cases: [(&str, Result<PathBuf, &str>); 4] = [
            ("a.txt", Ok(repo.join("a.txt"))),
            ("nope.txt", Err("does not exist")),
            ("../outside.txt", Err("is outside the repository root")),
            ("link", Err("is outside the repository root")),
        ];
        for (raw, expected) in cases {
            let got = inside_repo(&repo.join(raw), raw, &repo, "path");
            match (got, expected) {
                (Ok(p), Ok(e)) => assert_eq!(p, e, "{raw}"),
                (Err(m), Err(e)) => assert!(m.contains(e), "{raw}: {m}"),
                (got, expected) => panic!("{raw}: {got:?} vs {expected:?}"),
            }
        }
    }

    #[test]
    fn container_paths_must_be_absolute() {
        assert!(container_path("/app", "target").is_ok());
        let e = container_path("app", "target").unwrap_err();
        assert!(e.contains("absolute container path"), "{e}");
    }
}
