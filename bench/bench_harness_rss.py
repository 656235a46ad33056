"""Idle resident memory of an agent's harness, and what it is made of.

Starts the real daemon (`hive-c0re serve --no-dashboard` subprocess, state and sockets in
a temp dir) and declares one agent by a git push and `hive approve`; the process runtime
starts its harness, `hive-ag3nt serve`, with the contract's environment (`HIVE_AGENT`,
`HIVE_SOCKET`, `HIVE_STATE`, `CLAUDE_CONFIG_DIR`). Once the harness
reports itself idle (an `agent.turn` event on `watch`: connected, parked in its
long-poll `recv`) and has idled `--idle` seconds more, its VmRSS, VmHWM, threads and PSS
are read from /proc. The manager's harness (`hive-m1nd serve`, running since the daemon
started) is measured the same way. Target: VmRSS <= 60 MB.

`--sandbox both` (the default) measures twice: agents in their bubblewrap sandboxes (the
default) and with `HIVE_UNSANDBOXED=1`. For each it also reports the harness's start-up
(from the spawn recorded in `proc.json` to the idle report, i.e. Python start, imports,
history, connecting and `whoami`) and the VmRSS of the `bwrap` process that waits for a
sandboxed harness (outside the sandbox).

Then, to show what the figure is made of, modules on the harness's import path are each
imported alone in a fresh interpreter (`python -c "import X"`, VmRSS after it), and
`python -X importtime -c "import hyperhive.harness, ui.agent_page"` is summed by top-level
package.

    python bench/bench_harness_rss.py [--idle 5] [--sandbox both|bwrap|none]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import anyio
from _agents import declare
from _utils import REPO, Watch, agent_pids, open_daemon, remove, rss_kib, scratch_dir, verdict

TARGET_MB = 60.0
# Modules on the harness's import path, each imported alone in a fresh interpreter.
IMPORTS = (
    "asyncio",
    "anyio",
    "controller.protocol",
    "controller.fanout",
    "harness.history",
    "pydantic.main",
    "gitstore.spec",
    "harness.claude",
    "harness.agent",
    "hyperhive.harness",
    "starlette.applications",
    "uvicorn",
    "jinja2",
    "ui.agent_page",
)
# What `hive-ag3nt serve` imports: the CLI, then the agent page once the loop runs.
HARNESS = "hyperhive.harness, ui.agent_page"


def pss_kib(pid: int) -> int:
    """Proportional set size: shared pages (the interpreter, libraries) split by users."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


async def import_rss(module: str) -> int:
    """VmRSS (KiB) of a fresh interpreter right after `import module`."""
    code = (f"import {module}\n" if module else "") + (
        "import pathlib, re\n"
        "status = pathlib.Path('/proc/self/status').read_text()\n"
        "print(re.search(r'VmRSS:\\s+(\\d+)', status).group(1))\n"
    )
    done = await anyio.run_process([sys.executable, "-c", code], cwd=REPO, env=_env())
    return int(done.stdout)


async def import_times(module: str) -> dict[str, float]:
    """`-X importtime` self time (ms) summed by top-level package."""
    done = await anyio.run_process(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"], cwd=REPO, env=_env()
    )
    by_package: dict[str, float] = defaultdict(float)
    for line in done.stderr.decode().splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s+(\S+)", line)
        if match:
            by_package[match[2].split(".")[0]] += int(match[1]) / 1000
    return dict(by_package)


