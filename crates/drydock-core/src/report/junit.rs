//! JUnit XML: counting the tests of a report and merging reports into one.
//!
//! Reports come from many tools (pytest, Maven Surefire, Go's go-junit-report,
//! Jest, …) and many of them do not agree on the details, so:
//!
//! - counts come from the `<testcase>` elements actually present (a case with
//!   `<failure>` failed, `<error>` errored, `<skipped>` was skipped), never
//!   from `tests=`/`failures=` attributes, which are missing, wrong or, with
//!   nested `<testsuite>` elements, counted twice when summed; when the
//!   attributes disagree with the cases, a warning says so;
//! - the encoding is the one of the byte order mark (UTF-8, UTF-16) or of the
//!   XML declaration (`encoding="ISO-8859-1"`…, decoded with `encoding_rs`);
//!   bytes that are invalid in it become U+FFFD;
//! - memory is bounded whatever the size of the file: it is streamed, and a
//!   single tag, text, comment or CDATA section larger than
//!   [`MAX_EVENT_BYTES`] makes the report unreadable (with that reason)
//!   rather than being held in memory; nesting deeper than [`MAX_DEPTH`]
//!   too; at most [`MAX_FAILED_NAMES`] failed cases are named;
//! - entities are never expanded beyond XML's five predefined ones and
//!   character references: a DTD is ignored (no "billion laughs", no
//!   external entity is ever fetched), an undefined `&name;` is kept as text;
//! - a report whose root is not `<testsuites>` or `<testsuite>`, that is not
//!   well-formed, or that ends inside an element is an error naming the
//!   file: the step records it as a warning ([`crate::events::Event::Warning`]).
//!
//! [`merge_files`] writes one `<testsuites>` document that is always
//! well-formed: every event is re-serialized (names checked, text escaped,
//! characters XML 1.0 forbids written as `#xNN` as pytest does), and nested
//! suites are flattened so that no test case is counted twice.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use quick_xml::events::{BytesCData, BytesDecl, BytesEnd, BytesStart, BytesText, Event as Xml};
use quick_xml::{Reader, Writer};

use crate::events::TestCounts;

/// Largest single tag, text, comment or CDATA section read (16 MiB).
pub const MAX_EVENT_BYTES: usize = 16 << 20;
/// Deepest element nesting read.
pub const MAX_DEPTH: usize = 256;
/// Most failed test cases named in a summary (all are counted).
pub const MAX_FAILED_NAMES: usize = 1_000;
/// Longest test case name kept, in characters.
const MAX_NAME_CHARS: usize = 500;

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
    /// The file is not a well-formed JUnit XML report.
    #[error("{path}: not a JUnit XML report: {message}")]
    Malformed {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// What one report says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JunitSummary {
    /// Counts from its test cases.
    pub counts: TestCounts,
    /// `classname::name` of failed or errored test cases (at most
    /// [`MAX_FAILED_NAMES`]).
    pub failed: Vec<String>,
    /// Something people should know about the report (its attributes
    /// disagree with its test cases, say).
    pub warning: Option<String>,
}

// ------------------------------------------------------------------ reading

