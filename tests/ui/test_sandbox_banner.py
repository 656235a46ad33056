"""`--unsandboxed` is visible: a warning on every dashboard page and `sandbox` in `status`."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from tests.helpers import admin, hive_settings, running_hive

pytestmark = pytest.mark.anyio


async def _page(port: int | None, path: str) -> str:
    assert port is not None
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}{path}") as r:
        assert r.status == 200
        return await r.text()


@pytest.mark.parametrize("unsandboxed", [False, True])
async def test_an_unsandboxed_hive_warns_on_every_page_and_in_status(
    short_dir: Path, unsandboxed: bool
) -> None:
    settings = hive_settings(
        short_dir, dashboard_enabled=True, dashboard="127.0.0.1:0", unsandboxed=unsandboxed
    )
    async with running_hive(settings) as hive:
        async with admin(hive) as client:
            status = await client.call("status")
        assert status["sandbox"] == ("none" if unsandboxed else "bwrap")
        for path in ("/", "/reconcile", "/logs", "/region/notify"):
            html = await _page(hive.dashboard_port, path)
            assert ('data-testid="unsandboxed"' in html) is unsandboxed, path
            assert ("every agent has the operator's rights" in html) is unsandboxed
