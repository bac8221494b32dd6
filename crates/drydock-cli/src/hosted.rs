//! Hosted CI configuration files that run a drydock pipeline: the text
//! `drydock ci export <provider>` writes (see docs/hosted-ci.md).
//!
//! Every provider gets one job that installs drydock, makes sure a Docker
//! Engine answers (the provider's own docker where it has one), builds the
//! base images, runs the pipeline once with `--json`, and publishes the
//! merged JUnit report and the results folder where that provider shows
//! them. Tiers are not split into provider jobs: one drydock run shares its
//! images, network and services between tiers, which separate jobs (separate
//! machines) would not.
//!
//! Every value that reaches the generated text is checked against a narrow
//! character set first ([`ExportOptions::validate`]), so that it can be
//! written inside YAML single quotes, shell single quotes and Groovy strings
//! without escaping.

use std::fmt::Write as _;

/// A hosted CI provider drydock writes a configuration file for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Provider {
    /// GitHub Actions: `.github/workflows/drydock.yml`.
    Github,
    /// GitLab CI/CD: `.gitlab-ci.yml`.
    Gitlab,
    /// CircleCI: `.circleci/config.yml`.
    Circleci,
    /// Travis CI: `.travis.yml`.
    Travis,
    /// Jenkins (declarative pipeline): `Jenkinsfile`.
    Jenkins,
}

impl Provider {
    /// Every provider, in the order the docs list them.
    #[cfg(test)]
    pub const ALL: [Provider; 5] = [
        Provider::Github,
        Provider::Gitlab,
        Provider::Circleci,
        Provider::Travis,
        Provider::Jenkins,
    ];

    /// The name on the command line (`github`…).
    pub fn name(self) -> &'static str {
        match self {
            Provider::Github => "github",
            Provider::Gitlab => "gitlab",
            Provider::Circleci => "circleci",
            Provider::Travis => "travis",
            Provider::Jenkins => "jenkins",
        }
    }

    /// Where the provider reads its configuration, relative to the
    /// repository root.
    pub fn default_path(self) -> &'static str {
        match self {
            Provider::Github => ".github/workflows/drydock.yml",
            Provider::Gitlab => ".gitlab-ci.yml",
            Provider::Circleci => ".circleci/config.yml",
            Provider::Travis => ".travis.yml",
            Provider::Jenkins => "Jenkinsfile",
        }
    }
}

/// How the generated job installs drydock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Install {
    /// `cargo install --locked --git URL [--rev REV] drydock-cli` (a Rust
    /// toolchain is installed with rustup first where the machine has none).
    Git {
        /// The repository URL (`https://…`, `ssh://…`).
        url: String,
        /// A commit, tag or branch (`--rev`); the default branch when `None`.
        rev: Option<String>,
    },
    /// A prebuilt `drydock` binary for linux/x86_64 downloaded with curl.
    Binary {
        /// The binary's `https://` URL.
        url: String,
    },
}

/// What `drydock ci export` generates from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOptions {
    /// The pipeline file, relative to the repository root, `/`-separated.
    pub pipeline: String,
    /// Branches whose pushes (and pull/merge requests into which) run the
    /// pipeline; the first is the release branch. At least one.
    pub branches: Vec<String>,
    /// Release to this channel on pushes to the first branch, and never on
    /// other builds (`drydock run --channel` / `--no-release`); `None`: the
    /// pipeline's `release:` applies as written on every build.
    pub channel: Option<String>,
    /// How drydock gets onto the machine.
    pub install: Install,
    /// Where the file is written, relative to the repository root, when not
    /// the provider's default path (it goes into the regeneration command).
    pub output: Option<String>,
    /// The pipeline's `secrets:`, read from the pipeline file: each must
    /// reach the hosted job from the provider's secret store.
    pub secrets: Vec<HostedSecret>,
}

/// A secret of the pipeline, as the hosted job must provide it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostedSecret {
    /// `{env: VAR}`: the job maps the provider's secret `VAR` to the
    /// environment variable `VAR` of the run step (GitHub: `env:` from
    /// `secrets.VAR`; Jenkins: `credentials('VAR')`, a secret text), or the
    /// provider exports it to every job by itself (GitLab CI/CD variables,
    /// CircleCI project variables, Travis repository settings).
    Env {
        /// The secret's name in the pipeline.
        name: String,
        /// The environment variable (`[A-Za-z_][A-Za-z0-9_]*`).
        var: String,
    },
    /// `{file: path}`: a file on the build machine, which the job cannot
    /// write for you: the generated file says so in a comment (without the
    /// path: `~/` resolves differently on each machine, and `--check` must
    /// give the same text everywhere).
    File {
        /// The secret's name in the pipeline.
        name: String,
    },
}

