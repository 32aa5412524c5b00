"""`make run`'s supervisor with real child processes: a program that exits is restarted with
backoff and a log line naming it and its exit code; a crash loop is reported loudly and shows in
/healthz as degraded, naming the program; stopping stops every program."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import psutil

from shared.supervisor import STATUS_ENV, Policy, Supervisor, degraded_processes
from tests.support.workers import wait_until

FAST = Policy(
    initial_backoff_s=0.05, max_backoff_s=0.2, stable_after_s=30, crash_limit=3, crash_window_s=60
)
SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


def _exits_once(marker: Path, code: int) -> list[str]:
    """Exits with `code` on its first run, then stays up."""
    script = (
        "import pathlib, sys, time\n"
        f"p = pathlib.Path({str(marker)!r})\n"
        f"if not p.exists():\n    p.write_text('x'); sys.exit({code})\n"
        "time.sleep(600)\n"
    )
    return [sys.executable, "-c", script]


def test_a_program_that_exits_is_restarted_with_a_line_naming_it(tmp_path: Path) -> None:
    log = io.StringIO()
    sup = Supervisor(
        {"worker": _exits_once(tmp_path / "ran", 7), "gateway": SLEEPER},
        status_path=tmp_path / "status.json",
        policy=FAST,
        log=log,
    ).start()
    try:
        first = sup.programs["worker"].proc
        assert first is not None

        def restarted() -> bool:
            sup.poll()
            proc = sup.programs["worker"].proc
            return proc is not first and proc is not None and proc.poll() is None

        wait_until(restarted, 20, message="the worker restarted")
        assert "worker exited with code 7" in log.getvalue()
        status = json.loads((tmp_path / "status.json").read_text())["processes"]
        assert status["worker"]["restarts"] == 1 and status["worker"]["state"] == "running"
        assert status["gateway"]["restarts"] == 0
        # One exit is no crash loop: the stack is whole.
        assert degraded_processes({STATUS_ENV: str(tmp_path / "status.json")}) == {}
    finally:
        sup.stop()
    assert not (tmp_path / "status.json").exists()


def test_a_crash_loop_is_reported_and_shows_degraded_in_healthz(
    tmp_path: Path, migrated: Any, monkeypatch: Any
) -> None:
    log = io.StringIO()
    status_path = tmp_path / "status.json"
    crasher = [sys.executable, "-c", "import sys; sys.exit(3)"]
    sup = Supervisor(
        {"worker": crasher, "gateway": SLEEPER}, status_path=status_path, policy=FAST, log=log
    ).start()
    try:

        def looping() -> bool:
            sup.poll()
            return sup.programs["worker"].crash_loop

        wait_until(looping, 30, message="the crash loop to be noticed")
        assert "CRASH LOOP: worker exited 3 times" in log.getvalue()
        assert "last exit code 3" in log.getvalue()
        degraded = degraded_processes({STATUS_ENV: str(status_path)})
        assert degraded is not None and set(degraded) == {"worker"}

        from app.gateway import create_web_app

        monkeypatch.setenv(STATUS_ENV, str(status_path))
        health = create_web_app(migrated).test_client().get("/healthz")
        body = health.get_json()
        # The API still serves: 200, but the stack is degraded and says which program.
        assert health.status_code == 200
        assert body["status"] == "degraded"
        assert "crash loop" in body["degraded"]["worker"]
    finally:
        sup.stop()


def test_stop_terminates_every_program(tmp_path: Path) -> None:
    sup = Supervisor({"a": SLEEPER, "b": SLEEPER}, policy=FAST, log=io.StringIO()).start()
    pids = [p.proc.pid for p in sup.programs.values() if p.proc is not None]
    sup.request_stop()
    assert sup.run(interval_s=0.01) == 0
    assert all(
        not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie" for pid in pids
    )
