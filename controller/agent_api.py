"""The commands served on each agent's socket. **The socket is the identity**: a session
is bound to the agent whose socket it was reached on, so `send` always sends as that
agent and manager commands are refused (and logged) on any other agent's socket. That is
all this adapter decides; what a command does is a call on `Operations`.

Within an agent, the harness has more rights than what claude runs (the MCP server, the
model's tools): the turn loop's lease (`recv` with `lease`, `ack`, `release`, `reclaim`) and its
turn state. A session gets them with `auth` and the key hive-c0re minted for the running
harness (in `<state>/agents/<name>/key/`, handed only to the harness); without it they
are `forbidden`. No command here sends as anyone but this agent: sender `operator` comes
only from the operator's surfaces (the host socket, the dashboard, which also carries
the agent pages' prompts).
"""

from __future__ import annotations

import logging

from pydantic import Field

from controller.broker import MAX_WAIT
from controller.commands import Args, CommandTable, NoArgs
from controller.errors import ForbiddenError, InvalidError, NotFoundError
from controller.operations import Operations, Verb
from controller.paging import MAX_LIMIT
from controller.protocol import MAX_KEY
from controller.values import AgentRow, Approval, Asked, Identity, Message, Permission, Sent
from gitstore.spec import MANAGER

__all__ = ["AgentSession", "agent_commands"]

log = logging.getLogger(__name__)
agent_commands: CommandTable[AgentSession] = CommandTable()


class AgentSession:
    """One connection on an agent's socket."""

    def __init__(self, ops: Operations, agent: str) -> None:
        self.ops = ops
        self.agent = agent
        self.owner = ops.new_owner()
        self.harness = False
        self.reports_turns = False
        self.leases: set[int] = set()

    @property
    def busy(self) -> bool:
        """A connection holding a leased message (a turn in progress) never times out:
        the harness is busy with its turn, not idle."""
        return bool(self.leases)

    async def close(self) -> None:
        if self.reports_turns:
            self.ops.reporter_gone(self.agent, self.owner, "the harness disconnected")
        orphaned = await self.ops.orphan_leases(self.owner)
        if orphaned:
            log.info(
                "%s disconnected holding %d leased message(s); they wait for its harness to "
                "reclaim them",
                self.agent,
                orphaned,
            )

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


MAX_RECLAIM = 64


class ReclaimArgs(Args):
    ids: list[int] = Field(max_length=MAX_RECLAIM)


class TurnArgs(Args):
    state: str
    reason: str = ""
    model: str | None = None
    last_turn: dict[str, object] | None = None


class AuthArgs(Args):
    key: str = Field(max_length=512)


@agent_commands.command("auth", AuthArgs)
async def auth(s: AgentSession, a: AuthArgs) -> dict[str, object]:
    """The harness shows the key it was started with; this session becomes the harness's."""
    if not await s.ops.harness_key_matches(s.agent, a.key):
        log.warning("refused: a wrong harness key on %s's socket", s.agent)
        raise ForbiddenError(f"that is not the key of {s.agent}'s running harness")
    s.harness = True
    return {}


@agent_commands.command("send", SendArgs)
async def send(s: AgentSession, a: SendArgs) -> Sent:
    """Send a message as this agent."""
    return await s.ops.send(s.agent, a.to, a.body, a.idempotency_key)


@agent_commands.command("recv", RecvArgs, watch_peer=True)
async def recv(s: AgentSession, a: RecvArgs) -> Message | None:
    """The next message for this agent, waiting up to wait_seconds."""
    if a.lease:
        s.require_harness("recv with lease")
    message = await s.ops.recv(s.agent, a.wait_seconds, s.owner if a.lease else None)
    if message is not None and a.lease:
        s.leases.add(message.id)
    return message


@agent_commands.command("ack", IdArgs)
async def ack(s: AgentSession, a: IdArgs) -> dict[str, object]:
    """Acknowledge a leased message: its turn is done."""
    s.require_harness("ack")
    try:
        await s.ops.ack(s.agent, a.id, s.owner)
    except NotFoundError:
        s.leases.discard(a.id)  # not leased to this connection (any more)
        raise
    s.leases.discard(a.id)
    return {}


@agent_commands.command("release", IdArgs)
async def release(s: AgentSession, a: IdArgs) -> dict[str, object]:
    """Give a leased message back: it will be delivered again."""
    s.require_harness("release")
    try:
        await s.ops.release(s.agent, a.id, s.owner)
    except NotFoundError:
        s.leases.discard(a.id)  # not leased to this connection (any more)
        raise
    s.leases.discard(a.id)
    return {}