/// A secret's environment variable name: only those are written (YAML,
/// Groovy and shell take them unquoted).
fn valid_var(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
        && s.len() <= 128
}

/// The comment lines that say how the pipeline's secrets reach this
/// provider's job (empty without secrets).
fn secrets_comment(provider: Provider, opts: &ExportOptions, comment: &str) -> String {
    let mut out = String::new();
    for secret in &opts.secrets {
        match secret {
            HostedSecret::Env { name, var } => {
                let how = match provider {
                    Provider::Github => format!("the repository secret {var} (Settings > Secrets and variables > Actions), passed to the run step below"),
                    Provider::Gitlab => format!("a masked CI/CD variable {var} (Settings > CI/CD > Variables), which GitLab exports to the job"),
                    Provider::Circleci => format!("a project environment variable {var} (Project Settings > Environment Variables) or a context"),
                    Provider::Travis => format!("a repository environment variable {var} (More options > Settings), not displayed in the build log"),
                    Provider::Jenkins => format!("a Jenkins credential of kind secret text with id {var}, bound in the run stage below"),
                };
                let _ = writeln!(out, "{comment} secret {name}: {how}.");
            }
            HostedSecret::File { name } => {
                let _ = writeln!(
                    out,
                    "{comment} secret {name}: read from the file the pipeline's `secrets:` names, which must exist on the build machine before the run (write it from the provider's secret store)."
                );
            }
        }
    }
    out
}

/// An option value that cannot be written into a generated file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{option} {value:?}: {expected}")]
pub struct InvalidOption {
    /// The option (`--branch`…).
    pub option: &'static str,
    /// The value given.
    pub value: String,
    /// What is accepted.
    pub expected: &'static str,
}

fn invalid(option: &'static str, value: &str, expected: &'static str) -> InvalidOption {
    InvalidOption {
        option,
        value: value.to_string(),
        expected,
    }
}

/// A repository-relative path: `/`-separated components of
/// `[A-Za-z0-9._-]`, none empty, `.` or `..`, not starting with `-`.
fn valid_rel_path(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && s.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && !c.starts_with('-')
                && c.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch))
        })
}

/// A branch name that git accepts and that needs no quoting anywhere:
/// `[A-Za-z0-9._/-]`, no `..`, `//`, leading `-`, `/` or `.`, trailing `/`
/// or `.lock` (a subset of `git check-ref-format`'s rules).
fn valid_branch(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/-".contains(c))
        && !s.starts_with(['-', '/', '.'])
        && !s.ends_with('/')
        && !s.ends_with(".lock")
        && !s.contains("..")
        && !s.contains("//")
        && !s.contains("/.")
}

/// A URL without characters that YAML, shell or Groovy quoting would
/// change: a scheme among `schemes`, then RFC 3986 unreserved and
/// delimiter characters except quotes, `$`, `` ` ``, `\`, `!` and spaces.
fn valid_url(s: &str, schemes: &[&str]) -> bool {
    schemes.iter().any(|scheme| {
        s.strip_prefix(scheme)
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
    }) && s.len() <= 500
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~:/?#[]@%+=,;&".contains(c))
}

