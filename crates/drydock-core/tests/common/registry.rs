//! Registries on loopback for tests: Debian's `docker-registry` started on a
//! free 127.0.0.1 port with temporary storage (optionally behind htpasswd
//! authentication), killed when the guard drops. Std only (no HTTP client crate).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
pub const USER: &str = "ci";
/// Standard base64 of the credential JSON holds `+` and `/` with these
/// characters: bollard's own encoding of it is dropped by the daemon.
pub const SPECIAL_PASSWORD: &str = "pa?>~ss?>~w0rd~~>>??";

/// A registry process; killed (and its storage removed) on drop.
pub struct Registry {
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
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `GET path` with the registry's credentials: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.port, path, self.credentials.as_ref())
    }

    /// The tags the registry holds for `name` (empty when unknown).
    pub fn tags(&self, name: &str) -> Vec<String> {
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
pub fn tools_installed(test: &str) -> bool {
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
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a registry on a free loopback port; with `credentials`, behind
/// htpasswd (bcrypt) authentication. Waits until it answers.
pub fn start_registry(credentials: Option<(&str, &str)>) -> Registry {
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
pub fn http_get(port: u16, path: &str, credentials: Option<&(String, String)>) -> (u16, String) {
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
