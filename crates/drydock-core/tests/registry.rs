//! Registry push against real registries on loopback: Debian's
//! `docker-registry` (distribution 2.8) started by the test on a free
//! 127.0.0.1 port with temporary storage, one open and one with htpasswd
//! authentication. The engine treats 127.0.0.0/8 registries as insecure, so
//! plain HTTP works without configuration. Tests skip (with a message) only
//! when `docker-registry` or `htpasswd` is not installed
//! (`scripts/ensure-engine.sh` installs them).

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use drydock_core::engine::{EngineError, PushFailure, RegistryAuth};

use common::{engine_test, write_files, Scope, DEBIAN};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
const USER: &str = "ci";
/// Standard base64 of the credential JSON holds `+` and `/` with these
/// characters: bollard's own encoding of it is dropped by the daemon.
const SPECIAL_PASSWORD: &str = "pa?>~ss?>~w0rd~~>>??";

/// A registry process; killed (and its storage removed) on drop.
struct Registry {
    child: Child,
    port: u16,
    credentials: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `GET path` with the registry's credentials: (status, body).
    fn get(&self, path: &str) -> (u16, String) {
        http_get(self.port, path, self.credentials.as_ref())
    }

    /// The tags the registry holds for `name` (empty when unknown).
    fn tags(&self, name: &str) -> Vec<String> {
        let (status, body) = self.get(&format!("/v2/{name}/tags/list"));
        if status != 200 {
            return Vec::new();
        }
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        value["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// True when the registry tools are installed; else says why the test is skipped.
fn tools_installed(test: &str) -> bool {
    let missing: Vec<&str> = [REGISTRY_BIN, "/usr/bin/htpasswd"]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    eprintln!(
        "skipping {test}: {} not installed (apt-get install docker-registry apache2-utils, or scripts/ensure-engine.sh)",
        missing.join(", ")
    );
    false
}

/// A port nothing listens on (at the time of asking).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a registry on a free loopback port; with `credentials`, behind
/// htpasswd (bcrypt) authentication. Waits until it answers.
fn start_registry(credentials: Option<(&str, &str)>) -> Registry {
    let dir = tempfile::tempdir().unwrap();
    let mut auth = String::new();
    if let Some((user, password)) = credentials {
        let htpasswd = dir.path().join("htpasswd");
        let out = Command::new("htpasswd")
            .args(["-Bbn", user, password])
            .output()
            .unwrap();
        assert!(out.status.success(), "htpasswd failed");
        std::fs::write(&htpasswd, &out.stdout).unwrap();
        auth = format!(
            "auth:\n  htpasswd:\n    realm: drydock-test\n    path: {}\n",
            htpasswd.display()
        );
    }
    // Another process may take the port between asking and binding: retry.
    for _ in 0..5 {
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: drydock-test-secret\n{auth}",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let mut child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut exited = false;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                exited = true; // the port was taken, most likely
                break;
            }
            let (status, _) = http_get(port, "/v2/", None);
            if status == 200 || status == 401 {
                return Registry {
                    child,
                    port,
                    credentials: credentials.map(|(u, p)| (u.to_string(), p.to_string())),
                    _dir: dir,
                };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            exited,
            "docker-registry on 127.0.0.1:{port} did not answer within 15s"
        );
    }
    panic!("docker-registry exited at start five times");
}

/// A minimal HTTP/1.0 GET on 127.0.0.1:`port` (std only): (status, body);
/// status 0 when nothing answers.
fn http_get(port: u16, path: &str, credentials: Option<&(String, String)>) -> (u16, String) {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n");
    if let Some((user, password)) = credentials {
        request.push_str(&format!(
            "Authorization: Basic {}\r\n",
            STANDARD.encode(format!("{user}:{password}"))
        ));
    }
    request.push_str("\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut response = Vec::new();
    if stream.read_to_end(&mut response).is_err() {
        return (0, String::new());
    }
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

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
