"""The stdio MCP server claude starts gets what it needs to reach an agent socket over
TLS (the kubernetes runtime), and nothing more on a unix socket."""

from __future__ import annotations

from harness.claude import mcp_config

TLS = {
    "HIVE_TLS_CA": "/run/hive-ca/ca.crt",
    "HIVE_TOKEN_FILE": "/run/hive-token/token",
    "HIVE_TLS_SERVER_NAME": "hive-c0re.hive.svc",
    "ANTHROPIC_API_KEY": "sk-not-passed",
}


def test_an_mcp_server_of_a_tls_socket_gets_the_ca_and_token_file() -> None:
    config = mcp_config("alice", "tls://hive-c0re.hive.svc:7443", ["hive-ag3nt", "mcp"], TLS)
    env = config["mcpServers"]["hive"]["env"]
    assert env == {
        "HIVE_AGENT": "alice",
        "HIVE_SOCKET": "tls://hive-c0re.hive.svc:7443",
        "HIVE_TLS_CA": "/run/hive-ca/ca.crt",
        "HIVE_TOKEN_FILE": "/run/hive-token/token",
        "HIVE_TLS_SERVER_NAME": "hive-c0re.hive.svc",
    }


def test_an_mcp_server_of_a_unix_socket_gets_only_its_agent_and_socket() -> None:
    config = mcp_config("alice", "/run/hive/mcp.sock", ["hive-ag3nt", "mcp"], TLS)
    assert config["mcpServers"]["hive"]["env"] == {
        "HIVE_AGENT": "alice",
        "HIVE_SOCKET": "/run/hive/mcp.sock",
    }
