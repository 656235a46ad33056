"""Unit tests of the operator surfaces' pieces: diffs, the guard, slash commands, the graph."""

from __future__ import annotations

import json
import socket
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from controller.listener import bind_tcp
from gitstore.store import GitStore
from tests.helpers import Clone
from ui import credentials, slash
from ui.diff import DiffCache
from ui.graph import talk_graph, talk_matrix
from ui.security import Guard, session_value
from ui.server import serve_app


def _repo(tmp_path: Path) -> tuple[DiffCache, Clone, str]:
    store = GitStore(tmp_path / "state")
    clone = Clone(tmp_path / "c", store.proposed_path)
    clone.write("agents/a/agent.toml", 'description = "one"\n')
    clone.write("agents/a/prompt.md", "l1\nl2\nl3\nl4\nl5\n")
    base = clone.commit_push("base")
    return DiffCache(store), clone, base


@pytest.mark.anyio
async def test_diff_shows_files_hunks_and_line_kinds(tmp_path: Path) -> None:
    diffs, clone, base = _repo(tmp_path)
    clone.write("agents/a/prompt.md", "l1\nl2\nL3 changed\nl4\nl5\n")
    clone.write("agents/b/agent.toml", 'description = "two"\n')
    clone.remove("agents/a/agent.toml")
    sha = clone.commit_push("change")
    diff = await diffs.get(base, sha)
    assert diff.message == "change"
    by_path = {f.path: f for f in diff.files}
    assert {p: f.status for p, f in by_path.items()} == {
        "agents/a/agent.toml": "deleted",
        "agents/a/prompt.md": "modified",
        "agents/b/agent.toml": "added",
    }
    lines = [
        (ln.kind, ln.old, ln.new, ln.text) for ln in by_path["agents/a/prompt.md"].hunks[0].lines
    ]
    assert ("del", 3, None, "l3") in lines and ("add", None, 3, "L3 changed") in lines
    assert ("ctx", 2, 2, "l2") in lines
    assert (diff.additions, diff.deletions) == (2, 2)


@pytest.mark.anyio
async def test_diff_is_against_the_merge_base_not_a_newer_main(tmp_path: Path) -> None:
    diffs, clone, base = _repo(tmp_path)
    clone.checkout("feature", base)
    clone.write("agents/f/agent.toml", 'description = "f"\n')
    sha = clone.commit_push("feature", "feature")
    clone.checkout("main2", base)
    clone.write("agents/m/agent.toml", 'description = "m"\n')
    newer_main = clone.commit_push("main moved", "main")
    diff = await diffs.get(newer_main, sha)
    assert [f.path for f in diff.files] == ["agents/f/agent.toml"]  # no revert of agents/m


@pytest.mark.anyio
async def test_diff_of_an_unknown_sha_is_an_error_not_an_exception(tmp_path: Path) -> None:
    diffs, _, base = _repo(tmp_path)
    assert (await diffs.get(base, "0" * 40)).error is not None
    assert (await diffs.get("not hex", base)).error is not None


@pytest.mark.anyio
async def test_diffs_are_cached_and_a_page_of_misses_is_one_batch(tmp_path: Path) -> None:
    diffs, clone, base = _repo(tmp_path)
    clone.write("agents/b/agent.toml", 'description = "two"\n')
    one = clone.commit_push("one", "one")
    clone.write("agents/c/agent.toml", 'description = "three"\n')
    two = clone.commit_push("two", "two")
    first = await diffs.get_many([(base, one), (base, two), (base, one)])
    assert [d.message for d in first] == ["one", "two", "one"]
    again = await diffs.get_many([(base, two), (base, one)])
    assert again[0] is first[1] and again[1] is first[0]


def test_graph_lays_out_edges_with_counts() -> None:
    graph = talk_graph(
        ["alice", "bob"],
        [
            {"sender": "operator", "recipient": "alice", "count": 3},
            {"sender": "alice", "recipient": "bob", "count": 1},
        ],
    )
    assert [n.name for n in graph.nodes] == ["operator", "alice", "bob"]
    assert {(e.sender, e.recipient, e.count) for e in graph.edges} == {
        ("operator", "alice", 3),
        ("alice", "bob", 1),
    }
    assert all(e.path.startswith("M") for e in graph.edges)


class FakeControls:
    def __init__(self) -> None:
        self.model: str | None = "base"
        self.did: list[str] = []

    def clear(self) -> None:
        self.did.append("clear")

    def cancel(self) -> bool:
        self.did.append("cancel")
        return True

    def compact(self) -> None:
        self.did.append("compact")

    def set_model(self, model: str | None) -> None:
        self.model = model


def test_slash_commands() -> None:
    agent = FakeControls()
    assert slash.parse("hello") is None and slash.parse("//etc") is None
    assert slash.message_text("//etc") == "/etc"
    for cmd in ("/clear", "/cancel", "/compact"):
        command = slash.parse(cmd)
        assert command is not None
        slash.run(command, agent)
    assert agent.did == ["clear", "cancel", "compact"]
    command = slash.parse("/model claude-x")
    assert command is not None and "claude-x" in slash.run(command, agent)
    assert agent.model == "claude-x"
    with pytest.raises(slash.UnknownCommandError):
        slash.run(slash.Command("model", "bad name; rm"), agent)
    with pytest.raises(slash.UnknownCommandError, match="/help"):
        slash.run(slash.Command("nope", ""), agent)


