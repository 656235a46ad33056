"""Rollback in one approval, by hand (`hive rollback [REV]`) or automatic.

A rollback is config like any other change: hive-c0re commits, on a branch
`rollback/<short-sha>` of the proposed repo, a commit whose tree is the tree of REV (an
earlier commit of applied `main`) and whose parent is applied `main` as it is, so the
proposals reconciler records a pending approval of kind `rollback` with its plan and
diff, and approving it goes through the normal gate. REV is an approval id (the tree as
that approval left it) or a sha of applied `main`; by default the applied commit before
the current one (the gate's record of the last move, else the first parent).

**Auto-rollback**: after an approval that creates or updates agents lands, each of them
must be Ready within `ready_timeout_seconds` (`hive.toml`) and stay Ready (a crash loop
is Running for a moment between crashes: Ready, then not, counts as not). If one is not,
and applied
`main` is still where that approval put it, hive-c0re proposes the rollback of that
approval by itself: a pending approval whose note starts with "automatic rollback" and
gives the reason, and an `approval.rollback` event (what notifications key on). With
`auto_rollback = "apply"` it also approves it, as `hive-c0re (auto-rollback)`; with
"off" it does nothing. A rollback's own approval is never rolled back automatically.
"""

from __future__ import annotations

import logging

import anyio

from controller.broker import OPERATOR
from controller.changes import ChangeRequests
from controller.errors import InvalidError, NotFoundError
from controller.events import EventType
from controller.hive import Hive
from controller.values import Approval
from gitstore.commits import RollbackError
from gitstore.errors import UnknownRevError
from gitstore.plan import Action

__all__ = ["AUTO_APPROVER", "Rollbacks"]

log = logging.getLogger(__name__)

AUTO_APPROVER = "hive-c0re (auto-rollback)"
CONTROLLER = "hive-c0re"


class Rollbacks:
    def __init__(self, hive: Hive, changes: ChangeRequests) -> None:
        self.hive = hive
        self.changes = changes

    async def _target(self, to: str | None) -> str | None:
        """The applied sha REV names (None: the first parent of applied main)."""
        hive = self.hive
        if to is None:
            head = hive.applied.sha
            for move in await hive.gate.moves(1):
                if move.new == head and move.old:
                    return move.old
            return None
        rev = to.strip()
        if rev.isdigit() and len(rev) < 7:
            approval = await hive.approvals.get(int(rev))
            if approval.status != "approved" or not approval.applied_sha:
                raise InvalidError(
                    f"approval #{approval.id} is {approval.status}: roll back only to an "
                    "approved one (or to a sha of applied main)"
                )
            return approval.applied_sha
        if not (7 <= len(rev) <= 40 and all(c in "0123456789abcdef" for c in rev)):
            raise InvalidError(f"{to[:60]!r} is neither an approval id nor a commit sha")
        return rev

    async def propose(
        self,
        to: str | None = None,
        *,
        reason: str = "",
        automatic: bool = False,
        requester: str = OPERATOR,
    ) -> Approval:
        """Commit the rollback to REV and answer its pending approval."""
        hive = self.hive
        target = await self._target(to)
        who = CONTROLLER if automatic else requester
        what = "automatic rollback" if automatic else "rollback"
        shown = target[:12] if target else "the previous commit"
        message = (
            f"{what} to {shown}\n\n"
            + (f"{reason}\n\n" if reason else "")
            + f"Rollback-to: {target or 'first parent'}\nRequested-by: {who}\n"
        )
        try:
            ref, sha, full = await hive.git.commit_rollback(target, message, (who, f"{who}@hive"))
        except UnknownRevError as exc:
            raise NotFoundError(f"{shown} is not a commit of applied main") from exc
        except RollbackError as exc:
            raise InvalidError(str(exc)) from exc
        approval = await self.changes.approval_for(ref, sha)
        note = f"{what} to {full[:12]}" + (f": {reason}" if reason else f" (by {who})")
        approval = await hive.approvals.set_note(approval.id, note)
        hive.bus.publish(
            EventType.APPROVAL_ROLLBACK,
            approval=approval,
            to=full,
            automatic=automatic,
            reason=reason,
        )
        if automatic and hive.policy.auto_rollback == "apply":
            approval = await hive.approvals.approve(approval.id, approver=AUTO_APPROVER)
        return approval

    # --- auto-rollback -------------------------------------------------------------

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Watch every approval that lands; roll back one that leaves an agent not Ready."""
        hive = self.hive
        with hive.bus.subscribe(types=(EventType.APPROVAL_APPROVED,)) as sub:
            task_status.started()
            async with anyio.create_task_group() as tg:
                async for event in sub:
                    approval = event.data.get("approval")
                    if isinstance(approval, Approval) and approval.kind != "rollback":
                        tg.start_soon(self._watch, approval)

    async def _watch(self, approval: Approval) -> None:
        hive = self.hive
        policy = hive.policy
        if policy.auto_rollback == "off":
            return
        names = {s.agent for s in approval.plan if s.action in (Action.CREATE, Action.UPDATE)}
        if not names or not approval.applied_sha:
            return
        # An agent that was Ready and then is not (a crash loop restarts it, and it is
        # Running for a moment between crashes) did not become Ready: it flapped.
        flapped: set[str] = set()
        with hive.bus.subscribe(types=(EventType.AGENT_STATUS,)) as sub:
            # Only statuses of the revs this approval applied count.
            revs = await hive.git.applied_revs(approval.applied_sha)
            seen_ready = {
                n
                for n, st in (await hive.records.statuses()).items()
                if n in names and st.ready and st.desired_rev == revs.get(n)
            }

            async def follow() -> None:
                async for event in sub:
                    name = str(event.data.get("name"))
                    if name not in names or event.data.get("desired_rev") != revs.get(name):
                        continue
                    if event.data.get("ready"):
                        seen_ready.add(name)
                    elif name in seen_ready:
                        flapped.add(name)

            async with anyio.create_task_group() as tg:
                tg.start_soon(follow)
                await hive.clock.sleep(policy.ready_timeout_seconds)
                tg.cancel_scope.cancel()
        if hive.applied.sha != approval.applied_sha:
            log.info("approval #%s: applied main moved on; no auto-rollback", approval.id)
            return  # something landed since: rolling back would undo that too
        statuses = await hive.records.statuses()
        late = sorted(
            n for n in names if n in flapped or (st := statuses.get(n)) is None or not st.ready
        )
        if not late:
            return
        why = "; ".join(
            f"{n}: {st.reason}{': ' + st.message if st.message else ''}"
            + (" (it was Ready, then not)" if n in flapped else "")
            if (st := statuses.get(n)) is not None
            else f"{n}: no status"
            for n in late
        )
        reason = (
            f"{', '.join(late)} not Ready {policy.ready_timeout_seconds} s after approval "
            f"#{approval.id} ({why})"
        )[:2000]
        previous = await self._before(approval)
        try:
            await self.propose(previous, reason=reason, automatic=True)
        except Exception:
            log.exception("auto-rollback of approval #%s failed", approval.id)

    async def _before(self, approval: Approval) -> str | None:
        """Applied main before `approval` landed (the gate's record)."""
        for move in await self.hive.gate.moves(1000):
            if move.approval_id == approval.id and move.old:
                return move.old
        return None
