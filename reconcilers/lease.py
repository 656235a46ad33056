"""Leader election on a coordination.k8s.io Lease, so a second hive-c0re waits its turn.

The algorithm of client-go's `leaderelection`, in its smallest form: the Lease names its
holder and when it last renewed; a candidate takes it when it is free or its holder has
not renewed for `duration` seconds, by an update that carries the resourceVersion it
read (two candidates racing: one gets 409 and goes back to waiting). The holder renews
every `renew` seconds; if it cannot renew within `duration` it must stop at once (the
others may take over then), which `hold_lease` does by returning. On a clean stop the
holder clears the Lease, so the next one need not wait out the duration.

Time is the holder's wall clock in the Lease (`renewTime`, microseconds, as client-go
writes it); the waiting candidate compares with its own, so clocks must roughly agree
(a few seconds of skew against the default 15 s duration), as for client-go.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import anyio

from reconcilers.kubeapi import KubeApi, KubeConflictError, KubeError

__all__ = ["LeaseLost", "acquire_lease", "hold_lease", "release_lease"]

log = logging.getLogger(__name__)
_VERSION = "coordination.k8s.io/v1"


class LeaseLost(Exception):
    """Raised when the holder could not renew its Lease in time."""


def _stamp(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(stamp: str) -> float:
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(stamp, fmt).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    return 0.0


def _body(name: str, identity: str, duration: float, now: float, version: str = "") -> Any:
    meta: dict[str, Any] = {"name": name}
    if version:
        meta["resourceVersion"] = version
    return {
        "apiVersion": _VERSION,
        "kind": "Lease",
        "metadata": meta,
        "spec": {
            "holderIdentity": identity,
            "leaseDurationSeconds": max(1, round(duration)),
            "renewTime": _stamp(now),
            "acquireTime": _stamp(now),
        },
    }


async def _try(
    api: KubeApi, name: str, identity: str, duration: float, clock: Callable[[], float]
) -> bool:
    now = clock()
    lease = await api.get(_VERSION, f"leases/{name}")
    if lease is None:
        try:
            await api.create(_VERSION, "leases", _body(name, identity, duration, now))
        except KubeConflictError:
            return False
        return True
    spec = lease.get("spec") or {}
    holder = spec.get("holderIdentity") or ""
    renewed = _parse(str(spec.get("renewTime") or ""))
    held_for = float(spec.get("leaseDurationSeconds") or duration)
    if holder and holder != identity and now - renewed < held_for:
        return False
    version = str(lease["metadata"].get("resourceVersion", ""))
    try:
        await api.patch(_VERSION, f"leases/{name}", _body(name, identity, duration, now, version))
    except KubeConflictError:
        return False
    return True


async def acquire_lease(
    api: KubeApi,
    name: str,
    identity: str,
    *,
    duration: float = 15.0,
    retry: float = 2.0,
    clock: Callable[[], float] = time.time,
) -> None:
    """Wait until `identity` holds the Lease `name`."""
    waiting = False
    while True:
        try:
            if await _try(api, name, identity, duration, clock):
                log.info("%s holds the lease %s", identity, name)
                return
        except KubeError as exc:
            log.warning("lease %s: %s", name, exc)
        if not waiting:
            log.info("lease %s is held by another hive-c0re; waiting", name)
            waiting = True
        await anyio.sleep(retry)


async def hold_lease(
    api: KubeApi,
    name: str,
    identity: str,
    *,
    duration: float = 15.0,
    renew: float = 5.0,
    clock: Callable[[], float] = time.time,
) -> None:
    """Renew the Lease every `renew` seconds; raises `LeaseLost` when another holds it
    or it could not be renewed for `duration` seconds."""
    last = clock()
    while True:
        await anyio.sleep(renew)
        try:
            if await _try(api, name, identity, duration, clock):
                last = clock()
                continue
            raise LeaseLost(f"lease {name} was taken by another hive-c0re")
        except KubeError as exc:
            log.warning("cannot renew lease %s: %s", name, exc)
        if clock() - last >= duration:
            raise LeaseLost(f"lease {name} not renewed for {duration:g} s")


async def release_lease(api: KubeApi, name: str, identity: str) -> None:
    """Clear the Lease if `identity` holds it (a clean stop), so the next need not wait."""
    lease = await api.get(_VERSION, f"leases/{name}")
    if lease is None or (lease.get("spec") or {}).get("holderIdentity") != identity:
        return
    version = str(lease["metadata"].get("resourceVersion", ""))
    patch = {"metadata": {"resourceVersion": version}, "spec": {"holderIdentity": None}}
    await api.patch(_VERSION, f"leases/{name}", patch)
