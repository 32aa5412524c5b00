"""Runs wrk (Debian's package; `make bench` installs it) and reads its summary."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import psutil

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


@dataclass(frozen=True)
class WrkResult:
    requests_per_s: float
    p50_s: float
    p99_s: float
    requests: int
    errors: int

    def as_dict(self, prefix: str) -> dict[str, float]:
        return {
            f"{prefix}_rps": round(self.requests_per_s, 1),
            f"{prefix}_p50_ms": round(self.p50_s * 1000, 2),
            f"{prefix}_p99_ms": round(self.p99_s * 1000, 2),
        }


def _seconds(value: str) -> float:
    match = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", value)
    if match is None:
        raise ValueError(f"unreadable wrk duration {value!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(
    url: str,
    *,
    headers: dict[str, str] | None = None,
    connections: int = 16,
    threads: int = 2,
    duration_s: int = 5,
    expect_status: int = 200,
) -> WrkResult:
    """`wrk --latency` against `url`. Any answer other than `expect_status` counts as an error
    (wrk itself counts only non-2xx/3xx), checked through a short Lua script."""
    binary = shutil.which("wrk")
    if binary is None:
        raise RuntimeError("wrk is not installed (make bench installs it: deploy/ci)")
    # Each wrk thread has its own Lua state: done() sums the threads' counters.
    script = f"""
local threads = {{}}
function setup(thread) table.insert(threads, thread) end
function init(args) bad = 0 end
function response(status, headers, body)
  if status ~= {expect_status} then bad = bad + 1 end
end
function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("bad") end
  io.write(string.format("BAD %d\\n", total))
end
"""
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(script)
        lua.flush()
        command = [
            binary,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration_s}s",
            "--latency",
            "-s",
            lua.name,
        ]
        for name, value in (headers or {}).items():
            command += ["-H", f"{name}: {value}"]
        out = subprocess.run(
            [*command, url], capture_output=True, text=True, check=True, timeout=duration_s + 60
        ).stdout
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"([0-9]+) requests in", out).group(1))  # type: ignore[union-attr]
    p50 = _seconds(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _seconds(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    bad = int(re.search(r"BAD (\d+)", out).group(1))  # type: ignore[union-attr]
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+)", out)
    errors = bad + (sum(int(g) for g in socket_errors.groups()) if socket_errors else 0)
    return WrkResult(rps, p50, p99, total, errors)


# A run counts as balanced when no gunicorn worker process did more than this share of the
# workers' CPU: 0.5 is an even split between two.
MAX_WORKER_SHARE = 0.6
BALANCE_ATTEMPTS = 4


def gunicorn_workers(base_url: str) -> list[psutil.Process]:
    """The worker processes of the gunicorn serving `base_url` (the children of the process
    bound to its address)."""
    bind = f"127.0.0.1:{urlsplit(base_url).port}"
    serving = [
        p for p in psutil.process_iter(["cmdline"]) if bind in " ".join(p.info["cmdline"] or ())
    ]
    pids = {p.pid for p in serving}
    return [p for p in serving if p.ppid() in pids]


@dataclass(frozen=True)
class BalancedRun:
    result: WrkResult
    discarded: int


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def run_wrk_balanced(url: str, workers: list[psutil.Process], **options: Any) -> BalancedRun:
    """:func:`run_wrk`, again (up to BALANCE_ATTEMPTS runs) while one worker process did more
    than MAX_WORKER_SHARE of the workers' CPU. wrk opens its keep-alive connections at the start
    and the kernel gives each to whichever worker accepts first; one process of a GIL-bound app
    uses one core at most, so a run whose connections fell 12/4 measured that split, not the
    route: the same route's throughput varied by up to 2.5x between runs for this reason alone.
    Every target is measured this way alike; the last run is kept if none balances."""
    discarded = 0
    while True:
        before = [_cpu_s(p) for p in workers]
        result = run_wrk(url, **options)
        used = [_cpu_s(p) - b for p, b in zip(workers, before, strict=True)]
        total = sum(used)
        share = max(used) / total if total > 0 else 1.0
        if share <= MAX_WORKER_SHARE or discarded + 1 >= BALANCE_ATTEMPTS:
            return BalancedRun(result, discarded)
        discarded += 1
