"""Live sessions (issue 11): how fast a message reaches the model, what sessions cost in
memory, and how fast a cancel ends a turn.

A real hive runs in-process with the process runtime (real `hive-ag3nt serve` harnesses
in their bubblewrap sandboxes) and the real claude CLI pointed at the scripted fake
Anthropic API on loopback (`tests/fakes/anthropic.py`, in this process). One agent is
declared by a git push and an approval. The operator's `send` goes over host.sock; the
figure is from just before `send` to the moment the fake API has received the request
that carries the message.

- warm: each message is sent the moment the previous turn ended, so the agent's claude
  is warm; `--turns` of them in one conversation, reported at its start and its end;
- cold: the harness's idle window (`HIVE_WARM_IDLE`, `--idle`) has passed, its claude
  is gone, and the message starts a new one (which resumes the conversation): early in
  the conversation, and again after the warm turns (a long transcript to resume);
- bare: the same claude binary started by hand (`claude --print ... PROMPT`, no MCP
  server, no harness) against the same fake, interleaved with the cold samples;
- RSS: the warm agent's harness plus its claude (the whole process tree), and 20 more
  agents whose harnesses never started a session (cold);
- cancel: a turn stalled in the API, then `Session.cancel()` (claude's `interrupt`
  control request) until the turn has ended, on a session opened by this process.

    python bench/bench_live_session.py [--turns 200] [--cold 10] [--idle 0.5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import anyio
from _utils import REPO, remove, rss_kib, scratch_dir, stats, verdict

from controller.hive import Hive
from harness.claude import ClaudeSettings, find_claude
from harness.session import SessionSpec, open_session
from tests.fakes.agent_socket import open_agent_socket
from tests.fakes.anthropic import FakeAnthropic, claude_env, hang, open_fake_anthropic
from tests.helpers import Clone, hive_settings, running_hive, wait_for

WARM_P50_MS, WARM_P99_MS, COLD_RATIO = 50.0, 200.0, 1.1


def _carries(marker: str) -> Any:
    return lambda r: r.scripted and marker in r.last_user_text


async def _arrival(fake: FakeAnthropic, marker: str) -> float:
    with anyio.fail_after(60):
        await fake.wait_for(_carries(marker))
    return time.perf_counter()


async def _send_once(hive: Hive, fake: FakeAnthropic, n: int, tag: str) -> float:
    marker = f"{tag}-{n}-marker"
    before = time.perf_counter()
    await hive.broker.send("operator", "alice", marker)
    arrived = await _arrival(fake, marker)
    await wait_for(lambda: _acked(hive), timeout=60, interval=0.002)
    return arrived - before


async def _acked(hive: Hive) -> bool:
    return await hive.broker.inbox("alice") == []


async def _bare(claude: str, env: dict[str, str], cwd: Path, fake: FakeAnthropic, n: int) -> float:
    marker = f"bare-{n}-marker"
    cmd = [claude, "--print", "--output-format", "stream-json", "--verbose", marker]
    before = time.perf_counter()
    # stdin closed: a piped stdin left open makes claude wait 3 s for more prompt.
    process = await anyio.open_process(
        cmd,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    async with process:
        arrived = await _arrival(fake, marker)
        await process.wait()
    return arrived - before


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            total += rss_kib(pid)["VmRSS"]
        except (OSError, KeyError):
            continue
    return total / 1024


async def _harness_pid(hive: Hive, name: str) -> int:
    obs = await hive.runtime.observe(name)
    assert obs.pid is not None
    return obs.pid


async def _apply(hive: Hive, root: Path, names: list[str]) -> None:
    clone = Clone(root / f"clone{len(names)}", hive.git.proposed_path)
    for name in names:
        clone.write(f"agents/{name}/agent.toml", f'description = "{name}"\n')
    clone.commit_push("agents")
    (approval,) = await wait_for(lambda: hive.approvals.query("pending"), timeout=30)
    await hive.approvals.approve(approval.id)
    await wait_for(lambda: all(_idle(hive, name) for name in names), timeout=60)


def _idle(hive: Hive, name: str) -> bool:
    return bool(hive.turns.get(name, {}).get("state") == "idle")


async def _cancels(claude: str, fake: FakeAnthropic, root: Path, count: int) -> list[float]:
    config = root / "cancel-config"
    config.mkdir()
    settings = ClaudeSettings(binary=claude, env=claude_env(fake.url, str(config)))
    samples = []
    async with (
        open_agent_socket("carol") as sock,
        open_session("carol", sock.path, root / "carol", settings, SessionSpec()) as session,
    ):
        ended: list[float] = []

        async def turn(marker: str) -> None:
            await session.turn(marker, _ignore)
            ended.append(time.perf_counter())

        for n in range(count):
            marker = f"stall-{n}-marker"
            fake.script(hang(when=_carries(marker)))
            async with anyio.create_task_group() as tg:
                tg.start_soon(turn, marker)
                with anyio.fail_after(60):
                    await fake.wait_for(_carries(marker))
                await anyio.sleep(0.1)  # claude is reading the stalled stream
                before = time.perf_counter()
                session.cancel()
            samples.append(ended[-1] - before)
    return samples


async def _ignore(event: dict[str, Any]) -> None:
    return None


async def main(args: argparse.Namespace) -> None:
    root = scratch_dir()
    claude = find_claude()
    try:
        async with open_fake_anthropic() as fake:
            env = {k: v for k, v in os.environ.items() if not k.startswith("HIVE_")}
            env.update(claude_env(fake.url, str(root / "unused")))
            env.update({"HIVE_CLAUDE_BIN": claude, "HIVE_WARM_IDLE": str(args.idle)})
            env["PYTHONPATH"] = str(REPO)
            settings = hive_settings(root, harness_command=(), environ=env)
            async with running_hive(settings) as hive:
                await wait_for(lambda: hive.turns.get("hm1nd", {}).get("state") == "idle", 60)
                await _apply(hive, root, ["alice"])
                first = await _send_once(hive, fake, 0, "first")
                bare_env = {**os.environ, **claude_env(fake.url, str(root / "bare-config"))}
                (root / "bare-config").mkdir()
                (root / "bare").mkdir()
                cold, bare = [], []
                for n in range(args.cold):
                    await anyio.sleep(args.idle * 2 + 0.3)  # its claude goes cold
                    cold.append(await _send_once(hive, fake, n, "cold"))
                    bare.append(await _bare(claude, bare_env, root / "bare", fake, n))
                warm = [await _send_once(hive, fake, n, "warm") for n in range(args.turns)]
                alice = await _harness_pid(hive, "alice")
                warm_tree = _tree(alice)
                warm_rss = _rss_mb(warm_tree)
                harness_rss = _rss_mb([alice])
                cold_long = []
                for n in range(max(3, args.cold // 2)):
                    await anyio.sleep(args.idle * 2 + 0.3)
                    cold_long.append(await _send_once(hive, fake, n, "late"))
                names = [f"c{i:02d}" for i in range(20)]
                await _apply(hive, root, names)
                pids = [await _harness_pid(hive, n) for n in names]
                cold_rss = _rss_mb([p for pid in pids for p in _tree(pid)])
                for name in ["alice", *names]:
                    await hive.runtime.stop(name)
            cancels = await _cancels(claude, fake, root, args.cold)
    finally:
        remove(root, keep=False)

    warm_all = stats(warm)
    print(f"first message (session starts): {first * 1000:.1f} ms")
    print(warm_all.line(f"warm send -> API, {args.turns} turns"))
    head, tail = warm[:10], warm[-10:]
    print(stats(head).line("  turns 1-10"))
    print(stats(tail).line(f"  turns {args.turns - 9}-{args.turns}"))
    cold_s, bare_s = stats(cold), stats(bare)
    print(cold_s.line("cold send -> API"))
    print(bare_s.line("bare claude start -> API"))
    print(stats(cold_long).line(f"cold, resuming {args.turns + args.cold + 1} turns"))
    ratio = cold_s.p50 / bare_s.p50
    print(stats(cancels).line("cancel -> turn ended"))
    print(f"RSS: one warm agent {warm_rss:.1f} MB ({len(warm_tree)} processes; harness alone")
    print(f"     {harness_rss:.1f} MB); 20 cold agents {cold_rss:.1f} MB in all")
    ok_warm = warm_all.p50 <= WARM_P50_MS and warm_all.p99 <= WARM_P99_MS
    print(f"warm p50 <= {WARM_P50_MS:g} ms, p99 <= {WARM_P99_MS:g} ms: {verdict(ok_warm)}")
    print(f"cold / bare p50 = {ratio:.2f} (<= {COLD_RATIO}): {verdict(ratio <= COLD_RATIO)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=200, help="warm turns in one conversation")
    parser.add_argument("--cold", type=int, default=10, help="cold, bare and cancel samples")
    parser.add_argument("--idle", type=float, default=0.5, help="HIVE_WARM_IDLE, seconds")
    anyio.run(main, parser.parse_args())