async def harness_figures(idle: float, unsandboxed: bool) -> dict[str, dict[str, float]]:
    """{name: {VmRSS, VmHWM, Threads, Pss, startup_s, bwrap_rss}} of the idle agent and
    manager harnesses (KiB; bwrap_rss 0 when unsandboxed)."""
    root = scratch_dir()
    try:
        async with (
            open_daemon(root, unsandboxed=unsandboxed) as daemon,
            anyio.create_task_group() as tg,
        ):
            watch = Watch()
            await tg.start(watch.serve, daemon.host_socket)
            mark = watch.mark()
            await declare(daemon.state_dir, daemon.host_socket.parent, {"idler": True}, root)

            def idle_report(event: dict[str, Any]) -> bool:
                return (event.get("type"), event.get("agent"), event.get("state")) == (
                    "agent.turn",
                    "idler",
                    "idle",
                )

            # The manager runs since the daemon started: it is idle long before this.
            at, _ = await watch.wait(idle_report, mark, timeout=60)
            idle_wall = time.time() - (time.perf_counter() - at)
            await anyio.sleep(idle)
            pids = agent_pids(daemon.state_dir)
            figures: dict[str, dict[str, float]] = {}
            for name in ("idler", "hm1nd"):
                proc = json.loads((daemon.state_dir / "agents" / name / "proc.json").read_text())
                bwrap = proc.get("sandbox_pid")
                figures[name] = {
                    **rss_kib(pids[name]),
                    "Pss": pss_kib(pids[name]),
                    "startup_s": idle_wall - float(proc["started_at"]),
                    "bwrap_rss": rss_kib(bwrap)["VmRSS"]
                    if isinstance(bwrap, int) and bwrap != pids[name]
                    else 0,
                }
            tg.cancel_scope.cancel()
        return figures
    finally:
        remove(root, keep=False)


def mb(kib: float) -> str:
    return f"{kib / 1024:6.1f} MB"


async def main(args: argparse.Namespace) -> None:
    started = time.monotonic()
    print(f"bench_harness_rss: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    modes = {"both": ("bwrap", "none"), "bwrap": ("bwrap",), "none": ("none",)}[args.sandbox]
    results = {}
    for mode in modes:
        figures = await harness_figures(args.idle, unsandboxed=mode == "none")
        results[mode] = figures
        print(f"sandbox {mode}:")
        for name, label in (("idler", "hive-ag3nt serve"), ("hm1nd", "hive-m1nd serve")):
            f = figures[name]
            bwrap = f"  + bwrap {mb(f['bwrap_rss']).strip()}" if f["bwrap_rss"] else ""
            print(
                f"  {label:<18} ({name}) idle {args.idle:.0f} s: VmRSS {mb(f['VmRSS'])}  "
                f"VmHWM {mb(f['VmHWM'])}  Pss {mb(f['Pss'])}  threads {f['Threads']:.0f}"
                f"{bwrap}"
            )
        print(f"  start-up (spawn -> idle): idler {figures['idler']['startup_s'] * 1000:.0f} ms")
    figures = results[modes[0]]

    bare = await import_rss("")
    print(f"\nVmRSS of a fresh interpreter: {mb(bare).strip()}; after importing one module:")
    for module in IMPORTS:
        rss = await import_rss(module)
        print(f"  {module:<22} {mb(rss)}  (+{mb(rss - bare).strip()})")
    times = await import_times(HARNESS)
    top = sorted(times.items(), key=lambda kv: -kv[1])[:10]
    print(f"\n-X importtime of {HARNESS}, self time by top-level package:")
    print("  " + ", ".join(f"{pkg} {ms:.0f} ms" for pkg, ms in top))
    print(f"  total {sum(times.values()):.0f} ms")

    rss_mb = figures["idler"]["VmRSS"] / 1024
    ok = verdict(rss_mb <= TARGET_MB)
    print(f"\nharness idle VmRSS {rss_mb:.1f} MB <= {TARGET_MB:.0f} MB: {ok}")
    print(f"({time.monotonic() - started:.0f} s)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Idle RSS of an agent's harness process.")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds idle before sampling (5)")
    parser.add_argument(
        "--sandbox",
        choices=("both", "bwrap", "none"),
        default="both",
        help="agents in bubblewrap sandboxes, unsandboxed, or both (default)",
    )
    return parser.parse_args()


if __name__ == "__main__":
    anyio.run(main, parse_args())
