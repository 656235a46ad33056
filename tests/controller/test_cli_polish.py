"""`hive` as people script it: the real client in a subprocess against a hive in-process
(real pushes, a real host socket), on a pipe and on a pseudo-terminal."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from controller.cli_admin import EXIT_UNREACHABLE, parser
from controller.host_spec import HOST_SPECS
from reconcilers.process import ProcessRuntime
from tests.helpers import Clone, admin, connect_harness, hive_settings, running_hive, wait_for
from tests.test_imports import REPO

pytestmark = pytest.mark.anyio


def _hive(socket: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "controller.cli_admin", "--socket", str(socket), *args]


async def run(socket: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = await anyio.run_process(
        _hive(socket, *args), check=False, cwd=REPO, env={**os.environ, "NO_COLOR": ""}
    )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


def test_every_option_of_every_command_has_help_text() -> None:
    def walk(p: object) -> list[tuple[str, str | None]]:
        import argparse

        assert isinstance(p, argparse.ArgumentParser)
        out: list[tuple[str, str | None]] = []
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    out += [(f"{name} {a}", h) for a, h in walk(sub)]
            else:
                out.append(("/".join(action.option_strings) or action.dest, action.help))
        return out

    missing = [name for name, text in walk(parser()) if not text]
    assert missing == []


@pytest.mark.parametrize("argv", [["--json", "status"], ["status", "--json"]])
def test_json_is_taken_before_or_after_the_command(argv: list[str]) -> None:
    assert parser().parse_args(argv).json is True
    assert parser().parse_args(["status"]).json is False


async def test_the_new_verbs_against_a_live_hive(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        sock = hive.layout.host_socket
        clone = Clone(short_dir / "clone", hive.git.proposed_path)
        clone.add_agent("alice", "writes the docs")
        clone.commit("add alice")
        clone.push("feature/alice")
        await hive.proposal_queue.wait_idle()
        (approval,) = await wait_for(lambda: hive.approvals.query("pending"))

        status = await run(sock, "status", "--json")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["pending_approvals"] == 1

        piped = await run(sock, "diff", str(approval.id))
        assert piped.returncode == 0, piped.stderr
        assert "\033[" not in piped.stdout
        assert "+++ b/agents/alice/agent.toml" in piped.stdout
        assert '+description = "writes the docs"' in piped.stdout
        assert f"approval #{approval.id}" in piped.stdout and "+1 -0" in piped.stdout
        on_tty = await _on_a_terminal(sock, "diff", str(approval.id))
        assert '\033[32m+description = "writes the docs"\033[0m' in on_tty
        missing = await run(sock, "diff", "999")
        assert missing.returncode == 1 and "no approval #999" in missing.stderr

        async with admin(hive) as client:
            await client.call("kill", name="hm1nd")
            await client.call("start", name="hm1nd")
        held = await run(sock, "events", "--type", "hold")
        assert held.returncode == 0, held.stderr
        header, *rows = held.stdout.splitlines()
        assert header.split() == ["TIME", "TYPE", "SUBJECT", "DETAILS"]
        assert [r.split()[2] for r in rows] == ["agent.hold", "agent.hold"]
        assert "hm1nd" in rows[0] and "{" not in held.stdout  # no raw JSON blobs
        typo = await run(sock, "events", "--type", "holdd")
        assert typo.returncode == 1 and "no audited event type" in typo.stderr

        await run(sock, "send", "hm1nd", "hello there")
        messages = await run(sock, "messages")
        assert messages.stdout.splitlines()[0].split()[:6] == [
            "ID", "SENDER", "RECIPIENT", "CREATED_AT", "DELIVERED_AT", "ACKED_AT",
        ]  # fmt: skip

        manager = await connect_harness(hive, "hm1nd")
        async with manager:
            asked = await manager.call(
                "ask_operator", question="which?", options=["a", "b", "c"], multi=True
            )
        answered = await run(sock, "--json", "answer", str(asked["id"]), "a", "c")
        assert answered.returncode == 0, answered.stderr
        assert json.loads(answered.stdout)["answer"] == ["a", "c"]


async def test_questions_lists_every_pending_question_not_only_the_first_page(
    short_dir: Path,
) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        for i in range(250):
            await hive.questions.ask("hm1nd", f"question {i}?")
        listed = await run(hive.layout.host_socket, "questions")
        assert listed.returncode == 0, listed.stderr
        rows = listed.stdout.splitlines()[1:]
        assert len(rows) == 250 and "question 249?" in rows[-1]
        status = json.loads((await run(hive.layout.host_socket, "status", "--json")).stdout)
        assert status["pending_questions"] == 250
        limited = await run(hive.layout.host_socket, "questions", "--limit", "10")
        assert len(limited.stdout.splitlines()) == 11  # asked for a page: one page


async def _on_a_terminal(sock: Path, *args: str) -> str:
    """What `hive ARGS` prints when its stdout is a terminal."""
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    process = await anyio.open_process(
        _hive(sock, *args), stdout=follower, stderr=subprocess.PIPE, cwd=REPO, env=env
    )
    os.close(follower)
    out = b""
    async with process:
        await process.wait()
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    return out.decode()


async def test_watch_exits_3_with_a_message_when_the_daemon_goes_away(short_dir: Path) -> None:
    settings = hive_settings(short_dir)
    async with running_hive(settings) as hive:
        process = await anyio.open_process(
            _hive(hive.layout.host_socket, "watch"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO,
        )
        assert process.stdout is not None
        first = await process.stdout.receive()
        assert b"hello" in first
    async with process:
        with anyio.fail_after(10):
            code = await process.wait()
        assert process.stderr is not None
        err = (await process.stderr.receive()).decode()
    assert code == EXIT_UNREACHABLE
    assert "hive-c0re went away" in err


async def test_logs_prints_and_follows_an_agents_log(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        assert isinstance(hive.runtime, ProcessRuntime)
        log = hive.runtime.log_path("hm1nd")
        await wait_for(lambda: log.exists() and "hm1nd up" in log.read_text())
        with log.open("a") as fh:
            fh.write("first line\nsecond line\n")
        printed = await run(hive.layout.host_socket, "logs", "hm1nd", "--lines", "1")
        assert printed.stdout.splitlines() == ["second line"]
        process = await anyio.open_process(
            _hive(hive.layout.host_socket, "logs", "hm1nd", "-f"),
            stdout=subprocess.PIPE,
            cwd=REPO,
        )
        async with process:
            assert process.stdout is not None
            seen = b""
            with anyio.fail_after(10):
                while b"second line" not in seen:
                    seen += await process.stdout.receive()
                with log.open("a") as fh:
                    fh.write("third line\n")
                while b"third line" not in seen:
                    seen += await process.stdout.receive()
            process.terminate()
        assert seen.decode().count("second line") == 1  # followed, not printed again
        nobody = await run(hive.layout.host_socket, "logs", "nobody")
        assert nobody.returncode == 1 and "no agent 'nobody'" in nobody.stderr


def test_every_verb_the_readme_names_is_a_command() -> None:
    verbs = {" ".join(s.cli) for s in HOST_SPECS}
    assert {"diff", "logs", "notify test", "events", "answer", "messages"} <= verbs
