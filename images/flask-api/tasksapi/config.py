"""Configuration read from the environment, validated once at start-up."""

import os
from dataclasses import dataclass


class ConfigError(Exception):
    """The environment does not describe a runnable service."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _parse_bool(name, raw):
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def _parse_int(name, raw, minimum):
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _parse_float(name, raw, minimum, inclusive=False):
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum or (value == minimum and not inclusive):
        raise ConfigError(f"{name} must be {'>=' if inclusive else '>'} {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class Config:
    database_url: str
    pool_min_size: int = 1
    pool_max_size: int = 10
    pool_timeout: float = 5.0
    migrate_on_start: bool = False
    max_page_size: int = 100
    db_wait_seconds: float = 30.0

    @classmethod
    def from_env(cls, environ=None):
        env = os.environ if environ is None else environ
        url = env.get("DATABASE_URL", "").strip()
        if not url:
            raise ConfigError(
                "DATABASE_URL is not set: export a PostgreSQL URL such as "
                "postgresql://app:app@db:5432/app"
            )
        if not url.startswith(("postgresql://", "postgres://")) and "=" not in url:
            raise ConfigError(
                "DATABASE_URL must be a postgresql:// URL or a libpq "
                "key=value string"
            )
        pool_min = _parse_int("DB_POOL_MIN_SIZE", env.get("DB_POOL_MIN_SIZE", "1"), 0)
        pool_max = _parse_int("DB_POOL_MAX_SIZE", env.get("DB_POOL_MAX_SIZE", "10"), 1)
        if pool_max < pool_min:
            raise ConfigError(
                f"DB_POOL_MAX_SIZE ({pool_max}) must be >= DB_POOL_MIN_SIZE ({pool_min})"
            )
        return cls(
            database_url=url,
            pool_min_size=pool_min,
            pool_max_size=pool_max,
            pool_timeout=_parse_float("DB_POOL_TIMEOUT", env.get("DB_POOL_TIMEOUT", "5"), 0),
            migrate_on_start=_parse_bool(
                "MIGRATE_ON_START", env.get("MIGRATE_ON_START", "0")
            ),
            max_page_size=_parse_int("MAX_PAGE_SIZE", env.get("MAX_PAGE_SIZE", "100"), 1),
            db_wait_seconds=_parse_float("DB_WAIT_SECONDS",
                                         env.get("DB_WAIT_SECONDS", "30"), 0, inclusive=True),
        )
