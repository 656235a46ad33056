"""The host's warm-session slots: a cap, least recently used goes cold, a slot is free
the moment its holder stops holding it."""

from __future__ import annotations

import anyio
import pytest

from controller.warm import WarmSlots

pytestmark = pytest.mark.anyio


async def test_over_the_cap_the_least_recently_used_session_goes_cold() -> None:
    slots = WarmSlots(cap=2)
    reasons: dict[str, str] = {}

    async def hold(agent: str) -> None:
        reasons[agent] = await slots.hold(agent)

    async with anyio.create_task_group() as tg:
        for agent in ("alice", "bob"):
            tg.start_soon(hold, agent)
            await anyio.wait_all_tasks_blocked()
        slots.used("alice")  # bob's last turn is now the older one
        tg.start_soon(hold, "carol")
        await anyio.wait_all_tasks_blocked()
        assert reasons == {"bob": "the host keeps at most 2 warm sessions"}
        assert slots.warm == ["alice", "carol"]
        tg.cancel_scope.cancel()
    assert slots.warm == []


async def test_a_holder_that_stops_holding_frees_its_slot_at_once() -> None:
    slots = WarmSlots(cap=1)
    alice = anyio.CancelScope()

    async def hold_alice() -> None:
        with alice:
            await slots.hold("alice")

    async with anyio.create_task_group() as tg:
        tg.start_soon(hold_alice)
        await anyio.wait_all_tasks_blocked()
        assert slots.warm == ["alice"]
        alice.cancel()  # alice's harness closed its connection
        await anyio.wait_all_tasks_blocked()
        assert slots.warm == []
        tg.start_soon(slots.hold, "bob")
        await anyio.wait_all_tasks_blocked()
        assert slots.warm == ["bob"]
        tg.cancel_scope.cancel()


async def test_a_restarted_harness_takes_over_its_agents_slot() -> None:
    slots = WarmSlots(cap=4)
    async with anyio.create_task_group() as tg:
        old: list[str] = []

        async def hold_old() -> None:
            old.append(await slots.hold("alice"))

        tg.start_soon(hold_old)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(slots.hold, "alice")
        await anyio.wait_all_tasks_blocked()
        assert old == ["a newer session of the same agent holds the slot"]
        assert slots.warm == ["alice"]
        tg.cancel_scope.cancel()
