"""Notifications to a person's phone or chat: webhook, ntfy and Slack-compatible providers.

The targets are the `[[notify]]` tables of `hive.toml` at the root of applied `main`: the
hive's policy (`gitstore.policy`, `Hive.policy`), read again whenever applied main moves.
What is worth a notification is read off the bus: an approval waiting (its plan
summary and a link to its card), an operator question (an agent needs input), an agent
turning Stalled, a hold put on an agent (the operator's kill and stop, the limits'
holds), and the gate's alarm (applied main moved outside hive-c0re).

Delivery never blocks the loop or another target: the bus reader only appends each
notice to the bounded queue of every target that wants it, and each target has its own
sender task that posts with aiohttp, retrying with exponential backoff (a 4xx answer
other than 429 is not retried: the request is wrong, not the moment). A dead provider
therefore only fills its own queue (the oldest notices are dropped first, and recorded
as failed). Every outcome is an audited event (`notify.sent` / `notify.failed`, in
`hive events`) and a count in `hyperhive_notifications_total`. URLs hold tokens, so
they are named by environment variable in git and appear in no event, log or answer.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
import anyio
from anyio.abc import TaskStatus

from controller.bus import Event, EventType
from controller.errors import ConflictError
from controller.metrics import Metrics
from gitstore.notify_spec import NotifyTarget
from reconcilers.backoff import Backoff

if TYPE_CHECKING:
    from controller.hive import Hive

__all__ = ["Delivery", "Notice", "Notifier"]

log = logging.getLogger(__name__)
TEXT_MAX = 1500  # a notice's message: what fits a phone's notification and a chat line
WATCHED = (
    EventType.APPROVAL_CREATED,
    EventType.QUESTION_ASKED,
    EventType.AGENT_STATUS,
    EventType.AGENT_HOLD,
    EventType.APPLIED_ALARM,
    EventType.APPLIED_MOVED,
)


@dataclass(frozen=True)
class Notice:
    """What happened, for a person: one per event worth telling."""

    event: str  # approval | question | stalled | hold | alarm | test
    title: str
    message: str
    link: str
    data: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Delivery:
    """How one notice went to one target (what `hive notify test` answers)."""

    target: int  # its place among the [[notify]] tables
    kind: str
    url_env: str
    event: str
    result: str  # sent | failed
    attempts: int
    error: str = ""


def _short(text: str, most: int = TEXT_MAX) -> str:
    return text if len(text) <= most else text[: most - 1] + "…"


class _Outbox:
    """One target's queue and the event its sender waits on."""

    def __init__(self, target: NotifyTarget, index: int, size: int) -> None:
        self.target = target
        self.index = index
        self.queue: deque[Notice] = deque()
        self.size = size
        self.ready = anyio.Event()
        self.scope = anyio.CancelScope()


