import uuid

import pytest

from tests.http_client import Client, base_url


@pytest.fixture(scope="session")
def api():
    url = base_url()
    if not url:
        pytest.skip("BASE_URL is not set: e2e tests need a running service")
    client = Client(url)
    yield client
    client.close()


@pytest.fixture
def unique():
    """A suffix keeping names unique: the service's database is shared."""
    return uuid.uuid4().hex[:10]
