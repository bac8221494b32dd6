"""A user's journey through the running production service."""


def test_healthz_reports_database(api):
    response = api.get("/healthz")
    assert (response.status, response.json()) == (200, {"status": "ok", "database": "ok"})


def test_project_and_task_journey(api, unique):
    # create a project and three tasks
    created = api.post("/projects", {"name": f"journey-{unique}", "description": "e2e"})
    assert created.status == 201, created.body
    project = created.json()
    location = created.headers["Location"]
    assert api.get(location).json() == project
    for title, status in (("design", "done"), ("build", "doing"), ("ship", "todo")):
        response = api.post(f"/projects/{project['id']}/tasks",
                            {"title": title, "status": status})
        assert response.status == 201, response.body

    # list: the project is found by name, tasks filter and paginate
    listed = api.get(f"/projects?q=journey-{unique}").json()
    assert [p["id"] for p in listed["items"]] == [project["id"]]
    first_page = api.get(f"/projects/{project['id']}/tasks?limit=2&sort=title").json()
    assert first_page["total"] == 3
    assert [t["title"] for t in first_page["items"]] == ["build", "design"]
    todo = api.get(f"/projects/{project['id']}/tasks?status=todo").json()["items"]
    assert [t["title"] for t in todo] == ["ship"]

    # update with the ETag, then a stale update is refused with 409
    task = todo[0]
    etag = api.get(f"/tasks/{task['id']}").headers["ETag"]
    updated = api.patch(f"/tasks/{task['id']}", {"status": "doing"}, headers={"If-Match": etag})
    assert updated.status == 200, updated.body
    assert updated.headers["ETag"] != etag
    stale = api.patch(f"/tasks/{task['id']}", {"status": "done"}, headers={"If-Match": etag})
    assert stale.status == 409
    assert stale.json()["error"]["code"] == "version_conflict"
    assert api.get(f"/tasks/{task['id']}").json()["status"] == "doing"

    # invalid input gets the JSON error shape
    invalid = api.post(f"/projects/{project['id']}/tasks", {"title": "", "priority": 9})
    assert invalid.status == 422
    assert {d["field"] for d in invalid.json()["error"]["details"]} == {"title", "priority"}

    # delete the project: it and its tasks are gone
    assert api.delete(f"/projects/{project['id']}").status == 204
    assert api.get(f"/projects/{project['id']}").status == 404
    assert api.get(f"/tasks/{task['id']}").status == 404