impl ExportOptions {
    /// Checks every value that reaches the generated text.
    ///
    /// Errors: [`InvalidOption`] naming the option, the value and what is
    /// accepted.
    pub fn validate(&self) -> Result<(), InvalidOption> {
        for secret in &self.secrets {
            match secret {
                HostedSecret::Env { var, .. } if !valid_var(var) => {
                    return Err(invalid(
                        "secrets:",
                        var,
                        "an environment variable name [A-Za-z_][A-Za-z0-9_]*",
                    ))
                }
                _ => {}
            }
        }
        if !valid_rel_path(&self.pipeline) {
            return Err(invalid(
                "--pipeline",
                &self.pipeline,
                "expected a path inside the repository made of letters, digits, `.`, `_`, `-` and `/`",
            ));
        }
        if self.branches.is_empty() {
            return Err(invalid("--branch", "", "give at least one branch"));
        }
        for branch in &self.branches {
            if !valid_branch(branch) {
                return Err(invalid(
                    "--branch",
                    branch,
                    "expected a branch name of letters, digits, `.`, `_`, `-` and `/`",
                ));
            }
        }
        if let Some(channel) = &self.channel {
            if !drydock_core::pipeline::is_tag(channel) {
                return Err(invalid(
                    "--channel",
                    channel,
                    "expected an image tag [A-Za-z0-9_][A-Za-z0-9_.-]* (at most 128 characters)",
                ));
            }
        }
        match &self.install {
            Install::Git { url, rev } => {
                if !valid_url(url, &["https://", "http://", "ssh://", "git://"]) {
                    return Err(invalid(
                        "--install-git",
                        url,
                        "expected an https://, ssh:// or git:// repository URL without quotes, spaces, `$` or `\\`",
                    ));
                }
                if let Some(rev) = rev {
                    if !valid_branch(rev) {
                        return Err(invalid(
                            "--install-rev",
                            rev,
                            "expected a commit, tag or branch of letters, digits, `.`, `_`, `-` and `/`",
                        ));
                    }
                }
            }
            Install::Binary { url } => {
                if !valid_url(url, &["https://"]) {
                    return Err(invalid(
                        "--install-url",
                        url,
                        "expected an https:// URL without quotes, spaces, `$` or `\\`",
                    ));
                }
            }
        }
        if let Some(output) = &self.output {
            if !valid_rel_path(output) {
                return Err(invalid(
                    "--output",
                    output,
                    "expected a path inside the repository made of letters, digits, `.`, `_`, `-` and `/`",
                ));
            }
        }
        Ok(())
    }

    /// The `drydock ci export …` command that writes this file again (and,
    /// with `--check`, checks it), as written in its header and its sync
    /// check step.
    pub fn command(&self, provider: Provider) -> String {
        let mut c = format!(
            "drydock ci export {} --pipeline {}",
            provider.name(),
            self.pipeline
        );
        for branch in &self.branches {
            let _ = write!(c, " --branch {branch}");
        }
        if let Some(channel) = &self.channel {
            let _ = write!(c, " --channel {channel}");
        }
        match &self.install {
            Install::Git { url, rev } => {
                let _ = write!(c, " --install-git '{url}'");
                if let Some(rev) = rev {
                    let _ = write!(c, " --install-rev {rev}");
                }
            }
            Install::Binary { url } => {
                let _ = write!(c, " --install-url '{url}'");
            }
        }
        if let Some(output) = &self.output {
            let _ = write!(c, " --output {output}");
        }
        c
    }

    fn release_branch(&self) -> &str {
        &self.branches[0]
    }
}

/// Where the generated jobs install the binary: `$HOME/.drydock/bin/drydock`.
const BIN: &str = "\"$HOME/.drydock/bin/drydock\"";

/// The shell lines that install drydock into `$HOME/.drydock/bin`.
fn install_script(install: &Install) -> Vec<String> {
    match install {
        Install::Git { url, rev } => {
            let rev = rev
                .as_ref()
                .map(|r| format!(" --rev '{r}'"))
                .unwrap_or_default();
            vec![
                "if ! command -v cargo >/dev/null 2>&1; then".into(),
                "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal".into(),
                "  . \"$HOME/.cargo/env\"".into(),
                "fi".into(),
                format!(
                    "cargo install --locked --root \"$HOME/.drydock\" --git '{url}'{rev} drydock-cli"
                ),
            ]
        }
        Install::Binary { url } => vec![
            "mkdir -p \"$HOME/.drydock/bin\"".into(),
            format!("curl -fsSL --retry 3 -o \"$HOME/.drydock/bin/drydock\" '{url}'"),
            "chmod +x \"$HOME/.drydock/bin/drydock\"".into(),
        ],
    }
}

/// Provider-specific shell facts the run script needs.
struct ShellFacts {
    /// A shell expression for a run id unique on the machine's engine.
    run_id: &'static str,
    /// A shell condition true on a push (not a pull request) of `{branch}`.
    release_if: &'static str,
}

