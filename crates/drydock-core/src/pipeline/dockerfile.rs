//! What validation needs to know of a Dockerfile: its stages, so that an
//! unknown `target` is refused before anything starts.
//!
//! Parsing is done by the `parse-dockerfile` crate (which follows BuildKit's
//! parser); stage names compare case-insensitively, as `docker build
//! --target` compares them (BuildKit lowercases `AS` names, the classic
//! builder uses `strings.EqualFold`).

use std::path::Path;

/// Largest Dockerfile read (bytes); the Docker CLI has no limit, but a
/// Dockerfile this large is certainly not one.
pub(crate) const MAX_DOCKERFILE_BYTES: u64 = 4 * 1024 * 1024;

/// One `FROM` of a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stage {
    /// The `AS` name, lowercased; `None` for an unnamed stage.
    pub name: Option<String>,
    /// 1-based line of the `FROM`.
    pub line: usize,
    /// The base image as written (`python:3.12-slim`, `${BASE}`, `deps`).
    pub base: String,
}

/// A problem reading a Dockerfile: 1-based line and column, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DockerfileError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// The stages of the Dockerfile at `path`, in order (never empty on `Ok`).
pub(crate) fn read_stages(path: &Path) -> Result<Vec<Stage>, DockerfileError> {
    let at_start = |message: String| DockerfileError {
        line: 1,
        col: 1,
        message,
    };
    let size = std::fs::metadata(path)
        .map_err(|e| at_start(format!("cannot read: {e}")))?
        .len();
    if size > MAX_DOCKERFILE_BYTES {
        return Err(at_start(format!(
            "the Dockerfile is {size} bytes; drydock reads Dockerfiles of at most {MAX_DOCKERFILE_BYTES} bytes"
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| at_start(format!("cannot read: {e}")))?;
    let text = match std::str::from_utf8(&bytes) {
        Ok(text) => text,
        Err(e) => {
            let (line, col) = line_col(&bytes, e.valid_up_to());
            return Err(DockerfileError {
                line,
                col,
                message: "the Dockerfile is not valid UTF-8".to_string(),
            });
        }
    };
    parse_stages(text)
}

/// The stages of Dockerfile text.
pub(crate) fn parse_stages(text: &str) -> Result<Vec<Stage>, DockerfileError> {
    let dockerfile = parse_dockerfile::parse(text).map_err(|e| DockerfileError {
        line: e.line().max(1),
        col: e.column().max(1),
        message: e.to_string(),
    })?;
    Ok(dockerfile
        .stages()
        .map(|stage| Stage {
            name: stage
                .from
                .as_
                .as_ref()
                .map(|(_, name)| name.value.to_ascii_lowercase()),
            line: line_col(text.as_bytes(), stage.from.from.span.start).0,
            base: stage.from.image.value.to_string(),
        })
        .collect())
}

/// Whether `target` names one of `stages` (case-insensitively, as docker does).
pub(crate) fn has_stage(stages: &[Stage], target: &str) -> bool {
    stages
        .iter()
        .any(|s| s.name.as_deref() == Some(target.to_ascii_lowercase().as_str()))
}

/// The stages for people: ``"`deps` (line 3), `production` (line 20), an unnamed stage (line 1, FROM python:3.12)"``.
pub(crate) fn describe(stages: &[Stage]) -> String {
    stages
        .iter()
        .map(|s| match &s.name {
            Some(name) => format!("`{name}` (line {})", s.line),
            None => format!("an unnamed stage (line {}, FROM {})", s.line, s.base),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn line_col(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let col = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_with_and_without_names_and_their_lines() {
        let text = "# syntax comment\nARG BASE=python:3.12\nFROM ${BASE} AS Deps\nRUN x\n\nFROM deps\nFROM scratch as final\n";
        let stages = parse_stages(text).unwrap();
        assert_eq!(
            stages,
            vec![
                Stage {
                    name: Some("deps".into()),
                    line: 3,
                    base: "${BASE}".into()
                },
                Stage {
                    name: None,
                    line: 6,
                    base: "deps".into()
                },
                Stage {
                    name: Some("final".into()),
                    line: 7,
                    base: "scratch".into()
                },
            ]
        );
        assert!(has_stage(&stages, "DEPS"));
        assert!(has_stage(&stages, "final"));
        assert!(!has_stage(&stages, "app"));
        assert_eq!(
            describe(&stages),
            "`deps` (line 3), an unnamed stage (line 6, FROM deps), `final` (line 7)"
        );
    }

    #[test]
    fn broken_dockerfiles_are_errors_with_a_location() {
        for (text, line) in [
            ("RUN echo before any FROM\n", 1),
            ("FROM a AS x\nFROM b AS x\n", 2),
            ("", 1),
            ("FROM a\nCOPY onlyone\n", 2),
        ] {
            let err = parse_stages(text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err:?}");
            assert!(!err.message.is_empty());
        }
    }

    #[test]
    fn the_repository_dockerfiles_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        for (path, stages) in [
            ("images/flask-api/Dockerfile", 4),
            ("images/base/python/Dockerfile", 1),
            ("images/base/postgres/Dockerfile", 1),
            ("tests/fixtures/tiny/app/Dockerfile", 3),
        ] {
            let found = read_stages(&root.join(path)).unwrap();
            assert_eq!(found.len(), stages, "{path}");
        }
    }
}
