"""hive-c0re with the kubernetes runtime, against the fake API server (kmock on loopback,
through kr8s): the whole lifecycle of an agent from an approval to `destroy --purge`,
agents logging in over TLS with their ServiceAccount tokens, git over HTTP with the
manager's token; and the real `hive-c0re serve --runtime kubernetes` process."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
import trustme

from controller.hive import Hive
from controller.operations import Operations
from controller.protocol import ProtocolError, connect_client
from controller.values import AgentRow
from reconcilers.kubesettings import KubeSettings
from tests.fakes.kubernetes import FakeCluster, open_fake_cluster
from tests.helpers import GIT_ENV, Clone, admin, hive_settings, running_hive, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]
NS = "hive"


def _certificates(root: Path) -> dict[str, str]:
    ca = trustme.CA()
    cert = ca.issue_cert("hive-c0re.hive.svc", "127.0.0.1")
    paths = {"ca": root / "ca.pem", "cert": root / "cert.pem", "key": root / "key.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    cert.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    cert.private_key_pem.write_to_path(str(paths["key"]))
    return {k: str(v) for k, v in paths.items()}


@dataclass
class Cluster:
    hive: Hive
    ops: Operations
    fake: FakeCluster
    root: Path

    async def row(self, name: str) -> AgentRow:
        return await self.ops.agent(name)

    async def until(self, name: str, **want: object) -> AgentRow:
        async def matches() -> AgentRow | None:
            row = await self.row(name)
            return row if all(getattr(row, k) == v for k, v in want.items()) else None

        found: AgentRow = await wait_for(matches, timeout=15)
        return found

    async def approve_push(self, clone: Clone, message: str) -> None:
        sha = clone.commit_push(message)
        approval = await wait_for(lambda: _pending(self.hive, sha), timeout=10)
        await self.hive.approvals.approve(approval.id)

    def pod(self, name: str) -> dict[str, Any] | None:
        return self.fake.object("v1/pods", NS, f"hive-{name}-0")

    def token_file(self, account: str, **kwargs: Any) -> str:
        path = self.root / f"token-{account}"
        path.write_text(self.fake.issue_token(NS, account, **kwargs))
        return str(path)


async def _pending(hive: Hive, sha: str) -> Any:
    rows = await hive.approvals.query("pending")
    return next((a for a in rows if a.sha == sha), None)


@pytest.fixture
async def cluster(short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Cluster]:
    certs = _certificates(short_dir)
    monkeypatch.setenv("HIVE_TLS_CA", certs["ca"])
    monkeypatch.setenv("HIVE_TLS_SERVER_NAME", "hive-c0re.hive.svc")
    async with open_fake_cluster() as fake:
        settings = hive_settings(
            short_dir,
            runtime="kubernetes",
            agent_tls="127.0.0.1:0",
            tls_cert=certs["cert"],
            tls_key=certs["key"],
            kube=KubeSettings(
                namespace=NS,
                url=str(fake.url),
                agent_address="tls://hive-c0re.hive.svc:7443",
                timeout=10,
            ),
            crash_limit=3,
            crash_backoff=0.01,
            dashboard_enabled=True,
            dashboard="127.0.0.1:0",
        )
        async with running_hive(settings) as hive:
            yield Cluster(hive, Operations(hive), fake, short_dir)


async def test_an_agent_lives_its_whole_life_as_a_statefulset(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = cluster.fake
    await cluster.until("hm1nd", state="running", ready=True)  # the manager, from the start
    clone = Clone(cluster.root / "clone", cluster.hive.git.proposed_path)

    # create -> ready
    clone.add_agent("alice", "the first pod")
    await cluster.approve_push(clone, "alice")
    row = await cluster.until("alice", state="running", ready=True)
    sts = fake.object("apps/v1/statefulsets", NS, "hive-alice")
    assert sts is not None and sts["spec"]["replicas"] == 1
    annotations = sts["spec"]["template"]["metadata"]["annotations"]
    assert annotations["hyperhive.dev/rev"] == row.desired_rev
    first_pod = cluster.pod("alice")
    assert first_pod is not None

    # update -> rolled
    clone.add_agent("alice", "the second pod")
    await cluster.approve_push(clone, "alice, described anew")
    row = await wait_for(lambda: _rolled(cluster, "alice", row.desired_rev), timeout=15)
    rolled = cluster.pod("alice")
    assert rolled is not None and rolled["metadata"]["uid"] != first_pod["metadata"]["uid"]

    # hold -> replicas 0; start -> replicas 1
    await cluster.ops.lifecycle("alice", "stop")
    await cluster.until("alice", state="stopped", hold="stop by operator")
    assert cluster.pod("alice") is None
    await cluster.ops.lifecycle("alice", "start")
    await cluster.until("alice", state="running", ready=True, hold=None)

    # the agent logs in over TLS with its ServiceAccount token, and acts as itself only
    port = cluster.hive.agent_tls_port
    assert port is not None
    monkeypatch.setenv("HIVE_TOKEN_FILE", cluster.token_file("hive-alice"))
    async with await connect_client(f"tls://127.0.0.1:{port}") as alice:
        me = await alice.call("whoami")
        assert isinstance(me, dict) and me["name"] == "alice"
        with pytest.raises(ProtocolError, match="manager command"):
            await alice.call("list_agents")

    # logs come from the pod's log
    fake.logs["hive-alice-0"] = "harness up\nturn done\n"
    assert (await cluster.ops.logs("alice", 10))[-1] == "turn done"

    # crash loop -> Stalled, with the pod's reason
    for _ in range(3):
        pod = await wait_for(lambda: _running_pod(cluster, "alice"), timeout=15)
        await fake.crash(NS, pod["metadata"]["name"], reason="Error")
        await wait_for(functools.partial(_gone_or_new, cluster, "alice", pod), timeout=15)
    stalled = await cluster.until("alice", stalled=True)
    assert stalled.reason == "CrashLoop"
    assert "CrashLoopBackOff" in stalled.message

    # removed from the tree -> destroyed, claim kept; destroy --purge deletes it
    clone.remove("agents/alice")
    await cluster.approve_push(clone, "alice goes")
    await wait_for(lambda: fake.object("apps/v1/statefulsets", NS, "hive-alice") is None)
    assert fake.object("v1/persistentvolumeclaims", NS, "hive-alice-state") is not None
    async with admin(cluster.hive) as client:
        with pytest.raises(ProtocolError, match="in applied main"):
            await client.call("destroy", name="hm1nd")
        done = await client.call("destroy", name="alice", purge=True)
    assert isinstance(done, dict) and done["purged"] is True
    assert fake.object("v1/persistentvolumeclaims", NS, "hive-alice-state") is None


async def test_the_manager_clones_over_git_http_with_its_serviceaccount_token(
    cluster: Cluster,
) -> None:
    port = cluster.hive.dashboard_port
    assert port is not None
    await wait_for(lambda: cluster.hive.identify is not None)
    env = {**os.environ, **GIT_ENV, "GIT_TERMINAL_PROMPT": "0"}

    def ls_remote(token_file: str) -> subprocess.CompletedProcess[str]:
        token = Path(token_file).read_text()
        url = f"http://hm1nd:{token}@127.0.0.1:{port}/git/proposed.git"
        return subprocess.run(["git", "ls-remote", url], env=env, capture_output=True, text=True)

    manager = cluster.token_file("hive-hm1nd")
    listed = await anyio.to_thread.run_sync(ls_remote, manager)
    assert listed.returncode == 0, listed.stderr
    assert "refs/heads/main" in listed.stdout
    # Another agent's token, or the manager's for another audience, is refused.
    for path in (
        cluster.token_file("hive-bob"),
        cluster.token_file("hive-hm1nd", audiences=("vault",)),
    ):
        refused = await anyio.to_thread.run_sync(ls_remote, path)
        assert refused.returncode != 0


async def _rolled(cluster: Cluster, name: str, old_rev: str) -> AgentRow | None:
    row = await cluster.row(name)
    fresh = row.desired_rev != old_rev and row.observed_rev == row.desired_rev
    return row if fresh and row.ready and row.state == "running" else None


def _running_pod(cluster: Cluster, name: str) -> dict[str, Any] | None:
    pod = cluster.pod(name)
    statuses = (pod or {}).get("status", {}).get("containerStatuses") or [{}]
    return pod if pod is not None and statuses[0].get("ready") else None


async def _gone_or_new(cluster: Cluster, name: str, old: dict[str, Any]) -> bool:
    """The crashed pod was replaced (a restart), or the agent is Stalled (no restart)."""
    pod = cluster.pod(name)
    replaced = pod is None or pod["metadata"]["uid"] != old["metadata"]["uid"]
    return replaced or (await cluster.row(name)).stalled


async def test_hive_c0re_serve_runs_with_the_kubernetes_runtime_holding_the_lease(
    short_dir: Path,
) -> None:
    certs = _certificates(short_dir)
    async with open_fake_cluster() as fake:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HIVE_")}
        env.update(
            HIVE_STATE_DIR=str(short_dir / "state"),
            HIVE_RUNTIME_DIR=str(short_dir / "run"),
            HIVE_KUBE_URL=str(fake.url),
            HIVE_KUBE_NAMESPACE=NS,
            HIVE_TLS_CERT=certs["cert"],
            HIVE_TLS_KEY=certs["key"],
            HIVE_LEADER_ELECTION="1",
            POD_NAME="hive-c0re-a",
        )
        argv = [
            sys.executable,
            "-m",
            "hyperhive.cli_daemon",
            "serve",
            "--runtime",
            "kubernetes",
            "--agent-tls",
            "127.0.0.1:0",
            "--no-dashboard",
        ]
        log = (short_dir / "daemon.log").open("wb")
        proc = await anyio.open_process(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:

            def agents() -> list[dict[str, Any]]:
                out = subprocess.run(
                    [sys.executable, "-m", "controller.cli_admin", "--json", "agents"],
                    env=env,
                    capture_output=True,
                    text=True,
                )
                return json.loads(out.stdout) if out.returncode == 0 else []

            async def manager_running() -> bool:
                rows = await anyio.to_thread.run_sync(agents)
                return any(
                    r["name"] == "hm1nd" and r["state"] == "running" and r["ready"] for r in rows
                )

            await wait_for(manager_running, timeout=30, interval=0.1)
            sts = fake.object("apps/v1/statefulsets", NS, "hive-hm1nd")
            assert sts is not None and sts["spec"]["replicas"] == 1
            lease = fake.object("coordination.k8s.io/v1/leases", NS, "hive-c0re")
            assert lease is not None and lease["spec"]["holderIdentity"] == "hive-c0re-a"
        finally:
            proc.send_signal(signal.SIGTERM)
            with anyio.fail_after(15):
                await proc.wait()
            await proc.aclose()
            log.close()
            assert proc.returncode == 0, (short_dir / "daemon.log").read_text()[-2000:]
        # Agents outlive the daemon, as they do in the other runtimes; the lease is freed.
        assert fake.object("apps/v1/statefulsets", NS, "hive-hm1nd") is not None
        lease = fake.object("coordination.k8s.io/v1/leases", NS, "hive-c0re")
        log_text = (short_dir / "daemon.log").read_text()[-3000:]
        assert lease is not None and not lease["spec"].get("holderIdentity"), log_text
