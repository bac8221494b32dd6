//! The plan for people (`drydock plan` without `--json`).

use std::fmt::Write;
use std::path::Path;

use super::{ContainerPlan, NetworkPlan, Plan};
use crate::pipeline::{format_duration, Probe};

/// Renders a plan as indented text: builds in build order, services, tiers
/// with their steps, the release, and notes. Paths are shown relative to
/// the repository root.
pub fn render(plan: &Plan) -> String {
    let root = plan.repo_root.as_path();
    let rel = |p: &Path| -> String {
        match p.strip_prefix(root) {
            Ok(r) if r.as_os_str().is_empty() => ".".to_string(),
            Ok(r) => r.display().to_string(),
            Err(_) => p.display().to_string(),
        }
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "plan of {} (pipeline {}, run {})",
        plan.source_path.display(),
        plan.pipeline,
        plan.run_id
    );
    if !plan.images.is_empty() {
        let _ = writeln!(out, "images: {}", plan.images.join(", "));
    }
    if !plan.builds.is_empty() {
        let _ = writeln!(out, "builds, in build order:");
        for b in &plan.builds {
            let stage = match &b.target {
                Some(t) => format!("target {t}"),
                None => "last stage".to_string(),
            };
            let _ = writeln!(
                out,
                "  {}: {stage} of {} (context {}){}, reported by tier {}",
                b.name,
                rel(&b.context.join(&b.dockerfile)),
                rel(&b.context),
                if b.args.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", args {}",
                        b.args.keys().cloned().collect::<Vec<_>>().join(", ")
                    )
                },
                plan.tiers[b.tier].name
            );
        }
    }
    if !plan.services.is_empty() {
        let _ = writeln!(out, "services:");
        for s in &plan.services {
            let ready = match &s.ready {
                None => "no readiness probe".to_string(),
                Some(r) => format!(
                    "ready by {} within {}",
                    match &r.probe {
                        Probe::Postgres { user, database, .. } =>
                            format!("psql as {user} to {database}"),
                        Probe::Exec(argv) => format!("exec {argv:?}"),
                        Probe::Healthcheck => "the image's HEALTHCHECK".to_string(),
                    },
                    format_duration(r.timeout)
                ),
            };
            let _ = writeln!(
                out,
                "  {}: {}; {ready}",
                s.name,
                container_line(plan, &s.container, &rel)
            );
        }
    }
    let _ = writeln!(out, "tiers:");
    for t in &plan.tiers {
        let _ = writeln!(out, "  {}. {}", t.index + 1, t.name);
        for b in &t.builds {
            let _ = writeln!(out, "     build {}", plan.build(*b).name);
        }
        if !t.services.is_empty() {
            let names: Vec<&str> = t
                .services
                .iter()
                .map(|s| plan.service(*s).name.as_str())
                .collect();
            let _ = writeln!(out, "     waits for services: {}", names.join(", "));
        }
        for s in &t.steps {
            let step = plan.step(*s);
            let _ = writeln!(
                out,
                "     step {}: {}; timeout {}",
                step.name,
                container_line(plan, &step.container, &rel),
                format_duration(step.timeout)
            );
        }
    }
    match &plan.release {
        Some(r) => {
            let mut tags: Vec<String> = r.tags.iter().map(|t| format!("{}:{t}", r.name)).collect();
            tags.push(format!("{}:{} (channel)", r.name, r.channel));
            let _ = writeln!(
                out,
                "release: build {} tagged {}{}",
                plan.build(r.build).name,
                tags.join(", "),
                r.registry
                    .as_ref()
                    .map(|reg| format!(", pushed to {reg}"))
                    .unwrap_or_default()
            );
        }
        None => {
            let _ = writeln!(out, "release: none");
        }
    }
    for note in &plan.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out
}

fn container_line(plan: &Plan, c: &ContainerPlan, rel: &dyn Fn(&Path) -> String) -> String {
    let mut parts = vec![plan.describe_image(c.image)];
    if let Some(e) = &c.entrypoint {
        parts.push(format!("entrypoint {e:?}"));
    }
    if let Some(cmd) = &c.command {
        if cmd.len() == 3 && cmd[0] == "sh" && cmd[1] == "-c" && cmd[2].starts_with("set -e\n") {
            parts.push("script".to_string());
        } else {
            parts.push(format!("command {cmd:?}"));
        }
    }
    if let Some(u) = &c.user {
        parts.push(format!("user {u}"));
    }
    if let Some(w) = &c.workdir {
        parts.push(format!("workdir {w}"));
    }
    for b in &c.binds {
        parts.push(format!(
            "mount {}:{}:{}",
            rel(&b.source),
            b.target,
            if b.read_only { "ro" } else { "rw" }
        ));
    }
    for cp in &c.copies {
        parts.push(format!("copy {}:{}", rel(&cp.source), cp.target));
    }
    parts.push(match &c.network {
        NetworkPlan::Run { .. } => "run network".to_string(),
        NetworkPlan::Bridge => "default bridge".to_string(),
        NetworkPlan::None => "no network".to_string(),
    });
    parts.join(", ")
}
