"""The agent protocol over TLS on TCP, for agents that share no filesystem with hive-c0re.

In a cluster there is no unix socket to hand an agent, so the socket can no longer be its
identity; a token is. A connection opens with TLS (hive-c0re's certificate, the agents
trust its CA), and its first line must be `login` with a projected ServiceAccount token
(audience `hyperhive`, short-lived, rotated by the kubelet; the client reads the file
afresh for every connection). hive-c0re asks the API server who the token is
(TokenReview, for audience `hyperhive` only, so a token minted for another audience, for
the API server itself or for a third service, is refused, and so is an expired one) and
the ServiceAccount name decides the agent: `system:serviceaccount:<our namespace>:hive-<name>`
is agent `<name>`, when `<name>` is in applied `main`. From then on the connection is
exactly a connection on that agent's unix socket: the same `AgentSession`, the same
command table, `auth` with the harness key for the harness's own commands, manager
commands only for `hm1nd`. A refused login is one error line and the connection closes.

Limits: a connection has `LOGIN_TIMEOUT` seconds for its handshake and login; connections
waiting to log in count against one cap for all (`pending`), logged-in ones against
their agent's cap, as on the unix sockets. Over a cap the connection is closed before
TLS (the client sees a failed handshake).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio
from anyio.abc import ByteStream, SocketListener, SocketStream, TaskStatus
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.tls import TLSStream

from controller.agent_api import AgentSession, agent_commands
from controller.errors import ForbiddenError, HiveError
from controller.listener import Slots, bind_tcp, serve_listener
from controller.operations import Operations
from controller.protocol import MAX_LINE, ProtocolError, decode_request, encode_error, encode_result
from controller.settings import parse_address
from controller.sockets import _Connection
from gitstore.spec import InvalidNameError, check_name
from reconcilers.kubeapi import KubeApi, KubeError, Review, connect_kube

__all__ = [
    "AUDIENCE",
    "LOGIN_TIMEOUT",
    "ServiceAccountIdentity",
    "serve_agent_tls",
    "serve_agents_over_tls",
]

log = logging.getLogger(__name__)

AUDIENCE = "hyperhive"
LOGIN_TIMEOUT = 10.0
MAX_TOKEN = 16 * 1024
SA_PREFIX = "hive-"

Identify = Callable[[str], Awaitable[str]]


class TokenReviewer(Protocol):
    async def review_token(self, token: str, audiences: tuple[str, ...]) -> Review: ...


class ServiceAccountIdentity:
    """Which agent a ServiceAccount token is (raises `ForbiddenError` when none)."""

    def __init__(
        self, reviewer: TokenReviewer, namespace: str, agents: Callable[[], frozenset[str]]
    ) -> None:
        self.reviewer = reviewer
        self.prefix = f"system:serviceaccount:{namespace}:{SA_PREFIX}"
        self.agents = agents

    async def __call__(self, token: str) -> str:
        if not token or len(token) > MAX_TOKEN:
            raise ForbiddenError("a ServiceAccount token is needed to log in")
        try:
            review = await self.reviewer.review_token(token, (AUDIENCE,))
        except KubeError as exc:
            log.error("TokenReview failed: %s", exc)
            raise ProtocolError("unreachable", f"cannot check the token now: {exc}") from exc
        if not review.authenticated:
            raise ForbiddenError(f"token refused: {review.error or 'not authenticated'}")
        if AUDIENCE not in review.audiences:
            raise ForbiddenError(f"token refused: not meant for audience {AUDIENCE}")
        if not review.username.startswith(self.prefix):
            raise ForbiddenError(f"{review.username} is not an agent of this hive")
        name = review.username[len(self.prefix) :]
        try:
            check_name(name)
        except InvalidNameError as exc:
            raise ForbiddenError(f"{review.username} is not an agent of this hive") from exc
        if name not in self.agents():
            raise ForbiddenError(f"no agent {name} in applied main")
        return name


async def _login(stream: ByteStream, reader: BufferedByteReceiveStream, identify: Identify) -> str:
    line = await reader.receive_until(b"\n", MAX_LINE)
    request = decode_request(line)
    if request.cmd != "login":
        raise ForbiddenError('log in first: {"cmd": "login", "args": {"token": ...}}')
    token = request.args.get("token")
    agent = await identify(token if isinstance(token, str) else "")
    await stream.send(encode_result(request.id, {"agent": agent}))
    return agent


async def serve_agent_tls(
    ops: Operations,
    host: str,
    port: int,
    context: ssl.SSLContext,
    identify: Identify,
    *,
    pending: int = 256,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the agent protocol on host:port over TLS until cancelled; reports the port."""
    settings = ops.hive.settings
    slots: dict[str, Slots] = {}
    sock = bind_tcp(host, port)
    async with await SocketListener.from_socket(sock) as listener:

        async def handle(accepted: SocketStream) -> None:
            async with accepted:  # closes the TCP socket whatever happens to TLS
                await serve_one(accepted)

        async def serve_one(accepted: SocketStream) -> None:
            try:
                with anyio.fail_after(LOGIN_TIMEOUT):
                    stream = await TLSStream.wrap(
                        accepted, server_side=True, ssl_context=context, standard_compatible=False
                    )
                    reader = BufferedByteReceiveStream(stream)
                    try:
                        agent = await _login(stream, reader, identify)
                    except (HiveError, ProtocolError) as exc:
                        log.warning("agent TLS login refused: %s", exc.message)
                        await stream.send(encode_error(None, exc.code, exc.message))
                        return
            except (
                TimeoutError,
                ssl.SSLError,
                anyio.BrokenResourceError,
                anyio.EndOfStream,
                anyio.IncompleteRead,
                anyio.DelimiterNotFound,
                OSError,
            ) as exc:
                log.info("agent TLS connection dropped before login: %r", exc)
                return
            mine = slots.setdefault(
                agent, Slots(f"agent {agent} (TLS)", settings.agent_connections)
            )
            if not mine.take():
                message = f"{mine.who} holds {mine.held} connections, the limit"
                await stream.send(encode_error(None, "too_many_connections", message))
                return
            session = AgentSession(ops, agent)
            try:
                connection = _Connection(stream, agent_commands, session, settings.idle_timeout)
                connection.reader = reader
                await connection.run()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, ssl.SSLError, OSError):
                pass  # the agent went away mid-answer
            finally:
                mine.give_back()
                with anyio.CancelScope(shield=True):
                    await session.close()

        bound = int(listener.extra(anyio.abc.SocketAttribute.local_port))
        log.info("agent protocol over TLS on %s:%d", host, bound)
        task_status.started(bound)
        await serve_listener(listener, handle, Slots("agent TLS logins", pending))


