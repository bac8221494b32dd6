//! Integration tests of the engine layer against the real Docker Engine (no
//! mocks). They need a running engine and the bootstrapped base images
//! (`drydock images bootstrap`). Everything a test creates carries drydock
//! labels with a run id unique to the test and is removed by
//! [`common::engine_test`] at the end, even when the test fails.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use drydock_core::engine::labels::{self, RunLabels};
use drydock_core::engine::{BindMount, BuildProgress, Builder, Engine, EngineError};

use common::{engine_test, write_files, Scope, DEBIAN, PYTHON};

// ---------------------------------------------------------------- builds

const IGNORE_DOCKERFILE: &str = "FROM drydock/debian:bookworm\nCOPY . /ctx\n";

#[tokio::test]
async fn build_honours_dockerignore_and_reuses_by_digest() {
    engine_test("ignore", &[DEBIAN], |s: Scope| async move {
        let dir = tempfile::tempdir().unwrap();
        write_files(
            dir.path(),
            &[
                ("Dockerfile", IGNORE_DOCKERFILE),
                (
                    ".dockerignore",
                    "# comment\nsecret.txt\n*.log\nbuild/\n!build/keep.txt\n",
                ),
                ("app.txt", &format!("app of {}\n", s.run_id)),
                ("secret.txt", "do not send\n"),
                ("debug.log", "rooted pattern: excluded\n"),
                ("sub/debug.log", "not matched by *.log\n"),
                ("build/junk.bin", "excluded directory\n"),
                ("build/keep.txt", "re-included\n"),
            ],
        );
        let request = s.build_request(dir.path(), "ignore", None);
        let (first, progress) = s.build(&request).await;
        let first = first.unwrap_or_else(|e| panic!("build failed: {e}"));
        assert!(
            !first.reused,
            "first build of a fresh context reused an image"
        );
        assert!(
            progress
                .iter()
                .any(|p| matches!(p, BuildProgress::Step(l) if l.contains("COPY . /ctx"))),
            "no COPY step in progress: {progress:?}"
        );

        // What was sent is exactly what the image holds.
        let ran = s
            .run(&s.spec(
                "ls",
                &first.image_id,
                &[
                    "sh",
                    "-c",
                    "cd /ctx && find . -type f | sort && cat build/keep.txt",
                ],
            ))
            .await;
        assert_eq!(ran.code, 0, "{ran:?}");
        let listed: HashSet<&str> = ran.stdout.lines().collect();
        for (path, present) in [
            ("./Dockerfile", true),
            ("./.dockerignore", true),
            ("./app.txt", true),
            ("./sub/debug.log", true),
            ("./build/keep.txt", true),
            ("./secret.txt", false),
            ("./debug.log", false),
            ("./build/junk.bin", false),
        ] {
            assert_eq!(
                listed.contains(path),
                present,
                "{path} present={present} expected; image holds:\n{}",
                ran.stdout
            );
        }
        assert!(ran.stdout.contains("re-included"), "{}", ran.stdout);

        let info = s.engine.image(&first.image_id).await.unwrap().unwrap();
        assert_eq!(
            info.labels.get(labels::DIGEST),
            Some(&first.digest),
            "image lacks the digest label"
        );
        assert_eq!(info.labels.get(labels::RUN), Some(&s.run_id));
        let tag = request.tag.clone().unwrap();
        assert!(info.tags.contains(&tag), "{tag} not in {:?}", info.tags);

        // (change to make, reused?)
        let changed = format!("changed by {}\n", s.run_id);
        // (case, file to change and its new content, reused?)
        type Case<'a> = (&'a str, Option<(&'a str, &'a str)>, bool);
        let cases: [Case; 4] = [
            ("identical context", None, true),
            (
                "excluded file changed",
                Some(("secret.txt", &changed)),
                true,
            ),
            (
                "excluded folder changed",
                Some(("build/junk.bin", &changed)),
                true,
            ),
            ("sent file changed", Some(("app.txt", &changed)), false),
        ];
        let mut previous = first.clone();
        for (case, change, reused) in cases {
            if let Some((path, content)) = change {
                std::fs::write(dir.path().join(path), content).unwrap();
            }
            let (again, _) = s.build(&request).await;
            let again = again.unwrap_or_else(|e| panic!("{case}: build failed: {e}"));
            assert_eq!(again.reused, reused, "{case}: reused");
            if reused {
                assert_eq!(again.image_id, previous.image_id, "{case}: image id");
                assert_eq!(again.digest, previous.digest, "{case}: digest");
            } else {
                assert_ne!(again.image_id, previous.image_id, "{case}: image id");
                assert_ne!(again.digest, previous.digest, "{case}: digest");
            }
            previous = again;
        }
        let tagged = s.engine.image(&tag).await.unwrap().unwrap();
        assert_eq!(
            tagged.id, previous.image_id,
            "the tag follows the last build"
        );
    })
    .await;
}

