//! `drydock schema`, `drydock completions` and `drydock man`: what editors,
//! shells and `man` need, generated from the types and the command line
//! themselves so that they cannot drift.

use std::path::PathBuf;

use crate::error::CliError;

/// Which schema `drydock schema` prints.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Which {
    /// The pipeline file (YAML input), for editors (docs/schema/pipeline.schema.json).
    Pipeline,
    /// One record of the event stream v1 (docs/schema/events.schema.json).
    Events,
    /// summary.json of a run (docs/schema/summary.schema.json).
    Summary,
}

/// Arguments of `drydock schema`.
#[derive(Debug, clap::Args)]
pub struct SchemaArgs {
    /// Which schema.
    #[arg(value_enum, value_name = "WHICH")]
    pub which: Which,
}

/// The schema, pretty-printed with a final newline (as shipped in docs/schema/).
pub fn schema_text(which: Which) -> String {
    let value = match which {
        Which::Pipeline => drydock_core::pipeline::schema::pipeline_schema(),
        Which::Events => drydock_core::events::record_schema(),
        Which::Summary => drydock_core::report::Summary::schema(),
    };
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}

/// `drydock schema <which>`.
pub fn schema(args: SchemaArgs) -> Result<u8, CliError> {
    out!("{}", schema_text(args.which));
    Ok(0)
}

/// Arguments of `drydock completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// `drydock completions <shell>`.
pub fn completions(args: CompletionsArgs) -> Result<u8, CliError> {
    let mut command = crate::command();
    // Rendered first: clap_complete panics on a write error (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "drydock", &mut script);
    out!("{}", String::from_utf8_lossy(&script));
    Ok(0)
}

/// Arguments of `drydock man`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write `drydock.1` and one `drydock-<command>.1` per command into
    /// this folder instead of printing `drydock.1`.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// `drydock man`.
pub fn man(args: ManArgs) -> Result<u8, CliError> {
    let command = crate::command();
    match args.dir {
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut out)
                .map_err(|e| CliError::infra(format!("cannot render the man page: {e}")))?;
            use std::io::Write;
            match std::io::stdout().write_all(&out) {
                // The reader went away (`drydock man | head`): nothing to say.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                result => result
                    .map_err(|e| CliError::infra(format!("cannot write the man page: {e}")))?,
            }
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .map_err(|e| CliError::infra(format!("cannot create {}: {e}", dir.display())))?;
            clap_mangen::generate_to(command, &dir).map_err(|e| {
                CliError::infra(format!("cannot write man pages in {}: {e}", dir.display()))
            })?;
        }
    }
    Ok(0)
}
