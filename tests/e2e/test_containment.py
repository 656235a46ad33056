"""What the model can reach, end to end: the real claude CLI on the scripted API, running in
its agent's sandbox, with and without `allowed_tools`; and a harness killed mid-turn."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import anyio
import pytest

from controller.events import EventType
from controller.protocol import connect_client
from reconcilers.proc import start_time
from tests.e2e.conftest import Swarm
from tests.e2e.test_talk import _claude_children, after_tool, turns_of, woke
from tests.fakes.anthropic import SeenRequest, hang, text, tool_use
from tests.helpers import admin, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

LOOK = """\
import json, os, socket
targets = {targets}
out = {{"present": [label for label, path in targets.items() if os.path.lexists(path)]}}
out["harness"] = {{}}
for what in ("environ", "fd/0", "mem"):
    try:
        with open(f"/proc/1/{{what}}", "rb") as fh:
            fh.read(16)
        out["harness"][what.split("/")[0]] = "read"
    except OSError:
        out["harness"][what.split("/")[0]] = "denied"
cmdlines = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{{pid}}/cmdline", "rb") as fh:
            cmdlines.append(fh.read().replace(b"\\0", b" ").decode())
    except OSError:
        pass
out["cmdlines"] = cmdlines
out["harnesses"] = sum("hive-ag3nt serve" in c for c in cmdlines)
out["sees_pytest"] = any("pytest" in c for c in cmdlines)
s = socket.socket(socket.AF_UNIX)
s.connect(os.environ["HIVE_SOCKET"])
s.sendall(b'{{"id": 1, "cmd": "operator_send", "args": {{"body": "forged"}}}}\\n')
out["operator_send"] = json.loads(s.recv(65536).decode())
out["pages"] = [
    os.path.exists(os.path.join(os.environ["HIVE_STATE"], "..", "..", n, "page"))
    for n in ("alice", "bob", "hm1nd")
]
print(json.dumps(out))
"""


async def apply_with(swarm: Swarm, **agents: str) -> None:
    """Apply agents given as name -> extra agent.toml lines; wait until each is idle."""
    clone = swarm.clone(f"c{len(list(swarm.root.iterdir()))}")
    for name, extra in agents.items():
        clone.write(f"agents/{name}/agent.toml", f'description = "{name}"\n{extra}\n')
    clone.commit_push("agents " + " ".join(agents))
    approval = (await wait_for(lambda: swarm.hive.approvals.query("pending")))[0]
    await swarm.hive.approvals.approve(approval.id)
    for name in agents:
        await swarm.wait_idle(name)


async def tool_result_of(swarm: Swarm, name: str) -> dict[str, Any]:
    with anyio.fail_after(60):
        seen: SeenRequest = await swarm.api.wait_for(after_tool(name))
    (result,) = seen.tool_results
    return result


def result_text(result: dict[str, Any]) -> str:
    content = result.get("content")
    if isinstance(content, list):
        return "\n".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
    return str(content)


async def test_allowed_tools_bash_runs_a_bash_call_and_without_it_the_call_is_refused(
    swarm: Swarm,
) -> None:
    await apply_with(swarm, alice='allowed_tools = ["Bash"]', bob="")
    client = await connect_client(swarm.hive.layout.socket("alice"))
    async with client:
        assert (await client.call("whoami"))["allowed_tools"] == ["Bash"]
    # Not a read-only command (claude lets those run unasked): it writes a file.
    command = {"command": "echo ran-$((6 * 7)) > bash-ran && cat bash-ran"}
    swarm.api.script(
        tool_use("Bash", command, when=woke("alice")),
        text("ran it", when=after_tool("alice")),
        tool_use("Bash", command, when=woke("bob")),
        text("could not", when=after_tool("bob")),
    )
    async with admin(swarm.hive) as client:
        await client.call("send", to="alice", body="run it")
        await client.call("send", to="bob", body="run it")
    alice = await tool_result_of(swarm, "alice")
    assert not alice.get("is_error") and "ran-42" in result_text(alice)
    # Bob's call is not run: it waits as a question to the operator, who denies it.
    async with admin(swarm.hive) as client:
        (question,) = await wait_for(lambda: client.call("questions"))
        assert question["asker"] == "bob" and question["question"].startswith("bob wants Bash")
        await client.call("answer", id=question["id"], answer="deny")
    bob = await tool_result_of(swarm, "bob")
    assert bob.get("is_error") and "ran-42" not in result_text(bob)
    assert "did not allow Bash" in result_text(bob)
    assert (swarm.hive.layout.notes_dir("alice") / "bash-ran").exists()
    assert not (swarm.hive.layout.notes_dir("bob") / "bash-ran").exists()


async def test_a_model_allowed_bash_cannot_reach_the_hive_beyond_its_agent(
    swarm: Swarm,
) -> None:
    await apply_with(swarm, alice='allowed_tools = ["Bash"]', bob="")
    layout, git = swarm.hive.layout, swarm.hive.git
    (layout.claude_dir("bob") / "secret").write_text("bob's credentials")
    targets = {
        "host": layout.host_socket,
        "manager": layout.socket("hm1nd"),
        "bob-socket": layout.socket("bob"),
        "bob-dir": layout.claude_dir("bob") / "secret",
        "applied": git.applied_path,
        "proposed": git.proposed_path,
        "sqlite": layout.state_dir / "hive.sqlite",
        "key": layout.harness_key("alice"),
    }
    # The test hands the model a script in its own notes dir; Bash runs it from there.
    (layout.notes_dir("alice") / "look.py").write_text(
        LOOK.format(targets=json.dumps({label: str(path) for label, path in targets.items()}))
    )
    script = "/usr/bin/python3 look.py"
    swarm.api.script(
        tool_use("Bash", {"command": script}, when=woke("alice")),
        text("looked around", when=after_tool("alice")),
    )
    async with admin(swarm.hive) as client:
        await client.call("send", to="alice", body="look around")
    result = await tool_result_of(swarm, "alice")
    assert not result.get("is_error"), result_text(result)
    seen = json.loads(result_text(result))
    assert seen["present"] == [], seen
    assert seen["harness"] == {"environ": "denied", "fd": "denied", "mem": "denied"}
    # Its own sandbox's processes only: one harness (PID 1), no hive-c0re, no bob.
    assert seen["harnesses"] == 1 and not seen["sees_pytest"], seen["cmdlines"]
    assert seen["operator_send"]["ok"] is False  # no such command, for anyone
    assert seen["pages"] == [False, False, False]  # no agent page socket is in reach
    inbox = [m for m in await swarm.hive.broker.messages("alice") if m.recipient == "alice"]
    assert [m.body for m in inbox] == ["look around"]


async def test_a_harness_killed_mid_turn_takes_its_claude_with_it_and_shows_offline(
    swarm: Swarm,
) -> None:
    await apply_with(swarm, alice="")
    swarm.api.script(hang(when=woke("alice")))
    async with admin(swarm.hive) as client:
        await client.call("send", to="alice", body="slow job")
    with anyio.fail_after(60):
        await swarm.api.wait_for(woke("alice"))
    await wait_for(lambda: swarm.turn_state("alice") == "thinking")
    harness = (await swarm.hive.runtime.observe("alice")).pid
    assert harness is not None
    claudes = {pid: start_time(pid) for pid in _claude_children(swarm, "alice")}
    assert claudes
    swarm.api.script(text("done in the new harness", when=woke("alice")))
    with swarm.hive.bus.subscribe(types=[EventType.AGENT_TURN]) as turns:
        os.kill(harness, signal.SIGKILL)
        killed = time.monotonic()
        with anyio.fail_after(5):
            while (event := await turns.next()).data.get("agent") != "alice":
                pass
    # The first word on alice's turn after the kill: offline, not a stale "thinking".
    assert event.data["state"] == "offline", event.data
    assert event.data["reason"] == "the harness disconnected"

    def claude_gone() -> bool:
        return all(start_time(pid) != started for pid, started in claudes.items())

    await wait_for(claude_gone, timeout=5, interval=0.01)
    assert time.monotonic() - killed < 2

    async def redelivered_ok() -> bool:
        return [t.status for t in await turns_of(swarm, "alice")][:1] == ["ok"]

    await wait_for(redelivered_ok, timeout=60)
    assert (await swarm.hive.runtime.observe("alice")).pid not in (None, harness)
    wakes = [r for r in swarm.api.main_requests if woke("alice")(r)]
    assert len(wakes) == 2 and all("slow job" in r.last_user_text for r in wakes)
