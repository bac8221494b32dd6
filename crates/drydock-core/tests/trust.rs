//! The CA bundle reaches unmodified Dockerfiles behind this machine's
//! intercepting proxy, and no layer, config or history of the image keeps
//! it (docs/trust.md). Real engine, real PyPI and Debian mirror through the
//! proxy; `docker save` (the CLI, in a test only) gives the image to search.
//!
//! The proxy's CA is found as the PEM blocks of the host bundle that the
//! base image's own bundle lacks; without such blocks (no intercepting
//! proxy here) the test cannot tell trust from no trust and says so.

mod common;

use std::collections::HashSet;
use std::io::Read;
use std::path::PathBuf;

use base64::Engine as _;
use drydock_core::engine::{BuildProgress, Builder, EngineError};
use drydock_core::report::cause;
use drydock_core::trust::Trust;

use common::{engine_test, write_files, Scope, PYTHON};

/// An unmodified Dockerfile: pip from PyPI, apt's HTTPS client against the
/// Debian mirror, a non-root user, a proxy setting (a predefined build arg:
/// in `RUN`'s environment, not in the history), and a copy of the whole
/// context.
const DOCKERFILE: &str = "\
FROM drydock/python:3.11
RUN pip install six==1.16.0
RUN /usr/lib/apt/apt-helper download-file https://deb.debian.org/debian/dists/bookworm/Release /tmp/Release && rm /tmp/Release
USER nobody
RUN python3 -c \"import urllib.request as u; print(u.urlopen('https://pypi.org/simple/six/').status)\"
USER root
RUN echo \"proxy setting seen: $NO_PROXY\"
COPY . /usr/src/app
";

/// A proxy setting that must reach `RUN` but not the image.
const NO_PROXY: &str = "no-proxy.drydock-test.invalid";

/// Strings drydock uses for the bundle that must appear nowhere in the image.
const DRYDOCK_PATHS: &[&str] = &[
    ".drydock-trust",
    "drydock-ca",
    "/run/secrets",
    "/etc/drydock",
];

/// The CA bundle this machine's tools use.
fn host_bundle() -> PathBuf {
    Trust::from_env()
        .ca_bundle
        .unwrap_or_else(|| PathBuf::from("/etc/ssl/certs/ca-certificates.crt"))
}

/// The PEM certificate blocks of `pem`.
fn pem_blocks(pem: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in pem.lines() {
        if line.starts_with("-----BEGIN CERTIFICATE-----") {
            current = Some(String::new());
        } else if line.starts_with("-----END CERTIFICATE-----") {
            if let Some(block) = current.take() {
                out.push(block);
            }
        } else if let Some(block) = current.as_mut() {
            block.push_str(line.trim());
            block.push('\n');
        }
    }
    out
}

/// The base image's own bundle.
async fn image_bundle(s: &Scope) -> String {
    let ran = s
        .run(&s.spec(
            "bundle",
            PYTHON,
            &["cat", "/etc/ssl/certs/ca-certificates.crt"],
        ))
        .await;
    assert_eq!(ran.code, 0, "{ran:?}");
    s.engine.remove_container(&ran.id).await.unwrap();
    ran.stdout
}

/// What to look for: each proxy CA's first base64 line, its DER bytes, and
/// drydock's paths.
fn needles(proxy_blocks: &[String]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for block in proxy_blocks {
        let first = block.lines().next().unwrap_or_default().to_string();
        out.push((format!("PEM line {first}"), first.clone().into_bytes()));
        let b64: String = block.lines().collect();
        if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(b64) {
            // A distinctive stretch from the middle (the start is shared ASN.1).
            let mid = der.len() / 2;
            let stretch = der[mid..(mid + 48).min(der.len())].to_vec();
            out.push((format!("DER of {first}"), stretch));
        }
    }
    for path in DRYDOCK_PATHS {
        out.push((format!("path {path}"), path.as_bytes().to_vec()));
    }
    out
}

