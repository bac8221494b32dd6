//! `drydock run` with `release.registry` and `drydock push`, end to end
//! against registries on loopback (Debian's `docker-registry`; skipped with a
//! message when it is not installed). Needs the `drydock/debian:bookworm`
//! base image.

mod common;
#[path = "../../drydock-core/tests/common/registry.rs"]
mod registry;

use common::{assert_nothing_left, engine, run_id, text, Repo};
use registry::{free_port, start_registry, tools_installed, SPECIAL_PASSWORD, USER};

const PIPELINE: &str = "version: 1
name: ${PIPELINE_NAME}
build: {context: app}
tiers:
  - name: package
    build: [production]
release:
  target: production
  name: ${PUSH_NAME}
  channel: staging
  registry: ${REGISTRY}
";

/// Removes every local tag of `name` (in any registry) and the build tag of
/// `pipeline` when dropped, even after a failed assertion.
struct Images {
    name: String,
    pipeline: String,
}

impl Drop for Images {
    fn drop(&mut self) {
        let Ok(out) = std::process::Command::new("docker")
            .args(["images", "--format", "{{.Repository}}:{{.Tag}}"])
            .output()
        else {
            return;
        };
        let suffix = format!("{}:", self.name);
        let build = format!("drydock-build/{}:", self.pipeline);
        let mine: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|r| {
                r.starts_with(&suffix) || r.contains(&format!("/{suffix}")) || r.starts_with(&build)
            })
            .map(str::to_string)
            .collect();
        if !mine.is_empty() {
            let _ = std::process::Command::new("docker")
                .arg("rmi")
                .arg("-f")
                .args(&mine)
                .output();
        }
    }
}

fn repo(marker: &str) -> Repo {
    let repo = Repo::empty_for_tests();
    let files = [
        ("pipelines/push.yml", PIPELINE.to_string()),
        (
            "app/Dockerfile",
            "FROM drydock/debian:bookworm AS production\nCOPY marker /marker\n".to_string(),
        ),
        ("app/marker", format!("{marker}\n")),
    ];
    for (path, content) in files {
        let path = repo.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    repo.commit("push demo");
    repo
}

fn head(repo: &Repo) -> String {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(repo.path())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn ledger_len(output: &std::process::Output) -> usize {
    serde_json::from_slice::<Vec<serde_json::Value>>(&output.stdout)
        .map(|v| v.len())
        .unwrap_or(0)
}

#[tokio::test]
async fn runs_push_their_tags_and_a_refused_push_changes_nothing() {
    if !tools_installed("runs_push_their_tags_and_a_refused_push_changes_nothing") {
        return;
    }
    let engine = engine().await;
    let pipeline = format!("pushdemo-{}", std::process::id());
    let name = format!("drydock-test/{pipeline}");
    let _images = Images {
        name: name.clone(),
        pipeline: pipeline.clone(),
    };
    let open = start_registry(None);
    let auth = start_registry(Some((USER, SPECIAL_PASSWORD)));
    let repo = repo(&name);
    let sha = head(&repo);

    // 1. A green run pushes sha, run id and channel to the open registry.
    let first = run_id("push1");
    let output = repo
        .run(
            &["run", "pipelines/push.yml", "--run-id", &first],
            &[
                ("PUSH_NAME", &name),
                ("PIPELINE_NAME", &pipeline),
                ("REGISTRY", &open.host()),
            ],
        )
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout)
            .contains(&format!("pushed {}/{name}:staging", open.host())),
        "{}",
        text(&output)
    );
    let mut tags = open.tags(&name);
    tags.sort();
    let mut expected = vec![sha.clone(), first.clone(), "staging".to_string()];
    expected.sort();
    assert_eq!(tags, expected);
    assert_nothing_left(&first).await;
    let staging = engine
        .image(&format!("{name}:staging"))
        .await
        .unwrap()
        .expect("channel tag")
        .id;
    let releases = repo.run(&["releases", "staging", "--json"], &[]).await;
    assert_eq!(ledger_len(&releases), 1, "{}", text(&releases));

    // 2. A new commit, pushed with a wrong password: exit 3, a clear message
    // without the password, and nothing changed.
    std::fs::write(repo.path().join("app/marker"), format!("{name} v2\n")).unwrap();
    repo.commit("v2");
    let second = run_id("push2");
    let wrong = "Wr0ng?>~pass";
    let output = repo
        .run(
            &["run", "pipelines/push.yml", "--run-id", &second],
            &[
                ("PUSH_NAME", &name),
                ("PIPELINE_NAME", &pipeline),
                ("REGISTRY", &auth.host()),
                ("DRYDOCK_REGISTRY_USER", USER),
                ("DRYDOCK_REGISTRY_PASSWORD", wrong),
            ],
        )
        .await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(3), "{all}");
    assert!(all.contains("authentication failed"), "{all}");
    assert!(all.contains(&auth.host()), "{all}");
    assert!(!all.contains(wrong), "the password was printed: {all}");
    assert!(auth.tags(&name).is_empty());
    let staging_now = engine
        .image(&format!("{name}:staging"))
        .await
        .unwrap()
        .unwrap()
        .id;
    assert_eq!(
        staging_now, staging,
        "the channel moved after a refused push"
    );
    for tag in [head(&repo), second.clone(), "staging".into()] {
        assert!(
            engine
                .image(&format!("{}/{name}:{tag}", auth.host()))
                .await
                .unwrap()
                .is_none(),
            "local registry tag {tag} left after a refused push"
        );
    }
    let releases = repo.run(&["releases", "staging", "--json"], &[]).await;
    assert_eq!(ledger_len(&releases), 1, "{}", text(&releases));
    assert_nothing_left(&second).await;

    // 3. The right password (with `?>~`) from a password file: pushed, released.
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), format!("{SPECIAL_PASSWORD}\n")).unwrap();
    let third = run_id("push3");
    let output = repo
        .run(
            &["run", "pipelines/push.yml", "--run-id", &third, "--json"],
            &[
                ("PUSH_NAME", &name),
                ("PIPELINE_NAME", &pipeline),
                ("REGISTRY", &auth.host()),
                ("DRYDOCK_REGISTRY_USER", USER),
                (
                    "DRYDOCK_REGISTRY_PASSWORD_FILE",
                    secret.path().to_str().unwrap(),
                ),
            ],
        )
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let pushed: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "pushed")
        .map(|e| e["reference"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(pushed.len(), 3, "{}", text(&output));
    assert!(pushed[2].ends_with(":staging"));
    assert!(auth.tags(&name).contains(&"staging".to_string()));
    let releases = repo.run(&["releases", "staging", "--json"], &[]).await;
    assert_eq!(ledger_len(&releases), 2, "{}", text(&releases));
    assert_nothing_left(&third).await;

    // 4. `drydock push` sends what the channel points to elsewhere.
    let output = repo
        .run(
            &[
                "push",
                "staging",
                "--registry",
                &format!("{}/mirror", open.host()),
            ],
            &[],
        )
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(open
        .tags(&format!("mirror/{name}"))
        .contains(&"staging".to_string()));
    let down = format!("127.0.0.1:{}", free_port());
    let output = repo
        .run(&["push", "staging", "--registry", &down], &[])
        .await;
    assert_eq!(output.status.code(), Some(3), "{}", text(&output));
    assert!(text(&output).contains("unreachable"), "{}", text(&output));
    let output = repo
        .run(&["push", "staging", "--registry", "http://x"], &[])
        .await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let output = repo
        .run(&["push", "nowhere", "--registry", &open.host()], &[])
        .await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
}
