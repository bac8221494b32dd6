//! Registry push against real registries on loopback: Debian's
//! `docker-registry` (distribution 2.8) started by the test on a free
//! 127.0.0.1 port with temporary storage, one open and one with htpasswd
//! authentication. The engine treats 127.0.0.0/8 registries as insecure, so
//! plain HTTP works without configuration. Tests skip (with a message) only
//! when `docker-registry` or `htpasswd` is not installed
//! (`scripts/ensure-engine.sh` installs them).

mod common;
#[path = "common/registry.rs"]
mod registry;

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use drydock_core::engine::{EngineError, PushFailure, RegistryAuth};

use common::{engine_test, write_files, Scope, DEBIAN};
use registry::{free_port, start_registry, tools_installed, SPECIAL_PASSWORD, USER};

/// Builds a tiny image of this test and tags it `<registry>/drydock-test/push:<run id>`.
async fn tiny_image(s: &Scope, registry: &str) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    write_files(
        dir.path(),
        &[
            (
                "Dockerfile",
                "FROM drydock/debian:bookworm\nCOPY marker /marker\n",
            ),
            ("marker", &format!("{}\n", s.run_id)),
        ],
    );
    let built = s
        .build(&s.build_request(dir.path(), "push", None))
        .await
        .0
        .unwrap_or_else(|e| panic!("build failed: {e}"));
    let repo = format!("{registry}/drydock-test/push");
    let tag = s.run_id.to_lowercase();
    s.track_image(&format!("{repo}:{tag}"));
    s.engine
        .tag_image(&built.image_id, &repo, &tag)
        .await
        .unwrap();
    (format!("{repo}:{tag}"), tag)
}

fn push_error(result: Result<(), EngineError>) -> (PushFailure, String) {
    match result {
        Err(e @ EngineError::Push { kind, .. }) => {
            eprintln!("push error: {e}");
            (kind, e.to_string())
        }
        Err(other) => panic!("expected a push error, got {other:?}"),
        Ok(()) => panic!("push succeeded where it should have failed"),
    }
}

#[tokio::test]
async fn push_to_open_registry() {
    if !tools_installed("push_to_open_registry") {
        return;
    }
    let registry = start_registry(None);
    engine_test("push-open", &[DEBIAN], |s: Scope| async move {
        let (reference, tag) = tiny_image(&s, &registry.host()).await;
        let auth = RegistryAuth::anonymous(registry.host());
        s.engine
            .push_image(&reference, &auth)
            .await
            .unwrap_or_else(|e| panic!("push failed: {e}"));
        assert_eq!(registry.tags("drydock-test/push"), vec![tag]);
    })
    .await;
}

#[tokio::test]
async fn push_with_special_password_and_wrong_password() {
    if !tools_installed("push_with_special_password_and_wrong_password") {
        return;
    }
    let registry = start_registry(Some((USER, SPECIAL_PASSWORD)));
    engine_test("push-auth", &[DEBIAN], |s: Scope| async move {
        let host = registry.host();
        let (reference, tag) = tiny_image(&s, &host).await;

        // Without credentials: refused, and the message says so.
        let (kind, text) = push_error(
            s.engine
                .push_image(&reference, &RegistryAuth::anonymous(&host))
                .await,
        );
        assert_eq!(kind, PushFailure::Authentication, "{text}");
        assert!(text.contains("authentication failed"), "{text}");
        assert!(text.contains("no credentials"), "{text}");

        // A wrong password: authentication failed, password not shown.
        let wrong = "wr0ng?>~secret";
        let auth = RegistryAuth::basic(&host, USER, wrong, "test");
        let (kind, text) = push_error(s.engine.push_image(&reference, &auth).await);
        assert_eq!(kind, PushFailure::Authentication, "{text}");
        assert!(text.contains("authentication failed"), "{text}");
        assert!(text.contains(&host), "{text}");
        assert!(
            !text.contains(wrong),
            "the error shows the password: {text}"
        );
        assert!(!format!("{auth:?}").contains(wrong));
        assert!(registry.tags("drydock-test/push").is_empty());

        // The right password with `?>~`, read from a Docker config file.
        let config = tempfile::tempdir().unwrap();
        std::fs::write(
            config.path().join("config.json"),
            serde_json::json!({
                "auths": {
                    format!("http://{host}"): {
                        "auth": STANDARD.encode(format!("{USER}:{SPECIAL_PASSWORD}"))
                    }
                }
            })
            .to_string(),
        )
        .unwrap();
        let auth = RegistryAuth::resolve_with(&host, |_| None, Some(config.path())).unwrap();
        assert_eq!(auth.username(), Some(USER));
        s.engine
            .push_image(&reference, &auth)
            .await
            .unwrap_or_else(|e| panic!("push with the right password failed: {e}"));
        assert_eq!(registry.tags("drydock-test/push"), vec![tag]);
    })
    .await;
}

