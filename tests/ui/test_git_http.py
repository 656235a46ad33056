"""Git over HTTP on the dashboard's server: real `git clone` / `git push` on loopback
against `git http-backend`, tokens made with the real `hive` client over host.sock."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import anyio
import pytest
from starlette.responses import PlainTextResponse

from controller.hive import Hive
from tests.helpers import GIT_ENV, admin, git, hive_settings, running_hive, wait_for
from ui.git_http import GitHttp, mount_git
from ui.server import serve_app

pytestmark = pytest.mark.anyio


@pytest.fixture
async def served(short_dir: Path) -> AsyncIterator[tuple[Hive, str]]:
    settings = hive_settings(short_dir, dashboard_enabled=True, dashboard="127.0.0.1:0")
    async with running_hive(settings) as hive:
        assert hive.dashboard_port is not None
        yield hive, f"127.0.0.1:{hive.dashboard_port}"


def _git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **GIT_ENV, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)


async def _run_git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return await anyio.to_thread.run_sync(lambda: _git(*args, cwd=cwd))


async def _token(hive: Hive, name: str | None = None) -> str:
    async with admin(hive) as client:
        made = await client.call("token-create", **({"name": name} if name else {}))
    assert isinstance(made, dict)
    return str(made["token"])


def _basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _url(address: str, token: str, repo: str = "proposed.git") -> str:
    return f"http://anyone:{token}@{address}/git/{repo}"


async def test_an_operator_clones_and_pushes_over_http_with_a_token_and_the_push_is_proposed(
    served: tuple[Hive, str], tmp_path: Path
) -> None:
    hive, address = served
    token = await _token(hive, "laptop")
    work = tmp_path / "work"
    cloned = await _run_git("clone", "-q", _url(address, token), str(work))
    assert cloned.returncode == 0, cloned.stderr
    (work / "agents" / "alice").mkdir(parents=True)
    (work / "agents" / "alice" / "agent.toml").write_text('description = "over http"\n')
    git(work, "add", "-A")
    git(work, "commit", "-qm", "alice, pushed over http")
    sha = git(work, "rev-parse", "HEAD")
    started = time.monotonic()
    pushed = await _run_git("push", "-q", "origin", "HEAD:refs/heads/alice", cwd=work)
    assert pushed.returncode == 0, pushed.stderr

    async def proposed() -> bool:
        async with admin(hive) as client:
            rows = await client.call("approvals")
        assert isinstance(rows, list)
        return any(row["sha"] == sha for row in rows)

    await wait_for(proposed, timeout=10, interval=0.005)
    # As fast as a local push: the ref watcher sees the ref the backend wrote.
    assert time.monotonic() - started < 2.0
    assert git(hive.git.proposed_path, "rev-parse", "refs/heads/alice") == sha


async def test_without_a_token_or_with_a_wrong_one_git_is_refused_with_a_challenge(
    served: tuple[Hive, str], tmp_path: Path
) -> None:
    hive, address = served
    await _token(hive)
    base = f"http://{address}/git/proposed.git/info/refs?service=git-upload-pack"
    async with aiohttp.ClientSession() as http:
        async with http.get(base) as resp:
            assert resp.status == 401
            assert resp.headers["www-authenticate"].startswith("Basic ")
        async with http.get(base, headers=_basic("op", "hht_not-a-token")) as resp:
            assert resp.status == 401
    cloned = await _run_git("clone", "-q", _url(address, "hht_wrong"), str(tmp_path / "w"))
    assert cloned.returncode != 0
    assert "401" in cloned.stderr or "Authentication failed" in cloned.stderr


async def test_the_applied_repo_clones_over_http_but_refuses_every_push(
    served: tuple[Hive, str], tmp_path: Path
) -> None:
    hive, address = served
    token = await _token(hive)
    before = git(hive.git.applied_path, "rev-parse", "refs/heads/main")
    work = tmp_path / "applied"
    cloned = await _run_git("clone", "-q", _url(address, token, "applied.git"), str(work))
    assert cloned.returncode == 0, cloned.stderr
    (work / "stray").write_text("x\n")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "around the gate")
    pushed = await _run_git("push", "-q", "origin", "HEAD:main", cwd=work)
    assert pushed.returncode != 0
    assert "403" in pushed.stderr
    assert git(hive.git.applied_path, "rev-parse", "refs/heads/main") == before


async def test_a_revoked_token_is_refused_from_the_next_request_on(
    served: tuple[Hive, str], tmp_path: Path
) -> None:
    hive, address = served
    token = await _token(hive, "old")
    first = await _run_git("ls-remote", _url(address, token))
    assert first.returncode == 0, first.stderr
    async with admin(hive) as client:
        revoked = await client.call("token-revoke", name="old")
        assert isinstance(revoked, dict) and revoked["name"] == "old"
        listed = await client.call("token-list")
    assert listed == []
    again = await _run_git("ls-remote", _url(address, token))
    assert again.returncode != 0


async def test_tokens_are_kept_hashed_in_a_private_file_and_listed_without_secrets(
    served: tuple[Hive, str],
) -> None:
    hive, _ = served
    token = await _token(hive, "ci")
    path = hive.settings.state_dir / "tokens.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert token not in path.read_text()
    async with admin(hive) as client:
        listed = await client.call("token-list")
        assert isinstance(listed, list)
        assert [row["name"] for row in listed] == ["ci"]
        assert token not in json.dumps(listed)
        with pytest.raises(Exception, match="exists"):
            await client.call("token-create", name="ci")
        with pytest.raises(Exception, match="must match"):
            await client.call("token-create", name="Bad Name!")
        with pytest.raises(Exception, match="no token named"):
            await client.call("token-revoke", name="nobody")


async def test_only_the_smart_protocol_endpoints_of_the_two_repos_are_served(
    served: tuple[Hive, str],
) -> None:
    hive, address = served
    token = await _token(hive)
    auth = _basic("op", token)
    async with aiohttp.ClientSession() as http:
        for path in (
            "/git/proposed.git/HEAD",
            "/git/proposed.git/config",
            "/git/hive.sqlite",
            "/git/tokens.json",
            "/git/proposed.git/../tokens.json",
            "/git/agents/hm1nd/agents/.git/info/refs",
        ):
            async with http.get(f"http://{address}{path}", headers=auth) as resp:
                assert resp.status == 404, path
        # Dumb-protocol and malformed service requests are refused too.
        url = f"http://{address}/git/proposed.git/info/refs"
        async with http.get(url, headers=auth) as resp:
            assert resp.status == 400
        async with http.post(f"http://{address}/git/proposed.git/info/refs", headers=auth) as resp:
            assert resp.status == 400


async def test_hive_token_create_prints_the_token_once_and_json_gives_name_and_token(
    served: tuple[Hive, str],
) -> None:
    hive, address = served
    env = {**os.environ, "HIVE_HOST_SOCKET": str(hive.layout.host_socket)}
    hive_cli = [sys.executable, "-m", "controller.cli_admin"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*hive_cli, *args], env=env, capture_output=True, text=True)

    made = await anyio.to_thread.run_sync(lambda: run("--json", "token", "create", "--name", "bot"))
    assert made.returncode == 0, made.stderr
    data = json.loads(made.stdout)
    assert set(data) == {"name", "token"} and data["name"] == "bot"
    plain = await anyio.to_thread.run_sync(lambda: run("token", "create"))
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.startswith("hht_") and "token-2" in plain.stdout
    listed = await anyio.to_thread.run_sync(lambda: run("token", "list"))
    assert "bot" in listed.stdout and data["token"] not in listed.stdout
    works = await _run_git("ls-remote", _url(address, data["token"]))
    assert works.returncode == 0, works.stderr


async def test_a_push_over_the_body_limit_is_refused_and_changes_nothing(
    short_dir: Path, tmp_path: Path
) -> None:
    root = short_dir / "repos"
    root.mkdir()
    git(root, "init", "-q", "--bare", "proposed.git")
    git(root, "init", "-q", "--bare", "applied.git")

    async def anyone(password: str) -> str | None:
        return "op" if password == "pw" else None

    app = mount_git(PlainTextResponse("dashboard"), GitHttp(root, anyone, max_body=4096))
    bound: list[int] = []
    async with anyio.create_task_group() as tg:
        await tg.start(
            lambda task_status: serve_app(
                app, "127.0.0.1", 0, what="git", on_bound=bound.append, task_status=task_status
            )
        )
        work = tmp_path / "w"
        work.mkdir()
        git(work, "init", "-q", "-b", "main")
        # Random bytes do not compress: the pack is as big as the file.
        (work / "blob").write_bytes(os.urandom(64 * 1024))
        git(work, "add", "-A")
        git(work, "commit", "-qm", "too big")
        url = f"http://op:pw@127.0.0.1:{bound[0]}/git/proposed.git"
        pushed = await _run_git("push", "-q", url, "HEAD:refs/heads/main", cwd=work)
        assert pushed.returncode != 0
        assert "413" in pushed.stderr
        # Sent chunked (no Content-Length): cut off the moment it passes the limit.
        chunked = await _run_git(
            "-c", "http.postBuffer=1024", "push", "-q", url, "HEAD:refs/heads/main", cwd=work
        )
        assert chunked.returncode != 0
        assert git(root / "proposed.git", "for-each-ref") == ""
        # A small push on the same server goes through.
        (work / "blob").write_text("small\n")
        git(work, "commit", "-qam", "small")
        git(work, "checkout", "-q", "--orphan", "fresh")
        git(work, "add", "-A")
        git(work, "commit", "-qm", "small only")
        small = await _run_git("push", "-q", url, "fresh:refs/heads/main", cwd=work)
        assert small.returncode == 0, small.stderr
        tg.cancel_scope.cancel()
