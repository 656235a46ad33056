"""Serving an operator app with uvicorn inside the caller's task group.

We bind the listening socket ourselves and hand it to uvicorn, for three reasons:
the bound port is known at once (port 0 works, tests read it back); a bind failure is
ours to handle (uvicorn would `sys.exit`), so a harness whose port is taken logs and
retries with backoff instead of dying; and `SO_REUSEADDR` lets a restarted harness take
its port back while old connections sit in TIME_WAIT.

uvicorn's own signal capture is switched off: hive-c0re and the harness own SIGTERM.
Cancellation is turned into uvicorn's graceful exit: the serving task is shielded, the
`closing` event ends our SSE streams, and shutdown is bounded by `grace`.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable, Iterator

import anyio
import uvicorn
from anyio.abc import TaskStatus
from starlette.types import ASGIApp

from controller.listener import bind_tcp
from reconcilers.backoff import Backoff

__all__ = ["bind_with_retry", "serve_app", "serve_on"]

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The daemon and the harness handle signals; uvicorn must not steal them.
        yield


async def bind_with_retry(
    host: str, port: int, *, what: str, base: float = 0.5, cap: float = 30.0
) -> socket.socket:
    """Bind, retrying with exponential backoff while the address is taken."""
    delays = Backoff(base, cap).delays()
    while True:
        try:
            return bind_tcp(host, port)
        except OSError as exc:
            delay = next(delays)
            log.warning(
                "%s: cannot bind %s:%d (%s); retrying in %.1fs", what, host, port, exc, delay
            )
        await anyio.sleep(delay)


async def serve_app(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    what: str,
    closing: anyio.Event | None = None,
    on_bound: Callable[[int], None] | None = None,
    retry_base: float = 0.5,
    retry_cap: float = 30.0,
    grace: int = 2,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` until cancelled.

    Reports started after the first bind attempt: when the port is taken it goes on
    retrying in the background, so a taken port never holds up (or crashes) the caller;
    `on_bound(port)` says when and where it finally listens."""

    def listening(sock: socket.socket) -> None:
        bound = int(sock.getsockname()[1])
        log.info("%s listening on http://%s:%d/", what, host, bound)
        if on_bound is not None:
            on_bound(bound)

    try:
        sock = bind_tcp(host, port)
    except OSError as exc:
        log.warning("%s: cannot bind %s:%d (%s); retrying in the background", what, host, port, exc)
        task_status.started()
        sock = await bind_with_retry(host, port, what=what, base=retry_base, cap=retry_cap)
        listening(sock)
    else:
        listening(sock)
        task_status.started()
    await serve_on(app, sock, closing=closing, grace=grace)


async def serve_on(
    app: ASGIApp, sock: socket.socket, *, closing: anyio.Event | None = None, grace: int = 2
) -> None:
    """Serve `app` on the listening `sock` (TCP or unix) until cancelled; closes it."""
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=max(1, grace),
    )
    server = _Server(config)
    stopped = anyio.Event()

    async def run() -> None:
        try:
            with anyio.CancelScope(shield=True):
                await server.serve(sockets=[sock])
        finally:
            sock.close()
            stopped.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        try:
            await anyio.sleep_forever()
        finally:
            server.should_exit = True
            if closing is not None:
                closing.set()
            with anyio.CancelScope(shield=True), anyio.move_on_after(grace + 1):
                await stopped.wait()
