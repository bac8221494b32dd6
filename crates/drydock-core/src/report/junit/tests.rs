use super::*;

const PYTEST: &str = r#"<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest" errors="0" failures="1" skipped="1" tests="3" time="0.1"><testcase classname="tests.unit.test_a" name="test_ok" time="0.01"/><testcase classname="tests.unit.test_a" name="test_bad" time="0.01"><failure message="assert 1 == 2">trace</failure></testcase><testcase classname="tests.unit.test_a" name="test_skip"><skipped message="x"/></testcase></testsuite></testsuites>"#;

/// An outer suite wrapping an inner one with the same cases, both with
/// counts (as some Gradle and Go tools write): 3 tests, 1 failure.
const NESTED: &str = r#"<testsuites><testsuite name="outer" tests="3" failures="1"><testsuite name="inner" tests="3" failures="1"><testcase classname="a" name="one"/><testcase classname="a" name="two"><failure>boom</failure></testcase><testcase classname="a" name="three"/></testsuite></testsuite></testsuites>"#;

fn counts(tests: u64, failures: u64, errors: u64, skipped: u64) -> TestCounts {
    TestCounts {
        tests,
        failures,
        errors,
        skipped,
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Parses with a strict, independent XML parser.
fn well_formed(xml: &str) -> roxmltree::Document<'_> {
    roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("not well-formed: {e}\n{xml}"))
}

fn merge_to_string(reports: &[(&str, &Path)]) -> (String, Merged) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("junit.xml");
    let merged = merge_files(reports.iter().copied(), &out).unwrap();
    (std::fs::read_to_string(out).unwrap(), merged)
}

#[test]
fn pytest_reports_are_counted_with_failed_cases_named() {
    let summary = summarize(PYTEST, "r.xml").unwrap();
    assert_eq!(summary.counts, counts(3, 1, 0, 1));
    assert_eq!(summary.counts.passed(), 1);
    assert_eq!(summary.failed, vec!["tests.unit.test_a::test_bad"]);
    assert_eq!(summary.warning, None);
}

#[test]
fn counts_come_from_the_cases_whatever_the_attributes_say() {
    let summary = summarize(NESTED, "nested.xml").unwrap();
    assert_eq!(summary.counts, counts(3, 1, 0, 0));
    assert_eq!(
        summary.warning, None,
        "the outer suite's attributes are right"
    );
    let lying = r#"<testsuite tests="10" failures="0"><testcase name="a"><error/></testcase><testcase name="b"/></testsuite>"#;
    let summary = summarize(lying, "lying.xml").unwrap();
    assert_eq!(summary.counts, counts(2, 0, 1, 0));
    assert!(
        summary
            .warning
            .as_deref()
            .unwrap()
            .contains("attributes say 10 tests"),
        "{summary:?}"
    );
    let bare = r#"<testsuite><testcase name="a"><skipped/></testcase><testcase name="b"><failure/></testcase></testsuite>"#;
    assert_eq!(summarize(bare, "b").unwrap().counts, counts(2, 1, 0, 1));
}

#[test]
fn unreadable_reports_are_errors_naming_the_file() {
    let cases = [
        (
            "<testsuite><testcase></testsuite>",
            "bad.xml: not a JUnit XML report",
        ),
        ("garbage, not xml", "text outside the root element"),
        ("<html><body/></html>", "the root element is <html>"),
        ("<testsuite><testcase name='a'>", "ends inside <testcase>"),
        ("", "no <testsuites> or <testsuite> element"),
        ("<testsuite/><testsuite/>", "more than one root element"),
        ("\u{0}\u{1}\u{2}binary", "text outside the root element"),
    ];
    for (xml, want) in cases {
        let err = summarize(xml, "bad.xml").unwrap_err().to_string();
        assert!(err.contains(want), "{xml:?}: {err}");
    }
}

#[test]
fn encodings_are_read_from_the_bom_and_the_declaration() {
    let text = "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><testsuite><testcase classname=\"caf\u{e9}\" name=\"t\"><failure/></testcase></testsuite>";
    let latin1: Vec<u8> = text.chars().map(|c| c as u32 as u8).collect();
    let utf16: Vec<u8> = "\u{feff}<testsuite><testcase classname=\"caf\u{e9}\" name=\"t\"><failure/></testcase></testsuite>"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let bom8 = [b"\xef\xbb\xbf".as_slice(), PYTEST.as_bytes()].concat();
    for (name, bytes) in [("latin1", latin1), ("utf16", utf16)] {
        let s = summarize_reader(std::io::Cursor::new(bytes), name).unwrap();
        assert_eq!(s.failed, vec!["caf\u{e9}::t"], "{name}");
    }
    let s = summarize_reader(std::io::Cursor::new(bom8), "bom").unwrap();
    assert_eq!(s.counts.tests, 3);
    // Invalid UTF-8 in output is replaced, not fatal.
    let s = summarize_reader(
        std::io::Cursor::new(b"<testsuite><testcase name=\"\xff\"/></testsuite>".to_vec()),
        "x",
    )
    .unwrap();
    assert_eq!(s.counts.tests, 1);
}

#[test]
fn entities_are_never_expanded() {
    let mut lol = String::from("<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">");
    for i in 1..10 {
        let prev = if i == 1 {
            "lol".to_string()
        } else {
            format!("lol{}", i - 1)
        };
        lol.push_str(&format!(
            "<!ENTITY lol{i} \"{}\">",
            format!("&{prev};").repeat(10)
        ));
    }
    lol.push_str("<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>");
    lol.push_str("<testsuite><testcase name=\"&lol9;\"><failure>&xxe;&lol9;</failure></testcase></testsuite>");
    let started = std::time::Instant::now();
    let s = summarize(&lol, "lol.xml").unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    assert_eq!(s.counts, counts(1, 1, 0, 0));
    assert_eq!(s.failed, vec!["&lol9;"]);
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "lol.xml", lol.as_bytes());
    let (xml, _) = merge_to_string(&[("t/s", &path)]);
    let doc = well_formed(&xml);
    assert!(!xml.contains("root:"), "no file was read: {xml}");
    assert!(xml.contains("&amp;xxe;"), "{xml}");
    assert_eq!(
        doc.descendants()
            .filter(|n| n.has_tag_name("testcase"))
            .count(),
        1
    );
}

