import pytest

from tasksapi import migrate


def test_shipped_migrations_are_ordered_and_named():
    found = migrate.discover()
    versions = [m.version for m in found]
    assert versions == sorted(versions) and len(versions) >= 2
    assert all(m.sql.strip() for m in found)
    assert len({m.checksum for m in found}) == len(found)


def test_migrations_dir_from_env(tmp_path, monkeypatch):
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "README.md").write_text("ignored")
    monkeypatch.setenv("MIGRATIONS_DIR", str(tmp_path))
    assert [(m.version, m.name) for m in migrate.discover()] == [("0001", "a")]


@pytest.mark.parametrize("files, message", [
    ({"1_a.sql": ""}, "bad migration file name"),
    ({"0001_A.sql": ""}, "bad migration file name"),
    ({"0001_a.sql": "", "0001_b.sql": ""}, "duplicate migration version"),
])
def test_bad_migration_files(tmp_path, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(migrate.MigrationError, match=message):
        migrate.discover(tmp_path)


def test_missing_directory(tmp_path):
    with pytest.raises(migrate.MigrationError, match="does not exist"):
        migrate.discover(tmp_path / "nope")


def test_cli_reports_missing_database_url(monkeypatch, capsys):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert migrate.main([]) == 2
    assert "DATABASE_URL is not set" in capsys.readouterr().err


@pytest.mark.parametrize("failures, wait, connected, sleeps", [
    (0, 0, True, []),
    (2, 10, True, [0.25, 0.5]),
    (1, 0, False, []),
    (9, 2, False, [0.25, 0.5, 1.0]),
])
def test_connect_waits_for_the_database(monkeypatch, failures, wait, connected, sleeps):
    clock = {"now": 0.0}
    slept = []
    attempts = iter(range(100))

    def fake_connect(url, connect_timeout):
        if next(attempts) < failures:
            raise migrate.psycopg.OperationalError("not up yet")
        return "conn"

    def fake_sleep(seconds):
        slept.append(seconds)
        clock["now"] += seconds

    monkeypatch.setattr(migrate.psycopg, "connect", fake_connect)
    monkeypatch.setattr(migrate.time, "monotonic", lambda: clock["now"])
    if connected:
        assert migrate.connect("postgresql://x", wait, fake_sleep) == "conn"
    else:
        with pytest.raises(migrate.psycopg.OperationalError):
            migrate.connect("postgresql://x", wait, fake_sleep)
    assert slept == sleeps
