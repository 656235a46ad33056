"""hive-c0re's root: the hive, its sockets and its dashboard under one task group, until a
signal."""

from __future__ import annotations

import logging
import signal
import socket

import anyio
from anyio.abc import TaskStatus

from controller.admin import HostSession, host_commands
from controller.agent_sockets import serve_agent_sockets
from controller.agent_tls import serve_agents_over_tls
from controller.hive import Hive
from controller.operations import Operations
from controller.settings import Settings
from controller.sockets import Slots, serve_socket
from reconcilers.clock import Clock
from reconcilers.kubeapi import KubeApi, KubeError, connect_kube
from reconcilers.kubesettings import KubeSettings
from reconcilers.lease import LeaseLost, acquire_lease, hold_lease, release_lease
from reconcilers.runtime import Runtime
from ui.dashboard import serve_dashboard

__all__ = ["build_hive", "run_daemon"]

log = logging.getLogger(__name__)


def build_hive(
    settings: Settings, runtime: Runtime | None = None, clock: Clock | None = None
) -> Hive:
    """The hive with every component the daemon serves (on `runtime`, else the one the
    settings name; on `clock`, else the system's)."""
    hive = Hive(settings, runtime, clock)
    ops = Operations(hive)

    async def host_socket(tg: anyio.abc.TaskGroup) -> None:
        await tg.start(
            lambda task_status: serve_socket(
                hive.layout.host_socket,
                host_commands,
                lambda: HostSession(ops),
                slots=Slots("host.sock", settings.host_connections),
                idle_timeout=settings.idle_timeout,
                task_status=task_status,
            )
        )

    async def agent_sockets(tg: anyio.abc.TaskGroup) -> None:
        await tg.start(lambda task_status: serve_agent_sockets(ops, task_status=task_status))

    async def agent_tls(tg: anyio.abc.TaskGroup) -> None:
        await tg.start(lambda task_status: serve_agents_over_tls(ops, task_status=task_status))

    async def dashboard(tg: anyio.abc.TaskGroup) -> None:
        await tg.start(lambda task_status: serve_dashboard(ops, task_status=task_status))

    async def auto_rollback(tg: anyio.abc.TaskGroup) -> None:
        await tg.start(ops.rollbacks.serve)

    hive.add_component(auto_rollback)
    hive.add_component(host_socket)
    hive.add_component(agent_sockets)
    if settings.agent_tls:
        hive.add_component(agent_tls)
    if settings.dashboard_enabled:
        hive.add_component(dashboard)
    return hive


async def run_daemon(
    settings: Settings, *, task_status: TaskStatus[Hive] = anyio.TASK_STATUS_IGNORED
) -> None:
    hive = build_hive(settings)
    lost = False
    async with anyio.create_task_group() as tg:

        async def on_signals() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    log.info("%s: shutting down (agents keep running)", signal.Signals(signum).name)
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(on_signals)
        election = await _elect(settings)
        if election is not None:
            api, name, identity = election

            async def keep() -> None:
                nonlocal lost
                try:
                    await hold_lease(api, name, identity)
                except LeaseLost as exc:
                    log.error("%s; stopping so that only one hive-c0re reconciles", exc)
                    lost = True
                    tg.cancel_scope.cancel()

            async def release() -> None:
                try:
                    await anyio.sleep_forever()
                finally:
                    with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                        if not lost:
                            try:
                                await release_lease(api, name, identity)
                            except KubeError as exc:
                                log.warning("cannot release lease %s: %s", name, exc)
                        await api.aclose()

            tg.start_soon(keep)
            tg.start_soon(release)
        await tg.start(hive.serve)
        log.info(
            "hive-c0re ready: state %s, sockets %s, runtime %s",
            settings.state_dir,
            settings.runtime_dir,
            hive.runtime.name,
        )
        task_status.started(hive)
    if lost:
        raise SystemExit(3)


async def _elect(settings: Settings) -> tuple[KubeApi, str, str] | None:
    """With HIVE_LEADER_ELECTION=1 (deploy/kubernetes sets it): wait for the Lease
    `HIVE_LEADER_LEASE` (default hive-c0re) in our namespace, as `POD_NAME` (else the
    host name), before anything reconciles."""
    env = settings.environ
    if env.get("HIVE_LEADER_ELECTION", "").lower() not in ("1", "true", "yes", "on"):
        return None
    kube = settings.kube or KubeSettings.from_env(env)
    name = env.get("HIVE_LEADER_LEASE") or "hive-c0re"
    identity = env.get("POD_NAME") or socket.gethostname()
    with anyio.fail_after(kube.timeout):
        api = await connect_kube(
            kube.namespace, url=kube.url, kubeconfig=kube.kubeconfig, call_seconds=kube.timeout
        )
    log.info("leader election: waiting for lease %s as %s", name, identity)
    try:
        await acquire_lease(api, name, identity)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await api.aclose()
        raise
    return api, name, identity
