"""The kubernetes runtime against the fake API server (kmock on loopback), driven over real
HTTP by the real client library (kr8s)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from gitstore.spec import AgentSpec
from reconcilers.backoff import Backoff
from reconcilers.kubernetes import CONFLICT_TRIES, KubernetesRuntime
from reconcilers.kubesettings import KubeSettings
from reconcilers.layout import Layout
from reconcilers.runtime import AgentBuild, ContainerError, ContainerState
from tests.fakes.kubernetes import FakeCluster, open_fake_cluster

pytestmark = pytest.mark.anyio
NS = "hive"


@dataclass
class Served:
    cluster: FakeCluster
    runtime: KubernetesRuntime

    def sts(self, name: str) -> dict[str, object] | None:
        return self.cluster.object("apps/v1/statefulsets", NS, f"hive-{name}")

    def pod(self, name: str) -> dict[str, object] | None:
        return self.cluster.object("v1/pods", NS, f"hive-{name}-0")


def build(name: str, rev: str, harness: str = "h1") -> AgentBuild:
    return AgentBuild(name, "agent", rev, AgentSpec(description="d"), harness)


@pytest.fixture
async def served(short_dir: Path) -> AsyncIterator[Served]:
    async with open_fake_cluster() as cluster:
        settings = KubeSettings(
            namespace=NS, url=str(cluster.url), agent_address="tls://hive-c0re.hive.svc:7443"
        )
        runtime = KubernetesRuntime(
            settings,
            Layout(short_dir / "state", short_dir / "run"),
            watch_backoff=Backoff(0.01, 0.05),
        )
        async with anyio.create_task_group() as tg:
            await tg.start(runtime.serve)
            yield Served(cluster, runtime)
            tg.cancel_scope.cancel()


def _uid(obj: dict[str, object] | None) -> object:
    assert obj is not None
    meta = obj["metadata"]
    assert isinstance(meta, dict)
    return meta["uid"]


def _annotations(served: Served, name: str) -> dict[str, str]:
    sts = served.sts(name)
    assert sts is not None
    template = sts["spec"]["template"]  # type: ignore[index]
    return dict(template["metadata"]["annotations"])


async def _exit(runtime: KubernetesRuntime) -> str:
    with anyio.fail_after(5):
        async for name in runtime.exits():
            return name
    raise AssertionError("no exit")


async def test_an_agent_is_created_stopped_started_updated_held_started_and_destroyed(
    served: Served,
) -> None:
    rt, cluster = served.runtime, served.cluster
    assert (await rt.observe("alice")).state is ContainerState.MISSING
    await rt.create(build("alice", "rev1"))
    assert cluster.object("v1/serviceaccounts", NS, "hive-alice") is not None
    assert cluster.object("v1/persistentvolumeclaims", NS, "hive-alice-state") is not None
    assert cluster.object("v1/secrets", NS, "hive-alice-key") is not None
    created = await rt.observe("alice")
    assert (created.state, created.rev, created.harness_version) == (
        ContainerState.STOPPED,
        "rev1",
        "h1",
    )
    assert await rt.names() == ["alice"]

    await rt.start("alice")
    assert (await rt.observe("alice")).state is ContainerState.RUNNING
    first = _uid(served.pod("alice"))

    await rt.update(build("alice", "rev2", "h2"))
    assert _annotations(served, "alice")["hyperhive.dev/rev"] == "rev2"
    rolled = await rt.observe("alice")
    assert (rolled.state, rolled.rev, rolled.harness_version) == (
        ContainerState.RUNNING,
        "rev2",
        "h2",
    )
    assert _uid(served.pod("alice")) != first  # the template changed: a new pod

    await rt.stop("alice")  # a hold is replicas 0
    assert served.pod("alice") is None
    assert (await rt.observe("alice")).state is ContainerState.STOPPED
    await rt.start("alice")
    assert (await rt.observe("alice")).state is ContainerState.RUNNING

    await rt.destroy("alice")
    assert (await rt.observe("alice")).state is ContainerState.MISSING
    assert served.sts("alice") is None and served.pod("alice") is None
    assert cluster.object("v1/serviceaccounts", NS, "hive-alice") is None
    # The claim (notes, history, credentials) is kept unless purged.
    assert cluster.object("v1/persistentvolumeclaims", NS, "hive-alice-state") is not None
    assert await rt.purge("alice") is True
    assert cluster.object("v1/persistentvolumeclaims", NS, "hive-alice-state") is None
    assert await rt.purge("alice") is False


async def test_a_crash_loop_is_seen_through_the_pod_watch_with_the_pods_reason(
    served: Served,
) -> None:
    rt = served.runtime
    await rt.create(build("bob", "rev1"))
    await rt.start("bob")
    await served.cluster.crash(NS, "hive-bob-0", reason="Error")
    assert await _exit(rt) == "bob"
    crashed = await rt.observe("bob")
    assert crashed.state is ContainerState.CRASHED
    assert "CrashLoopBackOff" in crashed.message and "last exit Error (code 1)" in crashed.message
    # start restarts a crash-looping pod at once: a fresh pod, running.
    before = _uid(served.pod("bob"))
    await rt.start("bob")
    assert _uid(served.pod("bob")) != before
    assert (await rt.observe("bob")).state is ContainerState.RUNNING


async def test_the_pod_watch_resumes_from_its_resource_version_when_the_stream_drops(
    served: Served,
) -> None:
    rt, cluster = served.runtime, served.cluster
    await rt.create(build("carol", "rev1"))
    await rt.start("carol")
    with anyio.fail_after(5):
        while rt.watches < 1 or len(cluster.watch_since) < 1:
            await anyio.sleep(0.01)
    version_before_drop = cluster.version
    await cluster.drop_watches()
    with anyio.fail_after(5):
        while len(cluster.watch_since) < 2:
            await anyio.sleep(0.01)
    # Resumed from where it was, not from scratch (no list, no replay of old events).
    assert cluster.watch_since[-1] != ""
    assert int(cluster.watch_since[-1]) <= version_before_drop
    await cluster.crash(NS, "hive-carol-0")
    assert await _exit(rt) == "carol"
    assert rt.watches == 2


async def test_an_update_that_conflicts_is_read_again_and_retried(served: Served) -> None:
    rt, cluster = served.runtime, served.cluster
    await rt.create(build("dave", "rev1"))
    cluster.interfere = 2
    await rt.update(build("dave", "rev2"))
    assert cluster.conflicts == 2
    assert _annotations(served, "dave")["hyperhive.dev/rev"] == "rev2"
    cluster.interfere = CONFLICT_TRIES
    with pytest.raises(ContainerError, match="kept changing"):
        await rt.update(build("dave", "rev3"))
    assert _annotations(served, "dave")["hyperhive.dev/rev"] == "rev2"


async def test_logs_come_from_the_pod_log_api(served: Served) -> None:
    rt = served.runtime
    await rt.create(build("erin", "rev1"))
    await rt.start("erin")
    served.cluster.logs["hive-erin-0"] = "".join(f"line {i}\n" for i in range(10))
    assert await rt.logs("erin", lines=3) == ["line 7", "line 8", "line 9"]
    assert await rt.logs("nobody", lines=3) == []


async def test_the_pod_template_holds_no_api_token_and_a_projected_hyperhive_token(
    served: Served,
) -> None:
    await served.runtime.create(build("fay", "rev1"))
    sts = served.sts("fay")
    assert sts is not None
    spec = sts["spec"]["template"]["spec"]  # type: ignore[index]
    assert spec["automountServiceAccountToken"] is False
    assert spec["serviceAccountName"] == "hive-fay"
    (projected,) = [v for v in spec["volumes"] if v["name"] == "token"]
    source = projected["projected"]["sources"][0]["serviceAccountToken"]
    assert source["audience"] == "hyperhive"
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert env["HIVE_SOCKET"] == "tls://hive-c0re.hive.svc:7443"
    assert env["HIVE_TOKEN_FILE"] == "/run/hive-token/token"
    assert spec["containers"][0]["securityContext"]["allowPrivilegeEscalation"] is False
