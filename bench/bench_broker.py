"""The broker over the real agent sockets, side by side with Redis streams.

Measured in one run, so the ratios compare like with like on a noisy 2-core machine:
- raw sqlite: one INSERT + COMMIT per row (WAL, synchronous=NORMAL), the rate of a
  durable send that commits alone;
- wake latency: a client parked in `recv(wait_seconds=30)` on bob's socket, another
  `send`s on alice's socket; from before `send` to `recv` returning;
- durable throughput: 10 senders, each an agent on its own socket, `send` in a loop;
- Redis (Debian `redis-server` on loopback, AOF with `appendfsync everysec`, i.e. durable
  across a process crash like WAL with synchronous=NORMAL): `XREAD BLOCK` woken by
  `XADD`, and 10 connections `XADD`ing, through `redis.asyncio`.

The systems take turns in short rounds (hive, redis, raw sqlite, hive, ...) so a burst of
load from elsewhere hits all of them alike. Besides wall-clock figures it prints the
server's CPU time per message (utime + stime of the server process over the throughput
rounds), which other load on the machine barely moves.

The hive is a real `hive-c0re serve` subprocess (agents declared `enabled = false` by a
git push and `hive approve`, so no harness runs) unless `--in-process`, which serves it
in this benchmark's own event loop, where clients and server share one core.

    python bench/bench_broker.py [--samples 1000] [--seconds 3] [--rounds 5] [--in-process]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from _agents import agent_socket, cpu_seconds, declare
from _utils import open_daemon, open_hive, remove, scratch_dir, stats, verdict

from controller.protocol import Client, connect_client

SENDERS = [f"s{i}" for i in range(10)]
WAKE_P50_MS, WAKE_P99_MS, THROUGHPUT, REDIS_WAKE_RATIO = 1.0, 5.0, 10_000.0, 1.5

Call = Callable[[], Awaitable[object]]


@dataclass
class System:
    """One broker under test: how to park a receiver, wake it, and send in a loop."""

    name: str
    pid: int | None
    recv: Call
    send: Call
    senders: list[Call]
    wake: list[float] = field(default_factory=list)
    send_latency: list[float] = field(default_factory=list)
    sent: int = 0
    busy: float = 0.0
    cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.sent / self.busy if self.busy else 0.0

    @property
    def cpu_per_message(self) -> float | None:
        return self.cpu / self.sent if self.pid is not None and self.sent else None


# --- raw sqlite ------------------------------------------------------------------------


class RawSqlite:
    """One INSERT + COMMIT per row, WAL, synchronous=NORMAL, on a fresh file."""

    def __init__(self) -> None:
        self.tmp = scratch_dir()
        self.db = sqlite3.connect(
            self.tmp / "raw.sqlite", isolation_level=None, check_same_thread=False
        )
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, sender TEXT,"
            " recipient TEXT, body TEXT, created_at TEXT)"
        )
        self.rows = 0
        self.busy = 0.0
        self.cpu = 0.0

    def run(self, seconds: float) -> None:
        db = self.db
        start, cpu = time.perf_counter(), time.thread_time()
        deadline = start + seconds
        while (now := time.perf_counter()) < deadline:
            for _ in range(100):
                db.execute("BEGIN IMMEDIATE")
                db.execute(
                    "INSERT INTO messages(sender, recipient, body, created_at) VALUES (?,?,?,?)",
                    ("alice", "bob", "ping", "2025-01-01T00:00:00.000+00:00"),
                )
                db.execute("COMMIT")
            self.rows += 100
        self.busy += now - start
        self.cpu += time.thread_time() - cpu

    @property
    def rate(self) -> float:
        return self.rows / self.busy

    def close(self) -> None:
        self.db.close()
        remove(self.tmp, keep=False)


# --- the two measurements, for any system ---------------------------------------------


async def wake_latency(system: System, samples: int, gap: float) -> list[float]:
    """Seconds from before `send` to a parked `recv` returning, `samples` times."""
    out: list[float] = []
    for _ in range(samples):
        woke = 0.0

        async def receive() -> None:
            nonlocal woke
            await system.recv()
            woke = time.perf_counter()

        async with anyio.create_task_group() as tg:
            tg.start_soon(receive)
            await anyio.sleep(gap)  # the request reaches the server and parks there
            sent = time.perf_counter()
            await system.send()
        out.append(woke - sent)
    return out


async def throughput(system: System, seconds: float, *, record: bool = True) -> None:
    """All of the system's senders send in a loop for `seconds`."""
    latencies: list[float] = []
    start = time.perf_counter()
    until = start + seconds
    cpu = cpu_seconds(system.pid) if system.pid is not None else 0.0

    async def loop(send: Call) -> None:
        while (t0 := time.perf_counter()) < until:
            await send()
            latencies.append(time.perf_counter() - t0)

    async with anyio.create_task_group() as tg:
        for send in system.senders:
            tg.start_soon(loop, send)
    if record:
        system.busy += time.perf_counter() - start
        system.sent += len(latencies)
        system.send_latency += latencies
        if system.pid is not None:
            system.cpu += cpu_seconds(system.pid) - cpu