/// `docker save <image>`.
async fn save(image: &str) -> Vec<u8> {
    let output = tokio::process::Command::new("docker")
        .args(["save", image])
        .output()
        .await
        .expect("the docker CLI runs");
    assert!(
        output.status.success(),
        "docker save: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Searches every file of every layer (names and contents), the config
/// (env, history) and the manifest of a `docker save` archive; the findings.
fn search_saved(saved: &[u8], needles: &[(String, Vec<u8>)]) -> Vec<String> {
    let finders: Vec<(&str, memchr::memmem::Finder)> = needles
        .iter()
        .map(|(name, bytes)| (name.as_str(), memchr::memmem::Finder::new(bytes)))
        .collect();
    let mut findings = Vec::new();
    let mut layers = 0;
    let mut configs = 0;
    let check = |what: &str, bytes: &[u8], findings: &mut Vec<String>| {
        for (name, finder) in &finders {
            if finder.find(bytes).is_some() {
                findings.push(format!("{name} in {what}"));
            }
        }
    };
    let mut outer = tar::Archive::new(saved);
    for entry in outer.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        if name.ends_with("layer.tar") {
            layers += 1;
            let mut layer = tar::Archive::new(&mut entry);
            for file in layer.entries().unwrap() {
                let mut file = file.unwrap();
                let path = String::from_utf8_lossy(&file.path_bytes()).into_owned();
                check(
                    &format!("{name}: name {path}"),
                    path.as_bytes(),
                    &mut findings,
                );
                let mut content = Vec::new();
                file.read_to_end(&mut content).unwrap();
                check(&format!("{name}: {path}"), &content, &mut findings);
            }
        } else {
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            if name.ends_with(".json") {
                configs += 1;
            }
            check(&name, &content, &mut findings);
        }
    }
    assert!(
        layers > 0 && configs > 0,
        "a save archive has layers ({layers}) and json files ({configs})"
    );
    findings
}

/// A save-like archive with one layer holding `files`, for the control.
fn fake_save(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut layer = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        layer.append_data(&mut header, path, *content).unwrap();
    }
    let layer = layer.into_inner().unwrap();
    let mut outer = tar::Builder::new(Vec::new());
    for (path, content) in [
        ("abc/layer.tar", layer.as_slice()),
        ("manifest.json", b"[]"),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        outer.append_data(&mut header, path, content).unwrap();
    }
    outer.into_inner().unwrap()
}

/// The entry paths of the top layer of a `docker save` archive.
fn last_layer_paths(saved: &[u8]) -> Vec<String> {
    let mut manifest = None;
    let mut outer = tar::Archive::new(saved);
    for entry in outer.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some("manifest.json") {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            manifest = Some(text);
        }
    }
    let manifest: serde_json::Value = serde_json::from_str(&manifest.unwrap()).unwrap();
    let last = manifest[0]["Layers"].as_array().unwrap().last().unwrap();
    let last = last.as_str().unwrap().to_string();
    let mut outer = tar::Archive::new(saved);
    for entry in outer.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some(last.as_str()) {
            let mut layer = tar::Archive::new(&mut entry);
            return layer
                .entries()
                .unwrap()
                .map(|f| String::from_utf8_lossy(&f.unwrap().path_bytes()).into_owned())
                .collect();
        }
    }
    panic!("no layer {last} in the archive")
}

fn lines(progress: &[BuildProgress]) -> Vec<String> {
    progress
        .iter()
        .map(|p| match p {
            BuildProgress::Step(l) | BuildProgress::Output(l) => l.clone(),
        })
        .collect()
}