@agent_commands.command("reclaim", ReclaimArgs)
async def reclaim(s: AgentSession, a: ReclaimArgs) -> dict[str, object]:
    """After a reconnect: lease the harness's unsettled wake messages to this session
    again (it then acks or releases them); answers the ids it got back."""
    s.require_harness("reclaim")
    taken = await s.ops.reclaim(s.agent, a.ids, s.owner)
    s.leases.update(taken)
    return {"reclaimed": taken}


@agent_commands.command("inbox", InboxArgs)
async def inbox(s: AgentSession, a: InboxArgs) -> list[Message]:
    """Messages to this agent not yet acknowledged, oldest first."""
    return await s.ops.inbox(s.agent, a.limit, a.after_id)


@agent_commands.command("turn_state", TurnArgs)
async def turn_state(s: AgentSession, a: TurnArgs) -> dict[str, object]:
    """Report idle / thinking / offline (the dashboard shows it)."""
    s.require_harness("turn_state")
    await s.ops.report_turn(s.agent, a.model_dump(), reporter=s.owner)
    s.reports_turns = True
    return {}


class PermissionArgs(Args):
    tool: str = Field(min_length=1, max_length=200)
    detail: str = Field(default="", max_length=4000)


@agent_commands.command("ask_permission", PermissionArgs, watch_peer=True)
async def ask_permission(s: AgentSession, a: PermissionArgs) -> Permission:
    """May this agent make a tool call outside its allowed_tools? Queues a question for
    the operator and answers once it is decided (expired: denied)."""
    s.require_harness("ask_permission")
    return await s.ops.ask_permission(s.agent, a.tool, a.detail)


@agent_commands.command("warm", NoArgs, watch_peer=True)
async def warm(s: AgentSession, _: NoArgs) -> dict[str, object]:
    """Hold a warm-session slot; answers `{reason}` when the host takes it back."""
    s.require_harness("warm")
    return {"reason": await s.ops.hold_warm(s.agent)}


@agent_commands.command("whoami", NoArgs)
async def whoami(s: AgentSession, _: NoArgs) -> Identity:
    """This agent's name, role, model, prompt and allowed tools."""
    return await s.ops.identity(s.agent)


# --- the manager's tools -----------------------------------------------------------


class SpawnArgs(Args):
    name: str
    description: str = Field(default="", max_length=8000)
    model: str | None = Field(default=None, max_length=200)


class ApplyArgs(Args):
    sha: str = Field(pattern=r"^[0-9a-f]{7,40}$")
    note: str = Field(default="", max_length=8000)


class AskArgs(Args):
    question: str = Field(max_length=8000)
    options: list[str] | None = None
    multi: bool = False
    ttl_seconds: int | None = None


class NameArgs(Args):
    name: str


@agent_commands.command("request_spawn", SpawnArgs)
async def request_spawn(s: AgentSession, a: SpawnArgs) -> Approval:
    """Propose a new agent: a commit on spawn/<name>, approved by the operator."""
    s.require_manager("request_spawn")
    return await s.ops.request_spawn(s.agent, a.name, a.description, a.model)


@agent_commands.command("request_apply_commit", ApplyArgs)
async def request_apply_commit(s: AgentSession, a: ApplyArgs) -> Approval:
    """Ask the operator to apply a commit the manager pushed to the proposed repo."""
    s.require_manager("request_apply_commit")
    return await s.ops.request_apply_commit(a.sha, a.note)


@agent_commands.command("ask_operator", AskArgs)
async def ask_operator(s: AgentSession, a: AskArgs) -> Asked:
    """Queue a question on the dashboard; the answer arrives as operator_answered."""
    s.require_manager("ask_operator")
    asked = await s.ops.ask(s.agent, a.question, a.options, a.multi, a.ttl_seconds)
    return Asked(asked.id)


@agent_commands.command("list_agents", NoArgs)
async def list_agents(s: AgentSession, _: NoArgs) -> list[AgentRow]:
    """Every agent with its state."""
    s.require_manager("list_agents")
    return await s.ops.agents()


def _lifecycle(verb: Verb) -> None:
    async def handler(s: AgentSession, a: NameArgs) -> AgentRow:
        s.require_manager(verb)
        if a.name == MANAGER:
            raise InvalidError(f"the manager cannot {verb} itself")
        return await s.ops.lifecycle(a.name, verb)

    handler.__doc__ = f"{verb.capitalize()} an agent (manager only)."
    agent_commands.command(verb, NameArgs)(handler)


MANAGER_LIFECYCLE: tuple[Verb, ...] = ("kill", "start", "restart")
for _verb in MANAGER_LIFECYCLE:
    _lifecycle(_verb)
