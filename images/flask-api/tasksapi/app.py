"""Application factory."""

import logging

from flask import Flask, jsonify
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from . import errors, migrate
from .config import Config
from .routes import api

log = logging.getLogger("tasksapi")


def make_pool(config):
    pool = ConnectionPool(
        config.database_url,
        min_size=config.pool_min_size,
        max_size=config.pool_max_size,
        timeout=config.pool_timeout,
        kwargs={"row_factory": dict_row},
        check=ConnectionPool.check_connection,
        name="tasksapi",
        open=False,
    )
    pool.open(wait=False)
    return pool


def create_app(config=None, pool=None):
    """Build the Flask app. `pool` may be injected (tests); otherwise a
    psycopg_pool ConnectionPool is opened from `config`."""
    config = config or Config.from_env()
    app = Flask(__name__)
    app.json.sort_keys = False
    app.config["TASKSAPI"] = config
    if config.migrate_on_start:
        done = migrate.apply_url(config.database_url,
                                 wait_seconds=config.db_wait_seconds)
        log.warning("migrations applied at start-up: %s", done or "none pending")
    app.extensions["tasksapi.pool"] = pool if pool is not None else make_pool(config)
    app.register_blueprint(api)

    @app.errorhandler(Exception)
    def handle_error(exc):
        err = errors.from_exception(exc)
        if err.status >= 500 and err.status != 503:
            log.exception("unhandled error", exc_info=exc)
        response = jsonify(err.to_dict())
        response.status_code = err.status
        return response

    return app