/// The encoding of a report: its byte order mark, else its XML declaration,
/// else UTF-8.
fn sniff_encoding(head: &[u8]) -> &'static encoding_rs::Encoding {
    if let Some((encoding, _)) = encoding_rs::Encoding::for_bom(head) {
        return encoding;
    }
    match head {
        [0x3c, 0, 0x3f, 0, ..] => return encoding_rs::UTF_16LE,
        [0, 0x3c, 0, 0x3f, ..] => return encoding_rs::UTF_16BE,
        _ => {}
    }
    // `<?xml version="1.0" encoding="…"?>`, in an ASCII-compatible encoding.
    let end = head.iter().position(|&b| b == b'>').unwrap_or(head.len());
    let decl = &head[..end];
    if decl.starts_with(b"<?xml") {
        if let Some(at) = find(decl, b"encoding") {
            let rest = &decl[at + b"encoding".len()..];
            let rest = rest.trim_ascii_start().strip_prefix(b"=").unwrap_or(rest);
            let rest = rest.trim_ascii_start();
            if let Some((&quote, value)) = rest.split_first() {
                if let Some(close) = value.iter().position(|&b| b == quote) {
                    if let Some(encoding) = encoding_rs::Encoding::for_label(&value[..close]) {
                        // A declaration cannot select UTF-16 for bytes that are not.
                        if encoding != encoding_rs::UTF_16LE && encoding != encoding_rs::UTF_16BE {
                            return encoding;
                        }
                    }
                }
            }
        }
    }
    encoding_rs::UTF_8
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A report as UTF-8, whatever its encoding, with every XML construct
/// bounded in size (see [`Bounded`]).
fn utf8_reader(mut source: impl Read + 'static) -> std::io::Result<impl BufRead> {
    let mut head = vec![0u8; 1024];
    let mut n = 0;
    while n < head.len() {
        match source.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    head.truncate(n);
    let encoding = sniff_encoding(&head);
    let whole = std::io::Cursor::new(head).chain(source);
    let decoded = encoding_rs_io::DecodeReaderBytesBuilder::new()
        .encoding(Some(encoding))
        .bom_override(true)
        .build(whole);
    Ok(BufReader::with_capacity(64 * 1024, Bounded::new(decoded)))
}

/// Fails a read when one XML construct (tag, text, comment, CDATA section,
/// processing instruction, DOCTYPE) grows past [`MAX_EVENT_BYTES`]:
/// `quick-xml` holds a whole event in memory, so this bounds its memory.
/// A small lexer over the bytes: it knows where constructs end (quotes in
/// tags, `-->`, `]]>`, `?>`, brackets in a DOCTYPE).
struct Bounded<R> {
    inner: R,
    state: Lex,
    /// Bytes of the current construct so far.
    len: usize,
    /// What follows a `<`, while its kind is not known yet.
    opening: Vec<u8>,
    /// The last bytes seen (to find `-->`, `]]>`, `?>`).
    recent: [u8; 3],
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Lex {
    Text,
    /// Just after `<`, before the kind of construct is known.
    Open,
    /// In a tag; the quote of an attribute value being read.
    Tag(Option<u8>),
    Comment,
    CData,
    Pi,
    /// A `<!…>` declaration; the bracket depth of a DOCTYPE's internal subset.
    Decl(u32),
}

impl<R> Bounded<R> {
    fn new(inner: R) -> Self {
        Bounded {
            inner,
            state: Lex::Text,
            len: 0,
            opening: Vec::with_capacity(8),
            recent: [0; 3],
        }
    }

    fn back_to_text(&mut self) {
        self.state = Lex::Text;
        self.len = 0;
    }

    /// The next state of a construct that has just been told apart (the
    /// byte that told it is processed in that state).
    fn classify(&mut self, b: u8) {
        const COMMENT: &[u8] = b"!--";
        const CDATA: &[u8] = b"![CDATA[";
        self.opening.push(b);
        let o = self.opening.as_slice();
        self.state = if o == COMMENT {
            Lex::Comment
        } else if o == CDATA {
            Lex::CData
        } else if COMMENT.starts_with(o) || CDATA.starts_with(o) {
            Lex::Open
        } else if o[0] == b'!' {
            Lex::Decl(0)
        } else if o[0] == b'?' {
            Lex::Pi
        } else {
            Lex::Tag(None)
        };
        if matches!(self.state, Lex::Decl(_) | Lex::Tag(_)) {
            self.step(b);
        }
    }

    /// One byte inside a known construct.
    fn step(&mut self, b: u8) {
        let ends = |s: &[u8]| self.recent.ends_with(s);
        match self.state {
            Lex::Tag(None) => match b {
                b'"' | b'\'' => self.state = Lex::Tag(Some(b)),
                b'>' => self.back_to_text(),
                _ => {}
            },
            Lex::Tag(Some(q)) if b == q => self.state = Lex::Tag(None),
            Lex::Comment if ends(b"-->") => self.back_to_text(),
            Lex::CData if ends(b"]]>") => self.back_to_text(),
            Lex::Pi if ends(b"?>") => self.back_to_text(),
            Lex::Decl(depth) => match b {
                b'[' => self.state = Lex::Decl(depth + 1),
                b']' => self.state = Lex::Decl(depth.saturating_sub(1)),
                b'>' if depth == 0 => self.back_to_text(),
                _ => {}
            },
            _ => {}
        }
    }

    fn feed(&mut self, b: u8) -> std::io::Result<()> {
        self.recent = [self.recent[1], self.recent[2], b];
        self.len += 1;
        match self.state {
            Lex::Text if b == b'<' => {
                self.state = Lex::Open;
                self.len = 1;
                self.opening.clear();
            }
            Lex::Text => {}
            Lex::Open => self.classify(b),
            _ => self.step(b),
        }
        if self.len > MAX_EVENT_BYTES {
            return Err(std::io::Error::other(format!(
                "a single tag, text, comment or CDATA section is larger than {} MiB",
                MAX_EVENT_BYTES >> 20
            )));
        }
        Ok(())
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            self.feed(b)?;
        }
        Ok(n)
    }
}

/// An element name or attribute key as text, when it is a valid XML name
/// (what [`merge_files`] writes must be well-formed).
fn xml_name(raw: &[u8]) -> Option<&str> {
    let name = std::str::from_utf8(raw).ok()?;
    let mut chars = name.chars();
    let first = chars.next()?;
    let start = |c: char| c.is_alphabetic() || c == '_' || c == ':';
    (start(first)
        && chars.all(|c| start(c) || c.is_alphanumeric() || matches!(c, '-' | '.' | '\u{b7}')))
    .then_some(name)
}

/// An attribute's value: unescaped, or (an undefined entity) as written.
fn attr_value(a: &quick_xml::events::attributes::Attribute) -> String {
    match a.unescape_value() {
        Ok(v) => v.into_owned(),
        Err(_) => String::from_utf8_lossy(&a.value).into_owned(),
    }
}

fn attr(element: &BytesStart, name: &[u8]) -> Option<String> {
    element
        .attributes()
        .with_checks(false)
        .flatten()
        .find(|a| a.key.as_ref() == name)
        .map(|a| attr_value(&a))
}

fn number(element: &BytesStart, name: &[u8]) -> Option<u64> {
    attr(element, name).and_then(|v| v.trim().parse().ok())
}

/// How a test case ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CaseOutcome {
    Passed,
    Failed,
    Errored,
    Skipped,
}

