"""`/metrics` on the dashboard server: the hive as Prometheus sees it, parsed with
`prometheus_client`'s own parser, after real pushes, an approval, a real agent, messages
through the broker and a turn reported on the agent's socket."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from controller.hive import Hive
from tests.helpers import Clone, admin, connect_harness, hive_settings, running_hive, wait_for

pytestmark = pytest.mark.anyio


@pytest.fixture
async def dashboard(short_dir: Path) -> AsyncIterator[tuple[Hive, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVE_")}
    settings = hive_settings(
        short_dir,
        dashboard_enabled=True,
        dashboard="127.0.0.1:0",
        environ={**env, "HIVE_METRICS_TOKEN": "scrape-me", "HIVE_DASHBOARD_TOKEN": "operate"},
    )
    async with running_hive(settings) as hive:
        assert hive.dashboard_port is not None
        yield hive, f"http://127.0.0.1:{hive.dashboard_port}"


async def scrape(base: str, token: str = "scrape-me") -> dict[str, list[Sample]]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(base + "/metrics", headers={"authorization": f"Bearer {token}"}) as resp,
    ):
        assert resp.status == 200, await resp.text()
        assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
        text = await resp.text()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def value(samples: list[Sample], name: str | None = None, **labels: str) -> float:
    found = [
        s.value
        for s in samples
        if (name is None or s.name == name) and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert found, f"no sample {name} {labels} in {samples}"
    return sum(found)


async def test_metrics_count_reconciles_approvals_agents_messages_and_turns(
    dashboard: tuple[Hive, str],
) -> None:
    hive, base = dashboard
    clone = Clone(hive.settings.state_dir.parent / "clone", hive.git.proposed_path)
    clone.add_agent("alice")
    clone.commit("add alice")
    clone.push("feature/alice")
    clone.checkout("feature/bob")
    clone.add_agent("bob")
    clone.commit("add bob")
    clone.push("feature/bob")
    await wait_for(lambda: _pending(hive, 2))
    async with admin(hive) as client:
        first = (await client.call("approvals"))[-1]
        await client.call("approve", id=first["id"])
        await hive.agent_queue.wait_idle()
        await client.call("send", to="alice", body="hello")
        await client.call("send", to="alice", body="again")
    harness = await connect_harness(hive, "alice")
    async with harness:
        got = await harness.call("recv", wait_seconds=1, lease=True)
        await harness.call("ack", id=got["id"])
        await harness.call("turn_state", state="thinking", reason="", model=None, last_turn=None)
        turn = {
            "duration_ms": 2500,
            "cost_usd": 0.25,
            "input_tokens": 1000,
            "output_tokens": 300,
            "status": "ok",
        }
        await harness.call("turn_state", state="idle", reason="", model=None, last_turn=turn)

    families = await scrape(base)

    info = families["hyperhive_build_info"][0]
    assert info.value == 1 and info.labels["runtime"] == "process"
    assert info.labels["harness_version"] == hive.settings.harness_version
    approvals = families["hyperhive_approvals"]
    assert value(approvals, status="pending") == 1
    assert value(approvals, status="approved") == 1
    assert value(families["hyperhive_reconcile"], "hyperhive_reconcile_total", agent="alice") >= 1
    duration = families["hyperhive_reconcile_duration_seconds"]
    assert value(duration, "hyperhive_reconcile_duration_seconds_count") >= 2  # hm1nd, alice
    assert (
        value(
            families["hyperhive_push_to_pending_seconds"], "hyperhive_push_to_pending_seconds_count"
        )
        == 2
    )
    assert value(families["hyperhive_applied_moves"], "hyperhive_applied_moves_total") == 1
    assert value(families["hyperhive_agents"], state="running") == 2
    assert value(families["hyperhive_agents_ready"]) == 2
    assert value(families["hyperhive_agents_held"]) == 0
    assert value(families["hyperhive_workqueue_depth"], queue="agents") == 0
    assert value(families["hyperhive_workqueue_active"], queue="agents") == 0
    messages = families["hyperhive_messages"]
    assert value(messages, "hyperhive_messages_total", event="sent") == 2
    assert value(messages, "hyperhive_messages_total", event="delivered") == 1
    assert value(families["hyperhive_inbox_depth"], agent="alice") == 1
    assert value(families["hyperhive_inbox_depth"], agent="hm1nd") == 0
    turns = families["hyperhive_turns"]
    assert value(turns, "hyperhive_turns_total", agent="alice", status="ok") == 1
    assert (
        value(families["hyperhive_turn_duration_seconds"], "hyperhive_turn_duration_seconds_sum")
        == 2.5
    )
    assert (
        value(families["hyperhive_agent_cost_usd"], "hyperhive_agent_cost_usd_total", agent="alice")
        == 0.25
    )
    tokens = families["hyperhive_agent_tokens"]
    assert value(tokens, "hyperhive_agent_tokens_total", agent="alice", direction="input") == 1000
    assert value(families["hyperhive_questions_open"]) == 0
    assert "hyperhive_notifications" in families

    async with admin(hive) as client:
        await client.call("kill", name="alice")
    families = await scrape(base)
    assert value(families["hyperhive_agents_held"]) == 1
    assert value(families["hyperhive_agent_held"], agent="alice", hold="killed") == 1


async def test_metrics_need_the_scrapers_token_once_one_is_set(
    dashboard: tuple[Hive, str],
) -> None:
    _, base = dashboard
    async with aiohttp.ClientSession() as http:
        async with http.get(base + "/metrics") as resp:
            assert resp.status == 401
        wrong = {"authorization": "Bearer nope"}
        async with http.get(base + "/metrics", headers=wrong) as resp:
            assert resp.status == 401
        # The scraper's token reads the metrics and nothing else of the dashboard.
        right = {"authorization": "Bearer scrape-me"}
        async with http.get(base + "/", headers=right) as resp:
            assert resp.status == 401
        operator = {"authorization": "Bearer operate"}
        async with http.get(base + "/metrics", headers=operator) as resp:
            assert resp.status == 200  # the dashboard's own token reads them too
        async with http.get(base + "/metrics", headers={**right, "host": "evil.example"}) as resp:
            assert resp.status == 421  # the Host pin holds for /metrics too
    assert "hyperhive_build_info" in await scrape(base)


async def _pending(hive: Hive, n: int) -> bool:
    return len(await hive.approvals.query("pending")) == n
