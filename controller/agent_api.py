"""The commands served on each agent's socket. **The socket is the identity**: a session
is bound to the agent whose socket it was reached on, so `send` always sends as that
agent and manager commands are refused (and logged) on any other agent's socket.

Within an agent, the harness has more rights than what claude runs (the MCP server, the
model's tools): the turn loop's lease (`recv` with `lease`, `ack`, `release`), its turn
state and the operator's prompt from the agent page (`operator_send`). A session gets
them with `auth` and the key hive-c0re minted for the running harness (in
`<state>/agents/<name>/key/`, handed only to the harness); without it they are
`forbidden`.

Everything that changes what runs still goes through git: `request_spawn` commits
`agents/<name>/agent.toml` on `spawn/<name>` of the proposed repo and
`request_apply_commit` points a branch at the manager's commit; both become approvals the
operator decides on.
"""

from __future__ import annotations

import hmac
import logging
import tomllib
from pathlib import Path
from typing import Any

import anyio
from pydantic import Field

from controller.admin import agent_rows, check_recipient, lifecycle
from controller.broker import MAX_KEY, MAX_WAIT, OPERATOR
from controller.commands import Args, CommandTable, NoArgs
from controller.errors import ConflictError, ForbiddenError, InvalidError, NotFoundError
from controller.hive import PROPOSALS, Hive
from controller.paging import MAX_LIMIT
from gitstore.errors import GitStoreError
from gitstore.spec import MANAGER, AgentSpec, InvalidNameError, check_name, role_for

__all__ = ["AgentSession", "agent_commands"]

log = logging.getLogger(__name__)
agent_commands: CommandTable[AgentSession] = CommandTable()


class AgentSession:
    """One connection on an agent's socket."""

    def __init__(self, hive: Hive, agent: str) -> None:
        self.hive = hive
        self.agent = agent
        self.owner = hive.broker.new_owner()
        self.harness = False
        self.leases: set[int] = set()

    @property
    def busy(self) -> bool:
        """A connection holding a leased message (a turn in progress) never times out:
        closing it would hand the message out again and the turn would run twice."""
        return bool(self.leases)

    async def close(self) -> None:
        released = await self.hive.broker.release_owner(self.owner)
        if released:
            log.info("%s disconnected; %d leased message(s) returned", self.agent, released)

    def require_manager(self, cmd: str) -> None:
        if self.agent != MANAGER:
            log.warning("refused: %s called manager command %s", self.agent, cmd)
            raise ForbiddenError(f"{cmd} is a manager command; {self.agent} may not call it")

    def require_harness(self, cmd: str) -> None:
        if not self.harness:
            log.warning("refused: %s without the harness key on %s's socket", cmd, self.agent)
            raise ForbiddenError(f"{cmd} is for {self.agent}'s harness only (auth first)")


class SendArgs(Args):
    to: str
    body: str
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=MAX_KEY)


class InboxArgs(Args):
    limit: int = Field(default=100, ge=1, le=MAX_LIMIT)
    after_id: int | None = Field(default=None, ge=0)


class RecvArgs(Args):
    wait_seconds: float = Field(default=0.0, ge=0, le=MAX_WAIT)
    lease: bool = False


class IdArgs(Args):
    id: int


class TurnArgs(Args):
    state: str
    reason: str = ""
    model: str | None = None
    last_turn: dict[str, Any] | None = None


class OperatorSendArgs(Args):
    body: str


class AuthArgs(Args):
    key: str = Field(max_length=512)


def _read_key(path: Path) -> bytes | None:
    try:
        return path.read_bytes().strip()
    except OSError:
        return None


@agent_commands.command("auth", AuthArgs)
async def auth(s: AgentSession, a: AuthArgs) -> dict[str, Any]:
    """The harness shows the key it was started with; this session becomes the harness's."""
    expected = await anyio.to_thread.run_sync(_read_key, s.hive.layout.harness_key(s.agent))
    if not expected or not hmac.compare_digest(a.key.encode(), expected):
        log.warning("refused: a wrong harness key on %s's socket", s.agent)
        raise ForbiddenError(f"that is not the key of {s.agent}'s running harness")
    s.harness = True
    return {}


