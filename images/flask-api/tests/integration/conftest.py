"""Integration fixtures: every test gets its own PostgreSQL schema.

The schema is created empty, migrated (so migrations run for real on every
test) and dropped afterwards; the connection string pins `search_path` to it,
so the app, the pool and direct connections all see only that schema.
"""

import os
import uuid

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from tasksapi import create_app, migrate
from tasksapi.config import Config


@pytest.fixture(scope="session")
def database_url():
    url = os.environ.get("DATABASE_URL")
    if not url:
        pytest.skip("DATABASE_URL is not set: integration tests need PostgreSQL")
    return url


@pytest.fixture
def schema_url(database_url):
    """An empty schema of its own; yields a conninfo whose search_path is it."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield make_conninfo(database_url, options=f"-c search_path={schema}")
    finally:
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def migrated_url(schema_url):
    migrate.apply_url(schema_url)
    return schema_url


@pytest.fixture
def conn(migrated_url):
    with psycopg.connect(migrated_url, row_factory=dict_row) as connection:
        yield connection


@pytest.fixture
def app(migrated_url):
    config = Config(database_url=migrated_url, pool_min_size=1, pool_max_size=2)
    application = create_app(config)
    yield application
    application.extensions["tasksapi.pool"].close()


@pytest.fixture
def client(app):
    return app.test_client()
