//! `drydock gc`: remove what dead runs left, and release images nobody needs.

use std::collections::BTreeMap;

use drydock_core::engine::{labels, owner_alive, Engine, Leftover};
use drydock_core::release::Ledger;

use crate::error::CliError;

/// Arguments of `drydock gc`.
#[derive(Debug, clap::Args)]
pub struct GcArgs {
    /// Also remove containers and networks of runs that still look alive:
    /// refused (exit 2, naming the runs) when some do, unless --force.
    #[arg(long)]
    pub all: bool,
    /// With --all: remove objects of live runs too (their steps die).
    #[arg(long, requires = "all")]
    pub force: bool,
    /// Only objects of this run (repeatable): what a test or script made.
    #[arg(long = "run", value_name = "RUN_ID")]
    pub runs: Vec<String>,
    /// Only list what would be removed.
    #[arg(long)]
    pub dry_run: bool,
    /// With --images: keep the images of each channel's last N ledger entries.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub keep: usize,
    /// Also remove images built by pipelines that no channel's last N ledger
    /// entries reference (and that are not a target's current build).
    #[arg(long)]
    pub images: bool,
    /// Also remove the pipelines' caches (`cache:` volumes), except those a
    /// running run holds; run sweeps never remove them.
    #[arg(long)]
    pub caches: bool,
    /// Also remove every stored step result (files under `<state
    /// dir>/results/`, see `reuse:` in docs/pipeline-format.md; no engine
    /// object): the next run of each step runs it.
    #[arg(long)]
    pub results: bool,
}

/// The runs that own `objects`, for people: `ID (pipeline P, pid N on H)`.
fn describe_runs(objects: &[&Leftover]) -> Vec<String> {
    let mut runs: BTreeMap<String, String> = BTreeMap::new();
    for o in objects {
        let get = |k: &str| o.labels.get(k).map(String::as_str).unwrap_or("?");
        runs.entry(get(labels::RUN).to_string()).or_insert_with(|| {
            format!(
                "{} (pipeline {}, pid {} on {})",
                get(labels::RUN),
                get(labels::PIPELINE),
                get(labels::PID),
                get(labels::HOST)
            )
        });
    }
    runs.into_values().collect()
}

/// Runs `drydock gc`.
///
/// Without `--all`, only objects of dead runs (owner process gone, see
/// [`owner_alive`]) are removed. `--all` asks for the objects of live runs
/// too; they are refused (exit 2, nothing removed, the runs named) unless
/// `--force` is given, since removing them kills the steps of runs in
/// progress (another terminal, the runner, another engineer's tests).
/// `--run` restricts everything to the given runs.
pub async fn run(args: GcArgs) -> Result<u8, CliError> {
    let engine = Engine::connect().await?;
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removing"
    };
    let found: Vec<Leftover> = engine
        .stale(true)
        .await?
        .into_iter()
        .filter(|l| {
            args.runs.is_empty() || l.run_id().is_some_and(|r| args.runs.iter().any(|w| w == r))
        })
        .collect();
    let (live, dead): (Vec<&Leftover>, Vec<&Leftover>) =
        found.iter().partition(|l| owner_alive(&l.labels));
    let mut stale: Vec<Leftover> = dead.into_iter().cloned().collect();
    if args.all && !live.is_empty() {
        if args.force {
            stale.extend(live.iter().map(|l| (*l).clone()));
        } else {
            let message = format!(
                "refusing to remove {} objects of {} runs that are still alive (their owner \
                 process runs, or they belong to another host):\n  {}\n\
                 removing them would kill those runs' steps; pass --force to remove them \
                 anyway, or --run RUN_ID to pick runs",
                live.len(),
                describe_runs(&live).len(),
                describe_runs(&live).join("\n  ")
            );
            if !args.dry_run {
                return Err(CliError::invalid(message));
            }
            outln!("would refuse: {message}");
        }
    }
    for item in &stale {
        outln!(
            "{verb} {} {} (run {})",
            item.kind,
            &item.id[..item.id.len().min(12)],
            item.run_id().unwrap_or("?")
        );
    }
    let mut removed = 0;
    if args.dry_run {
        removed += stale.len();
    } else {
        removed += engine.remove_leftovers(&stale).await?;
    }
    if args.images {
        removed += gc_images(&engine, &args, verb).await?;
    }
    if args.caches {
        removed += gc_caches(&engine, &args, verb).await?;
    }
    if args.results {
        // Files, not engine objects: told on their own line.
        gc_results(&args, verb).await?;
    }
    outln!(
        "{} {}",
        if args.dry_run {
            "would remove"
        } else {
            "removed"
        },
        crate::report::plural(removed as u64, "engine object")
    );
    Ok(0)
}

