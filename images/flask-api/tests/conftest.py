"""Marks every test with its tier (the folder it lives in)."""

from pathlib import Path

import pytest

TIERS = ("unit", "integration", "e2e", "perf")


def pytest_collection_modifyitems(config, items):
    for item in items:
        parts = Path(str(item.fspath)).parts
        for tier in TIERS:
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))
