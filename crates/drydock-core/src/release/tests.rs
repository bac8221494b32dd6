//! Unit tests of the release ledger, each on its own SQLite file in a tempdir.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;

/// A fresh ledger in a new temporary directory (kept alive by the returned
/// guard).
fn fresh() -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&dir.path().join("state/ledger.sqlite")).unwrap();
    (dir, ledger)
}

/// The image id of the image labelled `label` in these tests.
fn image(label: &str) -> String {
    format!(
        "sha256:{}",
        label.to_lowercase().repeat(64 / label.len().max(1))
    )
}

/// The git sha of the image labelled `label`: the lowercase label repeated,
/// then zeros.
fn sha(label: &str) -> String {
    format!("{:0<40}", label.to_lowercase().repeat(8))
}

/// The run id of the image labelled `label`.
fn run(label: &str) -> String {
    format!("run-{label}")
}

/// The product of these tests.
const SHOP: &str = "registry.example/shop";

/// A release of image `label` to `channel`.
fn release(channel: &str, label: &str) -> NewEntry {
    NewEntry::release(
        channel,
        SHOP,
        image(label),
        Some(sha(label)),
        Some(run(label)),
    )
}

/// The label of the image an entry points to (inverse of [`image`]).
fn label_of(entry: &Entry) -> String {
    let hex = entry.image_id.trim_start_matches("sha256:");
    hex[..1].to_uppercase()
}

#[test]
fn record_current_history_channels_round_trip() {
    let (_dir, mut ledger) = fresh();
    assert_eq!(ledger.current(SHOP, "staging").unwrap(), None);
    assert!(ledger.history(SHOP, "staging").unwrap().is_empty());
    assert!(ledger.channels().unwrap().is_empty());

    let a = ledger.record(release("staging", "A")).unwrap();
    let b = ledger.record(release("staging", "B")).unwrap();
    let p = ledger
        .record(NewEntry::promote(
            &a,
            "production",
            Some("soaked a week".into()),
        ))
        .unwrap();

    assert_eq!(a.channel, "staging");
    assert_eq!(a.name, "registry.example/shop");
    assert_eq!(a.image_id, image("A"));
    assert_eq!(a.git_sha.as_deref(), Some(sha("A").as_str()));
    assert_eq!(a.run_id.as_deref(), Some("run-A"));
    assert_eq!(a.action, Action::Release);
    assert_eq!(a.restores, None);
    assert!(
        chrono::DateTime::parse_from_rfc3339(&a.at).is_ok(),
        "{}",
        a.at
    );
    assert!(a.id < b.id && b.id < p.id);

    assert_eq!(p.action, Action::Promote);
    assert_eq!(p.image_id, a.image_id);
    assert_eq!(p.git_sha, a.git_sha);
    assert_eq!(p.reason.as_deref(), Some("soaked a week"));

    assert_eq!(ledger.current(SHOP, "staging").unwrap(), Some(b.clone()));
    assert_eq!(ledger.current(SHOP, "production").unwrap(), Some(p.clone()));
    assert_eq!(ledger.history(SHOP, "staging").unwrap(), vec![a.clone(), b]);
    assert_eq!(ledger.history(SHOP, "production").unwrap(), vec![p]);
    assert_eq!(ledger.entry(a.id).unwrap(), Some(a));
    assert_eq!(ledger.entry(9999).unwrap(), None);
    assert_eq!(
        ledger.channels().unwrap(),
        vec![
            ChannelRef::new(SHOP, "production"),
            ChannelRef::new(SHOP, "staging")
        ]
    );
    assert_eq!(ledger.products_of("staging").unwrap(), vec![SHOP]);
    assert!(ledger.products_of("dev").unwrap().is_empty());
}

