"""The HTTP layer without a database: a stub pool stands in for PostgreSQL.

Requests that fail validation must be answered before a connection is taken,
so the stub fails the test if one is asked for unexpectedly.
"""

import contextlib
import subprocess
import sys
from pathlib import Path

import pytest
from psycopg_pool import PoolTimeout

from tasksapi import create_app
from tasksapi.config import Config


APP_ROOT = Path(__file__).resolve().parents[2]


class StubPool:
    def __init__(self, failure=None):
        self.failure = failure
        self.taken = 0

    @contextlib.contextmanager
    def connection(self, timeout=None):
        self.taken += 1
        if self.failure is not None:
            raise self.failure
        yield StubConnection()


class StubConnection:
    def execute(self, query, params=None):
        return self

    def fetchone(self):
        return (1,)


@pytest.fixture
def pool():
    return StubPool(failure=AssertionError("no connection should be taken"))


@pytest.fixture
def client(pool):
    app = create_app(Config(database_url="postgresql://unused/x"), pool=pool)
    return app.test_client()


def assert_error(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    error = response.get_json()["error"]
    assert (error["status"], error["code"]) == (status, code)
    assert error["message"]
    return error


@pytest.mark.parametrize("method, path, kwargs, status, code", [
    ("post", "/projects", {"data": "{", "content_type": "application/json"},
     400, "bad_request"),
    ("post", "/projects", {"json": ["a"]}, 400, "bad_request"),
    ("post", "/projects", {"data": "name=x"}, 415, "unsupported_media_type"),
    ("post", "/projects", {"json": {}}, 422, "validation_failed"),
    ("post", "/projects/1/tasks", {"json": {"title": "t", "status": "nope"}},
     422, "validation_failed"),
    ("patch", "/projects/1", {"json": {"name": "n"}}, 428, "precondition_required"),
    ("patch", "/tasks/1", {"json": {"title": "n"}, "headers": {"If-Match": "bad"}},
     400, "bad_request"),
    ("put", "/tasks/1", {"json": {"status": "done"}, "headers": {"If-Match": '"1"'}},
     422, "validation_failed"),
    ("get", "/projects?limit=0", {}, 400, "bad_request"),
    ("get", "/projects?sort=secret", {}, 400, "bad_request"),
    ("get", "/projects/1/tasks?status=lost", {}, 400, "bad_request"),
    ("get", "/nowhere", {}, 404, "not_found"),
    ("get", "/projects/abc", {}, 404, "not_found"),
    ("delete", "/projects", {}, 405, "method_not_allowed"),
    ("delete", "/tasks/1", {"headers": {"If-Match": "x"}}, 400, "bad_request"),
])
def test_rejected_before_the_database(client, pool, method, path, kwargs, status, code):
    response = getattr(client, method)(path, **kwargs)
    assert_error(response, status, code)
    assert pool.taken == 0


def test_validation_details_name_the_fields(client):
    error = assert_error(client.post("/projects", json={"name": "", "x": 1}),
                         422, "validation_failed")
    assert {d["field"] for d in error["details"]} == {"name", "x"}


@pytest.mark.parametrize("method, path, kwargs", [
    ("get", "/projects", {}),
    ("post", "/projects", {"json": {"name": "a"}}),
    ("get", "/tasks/3", {}),
])
def test_database_unavailable_is_503(method, path, kwargs):
    app = create_app(Config(database_url="postgresql://unused/x"),
                     pool=StubPool(failure=PoolTimeout("no connection")))
    response = getattr(app.test_client(), method)(path, **kwargs)
    assert_error(response, 503, "database_unavailable")


@pytest.mark.parametrize("failure, status, body", [
    (None, 200, {"status": "ok", "database": "ok"}),
    (PoolTimeout("x"), 503, {"status": "unavailable", "database": "error",
                             "detail": "PoolTimeout"}),
])
def test_healthz(failure, status, body):
    app = create_app(Config(database_url="postgresql://unused/x"), pool=StubPool(failure))
    response = app.test_client().get("/healthz")
    assert (response.status_code, response.get_json()) == (status, body)


def test_unexpected_error_is_500_json(client):
    app = client.application

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret detail")

    error = assert_error(client.get("/boom"), 500, "internal_error")
    assert "secret" not in error["message"]


def test_wsgi_refuses_to_start_without_database_url():
    env = {"PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", "import tasksapi.wsgi"],
                            env=env, capture_output=True, text=True, timeout=60,
                            cwd=APP_ROOT)
    assert result.returncode == 4
    assert "configuration error: DATABASE_URL is not set" in result.stderr
