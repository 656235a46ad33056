"""A live session: the real claude CLI on the fake Messages API, one long-lived process,
the hive tools served in-process over the control protocol, and a recording agent socket."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from harness import events
from harness.claude import ClaudeMissingError, ClaudeSettings
from harness.session import PermissionAsker, Session, SessionSpec, open_session
from tests.fakes.agent_socket import AgentSocket, Call, open_agent_socket
from tests.fakes.anthropic import FakeAnthropic, hang, text, tool_use
from tests.harness.conftest import settings_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    async def __call__(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def items(self) -> list[events.Item]:
        return [item for e in self.events for item in events.items(e)]


@asynccontextmanager
async def live(
    sock: AgentSocket,
    settings: ClaudeSettings,
    state: Path,
    spec: SessionSpec | None = None,
    ask: PermissionAsker | None = None,
) -> AsyncIterator[Session]:
    async with open_session(
        sock.name, sock.path, state, settings, spec or SessionSpec(), ask=ask
    ) as session:
        yield session


async def test_many_turns_run_in_one_claude_with_the_hive_tools_served_in_process(
    claude_bin: str, fake_api: FakeAnthropic, short_tmp: Path
) -> None:
    fake_api.script(tool_use("mcp__hive__send", {"to": "bob", "body": "hi"}), text("sent it"))
    fake_api.script(*(text(f"reply {i}") for i in range(2, 6)))
    settings = settings_for(claude_bin, fake_api, short_tmp)
    async with open_agent_socket("alice") as sock, live(sock, settings, short_tmp / "s") as s:
        pid = s.process.pid
        rec = Recorder()
        first = await s.turn("message from carol: say hi to bob", rec)
        later = [await s.turn(f"wake {i}", Recorder()) for i in range(2, 6)]
        assert s.process.pid == pid and s.alive

    assert first.ok and first.exit_code is None, first
    assert all(r.ok for r in later)
    assert sock.calls_of("send") == [Call("send", {"to": "bob", "body": "hi"})]
    requests = fake_api.main_requests
    assert "mcp__hive__send" in requests[0].tool_names
    [tool_result] = requests[1].tool_results
    assert json.loads(tool_result["content"][0]["text"]) == {"id": 1}
    # One conversation: the fifth turn's request carries the first one's message.
    assert "say hi to bob" in json.dumps(requests[-1].messages)
    assert "wake 5" in requests[-1].last_user_text
    [init] = [i for i in rec.items() if isinstance(i, events.Init)]
    assert ("hive", "connected") in init.mcp_servers
    [final] = [i for i in rec.items() if isinstance(i, events.Result)]
    assert final.ok and final.text == "sent it"
    # Cost per turn, not the process's running total claude reports.
    assert first.cost_usd is not None and later[-1].cost_usd is not None
    assert abs(later[-1].cost_usd - first.cost_usd / 2) < 1e-9
    assert first.input_tokens == 20 and first.output_tokens == 10
    # No MCP server process was started: claude's only child is none of ours.
    assert not list(short_tmp.glob("s/.hive/mcp.json"))


async def test_cancel_interrupts_the_turn_through_the_control_protocol_and_the_session_stays(
    claude_bin: str, fake_api: FakeAnthropic, short_tmp: Path
) -> None:
    fake_api.script(hang(), text("after the interrupt"))
    settings = settings_for(claude_bin, fake_api, short_tmp)
    async with open_agent_socket("alice") as sock, live(sock, settings, short_tmp / "s") as s:
        pid = s.process.pid
        results = []
        async with anyio.create_task_group() as tg:

            async def turn() -> None:
                results.append(await s.turn("think forever", Recorder()))

            tg.start_soon(turn)
            with anyio.fail_after(20):
                await fake_api.wait_for(lambda r: r.scripted)
            await anyio.sleep(0.2)  # claude is reading the stalled stream
            started = time.monotonic()
            assert s.cancel()
        elapsed = time.monotonic() - started
        after = await s.turn("are you still there?", Recorder())
        assert s.process.pid == pid

    [cancelled] = results
    assert cancelled.cancelled and not cancelled.ok and cancelled.exit_code is None
    assert cancelled.result is not None  # claude ended the turn itself: a result came
    assert elapsed < 1.0, elapsed
    assert after.ok and not s.cancel()


async def test_a_killed_claude_ends_the_turn_as_a_failure(
    claude_bin: str, fake_api: FakeAnthropic, short_tmp: Path
) -> None:
    fake_api.script(hang())
    settings = settings_for(claude_bin, fake_api, short_tmp)
    async with open_agent_socket("alice") as sock, live(sock, settings, short_tmp / "s") as s:
        results = []
        async with anyio.create_task_group() as tg:

            async def turn() -> None:
                results.append(await s.turn("think forever", Recorder()))

            tg.start_soon(turn)
            with anyio.fail_after(20):
                await fake_api.wait_for(lambda r: r.scripted)
            os.killpg(s.group, 9)
        assert not s.alive
    [result] = results
    assert not result.ok and result.result is None and result.exit_code not in (None, 0)


async def test_a_turn_past_its_deadline_is_interrupted(
    claude_bin: str, fake_api: FakeAnthropic, short_tmp: Path
) -> None:
    fake_api.script(hang())
    settings = settings_for(claude_bin, fake_api, short_tmp, turn_timeout=3.0)
    async with open_agent_socket("alice") as sock, live(sock, settings, short_tmp / "s") as s:
        result = await s.turn("think forever", Recorder())
        assert s.alive
    assert result.cancelled and result.timed_out and fake_api.main_requests


async def test_a_hung_claude_is_killed_at_the_deadline_and_the_turn_says_so(
    claude_bin: str, fake_api: FakeAnthropic, short_tmp: Path
) -> None:
    fake_api.script(hang())
    settings = settings_for(
        claude_bin, fake_api, short_tmp, turn_timeout=2.0, interrupt_grace=0.5, term_grace=0.5
    )
    async with open_agent_socket("alice") as sock, live(sock, settings, short_tmp / "s") as s:
        async with anyio.create_task_group() as tg:

            async def stop_claude() -> None:
                with anyio.fail_after(20):
                    await fake_api.wait_for(lambda r: r.scripted)
                os.kill(s.process.pid, signal.SIGSTOP)  # it can answer nothing now

            tg.start_soon(stop_claude)
            result = await s.turn("think forever", Recorder())
        assert not s.alive
    assert result.timed_out and result.hung and result.exit_code is not None


async def test_set_model_switches_the_model_of_the_warm_session(
    claude_bin: str, fake_api: FakeAnthropic, short_tmp: Path
) -> None:
    fake_api.script(text("one"), text("two"))
    settings = settings_for(claude_bin, fake_api, short_tmp)
    spec = SessionSpec(model="claude-first")
    async with open_agent_socket("alice") as sock, live(sock, settings, short_tmp / "s", spec) as s:
        pid = s.process.pid
        await s.turn("one", Recorder())
        await s.set_model("claude-second")
        await s.turn("two", Recorder())
        assert s.process.pid == pid
    models = [(r.body or {}).get("model") for r in fake_api.main_requests]
    assert models == ["claude-first", "claude-second"]


async def test_a_new_process_resumes_the_recorded_session(
    claude_bin: str, fake_api: FakeAnthropic, short_tmp: Path
) -> None:
    fake_api.script(text("noted the first"), text("noted the second"), text("fresh"))
    settings = settings_for(claude_bin, fake_api, short_tmp)
    state = short_tmp / "s"
    async with open_agent_socket("alice") as sock:
        async with live(sock, settings, state, SessionSpec(append_system_prompt="PROMPT-A")) as s:
            one = await s.turn("wake one: ping", Recorder())
        resumed = SessionSpec(append_system_prompt="PROMPT-B", resume=one.session_id)
        async with live(sock, settings, state, resumed) as s:
            two = await s.turn("wake two: pong", Recorder())
        async with live(sock, settings, state) as s:
            await s.turn("wake three", Recorder())
    assert one.session_id and two.session_id == one.session_id
    _, second, third = fake_api.main_requests
    assert "wake one: ping" in json.dumps(second.messages)
    assert "PROMPT-B" in second.system_text and "PROMPT-A" not in second.system_text
    assert "wake one" not in json.dumps(third.messages)


async def test_a_tool_outside_allowed_tools_asks_and_runs_in_the_same_turn_when_allowed(
    claude_bin: str, fake_api: FakeAnthropic, short_tmp: Path
) -> None:
    marker = short_tmp / "ran"
    fake_api.script(tool_use("Bash", {"command": f"touch {marker}"}), text("done"))
    asked: list[tuple[str, dict[str, Any]]] = []

    async def ask(tool: str, tool_input: dict[str, Any]) -> tuple[bool, str]:
        asked.append((tool, tool_input))
        return True, ""

    settings = settings_for(claude_bin, fake_api, short_tmp)
    async with (
        open_agent_socket("alice") as sock,
        live(sock, settings, short_tmp / "s", ask=ask) as s,
    ):
        result = await s.turn("run it", Recorder())
    assert result.ok and marker.exists()
    assert asked == [("Bash", {"command": f"touch {marker}"})]
    [tool_result] = fake_api.main_requests[1].tool_results
    assert not tool_result.get("is_error")


async def test_a_denied_tool_reaches_the_model_as_the_operators_refusal(
    claude_bin: str, fake_api: FakeAnthropic, short_tmp: Path
) -> None:
    marker = short_tmp / "ran"
    fake_api.script(tool_use("Bash", {"command": f"touch {marker}"}), text("ok, not then"))

    async def ask(tool: str, tool_input: dict[str, Any]) -> tuple[bool, str]:
        return False, "The operator did not allow Bash (no)."

    settings = settings_for(claude_bin, fake_api, short_tmp)
    async with (
        open_agent_socket("alice") as sock,
        live(sock, settings, short_tmp / "s", ask=ask) as s,
    ):
        result = await s.turn("run it", Recorder())
    assert result.ok and not marker.exists()
    [tool_result] = fake_api.main_requests[1].tool_results
    assert tool_result.get("is_error") and "did not allow Bash" in json.dumps(tool_result)


async def test_manager_tools_are_offered_only_to_the_manager(
    claude_bin: str, fake_api: FakeAnthropic, short_tmp: Path
) -> None:
    fake_api.script(text("agent here"), text("manager here"))
    settings = settings_for(claude_bin, fake_api, short_tmp)
    async with open_agent_socket("alice") as sock, live(sock, settings, short_tmp / "a") as s:
        await s.turn("hello", Recorder())
    async with (
        open_agent_socket("hm1nd", manager=True) as sock,
        live(sock, settings, short_tmp / "m") as s,
    ):
        await s.turn("hello", Recorder())
    agent, manager = (set(r.tool_names) for r in fake_api.main_requests)
    manager_only = {
        f"mcp__hive__{t}"
        for t in ("request_spawn", "kill", "start", "restart", "request_apply_commit")
    } | {"mcp__hive__ask_operator", "mcp__hive__list_agents"}
    assert {"mcp__hive__send", "mcp__hive__recv"} <= agent
    assert not manager_only & agent and manager_only <= manager


async def test_a_protocol_error_reaches_the_model_as_a_tool_error(
    claude_bin: str, fake_api: FakeAnthropic, short_tmp: Path
) -> None:
    fake_api.script(tool_use("mcp__hive__send", {"to": "zed", "body": "hi"}), text("oh well"))
    settings = settings_for(claude_bin, fake_api, short_tmp)
    async with open_agent_socket("alice") as sock, live(sock, settings, short_tmp / "s") as s:
        sock.fail["send"] = ("unknown_agent", "no agent named 'zed'")
        result = await s.turn("say hi to zed", Recorder())
    assert result.ok
    [tool_result] = fake_api.main_requests[1].tool_results
    assert tool_result.get("is_error") is True
    assert "no agent named 'zed'" in json.dumps(tool_result["content"])


async def test_closing_the_session_leaves_no_claude_behind(
    claude_bin: str, fake_api: FakeAnthropic, short_tmp: Path
) -> None:
    fake_api.script(hang())
    settings = settings_for(claude_bin, fake_api, short_tmp)
    state = short_tmp / "s"
    with anyio.CancelScope() as scope:
        async with (
            open_agent_socket("alice") as sock,
            live(sock, settings, state) as s,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(s.turn, "think forever", Recorder())
            with anyio.fail_after(20):
                await fake_api.wait_for(lambda r: r.scripted)
            scope.cancel()
    assert scope.cancelled_caught
    assert not _processes_in(state), "claude outlived its session"


def _processes_in(cwd: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")) == cwd.resolve():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


async def test_a_missing_claude_binary_raises_a_clear_error(
    fake_api: FakeAnthropic, short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_agent_socket("alice") as sock:
        with pytest.raises(ClaudeMissingError, match="/no/such/claude"):
            async with live(sock, settings_for("/no/such/claude", fake_api, short_tmp), short_tmp):
                pass
        monkeypatch.setenv("HIVE_CLAUDE_BIN", str(short_tmp / "absent-claude"))
        with pytest.raises(ClaudeMissingError, match="HIVE_CLAUDE_BIN"):
            async with live(sock, settings_for("", fake_api, short_tmp, binary=None), short_tmp):
                pass