#[test]
fn history_serializes_to_json_with_every_field() {
    let (_dir, mut ledger) = fresh();
    ledger.record(release("staging", "A")).unwrap();
    ledger.record(release("staging", "B")).unwrap();
    let target = ledger.rollback_target(SHOP, "staging", None).unwrap();
    ledger
        .record(NewEntry::rollback(&target, Some("B broke checkout".into())))
        .unwrap();
    let entries = ledger.history(SHOP, "staging").unwrap();

    let json = serde_json::to_string(&entries).unwrap();
    for needle in [
        r#""id":1"#,
        r#""channel":"staging""#,
        r#""name":"registry.example/shop""#,
        &format!(r#""image_id":"{}""#, image("A")),
        &format!(r#""git_sha":"{}""#, sha("B")),
        r#""run_id":"run-A""#,
        r#""action":"release""#,
        r#""action":"rollback""#,
        r#""reason":null"#,
        r#""reason":"B broke checkout""#,
        r#""restores":null"#,
        r#""restores":1"#,
        r#""at":""#,
    ] {
        assert!(json.contains(needle), "{needle} not in {json}");
    }
    let back: Vec<Entry> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, entries);
    assert_eq!(
        serde_json::to_string(&Action::Promote).unwrap(),
        r#""promote""#
    );
}

/// One step of a rollback scenario.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// A release of the labelled image.
    Release(&'static str),
    /// A promote of the labelled image from another channel.
    Promote(&'static str),
    /// `drydock rollback`, which must pick the labelled image; then recorded.
    Rollback(&'static str),
    /// `drydock rollback --to <to>`, which must pick the labelled image.
    RollbackTo(&'static str, &'static str),
}

/// What `rollback_target` answers: the label of the image picked, or
/// [`NOTHING`] / [`NO_SUCH`].
type Want<L> = Result<L, &'static str>;
/// Stands for [`LedgerError::NothingToRollBackTo`].
const NOTHING: Want<&str> = Err("nothing to roll back to");
/// Stands for [`LedgerError::NoSuchRelease`].
const NO_SUCH: Want<&str> = Err("no such release");

/// A rollback scenario: name, steps, `--to`, expected answer.
type Case<'a> = (&'a str, &'a [Step], Option<&'a str>, Want<&'a str>);

/// Replays `steps` on channel `staging`, then asks for the rollback target
/// with `to`.
fn replay(ledger: &mut Ledger, steps: &[Step], to: Option<&str>) -> Want<String> {
    for step in steps {
        match *step {
            Step::Release(label) => {
                ledger.record(release("staging", label)).unwrap();
            }
            Step::Promote(label) => {
                let source = ledger.record(release("dev", label)).unwrap();
                ledger
                    .record(NewEntry::promote(&source, "staging", None))
                    .unwrap();
            }
            Step::Rollback(want) | Step::RollbackTo(_, want) => {
                let to = match *step {
                    Step::RollbackTo(to, _) => Some(to),
                    _ => None,
                };
                let target = ledger.rollback_target(SHOP, "staging", to).unwrap();
                assert_eq!(label_of(&target), want, "{step:?} picked {target:?}");
                ledger.record(NewEntry::rollback(&target, None)).unwrap();
            }
        }
    }
    match ledger.rollback_target(SHOP, "staging", to) {
        Ok(target) => {
            assert_ne!(target.action, Action::Rollback, "{target:?}");
            assert_eq!(target.channel, "staging");
            Ok(label_of(&target))
        }
        Err(LedgerError::NothingToRollBackTo(channel)) => {
            assert_eq!(channel, ChannelRef::new(SHOP, "staging"));
            NOTHING.map(String::from)
        }
        Err(LedgerError::NoSuchRelease { channel, wanted }) => {
            assert_eq!(channel, ChannelRef::new(SHOP, "staging"));
            assert_eq!(Some(wanted.as_str()), to);
            NO_SUCH.map(String::from)
        }
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[test]
fn rollback_targets() {
    use Step::*;
    let bbbbbbb = &sha("B")[..7];
    let upper = sha("B").to_uppercase();
    let cases: &[Case] = &[
        ("one release: nothing older", &[Release("A")], None, NOTHING),
        (
            "A B C: back to B",
            &[Release("A"), Release("B"), Release("C")],
            None,
            Ok("B"),
        ),
        (
            "A B C rb→B: again, to A",
            &[Release("A"), Release("B"), Release("C"), Rollback("B")],
            None,
            Ok("A"),
        ),
        (
            "A B C rb→B rb→A: nothing left",
            &[
                Release("A"),
                Release("B"),
                Release("C"),
                Rollback("B"),
                Rollback("A"),
            ],
            None,
            NOTHING,
        ),
        (
            // Not C: the channel was on B before D, and C was rolled back away from.
            "A B C rb→B D: back to B, the state before D",
            &[
                Release("A"),
                Release("B"),
                Release("C"),
                Rollback("B"),
                Release("D"),
            ],
            None,
            Ok("B"),
        ),
        (
            "A B C rb→B D rb→B: then A",
            &[
                Release("A"),
                Release("B"),
                Release("C"),
                Rollback("B"),
                Release("D"),
                Rollback("B"),
            ],
            None,
            Ok("A"),
        ),
        (
            "A B C rb→B rb→A D: back to A",
            &[
                Release("A"),
                Release("B"),
                Release("C"),
                Rollback("B"),
                Rollback("A"),
                Release("D"),
            ],
            None,
            Ok("A"),
        ),
        (
            "re-release of the same image is skipped",
            &[Release("A"), Release("B"), Release("B")],
            None,
            Ok("A"),
        ),
        (
            "a promote counts as a release",
            &[Release("A"), Promote("B"), Promote("C")],
            None,
            Ok("B"),
        ),
        (
            "after rollback --to the oldest: nothing left",
            &[
                Release("A"),
                Release("B"),
                Release("C"),
                RollbackTo("run-A", "A"),
            ],
            None,
            NOTHING,
        ),
        (
            "--to sha prefix",
            &[Release("A"), Release("B"), Release("C")],
            Some(bbbbbbb),
            Ok("B"),
        ),
        (
            "--to full sha, any case",
            &[Release("A"), Release("B"), Release("C")],
            Some(&upper),
            Ok("B"),
        ),
        (
            "--to run id",
            &[Release("A"), Release("B"), Release("C")],
            Some("run-A"),
            Ok("A"),
        ),
        (
            "--to may reach an image rolled back away from",
            &[
                Release("A"),
                Release("B"),
                Release("C"),
                Rollback("B"),
                Release("D"),
            ],
            Some("run-C"),
            Ok("C"),
        ),
        (
            "--to the current image answers it",
            &[Release("A"), Release("B")],
            Some("run-B"),
            Ok("B"),
        ),
        (
            "--to sha prefix shorter than 7",
            &[Release("A"), Release("B"), Release("C")],
            Some(&bbbbbbb[..6]),
            NO_SUCH,
        ),
        (
            "--to unknown",
            &[Release("A"), Release("B")],
            Some("deadbeefcafe"),
            NO_SUCH,
        ),
        (
            "--to empty",
            &[Release("A"), Release("B")],
            Some(""),
            NO_SUCH,
        ),
    ];
    for (name, steps, to, want) in cases {
        let (_dir, mut ledger) = fresh();
        let got = replay(&mut ledger, steps, *to);
        assert_eq!(got.as_deref().map_err(|e| *e), *want, "case {name:?}");
    }
}

#[test]
fn rollback_to_names_the_release_not_a_rollback_of_it() {
    let (_dir, mut ledger) = fresh();
    let b = ledger.record(release("staging", "B")).unwrap();
    ledger.record(release("staging", "C")).unwrap();
    let target = ledger.rollback_target(SHOP, "staging", None).unwrap();
    assert_eq!(target, b);
    let rb = ledger
        .record(NewEntry::rollback(&target, Some("C is slow".into())))
        .unwrap();
    assert_eq!(rb.action, Action::Rollback);
    assert_eq!(rb.restores, Some(b.id));
    assert_eq!(rb.image_id, b.image_id);
    assert_eq!(ledger.current(SHOP, "staging").unwrap(), Some(rb));
    assert_eq!(
        ledger
            .rollback_target(SHOP, "staging", Some("run-B"))
            .unwrap(),
        b
    );
}

#[test]
fn rollback_of_an_unknown_channel_fails() {
    let (_dir, mut ledger) = fresh();
    ledger.record(release("staging", "A")).unwrap();
    for to in [None, Some("run-A")] {
        match ledger.rollback_target(SHOP, "production", to) {
            Err(LedgerError::UnknownChannel(channel)) => {
                assert_eq!(channel, ChannelRef::new(SHOP, "production"))
            }
            other => panic!("expected UnknownChannel, got {other:?}"),
        }
    }
}

#[test]
fn error_messages_name_what_went_wrong() {
    let (_dir, mut ledger) = fresh();
    ledger.record(release("staging", "A")).unwrap();
    let unknown = ledger
        .rollback_target(SHOP, "prod", None)
        .unwrap_err()
        .to_string();
    assert!(unknown.contains("`prod`"), "{unknown}");
    let nothing = ledger
        .rollback_target(SHOP, "staging", None)
        .unwrap_err()
        .to_string();
    assert!(
        nothing.contains("nothing to roll back to") && nothing.contains("`staging`"),
        "{nothing}"
    );
    let no_such = ledger
        .rollback_target(SHOP, "staging", Some("abc"))
        .unwrap_err()
        .to_string();
    assert!(
        no_such.contains("`abc`") && no_such.contains("7 characters"),
        "{no_such}"
    );
}

#[test]
fn record_refuses_inconsistent_entries() {
    let (_dir, mut ledger) = fresh();
    let a = ledger.record(release("staging", "A")).unwrap();
    ledger.record(release("staging", "B")).unwrap();
    let other = ledger.record(release("production", "A")).unwrap();
    let rb = ledger.record(NewEntry::rollback(&a, None)).unwrap();

    let mut empty_channel = release("", "A");
    empty_channel.channel = "  ".into();
    let mut no_restores = NewEntry::rollback(&a, None);
    no_restores.restores = None;
    let mut release_restoring = release("staging", "A");
    release_restoring.restores = Some(a.id);
    let mut missing = NewEntry::rollback(&a, None);
    missing.restores = Some(9999);
    let mut cross_channel = NewEntry::rollback(&a, None);
    cross_channel.restores = Some(other.id);
    let theirs = ledger
        .record(NewEntry::release(
            "staging",
            "other-app",
            image("A"),
            None,
            None,
        ))
        .unwrap();
    let mut cross_product = NewEntry::rollback(&a, None);
    cross_product.restores = Some(theirs.id);
    let mut wrong_image = NewEntry::rollback(&a, None);
    wrong_image.image_id = image("B");
    let of_a_rollback = NewEntry::rollback(&rb, None);

    for (what, entry, needle) in [
        ("empty channel", empty_channel, "channel is empty"),
        ("rollback without restores", no_restores, "must name"),
        (
            "release with restores",
            release_restoring,
            "only a rollback",
        ),
        ("restores nothing", missing, "does not exist"),
        (
            "restores another channel",
            cross_channel,
            "of channel `production` of registry.example/shop",
        ),
        (
            "restores another product",
            cross_product,
            "of channel `staging` of other-app",
        ),
        ("restores another image", wrong_image, "which has image"),
        ("restores a rollback", of_a_rollback, "itself a rollback"),
    ] {
        match ledger.record(entry) {
            Err(e @ LedgerError::InvalidEntry(_)) => {
                assert!(e.to_string().contains(needle), "{what}: {e}")
            }
            other => panic!("{what}: expected InvalidEntry, got {other:?}"),
        }
    }
    assert_eq!(
        ledger.history(SHOP, "staging").unwrap().len(),
        3,
        "nothing recorded"
    );
}

#[test]
fn entries_are_append_only() {
    let (_dir, mut ledger) = fresh();
    ledger.record(release("staging", "A")).unwrap();
    for sql in [
        "UPDATE entries SET image_id = 'sha256:forged'",
        "DELETE FROM entries",
    ] {
        let err = ledger.conn.execute(sql, []).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(
        ledger.history(SHOP, "staging").unwrap()[0].image_id,
        image("A")
    );
}

#[test]
fn reopening_sees_the_same_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deep/er/ledger.sqlite");
    let before = {
        let mut ledger = Ledger::open(&path).unwrap();
        assert_eq!(ledger.path(), path);
        ledger.record(release("staging", "A")).unwrap();
        ledger.record(release("staging", "B")).unwrap();
        let target = ledger.rollback_target(SHOP, "staging", None).unwrap();
        ledger.record(NewEntry::rollback(&target, None)).unwrap();
        ledger.history(SHOP, "staging").unwrap()
    };
    let mut again = Ledger::open(&path).unwrap();
    assert_eq!(again.history(SHOP, "staging").unwrap(), before);
    let next = again.record(release("staging", "C")).unwrap();
    assert_eq!(next.id, before.last().unwrap().id + 1);
    // A third open with the schema already there is fine too.
    drop(again);
    assert_eq!(
        Ledger::open(&path)
            .unwrap()
            .history(SHOP, "staging")
            .unwrap()
            .len(),
        4
    );
}

#[test]
fn open_reports_the_path_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let path = file.join("ledger.sqlite");
    match Ledger::open(&path) {
        Err(e @ LedgerError::Open { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(std::error::Error::source(&e).is_some());
        }
        other => panic!("expected Open error, got {other:?}"),
    }
}

#[test]
fn open_refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    drop(Ledger::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let err = Ledger::open(&path).unwrap_err().to_string();
    assert!(err.contains("newer"), "{err}");
}

#[test]
fn referenced_images_keeps_each_channels_last_n() {
    let (_dir, mut ledger) = fresh();
    assert!(ledger.referenced_images(5).unwrap().is_empty());
    for label in ["A", "B", "C", "D"] {
        ledger.record(release("staging", label)).unwrap();
    }
    for label in ["E", "F", "G"] {
        ledger.record(release("production", label)).unwrap();
    }
    let images = |labels: &[&str]| labels.iter().map(|l| image(l)).collect::<Vec<_>>();

    assert!(ledger.referenced_images(0).unwrap().is_empty());
    assert_eq!(ledger.referenced_images(1).unwrap(), images(&["D", "G"]));
    assert_eq!(
        ledger.referenced_images(2).unwrap(),
        images(&["C", "D", "F", "G"])
    );
    assert_eq!(
        ledger.referenced_images(usize::MAX).unwrap(),
        images(&["A", "B", "C", "D", "E", "F", "G"])
    );

    // A rollback to C: the last two staging entries are C (rollback) and D.
    let target = ledger.rollback_target(SHOP, "staging", None).unwrap();
    ledger.record(NewEntry::rollback(&target, None)).unwrap();
    assert_eq!(
        ledger.referenced_images(2).unwrap(),
        images(&["C", "D", "F", "G"])
    );
    assert_eq!(ledger.referenced_images(1).unwrap(), images(&["C", "G"]));
}

#[test]
fn default_path_prefers_state_dir_then_xdg_then_home() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[
                ("DRYDOCK_STATE_DIR", "/srv/dd"),
                ("XDG_DATA_HOME", "/x"),
                ("HOME", "/h"),
            ],
            "/srv/dd/ledger.sqlite",
        ),
        (
            &[
                ("DRYDOCK_STATE_DIR", ""),
                ("XDG_DATA_HOME", "/x"),
                ("HOME", "/h"),
            ],
            "/x/drydock/ledger.sqlite",
        ),
        (
            &[("XDG_DATA_HOME", "relative"), ("HOME", "/h")],
            "/h/.local/share/drydock/ledger.sqlite",
        ),
        (&[("HOME", "/h")], "/h/.local/share/drydock/ledger.sqlite"),
        (&[], ".drydock/ledger.sqlite"),
    ];
    for (env, want) in cases {
        let got = default_path_from(|name| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| PathBuf::from(v))
        });
        assert_eq!(got, Path::new(want), "env {env:?}");
    }
    assert!(Ledger::default_path().ends_with("ledger.sqlite"));
}

