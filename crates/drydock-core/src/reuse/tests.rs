use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::events::TestCounts;

/// A repository with a mounted folder `src/` (one ignored file) and a file.
fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("src/pkg")).unwrap();
    std::fs::write(dir.path().join("src/pkg/app.py"), "x = 1\n").unwrap();
    std::fs::write(dir.path().join("src/.dockerignore"), "*.log\n").unwrap();
    std::fs::write(dir.path().join("src/debug.log"), "noise\n").unwrap();
    std::fs::write(dir.path().join("setup.cfg"), "[flake8]\n").unwrap();
    dir
}

fn parts(repo: &Path) -> KeyParts {
    let mount = |p: &str| MountPart {
        read_only: true,
        digest: path_digest(&repo.join(p), &[repo.join(".drydock")]).unwrap(),
    };
    KeyParts {
        format: FORMAT_VERSION,
        drydock: env!("CARGO_PKG_VERSION").to_string(),
        image_id: "sha256:aaa".into(),
        entrypoint: None,
        command: Some(vec!["pytest".into(), "-q".into()]),
        env: BTreeMap::from([("A".into(), "1".into()), ("B".into(), "2".into())]),
        user: None,
        workdir: Some("/src".into()),
        network: "none".into(),
        mounts: BTreeMap::from([
            ("/src".to_string(), mount("src")),
            ("/etc/setup.cfg".to_string(), mount("setup.cfg")),
        ]),
        copies: BTreeMap::new(),
        services: BTreeMap::from([(
            "db".to_string(),
            ServicePart {
                image_id: "sha256:db".into(),
                entrypoint: None,
                command: None,
                env: BTreeMap::from([("POSTGRES_PASSWORD".into(), "pw".into())]),
                user: None,
                workdir: None,
                mounts: BTreeMap::new(),
                ready: None,
            },
        )]),
        secrets: BTreeMap::from([(
            "TOKEN".to_string(),
            SecretPart {
                expose: "env".into(),
                sha256: secret_digest(b"s3cret"),
            },
        )]),
        junit: Some("/src/junit.xml".into()),
        collect: Vec::new(),
        timeout_ms: 600_000,
        retry: 0,
        allow_failure: false,
    }
}

#[test]
fn the_key_changes_with_each_part() {
    let dir = repo();
    let base = parts(dir.path()).key();
    assert_eq!(base.len(), 64);
    assert_eq!(base, parts(dir.path()).key(), "stable");
    type Change = Box<dyn Fn(&Path, &mut KeyParts)>;
    let cases: Vec<(&str, Change)> = vec![
        (
            "image id",
            Box::new(|_, k| k.image_id = "sha256:bbb".into()),
        ),
        (
            "command",
            Box::new(|_, k| k.command = Some(vec!["pytest".into()])),
        ),
        (
            "env value",
            Box::new(|_, k| {
                k.env.insert("A".into(), "3".into());
            }),
        ),
        (
            "env entry",
            Box::new(|_, k| {
                k.env.insert("C".into(), String::new());
            }),
        ),
        (
            "entrypoint",
            Box::new(|_, k| k.entrypoint = Some(Vec::new())),
        ),
        ("user", Box::new(|_, k| k.user = Some("1000".into()))),
        ("workdir", Box::new(|_, k| k.workdir = Some("/".into()))),
        ("network", Box::new(|_, k| k.network = "bridge".into())),
        (
            "mounted file content",
            Box::new(|repo, k| {
                std::fs::write(repo.join("src/pkg/app.py"), "x = 2\n").unwrap();
                *k = parts(repo);
                std::fs::write(repo.join("src/pkg/app.py"), "x = 1\n").unwrap();
            }),
        ),
        (
            "a new file in a mounted folder",
            Box::new(|repo, k| {
                std::fs::write(repo.join("src/pkg/new.py"), "").unwrap();
                *k = parts(repo);
                std::fs::remove_file(repo.join("src/pkg/new.py")).unwrap();
            }),
        ),
        (
            "mounted single file",
            Box::new(|repo, k| {
                std::fs::write(repo.join("setup.cfg"), "[flake8]\nmax=1\n").unwrap();
                *k = parts(repo);
                std::fs::write(repo.join("setup.cfg"), "[flake8]\n").unwrap();
            }),
        ),
        (
            "mount made writable",
            Box::new(|_, k| k.mounts.get_mut("/src").unwrap().read_only = false),
        ),
        (
            "service image",
            Box::new(|_, k| k.services.get_mut("db").unwrap().image_id = "sha256:db2".into()),
        ),
        (
            "service config",
            Box::new(|_, k| {
                k.services
                    .get_mut("db")
                    .unwrap()
                    .env
                    .insert("POSTGRES_PASSWORD".into(), "other".into());
            }),
        ),
        (
            "service command",
            Box::new(|_, k| {
                k.services.get_mut("db").unwrap().command = Some(vec!["postgres".into()])
            }),
        ),
        (
            "secret value",
            Box::new(|_, k| k.secrets.get_mut("TOKEN").unwrap().sha256 = secret_digest(b"new")),
        ),
        (
            "drydock version",
            Box::new(|_, k| k.drydock = "0.0.0-other".into()),
        ),
        (
            "format version",
            Box::new(|_, k| k.format = FORMAT_VERSION + 1),
        ),
        ("junit path", Box::new(|_, k| k.junit = None)),
        ("timeout", Box::new(|_, k| k.timeout_ms = 1_000)),
        ("retry", Box::new(|_, k| k.retry = 2)),
    ];
    for (what, change) in cases {
        let mut k = parts(dir.path());
        change(dir.path(), &mut k);
        assert_ne!(k.key(), base, "{what} must change the key");
        assert_eq!(parts(dir.path()).key(), base, "{what}: restored");
    }
}