const STAGES_DOCKERFILE: &str = "\
FROM drydock/debian:bookworm AS base
RUN echo base > /base.txt
FROM base AS tools
RUN echo tools > /tools.txt
FROM base AS final
RUN echo final > /final.txt
";

#[tokio::test]
async fn build_target_holds_only_that_stage() {
    engine_test("target", &[DEBIAN], |s: Scope| async move {
        let dir = tempfile::tempdir().unwrap();
        write_files(
            dir.path(),
            &[
                ("Dockerfile", STAGES_DOCKERFILE),
                ("marker", &s.run_id.clone()),
            ],
        );
        // (target, files present, files absent)
        let cases: [(Option<&str>, &[&str], &[&str]); 3] = [
            (Some("tools"), &["base", "tools"], &["final"]),
            (Some("final"), &["base", "final"], &["tools"]),
            (None, &["base", "final"], &["tools"]),
        ];
        let mut digests = HashSet::new();
        for (target, present, absent) in cases {
            let what = format!("target-{}", target.unwrap_or("last"));
            let request = s.build_request(dir.path(), &what, target);
            let (built, _) = s.build(&request).await;
            let built = built.unwrap_or_else(|e| panic!("{target:?}: {e}"));
            digests.insert(built.digest.clone());
            let ran = s
                .run(&s.spec(
                    &what,
                    &built.image_id,
                    &["sh", "-c", "ls / | grep '\\.txt$'"],
                ))
                .await;
            for name in present {
                assert!(
                    ran.stdout.contains(&format!("{name}.txt")),
                    "{target:?}: /{name}.txt missing: {ran:?}"
                );
            }
            for name in absent {
                assert!(
                    !ran.stdout.contains(&format!("{name}.txt")),
                    "{target:?}: /{name}.txt should not be there: {ran:?}"
                );
            }
        }
        assert_eq!(digests.len(), 3, "the target is part of the digest");
    })
    .await;
}

const UNUSED_STAGE_DOCKERFILE: &str = "\
FROM drydock/debian:bookworm AS broken
RUN false
FROM drydock/debian:bookworm AS app
RUN echo app > /app.txt
FROM app AS unused-too
RUN false
";

#[tokio::test]
async fn buildkit_skips_stages_the_target_does_not_need() {
    engine_test("skipstage", &[DEBIAN], |s: Scope| async move {
        let dir = tempfile::tempdir().unwrap();
        write_files(
            dir.path(),
            &[
                ("Dockerfile", UNUSED_STAGE_DOCKERFILE),
                ("marker", &s.run_id.clone()),
            ],
        );
        let request = s.build_request(dir.path(), "skipstage", Some("app"));
        let (built, progress, new) = s.build_counting_containers(&request).await;
        assert!(new.is_empty(), "the build left containers {new:?}");
        // The builder after the build: a fallback would have switched it.
        match s.engine.builder() {
            Builder::BuildKit => {
                let built = built.unwrap_or_else(|e| {
                    panic!("BuildKit ran a stage `app` does not need: {e} ({progress:?})")
                });
                assert!(
                    !progress
                        .iter()
                        .any(|p| matches!(p, BuildProgress::Step(l) if l.contains("RUN false"))),
                    "an unused stage ran: {progress:?}"
                );
                let ran = s
                    .run(&s.spec("skip", &built.image_id, &["cat", "/app.txt"]))
                    .await;
                assert_eq!((ran.code, ran.stdout.as_str()), (0, "app\n"), "{ran:?}");
            }
            // The classic builder runs every stage before the target.
            Builder::Classic => match built {
                Err(EngineError::Build { step, .. }) => {
                    assert_eq!(step.as_deref(), Some("RUN false"))
                }
                other => panic!("the classic builder skipped a stage: {other:?}"),
            },
        }
    })
    .await;
}

/// The trust-store convention of docs/trust.md: the CA bundle injected at
/// `.drydock-trust/ca.crt` is copied by a builder stage with a glob that
/// tolerates its absence; only the builder's result reaches the image.
const TRUST_DOCKERFILE: &str = "\
FROM drydock/debian:bookworm AS deps
COPY marker .drydock-trust* /tmp/build/
RUN mkdir -p /opt/out \\
    && if [ -f /tmp/build/ca.crt ]; then cp /tmp/build/ca.crt /opt/out/seen-ca; else echo none > /opt/out/no-ca; fi
