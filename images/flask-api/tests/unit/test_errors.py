import pytest
from psycopg import OperationalError
from psycopg import errors as pg_errors
from psycopg_pool import PoolTimeout
from werkzeug.exceptions import MethodNotAllowed, NotFound as WerkzeugNotFound

from tasksapi import errors


@pytest.mark.parametrize("exc, status, code", [
    (errors.ValidationFailed("x"), 422, "validation_failed"),
    (errors.Conflict("x"), 409, "conflict"),
    (WerkzeugNotFound(), 404, "not_found"),
    (MethodNotAllowed(), 405, "method_not_allowed"),
    (pg_errors.UniqueViolation("dup"), 409, "duplicate"),
    (pg_errors.ForeignKeyViolation("fk"), 404, "not_found"),
    (pg_errors.CheckViolation("check"), 422, "validation_failed"),
    (pg_errors.NotNullViolation("null"), 422, "validation_failed"),
    (PoolTimeout("busy"), 503, "database_unavailable"),
    (OperationalError("gone"), 503, "database_unavailable"),
    (RuntimeError("boom"), 500, "internal_error"),
])
def test_from_exception(exc, status, code):
    err = errors.from_exception(exc)
    assert (err.status, err.code) == (status, code)
    body = err.to_dict()["error"]
    assert body["status"] == status and body["code"] == code and body["message"]


def test_internal_error_hides_details():
    assert "secret" not in errors.from_exception(RuntimeError("secret")).message


def test_error_shape_with_details():
    err = errors.ValidationFailed("bad", details=[{"field": "name", "message": "m"}])
    assert err.to_dict() == {"error": {
        "status": 422, "code": "validation_failed", "message": "bad",
        "details": [{"field": "name", "message": "m"}]}}


def test_overrides():
    err = errors.ApiError("teapot", status=418, code="teapot")
    assert (err.status, err.code) == (418, "teapot")