#[test]
fn the_key_ignores_what_cannot_change_the_result() {
    let dir = repo();
    let base = parts(dir.path()).key();
    // Environment given in another order.
    let mut k = parts(dir.path());
    k.env = BTreeMap::new();
    k.env.insert("B".into(), "2".into());
    k.env.insert("A".into(), "1".into());
    assert_eq!(k.key(), base, "env order");
    // A file excluded by the mounted folder's .dockerignore.
    std::fs::write(dir.path().join("src/debug.log"), "other noise\n").unwrap();
    std::fs::write(dir.path().join("src/more.log"), "x\n").unwrap();
    assert_eq!(parts(dir.path()).key(), base, ".dockerignored files");
    // drydock's own folder.
    std::fs::create_dir_all(dir.path().join(".drydock/results")).unwrap();
    std::fs::write(dir.path().join(".drydock/results/x"), "y").unwrap();
    // mtimes
    let file = std::fs::File::options()
        .write(true)
        .open(dir.path().join("src/pkg/app.py"))
        .unwrap();
    file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000))
        .unwrap();
    assert_eq!(parts(dir.path()).key(), base, "mtimes");
}

#[test]
fn a_repository_mount_leaves_drydocks_folder_out() {
    let dir = repo();
    let never = [dir.path().join(".drydock")];
    let before = path_digest(dir.path(), &never).unwrap();
    std::fs::create_dir_all(dir.path().join(".drydock/results/r1")).unwrap();
    std::fs::write(dir.path().join(".drydock/results/r1/summary.json"), "{}").unwrap();
    assert_eq!(path_digest(dir.path(), &never).unwrap(), before);
    assert_eq!(
        path_digest(&dir.path().join("nope"), &never).unwrap(),
        "missing"
    );
}

fn planned(network: NetworkPlan, reuse: Option<Reuse>) -> PlannedStep {
    PlannedStep {
        id: crate::plan::StepId(0),
        tier: 0,
        name: "unit".into(),
        container: crate::plan::ContainerPlan {
            name: "c".into(),
            image: crate::plan::ImageRef::Reference(0),
            entrypoint: None,
            command: None,
            env: BTreeMap::new(),
            user: None,
            workdir: None,
            binds: Vec::new(),
            copies: Vec::new(),
            network,
            role: "step".into(),
        },
        timeout: Duration::from_secs(60),
        junit: None,
        collect: Vec::new(),
        needs: None,
        when: crate::pipeline::When::OnSuccess,
        retry: 0,
        allow_failure: false,
        secrets: Vec::new(),
        cache: Vec::new(),
        reuse,
    }
}

