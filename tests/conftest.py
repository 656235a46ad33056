"""Shared fixtures: short socket dirs, real repos, a real hive in-process."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A temp dir short enough for AF_UNIX paths (108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="hv", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
