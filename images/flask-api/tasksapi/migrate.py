"""SQL migrations kept as files (migrations/NNNN_name.sql), applied in order.

Applying is idempotent: applied versions are recorded in schema_migrations
with a checksum (an edited, already applied file is an error), and the whole
run holds a transaction-level advisory lock so concurrent starters serialise.

    python -m tasksapi.migrate            # apply pending migrations
    python -m tasksapi.migrate --status   # list applied / pending
"""

import argparse
import hashlib
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from .config import Config, ConfigError

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "migrations"
LOCK_KEY = 0x7461736B  # "task"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(Exception):
    pass


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self):
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations_dir():
    return Path(os.environ.get("MIGRATIONS_DIR") or DEFAULT_DIR)


def discover(directory=None):
    directory = Path(directory or migrations_dir())
    if not directory.is_dir():
        raise MigrationError(f"migrations directory {directory} does not exist")
    found = {}
    for path in sorted(directory.iterdir()):
        if path.suffix != ".sql":
            continue
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"bad migration file name {path.name!r} "
                                 "(expected NNNN_name.sql)")
        version = match.group(1)
        if version in found:
            raise MigrationError(f"duplicate migration version {version}")
        found[version] = Migration(version, match.group(2), path.read_text())
    return [found[v] for v in sorted(found)]


_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def applied(conn):
    conn.execute(_BOOKKEEPING)
    rows = conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
    return {row[0]: row[1] for row in rows}


def apply(conn, migrations=None):
    """Apply pending migrations in one transaction; return the versions applied."""
    migrations = discover() if migrations is None else migrations
    done = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        existing = applied(conn)
        for mig in migrations:
            if mig.version in existing:
                if existing[mig.version] != mig.checksum:
                    raise MigrationError(
                        f"migration {mig.version}_{mig.name} changed after it "
                        "was applied; add a new migration instead")
                continue
            conn.execute(mig.sql)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) "
                "VALUES (%s, %s, %s)", (mig.version, mig.name, mig.checksum))
            done.append(mig.version)
    return done


def connect(database_url, wait_seconds=0.0, sleep=time.sleep):
    """Connect, retrying for up to `wait_seconds` while the server is not up
    yet (a container starting next to its database)."""
    deadline = time.monotonic() + wait_seconds
    delay = 0.25
    while True:
        try:
            return psycopg.connect(database_url, connect_timeout=10)
        except psycopg.OperationalError:
            if time.monotonic() + delay > deadline:
                raise
            sleep(delay)
            delay = min(delay * 2, 2.0)


def apply_url(database_url, migrations=None, wait_seconds=0.0):
    with connect(database_url, wait_seconds) as conn:
        return apply(conn, migrations)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tasksapi.migrate",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--status", action="store_true",
                        help="list applied and pending migrations, change nothing")
    args = parser.parse_args(argv)
    try:
        config = Config.from_env()
        migrations = discover()
        with psycopg.connect(config.database_url, connect_timeout=10) as conn:
            if args.status:
                existing = applied(conn)
                conn.rollback()
                for mig in migrations:
                    state = "applied" if mig.version in existing else "pending"
                    print(f"{mig.version}_{mig.name}: {state}")
                return 0
            done = apply(conn, migrations)
    except ConfigError as exc:
        print(f"migrate: configuration error: {exc}", file=sys.stderr)
        return 2
    except (MigrationError, psycopg.Error) as exc:
        print(f"migrate: {exc}", file=sys.stderr)
        return 1
    print(f"migrate: applied {len(done)} migration(s)"
          + (f": {', '.join(done)}" if done else ", schema is up to date"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
