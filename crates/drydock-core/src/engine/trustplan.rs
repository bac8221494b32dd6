//! How a build's CA bundle ([`BuildRequest::ca_bundle`]) reaches it, per
//! builder (`docs/trust.md` is the user's view of the same rules):
//!
//! * **BuildKit**: every `RUN` of every stage gets the bundle as a secret
//!   mount over the system CA bundle files that exist in its stage's base
//!   image ([`super::dockerfile::add_ca_mounts`]); the Dockerfile on disk is
//!   unchanged, the mounts exist only while each `RUN` runs, and secrets
//!   never enter a layer, the image config, its history nor BuildKit's cache.
//! * **Classic builder**: it has no mounts. The bundle reaches only
//!   Dockerfiles that copy `.drydock-trust/ca.crt` themselves (the
//!   convention of `docs/trust.md`); the build log says so for the others.
//! * **Both**: `.drydock-trust/ca.crt` is added to the context only for a
//!   Dockerfile that names `.drydock-trust`, and never when an instruction
//!   copies (or bind-mounts) the whole context, where it would land in the
//!   image: the classic builder then refuses the build, BuildKit leaves the
//!   file out (its `RUN`s have the mounts).

use std::collections::{BTreeMap, HashMap};

use bollard::query_parameters::DownloadFromContainerOptions;
use futures::StreamExt;

use super::builder::Builder;
use super::container::ContainerSpec;
use super::dockerfile::{self, add_ca_mounts, Analysis, Base, CA_SECRET_ID, SYSTEM_BUNDLES};
use super::request::{BuildProgress, BuildRequest};
use super::{labels, Engine, EngineError};
use crate::trust::TRUST_CONTEXT_PATH;

/// Prefix of the build log lines in which drydock explains what it did.
pub const NOTE_PREFIX: &str = "drydock:";

/// The decisions for one build.
#[derive(Debug, Default)]
pub(crate) struct TrustPlan {
    /// Add `.drydock-trust/ca.crt` to the context.
    pub inject: bool,
    /// The Dockerfile read, when it could be.
    pub analysis: Option<Analysis>,
    /// Lines for the build log.
    pub notes: Vec<String>,
}

/// Decides how `request`'s CA bundle reaches a build of `dockerfile` (its
/// text) with `builder`. An error when the classic builder would have to
/// put the bundle where a whole-context copy takes it into the image.
pub(crate) fn plan(
    request: &BuildRequest,
    dockerfile: &[u8],
    builder: Builder,
    what: &str,
) -> Result<TrustPlan, EngineError> {
    let mut plan = TrustPlan::default();
    if request.ca_bundle.is_none() {
        return Ok(plan);
    }
    let mut args: BTreeMap<String, String> = request.args.clone();
    args.extend(request.transient_args.clone());
    let analysis = std::str::from_utf8(dockerfile)
        .map_err(|_| "it is not UTF-8".to_string())
        .and_then(|text| dockerfile::analyze(text, &args));
    let analysis = match analysis {
        Ok(analysis) => analysis,
        Err(e) => {
            plan.notes.push(format!(
                "{NOTE_PREFIX} could not read the Dockerfile to lend it the CA bundle ({e}); it is sent unchanged"
            ));
            return Ok(plan);
        }
    };
    let uses = analysis.trust_dir_uses.first().copied();
    let whole = analysis.whole_context.first().cloned();
    match (uses, whole, builder) {
        (Some(_), None, _) => plan.inject = true,
        (Some(use_line), Some((line, instruction)), Builder::Classic) => {
            return Err(EngineError::Build {
                what: what.to_string(),
                step: Some(instruction.clone()),
                message: format!(
                    "the Dockerfile uses {TRUST_CONTEXT_PATH} (line {use_line}) and copies the whole \
                     build context at line {line} (`{instruction}`): with the classic builder the CA \
                     bundle would be copied into the image\n  hint: copy only what the image needs \
                     instead of the whole context, or build with BuildKit, where every RUN gets the \
                     bundle mounted (docs/trust.md)"
                ),
            });
        }
        (Some(_), Some((line, instruction)), Builder::BuildKit) => plan.notes.push(format!(
            "{NOTE_PREFIX} {TRUST_CONTEXT_PATH} is left out of the context: line {line} (`{instruction}`) \
             copies the whole context into an image; the RUN instructions get the CA bundle mounted instead"
        )),
        (None, _, Builder::Classic) => plan.notes.push(format!(
            "{NOTE_PREFIX} the classic builder cannot lend the CA bundle to RUN instructions, and this \
             Dockerfile does not copy {TRUST_CONTEXT_PATH}: its downloads over HTTPS trust only the \
             image's own CA certificates (build with BuildKit, or see docs/trust.md)"
        )),
        (None, _, Builder::BuildKit) => {}
    }
    plan.analysis = Some(analysis);
    Ok(plan)
}