# --- the hive --------------------------------------------------------------------------


SINK_FLAGS = ("--inbox-max-messages", str(10**9), "--inbox-max-bytes", str(10**12))


@asynccontextmanager
async def open_hive_system(in_process: bool) -> AsyncIterator[System]:
    """The hive of this checkout with the agents declared, and a client per agent."""
    root = scratch_dir()
    try:
        async with AsyncExitStack() as stack:
            pid: int | None = None
            # The throughput senders write to a sink that never reads: past its inbox
            # quota they would measure refusals, so the sink may hold everything.
            if in_process:
                hive = await stack.enter_async_context(
                    open_hive(root, inbox_max_messages=10**9, inbox_max_bytes=10**12)
                )
                state, run = hive.settings.state_dir, hive.settings.runtime_dir
            else:
                daemon = await stack.enter_async_context(open_daemon(root, flags=SINK_FLAGS))
                state, run, pid = daemon.state_dir, daemon.host_socket.parent, daemon.pid
            agents = {"hm1nd": False, "alice": False, "bob": False, "sink": False}
            await declare(state, run, agents | dict.fromkeys(SENDERS, False), root)
            clients: list[Client] = []
            for name in ("bob", "alice", *SENDERS):
                client = await connect_client(agent_socket(run, name))
                clients.append(await stack.enter_async_context(client))
            bob, alice, *senders = clients

            async def recv() -> object:
                message = await bob.call("recv", wait_seconds=30)
                assert message is not None
                return message

            def sender(client: Client, to: str) -> Call:
                return lambda: client.call("send", to=to, body="ping")

            yield System(
                "hive", pid, recv, sender(alice, "bob"), [sender(c, "sink") for c in senders]
            )
    finally:
        remove(root, keep=False)


