"""HTTP routes: /healthz, /projects and /projects/<id>/tasks, /tasks/<id>."""

import json

from flask import Blueprint, current_app, jsonify, request, url_for

from . import repository as repo
from . import validation as v
from .errors import ApiError, BadRequest
from .repository import PROJECTS, TASKS

api = Blueprint("api", __name__)


def _pool():
    return current_app.extensions["tasksapi.pool"]


def _max_page():
    return current_app.config["TASKSAPI"].max_page_size


def json_body():
    if not request.is_json:
        raise ApiError("the request body must be application/json",
                       status=415, code="unsupported_media_type")
    try:
        return json.loads(request.get_data(cache=False) or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None


def one(row, status=200, location=None):
    response = jsonify(repo.to_json(row))
    response.status_code = status
    response.headers["ETag"] = v.etag_for(row["version"])
    if location:
        response.headers["Location"] = location
    return response


def page(rows, total, limit, offset):
    return jsonify({
        "items": [repo.to_json(r) for r in rows],
        "total": total, "limit": limit, "offset": offset,
    })


@api.get("/healthz")
def healthz():
    try:
        with _pool().connection(timeout=2) as conn:
            conn.execute("SELECT 1").fetchone()
    except Exception as exc:  # any failure means "not ready"
        return jsonify({"status": "unavailable", "database": "error",
                        "detail": type(exc).__name__}), 503
    return jsonify({"status": "ok", "database": "ok"})


# --- projects ---------------------------------------------------------------

@api.get("/projects")
def list_projects():
    limit, offset = v.parse_pagination(request.args, _max_page())
    order = v.parse_sort(request.args.get("sort"), PROJECTS.sortable, PROJECTS.default_sort)
    filters = v.parse_project_filters(request.args)
    with _pool().connection() as conn:
        rows, total = repo.list_page(conn, PROJECTS, filters, order, limit, offset)
    return page(rows, total, limit, offset)


@api.post("/projects")
def create_project():
    values, _ = v.validate_body(json_body(), v.PROJECT_FIELDS)
    with _pool().connection() as conn:
        row = repo.create(conn, PROJECTS, values)
    return one(row, 201, url_for("api.get_project", project_id=row["id"]))


@api.get("/projects/<int:project_id>")
def get_project(project_id):
    with _pool().connection() as conn:
        return one(repo.get(conn, PROJECTS, project_id))


@api.route("/projects/<int:project_id>", methods=["PATCH", "PUT"])
def update_project(project_id):
    values, version = v.validate_body(json_body(), v.PROJECT_FIELDS,
                                      partial=request.method == "PATCH",
                                      allow_version=True)
    expected = v.expected_version(request.headers.get("If-Match"), version)
    with _pool().connection() as conn:
        return one(repo.update(conn, PROJECTS, project_id, values, expected))


@api.delete("/projects/<int:project_id>")
def delete_project(project_id):
    expected = v.expected_version(request.headers.get("If-Match"), None, required=False)
    with _pool().connection() as conn:
        repo.delete(conn, PROJECTS, project_id, expected)
    return "", 204


# --- tasks ------------------------------------------------------------------

@api.get("/projects/<int:project_id>/tasks")
def list_tasks(project_id):
    limit, offset = v.parse_pagination(request.args, _max_page())
    order = v.parse_sort(request.args.get("sort"), TASKS.sortable, TASKS.default_sort)
    filters = [("project_id", "=", project_id)] + v.parse_task_filters(request.args)
    with _pool().connection() as conn:
        repo.ensure_project(conn, project_id)
        rows, total = repo.list_page(conn, TASKS, filters, order, limit, offset)
    return page(rows, total, limit, offset)


@api.post("/projects/<int:project_id>/tasks")
def create_task(project_id):
    values, _ = v.validate_body(json_body(), v.TASK_FIELDS)
    values["project_id"] = project_id
    with _pool().connection() as conn:
        repo.ensure_project(conn, project_id)
        row = repo.create(conn, TASKS, values)
    return one(row, 201, url_for("api.get_task", task_id=row["id"]))


@api.get("/tasks/<int:task_id>")
def get_task(task_id):
    with _pool().connection() as conn:
        return one(repo.get(conn, TASKS, task_id))


@api.route("/tasks/<int:task_id>", methods=["PATCH", "PUT"])
def update_task(task_id):
    values, version = v.validate_body(json_body(), v.TASK_FIELDS,
                                      partial=request.method == "PATCH",
                                      allow_version=True)
    expected = v.expected_version(request.headers.get("If-Match"), version)
    with _pool().connection() as conn:
        return one(repo.update(conn, TASKS, task_id, values, expected))


@api.delete("/tasks/<int:task_id>")
def delete_task(task_id):
    expected = v.expected_version(request.headers.get("If-Match"), None, required=False)
    with _pool().connection() as conn:
        repo.delete(conn, TASKS, task_id, expected)
    return "", 204
