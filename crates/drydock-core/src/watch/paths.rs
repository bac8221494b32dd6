//! Which saved files matter to a watch session, and to what: pure path
//! logic, no engine and no file-system watcher (unit-tested on its own).
//!
//! Rules (see `docs/watch.md`):
//! - Noise is never looked at: anything under `.git`, `.drydock` (results
//!   and state), `__pycache__`, `.pytest_cache`, `.mypy_cache`,
//!   `.ruff_cache`, `.tox`, `.hypothesis`, `.nox`, `node_modules/.cache`,
//!   and editor droppings (`*.swp`, `*.swx`, `*~`, `.#*`, `4913`, `*.pyc`,
//!   `.DS_Store`), plus the folders given as ignored (the results root).
//! - A step is affected by a path under one of its bind mounts (re-run in
//!   its warm container) or under one of its copies (container recreated,
//!   since copies are made once, before start).
//! - A build is affected by its Dockerfile, its context's `.dockerignore`,
//!   or a context path that one of the stages its target needs reads
//!   (`COPY`/`ADD`/`RUN --mount=type=bind` sources, see
//!   `Analysis::context_inputs`). When the Dockerfile copies the whole context,
//!   a context path counts unless it lies under one of the watched steps'
//!   mounts (the steps see such a change through the mount; rebuilding on
//!   every save would defeat the loop).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::engine::dockerfile::{self, ContextInputs};
use crate::plan::{BuildId, Plan, StepId};

/// Folder names whose content is never a reason to re-run anything.
const NOISE_DIRS: &[&str] = &[
    ".git",
    ".hg",
    ".svn",
    crate::report::STATE_FOLDER,
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".tox",
    ".nox",
    ".hypothesis",
    ".idea",
    ".vscode",
];

/// Whether a changed path is noise: a file in a cache, VCS or tool folder,
/// or an editor's swap, backup or probe file.
pub fn is_noise(path: &Path) -> bool {
    if path
        .components()
        .any(|c| NOISE_DIRS.iter().any(|n| c.as_os_str() == *n))
    {
        return true;
    }
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    name.ends_with(".swp")
        || name.ends_with(".swx")
        || name.ends_with(".swo")
        || name.ends_with('~')
        || name.starts_with(".#")
        || name == "4913"
        || name.ends_with(".pyc")
        || name.ends_with(".pyo")
        || name == ".DS_Store"
}

/// What a batch of saved paths calls for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Affected {
    /// Steps to run again in their warm containers.
    pub run: BTreeSet<StepId>,
    /// Steps whose container must be made again first (a copied path changed).
    pub recreate: BTreeSet<StepId>,
    /// Builds to make again (their steps' containers are then recreated).
    pub rebuild: BTreeSet<BuildId>,
}

impl Affected {
    /// Whether nothing is to be done.
    pub fn is_empty(&self) -> bool {
        self.run.is_empty() && self.recreate.is_empty() && self.rebuild.is_empty()
    }
}

#[derive(Debug, Clone)]
struct StepPaths {
    id: StepId,
    mounts: Vec<PathBuf>,
    copies: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
struct BuildPaths {
    id: BuildId,
    context: PathBuf,
    dockerfile: PathBuf,
    /// `None`: the Dockerfile could not be read (then every context path counts).
    inputs: Option<ContextInputs>,
}

/// The paths a watch session looks at, and what each means.
#[derive(Debug, Clone)]
pub struct WatchMap {
    steps: Vec<StepPaths>,
    builds: Vec<BuildPaths>,
    ignored: Vec<PathBuf>,
}

impl WatchMap {
    /// The map of `steps` (their mounts and copies under the repository
    /// root; a CA bundle or secret bound from elsewhere is not watched) and
    /// `builds` of `plan` (their contexts and Dockerfiles, read now to know
    /// which context paths the built target reads). `ignored` folders are
    /// never looked at (the results root).
    pub fn new(plan: &Plan, steps: &[StepId], builds: &[BuildId], ignored: Vec<PathBuf>) -> Self {
        let in_repo = |p: &PathBuf| p.starts_with(&plan.repo_root);
        let steps = steps
            .iter()
            .map(|id| {
                let c = &plan.step(*id).container;
                StepPaths {
                    id: *id,
                    mounts: c
                        .binds
                        .iter()
                        .map(|b| b.source.clone())
                        .filter(in_repo)
                        .collect(),
                    copies: c
                        .copies
                        .iter()
                        .map(|b| b.source.clone())
                        .filter(in_repo)
                        .collect(),
                }
            })
            .collect();
        let builds = builds
            .iter()
            .map(|id| {
                let b = plan.build(*id);
                let dockerfile = b.context.join(&b.dockerfile);
                let inputs = std::fs::read_to_string(&dockerfile)
                    .ok()
                    .and_then(|text| dockerfile::analyze(&text, &b.args).ok())
                    .and_then(|a| a.context_inputs(b.target.as_deref()));
                BuildPaths {
                    id: *id,
                    context: b.context.clone(),
                    dockerfile,
                    inputs,
                }
            })
            .collect();
        WatchMap {
            steps,
            builds,
            ignored,
        }
    }

