import os

import psycopg

from toy.tally import store


def test_store_round_trip():
    with psycopg.connect(os.environ["DATABASE_URL"], connect_timeout=10) as conn:
        rows = store(conn, "b a b c b a")
    assert rows == [("b", 3), ("a", 2), ("c", 1)]
