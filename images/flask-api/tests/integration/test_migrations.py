import threading

import psycopg
import pytest

from tasksapi import migrate

ALL = [m.version for m in migrate.discover()]


def tables(url):
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() ORDER BY 1").fetchall()
    return [r[0] for r in rows]


def test_apply_then_reapply_is_a_no_op(schema_url):
    assert migrate.apply_url(schema_url) == ALL
    assert tables(schema_url) == ["projects", "schema_migrations", "tasks"]
    assert migrate.apply_url(schema_url) == []
    with psycopg.connect(schema_url) as conn:
        recorded = conn.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
    assert [r[0] for r in recorded] == ALL


def test_applies_only_what_is_pending(schema_url):
    migrations = migrate.discover()
    assert migrate.apply_url(schema_url, migrations[:1]) == ALL[:1]
    assert migrate.apply_url(schema_url, migrations) == ALL[1:]


def test_edited_migration_is_refused(schema_url):
    migrations = migrate.discover()
    migrate.apply_url(schema_url, migrations)
    edited = [migrate.Migration(m.version, m.name, m.sql + "\n-- edited") for m in migrations]
    with pytest.raises(migrate.MigrationError, match="changed after it was applied"):
        migrate.apply_url(schema_url, edited)


def test_failing_migration_leaves_nothing_behind(schema_url):
    broken = migrate.discover() + [migrate.Migration("9999", "broken", "SELEC nonsense")]
    with pytest.raises(psycopg.errors.SyntaxError):
        migrate.apply_url(schema_url, broken)
    assert tables(schema_url) == []


def test_concurrent_starters_apply_once(schema_url):
    results, errors = [], []

    def run():
        try:
            results.append(migrate.apply_url(schema_url))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert sorted(results, key=len) == [[], [], ALL]


@pytest.mark.parametrize("args, expected", [
    (["--status"], "0001_create_projects: pending"),
    ([], f"applied {len(ALL)} migration(s)"),
])
def test_cli(schema_url, monkeypatch, capsys, args, expected):
    monkeypatch.setenv("DATABASE_URL", schema_url)
    assert migrate.main(args) == 0
    assert expected in capsys.readouterr().out


def test_cli_status_after_apply(migrated_url, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", migrated_url)
    assert migrate.main(["--status"]) == 0
    assert capsys.readouterr().out.count(": applied") == len(ALL)
