//! Embedding drydock: load a pipeline, run it on the local engine through a
//! run session (the one the CLI and the runner use), receive typed events,
//! and cancel on Ctrl-C.
//!
//! ```text
//! cargo run -p drydock-core --example run_pipeline -- pipelines/flask-api.yml
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use drydock_core::engine::Engine;
use drydock_core::events::Event;
use drydock_core::pipeline::{self, Vars};
use drydock_core::plan::{self, ReleaseChoice};
use drydock_core::run::{self, CancelReason, GitInfo, RunCancel, RunOptions};
use drydock_core::session::{self, FnSink};
use drydock_core::trust::Trust;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: run_pipeline <pipeline.yml>")?,
    );
    let run_id = run::new_run_id();

    // 1. Load and validate: errors name file:line:col.
    let repo_root = pipeline::find_repo_root(&path);
    let vars = Vars::from_process_env().with_builtin("DRYDOCK_RUN_ID", run_id.as_str());
    let pipeline = pipeline::load(&path, &repo_root, &vars)?;

    // 2. Connect to the engine the docker CLI would use (DOCKER_HOST, DOCKER_CONTEXT, the current context, the local socket).
    let engine = Arc::new(Engine::connect().await?);

    // 3. Run through a session: it writes the results folder and hands every
    //    event, in order, to our sinks (here a closure); cancel on Ctrl-C.
    let cancel = RunCancel::new();
    let on_ctrl_c = cancel.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_ctrl_c.cancel(CancelReason::Signal);
    });
    let options = RunOptions {
        run_id: run_id.clone(),
        results_dir: std::env::temp_dir().join("drydock-example").join(&run_id),
        trust: Trust::from_env(),
        git: GitInfo::default(),
        stop_grace: Duration::from_secs(10),
        // An embedding tool decides about releases; this example never tags.
        release: ReleaseChoice::Off,
        no_retry: false,
        // Where releases would be recorded (none are made here).
        ledger: drydock_core::release::Ledger::default_path(),
        release_fence: None,
        // No step result is stored nor replayed (see drydock_core::reuse).
        results_store: None,
        no_reuse: false,
    };
    let plan = plan::plan(&pipeline, &options.plan_options());
    let show = FnSink(|event: &Event| match event {
        Event::StepFinished {
            tier,
            step,
            status,
            duration_ms,
            ..
        } => println!("{tier}/{step}: {} in {duration_ms} ms", status.word()),
        Event::TierFinished { tier, status, .. } => println!("tier {tier}: {}", status.word()),
        _ => {}
    });
    let ended = session::run_session(&plan, engine, options, cancel, vec![Box::new(show)]).await?;
    let report = ended.report;
    println!(
        "run {}: {:?} ({} steps; results in {})",
        report.run_id,
        report.outcome,
        ended.summary.steps.len(),
        std::env::temp_dir()
            .join("drydock-example")
            .join(&report.run_id)
            .display()
    );
    std::process::exit(report.outcome.exit_code());
}
