"""How long a plan of a tree with thousands of agents takes.

A real `GitStore` (proposed and applied bare repos), one commit adding N agents written
into `proposed.git` by `git fast-import` (a pack, as a push of the same tree brings),
then `GitStore.plan` of it, timed: the first plan, and the median of a few more.
Target: 10,000 agents in well under a second.

    python bench/bench_plan.py [--agents 10000] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time

import anyio
from _utils import agent_toml, git, remove, scratch_dir, verdict

from gitstore.limits import Limits
from gitstore.store import GitStore

TARGET_S = 1.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=10_000, help="agents (default 10000)")
    parser.add_argument("--runs", type=int, default=3, help="timed plans (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir")
    return parser.parse_args()


def big_commit(store: GitStore, count: int) -> str:
    """Branch `many` of proposed.git: main plus `count` agents, written by `git
    fast-import` (a pack, as a push brings)."""
    lines = ["commit refs/heads/many", "committer Bench <b@example.test> 0 +0000", "data 4", "many"]
    lines.append("from refs/heads/main")
    for name in (f"b{i:05d}" for i in range(count)):
        for path, text in (
            (f"agents/{name}/agent.toml", agent_toml(f"agent {name}")),
            (f"agents/{name}/prompt.md", f"You are {name}.\n"),
        ):
            data = text.encode()
            lines += [f"M 100644 inline {path}", f"data {len(data)}", text.rstrip("\n")]
    stream = "\n".join(lines) + "\n"
    subprocess.run(
        ["git", "fast-import", "--quiet"],
        cwd=store.proposed_path,
        input=stream.encode(),
        check=True,
    )
    return git(store.proposed_path, "rev-parse", "refs/heads/many")


async def main() -> None:
    args = parse_args()
    root = scratch_dir()
    try:
        store = GitStore(root / "state", Limits(agents=args.agents + 1))
        sha = big_commit(store, args.agents)
        start = time.perf_counter()
        plan = await store.plan(sha)
        first = time.perf_counter() - start
        runs: list[float] = []
        for _ in range(args.runs):
            start = time.perf_counter()
            await store.plan(sha)
            runs.append(time.perf_counter() - start)
        median = statistics.median(runs)
        print(f"agents: {args.agents}, steps: {len(plan.steps)}, errors: {len(plan.errors)}")
        print(f"first plan: {first * 1000:.0f} ms, median of {args.runs}: {median * 1000:.0f} ms")
        print(f"target < {TARGET_S:.0f} s: {verdict(max(first, median) < TARGET_S)}")
    finally:
        remove(root, args.keep)


if __name__ == "__main__":
    anyio.run(main)
