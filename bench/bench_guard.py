"""The cost of the guard rails (issue 10) on the send and turn paths, before and after.

- Broker: `bench_broker.py` (the real `hive-c0re serve`, 10 senders on their own agent
  sockets, no Redis) run alternately from a copy of the tree before the guard rails
  (`git archive` of `--before`, default the merge base with `main`) and from this
  checkout, which checks every send against the sender's `rate.send_per_minute` (raised
  to the maximum so nothing is refused). Wake p50 and throughput of each run, and their
  medians.
- Turn path: the harness's `turn_state` report over alice's socket (an in-process hive),
  with a finished turn in it (recorded in the store, then the budget and turn limits
  checked: what every turn now costs) and without one (what it cost before), alternating.

    python bench/bench_guard.py [--runs 2] [--before REV] [--reports 400]
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import anyio
from _agents import declare
from _utils import REPO, open_hive, quiet_logs, remove, scratch_dir, stats

from controller.quotas import CountRate
from tests.helpers import connect_harness

_P50 = re.compile(r"hive send -> recv wake\s+n=\d+\s+p50=\s*([\d.]+) ms")
_RATE = re.compile(r"hive throughput, \d+ senders\s+([\d,]+) msgs/s")


def tree_before(rev: str, into: Path) -> Path:
    """The tree at `rev`, unpacked into `into` (no git metadata is touched)."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev], cwd=REPO, check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def broker_run(tree: Path) -> tuple[float, float]:
    """One `bench_broker.py` of `tree`: wake p50 (ms) and throughput (msgs/s)."""
    out = subprocess.run(
        [sys.executable, str(tree / "bench" / "bench_broker.py"), "--no-redis",
         "--samples", "600", "--rounds", "3", "--seconds", "3"],
        cwd=tree, check=True, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(tree)},
    ).stdout  # fmt: skip
    wake, rate = _P50.search(out), _RATE.search(out)
    if wake is None or rate is None:
        raise RuntimeError(f"bench_broker printed no figures:\n{out}")
    return float(wake.group(1)), float(rate.group(1).replace(",", ""))


async def turn_reports(reports: int) -> tuple[list[float], list[float], float]:
    """`turn_state` round trips with a finished turn (recorded) and without one; and the
    CPU time per send of what the send path gained (the sender's limits and its bucket)."""
    root = scratch_dir()
    try:
        async with open_hive(root) as hive:
            await declare(hive.settings.state_dir, hive.settings.runtime_dir,
                          {"alice": False}, root)  # fmt: skip
            with_turn: list[float] = []
            without: list[float] = []
            async with await connect_harness(hive, "alice") as harness:
                for n in range(reports):
                    last = {"id": n, "started_at": f"2026-12-01T00:00:00.{n:06}+00:00",
                            "status": "ok", "duration_ms": 900, "cost_usd": 0.0001,
                            "input_tokens": 100, "output_tokens": 20, "tool_calls": 1}  # fmt: skip
                    started = time.perf_counter()
                    await harness.call("turn_state", state="idle", last_turn=last)
                    with_turn.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    await harness.call("turn_state", state="thinking")
                    without.append(time.perf_counter() - started)
            assert sum(r.turns for r in await hive.usage.by_day("alice")) == reports
            rate = CountRate("send", "minute", hive.clock)
            calls = 50_000  # within one bucket of 100,000: none is refused
            started = time.process_time()
            for _ in range(calls):
                limits = await hive.limits_for("alice")
                rate.spend("alice", max(limits.send_per_minute, 100_000))
            per_send = (time.process_time() - started) / calls
            return with_turn, without, per_send
    finally:
        remove(root, keep=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2, help="broker runs per tree (2)")
    parser.add_argument("--before", default="", help="the tree before (default: merge base)")
    parser.add_argument("--reports", type=int, default=400, help="turn reports per kind (400)")
    args = parser.parse_args()
    quiet_logs()
    rev = args.before or subprocess.run(
        ["git", "merge-base", "HEAD", "main"], cwd=REPO, check=True, capture_output=True,
        text=True,
    ).stdout.strip()  # fmt: skip
    print(
        f"bench_guard: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, before = {rev[:12]}"
    )
    work = scratch_dir()
    try:
        before = tree_before(rev, work / "before")
        figures: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
        for _ in range(args.runs):
            for name, tree in (("before", before), ("after", REPO)):
                figures[name].append(broker_run(tree))
                wake, rate = figures[name][-1]
                print(
                    f"  broker {name:<6} wake p50 {wake:6.2f} ms   throughput {rate:8,.0f} msgs/s"
                )
        medians = {}
        for name, runs in figures.items():
            wake = statistics.median(w for w, _ in runs)
            rate = statistics.median(r for _, r in runs)
            medians[name] = (wake, rate)
            print(f"broker {name:<6} (median of {len(runs)}): wake p50 {wake:.2f} ms, "
                  f"throughput {rate:,.0f} msgs/s")  # fmt: skip
        (bw, br), (aw, ar) = medians["before"], medians["after"]
        print(f"after / before: wake p50 {aw / bw:.2f}x, throughput {ar / br:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    with_turn, without, per_send = anyio.run(turn_reports, args.reports)
    print(
        f"send path: the sender's limits + its counted bucket: {per_send * 1e6:.2f} us CPU per send"
    )
    print(stats(with_turn).line("turn_state with a finished turn", 36))
    print(stats(without).line("turn_state without one (before)", 36))
    extra = stats(with_turn).p50 - stats(without).p50
    print(f"accounting + limit checks per finished turn: +{extra:.2f} ms p50 "
          "(a turn is one claude run: seconds)")  # fmt: skip
    print(f"load at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
