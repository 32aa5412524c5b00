"""`make run`'s process supervision: start each program, restart one that exits with backoff,
report a crash loop, and stop everything on request.

Small on purpose: honcho stops the whole set when one child exits, and supervisord or circus
would bring a daemon, a config file and a control socket to a command that runs in the
foreground. What the stack needs is below, and `tests/shared/test_supervisor.py` drives it with
real child processes.

The state of every program is written, atomically, to a JSON status file that the gateway's
`/healthz` reads (`RF_SUPERVISOR_STATUS`), so a crash loop shows there as `degraded`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

STATUS_ENV = "RF_SUPERVISOR_STATUS"


@dataclass(frozen=True)
class Policy:
    """When to restart: after `initial_backoff_s`, doubling on each quick exit up to
    `max_backoff_s`; a run longer than `stable_after_s` resets the backoff. `crash_limit` exits
    within `crash_window_s` is a crash loop (reported, and still restarted at the longest
    backoff: a broker that comes back must find its worker again)."""

    initial_backoff_s: float = 0.5
    max_backoff_s: float = 10.0
    stable_after_s: float = 30.0
    crash_limit: int = 5
    crash_window_s: float = 60.0
    stop_timeout_s: float = 30.0


@dataclass
class _Program:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    backoff_s: float = 0.0
    restarts: int = 0
    last_exit_code: int | None = None
    exits: deque[float] = field(default_factory=deque)
    crash_loop: bool = False

    def status(self) -> dict[str, Any]:
        running = self.proc is not None and self.proc.poll() is None
        return {
            "state": "running" if running else "restarting",
            "pid": self.proc.pid if running and self.proc is not None else None,
            "restarts": self.restarts,
            "last_exit_code": self.last_exit_code,
            "recent_exits": len(self.exits),
            "crash_loop": self.crash_loop,
        }


class Supervisor:
    def __init__(
        self,
        programs: Mapping[str, list[str]],
        *,
        cwd: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        status_path: Path | None = None,
        policy: Policy | None = None,
        log: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.programs = {name: _Program(name, list(argv)) for name, argv in programs.items()}
        self.cwd = str(cwd) if cwd is not None else None
        self.env = dict(env) if env is not None else dict(os.environ)
        self.status_path = status_path
        self.policy = policy or Policy()
        self.log = log or sys.stderr
        self.clock = clock
        self._stop = threading.Event()
        if status_path is not None:
            self.env[STATUS_ENV] = str(status_path)

    # ── lifecycle ─────────────────────────────────────────────────────────────────────────

    def start(self) -> Supervisor:
        for program in self.programs.values():
            self._spawn(program)
        self._write_status()
        return self

    def request_stop(self, *_: object) -> None:
        """Signal-handler safe: the loop in :meth:`run` notices and stops every program."""
        self._stop.set()

    def run(self, interval_s: float = 0.2) -> int:
        """Supervise until :meth:`request_stop`; then stop every program. Returns 0."""
        try:
            while not self._stop.wait(interval_s):
                self.poll()
        finally:
            self.stop()
        return 0

    def poll(self) -> None:
        """One pass: notice exits, schedule and perform restarts, refresh the status file."""
        if self._stop.is_set():
            # Ctrl-C reaches the whole process group: children exiting now are not crashes.
            return
        now = self.clock()
        changed = False
        for program in self.programs.values():
            if program.proc is not None and program.restart_at is None:
                code = program.proc.poll()
                if code is not None:
                    self._exited(program, code, now)
                    changed = True
            if program.restart_at is not None and now >= program.restart_at:
                program.restart_at = None
                program.restarts += 1
                self._spawn(program)
                changed = True
            while program.exits and now - program.exits[0] > self.policy.crash_window_s:
                program.exits.popleft()
            loop = len(program.exits) >= self.policy.crash_limit
            if loop != program.crash_loop:
                program.crash_loop = loop
                changed = True
                if not loop:
                    self._say(f"supervisor: {program.name} is stable again")
        if changed:
            self._write_status()

    def stop(self) -> None:
        self._say("supervisor: stopping every program ...")
        procs = [p.proc for p in self.programs.values() if p.proc is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.policy.stop_timeout_s
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.status_path is not None:
            self.status_path.unlink(missing_ok=True)

    # ── internals ─────────────────────────────────────────────────────────────────────────

    def _spawn(self, program: _Program) -> None:
        program.proc = subprocess.Popen(program.argv, cwd=self.cwd, env=self.env)
        program.started_at = self.clock()

    def _exited(self, program: _Program, code: int, now: float) -> None:
        program.last_exit_code = code
        program.exits.append(now)
        ran_s = now - program.started_at
        if ran_s >= self.policy.stable_after_s or program.backoff_s == 0:
            program.backoff_s = self.policy.initial_backoff_s
        else:
            program.backoff_s = min(self.policy.max_backoff_s, program.backoff_s * 2)
        program.restart_at = now + program.backoff_s
        self._say(
            f"supervisor: {program.name} exited with code {code} after {ran_s:.1f} s; "
            f"restarting in {program.backoff_s:g} s"
        )
        recent = sum(1 for t in program.exits if now - t <= self.policy.crash_window_s)
        if recent >= self.policy.crash_limit:
            self._say(
                f"supervisor: CRASH LOOP: {program.name} exited {recent} times in "
                f"{self.policy.crash_window_s:g} s (last exit code {code}); the stack is "
                f"degraded, see /healthz. Still restarting every {program.backoff_s:g} s.",
            )

    def _say(self, line: str) -> None:
        print(line, file=self.log, flush=True)

    def status(self) -> dict[str, Any]:
        return {"processes": {name: p.status() for name, p in self.programs.items()}}

    def _write_status(self) -> None:
        if self.status_path is None:
            return
        self.status_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.status()))
        os.replace(tmp, self.status_path)


def degraded_processes(env: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """For `/healthz`: None when no supervisor runs this process's stack; else the programs
    that are restarting or crash-looping, with why (empty when all are running)."""
    env = os.environ if env is None else env
    path = env.get(STATUS_ENV)
    if not path:
        return None
    try:
        status = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    degraded: dict[str, str] = {}
    for name, info in status.get("processes", {}).items():
        if info.get("crash_loop"):
            degraded[name] = (
                f"crash loop: {info.get('recent_exits')} exits in the last minute, "
                f"last exit code {info.get('last_exit_code')}"
            )
        elif info.get("state") != "running":
            degraded[name] = f"restarting after exit code {info.get('last_exit_code')}"
    return degraded
