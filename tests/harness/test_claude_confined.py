"""Claude confined by the harness (`HIVE_CLAUDE_SANDBOX=bwrap`, as in a nixos container):
the real claude CLI on the scripted API, its Bash tool looking for the harness's key and
the harness itself; and a confined turn cancelled gracefully."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from harness.claude import TurnResult
from harness.confine import confinement_from_env
from harness.session import SessionSpec, open_session
from tests.fakes.agent_socket import open_agent_socket
from tests.fakes.anthropic import FakeAnthropic, hang, text, tool_use
from tests.harness.conftest import settings_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

LOOK = """\
import json, os
out = {"key": os.path.exists(os.environ["KEY_FILE"]), "key_dir": os.listdir(os.environ["KEY_DIR"])}
cmdlines = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdlines.append(fh.read().replace(b"\\0", b" ").decode())
    except OSError:
        pass
out["pid1"] = open("/proc/1/cmdline", "rb").read().split(b"\\0")[0].decode()
out["sees_pytest"] = any("pytest" in c for c in cmdlines)  # the harness here is pytest
out["cap_eff"] = [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff")][0]
print(json.dumps(out))
"""


def _confined(short_tmp: Path) -> tuple[Path, Any]:
    key_dir = short_tmp / "hive-key"
    key_dir.mkdir()
    key_file = key_dir / "harness.key"
    key_file.write_text("the harness's secret")
    confine = confinement_from_env(
        {"HIVE_CLAUDE_SANDBOX": "bwrap", "HIVE_KEY_FILE": str(key_file), "PATH": os.defpath}
    )
    assert confine is not None and confine.hidden == (str(key_dir),)
    return key_file, confine


async def test_a_confined_claude_runs_bash_but_cannot_see_the_key_or_the_harness(
    claude_bin: str, fake_api: FakeAnthropic, short_tmp: Path
) -> None:
    assert shutil.which("bwrap")
    key_file, confine = _confined(short_tmp)
    state = short_tmp / "state"
    state.mkdir()
    (state / "look.py").write_text(LOOK)
    fake_api.script(
        tool_use("Bash", {"command": "/usr/bin/python3 look.py"}),
        text("looked"),
    )
    async with open_agent_socket("alice") as sock:
        settings = settings_for(claude_bin, fake_api, short_tmp, confine=confine)
        where = {"KEY_FILE": str(key_file), "KEY_DIR": str(key_file.parent)}
        settings = dataclasses.replace(settings, env={**settings.env, **where})
        spec = SessionSpec(allowed_tools=("Bash",))
        async with open_session("alice", sock.path, state, settings, spec) as session:
            result = await session.turn("look", _ignore)
    assert result.ok, result.stderr_tail
    (tool_result,) = fake_api.main_requests[1].tool_results
    content = tool_result["content"]
    seen = json.loads(content if isinstance(content, str) else content[0]["text"])
    assert seen["key"] is False and seen["key_dir"] == []
    assert seen["pid1"].endswith(("claude", "claude.exe")) and not seen["sees_pytest"]
    assert int(seen["cap_eff"], 16) == 0
    assert key_file.read_text() == "the harness's secret"  # hidden, not touched


async def test_a_confined_turn_is_cancelled_as_quickly_as_a_plain_one(
    claude_bin: str, fake_api: FakeAnthropic, short_tmp: Path
) -> None:
    _, confine = _confined(short_tmp)
    fake_api.script(hang())
    results: list[TurnResult] = []
    async with open_agent_socket("alice") as sock:
        settings = settings_for(claude_bin, fake_api, short_tmp, confine=confine)
        state = short_tmp / "state"
        async with open_session("alice", sock.path, state, settings, SessionSpec()) as session:

            async def turn() -> None:
                results.append(await session.turn("think forever", _ignore))

            async with anyio.create_task_group() as tg:
                tg.start_soon(turn)
                with anyio.fail_after(20):
                    await fake_api.wait_for(lambda r: r.scripted)
                await anyio.sleep(0.2)
                started = time.monotonic()
                assert session.cancel()
            elapsed = time.monotonic() - started
            assert session.alive
    (result,) = results
    # The interrupt reached claude through bwrap: the turn ended on claude's own terms
    # and the confined session lives on.
    assert result.cancelled and elapsed < 2.0
    assert result.exit_code is None and result.result is not None, result.stderr_tail


async def _ignore(event: dict[str, Any]) -> None:
    return None
