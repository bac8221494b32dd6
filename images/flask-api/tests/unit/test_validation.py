import datetime as dt

import pytest

from tasksapi import validation as v
from tasksapi.errors import BadRequest, PreconditionRequired, ValidationFailed


def test_project_create_defaults_and_trimming():
    values, version = v.validate_body({"name": "  Apollo "}, v.PROJECT_FIELDS)
    assert values == {"name": "Apollo", "description": None}
    assert version is None


def test_task_create_defaults():
    values, _ = v.validate_body({"title": "write tests"}, v.TASK_FIELDS)
    assert values == {"title": "write tests", "status": "todo", "priority": 3,
                      "due_date": None}


def test_task_create_full():
    values, _ = v.validate_body(
        {"title": "t", "status": "done", "priority": 5, "due_date": "2030-01-31"},
        v.TASK_FIELDS)
    assert values["due_date"] == dt.date(2030, 1, 31)


@pytest.mark.parametrize("fields, payload, field, message", [
    (v.PROJECT_FIELDS, {}, "name", "is required"),
    (v.PROJECT_FIELDS, {"name": ""}, "name", "must not be blank"),
    (v.PROJECT_FIELDS, {"name": "   "}, "name", "must not be blank"),
    (v.PROJECT_FIELDS, {"name": 3}, "name", "must be a string"),
    (v.PROJECT_FIELDS, {"name": None}, "name", "must not be null"),
    (v.PROJECT_FIELDS, {"name": "x" * 101}, "name", "at most 100"),
    (v.PROJECT_FIELDS, {"name": "a", "owner": "b"}, "owner", "unknown field"),
    (v.PROJECT_FIELDS, {"name": "a", "version": 1}, "version", "unknown field"),
    (v.TASK_FIELDS, {"title": "t", "status": "blocked"}, "status", "must be one of"),
    (v.TASK_FIELDS, {"title": "t", "priority": 0}, "priority", ">= 1"),
    (v.TASK_FIELDS, {"title": "t", "priority": 6}, "priority", "<= 5"),
    (v.TASK_FIELDS, {"title": "t", "priority": "2"}, "priority", "must be an integer"),
    (v.TASK_FIELDS, {"title": "t", "priority": True}, "priority", "must be an integer"),
    (v.TASK_FIELDS, {"title": "t", "due_date": "31/01/2030"}, "due_date", "YYYY-MM-DD"),
    (v.TASK_FIELDS, {"title": "t", "due_date": 20300131}, "due_date", "YYYY-MM-DD"),
])
def test_create_field_errors(fields, payload, field, message):
    with pytest.raises(ValidationFailed) as caught:
        v.validate_body(payload, fields)
    assert caught.value.status == 422
    assert any(d["field"] == field and message in d["message"]
               for d in caught.value.details), caught.value.details


def test_all_field_errors_reported_together():
    with pytest.raises(ValidationFailed) as caught:
        v.validate_body({"status": "x", "priority": 9}, v.TASK_FIELDS)
    assert {d["field"] for d in caught.value.details} == {"title", "status", "priority"}


@pytest.mark.parametrize("payload", [[], "text", 3, None])
def test_body_must_be_object(payload):
    with pytest.raises(BadRequest):
        v.validate_body(payload, v.PROJECT_FIELDS)


@pytest.mark.parametrize("payload, values, version", [
    ({"status": "doing"}, {"status": "doing"}, None),
    ({"priority": 1, "version": 4}, {"priority": 1}, 4),
    ({"due_date": None}, {"due_date": None}, None),
])
def test_partial_update(payload, values, version):
    assert v.validate_body(payload, v.TASK_FIELDS, partial=True) == (values, version)


@pytest.mark.parametrize("payload, field", [
    ({}, None),
    ({"version": 2}, None),
    ({"title": "t", "version": 0}, "version"),
    ({"title": "t", "version": "2"}, "version"),
])
def test_partial_update_errors(payload, field):
    with pytest.raises(ValidationFailed) as caught:
        v.validate_body(payload, v.TASK_FIELDS, partial=True)
    assert caught.value.details[0]["field"] == field


@pytest.mark.parametrize("args, expected", [
    ({}, (20, 0)),
    ({"limit": "5"}, (5, 0)),
    ({"limit": "100", "offset": "40"}, (100, 40)),
    ({"limit": "", "offset": ""}, (20, 0)),
])
def test_pagination(args, expected):
    assert v.parse_pagination(args) == expected


@pytest.mark.parametrize("args", [
    {"limit": "0"}, {"limit": "101"}, {"limit": "ten"}, {"offset": "-1"}, {"limit": "1.5"},
])
def test_pagination_errors(args):
    with pytest.raises(BadRequest):
        v.parse_pagination(args)


def test_pagination_respects_configured_maximum():
    assert v.parse_pagination({}, max_page_size=10) == (10, 0)
    with pytest.raises(BadRequest):
        v.parse_pagination({"limit": "11"}, max_page_size=10)


@pytest.mark.parametrize("raw, expected", [
    (None, [("id", "ASC")]),
    ("name", [("name", "ASC")]),
    ("-created_at,name", [("created_at", "DESC"), ("name", "ASC")]),
    ("+name", [("name", "ASC")]),
])
def test_sort(raw, expected):
    assert v.parse_sort(raw, {"id", "name", "created_at"}, "id") == expected


@pytest.mark.parametrize("raw", ["password", "name,name", "-", "name;drop"])
def test_sort_errors(raw):
    with pytest.raises(BadRequest):
        v.parse_sort(raw, {"id", "name"}, "id")


@pytest.mark.parametrize("args, expected", [
    ({}, []),
    ({"status": "done"}, [("status", "=", "done")]),
    ({"priority": "2", "q": "bug"}, [("priority", "=", 2), ("title", "contains", "bug")]),
    ({"due_before": "2030-01-01"}, [("due_date", "<=", dt.date(2030, 1, 1))]),
])
def test_task_filters(args, expected):
    assert v.parse_task_filters(args) == expected


@pytest.mark.parametrize("args", [
    {"status": "lost"}, {"priority": "9"}, {"due_before": "tomorrow"}, {"q": "x" * 101},
])
def test_task_filter_errors(args):
    with pytest.raises(BadRequest):
        v.parse_task_filters(args)


def test_project_filters():
    assert v.parse_project_filters({"q": "apo"}) == [("name", "contains", "apo")]
    assert v.parse_project_filters({}) == []


@pytest.mark.parametrize("header, expected", [
    (None, None), ('"3"', 3), ('W/"12"', 12), ("*", "*"), (' "7" ', 7),
])
def test_parse_if_match(header, expected):
    assert v.parse_if_match(header) == expected


@pytest.mark.parametrize("header", ["3", '"abc"', '"1", "2"'])
def test_parse_if_match_errors(header):
    with pytest.raises(BadRequest):
        v.parse_if_match(header)


@pytest.mark.parametrize("header, body, required, expected", [
    ('"3"', None, True, 3),
    (None, 4, True, 4),
    ('"5"', 5, True, 5),
    ("*", None, True, None),
    (None, None, False, None),
])
def test_expected_version(header, body, required, expected):
    assert v.expected_version(header, body, required) == expected


def test_expected_version_required():
    with pytest.raises(PreconditionRequired):
        v.expected_version(None, None)


def test_expected_version_disagreement():
    with pytest.raises(BadRequest):
        v.expected_version('"3"', 4)


def test_etag_round_trip():
    assert v.parse_if_match(v.etag_for(9)) == 9