#[test]
fn huge_reports_are_streamed_and_huge_events_refused() {
    let dir = tempfile::tempdir().unwrap();
    // 200,000 cases, 12 MB: counted in a streaming pass.
    let mut big = String::from("<testsuite>");
    for i in 0..200_000 {
        big.push_str(&format!("<testcase name=\"t{i}\"/>\n"));
    }
    big.push_str("</testsuite>");
    let path = write(dir.path(), "big.xml", big.as_bytes());
    assert_eq!(summarize_file(&path).unwrap().counts.tests, 200_000);
    // One text of 17 MiB (a captured output): refused, not held.
    let mut huge = b"<testsuite><testcase name=\"a\"><system-out>".to_vec();
    huge.extend(std::iter::repeat_n(b'x', MAX_EVENT_BYTES + (1 << 20)));
    huge.extend(b"</system-out></testcase></testsuite>");
    let path = write(dir.path(), "huge.xml", &huge);
    let err = summarize_file(&path).unwrap_err().to_string();
    assert!(err.contains("larger than 16 MiB"), "{err}");
    // A comment full of `<` and `>` is bounded too.
    let mut comment = b"<testsuite><!--".to_vec();
    comment.extend(b"<a>".repeat(MAX_EVENT_BYTES / 3 + 10));
    comment.extend(b"--></testsuite>");
    let path = write(dir.path(), "comment.xml", &comment);
    assert!(summarize_file(&path)
        .unwrap_err()
        .to_string()
        .contains("larger than"));
    // So is an attribute full of `>`.
    let mut attr = b"<testsuite name=\"".to_vec();
    attr.extend(std::iter::repeat_n(b'>', MAX_EVENT_BYTES + 10));
    attr.extend(b"\"/>");
    let path = write(dir.path(), "attr.xml", &attr);
    assert!(summarize_file(&path)
        .unwrap_err()
        .to_string()
        .contains("larger than"));
    let deep = format!("<testsuite>{}", "<a>".repeat(MAX_DEPTH + 1));
    assert!(summarize(&deep, "d")
        .unwrap_err()
        .to_string()
        .contains("nested deeper"));
}

#[test]
fn merging_flattens_nested_suites_and_stays_well_formed() {
    let dir = tempfile::tempdir().unwrap();
    let pytest = write(dir.path(), "pytest.xml", PYTEST.as_bytes());
    let nested = write(dir.path(), "nested.xml", NESTED.as_bytes());
    let nasty = write(
        dir.path(),
        "nasty.xml",
        "<testsuite name=\"a&amp;b\"><testcase name=\"esc\x1b[31m\" classname=\"&quot;q&quot;\"><failure message=\"x &lt; y\">\x1b[31mred\x1b[0m &undefined; <![CDATA[raw <data> ]]></failure><system-out>\u{0}nul</system-out></testcase></testsuite>".as_bytes(),
    );
    let garbage = write(dir.path(), "garbage.xml", b"not a report");
    let (xml, merged) = merge_to_string(&[
        ("unit/unit", &pytest),
        ("it/nested", &nested),
        ("it/nasty", &nasty),
        ("it/garbage", &garbage),
    ]);
    assert!(
        xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
        "{xml}"
    );
    let doc = well_formed(&xml);
    assert_eq!(merged.total, counts(7, 3, 0, 1));
    assert_eq!(merged.skipped.len(), 1, "{merged:?}");
    assert!(merged.skipped[0].starts_with("it/garbage: "), "{merged:?}");
    let root = doc.root_element();
    assert_eq!(root.attribute("tests"), Some("7"));
    assert_eq!(root.attribute("failures"), Some("3"));
    // Suites never nest in the merged report, and their counts add up.
    let suites: Vec<_> = root
        .children()
        .filter(|n| n.has_tag_name("testsuite"))
        .collect();
    let names: Vec<_> = suites
        .iter()
        .map(|s| s.attribute("name").unwrap())
        .collect();
    assert_eq!(
        names,
        ["unit/unit", "it/nested/outer/inner", "it/nasty/a&b"]
    );
    let sum: u64 = suites
        .iter()
        .map(|s| s.attribute("tests").unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(sum, 7);
    assert!(doc
        .descendants()
        .all(|n| !n.has_tag_name("testsuite") || n.parent().unwrap().has_tag_name("testsuites")));
    // Its own counts agree with its cases (no warning when read back).
    let back = summarize(&xml, "merged").unwrap();
    assert_eq!(back.counts, merged.total);
    assert_eq!(back.warning, None);
    assert!(xml.contains("#x1B[31mred"), "{xml}");
    // A report cut mid-way between the passes is closed, not left open.
    let (xml, merged) = merge_to_string(&[]);
    well_formed(&xml);
    assert_eq!(merged.total, TestCounts::default());
}

#[test]
fn xml_names_are_checked() {
    assert_eq!(xml_name(b"testcase"), Some("testcase"));
    assert_eq!(xml_name(b"ns:a-b.c_d"), Some("ns:a-b.c_d"));
    assert_eq!(xml_name(b"1a"), None);
    assert_eq!(xml_name(b"a\"b"), None);
    assert_eq!(xml_name(b""), None);
}
