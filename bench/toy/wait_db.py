"""Waits until DATABASE_URL accepts a login and `SELECT 1` (every 250 ms, at
most 60 s). The gitlab-ci-local and act jobs call it before the integration
test: their runners do not wait for a service to accept logins (drydock's
`ready: postgres`, the script's psql poll and compose's healthcheck do)."""
import os
import sys
import time

import psycopg

deadline = time.monotonic() + 60
while True:
    try:
        with psycopg.connect(os.environ["DATABASE_URL"], connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        sys.exit(0)
    except psycopg.OperationalError as e:
        if time.monotonic() > deadline:
            sys.exit(f"database not ready: {e}")
        time.sleep(0.25)
