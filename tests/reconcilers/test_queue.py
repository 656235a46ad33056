from __future__ import annotations

import anyio
import pytest

from reconcilers.queue import Backoff, Result, TerminalError, WorkQueue

pytestmark = pytest.mark.anyio


async def test_a_waiting_key_is_queued_once() -> None:
    seen: list[str] = []
    gate = anyio.Event()

    async def reconcile(key: str) -> Result:
        await gate.wait()
        seen.append(key)
        return Result()

    queue = WorkQueue(reconcile, workers=2)
    async with anyio.create_task_group() as tg:
        await tg.start(queue.serve)
        queue.add("blocker")
        await anyio.wait_all_tasks_blocked()
        assert queue.add("a") is True
        assert queue.add("a") is False
        assert queue.add("a") is False
        gate.set()
        await queue.wait_idle()
        tg.cancel_scope.cancel()
    assert sorted(seen) == ["a", "blocker"]


async def test_one_key_is_never_reconciled_concurrently() -> None:
    running = 0
    peak = 0
    runs = 0

    async def reconcile(key: str) -> Result:
        nonlocal running, peak, runs
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.01)
        running -= 1
        runs += 1
        return Result()

    queue = WorkQueue(reconcile, workers=4)
    async with anyio.create_task_group() as tg:
        await tg.start(queue.serve)
        for _ in range(5):
            queue.add("same")
            await anyio.sleep(0.003)
        await queue.wait_idle()
        tg.cancel_scope.cancel()
    assert peak == 1
    # Adds during a run mark the key dirty: it runs again once, not once per add.
    assert 2 <= runs <= 3


async def test_errors_back_off_exponentially_and_terminal_errors_are_not_retried() -> None:
    attempts: dict[str, list[float]] = {"flaky": [], "broken": []}

    async def reconcile(key: str) -> Result:
        attempts[key].append(anyio.current_time())
        if key == "broken":
            raise TerminalError("invalid spec")
        if len(attempts[key]) < 4:
            raise RuntimeError("transient")
        return Result()

    queue = WorkQueue(reconcile, workers=2, backoff=Backoff(base=0.02, cap=0.05))
    async with anyio.create_task_group() as tg:
        await tg.start(queue.serve)
        queue.add("flaky")
        queue.add("broken")
        with anyio.fail_after(5):
            while len(attempts["flaky"]) < 4:
                await anyio.sleep(0.01)
        await anyio.sleep(0.1)
        tg.cancel_scope.cancel()
    gaps = [b - a for a, b in zip(attempts["flaky"], attempts["flaky"][1:], strict=False)]
    assert gaps[0] >= 0.02 * 0.9
    assert gaps[1] >= 0.04 * 0.9
    assert gaps[2] >= 0.05 * 0.9  # capped
    assert len(attempts["broken"]) == 1
    assert "flaky" not in queue.failures


async def test_requeue_after_asks_for_a_later_run() -> None:
    times: list[float] = []

    async def reconcile(key: str) -> Result:
        times.append(anyio.current_time())
        return Result(requeue_after=0.05) if len(times) == 1 else Result()

    queue = WorkQueue(reconcile)
    async with anyio.create_task_group() as tg:
        await tg.start(queue.serve)
        queue.add("k")
        with anyio.fail_after(5):
            while len(times) < 2:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert times[1] - times[0] >= 0.045


def test_backoff_is_capped() -> None:
    b = Backoff(base=1, cap=10)
    assert [b.delay(n) for n in range(6)] == [0, 1, 2, 4, 8, 10]
