"""Benchmarks run against the same real servers as the tests (see tests/conftest.py), without
xdist. The fixtures are the suite's own."""

from __future__ import annotations

from tests.conftest import (  # noqa: F401 - fixtures
    make_account,
    make_user,
    migrated,
    settings,
    test_servers,
)