FROM drydock/debian:bookworm AS production
COPY --from=deps /opt/out /opt/out
";

#[tokio::test]
async fn build_trust_bundle_reaches_only_the_builder_stage() {
    engine_test("trust", &[DEBIAN], |s: Scope| async move {
        let dir = tempfile::tempdir().unwrap();
        write_files(
            dir.path(),
            &[
                ("Dockerfile", TRUST_DOCKERFILE),
                ("marker", &s.run_id.clone()),
            ],
        );
        let ca = format!("-----BEGIN CERTIFICATE-----\n{}\n", s.run_id);
        // (case, injected CA, listing of /opt/out)
        let cases: [(&str, Option<&str>, &str); 2] =
            [("no CA", None, "no-ca\n"), ("CA", Some(&ca), "seen-ca\n")];
        for (case, bundle, listing) in cases {
            let mut request = s.build_request(dir.path(), "trust", Some("production"));
            // The engine adds .drydock-trust/ca.crt: the Dockerfile uses it
            // and copies nothing else that would take it along.
            request.ca_bundle = bundle.map(|b| b.as_bytes().to_vec());
            let (built, progress) = s.build(&request).await;
            let built = built.unwrap_or_else(|e| panic!("{case}: {e} ({progress:?})"));
            let script = "ls /opt/out; cat /opt/out/seen-ca 2>/dev/null; \
                          ls -d /tmp/build /.drydock-trust 2>/dev/null; true";
            let ran = s
                .run(&s.spec("trust", &built.image_id, &["sh", "-c", script]))
                .await;
            let expected = format!("{listing}{}", bundle.unwrap_or_default());
            assert_eq!(ran.stdout, expected, "{case}: {ran:?}");
            s.engine
                .remove_container(&ran.id)
                .await
                .unwrap_or_else(|e| panic!("{case}: remove: {e}"));
        }
    })
    .await;
}

#[tokio::test]
async fn build_failures_are_build_errors_and_leave_no_containers() {
    engine_test("buildfail", &[DEBIAN], |s: Scope| async move {
        // (case, Dockerfile, target, expected step, message must contain)
        type Case<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>, &'a str);
        let builder = s.engine.builder();
        let cases: [Case; 4] = [
            (
                "failing RUN",
                "FROM drydock/debian:bookworm\nRUN echo before {id}\nRUN false\nRUN echo after\n",
                None,
                Some("RUN false"),
                match builder {
                    // "The command '/bin/sh -c false' returned a non-zero code: 1"
                    Builder::Classic => "non-zero code: 1",
                    // "executor failed running [/bin/sh -c false]: exit code: 1"
                    Builder::BuildKit => "exit code: 1",
                },
            ),
            (
                "missing base image",
                "FROM drydock-test/absent-base:nope\nRUN true\n",
                None,
                Some("FROM drydock-test/absent-base:nope"),
                "drydock images bootstrap",
            ),
            (
                "syntax error",
                "FROM drydock/debian:bookworm\nNOTANINSTRUCTION x\n",
                None,
                None,
                "unknown instruction",
            ),
            (
                "unknown target",
                "FROM drydock/debian:bookworm AS one\nRUN true\n",
                Some("nope"),
                None,
                "nope",
            ),
        ];
        for (case, dockerfile, target, step, hint) in cases {
            let dir = tempfile::tempdir().unwrap();
            // The run id makes the steps before the failure unique to this test.
            let dockerfile = dockerfile.replace("{id}", &s.run_id);
            write_files(
                dir.path(),
                &[("Dockerfile", &dockerfile), ("marker", &s.run_id.clone())],
            );
            let request = s.build_request(dir.path(), "fail", target);
            let (result, progress, new) = s.build_counting_containers(&request).await;
            match result {
                Err(EngineError::Build {
                    step: got_step,
                    message,
                    ..
                }) => {
                    assert_eq!(got_step.as_deref(), step, "{case}: step ({message})");
                    assert!(
                        message.contains(hint),
                        "{case}: message lacks {hint:?}: {message}"
                    );
                }
                other => panic!("{case}: expected a Build error, got {other:?} ({progress:?})"),
            }
            assert!(new.is_empty(), "{case}: the build left containers {new:?}");
        }
        assert_eq!(
            s.engine.builder(),
            builder,
            "a failing build made the engine change builders"
        );
    })
    .await;
}

