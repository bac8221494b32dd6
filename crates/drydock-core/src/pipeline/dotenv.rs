//! Env files (`env_file:`). PLACEHOLDER: replaced by the compose-import
//! branch's implementation (dotenv syntax as compose reads it).

use std::path::Path;

use super::error::Diagnostic;

/// Reads `KEY=VALUE` lines of the env file at `path` (named `label` in errors).
pub fn read_env_file(
    path: &Path,
    label: &str,
    _lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, Diagnostic> {
    let text = std::fs::read_to_string(path).map_err(|e| Diagnostic {
        file: label.to_string(),
        line: 1,
        col: 1,
        message: format!("cannot read: {e}"),
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        match line.split_once('=') {
            Some((k, v)) => out.push((k.trim().to_string(), v.to_string())),
            None => {
                return Err(Diagnostic {
                    file: label.to_string(),
                    line: i + 1,
                    col: 1,
                    message: "expected KEY=VALUE".to_string(),
                })
            }
        }
    }
    Ok(out)
}
