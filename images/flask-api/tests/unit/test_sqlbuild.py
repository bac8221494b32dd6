import pytest

from tasksapi import sqlbuild

COLS = ("id", "name")


def render(query_params):
    query, params = query_params
    return query.as_string(None), params


@pytest.mark.parametrize("raw, escaped", [
    ("plain", "plain"), ("50%", "50\\%"), ("a_b", "a\\_b"), ("c:\\x", "c:\\\\x"),
])
def test_escape_like(raw, escaped):
    assert sqlbuild.escape_like(raw) == escaped


@pytest.mark.parametrize("filters, where, params", [
    ([], "", []),
    ([("status", "=", "done")], ' WHERE "status" = %s', ["done"]),
    ([("name", "contains", "50%")], ' WHERE "name" ILIKE %s', ["%50\\%%"]),
    ([("project_id", "=", 1), ("due_date", "<=", "2030-01-01")],
     ' WHERE "project_id" = %s AND "due_date" <= %s', [1, "2030-01-01"]),
])
def test_build_where(filters, where, params):
    assert render(sqlbuild.build_where(filters)) == (where, params)


def test_build_where_rejects_unknown_operator():
    with pytest.raises(ValueError):
        sqlbuild.build_where([("name", "; DROP", "x")])


@pytest.mark.parametrize("kwargs, sql, params", [
    ({}, 'SELECT "id", "name" FROM "projects" ORDER BY "id" ASC', []),
    ({"filters": [("name", "=", "a")], "order": [("name", "DESC")], "limit": 10, "offset": 20},
     'SELECT "id", "name" FROM "projects" WHERE "name" = %s '
     'ORDER BY "name" DESC, "id" ASC LIMIT %s OFFSET %s', ["a", 10, 20]),
    ({"order": [("id", "DESC")]},
     'SELECT "id", "name" FROM "projects" ORDER BY "id" DESC', []),
])
def test_build_select(kwargs, sql, params):
    assert render(sqlbuild.build_select("projects", COLS, **kwargs)) == (sql, params)


def test_build_count():
    assert render(sqlbuild.build_count("tasks", [("status", "=", "todo")])) == (
        'SELECT count(*) AS total FROM "tasks" WHERE "status" = %s', ["todo"])


def test_build_insert():
    assert render(sqlbuild.build_insert("projects", {"name": "a", "description": None},
                                        COLS)) == (
        'INSERT INTO "projects" ("name", "description") VALUES (%s, %s) '
        'RETURNING "id", "name"', ["a", None])


@pytest.mark.parametrize("expected_version, tail, extra", [
    (3, ' WHERE id = %s AND version = %s RETURNING "id", "name"', [3]),
    (None, ' WHERE id = %s RETURNING "id", "name"', []),
])
def test_build_update(expected_version, tail, extra):
    sql, params = render(sqlbuild.build_update("projects", 7, {"name": "b"}, COLS,
                                               expected_version))
    assert sql == ('UPDATE "projects" SET "name" = %s, version = version + 1, '
                   'updated_at = now()' + tail)
    assert params == ["b", 7] + extra


def test_build_update_needs_changes():
    with pytest.raises(ValueError):
        sqlbuild.build_update("projects", 1, {}, COLS)


@pytest.mark.parametrize("expected_version, sql, params", [
    (None, 'DELETE FROM "tasks" WHERE id = %s RETURNING id', [5]),
    (2, 'DELETE FROM "tasks" WHERE id = %s AND version = %s RETURNING id', [5, 2]),
])
def test_build_delete(expected_version, sql, params):
    assert render(sqlbuild.build_delete("tasks", 5, expected_version)) == (sql, params)
