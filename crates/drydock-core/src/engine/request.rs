//! What a build is asked (`BuildRequest`), what it reports while it runs
//! (`BuildProgress`) and gives (`Built`), and the error of a failed build:
//! the shapes both builders share.

use std::collections::{BTreeMap, HashMap};

use super::context::BuildContext;
use super::terminal::strip_ansi;
use super::EngineError;

/// One image build: a context, an optional target stage and build args.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The files sent to the engine (already filtered by `.dockerignore`).
    pub context: BuildContext,
    /// The Dockerfile stage to build (`None` = the last stage).
    pub target: Option<String>,
    /// Build arguments that are part of the image identity (digested).
    pub args: BTreeMap<String, String>,
    /// Build arguments that are not part of its identity (proxies, pip index):
    /// passed to the build, left out of the digest.
    pub transient_args: BTreeMap<String, String>,
    /// Labels put on the image (besides the digest).
    pub labels: HashMap<String, String>,
    /// A tag (`repo:tag`) pointed at the result.
    pub tag: Option<String>,
    /// Build from scratch: no digest reuse, no layer cache.
    pub no_cache: bool,
    /// A PEM CA bundle that the build's network access should trust,
    /// without it reaching the image: see [`crate::trust`] and
    /// `docs/trust.md` for what reaches which builder. Not part of the
    /// digest, except where it is injected as a context file.
    pub ca_bundle: Option<Vec<u8>>,
    /// Secrets the Dockerfile mounts (`RUN --mount=type=secret,id=NAME`),
    /// by id. Only BuildKit can mount them: with the classic builder a
    /// build that has secrets is refused ([`EngineError::Build`]). Their
    /// names are part of the digest, never their values, which reach no
    /// layer, history entry or label.
    pub secrets: BTreeMap<String, Vec<u8>>,
}

/// Progress of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildProgress {
    /// A Dockerfile step started, e.g. `Step 3/9 : RUN pip install …`.
    Step(String),
    /// A line of output of the current step.
    Output(String),
}

/// The result of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// Image id.
    pub image_id: String,
    /// Content digest of context, Dockerfile, args and target.
    pub digest: String,
    /// True when an image with this digest already existed and no build ran.
    pub reused: bool,
}

pub(super) fn build_error(what: &str, step: Option<String>, message: String) -> EngineError {
    let mut message = strip_ansi(message.trim());
    let from_step = step
        .as_deref()
        .and_then(|s| s.get(..5))
        .is_some_and(|s| s.eq_ignore_ascii_case("FROM "));
    if from_step || message.contains("pull access denied") || message.contains("manifest unknown") {
        message.push_str(
            "\n  hint: the base image is not in the engine and no registry is reachable; \
             run `drydock images bootstrap`",
        );
    }
    EngineError::Build {
        what: what.to_string(),
        step,
        message,
    }
}

/// `Step 3/9 : RUN x` → `RUN x`.
pub(super) fn step_instruction(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("Step ")?;
    let (_, instruction) = rest.split_once(" : ")?;
    Some(instruction.trim())
}

/// Splits `repo:tag` (the repo may hold a registry port) into its parts.
pub fn split_tag(reference: &str) -> (&str, &str) {
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (reference, "latest"),
    }
}
