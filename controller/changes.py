"""Changes to the desired state that the manager asks for: both become approvals.

Spawning *is* config: `spawn` commits `agents/<name>/agent.toml` on `spawn/<name>` of the
proposed repo; `apply_commit` points a branch at a commit the manager pushed. Either way
the proposals reconciler records the pending approval, which is what the manager gets
back, and the operator decides as on any other.

`agent.toml` is written by `tomli_w` from the validated spec, so any text (quotes,
newlines, control characters) round-trips into valid TOML instead of failing the request.
"""

from __future__ import annotations

import tomllib

import anyio
import tomli_w
from pydantic import ValidationError

from controller.errors import ConflictError, InvalidError, NotFoundError
from controller.events import EventType
from controller.hive import PROPOSALS, Hive
from controller.values import Approval
from gitstore.errors import GitStoreError
from gitstore.spec import AgentSpec, InvalidNameError, check_name

__all__ = ["APPROVAL_WAIT", "ChangeRequests"]

APPROVAL_WAIT = 30.0


class ChangeRequests:
    def __init__(self, hive: Hive) -> None:
        self.hive = hive

    async def spawn(
        self, requester: str, name: str, description: str = "", model: str | None = None
    ) -> Approval:
        """Propose a new agent: a commit on `spawn/<name>`, approved by the operator."""
        hive = self.hive
        try:
            name = check_name(name)
            spec = AgentSpec(description=description, model=model)
        except InvalidNameError as exc:
            raise InvalidError(str(exc)) from exc
        except ValidationError as exc:
            raise InvalidError(f"not a valid agent.toml: {exc.errors()[0]['msg']}") from exc
        if "\x00" in description:  # it becomes the commit message, a C string to git
            raise InvalidError("description must not contain NUL characters")
        if name in hive.applied_names:
            raise ConflictError(f"agent {name} exists already")
        toml = tomli_w.dumps(spec.model_dump(include={"description", "model"}, exclude_none=True))
        tomllib.loads(toml)  # what the agents reconciler will read back
        sha = await hive.git.commit_files(
            f"spawn/{name}",
            {f"agents/{name}/agent.toml": toml.encode()},
            f"spawn {name}\n\n{description}".strip(),
            (requester, f"{requester}@hive"),
        )
        return await self.approval_for(f"refs/heads/spawn/{name}", sha)

    async def apply_commit(self, sha: str, note: str = "") -> Approval:
        """Ask the operator to apply a commit the manager pushed to the proposed repo."""
        hive = self.hive
        try:
            full = await hive.git.resolve_proposed(sha)
        except GitStoreError as exc:
            raise NotFoundError(f"{sha} is not in the proposed repo; push it first") from exc
        if await hive.git.is_applied(full):
            raise ConflictError(f"{full[:12]} is already applied")
        heads = {v: k for k, v in (await hive.git.proposed_heads()).items()}
        ref = heads.get(full)
        if ref is None:
            ref = f"refs/heads/request/{full[:12]}"
            await hive.git.point_branch(ref.removeprefix("refs/heads/"), full)
        approval = await self.approval_for(ref, full)
        if note:
            approval = await hive.approvals.set_note(approval.id, note)
        return approval

    async def approval_for(self, ref: str, sha: str) -> Approval:
        """Wait for the proposals reconciler to record the approval of `ref` at `sha`."""
        hive = self.hive
        with hive.bus.subscribe(types=(EventType.APPROVAL_CREATED,)) as sub:
            hive.proposal_queue.add(PROPOSALS)
            with anyio.move_on_after(APPROVAL_WAIT):
                while True:
                    for approval in await hive.approvals.query("pending"):
                        if approval.ref == ref and approval.sha == sha:
                            return approval
                    await sub.next()
        raise ConflictError(
            f"no pending approval appeared for {ref} at {sha[:12]} within {APPROVAL_WAIT:.0f} s"
        )
