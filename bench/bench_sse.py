"""SSE fan-out: 100 clients on the dashboard's `/events`, 1,000 events/s published.

The server (a hive's bus and the real dashboard app on uvicorn, in a subprocess) waits
for 100 subscribers, then publishes 1,000 events/s for 5 s; each event carries its
`time.monotonic()` at publish (CLOCK_MONOTONIC is system-wide on Linux, so the clients
in this process can subtract it). The clients (aiohttp, one process) record publish to
receipt for every event. Both share the machine's 2 cores, so the figure includes the
clients' own parsing. Run: `python bench/bench_sse.py`.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import anyio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CLIENTS = 100
RATE = 1000
SECONDS = 5.0


async def serve(port_file: Path) -> None:
    from controller.events import EventType
    from controller.hive import Hive
    from controller.operations import Operations
    from controller.settings import Settings
    from ui.dashboard import create_dashboard
    from ui.server import serve_app

    root = Path(tempfile.mkdtemp(prefix="bs", dir="/tmp"))
    hive = Hive(Settings.from_env({}, state_dir=root / "state", runtime_dir=root / "run"))
    await hive.load_applied()
    app = create_dashboard(Operations(hive))

    def bound(port: int) -> None:
        port_file.write_text(str(port))

    async with anyio.create_task_group() as tg:
        await tg.start(
            lambda task_status: serve_app(
                app,
                "127.0.0.1",
                0,
                what="bench",
                task_status=task_status,
                on_bound=bound,
            )
        )
        while hive.bus.subscriber_count < CLIENTS:
            await anyio.sleep(0.05)
        await anyio.sleep(0.5)
        total = int(RATE * SECONDS)
        start = time.monotonic()
        for i in range(total):
            due = start + i / RATE
            delay = due - time.monotonic()
            if delay > 0:
                await anyio.sleep(delay)
            # Turn states stand in for any event: nothing in the hive reacts to them.
            hive.bus.publish(EventType.AGENT_TURN, agent="bench", n=i, t=time.monotonic())
        await anyio.sleep(1.0)
        hive.bus.publish(EventType.AGENT_TURN, agent="bench", state="done")
        await anyio.sleep(2.0)
        tg.cancel_scope.cancel()
    shutil.rmtree(root, ignore_errors=True)


async def client(url: str, latencies: list[float], counts: list[int]) -> None:
    got = 0
    buffer = b""
    async with (
        aiohttp.ClientSession() as http,
        http.get(url, timeout=aiohttp.ClientTimeout(total=60)) as resp,
    ):
        async for chunk in resp.content.iter_any():
            now = time.monotonic()
            buffer += chunk
            *events, buffer = buffer.split(b"\n\n")
            for raw in events:
                if b"event: agent.turn" not in raw:
                    continue
                if b'"state":"done"' in raw:
                    counts.append(got)
                    return
                # Cheaper than json.loads for 100k events/s in one client process.
                at = raw.index(b'"t":') + 4
                latencies.append(now - float(raw[at : raw.index(b"}", at)]))
                got += 1


async def main() -> None:
    port_file = Path(tempfile.mktemp(prefix="bsport", dir="/tmp"))
    server = await anyio.open_process(
        [sys.executable, __file__, "serve", str(port_file)], cwd=REPO, stdout=None, stderr=None
    )
    try:
        with anyio.fail_after(20):
            while not port_file.exists() or not port_file.read_text():
                await anyio.sleep(0.05)
        url = f"http://127.0.0.1:{port_file.read_text()}/events"
        latencies: list[float] = []
        counts: list[int] = []
        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            for _ in range(CLIENTS):
                tg.start_soon(client, url, latencies, counts)
        wall = time.monotonic() - started
    finally:
        with anyio.fail_after(30):
            await server.wait()
        port_file.unlink(missing_ok=True)
    ms = sorted(x * 1000 for x in latencies)
    expected = int(RATE * SECONDS) * CLIENTS
    print(f"SSE fan-out: {CLIENTS} clients x {RATE} events/s for {SECONDS:.0f} s")
    print(
        f"  delivered {len(ms)} of {expected} ({min(counts)}..{max(counts)} per client), "
        f"wall {wall:.1f} s"
    )
    print(
        f"  publish->receipt: median {statistics.median(ms):.1f} ms, "
        f"p99 {ms[int(len(ms) * 0.99)]:.1f} ms, max {ms[-1]:.1f} ms"
    )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        anyio.run(serve, Path(sys.argv[2]))
    else:
        anyio.run(main)
