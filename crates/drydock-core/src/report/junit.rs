//! JUnit XML: counting the tests of a report and merging reports into one.

use std::io::Write;
use std::path::Path;

use quick_xml::events::{BytesStart, Event as Xml};
use quick_xml::{Reader, Writer};

use crate::events::TestCounts;

/// Errors reading or writing JUnit XML.
#[derive(Debug, thiserror::Error)]
pub enum JunitError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not well-formed XML.
    #[error("{path}: not a JUnit XML report: {message}")]
    Malformed {
        /// The file.
        path: String,
        /// What the parser said.
        message: String,
    },
}

/// What one report says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JunitSummary {
    /// Counts summed over its test suites.
    pub counts: TestCounts,
    /// `classname::name` of every failed or errored test case.
    pub failed: Vec<String>,
}

fn attr(element: &BytesStart, name: &[u8]) -> Option<String> {
    element
        .attributes()
        .flatten()
        .find(|a| a.key.as_ref() == name)
        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
}

fn number(element: &BytesStart, name: &[u8]) -> u64 {
    attr(element, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Reads a JUnit XML text and sums its `<testsuite>` counts.
pub fn summarize(xml: &str, label: &str) -> Result<JunitSummary, JunitError> {
    let mut reader = Reader::from_str(xml);
    let mut summary = JunitSummary::default();
    let mut current_case: Option<String> = None;
    loop {
        match reader.read_event() {
            Ok(Xml::Start(e)) | Ok(Xml::Empty(e)) if e.name().as_ref() == b"testsuite" => {
                summary.counts.add(&TestCounts {
                    tests: number(&e, b"tests"),
                    failures: number(&e, b"failures"),
                    errors: number(&e, b"errors"),
                    skipped: number(&e, b"skipped"),
                });
            }
            Ok(Xml::Start(e)) if e.name().as_ref() == b"testcase" => {
                let class = attr(&e, b"classname").unwrap_or_default();
                let name = attr(&e, b"name").unwrap_or_default();
                current_case = Some(if class.is_empty() {
                    name
                } else {
                    format!("{class}::{name}")
                });
            }
            Ok(Xml::End(e)) if e.name().as_ref() == b"testcase" => current_case = None,
            Ok(Xml::Start(e)) | Ok(Xml::Empty(e))
                if matches!(e.name().as_ref(), b"failure" | b"error") =>
            {
                if let Some(case) = current_case.take() {
                    summary.failed.push(case);
                }
            }
            Ok(Xml::Eof) => break,
            Ok(_) => {}
            Err(e) => {
                return Err(JunitError::Malformed {
                    path: label.to_string(),
                    message: e.to_string(),
                })
            }
        }
    }
    Ok(summary)
}

/// Reads and summarizes a JUnit XML file.
pub fn summarize_file(path: &Path) -> Result<JunitSummary, JunitError> {
    let text = std::fs::read_to_string(path).map_err(|source| JunitError::Io {
        path: path.display().to_string(),
        source,
    })?;
    summarize(&text, &path.display().to_string())
}

/// Merges reports into one `<testsuites>` document. Each input is
/// `(suite prefix, xml)`; every `<testsuite>` keeps its content and gets the
/// name `prefix` (or `prefix/original` when the original had a name other
/// than pytest's default).
pub fn merge<'a>(
    reports: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<String, JunitError> {
    let mut writer = Writer::new_with_indent(Vec::new(), b' ', 2);
    let mut total = TestCounts::default();
    let mut body = Writer::new(Vec::new());
    for (prefix, xml) in reports {
        let mut reader = Reader::from_str(xml);
        let mut depth_in_suite = 0usize;
        loop {
            let event = reader.read_event().map_err(|e| JunitError::Malformed {
                path: prefix.to_string(),
                message: e.to_string(),
            })?;
            match event {
                Xml::Eof => break,
                Xml::Start(e) if e.name().as_ref() == b"testsuite" => {
                    total.add(&counts_of(&e));
                    body.write_event(Xml::Start(renamed(&e, prefix)))
                        .map_err(io_error)?;
                    depth_in_suite = 1;
                }
                Xml::Empty(e) if e.name().as_ref() == b"testsuite" => {
                    total.add(&counts_of(&e));
                    body.write_event(Xml::Empty(renamed(&e, prefix)))
                        .map_err(io_error)?;
                }
                other if depth_in_suite > 0 => {
                    match &other {
                        Xml::Start(_) => depth_in_suite += 1,
                        Xml::End(_) => depth_in_suite -= 1,
                        _ => {}
                    }
                    body.write_event(other).map_err(io_error)?;
                }
                _ => {}
            }
        }
    }
    writer
        .write_event(Xml::Decl(quick_xml::events::BytesDecl::new(
            "1.0",
            Some("UTF-8"),
            None,
        )))
        .map_err(io_error)?;
    let mut root = BytesStart::new("testsuites");
    root.push_attribute(("name", "drydock"));
    root.push_attribute(("tests", total.tests.to_string().as_str()));
    root.push_attribute(("failures", total.failures.to_string().as_str()));
    root.push_attribute(("errors", total.errors.to_string().as_str()));
    root.push_attribute(("skipped", total.skipped.to_string().as_str()));
    writer.write_event(Xml::Start(root)).map_err(io_error)?;
    let mut out = writer.into_inner();
    out.write_all(b"\n")
        .map_err(|e| io_error(quick_xml::Error::Io(e.into())))?;
    out.extend_from_slice(&body.into_inner());
    out.extend_from_slice(b"\n</testsuites>\n");
    String::from_utf8(out).map_err(|e| JunitError::Malformed {
        path: "merged report".to_string(),
        message: e.to_string(),
    })
}

fn counts_of(e: &BytesStart) -> TestCounts {
    TestCounts {
        tests: number(e, b"tests"),
        failures: number(e, b"failures"),
        errors: number(e, b"errors"),
        skipped: number(e, b"skipped"),
    }
}

fn renamed(e: &BytesStart, prefix: &str) -> BytesStart<'static> {
    let original = attr(e, b"name").unwrap_or_default();
    let name = if original.is_empty() || original == "pytest" {
        prefix.to_string()
    } else {
        format!("{prefix}/{original}")
    };
    let mut out = BytesStart::new("testsuite");
    out.push_attribute(("name", name.as_str()));
    for a in e.attributes().flatten() {
        if a.key.as_ref() != b"name" {
            out.push_attribute(a);
        }
    }
    out.into_owned()
}

fn io_error(e: impl std::fmt::Display) -> JunitError {
    JunitError::Malformed {
        path: "merged report".to_string(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PYTEST: &str = r#"<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest" errors="0" failures="1" skipped="1" tests="3" time="0.1"><testcase classname="tests.unit.test_a" name="test_ok" time="0.01"/><testcase classname="tests.unit.test_a" name="test_bad" time="0.01"><failure message="assert 1 == 2">trace</failure></testcase><testcase classname="tests.unit.test_a" name="test_skip"><skipped message="x"/></testcase></testsuite></testsuites>"#;

    #[test]
    fn pytest_reports_are_counted_with_failed_cases_named() {
        let summary = summarize(PYTEST, "r.xml").unwrap();
        assert_eq!(
            summary.counts,
            TestCounts {
                tests: 3,
                failures: 1,
                errors: 0,
                skipped: 1
            }
        );
        assert_eq!(summary.counts.passed(), 1);
        assert_eq!(summary.failed, vec!["tests.unit.test_a::test_bad"]);
    }

    #[test]
    fn malformed_reports_are_errors_naming_the_file() {
        let err = summarize("<testsuite><testcase></testsuite>", "bad.xml").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("bad.xml: not a JUnit XML report"),
            "{err}"
        );
    }

    #[test]
    fn merging_keeps_every_case_and_totals_the_counts() {
        let merged = merge([("unit/unit", PYTEST), ("integration/it", PYTEST)]).unwrap();
        let summary = summarize(&merged, "merged").unwrap();
        assert_eq!(summary.counts.tests, 6);
        assert_eq!(summary.failed.len(), 2);
        assert!(
            merged.contains(r#"<testsuite name="unit/unit""#),
            "{merged}"
        );
        assert!(
            merged.contains(r#"<testsuites name="drydock" tests="6" failures="2""#),
            "{merged}"
        );
    }
}
