"""The hive MCP tools served by the harness itself, over claude's control protocol.

claude is started with `{"hive": {"type": "sdk"}}` in `--mcp-config`: it then sends its
MCP traffic (JSON-RPC) for that server as `mcp_message` control requests on stdout and
reads the replies on stdin, so no server process starts per session and no port is
opened. The tools are the ones `harness.mcp_server` defines (the same `MCPServer`, whose
`list_tools`/`call_tool` do the schemas and argument validation); only the JSON-RPC
envelope is handled here: `initialize`, `ping`, `tools/list`, `tools/call`, and
notifications (no reply).

**The socket stays the identity**: the tools talk to the agent's socket on a connection
of their own that never shows the harness's key, so they act only as this agent and a
harness-only command (`turn_state`, the lease) is `forbidden` to them as it is to any
process in the sandbox.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.mcp_server import SocketLink

__all__ = ["SERVER_NAME", "HiveTools"]

SERVER_NAME = "hive"
_PROTOCOL = "2025-06-18"
JSONDict = dict[str, Any]


class HiveTools:
    """One agent's hive tools, answering JSON-RPC messages; close it when done."""

    def __init__(self, agent: str, socket_path: str) -> None:
        # Imported with the first session, not with the harness: mcp and its pydantic
        # models are ~35 MB of RSS that a harness that never went warm does not need.
        from harness.mcp_server import create_server

        self.agent = agent
        self._server, self._link = create_server(agent, socket_path)

    @property
    def link(self) -> SocketLink:
        return self._link

    async def aclose(self) -> None:
        await self._link.aclose()

    async def handle(self, message: JSONDict) -> JSONDict | None:
        """The JSON-RPC reply to `message`, or None for a notification."""
        method = message.get("method")
        if "id" not in message:
            return None
        rid = message["id"]
        params = message.get("params")
        params = params if isinstance(params, dict) else {}
        try:
            result = await self._dispatch(method, params)
        except _RpcError as exc:
            return {"jsonrpc": "2.0", "id": rid, "error": {"code": exc.code, "message": str(exc)}}
        return {"jsonrpc": "2.0", "id": rid, "result": result}

    async def _dispatch(self, method: object, params: JSONDict) -> JSONDict:
        if method == "initialize":
            version = params.get("protocolVersion")
            return {
                "protocolVersion": version if isinstance(version, str) else _PROTOCOL,
                "capabilities": {"tools": {"listChanged": False}},
                "serverInfo": {"name": SERVER_NAME, "version": "1"},
                "instructions": self._server.instructions or "",
            }
        if method == "ping":
            return {}
        if method == "tools/list":
            tools = await self._server.list_tools()
            return {"tools": [t.model_dump(by_alias=True, exclude_none=True) for t in tools]}
        if method == "tools/call":
            return await self._call(params)
        raise _RpcError(-32601, f"method not found: {method}")

    async def _call(self, params: JSONDict) -> JSONDict:
        from mcp.server.mcpserver.exceptions import ToolError

        name, arguments = params.get("name"), params.get("arguments") or {}
        if not isinstance(name, str) or not isinstance(arguments, dict):
            raise _RpcError(-32602, "tools/call needs a name and an arguments object")
        try:
            result = await self._server.call_tool(name, arguments)
        except ToolError as exc:
            return {"content": [{"type": "text", "text": str(exc)}], "isError": True}
        return result.model_dump(by_alias=True, exclude_none=True)


class _RpcError(Exception):
    """Raised for a JSON-RPC error reply (unknown method, bad params)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
