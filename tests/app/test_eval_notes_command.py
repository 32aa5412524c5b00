"""`make eval-notes` as a process: the evaluation over bench/eval/notes/ prints a line per
session and the total (the scores themselves: tests/services/notes/test_eval_notes.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_make_eval_notes_prints_per_session_and_total() -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "bench.eval.notes_eval"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = done.stdout.splitlines()
    assert lines[0].split()[:5] == ["session", "generator", "complete", "grounded", "coverage"]
    assert any(line.startswith("outlook-password-prompts") for line in lines)
    total = next(line for line in lines if line.startswith("TOTAL"))
    assert "100.0%" in total
