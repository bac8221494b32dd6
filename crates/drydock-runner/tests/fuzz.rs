//! Mutation fuzzing of what the runner reads from outside, like pipelines
//! are fuzzed in drydock-core (the same mutator): its configuration file,
//! and webhook bodies (both GitHub content types) with the branch matching
//! they lead to. Bounded to run in the normal suite.

use std::path::Path;
use std::time::Duration;

use drydock_runner::config::{glob, Config};
use drydock_runner::web::{github_payload, parse_push, PushRequest};

#[path = "../../drydock-core/tests/mutate/mod.rs"]
mod mutate;

const CONFIGS: &[&str] = &[
    "listen: 127.0.0.1:8780\nstate_dir: state\nconcurrency: 2\nrun_timeout: 30m\npoll_interval: 30s\nrequeue_interrupted: true\nmax_body: 1048576\nrepos:\n  - name: app\n    url: ../git/app.git\n    pipeline: pipelines/ci.yml\n    branches: [main, 'release/*']\n    central: main\n    candidates: ['ready/*']\n    integrate: fast-forward\n    poll: 10s\n    deploy: { channel: staging, config: deploy/staging.yml }\n",
    "repos:\n  - { name: a, url: 'https://example.com/a.git', poll: off, deploy: staging }\n  - name: b\n    url: git@example.com:b.git\n    integrate: merge\n",
    "webhook_secret: { env: HOOK }\napi_token: { env: HOOK }\nrepos: []\n",
];

#[test]
fn mutated_runner_configurations_are_answered_with_locations() {
    let seeds: Vec<Vec<u8>> = CONFIGS.iter().map(|c| c.as_bytes().to_vec()).collect();
    let env = |name: &str| (name == "HOOK").then(|| "a-long-enough-secret".to_string());
    mutate::run(
        "runner-config",
        &seeds,
        3_000,
        Duration::from_secs(5),
        |input| {
            let must_fail =
                mutate::has_forbidden_byte(input) || std::str::from_utf8(input).is_err();
            match Config::parse_bytes(input, Path::new("/etc/drydock/runner.yml"), &env) {
                Ok(_) if must_fail => Err("accepted a control character or invalid UTF-8".into()),
                Ok(config) => {
                    if !config.state_dir.is_absolute() {
                        return Err(format!("relative state_dir {:?}", config.state_dir));
                    }
                    Ok("valid".into())
                }
                Err(e) => {
                    let m = e.to_string();
                    // `FILE:LINE:COL: message`, line and column from 1.
                    let rest = m
                        .strip_prefix("/etc/drydock/runner.yml:")
                        .ok_or_else(|| format!("not located: {m}"))?;
                    let mut parts = rest.splitn(3, ':');
                    let line: usize = parts.next().and_then(|l| l.parse().ok()).unwrap_or(0);
                    let col: usize = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
                    if line == 0 || col == 0 {
                        return Err(format!("not located: {m}"));
                    }
                    Ok("invalid".into())
                }
            }
        },
    );
}

const PUSH: &str = r#"{"ref":"refs/heads/ready/feature-1","before":"0000000000000000000000000000000000000000","after":"0123456789abcdef0123456789abcdef01234567","repository":{"name":"app","full_name":"org/app","clone_url":"https://example.com/org/app.git"},"pusher":{"name":"x"}}"#;

fn form(json: &[u8]) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &String::from_utf8_lossy(json))
        .finish()
        .into_bytes()
}

#[test]
fn both_github_content_types_carry_the_same_push() {
    let json = PUSH.as_bytes();
    let from_json = parse_push(&github_payload(Some("application/json"), json).unwrap()).unwrap();
    let body = form(json);
    let from_form = parse_push(
        &github_payload(
            Some("application/x-www-form-urlencoded; charset=utf-8"),
            &body,
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(from_json, from_form);
    assert!(
        matches!(from_json, PushRequest::Push { ref branch, .. } if branch == "ready/feature-1")
    );
    assert!(github_payload(Some("application/x-www-form-urlencoded"), b"other=1").is_err());
    assert!(github_payload(Some("text/plain"), json).is_err());
}

#[test]
fn mutated_webhook_bodies_are_answered() {
    let seeds = vec![PUSH.as_bytes().to_vec(), form(PUSH.as_bytes())];
    let patterns = ["main", "ready/*", "*a*a*a*a*a*a*a*a*a*a*b", "release/*/x*"];
    mutate::run("webhook", &seeds, 5_000, Duration::from_secs(2), |input| {
        let mut outcome = String::new();
        for content_type in ["application/json", "application/x-www-form-urlencoded"] {
            match github_payload(Some(content_type), input).map(|p| parse_push(&p)) {
                Ok(Ok(PushRequest::Push { branch, after, .. })) => {
                    if !drydock_runner::config::valid_branch(&branch)
                        || !drydock_runner::git::is_sha(&after)
                    {
                        return Err(format!("accepted branch {branch:?} / commit {after:?}"));
                    }
                    for p in patterns {
                        glob(p, &branch);
                    }
                    outcome.push_str("push ");
                }
                Ok(Ok(PushRequest::Ignored(_))) => outcome.push_str("ignored "),
                Ok(Err(_)) | Err(_) => outcome.push_str("refused "),
            }
        }
        Ok(outcome.trim_end().to_string())
    });
}