    /// The folders (and single files) to watch, each with whether it is
    /// watched recursively: mounted and copied paths and build contexts,
    /// without those inside another recursive one. A single file is watched
    /// through its folder (editors save by renaming a new file over the
    /// old one, which a watch on the file itself loses).
    pub fn roots(&self) -> Vec<(PathBuf, bool)> {
        let mut roots: Vec<(PathBuf, bool)> = Vec::new();
        let all = self
            .steps
            .iter()
            .flat_map(|s| s.mounts.iter().chain(&s.copies))
            .chain(self.builds.iter().map(|b| &b.context))
            .cloned()
            .chain(
                self.builds
                    .iter()
                    .filter_map(|b| b.dockerfile.parent().map(Path::to_path_buf)),
            );
        for path in all {
            let root = if path.is_dir() {
                (path, true)
            } else {
                match path.parent() {
                    Some(parent) => (parent.to_path_buf(), false),
                    None => continue,
                }
            };
            if !roots.contains(&root) {
                roots.push(root);
            }
        }
        let recursive: Vec<PathBuf> = roots
            .iter()
            .filter(|(_, r)| *r)
            .map(|(p, _)| p.clone())
            .collect();
        roots.retain(|(path, rec)| {
            !recursive
                .iter()
                .any(|r| path.starts_with(r) && (path != r || !*rec))
        });
        roots.sort();
        roots
    }

    /// What the saved `paths` call for (noise and ignored folders dropped).
    pub fn classify<P: AsRef<Path>>(&self, paths: &[P]) -> Affected {
        let mut affected = Affected::default();
        for path in paths {
            let path = path.as_ref();
            if is_noise(path) || self.ignored.iter().any(|i| path.starts_with(i)) {
                continue;
            }
            let mut mounted = false;
            for step in &self.steps {
                if step.mounts.iter().any(|m| path.starts_with(m)) {
                    affected.run.insert(step.id);
                    mounted = true;
                }
                if step.copies.iter().any(|m| path.starts_with(m)) {
                    affected.recreate.insert(step.id);
                    affected.run.insert(step.id);
                }
            }
            for build in &self.builds {
                if build_reads(build, path, mounted) {
                    affected.rebuild.insert(build.id);
                }
            }
        }
        affected
    }
}

/// Whether `build` reads the saved `path`; `mounted`: the path is under a
/// watched step's mount.
fn build_reads(build: &BuildPaths, path: &Path, mounted: bool) -> bool {
    if path == build.dockerfile || path == build.context.join(".dockerignore") {
        return true;
    }
    let Ok(relative) = path.strip_prefix(&build.context) else {
        return false;
    };
    match &build.inputs {
        Some(ContextInputs::Sources(sources)) => {
            dockerfile::source_reads(sources, &relative.to_string_lossy())
        }
        Some(ContextInputs::Whole) | None => !mounted,
    }
}

/// The saved paths of one debounced batch that matter: noise and ignored
/// folders dropped, each path once, in order.
pub fn filter_batch(paths: impl IntoIterator<Item = PathBuf>, ignored: &[PathBuf]) -> Vec<PathBuf> {
    let mut kept: Vec<PathBuf> = paths
        .into_iter()
        .filter(|p| !is_noise(p) && !ignored.iter().any(|i| p.starts_with(i)))
        .collect();
    kept.sort();
    kept.dedup();
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_recognised() {
        for (path, noise) in [
            ("/r/src/app.py", false),
            ("/r/src/.git/index", true),
            ("/r/src/pkg/__pycache__/app.cpython-311.pyc", true),
            ("/r/.pytest_cache/v/cache/lastfailed", true),
            ("/r/.drydock/results/x/events.ndjson", true),
            ("/r/src/.app.py.swp", true),
            ("/r/src/app.py~", true),
            ("/r/src/.#app.py", true),
            ("/r/src/4913", true),
            ("/r/src/mod.pyc", true),
            ("/r/src/.mypy_cache/x", true),
            ("/r/src/gitignore.py", false),
            ("/r/src/requirements.txt", false),
            ("/r/src/.github/workflows/ci.yml", false),
        ] {
            assert_eq!(is_noise(Path::new(path)), noise, "{path}");
        }
    }

    #[test]
    fn batches_drop_noise_and_repeats() {
        let ignored = vec![PathBuf::from("/r/out")];
        let batch = [
            "/r/src/b.py",
            "/r/src/a.py",
            "/r/src/b.py",
            "/r/src/__pycache__/b.pyc",
            "/r/out/junit.xml",
            "/r/src/.b.py.swp",
        ]
        .map(PathBuf::from);
        assert_eq!(
            filter_batch(batch, &ignored),
            [PathBuf::from("/r/src/a.py"), PathBuf::from("/r/src/b.py")]
        );
    }

    /// A repository with a Dockerfile whose `dev` target copies only the
    /// requirements and whose `test` target copies everything.
    fn repo() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app");
        std::fs::create_dir_all(app.join("src")).unwrap();
        std::fs::create_dir_all(app.join("tests")).unwrap();
        std::fs::create_dir_all(dir.path().join("shared")).unwrap();
        std::fs::write(
            app.join("Dockerfile"),
            "FROM drydock/python:3.11 AS dev\nCOPY requirements.txt /tmp/\n\
             FROM dev AS test\nCOPY . /app\n",
        )
        .unwrap();
        std::fs::write(app.join("requirements.txt"), "").unwrap();
        std::fs::write(dir.path().join("shared/data.json"), "{}").unwrap();
        dir
    }

