"""The lock files (requirements/*.txt, written by `make lock`) pin every dependency exactly, and
each pin satisfies the range pyproject.toml declares; `make` and the image install from them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# Which extras each lock file covers (the dev extra includes the local one).
LOCK_EXTRAS = {"run.txt": ("local",), "dev.txt": ("dev", "local"), "image.txt": ("ops",)}


def locked_pins(name: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements" / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        assert match, f"{name}: not an exact pin: {line!r}"
        pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def declared(extras: tuple[str, ...]) -> list[Requirement]:
    lines = list(PROJECT["dependencies"])
    for extra in extras:
        lines += PROJECT["optional-dependencies"][extra]
    reqs = [Requirement(line) for line in lines]
    return [r for r in reqs if canonicalize_name(r.name) != "resolutionflow"]


@pytest.mark.parametrize("lock_name", sorted(LOCK_EXTRAS))
def test_every_declared_dependency_is_pinned_inside_its_range(lock_name: str) -> None:
    pins = locked_pins(lock_name)
    for requirement in declared(LOCK_EXTRAS[lock_name]):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{lock_name}: {requirement.name} is not locked (run `make lock`)"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{lock_name}: {requirement.name}=={pins[name]} is outside {requirement.specifier}"
        )


def test_pyproject_declares_ranges_not_pins() -> None:
    for requirement in declared(tuple(PROJECT["optional-dependencies"])):
        assert not any(spec.operator == "==" for spec in requirement.specifier), (
            f"{requirement}: pyproject.toml holds ranges; the pin belongs in requirements/"
        )


def test_make_installs_from_the_lock_files() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install --quiet -r requirements/run.txt" in makefile
    assert "pip install --quiet -r requirements/dev.txt" in makefile
    # The project itself goes in without resolving anything beside the lock.
    assert makefile.count("pip install --quiet --no-deps -e .") == 2
