//! A step's stored result: its key computed before it runs, looked up and
//! replayed instead of running it, or stored after it ran (see
//! [`crate::reuse`] for the key, the policy and the store).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tokio::io::AsyncReadExt;

use super::step::StepOutcome;
use super::{Ctx, Runtime};
use crate::engine::{LineBuffer, LogStream};
use crate::events::Event;
use crate::plan::{ImageRef, PlannedStep};
use crate::reuse::{self as store, KeyParts, MountPart, Record, SecretPart, ServicePart};

/// A step whose result may be reused: its key, computed before it runs.
pub(crate) struct Candidate {
    key: String,
    store: PathBuf,
}

impl Candidate {
    /// The candidate for `step` running `image`, or `None` when the run keeps
    /// no results ([`ExecOptions::results_store`](super::ExecOptions::results_store)),
    /// the step is not [`eligible`](store::eligible) or its key cannot be
    /// computed (an image or file that cannot be read: the step just runs).
    pub(crate) async fn prepare<R: Runtime>(
        ctx: &Arc<Ctx<R>>,
        step: &PlannedStep,
        image: &Result<String, String>,
    ) -> Option<Candidate> {
        let store = ctx.options.results_store.clone()?;
        let Ok(image) = image else { return None };
        if let Err(why) = store::eligible(step) {
            tracing::debug!("step {} is not reused: {why}", step.name);
            return None;
        }
        match key_parts(ctx, step, image).await {
            Ok(parts) => Some(Candidate {
                key: parts.key(),
                store,
            }),
            Err(e) => {
                tracing::warn!("step {}: its result cannot be reused: {e}", step.name);
                None
            }
        }
    }

    /// Replays the stored result, when there is one the step accepts and
    /// the run was not told `--no-reuse`: its files copied into this run's
    /// results folder, its output sent as log lines, its end sent marked
    /// `reused_from`. `None` (nothing sent) when there is nothing to replay
    /// or its files cannot be copied: the step then runs.
    pub(crate) async fn replay<R: Runtime>(
        &self,
        ctx: &Arc<Ctx<R>>,
        tier: &str,
        step: &PlannedStep,
        started: Instant,
    ) -> Option<StepOutcome> {
        let replay = self.prepare_replay(ctx, tier, step).await?;
        Some(replay.emit(ctx, tier, step, started).await)
    }

    /// The part of [`Candidate::replay`] that can fail: the stored result
    /// looked up and accepted, its files copied into this run's results
    /// folder. What is left ([`Replay::emit`]) only sends events.
    pub(crate) async fn prepare_replay<R: Runtime>(
        &self,
        ctx: &Arc<Ctx<R>>,
        tier: &str,
        step: &PlannedStep,
    ) -> Option<Replay> {
        if ctx.options.no_reuse {
            return None;
        }
        let (store_dir, key) = (self.store.clone(), self.key.clone());
        let (record, dir) = tokio::task::spawn_blocking(move || store::lookup(&store_dir, &key))
            .await
            .ok()??;
        let Event::StepFinished {
            status,
            allowed_failure,
            ..
        } = &record.finished
        else {
            return None;
        };
        if !store::accepts(step, *status, *allowed_failure) {
            return None;
        }
        let results = ctx.options.results_dir.clone();
        let artifacts = artifacts_dir(ctx, tier, step);
        let raw = results.join(crate::report::raw_log_path(tier, &step.name));
        let copied = {
            let (dir, artifacts, raw) = (dir.clone(), artifacts.clone(), raw.clone());
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                let stored = dir.join(store::ARTIFACTS_FOLDER);
                if stored.is_dir() {
                    let _ = std::fs::remove_dir_all(&artifacts);
                    store::copy_tree(&stored, &artifacts)?;
                }
                let output = dir.join(store::OUTPUT_FILE);
                if output.is_file() {
                    if let Some(parent) = raw.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    std::fs::copy(&output, &raw)?;
                    let omitted = store::omitted_path(&output);
                    if omitted.is_file() {
                        std::fs::copy(&omitted, store::omitted_path(&raw))?;
                    }
                }
                Ok(())
            })
            .await
        };
        match copied {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!("stored result {} cannot be replayed: {e}", dir.display());
                return None;
            }
            Err(_) => return None,
        }
        Some(Replay {
            record,
            artifacts,
            raw,
        })
    }
}

/// A stored result ready to be replayed: its files are in this run's
/// results folder already.
pub(crate) struct Replay {
    record: Record,
    artifacts: PathBuf,
    raw: PathBuf,
}

