"""tasksapi: a small projects-and-tasks REST API (Flask + psycopg 3)."""

from .app import create_app

__all__ = ["create_app"]