/// Entries each racing writer records.
const RACE_ENTRIES: usize = 50;
/// Racing writers.
const RACE_WRITERS: usize = 4;
/// Set in a child process of [`two_processes_racing_lose_nothing`]: the ledger file.
const RACE_DB_ENV: &str = "DRYDOCK_LEDGER_RACE_DB";
/// Set in a child process: the writer's number.
const RACE_WRITER_ENV: &str = "DRYDOCK_LEDGER_RACE_WRITER";

/// One racing writer: opens `path` itself and records [`RACE_ENTRIES`]
/// entries on its own channel, reading between writes as the CLI does.
fn race_writer(path: &Path, writer: usize) {
    let mut ledger = Ledger::open(path).unwrap();
    let channel = format!("race-{writer}");
    for i in 0..RACE_ENTRIES {
        let entry = ledger
            .record(NewEntry::release(
                &channel,
                "registry.example/race",
                format!("sha256:{writer}-{i}"),
                None,
                Some(format!("{writer}-{i}")),
            ))
            .unwrap();
        assert_eq!(
            ledger.current("registry.example/race", &channel).unwrap(),
            Some(entry)
        );
    }
}

/// Checks the ledger at `path` after a race of [`RACE_WRITERS`] writers.
fn check_race(path: &Path) {
    let ledger = Ledger::open(path).unwrap();
    let channels = ledger.channels().unwrap();
    assert_eq!(channels.len(), RACE_WRITERS);
    let mut ids = HashSet::new();
    for channel in &channels {
        let history = ledger.history(&channel.product, &channel.channel).unwrap();
        assert_eq!(history.len(), RACE_ENTRIES, "{channel}");
        // Each writer's entries are in its own order.
        let writer = channel.channel.trim_start_matches("race-");
        for (i, entry) in history.iter().enumerate() {
            assert_eq!(
                entry.run_id.as_deref(),
                Some(format!("{writer}-{i}").as_str())
            );
            assert!(ids.insert(entry.id), "duplicate id {}", entry.id);
        }
    }
    assert_eq!(ids.len(), RACE_WRITERS * RACE_ENTRIES);
}