@agent_commands.command("send", SendArgs)
async def send(s: AgentSession, a: SendArgs) -> dict[str, Any]:
    """Send a message as this agent."""
    if a.to == s.agent:
        raise InvalidError("an agent cannot send to itself")
    message = await s.hive.broker.send(
        s.agent, check_recipient(s.hive, a.to), a.body, idempotency_key=a.idempotency_key
    )
    return {"id": message["id"]}


@agent_commands.command("recv", RecvArgs, watch_peer=True)
async def recv(s: AgentSession, a: RecvArgs) -> dict[str, Any] | None:
    """The next message for this agent, waiting up to wait_seconds."""
    if a.lease:
        s.require_harness("recv with lease")
    message = await s.hive.broker.recv(s.agent, a.wait_seconds, s.owner if a.lease else None)
    if message is not None and a.lease:
        s.leases.add(message["id"])
    return message


@agent_commands.command("ack", IdArgs)
async def ack(s: AgentSession, a: IdArgs) -> dict[str, Any]:
    """Acknowledge a leased message: its turn is done."""
    s.require_harness("ack")
    try:
        await s.hive.broker.ack(s.agent, a.id, s.owner)
    except NotFoundError:
        s.leases.discard(a.id)  # not leased to this connection (any more)
        raise
    s.leases.discard(a.id)
    return {}


@agent_commands.command("release", IdArgs)
async def release(s: AgentSession, a: IdArgs) -> dict[str, Any]:
    """Give a leased message back: it will be delivered again."""
    s.require_harness("release")
    try:
        await s.hive.broker.release(s.agent, a.id, s.owner)
    except NotFoundError:
        s.leases.discard(a.id)  # not leased to this connection (any more)
        raise
    s.leases.discard(a.id)
    return {}


@agent_commands.command("inbox", InboxArgs)
async def inbox(s: AgentSession, a: InboxArgs) -> list[dict[str, Any]]:
    """Messages to this agent not yet acknowledged, oldest first."""
    return await s.hive.broker.inbox(s.agent, a.limit, a.after_id)


@agent_commands.command("operator_send", OperatorSendArgs)
async def operator_send(s: AgentSession, a: OperatorSendArgs) -> dict[str, Any]:
    """From the agent's own page: the operator writes into this agent's inbox (only)."""
    s.require_harness("operator_send")
    message = await s.hive.broker.send(OPERATOR, s.agent, a.body)
    return {"id": message["id"]}


@agent_commands.command("turn_state", TurnArgs)
async def turn_state(s: AgentSession, a: TurnArgs) -> dict[str, Any]:
    """Report idle / thinking / offline (the dashboard shows it)."""
    s.require_harness("turn_state")
    if a.state not in ("idle", "thinking", "offline"):
        raise InvalidError("state must be idle, thinking or offline")
    s.hive.set_turn(s.agent, a.model_dump())
    return {}


@agent_commands.command("whoami", NoArgs)
async def whoami(s: AgentSession, _: NoArgs) -> dict[str, Any]:
    """This agent's name, role, model, prompt and allowed tools."""
    desired = await s.hive.applied_agent(s.agent)
    spec = desired.spec if desired is not None else None
    prompt = desired.files.get("prompt.md", b"").decode("utf-8", "replace") if desired else ""
    return {
        "name": s.agent,
        "role": role_for(s.agent),
        "model": (spec.model if spec else None) or s.hive.settings.environ.get("HIVE_MODEL"),
        "prompt": prompt,
        "allowed_tools": list(spec.allowed_tools) if spec else [],
        "description": spec.description if spec else "",
    }


# --- the manager's tools -----------------------------------------------------------


class SpawnArgs(Args):
    name: str
    description: str = ""
    model: str | None = None


class ApplyArgs(Args):
    sha: str = Field(pattern=r"^[0-9a-f]{7,40}$")
    note: str = ""


