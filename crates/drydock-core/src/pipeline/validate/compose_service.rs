//! A pipeline service taken from the repository's compose file
//! (`compose: <service>` or `compose: {service, file}`); see
//! `docs/pipeline-format.md` ("Services from docker-compose.yml").

use std::collections::BTreeMap;
use std::time::Duration;

use super::super::compose;
use super::super::model::{
    BuildSpec, ComposeOrigin, ImageSource, Mount, Probe, ReadySpec, ServiceSpec,
    DEFAULT_READY_INTERVAL,
};
use super::super::tree::{Kind, Node, Pos, ScalarType};
use super::{check_image_reference, dockerfile, BuildArgs, BuildBase, Checker, Fields, NamedBuild};

pub(crate) const COMPOSE_KEYS: &[&str] = &["service", "file"];
/// The engine's defaults for a healthcheck's timings (`docker run --health-*`).
const ENGINE_HEALTH_INTERVAL: Duration = Duration::from_secs(30);
const ENGINE_HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
const ENGINE_HEALTH_RETRIES: u32 = 3;
/// Bounds of the readiness deadline derived from a healthcheck.
const MIN_DERIVED_READY: Duration = Duration::from_secs(10);
const MAX_DERIVED_READY: Duration = Duration::from_secs(600);

impl Checker<'_> {
    /// The service `name` of the pipeline, taken from the compose file: its
    /// image or build, environment, env files, command, entrypoint, user,
    /// working dir, binds and healthcheck (as readiness); the pipeline's own
    /// `env`, `env_file`, `command`, `entrypoint`, `user`, `workdir`, `mounts`
    /// and `ready` win over (or add to) what the compose file says.
    pub(super) fn compose_service(
        &mut self,
        name: &str,
        f: &Fields,
        node: &Node,
    ) -> Option<(ServiceSpec, Option<(String, Pos)>)> {
        let what = format!("service `{name}`");
        for key in ["image", "build"] {
            if let Some(pos) = f.key_pos(key) {
                self.err(
                    pos,
                    format!("{what} takes its image from the compose file: drop `{key}`, or drop `compose`"),
                );
                return None;
            }
        }
        let (service, file) = match (&node.kind, node.scalar_type()) {
            (Kind::Scalar { .. }, Some(ScalarType::Str)) => (self.string(node)?, None),
            (Kind::Map(_), _) => {
                let cf = self.fields(node, node.pos, "`compose`", COMPOSE_KEYS)?;
                let service = self.required(&cf, "service").and_then(|s| self.string(s));
                let file = match cf.get("file") {
                    Some(n) => Some((self.string(n)?, n.pos)),
                    None => None,
                };
                (service?, file)
            }
            _ => {
                self.err(
                    node.pos,
                    format!(
                        "expected `compose` as a service name or {{service, file}}, found {}",
                        node.describe()
                    ),
                );
                return None;
            }
        };
        let path = match &file {
            Some((rel, pos)) => {
                let path = self.repo_path(rel, *pos, "compose file")?;
                if !path.is_file() {
                    self.err(*pos, format!("compose file {rel:?} is not a file"));
                    return None;
                }
                path
            }
            None => match compose::default_compose_file(&self.repo_root) {
                Some(path) => path,
                None => {
                    self.err(
                        node.pos,
                        format!(
                            "{what} names a compose service, but the repository root has no compose file (looked for {}); name one with `compose: {{service: {service}, file: path}}`",
                            compose::DEFAULT_COMPOSE_FILES[..4].join(", ")
                        ),
                    );
                    return None;
                }
            },
        };
        let vars = self.vars;
        let lookup = |var: &str| vars.get(var).map(str::to_string);
        let label = Self::label_of(&path);
        let cs = match compose::load_service(&path, &label, &self.repo_root, &service, &lookup) {
            Ok(cs) => cs,
            Err(diagnostics) => {
                self.foreign.extend(diagnostics);
                return None;
            }
        };

        let (image, build_use) = match (&cs.build, &cs.image) {
            (Some(b), _) => {
                let build = format!("compose.{name}");
                if let Some(target) = &b.target {
                    let stages = self.stages(&b.context.join(&b.dockerfile))?;
                    if !dockerfile::has_stage(&stages, target) {
                        self.err(
                            node.pos,
                            format!(
                                "the compose service `{service}` builds target `{target}`, which {} lacks (its stages: {})",
                                Self::label_of(&b.context.join(&b.dockerfile)),
                                dockerfile::describe(&stages)
                            ),
                        );
                        return None;
                    }
                }
                self.compose_builds.push(NamedBuild {
                    base: BuildBase {
                        spec: BuildSpec {
                            name: build.clone(),
                            context: b.context.clone(),
                            dockerfile: b.dockerfile.clone(),
                            target: b.target.clone(),
                            args: BTreeMap::new(),
                            trust: true,
                            secrets: Vec::new(),
                        },
                        args: BuildArgs::Fixed(b.args.clone()),
                    },
                    name_pos: node.pos,
                    from_compose: true,
                });
                (ImageSource::Build(build.clone()), Some((build, node.pos)))
            }
            (None, Some(image)) => {
                if let Err(why) = check_image_reference(image) {
                    self.err(
                        node.pos,
                        format!(
                            "the compose service `{service}` has an invalid image {image:?}: {why}"
                        ),
                    );
                    return None;
                }
                (ImageSource::Image(image.clone()), None)
            }
            (None, None) => {
                self.err(
                    node.pos,
                    format!("the compose service `{service}` has neither `image` nor `build`"),
                );
                return None;
            }
        };

        // The pipeline's own keys win.
        let mut env = cs.environment.clone();
        env.extend(self.environment(f)?);
        let command = match f.get("command") {
            Some(c) => Some(self.argv(c, "command")?),
            None => cs.command.clone(),
        };
        let entrypoint = match self.entrypoint(f)? {
            Some(e) => Some(e),
            None => cs.entrypoint.clone(),
        };
        let user = self.user(f)?.or(cs.user.clone());
        let workdir = match f.get("workdir") {
            Some(w) => Some(self.abs_container_path(w, "workdir")?),
            None => cs.working_dir.clone(),
        };
        let mut mounts: Vec<Mount> = cs
            .binds
            .iter()
            .map(|b| Mount {
                source: b.source.clone(),
                target: b.target.clone(),
                read_only: b.read_only,
            })
            .collect();
        if let Some(m) = f.get("mounts") {
            let own = self.mounts(m)?;
            mounts.retain(|c| !own.iter().any(|o| o.target == c.target));
            mounts.extend(own);
        }
        let ready = match f.get("ready") {
            Some(r) => Some(self.ready(r, f.key_pos("ready").unwrap_or(r.pos))?),
            None => cs.healthcheck.as_ref().map(ready_from_healthcheck),
        };
        let mut notes = cs.notes.clone();
        for path in &cs.ephemeral {
            notes.push(format!(
                "{path}: a volume or tmpfs in compose; in a run it is the container's own storage, fresh every run"
            ));
        }
        Some((
            ServiceSpec {
                name: name.to_string(),
                image,
                env,
                command,
                entrypoint,
                user,
                workdir,
                mounts,
                ready,
                compose: Some(ComposeOrigin {
                    file: path,
                    service,
                    notes,
                }),
            },
            build_use,
        ))
    }
}

/// Readiness from a compose healthcheck: its command as an exec probe (the
/// image's own `HEALTHCHECK` when it only sets timings), with the deadline
/// after which the engine would call the container unhealthy (start period,
/// then `retries` checks of `interval + timeout`), between 10s and 10m.
fn ready_from_healthcheck(h: &compose::ComposeHealthcheck) -> ReadySpec {
    let interval = h.interval.unwrap_or(ENGINE_HEALTH_INTERVAL);
    let timeout = h.timeout.unwrap_or(ENGINE_HEALTH_TIMEOUT);
    let retries = h.retries.unwrap_or(ENGINE_HEALTH_RETRIES).max(1);
    let deadline = h.start_period.unwrap_or_default() + (interval + timeout) * retries;
    ReadySpec {
        probe: if h.test.is_empty() {
            Probe::Healthcheck
        } else {
            Probe::Exec(h.test.clone())
        },
        timeout: deadline.clamp(MIN_DERIVED_READY, MAX_DERIVED_READY),
        interval: DEFAULT_READY_INTERVAL.min(interval),
    }
}
