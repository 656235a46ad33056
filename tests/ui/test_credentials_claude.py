"""The credentials the login page stores are what the real claude CLI sends."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from harness.claude import find_claude
from tests.fakes.anthropic import claude_env, open_fake_anthropic, text
from ui import credentials

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


@pytest.mark.parametrize(
    ("kind", "secret", "headers"),
    [
        ("api_key", "sk-ant-api03-from-the-page", ("x-api-key", "authorization")),
        ("oauth_token", "sk-ant-oat01-from-the-page", ("authorization",)),
    ],
)
async def test_claude_uses_the_stored_credential(
    short_dir: Path, kind: str, secret: str, headers: tuple[str, ...]
) -> None:
    config = short_dir / "claude"
    await anyio.to_thread.run_sync(credentials.store, config, kind, secret)
    async with open_fake_anthropic() as api:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC", "CLAUDE"))}
        env.update(claude_env(api.url, str(config)))
        del env["ANTHROPIC_API_KEY"]  # only the stored credential may authenticate
        api.script(text("hello"))
        with anyio.fail_after(90):
            done = await anyio.run_process(
                [find_claude(), "--print", "--output-format", "stream-json", "--verbose", "hi"],
                env=env,
                cwd=str(short_dir),
                check=False,
            )
        assert done.returncode == 0, done.stderr.decode()[-500:]
        (request,) = api.main_requests
        sent = {k.lower(): v for k, v in request.headers.items()}
        for header in headers:
            assert secret in sent[header]