#[test]
fn policy_by_network_and_reuse_setting() {
    let run = || NetworkPlan::Run {
        aliases: vec!["unit".into()],
    };
    let cases = [
        (NetworkPlan::None, None, true),
        (NetworkPlan::Bridge, None, false),
        (run(), None, false),
        (run(), Some(Reuse::Passed), true),
        (NetworkPlan::Bridge, Some(Reuse::Always), true),
        (NetworkPlan::None, Some(Reuse::Never), false),
    ];
    for (network, reuse, expected) in cases {
        let what = format!("{network:?} {reuse:?}");
        assert_eq!(
            eligible(&planned(network, reuse)).is_ok(),
            expected,
            "{what}"
        );
    }
    let mut writable = planned(NetworkPlan::None, None);
    writable.container.binds.push(crate::plan::BindPlan {
        source: "/tmp".into(),
        target: "/out".into(),
        read_only: false,
    });
    assert!(eligible(&writable).is_err(), "writable mount");
    let mut cached = planned(NetworkPlan::None, None);
    cached.cache.push("/root/.cache".into());
    assert!(eligible(&cached).is_err(), "cache volume");
}

#[test]
fn failed_results_only_with_reuse_always() {
    let default = planned(NetworkPlan::None, None);
    let always = planned(NetworkPlan::None, Some(Reuse::Always));
    let cases = [
        (Status::Passed, false, true, true),
        (Status::Flaky, false, false, true),
        (Status::Failed, false, false, true),
        (Status::Failed, true, false, true),
        (Status::TimedOut, false, false, true),
        (Status::Errored, false, false, false),
        (Status::Cancelled, false, false, false),
        (Status::Skipped, false, false, false),
    ];
    for (status, allowed, by_default, by_always) in cases {
        assert_eq!(accepts(&default, status, allowed), by_default, "{status:?}");
        assert_eq!(accepts(&always, status, allowed), by_always, "{status:?}");
    }
}

fn record(key: &str, run: &str) -> Record {
    Record {
        format: FORMAT_VERSION,
        key: key.into(),
        run_id: run.into(),
        stored_at: "2026-12-01T00:00:00Z".into(),
        pipeline: "p".into(),
        tier: "t".into(),
        step: "s".into(),
        status: Status::Passed,
        duration_ms: 5,
        bytes: 0,
        junit: Some("junit.xml".into()),
        finished: Event::StepFinished {
            tier: "t".into(),
            step: "s".into(),
            status: Status::Passed,
            exit_code: Some(0),
            duration_ms: 5,
            error: None,
            cause: Vec::new(),
            log_tail: Vec::new(),
            tests: Some(TestCounts {
                tests: 3,
                ..Default::default()
            }),
            failed_tests: Vec::new(),
            junit: Some("artifacts/t/s/junit.xml".into()),
            reused: false,
            reused_from: None,
            attempts: 1,
            flaky_tests: Vec::new(),
            allowed_failure: false,
            timings: None,
        },
    }
}

fn put(store_dir: &Path, key: &str, run: &str, payload: usize, max: u64) {
    let results = tempfile::tempdir().unwrap();
    let artifacts = results.path().join("artifacts/t/s");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(artifacts.join("junit.xml"), vec![b'x'; payload]).unwrap();
    let output = results.path().join("s.raw");
    std::fs::write(&output, "line 1\nline 2\n").unwrap();
    std::fs::write(omitted_path(&output), "7").unwrap();
    store(StoreRequest {
        store: store_dir,
        key,
        record: record(key, run),
        artifacts: &artifacts,
        output: &output,
        max_bytes: max,
    })
    .unwrap();
}

