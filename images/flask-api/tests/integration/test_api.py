"""The Flask app over a real database (pool included), through its test client."""

import pytest


@pytest.fixture
def project(client):
    response = client.post("/projects", json={"name": "Apollo", "description": "moon"})
    assert response.status_code == 201
    return response.get_json()


def make_tasks(client, project_id, specs):
    for spec in specs:
        assert client.post(f"/projects/{project_id}/tasks", json=spec).status_code == 201


def test_healthz(client):
    assert client.get("/healthz").get_json() == {"status": "ok", "database": "ok"}


def test_create_answers_location_and_etag(client):
    response = client.post("/projects", json={"name": "Gemini"})
    body = response.get_json()
    assert response.headers["Location"] == f"/projects/{body['id']}"
    assert response.headers["ETag"] == '"1"'
    assert client.get(response.headers["Location"]).get_json() == body


def test_duplicate_name_is_409(client, project):
    response = client.post("/projects", json={"name": "apollo"})
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "duplicate"


@pytest.mark.parametrize("query, titles, total", [
    ("", ["a1", "b2", "c3", "d1"], 4),
    ("?status=done", ["b2", "d1"], 2),
    ("?priority=1", ["a1", "d1"], 2),
    ("?q=C", ["c3"], 1),
    ("?due_before=2030-06-01", ["a1", "b2"], 2),
    ("?limit=2&offset=1", ["b2", "c3"], 4),
    ("?sort=-priority,title&limit=3", ["c3", "b2", "a1"], 4),
    ("?status=todo&priority=1", ["a1"], 1),
    ("?offset=10", [], 4),
])
def test_list_tasks_filters_and_pages(client, project, query, titles, total):
    make_tasks(client, project["id"], [
        {"title": "a1", "priority": 1, "due_date": "2030-01-01"},
        {"title": "b2", "priority": 2, "status": "done", "due_date": "2030-05-01"},
        {"title": "c3", "priority": 3, "due_date": "2031-01-01"},
        {"title": "d1", "priority": 1, "status": "done"},
    ])
    other = client.post("/projects", json={"name": "Other"}).get_json()
    make_tasks(client, other["id"], [{"title": "a1 elsewhere"}])
    body = client.get(f"/projects/{project['id']}/tasks{query}").get_json()
    assert [t["title"] for t in body["items"]] == titles
    assert body["total"] == total


def test_list_projects_paginates(client):
    for name in ("alpha", "beta", "gamma", "alphabet"):
        client.post("/projects", json={"name": name})
    body = client.get("/projects?q=alpha&sort=-name&limit=1").get_json()
    assert (body["total"], body["limit"], body["offset"]) == (2, 1, 0)
    assert [p["name"] for p in body["items"]] == ["alphabet"]


@pytest.mark.parametrize("headers, body", [
    ({"If-Match": '"1"'}, {"description": "mars"}),
    ({}, {"description": "mars", "version": 1}),
    ({"If-Match": "*"}, {"description": "mars"}),
])
def test_update_with_version(client, project, headers, body):
    response = client.patch(f"/projects/{project['id']}", json=body, headers=headers)
    assert response.status_code == 200
    assert response.headers["ETag"] == '"2"'
    assert response.get_json()["description"] == "mars"


def test_stale_update_is_409_and_changes_nothing(client, project):
    url = f"/projects/{project['id']}"
    assert client.patch(url, json={"name": "A2", "version": 1}).status_code == 200
    response = client.patch(url, json={"name": "A3"}, headers={"If-Match": '"1"'})
    assert response.status_code == 409
    error = response.get_json()["error"]
    assert error["code"] == "version_conflict"
    assert error["details"] == [{"expected_version": 1, "current_version": 2}]
    assert client.get(url).get_json()["name"] == "A2"


def test_put_replaces_the_task(client, project):
    task = client.post(f"/projects/{project['id']}/tasks",
                       json={"title": "t", "priority": 5, "due_date": "2030-01-01"}).get_json()
    response = client.put(f"/tasks/{task['id']}", json={"title": "new", "version": 1})
    body = response.get_json()
    assert (body["title"], body["priority"], body["due_date"], body["status"]) == \
        ("new", 3, None, "todo")


@pytest.mark.parametrize("method, path, kwargs", [
    ("get", "/projects/999", {}),
    ("patch", "/projects/999", {"json": {"name": "x", "version": 1}}),
    ("delete", "/projects/999", {}),
    ("get", "/projects/999/tasks", {}),
    ("post", "/projects/999/tasks", {"json": {"title": "t"}}),
    ("get", "/tasks/999", {}),
    ("patch", "/tasks/999", {"json": {"title": "x", "version": 1}}),
    ("delete", "/tasks/999", {}),
])
def test_missing_resources_are_404(client, method, path, kwargs):
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_delete_with_stale_etag_is_409(client, project):
    url = f"/projects/{project['id']}"
    client.patch(url, json={"description": "x", "version": 1})
    assert client.delete(url, headers={"If-Match": '"1"'}).status_code == 409
    assert client.delete(url, headers={"If-Match": '"2"'}).status_code == 204
    assert client.get(url).status_code == 404


def test_deleting_a_project_deletes_its_tasks(client, project):
    task = client.post(f"/projects/{project['id']}/tasks", json={"title": "t"}).get_json()
    assert client.delete(f"/projects/{project['id']}").status_code == 204
    assert client.get(f"/tasks/{task['id']}").status_code == 404