/// The child half of [`two_processes_racing_lose_nothing`]: does nothing
/// unless run by it (with [`RACE_DB_ENV`] set).
#[test]
fn race_child_writer() {
    let (Some(path), Some(writer)) = (
        std::env::var_os(RACE_DB_ENV),
        std::env::var(RACE_WRITER_ENV).ok(),
    ) else {
        return;
    };
    race_writer(Path::new(&path), writer.parse().unwrap());
}

#[test]
fn two_processes_racing_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // A file nobody has created yet: the children also race to create it.
    let path = dir.path().join("new/ledger.sqlite");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..RACE_WRITERS)
        .map(|writer| {
            Command::new(&exe)
                .args([
                    "release::tests::race_child_writer",
                    "--exact",
                    "--test-threads=1",
                    "--nocapture",
                ])
                .env(RACE_DB_ENV, &path)
                .env(RACE_WRITER_ENV, writer.to_string())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child writer failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("1 passed"), "child ran no test:\n{stdout}");
    }
    check_race(&path);
}

#[test]
fn threads_racing_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    std::thread::scope(|scope| {
        for writer in 0..RACE_WRITERS {
            let path = &path;
            scope.spawn(move || race_writer(path, writer));
        }
    });
    check_race(&path);
}

/// The version-1 ledger of `tests/fixtures/ledger/v1.sql`, written to a file.
fn v1_ledger(dir: &Path) -> PathBuf {
    let path = dir.join("ledger.sqlite");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(include_str!("../../../../tests/fixtures/ledger/v1.sql"))
        .unwrap();
    assert_eq!(schema::version(&conn).unwrap(), 1);
    path
}