impl CaseOutcome {
    fn add_to(self, counts: &mut TestCounts) {
        counts.tests += 1;
        match self {
            CaseOutcome::Passed => {}
            CaseOutcome::Failed => counts.failures += 1,
            CaseOutcome::Errored => counts.errors += 1,
            CaseOutcome::Skipped => counts.skipped += 1,
        }
    }
}

/// One pass over a report: the element structure as callbacks, with the
/// checks every pass makes (root element, depth, well-formedness, the end).
/// `on` receives every event with the names of the open elements.
fn walk(
    source: impl Read + 'static,
    label: &str,
    mut on: impl FnMut(&Xml, &[String]) -> Result<(), JunitError>,
) -> Result<(), JunitError> {
    let malformed = |message: String| JunitError::Malformed {
        path: label.to_string(),
        message,
    };
    let input = utf8_reader(source).map_err(|source| JunitError::Io {
        path: label.to_string(),
        source,
    })?;
    let mut reader = Reader::from_reader(input);
    reader.config_mut().check_end_names = true;
    let mut buf = Vec::new();
    let mut open: Vec<String> = Vec::new();
    let mut roots = 0;
    loop {
        buf.clear();
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| malformed(format!("{e} (near byte {})", reader.buffer_position())))?;
        match &event {
            Xml::Eof => break,
            Xml::Start(e) | Xml::Empty(e) => {
                let name = xml_name(e.name().as_ref())
                    .ok_or_else(|| {
                        malformed(format!(
                            "invalid element name {:?}",
                            String::from_utf8_lossy(e.name().as_ref())
                        ))
                    })?
                    .to_string();
                if open.is_empty() {
                    roots += 1;
                    if roots > 1 {
                        return Err(malformed("more than one root element".into()));
                    }
                    if name != "testsuites" && name != "testsuite" {
                        return Err(malformed(format!(
                            "the root element is <{name}>, not <testsuites> or <testsuite>"
                        )));
                    }
                }
                if open.len() >= MAX_DEPTH {
                    return Err(malformed(format!(
                        "elements nested deeper than {MAX_DEPTH}"
                    )));
                }
                on(&event, &open)?;
                if matches!(event, Xml::Start(_)) {
                    open.push(name);
                }
            }
            Xml::End(_) => {
                open.pop();
                on(&event, &open)?;
            }
            Xml::Text(t) if open.is_empty() => {
                if !t.iter().all(u8::is_ascii_whitespace) {
                    return Err(malformed("text outside the root element".into()));
                }
            }
            _ => on(&event, &open)?,
        }
    }
    if let Some(name) = open.last() {
        return Err(malformed(format!(
            "the file ends inside <{name}> (cut short?)"
        )));
    }
    if roots == 0 {
        return Err(malformed("no <testsuites> or <testsuite> element".into()));
    }
    Ok(())
}

/// Counts and failed cases of a report read from `source`.
/// A test case's name as summaries give it: `classname::name` (or `name`
/// without a class), at most [`MAX_NAME_CHARS`] characters.
fn case_name(e: &BytesStart) -> String {
    let class = attr(e, b"classname").unwrap_or_default();
    let name = attr(e, b"name").unwrap_or_default();
    let full = if class.is_empty() {
        name
    } else {
        format!("{class}::{name}")
    };
    full.chars().take(MAX_NAME_CHARS).collect()
}

