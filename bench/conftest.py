"""Benchmarks run against the same real servers as the tests (see tests/support/servers.py),
without xdist, with the suite's own fixtures. Not its per-test clean-up: a benchmark module
fills its tables once and measures every test against them."""

from __future__ import annotations

pytest_plugins = [
    "tests.support.fixtures.servers",
    "tests.support.fixtures.apps",
    "tests.support.fixtures.factories",
]