#[test]
fn a_version_1_ledger_is_migrated_keeping_every_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = v1_ledger(dir.path());
    let raw = |path: &Path| -> Vec<(i64, String, String, String)> {
        let conn = rusqlite::Connection::open(path).unwrap();
        let mut stmt = conn
            .prepare("SELECT id, name, channel, image_id FROM entries ORDER BY id")
            .unwrap();
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    };
    let before = raw(&path);
    assert_eq!(before.len(), 6);

    let mut ledger = Ledger::open(&path).unwrap();
    assert_eq!(
        schema::version(&ledger.conn).unwrap(),
        SCHEMA_VERSION as i64
    );
    drop(ledger);
    assert_eq!(raw(&path), before, "the migration changed entries");
    ledger = Ledger::open(&path).unwrap();

    // Two products shared `staging`: each now has its own history.
    assert_eq!(
        ledger.products_of("staging").unwrap(),
        vec!["flask-api", "other-app"]
    );
    let ids = |h: Vec<Entry>| h.iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(ids(ledger.history("flask-api", "staging").unwrap()), [1, 3]);
    assert_eq!(ids(ledger.history("other-app", "staging").unwrap()), [2, 4]);
    assert_eq!(
        ledger.current("flask-api", "staging").unwrap().unwrap().id,
        3
    );
    // flask-api's rollback goes to its own previous release, never to
    // other-app's image (which version 1 answered).
    let target = ledger
        .rollback_target("flask-api", "staging", None)
        .unwrap();
    assert_eq!((target.id, target.name.as_str()), (1, "flask-api"));
    assert!(matches!(
        ledger.rollback_target("other-app", "staging", None),
        Err(LedgerError::NothingToRollBackTo(_))
    ));
    // Deployments follow the product of the entry they deployed.
    assert_eq!(
        ledger
            .deployments("flask-api", "staging")
            .unwrap()
            .iter()
            .map(|d| d.entry_id)
            .collect::<Vec<_>>(),
        [1, 3]
    );
    assert!(ledger
        .deployments("other-app", "staging")
        .unwrap()
        .is_empty());
    assert_eq!(
        ledger.channels().unwrap(),
        vec![
            ChannelRef::new("flask-api", "production"),
            ChannelRef::new("flask-api", "staging"),
            ChannelRef::new("other-app", "production"),
            ChannelRef::new("other-app", "staging"),
        ]
    );
    assert_eq!(ledger.referenced_images(1).unwrap().len(), 3);

    // Still append-only; new entries continue the ids; the database itself
    // now refuses a rollback restoring another product's entry.
    assert!(ledger.conn.execute("DELETE FROM entries", []).is_err());
    let next = ledger
        .record(NewEntry::rollback(&target, Some("migrated".into())))
        .unwrap();
    assert_eq!(next.id, 7);
    let forged = ledger.conn.execute(
        "INSERT INTO entries (channel, name, image_id, action, restores, at)
         VALUES ('staging', 'flask-api', 'sha256:x', 'rollback', 2, 'now')",
        [],
    );
    assert!(
        forged.unwrap_err().to_string().contains("own product"),
        "a cross-product rollback was stored"
    );
}

