//! Image builds from a streamed, filtered context: digest reuse, then
//! BuildKit (see [`super::buildkit`]) or the classic builder.

use std::collections::HashMap;

use bollard::models::{BuildInfoAux, ImageId};
use bollard::query_parameters::BuildImageOptions;
use futures::StreamExt;

use super::builder::Builder;
use super::buildkit::{Attempt, Sent};
use super::context::ContextError;
use super::request::{
    build_error, split_tag, step_instruction, BuildProgress, BuildRequest, Built,
};
use super::terminal::LineBuffer;
use super::{labels, trustplan, Engine, EngineError};
use crate::trust::TRUST_CONTEXT_PATH;

/// The classic builder cannot mount secrets: a build that has some is
/// refused, naming them, rather than built without them.
fn refuse_secrets_without_buildkit(request: &BuildRequest, what: &str) -> Result<(), EngineError> {
    if request.secrets.is_empty() {
        return Ok(());
    }
    Err(EngineError::Build {
        what: what.to_string(),
        step: None,
        message: format!(
            "the build mounts secrets ({}), which only BuildKit can do, and the classic builder is in use (DRYDOCK_BUILDER=classic, DOCKER_BUILDKIT=0, or the engine refused BuildKit); build with BuildKit, or drop the build's `secrets`",
            request.secrets.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
    })
}

impl Engine {
    /// Builds `request`, or reuses the image that carries the same content
    /// digest. Progress lines go to `on_progress`, starting with lines
    /// beginning [`super::NOTE_PREFIX`] that say how the CA bundle reaches
    /// the build (`docs/trust.md`). A failing instruction is reported as
    /// [`EngineError::Build`] naming that instruction; so is, before
    /// anything is built, a Dockerfile that uses `.drydock-trust` next to a
    /// whole-context copy when the classic builder would have to build it.
    pub async fn build(
        &self,
        request: &BuildRequest,
        mut on_progress: impl FnMut(BuildProgress) + Send,
    ) -> Result<Built, EngineError> {
        let what = request
            .target
            .clone()
            .or_else(|| request.tag.clone())
            .unwrap_or_else(|| "image".to_string());
        // How the CA bundle reaches this build (docs/trust.md).
        let (dockerfile_name, dockerfile) = read_dockerfile(request).await?;
        let plan = trustplan::plan(request, &dockerfile, self.builder(), &what)?;
        let injected;
        let request = if plan.inject {
            let mut with_file = request.clone();
            if let Some(ca) = &request.ca_bundle {
                with_file
                    .context
                    .extra_files
                    .push((TRUST_CONTEXT_PATH.to_string(), ca.clone()));
            }
            injected = with_file;
            &injected
        } else {
            request
        };
        let digest = {
            let context = request.context.clone();
            // Secret names (not values) are part of what the build is; a
            // key with a space cannot be a build arg's name.
            let mut args = request.args.clone();
            // Build args no stage of the target declares change nothing in
            // its image (docker ignores them); the predefined proxy args
            // always count.
            // Read once for both questions below; unreadable: everything counts.
            let analysis = std::str::from_utf8(&dockerfile)
                .ok()
                .and_then(|text| super::dockerfile::analyze(text, &request.args).ok());
            if let Some(declared) = analysis
                .as_ref()
                .and_then(|a| a.declared_args(request.target.as_deref()))
            {
                args.retain(|name, _| {
                    declared.contains(name) || PREDEFINED_ARGS.contains(&name.as_str())
                });
            }
            for name in request.secrets.keys() {
                args.insert(format!("(secret) {name}"), "mounted".to_string());
            }
            let target = request.target.clone();
            let reads = match &analysis {
                Some(analysis) => self.context_reads(request, analysis).await,
                None => None,
            };
            tokio::task::spawn_blocking(move || {
                context.digest_reading(&args, target.as_deref(), reads.as_deref())
            })
            .await
            .map_err(|e| EngineError::Io {
                action: "digest build context",
                path: request.context.dir.clone(),
                source: std::io::Error::other(e),
            })??
        };
        let existing = if request.no_cache {
            None
        } else {
            self.finished_image_with_digest(&digest, &request.labels)
                .await?
        };
        if let Some(existing) = &existing {
            if let Some(tag) = &request.tag {
                let (repo, tag) = split_tag(tag);
                self.tag_image(existing, repo, tag).await?;
            }
            return Ok(Built {
                image_id: existing.clone(),
                digest,
                reused: true,
            });
        }

        let mut image_labels = request.labels.clone();
        image_labels.insert(labels::DIGEST.to_string(), digest.clone());
        let mut build_args: HashMap<String, String> = request
            .args
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        build_args.extend(request.transient_args.clone());
        trustplan::emit(&plan.notes, &mut on_progress);
        let image_id = match self.builder() {
            Builder::BuildKit => {
                let (sent_dockerfile, mut secrets, notes) =
                    trustplan::buildkit_mounts(self, request, &dockerfile, &plan).await;
                trustplan::emit(&notes, &mut on_progress);
                secrets.extend(request.secrets.clone());
                let sent = Sent {
                    dockerfile_name,
                    dockerfile: sent_dockerfile,
                    secrets,
                };
                match self
                    .build_with_buildkit(
                        request,
                        &what,
                        &image_labels,
                        &build_args,
                        sent,
                        &mut on_progress,
                    )
                    .await
                {
                    Attempt::Built(id) => id,
                    Attempt::Failed(e) => return Err(e),
                    Attempt::Unavailable(reason) => {
                        self.fall_back_to_classic(&reason);
                        refuse_secrets_without_buildkit(request, &what)?;
                        self.build_classic(
                            request,
                            &what,
                            image_labels,
                            build_args,
                            &mut on_progress,
                        )
                        .await?
                    }
                }
            }
            Builder::Classic => {
                refuse_secrets_without_buildkit(request, &what)?;
                self.build_classic(request, &what, image_labels, build_args, &mut on_progress)
                    .await?
            }
        };
        let image_id = match image_id {
            Some(id) => id,
            None => {
                // Older engines send the id only as "Successfully built <id>",
                // BuildKit on some engines not at all: ask the tag.
                let tag = request.tag.as_deref().ok_or_else(|| EngineError::Build {
                    what: what.clone(),
                    step: None,
                    message: "the engine reported no image id".to_string(),
                })?;
                self.image(tag)
                    .await?
                    .map(|i| i.id)
                    .ok_or_else(|| EngineError::ImageMissing {
                        image: tag.to_string(),
                        hint: " after build".to_string(),
                    })?
            }
        };
        Ok(Built {
            image_id,
            digest,
            reused: false,
        })
    }
}

/// Turns an engine message into [`EngineError::Build`]. A failing `FROM` step
/// means the base image is not in the engine (the classic builder then tries
/// to pull it, and with no registry reachable the message is a DNS or dial
/// error rather than "pull access denied"): those get the bootstrap hint too.
impl Engine {
    /// Runs the classic builder; returns the image id when the engine sent it.
    async fn build_classic(
        &self,
        request: &BuildRequest,
        what: &str,
        image_labels: HashMap<String, String>,
        build_args: HashMap<String, String>,
        on_progress: &mut (dyn FnMut(BuildProgress) + Send),
    ) -> Result<Option<String>, EngineError> {
        let options = BuildImageOptions {
            dockerfile: request.context.dockerfile.clone(),
            t: request.tag.clone(),
            rm: true,
            // Without forcerm a failed build leaves an unlabelled container behind.
            forcerm: true,
            nocache: request.no_cache,
            buildargs: Some(build_args),
            labels: Some(image_labels),
            target: request.target.clone().unwrap_or_default(),
            ..Default::default()
        };
        let body = bollard::body_try_stream(request.context.stream());
        let mut stream = self.docker.build_image(options, None, Some(body));
        let mut lines = LineBuffer::default();
        let mut current_step: Option<String> = None;
        let mut image_id = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(text) = info.stream {
                        for line in lines.push(&text) {
                            if let Some(step) = step_instruction(&line) {
                                current_step = Some(step.to_string());
                                on_progress(BuildProgress::Step(line));
                            } else if !line.trim().is_empty() {
                                on_progress(BuildProgress::Output(line));
                            }
                        }
                    }
                    if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                        return Err(build_error(what, current_step, detail));
                    }
                    if let Some(BuildInfoAux::Default(ImageId { id: Some(id) })) = info.aux {
                        image_id = Some(id);
                    }
                }
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    for line in lines.finish() {
                        on_progress(BuildProgress::Output(line));
                    }
                    return Err(build_error(what, current_step, error));
                }
                Err(bollard::errors::Error::DockerResponseServerError { message, .. }) => {
                    return Err(build_error(what, current_step, message));
                }
                Err(source) => return Err(EngineError::api(format!("build {what}"), source)),
            }
        }
        for line in lines.finish() {
            on_progress(BuildProgress::Output(line));
        }
        Ok(image_id)
    }

    /// The context sources the build of `request`'s target reads, when
    /// they are known for sure: every `COPY`/`ADD`/bind-mount source of the
    /// stages it is built from is a plain path or glob, and no base image
    /// of those stages has `ONBUILD` triggers (they could read anything).
    /// `None` (the whole context counts) otherwise, and whenever a base
    /// image cannot be read.
    async fn context_reads(
        &self,
        request: &BuildRequest,
        analysis: &super::dockerfile::Analysis,
    ) -> Option<Vec<String>> {
        let super::dockerfile::ContextInputs::Sources(sources) =
            analysis.context_inputs(request.target.as_deref())?
        else {
            return None;
        };
        // `**` (BuildKit matches it across folders) and patterns the
        // matcher does not read the way the builder does: the whole context.
        if sources
            .iter()
            .any(|s| s.contains("**") || super::dockerignore::validate_glob(s).is_err())
        {
            return None;
        }
        for stage in &analysis.stages {
            if let super::dockerfile::Base::Image(base) = &stage.base {
                match self.image(base).await {
                    Ok(Some(info)) if info.on_build.is_empty() => {}
                    _ => {
                        tracing::debug!("base image {base}: ONBUILD triggers or unknown; the whole context counts");
                        return None;
                    }
                }
            }
        }
        tracing::debug!("the build reads {sources:?} of its context");
        Some(sources)
    }

    /// The newest image that is the result of a build with `digest`.
    ///
    /// The classic builder commits each build label as its own layer, in key
    /// order, and `drydock.digest` sorts first: the intermediate images of
    /// that label chain carry the digest too, and one can be left dangling
    /// (for example when two builds shared part of the chain). Such an image
    /// lacks the labels that follow, so a candidate is only taken when it
    /// carries every label key the request asks for.
    async fn finished_image_with_digest(
        &self,
        digest: &str,
        wanted: &HashMap<String, String>,
    ) -> Result<Option<String>, EngineError> {
        for id in self.images_with_label(labels::DIGEST, digest).await? {
            let Some(info) = self.image(&id).await? else {
                continue;
            };
            if wanted.keys().all(|k| info.labels.contains_key(k)) {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }
}

/// The Dockerfile's base name (BuildKit gets it under that name, as from
/// the CLI) and content.
/// Docker's predefined build args: usable in `RUN` without an `ARG`.
const PREDEFINED_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

async fn read_dockerfile(request: &BuildRequest) -> Result<(String, Vec<u8>), EngineError> {
    let context = request.context.clone();
    tokio::task::spawn_blocking(move || -> Result<(String, Vec<u8>), ContextError> {
        let rel = context.checked_dockerfile()?;
        let path = context.dir.join(&rel);
        let text = std::fs::read(&path).map_err(|e| ContextError::io(&path, e))?;
        let name = rel.rsplit('/').next().unwrap_or(&rel).to_string();
        Ok((name, text))
    })
    .await
    .map_err(|e| EngineError::Io {
        action: "read the Dockerfile",
        path: request.context.dir.clone(),
        source: std::io::Error::other(e),
    })?
    .map_err(EngineError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_from_step_hints_at_bootstrap() {
        let dns = "Get \"https://registry-1.docker.io/v2/\": dial tcp: lookup registry-1.docker.io: no such host";
        for (step, hinted) in [
            (Some("FROM drydock/python:3.11 AS base"), true),
            (Some("from drydock/python:3.11"), true),
            (Some("RUN curl https://registry-1.docker.io/v2/"), false),
            (None, false),
        ] {
            let EngineError::Build { message, .. } =
                build_error("x", step.map(str::to_string), dns.to_string())
            else {
                unreachable!()
            };
            assert_eq!(
                message.contains("drydock images bootstrap"),
                hinted,
                "{step:?}"
            );
        }
    }

    #[test]
    fn step_lines_name_the_instruction() {
        assert_eq!(
            step_instruction("Step 3/9 : RUN pip install -r r.txt"),
            Some("RUN pip install -r r.txt")
        );
        assert_eq!(step_instruction("Sending build context"), None);
    }

    #[test]
    fn tags_split_at_the_last_colon_unless_it_is_a_port() {
        assert_eq!(split_tag("a/b:c"), ("a/b", "c"));
        assert_eq!(
            split_tag("localhost:5000/a"),
            ("localhost:5000/a", "latest")
        );
        assert_eq!(split_tag("localhost:5000/a:v1"), ("localhost:5000/a", "v1"));
        assert_eq!(split_tag("plain"), ("plain", "latest"));
    }
}
