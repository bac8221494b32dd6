"""WSGI entry point: `gunicorn -c gunicorn.conf.py tasksapi.wsgi:app`."""

import sys

from .app import create_app
from .config import Config, ConfigError

try:
    _config = Config.from_env()
except ConfigError as exc:
    print(f"tasksapi: configuration error: {exc}", file=sys.stderr, flush=True)
    # 4 is gunicorn's "App failed to load": the arbiter stops instead of looping
    raise SystemExit(4) from None

app = create_app(_config)
