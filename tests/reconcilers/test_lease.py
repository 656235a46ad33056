"""Leader election on a Lease in the fake API server: a second hive-c0re waits."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from reconcilers.kubeapi import KubeApi, connect_kube
from reconcilers.lease import LeaseLost, acquire_lease, hold_lease, release_lease
from tests.fakes.kubernetes import FakeCluster, open_fake_cluster

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def api() -> AsyncIterator[tuple[FakeCluster, KubeApi]]:
    async with (
        open_fake_cluster() as cluster,
        await connect_kube("hive", url=str(cluster.url)) as kube,
    ):
        yield cluster, kube


def _holder(cluster: FakeCluster) -> object:
    lease = cluster.object("coordination.k8s.io/v1/leases", "hive", "hive-c0re")
    assert lease is not None
    return lease["spec"]["holderIdentity"]


async def test_a_second_candidate_waits_until_the_holder_stops_renewing(
    api: tuple[FakeCluster, KubeApi],
) -> None:
    cluster, kube = api
    clock = Clock()
    await acquire_lease(kube, "hive-c0re", "pod-a", duration=15, clock=clock)
    assert _holder(cluster) == "pod-a"
    second = anyio.Event()

    async def candidate() -> None:
        await acquire_lease(kube, "hive-c0re", "pod-b", duration=15, retry=0.01, clock=clock)
        second.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(candidate)
        clock.now += 10  # within the holder's duration: pod-b keeps waiting
        await anyio.sleep(0.1)
        assert not second.is_set() and _holder(cluster) == "pod-a"
        clock.now += 6  # pod-a has not renewed for 16 s
        with anyio.fail_after(5):
            await second.wait()
    assert _holder(cluster) == "pod-b"


async def test_the_holder_stops_when_another_took_its_lease(
    api: tuple[FakeCluster, KubeApi],
) -> None:
    _, kube = api
    clock = Clock()
    await acquire_lease(kube, "hive-c0re", "pod-a", duration=15, clock=clock)
    clock.now += 20  # pod-a was partitioned away; pod-b took over meanwhile
    await acquire_lease(kube, "hive-c0re", "pod-b", duration=15, clock=clock)
    with anyio.fail_after(5), pytest.raises(LeaseLost, match="taken"):
        await hold_lease(kube, "hive-c0re", "pod-a", duration=15, renew=0.01, clock=clock)


async def test_a_released_lease_is_taken_at_once(api: tuple[FakeCluster, KubeApi]) -> None:
    cluster, kube = api
    clock = Clock()
    await acquire_lease(kube, "hive-c0re", "pod-a", clock=clock)
    await release_lease(kube, "hive-c0re", "pod-a")
    with anyio.fail_after(5):
        await acquire_lease(kube, "hive-c0re", "pod-b", retry=10, clock=clock)
    assert _holder(cluster) == "pod-b"
