"""The gunicorn settings' worker hooks, run as gunicorn runs them (in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys

from shared.config import PROJECT_ROOT

CONFIG = PROJECT_ROOT / "deploy" / "gunicorn.conf.py"


def test_a_worker_freezes_the_loaded_app_out_of_the_garbage_collector() -> None:
    # What a worker has loaded before post_worker_init lives as long as the worker: frozen, a
    # full collection no longer walks it (it stopped every thread of a worker for 100-190 ms).
    probe = (
        "import gc, runpy, flask, sqlalchemy\n"
        f"conf = runpy.run_path({str(CONFIG)!r})\n"
        "before = gc.get_freeze_count()\n"
        "conf['post_worker_init'](None)\n"
        "print(before, gc.get_freeze_count())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    before, after = (int(n) for n in result.stdout.split())
    assert before == 0
    assert after > 10_000