#[test]
fn processes_opening_a_version_1_ledger_at_once_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let path = v1_ledger(dir.path());
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| Ledger::open(&path).map(|_| ())))
            .collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
    });
    let ledger = Ledger::open(&path).unwrap();
    assert_eq!(
        schema::version(&ledger.conn).unwrap(),
        SCHEMA_VERSION as i64
    );
    assert_eq!(ledger.history("flask-api", "staging").unwrap().len(), 2);
}

#[test]
fn two_products_with_one_channel_name_never_mix() {
    let (_dir, mut ledger) = fresh();
    let a = |label: &str| NewEntry::release("staging", "flask-api", image(label), None, None);
    let b = |label: &str| NewEntry::release("staging", "other-app", image(label), None, None);
    let a1 = ledger.record(a("A")).unwrap();
    ledger.record(b("B")).unwrap();
    let a2 = ledger.record(a("C")).unwrap();
    let b2 = ledger.record(b("D")).unwrap();
    assert_eq!(ledger.current("flask-api", "staging").unwrap(), Some(a2));
    assert_eq!(ledger.current("other-app", "staging").unwrap(), Some(b2));
    let target = ledger
        .rollback_target("flask-api", "staging", None)
        .unwrap();
    assert_eq!(target, a1);
    assert!(ledger
        .rollback_target("flask-api", "staging", Some("run-B"))
        .is_err());
    assert_eq!(ledger.current(SHOP, "staging").unwrap(), None);
}

mod publish {
    //! The channel movers against the fake engine.

    use std::sync::Arc;

    use super::*;
    use crate::run::fake::FakeRuntime;
    use tokio_util::sync::CancellationToken;

