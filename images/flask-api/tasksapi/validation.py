"""Validation of JSON bodies, query strings and version preconditions.

Field errors in a body are collected and reported together (422); a body
that is not a JSON object, or a malformed query string, is a 400.
"""

import datetime as dt
import re

from .errors import BadRequest, PreconditionRequired, ValidationFailed

TASK_STATUSES = ("todo", "doing", "done")


class Field:
    def __init__(self, kind, required=False, nullable=False, min_length=None,
                 max_length=None, choices=None, minimum=None, maximum=None,
                 default=None):
        self.kind = kind
        self.required = required
        self.nullable = nullable
        self.min_length = min_length
        self.max_length = max_length
        self.choices = choices
        self.minimum = minimum
        self.maximum = maximum
        self.default = default

    def clean(self, value):
        """Return the cleaned value or raise ValueError with a message."""
        if value is None:
            if self.nullable:
                return None
            raise ValueError("must not be null")
        cleaner = getattr(self, f"_clean_{self.kind}")
        value = cleaner(value)
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"must be one of: {', '.join(self.choices)}")
        return value

    def _clean_string(self, value):
        if not isinstance(value, str):
            raise ValueError("must be a string")
        value = value.strip()
        if self.min_length is not None and len(value) < self.min_length:
            raise ValueError(
                "must not be blank" if self.min_length == 1
                else f"must be at least {self.min_length} characters"
            )
        if self.max_length is not None and len(value) > self.max_length:
            raise ValueError(f"must be at most {self.max_length} characters")
        return value

    def _clean_integer(self, value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be an integer")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"must be >= {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"must be <= {self.maximum}")
        return value

    def _clean_date(self, value):
        if not isinstance(value, str):
            raise ValueError("must be a date string (YYYY-MM-DD)")
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise ValueError("must be a date string (YYYY-MM-DD)") from None


VERSION_FIELD = Field("integer", minimum=1)

PROJECT_FIELDS = {
    "name": Field("string", required=True, min_length=1, max_length=100),
    "description": Field("string", nullable=True, max_length=2000, default=None),
}

TASK_FIELDS = {
    "title": Field("string", required=True, min_length=1, max_length=200),
    "status": Field("string", choices=TASK_STATUSES, default="todo"),
    "priority": Field("integer", minimum=1, maximum=5, default=3),
    "due_date": Field("date", nullable=True, default=None),
}


def validate_body(payload, fields, partial=False, allow_version=None):
    """Validate a decoded JSON body against `fields`.

    For a create (partial=False) required fields must be present and
    defaults fill the others; for an update (partial=True) only the given
    fields are returned, plus an optional integer `version`.
    Returns (values, version) where version is None unless given (a
    `version` key is accepted for updates: allow_version defaults to partial).
    """
    if allow_version is None:
        allow_version = partial
    if not isinstance(payload, dict):
        raise BadRequest("the request body must be a JSON object")
    errors = [{"field": key, "message": "unknown field"} for key in payload
              if key not in fields and not (allow_version and key == "version")]
    values = _clean_fields(payload, fields, partial, errors)
    version = None
    if allow_version and "version" in payload:
        version = _clean_one(VERSION_FIELD, "version", payload["version"], errors)
    if partial and not errors and not values:
        errors.append({"field": None, "message": "no field to update"})
    if errors:
        raise ValidationFailed("the request body is invalid", details=errors)
    return values, version


def _clean_one(field, name, value, errors):
    try:
        return field.clean(value)
    except ValueError as exc:
        errors.append({"field": name, "message": str(exc)})
        return None


def _clean_fields(payload, fields, partial, errors):
    values = {}
    for name, field in fields.items():
        if name in payload:
            values[name] = _clean_one(field, name, payload[name], errors)
        elif field.required and not partial:
            errors.append({"field": name, "message": "is required"})
        elif not partial:
            values[name] = field.default
    return values


# --- query strings -------------------------------------------------------

def _query_int(args, name, default, minimum, maximum):
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"-?\d+", raw):
        raise BadRequest(f"query parameter {name} must be an integer",
                         details=[{"parameter": name, "value": raw}])
    value = int(raw)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise BadRequest(f"query parameter {name} must be {bound}",
                         details=[{"parameter": name, "value": raw}])
    return value


def parse_pagination(args, max_page_size=100, default_limit=20):
    limit = _query_int(args, "limit", min(default_limit, max_page_size), 1, max_page_size)
    offset = _query_int(args, "offset", 0, 0, None)
    return limit, offset


def parse_sort(raw, allowed, default):
    """Parse `sort=-created_at,name` into [(column, "ASC"|"DESC")]."""
    if raw is None or raw.strip() == "":
        raw = default
    order = []
    seen = set()
    for part in raw.split(","):
        part = part.strip()
        direction = "DESC" if part.startswith("-") else "ASC"
        column = part.lstrip("-+")
        if column not in allowed or column in seen:
            raise BadRequest(
                "query parameter sort is invalid",
                details=[{"parameter": "sort", "value": part,
                          "allowed": sorted(allowed)}],
            )
        seen.add(column)
        order.append((column, direction))
    return order


def parse_project_filters(args):
    filters = []
    q = args.get("q")
    if q:
        if len(q) > 100:
            raise BadRequest("query parameter q is too long",
                             details=[{"parameter": "q"}])
        filters.append(("name", "contains", q))
    return filters


def parse_task_filters(args):
    filters = []
    status = args.get("status")
    if status:
        if status not in TASK_STATUSES:
            raise BadRequest(
                "query parameter status is invalid",
                details=[{"parameter": "status", "value": status,
                          "allowed": list(TASK_STATUSES)}],
            )
        filters.append(("status", "=", status))
    priority = _query_int(args, "priority", None, 1, 5)
    if priority is not None:
        filters.append(("priority", "=", priority))
    q = args.get("q")
    if q:
        if len(q) > 100:
            raise BadRequest("query parameter q is too long",
                             details=[{"parameter": "q"}])
        filters.append(("title", "contains", q))
    due_before = args.get("due_before")
    if due_before:
        try:
            filters.append(("due_date", "<=", dt.date.fromisoformat(due_before)))
        except ValueError:
            raise BadRequest(
                "query parameter due_before must be a date (YYYY-MM-DD)",
                details=[{"parameter": "due_before", "value": due_before}],
            ) from None
    return filters


# --- optimistic concurrency ----------------------------------------------

_ETAG = re.compile(r'^(?:W/)?"(\d+)"$')


def etag_for(version):
    return f'"{version}"'


def parse_if_match(header):
    """Return the version named by an If-Match header, "*" or None."""
    if header is None:
        return None
    header = header.strip()
    if header == "*":
        return "*"
    match = _ETAG.match(header)
    if not match:
        raise BadRequest(
            'If-Match must be an ETag of this API such as "3"',
            details=[{"header": "If-Match", "value": header}],
        )
    return int(match.group(1))


def expected_version(if_match, body_version, required=True):
    """Combine the If-Match header and a body `version` into one number.

    Returns the version the client expects, None when any version is fine
    (If-Match: * or, with required=False, nothing given); raises 428 when a
    version is required but absent and 400 when the two disagree.
    """
    header = parse_if_match(if_match)
    if header is not None and header != "*" and body_version is not None \
            and header != body_version:
        raise BadRequest("If-Match and body version disagree",
                         details=[{"header": header, "version": body_version}])
    if body_version is not None:
        return body_version
    if header == "*":
        return None
    if header is None:
        if required:
            raise PreconditionRequired(
                'send If-Match: "<version>" or a "version" field to update'
            )
        return None
    return header