class Notifier:
    def __init__(self, hive: Hive, metrics: Metrics) -> None:
        self.hive = hive
        self.metrics = metrics
        s = hive.settings
        self.attempts = s.notify_attempts
        self.backoff = Backoff(s.notify_backoff, s.notify_backoff_cap)
        self.timeout = s.notify_timeout
        self.queue_size = s.notify_queue
        self.targets: tuple[NotifyTarget, ...] = ()
        self.problem: str | None = None  # why hive.toml's targets could not be read
        self._outboxes: list[_Outbox] = []
        self._stalled: set[str] = set()
        self._session: aiohttp.ClientSession | None = None
        self._tg: anyio.abc.TaskGroup | None = None

    # --- reading the hive ------------------------------------------------------------

    def link(self, path: str = "/") -> str:
        base = self.hive.settings.environ.get("HIVE_PUBLIC_URL", "").rstrip("/")
        if not base:
            host, _, port = self.hive.settings.dashboard.rpartition(":")
            port = str(self.hive.dashboard_port or port)
            base = f"http://{host or '127.0.0.1'}:{port}"
        return base + path

    def notice(self, event: Event) -> Notice | None:
        """The notice an event is worth, or None."""
        d = event.data
        if event.type == EventType.APPROVAL_CREATED:
            a = d["approval"]
            changes = [f"{p.agent}: {p.action}" for p in a.plan if p.action != "none"]
            text = f"{a.kind} {a.ref.removeprefix('refs/heads/')} {a.sha[:12]}: {a.summary}"
            text += "\nplan: " + (", ".join(changes) or "no change to any agent")
            if a.errors:
                text += f"\n✗ {len(a.errors)} error(s): {a.errors[0]}"
            return Notice(
                "approval",
                f"approval #{a.id} waits",
                _short(text),
                self.link(f"/#approval-{a.id}"),
                {"approval": a.id, "sha": a.sha, "ref": a.ref},
            )
        if event.type == EventType.QUESTION_ASKED:
            q = d["question"]
            text = q.question + (f"\noptions: {', '.join(q.options)}" if q.options else "")
            return Notice(
                "question",
                f"{q.asker} needs input (question #{q.id})",
                _short(text),
                self.link(f"/#question-{q.id}"),
                {"question": q.id, "asker": q.asker},
            )
        if event.type == EventType.AGENT_STATUS:
            name, stalled = str(d.get("name", "")), bool(d.get("stalled"))
            if not stalled:
                self._stalled.discard(name)
                return None
            if name in self._stalled:
                return None
            self._stalled.add(name)
            return Notice(
                "stalled",
                f"{name} is stalled",
                _short(str(d.get("message") or d.get("reason"))),
                self.link(f"/reconcile#agent-{name}"),
                {"agent": name},
            )
        if event.type == EventType.AGENT_HOLD and d.get("hold"):
            name = str(d.get("agent", ""))
            return Notice(
                "hold",
                f"{name} is held: {d['hold']}",
                f"{name} is held stopped ({d['hold']}); `hive start {name}` clears it",
                self.link(f"/agents/{name}/"),
                {"agent": name, "hold": d["hold"]},
            )
        if event.type == EventType.APPLIED_ALARM and d.get("alarm"):
            alarm = d["alarm"]
            return Notice(
                "alarm",
                "applied main moved outside hive-c0re",
                _short(str(alarm["message"])),
                self.link("/"),
                {"found_sha": alarm["found_sha"]},
            )
        return None

    async def load(self) -> None:
        """Take the targets of the hive's policy at applied main (a policy that is not
        valid is logged, shown by `hive notify test` and an audited `notify.invalid`;
        the old targets stay)."""
        problem = self.hive.policy_error
        if problem is not None:
            if problem != self.problem:
                log.warning("notifications: hive.toml: %s", problem)
                self.hive.bus.publish(EventType.NOTIFY_INVALID, error=problem)
            self.problem = problem
            return
        self.problem = None
        targets = self.hive.policy.notify
        if targets != self.targets:
            self.targets = targets
            self._restart_senders()

    # --- serving ---------------------------------------------------------------------

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        statuses = await self.hive.records.statuses()
        self._stalled = {n for n, s in statuses.items() if s.stalled}
        async with aiohttp.ClientSession() as session, anyio.create_task_group() as tg:
            self._session, self._tg = session, tg
            await self.load()
            task_status.started()
            while True:
                with self.hive.bus.subscribe(types=WATCHED) as sub:
                    async for event in sub:
                        if event.type == EventType.APPLIED_MOVED:
                            await self.load()
                            continue
                        notice = self.notice(event)
                        if notice is not None:
                            self.post(notice)
                log.warning("notifications: fell behind the bus; reading on")

    def post(self, notice: Notice) -> None:
        """Queue `notice` for every target that wants its event (never waits)."""
        for box in self._outboxes:
            if notice.event != "test" and notice.event not in box.target.events:
                continue
            if len(box.queue) >= box.size:
                dropped = box.queue.popleft()
                error = "dropped: the target's queue is full"
                self._record(box.index, box.target, dropped, "failed", 0, error)
            box.queue.append(notice)
            box.ready.set()

    def _restart_senders(self) -> None:
        for box in self._outboxes:
            box.scope.cancel()
        self._outboxes = [_Outbox(t, i, self.queue_size) for i, t in enumerate(self.targets)]
        assert self._tg is not None
        for box in self._outboxes:
            self._tg.start_soon(self._send_loop, box)

    async def _send_loop(self, box: _Outbox) -> None:
        with box.scope:
            while True:
                await box.ready.wait()
                box.ready = anyio.Event()
                while box.queue:
                    notice = box.queue.popleft()
                    await self.deliver(box.index, box.target, notice, self.attempts)

    # --- delivering ------------------------------------------------------------------

    async def deliver(
        self, index: int, target: NotifyTarget, notice: Notice, attempts: int
    ) -> Delivery:
        """Post `notice` to one target, retrying with backoff; records the outcome."""
        url = self.hive.settings.environ.get(target.url_env, "")
        error, tried = "", 0
        if not url.startswith(("http://", "https://")):
            error = f"${target.url_env} is not set to an http(s) URL in hive-c0re's environment"
        else:
            assert self._session is not None
            kwargs = _payload(target.kind, notice)
            for tried in range(1, attempts + 1):
                try:
                    with anyio.fail_after(self.timeout):
                        async with self._session.post(url, **kwargs) as resp:
                            await resp.read()
                            status = resp.status
                except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                    error = _explain(exc)
                else:
                    if 200 <= status < 300:
                        error = ""
                        break
                    error = f"the provider answered HTTP {status}"
                    if 400 <= status < 500 and status != 429:
                        break
                if tried < attempts:
                    await anyio.sleep(self.backoff.delay(tried))
        result = "failed" if error else "sent"
        self._record(index, target, notice, result, tried, error)
        return Delivery(index, target.kind, target.url_env, notice.event, result, tried, error)

    def _record(
        self,
        index: int,
        target: NotifyTarget,
        notice: Notice,
        result: str,
        attempts: int,
        error: str,
    ) -> None:
        self.metrics.notified(target.kind, notice.event, result)
        if error:
            log.warning(
                "notify[%d] %s ($%s) %s: %s",
                index,
                target.kind,
                target.url_env,
                notice.event,
                error,
            )
        self.hive.bus.publish(
            EventType.NOTIFY_SENT if result == "sent" else EventType.NOTIFY_FAILED,
            target=index,
            kind=target.kind,
            url_env=target.url_env,
            event=notice.event,
            title=notice.title,
            attempts=attempts,
            error=error,
        )

    async def test(self) -> list[Delivery]:
        """`hive notify test`: one test notice to every target, each tried once, now."""
        await self.load()
        if self.problem is not None:
            raise ConflictError(f"notifications are not set up: {self.problem}")
        notice = Notice(
            "test",
            "hyperhive test notification",
            "If you read this, hive-c0re can reach you here.",
            self.link("/"),
        )
        results: dict[int, Delivery] = {}

        async def one(i: int, target: NotifyTarget) -> None:
            results[i] = await self.deliver(i, target, notice, 1)

        async with anyio.create_task_group() as tg:
            for i, target in enumerate(self.targets):
                tg.start_soon(one, i, target)
        return [results[i] for i in sorted(results)]


def _payload(kind: str, notice: Notice) -> dict[str, Any]:
    """What a provider takes: a JSON object (webhook), text with headers (ntfy), a
    Slack message (Slack, Mattermost, Rocket.Chat, Discord's /slack endpoint)."""
    if kind == "ntfy":
        tag = {"approval": "white_check_mark", "question": "question", "alarm": "rotating_light"}
        urgent = notice.event in ("approval", "question", "alarm", "stalled")
        return {
            "data": notice.message.encode(),
            "headers": {
                # HTTP header values are latin-1; ntfy shows what survives.
                "Title": notice.title.encode("latin-1", "replace").decode("latin-1"),
                "Tags": tag.get(notice.event, "bee"),
                "Click": notice.link,
                "Priority": "high" if urgent else "default",
            },
        }
    if kind == "slack":
        return {"json": {"text": f"*{notice.title}*\n{notice.message}\n<{notice.link}|open>"}}
    return {
        "json": {
            "event": notice.event,
            "title": notice.title,
            "message": notice.message,
            "link": notice.link,
            **notice.data,
        }
    }


def _explain(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return f"{type(exc).__name__}: {exc}"[:300] or type(exc).__name__