    fn request(product: &str, image: &str, run: &str) -> ReleaseRequest {
        ReleaseRequest {
            product: product.into(),
            channel: "staging".into(),
            image_id: image.into(),
            tags: vec![format!("sha-{run}"), run.into()],
            registry_repository: None,
            git_sha: Some(format!("sha-{run}")),
            run_id: Some(run.into()),
            fence: None,
        }
    }

    fn fake(images: &[&str]) -> Arc<FakeRuntime> {
        Arc::new(FakeRuntime::with_images(images))
    }

    fn tag_of(fake: &FakeRuntime, reference: &str) -> Option<String> {
        fake.tags.lock().unwrap().get(reference).cloned()
    }

    #[tokio::test]
    async fn a_release_records_then_moves_the_channel_tag() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        let engine = fake(&["img-1"]);
        let cancel = CancellationToken::new();
        let released = crate::release::release(
            engine.as_ref(),
            &path,
            &request("shop", "img-1", "r1"),
            &cancel,
            None,
        )
        .await
        .unwrap();
        assert_eq!(released.tags, ["shop:sha-r1", "shop:r1", "shop:staging"]);
        assert_eq!(released.entry.action, Action::Release);
        assert_eq!(tag_of(&engine, "shop:staging").as_deref(), Some("img-1"));
        let ledger = Ledger::open(&path).unwrap();
        assert_eq!(
            ledger.current("shop", "staging").unwrap(),
            Some(released.entry.clone())
        );
        assert_eq!(
            released_by_run(&path, "r1").map(|e| e.id),
            Some(released.entry.id)
        );
        assert_eq!(released_by_run(&path, "r2"), None);
        // The channel tag moves after the sha and run tags.
        let journal = engine.journal();
        assert_eq!(journal.last().unwrap(), "tag img-1 shop:staging");