fn summarize_reader(source: impl Read + 'static, label: &str) -> Result<JunitSummary, JunitError> {
    let mut summary = JunitSummary::default();
    let mut case: Option<(String, CaseOutcome)> = None;
    // Counts the outermost suites' attributes claim, when they all say.
    let mut declared = Some(TestCounts::default());
    let mut root_declared: Option<TestCounts> = None;
    walk(source, label, |event, open| {
        let in_suite = open.iter().any(|n| n == "testsuite");
        match event {
            Xml::Start(e) | Xml::Empty(e) => match e.name().as_ref() {
                b"testsuites" if open.is_empty() => {
                    root_declared = declared_counts(e);
                }
                b"testsuite" if !in_suite => {
                    declared = match (declared, declared_counts(e)) {
                        (Some(mut sum), Some(c)) => {
                            sum.add(&c);
                            Some(sum)
                        }
                        _ => None,
                    };
                }
                b"testcase" if case.is_none() => {
                    let full = case_name(e);
                    if matches!(event, Xml::Empty(_)) {
                        CaseOutcome::Passed.add_to(&mut summary.counts);
                    } else {
                        case = Some((full, CaseOutcome::Passed));
                    }
                }
                child => {
                    if let Some((_, outcome @ CaseOutcome::Passed)) = &mut case {
                        *outcome = match child {
                            b"failure" => CaseOutcome::Failed,
                            b"error" => CaseOutcome::Errored,
                            b"skipped" => CaseOutcome::Skipped,
                            _ => CaseOutcome::Passed,
                        };
                    }
                }
            },
            Xml::End(e)
                if e.name().as_ref() == b"testcase" && !open.iter().any(|n| n == "testcase") =>
            {
                if let Some((name, outcome)) = case.take() {
                    outcome.add_to(&mut summary.counts);
                    if matches!(outcome, CaseOutcome::Failed | CaseOutcome::Errored)
                        && summary.failed.len() < MAX_FAILED_NAMES
                    {
                        summary.failed.push(name);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    let claimed = root_declared.or(declared);
    if let Some(claimed) = claimed {
        if claimed != summary.counts {
            summary.warning = Some(format!(
                "{label}: its attributes say {}, its test cases say {}; counted from the test cases",
                describe(&claimed),
                describe(&summary.counts)
            ));
        }
    }
    Ok(summary)
}

/// `tests`/`failures`/`errors`/`skipped` of a suite, when `tests` is given.
fn declared_counts(e: &BytesStart) -> Option<TestCounts> {
    Some(TestCounts {
        tests: number(e, b"tests")?,
        failures: number(e, b"failures").unwrap_or(0),
        errors: number(e, b"errors").unwrap_or(0),
        skipped: number(e, b"skipped")
            .or_else(|| number(e, b"disabled"))
            .unwrap_or(0),
    })
}

fn describe(c: &TestCounts) -> String {
    format!(
        "{} tests, {} failures, {} errors, {} skipped",
        c.tests, c.failures, c.errors, c.skipped
    )
}

/// Reads a JUnit XML text and counts its test cases.
pub fn summarize(xml: &str, label: &str) -> Result<JunitSummary, JunitError> {
    summarize_reader(std::io::Cursor::new(xml.as_bytes().to_vec()), label)
}

/// Reads and summarizes a JUnit XML file (streamed: any size).
pub fn summarize_file(path: &Path) -> Result<JunitSummary, JunitError> {
    let label = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| JunitError::Io {
        path: label.clone(),
        source,
    })?;
    summarize_reader(file, &label)
}

// ------------------------------------------------------------------ merging

/// What [`merge_files`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Merged {
    /// Counts of every report merged.
    pub total: TestCounts,
    /// Reports left out, with why.
    pub skipped: Vec<String>,
}

/// Characters XML 1.0 forbids even escaped, written as `#xNN` (as pytest does).
fn xml_text(text: &str) -> std::borrow::Cow<'_, str> {
    let allowed = |c: char| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..);
    if text.chars().all(allowed) {
        return text.into();
    }
    text.chars()
        .map(|c| {
            if allowed(c) {
                c.to_string()
            } else {
                format!("#x{:02X}", c as u32)
            }
        })
        .collect::<String>()
        .into()
}

/// A start tag re-built from decoded, checked parts; `counts` replaces the
/// count attributes, `name` the `name` attribute.
fn rebuilt(
    e: &BytesStart,
    element: &str,
    name: Option<&str>,
    counts: Option<&TestCounts>,
) -> Result<BytesStart<'static>, String> {
    let mut out = BytesStart::new(element.to_string());
    let mut seen = std::collections::HashSet::new();
    if let Some(name) = name {
        out.push_attribute(("name", xml_text(name).as_ref()));
        seen.insert("name".to_string());
    }
    if let Some(c) = counts {
        for (k, v) in [
            ("tests", c.tests),
            ("failures", c.failures),
            ("errors", c.errors),
            ("skipped", c.skipped),
        ] {
            out.push_attribute((k, v.to_string().as_str()));
            seen.insert(k.to_string());
        }
    }
    for a in e.attributes().with_checks(false).flatten() {
        let key = xml_name(a.key.as_ref()).ok_or_else(|| {
            format!(
                "invalid attribute name {:?}",
                String::from_utf8_lossy(a.key.as_ref())
            )
        })?;
        // Duplicates would not be well-formed; count attributes are replaced.
        if counts.is_some() && key == "disabled" || !seen.insert(key.to_string()) {
            continue;
        }
        out.push_attribute((key, xml_text(&attr_value(&a)).as_ref()));
    }
    Ok(out)
}

/// Where an output suite (a run of direct children of one input suite,
/// between its nested suites) starts, for both passes to agree on.
#[derive(Default)]
struct Groups {
    /// Per output suite: its name and counts, in document order.
    suites: Vec<(String, TestCounts)>,
}

/// Walks one report and calls `emit` with each event to copy, framed by
/// `Open(name)`/`Close` of flattened output suites. Both passes use it.
enum Out<'e, 'a> {
    Open(&'e str),
    Event(&'e Xml<'a>),
    Close,
}

fn flatten(
    path: &Path,
    prefix: &str,
    mut emit: impl FnMut(Out) -> Result<(), JunitError>,
) -> Result<(), JunitError> {
    let label = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| JunitError::Io {
        path: label.clone(),
        source,
    })?;
    // Names of the open input suites (outermost first), and whether an
    // output suite is open, and the depth of elements inside a group.
    let mut suites: Vec<String> = Vec::new();
    let mut group_open = false;
    let mut inner_depth = 0usize;
    walk(file, &label, |event, _open| {
        match event {
            Xml::Start(e) | Xml::Empty(e)
                if inner_depth == 0 && e.name().as_ref() == b"testsuite" =>
            {
                if group_open {
                    emit(Out::Close)?;
                    group_open = false;
                }
                if matches!(event, Xml::Start(_)) {
                    suites.push(attr(e, b"name").unwrap_or_default());
                }
            }
            Xml::End(e) if inner_depth == 0 && e.name().as_ref() == b"testsuite" => {
                if group_open {
                    emit(Out::Close)?;
                    group_open = false;
                }
                suites.pop();
            }
            Xml::Start(e) | Xml::Empty(e)
                if inner_depth == 0 && e.name().as_ref() == b"testsuites" => {}
            Xml::End(e) if inner_depth == 0 && e.name().as_ref() == b"testsuites" => {
                // The root: the last group ends with it (or at the end of the report).
                let close = std::mem::take(&mut group_open);
                if close {
                    emit(Out::Close)?;
                }
            }
            Xml::Start(_) | Xml::Empty(_) => {
                if !group_open {
                    let mut name = prefix.to_string();
                    for s in suites.iter().filter(|s| !s.is_empty() && *s != "pytest") {
                        name.push('/');
                        name.push_str(s);
                    }
                    emit(Out::Open(&name))?;
                    group_open = true;
                }
                if matches!(event, Xml::Start(_)) {
                    inner_depth += 1;
                }
                emit(Out::Event(event))?;
            }
            Xml::End(_) => {
                inner_depth = inner_depth.saturating_sub(1);
                emit(Out::Event(event))?;
            }
            Xml::Text(_) | Xml::CData(_) if inner_depth > 0 => emit(Out::Event(event))?,
            // Whitespace between suites, comments, PIs, the declaration and
            // any DOCTYPE are not copied.
            _ => {}
        }
        Ok(())
    })?;
    if group_open {
        emit(Out::Close)?;
    }
    Ok(())
}

/// Pass 1: the output suites of a report and their counts.
fn plan(path: &Path, prefix: &str) -> Result<Groups, JunitError> {
    let mut groups = Groups::default();
    let mut case: Option<CaseOutcome> = None;
    let mut depth = 0usize;
    flatten(path, prefix, |out| {
        match out {
            Out::Open(name) => groups
                .suites
                .push((name.to_string(), TestCounts::default())),
            Out::Close => {}
            Out::Event(event) => {
                let counts = &mut groups.suites.last_mut().expect("inside a group").1;
                match event {
                    Xml::Start(e) | Xml::Empty(e)
                        if depth == 0 && e.name().as_ref() == b"testcase" =>
                    {
                        if matches!(event, Xml::Empty(_)) {
                            CaseOutcome::Passed.add_to(counts);
                        } else {
                            case = Some(CaseOutcome::Passed);
                        }
                    }
                    Xml::Start(e) | Xml::Empty(e) if depth == 1 => {
                        if let Some(outcome @ CaseOutcome::Passed) = &mut case {
                            *outcome = match e.name().as_ref() {
                                b"failure" => CaseOutcome::Failed,
                                b"error" => CaseOutcome::Errored,
                                b"skipped" => CaseOutcome::Skipped,
                                _ => CaseOutcome::Passed,
                            };
                        }
                    }
                    Xml::End(e) if depth == 1 && e.name().as_ref() == b"testcase" => {
                        if let Some(outcome) = case.take() {
                            outcome.add_to(counts);
                        }
                    }
                    _ => {}
                }
                match event {
                    Xml::Start(_) => depth += 1,
                    Xml::End(_) => depth = depth.saturating_sub(1),
                    _ => {}
                }
            }
        }
        Ok(())
    })?;
    Ok(groups)
}

fn write_error(e: impl std::fmt::Display) -> JunitError {
    JunitError::Malformed {
        path: "merged report".to_string(),
        message: e.to_string(),
    }
}

/// Merges the reports `(suite prefix, file)` into one `<testsuites>`
/// document written to `out`: each report's test cases under suites named
/// `prefix` (or `prefix/<suite name>` for named, nested suites other than
/// pytest's default), with counts from the cases. A report that cannot be
/// read is left out and named in [`Merged::skipped`] (and in a comment of
/// the merged file). Memory is bounded as for reading (two streamed passes
/// per report).
pub fn merge_files<'a>(
    reports: impl IntoIterator<Item = (&'a str, &'a Path)>,
    out: &Path,
) -> Result<Merged, JunitError> {
    merge_reports(
        reports.into_iter().map(|(prefix, path)| Report {
            reused_from: None,
            prefix,
            path,
            flaky: &[],
        }),
        out,
    )
}

