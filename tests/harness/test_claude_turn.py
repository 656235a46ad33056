"""Real turns: the real claude CLI, the fake Messages API, the real stdio MCP server, and a
recording agent socket."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from harness import events
from harness.claude import ClaudeMissingError, ClaudeRunner, TurnResult
from harness.history import open_history
from tests.fakes.agent_socket import Call, open_agent_socket
from tests.fakes.anthropic import FakeAnthropic, SeenRequest, hang, text, tool_use
from tests.harness.conftest import settings_for

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    async def __call__(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def items(self) -> list[events.Item]:
        return [item for e in self.events for item in events.items(e)]


def _is_main(seen: SeenRequest) -> bool:
    return seen.scripted


@pytest.mark.anyio
async def test_send_tool_call_reaches_the_socket_and_its_result_goes_back(
    claude_bin: str, fake_api: FakeAnthropic, short_tmp: Path
) -> None:
    fake_api.script(tool_use("mcp__hive__send", {"to": "bob", "body": "hi"}), text("sent it"))
    async with open_agent_socket("alice") as sock, await open_history(short_tmp / "state") as hist:
        runner = ClaudeRunner(
            "alice", sock.path, short_tmp / "state", settings_for(claude_bin, fake_api, short_tmp)
        )
        turn = await hist.start_turn(wake_message_id=7)

        async def on_event(event: dict[str, Any]) -> None:
            await hist.append(turn, event)
            await rec(event)

        rec = Recorder()
        result = await runner.run_turn("message from carol: say hi to bob", on_event=on_event)
        await hist.end_turn(
            turn,
            status="ok" if result.ok else "error",
            duration_ms=result.duration_ms,
            cost_usd=result.cost_usd,
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
        )

        assert result.ok, result.stderr_tail
        assert result.exit_code == 0 and not result.cancelled
        assert sock.calls_of("send") == [Call("send", {"to": "bob", "body": "hi"})]

        first, second = fake_api.main_requests
        assert "mcp__hive__send" in first.tool_names and "mcp__hive__recv" in first.tool_names
        assert "say hi to bob" in first.last_user_text
        [tool_result] = second.tool_results
        assert not tool_result.get("is_error")
        assert json.loads(tool_result["content"][0]["text"]) == {"id": 1}

        items = rec.items()
        [init] = [i for i in items if isinstance(i, events.Init)]
        assert ("hive", "connected") in init.mcp_servers
        assert "mcp__hive__send" in init.tools
        assert (
            events.ToolUse(
                id=_tool_use_id(items), name="mcp__hive__send", input={"to": "bob", "body": "hi"}
            )
            in items
        )
        assert any(isinstance(i, events.ToolResult) and '"id": 1' in i.text for i in items)
        assert events.Text("sent it") in items
        [final] = [i for i in items if isinstance(i, events.Result)]
        assert final.ok and final.text == "sent it"
        assert result.cost_usd == final.cost_usd and result.cost_usd is not None
        assert result.input_tokens == 20 and result.output_tokens == 10

        [row] = await hist.turns()
        assert (row.id, row.status, row.wake_message_id) == (turn, "ok", 7)
        assert row.cost_usd == result.cost_usd
        stored = await hist.events_of(turn)
        assert [e.event for e in stored] == rec.events
        assert {"system", "assistant", "user", "result"} <= {e.type for e in stored}


def _tool_use_id(items: list[events.Item]) -> str:
    return next(i.id for i in items if isinstance(i, events.ToolUse))


@pytest.mark.anyio
async def test_second_turn_continues_the_conversation(
    claude_bin: str, fake_api: FakeAnthropic, short_tmp: Path
) -> None:
    fake_api.script(text("noted the first"), text("noted the second"))
    async with open_agent_socket("alice") as sock:
        runner = ClaudeRunner(
            "alice", sock.path, short_tmp / "state", settings_for(claude_bin, fake_api, short_tmp)
        )
        one = await runner.run_turn(
            "wake one: ping", on_event=Recorder(), append_system_prompt="PROMPT-A"
        )
        two = await runner.run_turn(
            "wake two: pong", on_event=Recorder(), resume=True, append_system_prompt="PROMPT-B"
        )

    assert one.ok and two.ok, (one.stderr_tail, two.stderr_tail)
    assert one.session_id == two.session_id
    first, second = fake_api.main_requests
    history = json.dumps(second.messages)
    assert "wake one: ping" in history and "noted the first" in history
    assert "wake two: pong" in second.last_user_text
    # --system-prompt-snapshot off: a resumed turn sends the prompt it was given now.
    assert "PROMPT-A" in first.system_text
    assert "PROMPT-B" in second.system_text and "PROMPT-A" not in second.system_text


@pytest.mark.anyio
async def test_a_turn_without_continue_starts_afresh(
    claude_bin: str, fake_api: FakeAnthropic, short_tmp: Path
) -> None:
    fake_api.script(text("a"), text("b"))
    async with open_agent_socket("alice") as sock:
        runner = ClaudeRunner(
            "alice", sock.path, short_tmp / "state", settings_for(claude_bin, fake_api, short_tmp)
        )
        await runner.run_turn("wake one: ping", on_event=Recorder())
        await runner.run_turn("wake two: pong", on_event=Recorder())
    assert "wake one" not in json.dumps(fake_api.main_requests[1].messages)


@pytest.mark.anyio
async def test_cancel_ends_a_hung_turn_within_two_seconds(
    claude_bin: str, fake_api: FakeAnthropic, short_tmp: Path
) -> None:
    fake_api.script(hang())
    results: list[TurnResult] = []
    done = anyio.Event()
    async with open_agent_socket("alice") as sock:
        runner = ClaudeRunner(
            "alice", sock.path, short_tmp / "state", settings_for(claude_bin, fake_api, short_tmp)
        )

        async def turn() -> None:
            results.append(await runner.run_turn("think forever", on_event=Recorder()))
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(turn)
            with anyio.fail_after(20):
                await fake_api.wait_for(_is_main)
            await anyio.sleep(0.2)  # let claude start reading the stalled stream
            started = time.monotonic()
            assert runner.cancel()
            with anyio.fail_after(5):
                await done.wait()
            elapsed = time.monotonic() - started

    [result] = results
    assert result.cancelled and not result.timed_out and not result.ok
    print(f"cancel took {elapsed * 1000:.0f} ms, exit code {result.exit_code}")
    assert elapsed < 2.0, elapsed
    assert not runner.running and not runner.cancel()


@pytest.mark.anyio
async def test_turn_timeout_interrupts_the_turn(
    claude_bin: str, fake_api: FakeAnthropic, short_tmp: Path
) -> None:
    fake_api.script(hang())
    async with open_agent_socket("alice") as sock:
        settings = settings_for(claude_bin, fake_api, short_tmp, turn_timeout=4.0)
        runner = ClaudeRunner("alice", sock.path, short_tmp / "state", settings)
        result = await runner.run_turn("think forever", on_event=Recorder())
    assert result.cancelled and result.timed_out
    assert fake_api.main_requests, "claude never reached the API within the timeout"


@pytest.mark.anyio
async def test_caller_cancellation_kills_the_whole_process_group(
    claude_bin: str, fake_api: FakeAnthropic, short_tmp: Path
) -> None:
    fake_api.script(hang())
    async with open_agent_socket("alice") as sock:
        runner = ClaudeRunner(
            "alice", sock.path, short_tmp / "state", settings_for(claude_bin, fake_api, short_tmp)
        )

        async def turn() -> None:
            await runner.run_turn("think forever", on_event=Recorder())

        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(turn)
                with anyio.fail_after(20):
                    await fake_api.wait_for(_is_main)
                scope.cancel()
    assert scope.cancelled_caught
    assert not runner.running
    assert not _claude_processes(short_tmp / "state"), "claude outlived its cancelled turn"


def _claude_processes(cwd: Path) -> list[int]:
    """Pids of live processes whose cwd is the agent's state dir."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if Path(os.readlink(entry / "cwd")) == cwd.resolve():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.anyio
