"""The agent protocol over TLS with ServiceAccount tokens: real TLS on loopback with a
throwaway CA (trustme), tokens checked by TokenReview against the fake API server (kmock)
through the real client library (kr8s)."""

from __future__ import annotations

import os
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
import trustme
from mcp import Client as McpClient
from mcp.client.stdio import StdioServerParameters

from controller.agent_tls import ServiceAccountIdentity, serve_agent_tls
from controller.hive import Hive
from controller.operations import Operations
from controller.protocol import Client, ProtocolError, connect_client
from reconcilers.kubeapi import connect_kube
from tests.controller.test_broker import with_agents
from tests.fakes.kubernetes import FakeCluster, open_fake_cluster
from tests.harness.conftest import MCP_COMMAND, REPO
from tests.helpers import hive_settings, running_hive

pytestmark = pytest.mark.anyio
NAMESPACE = "hive"


@dataclass
class Served:
    hive: Hive
    cluster: FakeCluster
    address: str
    root: Path
    monkeypatch: pytest.MonkeyPatch

    def token(self, agent: str, **kwargs: object) -> None:
        """Put a token of `agent`'s ServiceAccount where the client reads it."""
        token = self.cluster.issue_token(NAMESPACE, f"hive-{agent}", **kwargs)  # type: ignore[arg-type]
        path = self.root / f"token-{agent}"
        path.write_text(token)
        self.monkeypatch.setenv("HIVE_TOKEN_FILE", str(path))

    async def connect(self, agent: str, **kwargs: object) -> Client:
        self.token(agent, **kwargs)
        return await connect_client(self.address)


@pytest.fixture
async def served(short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Served]:
    ca = trustme.CA()
    cert = ca.issue_cert("hive-c0re.test")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    ca.cert_pem.write_to_path(str(short_dir / "ca.pem"))
    monkeypatch.setenv("HIVE_TLS_CA", str(short_dir / "ca.pem"))
    monkeypatch.setenv("HIVE_TLS_SERVER_NAME", "hive-c0re.test")
    async with open_fake_cluster() as cluster, running_hive(hive_settings(short_dir)) as hive:
        await with_agents(hive, short_dir, "alice", "bob")
        api = await connect_kube(NAMESPACE, url=str(cluster.url))
        identify = ServiceAccountIdentity(api, NAMESPACE, lambda: hive.applied.names)
        async with api, anyio.create_task_group() as tg:
            port = await tg.start(
                serve_agent_tls, Operations(hive), "127.0.0.1", 0, context, identify
            )
            yield Served(hive, cluster, f"tls://127.0.0.1:{port}", short_dir, monkeypatch)
            tg.cancel_scope.cancel()


async def test_an_agent_logs_in_with_its_token_and_acts_only_as_itself(served: Served) -> None:
    async with await served.connect("alice") as alice:
        me = await alice.call("whoami")
        assert isinstance(me, dict) and me["name"] == "alice"
        await alice.call("send", to="bob", body="over tls")
        with pytest.raises(ProtocolError) as refused:
            await alice.call("list_agents")
        assert refused.value.code == "forbidden"
        with pytest.raises(ProtocolError) as lease:
            await alice.call("recv", lease=True)
        assert lease.value.code == "forbidden"  # the harness's commands still need its key
    (message,) = await served.hive.broker.inbox("bob", 10, None)
    assert (message.sender, message.body) == ("alice", "over tls")


async def test_the_manager_logs_in_with_its_token_and_has_the_managers_tools(
    served: Served,
) -> None:
    async with await served.connect("hm1nd") as manager:
        agents = await manager.call("list_agents")
    assert isinstance(agents, list)
    assert {row["name"] for row in agents} == {"hm1nd", "alice", "bob"}


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"audiences": ("https://kubernetes.default.svc",)}, "audiences are invalid"),
        ({"audiences": ("vault",)}, "audiences are invalid"),
        ({"expires_in": -1.0}, "expired"),
    ],
    ids=["api-server-audience", "another-service", "expired"],
)
async def test_a_stolen_token_of_another_audience_or_an_expired_one_is_refused(
    served: Served, kwargs: dict[str, object], why: str
) -> None:
    with pytest.raises(ProtocolError) as refused:
        await served.connect("alice", **kwargs)
    assert refused.value.code == "forbidden"
    assert why in refused.value.message


