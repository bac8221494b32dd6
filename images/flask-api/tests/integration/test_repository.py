import psycopg
import pytest

from tasksapi import repository as repo
from tasksapi.errors import Conflict, NotFound
from tasksapi.repository import PROJECTS, TASKS


@pytest.fixture
def project(conn):
    return repo.create(conn, PROJECTS, {"name": "Apollo", "description": None})


def add_task(conn, project, **values):
    values = {"title": "t", "status": "todo", "priority": 3, **values,
              "project_id": project["id"]}
    return repo.create(conn, TASKS, values)


def test_create_sets_version_and_timestamps(project):
    assert project["version"] == 1
    assert project["created_at"] == project["updated_at"]


def test_update_bumps_version(conn, project):
    row = repo.update(conn, PROJECTS, project["id"], {"description": "moon"}, 1)
    assert (row["version"], row["description"]) == (2, "moon")
    assert row["updated_at"] >= project["updated_at"]


def test_stale_update_conflicts(conn, project):
    repo.update(conn, PROJECTS, project["id"], {"description": "a"}, 1)
    with pytest.raises(Conflict) as caught:
        repo.update(conn, PROJECTS, project["id"], {"description": "b"}, 1)
    assert caught.value.details == [{"expected_version": 1, "current_version": 2}]


@pytest.mark.parametrize("action", [
    lambda conn: repo.get(conn, PROJECTS, 999),
    lambda conn: repo.update(conn, PROJECTS, 999, {"name": "x"}, 1),
    lambda conn: repo.delete(conn, TASKS, 999),
    lambda conn: repo.ensure_project(conn, 999),
])
def test_missing_rows_are_not_found(conn, action):
    with pytest.raises(NotFound):
        action(conn)


def test_project_names_are_unique_ignoring_case(conn, project):
    with pytest.raises(psycopg.errors.UniqueViolation):
        repo.create(conn, PROJECTS, {"name": "APOLLO"})


@pytest.mark.parametrize("values", [
    {"status": "lost"}, {"priority": 0}, {"title": ""},
])
def test_database_constraints_back_the_validation(conn, project, values):
    with pytest.raises(psycopg.errors.CheckViolation):
        add_task(conn, project, **values)


def test_task_needs_an_existing_project(conn):
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        add_task(conn, {"id": 12345})


def test_deleting_a_project_deletes_its_tasks(conn, project):
    task = add_task(conn, project)
    repo.delete(conn, PROJECTS, project["id"], expected_version=1)
    with pytest.raises(NotFound):
        repo.get(conn, TASKS, task["id"])


def test_list_page_filters_and_counts(conn, project):
    other = repo.create(conn, PROJECTS, {"name": "Gemini"})
    for i in range(5):
        add_task(conn, project, title=f"task {i}", status="done" if i % 2 else "todo")
    add_task(conn, other, title="elsewhere")
    filters = [("project_id", "=", project["id"]), ("status", "=", "todo")]
    rows, total = repo.list_page(conn, TASKS, filters, [("id", "DESC")], 2, 0)
    assert total == 3
    assert [r["title"] for r in rows] == ["task 4", "task 2"]


def test_contains_filter_matches_wildcards_literally(conn, project):
    add_task(conn, project, title="100% done")
    add_task(conn, project, title="1000 done")
    rows, total = repo.list_page(conn, TASKS, [("title", "contains", "0%")], [], 10, 0)
    assert (total, [r["title"] for r in rows]) == (1, ["100% done"])