fn facts(provider: Provider) -> ShellFacts {
    match provider {
        Provider::Github => ShellFacts {
            run_id: "gh-${GITHUB_RUN_ID}-${GITHUB_RUN_ATTEMPT}",
            release_if:
                "[ \"$GITHUB_EVENT_NAME\" = push ] && [ \"$GITHUB_REF_NAME\" = '{branch}' ]",
        },
        Provider::Gitlab => ShellFacts {
            run_id: "gl-${CI_JOB_ID}",
            // CI_COMMIT_BRANCH is unset in merge request pipelines.
            release_if: "[ \"${CI_COMMIT_BRANCH:-}\" = '{branch}' ]",
        },
        Provider::Circleci => ShellFacts {
            run_id: "circle-${CIRCLE_WORKFLOW_JOB_ID:-$CIRCLE_BUILD_NUM}",
            release_if:
                "[ \"${CIRCLE_BRANCH:-}\" = '{branch}' ] && [ -z \"${CIRCLE_PR_NUMBER:-}\" ]",
        },
        Provider::Travis => ShellFacts {
            run_id: "travis-${TRAVIS_JOB_ID}",
            // On a pull request, TRAVIS_BRANCH is the target branch.
            release_if:
                "[ \"$TRAVIS_PULL_REQUEST\" = false ] && [ \"$TRAVIS_BRANCH\" = '{branch}' ]",
        },
        Provider::Jenkins => ShellFacts {
            // BUILD_TAG (jenkins-<job>-<number>) is unique on the controller;
            // a run id is [A-Za-z0-9_.-], at most 64 characters.
            run_id:
                "$(printf '%s' \"jenkins-${BUILD_TAG}\" | tr -c 'A-Za-z0-9_.-' '-' | cut -c1-64)",
            // CHANGE_ID is set on change (pull/merge) request builds.
            release_if: "[ \"${BRANCH_NAME:-}\" = '{branch}' ] && [ -z \"${CHANGE_ID:-}\" ]",
        },
    }
}

/// The shell lines that run the pipeline once: results in
/// `drydock-results/<run id>/`, the merged JUnit copied to
/// `drydock-junit/junit.xml`, drydock's exit code kept.
fn run_script(provider: Provider, opts: &ExportOptions) -> Vec<String> {
    let facts = facts(provider);
    let mut lines = vec![format!("run_id=\"{}\"", facts.run_id)];
    let release = match &opts.channel {
        Some(channel) => {
            lines.push("release=--no-release".into());
            lines.push(format!(
                "if {}; then release='--channel {channel}'; fi",
                facts.release_if.replace("{branch}", opts.release_branch())
            ));
            " $release"
        }
        None => "",
    };
    lines.extend([
        "status=0".to_string(),
        format!(
            "{BIN} run '{}' --json --results drydock-results --run-id \"$run_id\"{release} || status=$?",
            opts.pipeline
        ),
        "mkdir -p drydock-junit".into(),
        "cp \"drydock-results/$run_id/junit.xml\" drydock-junit/junit.xml || true".into(),
        "exit \"$status\"".into(),
    ]);
    lines
}

/// The shell line that fails when the committed file is stale.
fn check_script(provider: Provider, opts: &ExportOptions) -> String {
    let command = opts.command(provider);
    let rest = command.strip_prefix("drydock ").unwrap_or(&command);
    format!("{BIN} {rest} --check")
}

/// Lines as a YAML literal block at `indent` spaces.
fn block(lines: &[String], indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    for line in lines {
        if line.is_empty() {
            out.push('\n');
        } else {
            let _ = writeln!(out, "{pad}{line}");
        }
    }
    out
}

/// The header comment: what wrote the file and how to write it again.
fn header(provider: Provider, opts: &ExportOptions, comment: &str) -> String {
    format!(
        "{comment} Generated by drydock; do not edit. To change it, change the options and run:\n\
         {comment}   {}\n\
         {comment} (the job below fails when this file is stale: `--check`). See docs/hosted-ci.md.\n{}",
        opts.command(provider),
        secrets_comment(provider, opts, comment),
    )
}

/// The environment variables of the pipeline's `{env: VAR}` secrets.
fn secret_vars(opts: &ExportOptions) -> Vec<&str> {
    opts.secrets
        .iter()
        .filter_map(|s| match s {
            HostedSecret::Env { var, .. } => Some(var.as_str()),
            HostedSecret::File { .. } => None,
        })
        .collect()
}

/// A YAML flow sequence of single-quoted branch names.
fn yaml_branches(opts: &ExportOptions) -> String {
    let quoted: Vec<String> = opts.branches.iter().map(|b| format!("'{b}'")).collect();
    format!("[{}]", quoted.join(", "))
}

/// The generated file's text, for options that [`ExportOptions::validate`]
/// accepted.
pub fn render(provider: Provider, opts: &ExportOptions) -> String {
    match provider {
        Provider::Github => github(opts),
        Provider::Gitlab => gitlab(opts),
        Provider::Circleci => circleci(opts),
        Provider::Travis => travis(opts),
        Provider::Jenkins => jenkins(opts),
    }
}