#[test]
fn stored_entries_round_trip_and_unreadable_ones_are_removed() {
    let state = tempfile::tempdir().unwrap();
    let dir = store_dir(state.path());
    assert!(lookup(&dir, "k1").is_none(), "empty store");
    put(&dir, "k1", "run-1", 10, DEFAULT_MAX_BYTES);
    let (found, entry) = lookup(&dir, "k1").unwrap();
    assert_eq!(found.run_id, "run-1");
    assert_eq!(found.bytes, 10 + 14 + 1);
    assert_eq!(
        std::fs::read_to_string(omitted_path(&entry.join(OUTPUT_FILE))).unwrap(),
        "7",
        "the count of bytes left out of the raw log is kept"
    );
    assert_eq!(
        std::fs::read(entry.join(ARTIFACTS_FOLDER).join("junit.xml"))
            .unwrap()
            .len(),
        10
    );
    assert_eq!(
        std::fs::read_to_string(entry.join(OUTPUT_FILE)).unwrap(),
        "line 1\nline 2\n"
    );
    // No temporary folder is left behind.
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["k1".to_string()]);
    // A record that does not parse (a crash, a disk error, another format).
    for garbage in ["", "{", "{\"format\": 1}", "\u{0}\u{1}"] {
        std::fs::write(dir.join("k1").join(RECORD_FILE), garbage).unwrap();
        assert!(lookup(&dir, "k1").is_none(), "{garbage:?}");
        assert!(!dir.join("k1").exists(), "{garbage:?}: removed");
        put(&dir, "k1", "run-1", 10, DEFAULT_MAX_BYTES);
    }
    // An entry without a record (half removed) is not replayed.
    std::fs::remove_file(dir.join("k1").join(RECORD_FILE)).unwrap();
    assert!(lookup(&dir, "k1").is_none());
    // A record that names another key.
    put(&dir, "k2", "run-2", 1, DEFAULT_MAX_BYTES);
    std::fs::rename(dir.join("k2"), dir.join("k3")).unwrap();
    assert!(lookup(&dir, "k3").is_none());
    // A later store of a key replaces the entry.
    put(&dir, "k4", "run-4", 1, DEFAULT_MAX_BYTES);
    put(&dir, "k4", "run-5", 1, DEFAULT_MAX_BYTES);
    assert_eq!(lookup(&dir, "k4").unwrap().0.run_id, "run-5");
}

#[test]
fn the_store_keeps_to_its_bound_least_recently_used_first() {
    let state = tempfile::tempdir().unwrap();
    let dir = store_dir(state.path());
    let old = SystemTime::now() - Duration::from_secs(3600);
    for (i, key) in ["a", "b", "c"].iter().enumerate() {
        put(&dir, key, "r", 1000, DEFAULT_MAX_BYTES);
        let file = std::fs::File::options()
            .write(true)
            .open(dir.join(key).join(RECORD_FILE))
            .unwrap();
        file.set_modified(old + Duration::from_secs(i as u64 * 60))
            .unwrap();
    }
    // `a` is used: `b` is now the least recently used.
    assert!(lookup(&dir, "a").is_some());
    let one = entries(&dir).unwrap()[0].bytes;
    assert_eq!(evict(&dir, 2 * one + one / 2).unwrap(), 1);
    assert!(!dir.join("b").exists());
    assert!(dir.join("a").exists() && dir.join("c").exists());
    // A store trims too.
    put(&dir, "d", "r", 1000, 2 * one + one / 2);
    assert!(!dir.join("c").exists(), "c was the least recently used");
    assert!(dir.join("a").exists() && dir.join("d").exists());
    // A garbage entry is removed by a listing.
    std::fs::create_dir_all(dir.join("zz")).unwrap();
    std::fs::write(dir.join("zz").join(RECORD_FILE), "nope").unwrap();
    assert_eq!(entries(&dir).unwrap().len(), 2);
    assert!(!dir.join("zz").exists());
}

#[test]
fn clear_empties_the_store() {
    let state = tempfile::tempdir().unwrap();
    let dir = store_dir(state.path());
    assert_eq!(clear(&dir).unwrap(), Cleared::default(), "missing store");
    put(&dir, "a", "r", 10, DEFAULT_MAX_BYTES);
    put(&dir, "b", "r", 10, DEFAULT_MAX_BYTES);
    let cleared = clear(&dir).unwrap();
    assert_eq!(cleared.entries, 2);
    assert!(cleared.bytes >= 50);
    assert!(lookup(&dir, "a").is_none());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}
