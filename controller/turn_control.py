"""Interrupting an agent's running turn from hive-c0re (`hive cancel NAME`).

The harness interrupts its turn when its page is asked to (`POST /api/cancel`, what the
page's own cancel button does). That page listens on a unix socket in the agent's dir
that only hive-c0re reaches (`Layout.page_socket`; bind-mounted into a NixOS
container), so the request needs no other credential: reaching the socket is the right.
An interrupted turn ends within ~20 ms (SIGINT to claude's process group) and its
message is acknowledged, as when the operator cancels it on the page.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp

from controller.errors import ConflictError

__all__ = ["ANSWER_SECONDS", "CONNECT_SECONDS", "cancel_turn"]

CONNECT_SECONDS = 1.0
# An interrupt is answered in milliseconds; a harness that has not started serving its
# page (or is wedged) must not hold the operator's call, nor a socket connection, long.
ANSWER_SECONDS = 3.0


async def cancel_turn(page_socket: Path, name: str) -> bool:
    """Ask `name`'s harness to interrupt its running turn; whether one was running."""
    timeout = aiohttp.ClientTimeout(total=ANSWER_SECONDS, sock_connect=CONNECT_SECONDS)
    try:
        async with (
            aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=str(page_socket)), timeout=timeout
            ) as http,
            http.post(f"http://{name}/api/cancel", json={}) as answer,
        ):
            data = await answer.json(content_type=None)
    except TimeoutError as exc:
        raise ConflictError(
            f"{name}'s harness did not answer within {ANSWER_SECONDS:.0f} s (is it running?)"
        ) from exc
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        raise ConflictError(f"{name}'s harness is not reachable (is it running?): {exc}") from exc
    if not isinstance(data, dict) or not data.get("ok"):
        raise ConflictError(f"{name}'s harness refused to cancel: {data!r}"[:300])
    return bool(data.get("cancelled"))