class AskArgs(Args):
    question: str = Field(max_length=8000)
    options: list[str] | None = None
    multi: bool = False
    ttl_seconds: int | None = None


class NameArgs(Args):
    name: str


async def _approval_for(hive: Hive, ref: str, sha: str) -> dict[str, Any]:
    """Wait for the proposals reconciler to record the approval of `ref` at `sha`."""
    with hive.bus.subscribe(types=("approval.created",)) as sub:
        hive.proposal_queue.add(PROPOSALS)
        with anyio.move_on_after(30):
            while True:
                found = [
                    a
                    for a in await hive.approvals.query("pending")
                    if a["ref"] == ref and a["sha"] == sha
                ]
                if found:
                    return found[0]
                await sub.next()
    raise ConflictError(f"no pending approval appeared for {ref} at {sha[:12]} within 30 s")


@agent_commands.command("request_spawn", SpawnArgs)
async def request_spawn(s: AgentSession, a: SpawnArgs) -> dict[str, Any]:
    """Propose a new agent: a commit on spawn/<name>, approved by the operator."""
    s.require_manager("request_spawn")
    try:
        name = check_name(a.name)
    except InvalidNameError as exc:
        raise InvalidError(str(exc)) from exc
    if name in s.hive.applied_names:
        raise ConflictError(f"agent {name} exists already")
    spec = AgentSpec(description=a.description, model=a.model)
    toml = f"description = {_toml_str(spec.description)}\n"
    if spec.model:
        toml += f"model = {_toml_str(spec.model)}\n"
    tomllib.loads(toml)
    sha = await s.hive.git.commit_files(
        f"spawn/{name}",
        {f"agents/{name}/agent.toml": toml.encode()},
        f"spawn {name}\n\n{a.description}".strip(),
        (s.agent, f"{s.agent}@hive"),
    )
    return await _approval_for(s.hive, f"refs/heads/spawn/{name}", sha)


def _toml_str(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


@agent_commands.command("request_apply_commit", ApplyArgs)
async def request_apply_commit(s: AgentSession, a: ApplyArgs) -> dict[str, Any]:
    """Ask the operator to apply a commit the manager pushed to the proposed repo."""
    s.require_manager("request_apply_commit")
    hive = s.hive
    try:
        sha = await hive.git.resolve_proposed(a.sha)
    except GitStoreError as exc:
        raise NotFoundError(f"{a.sha} is not in the proposed repo; push it first") from exc
    if await hive.git.is_applied(sha):
        raise ConflictError(f"{sha[:12]} is already applied")
    heads = {v: k for k, v in (await hive.git.proposed_heads()).items()}
    ref = heads.get(sha)
    if ref is None:
        ref = f"refs/heads/request/{sha[:12]}"
        await hive.git.point_branch(ref.removeprefix("refs/heads/"), sha)
    approval = await _approval_for(hive, ref, sha)
    if a.note:
        approval = await hive.approvals.set_note(approval["id"], a.note)
    return approval


@agent_commands.command("ask_operator", AskArgs)
async def ask_operator(s: AgentSession, a: AskArgs) -> dict[str, Any]:
    """Queue a question on the dashboard; the answer arrives as operator_answered."""
    s.require_manager("ask_operator")
    asked = await s.hive.questions.ask(s.agent, a.question, a.options, a.multi, a.ttl_seconds)
    return {"id": asked["id"]}


@agent_commands.command("list_agents", NoArgs)
async def list_agents(s: AgentSession, _: NoArgs) -> list[dict[str, Any]]:
    """Every agent with its state."""
    s.require_manager("list_agents")
    return await agent_rows(s.hive)


for _verb in ("kill", "start", "restart"):

    async def _handler(s: AgentSession, a: NameArgs, _verb: str = _verb) -> dict[str, Any]:
        s.require_manager(_verb)
        if a.name == MANAGER:
            raise InvalidError(f"the manager cannot {_verb} itself")
        return await lifecycle(s.hive, a.name, _verb)

    _handler.__doc__ = f"{_verb.capitalize()} an agent (manager only)."
    agent_commands.command(_verb, NameArgs)(_handler)
