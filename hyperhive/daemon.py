"""hive-c0re's root: the hive, its sockets and its dashboard under one task group, until a
signal."""

from __future__ import annotations

import logging
import signal

import anyio
from anyio.abc import TaskStatus

from controller.admin import HostSession, host_commands
from controller.agent_sockets import serve_agent_sockets
from controller.hive import Hive
from controller.operations import Operations
from controller.settings import Settings
from controller.sockets import Slots, serve_socket
from reconcilers.clock import Clock
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

    async def dashboard(tg: anyio.abc.TaskGroup) -> None:
        await tg.start(lambda task_status: serve_dashboard(ops, task_status=task_status))

    async def auto_rollback(tg: anyio.abc.TaskGroup) -> None:
        await tg.start(ops.rollbacks.serve)

    hive.add_component(auto_rollback)
    hive.add_component(host_socket)
    hive.add_component(agent_sockets)
    if settings.dashboard_enabled:
        hive.add_component(dashboard)
    return hive


async def run_daemon(
    settings: Settings, *, task_status: TaskStatus[Hive] = anyio.TASK_STATUS_IGNORED
) -> None:
    hive = build_hive(settings)
    async with anyio.create_task_group() as tg:

        async def on_signals() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    log.info("%s: shutting down (agents keep running)", signal.Signals(signum).name)
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(on_signals)
        await tg.start(hive.serve)
        log.info(
            "hive-c0re ready: state %s, sockets %s, runtime %s",
            settings.state_dir,
            settings.runtime_dir,
            hive.runtime.name,
        )
        task_status.started(hive)
