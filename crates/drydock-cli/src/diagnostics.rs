//! Located problems of an input file shown as people expect from compilers:
//! `FILE:LINE:COL: message` and a code frame, rendered by `miette`.
//!
//! What is shown of a file is bounded and inert: at most three lines around
//! the problem, each cut to [`WIDTH`] characters around the column, with
//! control characters shown as `?` (a hostile file must not drive the
//! terminal, nor print a megabyte line).

use std::fmt;
use std::path::Path;

use drydock_core::pipeline::Diagnostic as Located;
use drydock_core::pipeline::PipelineError;
use miette::{
    Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteError,
    MietteSpanContents, SourceCode, SourceSpan, SpanContents,
};

/// Characters of a line shown around the problem's column.
const WIDTH: usize = 100;

/// Lines of a file around a problem, made safe to print.
#[derive(Debug)]
struct Snippet {
    name: String,
    /// The lines shown, joined by `\n`.
    text: String,
    /// 0-based number of the first line shown.
    first_line: usize,
    /// Characters cut from the start of every line shown (for columns).
    cut: usize,
}

impl SourceCode for Snippet {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let inner = self.text.read_span(span, before, after)?;
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            *inner.span(),
            inner.line() + self.first_line,
            inner.column() + self.cut,
            inner.line_count(),
        )))
    }
}

/// One problem with its code frame.
#[derive(Debug)]
struct Framed {
    message: String,
    snippet: Option<(Snippet, SourceSpan)>,
}

impl fmt::Display for Framed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Framed {}

impl Diagnostic for Framed {
    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.snippet.as_ref().map(|(s, _)| s as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let (_, span) = self.snippet.as_ref()?;
        Some(Box::new(std::iter::once(
            LabeledSpan::new_primary_with_span(Some("here".to_string()), *span),
        )))
    }
}

/// Text safe to show: tabs as spaces, other control characters as `?`.
fn inert(c: char) -> char {
    match c {
        '\t' => ' ',
        c if c.is_control() => '?',
        c => c,
    }
}

/// A file's lines as YAML counts them (LF, CRLF, CR), read once per
/// file and as far as drydock reads YAML files; `None` when unreadable.
fn file_lines(path: &Path) -> Option<Vec<String>> {
    let bytes = drydock_core::yaml::read_limited(path).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    Some(
        text.replace("\r\n", "\n")
            .split(['\n', '\r'])
            .map(str::to_string)
            .collect(),
    )
}

/// The lines around `line:col` of a file, and the span of the problem in them.
fn snippet(lines: &[String], name: &str, line: usize, col: usize) -> Option<(Snippet, SourceSpan)> {
    let index = line.checked_sub(1)?;
    let target_len = lines.get(index)?.chars().count();
    let cut = col.saturating_sub(WIDTH / 2 + 1).min(target_len);
    let first = index.saturating_sub(1);
    let last = (index + 1).min(lines.len() - 1);
    let mut shown = String::new();
    let mut span_start = 0;
    for (i, l) in lines.iter().enumerate().take(last + 1).skip(first) {
        if i > first {
            shown.push('\n');
        }
        let chars: Vec<char> = l.chars().skip(cut).take(WIDTH).map(inert).collect();
        if i == index {
            let at = col.saturating_sub(1).saturating_sub(cut).min(chars.len());
            span_start = shown.len() + chars[..at].iter().map(|c| c.len_utf8()).sum::<usize>();
        }
        shown.extend(chars);
    }
    let span_len = shown[span_start..]
        .chars()
        .next()
        .filter(|c| *c != '\n')
        .map_or(0, char::len_utf8);
    Some((
        Snippet {
            name: name.to_string(),
            text: shown,
            first_line: first,
            cut,
        },
        SourceSpan::new(span_start.into(), span_len),
    ))
}

/// Most problems shown with a code frame; the rest are counted (all are
/// in `drydock validate --json`).
pub const MAX_FRAMED: usize = 50;

