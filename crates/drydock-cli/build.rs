//! Records the git commit the binary is built from, for `drydock --version`.
//! Outside a git checkout (a source tarball, a vendored crate) the version
//! says `commit unknown` instead of failing the build.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]);
    let date = git(&["log", "-1", "--format=%cs", "HEAD"]);
    let described = match (commit, date) {
        (Some(c), Some(d)) => format!("commit {c} {d}"),
        (Some(c), None) => format!("commit {c}"),
        _ => "commit unknown".to_string(),
    };
    println!("cargo:rustc-env=DRYDOCK_COMMIT={described}");
    // Rebuild the version when HEAD moves (a commit, a checkout).
    // (A path that does not exist, such as a packed ref, would rerun this
    // script on every build: only existing files are named.)
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &head_ref]));
    }
    watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    for path in watched.into_iter().flatten() {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
