"""Fixtures for the reliability matrix: service processes, a moto server, HAProxy; all on loopback.

Helpers live in reliability_kit.py; with --import-mode=importlib this folder is not on sys.path,
so it is added here (the module name is unique across the repository's test folders).
"""

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from image_service.transform import harden_libvips
from reliability_kit import Proc, Starter, start, stop


@pytest.fixture(scope="session", autouse=True)
def _libvips() -> None:
    # The same process-wide hardening the service applies at start (in-process tests need it).
    harden_libvips(1)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Starter]:
    """Start real service processes; every one is stopped (SIGKILL if it will not stop)."""
    started: list[Proc] = []

    def factory(name: str = "svc", store: str | None = None, **extra: str) -> Proc:
        proc = start(tmp_path, name, store or str(tmp_path / f"{name}-store"), extra=extra)
        started.append(proc)
        return proc

    yield factory
    for proc in started:
        stop(proc, timeout=10)
