"""The work queue: real concurrency, one key at a time, one timer, and any number of idle
waiters. Time-driven cases run on a `FakeClock`, so backoffs of seconds take none."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.lowlevel
import pytest

from reconcilers.backoff import Backoff
from reconcilers.queue import Result, TerminalError, WorkQueue
from tests.fakes.clock import FakeClock

pytestmark = pytest.mark.anyio

Reconcile = Callable[[str], Awaitable[Result]]


@asynccontextmanager
async def serving(queue: WorkQueue) -> AsyncIterator[WorkQueue]:
    async with anyio.create_task_group() as tg:
        await tg.start(queue.serve)
        yield queue
        tg.cancel_scope.cancel()


def recording(log: list[str], result: Result | None = None) -> Reconcile:
    async def reconcile(key: str) -> Result:
        log.append(key)
        return result or Result()

    return reconcile


async def test_a_waiting_key_is_queued_once() -> None:
    seen: list[str] = []
    gate = anyio.Event()

    async def reconcile(key: str) -> Result:
        await gate.wait()
        seen.append(key)
        return Result()

    async with serving(WorkQueue(reconcile, workers=1)) as queue:
        queue.add("blocker")
        await anyio.wait_all_tasks_blocked()
        assert queue.add("a") is True
        assert queue.add("a") is False
        assert queue.add("a") is False
        assert queue.depth == 1
        gate.set()
        await queue.wait_idle()
    assert seen == ["blocker", "a"]


async def test_different_keys_are_reconciled_in_parallel_up_to_the_number_of_workers() -> None:
    inside = 0
    peak = 0
    four_inside = anyio.Event()

    async def reconcile(key: str) -> Result:
        nonlocal inside, peak
        inside += 1
        peak = max(peak, inside)
        if inside == 4:
            four_inside.set()
        # Blocks until four keys are inside at once: a queue that runs keys one at a
        # time deadlocks here, and fail_after turns that into a failure.
        await four_inside.wait()
        inside -= 1
        return Result()

    async with serving(WorkQueue(reconcile, workers=4)) as queue:
        await anyio.wait_all_tasks_blocked()
        for key in "abcdef":
            queue.add(key)
        with anyio.fail_after(5):
            await four_inside.wait()
            await queue.wait_idle()
    assert peak == 4  # six keys, four workers: never more than four at once
    assert queue.peak_active == 4
    assert queue.runs == 6


async def test_a_slow_key_does_not_hold_up_the_others() -> None:
    slow_release = anyio.Event()
    done: list[str] = []

    async def reconcile(key: str) -> Result:
        if key == "slow":
            await slow_release.wait()
        done.append(key)
        return Result()

    async with serving(WorkQueue(reconcile, workers=2)) as queue:
        queue.add("slow")
        for key in ("a", "b", "c"):
            queue.add(key)
        with anyio.fail_after(5):
            while len(done) < 3:
                await anyio.sleep(0.001)
        assert done == ["a", "b", "c"]
        assert queue.active == 1
        slow_release.set()
        await queue.wait_idle()
    assert done[-1] == "slow"


async def test_one_key_is_never_reconciled_concurrently_under_100_rapid_adds() -> None:
    inside: dict[str, int] = {}
    peak: dict[str, int] = {}
    adds = 0
    adds_seen_by_last_run = -1

    async def reconcile(key: str) -> Result:
        nonlocal adds_seen_by_last_run
        inside[key] = inside.get(key, 0) + 1
        peak[key] = max(peak.get(key, 0), inside[key])
        if key == "same":
            adds_seen_by_last_run = adds
        await anyio.lowlevel.checkpoint()
        await anyio.lowlevel.checkpoint()
        inside[key] -= 1
        return Result()

    async with serving(WorkQueue(reconcile, workers=4)) as queue:
        for i in range(100):
            queue.add("same")
            adds += 1
            queue.add(f"other-{i % 7}")
            await anyio.lowlevel.checkpoint()
        with anyio.fail_after(5):
            await queue.wait_idle()
    assert peak["same"] == 1
    assert all(p == 1 for p in peak.values())
    # Adds during a run mark the key dirty: far fewer runs than adds, and the last run
    # started after the last add, so no add was lost.
    assert 2 <= queue.stats["same"].runs < 100
    assert adds_seen_by_last_run == 100


async def test_a_key_added_while_it_runs_runs_once_more_after() -> None:
    gate = anyio.Event()
    runs: list[str] = []

    async def reconcile(key: str) -> Result:
        runs.append(key)
        if len(runs) == 1:
            await gate.wait()
        return Result()

    async with serving(WorkQueue(reconcile, workers=2)) as queue:
        queue.add("k")
        await anyio.wait_all_tasks_blocked()
        assert queue.add("k") is True  # marked dirty
        assert queue.add("k") is False  # already dirty
        await anyio.wait_all_tasks_blocked()
        assert runs == ["k"]  # not handed to the idle second worker
        gate.set()
        await queue.wait_idle()
    assert runs == ["k", "k"]


async def test_every_wait_idle_caller_returns() -> None:
    gate = anyio.Event()

    async def reconcile(key: str) -> Result:
        await gate.wait()
        return Result()

    returned = 0

    async def waiter(queue: WorkQueue) -> None:
        nonlocal returned
        await queue.wait_idle()
        returned += 1

    async with serving(WorkQueue(reconcile, workers=2)) as queue:
        queue.add("a")
        queue.add("b")
        await anyio.wait_all_tasks_blocked()
        with anyio.fail_after(5):
            async with anyio.create_task_group() as waiters:
                for _ in range(10):
                    waiters.start_soon(waiter, queue)
                await anyio.wait_all_tasks_blocked()
                assert returned == 0
                gate.set()
    assert returned == 10


async def test_an_idle_queue_returns_from_wait_idle_at_once() -> None:
    async with serving(WorkQueue(recording([]))) as queue:
        with anyio.fail_after(1):
            await queue.wait_idle()
            await queue.wait_settled()
        assert queue.idle


async def test_delayed_adds_wait_in_one_heap_served_by_one_timer() -> None:
    clock = FakeClock()
    ran: list[str] = []
    async with serving(WorkQueue(recording(ran), clock=clock)) as queue:
        for i in range(50, 0, -1):
            queue.add_after(f"k{i:02}", float(i))
        await anyio.wait_all_tasks_blocked()
        assert clock.sleepers == 1  # one timer task, not one sleeping task per add
        assert clock.next_deadline == clock.now() + 1
        assert queue.delayed == 50
        clock.advance(10)
        await queue.wait_idle()
        assert ran == [f"k{i:02}" for i in range(1, 11)]
        assert queue.delayed == 40
        clock.advance(40)
        await queue.wait_settled()
    assert len(ran) == 50
    assert ran == sorted(ran)


async def test_a_later_delayed_add_keeps_the_earlier_due_time() -> None:
    clock = FakeClock()
    ran: list[str] = []
    async with serving(WorkQueue(recording(ran), clock=clock)) as queue:
        queue.add_after("k", 5)
        queue.add_after("k", 10)
        clock.advance(5)
        await queue.wait_idle()
        assert ran == ["k"]
        clock.advance(5)
        await queue.wait_settled()
        assert ran == ["k"]  # one run: the later ask was covered by the earlier one

        queue.add_after("j", 10)
        queue.add_after("j", 3)  # an earlier ask moves the due time forward
        await anyio.wait_all_tasks_blocked()
        clock.advance(3)
        await queue.wait_settled()
    assert ran == ["k", "j"]


async def test_an_immediate_add_runs_a_delayed_key_now() -> None:
    clock = FakeClock()
    ran: list[str] = []
    async with serving(WorkQueue(recording(ran), clock=clock)) as queue:
        queue.add_after("k", 60)
        await anyio.wait_all_tasks_blocked()
        assert ran == []
        queue.add("k")
        with anyio.fail_after(5):
            await queue.wait_settled()
        assert ran == ["k"]
        clock.advance(60)
        await anyio.wait_all_tasks_blocked()
        await queue.wait_settled()
    assert ran == ["k"]  # the run now replaced the delayed one


async def test_delayed_keys_count_for_wait_settled_but_not_for_wait_idle() -> None:
    clock = FakeClock()
    ran: list[str] = []
    async with serving(WorkQueue(recording(ran), clock=clock)) as queue:
        queue.add_after("later", 30)
        with anyio.fail_after(1):
            await queue.wait_idle()
        assert queue.idle and queue.delayed == 1
        settled = anyio.Event()

        async def wait_settled() -> None:
            await queue.wait_settled()
            settled.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_settled)
            await anyio.wait_all_tasks_blocked()
            assert not settled.is_set()
            clock.advance(30)
            assert not queue.idle  # due now: idle waits for it too
            with anyio.fail_after(5):
                await settled.wait()
    assert ran == ["later"]


async def test_errors_back_off_exponentially_per_key_and_terminal_errors_are_not_retried() -> None:
    clock = FakeClock()
    attempts: dict[str, list[float]] = {"flaky": [], "broken": [], "fine": []}

    async def reconcile(key: str) -> Result:
        attempts[key].append(clock.now())
        if key == "broken":
            raise TerminalError("invalid spec")
        if key == "flaky" and len(attempts[key]) < 5:
            raise RuntimeError("transient")
        return Result()

    queue = WorkQueue(reconcile, backoff=Backoff(base=1, cap=5), clock=clock)
    async with serving(queue):
        for key in attempts:
            queue.add(key)
        await queue.wait_idle()
        for _ in range(4):
            assert queue.delayed == 1
            clock.advance(5)
            await queue.wait_idle()
        await queue.wait_settled()
    flaky = attempts["flaky"]
    assert [b - a for a, b in itertools.pairwise(flaky)] == [5, 5, 5, 5]
    assert queue.stats["flaky"].failures == 4
    assert queue.stats["flaky"].consecutive_failures == 0
    assert queue.retries == 4
    assert len(attempts["broken"]) == 1
    assert queue.stats["broken"].failures == 1
    assert queue.stats["broken"].last_error == "invalid spec"
    assert attempts["fine"] == [attempts["flaky"][0]]


async def test_backoff_delays_double_per_failure_up_to_the_cap() -> None:
    clock = FakeClock()
    times: list[float] = []

    async def reconcile(key: str) -> Result:
        times.append(clock.now())
        raise RuntimeError("down")

    queue = WorkQueue(reconcile, backoff=Backoff(base=1, cap=4), clock=clock)
    async with serving(queue):
        queue.add("k")
        await queue.wait_idle()
        for runs, delay in enumerate((1, 2, 4, 4), start=1):
            clock.advance(delay - 0.25)
            await queue.wait_idle()
            assert len(times) == runs  # not due yet
            clock.advance(0.25)
            await queue.wait_idle()
            assert len(times) == runs + 1
    start = times[0]
    assert [t - start for t in times] == pytest.approx([0, 1, 3, 7, 11])


async def test_requeue_after_asks_for_a_later_run() -> None:
    clock = FakeClock()
    times: list[float] = []

    async def reconcile(key: str) -> Result:
        times.append(clock.now())
        return Result(requeue_after=7.5) if len(times) == 1 else Result()

    async with serving(WorkQueue(reconcile, clock=clock)) as queue:
        queue.add("k")
        await queue.wait_idle()
        assert queue.delayed == 1
        clock.advance(7.5)
        await queue.wait_settled()
    assert [t - times[0] for t in times] == [0, 7.5]


async def test_every_reconcile_is_counted_and_timed() -> None:
    clock = FakeClock()

    async def reconcile(key: str) -> Result:
        clock.advance(2.5 if key == "slow" else 0.5)
        return Result()

    async with serving(WorkQueue(reconcile, clock=clock)) as queue:
        for _ in range(3):
            queue.add("slow")
            queue.add("quick")
            await queue.wait_idle()
    assert queue.runs == 6
    assert queue.stats["slow"].runs == 3
    assert queue.stats["slow"].last_duration == 2.5
    assert queue.stats["slow"].total_duration == 7.5
    assert queue.stats["quick"].last_duration == 0.5
    assert queue.stats["quick"].failures == 0


async def test_keys_added_before_the_queue_serves_run_once_it_does() -> None:
    clock = FakeClock()
    ran: list[str] = []
    queue = WorkQueue(recording(ran), clock=clock)
    queue.add("now")
    queue.add_after("later", 1)
    async with serving(queue):
        await queue.wait_idle()
        clock.advance(1)
        await queue.wait_settled()
    assert ran == ["now", "later"]


def test_a_queue_needs_a_worker() -> None:
    with pytest.raises(ValueError, match="at least one worker"):
        WorkQueue(recording([]), workers=0)
