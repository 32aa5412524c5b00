"""Session-scoped real ticketing systems (Request Tracker 5, Redmine) for the adapter tests that
post to them (the slow tier, by this folder: see tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.real_ticketing import Redmine, RequestTracker


@pytest.fixture(scope="session")
def request_tracker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RequestTracker]:
    server = RequestTracker.start(tmp_path_factory.mktemp("rt"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redmine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redmine]:
    server = Redmine.start(tmp_path_factory.mktemp("redmine"))
    try:
        yield server
    finally:
        server.stop()