/// One report to merge: see [`merge_reports`].
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    /// The suite prefix (`tier/step`).
    pub prefix: &'a str,
    /// The JUnit file.
    pub path: &'a Path,
    /// Test cases (`classname::name`, as [`JunitSummary::failed`] names
    /// them) that failed in an earlier attempt of the step and passed in the
    /// one this report comes from: each gets a `<flakyFailure>` element, as
    /// Maven Surefire marks a test that passed on a rerun (read by Jenkins,
    /// GitLab and most JUnit viewers as a passed, flaky test).
    pub flaky: &'a [String],
    /// The run the report was replayed from, when the step's result was
    /// reused: each of its suites gets a `<properties>` element first with
    /// `<property name="drydock.reused_from" value="RUN"/>` (the JUnit
    /// schema's place for facts about a suite).
    pub reused_from: Option<&'a str>,
}

/// The name of the JUnit property marking a reused result.
pub const REUSED_PROPERTY: &str = "drydock.reused_from";

/// The `message` of the `<flakyFailure>` added to a flaky test case.
pub const FLAKY_TEST_MESSAGE: &str = "failed in an earlier attempt of its step, passed on a retry";

/// [`merge_files`], marking the flaky test cases of each report (see
/// [`Report::flaky`]); they stay passed in the counts.
pub fn merge_reports<'a>(
    reports: impl IntoIterator<Item = Report<'a>>,
    out: &Path,
) -> Result<Merged, JunitError> {
    let mut merged = Merged::default();
    let mut plans = Vec::new();
    for Report {
        prefix,
        path,
        flaky,
        reused_from,
    } in reports
    {
        match plan(path, prefix) {
            Ok(groups) => {
                for (_, c) in &groups.suites {
                    merged.total.add(c);
                }
                plans.push((prefix, path, flaky, reused_from, groups));
            }
            Err(e) => merged.skipped.push(format!("{prefix}: {e}")),
        }
    }
    let file = std::fs::File::create(out).map_err(|source| JunitError::Io {
        path: out.display().to_string(),
        source,
    })?;
    let mut w = Writer::new_with_indent(std::io::BufWriter::new(file), b' ', 2);
    w.write_event(Xml::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))
        .map_err(write_error)?;
    let mut root = BytesStart::new("testsuites");
    root.push_attribute(("name", "drydock"));
    for (k, v) in [
        ("tests", merged.total.tests),
        ("failures", merged.total.failures),
        ("errors", merged.total.errors),
        ("skipped", merged.total.skipped),
    ] {
        root.push_attribute((k, v.to_string().as_str()));
    }
    w.write_event(Xml::Start(root)).map_err(write_error)?;
    for note in &merged.skipped {
        // A comment may not hold `--`.
        let text = format!(
            " drydock: left out: {} ",
            xml_text(note).replace("--", "- -")
        );
        w.write_event(Xml::Comment(BytesText::from_escaped(
            text.trim_end_matches('-'),
        )))
        .map_err(write_error)?;
    }
    for (prefix, path, flaky, reused_from, groups) in plans {
        let mut next = groups.suites.iter();
        // Elements written for this report and still open: closed if the
        // report turns out unreadable in this pass (it changed on disk), so
        // that the merged file stays well-formed.
        let mut written: Vec<String> = Vec::new();
        // Whether the open test case is one of `flaky`.
        let mut flaky_case = false;
        let is_flaky = |e: &BytesStart| {
            if flaky.is_empty() {
                return false;
            }
            flaky.contains(&case_name(e))
        };
        let flaky_mark = |w: &mut Writer<_>| {
            let mut mark = BytesStart::new("flakyFailure");
            mark.push_attribute(("message", FLAKY_TEST_MESSAGE));
            w.write_event(Xml::Empty(mark)).map_err(write_error)
        };
        let result = flatten(path, prefix, |o| {
            match o {
                Out::Open(_) => {
                    let (name, counts) = next
                        .next()
                        .ok_or_else(|| write_error("the report changed while merging"))?;
                    let start = rebuilt(
                        &BytesStart::new("testsuite"),
                        "testsuite",
                        Some(name),
                        Some(counts),
                    )
                    .map_err(write_error)?;
                    w.write_event(Xml::Start(start)).map_err(write_error)?;
                    written.push("testsuite".to_string());
                    if let Some(run) = reused_from {
                        w.write_event(Xml::Start(BytesStart::new("properties")))
                            .map_err(write_error)?;
                        let mut property = BytesStart::new("property");
                        property.push_attribute(("name", REUSED_PROPERTY));
                        property.push_attribute(("value", xml_text(run).as_ref()));
                        w.write_event(Xml::Empty(property)).map_err(write_error)?;
                        w.write_event(Xml::End(BytesEnd::new("properties")))
                            .map_err(write_error)?;
                    }
                }
                Out::Close => {
                    w.write_event(Xml::End(BytesEnd::new("testsuite")))
                        .map_err(write_error)?;
                    written.pop();
                }
                Out::Event(event) => match event {
                    Xml::Start(e) | Xml::Empty(e) => {
                        let name = xml_name(e.name().as_ref()).unwrap_or("invalid").to_string();
                        let start = rebuilt(e, &name, None, None).map_err(write_error)?;
                        let case = name == "testcase"
                            && written.last().map(String::as_str) == Some("testsuite");
                        if matches!(event, Xml::Start(_)) {
                            w.write_event(Xml::Start(start)).map_err(write_error)?;
                            if case {
                                flaky_case = is_flaky(e);
                            }
                            written.push(name);
                        } else if case && is_flaky(e) {
                            // `<testcase/>` becomes `<testcase><flakyFailure/></testcase>`.
                            w.write_event(Xml::Start(start)).map_err(write_error)?;
                            flaky_mark(&mut w)?;
                            w.write_event(Xml::End(BytesEnd::new("testcase")))
                                .map_err(write_error)?;
                        } else {
                            w.write_event(Xml::Empty(start)).map_err(write_error)?;
                        }
                    }
                    Xml::End(_) => {
                        if let Some(name) = written.pop() {
                            if name == "testcase"
                                && written.last().map(String::as_str) == Some("testsuite")
                                && std::mem::take(&mut flaky_case)
                            {
                                flaky_mark(&mut w)?;
                            }
                            w.write_event(Xml::End(BytesEnd::new(name)))
                                .map_err(write_error)?;
                        }
                    }
                    Xml::Text(t) => {
                        let text = match t.unescape() {
                            Ok(s) => s.into_owned(),
                            Err(_) => String::from_utf8_lossy(t).into_owned(),
                        };
                        w.write_event(Xml::Text(BytesText::new(&xml_text(&text))))
                            .map_err(write_error)?;
                    }
                    Xml::CData(c) => {
                        let text = String::from_utf8_lossy(c).into_owned();
                        w.write_event(Xml::CData(BytesCData::new(xml_text(&text).into_owned())))
                            .map_err(write_error)?;
                    }
                    _ => {}
                },
            }
            Ok(())
        });
        if let Err(e) = result {
            while let Some(name) = written.pop() {
                w.write_event(Xml::End(BytesEnd::new(name)))
                    .map_err(write_error)?;
            }
            merged.skipped.push(format!("{prefix}: {e}"));
        }
    }
    w.write_event(Xml::End(BytesEnd::new("testsuites")))
        .map_err(write_error)?;
    w.get_mut()
        .write_all(b"\n")
        .and_then(|_| w.get_mut().flush())
        .map_err(|source| JunitError::Io {
            path: out.display().to_string(),
            source,
        })?;
    Ok(merged)
}

