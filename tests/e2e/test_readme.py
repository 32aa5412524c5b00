"""The README's walk-through, run verbatim against the stack `make run` starts.

Convention (stated in the README's Development section): every fenced `sh` block is run, in
order, in one bash with `set -euo pipefail`; a `sh` block followed by a `text` block (at most one
line of prose between them) must print exactly that text; `shell` blocks are shown, not run.
Only the port of `localhost:8000` / `127.0.0.1:8000` is replaced by the test stack's.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from shared.config import PROJECT_ROOT, Settings
from tests.support.stack import RunningStack, running_stack

README = PROJECT_ROOT / "README.md"
FENCE = re.compile(r"^```([A-Za-z0-9_-]*)\s*$")
MARKER = "@@rf-readme-block-{}@@"


@dataclass
class Block:
    lang: str
    text: str
    line: int
    expected: str | None = None


def readme_blocks(markdown: str) -> list[Block]:
    """The fenced blocks of `markdown`, each `sh` block with the `text` block that follows it."""
    blocks: list[Block] = []
    lines = markdown.splitlines()
    i = 0
    prose_since_last = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            if lines[i].strip():
                prose_since_last += 1
            i += 1
            continue
        lang, start = match.group(1), i
        i += 1
        body: list[str] = []
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        block = Block(lang, "\n".join(body), start + 1)
        if lang == "text" and blocks and blocks[-1].lang == "sh" and prose_since_last <= 1:
            if blocks[-1].expected is None:
                blocks[-1].expected = block.text
        blocks.append(block)
        prose_since_last = 0
    return blocks


def test_readme_convention_parser() -> None:
    sample = "\n".join(
        [
            "```shell",
            "make run",
            "```",
            "```sh",
            "echo hi",
            "```",
            "prints",
            "",
            "```text",
            "hi",
            "```",
            "Some prose.",
            "More prose.",
            "```sh",
            "true",
            "```",
            "a",
            "b",
            "```text",
            "not an expectation: two lines of prose in between",
            "```",
        ]
    )
    runnable = [b for b in readme_blocks(sample) if b.lang == "sh"]
    assert [(b.text, b.expected) for b in runnable] == [("echo hi", "hi"), ("true", None)]


@pytest.fixture(scope="module")
def stack(migrated: Settings) -> Iterator[RunningStack]:
    """What `make run` starts, on a free port."""
    with running_stack(migrated, make_run=True, log_name="readme") as running:
        yield running


def _localised(command: str, port: int) -> str:
    return re.sub(r"\b(localhost|127\.0\.0\.1):8000\b", rf"\g<1>:{port}", command)


def test_readme_sh_blocks_run_verbatim_and_print_what_it_says(stack: RunningStack) -> None:
    blocks = [b for b in readme_blocks(README.read_text()) if b.lang == "sh"]
    assert len(blocks) >= 1, "the README's walk-through has no `sh` block"
    assert any(b.expected is not None for b in blocks)

    script = ["set -euo pipefail"]
    for index, block in enumerate(blocks):
        script.append(f"printf '%s\\n' '{MARKER.format(index)}'")
        script.append(_localised(block.text, urlsplit(stack.base_url).port or 0))
    script.append(f"printf '%s\\n' '{MARKER.format(len(blocks))}'")
    env = {k: v for k, v in os.environ.items() if k != "TOKEN"}
    env["PATH"] = f"{PROJECT_ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = result.stdout
    outputs: list[str] = []
    for index in range(len(blocks)):
        start = out.find(MARKER.format(index) + "\n")
        end = out.find(MARKER.format(index + 1) + "\n")
        if start < 0:
            break
        start += len(MARKER.format(index)) + 1
        outputs.append(out[start:] if end < 0 else out[start:end])
    failed_at = len(outputs) - 1 if result.returncode else None
    where = f" (README line {blocks[failed_at].line})" if failed_at is not None else ""
    assert result.returncode == 0, f"a README block failed{where}:\n{out}\n{result.stderr}"
    assert len(outputs) == len(blocks)
    for block, output in zip(blocks, outputs, strict=True):
        if block.expected is not None:
            assert output.rstrip() == block.expected.rstrip(), (
                f"README line {block.line}: expected\n{block.expected}\ngot\n{output}"
            )


def test_make_run_prints_the_demo_users_as_the_readme_shows(stack: RunningStack) -> None:
    readme = README.read_text()
    [log] = stack.logs
    printed = log.read_text()
    shown = readme[readme.index("`make run` prints something like:") :]
    shown = shown[shown.index("```") + 3 : shown.index("```", shown.index("```") + 3)]
    for line in shown.strip().splitlines():
        if "token:" in line:
            assert re.search(r"token: eyJ[\w-]+\.[\w-]+\.[\w-]+", printed)
        else:
            assert line.rstrip() in printed, line