#[tokio::test]
async fn an_unmodified_dockerfile_trusts_the_proxy_and_keeps_no_trace_of_it() {
    engine_test("trust-proxy", &[PYTHON], |s: Scope| async move {
        let host = std::fs::read_to_string(host_bundle()).expect("the host CA bundle");
        let own: HashSet<String> = pem_blocks(&image_bundle(&s).await).into_iter().collect();
        let proxy: Vec<String> = pem_blocks(&host)
            .into_iter()
            .filter(|b| !own.contains(b))
            .collect();
        assert!(
            !proxy.is_empty(),
            "the host bundle holds no CA the image lacks: no intercepting proxy to test against"
        );
        let dir = tempfile::tempdir().unwrap();
        write_files(
            dir.path(),
            &[("Dockerfile", DOCKERFILE), ("app.txt", "app\n")],
        );
        let buildkit = s.engine.with_builder(Builder::BuildKit);
        let classic = s.engine.with_builder(Builder::Classic);

        // BuildKit with the bundle: green.
        let mut request = s.build_request(dir.path(), "trust-proxy", None);
        request.ca_bundle = Some(host.clone().into_bytes());
        request
            .transient_args
            .insert("NO_PROXY".to_string(), NO_PROXY.to_string());
        // Really download (no layer cache from an earlier run).
        request.no_cache = true;
        let mut progress = Vec::new();
        let built = buildkit
            .build(&request, |p| progress.push(p))
            .await
            .unwrap_or_else(|e| panic!("{e}\n{:#?}", lines(&progress)));
        s.track_image(&built.image_id);
        assert_eq!(
            buildkit.builder(),
            Builder::BuildKit,
            "fell back to classic"
        );
        let log = lines(&progress);
        assert!(
            log.iter()
                .any(|l| l.contains("Successfully installed six-1.16.0")),
            "{log:#?}"
        );
        assert!(
            log.iter()
                .any(|l| l.contains("the CA bundle is mounted") && l.contains("in 4 of 4 RUN")),
            "{log:#?}"
        );
        assert!(
            log.iter()
                .any(|l| l.trim() == format!("proxy setting seen: {NO_PROXY}")),
            "{log:#?}"
        );
        // No trace: layers (file names and contents), config, history.
        let mut needles = needles(&proxy);
        needles.push((
            "the proxy setting".to_string(),
            NO_PROXY.as_bytes().to_vec(),
        ));
        let saved = save(&built.image_id).await;
        let findings = search_saved(&saved, &needles);
        assert!(findings.is_empty(), "found in the image: {findings:#?}");
        // Control: the search does find the bundle and the paths.
        let planted = fake_save(&[
            ("etc/ssl/certs/ca-certificates.crt", host.as_bytes()),
            ("usr/src/app/.drydock-trust/ca.crt", b"x"),
        ]);
        let found = search_saved(&planted, &needles);
        assert!(
            found.iter().any(|f| f.starts_with("PEM line"))
                && found.iter().any(|f| f.starts_with("path .drydock-trust")),
            "{found:#?}"
        );

        // BuildKit without the bundle: a failure whose cause names TLS.
        let mut request = s.build_request(dir.path(), "trust-none", None);
        request.no_cache = true;
        let mut progress = Vec::new();
        let failed = buildkit.build(&request, |p| progress.push(p)).await;
        let Err(EngineError::Build { step, .. }) = failed else {
            panic!("built without the CA: {failed:?}");
        };
        assert_eq!(step.as_deref(), Some("RUN pip install six==1.16.0"));
        let causes = cause::explain(&lines(&progress));
        assert!(
            causes
                .iter()
                .any(|c| c.contains("CERTIFICATE_VERIFY_FAILED")),
            "{causes:#?}"
        );

        // Classic with the bundle: it cannot lend it to RUN; the log says
        // so, and the cause shows that note with the TLS error.
        let mut request = s.build_request(dir.path(), "trust-classic", None);
        request.ca_bundle = Some(host.clone().into_bytes());
        request.no_cache = true;
        let mut progress = Vec::new();
        let failed = classic.build(&request, |p| progress.push(p)).await;
        assert!(
            matches!(failed, Err(EngineError::Build { .. })),
            "{failed:?}"
        );
        let causes = cause::explain(&lines(&progress));
        assert!(
            causes
                .iter()
                .any(|c| c.contains("classic builder cannot lend the CA bundle"))
                && causes
                    .iter()
                    .any(|c| c.contains("CERTIFICATE_VERIFY_FAILED")),
            "{causes:#?}"
        );

        // The .drydock-trust convention next to a whole-context copy: the
        // classic builder refuses before building.
        let leaky = tempfile::tempdir().unwrap();
        write_files(
            leaky.path(),
            &[(
                "Dockerfile",
                "FROM drydock/python:3.11\nCOPY .drydock-trust* /tmp/trust/\nCOPY . /usr/src/app\n",
            )],
        );
        let mut request = s.build_request(leaky.path(), "trust-leaky", None);
        request.ca_bundle = Some(host.into_bytes());
        match classic.build(&request, |_| {}).await {
            Err(EngineError::Build { step, message, .. }) => {
                assert_eq!(step.as_deref(), Some("COPY . /usr/src/app"));
                assert!(
                    message.contains("copies the whole build context"),
                    "{message}"
                );
            }
            other => panic!("the classic builder built a leaky Dockerfile: {other:?}"),
        }
    })
    .await;
}

/// A base image without a system CA bundle: no mount (which would leave
/// BuildKit's mount-point folders in the layer), and the log says why.
#[tokio::test]
async fn a_base_without_a_system_bundle_gets_no_mount_and_no_stub() {
    engine_test("trust-nobundle", &[PYTHON], |s: Scope| async move {
        let buildkit = s.engine.with_builder(Builder::BuildKit);
        let base_dir = tempfile::tempdir().unwrap();
        write_files(
            base_dir.path(),
            &[(
                "Dockerfile",
                "FROM drydock/python:3.11\nRUN rm -r /etc/ssl/certs\n",
            )],
        );
        let base_request = s.build_request(base_dir.path(), "trust-nobundle-base", None);
        let base_tag = base_request.tag.clone().unwrap();
        let (base, _) = s.build(&base_request).await;
        base.unwrap_or_else(|e| panic!("base: {e}"));

        let dir = tempfile::tempdir().unwrap();
        write_files(
            dir.path(),
            &[(
                "Dockerfile",
                &format!("FROM {base_tag}\nRUN test ! -e /etc/ssl/certs && echo no bundle here\n"),
            )],
        );
        let mut request = s.build_request(dir.path(), "trust-nobundle", None);
        request.ca_bundle = Some(b"-----BEGIN CERTIFICATE-----\nnot used\n".to_vec());
        request.no_cache = true;
        let mut progress = Vec::new();
        let built = buildkit
            .build(&request, |p| progress.push(p))
            .await
            .unwrap_or_else(|e| panic!("{e}\n{:#?}", lines(&progress)));
        let log = lines(&progress);
        assert!(
            log.iter().any(|l| l.contains("in 0 of 1 RUN")
                && l.contains("not at line 2 (no system CA bundle in the image there)")),
            "{log:#?}"
        );
        assert!(log.iter().any(|l| l.trim() == "no bundle here"), "{log:#?}");
        // The layer of that RUN holds nothing under etc/ssl.
        let saved = save(&built.image_id).await;
        let paths = last_layer_paths(&saved);
        assert!(paths.iter().any(|p| p.starts_with("etc")), "{paths:?}");
        assert!(paths.iter().all(|p| !p.starts_with("etc/ssl")), "{paths:?}");
    })
    .await;
}