// ------------------------------------------------------- steps as test cases

/// How a step without its own JUnit report reads as a test case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseKind {
    /// `<testcase/>`.
    Passed,
    /// Passed on a retry (`retry:`): `<testcase>` with a `<flakyFailure>`
    /// (Maven Surefire's form for a test that passed on a rerun); counted
    /// as passed.
    Flaky,
    /// `<failure>`: it failed or timed out.
    Failed,
    /// `<error>`: it could not run (engine, image, environment).
    Errored,
    /// `<skipped>`: it did not run (or was interrupted).
    Skipped,
}

/// A step that wrote no JUnit report of its own (a linter, a build, a
/// check), or that was skipped: one test case in the merged report, so that
/// a run failed by flake8 does not claim "0 tests, 0 failures".
#[derive(Debug, Clone, PartialEq)]
pub struct StepCase {
    /// The case's `classname`: the tier.
    pub tier: String,
    /// The case's `name`: the step.
    pub step: String,
    /// How it ended.
    pub kind: CaseKind,
    /// Wall time, in seconds.
    pub seconds: f64,
    /// The `message` attribute: why it failed or was skipped.
    pub message: Option<String>,
    /// The element's text: the step's last lines of output.
    pub text: String,
    /// The run its result was replayed from, when it was reused: the case
    /// gets a `<system-out>` saying so.
    pub reused_from: Option<String>,
}