impl Replay {
    /// Sends the stored output as log lines and the step's end, marked
    /// reused from the run that stored it.
    pub(crate) async fn emit<R: Runtime>(
        self,
        ctx: &Arc<Ctx<R>>,
        tier: &str,
        step: &PlannedStep,
        started: Instant,
    ) -> StepOutcome {
        let Replay {
            record,
            artifacts,
            raw,
        } = self;
        let results = ctx.options.results_dir.clone();
        replay_output(ctx, tier, &step.name, &raw).await;
        let mut finished = record.finished.clone();
        if let Event::StepFinished {
            tier: t,
            step: s,
            duration_ms,
            junit,
            reused,
            reused_from,
            timings,
            ..
        } = &mut finished
        {
            *t = tier.to_string();
            *s = step.name.clone();
            *duration_ms = started.elapsed().as_millis() as u64;
            // No container this time: the stored run's breakdown is not this one's.
            *timings = None;
            *junit = record.junit.as_ref().map(|j| {
                let local = artifacts.join(j);
                local
                    .strip_prefix(&results)
                    .unwrap_or(&local)
                    .to_string_lossy()
                    .into_owned()
            });
            *reused = true;
            *reused_from = Some(record.run_id.clone());
        }
        let (status, tests) = match &finished {
            Event::StepFinished { status, tests, .. } => (*status, *tests),
            _ => (crate::events::Status::Errored, None),
        };
        ctx.emit(finished).await;
        StepOutcome { status, tests }
    }
}

/// What is known of a step's stored result before it is launched: its
/// candidate (to store its result after it runs) and, when a stored result
/// will be replayed, that replay (its files already copied). A step to be
/// replayed does not wait for its tier's services.
pub(crate) struct Verdict {
    /// The step's key, when it has one.
    pub candidate: Option<Candidate>,
    /// The stored result to replay instead of running.
    pub replay: Option<Replay>,
}

impl Verdict {
    /// Looks `step` (running `image`) up in the store.
    pub(crate) async fn of<R: Runtime>(
        ctx: &Arc<Ctx<R>>,
        step: &PlannedStep,
        image: &Result<String, String>,
    ) -> Verdict {
        let candidate = Candidate::prepare(ctx, step, image).await;
        let tier = &ctx.plan.tiers[step.tier].name;
        let replay = match &candidate {
            Some(c) => c.prepare_replay(ctx, tier, step).await,
            None => None,
        };
        Verdict { candidate, replay }
    }
}

impl Candidate {
    /// Stores the result `finished` (the step's [`Event::StepFinished`])
    /// in the background, off the critical path (the run's teardown waits
    /// for the returned task, as for container removals), when the step's
    /// policy would replay it ([`store::accepts`]). A store that fails is a
    /// warning in the tracing log, never a failure.
    pub(crate) fn store_later<R: Runtime>(
        self,
        ctx: &Arc<Ctx<R>>,
        tier: &str,
        step: &PlannedStep,
        finished: &Event,
    ) -> tokio::task::JoinHandle<()> {
        let (ctx, tier, step, finished) = (
            ctx.clone(),
            tier.to_string(),
            step.clone(),
            finished.clone(),
        );
        tokio::spawn(async move { self.store(&ctx, &tier, &step, &finished).await })
    }

    async fn store<R: Runtime>(
        &self,
        ctx: &Arc<Ctx<R>>,
        tier: &str,
        step: &PlannedStep,
        finished: &Event,
    ) {
        let Event::StepFinished {
            status,
            allowed_failure,
            duration_ms,
            junit,
            ..
        } = finished
        else {
            return;
        };
        if !store::accepts(step, *status, *allowed_failure) {
            return;
        }
        let mut event = finished.clone();
        if let Some(masker) = &ctx.masker {
            event.for_each_text(&mut |text| *text = masker.mask(text));
        }
        let artifacts = artifacts_dir(ctx, tier, step);
        let results = &ctx.options.results_dir;
        let junit = junit.as_ref().and_then(|j| {
            results
                .join(j)
                .strip_prefix(&artifacts)
                .ok()
                .map(|p| p.to_string_lossy().into_owned())
        });
        let record = Record {
            format: store::FORMAT_VERSION,
            key: self.key.clone(),
            run_id: ctx.plan.run_id.clone(),
            stored_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            pipeline: ctx.plan.pipeline.clone(),
            tier: tier.to_string(),
            step: step.name.clone(),
            status: *status,
            duration_ms: *duration_ms,
            bytes: 0,
            junit,
            finished: event,
        };
        let output = results.join(crate::report::raw_log_path(tier, &step.name));
        let (store_dir, key) = (self.store.clone(), self.key.clone());
        let stored = tokio::task::spawn_blocking(move || {
            store::store(store::StoreRequest {
                store: &store_dir,
                key: &key,
                record,
                artifacts: &artifacts,
                output: &output,
                max_bytes: store::max_bytes(),
            })
        })
        .await;
        match stored {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("storing the result of step {}: {e}", step.name),
            Err(e) => tracing::warn!("storing the result of step {}: {e}", step.name),
        }
    }
}

/// Where a step's collected files go in the run's results folder (the
/// last attempt's, as [`super::step`] puts them).
fn artifacts_dir<R: Runtime>(ctx: &Ctx<R>, tier: &str, step: &PlannedStep) -> PathBuf {
    ctx.options
        .results_dir
        .join("artifacts")
        .join(tier)
        .join(&step.name)
}

