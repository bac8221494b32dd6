"""Data access for projects and their tasks (a connection is passed in)."""

import datetime as dt

from . import sqlbuild
from .errors import Conflict, NotFound


class Resource:
    def __init__(self, table, label, columns, sortable, default_sort):
        self.table = table
        self.label = label
        self.columns = columns
        self.sortable = sortable
        self.default_sort = default_sort


PROJECTS = Resource(
    "projects", "project",
    ("id", "name", "description", "version", "created_at", "updated_at"),
    {"id", "name", "created_at", "updated_at"}, "id",
)
TASKS = Resource(
    "tasks", "task",
    ("id", "project_id", "title", "status", "priority", "due_date", "version",
     "created_at", "updated_at"),
    {"id", "title", "status", "priority", "due_date", "created_at", "updated_at"},
    "id",
)


def to_json(row):
    out = {}
    for key, value in row.items():
        if isinstance(value, (dt.datetime, dt.date)):
            value = value.isoformat()
        out[key] = value
    return out


def get(conn, res, key):
    query, params = sqlbuild.build_select(res.table, res.columns, [("id", "=", key)])
    row = conn.execute(query, params).fetchone()
    if row is None:
        raise NotFound(f"{res.label} {key} not found")
    return row


def list_page(conn, res, filters, order, limit, offset):
    query, params = sqlbuild.build_select(res.table, res.columns, filters, order,
                                          limit, offset)
    rows = conn.execute(query, params).fetchall()
    count_query, count_params = sqlbuild.build_count(res.table, filters)
    total = conn.execute(count_query, count_params).fetchone()["total"]
    return rows, total


def create(conn, res, values):
    query, params = sqlbuild.build_insert(res.table, values, res.columns)
    return conn.execute(query, params).fetchone()


def _stale(res, key, expected, current):
    return Conflict(
        f"{res.label} {key} was modified: version {expected} is stale",
        details=[{"expected_version": expected, "current_version": current}],
        code="version_conflict",
    )


def update(conn, res, key, changes, expected_version):
    query, params = sqlbuild.build_update(res.table, key, changes, res.columns,
                                          expected_version)
    row = conn.execute(query, params).fetchone()
    if row is None:
        current = get(conn, res, key)  # raises NotFound
        raise _stale(res, key, expected_version, current["version"])
    return row


def delete(conn, res, key, expected_version=None):
    query, params = sqlbuild.build_delete(res.table, key, expected_version)
    if conn.execute(query, params).fetchone() is None:
        current = get(conn, res, key)  # raises NotFound
        raise _stale(res, key, expected_version, current["version"])


def ensure_project(conn, project_id):
    """404 unless the project exists (locks it so a concurrent delete waits)."""
    row = conn.execute("SELECT id FROM projects WHERE id = %s FOR KEY SHARE",
                       (project_id,)).fetchone()
    if row is None:
        raise NotFound(f"project {project_id} not found")