async def serve_agents_over_tls(
    ops: Operations, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED
) -> None:
    """The daemon's component: `settings.agent_tls` with its certificate, tokens checked
    by the cluster's TokenReview (through the kubernetes runtime's API connection when
    that is the runtime). Also lets the manager's token in on git over HTTP."""
    hive = ops.hive
    settings = hive.settings
    kube = settings.kube
    assert kube is not None  # Settings.from_env reads it when agent_tls is set
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    await anyio.to_thread.run_sync(context.load_cert_chain, settings.tls_cert, settings.tls_key)
    api = getattr(hive.runtime, "api", None)
    own: KubeApi | None = None
    if not isinstance(api, KubeApi):
        with anyio.fail_after(kube.timeout):
            api = own = await connect_kube(
                kube.namespace, url=kube.url, kubeconfig=kube.kubeconfig, call_seconds=kube.timeout
            )
    identify = ServiceAccountIdentity(api, kube.namespace, lambda: hive.applied.names)
    hive.identify = identify
    host, port = parse_address(settings.agent_tls)

    async def serve(*, task_status: TaskStatus[int]) -> None:
        await serve_agent_tls(ops, host, port, context, identify, task_status=task_status)

    try:
        async with anyio.create_task_group() as tg:
            hive.agent_tls_port = await tg.start(serve)
            task_status.started(hive.agent_tls_port)
    finally:
        hive.identify = None
        hive.agent_tls_port = None
        if own is not None:
            await own.aclose()