# --- Redis -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@asynccontextmanager
async def open_redis_system() -> AsyncIterator[System]:
    """redis-server on a free loopback port, AOF fsync every second, and its clients."""
    from redis.asyncio import Redis

    tmp = scratch_dir()
    port = _free_port()
    process = await anyio.open_process(
        [
            "redis-server",
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--dir", str(tmp),
            "--daemonize", "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    conns: list[Any] = []
    try:
        with anyio.fail_after(10):
            while True:
                try:
                    async with Redis(port=port) as probe:
                        await probe.ping()
                    break
                except Exception as exc:  # redis' ConnectionError is not an OSError
                    if "connect" not in str(exc).lower():
                        raise
                    await anyio.sleep(0.02)
        conns = [Redis(port=port) for _ in range(2 + len(SENDERS))]
        bob, alice, *senders = conns
        last = "0-0"

        async def recv() -> object:
            nonlocal last
            got = await bob.xread({"bob": last}, block=30_000, count=1)
            assert got
            last = got[0][1][0][0]
            return got

        def sender(r: Any, stream: str) -> Call:
            return lambda: r.xadd(stream, {"sender": "s", "body": "ping"})

        yield System(
            "redis", process.pid, recv, sender(alice, "bob"), [sender(r, "sink") for r in senders]
        )
    finally:
        with anyio.CancelScope(shield=True):
            for r in conns:
                await r.aclose()
            process.terminate()
            with anyio.move_on_after(5):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
            await process.aclose()
            remove(tmp, keep=False)


# --- report ----------------------------------------------------------------------------


def line(name: str, samples: list[float]) -> str:
    return stats(samples).line(name, width=34)


def report(systems: list[System], raw: RawSqlite) -> None:
    n = len(SENDERS)
    print(f"{'raw sqlite INSERT+COMMIT':<34} {raw.rate:10,.0f} rows/s"
          f"   cpu {raw.cpu / raw.rows * 1e6:6.1f} us/row")  # fmt: skip
    for s in systems:
        print(line(f"{s.name} send -> recv wake", s.wake))
        print(line(f"{s.name} send, {n} senders", s.send_latency))
        cpu = s.cpu_per_message
        per = f"   server cpu {cpu * 1e6:6.1f} us/msg" if cpu is not None else ""
        print(f"{s.name + f' throughput, {n} senders':<34} {s.rate:10,.0f} msgs/s{per}")
    hive, others = systems[0], systems[1:]
    p50, p99 = stats(hive.wake).p50, stats(hive.wake).p99
    print()
    print(f"hive wake p50 {p50:.3f} ms <= {WAKE_P50_MS} ms: {verdict(p50 <= WAKE_P50_MS)}")
    print(f"hive wake p99 {p99:.3f} ms <= {WAKE_P99_MS} ms: {verdict(p99 <= WAKE_P99_MS)}")
    print(
        f"hive throughput {hive.rate:,.0f} msgs/s >= {THROUGHPUT:,.0f}: "
        f"{verdict(hive.rate >= THROUGHPUT)}   hive / raw sqlite = {hive.rate / raw.rate:.2f}"
    )
    for other in others:
        print(f"hive / {other.name}: {ratios(hive, other)}")
        if other.name == "redis":
            ratio = p50 / stats(other.wake).p50
            print(
                f"hive wake p50 within {REDIS_WAKE_RATIO}x of redis: "
                f"{verdict(ratio <= REDIS_WAKE_RATIO)}"
            )


def ratios(ours: System, theirs: System) -> str:
    o, t = stats(ours.wake), stats(theirs.wake)
    text = (
        f"wake p50 {o.p50 / t.p50:.2f}x, p99 {o.p99 / t.p99:.2f}x, "
        f"throughput {ours.rate / theirs.rate:.2f}x"
    )
    if ours.cpu_per_message and theirs.cpu_per_message:
        text += f", server cpu/msg {ours.cpu_per_message / theirs.cpu_per_message:.2f}x"
    return text


async def main(args: argparse.Namespace) -> None:
    where = "in-process (one event loop)" if args.in_process else "hive-c0re serve subprocess"
    use_redis = not args.no_redis and shutil.which("redis-server") is not None
    print(f"bench_broker: {os.cpu_count()} cores, hive as {where}, load {os.getloadavg()[0]:.1f}")
    if not use_redis:
        print("redis: skipped (--no-redis, or redis-server is not installed)")
    raw = RawSqlite()
    try:
        async with AsyncExitStack() as stack:
            systems = [await stack.enter_async_context(open_hive_system(args.in_process))]
            if use_redis:
                systems.append(await stack.enter_async_context(open_redis_system()))
            gap, rounds = args.gap_ms / 1000, args.rounds
            for s in systems:  # warm up: connections, caches, first pages of the files
                await wake_latency(s, 50, gap)
                await throughput(s, 0.3, record=False)
            for _ in range(rounds):
                for s in systems:
                    s.wake += await wake_latency(s, args.samples // rounds, gap)
            for _ in range(rounds):
                await anyio.to_thread.run_sync(raw.run, args.seconds / rounds)
                for s in systems:
                    await throughput(s, args.seconds / rounds)
        report(systems, raw)
    finally:
        raw.close()
    print(f"load at the end {os.getloadavg()[0]:.1f}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Broker wake latency and throughput over the agent sockets, vs Redis."
    )
    parser.add_argument("--samples", type=int, default=1000, help="wake samples (1000)")
    parser.add_argument(
        "--gap-ms", type=float, default=2.0, help="how long a recv parks before the send (2)"
    )
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="throughput seconds per system (3)"
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds the systems alternate (5)")
    parser.add_argument(
        "--in-process", action="store_true", help="serve the hive in this event loop"
    )
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis comparison")
    return parser.parse_args()


if __name__ == "__main__":
    anyio.run(main, parse_args())