/// Removes the stored step results (all of them; `--dry-run` lists their count and size).
async fn gc_results(args: &GcArgs, verb: &str) -> Result<(), CliError> {
    let store = drydock_core::reuse::store_dir(&drydock_core::cache::state_dir());
    let dry_run = args.dry_run;
    let shown = store.clone();
    let (entries, bytes) = tokio::task::spawn_blocking(move || {
        if dry_run {
            drydock_core::reuse::entries(&store)
                .map(|all| (all.len(), all.iter().map(|e| e.bytes).sum::<u64>()))
        } else {
            drydock_core::reuse::clear(&store).map(|c| (c.entries, c.bytes))
        }
    })
    .await
    .map_err(|e| CliError::infra(format!("removing stored results: {e}")))?
    .map_err(|e| {
        CliError::infra(format!(
            "removing stored results in {}: {e}",
            shown.display()
        ))
    })?;
    outln!(
        "{verb} {entries} stored step results ({bytes} bytes) in {}",
        shown.display()
    );
    Ok(())
}

/// Lists the pipelines' cache volumes and removes those no run holds.
async fn gc_caches(engine: &Engine, args: &GcArgs, verb: &str) -> Result<usize, CliError> {
    let state = drydock_core::cache::state_dir();
    let caches: Vec<_> = engine
        .labelled(labels::CACHE)
        .await?
        .into_iter()
        .filter(|l| l.kind == "volume")
        .collect();
    let mut free = Vec::new();
    for cache in caches {
        let pipeline = cache.labels.get(labels::CACHE).cloned().unwrap_or_default();
        let path = cache
            .labels
            .get(labels::CACHE_PATH)
            .cloned()
            .unwrap_or_default();
        if drydock_core::cache::leased(&state, &cache.id) {
            outln!(
                "keeping cache {} ({pipeline} {path}): a run holds it",
                cache.id
            );
            continue;
        }
        outln!("{verb} cache {} ({pipeline} {path})", cache.id);
        free.push(cache);
    }
    if args.dry_run {
        return Ok(0);
    }
    Ok(engine.remove_leftovers(&free).await?)
}

/// Release images built by pipelines that no channel's recent history
/// references and that are not the current build of a target.
async fn gc_images(engine: &Engine, args: &GcArgs, verb: &str) -> Result<usize, CliError> {
    let ledger =
        Ledger::open(&Ledger::default_path()).map_err(|e| CliError::infra(e.to_string()))?;
    let keep = ledger
        .referenced_images(args.keep)
        .map_err(|e| CliError::infra(e.to_string()))?;
    let mut count = 0;
    for (id, tags) in engine
        .images_labelled(&format!("{}=build", labels::ROLE))
        .await?
    {
        let current_build = tags.iter().any(|t| t.starts_with("drydock-build/"));
        if keep.contains(&id) || current_build {
            continue;
        }
        outln!(
            "{verb} image {} {}",
            &id.trim_start_matches("sha256:")[..12],
            tags.join(" ")
        );
        count += 1;
        if args.dry_run {
            continue;
        }
        // Tags first, then the image; an image a container still uses stays.
        for tag in &tags {
            let _ = engine.remove_image(tag, false).await;
        }
        if let Err(e) = engine.remove_image(&id, false).await {
            errln!("drydock: kept image {id}: {e}");
            count -= 1;
        }
    }
    Ok(count)
}