/// Renders every problem: `error: FILE:LINE:COL: message` (the form
/// compilers use and editors' problem matchers read) and its code frame.
pub fn render(problems: &[Located], colour: bool) -> String {
    let theme = if colour {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_context_lines(1)
        .with_wrap_lines(false)
        .with_links(false);
    let mut out = String::new();
    let mut files: std::collections::HashMap<&str, Option<Vec<String>>> = Default::default();
    for problem in problems.iter().take(MAX_FRAMED) {
        let lines = files
            .entry(problem.file.as_str())
            .or_insert_with(|| file_lines(Path::new(&problem.file)));
        let header = if colour {
            console::style("error:")
                .red()
                .bold()
                .force_styling(true)
                .to_string()
        } else {
            "error:".to_string()
        };
        out.push_str(&format!("{header} {problem}\n"));
        let framed = Framed {
            // The header line above says it; miette's own is dropped.
            message: String::new(),
            snippet: lines
                .as_deref()
                .and_then(|l| snippet(l, &problem.file, problem.line, problem.col)),
        };
        if framed.snippet.is_none() {
            continue;
        }
        let mut frame = String::new();
        if handler.render_report(&mut frame, &framed).is_ok() {
            if let Some((_, rest)) = frame.split_once('\n') {
                out.push_str(rest);
            }
        }
    }
    for problem in problems.iter().skip(MAX_FRAMED) {
        out.push_str(&format!("error: {problem}\n"));
    }
    if problems.len() > MAX_FRAMED {
        out.push_str(&format!(
            "(code frames for the first {MAX_FRAMED} problems; {} more above without)\n",
            problems.len() - MAX_FRAMED
        ));
    }
    out
}

/// The message of an invalid pipeline: each problem as `error:
/// FILE:LINE:COL: message` with its code frame, then how many there are.
/// (Formatted: print it as it is.)
pub fn render_pipeline_error(path: &Path, error: &PipelineError) -> (String, bool) {
    let problems = error.diagnostics();
    if problems.is_empty() {
        return (error.to_string(), false);
    }
    let mut text = crate::diagnostics::render(&problems, crate::stderr_colours());
    if problems.len() > 1 {
        text.push_str(&format!(
            "\n{}: {}",
            path.display(),
            crate::report::plural(problems.len() as u64, "problem")
        ));
    }
    (text.trim_end().to_string(), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(file: &str, line: usize, col: usize, message: &str) -> Located {
        Located {
            file: file.to_string(),
            line,
            col,
            message: message.to_string(),
        }
    }

    #[test]
    fn each_problem_gets_its_line_and_a_frame() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.yml");
        std::fs::write(&path, "a: 1\nbb: \x1b[31mred\ncc: 3\ndd: 4\n").unwrap();
        let file = path.to_string_lossy();
        let text = render(
            &[
                problem(&file, 2, 5, "first"),
                problem(&file, 4, 1, "second"),
            ],
            false,
        );
        assert!(text.contains(&format!("{file}:2:5: first")), "{text}");
        assert!(text.contains(&format!("{file}:4:1: second")), "{text}");
        assert!(text.contains("[31mred"), "the line is shown: {text}");
        assert!(!text.contains('\x1b'), "control bytes are inert: {text}");
        assert!(text.contains(" 2 │ bb:"), "real line numbers: {text}");
        assert!(text.contains(" 3 │ cc: 3"), "context: {text}");
        assert!(text.contains("here"), "{text}");
    }

    #[test]
    fn a_huge_line_is_cut_around_the_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.yml");
        let line = format!("k: {}X{}", "a".repeat(500_000), "b".repeat(500_000));
        std::fs::write(&path, &line).unwrap();
        let file = path.to_string_lossy();
        let text = render(&[problem(&file, 1, 500_004, "huge")], false);
        assert!(text.len() < 4_000, "{} bytes", text.len());
        assert!(text.contains('X'), "{text}");
    }

    #[test]
    fn an_unreadable_file_still_shows_the_problem() {
        let text = render(&[problem("/no/such/file.yml", 3, 2, "gone")], false);
        assert!(text.contains("/no/such/file.yml:3:2: gone"), "{text}");
    }
}