/// Sends the stored raw output as log lines (stdout: the raw file does not
/// keep the streams apart), read in chunks.
async fn replay_output<R: Runtime>(ctx: &Arc<Ctx<R>>, tier: &str, step: &str, raw: &Path) {
    let Ok(mut file) = tokio::fs::File::open(raw).await else {
        return;
    };
    let mut buffer = LineBuffer::default();
    let mut chunk = vec![0u8; 64 * 1024];
    let send = |lines: Vec<String>| {
        lines.into_iter().map(|line| Event::Log {
            tier: tier.to_string(),
            step: step.to_string(),
            stream: LogStream::Stdout,
            line,
        })
    };
    loop {
        let n = match file.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for event in send(buffer.push(&chunk[..n])) {
            ctx.emit(event).await;
        }
    }
    for event in send(buffer.finish()) {
        ctx.emit(event).await;
    }
}

/// The key parts of `step` running `image` in this run.
async fn key_parts<R: Runtime>(
    ctx: &Arc<Ctx<R>>,
    step: &PlannedStep,
    image: &str,
) -> Result<KeyParts, String> {
    let plan = &ctx.plan;
    let never = vec![
        plan.repo_root.join(crate::report::STATE_FOLDER),
        ctx.options.results_dir.clone(),
    ];
    let image_id = resolve_image(ctx, image).await?;
    let c = &step.container;
    let mounts = mount_parts(
        c.binds
            .iter()
            .map(|b| (b.target.clone(), b.source.clone(), b.read_only))
            .collect(),
        never.clone(),
    )
    .await?;
    let copies = mount_parts(
        c.copies
            .iter()
            .map(|b| (b.target.clone(), b.source.clone(), false))
            .collect(),
        never.clone(),
    )
    .await?
    .into_iter()
    .map(|(target, part)| (target, part.digest))
    .collect();
    let mut services = std::collections::BTreeMap::new();
    if matches!(c.network, crate::plan::NetworkPlan::Run { .. }) {
        for service in &plan.services {
            let s = &service.container;
            let reference = match s.image {
                ImageRef::Reference(i) => plan.images[i].clone(),
                ImageRef::Build(b) => plan.build(b).tag.clone(),
            };
            let part = ServicePart {
                image_id: resolve_image(ctx, &reference).await?,
                entrypoint: s.entrypoint.clone(),
                command: s.command.clone(),
                env: s.env.clone(),
                user: s.user.clone(),
                workdir: s.workdir.clone(),
                mounts: mount_parts(
                    s.binds
                        .iter()
                        .map(|b| (b.target.clone(), b.source.clone(), b.read_only))
                        .collect(),
                    never.clone(),
                )
                .await?,
                ready: service
                    .ready
                    .as_ref()
                    .map(|r| serde_json::to_string(r).unwrap_or_default()),
            };
            services.insert(service.name.clone(), part);
        }
    }
    let secrets = step
        .secrets
        .iter()
        .filter_map(|name| ctx.secrets.iter().find(|s| &s.name == name))
        .map(|s| {
            (
                s.name.clone(),
                SecretPart {
                    expose: format!("{:?}", s.expose).to_lowercase(),
                    sha256: store::secret_digest(&s.value),
                },
            )
        })
        .collect();
    Ok(KeyParts {
        format: store::FORMAT_VERSION,
        drydock: env!("CARGO_PKG_VERSION").to_string(),
        image_id,
        entrypoint: c.entrypoint.clone(),
        command: c.command.clone(),
        env: c.env.clone(),
        user: c.user.clone(),
        workdir: c.workdir.clone(),
        network: store::network_mode(&c.network).to_string(),
        mounts,
        copies,
        services,
        secrets,
        junit: step.junit.clone(),
        collect: step.collect.clone(),
        timeout_ms: step.timeout.as_millis() as u64,
        retry: step.retry,
        allow_failure: step.allow_failure,
    })
}

/// The image id `reference` points to.
async fn resolve_image<R: Runtime>(ctx: &Ctx<R>, reference: &str) -> Result<String, String> {
    match ctx.runtime.image_id(reference).await {
        Ok(Some(id)) => Ok(id),
        Ok(None) => Err(format!("image {reference} not found")),
        Err(e) => Err(format!("image {reference}: {e}")),
    }
}

/// The content digests of `(container path, host path, read-only)` entries,
/// computed off the async runtime.
async fn mount_parts(
    entries: Vec<(String, PathBuf, bool)>,
    never: Vec<PathBuf>,
) -> Result<std::collections::BTreeMap<String, MountPart>, String> {
    tokio::task::spawn_blocking(move || {
        entries
            .into_iter()
            .map(|(target, source, read_only)| {
                store::path_digest(&source, &never)
                    .map(|digest| (target, MountPart { read_only, digest }))
            })
            .collect()
    })
    .await
    .map_err(|e| e.to_string())?
}