    fn plan_of(root: &Path, yaml: &str) -> Plan {
        let pipeline = crate::pipeline::parse_str(
            yaml,
            "ci.yml",
            root,
            &crate::pipeline::Vars::new(Default::default()),
        )
        .unwrap_or_else(|e| panic!("{:#?}", e.diagnostics()));
        crate::plan::plan(
            &pipeline,
            &crate::plan::PlanOptions {
                run_id: "t".to_string(),
                ..Default::default()
            },
        )
    }

    #[test]
    fn saved_paths_reach_the_steps_that_mount_them_and_the_builds_that_read_them() {
        let dir = repo();
        let root = dir.path().canonicalize().unwrap();
        let plan = plan_of(
            &root,
            "version: 1\nname: w\nbuild: { context: app }\n\
             tiers:\n  - name: unit\n    steps:\n\
             \x20     - { name: src, build: dev, command: [pytest], mounts: ['app/src:/src'] }\n\
             \x20     - { name: all, build: dev, command: [pytest], mounts: ['app:/app'] }\n\
             \x20     - { name: data, build: test, command: [pytest], mounts: ['shared/data.json:/data.json:ro'] }\n",
        );
        let steps: Vec<StepId> = plan.tiers[0].steps.clone();
        let id = |name: &str| plan.steps.iter().find(|s| s.name == name).unwrap().id;
        let build = |name: &str| plan.builds.iter().find(|b| b.name == name).unwrap().id;
        let builds = plan.tiers[0].needs_builds.clone();
        let map = WatchMap::new(&plan, &steps, &builds, vec![root.join("app/out")]);
        let set = |names: &[&str]| names.iter().map(|n| id(n)).collect::<BTreeSet<_>>();
        let bset = |names: &[&str]| names.iter().map(|n| build(n)).collect::<BTreeSet<_>>();
        let cases: &[(&str, &[&str], &[&str])] = &[
            ("app/src/x.py", &["src", "all"], &[]),
            ("app/src/deep/y.py", &["src", "all"], &[]),
            ("app/tests/test_x.py", &["all"], &[]),
            // read by the dev target's COPY: rebuilt although mounted
            ("app/requirements.txt", &["all"], &["dev"]),
            ("app/Dockerfile", &["all"], &["dev", "test"]),
            ("app/.dockerignore", &["all"], &["dev", "test"]),
            ("shared/data.json", &["data"], &[]),
            ("shared/other.json", &[], &[]),
            ("app/src/__pycache__/x.pyc", &[], &[]),
            ("app/out/junit.xml", &[], &[]),
            ("elsewhere.txt", &[], &[]),
        ];
        for (path, run, rebuild) in cases {
            let got = map.classify(&[root.join(path)]);
            assert_eq!(got.run, set(run), "run for {path}");
            assert_eq!(got.rebuild, bset(rebuild), "rebuild for {path}");
            assert!(got.recreate.is_empty());
        }
        let roots = map.roots();
        assert!(roots.contains(&(root.join("app"), true)), "{roots:?}");
        assert!(roots.contains(&(root.join("shared"), false)), "{roots:?}");
        assert!(
            !roots.iter().any(|(p, _)| *p == root.join("app/src")),
            "{roots:?}"
        );
    }

    #[test]
    fn a_whole_context_copy_rebuilds_only_for_paths_no_step_mounts() {
        let dir = repo();
        let root = dir.path().canonicalize().unwrap();
        let plan = plan_of(
            &root,
            "version: 1\nname: w\nbuild: { context: app }\n\
             tiers:\n  - name: unit\n    steps:\n\
             \x20     - { name: src, build: test, command: [pytest], mounts: ['app/src:/app/src'] }\n",
        );
        let steps = plan.tiers[0].steps.clone();
        let builds = plan.tiers[0].needs_builds.clone();
        let map = WatchMap::new(&plan, &steps, &builds, Vec::new());
        let src = map.classify(&[root.join("app/src/x.py")]);
        assert_eq!(src.run.len(), 1);
        assert!(src.rebuild.is_empty());
        let tests = map.classify(&[root.join("app/tests/test_x.py")]);
        assert!(tests.run.is_empty());
        assert_eq!(tests.rebuild.len(), 1);
    }
}