        // Cancelled before it starts: nothing at all.
        cancel.cancel();
        let err = crate::release::release(
            engine.as_ref(),
            &path,
            &request("shop", "img-2", "r2"),
            &cancel,
            None,
        )
        .await
        .unwrap_err();
        assert!(err.is_cancelled(), "{err}");
        assert_eq!(tag_of(&engine, "shop:r2"), None);
        assert_eq!(ledger.history("shop", "staging").unwrap().len(), 1);
    }

    /// What a process that dies between the commit point and the tag move
    /// leaves (the entry recorded, the tag on the previous image) is put
    /// right by the next reader, which says so; a tag already in place is
    /// left alone; another product's channel of the same name is untouched.
    #[tokio::test]
    async fn repair_re_points_a_tag_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        let engine = fake(&["img-1", "img-2", "img-b"]);
        let cancel = CancellationToken::new();
        crate::release::release(
            engine.as_ref(),
            &path,
            &request("shop", "img-1", "r1"),
            &cancel,
            None,
        )
        .await
        .unwrap();
        crate::release::release(
            engine.as_ref(),
            &path,
            &request("other", "img-b", "rb"),
            &cancel,
            None,
        )
        .await
        .unwrap();
        let shop = ChannelRef::new("shop", "staging");
        assert_eq!(
            repair(engine.as_ref(), &path, &shop).await.unwrap(),
            Repair::InSync
        );
        // The commit point of a second release, without its tag move.
        let entry = Ledger::open(&path)
            .unwrap()
            .record(NewEntry::release("staging", "shop", "img-2", None, None))
            .unwrap();
        let repaired = repair(engine.as_ref(), &path, &shop).await.unwrap();
        assert_eq!(
            repaired,
            Repair::Repointed {
                channel: shop.clone(),
                was: Some("img-1".into()),
                entry: entry.clone(),
            }
        );
        let message = repaired.message().unwrap();
        assert!(
            message.contains("shop:staging") && message.contains("re-pointed"),
            "{message}"
        );
        assert_eq!(tag_of(&engine, "shop:staging").as_deref(), Some("img-2"));
        assert_eq!(tag_of(&engine, "other:staging").as_deref(), Some("img-b"));
        // A tag moved behind the ledger's back is put back too, and one whose
        // image is gone is reported, not invented.
        engine
            .tags
            .lock()
            .unwrap()
            .insert("other:staging".into(), "img-1".into());
        engine.images.lock().unwrap().remove("img-b");
        let all = repair_all(engine.as_ref(), &path).await.unwrap();
        let found: Vec<_> = all
            .into_iter()
            .map(|(c, r)| (c.product, r.unwrap()))
            .collect();
        assert!(matches!(&found[0], (p, Repair::ImageMissing { .. }) if p == "other"));
        assert!(matches!(&found[1], (p, Repair::InSync) if p == "shop"));
        assert_eq!(
            repair(engine.as_ref(), &path, &ChannelRef::new("shop", "prod"))
                .await
                .unwrap(),
            Repair::Unknown
        );
    }

    #[tokio::test]
    async fn rollbacks_and_promotes_record_then_tag_and_refusals_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        let engine = fake(&["img-1", "img-2"]);
        let cancel = CancellationToken::new();
        for (image, run) in [("img-1", "r1"), ("img-2", "r2")] {
            crate::release::release(
                engine.as_ref(),
                &path,
                &request("shop", image, run),
                &cancel,
                None,
            )
            .await
            .unwrap();
        }
        let target = Ledger::open(&path)
            .unwrap()
            .rollback_target("shop", "staging", None)
            .unwrap();
        let moved = move_channel(
            engine.as_ref(),
            &path,
            NewEntry::rollback(&target, Some("slow".into())),
        )
        .await
        .unwrap();
        assert_eq!(moved.entry.action, Action::Rollback);
        assert_eq!(tag_of(&engine, "shop:staging").as_deref(), Some("img-1"));
        let promoted = move_channel(
            engine.as_ref(),
            &path,
            NewEntry::promote(&moved.entry, "production", None),
        )
        .await
        .unwrap();
        assert_eq!(promoted.tags, ["shop:production"]);
        assert_eq!(tag_of(&engine, "shop:production").as_deref(), Some("img-1"));
        // A refused entry moves no tag.
        let mut bad = NewEntry::rollback(&target, None);
        bad.image_id = "img-2".into();
        let err = move_channel(engine.as_ref(), &path, bad).await.unwrap_err();
        assert!(matches!(
            err,
            ReleaseError::Ledger(LedgerError::InvalidEntry(_))
        ));
        assert_eq!(tag_of(&engine, "shop:staging").as_deref(), Some("img-1"));
    }

    /// A release whose fence refuses (a runner attempt that lost its lease)
    /// records nothing and leaves the channel tag; one whose fence agrees
    /// releases. The fence is asked once, under the channel lock.
    #[tokio::test]
    async fn a_refusing_fence_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        let engine = fake(&["img-1", "img-2"]);
        let cancel = CancellationToken::new();
        crate::release::release(
            engine.as_ref(),
            &path,
            &request("shop", "img-1", "r1"),
            &cancel,
            None,
        )
        .await
        .unwrap();
        let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let fence = |answer: Result<(), String>| {
            let asked = asked.clone();
            crate::release::ReleaseFence::new(move || {
                asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let answer = answer.clone();
                Box::pin(async move { answer })
            })
        };
        let mut refused = request("shop", "img-2", "r2");
        refused.fence = Some(fence(Err("attempt 1 lost its lease".into())));
        let err = crate::release::release(engine.as_ref(), &path, &refused, &cancel, None)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ReleaseError::Fenced { why, .. } if why == "attempt 1 lost its lease"),
            "{err}"
        );
        assert!(err.recorded().is_none() && !err.is_cancelled());
        assert_eq!(tag_of(&engine, "shop:staging").as_deref(), Some("img-1"));
        let ledger = Ledger::open(&path).unwrap();
        assert_eq!(ledger.history("shop", "staging").unwrap().len(), 1);
        assert_eq!(released_by_run(&path, "r2"), None);

        let mut agreed = request("shop", "img-2", "r3");
        agreed.fence = Some(fence(Ok(())));
        let released = crate::release::release(engine.as_ref(), &path, &agreed, &cancel, None)
            .await
            .unwrap();
        assert_eq!(released.entry.image_id, "img-2");
        assert_eq!(tag_of(&engine, "shop:staging").as_deref(), Some("img-2"));
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[test]
    fn lock_files_are_per_product_and_channel() {
        let ledger = Path::new("/state/ledger.sqlite");
        let a = lock_path(ledger, "release", &ChannelRef::new("flask-api", "staging"));
        let b = lock_path(ledger, "release", &ChannelRef::new("other-app", "staging"));
        let d = lock_path(ledger, "deploy", &ChannelRef::new("flask-api", "staging"));
        assert_ne!(a, b);
        assert_ne!(a, d);
        assert!(a.starts_with("/state/locks"), "{}", a.display());
        let odd = lock_path(ledger, "release", &ChannelRef::new("r.io/x", "a/../b"));
        assert_eq!(odd.parent(), Some(Path::new("/state/locks")));
        // The lock excludes another holder until dropped.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locks/x.lock");
        let held = ChannelLock::acquire(&path, || {}).unwrap();
        let waited = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = waited.clone();
        let other = std::thread::spawn(move || {
            ChannelLock::acquire(&path, || {
                flag.store(true, std::sync::atomic::Ordering::SeqCst)
            })
            .map(|_| ())
        });
        std::thread::sleep(std::time::Duration::from_millis(100));
        drop(held);
        other.join().unwrap().unwrap();
        assert!(waited.load(std::sync::atomic::Ordering::SeqCst));
    }
}