/// The jq program that turns `summary.json` (docs/events.md, its schema in
/// docs/schema/summary.schema.json) into a Markdown table for GitHub's job
/// summary: a row per tier, then the flaky steps and tests and the allowed
/// failures when there are any.
const SUMMARY_JQ: &str = r###"jq -r '"## drydock: \(.pipeline) \(.outcome // "unknown")", "", "| tier | status | seconds | tests | failed | skipped |", "| --- | --- | --- | --- | --- | --- |", (.tiers[] | "| \(.name) | \(.status) | \(.duration_ms / 1000) | \(.tests.tests) | \(.tests.failures + .tests.errors) | \(.tests.skipped) |"), "", ((.flaky_steps // [])[] | "- flaky: \(.)"), ((.flaky_tests // [])[] | "- flaky test: \(.)"), ((.allowed_failures // [])[] | "- failed, allowed: \(.)")' "$f" >> "$GITHUB_STEP_SUMMARY""###;

fn github(opts: &ExportOptions) -> String {
    let p = Provider::Github;
    let branches = yaml_branches(opts);
    let mut s = header(p, opts, "#");
    let _ = write!(
        s,
        "name: drydock\n\
         on:\n  push:\n    branches: {branches}\n  pull_request:\n    branches: {branches}\n  workflow_dispatch: {{}}\n\
         permissions:\n  contents: read\n\
         concurrency:\n  group: drydock-${{{{ github.ref }}}}\n  cancel-in-progress: true\n\
         jobs:\n  drydock:\n    name: drydock run {pipeline}\n    # The hosted runner's own Docker Engine runs the pipeline.\n    runs-on: ubuntu-latest\n    timeout-minutes: 60\n    steps:\n\
         \x20     - uses: actions/checkout@v4\n\
         \x20     - name: Install drydock\n        run: |\n{install}\
         \x20     - name: Check that this file is up to date\n        run: |\n{check}\
         \x20     - name: Build the base images\n        run: |\n{bootstrap}\
         \x20     - name: Run the pipeline\n{env}        run: |\n{run}\
         \x20     - name: Job summary\n        if: always()\n        run: |\n{summary}\
         \x20     - name: Upload the JUnit report\n        if: always()\n        uses: actions/upload-artifact@v4\n        with:\n          name: drydock-junit\n          path: drydock-junit/junit.xml\n          if-no-files-found: ignore\n\
         \x20     - name: Upload the results folder\n        if: always()\n        uses: actions/upload-artifact@v4\n        with:\n          name: drydock-results\n          path: drydock-results/\n          if-no-files-found: ignore\n",
        pipeline = opts.pipeline,
        install = block(&install_script(&opts.install), 10),
        check = block(&[check_script(p, opts)], 10),
        bootstrap = block(
            &[
                "sudo apt-get update -qq".into(),
                "sudo apt-get install -y -qq mmdebstrap".into(),
                format!("sudo {BIN} images bootstrap"),
            ],
            10
        ),
        run = block(&run_script(p, opts), 10),
        env = {
            let vars = secret_vars(opts);
            if vars.is_empty() {
                String::new()
            } else {
                let mut env = String::from("        env:\n");
                for var in vars {
                    let _ = writeln!(env, "          {var}: ${{{{ secrets.{var} }}}}");
                }
                env
            }
        },
        summary = block(
            &[
                "for f in drydock-results/*/summary.json; do".into(),
                "  [ -f \"$f\" ] || continue".into(),
                format!("  {SUMMARY_JQ}"),
                "done".into(),
            ],
            10
        ),
    );
    s
}

fn gitlab(opts: &ExportOptions) -> String {
    let p = Provider::Gitlab;
    let mut rules = String::new();
    for branch in &opts.branches {
        let _ = writeln!(
            rules,
            "    - if: '$CI_PIPELINE_SOURCE == \"merge_request_event\" && $CI_MERGE_REQUEST_TARGET_BRANCH_NAME == \"{branch}\"'"
        );
    }
    for branch in &opts.branches {
        let _ = writeln!(rules, "    - if: '$CI_COMMIT_BRANCH == \"{branch}\"'");
    }
    let mut script = vec![
        "apt-get update -qq".to_string(),
        "apt-get install -y -qq mmdebstrap".into(),
    ];
    script.extend(install_script(&opts.install));
    script.push(check_script(p, opts));
    script.push(format!("{BIN} images bootstrap"));
    script.extend(run_script(p, opts));
    let mut s = header(p, opts, "#");
    let _ = write!(
        s,
        "workflow:\n  rules:\n{rules}\
         stages: [test]\n\
         drydock:\n  stage: test\n  image: rust:1-bookworm\n\
         \x20 # The pipeline's engine: Docker-in-Docker (needs a runner that allows privileged services).\n\
         \x20 services:\n    - name: docker:27-dind\n      alias: docker\n\
         \x20 variables:\n    DOCKER_HOST: tcp://docker:2375\n    DOCKER_TLS_CERTDIR: ''\n\
         \x20 timeout: 1h\n\
         \x20 script:\n    - |\n{script}\
         \x20 artifacts:\n    when: always\n    expire_in: 30 days\n    paths:\n      - drydock-results/\n    reports:\n      junit: drydock-junit/junit.xml\n",
        script = block(&script, 6),
    );
    s
}