async def test_missing_claude_binary_raises_a_clear_error(
    fake_api: FakeAnthropic, short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = ClaudeRunner(
        "alice",
        "/nonexistent.sock",
        short_tmp,
        settings_for("/no/such/claude", fake_api, short_tmp),
    )
    with pytest.raises(ClaudeMissingError, match="/no/such/claude"):
        await runner.run_turn("hello", on_event=Recorder())

    monkeypatch.setenv("HIVE_CLAUDE_BIN", str(short_tmp / "absent-claude"))
    runner = ClaudeRunner(
        "alice", "/nonexistent.sock", short_tmp, settings_for("", fake_api, short_tmp, binary=None)
    )
    with pytest.raises(ClaudeMissingError, match="HIVE_CLAUDE_BIN"):
        await runner.run_turn("hello", on_event=Recorder())


@pytest.mark.anyio
async def test_manager_tools_are_offered_only_to_the_manager(
    claude_bin: str, fake_api: FakeAnthropic, short_tmp: Path
) -> None:
    fake_api.script(text("agent here"), text("manager here"))
    async with open_agent_socket("alice") as sock:
        runner = ClaudeRunner(
            "alice", sock.path, short_tmp / "a", settings_for(claude_bin, fake_api, short_tmp)
        )
        await runner.run_turn("hello", on_event=Recorder())
    async with open_agent_socket("hm1nd", manager=True) as sock:
        runner = ClaudeRunner(
            "hm1nd", sock.path, short_tmp / "m", settings_for(claude_bin, fake_api, short_tmp)
        )
        await runner.run_turn("hello", on_event=Recorder())

    agent, manager = (set(r.tool_names) for r in fake_api.main_requests)
    manager_only = {
        f"mcp__hive__{t}"
        for t in (
            "request_spawn",
            "kill",
            "start",
            "restart",
            "request_apply_commit",
            "ask_operator",
            "list_agents",
        )
    }
    assert {"mcp__hive__send", "mcp__hive__recv"} <= agent
    assert not manager_only & agent
    assert manager_only <= manager


@pytest.mark.anyio
async def test_a_protocol_error_reaches_the_model_as_a_tool_error(
    claude_bin: str, fake_api: FakeAnthropic, short_tmp: Path
) -> None:
    fake_api.script(tool_use("mcp__hive__send", {"to": "zed", "body": "hi"}), text("oh well"))
    async with open_agent_socket("alice") as sock:
        sock.fail["send"] = ("unknown_agent", "no agent named 'zed'")
        runner = ClaudeRunner(
            "alice", sock.path, short_tmp / "state", settings_for(claude_bin, fake_api, short_tmp)
        )
        rec = Recorder()
        result = await runner.run_turn("say hi to zed", on_event=rec)

    assert result.ok
    [tool_result] = fake_api.main_requests[1].tool_results
    assert tool_result.get("is_error") is True
    assert "no agent named 'zed'" in json.dumps(tool_result["content"])
    assert any(
        isinstance(i, events.ToolResult) and i.is_error and "zed" in i.text for i in rec.items()
    )
