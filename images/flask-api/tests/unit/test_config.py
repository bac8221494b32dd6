import pytest

from tasksapi.config import Config, ConfigError

URL = "postgresql://app:app@db:5432/app"


def test_defaults():
    config = Config.from_env({"DATABASE_URL": URL})
    assert config == Config(database_url=URL)


def test_all_settings():
    config = Config.from_env({
        "DATABASE_URL": f" {URL} ", "DB_POOL_MIN_SIZE": "2", "DB_POOL_MAX_SIZE": "4",
        "DB_POOL_TIMEOUT": "1.5", "MIGRATE_ON_START": "true", "MAX_PAGE_SIZE": "50",
        "DB_WAIT_SECONDS": "0",
    })
    assert config == Config(URL, 2, 4, 1.5, True, 50, 0.0)


@pytest.mark.parametrize("url", [URL, "postgres://u@h/d", "host=db dbname=app user=app"])
def test_accepted_urls(url):
    assert Config.from_env({"DATABASE_URL": url}).database_url == url


def with_url(**extra):
    return {"DATABASE_URL": URL, **extra}


@pytest.mark.parametrize("env, message", [
    ({}, "DATABASE_URL is not set"),
    ({"DATABASE_URL": "   "}, "DATABASE_URL is not set"),
    ({"DATABASE_URL": "mysql://x"}, "postgresql:// URL"),
    (with_url(DB_POOL_MIN_SIZE="x"), "DB_POOL_MIN_SIZE must be an integer"),
    (with_url(DB_POOL_MAX_SIZE="0"), "DB_POOL_MAX_SIZE must be >= 1"),
    (with_url(DB_POOL_MIN_SIZE="5", DB_POOL_MAX_SIZE="2"), "must be >= DB_POOL_MIN_SIZE"),
    (with_url(DB_POOL_TIMEOUT="0"), "DB_POOL_TIMEOUT must be > 0"),
    (with_url(DB_POOL_TIMEOUT="soon"), "DB_POOL_TIMEOUT must be a number"),
    (with_url(MIGRATE_ON_START="maybe"), "MIGRATE_ON_START must be a boolean"),
    (with_url(MAX_PAGE_SIZE="0"), "MAX_PAGE_SIZE must be >= 1"),
    (with_url(DB_WAIT_SECONDS="-1"), "DB_WAIT_SECONDS must be >= 0"),
])
def test_rejected(env, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_env(env)


@pytest.mark.parametrize("raw, expected", [
    ("1", True), ("yes", True), ("ON", True), ("0", False), ("off", False), ("", False),
])
def test_migrate_on_start_booleans(raw, expected):
    config = Config.from_env(with_url(MIGRATE_ON_START=raw))
    assert config.migrate_on_start is expected
