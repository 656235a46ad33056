"""Git over HTTP and the agent protocol over TLS, against their local counterparts.

1. push -> pending approval: the same hive takes N pushes over HTTP (`/git/proposed.git`
   on the dashboard, a token as the password) and N pushes to the repo's path; the time
   from `git push` starting to the approval being in the store (polled every 0.5 ms),
   split at the moment the ref file was written (its mtime). Target ("pushes are seen as
   fast as local ones"): from the written ref on, HTTP no more than 50 ms slower at p50.
2. the agent protocol: `whoami` round trips on the agent's unix socket and on a TLS
   connection logged in with a ServiceAccount token; and what a login costs (TCP, TLS
   handshake, one TokenReview against the fake API server on loopback).

    python bench/bench_kube.py [--pushes 30] [--calls 500] [--logins 50]
"""

from __future__ import annotations

import argparse
import os
import ssl
import time
from pathlib import Path

import _utils  # first: puts this worktree on sys.path
import anyio
import trustme
from _utils import (
    agent_toml,
    clone,
    commit_all,
    git,
    git_async,
    open_hive,
    remove,
    scratch_dir,
    stats,
    verdict,
)

from controller.agent_tls import ServiceAccountIdentity, serve_agent_tls
from controller.hive import Hive
from controller.operations import Operations
from controller.protocol import Client, connect_client
from reconcilers.kubeapi import connect_kube
from tests.fakes.kubernetes import open_fake_cluster

TARGET_EXTRA_MS = 50.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pushes", type=int, default=30, help="pushes each way (default 30)")
    parser.add_argument("--calls", type=int, default=500, help="round trips (default 500)")
    parser.add_argument("--logins", type=int, default=50, help="TLS logins (default 50)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    return parser.parse_args()


async def _pushes(
    hive: Hive, work: Path, remote: str, n: int, tag: str
) -> tuple[list[float], list[float]]:
    """Per push: start -> approval stored, and ref written (its mtime) -> approval stored."""
    took, after_ref = [], []
    for i in range(n):
        git(work, "checkout", "-qB", f"{tag}{i}", "origin/main")
        (work / "agents" / f"{tag}{i}").mkdir(parents=True)
        (work / "agents" / f"{tag}{i}" / "agent.toml").write_text(agent_toml(f"{tag} {i}"))
        sha = commit_all(work, f"{tag} {i}")
        wall, started = time.time(), time.perf_counter()
        await git_async(work, "push", "-q", remote, f"{sha}:refs/heads/{tag}-{i}")
        while not any(a.sha == sha for a in await hive.approvals.query("pending")):
            await anyio.sleep(0.0005)
        took.append(time.perf_counter() - started)
        ref = hive.git.proposed_path / "refs" / "heads" / f"{tag}-{i}"
        after_ref.append(took[-1] - (ref.stat().st_mtime - wall))
    return took, after_ref


async def _round_trips(client: Client, n: int) -> list[float]:
    took = []
    for _ in range(n):
        started = time.perf_counter()
        await client.call("whoami")
        took.append(time.perf_counter() - started)
    return took


async def main(args: argparse.Namespace) -> None:
    root = scratch_dir()
    try:
        async with (
            open_fake_cluster() as cluster,
            open_hive(root, dashboard_enabled=True, dashboard="127.0.0.1:0") as hive,
        ):
            ops = Operations(hive)
            made = await ops.create_token("bench")
            work = clone(hive.git.proposed_path, root / "clone")
            http = f"http://bench:{made.token}@127.0.0.1:{hive.dashboard_port}/git/proposed.git"
            over_http, http_hive = await _pushes(hive, work, http, args.pushes, "h")
            local, local_hive = await _pushes(
                hive, work, str(hive.git.proposed_path), args.pushes, "l"
            )

            ca = trustme.CA()
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert("hive-c0re.test").configure_cert(context)
            ca.cert_pem.write_to_path(str(root / "ca.pem"))
            token = root / "token"
            token.write_text(cluster.issue_token("hive", "hive-hm1nd"))
            os.environ.update(
                HIVE_TLS_CA=str(root / "ca.pem"),
                HIVE_TLS_SERVER_NAME="hive-c0re.test",
                HIVE_TOKEN_FILE=str(token),
            )
            async with (
                await connect_kube("hive", url=str(cluster.url)) as api,
                anyio.create_task_group() as tg,
            ):
                identify = ServiceAccountIdentity(api, "hive", lambda: hive.applied.names)
                port = await tg.start(serve_agent_tls, ops, "127.0.0.1", 0, context, identify)
                address = f"tls://127.0.0.1:{port}"
                async with await connect_client(hive.layout.socket("hm1nd")) as unix:
                    on_unix = await _round_trips(unix, args.calls)
                async with await connect_client(address) as tls:
                    on_tls = await _round_trips(tls, args.calls)
                logins = []
                for _ in range(args.logins):
                    started = time.perf_counter()
                    client = await connect_client(address)
                    logins.append(time.perf_counter() - started)
                    await client.aclose()
                tg.cancel_scope.cancel()
    finally:
        remove(root, args.keep)

    print(f"push -> pending approval ({args.pushes} pushes each)")
    http_s, local_s = stats(over_http), stats(local)
    print(http_s.line("git push over HTTP (token)"))
    print(local_s.line("git push to the repo's path"))
    print(stats(http_hive).line("  over HTTP: ref written -> approval"))
    print(stats(local_hive).line("  local: ref written -> approval"))
    extra = stats(http_hive).p50 - stats(local_hive).p50
    print(
        f"target: once the ref is written, HTTP no more than {TARGET_EXTRA_MS:.0f} ms slower"
        f" at p50: {extra:+.2f} ms {verdict(extra <= TARGET_EXTRA_MS)}"
        f" (end to end: {http_s.p50 - local_s.p50:+.2f} ms, git's HTTP round trips)"
    )
    print(f"agent protocol round trip (whoami, {args.calls} calls)")
    print(stats(on_unix).line("unix socket"))
    print(stats(on_tls).line("TLS, logged in with a token"))
    print(stats(logins).line(f"login: TCP + TLS + TokenReview (x{args.logins})"))


if __name__ == "__main__":
    _utils.quiet_logs()
    anyio.run(main, parse_args())
