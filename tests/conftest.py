"""Test infrastructure: real PostgreSQL and Redis, one database and one Redis db per xdist
worker, every table emptied after each test (tests/support/servers.py says where the servers
come from).

The fixtures live in tests/support/fixtures/, one module per concern, registered here; the
`slow` tier is marked by folder below.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings

from tests.support.examples import FAST_EXAMPLES, FULL_EXAMPLES

pytest_plugins = [
    "tests.support.fixtures.servers",
    "tests.support.fixtures.state",
    "tests.support.fixtures.apps",
    "tests.support.fixtures.factories",
    "tests.support.fixtures.notes",
    "tests.support.fixtures.logs",
]

# The slow tier, by folder: everything here starts servers, workers, a browser or the entry
# points' own processes (the CLI, `make run`), or drives every route of every service: the
# end-to-end stack, the deployment files' own servers, the entry points, the hostile-input
# property over every route, the notes modules that run a Celery worker, and the adapters
# against real ticketing systems. `make test-unit` runs the rest (`-m "not slow"`).
SLOW_FOLDERS = (
    "e2e",
    "deploy",
    "app",
    "services/hostile",
    "services/notes/workers",
    "services/notes/real_ticketing",
)
TESTS = Path(__file__).parent

# Hypothesis profiles: `full` (the default, so `make test` and CI) runs every property's whole
# example count; `fast` (`make test-unit`, `--hypothesis-profile=fast`) runs a fifth of it, with
# no deadline. tests/support/examples.py scales the counts properties set explicitly.
settings.register_profile("full", max_examples=FULL_EXAMPLES)
settings.register_profile("fast", max_examples=FAST_EXAMPLES, deadline=None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    slow = [TESTS / folder for folder in SLOW_FOLDERS]
    for item in items:
        if any(item.path.is_relative_to(folder) for folder in slow):
            item.add_marker(pytest.mark.slow)
