"""The agent sandbox of the process runtime: the bwrap command line, and what a real
sandboxed process (a stand-in harness that looks around) can and cannot reach."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from controller.hive import Hive
from controller.settings import Settings
from gitstore.spec import MANAGER
from hyperhive.daemon import build_hive
from reconcilers.layout import Layout
from reconcilers.proc import start_time
from reconcilers.runtime import ContainerState
from reconcilers.sandbox import INSTALL_HINT, Mount, bwrap_argv, for_agent
from tests.helpers import Clone, admin, hive_settings, running_hive, wait_for

PROBER = Path(__file__).parents[1] / "fakes" / "prober.py"


def _binds(argv: list[str]) -> list[tuple[str, str]]:
    """(flag, dest) of every mount in a bwrap command line, in order."""
    out = []
    i = 0
    while i < len(argv) and argv[i] != "--":
        flag = argv[i]
        if flag in ("--ro-bind", "--ro-bind-try", "--bind", "--bind-try", "--symlink"):
            out.append((flag, argv[i + 2]))
            i += 3
        elif flag in ("--tmpfs", "--proc", "--dev", "--chdir", "--info-fd", "--cap-drop"):
            out.append((flag, argv[i + 1]))
            i += 2
        else:
            i += 1
    return out


def test_a_dir_holding_the_state_is_bound_then_hidden_then_the_agents_own_dirs_show() -> None:
    layout = Layout(Path("/srv/hive/state"), Path("/srv/hive/run"))
    host = [
        Mount("ro", "/srv", "/srv"),
        Mount("ro", "/usr", "/usr"),
        Mount("symlink", "/lib", "usr/lib"),
    ]
    argv = bwrap_argv(
        for_agent(layout, "alice", host=host, proposed_repo=Path("/srv/hive/state/proposed.git")),
        ["harness", "serve"],
        info_fd=7,
    )
    binds = _binds(argv)
    order = [dest for _, dest in binds]
    own = "/srv/hive/state/agents/alice/claude"
    assert order.index("/srv") < order.index("/srv/hive/state") < order.index(own)
    assert ("--tmpfs", "/srv/hive/state") in binds and ("--tmpfs", "/srv/hive/run") in binds
    assert ("--bind", own) in binds
    assert ("--ro-bind", "/srv/hive/run/agents/alice") in binds
    assert ("--chdir", "/srv/hive/state/agents/alice/state") in binds
    assert ("--info-fd", "7") in binds and ("--cap-drop", "ALL") in binds
    for flag in ("--unshare-pid", "--unshare-ipc", "--as-pid-1", "--new-session"):
        assert flag in argv
    assert "--unshare-net" not in argv and "--die-with-parent" not in argv
    assert argv[-3:] == ["--", "harness", "serve"]
    # Nothing of another agent, the host socket or the repos, but for the manager's.
    dests = " ".join(order)
    assert "bob" not in dests and "host.sock" not in dests and ".git" not in dests


def test_the_manager_gets_its_clone_and_proposed_but_never_applied() -> None:
    layout = Layout(Path("/s"), Path("/r"))
    proposed = Path("/s/proposed.git")
    binds = _binds(bwrap_argv(for_agent(layout, MANAGER, host=[], proposed_repo=proposed), ["h"]))
    assert ("--bind", "/s/agents/hm1nd/agents") in binds
    assert ("--bind", "/s/proposed.git") in binds
    # What git runs on a push (hooks, config's core.hooksPath) stays the operator's.
    order = [dest for _, dest in binds]
    assert order.index("/s/proposed.git") < order.index("/s/proposed.git/hooks")
    assert ("--ro-bind-try", "/s/proposed.git/hooks") in binds
    assert ("--ro-bind-try", "/s/proposed.git/config") in binds
    assert ("--ro-bind", "/r/manager") in binds
    assert not [d for _, d in binds if "applied" in d]


def test_host_paths_inside_the_state_or_runtime_dir_are_never_bound() -> None:
    layout = Layout(Path("/s"), Path("/r"))
    host = [Mount("ro", "/s/agents/bob", "/s/agents/bob"), Mount("ro", "/r", "/r")]
    binds = _binds(bwrap_argv(for_agent(layout, "alice", host=host, proposed_repo=Path("/p")), []))
    assert ("--ro-bind", "/s/agents/bob") not in binds and ("--ro-bind", "/r") not in binds


# --- real sandboxed processes --------------------------------------------------------


async def _probe(hive: Hive, name: str) -> dict[str, Any]:
    path = hive.layout.notes_dir(name) / "probe.json"
    await wait_for(path.exists, timeout=20)
    return dict(json.loads(path.read_text()))


async def _apply(hive: Hive, short_dir: Path, *names: str) -> None:
    clone = Clone(short_dir / "clone", hive.git.proposed_path)
    for name in names:
        clone.add_agent(name)
    clone.commit_push("agents")
    (approval,) = await wait_for(lambda: hive.approvals.query("pending"))
    await hive.approvals.approve(approval.id)
    for name in names:
        await wait_for((hive.layout.notes_dir(name) / "probe.json").exists, timeout=20)


@pytest.mark.anyio
async def test_a_sandboxed_agent_sees_only_its_own_dirs_and_socket(short_dir: Path) -> None:
    settings = hive_settings(short_dir, harness_command=(sys.executable, str(PROBER)))
    async with running_hive(settings) as hive:
        await _apply(hive, short_dir, "alice", "bob")
        seen = await _probe(hive, "alice")
        # Its own PID namespace with itself alone in it, and no capability.
        assert seen["pid"] == 1 and seen["pids"] == [1]
        assert int(seen["cap_eff"], 16) == 0
        assert seen["exists"] == {
            "host.sock": False,
            "manager socket": False,
            "applied.git": False,
            "proposed.git": False,
            "hive.sqlite": False,
            "own key": False,
            "own log": False,
            "own socket": True,
        }
        assert seen["connects"] == {"own socket": True, "host.sock": False}
        assert seen["state_dir"] == ["agents"] and seen["agents_dirs"] == ["alice"]
        assert seen["agent_sockets"] == ["alice"]
        assert seen["runtime_dir"] == ["agents"]
        assert seen["writable"] == {
            "notes": True,
            "claude": True,
            "home": True,
            "tmp": True,
            "socket dir": False,
            "usr": False,
        }
        assert seen["uid"] == os.getuid()
        # bob was probed in a sandbox of his own, with his own things only.
        assert (await _probe(hive, "bob"))["agents_dirs"] == ["bob"]


@pytest.mark.anyio
async def test_the_manager_pushes_to_proposed_but_cannot_touch_applied_or_hooks(
    short_dir: Path,
) -> None:
    settings = hive_settings(short_dir, harness_command=(sys.executable, str(PROBER)))
    async with running_hive(settings) as hive:
        seen = await _probe(hive, MANAGER)
        assert seen["exists"]["proposed.git"] and not seen["exists"]["applied.git"]
        assert not seen["exists"]["host.sock"] and seen["connects"]["own socket"]
        assert seen["manager"] == {
            "clone": True,
            "proposed refs": True,
            "proposed objects": True,
            "proposed hooks": False,
            "proposed config": False,
        }
        assert seen["state_dir"] == ["agents", "proposed.git"]


@pytest.mark.anyio
async def test_unsandboxed_agents_have_the_operators_reach_and_status_says_so(
    short_dir: Path,
) -> None:
    settings = hive_settings(
        short_dir, harness_command=(sys.executable, str(PROBER)), unsandboxed=True
    )
    async with running_hive(settings) as hive:
        seen = await _probe(hive, MANAGER)
        assert seen["exists"]["host.sock"] and seen["exists"]["applied.git"]
        assert seen["pid"] != 1
        async with admin(hive) as client:
            assert (await client.call("status"))["sandbox"] == "none"


@pytest.mark.anyio
async def test_without_bwrap_agents_are_refused_with_how_to_install_it(short_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVE_")}
    env["PATH"] = str(short_dir / "empty-bin")
    async with running_hive(hive_settings(short_dir, environ=env)) as hive:

        async def refused() -> dict[str, Any] | None:
            async with admin(hive) as client:
                rows = await client.call("agents")
            row = next(r for r in rows if r["name"] == MANAGER)
            return row if "apt-get install bubblewrap" in row["message"] else None

        row = await wait_for(refused)
        assert row["state"] != "running" and not row["ready"]
        assert row["message"] == INSTALL_HINT
        async with admin(hive) as client:
            assert (await client.call("status"))["sandbox"] == "bwrap"


@asynccontextmanager
async def _serving(settings: Settings) -> AsyncIterator[Hive]:
    """A hive that leaves its agents running when it stops, as hive-c0re does."""
    hive = build_hive(settings)
    async with anyio.create_task_group() as tg:
        await tg.start(hive.serve)
        yield hive
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()


def _proc_json(hive: Hive, name: str) -> dict[str, Any]:
    return dict(json.loads((hive.layout.agent_dir(name) / "proc.json").read_text()))


@pytest.mark.anyio
async def test_a_restarted_hive_adopts_sandboxed_agents_and_resandboxes_unsandboxed_ones(
    short_dir: Path,
) -> None:
    unsandboxed = hive_settings(short_dir, unsandboxed=True)
    sandboxed = hive_settings(short_dir)
    try:
        async with _serving(unsandboxed) as hive:
            first = await wait_for(lambda: _running_pid(hive, MANAGER))
            assert _proc_json(hive, MANAGER)["sandbox"] == "none"
        async with _serving(sandboxed) as hive:
            # Started with the operator's rights: stopped, and started again in a sandbox.
            second = await wait_for(lambda: _running_pid(hive, MANAGER, not_=first))
            record = _proc_json(hive, MANAGER)
            assert record["sandbox"] == "bwrap" and record["sandbox_pid"] != second
            assert start_time(first) is None
        async with _serving(sandboxed) as hive:
            # A sandboxed one is adopted as it runs, then stopped through its pid.
            assert await _running_pid(hive, MANAGER) == second
            await hive.runtime.stop(MANAGER)
            assert start_time(second) is None and start_time(record["sandbox_pid"]) is None
    finally:
        for proc in (sandboxed.state_dir / "agents").glob("*/proc.json"):
            record = json.loads(proc.read_text())
            if start_time(record["pid"]) == record["start_time"]:
                os.kill(record["pid"], signal.SIGKILL)


async def _running_pid(hive: Hive, name: str, not_: int | None = None) -> int | None:
    observed = await hive.runtime.observe(name)
    if observed.state is not ContainerState.RUNNING or observed.pid == not_:
        return None
    return observed.pid
