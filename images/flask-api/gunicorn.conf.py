"""gunicorn settings, overridable from the environment."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tasksapi.config import Config, ConfigError  # noqa: E402

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 10
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
reload = os.environ.get("GUNICORN_RELOAD", "0") == "1"
control_socket_disable = True  # no admin socket in the container


def on_starting(server):
    """Fail fast, once, with a readable message when the config is wrong."""
    try:
        config = Config.from_env()
    except ConfigError as exc:
        print(f"tasksapi: configuration error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    if config.migrate_on_start:
        # run once in the master; workers then find nothing pending
        from tasksapi import migrate
        done = migrate.apply_url(config.database_url, wait_seconds=config.db_wait_seconds)
        server.log.info("migrations applied at start-up: %s", done or "none pending")
