"""A handle on the `nixos-container` / `journalctl` stand-ins in `tests/fakes/bin`.

The stand-ins keep their state in a directory; this class reads and writes it so a test
can see what was called, simulate a crash, or make a command fail.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["BIN", "FakeNixos"]

BIN = Path(__file__).parent / "bin"


@dataclass
class FakeNixos:
    root: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def conf_dir(self) -> Path:
        return self.root / "etc"

    @property
    def env(self) -> dict[str, str]:
        return {
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "HIVE_FAKE_NIXOS_DIR": str(self.root),
            **self.extra_env,
        }

    def calls(self) -> list[list[str]]:
        path = self.root / "calls.jsonl"
        if not path.exists():
            return []
        return [json.loads(line)["argv"] for line in path.read_text().splitlines()]

    def cwds(self) -> list[str]:
        path = self.root / "calls.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return [json.loads(line).get("cwd", "") for line in lines]

    def actions(self) -> list[tuple[str, ...]]:
        """Each call as (action, container) -- the shape most tests compare."""
        return [tuple(argv[:2]) for argv in self.calls()]

    def conf(self, cname: str) -> dict[str, str]:
        text = (self.conf_dir / f"{cname}.conf").read_text()
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    def is_up(self, cname: str) -> bool:
        return (self.root / "up" / cname).exists()

    def crash(self, cname: str) -> None:
        crashed = self.root / "crashed"
        crashed.mkdir(parents=True, exist_ok=True)
        (crashed / cname).touch()

    def add_foreign(self, cname: str) -> None:
        """A container someone else created, outside hyperhive."""
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        (self.conf_dir / f"{cname}.conf").write_text("PRIVATE_NETWORK=1\n")

    def write_journal(self, cname: str, unit: str, lines: list[str]) -> None:
        path = self.root / "journal" / cname / f"{unit}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{line}\n" for line in lines))