/// For BuildKit: the Dockerfile to send (with the mounts), the secrets, and
/// the notes on what was mounted where.
pub(crate) async fn buildkit_mounts(
    engine: &Engine,
    request: &BuildRequest,
    dockerfile: &[u8],
    plan: &TrustPlan,
) -> (Vec<u8>, HashMap<String, Vec<u8>>, Vec<String>) {
    let (Some(ca), Some(analysis), Ok(text)) = (
        &request.ca_bundle,
        &plan.analysis,
        std::str::from_utf8(dockerfile),
    ) else {
        return (dockerfile.to_vec(), HashMap::new(), Vec::new());
    };
    let mut bundles: HashMap<String, Vec<String>> = HashMap::new();
    let mut notes = Vec::new();
    for stage in &analysis.stages {
        if let Base::Image(image) = &stage.base {
            if bundles.contains_key(image) {
                continue;
            }
            let found = match engine.system_bundles(image, &request.labels).await {
                Ok(found) => found,
                Err(e) => {
                    notes.push(format!(
                        "{NOTE_PREFIX} could not look for a CA bundle in {image} ({e}); its stages get no mount"
                    ));
                    Vec::new()
                }
            };
            bundles.insert(image.clone(), found);
        }
    }
    let lookup = |image: &str| bundles.get(image).cloned().unwrap_or_default();
    let mounted = add_ca_mounts(text, analysis, &lookup);
    let mut note = format!(
        "{NOTE_PREFIX} the CA bundle is mounted (a BuildKit secret, in no layer) in {} of {} RUN instructions",
        mounted.runs_mounted, mounted.runs
    );
    if !mounted.targets.is_empty() {
        note.push_str(&format!(" over {}", mounted.targets.join(", ")));
    }
    if !mounted.skipped_managing.is_empty() {
        note.push_str(&format!(
            "; not at line {} (manages CA certificates)",
            join_lines(&mounted.skipped_managing)
        ));
    }
    if !mounted.skipped_no_bundle.is_empty() {
        note.push_str(&format!(
            "; not at line {} (no system CA bundle in the image there)",
            join_lines(&mounted.skipped_no_bundle)
        ));
    }
    notes.push(note);
    let secrets = HashMap::from([(CA_SECRET_ID.to_string(), ca.clone())]);
    (mounted.text.into_bytes(), secrets, notes)
}

fn join_lines(lines: &[usize]) -> String {
    lines
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Emits `notes` as build output.
pub(crate) fn emit(notes: &[String], on_progress: &mut (dyn FnMut(BuildProgress) + Send)) {
    for note in notes {
        on_progress(BuildProgress::Output(note.clone()));
    }
}

impl Engine {
    /// The files of [`SYSTEM_BUNDLES`] that exist as regular files in
    /// `image` (empty when the image is not in the engine: BuildKit pulls
    /// it or fails). Looked at once per image id through a container that
    /// is created, never started, and removed; `labels` plus this process's
    /// run labels with role `probe` mark it meanwhile.
    pub(crate) async fn system_bundles(
        &self,
        image: &str,
        labels: &HashMap<String, String>,
    ) -> Result<Vec<String>, EngineError> {
        let Some(info) = self.image(image).await? else {
            return Ok(Vec::new());
        };
        if let Some(found) = self
            .bundle_probes
            .lock()
            .expect("bundle probe cache")
            .get(&info.id)
        {
            return Ok(found.clone());
        }
        // Owner labels of this process (pid, start time, host) on top of
        // the build's: `drydock gc` removes the probe if the process dies
        // before it does.
        let pipeline = labels.get(labels::PIPELINE).map_or("build", String::as_str);
        let run = labels
            .get(labels::RUN)
            .cloned()
            .unwrap_or_else(|| format!("probe-{:08x}", rand::random::<u32>()));
        let mut probe_labels = labels.clone();
        probe_labels.extend(labels::RunLabels::for_this_process(&run, pipeline).with_role("probe"));
        let spec = ContainerSpec {
            name: format!("drydock-probe-{:016x}", rand::random::<u64>()),
            image: info.id.clone(),
            command: Some(vec!["true".to_string()]),
            labels: probe_labels,
            ..Default::default()
        };
        let id = self.create_container(&spec).await?;
        let mut found = Vec::new();
        let mut failure = None;
        for path in SYSTEM_BUNDLES {
            match self.is_regular_file(&id, path).await {
                Ok(true) => found.push(path.to_string()),
                Ok(false) => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if let Err(e) = self.remove_container(&id).await {
            tracing::warn!("could not remove probe container {}: {e}", spec.name);
        }
        if let Some(e) = failure {
            return Err(e);
        }
        self.bundle_probes
            .lock()
            .expect("bundle probe cache")
            .insert(info.id, found.clone());
        Ok(found)
    }

    /// Whether `path` is a regular file in container `id` (from the first
    /// tar header of its archive; the rest is not read).
    async fn is_regular_file(&self, id: &str, path: &str) -> Result<bool, EngineError> {
        let mut stream = self.docker.download_from_container(
            id,
            Some(DownloadFromContainerOptions {
                path: path.to_string(),
            }),
        );
        let mut head: Vec<u8> = Vec::with_capacity(512);
        while head.len() < 512 {
            match stream.next().await {
                Some(Ok(chunk)) => head.extend_from_slice(&chunk),
                Some(Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404,
                    ..
                })) => return Ok(false),
                Some(Err(e)) => {
                    return Err(EngineError::api(format!("look for {path} in {id}"), e))
                }
                None => return Ok(false),
            }
        }
        let header = tar::Header::from_byte_slice(&head[..512]);
        Ok(header.entry_type() == tar::EntryType::Regular)
    }
}
