"""Building parameterised SQL with psycopg.sql: identifiers are quoted,
values always travel as parameters."""

from psycopg import sql

_OPERATORS = {"=": "=", "<=": "<=", ">=": ">=", "contains": "ILIKE"}


def escape_like(value):
    """Escape LIKE wildcards so user text matches literally."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def build_where(filters):
    """[(column, op, value)] -> (Composable, params); empty when no filter."""
    clauses = []
    params = []
    for column, op, value in filters:
        if op not in _OPERATORS:
            raise ValueError(f"unsupported operator {op!r}")
        if op == "contains":
            value = f"%{escape_like(value)}%"
        clauses.append(sql.SQL("{} {} %s").format(
            sql.Identifier(column), sql.SQL(_OPERATORS[op])))
        params.append(value)
    if not clauses:
        return sql.SQL(""), []
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses), params


def _columns(columns):
    return sql.SQL(", ").join(sql.Identifier(c) for c in columns)


def build_select(table, columns, filters=(), order=(), limit=None, offset=None):
    where, params = build_where(filters)
    query = sql.SQL("SELECT {} FROM {}").format(_columns(columns), sql.Identifier(table))
    query += where
    # a unique tiebreaker keeps pages stable
    order = list(order)
    if not any(col == "id" for col, _ in order):
        order.append(("id", "ASC"))
    query += sql.SQL(" ORDER BY ") + sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(col), sql.SQL(
            "DESC" if direction == "DESC" else "ASC"))
        for col, direction in order)
    if limit is not None:
        query += sql.SQL(" LIMIT %s")
        params.append(limit)
    if offset is not None:
        query += sql.SQL(" OFFSET %s")
        params.append(offset)
    return query, params


def build_count(table, filters=()):
    where, params = build_where(filters)
    return sql.SQL("SELECT count(*) AS total FROM {}").format(sql.Identifier(table)) + where, params


def build_insert(table, values, returning):
    names = list(values)
    query = sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING {}").format(
        sql.Identifier(table), _columns(names),
        sql.SQL(", ").join(sql.Placeholder() for _ in names), _columns(returning))
    return query, [values[n] for n in names]


def build_update(table, key, changes, returning, expected_version=None):
    """UPDATE one row by id, bumping its version; checks the version if given."""
    if not changes:
        raise ValueError("nothing to update")
    names = list(changes)
    assignments = [sql.SQL("{} = %s").format(sql.Identifier(n)) for n in names]
    assignments.append(sql.SQL("version = version + 1"))
    assignments.append(sql.SQL("updated_at = now()"))
    query = sql.SQL("UPDATE {} SET {} WHERE id = %s").format(
        sql.Identifier(table), sql.SQL(", ").join(assignments))
    params = [changes[n] for n in names] + [key]
    if expected_version is not None:
        query += sql.SQL(" AND version = %s")
        params.append(expected_version)
    query += sql.SQL(" RETURNING {}").format(_columns(returning))
    return query, params


def build_delete(table, key, expected_version=None):
    query = sql.SQL("DELETE FROM {} WHERE id = %s").format(sql.Identifier(table))
    params = [key]
    if expected_version is not None:
        query += sql.SQL(" AND version = %s")
        params.append(expected_version)
    return query + sql.SQL(" RETURNING id"), params
