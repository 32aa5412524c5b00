"""Fixtures for the FlowPilot service tests: apps (offline, or online against the local stub
Messages API), clients, a real HTTP server for streaming, and small data helpers.

`create_service_app` reconfigures the process-wide runtime settings (the outbox publisher reads
its broker URL from there), so every app here is built per test, and the runtime is put back to
the suite's settings afterwards.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from shared.config import Settings
from tests.support.pilot_api import BASE, add_fact, create_session, fix_block, session_version
from tests.support.stub_anthropic import StubAnthropic


def settings_with(settings: Settings, **overrides: Any) -> Settings:
    return replace(settings, **overrides)


def _build_app(settings: Settings) -> Flask:
    from services.pilot import create_app

    app = create_app(settings)
    app.config["TESTING"] = True
    return app


def _close_llm(app: Flask) -> None:
    cached = app.extensions.pop("pilot_llm", None)
    if cached is not None:
        cached[1].close()


@pytest.fixture(autouse=True)
def _pilot_runtime(request: pytest.FixtureRequest) -> Iterator[None]:
    """Streamed turns finish in background threads: wait for them before the tables are
    emptied, and restore the suite's runtime settings for the next test. Tests that use no
    database (the parser and prompt tests) are left alone."""
    yield
    if "migrated" not in request.fixturenames:
        return
    from services.pilot import chat
    from shared import runtime

    assert chat.wait_for_background_turns(30), "a streamed chat turn never finished"
    runtime.configure(request.getfixturevalue("migrated"))


@pytest.fixture
def make_pilot_app(migrated: Settings) -> Iterator[Callable[..., Flask]]:
    apps: list[Flask] = []

    def factory(**overrides: Any) -> Flask:
        app = _build_app(settings_with(migrated, **overrides))
        apps.append(app)
        return app

    yield factory
    for app in apps:
        _close_llm(app)


@pytest.fixture
def pilot_app(make_pilot_app: Callable[..., Flask]) -> Flask:
    """The pilot service with no ANTHROPIC_API_KEY: the offline assistant answers."""
    return make_pilot_app()


@pytest.fixture
def pilot_client(pilot_app: Flask) -> Any:
    return pilot_app.test_client()


@pytest.fixture
def stub() -> Iterator[StubAnthropic]:
    with StubAnthropic() as server:
        yield server
        # Whatever a test did, the product sent nothing the real API would refuse.
        assert server.refusals == [], server.refusals


@pytest.fixture
def make_llm_app(make_pilot_app: Callable[..., Flask], stub: StubAnthropic) -> Callable[..., Flask]:
    """The pilot service talking to the stub through the real anthropic SDK. Retries and
    timeouts are small so the error tests stay fast; tests override them as needed."""

    def factory(**overrides: Any) -> Flask:
        values: dict[str, Any] = {
            "ANTHROPIC_API_KEY": "test-key",
            "ANTHROPIC_BASE_URL": stub.url,
            "LLM_MAX_RETRIES": 1,
            "LLM_TIMEOUT_S": 5.0,
        }
        values.update(overrides)
        return make_pilot_app(**values)

    return factory


@pytest.fixture
def llm_app(make_llm_app: Callable[..., Flask]) -> Flask:
    return make_llm_app()


@pytest.fixture
def llm_client(llm_app: Flask) -> Any:
    return llm_app.test_client()


@dataclass
class LiveServer:
    url: str
    server: BaseWSGIServer
    thread: threading.Thread


@pytest.fixture
def serve() -> Iterator[Callable[[Flask], LiveServer]]:
    """Serve an app over real HTTP on 127.0.0.1 (a free port), threaded."""
    servers: list[LiveServer] = []

    def start(app: Flask) -> LiveServer:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        live = LiveServer(f"http://127.0.0.1:{server.server_port}", server, thread)
        servers.append(live)
        return live

    yield start
    for live in servers:
        live.server.shutdown()
        live.server.server_close()
        live.thread.join(10)


@pytest.fixture
def engineer(make_user: Callable[..., Any]) -> Any:
    return make_user("engineer")


@pytest.fixture
def outsider(make_user: Callable[..., Any]) -> Any:
    """An engineer of another account."""
    return make_user("engineer")


@pytest.fixture
def helpers() -> SimpleNamespace:
    """The helpers of tests/support/pilot_api.py, for test modules."""
    return SimpleNamespace(
        base=BASE,
        create_session=create_session,
        add_fact=add_fact,
        session_version=session_version,
        fix_block=fix_block,
    )