def test_credentials_are_private_and_switch_kinds(tmp_path: Path) -> None:
    config = tmp_path / "claude"
    with pytest.raises(credentials.InvalidCredentialError):
        credentials.store(config, "api_key", "has spaces in it")
    assert credentials.store(config, "api_key", "sk-ant-api03-abcdefgh").kind == "api_key"
    assert stat.S_IMODE((config / credentials.KEY_FILE).stat().st_mode) == 0o600
    assert credentials.store(config, "oauth_token", "sk-ant-oat01-abcdefgh").kind == "oauth_token"
    assert not (config / credentials.KEY_FILE).exists()
    data = json.loads((config / credentials.OAUTH_FILE).read_text())
    assert data["claudeAiOauth"]["accessToken"] == "sk-ant-oat01-abcdefgh"
    assert "apiKeyHelper" not in json.loads((config / "settings.json").read_text())
    assert credentials.forget(config).kind is None


# --- the guard, on a real server ------------------------------------------------


async def _ok(request: Request) -> Response:
    return JSONResponse({"ok": True, "csrf": request.state.csrf})


def _app(token: str | None = None) -> Guard:
    app = Starlette(routes=[Route("/", _ok), Route("/do", _ok, methods=["POST"])])
    return Guard(app, name="t", token=token)


async def _served(app: Guard) -> AsyncIterator[str]:
    ports: list[int] = []
    async with anyio.create_task_group() as tg:
        await tg.start(
            lambda task_status: serve_app(
                app, "127.0.0.1", 0, what="test", on_bound=ports.append, task_status=task_status
            )
        )
        yield f"http://127.0.0.1:{ports[0]}"
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_csrf_needs_same_origin_and_the_token() -> None:
    async for base in _served(_app()):
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(base + "/") as resp:
                token = (await resp.json())["csrf"]
                assert "hive-csrf-t" in resp.cookies
                assert "SameSite=Strict" in resp.headers["set-cookie"]
            good = {"origin": base, "x-csrf-token": token}
            async with http.post(base + "/do", headers=good) as resp:
                assert resp.status == 200
            async with http.post(
                base + "/do", headers={**good, "origin": "http://evil.test"}
            ) as resp:
                assert resp.status == 403
            async with http.post(base + "/do", headers={"origin": base}) as resp:
                assert resp.status == 403
            async with http.post(base + "/do", headers={"x-csrf-token": token}) as resp:
                assert resp.status == 403  # no Origin nor Referer
            referer = {"referer": base + "/page", "x-csrf-token": token}
            async with http.post(base + "/do", headers=referer) as resp:
                assert resp.status == 200
            async with http.post(base + "/do", headers={**good, "x-csrf-token": "x" * 43}) as resp:
                assert resp.status == 403
            async with http.get(base + "/", headers={"host": "evil.example"}) as resp:
                assert resp.status == 421  # DNS rebinding onto loopback


@pytest.mark.anyio
async def test_token_login_guards_every_page() -> None:
    async for base in _served(_app(token="s3cret-token")):
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(base + "/", headers={"accept": "application/json"}) as resp:
                assert resp.status == 401
            async with http.get(
                base + "/", headers={"authorization": "Bearer s3cret-token"}
            ) as resp:
                assert resp.status == 200
            async with http.post(
                base + "/auth", data={"token": "wrong"}, headers={"origin": base}
            ) as resp:
                assert resp.status == 401
            async with http.post(
                base + "/auth",
                data={"token": "s3cret-token"},
                headers={"origin": base},
                allow_redirects=False,
            ) as resp:
                assert resp.status == 303
                assert resp.cookies["hive-auth-t"].value == session_value("s3cret-token")
                assert "s3cret-token" not in resp.headers["set-cookie"]
            async with http.get(base + "/") as resp:
                assert resp.status == 200


@pytest.mark.anyio
async def test_a_taken_port_is_retried_until_free() -> None:
    holder = bind_tcp("127.0.0.1", 0)
    port = holder.getsockname()[1]
    bound: list[int] = []
    async with anyio.create_task_group() as tg:
        await tg.start(
            lambda task_status: serve_app(
                _app(),
                "127.0.0.1",
                port,
                what="test",
                on_bound=bound.append,
                retry_base=0.05,
                task_status=task_status,
            )
        )
        await anyio.sleep(0.3)
        assert bound == []  # still retrying, and the caller was not held up nor crashed
        holder.close()
        with anyio.fail_after(5):
            while not bound:
                await anyio.sleep(0.02)
        assert bound == [port]
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
        tg.cancel_scope.cancel()


def test_the_talk_matrix_holds_every_count_once_in_its_row_and_column() -> None:
    names = [f"a{i:02d}" for i in range(50)]
    counts = [
        {"sender": names[i], "recipient": names[(i * 7 + 3) % 50], "count": i + 1}
        for i in range(50)
    ] + [{"sender": "operator", "recipient": "a07", "count": 2}]
    m = talk_matrix(names, counts)
    assert m.names[0] == "operator" and len(m.names) == 51
    dense = {}
    for row in m.rows:
        assert sum(h.gap for h in row.hits) + len(row.hits) + row.tail == 51
        at = 0
        for h in row.hits:
            at += h.gap
            assert m.names[at] == h.recipient
            dense[(row.sender, h.recipient)] = h.count
            at += 1
    assert dense == {(c["sender"], c["recipient"]): c["count"] for c in counts}
    assert m.total == sum(int(str(c["count"])) for c in counts)
    assert m.received[m.names.index("a07")] == sum(
        int(str(c["count"])) for c in counts if c["recipient"] == "a07"
    )
    busiest = max((h for r in m.rows for h in r.hits), key=lambda h: h.count)
    assert busiest.shade == 1.0