async def test_a_token_of_a_serviceaccount_that_is_no_agent_here_is_refused(
    served: Served,
) -> None:
    for namespace, account, why in (
        (NAMESPACE, "default", "not an agent of this hive"),
        ("elsewhere", "hive-alice", "not an agent of this hive"),
        (NAMESPACE, "hive-zed", "no agent zed"),
    ):
        token = served.cluster.issue_token(namespace, account)
        (served.root / "token").write_text(token)
        served.monkeypatch.setenv("HIVE_TOKEN_FILE", str(served.root / "token"))
        with pytest.raises(ProtocolError, match=why):
            await connect_client(served.address)
    (served.root / "token").write_text("eyJ-made-up")
    with pytest.raises(ProtocolError, match="invalid bearer token"):
        await connect_client(served.address)


async def test_a_client_that_does_not_trust_the_hives_ca_cannot_connect(
    served: Served, short_dir: Path
) -> None:
    other = trustme.CA()
    other.cert_pem.write_to_path(str(short_dir / "other.pem"))
    served.monkeypatch.setenv("HIVE_TLS_CA", str(short_dir / "other.pem"))
    with pytest.raises(ProtocolError) as refused:
        await served.connect("alice")
    assert refused.value.code == "unreachable"
    assert "CERTIFICATE_VERIFY_FAILED" in refused.value.message


async def test_a_command_before_login_is_refused_and_the_connection_closed(
    served: Served,
) -> None:
    host, port = served.address[len("tls://") :].rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(served.root / "ca.pem"))
    stream = await anyio.connect_tcp(
        host,
        int(port),
        tls=True,
        ssl_context=context,
        tls_hostname="hive-c0re.test",
        tls_standard_compatible=False,
    )
    async with stream:
        await stream.send(b'{"id": 1, "cmd": "whoami", "args": {}}\n')
        answer = await stream.receive()
        assert b'"forbidden"' in answer and b"log in first" in answer
        with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
            await stream.receive()


async def test_each_new_connection_reads_the_rotated_token_afresh(served: Served) -> None:
    async with await served.connect("alice") as first:
        await first.call("whoami")
    # The kubelet rotated the token; the old one has since expired.
    served.token("alice")
    async with await connect_client(served.address) as second:
        me = await second.call("whoami")
    assert isinstance(me, dict) and me["name"] == "alice"


async def test_the_stdio_mcp_server_reaches_the_agent_socket_over_tls_as_its_agent(
    served: Served,
) -> None:
    """`hive-ag3nt mcp`, the stdio MCP server, with a tls:// socket and a token file."""
    served.token("alice")
    env = {k: os.environ[k] for k in ("HIVE_TLS_CA", "HIVE_TLS_SERVER_NAME", "HIVE_TOKEN_FILE")}
    params = StdioServerParameters(
        command=MCP_COMMAND[0],
        args=list(MCP_COMMAND[1:]),
        env={**env, "HIVE_AGENT": "alice", "HIVE_SOCKET": served.address, "PYTHONPATH": str(REPO)},
        cwd=str(REPO),
    )
    async with McpClient(params) as client:
        sent = await client.call_tool("send", {"to": "bob", "body": "from claude, over tls"})
        assert not sent.is_error
        refused = await client.call_tool("list_agents", {})
        assert refused.is_error
    (message,) = await served.hive.broker.inbox("bob", 10, None)
    assert (message.sender, message.body) == ("alice", "from claude, over tls")