/// Writes `cases` as one `<testsuite name="…">` document (the form
/// [`merge_files`] reads), counts from the cases.
pub fn write_step_cases(suite: &str, cases: &[StepCase], out: &Path) -> Result<(), JunitError> {
    let io = |source| JunitError::Io {
        path: out.display().to_string(),
        source,
    };
    let file = std::fs::File::create(out).map_err(io)?;
    let mut w = Writer::new_with_indent(std::io::BufWriter::new(file), b' ', 2);
    let mut counts = TestCounts::default();
    for case in cases {
        match case.kind {
            CaseKind::Passed | CaseKind::Flaky => CaseOutcome::Passed,
            CaseKind::Failed => CaseOutcome::Failed,
            CaseKind::Errored => CaseOutcome::Errored,
            CaseKind::Skipped => CaseOutcome::Skipped,
        }
        .add_to(&mut counts);
    }
    w.write_event(Xml::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))
        .map_err(write_error)?;
    let mut root = BytesStart::new("testsuite");
    root.push_attribute(("name", xml_text(suite).as_ref()));
    for (k, v) in [
        ("tests", counts.tests),
        ("failures", counts.failures),
        ("errors", counts.errors),
        ("skipped", counts.skipped),
    ] {
        root.push_attribute((k, v.to_string().as_str()));
    }
    w.write_event(Xml::Start(root)).map_err(write_error)?;
    for case in cases {
        let mut start = BytesStart::new("testcase");
        start.push_attribute(("classname", xml_text(&case.tier).as_ref()));
        start.push_attribute(("name", xml_text(&case.step).as_ref()));
        start.push_attribute(("time", format!("{:.3}", case.seconds).as_str()));
        let element = match case.kind {
            CaseKind::Passed => None,
            CaseKind::Flaky => Some("flakyFailure"),
            CaseKind::Failed => Some("failure"),
            CaseKind::Errored => Some("error"),
            CaseKind::Skipped => Some("skipped"),
        };
        let reused = |w: &mut Writer<_>| -> Result<(), JunitError> {
            if let Some(run) = &case.reused_from {
                w.write_event(Xml::Start(BytesStart::new("system-out")))
                    .map_err(write_error)?;
                let note = format!("drydock: reused from run {run}");
                w.write_event(Xml::Text(BytesText::new(&xml_text(&note))))
                    .map_err(write_error)?;
                w.write_event(Xml::End(BytesEnd::new("system-out")))
                    .map_err(write_error)?;
            }
            Ok(())
        };
        let Some(element) = element else {
            if case.reused_from.is_some() {
                w.write_event(Xml::Start(start)).map_err(write_error)?;
                reused(&mut w)?;
                w.write_event(Xml::End(BytesEnd::new("testcase")))
                    .map_err(write_error)?;
            } else {
                w.write_event(Xml::Empty(start)).map_err(write_error)?;
            }
            continue;
        };
        w.write_event(Xml::Start(start)).map_err(write_error)?;
        let mut inner = BytesStart::new(element);
        if let Some(message) = &case.message {
            inner.push_attribute(("message", xml_text(message).as_ref()));
        }
        if case.text.is_empty() {
            w.write_event(Xml::Empty(inner)).map_err(write_error)?;
        } else {
            w.write_event(Xml::Start(inner)).map_err(write_error)?;
            w.write_event(Xml::Text(BytesText::new(&xml_text(&case.text))))
                .map_err(write_error)?;
            w.write_event(Xml::End(BytesEnd::new(element)))
                .map_err(write_error)?;
        }
        reused(&mut w)?;
        w.write_event(Xml::End(BytesEnd::new("testcase")))
            .map_err(write_error)?;
    }
    w.write_event(Xml::End(BytesEnd::new("testsuite")))
        .map_err(write_error)?;
    w.get_mut()
        .write_all(b"\n")
        .and_then(|_| w.get_mut().flush())
        .map_err(io)
}

#[cfg(test)]
mod tests;