fn circleci(opts: &ExportOptions) -> String {
    let p = Provider::Circleci;
    let mut s = header(p, opts, "#");
    let _ = write!(
        s,
        "version: 2.1\n\
         jobs:\n  drydock:\n\
         \x20   # A machine executor: a VM with its own Docker Engine, where the\n\
         \x20   # pipeline's bind mounts work (a remote docker would not see them).\n\
         \x20   machine:\n      image: ubuntu-2404:current\n    resource_class: medium\n\
         \x20   steps:\n      - checkout\n\
         \x20     - run:\n          name: Install drydock\n          command: |\n{install}\
         \x20     - run:\n          name: Check that this file is up to date\n          command: |\n{check}\
         \x20     - run:\n          name: Build the base images\n          command: |\n{bootstrap}\
         \x20     - run:\n          name: Run the pipeline\n          no_output_timeout: 30m\n          command: |\n{run}\
         \x20     - store_test_results:\n          path: drydock-junit\n\
         \x20     - store_artifacts:\n          path: drydock-results\n          destination: drydock-results\n\
         workflows:\n  drydock:\n    jobs:\n      - drydock:\n          filters:\n            branches:\n              only: {branches}\n",
        install = block(&install_script(&opts.install), 12),
        check = block(&[check_script(p, opts)], 12),
        bootstrap = block(
            &[
                "sudo apt-get update -qq".into(),
                "sudo apt-get install -y -qq mmdebstrap".into(),
                format!("sudo {BIN} images bootstrap"),
            ],
            12
        ),
        run = block(&run_script(p, opts), 12),
        branches = yaml_branches(opts),
    );
    s
}

fn travis(opts: &ExportOptions) -> String {
    let p = Provider::Travis;
    let language = match opts.install {
        Install::Git { .. } => "rust",
        Install::Binary { .. } => "minimal",
    };
    let install = install_script(&opts.install);
    let mut s = header(p, opts, "#");
    let _ = write!(
        s,
        "os: linux\ndist: jammy\nlanguage: {language}\n\
         # Travis's own Docker Engine runs the pipeline.\n\
         services:\n  - docker\n\
         branches:\n  only: {branches}\n\
         addons:\n  apt:\n    packages:\n      - mmdebstrap\n\
         install:\n  - |\n{install}\
         before_script:\n  - |\n{check}\
         \x20 - |\n    sudo {BIN} images bootstrap\n\
         script:\n  - |\n{run}\
         # Travis shows no test reports and keeps no artifacts without an S3\n\
         # bucket: print the run's summary in the log instead.\n\
         after_script:\n  - |\n    cat drydock-results/*/summary.json || true\n",
        branches = yaml_branches(opts),
        install = block(&install, 4),
        check = block(&[check_script(p, opts)], 4),
        // One script entry so that `exit` ends a subshell, not Travis's build script.
        run = block(&subshell(run_script(p, opts)), 4),
    );
    s
}

/// The lines wrapped in `( … )`: `exit` then leaves only the subshell.
fn subshell(lines: Vec<String>) -> Vec<String> {
    let mut out = vec!["(".to_string()];
    out.extend(lines.into_iter().map(|l| format!("  {l}")));
    out.push(")".into());
    out
}

