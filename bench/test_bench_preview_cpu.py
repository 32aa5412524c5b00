"""CPU per request of the cached preview inside the process, beside `GET /healthz` and the
gateway's `GET /livez` measured in the same run: the gateway app called through werkzeug's
test client in a loop (no HTTP server, no network), access lines written to /dev/null as in
production at INFO. `time.process_time`, best of several alternating rounds, so the machine's
other work weighs little on the ratios. The test client's own work is in every figure alike.

Run: `.venv/bin/python -m pytest bench/test_bench_preview_cpu.py -p no:xdist --benchmark-only
-s`. Figures are printed and kept in extra_info; they are reported, never asserted, but every
answer must be the expected one.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

from bench.accounts import session_with_stored_note
from shared.config import Settings

ROUNDS = int(os.environ.get("BENCH_CPU_ROUNDS", "5"))
REQUESTS = int(os.environ.get("BENCH_CPU_REQUESTS", "400"))


def test_preview_cpu_per_request_in_process(
    benchmark: Any, migrated: Settings, make_user: Any
) -> None:
    from werkzeug.test import Client

    from app.gateway import create_app

    user = make_user("engineer")
    sid = session_with_stored_note(migrated, user, "cpu bench")
    client = Client(create_app(migrated))
    url = f"/api/v1/ai-sessions/{sid}/resolution-note/preview?wait=0"
    first = client.get(url, headers=user.headers)
    assert first.status_code == 200
    revalidate = {**user.headers, "If-None-Match": first.headers["ETag"]}
    cases = {
        "livez": ("/livez", {}, 200),
        "healthz": ("/healthz", {}, 200),
        "preview_hit": (url, user.headers, 200),
        "preview_304": (url, revalidate, 304),
    }

    def measure() -> dict[str, float]:
        best = dict.fromkeys(cases, float("inf"))
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            for _ in range(ROUNDS):
                for name, (path, headers, status) in cases.items():
                    started = time.process_time()
                    for _ in range(REQUESTS):
                        assert client.get(path, headers=headers).status_code == status
                    best[name] = min(best[name], (time.process_time() - started) / REQUESTS)
        return best

    best = benchmark.pedantic(measure, rounds=1, iterations=1)
    info: dict[str, Any] = {f"{name}_cpu_us": round(s * 1e6) for name, s in best.items()}
    for name in ("preview_hit", "preview_304"):
        info[f"{name}_per_healthz"] = round(best[name] / best["healthz"], 2)
    info["load_average"] = os.getloadavg()[0]
    benchmark.extra_info.update(info)
    print(
        "\nCPU per request in-process: "
        + ", ".join(f"{name} {s * 1e6:,.0f} us" for name, s in best.items())
        + f"; hit x{info['preview_hit_per_healthz']:.2f} and 304 "
        f"x{info['preview_304_per_healthz']:.2f} /healthz's, load {os.getloadavg()[0]:.1f}"
    )
