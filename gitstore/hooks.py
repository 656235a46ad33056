"""The enforced gate, git's half: `applied.git` refuses every push.

A `pre-receive` hook that prints where to push instead and exits non-zero makes git
refuse the whole push before any ref moves (objects may land in quarantine, never a
ref). hive-c0re's own ref updates go through libgit2, which runs no hooks. The repo's
own `core.hooksPath` points at its hooks dir, so a pusher's global `core.hooksPath`
(git reads the pusher's config for a local push) cannot route around the hook. Installed
when the repo is created and again at every start, so state dirs from before the gate get
it too, and an edited or deleted hook is put back.

Hooks only stop pushes: a `git update-ref` or `git fetch` inside the repo moves `main`
without any hook. That is what hive-c0re's record of applied moves catches
(`controller.gate`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pygit2

__all__ = ["install_gate_hook", "refusal"]


def refusal(proposed: Path) -> str:
    """What a push into applied.git is told."""
    return (
        "hyperhive: applied.git does not accept pushes; only an approval changes what runs.\n"
        f"Push your branch to the proposed repo instead:\n"
        f"    git push {proposed} HEAD:refs/heads/<branch>\n"
        "then approve it: `hive approvals`, `hive approve N` or APPR0VE in the dashboard.\n"
    )


def _script(proposed: Path) -> str:
    lines = "".join(f"{line}\n" for line in refusal(proposed).splitlines())
    return (
        "#!/bin/sh\n"
        "# Installed by hive-c0re (gitstore/hooks.py) at every start: edits are undone.\n"
        "cat >&2 <<'HYPERHIVE'\n"
        f"{lines}"
        "HYPERHIVE\n"
        "exit 1\n"
    )


def install_gate_hook(applied: Path, proposed: Path) -> None:
    """Install (or repair) the refusing `pre-receive` hook of `applied`."""
    hooks = applied / "hooks"
    hooks.mkdir(exist_ok=True)
    hook = hooks / "pre-receive"
    script = _script(proposed)
    if not hook.exists() or hook.read_text() != script:
        staged = hooks / f".pre-receive.{os.getpid()}"
        staged.write_text(script)
        staged.chmod(0o755)
        staged.replace(hook)
    elif hook.stat().st_mode & 0o111 != 0o111:
        hook.chmod(0o755)
    config = pygit2.Config(str(applied / "config"))
    if _get(config, "core.hooksPath") != str(hooks):
        config["core.hooksPath"] = str(hooks)


def _get(config: pygit2.Config, key: str) -> str | None:
    try:
        return str(config[key])
    except KeyError:
        return None