/// Serves `listener` as a proxy to the local engine that refuses BuildKit:
/// a connection whose first request is a `version=2` build gets the answer
/// of an engine without BuildKit (after its body is read); anything else is
/// passed through. Counts the refusals.
async fn refuse_buildkit(listener: tokio::net::UnixListener, refused: Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    while let Ok((mut client, _)) = listener.accept().await {
        let refused = refused.clone();
        tokio::spawn(async move {
            let mut head = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            while !head.windows(2).any(|w| w == b"\r\n") {
                match client.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&head)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            if line.contains("/build?") && line.contains("version=2") {
                refused.fetch_add(1, AtomicOrdering::SeqCst);
                // Drain a chunked body first, as a daemon would (a BuildKit
                // build sends its context over the session, not as a body).
                let chunked = String::from_utf8_lossy(&head)
                    .to_ascii_lowercase()
                    .contains("transfer-encoding: chunked");
                while chunked && !head.ends_with(b"0\r\n\r\n") {
                    match client.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let body = r#"{"message":"buildkit not supported by daemon"}"#;
                let answer = format!(
                    "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = client.write_all(answer.as_bytes()).await;
                return;
            }
            let Ok(mut upstream) = tokio::net::UnixStream::connect("/var/run/docker.sock").await
            else {
                return;
            };
            if upstream.write_all(&head).await.is_ok() {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
        });
    }
}

#[tokio::test]
async fn an_engine_refusing_buildkit_falls_back_to_classic_for_good() {
    engine_test("fallback", &[DEBIAN], |s: Scope| async move {
        if s.engine.builder() != Builder::BuildKit {
            eprintln!("skipped: the engine does not use BuildKit here");
            return;
        }
        let sockets = tempfile::tempdir().unwrap();
        let socket = sockets.path().join("docker.sock");
        let refused = Arc::new(AtomicUsize::new(0));
        let proxy = tokio::spawn(refuse_buildkit(
            tokio::net::UnixListener::bind(&socket).unwrap(),
            refused.clone(),
        ));
        let engine = Engine::connect_to(&format!("unix://{}", socket.display()))
            .await
            .unwrap();
        assert_eq!(engine.builder(), Builder::BuildKit);
        let dir = tempfile::tempdir().unwrap();
        write_files(
            dir.path(),
            &[
                (
                    "Dockerfile",
                    "FROM drydock/debian:bookworm\nCOPY marker /marker\n",
                ),
                ("marker", &s.run_id.clone()),
            ],
        );
        for (i, refusals) in [(0, 1), (1, 1)] {
            let mut request = s.build_request(dir.path(), &format!("fallback{i}"), None);
            request.no_cache = true;
            let mut progress = Vec::new();
            let built = engine
                .build(&request, |p| progress.push(p))
                .await
                .unwrap_or_else(|e| panic!("build {i}: {e}"));
            s.track_image(&built.image_id);
            assert_eq!(engine.builder(), Builder::Classic, "build {i}");
            assert_eq!(refused.load(AtomicOrdering::SeqCst), refusals, "build {i}");
            assert!(
                progress
                    .iter()
                    .any(|p| matches!(p, BuildProgress::Step(l) if l.starts_with("Step "))),
                "build {i} was not classic: {progress:?}"
            );
        }
        // The engine the test started with is a different connection: unaffected.
        assert_eq!(s.engine.builder(), Builder::BuildKit);
        proxy.abort();
    })
    .await;
}

// ------------------------------------------------------------ containers

#[tokio::test]
async fn containers_exit_codes_and_streams() {
    engine_test("exits", &[DEBIAN], |s: Scope| async move {
        // (case, shell script, exit code, stdout has, stderr has)
        let cases: [(&str, &str, i64, &str, &str); 4] = [
            ("ok", "echo fine", 0, "fine\n", ""),
            (
                "exit 3",
                "echo out; echo err >&2; exit 3",
                3,
                "out\n",
                "err\n",
            ),
            ("only stderr", "echo oops >&2; exit 1", 1, "", "oops\n"),
            ("sigkill", "echo bye; kill -KILL $$", 137, "bye\n", ""),
        ];
        for (i, (case, script, code, stdout, stderr)) in cases.into_iter().enumerate() {
            let ran = s
                .run(&s.spec(&format!("exit{i}"), DEBIAN, &["sh", "-c", script]))
                .await;
            assert_eq!(ran.code, code, "{case}: {ran:?}");
            assert_eq!(ran.stdout, stdout, "{case}: stdout");
            assert_eq!(ran.stderr, stderr, "{case}: stderr");
            let state = s.engine.container_state(&ran.id).await.unwrap();
            assert!(!state.running, "{case}: still running");
            assert_eq!(state.exit_code, Some(code), "{case}: state exit code");
            let tail = s.engine.tail_logs(&ran.id, 1).await.unwrap();
            let last = format!("{stdout}{stderr}");
            assert_eq!(
                tail.is_empty(),
                last.is_empty(),
                "{case}: tail {tail:?} of {last:?}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn containers_that_cannot_start_have_typed_errors() {
    engine_test("nostart", &[DEBIAN], |s: Scope| async move {
        // Command that is not in the image: create works, start fails.
        let mut spec = s.spec("nocmd", DEBIAN, &["drydock-no-such-command", "--flag"]);
        let id = s.engine.create_container(&spec).await.unwrap();
        match s.engine.start_container(&id, &spec).await {
            Err(EngineError::CommandNotFound {
                command, image, ..
            }) => {
                assert_eq!(command, ["drydock-no-such-command", "--flag"]);
                assert_eq!(image, DEBIAN);
            }
            other => {
                let code = s.engine.wait_container(&id).await;
                let out = s.output(&id).await;
                panic!("missing command: expected CommandNotFound, got {other:?} (exit {code:?}, {out:?})")
            }
        }

        // Missing image: create fails.
        spec.name = s.name("noimage");
        spec.image = "drydock-test/absent-image:nope".to_string();
        spec.command = Some(vec!["true".to_string()]);
        match s.engine.create_container(&spec).await {
            Err(e @ EngineError::ImageMissing { .. }) => {
                assert!(e.is_not_found());
                assert!(e.to_string().contains("drydock-test/absent-image:nope"), "{e}");
            }
            other => panic!("missing image: expected ImageMissing, got {other:?}"),
        }

        // Missing network is not a missing image.
        spec.name = s.name("nonet");
        spec.image = DEBIAN.to_string();
        spec.network = Some((s.name("absent-net"), vec!["x".to_string()]));
        // The engine checks the network at create or at start.
        let result = match s.engine.create_container(&spec).await {
            Ok(id) => s.engine.start_container(&id, &spec).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => panic!("started a container on a network that does not exist"),
            Err(e @ (EngineError::ImageMissing { .. } | EngineError::CommandNotFound { .. })) => {
                panic!("a missing network was reported as {e:?}")
            }
            Err(e) => assert!(e.to_string().contains("absent-net"), "{e}"),
        }
    })
    .await;
}

#[tokio::test]
async fn exec_returns_code_and_output() {
    engine_test("exec", &[DEBIAN], |s: Scope| async move {
        let spec = s.spec("sleeper", DEBIAN, &["sleep", "600"]);
        let id = s.engine.create_container(&spec).await.unwrap();
        s.engine.start_container(&id, &spec).await.unwrap();
        let state = s.engine.container_state(&id).await.unwrap();
        assert!(state.running, "{state:?}");
        let env = BTreeMap::from([("GREETING".to_string(), "hi from env".to_string())]);
        // (argv, exit code, output contains)
        let cases: [(&[&str], i64, &[&str]); 4] = [
            (&["true"], 0, &[]),
            (
                &["sh", "-c", "echo out; echo err >&2; exit 4"],
                4,
                &["out", "err"],
            ),
            (&["sh", "-c", "echo \"$GREETING\""], 0, &["hi from env"]),
            (&["/drydock-no-such-binary"], 126, &[]),
        ];
        for (argv, code, contains) in cases {
            let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
            let out = s
                .engine
                .exec(&id, &argv, &env)
                .await
                .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
            assert_eq!(out.exit_code, code, "{argv:?}: {out:?}");
            for needle in contains {
                assert!(out.output.contains(needle), "{argv:?}: {out:?}");
            }
        }
        // A bounded exec keeps the end of a long output, from a line start.
        let argv: Vec<String> = ["sh", "-c", "seq 1 200000; exit 3"]
            .iter()
            .map(|a| a.to_string())
            .collect();
        let out = s
            .engine
            .exec_bounded(&id, &argv, &BTreeMap::new(), 1000)
            .await
            .unwrap();
        assert_eq!(out.exit_code, 3);
        assert!(out.output.len() <= 1000, "{}", out.output.len());
        assert!(out.output.ends_with("199999\n200000\n"), "{:?}", out.output);
        let first = out.output.lines().next().unwrap();
        assert!(
            first.parse::<u32>().unwrap() > 199_000,
            "cut at a line start: {first:?}"
        );
        s.engine.kill_container(&id).await.unwrap();
        assert_eq!(s.engine.wait_container(&id).await.unwrap(), 137);
    })
    .await;
}

#[tokio::test]
async fn copy_out_files_and_folders_from_a_stopped_container() {
    engine_test("copyout", &[DEBIAN], |s: Scope| async move {
        let script = "mkdir -p /out/dir/nested && echo file > /out/file.txt \
                      && echo a > /out/dir/a.txt && echo c > /out/dir/nested/c.txt";
        let ran = s
            .run(&s.spec("writer", DEBIAN, &["sh", "-c", script]))
            .await;
        assert_eq!(ran.code, 0, "{ran:?}");
        let dest = tempfile::tempdir().unwrap();
        // (path in container, found, files expected under dest with content)
        type Case<'a> = (&'a str, bool, &'a [(&'a str, &'a str)]);
        let cases: [Case; 3] = [
            ("/out/file.txt", true, &[("file.txt", "file\n")]),
            (
                "/out/dir",
                true,
                &[("dir/a.txt", "a\n"), ("dir/nested/c.txt", "c\n")],
            ),
            ("/out/missing", false, &[]),
        ];
        for (path, found, files) in cases {
            let got = s
                .engine
                .copy_out(&ran.id, path, dest.path())
                .await
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(got, found, "{path}");
            for (rel, content) in files {
                let text = std::fs::read_to_string(dest.path().join(rel))
                    .unwrap_or_else(|e| panic!("{path}: {rel}: {e}"));
                assert_eq!(text, *content, "{path}: {rel}");
            }
        }
        let mut names: Vec<String> = std::fs::read_dir(dest.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["dir", "file.txt"],
            "no temporary files left in dest"
        );
    })
    .await;
}

#[tokio::test]
async fn stop_with_grace_period_is_prompt() {
    engine_test("stop", &[DEBIAN], |s: Scope| async move {
        let spec = s.spec("sleep", DEBIAN, &["sh", "-c", "echo ready; exec sleep 600"]);
        let id = s.engine.create_container(&spec).await.unwrap();
        s.engine.start_container(&id, &spec).await.unwrap();
        // A SIGTERM sent before docker-init has set up its signal handling
        // is lost (pid 1 ignores it): stop once the command runs.
        let mut waited = 0;
        while !s.output(&id).await.0.contains("ready") {
            waited += 1;
            assert!(waited < 200, "the container never printed ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let state = s.engine.container_state(&id).await.unwrap();
        assert!(state.running, "{state:?}");
        assert!(
            state.ip_addresses.contains_key("bridge"),
            "default network address: {state:?}"
        );
        let started = Instant::now();
        s.engine
            .stop_container(&id, Duration::from_secs(20))
            .await
            .unwrap();
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "stop took {took:?}: SIGTERM did not reach sleep"
        );
        let state = s.engine.container_state(&id).await.unwrap();
        assert!(!state.running, "{state:?}");
        assert_eq!(
            state.exit_code,
            Some(143),
            "terminated by SIGTERM: {state:?}"
        );
        // Stopping again, killing a stopped one and removing twice are fine.
        s.engine
            .stop_container(&id, Duration::from_secs(1))
            .await
            .unwrap();
        s.engine.kill_container(&id).await.unwrap();
        s.engine.remove_container(&id).await.unwrap();
        s.engine.remove_container(&id).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn env_workdir_and_bind_mounts() {
    engine_test("binds", &[DEBIAN], |s: Scope| async move {
        let script = "echo \"greeting=$GREETING\"; pwd; cat /mnt/host/in.txt; \
                      if echo new > /mnt/host/new.txt; then echo WROTE; else echo DENIED; fi";
        for (i, read_only) in [true, false].into_iter().enumerate() {
            let host = tempfile::tempdir().unwrap();
            std::fs::write(host.path().join("in.txt"), "from host\n").unwrap();
            let mut spec = s.spec(&format!("bind{i}"), DEBIAN, &["sh", "-c", script]);
            spec.env = BTreeMap::from([("GREETING".to_string(), "hello world".to_string())]);
            spec.workdir = Some("/work/sub".to_string());
            spec.binds = vec![BindMount {
                source: host.path().to_path_buf(),
                target: "/mnt/host".to_string(),
                read_only,
            }];
            let ran = s.run(&spec).await;
            assert_eq!(ran.code, 0, "ro={read_only}: {ran:?}");
            let lines: Vec<&str> = ran.stdout.lines().collect();
            let wrote = if read_only { "DENIED" } else { "WROTE" };
            assert_eq!(
                lines,
                ["greeting=hello world", "/work/sub", "from host", wrote],
                "ro={read_only}: {ran:?}"
            );
            if read_only {
                assert!(
                    ran.stderr.contains("Read-only file system"),
                    "{}",
                    ran.stderr
                );
            }
            assert_eq!(
                host.path().join("new.txt").exists(),
                !read_only,
                "ro={read_only}: host file"
            );
            // Files written as root in the container: remove them here.
            s.engine.remove_container(&ran.id).await.unwrap();
        }
    })
    .await;
}

// -------------------------------------------------------------- networks

#[tokio::test]
async fn containers_reach_each_other_by_alias_on_a_run_network() {
    engine_test("network", &[PYTHON], |s: Scope| async move {
        let network = s.name("net");
        s.engine
            .create_network(&network, s.role("network"))
            .await
            .unwrap();
        let mut server = s.spec(
            "web",
            PYTHON,
            &[
                "sh",
                "-c",
                "mkdir -p /srv && echo hello-from-web > /srv/hello.txt \
                 && exec python -m http.server 8000 --directory /srv",
            ],
        );
        server.network = Some((network.clone(), vec!["web".to_string()]));
        let server_id = s.engine.create_container(&server).await.unwrap();
        s.engine.start_container(&server_id, &server).await.unwrap();

        let fetch = "import sys, time, urllib.request\n\
                     for _ in range(100):\n\
                     \x20   try:\n\
                     \x20       print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode(), end='')\n\
                     \x20       sys.exit(0)\n\
                     \x20   except OSError as e:\n\
                     \x20       err = e\n\
                     \x20       time.sleep(0.1)\n\
                     print(err, file=sys.stderr)\n\
                     sys.exit(1)\n";
        // (url, reachable)
        let cases = [
            ("http://web:8000/hello.txt", true),
            ("http://not-an-alias:8000/hello.txt", false),
        ];
        for (i, (url, reachable)) in cases.into_iter().enumerate() {
            let mut client = s.spec(&format!("client{i}"), PYTHON, &["python", "-c", fetch, url]);
            client.network = Some((network.clone(), vec![]));
            // Failures retry 100 times; an unknown name fails fast in DNS.
            let ran = s.run(&client).await;
            if reachable {
                assert_eq!(ran.code, 0, "{url}: {ran:?}");
                assert_eq!(ran.stdout, "hello-from-web\n", "{url}");
            } else {
                assert_eq!(ran.code, 1, "{url}: {ran:?}");
            }
            s.engine.remove_container(&ran.id).await.unwrap();
        }
        let state = s.engine.container_state(&server_id).await.unwrap();
        assert!(state.ip_addresses.contains_key(&network), "{state:?}");

        // A network with a container attached cannot go; without, it can.
        assert!(
            s.engine.remove_network(&network).await.is_err(),
            "removed a network that still had a container"
        );
        s.engine.remove_container(&server_id).await.unwrap();
        s.engine.remove_network(&network).await.unwrap();
        s.engine.remove_network(&network).await.unwrap();
        let left = s
            .engine
            .labelled(&format!("{}={}", labels::RUN, s.run_id))
            .await
            .unwrap();
        assert!(left.is_empty(), "{left:?}");
    })
    .await;
}

// ----------------------------------------------------- labels and sweeps

#[tokio::test]
async fn labelled_objects_are_found_and_removed_by_run() {
    engine_test("byrun", &[DEBIAN], |s: Scope| async move {
        let network = s.name("net");
        let network_id = s
            .engine
            .create_network(&network, s.role("network"))
            .await
            .unwrap();
        let mut spec = s.spec("step", DEBIAN, &["sleep", "600"]);
        spec.network = Some((network.clone(), vec!["step".to_string()]));
        let id = s.engine.create_container(&spec).await.unwrap();
        s.engine.start_container(&id, &spec).await.unwrap();

        let filter = format!("{}={}", labels::RUN, s.run_id);
        let found = s.engine.labelled(&filter).await.unwrap();
        let mut kinds: Vec<(&str, &str)> = found.iter().map(|l| (l.kind, l.id.as_str())).collect();
        kinds.sort();
        assert_eq!(
            kinds,
            [("container", id.as_str()), ("network", network_id.as_str())]
        );
        assert!(found.iter().all(|l| l.run_id() == Some(s.run_id.as_str())));
        let removed = s.engine.remove_run(&s.run_id).await.unwrap();
        assert_eq!(removed, 2, "a running container and its network");
        assert!(s.engine.labelled(&filter).await.unwrap().is_empty());
        assert_eq!(s.engine.remove_run(&s.run_id).await.unwrap(), 0);
    })
    .await;
}

#[tokio::test]
async fn stale_and_reap_concern_only_dead_owners() {
    engine_test("reap", &[DEBIAN], |s: Scope| async move {
        // (suffix, owner pid label; None = this process, alive)
        let dead_run = s.name("dead");
        s.track_run(&dead_run);
        let dead = RunLabels {
            // Pids are below 2^22 on Linux: this one cannot exist.
            pid: 9_999_999,
            ..RunLabels::for_this_process(&dead_run, common::PIPELINE)
        };
        let cases = [
            ("alive", s.labels.clone(), false),
            ("dead", dead.clone(), true),
        ];
        let mut ids = Vec::new();
        for (suffix, owner, stale) in &cases {
            let mut spec = s.spec(suffix, DEBIAN, &["sleep", "600"]);
            spec.labels = owner.with_role("step");
            let id = s.engine.create_container(&spec).await.unwrap();
            s.engine.start_container(&id, &spec).await.unwrap();
            let network = s.name(&format!("{suffix}-net"));
            let net_id = s
                .engine
                .create_network(&network, owner.with_role("network"))
                .await
                .unwrap();
            ids.push((suffix, id, net_id, *stale));
        }

        let stale: HashSet<String> = s
            .engine
            .stale(false)
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.id)
            .collect();
        let everything: HashSet<String> = s
            .engine
            .stale(true)
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.id)
            .collect();
        for (suffix, id, net_id, is_stale) in &ids {
            for object in [id, net_id] {
                assert_eq!(stale.contains(object), *is_stale, "{suffix}: stale(false)");
                assert!(everything.contains(object), "{suffix}: stale(true)");
            }
        }

        let reaped = s.engine.reap_dead_runs().await.unwrap();
        assert!(reaped >= 2, "reaped {reaped}");
        for (suffix, id, _, is_stale) in &ids {
            let exists = s.engine.container_state(id).await.is_ok();
            assert_eq!(exists, !is_stale, "{suffix}: container after reap");
        }
        assert!(s
            .engine
            .labelled(&format!("{}={dead_run}", labels::RUN))
            .await
            .unwrap()
            .is_empty());
        let mine = s
            .engine
            .labelled(&format!("{}={}", labels::RUN, s.run_id))
            .await
            .unwrap();
        assert_eq!(
            mine.len(),
            2,
            "the live run keeps its container and network"
        );
    })
    .await;
}

// ---------------------------------------------------------------- images

#[tokio::test]
async fn import_rootfs_applies_changes() {
    engine_test("rootfs", &[], |s: Scope| async move {
        let mut tar = tar::Builder::new(Vec::new());
        let content = format!("hello from {}\n", s.run_id);
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_cksum();
        tar.append_data(&mut header, "hello.txt", content.as_bytes())
            .unwrap();
        let bytes = Bytes::from(tar.into_inner().unwrap());
        // Two chunks, to exercise a streamed body.
        let (a, b) = (bytes.slice(..700), bytes.slice(700..));
        let rootfs = futures::stream::iter([Ok(a), Ok(b)]);

        let tag = s.tag("rootfs");
        let (repo, version) = tag.split_once(':').unwrap();
        let changes = [
            "CMD [\"/hello\"]".to_string(),
            "LABEL drydock.test=1".to_string(),
        ];
        let id = s
            .engine
            .import_rootfs(rootfs, repo, version, &changes)
            .await
            .unwrap();
        let info = s.engine.image(&tag).await.unwrap().expect("imported image");
        assert_eq!(info.id, id);
        assert!(info.tags.contains(&tag), "{info:?}");
        assert_eq!(
            info.labels.get("drydock.test").map(String::as_str),
            Some("1")
        );
        s.engine.remove_image(&tag, false).await.unwrap();
        assert!(s.engine.image(&tag).await.unwrap().is_none());
        assert!(s.engine.image(&id).await.unwrap().is_none());
        s.engine.remove_image(&tag, false).await.unwrap();
    })
    .await;
}

// ------------------------------------------------------------ connection

#[tokio::test]
async fn connecting_where_nothing_listens_is_unreachable() {
    let missing = tempfile::tempdir().unwrap();
    let socket = format!("unix://{}/nonexistent.sock", missing.path().display());
    for address in [
        socket.as_str(),
        "unix:///tmp/drydock-nonexistent.sock",
        "tcp://127.0.0.1:1",
    ] {
        match Engine::connect_to(address).await {
            Err(e @ EngineError::Unreachable { .. }) => {
                let EngineError::Unreachable { host, .. } = &e else {
                    unreachable!()
                };
                assert_eq!(host, address);
                assert!(e.to_string().contains(address), "{e}");
            }
            Err(other) => panic!("{address}: expected Unreachable, got {other}"),
            Ok(engine) => panic!("{address}: connected to {}", engine.engine_version()),
        }
    }
}
