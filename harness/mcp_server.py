"""`hive-ag3nt mcp`: the stdio MCP server that claude launches inside a turn.

Each tool forwards to the agent's unix socket (`HIVE_SOCKET`) over the JSON-lines protocol
of `controller.protocol`. The socket is the identity, so this server holds no secrets and
checks no permissions: it only decides which tools to *offer* (the manager's extra tools
when `HIVE_AGENT` is the manager); the controller refuses them on any other socket anyway.

One connection is opened on first use and reused for the life of the server (a tool call
then costs one socket round trip). Calls are serialised on it, so a long `recv` delays a
concurrent `send`; claude issues tool calls of one reply in order, so that is acceptable.
A lost connection is reopened on the next call. Protocol errors become MCP tool errors
carrying the controller's message, which the model reads.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from controller.protocol import Client, ProtocolError, connect_client
from gitstore.names import MANAGER
from harness.claude import MANAGER_TOOLS, TOOLS

__all__ = ["MANAGER_TOOLS", "TOOLS", "SocketLink", "create_server", "main"]


JSON = Any

AgentName = Annotated[str, Field(description="Agent name, e.g. 'bob' or 'hm1nd'.")]


class SocketLink:
    """The one reused connection to the agent socket; reconnects after a failure."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._client: Client | None = None
        self._lock = anyio.Lock()

    async def call(self, cmd: str, **args: JSON) -> str:
        """Run `cmd` and return its result as JSON text; errors become `ToolError`."""
        try:
            client = await self._connect()
            result = await client.call(cmd, **args)
        except ProtocolError as exc:
            if exc.code in ("closed", "unreachable"):
                await self._drop()
            raise ToolError(f"{cmd} failed ({exc.code}): {exc.message}") from exc
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            await self._drop()
            raise ToolError(f"{cmd} failed: hive socket connection lost ({exc!r})") from exc
        return json.dumps(result)

    async def _connect(self) -> Client:
        async with self._lock:
            if self._client is None:
                self._client = await connect_client(self.path)
            return self._client

    async def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def aclose(self) -> None:
        await self._drop()


def create_server(agent: str, socket_path: str) -> tuple[MCPServer, SocketLink]:
    """Build the server for `agent`; the caller closes the link when the server ends."""
    link = SocketLink(socket_path)
    server = MCPServer(
        "hive",
        instructions=(
            f"You are agent '{agent}' in a hive of Claude Code agents. Use `send` to talk "
            "to other agents and `recv` to wait for messages addressed to you."
        ),
    )

    async def send(
        to: Annotated[str, Field(description="Recipient agent name, or 'operator'.")],
        body: Annotated[str, Field(description="The message text.")],
        idempotency_key: Annotated[
            str | None,
            Field(
                min_length=1,
                max_length=128,
                description="Optional. The same key again (e.g. retrying after an error "
                "that left it unclear whether the message went) stores nothing new and "
                "returns the first message's id.",
            ),
        ] = None,
    ) -> str:
        """Send a message to another agent (or the operator). Returns {"id": message id}."""
        if idempotency_key is None:
            return await link.call("send", to=to, body=body)
        return await link.call("send", to=to, body=body, idempotency_key=idempotency_key)

    async def recv(
        wait_seconds: Annotated[
            float, Field(ge=0, le=180, description="How long to wait for a message (0-180 s).")
        ] = 30,
    ) -> str:
        """Wait for the next message in your inbox and acknowledge it.

        Returns {id, sender, recipient, body, created_at, kind}, or null when nothing
        arrived within wait_seconds. kind is "message" or "operator_answered".
        """
        return await link.call("recv", wait_seconds=wait_seconds, lease=False)

    server.add_tool(send, structured_output=False)
    server.add_tool(recv, structured_output=False)
    if agent == MANAGER:
        _add_manager_tools(server, link)
    return server, link


def _add_manager_tools(server: MCPServer, link: SocketLink) -> None:
    async def request_spawn(
        name: AgentName,
        description: Annotated[str, Field(description="What the new agent is for.")] = "",
        model: Annotated[str | None, Field(description="Model; hive default if omitted.")] = None,
    ) -> str:
        """Propose a new agent. Commits agents/<name>/agent.toml on branch spawn/<name>;
        the agent starts only after the operator approves. Returns the approval."""
        args: dict[str, JSON] = {"name": name, "description": description}
        if model:
            args["model"] = model
        return await link.call("request_spawn", **args)

    async def kill(name: AgentName) -> str:
        """Stop an agent and hold it stopped (the reconciler leaves it down) until `start`."""
        return await link.call("kill", name=name)

    async def start(name: AgentName) -> str:
        """Start an agent and clear a hold left by `kill`. Returns the agent row."""
        return await link.call("start", name=name)

    async def restart(name: AgentName) -> str:
        """Restart an agent's container. Returns the agent row."""
        return await link.call("restart", name=name)

    async def request_apply_commit(
        sha: Annotated[str, Field(description="Commit sha pushed to the proposed repo.")],
        note: Annotated[str, Field(description="Why; shown to the operator.")] = "",
    ) -> str:
        """Ask the operator to approve (merge and apply) a commit you pushed. Returns the
        approval."""
        return await link.call("request_apply_commit", sha=sha, note=note)

    async def ask_operator(
        question: Annotated[str, Field(description="The question for the operator.")],
        options: Annotated[
            list[str] | None, Field(description="Choices; omit for a free-text answer.")
        ] = None,
        multi: Annotated[bool, Field(description="Allow choosing several options.")] = False,
        ttl_seconds: Annotated[
            int | None, Field(ge=1, description="Expire the question after this long.")
        ] = None,
    ) -> str:
        """Queue a question on the operator's dashboard. Returns {"id"} at once; the answer
        arrives later in your inbox as a message of kind "operator_answered"."""
        args: dict[str, JSON] = {"question": question, "multi": multi}
        if options is not None:
            args["options"] = options
        if ttl_seconds is not None:
            args["ttl_seconds"] = ttl_seconds
        return await link.call("ask_operator", **args)

    async def list_agents() -> str:
        """List every agent with its state, hold and readiness."""
        return await link.call("list_agents")

    for fn in (
        request_spawn,
        kill,
        start,
        restart,
        request_apply_commit,
        ask_operator,
        list_agents,
    ):
        server.add_tool(fn, structured_output=False)


async def serve_stdio(agent: str, socket_path: str) -> None:
    server, link = create_server(agent, socket_path)
    try:
        await server.run_stdio_async()
    finally:
        with anyio.CancelScope(shield=True):
            await link.aclose()


def main() -> None:
    agent = os.environ.get("HIVE_AGENT", "")
    socket_path = os.environ.get("HIVE_SOCKET", "")
    if not agent or not socket_path:
        print("hive-ag3nt mcp: HIVE_AGENT and HIVE_SOCKET must be set", file=sys.stderr)
        raise SystemExit(2)
    anyio.run(serve_stdio, agent, socket_path)


if __name__ == "__main__":
    main()