/// Why the workaround exists: bollard's own `X-Registry-Auth` (standard
/// base64) is dropped by the daemon for this password. When this test fails,
/// bollard (or the daemon) has fixed the encoding and the request modifier in
/// `engine/registry.rs` can go.
#[tokio::test]
async fn bollard_standard_base64_credentials_are_dropped() {
    if !tools_installed("bollard_standard_base64_credentials_are_dropped") {
        return;
    }
    let registry = start_registry(Some((USER, SPECIAL_PASSWORD)));
    engine_test("push-bollard", &[DEBIAN], |s: Scope| async move {
        use futures::StreamExt;
        let (reference, _) = tiny_image(&s, &registry.host()).await;
        let (repo, tag) = reference.rsplit_once(':').unwrap();
        let docker = bollard::Docker::connect_with_local_defaults().unwrap();
        let credentials = bollard::auth::DockerCredentials {
            username: Some(USER.to_string()),
            password: Some(SPECIAL_PASSWORD.to_string()),
            serveraddress: Some(registry.host()),
            ..Default::default()
        };
        let json = serde_json::to_string(&credentials).unwrap();
        assert!(
            STANDARD.encode(&json).contains(['+', '/']),
            "the password no longer exercises the encoding difference"
        );
        let mut stream = docker.push_image(
            repo,
            Some(bollard::query_parameters::PushImageOptions {
                tag: Some(tag.to_string()),
                ..Default::default()
            }),
            Some(credentials),
        );
        let mut error = None;
        while let Some(item) = stream.next().await {
            if let Err(e) = item {
                error = Some(e.to_string());
                break;
            }
        }
        let error = error.expect(
            "bollard's standard-base64 credentials were accepted: the workaround may be obsolete",
        );
        assert!(
            PushFailure::classify(&error) == PushFailure::Authentication,
            "{error}"
        );
    })
    .await;
}

#[tokio::test]
async fn push_to_a_registry_that_is_down() {
    if !tools_installed("push_to_a_registry_that_is_down") {
        return;
    }
    engine_test("push-down", &[DEBIAN], |s: Scope| async move {
        let host = format!("127.0.0.1:{}", free_port());
        let (reference, _) = tiny_image(&s, &host).await;
        let started = Instant::now();
        let (kind, text) = push_error(
            s.engine
                .push_image(&reference, &RegistryAuth::anonymous(&host))
                .await,
        );
        assert_eq!(kind, PushFailure::Unreachable, "{text}");
        assert!(text.contains("unreachable"), "{text}");
        assert!(text.contains(&host), "{text}");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "took {:?}",
            started.elapsed()
        );
    })
    .await;
}

#[tokio::test]
async fn push_of_a_missing_image() {
    if !tools_installed("push_of_a_missing_image") {
        return;
    }
    let registry = start_registry(None);
    engine_test("push-missing", &[], |s: Scope| async move {
        let reference = format!("{}/drydock-test/never-built:{}", registry.host(), s.run_id);
        let (kind, text) = push_error(
            s.engine
                .push_image(&reference, &RegistryAuth::anonymous(registry.host()))
                .await,
        );
        assert_eq!(kind, PushFailure::ImageMissing, "{text}");
    })
    .await;
}