fn jenkins(opts: &ExportOptions) -> String {
    let p = Provider::Jenkins;
    let when: Vec<String> = opts
        .branches
        .iter()
        .flat_map(|b| {
            [
                format!("branch '{b}'"),
                format!("changeRequest target: '{b}'"),
            ]
        })
        .collect();
    let sh = |lines: &[String]| {
        let mut body = String::from("\n          set -eu\n");
        for line in lines {
            let _ = writeln!(body, "          {line}");
        }
        body
    };
    let mut bootstrap_and_run = vec![format!("{BIN} images bootstrap")];
    bootstrap_and_run.extend(run_script(p, opts));
    let mut s = header(p, opts, "//");
    let _ = write!(
        s,
        "// Needs an agent labelled `docker` with a Docker Engine, curl, mmdebstrap and\n\
         // a user that may run mmdebstrap (root, or unprivileged user namespaces).\n\
         pipeline {{\n\
         \x20 agent {{ label 'docker' }}\n\
         \x20 options {{\n    timeout(time: 60, unit: 'MINUTES')\n    buildDiscarder(logRotator(numToKeepStr: '30'))\n  }}\n\
         \x20 stages {{\n\
         \x20   stage('Install drydock') {{\n      steps {{\n        sh '''{install}        '''\n      }}\n    }}\n\
         \x20   stage('Check that this file is up to date') {{\n      steps {{\n        sh '''{check}        '''\n      }}\n    }}\n\
         \x20   stage('Run the pipeline') {{\n      when {{\n        anyOf {{\n{when}        }}\n      }}\n{environment}      steps {{\n        sh '''{run}        '''\n      }}\n    }}\n\
         \x20 }}\n\
         \x20 post {{\n    always {{\n\
         \x20     junit allowEmptyResults: true, testResults: 'drydock-junit/junit.xml'\n\
         \x20     archiveArtifacts artifacts: 'drydock-results/**', allowEmptyArchive: true\n\
         \x20   }}\n  }}\n}}\n",
        install = sh(&install_script(&opts.install)),
        check = sh(&[check_script(p, opts)]),
        run = sh(&bootstrap_and_run),
        when = when
            .iter()
            .map(|w| format!("          {w}\n"))
            .collect::<String>(),
        environment = {
            let vars = secret_vars(opts);
            if vars.is_empty() {
                String::new()
            } else {
                let mut env = String::from("      environment {\n");
                for var in vars {
                    let _ = writeln!(env, "        {var} = credentials('{var}')");
                }
                env.push_str("      }\n");
                env
            }
        },
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(install: Install, channel: Option<&str>) -> ExportOptions {
        ExportOptions {
            pipeline: "pipelines/flask-api.yml".into(),
            branches: vec!["main".into(), "release/1.x".into()],
            channel: channel.map(str::to_string),
            install,
            output: None,
            secrets: Vec::new(),
        }
    }

    fn git() -> Install {
        Install::Git {
            url: "https://github.com/example/drydock".into(),
            rev: Some("v0.1.0".into()),
        }
    }

    fn binary() -> Install {
        Install::Binary {
            url: "https://example.com/drydock/v0.1.0/drydock-x86_64-linux".into(),
        }
    }

    /// The job summary's jq program, run by jq on the `summary.json` that
    /// drydock's results writer makes from a run's events.
    #[test]
    fn the_github_job_summary_reads_a_real_summary() {
        use drydock_core::events::{Event, Outcome, Status, TestCounts};
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("results/r1");
        let mut writer = drydock_core::report::ResultsWriter::create(&run).unwrap();
        let counts = TestCounts {
            tests: 9,
            failures: 1,
            errors: 1,
            skipped: 2,
        };
        for event in [
            Event::TierFinished {
                tier: "unit".into(),
                status: Status::Failed,
                duration_ms: 2500,
                tests: counts,
            },
            Event::RunFinished {
                run_id: "r1".into(),
                outcome: Outcome::Failed,
                duration_ms: 3000,
                error: None,
                removed: 0,
                cancel_reason: None,
                failure: None,
            },
        ] {
            writer.handle(&event).unwrap();
        }
        let markdown = dir.path().join("summary.md");
        let script = format!("f={}; {SUMMARY_JQ}", run.join("summary.json").display());
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .env("GITHUB_STEP_SUMMARY", &markdown)
            .output()
            .expect("sh runs (jq: scripts/ensure-engine.sh installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(&markdown).unwrap();
        assert!(
            text.contains("| unit | failed | 2.5 | 9 | 2 | 2 |"),
            "{text}"
        );
        assert!(text.starts_with("## drydock: "), "{text}");
    }

    /// Every provider's file says where each secret comes from; GitHub
    /// and Jenkins map `{env: VAR}` secrets into the run step themselves.
    #[test]
    fn secrets_reach_the_run_step_or_are_named_for_the_provider() {
        let mut opts = sample(git(), None);
        opts.secrets = vec![
            HostedSecret::Env {
                name: "API_TOKEN".into(),
                var: "TRIAL_API_TOKEN".into(),
            },
            HostedSecret::File {
                name: "DEPLOY_KEY".into(),
            },
        ];
        opts.validate().unwrap();
        for provider in Provider::ALL {
            let text = render(provider, &opts);
            assert!(
                text.contains("secret API_TOKEN: ") && text.contains("TRIAL_API_TOKEN"),
                "{provider:?}:\n{text}"
            );
            assert!(
                text.contains("secret DEPLOY_KEY: read from the file"),
                "{provider:?}"
            );
        }
        let github = render(Provider::Github, &opts);
        let run_step = &github[github.find("- name: Run the pipeline").unwrap()..];
        assert!(
            run_step.starts_with(
                "- name: Run the pipeline\n        env:\n          TRIAL_API_TOKEN: ${{ secrets.TRIAL_API_TOKEN }}\n        run: |"
            ),
            "{github}"
        );
        let jenkins = render(Provider::Jenkins, &opts);
        assert!(
            jenkins.contains("TRIAL_API_TOKEN = credentials('TRIAL_API_TOKEN')"),
            "{jenkins}"
        );
        opts.secrets = vec![HostedSecret::Env {
            name: "X".into(),
            var: "A B".into(),
        }];
        assert!(opts.validate().is_err());
    }

    #[test]
    fn snapshots() {
        for provider in Provider::ALL {
            let git = render(provider, &sample(git(), Some("staging")));
            insta::assert_snapshot!(format!("{}_git_channel", provider.name()), git);
            let bin = render(provider, &sample(binary(), None));
            insta::assert_snapshot!(format!("{}_binary", provider.name()), bin);
        }
    }

    #[test]
    fn rendering_is_deterministic_and_names_its_command() {
        for provider in Provider::ALL {
            let opts = sample(git(), Some("staging"));
            let text = render(provider, &opts);
            assert_eq!(text, render(provider, &opts));
            assert!(text.contains(&opts.command(provider)), "{provider:?}");
            assert!(text.contains("--check"), "{provider:?}");
            assert!(
                text.contains("--json --results drydock-results"),
                "{provider:?}"
            );
        }
    }

    #[test]
    fn channel_releases_only_on_the_first_branch() {
        let text = render(Provider::Github, &sample(git(), Some("staging")));
        assert!(text.contains("release=--no-release"));
        assert!(
            text.contains("[ \"$GITHUB_REF_NAME\" = 'main' ]; then release='--channel staging'")
        );
        let text = render(Provider::Github, &sample(git(), None));
        assert!(!text.contains("--no-release"));
        assert!(!text.contains("--channel"));
    }

    #[test]
    fn values_that_need_quoting_are_refused() {
        type Change = fn(&mut ExportOptions);
        let cases: Vec<(Change, &str)> = vec![
            (|o| o.pipeline = "../x.yml".into(), "--pipeline"),
            (|o| o.pipeline = "/abs.yml".into(), "--pipeline"),
            (|o| o.pipeline = "a b.yml".into(), "--pipeline"),
            (|o| o.pipeline = "p/-x.yml".into(), "--pipeline"),
            (|o| o.branches = vec![], "--branch"),
            (|o| o.branches = vec!["ma'in".into()], "--branch"),
            (|o| o.branches = vec!["a..b".into()], "--branch"),
            (|o| o.branches = vec!["-x".into()], "--branch"),
            (|o| o.branches = vec!["x.lock".into()], "--branch"),
            (|o| o.branches = vec!["$(id)".into()], "--branch"),
            (|o| o.channel = Some("not ok".into()), "--channel"),
            (|o| o.channel = Some(".x".into()), "--channel"),
            (
                |o| {
                    o.install = Install::Git {
                        url: "https://x/$(id)".into(),
                        rev: None,
                    }
                },
                "--install-git",
            ),
            (
                |o| {
                    o.install = Install::Git {
                        url: "file:///tmp/x".into(),
                        rev: None,
                    }
                },
                "--install-git",
            ),
            (
                |o| {
                    o.install = Install::Git {
                        url: "https://x/y".into(),
                        rev: Some("v1 ;rm".into()),
                    }
                },
                "--install-rev",
            ),
            (
                |o| {
                    o.install = Install::Binary {
                        url: "http://x/drydock".into(),
                    }
                },
                "--install-url",
            ),
            (
                |o| {
                    o.install = Install::Binary {
                        url: "https://x/d'rydock".into(),
                    }
                },
                "--install-url",
            ),
            (|o| o.output = Some("../Jenkinsfile".into()), "--output"),
        ];
        for (change, option) in cases {
            let mut opts = sample(git(), None);
            change(&mut opts);
            let err = opts.validate().expect_err(option);
            assert_eq!(err.option, option, "{opts:?}");
        }
        assert_eq!(sample(git(), Some("staging")).validate(), Ok(()));
        assert_eq!(sample(binary(), None).validate(), Ok(()));
    }
}
