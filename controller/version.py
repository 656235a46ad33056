"""Versions: the package's, and the harness's (what auto-update compares).

The harness version is the package version plus a digest of the harness sources, so any
change to the code agents run makes every recorded harness version stale.
"""

from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path

__all__ = ["HARNESS_VERSION", "VERSION"]


def _version() -> str:
    try:
        return metadata.version("hyperhive")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def _harness_digest() -> str:
    root = Path(__file__).resolve().parent.parent / "harness"
    digest = hashlib.sha256()
    for path in sorted(root.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


VERSION = _version()
HARNESS_VERSION = f"{VERSION}+{_harness_digest()}"
