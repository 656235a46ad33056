"""One socket per agent, following the applied tree.

The set of sockets is reconciled like everything else: on start and whenever applied
`main` moves, every applied agent gets its socket and a removed agent loses it. Only the
socket file is replaced, never its directory: a running container bind-mounts the dir.
Each agent's connections count against its own cap (`Settings.agent_connections`), kept
across re-serving its socket, so a flood from one agent never starves another.
"""

from __future__ import annotations

import contextlib
import logging

import anyio

from controller.agent_api import AgentSession, agent_commands
from controller.events import EventType
from controller.operations import Operations
from controller.sockets import Slots, serve_socket

__all__ = ["serve_agent_sockets"]

log = logging.getLogger(__name__)


async def serve_agent_sockets(
    ops: Operations, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    hive = ops.hive
    scopes: dict[str, anyio.CancelScope] = {}
    slots: dict[str, Slots] = {}

    async with anyio.create_task_group() as tg:

        async def serve_one(name: str, *, task_status: anyio.abc.TaskStatus[None]) -> None:
            with anyio.CancelScope() as scope:
                scopes[name] = scope
                try:
                    await serve_socket(
                        hive.layout.socket(name),
                        agent_commands,
                        lambda: AgentSession(ops, name),
                        slots=slots.setdefault(
                            name, Slots(f"agent {name}", hive.settings.agent_connections)
                        ),
                        idle_timeout=hive.settings.idle_timeout,
                        task_status=task_status,
                    )
                except OSError as exc:
                    # One agent's socket must not take the others (or the daemon) down.
                    log.error("cannot serve %s's socket: %s", name, exc)
                    hive.bus.publish(EventType.AGENT_SOCKET_FAILED, agent=name, error=str(exc))
                    with contextlib.suppress(RuntimeError):  # unless it had started
                        task_status.started()

        async def sync() -> None:
            wanted = hive.applied.names  # kept by the hive before it publishes applied.moved
            for name in sorted(wanted - set(scopes)):
                await tg.start(serve_one, name)
            for name in sorted(set(scopes) - wanted):
                scopes.pop(name).cancel()

        with hive.bus.subscribe(types=(EventType.APPLIED_MOVED,)) as sub:
            await sync()
            task_status.started()
            async for _ in sub:
                await sync()
